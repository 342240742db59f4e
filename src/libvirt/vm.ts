import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { type AgentCall, agentExec, agentReadFile, agentWriteFile } from '../guest/agent-protocol.js';
import { type BootLimit, bootLimit, bootLimitMessage, localBootLimit } from '../guest/boot-limit.js';
import { bootRetryingTcgPanic, kernelPanicLine } from '../guest/boot-retry.js';
import { ensureGuest, GUEST_KERNEL_CMDLINE } from '../guest/build.js';
import { findTestDisks, guestDiskRequests, TestDiskCache, waitTestDisksGone } from '../guest/disks.js';
import { FIO_DISK_SERIAL, fioBundle, type InstalledFio, installFioBundle } from '../guest/fio-bundle.js';
import type { GuestExecOptions, GuestExecResult, GuestVm } from '../guest/vm.js';
import { type HostAccess, hostAccessFor } from '../host/access.js';
import { kernelAccount, kernelNowUsec, taskIds } from '../host/kernel-log.js';
import { type DaemonSockets, daemonSockets } from '../qemu/argv.js';
import { blockRequests } from '../qemu/blockstats.js';
import { type Ovmf, studyOvmf, verifyFirmware } from '../qemu/firmware.js';
import { checkRunningShape } from '../qemu/running-shape.js';
import { StorageDaemon, storageDaemonFor } from '../qemu/storage-daemon.js';
import { aioModeProblems, runningQemuVersion } from '../qemu/verify.js';
import { ownerGone, processStartTicks } from '../safety/leftovers.js';
import { studyMaxDisks, TEST_DISK_SERIAL, variantImagePaths } from '../study/disks.js';
import type { DiskSpec, Qcow2Options, Study, Variant } from '../study/types.js';
import { sameQemu, servedByDaemon, variantDisks, variantFormat, variantPath } from '../study/variants.js';
import { PointFailure, UserError } from '../util/errors.js';
import { runtimeDir } from '../util/paths.js';
import { onCleanup, sleep, waitFor } from '../util/proc.js';
import { checkQemuCanReach, qemuDacIds } from './dac.js';
import type { TestDeviceLayout } from './domain.js';
import { libvirtForwardPort } from './forward.js';
import { ensureNetwork, guestAddress } from './network.js';
import { checkGuestTools, type PreparedOwnDomain, prepareOwnDomain } from './own.js';
import { type LibvirtStack, libvirtStack } from './stack.js';
import { nvramPath, removeNvram, stageGuest } from './stage.js';
import { verifyLive } from './verify.js';
import { Virsh, VirshError } from './virsh.js';
import {
  type Accel,
  diskXml,
  domainXml,
  iothreadPinCpu,
  KVMIO_XMLNS,
  type NetworkChoice,
  scsiControllerXml,
} from './xml.js';

/**
 * A builtin-guest VM run by libvirt, on any URI. The domain is transient (`virsh create`): if kvmio
 * dies, nothing stays defined, and a later kvmio destroys a still-running one whose owner is gone
 * (see reapOrphans). Everything goes through virsh, including the guest agent, so a remote host needs
 * nothing but libvirt.
 */

export interface LibvirtVmOptions {
  study: Study;
  variant: Variant;
  /** The builtin guest (ensureGuest()). */
  image: { kernel: string; initrd: string; hash: string };
  accel: Accel;
  uri: string;
  name: string;
  /** Name of the study host this VM runs on (multi-host studies); default: the URI. */
  host?: string;
  /** The host's own test disk, overriding study.disk. */
  disk?: DiskSpec;
  network?: NetworkChoice;
  /** What the host's libvirt and QEMU can do; default: asked of the host (libvirtStack). */
  stack?: LibvirtStack;
  /** A uefi study's OVMF on the libvirt host; default: this machine's, for a local URI. */
  ovmf?: Ovmf;
  log?: (line: string) => void;
}

export interface LibvirtVm extends GuestVm {
  readonly uri: string;
  readonly host: string;
  /** The XML the domain was created from (kept with a point's artifacts). */
  readonly domainXml: string;
  /** The guest's IPv4 address (reported by its agent); for guests on a libvirt network. */
  address(): Promise<string>;
  /** After a workload: QEMU still runs the aio mode asked. */
  verifyAio(): Promise<void>;
  /** The firmware as verified live after boot (QEMU's pflash and the guest's view). */
  readonly firmware: string | undefined;
  /** The storage daemon serving the test disks (paths vhost-user-blk and nbd). */
  readonly daemon?: StorageDaemon;
}

const FILE_CHUNK = 48 * 1024;

export function startLibvirtVm(opts: LibvirtVmOptions): Promise<LibvirtVm> {
  return bootRetryingTcgPanic(opts.accel, `boot of ${opts.variant.id} as ${opts.name}`, opts.log, () =>
    startLibvirtVmOnce(opts),
  );
}

