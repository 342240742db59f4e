#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { UserError } from '../util/errors.js';
import { runCleanups } from '../util/proc.js';
import { VERSION } from '../version.js';
import { registerArgv } from './commands/argv.js';
import { registerCompare } from './commands/compare.js';
import { registerDoctor } from './commands/doctor.js';
import { registerExport } from './commands/export.js';
import { registerGuest } from './commands/guest.js';
import { registerImport } from './commands/import.js';
import { registerPlan } from './commands/plan.js';
import { registerReport } from './commands/report.js';
import { registerRun } from './commands/run.js';
import { registerRuns } from './commands/runs.js';
import { registerXml } from './commands/xml.js';

/** The CLI is a thin layer: each verb parses flags and calls the library. */
export function buildProgram(): Command {
  const program = new Command('kvmio')
    .description('Which QEMU storage I/O mode should my VMs use, on my hardware? Measured on real VMs.')
    .version(VERSION)
    .option('--debug', 'show stack traces for errors')
    .showHelpAfterError('(run "kvmio --help" for the verbs)')
    .exitOverride();
  for (const register of [
    registerDoctor,
    registerGuest,
    registerPlan,
    registerRun,
    registerRuns,
    registerReport,
    registerExport,
    registerImport,
    registerCompare,
    registerXml,
    registerArgv,
  ]) {
    register(program);
  }
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const debug = argv.includes('--debug');
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit 0; usage mistakes are user errors (exit 2).
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof UserError) {
      process.stderr.write(`kvmio: ${err.message}\n`);
      if (debug && err.stack) process.stderr.write(`${err.stack}\n`);
      return err.exitCode;
    }
    const e = err as Error;
    process.stderr.write(`kvmio: ${e?.message ?? String(err)}\n`);
    process.stderr.write(debug && e?.stack ? `${e.stack}\n` : '(run again with --debug for details)\n');
    return 1;
  } finally {
    await runCleanups();
  }
}
