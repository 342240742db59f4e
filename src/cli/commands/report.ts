import { join } from 'node:path';
import type { Command } from 'commander';
import { loadReportData } from '../../report/data.js';
import { writeReport } from '../../report/index.js';
import { Store } from '../../store/store.js';
import { withDb } from '../common.js';

export function registerReport(program: Command): void {
  withDb(
    program
      .command('report')
      .description('write the report of one or more runs: index.html, charts/*.svg|png, summary.md')
      .argument('<run...>', 'run ids, or "latest"; several runs are compared side by side')
      .option('--out <dir>', 'output directory', 'kvmio-report')
      .option('--no-png', 'skip the PNG copies of the charts'),
  ).action(async (runIds: string[], opts: { out: string; db: string; png: boolean }) => {
    const store = Store.open(opts.db, { readonly: true });
    try {
      for (const id of runIds) store.requireRun(id);
      const data = loadReportData(store, runIds);
      const result = await writeReport(data, opts.out, { png: opts.png });
      process.stdout.write(
        `${result.index}\n${result.summary}\n${result.charts.length} charts in ${join(result.outDir, 'charts')} (${(result.millis / 1000).toFixed(1)} s)\n`,
      );
    } finally {
      store.close();
    }
  });
}
