/**
 * Alpha spending for looking at the data after every round (Lan & DeMets 1983). The error rate alpha
 * is spent over the looks along a spending function of the information fraction t = repetitions so
 * far / maximum repetitions; each look gets the increment. A test at every look at its increment,
 * added up by Bonferroni's inequality, keeps the overall false-decision rate at most alpha whatever
 * the correlation between looks — which matters because the exact group-sequential boundaries assume
 * normal increments with a known variance, and kvmio's looks are Welch tests on 3 to 10 repetitions.
 */

/**
 * Pocock-type spending function, α·ln(1 + (e − 1)·t): it spends most of alpha early (about 70% by
 * t = 0.6), so that a clear difference is decided at the first look, where O'Brien–Fleming-type
 * spending would keep almost everything for the last one.
 */
export function pocockSpent(alpha: number, t: number): number {
  const f = Math.min(1, Math.max(0, t));
  return alpha * Math.log(1 + (Math.E - 1) * f);
}

/**
 * The alpha the look after `repetitions` repetitions may spend, with looks from `min` to `max`
 * repetitions: the first look spends everything up to its information fraction, each later one the
 * increment. The looks together spend exactly alpha.
 */
export function lookAlpha(alpha: number, repetitions: number, min: number, max: number): number {
  if (repetitions < min || repetitions > max) return 0;
  const before = repetitions === min ? 0 : pocockSpent(alpha, (repetitions - 1) / max);
  return pocockSpent(alpha, repetitions / max) - before;
}
