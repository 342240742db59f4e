import type { Command } from 'commander';
import { NotImplementedError } from '../util/errors.js';
import { DEFAULT_DB } from '../util/paths.js';

/** Adds --db PATH, shared by every verb that reads or writes the results store. */
export function withDb(cmd: Command): Command {
  return cmd.option('--db <path>', 'results store (SQLite file)', process.env.KVMIO_DB || DEFAULT_DB);
}

/** Action of a verb that is listed but not built yet: says so and exits 2. */
export function notYet(verb: string): () => never {
  return () => {
    throw new NotImplementedError(`"kvmio ${verb}"`);
  };
}

/** Prints a value as JSON on stdout (the machine-readable form of every verb). */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
