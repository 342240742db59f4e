import { resolve } from 'node:path';
import type { Study } from '../study/types.js';
import { DEFAULT_DB } from '../util/paths.js';
import { shellQuote } from '../util/proc.js';

/** The command that finishes run `runId`, printed on interrupt and for partial runs. */
export function resumeCommand(
  study: Pick<Study, 'source'>,
  runId: string,
  dbPath: string,
  flags: readonly string[] = [],
): string {
  const what = study.source.startsWith('preset:')
    ? `--preset ${study.source.slice('preset:'.length)}`
    : shellQuote(study.source);
  const defaultDb = resolve(process.env.KVMIO_DB || DEFAULT_DB);
  const db = resolve(dbPath) === defaultDb ? '' : ` --db ${shellQuote(dbPath)}`;
  return `kvmio run ${what}${flags.map((f) => ` ${shellQuote(f)}`).join('')} --resume ${runId}${db}`;
}
