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
      .argument('<runA>', 'reference run id (or "latest"); RUN@HOST for one host of a run')
      .argument('<runB>', 'candidate run id (or "latest"); RUN@HOST for one host of a run')
      .option(
        '--all',
        'every shared metric, not only the key ones (IOPS, bandwidth, latency, CPU, TPS, rsync time)',
      )
      .option('--json', 'machine-readable output'),
  ).action((runA: string, runB: string, flags: { db: string; all?: boolean; json?: boolean }) => {
    const store = Store.open(flags.db, { readonly: true });
    try {
      // RUN@HOST names one host of a run: hosts of one run compare like runs.
      const withHost = (ref: string) => {
        const at = ref.lastIndexOf('@');
        return at > 0 ? `${store.requireRun(ref.slice(0, at)).id}${ref.slice(at)}` : store.requireRun(ref).id;
      };
      const a = withHost(runA);
      const b = withHost(runB);
      const lines = compareRuns(store, a, b, { all: flags.all });
      if (flags.json) return printJson(lines);
      process.stdout.write(`${formatComparison(lines, a, b)}\n`);
    } finally {
      store.close();
    }
  });
}
