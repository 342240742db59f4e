/**
 * Names from someone else's store that are also members of Object.prototype (`valueOf`,
 * `constructor`, `__proto__`, …): vega keeps some of its groups in plain objects keyed by data values,
 * where such a name finds the prototype's member. Every chart kind must still draw every mark, and a
 * chart vega fails on must be an error, not an empty SVG.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { specToSvg } from '../../src/report/render.js';
import { groupedBarSpec, lineSpec, stackedBarSpec } from '../../src/report/specs.js';

const NAMES = ['valueOf', 'constructor', '__proto__', 'toString', 'hasOwnProperty', 'isPrototypeOf'];
const COLORS = ['#4c78a8', '#f58518', '#e45756', '#72b7b2', '#54a24b', '#eeca3b', '#b279a2'];
const title = { title: 'chart', yTitle: 'y' };

/** Data marks vega drew: each carries an aria-label with its fields (axes, legends, titles excluded). */
function marks(svg: string): string[] {
  return (svg.match(/<[a-z]+\b[^>]*aria-label="[^"]*"[^>]*>/g) ?? []).filter(
    (tag) => !/aria-roledescription="[^"]*(axis|legend|title|container)/.test(tag),
  );
}

function stacked(labels: string[]) {
  const parts = ['vcpu', 'iothread'];
  const data = labels.flatMap((label) => parts.map((part, i) => ({ label, part, value: 1 + i })));
  const totals = labels.map((label) => ({ group: label, label, mean: 3, lo: 2.5, hi: 3.5, n: 2 }));
  return stackedBarSpec(data, totals, { domain: parts, range: COLORS.slice(0, 2) }, labels, title);
}

function grouped(labels: string[]) {
  const data = labels.flatMap((label, i) =>
    labels.map((group) => ({ group, label, mean: 1 + i, lo: i, hi: 2 + i, n: 2 })),
  );
  return groupedBarSpec(data, { domain: labels, range: COLORS.slice(0, labels.length) }, title);
}

function lines(labels: string[]) {
  const data = labels.flatMap((label, i) =>
    [1, 2].map((x) => ({
      label,
      dash: labels[0],
      x,
      y: x + i,
      ylo: x,
      yhi: x + 1 + i,
      n: 2,
      step: `${x}`,
      ord: x,
    })),
  );
  return lineSpec(data, { domain: labels, range: COLORS.slice(0, labels.length) }, { ...title, xTitle: 'x' });
}

for (const [kind, spec] of [
  ['stacked bars', stacked],
  ['grouped bars', grouped],
  ['lines', lines],
] as const) {
  test(`${kind}: names that are Object.prototype members draw as many marks as plain names`, async () => {
    const plain = marks(await specToSvg(spec(NAMES.map((_, i) => `name${i}`))));
    assert.ok(plain.length >= NAMES.length, `${plain.length} marks for plain names`);
    const svg = await specToSvg(spec(NAMES));
    assert.equal(marks(svg).length, plain.length);
    for (const name of NAMES) assert.ok(svg.includes(`>${name}<`), `${name} is shown`);
  });
}

test('a spec vega fails on while drawing is an error, not an empty SVG', async () => {
  // vega's own stack transform, fed a stack named like a prototype member: specs.ts lays stacks out itself for this.
  const spec = {
    data: {
      values: [
        { x: 'valueOf', y: 1, c: 'a' },
        { x: 'valueOf', y: 2, c: 'b' },
      ],
    },
    mark: 'bar',
    encoding: {
      x: { field: 'x', type: 'nominal' },
      y: { field: 'y', type: 'quantitative', stack: 'zero' },
      color: { field: 'c', type: 'nominal' },
    },
  };
  await assert.rejects(specToSvg(spec), /push is not a function/);
});
