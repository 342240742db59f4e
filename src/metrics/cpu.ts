import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { type HostAccess, LOCAL_HOST } from '../host/access.js';
import { classifyThread, type ThreadClass } from '../study/qemu-threads.js';
import type { MetricValue } from '../study/results.js';

/**
 * Host CPU spent by a QEMU process over a measured window, split by thread class. QEMU must run with
 * `-name …,debug-threads=on` so that threads carry names: "CPU 0/KVM" (or "/TCG"), "IO iothread0",
 * "worker" (the aio=threads pool), "call_rcu", … Per-thread CPU comes from /proc/PID/task/TID/schedstat
 * (ns) where the kernel has it, else from utime+stime in stat (clock ticks). The process total comes
 * from /proc/PID/stat, which also holds the CPU of threads that already exited: aio workers come and
 * go, so whatever the total holds beyond the threads we saw is counted as worker time (and reported
 * separately as cpu.unseen_s).
 */

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
  clkTck ??= await hostTicksPerSecond(LOCAL_HOST);
  return clkTck;
}

const remoteTicks = new WeakMap<HostAccess, Promise<number>>();

async function hostTicksPerSecond(host: HostAccess): Promise<number> {
  if (host.local) {
    const r = await host
      .run(['getconf', 'CLK_TCK'], { allowFailure: true, timeoutMs: 10_000 })
      .catch(() => undefined);
    const v = Number(r?.stdout.trim());
    return Number.isFinite(v) && v > 0 ? v : 100;
  }
  let ticks = remoteTicks.get(host);
  if (!ticks) {
    ticks = ProcReaderSession.of(host)
      .request('tck')
      .then((text) => {
        const v = Number(text.trim());
        return Number.isFinite(v) && v > 0 ? v : 100;
      });
    ticks.catch(() => remoteTicks.delete(host));
    remoteTicks.set(host, ticks);
  }
  return ticks;
}

/**
 * Starts the host's /proc reader before anything is measured: its first start is a remote login,
 * which may take seconds and must not fall inside a measured window.
 */
export async function openProcReader(host: HostAccess): Promise<void> {
  if (!host.local) await hostTicksPerSecond(host);
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

/** A sample from the texts of /proc/PID/stat and the threads' stat and schedstat files. */
function sampleOf(
  atMs: number,
  processStat: string | undefined,
  threads: Array<{ tid: number; stat?: string; schedstat?: string }>,
  nsPerTick: number,
): ProcSample | undefined {
  if (!processStat) return undefined;
  const tasks = new Map<number, TaskSample>();
  for (const t of threads) {
    if (!t.stat) continue;
    const parsed = parseProcStat(t.stat);
    const ns = t.schedstat ? parseSchedstat(t.schedstat) : undefined;
    tasks.set(t.tid, { comm: parsed.comm, cpuNs: ns ?? parsed.ticks * nsPerTick });
  }
  return { atMs, processNs: parseProcStat(processStat).ticks * nsPerTick, tasks };
}

/** One look at a process and its threads on this machine; undefined when the process is gone. */
export function sampleProcess(pid: number, ticksPerSecond: number): ProcSample | undefined {
  const atMs = performance.now();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  const threads = tids.map((t) => {
    const dir = `/proc/${pid}/task/${t}`;
    return { tid: Number(t), stat: readText(`${dir}/stat`), schedstat: readText(`${dir}/schedstat`) };
  });
  return sampleOf(atMs, readText(`/proc/${pid}/stat`), threads, 1e9 / ticksPerSecond);
}

/**
 * `grep -H '' FILES…` output as file → content. Every file here is one line; a comm may hold ':' but
 * the path before the first ':' never does.
 */
export function parseGrepDump(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) out.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return out;
}

/**
 * The /proc reader on another host: one long-lived command on the host's SSH connection that answers
 * each request line with the files asked for, then a line "kvmio-end". A request is a pid (the process
 * and its threads' stat and schedstat), "all" (every process's stat) or "tck" (clock ticks per second). It is a fixed script that reads
 * only its validated request, so no name ever becomes shell text; and, started once, a sample costs a
 * line each way rather than a remote login (whose shell start-up alone can take seconds).
 */
