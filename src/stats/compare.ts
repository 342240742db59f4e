import { type MetricSense, metricSense } from './direction.js';
import { intervalWithin, type RatioInterval, ratioInterval } from './fieller.js';
import { holmAdjust } from './holm.js';
import { mean, variance } from './summary.js';
import { welchTest } from './welch.js';

export type VerdictKind =
  | 'better'
  | 'worse'
  | 'no-real-difference'
  | 'no-significant-difference'
  | 'too-noisy';

export interface CompareOptions {
  /** Metric name, for the direction and the words; or give `sense`. */
  metric?: string;
  sense?: MetricSense;
  alpha?: number;
  /** Relative differences below this share are "no real difference" even when significant. */
  practicalThreshold?: number;
  /** A non-significant result whose relative-difference CI is wider than ± this share is "too noisy". */
  maxCiShare?: number;
}

export interface Comparison {
  nA: number;
  nB: number;
  meanA: number;
  meanB: number;
  /** (meanB − meanA) / meanA. */
  relDiff: number;
  /** Relative change of b over a in the "better" direction: +0.12 = b is 12% better. */
  improvement: number;
  /** Standard errors of the two means (NaN with fewer than two values). */
  seA: number;
  seB: number;
  /** Fieller interval of meanB / meanA at 1 − alpha (at the Holm-adjusted level once controlled). */
  interval: RatioInterval;
  df: number;
  p: number;
  /** p after multiple-comparison control (equals p until `controlFamily` ran). */
  pAdjusted: number;
  kind: VerdictKind;
  phrase: string;
  sense: MetricSense;
  alpha: number;
  practicalThreshold: number;
  maxCiShare: number;
}

export const DEFAULTS = { alpha: 0.05, practicalThreshold: 0.05, maxCiShare: 0.5 } as const;

/**
 * Compares candidate b against reference a: Welch's test for the p-value, Fieller's interval for the
 * ratio of the means. Both are symmetric in the sides, so swapping a and b mirrors the verdict
 * (better ↔ worse, everything else the same); the practical threshold is a band of ratios,
 * [1/(1+t), 1+t], for the same reason.
 */
export function compareSamples(
  a: readonly number[],
  b: readonly number[],
  opts: CompareOptions = {},
): Comparison {
  const sense = opts.sense ?? metricSense(opts.metric ?? '');
  const alpha = opts.alpha ?? DEFAULTS.alpha;
  const practicalThreshold = opts.practicalThreshold ?? DEFAULTS.practicalThreshold;
  const maxCiShare = opts.maxCiShare ?? DEFAULTS.maxCiShare;
  const meanA = mean(a);
  const meanB = mean(b);
  const welch = welchTest(a, b);
  const relDiff = meanB / meanA - 1;
  const seA = Math.sqrt(variance(a) / a.length);
  const seB = Math.sqrt(variance(b) / b.length);
  const base = {
    nA: a.length,
    nB: b.length,
    meanA,
    meanB,
    relDiff,
    improvement: sense.better === 'higher' ? relDiff : -relDiff,
    seA,
    seB,
    interval: ratioInterval({ meanA, meanB, seA, seB, df: welch.df }, 1 - alpha),
    df: welch.df,
    p: welch.p,
    pAdjusted: welch.p,
    sense,
    alpha,
    practicalThreshold,
    maxCiShare,
  };
  return { ...base, ...judge(base) };
}

type Judged = Omit<Comparison, 'kind' | 'phrase'>;

