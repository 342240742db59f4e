import tQuantile from '@stdlib/stats-base-dists-t-quantile';

/** Mean, spread and 95% confidence interval of one point's repetitions. */
export interface Summary {
  n: number;
  mean: number;
  /** Sample standard deviation (n − 1); NaN when n < 2. */
  sd: number;
  /** Standard error of the mean; NaN when n < 2. */
  se: number;
  /** Half-width of the confidence interval (Student t); NaN when n < 2. */
  ciHalf: number;
  ciLow: number;
  ciHigh: number;
}

export const DEFAULT_CONFIDENCE = 0.95;

/** Two-sided Student-t critical value for `confidence` with `df` degrees of freedom. */
export function tCritical(df: number, confidence = DEFAULT_CONFIDENCE): number {
  return tQuantile(1 - (1 - confidence) / 2, df);
}

export function mean(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

/** Sample variance (n − 1 denominator), two-pass for accuracy. */
export function variance(values: readonly number[]): number {
  const n = values.length;
  if (n < 2) return Number.NaN;
  const m = mean(values);
  let ss = 0;
  for (const v of values) ss += (v - m) ** 2;
  return ss / (n - 1);
}

export function summary(values: readonly number[], confidence = DEFAULT_CONFIDENCE): Summary {
  const n = values.length;
  const m = mean(values);
  const sd = Math.sqrt(variance(values));
  const se = sd / Math.sqrt(n);
  const ciHalf = n >= 2 ? tCritical(n - 1, confidence) * se : Number.NaN;
  return { n, mean: m, sd, se, ciHalf, ciLow: m - ciHalf, ciHigh: m + ciHalf };
}