const PROC_READER_SCRIPT = `while IFS= read -r req; do
  case "$req" in
    tck) getconf CLK_TCK ;;
    all) echo "kvmio-now:$(date +%s%N)"; find /proc -mindepth 2 -maxdepth 2 -path '/proc/[0-9]*/stat' -exec grep -H '' {} + 2>/dev/null ;;
    ''|*[!0-9]*) ;;
    *) echo "kvmio-now:$(date +%s%N)"; find "/proc/$req/stat" "/proc/$req/task" -maxdepth 2 \\( -path "/proc/$req/stat" -o -path "/proc/$req/task/*/stat" -o -path "/proc/$req/task/*/schedstat" \\) -exec grep -H '' {} + 2>/dev/null ;;
  esac
  echo kvmio-end
done`;

export class ProcReaderSession {
  private child: ChildProcess | undefined;
  private starting: Promise<ChildProcess> | undefined;
  private buffer = '';
  private readonly waiting: Array<{ resolve: (text: string) => void; reject: (e: Error) => void }> = [];
  private static readonly sessions = new Map<HostAccess, ProcReaderSession>();

  private constructor(private readonly host: HostAccess) {}

  static of(host: HostAccess): ProcReaderSession {
    let s = ProcReaderSession.sessions.get(host);
    if (!s) {
      s = new ProcReaderSession(host);
      ProcReaderSession.sessions.set(host, s);
    }
    return s;
  }

  private async session(): Promise<ChildProcess> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) return this.child;
    this.starting ??= this.host
      .start(['sh', '-c', PROC_READER_SCRIPT, 'kvmio-proc-reader'])
      .then((child) => {
        this.child = child;
        this.buffer = '';
        child.stdout?.on('data', (d: Buffer) => this.onData(d.toString('utf8')));
        child.once('exit', () => {
          if (this.child === child) this.child = undefined;
          for (const w of this.waiting.splice(0))
            w.reject(new Error(`the /proc reader on ${this.host.label} ended`));
        });
        child.stdin?.on('error', () => undefined);
        return child;
      })
      .finally(() => {
        this.starting = undefined;
      });
    return this.starting;
  }

  private onData(text: string): void {
    this.buffer += text;
    for (;;) {
      const end = this.buffer.indexOf('kvmio-end\n');
      if (end < 0) return;
      const reply = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 'kvmio-end\n'.length);
      this.waiting.shift()?.resolve(reply);
    }
  }

  /** Answers one request ("all" or a pid); replies come in request order. */
  async request(req: 'all' | 'tck' | number, timeoutMs = 30_000): Promise<string> {
    const child = await this.session();
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new Error(`the /proc reader on ${this.host.label} did not answer within ${timeoutMs / 1000}s`),
        );
        child.kill('SIGKILL');
      }, timeoutMs);
      this.waiting.push({
        resolve: (t) => {
          clearTimeout(timer);
          resolve(t);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      child.stdin?.write(`${req}\n`);
    });
  }

  /** Ends every reader session (the end of a run). */
  static closeAll(): void {
    for (const s of ProcReaderSession.sessions.values()) s.child?.stdin?.end();
    ProcReaderSession.sessions.clear();
  }
}

/** The host's clock (ms) at a reader reply, from its "kvmio-now:NS" line. */
function remoteTimeMs(files: Map<string, string>): number | undefined {
  const ns = files.get('kvmio-now');
  return ns && /^\d+$/.test(ns) ? Number(BigInt(ns) / 1000n) / 1000 : undefined;
}

/**
 * The same look at a process on another host, through the host's /proc reader session: the files a
 * local sample reads, with the same accounting. The sample's time is the host's own clock when it
 * read them, so a window's length does not depend on the network's round trips.
 */
