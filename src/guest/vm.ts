import type { Variant } from '../study/types.js';

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
  /** Round trip of a no-op through the monitor and through the guest agent, milliseconds. */
  ping(): Promise<{ monitorMs: number; agentMs: number }>;
  /** Whether `next` can replace the current variant without a reboot (disk knobs only). */
  canSwitchLive(next: Variant): boolean;
  /** Hot-unplugs the test disk and plugs it in as `next` wants; verifies the live config. */
  switchVariant(next: Variant): Promise<void>;
  /** Last lines the guest printed on its console (for failure reports). */
  consoleTail(lines?: number): string;
  /**
   * Makes a guest TCP port reachable from this controller (fio client/server, issue 8); returns the
   * address to connect to. Optional: a backend without guest networking leaves it out.
   */
  forwardPort?(guestPort: number): Promise<{ host: string; port: number }>;
  /** Graceful shutdown first, then kill; safe to call twice. */
  stop(): Promise<void>;
}
