#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { UserError } from '../util/errors.js';
import { runCleanups } from '../util/proc.js';
import { VERSION } from '../version.js';

type Register = (program: Command) => void;

/**
 * Verbs in the order --help lists them. Each module is imported only when its verb runs (or for
 * --help), so a CLI start costs one verb's dependencies, not the report's charting stack every time.
 */
const VERBS: Record<string, () => Promise<Register>> = {
  doctor: async () => (await import('./commands/doctor.js')).registerDoctor,
  guest: async () => (await import('./commands/guest.js')).registerGuest,
  plan: async () => (await import('./commands/plan.js')).registerPlan,
  run: async () => (await import('./commands/run.js')).registerRun,
  runs: async () => (await import('./commands/runs.js')).registerRuns,
  report: async () => (await import('./commands/report.js')).registerReport,
  export: async () => (await import('./commands/export.js')).registerExport,
  import: async () => (await import('./commands/import.js')).registerImport,
  compare: async () => (await import('./commands/compare.js')).registerCompare,
  xml: async () => (await import('./commands/xml.js')).registerXml,
  argv: async () => (await import('./commands/argv.js')).registerArgv,
};

/** The CLI is a thin layer: each verb parses flags and calls the library. */
export async function buildProgram(argv: string[] = []): Promise<Command> {
  const program = new Command('kvmio')
    .description('Which QEMU storage I/O mode should my VMs use, on my hardware? Measured on real VMs.')
    .version(VERSION)
    .option('--debug', 'show stack traces for errors')
    .showHelpAfterError('(run "kvmio --help" for the verbs)')
    .exitOverride();
  const verb = argv.find((a) => !a.startsWith('-'));
  const wanted = verb && verb in VERBS ? [verb] : Object.keys(VERBS);
  for (const name of wanted) (await VERBS[name]!())(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = await buildProgram(argv);
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
