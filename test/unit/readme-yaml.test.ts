import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { parseStudy } from '../../src/study/load.js';
import { planStudy } from '../../src/study/plan.js';

/** Every ```yaml block of the README is a study (or a part of one) that the loader must accept. */
const readme = fileURLToPath(new URL('../../../README.md', import.meta.url));
const blocks = [...readFileSync(readme, 'utf8').matchAll(/^```yaml\n([\s\S]*?)^```$/gm)].map((m) => ({
  text: m[1]!,
  line: readFileSync(readme, 'utf8').slice(0, m.index).split('\n').length + 1,
}));

test('the README has YAML examples to check', () => {
  assert.ok(blocks.length >= 2, `${blocks.length} blocks`);
});

for (const { text, line } of blocks) {
  test(`README.md:${line}: the YAML block loads${/^workloads:/m.test(text) ? ' and plans' : ''}`, () => {
    const whole = /^workloads:/m.test(text);
    // A fragment (no workloads) is completed with the smallest workload list, so its own keys are checked.
    const study = parseStudy(
      whole ? text : `${text}\nworkloads: [ { kind: fio, runtime: 2s } ]\n`,
      `README.md:${line}`,
    );
    if (whole) {
      const plan = planStudy(study);
      assert.ok(plan.points.length > 0);
      // Every top-level key of the block reached the study: none is silently dropped.
      for (const key of Object.keys(parse(text) as object))
        assert.ok(key in study || key === 'matrix' || key === 'exclude', `README.md:${line}: ${key} ignored`);
    }
  });
}
