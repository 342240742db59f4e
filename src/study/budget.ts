import { UserError } from '../util/errors.js';
import { formatSeconds, parseDuration } from '../util/units.js';
import { planStudy } from './plan.js';
import { checkRace, RACE_MIN_DEFAULT } from './schema.js';
import { HOST_VARIANT_ID, type Study, type Workload } from './types.js';
import { knobDistance, referenceVariant } from './variants.js';

/**
 * Fits a study into a time budget before anything runs. What must fit is the time the run is sure to
 * take: every round without racing, the minimum rounds with it (racing runs the others only for
 * comparisons still open, and only while the budget has room, see engine/run.ts). When that does not
 * fit, in this order: race the rounds beyond the minimum, fewer repetitions (down to 2), shorter
 * measured windows (down to each kind's floor, windowFloorSeconds), fewer variants (from the end of the matrix, the host baseline
 * first). Each change is a note that `plan` and `run` show.
 */

/** The least measured time a shortened window keeps, after whatever precedes it in the window. */
export const RUNTIME_FLOOR_SECONDS = 5;
/**
 * pgbench's -T also covers connecting its clients, one after the other; under TCG on a loaded host
 * that took over 6 s for 32 clients, which left no transaction. A pgbench window keeps this much per
 * client of its largest client count on top of the measured floor.
 */
export const PGBENCH_CONNECT_SECONDS_PER_CLIENT = 0.5;

/**
 * The shortest window of a workload that still measures what it names (never above its own length):
 * fio and sweep steps keep their ramp (never shortened) and the measured floor; pgbench keeps time to
 * connect its clients and then the measured floor. rsync copies a fixed tree and has no window.
 */
export function windowFloorSeconds(w: Workload): number {
  switch (w.kind) {
    case 'fio':
    case 'sweep':
      return Math.min(w.runtimeSeconds, RUNTIME_FLOOR_SECONDS);
    case 'pgbench': {
      const connect = PGBENCH_CONNECT_SECONDS_PER_CLIENT * Math.max(...w.clients);
      return Math.min(w.runtimeSeconds, Math.ceil(connect + RUNTIME_FLOOR_SECONDS));
    }
    case 'rsync':
      return 0;
  }
}

export interface BudgetFit {
  study: Study;
  only?: string[];
  /** Seconds the fitted plan is sure to take, and at most. */
  sureSeconds: number;
  mostSeconds: number;
}

function estimate(study: Study, only: string[] | undefined, repetitions = study.repetitions): number {
  return planStudy({ ...study, repetitions }, { only }).estimatedSeconds;
}

function sure(study: Study, only: string[] | undefined): number {
  return estimate(study, only, study.race ? study.race.minRepetitions : study.repetitions);
}

function scaledRuntime(w: Workload, factor: number): Workload {
  if (w.kind === 'rsync') return w;
  return { ...w, runtimeSeconds: Math.max(windowFloorSeconds(w), Math.round(w.runtimeSeconds * factor)) };
}

