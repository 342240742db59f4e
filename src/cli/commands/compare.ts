import type { Command } from 'commander';
import { compareRuns } from '../../engine/compare.js';
import { Store } from '../../store/store.js';
import { printJson, withDb } from '../common.js';
import { formatComparison } from '../comparison.js';

export function registerCompare(program: Command): void {
  withDb(
    program
      .command('compare')
      .description('compare two runs: the figures both measured, their means, the change and a verdict')
      .argument('<runA>', 'reference run id (or "latest")')
      .argument('<runB>', 'candidate run id (or "latest")')
      .option(
        '--all',
        'every shared metric, not only the key ones (IOPS, bandwidth, latency, CPU, TPS, rsync time)',
      )
      .option('--json', 'machine-readable output'),
  ).action((runA: string, runB: string, flags: { db: string; all?: boolean; json?: boolean }) => {
    const store = Store.open(flags.db, { readonly: true });
    try {
      const a = store.requireRun(runA).id;
      const b = store.requireRun(runB).id;
      const lines = compareRuns(store, a, b, { all: flags.all });
      if (flags.json) return printJson(lines);
      process.stdout.write(`${formatComparison(lines, a, b)}\n`);
    } finally {
      store.close();
    }
  });
}
