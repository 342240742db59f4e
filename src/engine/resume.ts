import { resolve } from 'node:path';
import type { Study } from '../study/types.js';
import { DEFAULT_DB } from '../util/paths.js';

/** The command that finishes run `runId`, printed on interrupt and for partial runs. */
export function resumeCommand(study: Pick<Study, 'source'>, runId: string, dbPath: string): string {
  const what = study.source.startsWith('preset:')
    ? `--preset ${study.source.slice('preset:'.length)}`
    : quote(study.source);
  const defaultDb = resolve(process.env.KVMIO_DB || DEFAULT_DB);
  const db = resolve(dbPath) === defaultDb ? '' : ` --db ${quote(dbPath)}`;
  return `kvmio run ${what} --resume ${runId}${db}`;
}

/** Quotes a path for copy and paste into a POSIX shell (only when it needs it). */
function quote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
