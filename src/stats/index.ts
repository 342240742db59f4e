export {
  type CompareOptions,
  type Comparison,
  compareSamples,
  controlFamily,
  DEFAULTS,
  formatP,
  formatPct,
  type VerdictKind,
} from './compare.js';
export { type Better, type MetricSense, metricSense } from './direction.js';
export {
  type Decision,
  decide,
  intervalWithin,
  type MeanPair,
  type RatioInterval,
  ratioBand,
  ratioInterval,
} from './fieller.js';
export { holmAdjust } from './holm.js';
export { DEFAULT_CONFIDENCE, mean, type Summary, summary, tCritical, variance } from './summary.js';
export { type WelchResult, welchTest } from './welch.js';