async function startLibvirtVmOnce(opts: LibvirtVmOptions): Promise<LibvirtGuest> {
  const image = opts.image;
  const virsh = new Virsh(opts.uri);
  const log = opts.log ?? (() => undefined);
  await virsh.ensureReachable();
  await reapOrphans(virsh, log);
  const stack = opts.stack ?? (await libvirtStack(virsh, opts.variant.qemu?.path));
  opts = { ...opts, stack };
  const diskPath = opts.disk?.path ?? opts.study.disk.path;
  await checkQemuCanReach(virsh, diskPath, opts.study.source);
  // libvirt's log directory exists on every libvirt host and is readable by root.
  const consoleLog = `/var/log/libvirt/qemu/${opts.name}-console.log`;
  const owner = { host: hostname(), pid: process.pid };
  // A user's own domain keeps its own OS, console and network; the builtin guest gets kvmio's.
  const own = opts.study.guest.domain
    ? await prepareOwnDomain({ virsh, ...opts, diskPath, owner, iothreadVqMapping: stack.iothreadVqMapping })
    : undefined;
  const ovmf = own ? undefined : await domainOvmf(virsh, opts);
  const daemonDir = servedByDaemon(opts.variant) ? storageDaemonDir(opts.name) : undefined;
  const xml =
    own?.xml ??
    domainXml({
      firmware: ovmf && { ...ovmf, nvram: nvramPath(opts.name) },
      study: opts.study,
      variant: opts.variant,
      guest: { ...(await stageGuest(virsh, image)), cmdline: GUEST_KERNEL_CMDLINE },
      accel: opts.accel,
      name: opts.name,
      consoleLog,
      network: opts.network,
      owner,
      diskPath,
      iothreadVqMapping: stack.iothreadVqMapping,
      scsiIothreadVqMapping: stack.scsiIothreadVqMapping,
      emulator: stack.emulator,
      sockets: daemonDir ? daemonSockets(daemonDir) : undefined,
    });
  const scratch = join(runtimeDir(), `libvirt-${opts.name}`);
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  const xmlFile = join(scratch, 'domain.xml');
  writeFileSync(xmlFile, xml);
  if (virsh.isLocal) rmSync(consoleLog, { force: true });

  if (opts.network?.type === 'network') await ensureNetwork(virsh, opts.network.name, scratch);

  const served = daemonDir ? await startDaemon(virsh, opts, stack, diskPath, daemonDir, log) : undefined;
  const started = Date.now();
  // A variable store left by an earlier domain of this name would carry its boot entries over.
  if (ovmf) await removeNvram(virsh, opts.name);
  const unregister = onCleanup(async () => {
    await destroy(virsh, opts.name, ovmf !== undefined);
    if (virsh.isLocal) rmSync(consoleLog, { force: true });
    own?.cleanup();
    await served?.stop();
  });
  const logMark = virsh.isLocal ? fileSize(qemuLogPath(opts.name)) : 0;
  try {
    await virsh.run(['create', xmlFile], { timeoutMs: 180_000 });
  } catch (e) {
    unregister();
    own?.cleanup();
    await served?.stop();
    throw new PointFailure(`libvirt could not start ${opts.name}: ${(e as Error).message}`, {
      consoleTail: tailOf(virsh, consoleLog, 30),
    });
  }
  const vm = new LibvirtGuest(
    virsh,
    opts,
    diskPath,
    consoleLog,
    xml,
    scratch,
    unregister,
    logMark,
    own,
    served,
  );
  try {
    await vm.waitForAgent(await libvirtBootLimit(virsh, opts.accel, opts.study.guest));
    vm.bootMs = Date.now() - started;
    // QEMU's pid on a remote host is read once now, not inside a measured window.
    if (!virsh.isLocal) await vm.qemuHost().catch(() => undefined);
    log(`libvirt: ${opts.name} up in ${(vm.bootMs / 1000).toFixed(1)}s on ${opts.uri}`);
    if (own && (await checkGuestTools(vm, opts.study)).bringsFio) await vm.bringFio(log);
    if (!own)
      await checkRunningShape(
        (command, args) => virsh.monitor(opts.name, command, args),
        opts.study,
        opts.accel,
        opts.name,
      );
    vm.noteQemuTasks();
    await verifyLive(vm.liveContext(true), opts.variant);
    vm.firmware = await verifyFirmware(
      {
        monitor: (command, args) => virsh.monitor(opts.name, command, args),
        exec: (argv, o) => vm.exec(argv, o),
      },
      own ? 'bios' : (opts.study.guest.firmware ?? 'bios'),
      ovmf?.code,
    );
    vm.qemu = await liveQemu(virsh, opts.name);
    vm.markLog();
  } catch (e) {
    const tail = vm.consoleTail(30);
    await vm.stop();
    const message = (e as Error).message;
    throw new PointFailure(message.includes(opts.name) ? message : `${opts.name}: ${message}`, {
      consoleTail: tail,
    });
  }
  return vm;
}

