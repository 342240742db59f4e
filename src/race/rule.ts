import { DEFAULTS } from '../stats/compare.js';
import { type Decision, decide, type MeanPair, ratioInterval } from '../stats/fieller.js';
import { lookAlpha } from '../stats/sequential.js';
import type { Study } from '../study/types.js';

/**
 * The stopping rule of racing, pure: after each round from the minimum on, every comparison the
 * report makes is classified — decided different, decided equivalent, or open — and a decision once
 * made stands. A look spends its share of alpha (Pocock-type spending over the rounds, see
 * sequential.ts) split evenly over the comparisons (Bonferroni), and decides from Fieller's interval
 * at that level. The intervals of all looks and comparisons then cover the true ratios together with
 * probability at least 1 − alpha, and a wrong decision (different when equal, or the wrong sign, or
 * equivalent when the difference is beyond the threshold) needs an interval that misses its ratio:
 * so the false-decision rate of the whole race is at most alpha.
 */

/** One comparison at one look: its two sides' means and standard errors so far. */
export interface RaceComparison {
  key: string;
  /** Variant ids of the reference and the candidate. */
  a: string;
  b: string;
  workload: string;
  nA: number;
  nB: number;
  means: MeanPair;
}

export interface RaceVerdict {
  decision: Decision;
  /** Repetitions after which it was decided; undefined while open. */
  decidedAt?: number;
}

export interface RaceRules {
  alpha: number;
  practicalThreshold: number;
  minRepetitions: number;
  maxRepetitions: number;
}

export function raceRules(study: Pick<Study, 'race' | 'repetitions'>): RaceRules | undefined {
  if (!study.race) return undefined;
  return {
    alpha: DEFAULTS.alpha,
    practicalThreshold: DEFAULTS.practicalThreshold,
    minRepetitions: study.race.minRepetitions,
    maxRepetitions: study.repetitions,
  };
}

/**
 * Classifies the comparisons at the look after `repetitions` rounds, keeping earlier decisions.
 * Returns the new verdicts by key.
 */
export function raceLook(
  before: ReadonlyMap<string, RaceVerdict>,
  comparisons: readonly RaceComparison[],
  repetitions: number,
  rules: RaceRules,
): Map<string, RaceVerdict> {
  const out = new Map(before);
  const spend = lookAlpha(rules.alpha, repetitions, rules.minRepetitions, rules.maxRepetitions);
  const perComparison = comparisons.length > 0 ? spend / comparisons.length : 0;
  for (const c of comparisons) {
    if (out.get(c.key)?.decidedAt !== undefined) continue;
    let decision: Decision = 'open';
    if (perComparison > 0 && c.nA >= 2 && c.nB >= 2) {
      decision = decide(ratioInterval(c.means, 1 - perComparison), rules.practicalThreshold);
    }
    out.set(c.key, decision === 'open' ? { decision } : { decision, decidedAt: repetitions });
  }
  return out;
}

/** The key of a variant's workload, the unit racing stops. */
export function pairKey(variant: string, workload: string): string {
  return JSON.stringify([variant, workload]);
}

/**
 * Which (variant, workload) pairs still need rounds: those in at least one open comparison. Pairs in
 * no comparison at all (the host baseline, a variant the report does not compare) need none beyond
 * the minimum.
 */
export function pairsStillRacing(
  verdicts: ReadonlyMap<string, RaceVerdict>,
  comparisons: readonly RaceComparison[],
): Set<string> {
  const open = new Set<string>();
  for (const c of comparisons) {
    if (verdicts.get(c.key)?.decidedAt !== undefined) continue;
    open.add(pairKey(c.a, c.workload));
    open.add(pairKey(c.b, c.workload));
  }
  return open;
}

export interface RaceState {
  verdicts: Map<string, RaceVerdict>;
  /** (variant, workload) pairs (pairKey) still in an open comparison after the last look. */
  racing: Set<string>;
  /** Comparisons at the last look (the family the looks split alpha over). */
  comparisons: number;
}

/**
 * Replays the looks from the minimum up to `rounds` completed rounds, with the comparisons each look
 * sees: the engine after each round and the report at the end get the same decisions from the same rows.
 */
export function replayLooks(
  rules: RaceRules,
  rounds: number,
  comparisonsAt: (repetitions: number) => RaceComparison[],
): RaceState {
  let verdicts = new Map<string, RaceVerdict>();
  let last: RaceComparison[] = [];
  for (let n = rules.minRepetitions; n <= Math.min(rounds, rules.maxRepetitions); n++) {
    last = comparisonsAt(n);
    verdicts = raceLook(verdicts, last, n, rules);
  }
  return { verdicts, racing: pairsStillRacing(verdicts, last), comparisons: last.length };
}
