import { readdirSync, readFileSync } from 'node:fs';
import type { MetricValue } from '../study/results.js';
import { run } from '../util/proc.js';

/**
 * Host CPU spent by a QEMU process over a measured window, split by thread class. QEMU must run with
 * `-name …,debug-threads=on` so that threads carry names: "CPU 0/KVM" (or "/TCG"), "IO iothread0",
 * "worker" (the aio=threads pool), "call_rcu", … Per-thread CPU comes from /proc/PID/task/TID/schedstat
 * (ns) where the kernel has it, else from utime+stime in stat (clock ticks). The process total comes
 * from /proc/PID/stat, which also holds the CPU of threads that already exited: aio workers come and
 * go, so whatever the total holds beyond the threads we saw is counted as worker time (and reported
 * separately as cpu.unseen_s).
 */

export const THREAD_CLASSES = ['vcpu', 'iothread', 'main', 'worker', 'other'] as const;
export type ThreadClass = (typeof THREAD_CLASSES)[number];

export function classifyThread(comm: string, tid: number, pid: number): ThreadClass {
  if (/^CPU \d+\/(KVM|TCG|HVF|WHPX)/.test(comm)) return 'vcpu';
  // QEMU's own monitor thread (out-of-band QMP) is named like an iothread but serves no disk.
  if (comm === 'IO mon_iothread') return 'other';
  if (comm.startsWith('IO ')) return 'iothread';
  if (tid === pid) return 'main';
  if (comm === 'worker') return 'worker';
  return 'other';
}

export interface ProcStat {
  comm: string;
  /** utime + stime, clock ticks. */
  ticks: number;
  /** cutime + cstime: reaped children, clock ticks. */
  childTicks: number;
  ppid: number;
}

/** Parses /proc/PID/stat; the comm may hold spaces and parentheses, so fields follow the last ")". */
export function parseProcStat(text: string): ProcStat {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) throw new Error(`not a /proc stat line: ${text.slice(0, 80)}`);
  const f = text
    .slice(close + 2)
    .trim()
    .split(/\s+/);
  // After the comm: state(3) ppid(4) … utime(14) stime(15) cutime(16) cstime(17); f[0] is field 3.
  const field = (n: number) => Number(f[n - 3]);
  return {
    comm: text.slice(open + 1, close),
    ticks: field(14) + field(15),
    childTicks: field(16) + field(17),
    ppid: field(4),
  };
}

/** sum_exec_runtime, the first field of schedstat, in ns. */
export function parseSchedstat(text: string): number | undefined {
  const v = Number(text.trim().split(/\s+/)[0]);
  return Number.isFinite(v) ? v : undefined;
}

let clkTck: number | undefined;
export async function clockTicksPerSecond(): Promise<number> {
  if (clkTck === undefined) {
    const r = await run(['getconf', 'CLK_TCK'], { allowFailure: true, timeoutMs: 5000 }).catch(
      () => undefined,
    );
    const v = Number(r?.stdout.trim());
    clkTck = Number.isFinite(v) && v > 0 ? v : 100;
  }
  return clkTck;
}

export interface TaskSample {
  comm: string;
  cpuNs: number;
}

export interface ProcSample {
  atMs: number;
  /** utime+stime of the whole process (live and exited threads), ns. */
  processNs: number;
  tasks: Map<number, TaskSample>;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined; // the thread or process is gone
  }
}

