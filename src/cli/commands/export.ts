import type { Command } from 'commander';
import { exportJson, rowsToCsv } from '../../store/export.js';
import { Store } from '../../store/store.js';
import { UserError } from '../../util/errors.js';
import { writeFileNoFollow } from '../../util/files.js';
import { withDb } from '../common.js';

export function registerExport(program: Command): void {
  withDb(
    program
      .command('export')
      .description(
        "write a run's figures, one row per figure: { run, host, variant, guest, workload, step, rep, metric, value, unit }",
      )
      .argument('<run>', 'run id, or "latest"')
      .option('--format <format>', "json (rows with the run's provenance) or csv (rows only)", 'json')
      .option('--out <file>', 'write to this file instead of stdout'),
  ).action((runArg: string, flags: { db: string; format: string; out?: string }) => {
    if (flags.format !== 'json' && flags.format !== 'csv') {
      throw new UserError(`--format ${flags.format}: allowed formats are json and csv`);
    }
    const store = Store.open(flags.db, { readonly: true });
    try {
      const doc = exportJson(store, runArg);
      const text = flags.format === 'csv' ? rowsToCsv(doc.rows) : `${JSON.stringify(doc, null, 2)}\n`;
      if (flags.out !== undefined) {
        if (flags.out.trim() === '') throw new UserError("--out '': give the file to write to");
        writeFileNoFollow(flags.out, text, '--out');
        process.stderr.write(`kvmio: ${doc.rows.length} rows of run ${doc.run.id} written to ${flags.out}\n`);
      } else process.stdout.write(text);
    } finally {
      store.close();
    }
  });
}
