import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { csvToRows } from '../../src/store/export.js';

/** The store verbs through the real CLI: import fio, runs --json, export json/csv, compare. */

const bin = fileURLToPath(new URL('../../../bin/kvmio.js', import.meta.url));
const fixtures = fileURLToPath(new URL('../../../test/fixtures/fio/', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'kvmio-store-cli-'));
const db = join(dir, 'cli.sqlite');
after(() => rmSync(dir, { recursive: true, force: true }));

const kvmio = (...args: string[]) =>
  execFileSync(process.execPath, [bin, ...args, '--db', db], { encoding: 'utf8' });

test('import, runs --json, export csv and json agree with each other', () => {
  kvmio('import', 'fio', join(fixtures, 'randread-qd1.json'), '--label', 'before');
  kvmio('import', 'fio', join(fixtures, 'two-jobs.json'));
  const runs = JSON.parse(kvmio('runs', '--json')) as Array<Record<string, unknown>>;
  assert.equal(runs.length, 2);
  for (const r of runs) {
    assert.deepEqual(Object.keys(r).sort(), ['failed', 'host', 'id', 'name', 'points', 'started', 'status']);
    assert.equal(r.status, 'complete');
    assert.equal(r.failed, 0);
  }
  assert.deepEqual(
    runs.map((r) => [r.name, r.points]),
    [
      ['two-jobs', 2],
      ['before', 1],
    ],
  );
  const before = String(runs[1]?.id);
  const json = JSON.parse(kvmio('export', before, '--format', 'json')) as {
    rows: unknown[];
    run: { id: string };
  };
  assert.equal(json.run.id, before);
  const out = join(dir, 'before.csv');
  kvmio('export', before, '--format', 'csv', '--out', out);
  assert.deepEqual(csvToRows(readFileSync(out, 'utf8')), json.rows);
  const latest = csvToRows(kvmio('export', 'latest', '--format', 'csv'));
  assert.deepEqual(
    [...new Set(latest.map((r) => r.variant))],
    ['two-jobs:randwrite-qd16', 'two-jobs:read-seq'],
  );
});

test('mistakes are user errors: exit 2 and one line naming what is allowed', () => {
  const bad = spawnSync(process.execPath, [bin, 'export', 'nope', '--db', db], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /no run "nope" .* recent runs: /);
  const fmt = spawnSync(process.execPath, [bin, 'export', 'latest', '--format', 'xml', '--db', db], {
    encoding: 'utf8',
  });
  assert.equal(fmt.status, 2);
  assert.match(fmt.stderr, /allowed formats are json and csv/);
  const missing = spawnSync(process.execPath, [bin, 'runs', '--db', join(dir, 'none.sqlite')], {
    encoding: 'utf8',
  });
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /no results store at/);
});

test('compare shows the shared figures of two runs with deltas', () => {
  kvmio('import', 'fio', join(fixtures, 'randread-qd1.json'), '--label', 'after');
  const runs = JSON.parse(kvmio('runs', '--json')) as Array<{ id: string; name: string }>;
  const a = runs.find((r) => r.name === 'before')?.id as string;
  const b = runs.find((r) => r.name === 'after')?.id as string;
  const text = kvmio('compare', a, b);
  assert.match(
    text,
    /randread-qd1\s+randread-4k-qd1\s+read\.iops\s+[\d,]+\s+[\d,]+\s+\+0\.0%\s+too noisy to tell \(n = 1\)/,
  );
  // The same words as the report's for the same data: both come from the statistics module.
  const out = join(dir, 'compare-report');
  kvmio('report', a, b, '--no-png', '--out', out);
  assert.match(
    readFileSync(join(out, 'summary.md'), 'utf8'),
    /- latency, Random Read BS=4k QD=1[^\n]*: too noisy to tell \(n = 1\)/,
  );
});
