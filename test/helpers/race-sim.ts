import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type RaceComparison, type RaceRules, type RaceVerdict, replayLooks } from '../../src/race/rule.js';
import { compareSamples, mean, variance } from '../../src/stats/index.js';
import type { MetricRow } from '../../src/study/results.js';

/**
 * Synthetic races for racing's stopping rule, shared by its unit test and the benchmark: the noise is
 * the spread kvmio recorded in real runs (test/fixtures/runs, see its README).
 */

const RECORDED_RUNS = ['report-fixture.json', 'report-fixture-apps.json'];

/** Coefficients of variation of every (run, variant, workload, step, metric) the recorded runs repeated. */
export function recordedSpreads(): number[] {
  const groups = new Map<string, number[]>();
  for (const file of RECORDED_RUNS) {
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

/** One comparison of samples a and b as racing sees it, with the report's own means and standard errors. */
export function raceComparison(key: string, a: number[], b: number[], workload = 'w'): RaceComparison {
  return {
    key,
    a: `${key}-a`,
    b: `${key}-b`,
    workload,
    nA: a.length,
    nB: b.length,
    means: compareSamples(a, b),
  };
}

/**
 * Races two variants whose true means are 1000 and 1000·ratio, with lognormal noise of spread `cv`,
 * to the maximum; returns the verdict and the samples.
 */
export function raceTwo(
  rand: () => number,
  ratio: number,
  cv: number,
  rules: RaceRules,
): { verdict: RaceVerdict | undefined; a: number[]; b: number[] } {
  const draw = (m: number) => {
    const z = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
    return m * Math.exp(cv * z - (cv * cv) / 2);
  };
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < rules.maxRepetitions; i++) {
    a.push(draw(1000));
    b.push(draw(1000 * ratio));
  }
  const state = replayLooks(rules, rules.maxRepetitions, (n) => [
    raceComparison('x', a.slice(0, n), b.slice(0, n)),
  ]);
  return { verdict: state.verdicts.get('x'), a, b };
}
