import { mkdirSync, rmSync } from 'node:fs';
import { openBackend } from '../../src/backends.js';
import { chooseAccelerator } from '../../src/engine/backends.js';
import type { RunEvent } from '../../src/engine/events.js';
import { runStudy } from '../../src/engine/run.js';
import type { GuestVm } from '../../src/guest/vm.js';
import { prepareDiskFile } from '../../src/safety/disk.js';
import { lockDisk } from '../../src/safety/lock.js';
import { Store } from '../../src/store/store.js';
import { loadPreset } from '../../src/study/load.js';
import { planStudy, workloadSeconds } from '../../src/study/plan.js';
import type { Study } from '../../src/study/types.js';
import { type BenchOptions, fixed, median } from './shared.js';

/**
 * Figure 3: time to answer. The quick preset run for real through runStudy (wall time against the time
 * inside measured windows), every quick variant's live switch against a stop + boot measured side by
 * side, and the seed preset projected from its plan with those measured costs.
 */

const WORK_DIR = '/var/tmp/kvmio-bench';

function quickStudy(): Study {
  const study = loadPreset('quick');
  // Its own disk, so that another user of the quick preset's default file does not hold the lock.
  return { ...study, disk: { ...study.disk, path: `${WORK_DIR}/quick.raw` } };
}

interface QuickRun {
  wallS: number;
  fioS: number;
  windowS: number;
  points: number;
  ok: number;
  boots: number;
  switches: number;
  variants: number;
  status: string;
  /** From the runStudy call to the first point (guard, disk, host facts, run record). */
  setupS: number;
  /** Sum of the points' own durations (boot or switch, tool, result, store). */
  pointsS: number;
  /** From the last point to the return (stopping the VM, closing the run). */
  teardownS: number;
}

async function runQuick(o: BenchOptions): Promise<QuickRun> {
  const study = quickStudy();
  const plan = planStudy(study);
  const db = `${WORK_DIR}/time-to-answer-${process.pid}.sqlite`;
  rmSync(db, { force: true });
  const store = Store.open(db);
  let boots = 0;
  let firstStart: number | undefined;
  let lastEnd: number | undefined;
  let pointsS = 0;
  const onEvent = (e: RunEvent) => {
    if (e.event === 'log' && / starting \S+$/.test(e.line)) boots++;
    if (e.event === 'point-start') firstStart ??= performance.now();
    if (e.event === 'point-end') {
      lastEnd = performance.now();
      pointsS += e.durationSeconds;
      o.log(`quick: ${e.variant} ${e.status} in ${e.durationSeconds.toFixed(1)} s`);
    }
  };
  try {
    const t0 = performance.now();
    const r = await runStudy(study, { store, onEvent, destroyData: [study.disk.path] });
    const wallS = (performance.now() - t0) / 1000;
    const rows = store.metricRows(r.runId);
    const windowS = rows.filter((x) => x.metric === 'cpu.window_s').reduce((a, x) => a + x.value, 0);
    const fioS = plan.points.reduce((a, p) => {
      const w = study.workloads.find((x) => x.name === p.workload);
      return a + (w ? workloadSeconds(w) : 0);
    }, 0);
    return {
      wallS,
      fioS,
      windowS,
      points: plan.points.length,
      ok: r.ok,
      boots,
      switches: plan.liveSwitches,
      variants: plan.variants.length,
      status: r.status,
      setupS: ((firstStart ?? t0) - t0) / 1000,
      pointsS,
      teardownS: (t0 + wallS * 1000 - (lastEnd ?? t0)) / 1000,
    };
  } finally {
    store.close();
    rmSync(db, { force: true });
  }
}

interface SwapCost {
  variant: string;
  switchS: number;
  stopS: number;
  bootS: number;
}

