import { type MetricSense, metricSense } from './direction.js';
import { holmAdjust } from './holm.js';
import { mean, tCritical, variance } from './summary.js';
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
  /** Half-width of the 95% CI of the relative difference. */
  relCiHalf: number;
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
 * Compares candidate b against reference a. The relative difference's CI uses the delta method for
 * the ratio of two means (se(R)/R = sqrt((se_b/m_b)² + (se_a/m_a)²)) with Welch's degrees of freedom:
 * it accounts for the noise of both means, which dividing the difference CI by mean(a) would not.
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
  const ratio = meanB / meanA;
  const relDiff = ratio - 1;
  let relCiHalf = Number.NaN;
  if (a.length >= 2 && b.length >= 2) {
    const relSe =
      Math.abs(ratio) * Math.sqrt(variance(b) / b.length / meanB ** 2 + variance(a) / a.length / meanA ** 2);
    relCiHalf = relSe === 0 ? 0 : tCritical(welch.df) * relSe;
  }
  const base = {
    nA: a.length,
    nB: b.length,
    meanA,
    meanB,
    relDiff,
    improvement: sense.better === 'higher' ? relDiff : -relDiff,
    relCiHalf,
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
  if (c.nA < 2 || c.nB < 2 || !Number.isFinite(c.pAdjusted) || !Number.isFinite(c.relDiff)) {
    return { kind: 'too-noisy', phrase: `too noisy to tell (n = ${Math.min(c.nA, c.nB)})` };
  }
  const p = formatP(c.pAdjusted);
  if (c.pAdjusted >= c.alpha) {
    if (c.relCiHalf > c.maxCiShare) {
      return { kind: 'too-noisy', phrase: `too noisy to tell (± ${formatPct(c.relCiHalf)}, ${p})` };
    }
    return { kind: 'no-significant-difference', phrase: `no significant difference (${p})` };
  }
  const magnitude = `${formatPct(Math.abs(c.improvement))} ± ${formatPct(c.relCiHalf)}`;
  const word = c.improvement >= 0 ? c.sense.betterWord : c.sense.worseWord;
  if (Math.abs(c.improvement) < c.practicalThreshold) {
    return { kind: 'no-real-difference', phrase: `no real difference (${word} by ${magnitude}, ${p})` };
  }
  return {
    kind: c.improvement >= 0 ? 'better' : 'worse',
    phrase: `${word} by ${magnitude} (${p})`,
  };
}

/** Holm–Bonferroni over every comparison of one report; verdicts are re-judged on adjusted p. */
export function controlFamily(comparisons: readonly Comparison[]): Comparison[] {
  const adjusted = holmAdjust(comparisons.map((c) => c.p));
  return comparisons.map((c, i) => {
    const next = { ...c, pAdjusted: adjusted[i] ?? Number.NaN };
    return { ...next, ...judge(next) };
  });
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
