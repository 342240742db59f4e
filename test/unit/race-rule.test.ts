/**
 * Racing's stopping rule, pure: alpha spending over the looks, the classification of comparisons,
 * which pairs stop, and the rule's false-decision rate over synthetic races with the spread of a real
 * recorded run (test/fixtures/runs/report-fixture.json, see its README), from the one seeded PRNG.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  pairKey,
  pairsStillRacing,
  type RaceComparison,
  type RaceRules,
  raceLook,
  replayLooks,
} from '../../src/race/rule.js';
import { compareSamples, mean, variance } from '../../src/stats/index.js';
import { lookAlpha, pocockSpent } from '../../src/stats/sequential.js';
import { seededRandom } from '../../src/study/shuffle.js';
import type { MetricRow } from '../../src/study/types.js';

const RULES: RaceRules = { alpha: 0.05, practicalThreshold: 0.05, minRepetitions: 3, maxRepetitions: 8 };

function comparison(key: string, a: number[], b: number[], workload = 'w'): RaceComparison {
  return {
    key,
    a: `${key}-a`,
    b: `${key}-b`,
    workload,
    nA: a.length,
    nB: b.length,
    // The report's own comparison carries the means, standard errors and degrees of freedom.
    means: compareSamples(a, b),
  };
}

test('alpha spending: the looks together spend exactly alpha, most of it at the first look', () => {
  for (const [min, max] of [
    [3, 3],
    [3, 5],
    [3, 10],
    [2, 20],
  ] as const) {
    let total = 0;
    for (let n = min; n <= max; n++) total += lookAlpha(0.05, n, min, max);
    assert.ok(Math.abs(total - 0.05) < 1e-12, `${min}..${max}: ${total}`);
  }
  assert.equal(lookAlpha(0.05, 2, 3, 5), 0);
  assert.equal(lookAlpha(0.05, 6, 3, 5), 0);
  // α·ln(1 + (e − 1)·0.6) by hand: 0.05 · ln(2.030969...) = 0.035429...
  assert.ok(Math.abs(pocockSpent(0.05, 0.6) - 0.05 * Math.log(1 + (Math.E - 1) * 0.6)) < 1e-15);
  assert.ok(lookAlpha(0.05, 3, 3, 5) > 0.035);
});

test('a look decides a clear difference and a clear sameness, leaves the noisy open, and keeps decisions', () => {
  const clear = comparison('clear', [100, 102, 98], [200, 205, 195]);
  const same = comparison('same', [100, 100.2, 99.8], [100.1, 100, 99.9]);
  const noisy = comparison('noisy', [100, 150, 60], [110, 40, 170]);
  const first = raceLook(new Map(), [clear, same, noisy], 3, RULES);
  assert.deepEqual(first.get('clear'), { decision: 'different', decidedAt: 3 });
  assert.deepEqual(first.get('same'), { decision: 'equivalent', decidedAt: 3 });
  assert.deepEqual(first.get('noisy'), { decision: 'open' });
  // A later look that would say otherwise does not undo a decision.
  const flipped = comparison('clear', [100, 102, 98, 150], [100, 101, 99, 150]);
  const second = raceLook(first, [flipped, same, noisy], 4, RULES);
  assert.deepEqual(second.get('clear'), { decision: 'different', decidedAt: 3 });
  // Before the minimum nothing is decided.
  assert.deepEqual(raceLook(new Map(), [clear], 2, RULES).get('clear'), { decision: 'open' });
  // Pairs in an open comparison race on; the others stop.
  const racing = pairsStillRacing(first, [clear, same, noisy]);
  assert.deepEqual([...racing].sort(), [pairKey('noisy-a', 'w'), pairKey('noisy-b', 'w')].sort());
});

/** Coefficients of variation of every (variant, workload, metric) of a real run with a mean > 0. */
function recordedSpreads(): number[] {
  const doc = JSON.parse(
    readFileSync(
      fileURLToPath(new URL('../../../test/fixtures/runs/report-fixture.json', import.meta.url)),
      'utf8',
    ),
  ) as { rows: MetricRow[] };
  const groups = new Map<string, number[]>();
  for (const r of doc.rows) {
    if (!/clat_mean_ns$|\.iops$|bw_bytes$/.test(r.metric) || r.step !== null) continue;
    const k = JSON.stringify([r.variant, r.workload, r.metric]);
    groups.set(k, [...(groups.get(k) ?? []), r.value]);
  }
  return [...groups.values()]
    .filter((v) => v.length >= 2 && mean(v) > 0)
    .map((v) => Math.sqrt(variance(v)) / mean(v));
}

/** Races two variants with lognormal noise of spread `cv` to the end; returns the decision. */
function simulate(rand: () => number, ratio: number, cv: number, rules: RaceRules) {
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
    comparison('x', a.slice(0, n), b.slice(0, n)),
  ]);
  return state.verdicts.get('x');
}

test('false decisions over 4,000 synthetic races with recorded spreads stay within alpha', () => {
  const spreads = recordedSpreads();
  assert.ok(spreads.length > 20, `recorded spreads: ${spreads.length}`);
  const rand = seededRandom('race-false-decisions');
  const pick = () => spreads[Math.floor(rand() * spreads.length)] as number;
  const n = 2000;
  // No difference: deciding "different" is the false decision.
  let falseDifferent = 0;
  // A 10% difference (beyond the 5% threshold): "equivalent" is the false decision.
  let falseEquivalent = 0;
  let decided = 0;
  for (let i = 0; i < n; i++) {
    if (simulate(rand, 1, pick(), RULES)?.decision === 'different') falseDifferent++;
    const v = simulate(rand, 1.1, pick() / 4, RULES);
    if (v?.decision === 'equivalent') falseEquivalent++;
    if (v?.decision !== 'open') decided++;
  }
  assert.ok(falseDifferent / n <= RULES.alpha, `false "different": ${falseDifferent}/${n}`);
  assert.ok(falseEquivalent / n <= RULES.alpha, `false "equivalent": ${falseEquivalent}/${n}`);
  // The rule is not vacuous: with a quarter of the recorded spread, most 10% differences get decided.
  assert.ok(decided / n > 0.3, `decided ${decided}/${n}`);
});
