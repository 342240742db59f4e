import { type HostAccess, LOCAL_HOST } from '../host/access.js';
import type { FioWorkload } from '../study/types.js';
import { PointFailure } from '../util/errors.js';
import type { RunResult } from '../util/proc.js';
import { formatSizeForTool } from '../util/units.js';
import { type FioJob, fioJobMetrics, fioJobThroughput, parseFioJson, singleJob } from './fio-json.js';
import { guestRun, guestTry } from './guest-cmd.js';
import type { MetricValue, SingleTarget, StepResult } from './types.js';
import {
  duringWindow,
  type MeasuredWindow,
  startGuestMeters,
  startHostMeters,
  windowArtifacts,
  windowMetrics,
} from './window.js';

/** The job options of one fio run (a FioWorkload, or one step of a sweep). */
export type FioJobSpec = Omit<FioWorkload, 'kind'>;

export interface RunContext {
  deadline: number;
  log: (line: string) => void;
  series: boolean;
}

/** The fio command line: the same for the guest and the host baseline, only the filename differs. */
export function fioArgv(spec: FioJobSpec, filename: string): string[] {
  const argv = [
    'fio',
    `--name=${spec.name}`,
    `--filename=${filename}`,
    '--direct=1',
    `--ioengine=${spec.ioengine}`,
    `--rw=${spec.rw}`,
    `--bs=${formatSizeForTool(spec.bs)}`,
    `--iodepth=${spec.iodepth}`,
    `--numjobs=${spec.numjobs}`,
    '--group_reporting',
    // Jobs as threads, not forked processes: fio's job processes start their own session, so killing
    // fio on a timeout or Ctrl-C would leave them doing I/O.
    '--thread',
    '--time_based',
    `--runtime=${spec.runtimeSeconds}`,
    `--ramp_time=${spec.rampSeconds}`,
  ];
  if (spec.sizeBytes !== undefined) argv.push(`--size=${formatSizeForTool(spec.sizeBytes)}`);
  if (spec.rwmixread !== undefined) argv.push(`--rwmixread=${spec.rwmixread}`);
  if (spec.rateIops !== undefined) argv.push(`--rate_iops=${spec.rateIops}`);
  for (const [k, v] of Object.entries(spec.extra)) argv.push(`--${k}=${v}`);
  argv.push('--output-format=json');
  return argv;
}

/**
 * fio on a host, measured over its window by the CPU of fio's process tree on that host. On another
 * host the command is wrapped so that it first prints its pid (a fixed script; fio's argv follows as
 * the script's arguments, quoted by the host access), which the meter needs while fio runs.
 */
async function runHostFio(
  host: HostAccess,
  argv: string[],
  timeoutMs: number,
  rampMs: number,
  lengthMs: number,
): Promise<{ result: RunResult; window?: MeasuredWindow; pid?: number }> {
  let pid: number | undefined;
  let head = '';
  const wrapped = host.local ? argv : ['sh', '-c', 'echo "$$"; exec "$@"', 'kvmio-fio', ...argv];
  const onStdout = host.local
    ? undefined
    : (chunk: string) => {
        if (pid !== undefined) return;
        head += chunk;
        const line = /^(\d+)\n/.exec(head);
        if (line) pid = Number(line[1]);
      };
  let started: () => void = () => undefined;
  const fioStarted = new Promise<void>((resolve) => {
    started = resolve;
  });
  const work = host.run(wrapped, {
    timeoutMs,
    allowFailure: true,
    ...(host.local
      ? { onSpawn: (p: number) => (pid = p) }
      : {
          onStdout: (chunk: string) => {
            onStdout?.(chunk);
            if (pid !== undefined) started();
          },
        }),
  });
  // A remote login takes its time (the user's shell start-up): the window counts from fio's start.
  if (!host.local)
    await Promise.race([
      fioStarted,
      work.then(
        () => undefined,
        () => undefined,
      ),
    ]);
  const { result, window } = await duringWindow(work, rampMs, lengthMs, () => {
    if (pid === undefined) throw new Error('fio did not start');
    return startHostMeters(pid, host);
  });
  if (!host.local) result.stdout = result.stdout.replace(/^\d+\n/, '');
  return { result, window, pid };
}

