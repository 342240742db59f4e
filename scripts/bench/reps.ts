import { mkdirSync, rmSync } from 'node:fs';
import { mainMetric } from '../../src/engine/adaptive.js';
import type { RunEvent } from '../../src/engine/events.js';
import { runStudy } from '../../src/engine/run.js';
import { summary, tCritical } from '../../src/stats/index.js';
import { Store } from '../../src/store/store.js';
import { loadPreset } from '../../src/study/load.js';
import type { MetricRow } from '../../src/study/results.js';
import type { Study } from '../../src/study/types.js';
import { type BenchOptions, cv, fixed, qd1Workload } from './shared.js';

/**
 * Figure 5: repetitions needed to tell a 5% difference at QD1 on this machine. The run-to-run spread of
 * QD1 latency comes from a real run of one variant with a fixed count (runStudy); the sample size from a
 * two-sample t power calculation with it; then the same study in adaptive mode against the fixed count.
 */

const WORK_DIR = '/var/tmp/kvmio-bench';
const DIFFERENCE = 0.05;
const ALPHA = 0.05;
const POWER = 0.8;
/** Adaptive target: two means whose 95% CIs are within ±2.5% do not overlap when 5% apart. */
const CI_SHARE = DIFFERENCE / 2;

/**
 * Per-group n for a two-sided two-sample t test (Welch with equal n and spread: df = 2n − 2) to detect a
 * relative difference `delta` with power `power`: n = 2 (t(1−α/2, df) + t(power, df))² (cv / delta)²,
 * solved by fixed point since df depends on n.
 */
export function repetitionsFor(cvValue: number, delta = DIFFERENCE, alpha = ALPHA, power = POWER): number {
  let n = 2;
  for (let i = 0; i < 100; i++) {
    const df = Math.max(1, 2 * n - 2);
    const tAlpha = tCritical(df, 1 - alpha);
    const tBeta = tCritical(df, 2 * power - 1); // two-sided at 2p−1 is the one-sided p quantile
    const next = Math.max(2, Math.ceil(2 * (tAlpha + tBeta) ** 2 * (cvValue / delta) ** 2));
    if (next === n) break;
    n = next;
  }
  return n;
}

/** The smallest n whose 95% CI half-width, t(n−1)·cv/√n, is within `share` of the mean. */
function repetitionsForCi(cvValue: number, share: number): number {
  for (let n = 2; n < 10_000; n++) if ((tCritical(n - 1) * cvValue) / Math.sqrt(n) <= share) return n;
  return Number.POSITIVE_INFINITY;
}

function benchRepsStudy(o: BenchOptions, name: string, repetitions: number, maxRepetitions?: number): Study {
  const quick = loadPreset('quick');
  const variant =
    quick.variants.find((v) => v.id === 'blk-native-io1-4k') ??
    (quick.variants[0] as Study['variants'][number]);
  return {
    ...quick,
    name,
    source: `bench:${name}`,
    disk: { ...quick.disk, path: `${WORK_DIR}/reps.raw` },
    variants: [variant],
    baseline: false,
    repetitions,
    adaptive: maxRepetitions ? { ciShare: CI_SHARE, maxRepetitions } : undefined,
    workloads: [qd1Workload(o.runtimeSeconds, o.rampSeconds)],
  };
}

interface StudyRun {
  reps: number;
  adaptiveRounds: number;
  wallS: number;
  perRep: (metric: string) => number[];
  metric: string;
}

async function runFor(o: BenchOptions, study: Study): Promise<StudyRun> {
  const db = `${WORK_DIR}/${study.name}-${process.pid}.sqlite`;
  rmSync(db, { force: true });
  const store = Store.open(db);
  let adaptiveRounds = 0;
  const onEvent = (e: RunEvent) => {
    if (e.event === 'adaptive-round') {
      adaptiveRounds++;
      o.log(`${study.name}: adaptive round ${e.round + 1}: ${e.reasons.join('; ')}`);
    }
    if (e.event === 'point-end')
      o.log(`${study.name}: ${e.variant} ${e.status} in ${e.durationSeconds.toFixed(1)} s`);
  };
  try {
    const t0 = performance.now();
    const r = await runStudy(study, { store, onEvent, destroyData: [study.disk.path] });
    const wallS = (performance.now() - t0) / 1000;
    const rows: MetricRow[] = store.metricRows(r.runId);
    const perRep = (metric: string) =>
      [...new Set(rows.map((x) => x.rep))]
        .sort((a, b) => a - b)
        .map((rep) => rows.find((x) => x.rep === rep && x.metric === metric)?.value)
        .filter((v): v is number => v !== undefined);
    const metric = mainMetric(study.workloads[0] as Study['workloads'][number], rows) ?? 'read.iops';
    return { reps: perRep(metric).length, adaptiveRounds, wallS, perRep, metric };
  } finally {
    store.close();
    rmSync(db, { force: true });
  }
}

