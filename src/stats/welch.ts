import tCdf from '@stdlib/stats-base-dists-t-cdf';
import { mean, variance } from './summary.js';

export interface WelchResult {
  /** mean(b) − mean(a) */
  diff: number;
  /** Standard error of the difference. */
  se: number;
  t: number;
  /** Welch–Satterthwaite degrees of freedom. */
  df: number;
  /** Two-sided p-value. */
  p: number;
}

/**
 * Welch's unequal-variance t-test of b against a. Chosen over a permutation test because the study's
 * points have 2–5 repetitions: an exact permutation test there has a p-value floor (3 vs 3 gives at
 * best p = 0.1, 2 vs 2 gives 0.33), so it could never call anything significant, while Welch's test
 * does not assume the variants share a variance (threads vs native rarely do).
 */
export function welchTest(a: readonly number[], b: readonly number[]): WelchResult {
  const na = a.length;
  const nb = b.length;
  const diff = mean(b) - mean(a);
  if (na < 2 || nb < 2) return { diff, se: Number.NaN, t: Number.NaN, df: Number.NaN, p: Number.NaN };
  const va = variance(a) / na;
  const vb = variance(b) / nb;
  const se = Math.sqrt(va + vb);
  if (se === 0) {
    // Both samples constant: identical means are no difference at all, different ones are certain.
    return {
      diff,
      se,
      t: diff === 0 ? 0 : Math.sign(diff) * Infinity,
      df: na + nb - 2,
      p: diff === 0 ? 1 : 0,
    };
  }
  const t = diff / se;
  const df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1));
  const p = Math.min(1, 2 * tCdf(-Math.abs(t), df));
  return { diff, se, t, df, p };
}
