import type { Command } from 'commander';
import { importFio } from '../../store/import-fio.js';
import { Store } from '../../store/store.js';
import { UserError } from '../../util/errors.js';
import { withDb } from '../common.js';

export function registerImport(program: Command): void {
  withDb(
    program
      .command('import')
      .description('import results made elsewhere as a run: "import fio FILE…" (fio --output-format=json)')
      .argument('<kind>', 'what the files are: fio')
      .argument('<files...>', 'fio JSON files; one variant per file, or per job when a file has several')
      .option('--label <label>', 'name of the run (default: the file name)'),
  ).action((kind: string, files: string[], flags: { db: string; label?: string }) => {
    if (kind !== 'fio') throw new UserError(`import ${kind}: the only kind kvmio imports is fio`);
    const store = Store.open(flags.db);
    try {
      const r = importFio(store, files, { label: flags.label });
      process.stdout.write(
        `imported ${r.points} point(s) as run ${r.runId} (variants: ${r.variants.join(', ')})${r.failed ? `, ${r.failed} with a fio error` : ''}\n`,
      );
      process.stdout.write(`results: ${store.path} (run ${r.runId})\n`);
    } finally {
      store.close();
    }
  });
}
