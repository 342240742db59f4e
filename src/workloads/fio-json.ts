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
  /** The document's "global options" (job options every job shares unless it sets its own). */
  globalOptions: Record<string, string>;
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
 * Where the JSON document in fio's output ends: the brace that closes the one opening at `start`
 * (strings and escapes skipped), or -1. fio may print text after it in client mode.
 */
function documentEnd(text: string, start: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) depth++;
    else if (c === 0x7d || c === 0x5d) {
      depth--;
      if (depth === 0) return i;
    }
  }
  return -1;
}

/** fio's `jobs`/`client_stats`: an array of jobs; `{}` (what some writers make of no jobs) is none. */
function jobList(value: unknown, field: string, text: string): FioJob[] | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) return value.map((job, i) => checkJob(job, `${field}[${i}]`, text));
  if (isObject(value) && Object.keys(value).length === 0) return [];
  throw new FioOutputError(`${field}: expected a list of jobs, got ${describe(value)}`, text);
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v)}`;
}

function need<T>(ok: boolean, value: unknown, field: string, what: string, text: string): T {
  if (!ok) throw new FioOutputError(`${field}: expected ${what}, got ${describe(value)}`, text);
  return value as T;
}

const num = (o: Record<string, unknown>, key: string, field: string, text: string, optional = false) => {
  const v = o[key];
  if (optional && v === undefined) return;
  need<number>(typeof v === 'number' && Number.isFinite(v), v, `${field}.${key}`, 'a number', text);
};

function checkLatency(o: Record<string, unknown>, key: string, field: string, text: string): void {
  const lat = o[key];
  if (lat === undefined) return;
  const l = need<Record<string, unknown>>(isObject(lat), lat, `${field}.${key}`, 'an object', text);
  num(l, 'mean', `${field}.${key}`, text);
  if (l.percentile === undefined) return;
  const p = need<Record<string, unknown>>(
    isObject(l.percentile),
    l.percentile,
    `${field}.${key}.percentile`,
    'an object',
    text,
  );
  for (const k of Object.keys(p)) num(p, k, `${field}.${key}.percentile`, text);
}

/**
 * Checks the fields kvmio reads from one job (names, numbers where fio prints numbers), so that a
 * hand-edited or damaged document is refused naming the field, never stored with figures missing.
 */
function checkJob(job: unknown, field: string, text: string): FioJob {
  const j = need<Record<string, unknown>>(isObject(job), job, field, 'a job object', text);
  need(typeof j.jobname === 'string', j.jobname, `${field}.jobname`, 'a string', text);
  num(j, 'error', field, text);
  num(j, 'usr_cpu', field, text);
  num(j, 'sys_cpu', field, text);
  const opts = j['job options'];
  if (opts !== undefined) {
    const o = need<Record<string, unknown>>(
      isObject(opts),
      opts,
      `${field}["job options"]`,
      'an object',
      text,
    );
    for (const [k, v] of Object.entries(o))
      need(typeof v === 'string', v, `${field}["job options"].${k}`, 'a string', text);
  }
  for (const dir of ['read', 'write', 'trim'] as const) {
    if (j[dir] === undefined && dir === 'trim') continue;
    const d = need<Record<string, unknown>>(isObject(j[dir]), j[dir], `${field}.${dir}`, 'an object', text);
    for (const key of ['iops', 'bw_bytes', 'total_ios']) num(d, key, `${field}.${dir}`, text);
    for (const key of ['clat_ns', 'lat_ns']) checkLatency(d, key, `${field}.${dir}`, text);
  }
  return j as unknown as FioJob;
}

/**
 * Parses fio's JSON output. fio may print notes before the document ("note: both iodepth >= 1 and
 * synchronous I/O engine are selected…") and, in client mode, text after it: the document is the
 * object opening at the first line that starts with "{" (after a byte-order mark or indentation),
 * however it is laid out. Every field kvmio reads is checked; a wrong one is named.
 */
export function parseFioJson(text: string): FioReport {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const open = /^[ \t]*\{/m.exec(body);
  const start = open ? open.index + open[0].length - 1 : -1;
  const end = start < 0 ? -1 : documentEnd(body, start);
  if (start < 0 || end < 0) throw new FioOutputError('fio printed no JSON document', text);
  let doc: unknown;
  try {
    doc = JSON.parse(body.slice(start, end + 1));
  } catch (err) {
    throw new FioOutputError(`fio's JSON output does not parse: ${(err as Error).message}`, text);
  }
  const d = need<Record<string, unknown>>(isObject(doc), doc, '(document)', 'an object', text);
  const jobs = jobList(d.jobs, 'jobs', text);
  const clientStats = jobList(d.client_stats, 'client_stats', text);
  if (jobs === undefined && clientStats === undefined)
    throw new FioOutputError('the document has no "jobs" (is it fio --output-format=json output?)', text);
  const globals = d['global options'];
  const globalOptions: Record<string, string> = {};
  // fio 3.39 as a client of several servers prints an empty list here.
  const noGlobals = Array.isArray(globals) && globals.length === 0;
  if (globals !== undefined && !noGlobals) {
    const g = need<Record<string, unknown>>(
      isObject(globals),
      globals,
      '"global options"',
      'an object',
      text,
    );
    for (const [k, v] of Object.entries(g))
      globalOptions[k] = need<string>(typeof v === 'string', v, `"global options".${k}`, 'a string', text);
  }
  const version = d['fio version'];
  return {
    version:
      version === undefined
        ? ''
        : need<string>(typeof version === 'string', version, '"fio version"', 'a string', text),
    jobs: jobs ?? [],
    clientStats,
    globalOptions,
    preamble: body
      .slice(0, start)
      .split('\n')
      .filter((l) => l.trim() !== ''),
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
