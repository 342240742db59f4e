import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hostFioClient } from '../guest/fio-bundle.js';
import type { GuestVm } from '../guest/vm.js';
import { cpuEfficiency } from '../metrics/cpu.js';
import { PointFailure } from '../util/errors.js';
import { runtimeDir } from '../util/paths.js';
import { run, sleep } from '../util/proc.js';
import { formatSizeForTool } from '../util/units.js';
import type { FioJobSpec, RunContext } from './fio.js';
import { fioRunTimeoutMs } from './fio.js';
import { type FioJob, type FioReport, fioJobMetrics, parseFioJson } from './fio-json.js';
import { guestRun, guestTry } from './guest-cmd.js';
import type { StepResult } from './types.js';
import {
  duringWindow,
  type MeasuredWindow,
  startGuestMeters,
  windowArtifacts,
  windowMetrics,
} from './window.js';

/**
 * Several guests driven at the same moment with fio's own client/server mode: each guest runs
 * `fio --server` (reachable through a host port forward), the controller runs one `fio --client=…` per
 * server with a job file. fio reports one entry per server and an "All clients" aggregate; the "all" step
 * carries the guests' summed IOPS and bandwidth and fio's combined latency (fio gives no percentiles for it).
 * The same job runs on every server; the filename is each guest's test disk, the same device name.
 */

export interface FioServer {
  host: string;
  port: number;
}

/** The job as an fio job file (client mode takes job files, not command-line job options). */
export function fioJobFile(spec: FioJobSpec, filename: string): string {
  const lines = [
    `[${spec.name}]`,
    `filename=${filename}`,
    'direct=1',
    `ioengine=${spec.ioengine}`,
    `rw=${spec.rw}`,
    `bs=${formatSizeForTool(spec.bs)}`,
    `iodepth=${spec.iodepth}`,
    `numjobs=${spec.numjobs}`,
    'group_reporting',
    'time_based',
    `runtime=${spec.runtimeSeconds}`,
    `ramp_time=${spec.rampSeconds}`,
  ];
  if (spec.sizeBytes !== undefined) lines.push(`size=${formatSizeForTool(spec.sizeBytes)}`);
  if (spec.rwmixread !== undefined) lines.push(`rwmixread=${spec.rwmixread}`);
  if (spec.rateIops !== undefined) lines.push(`rate_iops=${spec.rateIops}`);
  for (const [k, v] of Object.entries(spec.extra)) lines.push(`${k}=${v}`);
  return `${lines.join('\n')}\n`;
}

/** `fio` is the client's command: the host's fio, or kvmio's bundle of the guests' own (hostFioClient). */
export function fioClientArgv(servers: FioServer[], jobFile: string, fio: string[] = ['fio']): string[] {
  // --eta=never: a busy server can miss the client's periodic ETA request and the client then hangs
  // until its timeout (a known fio client/server issue); nothing here reads the ETA anyway.
  return [
    ...fio,
    ...servers.map((s) => `--client=${s.host},${s.port}`),
    '--eta=never',
    '--output-format=json',
    jobFile,
  ];
}

const AGGREGATE = 'All clients';

/**
 * Per-guest steps (guest = index of the server in `servers`) plus the aggregate (guest "all"). fio
 * labels entries with the server's address and port; several servers on one host differ by port.
 */
export function clientStepResults(
  report: FioReport,
  servers: FioServer[],
  step: StepResult['step'],
): StepResult[] {
  const stats = report.clientStats ?? [];
  const out: StepResult[] = [];
  servers.forEach((server, guest) => {
    const job = stats.find(
      (j) => j.jobname !== AGGREGATE && j.hostname === server.host && Number(j.port) === server.port,
    );
    if (!job)
      throw new PointFailure(`fio --client reported nothing for the server at ${server.host}:${server.port}`);
    if (job.error !== 0) throw new PointFailure(`fio on guest ${guest} failed with error ${job.error}`);
    out.push({ step, guest, metrics: fioJobMetrics(job) });
  });
  const all: FioJob | undefined = stats.find((j) => j.jobname === AGGREGATE);
  // fio prints the aggregate only with more than one client. Its IOPS and bandwidth divide the total I/O
  // by the longest client runtime; the study wants the guests' sum, so those two are summed here, and
  // latencies stay fio's combined figures.
  const metrics = fioJobMetrics(all ?? (stats[0] as FioJob)).map((m) =>
    /\.(iops|bw_bytes)$/.test(m.metric)
      ? {
          ...m,
          value: out.reduce((sum, g) => sum + (g.metrics.find((x) => x.metric === m.metric)?.value ?? 0), 0),
        }
      : m,
  );
  out.push({ step, guest: 'all', metrics });
  return out;
}

/**
 * Runs one job on every server at once from the host; the raw JSON and argv go with the aggregate.
 * With `vms` (same order as `servers`), each guest's QEMU CPU and responsiveness are measured over the
 * window and added to its step; "all" gets the summed CPU.
 */