/**
 * The boot limit on the domain's host: this machine's CPUs and load, or a remote host's CPUs as libvirt
 * reports them (its load is not known here).
 */
async function libvirtBootLimit(
  virsh: Virsh,
  accel: Accel,
  guest: { vcpus: number; count: number },
): Promise<BootLimit> {
  if (virsh.isLocal) return localBootLimit(accel, guest);
  const nodeinfo = await virsh.tryRun(['nodeinfo']);
  const hostCpus = Number(/^CPU\(s\):\s*(\d+)/m.exec(nodeinfo ?? '')?.[1] ?? 1);
  return bootLimit({ accel, vcpus: guest.vcpus * guest.count, hostCpus });
}

/** The storage daemon kvmio runs for a domain whose disks it serves, and where its sockets are. */
interface ServedDisks {
  daemon: StorageDaemon;
  sockets: DaemonSockets;
  stop(): Promise<void>;
}

/**
 * Where the storage daemon of domain `name` keeps its sockets: a directory of its own under /var/tmp,
 * which libvirt's unprivileged QEMU can enter (domain names are unique per kvmio process).
 */
function storageDaemonDir(name: string): string {
  return join('/var/tmp', `kvmio-qsd-${name}`);
}

/**
 * Starts the storage daemon for a domain (paths vhost-user-blk and nbd; a local libvirt only), its
 * sockets in `dir` (checked searchable as libvirt's QEMU user, as for disks) and handed to that user,
 * since QEMU connects to them. The daemon is the one of the QEMU libvirt runs (its <emulator>, else
 * libvirt's default on PATH, of the version libvirt reports).
 */
async function startDaemon(
  virsh: Virsh,
  opts: LibvirtVmOptions,
  stack: LibvirtStack,
  diskPath: string,
  dir: string,
  log: (line: string) => void,
): Promise<ServedDisks> {
  const remove = () => rmSync(dir, { recursive: true, force: true });
  remove();
  mkdirSync(dir, { mode: 0o711 });
  try {
    chmodSync(dir, 0o711);
    const sockets = daemonSockets(dir);
    await checkQemuCanReach(virsh, sockets.qmp, opts.study.source);
    const daemon = await StorageDaemon.start({
      binary: storageDaemonFor(stack.emulator ?? 'qemu-system-x86_64', stack.qemu),
      variant: opts.variant,
      diskPaths: variantImagePaths(diskPath, opts.variant),
      qcow2: opts.study.disk.qcow2,
      sockets,
      name: opts.name,
      log,
    });
    const stop = async () => {
      await daemon.stop();
      remove();
    };
    try {
      const ids = await qemuDacIds(virsh);
      const served =
        variantPath(opts.variant) === 'nbd'
          ? [sockets.nbd]
          : Array.from({ length: variantDisks(opts.variant) }, (_, i) => sockets.vhost(i));
      for (const socket of served) {
        if (!existsSync(socket)) throw new Error(`the storage daemon made no socket ${socket}`);
        if (ids) chownSync(socket, ids.uid, ids.gid);
      }
    } catch (e) {
      await stop();
      throw e;
    }
    return { daemon, sockets, stop };
  } catch (e) {
    remove();
    throw e;
  }
}

/** The running domain's QEMU: its live `<emulator>` and the version its monitor reports. */
async function liveQemu(virsh: Virsh, name: string): Promise<{ path: string; version: string }> {
  const xml = await virsh.run(['dumpxml', name]);
  return {
    path: /<emulator>([^<]+)<\/emulator>/.exec(xml)?.[1]?.trim() ?? 'unknown',
    version: await runningQemuVersion((command, args) => virsh.monitor(name, command, args)),
  };
}

