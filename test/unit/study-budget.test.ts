/** --budget on the iothreads preset: windows keep their floors, and the plan drops rounds and variants instead. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  fitToBudget,
  PGBENCH_CONNECT_SECONDS_PER_CLIENT,
  RUNTIME_FLOOR_SECONDS,
  windowFloorSeconds,
} from '../../src/study/budget.js';
import { loadPreset } from '../../src/study/load.js';
import { planStudy } from '../../src/study/plan.js';
import type { Workload } from '../../src/study/types.js';
import { UserError } from '../../src/util/errors.js';

const preset = loadPreset('iothreads');
const named = (ws: Workload[], name: string) => ws.find((w) => w.name === name) as Workload;
const runtime = (ws: Workload[], name: string) => {
  const w = named(ws, name);
  return w.kind === 'rsync' ? undefined : w.runtimeSeconds;
};

test('each workload kind has a floor: fio its measured minimum, pgbench time to connect its clients first', () => {
  const fio = named(preset.workloads, 'lat-randread');
  assert.equal(fio.kind, 'fio');
  assert.equal(windowFloorSeconds(fio), RUNTIME_FLOOR_SECONDS);
  const pg = named(preset.workloads, 'pgbench');
  assert.equal(pg.kind, 'pgbench');
  // 32 clients: 16 s to connect and 5 s of transactions, above the preset's own 20 s: kept whole.
  assert.equal(RUNTIME_FLOOR_SECONDS + 32 * PGBENCH_CONNECT_SECONDS_PER_CLIENT, 21);
  assert.equal(windowFloorSeconds(pg), 20);
  if (pg.kind === 'pgbench') {
    assert.equal(windowFloorSeconds({ ...pg, runtimeSeconds: 60 }), 21);
    assert.equal(windowFloorSeconds({ ...pg, clients: [1, 4], runtimeSeconds: 60 }), 7);
  }
  // A window shorter than its floor is its own floor.
  if (fio.kind === 'fio') assert.equal(windowFloorSeconds({ ...fio, runtimeSeconds: 3 }), 3);
});

test('--budget on the iothreads preset: fewer rounds, fio windows down to 5 s, pgbench never below its floor', () => {
  const full = planStudy(preset).estimatedSeconds;
  const budget = Math.round(full / 3);
  const fit = fitToBudget(preset, budget);
  assert.ok(fit.sureSeconds <= budget, `${fit.sureSeconds} > ${budget}`);
  for (const w of fit.study.workloads) {
    assert.ok(w.kind !== 'rsync');
    assert.ok(w.runtimeSeconds >= windowFloorSeconds(named(preset.workloads, w.name)), w.name);
    if (w.kind === 'fio') assert.equal(w.rampSeconds, 3, `${w.name} keeps its ramp`);
  }
  assert.equal(runtime(fit.study.workloads, 'pgbench'), 20);
  const note = fit.study.notes?.find((n) => n.startsWith('budget')) ?? '';
  assert.match(note, /repetitions 3 → 2/);
  assert.match(note, /not shortened \(at their floor\): pgbench 20s \(32 clients connect first\)/);
});

test('--budget on the iothreads preset: when floors are reached, variants go and the note names them', () => {
  const full = planStudy(preset).estimatedSeconds;
  const budget = Math.round(full / 6);
  const fit = fitToBudget(preset, budget);
  assert.ok(fit.sureSeconds <= budget);
  const kept = planStudy(fit.study, { only: fit.only });
  assert.ok(kept.variants.length < preset.variants.length && kept.variants.length >= 2);
  assert.equal(runtime(fit.study.workloads, 'pgbench'), 20);
  const note = fit.study.notes?.find((n) => n.startsWith('budget')) ?? '';
  const dropped = /variants dropped: (.*)$/.exec(note)?.[1]?.split(', ') ?? [];
  assert.deepEqual(
    dropped.sort(),
    preset.variants
      .map((v) => v.id)
      .filter((id) => !kept.variants.some((v) => v.id === id))
      .sort(),
  );
  // Below two variants at their floors nothing is left to drop: refused, with what it would need.
  const least = planStudy(
    { ...fit.study, repetitions: 2 },
    { only: kept.variants.slice(0, 2).map((v) => v.id) },
  );
  assert.throws(
    () => fitToBudget(preset, Math.floor(least.estimatedSeconds / 2)),
    (e: unknown) =>
      e instanceof UserError &&
      /--budget .* cannot hold this study: even after .*variants dropped: .* it needs/.test(e.message),
  );
});