export function fitToBudget(input: Study, budgetSeconds: number, only?: string[]): BudgetFit {
  let study: Study = { ...input, notes: [...(input.notes ?? [])] };
  let selected = only;
  const budget = formatSeconds(budgetSeconds);
  const changes: string[] = [];
  const fits = () => sure(study, selected) <= budgetSeconds;

  if (!fits() && !study.race && !study.adaptive && study.repetitions > RACE_MIN_DEFAULT) {
    study = { ...study, race: { minRepetitions: RACE_MIN_DEFAULT } };
    changes.push(
      `racing on: rounds ${RACE_MIN_DEFAULT + 1}–${study.repetitions} only for comparisons still open`,
    );
  }
  if (!fits()) {
    const from = study.race ? study.race.minRepetitions : study.repetitions;
    for (let n = from - 1; n >= 2 && !fits(); n--) {
      if (study.race) study = { ...study, race: { minRepetitions: n } };
      else study = { ...study, repetitions: n };
    }
    const to = study.race ? study.race.minRepetitions : study.repetitions;
    if (to !== from) changes.push(`${study.race ? 'minimum repetitions' : 'repetitions'} ${from} → ${to}`);
  }
  if (!fits()) {
    const original = study.workloads;
    // The largest factor that fits, to 1%: windows as long as the budget allows.
    let lo = 0;
    let hi = 1;
    for (let i = 0; i < 7; i++) {
      const mid = (lo + hi) / 2;
      study = { ...study, workloads: original.map((w) => scaledRuntime(w, mid)) };
      if (fits()) lo = mid;
      else hi = mid;
    }
    study = { ...study, workloads: original.map((w) => scaledRuntime(w, lo)) };
    const shortened = original.flatMap((w, i) => {
      const now = study.workloads[i];
      if (w.kind === 'rsync' || now?.kind === 'rsync' || now?.runtimeSeconds === w.runtimeSeconds) return [];
      return [`${w.name} ${formatSeconds(w.runtimeSeconds)} → ${formatSeconds(now?.runtimeSeconds ?? 0)}`];
    });
    if (shortened.length > 0)
      changes.push(
        `measured windows shortened (not below ${RUNTIME_FLOOR_SECONDS} s measured; fio keeps its ramp, pgbench ${PGBENCH_CONNECT_SECONDS_PER_CLIENT} s per client to connect first): ${shortened.join(', ')}`,
      );
    // A window already at its floor is said too: the budget could not take time from it.
    const held = original.flatMap((w, i) => {
      const now = study.workloads[i];
      return w.kind === 'pgbench' &&
        now?.kind === 'pgbench' &&
        now.runtimeSeconds === w.runtimeSeconds &&
        windowFloorSeconds(w) === w.runtimeSeconds
        ? [`${w.name} ${formatSeconds(w.runtimeSeconds)} (${Math.max(...w.clients)} clients connect first)`]
        : [];
    });
    if (held.length > 0) changes.push(`not shortened (at their floor): ${held.join(', ')}`);
  }
  if (!fits()) {
    const plan = planStudy(study, { only: selected });
    // The report's reference stays; the variants farthest from it (compared with it on nothing) go first.
    const ref = referenceVariant(plan.variants);
    const byDistance = plan.variants
      .filter((v) => v !== ref)
      .map((v, i) => ({ v, i, d: ref ? knobDistance(ref, v) : 0 }))
      .sort((x, y) => y.d - x.d || y.i - x.i)
      .map((x) => x.v.id);
    const ids = [...(plan.baseline ? [HOST_VARIANT_ID] : []), ...byDistance];
    const dropped: string[] = [];
    // Two variants are the least that still compares anything.
    while (!fits() && ids.length > 0 && planStudy(study, { only: selected }).variants.length > 2) {
      const id = ids.shift() as string;
      dropped.push(id);
      const kept = planStudy(study, { only: selected });
      selected = [
        ...(kept.baseline && id !== HOST_VARIANT_ID ? [HOST_VARIANT_ID] : []),
        ...kept.variants.map((v) => v.id).filter((v) => v !== id),
      ];
    }
    if (dropped.length > 0) changes.push(`variants dropped: ${dropped.join(', ')}`);
  }
  const sureSeconds = sure(study, selected);
  if (sureSeconds > budgetSeconds)
    throw new UserError(
      `${input.source}: --budget ${budget} cannot hold this study: even ${changes.length > 0 ? `after ${changes.join('; ')}, ` : ''}it needs ${formatSeconds(sureSeconds)}`,
    );
  const mostSeconds = estimate(study, selected);
  study.notes = [
    ...(study.notes ?? []),
    changes.length === 0
      ? `budget ${budget}: the plan fits as it is`
      : `budget ${budget}: ${changes.join('; ')}`,
    ...(study.race && mostSeconds > budgetSeconds
      ? [`budget ${budget}: rounds that would end after it are not started`]
      : []),
  ];
  return { study, only: selected, sureSeconds, mostSeconds };
}

/** `--race` and `--budget` applied to a loaded study: what `plan` shows and `run` runs. */
export function shapeForRun(
  input: Study,
  flags: { race?: boolean; budget?: string },
  only: string[] | undefined,
): { study: Study; only?: string[]; budgetSeconds?: number } {
  let study = input;
  if (flags.race && !study.race) {
    study = { ...study, race: { minRepetitions: RACE_MIN_DEFAULT } };
    checkRace(study, (problem) => {
      throw new UserError(`--race: ${study.source}: ${problem}`);
    });
  }
  if (flags.budget === undefined) return { study, only };
  const budgetSeconds = parseDuration(flags.budget);
  if (!(budgetSeconds > 0))
    throw new UserError(`--budget ${flags.budget}: give a positive duration, e.g. 2h or 90m`);
  const fit = fitToBudget(study, budgetSeconds, only);
  return { study: fit.study, only: fit.only, budgetSeconds };
}
