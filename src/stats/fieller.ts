import { tCritical } from './summary.js';

/**
 * Confidence interval of the ratio meanB / meanA by Fieller's theorem, for independent means with
 * standard errors seA, seB and Welch's degrees of freedom. Chosen over a delta-method interval
 * relative to the reference because it is symmetric under swapping the sides — the interval of a/b is
 * exactly the reciprocal of the interval of b/a — and because it excludes 1 exactly when Welch's test
 * rejects at the same level, so a verdict's interval and its p-value never disagree.
 */
export interface RatioInterval {
  /** meanB / meanA. */
  ratio: number;
  /**
   * The interval's part on the positive ratios (the means of a time or a rate are positive): low may be
   * 0 and high +∞ when a mean is not distinguishable from zero; both NaN when a mean is not positive.
   */
  low: number;
  high: number;
  confidence: number;
}

export interface MeanPair {
  meanA: number;
  meanB: number;
  /** Standard errors of the means; NaN with fewer than two values. */
  seA: number;
  seB: number;
  /** Welch–Satterthwaite degrees of freedom. */
  df: number;
}

export function ratioInterval(m: MeanPair, confidence: number): RatioInterval {
  const { meanA, meanB } = m;
  const ratio = meanB / meanA;
  const vA = m.seA ** 2;
  const vB = m.seB ** 2;
  if (!(meanA > 0 && meanB > 0)) return { ratio, low: Number.NaN, high: Number.NaN, confidence };
  const whole = { ratio, low: 0, high: Number.POSITIVE_INFINITY, confidence };
  if (!Number.isFinite(vA) || !Number.isFinite(vB)) return whole;
  if (vA === 0 && vB === 0) return { ratio, low: ratio, high: ratio, confidence };
  const t = tCritical(m.df, confidence);
  // Every ρ in the region satisfies qa·ρ² − 2·meanA·meanB·ρ + qc ≤ 0. With positive means, qa > 0
  // gives an interval (its lower end negative when qc < 0), qa < 0 the outside of the roots, of which
  // at most the upper one is positive (it is when qc > 0).
  const qa = meanA ** 2 - t ** 2 * vA;
  const qc = meanB ** 2 - t ** 2 * vB;
  const disc = meanA ** 2 * vB + meanB ** 2 * vA - t ** 2 * vA * vB;
  if (!(disc > 0)) return whole;
  const root = t * Math.sqrt(disc);
  if (qa > 0) {
    return {
      ratio,
      low: Math.max(0, (meanA * meanB - root) / qa),
      high: (meanA * meanB + root) / qa,
      confidence,
    };
  }
  if (qa < 0 && qc > 0)
    return { ratio, low: (meanA * meanB - root) / qa, high: Number.POSITIVE_INFINITY, confidence };
  return whole;
}

/** The band of ratios within ±share, the same seen from either side: [1/(1+share), 1+share]. */
export function ratioBand(share: number): { low: number; high: number } {
  return { low: 1 / (1 + share), high: 1 + share };
}

export function intervalWithin(iv: RatioInterval, share: number): boolean {
  const band = ratioBand(share);
  return iv.low >= band.low && iv.high <= band.high;
}

/** What an interval settles, for stopping rules: a known sign, a known smallness, or nothing yet. */
export type Decision = 'different' | 'equivalent' | 'open';

/**
 * Different when the interval excludes 1 (the sign is known); equivalent when it lies inside the
 * practical band (whatever the sign, the difference is below the threshold); else open.
 */
export function decide(iv: RatioInterval, practicalThreshold: number): Decision {
  if (iv.low > 1 || iv.high < 1) return 'different';
  if (intervalWithin(iv, practicalThreshold)) return 'equivalent';
  return 'open';
}
