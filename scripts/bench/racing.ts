import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { RunEvent } from '../../src/engine/events.js';
import { runStudy } from '../../src/engine/run.js';
import { type RaceComparison, type RaceRules, replayLooks } from '../../src/race/rule.js';
import { buildModel } from '../../src/report/charts.js';
import { buildConclusion } from '../../src/report/conclusion.js';
import { loadReportData } from '../../src/report/data.js';
import { compareSamples, mean, variance } from '../../src/stats/index.js';
import { Store } from '../../src/store/store.js';
import { parseStudy } from '../../src/study/load.js';
import { seededRandom } from '../../src/study/shuffle.js';
import type { MetricRow } from '../../src/study/types.js';
import { type BenchOptions, fixed } from './shared.js';

/**
 * Figure 6: racing. (a) The stopping rule's error rates over many synthetic races whose noise is the
 * spread kvmio recorded in real runs (test/fixtures/runs); (b) one small study run on this machine
 * fixed and raced: share of points, wall time, and whether the verdicts agree.
 */

const RULES: RaceRules = { alpha: 0.05, practicalThreshold: 0.05, minRepetitions: 3, maxRepetitions: 8 };

/** Coefficients of variation of every (variant, workload, metric) the recorded runs repeated. */
function recordedSpreads(): number[] {
  const groups = new Map<string, number[]>();
  for (const file of ['report-fixture.json', 'report-fixture-apps.json']) {
    const path = fileURLToPath(new URL(`../../../test/fixtures/runs/${file}`, import.meta.url));
    const doc = JSON.parse(readFileSync(path, 'utf8')) as { rows: MetricRow[] };
    for (const r of doc.rows) {
      if (!/clat_mean_ns$|\.iops$|bw_bytes$|^pgbench\.tps$|^rsync\.seconds$/.test(r.metric)) continue;
      const k = JSON.stringify([file, r.variant, r.workload, r.step, r.metric]);
      groups.set(k, [...(groups.get(k) ?? []), r.value]);
    }
  }
  return [...groups.values()]
    .filter((v) => v.length >= 2 && mean(v) > 0)
    .map((v) => Math.sqrt(variance(v)) / mean(v));
}

function comparison(a: number[], b: number[]): RaceComparison {
  return {
    key: 'x',
    a: 'a',
    b: 'b',
    workload: 'w',
    nA: a.length,
    nB: b.length,
    // The report's own comparison carries the means, standard errors and degrees of freedom.
    means: compareSamples(a, b),
  };
}

interface SimRow {
  ratio: number;
  spread: string;
  different: number;
  wrongSign: number;
  equivalent: number;
  open: number;
  reps: number;
}

function simulate(ratio: number, spreadScale: number, spreads: number[], races: number): SimRow {
  const rand = seededRandom(`racing-sim:${ratio}:${spreadScale}`);
  const draw = (m: number, cv: number) => {
    const z = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
    return m * Math.exp(cv * z - (cv * cv) / 2);
  };
  const row = { different: 0, wrongSign: 0, equivalent: 0, open: 0, reps: 0 };
  for (let i = 0; i < races; i++) {
    const cv = (spreads[Math.floor(rand() * spreads.length)] as number) * spreadScale;
    const a = Array.from({ length: RULES.maxRepetitions }, () => draw(1000, cv));
    const b = Array.from({ length: RULES.maxRepetitions }, () => draw(1000 * ratio, cv));
    const v = replayLooks(RULES, RULES.maxRepetitions, (n) => [
      comparison(a.slice(0, n), b.slice(0, n)),
    ]).verdicts.get('x');
    const at = v?.decidedAt ?? RULES.maxRepetitions;
    row.reps += at;
    if (v?.decision === 'different') {
      const m = mean(b.slice(0, at)) / mean(a.slice(0, at));
      if (ratio !== 1 && m > 1 !== ratio > 1) row.wrongSign++;
      else row.different++;
    } else if (v?.decision === 'equivalent') row.equivalent++;
    else row.open++;
  }
  return { ratio, spread: spreadScale === 1 ? 'as recorded' : `recorded × ${spreadScale}`, ...row };
}