const ciShareOf = (values: number[]) => {
  const s = summary(values);
  return Math.abs(s.ciHalf / s.mean);
};

export async function repetitionsNeeded(o: BenchOptions): Promise<string> {
  mkdirSync(WORK_DIR, { recursive: true, mode: 0o700 });
  const fixedCount = o.quick ? 3 : Math.max(5, o.rounds);
  const maxAdaptive = o.quick ? 5 : 10;
  const fixedRun = await runFor(o, benchRepsStudy(o, 'bench-fixed', fixedCount));
  const adaptiveRun = await runFor(o, benchRepsStudy(o, 'bench-adaptive', 2, maxAdaptive));

  const lat = fixedRun.perRep('read.clat_mean_ns');
  const iops = fixedRun.perRep(fixedRun.metric);
  const cvLat = cv(lat);
  const cvIops = cv(iops);
  const nLat = repetitionsFor(cvLat);
  const nIops = repetitionsFor(cvIops);
  const adaptiveValues = adaptiveRun.perRep(adaptiveRun.metric);
  const adaptiveShare = ciShareOf(adaptiveValues);
  const fixedShare = ciShareOf(iops);
  const nCi = repetitionsForCi(cvIops, CI_SHARE);
  const reached = adaptiveShare <= CI_SHARE;
  const us = (ns: number) => fixed(ns / 1000, 1);
  return [
    `One variant (blk-native-io1-4k of the quick preset), 4k random read at QD1, ${o.rampSeconds} s ramp + ${o.runtimeSeconds} s per`,
    `repetition, run through \`runStudy\` twice in a row: a fixed count of ${fixedCount} repetitions, then adaptive mode`,
    `(\`adaptive: {ciShare: ${CI_SHARE}, maxRepetitions: ${maxAdaptive}}\`, starting from 2).`,
    '',
    `**Run-to-run spread** (fixed run, ${lat.length} repetitions): mean completion latency ${lat.map(us).join(', ')} µs, CV ${fixed(cvLat * 100, 1)}%;`,
    `${fixedRun.metric} CV ${fixed(cvIops * 100, 1)}%.`,
    '',
    `**Repetitions per variant to tell a ${DIFFERENCE * 100}% difference** (two-sided Welch t test, alpha ${ALPHA}, power ${POWER * 100}%,`,
    'n = 2 (t(1−α/2, 2n−2) + t(power, 2n−2))² (CV / 5%)², with `tCritical` from src/stats):',
    '',
    '| metric | CV | repetitions per variant |',
    '|---|---:|---:|',
    `| mean QD1 latency (read.clat_mean_ns) | ${fixed(cvLat * 100, 1)}% | ${nLat} |`,
    `| ${fixedRun.metric} | ${fixed(cvIops * 100, 1)}% | ${nIops} |`,
    '',
    `At the fixed run's ${fixed(fixedRun.wallS / fixedRun.reps, 1)} s of wall time per repetition (its whole run over its repetitions, boot included), ` +
      `${Math.min(nLat, nIops)} repetitions of one variant take ${fixed((Math.min(nLat, nIops) * fixedRun.wallS) / fixedRun.reps / 60, 0)} min; ` +
      'under KVM on a quiet host the spread, and with it the count, is far smaller (n grows with CV²).',
    '',
    `**Adaptive against a fixed count** (judged by ${adaptiveRun.metric}, the metric adaptive mode uses):`,
    '',
    '| mode | repetitions used | 95% CI half-width (share of mean) | wall s |',
    '|---|---:|---:|---:|',
    `| fixed count | ${fixedRun.reps} | ±${fixed(fixedShare * 100, 1)}% | ${fixed(fixedRun.wallS, 0)} |`,
    `| adaptive (target ±${CI_SHARE * 100}%, max ${maxAdaptive}) | ${adaptiveRun.reps} (${adaptiveRun.adaptiveRounds} adaptive round(s)) | ±${fixed(adaptiveShare * 100, 1)}% | ${fixed(adaptiveRun.wallS, 0)} |`,
    '',
    `With the fixed run's CV, a ±${CI_SHARE * 100}% CI needs ${Number.isFinite(nCi) ? nCi : 'more than 10,000'} repetitions. ` +
      (reached
        ? `Adaptive mode reached the target after ${adaptiveRun.reps} repetitions and stopped there.`
        : `Adaptive mode stopped at its maximum of ${maxAdaptive} repetitions without reaching ±${CI_SHARE * 100}%: on this loaded TCG host the spread is too large for a 5% question with a handful of runs; the figure says how many it would take.`),
  ].join('\n');
}
