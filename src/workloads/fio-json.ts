import type { MetricValue } from './types.js';

/**
 * fio's JSON output (`--output-format=json`), read as fio printed it. Metrics carry fio's own figures
 * unchanged: nothing is re-derived from raw counts where fio already gives the number.
 */

export interface FioLatency {
  min?: number;
  max?: number;
  mean: number;
  stddev?: number;
  N?: number;
  /** Keys like "99.000000"; absent when fio was told not to compute percentiles. */
  percentile?: Record<string, number>;
}

export interface FioDirection {
  io_bytes: number;
  bw_bytes: number;
  iops: number;
  runtime: number;
  total_ios: number;
  clat_ns: FioLatency;
  lat_ns: FioLatency;
  slat_ns?: FioLatency;
}

export interface FioJob {
  jobname: string;
  groupid: number;
  error: number;
  'job options'?: Record<string, string>;
  read: FioDirection;
  write: FioDirection;
  trim?: FioDirection;
  usr_cpu: number;
  sys_cpu: number;
  job_runtime?: number;
  /** Set in `fio --client` output (client_stats entries): which server the job ran on. */
  hostname?: string;
  port?: number;
}

export interface FioReport {
  version: string;
  jobs: FioJob[];
  /** `fio --client` output: per-server jobs plus an "All clients" aggregate. */
  clientStats?: FioJob[];
  /** Lines fio printed before the JSON document (notes, warnings). */
  preamble: string[];
}

export class FioOutputError extends Error {
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(message);
    this.name = 'FioOutputError';
  }
}

/**
 * Parses fio's JSON output. fio may print notes before the document ("note: both iodepth >= 1 and
 * synchronous I/O engine are selected…") and, in client mode, text around it: the document is the
 * part from the first line that opens with "{" to the last line that closes it.
 */
export function parseFioJson(text: string): FioReport {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.startsWith('{'));
  let end = -1;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (lines[i]?.startsWith('}')) {
      end = i;
      break;
    }
  }
  if (start < 0 || end < start) throw new FioOutputError('fio printed no JSON document', text);
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(lines.slice(start, end + 1).join('\n')) as Record<string, unknown>;
  } catch (err) {
    throw new FioOutputError(`fio's JSON output does not parse: ${(err as Error).message}`, text);
  }
  const jobs = (doc.jobs as FioJob[] | undefined) ?? [];
  const clientStats = doc.client_stats as FioJob[] | undefined;
  if (jobs.length === 0 && !clientStats?.length) throw new FioOutputError('fio reported no jobs', text);
  return {
    version: String(doc['fio version'] ?? ''),
    jobs,
    clientStats,
    preamble: lines.slice(0, start).filter((l) => l.trim() !== ''),
  };
}

const PERCENTILES: ReadonlyArray<readonly [string, string]> = [
  ['50.000000', 'p50'],
  ['99.000000', 'p99'],
  ['99.900000', 'p999'],
];

/** Directions a job's rw option asks for (reported even when fio completed no I/O in them). */
function requestedDirections(job: FioJob): Set<'read' | 'write' | 'trim'> {
  const rw = job['job options']?.rw ?? job['job options']?.readwrite ?? '';
  const dirs = new Set<'read' | 'write' | 'trim'>();
  if (/^(rand)?read$/.test(rw)) dirs.add('read');
  else if (/^(rand)?write$/.test(rw)) dirs.add('write');
  else if (/^(rand)?trim$/.test(rw)) dirs.add('trim');
  else if (/^(rand)?rw$|^readwrite$|^randrw$/.test(rw)) {
    const mix = job['job options']?.rwmixread;
    if (mix !== '0') dirs.add('read');
    if (mix !== '100') dirs.add('write');
  }
  return dirs;
}

/**
 * The figures of one fio job (or group-reported job): per direction that was asked for or did I/O,
 * iops, bw_bytes (bytes/s), completion-latency mean and p50/p99/p99.9 (ns), total-latency mean (ns);
 * and fio's own CPU figures of the job as guest.usr_pct / guest.sys_pct.
 */
export function fioJobMetrics(job: FioJob): MetricValue[] {
  const out: MetricValue[] = [];
  const wanted = requestedDirections(job);
  for (const dir of ['read', 'write', 'trim'] as const) {
    const d = job[dir];
    if (!d || !(wanted.has(dir) || d.total_ios > 0)) continue;
    out.push({ metric: `${dir}.iops`, value: d.iops, unit: 'IOPS' });
    out.push({ metric: `${dir}.bw_bytes`, value: d.bw_bytes, unit: 'B/s' });
    if (d.clat_ns) {
      out.push({ metric: `${dir}.clat_mean_ns`, value: d.clat_ns.mean, unit: 'ns' });
      for (const [key, name] of PERCENTILES) {
        const v = d.clat_ns.percentile?.[key];
        if (v !== undefined) out.push({ metric: `${dir}.clat_${name}_ns`, value: v, unit: 'ns' });
      }
    }
    if (d.lat_ns) out.push({ metric: `${dir}.lat_mean_ns`, value: d.lat_ns.mean, unit: 'ns' });
  }
  out.push({ metric: 'guest.usr_pct', value: job.usr_cpu, unit: '%' });
  out.push({ metric: 'guest.sys_pct', value: job.sys_cpu, unit: '%' });
  return out;
}

/** Total IOPS and bytes/s of a job over every direction (for CPU-per-IOPS figures). */
export function fioJobThroughput(job: FioJob): { iops: number; bwBytes: number } {
  let iops = 0;
  let bwBytes = 0;
  for (const dir of ['read', 'write', 'trim'] as const) {
    const d = job[dir];
    if (!d) continue;
    iops += d.iops;
    bwBytes += d.bw_bytes;
  }
  return { iops, bwBytes };
}

/**
 * The one job a `--group_reporting` run reports. Without group reporting (several entries) the runner
 * refuses rather than silently summing latencies.
 */
export function singleJob(report: FioReport): FioJob {
  const [job, ...rest] = report.jobs;
  if (!job || rest.length > 0) {
    throw new FioOutputError(
      `expected one group-reported fio job, got ${report.jobs.length}`,
      JSON.stringify(report.jobs.map((j) => j.jobname)),
    );
  }
  if (job.error !== 0) throw new FioOutputError(`fio job ${job.jobname} failed with error ${job.error}`, '');
  return job;
}
