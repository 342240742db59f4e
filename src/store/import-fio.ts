import { readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { UserError } from '../util/errors.js';
import { VERSION } from '../version.js';
import {
  type FioJob,
  FioOutputError,
  type FioReport,
  fioJobMetrics,
  parseFioJson,
} from '../workloads/fio-json.js';
import type { Store } from './store.js';

/**
 * `kvmio import fio`: fio JSON from any fio 3.x run becomes a run of its own, status complete. One
 * variant per file, or per job when a file holds several jobs; fio's own figures carried over exactly
 * (the same metric names as measured runs, values as fio printed them).
 */

export interface ImportResult {
  runId: string;
  variants: string[];
  points: number;
  failed: number;
}

interface ImportedJob {
  file: string;
  report: FioReport;
  job: FioJob;
  variant: string;
  workload: string;
  /** fio's global options with the job's own over them: what the job ran with. */
  options: Record<string, string>;
  raw: string;
}

function readReport(file: string): { report: FioReport; raw: string; globals: Record<string, string> } {
  let raw: string;
  try {
    raw = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UserError(`${file}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  try {
    const report = parseFioJson(raw);
    return { report, raw, globals: report.globalOptions };
  } catch (err) {
    if (err instanceof FioOutputError) {
      throw new UserError(`${file}: not usable fio JSON output (fio --output-format=json): ${err.message}`);
    }
    throw err;
  }
}

/** A readable workload name from the job's options: randread-4k-qd1; the job name when they are missing. */
function workloadName(job: FioJob, globals: Record<string, string>): string {
  const o = { ...globals, ...(job['job options'] ?? {}) };
  const rw = o.rw ?? o.readwrite;
  if (!rw) return job.jobname;
  return [
    rw,
    o.bs ?? o.blocksize ?? '4k',
    `qd${o.iodepth ?? '1'}`,
    ...(o.numjobs && o.numjobs !== '1' ? [`j${o.numjobs}`] : []),
  ].join('-');
}

export function importFio(
  store: Store,
  files: readonly string[],
  opts: { label?: string } = {},
): ImportResult {
  if (files.length === 0) throw new UserError('import fio: name at least one fio JSON file');
  const jobs: ImportedJob[] = [];
  const taken = new Set<string>();
  const unique = (id: string) => {
    let v = id;
    for (let n = 2; taken.has(v); n++) v = `${id}-${n}`;
    taken.add(v);
    return v;
  };
  for (const file of files) {
    const { report, raw, globals } = readReport(file);
    const stem = basename(file, extname(file));
    const list =
      report.jobs.length > 0
        ? report.jobs
        : (report.clientStats ?? []).filter((j) => j.jobname !== 'All clients');
    for (const job of list) {
      jobs.push({
        file,
        report,
        job,
        variant: unique(list.length === 1 ? stem : `${stem}:${job.jobname}`),
        workload: workloadName(job, globals),
        options: { ...globals, ...(job['job options'] ?? {}) },
        raw,
      });
    }
  }
  const name =
    opts.label ??
    (files.length === 1 ? basename(files[0] as string, extname(files[0] as string)) : 'fio-import');
  let result: ImportResult | undefined;
  store.db
    .transaction(() => {
      const runId = store.createRun({
        name,
        source: 'import:fio',
        kvmioVersion: VERSION,
        status: 'running',
        notes: files.map((f) => `imported from ${f}`),
      });
      store.setVariants(
        runId,
        jobs.map((j) => ({
          id: j.variant,
          source: 'fio',
          file: j.file,
          job: j.job.jobname,
          fioVersion: j.report.version,
          options: j.options,
        })),
      );
      const hosts = new Set<string>();
      let failed = 0;
      const rawStored = new Set<string>();
      jobs.forEach((j, index) => {
        const host = j.job.hostname ?? 'imported';
        if (!hosts.has(host)) {
          hosts.add(host);
          store.setHost(runId, host, null, { imported: true, fioVersion: j.report.version });
        }
        const pointId = store.startPoint(runId, {
          index,
          round: 0,
          host,
          variant: j.variant,
          workload: j.workload,
        });
        // The raw file once, with its first job's point: a file of 400 jobs is stored once, not 400 times.
        const artifacts: Record<string, string> = rawStored.has(j.file) ? {} : { 'fio.json': j.raw };
        rawStored.add(j.file);
        if (j.job.error !== 0) {
          failed++;
          store.finishPoint(pointId, {
            status: 'failed',
            error: `fio job ${j.job.jobname} reported error ${j.job.error}`,
            artifacts,
          });
          return;
        }
        const measurements = fioJobMetrics(j.job).map((m) => ({ ...m, step: null }));
        store.finishPoint(pointId, { status: 'ok', measurements, artifacts });
      });
      store.setRunStatus(runId, failed === 0 ? 'complete' : 'partial');
      result = { runId, variants: jobs.map((j) => j.variant), points: jobs.length, failed };
    })
    .immediate();
  return result as unknown as ImportResult;
}
