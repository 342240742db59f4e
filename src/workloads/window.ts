import type { GuestVm } from '../guest/vm.js';
import { type HostAccess, LOCAL_HOST } from '../host/access.js';
import {
  type CpuWindow,
  cpuEfficiency,
  cpuWindowMetrics,
  QemuCpuMeter,
  TreeCpuMeter,
} from '../metrics/cpu.js';
import { type ProbeSummary, probeMetrics, ResponsivenessProbe } from '../metrics/probe.js';
import { sleep } from '../util/proc.js';
import type { MetricValue } from './types.js';

/**
 * The measured window of a run: host CPU (per QEMU thread class, or of the host fio process tree) and
 * VM responsiveness, from the end of the ramp to the end of the runtime, timed from the moment the
 * command was started, or, where the host can see the guest's I/O begin (QEMU's block statistics),
 * from that moment: a tool in an emulated guest can need longer than its ramp to get going.
 */

export interface MeasuredWindow {
  cpu?: CpuWindow;
  hostCpu?: { seconds: number; totalS: number };
  probe?: ProbeSummary;
}

export interface WindowMeter {
  stop(): Promise<MeasuredWindow>;
  cancel(): void;
}

export async function startGuestMeters(vm: GuestVm, series: boolean): Promise<WindowMeter> {
  // QEMU on another host is sampled there, over that host's connection.
  // Where kvmio cannot reach the host, the window has no CPU figures (the host's facts say why).
  const where = vm.qemuHost ? await vm.qemuHost() : { pid: vm.qemuPid(), host: LOCAL_HOST };
  // The storage daemon serving the disks (kvmio starts it on this machine) is measured beside QEMU.
  const daemonPid = where?.host.local ? vm.storageDaemonPid?.() : undefined;
  const cpu = where && (await QemuCpuMeter.start(where.pid, { series, host: where.host, daemonPid }));
  const probe = ResponsivenessProbe.start(vm);
  return {
    stop: async () => ({ probe: probe.stop(), ...(cpu ? { cpu: await cpu.stop() } : {}) }),
    cancel: () => {
      probe.stop();
      cpu?.cancel();
    },
  };
}

export async function startHostMeters(pid: number, host: HostAccess = LOCAL_HOST): Promise<WindowMeter> {
  const tree = await TreeCpuMeter.start(pid, { host });
  return {
    stop: async () => ({ hostCpu: await tree.stop() }),
    cancel: () => tree.cancel(),
  };
}

/** Metrics of a window; `io` (IOPS, bytes/s) adds CPU per kIOPS and per GB/s. */
export function windowMetrics(
  w: MeasuredWindow | undefined,
  io?: { iops: number; bwBytes: number },
): MetricValue[] {
  if (!w) return [];
  const out: MetricValue[] = [];
  if (w.cpu) out.push(...cpuWindowMetrics(w.cpu, io));
  if (w.hostCpu) {
    out.push({ metric: 'cpu.total_s', value: w.hostCpu.totalS, unit: 's' });
    out.push({ metric: 'cpu.window_s', value: w.hostCpu.seconds, unit: 's' });
    if (io) out.push(...cpuEfficiency(w.hostCpu.totalS, w.hostCpu.seconds, io));
  }
  if (w.probe) out.push(...probeMetrics(w.probe));
  return out;
}

export function windowArtifacts(w: MeasuredWindow | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (w?.cpu?.series) out.cpu_series = JSON.stringify(w.cpu.series);
  if (w?.probe)
    out.probe_samples = JSON.stringify({ monitorMs: w.probe.monitorMs, agentMs: w.probe.agentMs });
  return out;
}

/** A delay that can be abandoned (so that no timer keeps the process alive after the work ended). */
function delay(ms: number): { done: Promise<void>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const done = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, Math.max(0, ms));
  });
  return { done, cancel: () => clearTimeout(timer) };
}

/**
 * Waits until `ioStarted` says the work's I/O began (or the work ended). Returns when that happened,
 * as the midpoints of the last poll that said no and of the one that said yes: the I/O began between
 * them. Undefined when the work ended first or the question cannot be answered.
 */
async function waitForIo(
  ioStarted: () => Promise<boolean>,
  finished: () => boolean,
): Promise<{ atMs: number; uncertaintyMs: number } | undefined> {
  let lastNo = performance.now();
  while (!finished()) {
    const t0 = performance.now();
    let yes: boolean;
    try {
      yes = await ioStarted();
    } catch {
      return undefined;
    }
    const mid = (t0 + performance.now()) / 2;
    if (yes) return { atMs: mid, uncertaintyMs: mid - lastNo };
    lastNo = mid;
    await sleep(IO_POLL_MS);
  }
  return undefined;
}

const IO_POLL_MS = 100;

/**
 * Awaits `work` while measuring the window [startAfterMs, startAfterMs + lengthMs] from now, or, with
 * `ioStarted`, from the moment the work's I/O begins (under emulation a tool in the guest can take
 * seconds to start, and a window timed from its launch would measure the start-up instead of the I/O).
 * The window then shrinks by how late the start was seen, so that it stays inside the measured phase.
 * If the work ends before the window closes, the window closes then (and a failed work's error is
 * rethrown).
 */
export async function duringWindow<T>(
  work: Promise<T>,
  startAfterMs: number,
  lengthMs: number,
  startMeters: () => Promise<WindowMeter>,
  ioStarted?: () => Promise<boolean>,
): Promise<{ result: T; window?: MeasuredWindow }> {
  let finished = false;
  const settled = work.then(
    () => {
      finished = true;
    },
    () => {
      finished = true;
    },
  );
  let windowMs = lengthMs;
  if (ioStarted) {
    const began = await waitForIo(ioStarted, () => finished);
    if (began) windowMs = Math.max(lengthMs - began.uncertaintyMs, lengthMs / 2);
  }
  const ramp = delay(startAfterMs);
  await Promise.race([ramp.done, settled]);
  ramp.cancel();
  let window: MeasuredWindow | undefined;
  if (!finished) {
    let meter: WindowMeter | undefined;
    try {
      meter = await startMeters();
      const length = delay(windowMs);
      await Promise.race([length.done, settled]);
      length.cancel();
      window = await meter.stop();
    } catch (err) {
      meter?.cancel();
      await work; // the tool's own failure explains more than the meter's
      throw err;
    }
  }
  return { result: await work, window };
}