/** For every variant of quick: a live switch to it, then a stop + fresh boot of it, side by side. */
async function swapCosts(o: BenchOptions): Promise<{ costs: SwapCost[]; accel: string }> {
  const study = quickStudy();
  const accel = await chooseAccelerator();
  await prepareDiskFile(study.disk, { destroyData: [study.disk.path] });
  const release = lockDisk(study.disk.path);
  const backend = await openBackend(study, { name: 'local', uri: study.libvirt.uri });
  await backend.stage(o.log);
  const boot = (i: number, variant: Study['variants'][number]) =>
    backend.boot({ study, variant, accel: accel.accel, name: `kvmio-bench-${process.pid}-${i}`, log: o.log });
  const variants = study.variants;
  const costs: SwapCost[] = [];
  let vm: GuestVm | undefined;
  try {
    vm = await boot(0, variants[variants.length - 1] as Study['variants'][number]);
    for (const [i, v] of variants.entries()) {
      if (!vm.canSwitchLive(v)) throw new Error(`quick variant ${v.id} cannot be switched live`);
      let t = performance.now();
      await vm.switchVariant(v);
      const switchS = (performance.now() - t) / 1000;
      t = performance.now();
      const old = vm;
      vm = undefined;
      await old.stop();
      const stopS = (performance.now() - t) / 1000;
      t = performance.now();
      vm = await boot(i + 1, v);
      const bootS = (performance.now() - t) / 1000;
      o.log(
        `${v.id}: switch ${switchS.toFixed(2)} s, stop ${stopS.toFixed(2)} s + boot ${bootS.toFixed(2)} s`,
      );
      costs.push({ variant: v.id, switchS, stopS, bootS });
    }
  } finally {
    await vm?.stop();
    release();
  }
  return { costs, accel: `${accel.accel}: ${accel.reason.split(':')[0]}` };
}

