/**
 * Holm–Bonferroni step-down adjustment: adjusted p-values, in the input order, that control the
 * family-wise error rate across all comparisons of a report. NaN p-values (untestable comparisons)
 * stay NaN and do not count towards the family size.
 */
export function holmAdjust(pValues: readonly number[]): number[] {
  const tested = pValues.map((p, i) => ({ p, i })).filter((x) => Number.isFinite(x.p));
  tested.sort((x, y) => x.p - y.p);
  const m = tested.length;
  const adjusted = pValues.map(() => Number.NaN);
  let running = 0;
  tested.forEach(({ p, i }, rank) => {
    running = Math.max(running, Math.min(1, (m - rank) * p));
    adjusted[i] = running;
  });
  return adjusted;
}
