import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { RunEvent } from '../../src/engine/events.js';
import { runStudy } from '../../src/engine/run.js';
import { buildModel } from '../../src/report/charts.js';
import { buildConclusion } from '../../src/report/conclusion.js';
import { loadReportData } from '../../src/report/data.js';
import { Store } from '../../src/store/store.js';
import { parseStudy } from '../../src/study/load.js';
import type { Variant } from '../../src/study/types.js';
import { FakeBackend } from '../helpers/fake-backend.js';

/**
 * Racing's stopping rule through runStudy, on the fake backend: each variant's speed is scripted, so
 * which comparison the rule can decide, and when, is known in advance.
 */
const dir = mkdtempSync(join(tmpdir(), 'kvmio-race-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let seq = 0;

/** Native is the reference; threads and io_uring are each compared with it (the "backend" question). */
async function race(speed: Record<string, (rep: number) => number>, race = 'race: true', repetitions = 6) {
  const n = ++seq;
  const study = parseStudy(
    `name: race-${n}
guest: { vcpus: 1, memory: 512MiB }
disk: { path: ${join(dir, `disk-${n}.raw`)}, size: 16MiB }
matrix: { aio: [${Object.keys(speed).join(', ')}], iothreads: [0] }
repetitions: ${repetitions}
${race}
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 1s, ramp: 0s }
`,
    join(dir, `study-${n}.yaml`),
  );
  const runsOf = new Map<string, number>();
  const backend = new FakeBackend({
    iopsFactor: (_run, v: Variant) => {
      const rep = runsOf.get(v.aio) ?? 0;
      runsOf.set(v.aio, rep + 1);
      return (speed[v.aio] as (rep: number) => number)(rep);
    },
  });
  const store = Store.open(join(dir, `results-${n}.sqlite`));
  const events: RunEvent[] = [];
  const result = await runStudy(study, {
    store,
    accelerator: { accel: 'tcg', reason: 'fake backend' },
    backends: async () => backend,
    onEvent: (e) => events.push(e),
  });
  const points = store.points(result.runId);
  const pointsOf = (aio: string) =>
    points.filter((p) => p.variant === `blk-${aio.replace('io_', '')}-io0-4k`);
  const claims = buildConclusion(buildModel(loadReportData(store, [result.runId]))).claims;
  const claimOf = (aio: string) => claims.find((c) => c.b.def?.aio === aio);
  store.close();
  return { result, events, pointsOf, claimOf, runsOf };
}

/** Steady within ±0.5% around `level`: the rule can decide a comparison between two of them at once. */
const steady = (level: number) => (rep: number) => level * (1 + 0.005 * ((rep % 3) - 1));

test('racing: a clearly slower variant stops at the minimum; the others race on to the maximum', async () => {
  const { result, events, pointsOf, claimOf } = await race({
    native: steady(1),
    threads: steady(0.5),
    // Half and one and a half times as fast in turn: never decided within six repetitions.
    io_uring: (rep) => (rep % 2 === 0 ? 0.5 : 1.5),
  });
  assert.equal(result.status, 'complete');
  assert.equal(pointsOf('threads').length, 3, 'the slow variant stops after the minimum of 3');
  assert.ok(pointsOf('threads').every((p) => p.round < 3));
  // Racing stops a variant, not a workload: the reference and the open comparison go on.
  assert.equal(pointsOf('native').length, 6, 'repetitions is the maximum');
  assert.equal(pointsOf('io_uring').length, 6);
  assert.deepEqual(claimOf('threads')?.race, { decision: 'different', decidedAt: 3 });
  assert.equal(claimOf('threads')?.comparison.kind, 'worse');
  assert.equal(claimOf('io_uring')?.race?.decidedAt, undefined, 'still open when the run ended');
  const rounds = events.filter((e) => e.event === 'race-round');
  assert.deepEqual(
    rounds.map((e) => [e.round, e.points, e.skipped]),
    [
      [0, 3, 0],
      [1, 3, 0],
      [2, 3, 0],
      [3, 2, 1],
      [4, 2, 1],
      [5, 2, 1],
    ],
  );
});

test('racing: variants within the practical threshold stop at the minimum as equivalent', async () => {
  const { result, pointsOf, claimOf } = await race({ native: steady(1), threads: steady(1.01) });
  assert.equal(result.status, 'complete');
  assert.equal(pointsOf('native').length, 3);
  assert.equal(pointsOf('threads').length, 3);
  assert.deepEqual(claimOf('threads')?.race, { decision: 'equivalent', decidedAt: 3 });
});

test('racing: nothing is decided before the minimum, however clear', async () => {
  const { pointsOf, claimOf } = await race(
    { native: steady(1), threads: steady(0.2) },
    'race: { min: 4 }',
    6,
  );
  assert.equal(pointsOf('threads').length, 4);
  assert.equal(pointsOf('native').length, 4);
  assert.deepEqual(claimOf('threads')?.race, { decision: 'different', decidedAt: 4 });
});

test('without racing the same speeds run every repetition', async () => {
  const { pointsOf, runsOf } = await race({ native: steady(1), threads: steady(0.5) }, '', 4);
  assert.equal(pointsOf('threads').length, 4);
  assert.equal(pointsOf('native').length, 4);
  assert.equal(runsOf.get('threads'), 4);
});
