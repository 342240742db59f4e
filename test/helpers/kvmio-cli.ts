import { type ChildProcess, type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { testAccel } from './vm.js';

/**
 * Shared by e2e tests that drive kvmio's CLI as a user does: the command and its environment, the
 * study file it is given, and a run in the background whose --json events a test waits on.
 */

/** kvmio's CLI in this checkout. */
export const KVMIO_BIN = fileURLToPath(new URL('../../../bin/kvmio.js', import.meta.url));

/**
 * The full argv of a command put in front of kvmio's (`unshare …`, to run it under a host name of its
 * own), kvmio's argv appended.
 */
export type Wrapper = (argv: string[]) => string[];

/**
 * kvmio's environment in tests, read when kvmio starts (tests set KVMIO_QEMU in their hooks): the
 * accelerator the tests use, so that no run probes for one.
 */
function kvmioEnv(): NodeJS.ProcessEnv {
  return { ...process.env, KVMIO_ACCEL: testAccel() };
}

function kvmioArgv(args: string[], via: Wrapper | undefined): [string, string[]] {
  const argv = [process.execPath, KVMIO_BIN, ...args];
  const [command, ...rest] = via ? via(argv) : argv;
  return [command as string, rest];
}

/** Runs kvmio to its end, its output as text. */
export function kvmio(
  args: string[],
  opts: { timeoutMs?: number; via?: Wrapper } = {},
): SpawnSyncReturns<string> {
  const [command, argv] = kvmioArgv(args, opts.via);
  return spawnSync(command, argv, { encoding: 'utf8', timeout: opts.timeoutMs ?? 900_000, env: kvmioEnv() });
}

/** Writes a study file `name`.yaml into `dir`; returns its path. */
export function writeStudy(dir: string, name: string, yaml: string): string {
  const path = join(dir, `${name}.yaml`);
  writeFileSync(path, yaml);
  return path;
}

/** One line of `kvmio run --json`. */
export interface JsonEvent {
  event: string;
  [key: string]: unknown;
}

export interface BackgroundKvmio {
  child: ChildProcess;
  /** Every --json event so far, in order. */
  events: JsonEvent[];
  stderr(): string;
  /** The run's id, once its run-start event came. */
  runId(): string | undefined;
  /** The first event, so far or to come, that `pred` accepts; rejects when kvmio exits first. */
  next(pred: (e: JsonEvent) => boolean): Promise<JsonEvent>;
  /** kvmio's exit: its code, and how long it took after the test last signalled it (0: never signalled). */
  exit: Promise<{ code: number | null; ms: number; stderr: string }>;
}

/** Starts kvmio in the background (args should include --json for its events), its output collected. */
export function startKvmio(args: string[], opts: { via?: Wrapper } = {}): BackgroundKvmio {
  const [command, argv] = kvmioArgv(args, opts.via);
  const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: kvmioEnv() });
  const events: JsonEvent[] = [];
  const waiters: Array<{ pred: (e: JsonEvent) => boolean; resolve: (e: JsonEvent) => void }> = [];
  let buf = '';
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
      if (!line.startsWith('{')) continue;
      const e = JSON.parse(line) as JsonEvent;
      events.push(e);
      for (const w of [...waiters]) {
        if (w.pred(e)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(e);
        }
      }
    }
  });
  let signalledAt = 0;
  const exit = new Promise<{ code: number | null; ms: number; stderr: string }>((resolve) =>
    child.on('exit', (code) => resolve({ code, ms: signalledAt ? Date.now() - signalledAt : 0, stderr })),
  );
  const kill = child.kill.bind(child);
  child.kill = (signal?: NodeJS.Signals | number) => {
    signalledAt = Date.now();
    return kill(signal);
  };
  const next = (pred: (e: JsonEvent) => boolean) =>
    new Promise<JsonEvent>((resolve, reject) => {
      const found = events.find(pred);
      if (found) return resolve(found);
      waiters.push({ pred, resolve });
      void exit.then((x) =>
        reject(new Error(`kvmio run exited (${x.code}) before the awaited event:\n${x.stderr}`)),
      );
    });
  const runId = () => {
    const start = events.find((e) => e.event === 'run-start');
    return start === undefined ? undefined : String(start.run);
  };
  return { child, events, stderr: () => stderr, runId, next, exit };
}
