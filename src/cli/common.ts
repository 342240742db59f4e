import type { Command } from 'commander';
import type { Accel } from '../host/accel.js';
import { listPresets } from '../study/presets.js';
import { UserError } from '../util/errors.js';
import { DEFAULT_DB } from '../util/paths.js';

/** Adds --db PATH, shared by every verb that reads or writes the results store. */
export function withDb(cmd: Command): Command {
  return cmd.option('--db <path>', 'results store (SQLite file)', process.env.KVMIO_DB || DEFAULT_DB);
}

/** Prints a value as JSON on stdout (the machine-readable form of every verb). */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** `[file]` or `--preset NAME`: how every verb that reads a study names it (see loadStudyArg). */
export function withStudyArg(cmd: Command): Command {
  return cmd
    .argument('[file]', 'study file (YAML)')
    .option('--preset <name>', `a preset study instead of a file (${listPresets().join(', ')})`);
}

/** The value of --accel, checked. */
export function accelFlag(value: string): Accel {
  if (value !== 'kvm' && value !== 'tcg')
    throw new UserError(`--accel ${value}: allowed values are kvm and tcg`);
  return value;
}

/** `--only GLOB[,GLOB]`, repeatable. Not variadic: `--only a,b FILE` must leave FILE alone. */
export function withOnly(cmd: Command): Command {
  return cmd.option(
    '--only <globs>',
    'only variant ids matching these globs (comma-separated, repeatable; "host" is the baseline)',
    (value: string, previous: string[]) => [...previous, value],
    [] as string[],
  );
}

/** `--race` and `--budget DURATION`, shared by `plan` and `run` (see study/budget.ts shapeForRun). */
export function withRaceAndBudget(cmd: Command): Command {
  return cmd
    .option('--race', 'stop repeating a variant once every comparison the report makes with it is decided')
    .option(
      '--budget <duration>',
      'fit the plan into this time (e.g. 2h): races, fewer repetitions, shorter windows, fewer variants',
    );
}