export async function runFioClients(
  servers: FioServer[],
  spec: FioJobSpec,
  filename: string,
  step: StepResult['step'],
  ctx: RunContext,
  vms?: GuestVm[],
  fio: string[] = ['fio'],
): Promise<StepResult[]> {
  const dir = mkdtempSync(join(runtimeDir(), 'fio-client-'));
  try {
    const jobFile = join(dir, `${spec.name.replace(/[^\w.-]/g, '_')}.fio`);
    const jobText = fioJobFile(spec, filename);
    writeFileSync(jobFile, jobText);
    const argv = fioClientArgv(servers, jobFile, fio);
    ctx.log(`host: ${argv.join(' ')}`);
    const timeoutMs = Math.max(1000, Math.min(fioRunTimeoutMs(spec), ctx.deadline - Date.now()));
    let windows: Array<MeasuredWindow | undefined> = [];
    const { result: r } = await duringWindow(
      run(argv, { timeoutMs, allowFailure: true }),
      spec.rampSeconds * 1000,
      spec.runtimeSeconds * 1000,
      async () => {
        const meters = await Promise.all((vms ?? []).map((vm) => startGuestMeters(vm, ctx.series)));
        return {
          stop: async () => {
            windows = await Promise.all(meters.map((m) => m.stop()));
            return {};
          },
          cancel: () => {
            for (const m of meters) m.cancel();
          },
        };
      },
    );
    if (r.code !== 0 || r.timedOut) {
      const tail = (r.stderr || r.stdout).trim().split('\n').slice(-8).join('\n');
      throw new PointFailure(`fio --client ${r.timedOut ? 'timed out' : `exited with ${r.code}`}:\n${tail}`, {
        stderrTail: tail,
      });
    }
    const report = parseFioJson(r.stdout);
    const steps = clientStepResults(report, servers, step);
    const all = steps[steps.length - 1] as StepResult;
    let cpuTotal = 0;
    let cpuWindow = 0;
    windows.forEach((w, guest) => {
      const s = steps[guest] as StepResult;
      s.metrics.push(...windowMetrics(w, throughputOf(s)));
      s.artifacts = windowArtifacts(w);
      cpuTotal += w?.cpu?.totalS ?? 0;
      cpuWindow = Math.max(cpuWindow, w?.cpu?.seconds ?? 0);
    });
    if (cpuWindow > 0) {
      all.metrics.push({ metric: 'cpu.total_s', value: cpuTotal, unit: 's' });
      all.metrics.push(...cpuEfficiency(cpuTotal, cpuWindow, throughputOf(all)));
    }
    all.artifacts = { argv: JSON.stringify(argv), fio_job: jobText, fio_json: r.stdout };
    return steps;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function throughputOf(s: StepResult): { iops: number; bwBytes: number } {
  const sum = (suffix: string) =>
    s.metrics.filter((m) => m.metric.endsWith(suffix)).reduce((a, m) => a + m.value, 0);
  return { iops: sum('.iops'), bwBytes: sum('.bw_bytes') };
}

const SERVER_PIDFILE = '/run/kvmio-fio-server.pid';
export const FIO_SERVER_PORT = 8765;

/**
 * Starts `fio --server` in a guest, detached (--daemonize), listening on all guest addresses so that a
 * host port forward reaches it. Returns how to stop it.
 */
export async function startGuestFioServer(vm: GuestVm, port = FIO_SERVER_PORT): Promise<() => Promise<void>> {
  const listen = `--server=0.0.0.0,${port}`;
  await guestRun(vm, ['fio', listen, `--daemonize=${SERVER_PIDFILE}`], 60_000);
  return async () => {
    // fio keeps its pidfile buffered until it exits, and forks a process per client connection that
    // outlives the daemon: the server's processes are found by their command line instead.
    const serverPids = async () => {
      const r = await vm.exec(['ps', '-o', 'pid,args'], { timeoutMs: 30_000 }).catch(() => undefined);
      return (r?.stdout ?? '')
        .split('\n')
        .map((l) => /^\s*(\d+)\s+fio (.*)$/.exec(l))
        .filter((m): m is RegExpExecArray => m !== null && (m[2] ?? '').split(' ').includes(listen))
        .map((m) => m[1] as string);
    };
    let pids = await serverPids();
    if (pids.length) await guestTry(vm, ['kill', ...pids]);
    for (let i = 0; i < 20 && pids.length; i++) {
      await sleep(250);
      pids = await serverPids();
    }
    if (pids.length) await guestTry(vm, ['kill', '-9', ...pids]);
    await guestTry(vm, ['rm', '-f', SERVER_PIDFILE]);
  };
}

/**
 * A fio workload on several guests at once: fio servers started in each guest, reached through
 * the host addresses the backend forwarded to their FIO_SERVER_PORT.
 */
export async function runFioOnGuests(
  guests: Array<{ vm: GuestVm; server: FioServer }>,
  spec: FioJobSpec,
  ctx: RunContext,
): Promise<StepResult[]> {
  // fio's colon-separated list: one job over every test disk of the variant, as on a single guest.
  const disks = await Promise.all(guests.map(async (g) => (await g.vm.testDisks()).join(':')));
  if (new Set(disks).size !== 1) {
    throw new PointFailure(`the guests' test disks differ (${disks.join(', ')}); fio's job file names one`);
  }
  // fio's client/server protocol connects equal versions only: the client is the guests' own fio.
  const versions = await Promise.all(
    guests.map(async (g) => (await guestRun(g.vm, ['fio', '--version'], 60_000)).stdout.trim()),
  );
  if (new Set(versions).size !== 1)
    throw new PointFailure(
      `the guests run different fio versions (${versions.join(', ')}); one client cannot speak to all`,
    );
  const client = await hostFioClient(versions[0] as string).catch((e: Error) => {
    throw new PointFailure(e.message);
  });
  const stops: Array<() => Promise<void>> = [];
  try {
    for (const g of guests) stops.push(await startGuestFioServer(g.vm));
    return await runFioClients(
      guests.map((g) => g.server),
      spec,
      disks[0] as string,
      null,
      ctx,
      guests.map((g) => g.vm),
      client,
    );
  } finally {
    for (const stop of stops) await stop();
  }
}