/** Time a single fio run may take: its ramp and runtime, plus fio start-up and layout under emulation. */
export function fioRunTimeoutMs(spec: Pick<FioJobSpec, 'runtimeSeconds' | 'rampSeconds'>): number {
  return (2 * (spec.runtimeSeconds + spec.rampSeconds) + 120) * 1000;
}

export interface FioRunOutcome {
  result: StepResult;
  job: FioJob;
}

let outputSeq = 0;

/**
 * Runs one fio job on the target and measures the host over its measured window (after the ramp).
 * In the guest, fio writes its JSON to a file read back through the agent: the agent's captured
 * output is bounded, the file is not.
 */
export async function runFioJob(
  target: SingleTarget,
  spec: FioJobSpec,
  step: StepResult['step'],
  ctx: RunContext,
): Promise<FioRunOutcome> {
  const timeoutMs = Math.max(1000, Math.min(fioRunTimeoutMs(spec), ctx.deadline - Date.now()));
  const rampMs = spec.rampSeconds * 1000;
  const lengthMs = spec.runtimeSeconds * 1000;
  let argv: string[];
  let text: string;
  let measured: MeasuredWindow | undefined;

  if (target.kind === 'guest') {
    const vm = target.vm;
    const outFile = `/tmp/kvmio-fio-${process.pid}-${++outputSeq}.json`;
    // Several test disks: one job over all of them (fio's colon-separated file list), so the figures
    // are the aggregate of the variant's disks.
    argv = [...fioArgv(spec, (await vm.testDisks()).join(':')), `--output=${outFile}`];
    ctx.log(`guest: ${argv.join(' ')}`);
    // The window is timed from fio's first request as QEMU counts them, where the backend can tell.
    const before = vm.blockRequests ? await vm.blockRequests().catch(() => undefined) : undefined;
    const ioStarted =
      before === undefined || !vm.blockRequests
        ? undefined
        : async () => ((await vm.blockRequests?.()) ?? Number.POSITIVE_INFINITY) > before;
    const work = guestRun(vm, argv, timeoutMs);
    const { window } = await duringWindow(
      work,
      rampMs,
      lengthMs,
      () => startGuestMeters(vm, ctx.series),
      ioStarted,
    );
    measured = window;
    text = (await vm.readFile(outFile)).toString('utf8');
    await guestTry(vm, ['rm', '-f', outFile]);
  } else {
    argv = fioArgv(spec, target.diskPath);
    const host = target.host ?? LOCAL_HOST;
    ctx.log(`host${host.local ? '' : ` ${host.label}`}: ${argv.join(' ')}`);
    const { result, window, pid } = await runHostFio(host, argv, timeoutMs, rampMs, lengthMs);
    if (result.code !== 0 || result.timedOut) {
      // A timed-out ssh session leaves its command running on the host: end it there.
      if (result.timedOut && !host.local && pid !== undefined)
        await host
          .run(['kill', '-KILL', String(pid)], { allowFailure: true, timeoutMs: 10_000 })
          .catch(() => undefined);
      const tail = (result.stderr || result.stdout).trim().split('\n').slice(-8).join('\n');
      throw new PointFailure(
        `on ${host.local ? 'the host' : host.label}, ${argv.join(' ')} ${result.timedOut ? 'timed out' : `exited with ${result.code}`}:\n${tail}`,
        {
          stderrTail: tail,
        },
      );
    }
    measured = window;
    text = result.stdout;
  }

  const job = singleJob(parseFioJson(text));
  const metrics: MetricValue[] = [...fioJobMetrics(job), ...windowMetrics(measured, fioJobThroughput(job))];
  return {
    job,
    result: {
      step,
      metrics,
      artifacts: { argv: JSON.stringify(argv), fio_json: text, ...windowArtifacts(measured) },
    },
  };
}
