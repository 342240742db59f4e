/** Which way is better for a metric, and the words used to say so. */
export type Better = 'lower' | 'higher';

export interface MetricSense {
  better: Better;
  /** Word for "b is better than a", e.g. faster, cheaper. */
  betterWord: string;
  worseWord: string;
}

const SPEED_UP: MetricSense = { better: 'higher', betterWord: 'faster', worseWord: 'slower' };
const SPEED_DOWN: MetricSense = { better: 'lower', betterWord: 'faster', worseWord: 'slower' };
const COST: MetricSense = { better: 'lower', betterWord: 'cheaper', worseWord: 'costlier' };
const RESPONSIVENESS: MetricSense = {
  better: 'lower',
  betterWord: 'more responsive',
  worseWord: 'less responsive',
};

/**
 * Direction by metric name (the names `kvmio export` writes, a contract): rates are better high, times,
 * latencies and CPU are better low. Unknown metrics are assumed lower-is-better only if they look
 * like a time; otherwise higher.
 */
export function metricSense(metric: string): MetricSense {
  if (/\.(iops|bw_bytes)$|^pgbench\.tps$/.test(metric)) return SPEED_UP;
  if (/^cpu\.|^guest\.(usr|sys)_pct$/.test(metric)) return COST;
  if (/^probe\./.test(metric)) return RESPONSIVENESS;
  if (/lat|_ns$|_ms$|_s$|seconds$/.test(metric)) return SPEED_DOWN;
  return SPEED_UP;
}