/** One look at a process and its threads; undefined when the process is gone. */
export function sampleProcess(pid: number, ticksPerSecond: number): ProcSample | undefined {
  const nsPerTick = 1e9 / ticksPerSecond;
  const atMs = performance.now();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  const tasks = new Map<number, TaskSample>();
  for (const t of tids) {
    const dir = `/proc/${pid}/task/${t}`;
    const stat = readText(`${dir}/stat`);
    if (!stat) continue;
    const parsed = parseProcStat(stat);
    const sched = readText(`${dir}/schedstat`);
    const ns = sched ? parseSchedstat(sched) : undefined;
    tasks.set(Number(t), { comm: parsed.comm, cpuNs: ns ?? parsed.ticks * nsPerTick });
  }
  const stat = readText(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  return { atMs, processNs: parseProcStat(stat).ticks * nsPerTick, tasks };
}

export type ClassSeconds = Record<ThreadClass, number>;

export interface CpuWindow {
  seconds: number;
  byClass: ClassSeconds;
  /** Whole-process CPU over the window: /proc/PID/stat's delta, or the threads' sum where that is larger
   *  by tick rounding. The classes add up to this. */
  totalS: number;
  /** Part of totalS no live thread accounted for (threads that exited within the window), in byClass.worker. */
  unseenS: number;
  /** Threads seen in the window, by class (a worker pool that grew shows here). */
  threads: Record<ThreadClass, number>;
  series?: Array<{ t: number } & ClassSeconds>;
}

function zeroClasses(): ClassSeconds {
  return { vcpu: 0, iothread: 0, main: 0, worker: 0, other: 0 };
}

/**
 * Per-class CPU between samples. A thread's share is its last seen value minus its value at the first
 * sample (or minus 0 when it was born inside the window).
 */
export function accountWindow(pid: number, samples: ProcSample[]): CpuWindow {
  const first = samples[0];
  const last = samples[samples.length - 1];
  if (!first || !last || samples.length < 2) throw new Error('a CPU window needs two samples');
  const startValue = new Map<number, number>();
  const lastSeen = new Map<number, TaskSample>();
  for (const [tid, t] of first.tasks) startValue.set(tid, t.cpuNs);
  for (const s of samples) for (const [tid, t] of s.tasks) lastSeen.set(tid, t);
  const byClass = zeroClasses();
  const threads = zeroClasses();
  let seenNs = 0;
  for (const [tid, t] of lastSeen) {
    const cls = classifyThread(t.comm, tid, pid);
    const ns = t.cpuNs - (startValue.get(tid) ?? 0);
    byClass[cls] += ns / 1e9;
    threads[cls] += 1;
    seenNs += ns;
  }
  // /proc/PID/stat counts whole ticks: when the threads' ns figures exceed it, that is rounding, and the
  // threads' sum is the more precise total. Any excess of the process total is exited threads.
  const processNs = last.processNs - first.processNs;
  const unseenNs = Math.max(0, processNs - seenNs);
  const totalNs = seenNs + unseenNs;
  byClass.worker += unseenNs / 1e9;
  return {
    seconds: (last.atMs - first.atMs) / 1000,
    byClass,
    totalS: totalNs / 1e9,
    unseenS: unseenNs / 1e9,
    threads,
  };
}

/** Per-interval class seconds between consecutive samples (threads born in an interval count from 0). */
export function seriesOf(pid: number, samples: ProcSample[]): Array<{ t: number } & ClassSeconds> {
  const out: Array<{ t: number } & ClassSeconds> = [];
  const t0 = samples[0]?.atMs ?? 0;
  for (let i = 1; i < samples.length; i++) {
    const prev = samples[i - 1] as ProcSample;
    const cur = samples[i] as ProcSample;
    const point = { t: (cur.atMs - t0) / 1000, ...zeroClasses() };
    for (const [tid, task] of cur.tasks) {
      point[classifyThread(task.comm, tid, pid)] += (task.cpuNs - (prev.tasks.get(tid)?.cpuNs ?? 0)) / 1e9;
    }
    out.push(point);
  }
  return out;
}

/**
 * Samples a QEMU process from start() to stop(): at both ends and every intervalMs between, so that
 * threads living only part of the window are seen.
 */
export class QemuCpuMeter {
  private readonly samples: ProcSample[] = [];
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    readonly pid: number,
    private readonly ticksPerSecond: number,
    private readonly keepSeries: boolean,
  ) {}

  static async start(
    pid: number,
    opts: { intervalMs?: number; series?: boolean } = {},
  ): Promise<QemuCpuMeter> {
    const meter = new QemuCpuMeter(pid, await clockTicksPerSecond(), opts.series ?? false);
    meter.take();
    meter.timer = setInterval(() => meter.take(), opts.intervalMs ?? 1000);
    return meter;
  }

  private take(): void {
    const s = sampleProcess(this.pid, this.ticksPerSecond);
    if (s) this.samples.push(s);
  }

  /** Takes the closing sample and accounts the window. */
  stop(): CpuWindow {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.take();
    const w = accountWindow(this.pid, this.samples);
    if (this.keepSeries) w.series = seriesOf(this.pid, this.samples);
    return w;
  }

  cancel(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/**
 * CPU of a host process and all its descendants (fio forks one process per job): utime+stime of every
 * live process in the tree plus cutime+cstime of each (children it already reaped). Used for the
 * host baseline, where the "hypervisor" cost is fio's own.
 */
export function processTreeNs(rootPid: number, ticksPerSecond: number): number | undefined {
  const parentOf = new Map<number, number>();
  const ticksOf = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const text = readText(`/proc/${name}/stat`);
    if (!text) continue;
    const s = parseProcStat(text);
    parentOf.set(Number(name), s.ppid);
    ticksOf.set(Number(name), s.ticks + s.childTicks);
  }
  if (!ticksOf.has(rootPid)) return undefined;
  const inTree = (pid: number): boolean => {
    for (let p: number | undefined = pid, hops = 0; p !== undefined && hops < 64; hops++) {
      if (p === rootPid) return true;
      if (p <= 1) return false;
      p = parentOf.get(p);
    }
    return false;
  };
  let ticks = 0;
  for (const [pid, t] of ticksOf) if (inTree(pid)) ticks += t;
  return (ticks * 1e9) / ticksPerSecond;
}

/** Samples a process tree every intervalMs; stop() returns CPU seconds between the first and last sample. */
export class TreeCpuMeter {
  private first: { atMs: number; ns: number } | undefined;
  private last: { atMs: number; ns: number } | undefined;
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    readonly pid: number,
    private readonly ticksPerSecond: number,
  ) {}

  static async start(pid: number, intervalMs = 250): Promise<TreeCpuMeter> {
    const meter = new TreeCpuMeter(pid, await clockTicksPerSecond());
    meter.take();
    meter.timer = setInterval(() => meter.take(), intervalMs);
    return meter;
  }

  private take(): void {
    const ns = processTreeNs(this.pid, this.ticksPerSecond);
    if (ns === undefined) return;
    const s = { atMs: performance.now(), ns };
    if (!this.first) this.first = s;
    this.last = s;
  }

  /** CPU seconds and window seconds; undefined when the process was never seen twice. */
  stop(): { seconds: number; totalS: number } | undefined {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.take();
    if (!this.first || !this.last || this.last === this.first) return undefined;
    return {
      seconds: (this.last.atMs - this.first.atMs) / 1000,
      totalS: (this.last.ns - this.first.ns) / 1e9,
    };
  }

  cancel(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** CPU % of one core per 1000 IOPS and per 1 GB/s (1e9 bytes/s), as the study's charts show them. */
export function cpuEfficiency(
  totalS: number,
  windowS: number,
  io: { iops: number; bwBytes: number },
): MetricValue[] {
  const out: MetricValue[] = [];
  if (windowS <= 0) return out;
  const pct = (100 * totalS) / windowS;
  if (io.iops > 0) out.push({ metric: 'cpu.pct_per_kiops', value: pct / (io.iops / 1000), unit: '%/kIOPS' });
  if (io.bwBytes > 0)
    out.push({ metric: 'cpu.pct_per_gbps', value: pct / (io.bwBytes / 1e9), unit: '%/(GB/s)' });
  return out;
}

export function cpuWindowMetrics(w: CpuWindow, io?: { iops: number; bwBytes: number }): MetricValue[] {
  const out: MetricValue[] = [
    { metric: 'cpu.vcpu_s', value: w.byClass.vcpu, unit: 's' },
    { metric: 'cpu.iothread_s', value: w.byClass.iothread, unit: 's' },
    { metric: 'cpu.main_s', value: w.byClass.main, unit: 's' },
    { metric: 'cpu.worker_s', value: w.byClass.worker, unit: 's' },
    { metric: 'cpu.other_s', value: w.byClass.other, unit: 's' },
    { metric: 'cpu.total_s', value: w.totalS, unit: 's' },
    { metric: 'cpu.unseen_s', value: w.unseenS, unit: 's' },
    { metric: 'cpu.window_s', value: w.seconds, unit: 's' },
    { metric: 'cpu.worker_threads', value: w.threads.worker, unit: 'threads' },
  ];
  if (io) out.push(...cpuEfficiency(w.totalS, w.seconds, io));
  return out;
}
