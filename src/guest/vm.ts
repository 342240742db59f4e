import type { Accel, AccelResult } from '../host/accel.js';
import type { HostAccess } from '../host/access.js';
import type { Study, Variant } from '../study/types.js';

/**
 * A running guest, whichever backend started it (direct QEMU or libvirt). Workloads and the run
 * engine only talk to this interface.
 */

export interface GuestExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** Set when the command was killed for running past its timeout. */
  timedOut?: boolean;
}

export interface GuestExecOptions {
  /** Kill the guest command and fail after this many milliseconds. */
  timeoutMs: number;
  /** Data written to the command's stdin. */
  input?: string;
}

export interface GuestVm {
  readonly name: string;
  /** Milliseconds from starting the VM to the first answer of its guest agent. */
  readonly bootMs: number;
  /** Set when the guest kernel panicked at boot under TCG and the VM is its second boot: why. */
  readonly bootWarning?: string;
  /** The variant whose test disk is attached right now. */
  readonly variant: Variant;
  /** Runs argv inside the guest (no shell), returning its captured output and exit code. */
  exec(argv: string[], opts: GuestExecOptions): Promise<GuestExecResult>;
  readFile(path: string): Promise<Buffer>;
  writeFile(path: string, data: string | Buffer): Promise<void>;
  /** The guest device node of the test disk for the current variant, e.g. /dev/vdb or /dev/sda. */
  testDisk(): Promise<string>;
  /** Every test disk of the current variant in disk order (the first is testDisk()); one unless `disks` > 1. */
  testDisks(): Promise<string[]>;
  /** Host PID of the QEMU process, for CPU accounting by thread. */
  qemuPid(): number;
  /** Host PID of the qemu-storage-daemon serving the test disks (paths vhost-user-blk, nbd); else undefined. */
  storageDaemonPid?(): number | undefined;
  /**
   * Where QEMU runs when that is not this machine: the host's access and QEMU's pid there (CPU accounting
   * on a remote host); undefined when kvmio has no way onto that host. Absent for backends that run
   * QEMU here.
   */
  qemuHost?(): Promise<{ pid: number; host: HostAccess } | undefined>;
  /**
   * Read and write requests QEMU has completed on the VM's block devices so far (query-blockstats):
   * how the host sees when a workload's I/O begins.
   */
  blockRequests?(): Promise<number>;
  /** Round trip of a no-op through the monitor and through the guest agent, milliseconds. */
  ping(): Promise<{ monitorMs: number; agentMs: number }>;
  /** Whether `next` can replace the current variant without a reboot (disk knobs only). */
  canSwitchLive(next: Variant): boolean;
  /** Hot-unplugs the test disk and plugs it in as `next` wants; verifies the live config. */
  switchVariant(next: Variant): Promise<void>;
  /** Last lines the guest printed on its console (for failure reports). */
  consoleTail(lines?: number): string;
  /**
   * Makes a guest TCP port reachable from this controller (fio client/server); returns the
   * address to connect to. Optional: a backend without guest networking leaves it out.
   */
  forwardPort?(guestPort: number): Promise<{ host: string; port: number }>;
  /** Graceful shutdown first, then kill; safe to call twice. */
  stop(): Promise<void>;
  /** The QEMU binary the VM runs and the version its monitor reported at boot (kept with every point). */
  readonly qemu?: { path: string; version: string };
}

/** What a backend needs to boot one guest. */
export interface BootRequest {
  /** The study as the host runs it (`disk` is the host's own, or the guest's copy). */
  study: Study;
  variant: Variant;
  accel: Accel;
  /** Unique among the VMs of this process (libvirt domain name, QEMU -name). */
  name: string;
  log: (line: string) => void;
}

/**
 * One host's way of running guests (direct QEMU on this machine, or a libvirt URI). The run engine
 * only talks to this interface; `V` is the backend's own VM type.
 */
export interface VmBackend<V extends GuestVm = GuestVm> {
  /** VMs run on this machine: its disk, /proc and the host baseline are the host's. */
  readonly isLocal: boolean;
  /**
   * How kvmio reaches the host itself (its /proc, fio, disk): this machine, one SSH connection, or
   * undefined where it has no way onto the host (what needs it is then reported missing for the host).
   */
  readonly access: HostAccess | undefined;
  /** Throws when the host does not answer (HostUnreachableError: the whole host is out). */
  reach(): Promise<void>;
  /** Facts about the host for the run's provenance; never throws for missing facts. */
  facts(): Promise<Record<string, unknown>>;
  /**
   * Refuses (UserError) before any boot what every boot on this host would fail on, such as a disk
   * directory the host's QEMU cannot enter; absent where there is nothing to check.
   */
  checkDisk?(study: Study): Promise<void>;
  /** Refuses (UserError) before any boot a uefi study on a host without OVMF; absent: nothing to check. */
  checkFirmware?(study: Study): Promise<void>;
  /**
   * The accelerator probed on the host itself, where it is not this machine (cached per run); absent
   * where the controller's probe stands for the host.
   */
  accelerator?(log: (line: string) => void): Promise<AccelResult>;
  /** Readies the host for boots (the guest image where the backend needs it); idempotent. */
  stage(log: (line: string) => void): Promise<void>;
  /** Boots a guest for the variant; resolves once it answers and its live config is verified. */
  boot(req: BootRequest): Promise<V>;
  /** After a workload: the VM still runs its variant's aio mode (recent QEMU falls back on the first request). */
  verify(vm: V): Promise<void>;
  /** What a point keeps of the VM beside its console (QEMU argv and stderr, domain XML). */
  artifacts(vm: V): Record<string, string>;
}