function simulation(races: number): string {
  const spreads = recordedSpreads();
  const sorted = [...spreads].sort((x, y) => x - y);
  const rows = [
    simulate(1, 1, spreads, races),
    simulate(1, 0.1, spreads, races),
    simulate(1, 0.02, spreads, races),
    simulate(1.1, 0.1, spreads, races),
    simulate(1.1, 0.02, spreads, races),
    simulate(2, 1, spreads, races),
    simulate(2, 0.1, spreads, races),
  ];
  const share = (n: number) => `${fixed((100 * n) / races, 1)}%`;
  const falseOf = (r: SimRow) => (r.ratio === 1 ? r.different + r.wrongSign : r.equivalent + r.wrongSign);
  return [
    `Races of two variants, ${RULES.minRepetitions} to ${RULES.maxRepetitions} repetitions, alpha ${RULES.alpha}, practical threshold ±${RULES.practicalThreshold * 100}%; ${races.toLocaleString('en-US')} races per row. Each race draws one spread from the ${spreads.length} coefficients of variation kvmio recorded in test/fixtures/runs (median ${fixed(100 * (sorted[Math.floor(sorted.length / 2)] ?? 0), 0)}%: those are 2 s windows under TCG on a loaded 2-core host), scaled as the row says, and lognormal noise with it. A false decision is "different" when the true ratio is 1, and "equivalent" or the wrong sign when it is 1.1 or 2.`,
    '',
    '| true ratio B/A | spread | different | equivalent | open at the maximum | false decisions | mean repetitions |',
    '|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.ratio} | ${r.spread} | ${share(r.different)} | ${share(r.equivalent)} | ${share(r.open)} | **${share(falseOf(r))}** | ${fixed(r.reps / races, 2)} |`,
    ),
    '',
    rows.every((r) => falseOf(r) / races <= RULES.alpha)
      ? `Every false-decision rate is within the stated alpha of ${RULES.alpha * 100}% (the bound is conservative: a union over looks and comparisons). The same property, with a seeded PRNG, is a unit test (test/unit/race-rule.test.ts).`
      : `**A false-decision rate exceeds the stated alpha of ${RULES.alpha * 100}%**: see the rows above.`,
  ].join('\n');
}

// ---- (b) fixed against racing on this machine ---------------------------------------------------------

const REAL_STUDY = (disk: string) => `name: bench-racing
disk: { path: ${disk}, size: 256MiB }
guest: { vcpus: 1, memory: 512MiB }
matrix: { aio: [native], iothreads: [0, 1] }
repetitions: 6
workloads:
  - { kind: rsync, name: rsync, files: 200, size: 16KiB, seed: 1 }
`;

interface RealRun {
  runId: string;
  wallS: number;
  points: number;
  recommended?: string;
  verdicts: Map<string, string>;
}

async function realRun(dir: string, race: boolean): Promise<RealRun> {
  const study = parseStudy(REAL_STUDY(`${dir}/racing.raw`), 'bench-racing.yaml');
  if (race) study.race = { minRepetitions: 3 };
  const store = Store.open(`${dir}/racing-${race ? 'race' : 'fixed'}-${process.pid}.sqlite`);
  try {
    const started = performance.now();
    let points = 0;
    const result = await runStudy(study, {
      store,
      onEvent: (e: RunEvent) => {
        if (e.event === 'point-end') points++;
      },
    });
    const wallS = (performance.now() - started) / 1000;
    const conclusion = buildConclusion(buildModel(loadReportData(store, [result.runId])));
    const verdicts = new Map(
      conclusion.claims.map((c) => [`${c.b.variant} vs ${c.a.variant}: ${c.measure}`, c.comparison.kind]),
    );
    return {
      runId: result.runId,
      wallS,
      points,
      recommended: [...conclusion.recommended.values()][0]?.variant,
      verdicts,
    };
  } finally {
    store.close();
  }
}

export async function racing(o: BenchOptions): Promise<string> {
  const parts = ['### (a) The stopping rule over recorded variance', '', simulation(20000), ''];
  if (o.quick) {
    parts.push(
      '### (b) The same study fixed and raced on this machine',
      '',
      'Not measured in this invocation (`--quick` runs the simulation only); `node dist/scripts/bench.js --only racing` runs the study below fixed and raced through runStudy and reports points, wall time and every verdict that differs.',
    );
    return parts.join('\n');
  }
  const dir = '/var/tmp/kvmio-bench';
  const fixedRun = await realRun(dir, false);
  const raced = await realRun(dir, true);
  const keys = [...new Set([...fixedRun.verdicts.keys(), ...raced.verdicts.keys()])];
  const disagree = keys.filter((k) => fixedRun.verdicts.get(k) !== raced.verdicts.get(k));
  parts.push(
    '### (b) The same study fixed and raced on this machine',
    '',
    '```yaml',
    REAL_STUDY('/var/tmp/kvmio-bench/racing.raw').trimEnd(),
    '```',
    '',
    '| | points | wall time | recommendation |',
    '|---|---|---|---|',
    `| fixed (${fixedRun.runId}) | ${fixedRun.points} | ${fixed(fixedRun.wallS, 0)} s | ${fixedRun.recommended ?? 'none'} |`,
    `| raced (${raced.runId}) | ${raced.points} (${fixed((100 * raced.points) / fixedRun.points, 0)}%) | ${fixed(raced.wallS, 0)} s | ${raced.recommended ?? 'none'} |`,
    '',
    disagree.length === 0
      ? `The ${keys.length} verdict(s) agree.`
      : `Verdicts that differ: ${disagree.map((k) => `${k}: fixed ${fixedRun.verdicts.get(k)}, raced ${raced.verdicts.get(k)}`).join('; ')}.`,
  );
  return parts.join('\n');
}