export async function timeToAnswer(o: BenchOptions): Promise<string> {
  mkdirSync(WORK_DIR, { recursive: true, mode: 0o700 });
  const quick = await runQuick(o);
  const { costs, accel } = await swapCosts(o);
  const switchS = median(costs.map((c) => c.switchS));
  const rebootS = median(costs.map((c) => c.stopS + c.bootS));
  const bootS = median(costs.map((c) => c.bootS));
  // What the run spent neither measuring nor booting/switching: tool start, result, store, probes.
  const overheadS = Math.max(
    0,
    (quick.pointsS - quick.fioS - quick.boots * bootS - quick.switches * switchS) / quick.points,
  );
  const fixedRunS = quick.setupS + quick.teardownS;
  const quickShare = quick.windowS / quick.wallS;
  const quickFioShare = quick.fioS / quick.wallS;
  const quickRebootWall = quick.wallS + quick.switches * (rebootS - switchS);

  const seed = planStudy(loadPreset('seed'));
  const seedPoints = seed.points.length;
  const seedHot =
    fixedRunS +
    seed.measureSeconds +
    seed.boots * bootS +
    seed.liveSwitches * switchS +
    seedPoints * overheadS;
  const seedReboot =
    fixedRunS +
    seed.measureSeconds +
    seed.boots * bootS +
    seed.liveSwitches * rebootS +
    seedPoints * overheadS;
  const seedVariants = seed.variants.length;

  const swapRows = costs.map(
    (c) =>
      `| ${c.variant} | ${fixed(c.switchS)} | ${fixed(c.stopS)} | ${fixed(c.bootS)} | ${fixed((c.stopS + c.bootS) / c.switchS, 1)}× |`,
  );
  const hours = (s: number) => `${(s / 3600).toFixed(2)} h`;
  const goalQuick =
    quickShare >= 0.85
      ? `**Goal met** for quick: ${fixed(quickShare * 100, 1)}% of the wall time is inside measured windows.`
      : `**Goal missed for quick**: ${fixed(quickShare * 100, 1)}% of its wall time is inside measured windows (fio running, ramp included: ${fixed(quickFioShare * 100, 1)}%). ` +
        `quick is a smoke test: ${quick.points} points of ${fixed(quick.fioS / quick.points, 0)} s each against one boot of ${fixed(bootS, 1)} s under ${accel.split(':')[0]}, ` +
        `${quick.switches} switches of ${fixed(switchS, 1)} s, ${fixed(overheadS, 1)} s per point of starting fio through the guest agent, reading its result back and storing it, and ${fixed(fixedRunS, 1)} s of run set-up and teardown; with windows this short the fixed costs dominate.`;
  const seedShare = seed.measureSeconds / seedHot;
  const goalSeed =
    seedShare >= 0.85
      ? `**Goal met** for seed: ${fixed(seedShare * 100, 1)}% inside measured windows with hot-swap (${fixed((seed.measureSeconds / seedReboot) * 100, 1)}% if every switch were a reboot).`
      : `**Goal missed for seed**: ${fixed(seedShare * 100, 1)}% with hot-swap.`;
  return [
    `**quick, run for real** (\`runStudy\` on the quick preset, ${quick.points} points, status ${quick.status}, ${quick.ok} ok, accelerator ${accel}):`,
    '',
    '| wall s | fio running s (ramp + runtime) | measured windows s (`cpu.window_s`) | share in windows | boots | boots per variant | live switches |',
    '|---:|---:|---:|---:|---:|---:|---:|',
    `| ${fixed(quick.wallS, 1)} | ${fixed(quick.fioS, 1)} | ${fixed(quick.windowS, 1)} | ${fixed(quickShare * 100, 1)}% | ${quick.boots} | ${fixed(quick.boots / quick.variants)} | ${quick.switches} |`,
    '',
    `Where the wall time went: ${fixed(quick.setupS, 1)} s before the first point (disk guard, host facts, run record), ` +
      `${fixed(quick.pointsS, 1)} s in the points (boot, switches, fio, reading results back, storing), ` +
      `${fixed(quick.teardownS, 1)} s after the last one (stopping the VM), ${fixed(quick.wallS - quick.setupS - quick.pointsS - quick.teardownS, 1)} s between points.`,
    '',
    `Had every switch been a reboot, the same run would take about ${fixed(quickRebootWall, 0)} s (share ${fixed((quick.windowS / quickRebootWall) * 100, 1)}%).`,
    '',
    goalQuick,
    '',
    '**Hot-swap against reboot, every quick variant**, measured side by side on one VM: a live switch to the',
    'variant (`switchVariant`: unplug, plug, verify), then a stop of that VM and a fresh boot of the same variant',
    '(the backend `boot`, as the engine does, until the guest agent answers):',
    '',
    '| variant | live switch s | stop s | boot s | reboot / switch |',
    '|---|---:|---:|---:|---:|',
    ...swapRows,
    '',
    `Median: switch ${fixed(switchS)} s, stop + boot ${fixed(rebootS)} s, ratio ${fixed(rebootS / switchS, 1)}×.`,
    '',
    `**seed, from its plan** (${seedPoints} points, ${seedVariants} variants, ${seed.boots} boots = ${fixed(seed.boots / seedVariants)} per variant, ${seed.liveSwitches} live switches; not run: its measuring alone takes ${hours(seed.measureSeconds)}),`,
    `with the costs measured above (boot ${fixed(bootS, 1)} s, switch ${fixed(switchS, 1)} s, reboot ${fixed(rebootS, 1)} s, ${fixed(overheadS, 1)} s per point and ${fixed(fixedRunS, 1)} s of set-up and teardown from the quick run):`,
    '',
    '| | wall | share in measured windows |',
    '|---|---:|---:|',
    `| hot-swap (the plan) | ${hours(seedHot)} | ${fixed((seed.measureSeconds / seedHot) * 100, 1)}% |`,
    `| reboot for every switch | ${hours(seedReboot)} | ${fixed((seed.measureSeconds / seedReboot) * 100, 1)}% |`,
    '',
    goalSeed,
    "The seed projection counts a point's whole ramp + runtime (and pgbench's set-up) as measuring time, as the plan does.",
  ].join('\n');
}