export async function sampleProcessOn(
  host: HostAccess,
  pid: number,
  ticksPerSecond: number,
): Promise<ProcSample | undefined> {
  if (host.local) return sampleProcess(pid, ticksPerSecond);
  const base = `/proc/${pid}`;
  const t0 = performance.now();
  const text = await ProcReaderSession.of(host).request(pid);
  const files = parseGrepDump(text);
  const atMs = remoteTimeMs(files) ?? (t0 + performance.now()) / 2;
  const threads = new Map<number, { tid: number; stat?: string; schedstat?: string }>();
  for (const [path, content] of files) {
    const m = /^\/proc\/\d+\/task\/(\d+)\/(stat|schedstat)$/.exec(path);
    if (!m) continue;
    const tid = Number(m[1]);
    const t = threads.get(tid) ?? { tid };
    t[m[2] as 'stat' | 'schedstat'] = content;
    threads.set(tid, t);
  }
  return sampleOf(atMs, files.get(`${base}/stat`), [...threads.values()], 1e9 / ticksPerSecond);
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
  return { vcpu: 0, iothread: 0, main: 0, worker: 0, other: 0, 'storage-daemon': 0 };
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
 * Reads a host every intervalMs between begin() and finish(), at both ends too. A slow host skips a
 * beat rather than piling up reads.
 */
abstract class PeriodicSampler {
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;

  protected abstract take(): Promise<void>;

  protected async begin(intervalMs: number): Promise<void> {
    await this.take();
    this.timer = setInterval(() => {
      if (!this.inFlight) this.inFlight = this.take().finally(() => (this.inFlight = undefined));
    }, intervalMs);
  }

  /** Stops the timer and takes the closing sample, after any read still under way. */
  protected async finish(): Promise<void> {
    this.cancel();
    const closing = this.take();
    await this.inFlight?.catch(() => undefined);
    await closing;
  }

  cancel(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** Clock ticks per second of the host a process runs on. */
function ticksPerSecondOn(host: HostAccess): Promise<number> {
  return host.local ? clockTicksPerSecond() : hostTicksPerSecond(host);
}

/**
 * A QEMU window with the storage daemon's window added as class `storage-daemon` (all its threads):
 * the total, and so CPU per 1000 IOPS, then holds what serving the disk cost wherever it ran.
 */
export function withStorageDaemon(qemu: CpuWindow, daemon: CpuWindow): CpuWindow {
  const byClass = { ...qemu.byClass, 'storage-daemon': daemon.totalS };
  const daemonThreads = Object.values(daemon.threads).reduce((a, b) => a + b, 0);
  const threads = { ...qemu.threads, 'storage-daemon': daemonThreads };
  const out: CpuWindow = { ...qemu, byClass, threads, totalS: qemu.totalS + daemon.totalS };
  if (qemu.series && daemon.series && qemu.series.length === daemon.series.length) {
    out.series = qemu.series.map((p, i) => {
      const d = daemon.series![i]!;
      const { t: _t, ...classes } = d;
      const sum = Object.values(classes).reduce((a, b) => a + b, 0);
      return { ...p, 'storage-daemon': sum };
    });
  }
  return out;
}

/**
 * Samples a QEMU process (and the storage daemon serving its disks, when it has one) from start() to
 * stop(): at both ends and every intervalMs between, so that threads living only part of the window
 * are seen. The processes run on `host` (this machine by default; a remote host is read over its
 * connection, with the same accounting).
 */
export class QemuCpuMeter extends PeriodicSampler {
  private readonly samples: ProcSample[] = [];
  private readonly daemonSamples: ProcSample[] = [];

  private constructor(
    readonly pid: number,
    private readonly host: HostAccess,
    private readonly ticksPerSecond: number,
    private readonly keepSeries: boolean,
    readonly daemonPid: number | undefined,
  ) {
    super();
  }

  static async start(
    pid: number,
    opts: { intervalMs?: number; series?: boolean; host?: HostAccess; daemonPid?: number } = {},
  ): Promise<QemuCpuMeter> {
    const host = opts.host ?? LOCAL_HOST;
    const meter = new QemuCpuMeter(
      pid,
      host,
      await ticksPerSecondOn(host),
      opts.series ?? false,
      opts.daemonPid,
    );
    await meter.begin(opts.intervalMs ?? 1000);
    return meter;
  }

  private sample(pid: number): Promise<ProcSample | undefined> | ProcSample | undefined {
    return this.host.local
      ? sampleProcess(pid, this.ticksPerSecond)
      : sampleProcessOn(this.host, pid, this.ticksPerSecond);
  }

  protected async take(): Promise<void> {
    const s = await this.sample(this.pid);
    const d = this.daemonPid === undefined ? undefined : await this.sample(this.daemonPid);
    if (s) this.samples.push(s);
    if (d) this.daemonSamples.push(d);
  }

  /** Takes the closing sample and accounts the window. */
  async stop(): Promise<CpuWindow> {
    await this.finish();
    const account = (pid: number, samples: ProcSample[]) => {
      samples.sort((a, b) => a.atMs - b.atMs);
      const w = accountWindow(pid, samples);
      if (this.keepSeries) w.series = seriesOf(pid, samples);
      return w;
    };
    const w = account(this.pid, this.samples);
    return this.daemonPid === undefined
      ? w
      : withStorageDaemon(w, account(this.daemonPid, this.daemonSamples));
  }
}

/**
 * CPU of a host process and all its descendants (fio forks one process per job): utime+stime of every
 * live process in the tree plus cutime+cstime of each (children it already reaped). Used for the
 * host baseline, where the "hypervisor" cost is fio's own. `stats` are /proc/PID/stat texts by pid.
 */
export function treeNsOf(
  stats: Iterable<[number, string]>,
  rootPid: number,
  ticksPerSecond: number,
): number | undefined {
  const parentOf = new Map<number, number>();
  const ticksOf = new Map<number, number>();
  for (const [pid, text] of stats) {
    const s = parseProcStat(text);
    parentOf.set(pid, s.ppid);
    ticksOf.set(pid, s.ticks + s.childTicks);
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

/** Every process's /proc/PID/stat on a host (this machine read directly; another in one command). */
async function allProcStats(host: HostAccess): Promise<{ stats: Array<[number, string]>; atMs?: number }> {
  const stats: Array<[number, string]> = [];
  if (host.local) {
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      const text = readText(`/proc/${name}/stat`);
      if (text) stats.push([Number(name), text]);
    }
    return { stats };
  }
  const files = parseGrepDump(await ProcReaderSession.of(host).request('all'));
  for (const [path, stat] of files) {
    const m = /^\/proc\/(\d+)\/stat$/.exec(path);
    if (m) stats.push([Number(m[1]), stat]);
  }
  return { stats, atMs: remoteTimeMs(files) };
}

/** Samples a process tree every intervalMs; stop() returns CPU seconds between the first and last sample. */
export class TreeCpuMeter extends PeriodicSampler {
  private first: { atMs: number; ns: number } | undefined;
  private last: { atMs: number; ns: number } | undefined;

  private constructor(
    readonly pid: number,
    private readonly host: HostAccess,
    private readonly ticksPerSecond: number,
  ) {
    super();
  }

  static async start(
    pid: number,
    opts: { intervalMs?: number; host?: HostAccess } = {},
  ): Promise<TreeCpuMeter> {
    const host = opts.host ?? LOCAL_HOST;
    const meter = new TreeCpuMeter(pid, host, await ticksPerSecondOn(host));
    await meter.begin(opts.intervalMs ?? 250);
    return meter;
  }

  protected async take(): Promise<void> {
    const t0 = performance.now();
    const { stats, atMs } = await allProcStats(this.host);
    const ns = treeNsOf(stats, this.pid, this.ticksPerSecond);
    if (ns === undefined) return;
    const s = { atMs: atMs ?? t0, ns };
    if (!this.first) this.first = s;
    if (!this.last || s.atMs > this.last.atMs) this.last = s;
  }

  /** CPU seconds and window seconds; undefined when the process was never seen twice. */
  async stop(): Promise<{ seconds: number; totalS: number } | undefined> {
    await this.finish();
    if (!this.first || !this.last || this.last === this.first) return undefined;
    return {
      seconds: (this.last.atMs - this.first.atMs) / 1000,
      totalS: (this.last.ns - this.first.ns) / 1e9,
    };
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
  if (w.threads['storage-daemon'] > 0)
    out.push({ metric: 'cpu.storage_daemon_s', value: w.byClass['storage-daemon'], unit: 's' });
  if (io) out.push(...cpuEfficiency(w.totalS, w.seconds, io));
  return out;
}