function judge(c: Judged): { kind: VerdictKind; phrase: string } {
  const iv = c.interval;
  if (c.nA < 2 || c.nB < 2 || !Number.isFinite(c.pAdjusted) || !Number.isFinite(c.relDiff)) {
    return { kind: 'too-noisy', phrase: `too noisy to tell (n = ${Math.min(c.nA, c.nB)})` };
  }
  if (!(c.meanA > 0 && c.meanB > 0)) {
    return {
      kind: 'too-noisy',
      phrase: `too noisy to tell (a mean is not positive, ${formatP(c.pAdjusted)})`,
    };
  }
  const p = formatP(c.pAdjusted);
  const small = Math.abs(Math.log(c.meanB / c.meanA)) < Math.log(1 + c.practicalThreshold);
  if (c.pAdjusted < c.alpha) {
    const word = c.improvement >= 0 ? c.sense.betterWord : c.sense.worseWord;
    const magnitude = `${word} by ${formatPct(Math.abs(c.improvement))}, CI ${improvementRange(c, iv)}`;
    if (small) return { kind: 'no-real-difference', phrase: `no real difference (${magnitude}, ${p})` };
    return {
      kind: c.improvement >= 0 ? 'better' : 'worse',
      phrase: `${word} by ${formatPct(Math.abs(c.improvement))} (CI ${improvementRange(c, iv)}, ${p})`,
    };
  }
  const ci = `CI ${relativeRange(iv)}`;
  if (intervalWithin(iv, c.practicalThreshold)) {
    return {
      kind: 'no-real-difference',
      phrase: `no real difference (within ${formatPct(c.practicalThreshold)}: ${ci}, ${p})`,
    };
  }
  // A large estimated difference of unknown sign is never worded as "no difference".
  if (small && intervalWithin(iv, c.maxCiShare)) {
    return { kind: 'no-significant-difference', phrase: `no significant difference (${ci}, ${p})` };
  }
  return { kind: 'too-noisy', phrase: `too noisy to tell (${ci}, ${p})` };
}

/** The interval of b relative to a, signed: "-8% to +12%", "+25% or more". */
function relativeRange(iv: RatioInterval): string {
  const signed = (r: number) => `${r >= 1 ? '+' : '-'}${formatPct(Math.abs(r - 1))}`;
  if (Number.isNaN(iv.low)) return 'undefined';
  if (iv.low === 0 && iv.high === Number.POSITIVE_INFINITY) return 'unbounded';
  if (iv.high === Number.POSITIVE_INFINITY) return `${signed(iv.low)} or more`;
  return `${signed(iv.low)} to ${signed(iv.high)}`;
}

/** The interval of the improvement's size in the verdict's own direction: "6% to 10%", "25% or more". */
function improvementRange(c: Judged, iv: RatioInterval): string {
  if (Number.isNaN(iv.low)) return 'undefined';
  const ends = (c.sense.better === 'higher' ? [iv.low - 1, iv.high - 1] : [1 - iv.high, 1 - iv.low]).map(
    Math.abs,
  );
  const [lo, hi] = ends.sort((x, y) => x - y) as [number, number];
  return hi === Number.POSITIVE_INFINITY
    ? `${formatPct(lo)} or more`
    : `${formatPct(lo)} to ${formatPct(hi)}`;
}

/** Holm–Bonferroni over every comparison of one report; verdicts are re-judged on adjusted p. */
export function controlFamily(comparisons: readonly Comparison[]): Comparison[] {
  const adjusted = holmAdjust(comparisons.map((c) => c.p));
  return comparisons.map((c, i) => {
    const pAdjusted = adjusted[i] ?? Number.NaN;
    const next = { ...c, pAdjusted, interval: adjustedInterval(c, pAdjusted) };
    return { ...next, ...judge(next) };
  });
}

/**
 * The interval at the level Holm's adjustment gives this comparison (alpha · p / p_adjusted), so that
 * it excludes 1 exactly when the adjusted p is below alpha.
 */
function adjustedInterval(c: Comparison, pAdjusted: number): RatioInterval {
  if (!(c.p > 0) || !(pAdjusted > c.p)) return c.interval;
  return ratioInterval(c, 1 - (c.alpha * c.p) / pAdjusted);
}

/** "p = 0.002", "p = 0.41", "p < 0.001". */
export function formatP(p: number): string {
  if (!Number.isFinite(p)) return 'p = n/a';
  if (p < 0.001) return 'p < 0.001';
  if (p < 0.01) return `p = ${p.toFixed(3)}`;
  return `p = ${p.toFixed(2)}`;
}

/** 0.123 → "12%", 0.034 → "3%", 0.004 → "0.4%". */
export function formatPct(share: number): string {
  const pct = share * 100;
  if (!Number.isFinite(pct)) return '?%';
  return Math.abs(pct) >= 1 ? `${pct.toFixed(0)}%` : `${pct.toFixed(1)}%`;
}
