import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Store } from '../../src/store/store.js';

/**
 * Adaptive repetitions through the real CLI: a CI target no real measurement meets (±0.1%) makes the
 * engine add rounds after the planned ones, up to the maximum. Host-baseline fio points, 2 s each.
 */

const bin = fileURLToPath(new URL('../../../bin/kvmio.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'kvmio-run-adaptive-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('adaptive mode adds rounds until the maximum when the CI stays wide', { timeout: 120_000 }, () => {
  const study = join(dir, 'adaptive.yaml');
  const db = join(dir, 'results.sqlite');
  writeFileSync(
    study,
    `name: adaptive
guest: { vcpus: 1, memory: 512MiB }
disk: { path: ${join(dir, 'disk.raw')}, size: 64MiB }
matrix: { aio: [threads], iothreads: [0] }
baseline: true
repetitions: 2
adaptive: { ci: 0.1%, max: 4 }
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 2s, ramp: 0s }
`,
  );
  const out = execFileSync(process.execPath, [bin, 'run', study, '--only', 'host', '--db', db, '--json'], {
    encoding: 'utf8',
  });
  const events = out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const rounds = events.filter((e) => e.event === 'adaptive-round');
  assert.deepEqual(
    rounds.map((e) => [e.round, e.points]),
    [
      [2, 1],
      [3, 1],
    ],
  );
  const store = Store.open(db);
  const run = store.getRun('latest');
  assert.equal(run?.status, 'complete');
  assert.deepEqual(
    store.points(run?.id ?? '').map((p) => [p.index, p.round, p.status]),
    [
      [0, 0, 'ok'],
      [1, 1, 'ok'],
      [2, 2, 'ok'],
      [3, 3, 'ok'],
    ],
  );
  assert.deepEqual(
    store
      .metricRows(run?.id ?? '')
      .filter((r) => r.metric === 'read.iops')
      .map((r) => r.rep),
    [0, 1, 2, 3],
  );
  store.close();
});
