import type { ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { kernelAccount, kernelNowUsec, taskIds } from '../host/kernel-log.js';
import { QCOW2_DEFAULTS } from '../study/image-schema.js';
import type { Qcow2Options, Variant } from '../study/types.js';
import { variantPath } from '../study/variants.js';
import { PointFailure, UserError } from '../util/errors.js';
import { onCleanup, runSync, sleep, spawnOwned } from '../util/proc.js';
import {
  cacheFlags,
  type DaemonSockets,
  diskIothread,
  imageBlockdevs,
  iothreadIds,
  testDiskNames,
} from './argv.js';
import { isExecutableFile, onPath } from './binary.js';
import { childEnd, quitThenKill, StderrTail } from './child.js';
import { QmpClient } from './qmp.js';
import { aioModeProblems, type LiveQemu, type LiveTestDisk, verifyStorageDaemon } from './verify.js';

/**
 * qemu-storage-daemon, the process that serves a variant's test disks on paths vhost-user-blk and
 * nbd: kvmio starts one per VM, before QEMU, with the image's nodes exactly as QEMU would open them
 * itself (file node with the variant's aio and cache flags, format node over it), one export per
 * disk (in the disk's own iothread when the variant has iothreads), and a QMP monitor through which
 * it is verified and stopped. It is kvmio's child like QEMU: ended on error, on Ctrl-C and, through
 * the parent-death signal, when kvmio itself is killed.
 */

const DAEMON_NAME = 'qemu-storage-daemon';

/**
 * The storage daemon that belongs to a QEMU binary: the one beside it (a QEMU prefix such as
 * /opt/kvmio/qemu-10/bin has both), else qemu-storage-daemon on PATH (the distribution's, which
 * matches the distribution's QEMU). Undefined when neither exists.
 */
export function storageDaemonBeside(
  qemuBinary: string,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if (qemuBinary.includes('/')) {
    const sibling = join(dirname(qemuBinary), DAEMON_NAME);
    if (isExecutableFile(sibling)) return sibling;
  }
  return onPath(DAEMON_NAME, env, '/');
}

/** "7.2.22" from `qemu-storage-daemon --version`'s first line. */
export function parseDaemonVersion(text: string): string | undefined {
  return /version (\d+\.\d+\.\d+)/.exec(text)?.[1];
}

const checked = new Map<string, string>();

/**
 * The storage daemon to run beside `qemuBinary`, whose version must be QEMU's own (`qemuVersion`,
 * "10.0.2"): the daemon opens the image with QEMU's block layer, and a path comparison is only fair
 * with the same one. Throws a UserError naming what is missing or mismatched.
 */
export function storageDaemonFor(qemuBinary: string, qemuVersion: string): string {
  const key = `${qemuBinary}\0${qemuVersion}`;
  const hit = checked.get(key);
  if (hit) return hit;
  const daemon = storageDaemonBeside(qemuBinary);
  if (!daemon)
    throw new UserError(
      `paths vhost-user-blk and nbd need ${DAEMON_NAME} of QEMU ${qemuVersion}, beside ${qemuBinary} or on PATH (Debian 12: package qemu-system-common; Debian 13 and QEMU 8+: qemu-utils)`,
    );
  const r = runSync([daemon, '--version'], { timeoutMs: 10_000 });
  const version = parseDaemonVersion(r.stdout);
  if (!version)
    throw new UserError(
      `${daemon} --version did not print a version${r.error ? ` (${r.error})` : `: ${r.stderr.trim().slice(0, 200)}`}`,
    );
  if (version !== qemuVersion)
    throw new UserError(
      `${daemon} is version ${version} but QEMU ${qemuBinary} is ${qemuVersion}: put the storage daemon of the same QEMU beside it`,
    );
  checked.set(key, daemon);
  return daemon;
}

export interface StorageDaemonOptions {
  binary: string;
  variant: Variant;
  /** The image each test disk is, in disk order. */
  diskPaths: string[];
  qcow2?: Qcow2Options;
  sockets: DaemonSockets;
  /** The VM's name, for messages. */
  name: string;
  log?: (line: string) => void;
}

/** The id of test disk `index`'s export (its NBD export name too). */
export function exportId(index: number): string {
  return testDiskNames(index).export;
}

/** The daemon's command line, binary first: iothreads, each disk's nodes and export, then its monitor. */
export function storageDaemonArgv(opts: Omit<StorageDaemonOptions, 'name' | 'log'>): string[] {
  const { variant, sockets } = opts;
  const path = variantPath(variant);
  if (path === 'qemu') throw new Error(`variant ${variant.id} is served by QEMU, not by the storage daemon`);
  const argv = [opts.binary];
  for (const id of iothreadIds(variant.iothreads)) argv.push('--object', `iothread,id=${id}`);
  if (path === 'nbd')
    argv.push('--nbd-server', JSON.stringify({ addr: { type: 'unix', path: sockets.nbd } }));
  opts.diskPaths.forEach((diskPath, i) => {
    for (const node of imageBlockdevs(variant, diskPath, i, opts.qcow2 ?? QCOW2_DEFAULTS))
      argv.push('--blockdev', JSON.stringify(node));
    const iothread = diskIothread(variant, i);
    const common = {
      id: exportId(i),
      'node-name': testDiskNames(i).formatNode,
      writable: true,
      ...(iothread ? { iothread } : {}),
    };
    const exported =
      path === 'vhost-user-blk'
        ? {
            type: 'vhost-user-blk',
            ...common,
            addr: { type: 'unix', path: sockets.vhost(i) },
            'num-queues': variant.queues,
            // The guest's write cache: without one, every write is flushed before it completes.
            writethrough: !cacheFlags(variant.cache).writeCache,
          }
        : { type: 'nbd', ...common, name: exportId(i) };
    argv.push('--export', JSON.stringify(exported));
  });
  // Last: once the monitor answers, every export above exists.
  argv.push(
    '--chardev',
    `socket,id=kvmio-qsd-qmp,path=${sockets.qmp},server=on,wait=off`,
    '--monitor',
    'chardev=kvmio-qsd-qmp',
  );
  return argv;
}

/** A running storage daemon: its monitor, its stderr and how it ended. */
export class StorageDaemon {
  qmp!: QmpClient;
  private deathError: PointFailure | undefined;
  private stopPromise: Promise<void> | undefined;
  private readonly exited: Promise<void>;
  private readonly tasks = new Set<number>();
  private readonly startedUsec = kernelNowUsec();
  private unregisterCleanup: () => void = () => undefined;

  private constructor(
    readonly argv: string[],
    private readonly child: ChildProcess,
    private readonly name: string,
  ) {
    if (child.pid !== undefined) this.tasks.add(child.pid);
    this.stderrLog = new StderrTail(child);
    this.exited = childEnd(child, ({ code, signal, error }) => {
      if (this.stopPromise) return;
      this.onUnexpectedExit(
        error ? `failed: ${error}` : signal ? `was killed by ${signal}` : `exited with code ${code}`,
      );
    });
  }

  private readonly stderrLog: StderrTail;

  private get stderrTail(): string {
    return this.stderrLog.text;
  }

  private get stderrTotal(): number {
    return this.stderrLog.total;
  }

  /** Starts the daemon and returns once its monitor answers (its exports then exist). */
  static async start(opts: StorageDaemonOptions): Promise<StorageDaemon> {
    const argv = storageDaemonArgv(opts);
    const [cmd, ...args] = argv as [string, ...string[]];
    opts.log?.(`${opts.name}: starting ${DAEMON_NAME} for ${opts.variant.id}`);
    const child = spawnOwned(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const daemon = new StorageDaemon(argv, child, opts.name);
    daemon.unregisterCleanup = onCleanup(() => daemon.stop());
    try {
      daemon.qmp = await QmpClient.connect(opts.sockets.qmp, {
        timeoutMs: 30_000,
        checkAlive: () => daemon.checkAlive(),
      });
    } catch (err) {
      if (!daemon.deathError) await Promise.race([daemon.exited, sleep(1000)]);
      const failure =
        daemon.deathError ??
        new PointFailure(`starting ${DAEMON_NAME} (${opts.name}) failed: ${(err as Error).message}`, {
          stderrTail: daemon.stderrTail.trim(),
        });
      await daemon.stop();
      throw failure;
    }
    for (const id of taskIds(daemon.pid)) daemon.tasks.add(id);
    return daemon;
  }

  private onUnexpectedExit(how: string): void {
    const stderr = this.stderrTail.trim();
    const kernel = kernelAccount(this.child.pid ?? 0, this.tasks, this.startedUsec);
    this.deathError = new PointFailure(
      `${DAEMON_NAME} (${this.name}) ${how} unexpectedly${stderr ? `: ${stderr.split('\n').slice(-5).join('\n')}` : ''}\n${kernel.summary}`,
      { stderrTail: stderr, kernelLog: kernel.lines.join('\n') },
    );
    this.qmp?.failAll(this.deathError);
    this.onDeath?.(this.deathError);
  }

  /** Told when the daemon dies on its own (the VM fails its guest calls: their I/O has no server). */
  onDeath: ((err: PointFailure) => void) | undefined;

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${DAEMON_NAME} has no pid (did not start)`);
    return this.child.pid;
  }

  /** Throws the death error when the daemon is gone. */
  checkAlive(): void {
    if (this.deathError) throw this.deathError;
  }

  get death(): PointFailure | undefined {
    return this.deathError;
  }

  /** The daemon's threads seen so far (a fault names a thread's id). */
  noteTasks(): void {
    for (const id of taskIds(this.pid)) this.tasks.add(id);
  }

  /** How much the daemon has written to stderr; `stderrSince(mark)` is what came after. */
  get stderrMark(): number {
    return this.stderrTotal;
  }

  stderrSince(mark: number): string {
    return this.stderrLog.since(mark);
  }

  stderr(): string {
    return this.stderrTail;
  }

  /** What a point keeps of the daemon beside QEMU's: its command line and stderr. */
  artifacts(): Record<string, string> {
    return {
      'storage-daemon.argv': JSON.stringify(this.argv),
      ...(this.stderrTail ? { 'storage-daemon.stderr': this.stderrTail } : {}),
    };
  }

  private verifiedMark = 0;

  /** The daemon as the verifier sees it: its monitor, pid and stderr since the last check. */
  private live(): LiveQemu {
    const mark = this.verifiedMark;
    return {
      monitor: (command, args) => this.qmp.execute(command, args),
      pid: this.pid,
      stderr: () => this.stderrSince(mark),
      // A daemon serves one variant from its start to its end.
      fresh: true,
    };
  }

  /**
   * Every way the daemon differs from what `variant` asks for `disks` (verifyStorageDaemon): the
   * image's nodes, the exports, its iothreads and aio mode (a context required once the guest's I/O
   * went through it: `afterIo`).
   */
  async verify(
    variant: Variant,
    disks: LiveTestDisk[],
    qcow2: Qcow2Options | undefined,
    afterIo: boolean,
  ): Promise<string[]> {
    this.noteTasks();
    const problems = await verifyStorageDaemon(this.live(), {
      variant,
      disks,
      iothreadIds: iothreadIds(variant.iothreads),
      absentPaths: [],
      qcow2: qcow2 ?? QCOW2_DEFAULTS,
      exports: disks.map((_, i) => ({ id: exportId(i), 'node-name': testDiskNames(i).formatNode })),
      afterIo,
    });
    this.verifiedMark = this.stderrTotal;
    return problems;
  }

  /** After a workload: the daemon still runs the aio mode asked (its context, no fallback since). */
  async aioProblems(variant: Variant): Promise<string[]> {
    const problems = await aioModeProblems(this.live(), variant);
    this.verifiedMark = this.stderrTotal;
    return problems.map((p) => `storage daemon: ${p}`);
  }

  /** QMP quit, SIGKILL after a few seconds. Idempotent. */
  stop(): Promise<void> {
    this.stopPromise ??= (async () => {
      if (!this.deathError) await quitThenKill(this.qmp, this.child, this.exited);
      this.qmp?.close();
      this.unregisterCleanup();
    })();
    return this.stopPromise;
  }
}
