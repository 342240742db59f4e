import type { Command } from 'commander';
import { Store } from '../../store/store.js';
import { printJson, withDb } from '../common.js';
import { formatTable } from '../table.js';

export function registerRuns(program: Command): void {
  withDb(program.command('runs').description('list the runs in the results store, newest first'))
    .option('--json', 'machine-readable: [{ id, name, status, points, failed, started, host }]')
    .action((flags: { db: string; json?: boolean }) => {
      const store = Store.open(flags.db, { readonly: true });
      try {
        const runs = store.listRuns();
        if (flags.json) return printJson(runs);
        if (runs.length === 0) {
          process.stdout.write(`no runs in ${store.path} (start one with "kvmio run --preset quick")\n`);
          return;
        }
        const rows = runs.map((r) => [
          r.id,
          r.name,
          r.status,
          String(r.points),
          String(r.failed),
          r.started.replace('T', ' ').slice(0, 19),
          r.host,
        ]);
        process.stdout.write(
          `${formatTable(['id', 'name', 'status', 'points', 'failed', 'started (UTC)', 'host'], rows, '')}\n`,
        );
      } finally {
        store.close();
      }
    });
}
