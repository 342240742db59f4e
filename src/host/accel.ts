import { closeSync, constants, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ensureGuest,
  GUEST_KERNEL_CMDLINE,
  GUEST_MIN_MEMORY_MIB,
  GUEST_READY_MARKER,
  type GuestImage,
} from '../guest/build.js';
import { qemuBinary } from '../qemu/binary.js';
import { UserError } from '../util/errors.js';
import { cacheDir } from '../util/paths.js';
import { spawnOwned } from '../util/proc.js';
import { qemuVersion } from './facts.js';

export type { Accel } from '../study/results.js';

import type { Accel } from '../study/results.js';

export interface AccelResult {
  accel: Accel;
  reason: string;
  /** Set when the numbers measured with this accelerator will not be those of KVM VMs. */
  warning?: string;
}

export { GUEST_READY_MARKER };

export const TCG_WARNING =
  'KVM is not usable on this host: guests run under TCG (software emulation), so absolute numbers are not ' +
  'those of KVM VMs and CPU costs are inflated; compare the variants with each other only.';

const DEFAULT_TIMEOUT_MS = 20_000;

/**
 * Which accelerator the runs use. /dev/kvm opening is not enough (on nested or PVM hosts guests hang
 * at boot): KVM counts only if the real guest boots to its ready marker with -accel kvm in time.
 * The answer is cached per host boot and QEMU version; KVMIO_ACCEL=kvm|tcg overrides it.
 */
export async function probeAccelerator(
  opts: { force?: boolean; timeoutMs?: number; log?: (line: string) => void } = {},
): Promise<AccelResult> {
  const forced = process.env.KVMIO_ACCEL;
  if (forced) {
    if (forced !== 'kvm' && forced !== 'tcg') {
      throw new UserError(`KVMIO_ACCEL=${forced}: allowed values are "kvm" and "tcg"`);
    }
    const reason = `KVMIO_ACCEL=${forced}`;
    return forced === 'kvm' ? { accel: 'kvm', reason } : { accel: 'tcg', reason, warning: TCG_WARNING };
  }
  const key = `${readBootId()} qemu-${(await qemuVersion()) ?? 'unknown'}`;
  const cacheFile = join(cacheDir(), 'accel.json');
  if (!opts.force) {
    const cached = readCache(cacheFile, key);
    if (cached) return cached;
  }
  const { result, cacheable } = await probe(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, opts.log);
  if (cacheable) {
    writeFileSync(
      cacheFile,
      `${JSON.stringify({ key, probedAt: new Date().toISOString(), result }, null, 2)}\n`,
    );
  }
  return result;
}

function readBootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown-boot';
  }
}

function readCache(file: string, key: string): AccelResult | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const c = JSON.parse(readFileSync(file, 'utf8')) as { key: string; result: AccelResult };
    return c.key === key ? c.result : undefined;
  } catch {
    return undefined;
  }
}

function tcg(reason: string): AccelResult {
  return { accel: 'tcg', reason, warning: TCG_WARNING };
}

async function probe(
  timeoutMs: number,
  log?: (line: string) => void,
): Promise<{ result: AccelResult; cacheable: boolean }> {
  try {
    closeSync(openSync('/dev/kvm', constants.O_RDWR));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    return { result: tcg(`/dev/kvm cannot be opened (${code})`), cacheable: true };
  }
  let guest: GuestImage;
  try {
    guest = await ensureGuest({ log });
  } catch (e) {
    // Not a fact about the host: try again next time.
    const why = `KVM not probed, the guest could not be built: ${(e as Error).message}`;
    return { result: tcg(why), cacheable: false };
  }
  log?.(`accel: booting the guest with -accel kvm (up to ${Math.round(timeoutMs / 1000)}s)`);
  const boot = await bootToMarker(guest, 'kvm', timeoutMs);
  const result: AccelResult = boot.ok
    ? { accel: 'kvm', reason: `the guest booted with -accel kvm in ${(boot.ms / 1000).toFixed(1)}s` }
    : tcg(`/dev/kvm opens but with -accel kvm the guest ${boot.why}`);
  return { result, cacheable: true };
}

export interface BootProbe {
  ok: boolean;
  ms: number;
  why: string;
  console: string;
}

/**
 * Boots the guest in a bare QEMU (no disks, no network) until the ready marker appears on the serial
 * console, then kills it. Also used by tests to time a boot.
 */
export function bootToMarker(guest: GuestImage, accel: Accel, timeoutMs: number): Promise<BootProbe> {
  const argv = [
    '-machine',
    'q35',
    '-accel',
    accel,
    // The CPU models the VM drivers use: a probe with another model could boot where they do not.
    '-cpu',
    accel === 'kvm' ? 'host' : 'max',
    '-m',
    String(GUEST_MIN_MEMORY_MIB),
    '-smp',
    '1',
    '-nodefaults',
    '-display',
    'none',
    '-no-reboot',
    '-kernel',
    guest.kernel,
    '-initrd',
    guest.initrd,
    '-append',
    GUEST_KERNEL_CMDLINE,
    '-serial',
    'stdio',
    // The guest prints its marker when the agent starts, and the agent waits for its port.
    '-device',
    'virtio-serial-pci',
    '-chardev',
    'null,id=agent',
    '-device',
    'virtserialport,chardev=agent,name=org.qemu.guest_agent.0',
  ];
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawnOwned(qemuBinary(), argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let settled = false;
    const finish = (ok: boolean, why: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const result = { ok, ms: Date.now() - started, why, console: output.slice(-4000) };
      if (child.exitCode === null && child.signalCode === null) {
        child.once('exit', () => resolve(result));
        child.kill('SIGKILL');
      } else {
        resolve(result);
      }
    };
    const timer = setTimeout(
      () => finish(false, `did not boot within ${Math.round(timeoutMs / 1000)}s`),
      timeoutMs,
    );
    const onData = (d: Buffer) => {
      output += d.toString('utf8');
      if (output.includes(GUEST_READY_MARKER)) finish(true, 'booted');
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('error', (e) => finish(false, `could not start ${qemuBinary()}: ${e.message}`));
    child.on('exit', (code, signal) => {
      const tail = output.trim().split('\n').slice(-1)[0] ?? '';
      finish(false, `QEMU exited (${signal ?? `code ${code}`}) before booting${tail ? `: ${tail}` : ''}`);
    });
  });
}
