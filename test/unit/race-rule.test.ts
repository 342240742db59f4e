/**
 * Racing's stopping rule, pure: alpha spending over the looks, the classification of comparisons,
 * which pairs stop, and the rule's false-decision rate over synthetic races with the spread of the real
 * recorded runs (test/helpers/race-sim.ts), from the one seeded PRNG.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pairKey, pairsStillRacing, type RaceRules, raceLook } from '../../src/race/rule.js';
import { lookAlpha, pocockSpent } from '../../src/stats/sequential.js';
import { seededRandom } from '../../src/study/shuffle.js';
import { raceComparison, raceTwo, recordedSpreads } from '../helpers/race-sim.js';

const RULES: RaceRules = { alpha: 0.05, practicalThreshold: 0.05, minRepetitions: 3, maxRepetitions: 8 };

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
  const clear = raceComparison('clear', [100, 102, 98], [200, 205, 195]);
  const same = raceComparison('same', [100, 100.2, 99.8], [100.1, 100, 99.9]);
  const noisy = raceComparison('noisy', [100, 150, 60], [110, 40, 170]);
  const first = raceLook(new Map(), [clear, same, noisy], 3, RULES);
  assert.deepEqual(first.get('clear'), { decision: 'different', decidedAt: 3 });
  assert.deepEqual(first.get('same'), { decision: 'equivalent', decidedAt: 3 });
  assert.deepEqual(first.get('noisy'), { decision: 'open' });
  // A later look that would say otherwise does not undo a decision.
  const flipped = raceComparison('clear', [100, 102, 98, 150], [100, 101, 99, 150]);
  const second = raceLook(first, [flipped, same, noisy], 4, RULES);
  assert.deepEqual(second.get('clear'), { decision: 'different', decidedAt: 3 });
  // Before the minimum nothing is decided.
  assert.deepEqual(raceLook(new Map(), [clear], 2, RULES).get('clear'), { decision: 'open' });
  // Pairs in an open comparison race on; the others stop.
  const racing = pairsStillRacing(first, [clear, same, noisy]);
  assert.deepEqual([...racing].sort(), [pairKey('noisy-a', 'w'), pairKey('noisy-b', 'w')].sort());
});

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
    if (raceTwo(rand, 1, pick(), RULES).verdict?.decision === 'different') falseDifferent++;
    const v = raceTwo(rand, 1.1, pick() / 4, RULES).verdict;
    if (v?.decision === 'equivalent') falseEquivalent++;
    if (v?.decision !== 'open') decided++;
  }
  assert.ok(falseDifferent / n <= RULES.alpha, `false "different": ${falseDifferent}/${n}`);
  assert.ok(falseEquivalent / n <= RULES.alpha, `false "equivalent": ${falseEquivalent}/${n}`);
  // The rule is not vacuous: with a quarter of the recorded spread, most 10% differences get decided.
  assert.ok(decided / n > 0.3, `decided ${decided}/${n}`);
});
