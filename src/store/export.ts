import type { MetricRow } from '../study/results.js';
import type { FailureRecord, HostRecord, RunRecord, Store } from './store.js';

/**
 * `kvmio export`: a run's figures, one row per figure (the MetricRow contract). JSON wraps the rows
 * with the run's provenance (what the report reads back); CSV is the rows alone.
 */

export const CSV_COLUMNS = [
  'run',
  'host',
  'variant',
  'guest',
  'workload',
  'step',
  'rep',
  'metric',
  'value',
  'unit',
] as const;

export interface RunExportDoc {
  run: Omit<RunRecord, 'study'> & { study: RunRecord['study'] | null };
  hosts: HostRecord[];
  variants: unknown[];
  rows: MetricRow[];
  failures: FailureRecord[];
}

export function exportJson(store: Store, runId: string): RunExportDoc {
  const run = store.requireRun(runId);
  return {
    run: { ...run, study: run.study ?? null },
    hosts: store.hosts(run.id),
    variants: store.variants(run.id),
    rows: store.metricRows(run.id),
    failures: store.failures(run.id),
  };
}

/** Text a spreadsheet would run as a formula (=, +, -, @, or a tab or CR before one). */
const FORMULA_START = /^[=+\-@\t\r]/;

function csvCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  // Numbers in their shortest exact form, so that parsing the CSV gives back the stored double.
  if (typeof v === 'number') return String(v);
  // Names come from studies and imported files: a leading ' keeps a spreadsheet from evaluating them.
  const s = FORMULA_START.test(String(v)) ? `'${String(v)}` : String(v);
  return /[",\n\r]/.test(s) || s !== s.trim() ? `"${s.replace(/"/g, '""')}"` : s;
}

/** A text cell as written: the ' that neutralised a formula removed. */
const cellText = (s: string) => (s.startsWith("'") && FORMULA_START.test(s.slice(1)) ? s.slice(1) : s);

export function rowsToCsv(rows: readonly MetricRow[]): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const r of rows) lines.push(CSV_COLUMNS.map((c) => csvCell(r[c])).join(','));
  return `${lines.join('\n')}\n`;
}

/** Splits RFC 4180 CSV text into records of fields. */
export function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let field = '';
  let record: string[] = [];
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      record.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      record.push(field);
      records.push(record);
      record = [];
      field = '';
    } else field += c;
  }
  if (field !== '' || record.length > 0) {
    record.push(field);
    records.push(record);
  }
  return records;
}

/** Reads `rowsToCsv` output back into rows (numbers where the contract has numbers). */
export function csvToRows(text: string): MetricRow[] {
  const [header, ...records] = parseCsv(text);
  if (!header || header.join(',') !== CSV_COLUMNS.join(',')) {
    throw new Error(`not a kvmio export: the header must be ${CSV_COLUMNS.join(',')}`);
  }
  const numOrText = (s: string) => (s !== '' && Number.isFinite(Number(s)) ? Number(s) : cellText(s));
  return records.map((f) => ({
    run: cellText(f[0] ?? ''),
    host: cellText(f[1] ?? ''),
    variant: cellText(f[2] ?? ''),
    guest: numOrText(f[3] ?? ''),
    workload: cellText(f[4] ?? ''),
    step: f[5] === '' || f[5] === undefined ? null : numOrText(f[5]),
    rep: Number(f[6]),
    metric: cellText(f[7] ?? ''),
    value: Number(f[8]),
    unit: cellText(f[9] ?? ''),
  }));
}
