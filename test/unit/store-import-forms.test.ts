import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { importFio } from '../../src/store/import-fio.js';
import { Store } from '../../src/store/store.js';
import { UserError } from '../../src/util/errors.js';

/**
 * `import fio` reads the JSON document, however it is laid out; what is wrong in it is named. The
 * documents are the recorded fixture (fio 3.33, see test/fixtures/fio/README.md) re-serialised.
 */

const bin = fileURLToPath(new URL('../../../bin/kvmio.js', import.meta.url));
const fixture = fileURLToPath(new URL('../../../test/fixtures/fio/randread-qd1.json', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'kvmio-import-forms-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const recorded = () => JSON.parse(readFileSync(fixture, 'utf8')) as { jobs: Record<string, unknown>[] };
let n = 0;
function write(text: string): string {
  const file = join(dir, `doc-${++n}.json`);
  writeFileSync(file, text);
  return file;
}

function figures(file: string): Record<string, number> {
  const store = Store.open(join(dir, `s-${++n}.sqlite`));
  try {
    const r = importFio(store, [file]);
    assert.equal(store.getRun(r.runId)?.status, 'complete');
    return Object.fromEntries(store.metricRows(r.runId).map((row) => [row.metric, row.value]));
  } finally {
    store.close();
  }
}

test('minified, re-indented, BOM-prefixed and preamble-led documents import the same figures', () => {
  const want = figures(fixture);
  assert.ok((want['read.iops'] ?? 0) > 0);
  const doc = recorded();
  const forms: Record<string, string> = {
    minified: JSON.stringify(doc),
    tabs: JSON.stringify(doc, null, '\t'),
    'four spaces': JSON.stringify(doc, null, 4),
    'byte-order mark': `\ufeff${readFileSync(fixture, 'utf8')}`,
    'BOM and minified': `\ufeff${JSON.stringify(doc)}`,
    'notes before, text after': `note: both iodepth >= 1 and synchronous I/O engine are selected, queue depth will be capped at 1\n${JSON.stringify(doc)}\nfio: some trailing line\n`,
    'braces inside strings': JSON.stringify({ ...doc, time: 'a } and a { and a "quote"' }),
  };
  for (const [form, text] of Object.entries(forms)) assert.deepEqual(figures(write(text)), want, form);
});

test('"jobs": [] and "jobs": {} are complete runs with no points', () => {
  for (const jobs of [[], {}]) {
    const store = Store.open(join(dir, `empty-${++n}.sqlite`));
    const r = importFio(store, [write(JSON.stringify({ ...recorded(), jobs }))]);
    assert.equal(r.points, 0);
    assert.equal(store.getRun(r.runId)?.status, 'complete');
    assert.equal(store.metricRows(r.runId).length, 0);
    store.close();
  }
});

test('null or a string where fio prints a number is an error naming the file and the field', () => {
  const cases: [string, (job: Record<string, unknown>) => void, RegExp][] = [
    [
      'null iops',
      (j) => ((j.read as Record<string, unknown>).iops = null),
      /jobs\[0\]\.read\.iops: expected a number, got null/,
    ],
    [
      'string iops',
      (j) => ((j.read as Record<string, unknown>).iops = '1234'),
      /jobs\[0\]\.read\.iops: expected a number, got the string "1234"/,
    ],
    [
      'null clat mean',
      (j) => (((j.read as Record<string, unknown>).clat_ns as Record<string, unknown>).mean = null),
      /jobs\[0\]\.read\.clat_ns\.mean: expected a number/,
    ],
    [
      'string percentile',
      (j) =>
        ((
          ((j.read as Record<string, unknown>).clat_ns as Record<string, unknown>).percentile as Record<
            string,
            unknown
          >
        )['99.000000'] = 'x'),
      /jobs\[0\]\.read\.clat_ns\.percentile\.99\.000000: expected a number/,
    ],
    ['null jobname', (j) => (j.jobname = null), /jobs\[0\]\.jobname: expected a string, got null/],
    ['null usr_cpu', (j) => (j.usr_cpu = null), /jobs\[0\]\.usr_cpu: expected a number/],
    ['missing write', (j) => delete j.write, /jobs\[0\]\.write: expected an object/],
  ];
  for (const [name, spoil, re] of cases) {
    const doc = recorded();
    spoil(doc.jobs[0] as Record<string, unknown>);
    const file = write(JSON.stringify(doc, null, 2));
    const store = Store.open(join(dir, `bad-${++n}.sqlite`));
    assert.throws(
      () => importFio(store, [file]),
      (err: unknown) =>
        err instanceof UserError && err.message.startsWith(`${file}: `) && re.test(err.message),
      name,
    );
    assert.equal(store.listRuns().length, 0, `${name}: nothing stored`);
    store.close();
  }
  const notJobs = write(JSON.stringify({ ...recorded(), jobs: 'none' }));
  const r = spawnSync(process.execPath, [bin, 'import', 'fio', notJobs, '--db', join(dir, 'cli.sqlite')], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 2);
  assert.equal(r.stderr.trimEnd().split('\n').length, 1);
  assert.match(r.stderr, /doc-\d+\.json: .*jobs: expected a list of jobs, got the string "none"/);
});
