import type { ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { localBootLimit } from '../guest/boot-limit.js';
import { bootRetryingTcgPanic, kernelPanicLine } from '../guest/boot-retry.js';
import { ensureGuest, GUEST_KERNEL_CMDLINE, type GuestRelease } from '../guest/build.js';
import { findTestDisks, guestDiskRequests, TestDiskCache } from '../guest/disks.js';
import { freePort, hmpHostForward } from '../guest/forward.js';
import type { GuestExecOptions, GuestExecResult, GuestVm } from '../guest/vm.js';
import { kernelAccount, kernelNowUsec, taskIds } from '../host/kernel-log.js';
import { variantImagePaths } from '../study/disks.js';
import { QCOW2_DEFAULTS } from '../study/image-schema.js';
import type { Study, Variant } from '../study/types.js';
import {
  bootGroupKey,
  iothreadQueues,
  servedByDaemon,
  variantDisks,
  variantPath,
} from '../study/variants.js';
import { PointFailure, UserError } from '../util/errors.js';
import { runtimeDir } from '../util/paths.js';
import { onCleanup, sleep, spawnOwned } from '../util/proc.js';
import { AgentClient } from './agent.js';
import {
  type Accel,
  checkVariant,
  daemonSockets,
  diskIothread,
  iothreadIds,
  omitsRawFormatLayer,
  type QemuImage,
  type QemuRuntimePaths,
  qemuArgv,
  qemuIothreadIds,
  runtimePaths,
  testDiskBlockdevs,
  testDiskDevices,
  testDiskNames,
  testDiskSlots,
  variantDiskPaths,
} from './argv.js';
import { qemuBinary } from './binary.js';
import { blockRequests } from './blockstats.js';
import { type QemuCapabilities, qemuCapabilities } from './capabilities.js';
import { childEnd, quitThenKill, StderrTail } from './child.js';
import { type Ovmf, studyOvmf, verifyFirmware } from './firmware.js';
import { applyPinning } from './pinning.js';
import { QmpClient } from './qmp.js';
import { checkRunningShape } from './running-shape.js';
import { StorageDaemon, storageDaemonFor } from './storage-daemon.js';
import { aioModeProblems, type LiveTestDisk, runningQemuVersion, verifyQemu } from './verify.js';

/** The direct-QEMU backend of GuestVm: QEMU started by kvmio, QMP for the VM, the agent for the guest. */

export interface StartQemuVmOptions {
  /** With `variants`, the VM gets root ports for the most test disks any variant has (live switches). */
  study: Pick<Study, 'guest' | 'disk' | 'pinning' | 'source'> & Partial<Pick<Study, 'variants'>>;
  variant: Variant;
  /** Kernel, initrd and command line; default: the embedded guest (built if needed). */
  image?: QemuImage;
  accel: Accel;
  /**
   * Start with vCPUs stopped (-S) and do not wait for a guest: checks that QEMU accepts the argv and
   * that the live config matches the variant, without booting. Guest calls then fail.
   */
  paused?: boolean;
  name?: string;
  binary?: string;
  log?: (line: string) => void;
}

const STDERR_KEEP = 8192;
let vmCounter = 0;

export class QemuVm implements GuestVm {
  readonly name: string;
  variant: Variant;
  bootMs = 0;
  bootWarning?: string;
  /** Duration of the last switchVariant, milliseconds. */
  lastSwitchMs = 0;
  /** The test disk was switched live since boot. */
  switched = false;
  readonly paths: QemuRuntimePaths;
  qmp!: QmpClient;
  readonly agent: AgentClient;
  /** Characters QEMU has written to stderr so far, and that count when the last verification began. */
  private stderrMark = 0;
  private deathError: Error | undefined;
  private stopPromise: Promise<void> | undefined;
  private readonly exited: Promise<void>;
  private unregisterCleanup: () => void = () => undefined;
  private lastConsole = '';
  /** QEMU's pid and the thread ids seen at each verification: a fault names the thread's id. */
  private readonly tasks = new Set<number>();
  private readonly startedUsec = kernelNowUsec();
  qemu: { path: string; version: string } | undefined;
  /** The firmware as verified live after boot (QEMU's pflash and the guest's view), e.g. "uefi: …". */
  firmware: string | undefined;

  constructor(
    private readonly opts: StartQemuVmOptions,
    readonly argv: string[],
    readonly capabilities: QemuCapabilities,
    readonly dir: string,
    private readonly child: ChildProcess,
    private readonly ovmf?: Ovmf,
    /** The qemu-storage-daemon serving the test disks (paths vhost-user-blk and nbd). */
    readonly daemon?: StorageDaemon,
  ) {
    this.name = opts.name ?? 'kvmio';
    this.variant = opts.variant;
    this.paths = runtimePaths(dir);
    this.agent = new AgentClient(this.paths.agent);
    if (child.pid !== undefined) this.tasks.add(child.pid);
    this.stderrLog = new StderrTail(child, STDERR_KEEP);
    this.exited = childEnd(child, ({ code, signal, error }) => {
      if (!this.stopPromise) this.onUnexpectedExit(code, signal, error);
    });
  }

  private readonly stderrLog: StderrTail;

  private get stderrTail(): string {
    return this.stderrLog.text;
  }

  private get stderrTotal(): number {
    return this.stderrLog.total;
  }

  private onUnexpectedExit(code: number | null, signal: NodeJS.Signals | null, why?: string): void {
    const consoleTail = this.consoleTail();
    const panic = kernelPanicLine(consoleTail);
    // With panic=-1 and -no-reboot a guest kernel panic ends QEMU with code 0: the panic is the reason.
    const how =
      why ??
      (signal
        ? `was killed by ${signal}`
        : `exited with code ${code}${panic ? ` after the guest kernel panicked ("${panic}")` : ''}`);
    const stderr = this.stderrTail.trim();
    // The kernel's account (a fault's signal, address and library) is logged before the process ends.
    const kernel = kernelAccount(this.child.pid, this.tasks, this.startedUsec);
    this.deathError = new PointFailure(
      `QEMU (${this.name}) ${how} unexpectedly${stderr ? `: ${stderr.split('\n').slice(-5).join('\n')}` : ''}\n${kernel.summary}`,
      { consoleTail, stderrTail: stderr, kernelLog: kernel.lines.join('\n') },
    );
    this.qmp?.failAll(this.deathError);
    this.agent.fail(this.deathError);
  }

  /** Throws the death error if QEMU (or its storage daemon) is gone (used by polling loops). */
  checkAlive(): void {
    if (this.deathError) throw this.deathError;
    this.daemon?.checkAlive();
  }

  async start(): Promise<void> {
    this.unregisterCleanup = onCleanup(() => this.stop());
    const started = Date.now();
    const limit = localBootLimit(this.opts.accel, this.opts.study.guest);
    try {
      this.qmp = await QmpClient.connect(this.paths.qmp, {
        timeoutMs: 15_000,
        checkAlive: () => this.checkAlive(),
      });
      if (this.deathError) this.qmp.failAll(this.deathError);
      this.qemu = {
        path: this.capabilities.binary,
        version: await runningQemuVersion((c, a) => this.qmp.execute(c, a)),
      };
      await checkRunningShape((c, a) => this.qmp.execute(c, a), this.opts.study, this.opts.accel, this.name);
      await this.verifyLive({ fresh: true });
      if (this.opts.paused) return;
      await this.agent.waitReady(limit, () => this.checkAlive());
      this.bootMs = Date.now() - started;
      this.log(`guest agent answered after ${this.bootMs} ms`);
      this.firmware = await verifyFirmware(
        {
          monitor: (command, args) => this.qmp.execute(command, args),
          exec: (argv, o) => this.exec(argv, o),
        },
        this.opts.study.guest.firmware ?? 'bios',
        this.ovmf?.code,
      );
      if (this.opts.study.pinning) await applyPinning(this.qemuPid(), this.qmp, this.opts.study.pinning);
    } catch (err) {
      // QEMU exiting at start closes its sockets first: wait a moment for its own exit reason.
      if (!(err instanceof PointFailure || err instanceof UserError))
        await Promise.race([this.exited, sleep(1000)]);
      const failure =
        err instanceof PointFailure || err instanceof UserError
          ? err
          : (this.deathError ??
            new PointFailure(`starting QEMU (${this.name}) failed: ${(err as Error).message}`, {
              consoleTail: this.consoleTail(),
              stderrTail: this.stderrTail.trim(),
            }));
      await this.stop();
      throw failure;
    }
  }

  exec(argv: string[], opts: GuestExecOptions): Promise<GuestExecResult> {
    return this.guarded(() => this.agent.exec(argv, opts));
  }

  readFile(path: string): Promise<Buffer> {
    return this.guarded(() => this.agent.readFile(path));
  }

  writeFile(path: string, data: string | Buffer): Promise<void> {
    return this.guarded(() => this.agent.writeFile(path, data));
  }

  /**
   * Runs a call and, when it fails because QEMU is going away (its sockets close just before the
   * exit is reported), throws QEMU's own death error with exit signal and stderr instead.
   */
  private async guarded<T>(fn: () => Promise<T>): Promise<T> {
    this.checkAlive();
    try {
      return await fn();
    } catch (err) {
      if (!this.stopPromise) await Promise.race([this.exited, sleep(1000)]);
      throw this.deathError ?? this.daemon?.death ?? err;
    }
  }

  async testDisk(): Promise<string> {
    return (await this.testDisks())[0] as string;
  }

  testDisks(): Promise<string[]> {
    return findTestDisks(this, this.variant);
  }

  /**
   * Checks that QEMU runs the test disks as the current variant asks; throws a PointFailure if not.
   * `fresh`: no live switch since boot.
   */
  async verifyLive(opts: { fresh: boolean }): Promise<void> {
    for (const id of taskIds(this.qemuPid())) this.tasks.add(id);
    const v = this.variant;
    const disks = variantDisks(v);
    const paths = variantImagePaths(this.opts.study.disk.path, v, Math.max(disks, this.diskSlots));
    const liveDisks: LiveTestDisk[] = paths.slice(0, disks).map((path, i) => {
      const names = testDiskNames(i);
      const device = `/machine/peripheral/${names.device}`;
      return {
        // Disk 0 keeps the single-disk wording.
        label: disks === 1 ? 'test disk' : `test disk ${i} (${names.serial})`,
        path,
        device,
        drive: v.bus === 'virtio-blk' ? device : `/machine/peripheral/${names.scsiLun}`,
        iothread: v.iothreads <= 1 || disks > 1 ? (diskIothread(v, i) ?? '') : null,
        vqMapping: iothreadQueues(v).map((vqs, k) => ({ iothread: iothreadIds(v.iothreads)[k]!, vqs })),
        ...(variantPath(v) === 'nbd' ? { socket: daemonSockets(this.dir).nbd } : {}),
      };
    });
    const mark = this.stderrMark;
    const problems = await verifyQemu(
      {
        monitor: (command, args) => this.qmp.execute(command, args),
        pid: this.qemuPid(),
        stderr: () => this.stderrSince(mark),
        fresh: opts.fresh,
      },
      {
        variant: v,
        disks: liveDisks,
        iothreadIds: qemuIothreadIds(v),
        absentPaths: paths.slice(disks),
        qcow2: this.opts.study.disk.qcow2 ?? QCOW2_DEFAULTS,
      },
    );
    // The daemon sets its aio context up on the first request it serves from the file (QEMU 8 on), and
    // an NBD read of a hole never reaches the file: the context is required after a workload only.
    if (this.daemon)
      problems.push(...(await this.daemon.verify(v, liveDisks, this.opts.study.disk.qcow2, false)));
    this.stderrMark = this.stderrTotal;
    if (problems.length > 0)
      throw new PointFailure(`the live VM does not match variant ${v.id}: ${problems.join('; ')}`, {
        stderrTail: this.stderrTail.trim(),
      });
  }

  /**
   * After a workload: the aio mode asked still runs (no fallback since the last check), in QEMU or,
   * for a disk it serves, in the storage daemon.
   */
  async verifyAio(): Promise<void> {
    const mark = this.stderrMark;
    const problems = this.daemon
      ? await this.daemon.aioProblems(this.variant)
      : await aioModeProblems(
          { pid: this.qemuPid(), stderr: () => this.stderrSince(mark), fresh: !this.switched },
          this.variant,
        );
    this.stderrMark = this.stderrTotal;
    if (problems.length > 0)
      throw new PointFailure(
        `the live VM does not match variant ${this.variant.id}: ${problems.join('; ')}`,
        {
          stderrTail: this.stderrTail.trim(),
        },
      );
  }

  /** The last of what QEMU wrote to stderr. */
  stderr(): string {
    return this.stderrTail;
  }

  /** What QEMU wrote to stderr after it had written `mark` characters (as much as is kept). */
  private stderrSince(mark: number): string {
    return this.stderrLog.since(mark);
  }

  qemuPid(): number {
    if (this.child.pid === undefined) throw new Error('QEMU has no pid (did not start)');
    return this.child.pid;
  }

  private readonly diskCache = new TestDiskCache();

  storageDaemonPid(): number | undefined {
    return this.daemon?.pid;
  }

  async blockRequests(): Promise<number> {
    // QEMU has no block backend for a vhost-user-blk disk (and the daemon's export counts none): the
    // guest's own count of completed requests tells when the I/O begins.
    if (variantPath(this.variant) === 'vhost-user-blk')
      return guestDiskRequests(this, await this.diskCache.devices(this, this.variant));
    return blockRequests(await this.qmp.execute('query-blockstats', undefined, { timeoutMs: 10_000 }));
  }

  ping(): Promise<{ monitorMs: number; agentMs: number }> {
    return this.guarded(() => this.timedPings());
  }

  private async timedPings(): Promise<{ monitorMs: number; agentMs: number }> {
    let t = process.hrtime.bigint();
    await this.qmp.execute('query-status', undefined, { timeoutMs: 10_000 });
    const monitorMs = Number(process.hrtime.bigint() - t) / 1e6;
    t = process.hrtime.bigint();
    await this.agent.ping();
    const agentMs = Number(process.hrtime.bigint() - t) / 1e6;
    return { monitorMs, agentMs };
  }

  canSwitchLive(next: Variant): boolean {
    // vCPUs and memory size come from the study and are fixed; only the memory backing, the image
    // format and the QEMU need a boot (bootGroupKey), or more test disks than the VM has root ports for.
    return bootGroupKey(next) === bootGroupKey(this.variant) && variantDisks(next) <= this.diskSlots;
  }

  /** Root ports for test disks made at boot (see testDiskSlots). */
  get diskSlots(): number {
    return testDiskSlots(this.opts);
  }

  switchVariant(next: Variant): Promise<void> {
    return this.guarded(() => this.switchLive(next));
  }

  private async switchLive(next: Variant): Promise<void> {
    if (!this.canSwitchLive(next)) {
      throw new Error(
        bootGroupKey(next) !== bootGroupKey(this.variant)
          ? `cannot switch ${this.variant.id} -> ${next.id} live: the memory backing, image format or QEMU differs (reboot)`
          : `cannot switch ${this.variant.id} -> ${next.id} live: the VM has root ports for ${this.diskSlots} test disk(s) (reboot)`,
      );
    }
    checkVariant(next, this.capabilities, this.opts.study.source);
    const started = Date.now();
    this.stderrMark = this.stderrTotal;
    const qmp = this.qmp;
    const omitRawLayer = omitsRawFormatLayer(this.capabilities);
    const study = this.opts.study;
    const sockets = daemonSockets(this.dir);
    for (const [i, path] of variantDiskPaths(this.variant, study.disk.path).entries()) {
      const names = testDiskNames(i);
      const deleted = qmp.waitEvent('DEVICE_DELETED', (d) => d.device === names.device, 60_000);
      deleted.catch(() => undefined);
      await qmp.execute('device_del', { id: names.device });
      await deleted;
      // The nodes this variant added, top first.
      const nodes = testDiskBlockdevs(this.variant, path, i, study.disk.qcow2, sockets, omitRawLayer);
      for (const node of nodes.reverse())
        await qmp.execute('blockdev-del', { 'node-name': node['node-name'] });
    }
    const want = iothreadIds(next.iothreads);
    const have = iothreadIds(this.variant.iothreads);
    for (const id of have.filter((x) => !want.includes(x))) await qmp.execute('object-del', { id });
    for (const id of want.filter((x) => !have.includes(x)))
      await qmp.execute('object-add', { 'qom-type': 'iothread', id });
    const paths = variantDiskPaths(next, study.disk.path);
    for (const [i, path] of paths.entries()) {
      for (const node of testDiskBlockdevs(next, path, i, study.disk.qcow2, sockets, omitRawLayer))
        await qmp.execute('blockdev-add', node);
      for (const dev of testDiskDevices(next, i, study.guest.machine)) await qmp.execute('device_add', dev);
    }
    this.variant = next;
    this.switched = true;
    await findTestDisks(this, next, 60_000);
    await this.verifyLive({ fresh: false });
    if (this.opts.study.pinning) await applyPinning(this.qemuPid(), qmp, this.opts.study.pinning);
    this.lastSwitchMs = Date.now() - started;
    this.log(`switched to ${next.id} in ${this.lastSwitchMs} ms`);
  }

  /** A loopback port on this host forwarded to the guest port through the user-mode netdev (argv.ts). */
  async forwardPort(guestPort: number): Promise<{ host: string; port: number }> {
    const hmp = (line: string) =>
      this.qmp
        .execute<string>('human-monitor-command', { 'command-line': line })
        .then((r) => String(r ?? ''));
    const port = await hmpHostForward(hmp, 'kvmio-net', guestPort, {
      bind: '127.0.0.1',
      pickPort: () => freePort(),
    });
    return { host: '127.0.0.1', port };
  }

  consoleTail(lines = 40): string {
    try {
      this.lastConsole = readFileSync(this.paths.serialLog, 'utf8');
    } catch {
      // removed by stop(): keep what was read last
    }
    return this.lastConsole.split('\n').slice(-lines).join('\n');
  }

  /** QMP quit, then SIGKILL after a few seconds; removes the runtime directory. Idempotent. */
  stop(): Promise<void> {
    if (!this.stopPromise) this.stopPromise = this.doStop();
    return this.stopPromise;
  }

  private async doStop(): Promise<void> {
    const alive = this.child.exitCode === null && this.child.signalCode === null && !this.deathError;
    if (alive) {
      this.consoleTail();
      await quitThenKill(this.qmp, this.child, this.exited);
    }
    this.qmp?.close();
    this.agent.close();
    this.consoleTail();
    // The daemon serves QEMU's disks: it goes once QEMU is gone.
    await this.daemon?.stop();
    rmSync(this.dir, { recursive: true, force: true });
    this.unregisterCleanup();
  }

  private log(line: string): void {
    this.opts.log?.(`${this.name}: ${line}`);
  }
}

/** Boots the guest for `variant` and returns once its agent answers and the live config is verified. */
export function startQemuVm(opts: StartQemuVmOptions): Promise<QemuVm> {
  return bootRetryingTcgPanic(opts.accel, `boot of ${opts.variant.id}`, opts.log, () =>
    startQemuVmOnce(opts),
  );
}

async function startQemuVmOnce(opts: StartQemuVmOptions): Promise<QemuVm> {
  const binary = opts.binary ?? opts.variant.qemu?.path ?? qemuBinary();
  const caps = await qemuCapabilities(binary);
  for (const disk of variantDiskPaths(opts.variant, opts.study.disk.path)) {
    if (!existsSync(disk)) {
      throw new UserError(
        `${opts.study.source}: disk.path: ${disk} does not exist (it must be prepared first)`,
      );
    }
  }
  if (opts.variant.memory === 'hugepages') checkHugepages(opts.study.guest.memoryBytes, opts.variant.id);
  const image =
    opts.image ?? (opts.paused ? undefined : await embeddedGuestImage(opts.log, opts.study.guest.release));
  const ovmf = await studyOvmf(opts.study);
  const name = opts.name ?? `kvmio-${process.pid}-${++vmCounter}`;
  const dir = mkdtempSync(join(runtimeDir(), `${name}-`));
  let argv: string[];
  try {
    // The VM's own variable store, a copy of OVMF's template: removed with the runtime directory.
    const firmware = ovmf ? { code: ovmf.code, vars: join(dir, 'OVMF_VARS.fd') } : undefined;
    if (ovmf && firmware) copyFileSync(ovmf.varsTemplate, firmware.vars);
    argv = qemuArgv({
      firmware,
      ...opts,
      image,
      name,
      binary,
      capabilities: caps,
      runtimeDir: dir,
      paused: opts.paused,
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  let daemon: StorageDaemon | undefined;
  if (servedByDaemon(opts.variant)) {
    try {
      const { major, minor, micro } = caps.version;
      daemon = await StorageDaemon.start({
        binary: storageDaemonFor(binary, `${major}.${minor}.${micro}`),
        variant: opts.variant,
        diskPaths: variantDiskPaths(opts.variant, opts.study.disk.path),
        qcow2: opts.study.disk.qcow2,
        sockets: daemonSockets(dir),
        name,
        log: opts.log,
      });
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }
  const [cmd, ...args] = argv as [string, ...string[]];
  opts.log?.(`${name}: starting ${opts.variant.id}`);
  const child = spawnOwned(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const vm = new QemuVm({ ...opts, name }, argv, caps, dir, child, ovmf, daemon);
  if (daemon) daemon.onDeath = (err) => vm.agent.fail(err);
  await vm.start();
  return vm;
}

/** The embedded guest as QEMU boots it. */
export async function embeddedGuestImage(
  log?: (line: string) => void,
  release?: GuestRelease,
): Promise<QemuImage> {
  const guest = await ensureGuest({ log, release });
  return { kernel: guest.kernel, initrd: guest.initrd, cmdline: GUEST_KERNEL_CMDLINE };
}

/** Hugepages variants need enough free 2 MiB pages on a mounted hugetlbfs; say so before QEMU does. */
function checkHugepages(memoryBytes: number, variantId: string): void {
  const meminfo = readFileSync('/proc/meminfo', 'utf8');
  const field = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(meminfo)?.[1] ?? 0);
  const freeBytes = field('HugePages_Free') * field('Hugepagesize') * 1024;
  const mounted = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === '/dev/hugepages' && l.split(' ')[2] === 'hugetlbfs');
  if (!mounted) {
    throw new UserError(
      `variant ${variantId}: hugepages need hugetlbfs mounted on /dev/hugepages (see kvmio doctor)`,
    );
  }
  if (freeBytes < memoryBytes) {
    throw new UserError(
      `variant ${variantId}: the guest needs ${memoryBytes >> 20} MiB of hugepages but only ${freeBytes >> 20} MiB are free (raise /proc/sys/vm/nr_hugepages)`,
    );
  }
}
