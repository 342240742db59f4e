/**
 * Reference values were computed independently with SciPy 1.17.1 (Python 3, Debian bookworm) on
 * this host:
 *   scipy.stats.ttest_ind(x, y, equal_var=False)  → statistic, pvalue, df
 *   numpy std(ddof=1), scipy.stats.t.ppf(0.975, n-1) * sd / sqrt(n)  → CI half-width
 * The samples are made up (pure statistics, no measurement is claimed).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  compareSamples,
  controlFamily,
  formatP,
  holmAdjust,
  metricSense,
  summary,
  tCritical,
  welchTest,
} from '../../src/stats/index.js';

const A = [101.2, 98.7, 103.4, 99.9, 100.8];
const B = [91.5, 93.2, 90.1, 92.8, 94.0];
const C = [100.0, 102.0];
const D = [97.0, 106.0, 99.5];

function close(actual: number, expected: number, rel = 1e-9): void {
  assert.ok(Math.abs(actual - expected) <= rel * Math.abs(expected) + 1e-15, `${actual} ≉ ${expected}`);
}

test('summary: mean, sd and Student-t 95% CI match SciPy', () => {
  const s = summary(A);
  close(s.mean, 100.80000000000001);
  close(s.sd, 1.7421251390184351);
  close(s.ciHalf, 2.1631340654849183);
  close(summary(C).ciHalf, 12.706204736174694);
  close(summary(D).sd, 4.645786621588784);
  close(summary(D).ciHalf, 11.54077374743386);
  assert.equal(summary([5]).n, 1);
  assert.ok(Number.isNaN(summary([5]).ciHalf));
});

test('t critical values match scipy.stats.t.ppf', () => {
  close(tCritical(1), 12.706204736174694, 1e-7);
  close(tCritical(4), 2.7764451051977934, 1e-7);
});

test("Welch's t-test matches scipy ttest_ind(equal_var=False)", () => {
  // welchTest(a, b) tests b − a; scipy's statistic is for x − y, so the sign flips.
  const cases: [number[], number[], number, number, number][] = [
    [A, B, 8.165934887176272, 4.1221981498230784e-5, 7.875480693892208],
    [A, C, -0.15776913966690537, 0.8871086794728238, 2.3646369684068653],
    [A, D, -0.011934142938569679, 0.9914182237372593, 2.343378877722924],
    [C, D, 0.05822225097395986, 0.9579056582605638, 2.498098259009946],
  ];
  for (const [x, y, t, p, df] of cases) {
    const r = welchTest(y, x);
    close(r.t, t, 1e-9);
    close(r.df, df, 1e-9);
    close(r.p, p, 1e-6);
  }
});

test("Fieller's interval of the ratio matches the quadratic solved with NumPy", () => {
  // numpy.roots([mA² − t²vA, −2·mA·mB, mB² − t²vB]) with t = scipy.stats.t.ppf(0.975, Welch df),
  // vX = var(X, ddof=1)/nX: [0.89344402, 0.93888732] for B/A and [1.06509054, 1.1192643] for A/B.
  const c = compareSamples(A, B, { metric: 'read.clat_mean_ns' });
  close(c.relDiff, -0.08412698412698427, 1e-9);
  close(c.interval.low, 0.89344402, 1e-7);
  close(c.interval.high, 0.93888732, 1e-7);
  const back = compareSamples(B, A, { metric: 'read.clat_mean_ns' });
  close(back.interval.low, 1.06509054, 1e-7);
  close(back.interval.high, 1.1192643, 1e-7);
  // Lower latency is better: B is 8% faster.
  assert.equal(c.kind, 'better');
  assert.equal(c.phrase, 'faster by 8% (CI 6% to 11%, p < 0.001)');
  assert.equal(back.kind, 'worse');
  // The same numbers as IOPS mean B is worse.
  const iops = compareSamples(A, B, { metric: 'read.iops' });
  assert.equal(iops.kind, 'worse');
  assert.equal(iops.phrase, 'slower by 8% (CI 6% to 11%, p < 0.001)');
  const cpu = compareSamples(A, B, { metric: 'cpu.pct_per_kiops' });
  assert.equal(cpu.phrase, 'cheaper by 8% (CI 6% to 11%, p < 0.001)');
});

test('verdicts: equivalent, not significant, too noisy, below the practical threshold', () => {
  // Not significant and the whole interval inside ±5% → equivalent: "no real difference".
  const same = compareSamples([100, 101, 99, 100.5], [100.2, 100.9, 99.4, 100.1], { metric: 'read.iops' });
  assert.equal(same.kind, 'no-real-difference');
  assert.match(
    same.phrase,
    /^no real difference \(within 5%: CI -\d(\.\d)?% to \+\d(\.\d)?%, p = 0\.\d\d\)$/,
  );
  // Not significant, small estimate, interval within ±50% but wider than ±5% → no significant difference.
  const loose = compareSamples([100, 110, 90, 105], [101, 112, 92, 99], { metric: 'read.iops' });
  assert.equal(loose.kind, 'no-significant-difference');
  assert.match(loose.phrase, /^no significant difference \(CI -\d+% to \+\d+%, p = 0\.\d\d\)$/);
  // A large estimated difference whose sign is not known is never "no difference".
  const large = compareSamples([100, 130, 80, 110], [120, 150, 95, 135], { metric: 'read.iops' });
  assert.ok(large.p >= 0.05);
  assert.equal(large.kind, 'too-noisy');
  // n < 2 → too noisy.
  assert.equal(compareSamples([1], [2, 3]).phrase, 'too noisy to tell (n = 1)');
  // Not significant and the interval wider than ±50% → too noisy.
  const wide = compareSamples([10, 30], [5, 60], { metric: 'read.iops' });
  assert.equal(wide.kind, 'too-noisy');
  assert.match(wide.phrase, /^too noisy to tell \(CI unbounded, p = /);
  // Significant but 1% → no real difference.
  const tiny = compareSamples([100, 100.1, 99.9, 100], [101, 101.1, 100.9, 101], { metric: 'read.iops' });
  assert.ok(tiny.p < 0.05);
  assert.equal(tiny.kind, 'no-real-difference');
  assert.match(tiny.phrase, /^no real difference \(faster by 1%, CI 0\.\d% to 1%, p < 0\.001\)$/);
});

test('Holm–Bonferroni matches a hand computation (Holm 1979 step-down)', () => {
  // sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → monotone max 0.06.
  const adj = holmAdjust([0.01, 0.04, 0.03, 0.005]);
  assert.deepEqual(
    adj.map((x) => Number(x.toFixed(10))),
    [0.03, 0.06, 0.06, 0.02],
  );
  // NaN stays NaN and does not enlarge the family.
  const withNaN = holmAdjust([0.02, Number.NaN, 0.01]);
  assert.ok(Number.isNaN(withNaN[1]));
  assert.deepEqual(
    withNaN.map((x) => (Number.isNaN(x) ? -1 : Number(x.toFixed(10)))),
    [0.02, -1, 0.02],
  );
  // 0.5·2 = 1 caps at 1; monotonicity carries 1 to the larger p.
  assert.deepEqual(holmAdjust([0.5, 0.9]), [1, 1]);
});

test('controlFamily re-judges on the adjusted p-value', () => {
  // p ≈ 0.03 alone is significant; in a family of 3 with two null results it is not.
  const x = compareSamples([10, 10.4, 10.2], [10.9, 11.6, 11.2], { metric: 'read.iops' });
  assert.ok(x.p < 0.05 && x.p > 0.0167, `p = ${x.p}`);
  assert.equal(x.kind, 'better');
  const nulls = [compareSamples(A, C), compareSamples(A, D)];
  const [adjusted] = controlFamily([x, ...nulls]);
  assert.ok(adjusted && adjusted.pAdjusted > 0.05);
  assert.notEqual(adjusted?.kind, 'better');
});

test('formatting and metric directions', () => {
  assert.equal(formatP(0.002), 'p = 0.002');
  assert.equal(formatP(0.41), 'p = 0.41');
  assert.equal(formatP(0.0001), 'p < 0.001');
  assert.equal(metricSense('read.clat_p99_ns').better, 'lower');
  assert.equal(metricSense('write.iops').better, 'higher');
  assert.equal(metricSense('read.bw_bytes').better, 'higher');
  assert.equal(metricSense('pgbench.tps').better, 'higher');
  assert.equal(metricSense('pgbench.lat_mean_ms').better, 'lower');
  assert.equal(metricSense('rsync.seconds').better, 'lower');
  assert.equal(metricSense('cpu.pct_per_kiops').betterWord, 'cheaper');
  assert.equal(metricSense('probe.qmp_rtt_p99_ms').better, 'lower');
});

test('identical constant samples: p = 1, an interval of exactly 1, no real difference', () => {
  const c = compareSamples([5, 5, 5], [5, 5, 5], { metric: 'read.iops' });
  assert.equal(c.p, 1);
  assert.deepEqual([c.interval.low, c.interval.high], [1, 1]);
  assert.equal(c.kind, 'no-real-difference');
});