/** Where libvirt keeps a local domain's QEMU log (QEMU's stderr goes there). */
function qemuLogPath(name: string): string {
  return `/var/log/libvirt/qemu/${name}.log`;
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** The text of `path` from byte `offset` on (all of it if the file was rotated meanwhile). */
function readFrom(path: string, offset: number): string | undefined {
  try {
    const data = readFileSync(path);
    return data.subarray(data.length >= offset ? offset : 0).toString('utf8');
  } catch {
    return undefined;
  }
}

/**
 * A uefi study's OVMF on the domain's host: as found there by the backend, or this machine's for a
 * local URI; undefined for bios.
 */
async function domainOvmf(virsh: Virsh, opts: LibvirtVmOptions): Promise<Ovmf | undefined> {
  if ((opts.study.guest.firmware ?? 'bios') === 'bios') return undefined;
  if (opts.ovmf) return opts.ovmf;
  if (!virsh.isLocal)
    throw new UserError(`${opts.study.source}: guest.firmware uefi: OVMF on ${virsh.uri} was not looked up`);
  return studyOvmf(opts.study);
}

/**
 * Destroys the domain if it still exists; transient domains vanish with it, but not the variable store
 * libvirt made for a uefi one (`nvram`).
 */
async function destroy(virsh: Virsh, name: string, nvram: boolean): Promise<void> {
  await virsh.tryRun(['destroy', name], { timeoutMs: 15_000 });
  // Only a defined (persistent) domain survives destroy; kvmio does not define, but be sure.
  await virsh.tryRun(['undefine', name], { timeoutMs: 15_000 });
  if (nvram) await removeNvram(virsh, name);
}

function tailOf(virsh: Virsh, file: string, lines: number): string {
  if (!virsh.isLocal) return '(console log is on the libvirt host)';
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/**
 * Destroys kvmio domains (marked by kvmio's metadata) whose owning kvmio process on this machine is
 * gone; domains of other tools, and of live kvmio processes, are left alone.
 */
export async function reapOrphans(
  virsh: Virsh,
  log: (line: string) => void = () => undefined,
): Promise<string[]> {
  const names =
    (await virsh.tryRun(['list', '--name']))
      ?.split('\n')
      .map((l) => l.trim())
      .filter(Boolean) ?? [];
  const reaped: string[] = [];
  for (const name of names) {
    const owner = await kvmioOwner(virsh, name);
    // The domain's QEMU started after its kvmio: an owner pid alive but younger is another program.
    const since = virsh.isLocal ? domainQemuStart(name) : undefined;
    if (!owner || owner.host !== hostname() || !ownerGone(owner.pid, since)) continue;
    log(`libvirt: destroying ${name}, left running by kvmio pid ${owner.pid}, which is gone`);
    await destroy(virsh, name, true);
    reaped.push(name);
  }
  return reaped;
}

/** When the QEMU of a local running domain started (clock ticks since boot), from libvirt's pid file. */
function domainQemuStart(name: string): number | undefined {
  try {
    return processStartTicks(Number(readFileSync(`/run/libvirt/qemu/${name}.pid`, 'utf8').trim()));
  } catch {
    return undefined;
  }
}

/** The kvmio owner recorded in a domain's metadata, or undefined for domains kvmio did not make. */
export async function kvmioOwner(
  virsh: Virsh,
  name: string,
): Promise<{ host: string; pid: number } | undefined> {
  const meta = await virsh.tryRun(['metadata', name, '--uri', KVMIO_XMLNS]);
  if (!meta) return undefined;
  const host = /owner-host=["']([^"']*)["']/.exec(meta)?.[1];
  const pid = Number(/owner-pid=["'](\d+)["']/.exec(meta)?.[1]);
  return host && pid ? { host, pid } : undefined;
}

/** Names of running domains kvmio made (by metadata), on this URI. */
export async function kvmioDomains(virsh: Virsh): Promise<string[]> {
  const names =
    (await virsh.tryRun(['list', '--all', '--name']))
      ?.split('\n')
      .map((l) => l.trim())
      .filter(Boolean) ?? [];
  const ours: string[] = [];
  for (const name of names) if (await virsh.tryRun(['metadata', name, '--uri', KVMIO_XMLNS])) ours.push(name);
  return ours;
}

/** libvirt's pid file of a running domain's QEMU, on its host. */
function qemuPidFile(name: string): string {
  return `/run/libvirt/qemu/${name}.pid`;
}

/** What live verification needs to look at a running domain. */
export interface LiveContext {
  virsh: Virsh;
  name: string;
  diskPath: string;
  /** The most test disks any variant of the study has: nodes of the others must be gone. */
  maxDisks: number;
  /** The study's qcow2 settings (qcow2 variants' images are checked against them). */
  qcow2?: Qcow2Options;
  /** No live switch yet since the domain started. */
  fresh: boolean;
  /** Numbering of the test devices inside a user's own domain; default: the builtin guest's. */
  layout?: TestDeviceLayout;
  /** The storage daemon serving the test disks and its sockets (paths vhost-user-blk and nbd). */
  served?: { daemon: StorageDaemon; sockets: DaemonSockets };
  qemuPid: () => number | undefined;
  /** QEMU's log (its stderr) since the domain started or the switch began; undefined when remote. */
  qemuLog: () => string | undefined;
}

class LibvirtGuest implements LibvirtVm {
  variant: Variant;
  bootMs = 0;
  bootWarning?: string;
  qemu: { path: string; version: string } | undefined;
  firmware: string | undefined;
  readonly host: string;
  readonly uri: string;
  readonly name: string;
  private stopped = false;
  private logMark: number;
  /** The test disk was switched live since boot. */
  private switched = false;
  /** kvmio's own fio, copied into a user's guest that has none. */
  private fio?: InstalledFio;
  /** Where QEMU's log stood when the domain was created: a death report quotes what follows. */
  private readonly bootLogMark: number;
  /** QEMU's pid and the thread ids seen while it ran (local only): a fault names the thread's id. */
  private qemuTasks: { pid: number; ids: Set<number> } | undefined;
  private readonly startedUsec = kernelNowUsec();

  constructor(
    private readonly virsh: Virsh,
    private readonly opts: LibvirtVmOptions,
    private readonly diskPath: string,
    private readonly consoleLog: string,
    readonly domainXml: string,
    private readonly scratch: string,
    private readonly unregister: () => void,
    logMark: number,
    private readonly own?: PreparedOwnDomain,
    private readonly served?: ServedDisks,
  ) {
    this.variant = opts.variant;
    this.name = opts.name;
    this.uri = opts.uri;
    this.host = opts.host ?? opts.uri;
    this.logMark = logMark;
    this.bootLogMark = logMark;
  }

  /** Notes QEMU's pid and its current thread ids (the pid file goes when QEMU dies). */
  noteQemuTasks(): void {
    if (!this.virsh.isLocal) return;
    try {
      const pid = this.qemuPid();
      if (this.qemuTasks?.pid !== pid) this.qemuTasks = { pid, ids: new Set([pid]) };
      for (const id of taskIds(pid)) this.qemuTasks.ids.add(id);
    } catch {
      // not running (any more): what was noted stays
    }
  }

  /**
   * When the domain's QEMU is gone without kvmio stopping it: the failure with its evidence, as the
   * direct backend reports it: libvirt's reason, QEMU's last log lines (its stderr, and libvirt's
   * own line on how it ended) and the kernel's account for its pid and threads. Undefined while the
   * domain runs, and for a remote host (its logs are there).
   */
  private async deathFailure(): Promise<PointFailure | undefined> {
    if (this.stopped || !this.virsh.isLocal) return undefined;
    const state = (await this.virsh.tryRun(['domstate', this.name, '--reason']))?.trim();
    if (state?.startsWith('running') || state?.startsWith('paused')) return undefined;
    const log = (readFrom(qemuLogPath(this.name), this.bootLogMark) ?? '').trim();
    const lines = log.split('\n').filter((l) => l.trim() !== '');
    const tail = lines.slice(-8).join('\n');
    // QEMU's own words for a signal it handles ("terminating on signal 15 from pid …").
    const signal = /terminating on signal \d+[^\n]*/.exec(log)?.[0];
    const reason = [...log.matchAll(/shutting down, reason=(\w+)/g)].pop()?.[1];
    const pid = this.qemuTasks?.pid;
    const kernel = kernelAccount(pid, this.qemuTasks?.ids ?? [], this.startedUsec);
    const how = signal
      ? `QEMU says: ${signal}`
      : reason === 'crashed'
        ? 'libvirt says reason=crashed: QEMU ended without being asked to (a fatal signal, or an exit of its own); libvirt does not record which signal, the kernel log names it for a fault it raised'
        : reason
          ? `libvirt says reason=${reason}`
          : state
            ? `libvirt reports it ${state}`
            : 'the transient domain is gone';
    return new PointFailure(
      `QEMU of domain ${this.name}${pid ? ` (pid ${pid})` : ''} ended unexpectedly: ${how}${tail ? `; its log (${qemuLogPath(this.name)}) ends:\n${tail}` : ''}\n${kernel.summary}`,
      { consoleTail: this.consoleTail(30), stderrTail: tail, kernelLog: kernel.lines.join('\n') },
    );
  }

  /** Runs a call; when it fails because QEMU died, throws the death failure with its evidence instead. */
  private async guarded<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw (await this.deathFailure()) ?? err;
    }
  }

  liveContext(fresh: boolean): LiveContext {
    const mark = this.logMark;
    return {
      virsh: this.virsh,
      name: this.name,
      diskPath: this.diskPath,
      maxDisks: studyMaxDisks(this.opts.study),
      qcow2: this.opts.study.disk.qcow2,
      fresh,
      layout: this.own?.layout,
      served: this.served,
      qemuPid: () => (this.virsh.isLocal ? this.qemuPid() : undefined),
      qemuLog: () => (this.virsh.isLocal ? readFrom(qemuLogPath(this.name), mark) : undefined),
    };
  }

  /** After a workload: QEMU still runs the aio mode asked (its log since the last check, /proc). */
  async verifyAio(): Promise<void> {
    this.noteQemuTasks();
    const ctx = this.liveContext(!this.switched);
    const problems = this.served
      ? await this.served.daemon.aioProblems(this.variant)
      : await aioModeProblems({ pid: ctx.qemuPid(), stderr: ctx.qemuLog, fresh: ctx.fresh }, this.variant);
    this.markLog();
    if (problems.length > 0)
      throw new PointFailure(
        `the live domain ${this.name} does not match variant ${this.variant.id}: ${problems.join('; ')}`,
      );
  }

  /** Marks the end of QEMU's log so far: verification then looks only at what follows. */
  markLog(): void {
    this.logMark = this.virsh.isLocal ? fileSize(qemuLogPath(this.name)) : 0;
  }

  private agent<T>(execute: string, args?: Record<string, unknown>, timeoutSeconds?: number): Promise<T> {
    return this.virsh.agent<T>(this.name, execute, args, timeoutSeconds);
  }

  /** Polls guest-ping until it answers; fails at once when the domain stops (panic, crash, destroy). */
  async waitForAgent(limit: BootLimit): Promise<void> {
    const deadline = Date.now() + limit.ms;
    for (;;) {
      const ping = ['qemu-agent-command', this.name, '--timeout', '2', '{"execute":"guest-ping"}'];
      if (await this.virsh.tryRun(ping)) return;
      const state = (await this.virsh.tryRun(['domstate', this.name]))?.trim() ?? 'gone';
      if (state !== 'running') {
        const panic = kernelPanicLine(this.consoleTail());
        throw new PointFailure(
          `domain ${this.name} is ${state} while booting${panic ? ` after the guest kernel panicked ("${panic}")` : ''}`,
        );
      }
      if (Date.now() > deadline) {
        throw new PointFailure(bootLimitMessage(`the guest agent of ${this.name}`, limit));
      }
      await sleep(1000);
    }
  }

  /** Runs argv in the guest; `fio` is kvmio's own copy where bringFio() brought one. */
  exec(argv: string[], opts: GuestExecOptions): Promise<GuestExecResult> {
    const command = this.fio && argv[0] === 'fio' ? [...this.fio.command, ...argv.slice(1)] : argv;
    return this.guarded(() => agentExec(this.agentCall, command, opts));
  }

  /**
   * Copies kvmio's fio (the built guest's, with its libraries and loader) into a user's guest that
   * has none; stop() removes it again.
   */
  async bringFio(log: (line: string) => void): Promise<void> {
    const release = this.opts.study.guest.release;
    const bundle = await fioBundle(await ensureGuest({ release, log }));
    const started = Date.now();
    this.fio = await installFioBundle(this, bundle, (archive) => this.plugFioDisk(archive));
    log(
      `libvirt: the guest of ${this.name} has no fio in its PATH: kvmio brought its own (${bundle.version} of its ${release ?? 'default'} guest, ${(bundle.bytes / 2 ** 20).toFixed(0)} MiB with its libraries and loader) to ${this.fio.command[3]} in ${((Date.now() - started) / 1000).toFixed(1)}s; it is removed when the VM stops`,
    );
  }

  /**
   * Hot-plugs a copy of the fio archive as a read-only virtio disk (serial FIO_DISK_SERIAL) on a
   * target the domain does not use; returns how to unplug it.
   */
  private async plugFioDisk(archive: string): Promise<() => Promise<void>> {
    if (!this.own) throw new Error('plugFioDisk: only a user domain gets kvmio fio');
    // The scratch directory of the copy: QEMU's user can reach it, and it goes with the copy.
    const image = join(this.own.scratch, 'kvmio-fio.tar');
    if (!/^[\w./-]+$/.test(image)) throw new Error(`unexpected scratch path ${image}`);
    copyFileSync(archive, image);
    const used = new Set(
      (await this.virsh.run(['domblklist', this.name]))
        .split('\n')
        .map((l) => l.trim().split(/\s+/)[0])
        .filter(Boolean),
    );
    const letters = 'bcdefghijklmnopqrstuvwxyz';
    const target = [...letters].map((l) => `vd${l}`).find((t) => !used.has(t));
    if (!target) throw new Error(`${this.name} uses every virtio disk name vdb..vdz`);
    const xml = `<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='${image}'/><target dev='${target}' bus='virtio'/><readonly/><serial>${FIO_DISK_SERIAL}</serial></disk>`;
    const file = join(this.scratch, 'fio-disk.xml');
    writeFileSync(file, xml);
    try {
      await this.virsh.run(['attach-device', this.name, file, '--live']);
    } catch (e) {
      rmSync(image, { force: true });
      throw new Error(
        `libvirt could not hot-plug the disk that carries kvmio's fio (PCI hot-plug needs <acpi/> on i440fx and a free pcie-root-port on q35): ${e instanceof VirshError ? e.virshMessage : (e as Error).message}`,
      );
    }
    return async () => {
      await this.virsh.tryRun(['detach-device', this.name, file, '--live']);
      await waitFor(
        `libvirt to report kvmio's fio disk detached from ${this.name}`,
        async () =>
          (await this.virsh.run(['dumpxml', this.name])).includes(`<serial>${FIO_DISK_SERIAL}</serial>`)
            ? undefined
            : true,
        60_000,
        500,
      ).catch(() => undefined);
      rmSync(image, { force: true });
    };
  }

  readFile(path: string): Promise<Buffer> {
    return this.guarded(() => agentReadFile(this.agentCall, path, FILE_CHUNK));
  }

  writeFile(path: string, data: string | Buffer): Promise<void> {
    return this.guarded(() => agentWriteFile(this.agentCall, path, data, FILE_CHUNK));
  }

  private readonly agentCall: AgentCall = (command, args, timeoutMs) =>
    this.agent(command, args as Record<string, unknown>, timeoutMs && Math.ceil(timeoutMs / 1000));

  async testDisk(): Promise<string> {
    return (await this.testDisks())[0] as string;
  }

  testDisks(): Promise<string[]> {
    return findTestDisks(this, this.variant);
  }

  qemuPid(): number {
    if (!this.virsh.isLocal) throw new Error(`the QEMU pid is not visible from here: ${this.uri} is remote`);
    return Number(readFileSync(qemuPidFile(this.name), 'utf8').trim());
  }

  /** QEMU's pid on the libvirt host, read there (libvirt's pid file) over the host's access. */
  qemuHost(): Promise<{ pid: number; host: HostAccess } | undefined> {
    this.qemuWhere ??= this.readQemuHost().catch((e) => {
      this.qemuWhere = undefined;
      throw e;
    });
    return this.qemuWhere;
  }

  private qemuWhere: Promise<{ pid: number; host: HostAccess } | undefined> | undefined;

  private async readQemuHost(): Promise<{ pid: number; host: HostAccess } | undefined> {
    const host = hostAccessFor(this.uri, this.virsh.isLocal);
    if (!host) return undefined;
    const text = await host.readText(qemuPidFile(this.name));
    const pid = Number(text?.trim());
    if (!Number.isInteger(pid) || pid <= 0)
      throw new Error(`no QEMU pid for ${this.name} on ${host.label} (${qemuPidFile(this.name)})`);
    return { pid, host };
  }

  private readonly diskCache = new TestDiskCache();

  /** The storage daemon's pid (kvmio runs it on this machine), for CPU accounting beside QEMU's. */
  storageDaemonPid(): number | undefined {
    return this.served?.daemon.pid;
  }

  /** The storage daemon's command line and stderr, for a point's artifacts. */
  get daemon(): StorageDaemon | undefined {
    return this.served?.daemon;
  }

  /** Round trips through virsh: they include starting virsh and connecting (tens of ms), not only QEMU. */
  async blockRequests(): Promise<number> {
    // QEMU has no block backend for a vhost-user-blk disk: the guest counts the requests instead.
    if (variantPath(this.variant) === 'vhost-user-blk')
      return guestDiskRequests(this, await this.diskCache.devices(this, this.variant));
    return blockRequests(await this.virsh.monitor(this.name, 'query-blockstats'));
  }

  async ping(): Promise<{ monitorMs: number; agentMs: number }> {
    let t = performance.now();
    await this.virsh.monitor(this.name, 'query-status');
    const monitorMs = performance.now() - t;
    t = performance.now();
    await this.agent('guest-ping');
    return { monitorMs, agentMs: performance.now() - t };
  }

  /** The host's libvirt/QEMU abilities, found when the VM started. */
  private get stack(): LibvirtStack {
    const stack = this.opts.stack;
    if (!stack) throw new Error('LibvirtGuest: started without its libvirt stack');
    return stack;
  }

  /** Only memory backing needs a new VM: disk knobs and iothread counts all change live under libvirt. */
  canSwitchLive(next: Variant): boolean {
    return this.liveSwitchObstacle(next) === undefined;
  }

  /** Why `next` cannot be switched to live; undefined when it can. */
  private liveSwitchObstacle(next: Variant): string | undefined {
    // A user's domain has devices of its own that live switching would have to tell apart from kvmio's.
    if (this.own) return 'a domain of your own';
    // The daemon and, for vhost-user-blk, shared memory are set up with the domain.
    if (servedByDaemon(next) || servedByDaemon(this.variant)) return 'a disk served by the storage daemon';
    if (next.memory !== this.variant.memory) return 'memory backing';
    if (variantFormat(next) !== variantFormat(this.variant)) return 'image format';
    if (!sameQemu(next, this.variant)) return 'another QEMU';
    // Multi-disk variants boot a VM of their own: live switching moves one test disk only.
    if ((next.disks ?? 1) > 1 || (this.variant.disks ?? 1) > 1) return 'several disks';
    if (next.iothreads > 1 && (next.disks ?? 1) === 1) {
      const can = next.bus === 'virtio-blk' ? this.stack.iothreadVqMapping : this.stack.scsiIothreadVqMapping;
      if (!can)
        return `${next.bus} over several iothreads, which libvirt ${this.stack.libvirt} with QEMU ${this.stack.qemu} cannot do`;
    }
    return undefined;
  }

  async switchVariant(next: Variant): Promise<void> {
    const obstacle = this.liveSwitchObstacle(next);
    if (obstacle !== undefined) {
      throw new PointFailure(`${this.name}: ${this.variant.id} -> ${next.id} needs a new VM (${obstacle})`);
    }
    const cur = this.variant;
    const curDisk = diskXml({
      variant: cur,
      diskPath: this.diskPath,
      iothreadVqMapping: this.stack.iothreadVqMapping,
      scsiIothreadVqMapping: this.stack.scsiIothreadVqMapping,
      qcow2: this.opts.study.disk.qcow2,
    });
    this.markLog();
    await this.detach(curDisk, 'disk');
    await waitTestDisksGone(this, cur);
    const controllerChanges =
      cur.bus === 'virtio-scsi' &&
      (next.bus !== 'virtio-scsi' || next.queues !== cur.queues || next.iothreads !== cur.iothreads);
    if (controllerChanges) await this.detach(scsiControllerXml(cur), 'controller');
    for (let id = cur.iothreads; id > next.iothreads; id--)
      await this.virsh.run(['iothreaddel', this.name, String(id), '--live']);
    for (let id = cur.iothreads + 1; id <= next.iothreads; id++) {
      await this.virsh.run(['iothreadadd', this.name, String(id), '--live']);
      const cpu = iothreadPinCpu(this.opts.study.pinning, id);
      if (cpu !== undefined)
        await this.virsh.run(['iothreadpin', this.name, String(id), String(cpu), '--live']);
    }
    if (next.bus === 'virtio-scsi' && (controllerChanges || cur.bus !== 'virtio-scsi')) {
      await this.attach(scsiControllerXml(next), 'controller');
    }
    this.variant = next;
    this.switched = true;
    await this.attach(
      diskXml({
        variant: next,
        diskPath: this.diskPath,
        iothreadVqMapping: this.stack.iothreadVqMapping,
        scsiIothreadVqMapping: this.stack.scsiIothreadVqMapping,
        qcow2: this.opts.study.disk.qcow2,
      }),
      'disk',
    );
    await this.testDisk();
    this.noteQemuTasks();
    await verifyLive(this.liveContext(false), next);
    this.markLog();
  }

  private async attach(xml: string, what: string): Promise<void> {
    const file = join(this.scratch, `attach-${what}.xml`);
    writeFileSync(file, xml);
    await this.virsh.run(['attach-device', this.name, file, '--live']);
  }

  /** Detaches and waits until libvirt reports the device gone (the guest has to release it). */
  private async detach(xml: string, what: 'disk' | 'controller'): Promise<void> {
    const file = join(this.scratch, `detach-${what}.xml`);
    writeFileSync(file, xml);
    try {
      await this.virsh.run(['detach-device', this.name, file, '--live']);
    } catch (e) {
      if (!(e instanceof VirshError && /not found|no target device|no matching/i.test(e.virshMessage)))
        throw e;
    }
    const marker = what === 'disk' ? `<serial>${TEST_DISK_SERIAL}</serial>` : `<controller type='scsi'`;
    await waitFor(
      `libvirt to report the ${what} detached from ${this.name}`,
      async () => ((await this.virsh.run(['dumpxml', this.name])).includes(marker) ? undefined : true),
      30_000,
      250,
    );
  }

  address(): Promise<string> {
    return guestAddress(this.virsh, this.name);
  }

  forwardPort(guestPort: number): Promise<{ host: string; port: number }> {
    return libvirtForwardPort(this.virsh, this.name, guestPort);
  }

  consoleTail(lines = 40): string {
    return tailOf(this.virsh, this.consoleLog, lines);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // The copy would go with the VM anyway; removed first so that nothing of kvmio's stays in the guest.
    await this.fio?.remove();
    // Nothing on the test disk needs a clean shutdown: fio writes to the raw device.
    await destroy(this.virsh, this.name, !this.own && this.opts.study.guest.firmware === 'uefi');
    this.unregister();
    this.own?.cleanup();
    // The daemon serves QEMU's disks: it goes once QEMU is gone.
    await this.served?.stop();
    rmSync(this.scratch, { recursive: true, force: true });
    // Failure reports take consoleTail() before stop; afterwards the log is only clutter.
    if (this.virsh.isLocal) rmSync(this.consoleLog, { force: true });
  }
}
