import { basename } from 'node:path';
import type { GuestExecResult } from '../guest/vm.js';
import { type HostAccess, LOCAL_HOST } from '../host/access.js';
import { hostPackageManager, installCommand } from '../host/packages.js';
import { globToRegExp } from '../study/glob.js';
import type { GuestFirmware } from '../study/guest-release.js';
import type { Study } from '../study/types.js';
import { ConfigError, PointFailure } from '../util/errors.js';
import type { Monitor } from './verify.js';

/**
 * The guest's UEFI firmware (OVMF) on a host, found as QEMU and libvirt find it: through QEMU's
 * firmware descriptors (docs/interop/firmware.json), which pair a read-only code image with the
 * template of its writable variable store. Every VM gets its own copy of the template.
 */

/** Where descriptors live, in QEMU's order: a file in /etc overrides one of the same name in /usr/share. */
export const FIRMWARE_DESCRIPTOR_DIRS = ['/etc/qemu/firmware', '/usr/share/qemu/firmware'] as const;

/** An OVMF pair on a host: raw pflash images, the code read-only, the variables a template. */
export interface Ovmf {
  code: string;
  varsTemplate: string;
  /** The descriptor that paired them. */
  descriptor: string;
}

/** Features that change what the guest sees or needs (Secure Boot refuses kvmio's unsigned boot path). */
const REFUSED_FEATURES = ['secure-boot', 'enrolled-keys', 'requires-smm'];
/** Descriptors are a few hundred bytes; anything far larger is not one. */
const MAX_DESCRIPTOR_CHARS = 64 * 1024;
/** Firmware paths are passed to QEMU and libvirt: plain absolute paths only. */
const FIRMWARE_PATH = /^\/[A-Za-z0-9_.+/-]+$/;
/** Any pc-q35 machine version: the guest's machine is q35. */
const Q35_MACHINE = 'pc-q35-10.0';

/**
 * The OVMF pair a descriptor names for a q35 x86_64 guest without Secure Boot, or why it does not
 * fit. The text is untrusted: every field is checked before use.
 */
export function ovmfFromDescriptor(text: string, name: string): Ovmf | string {
  if (text.length > MAX_DESCRIPTOR_CHARS) return 'too large for a firmware descriptor';
  let d: unknown;
  try {
    d = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  const obj = (v: unknown): Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  const strings = (v: unknown): string[] =>
    Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  const desc = obj(d);
  if (!strings(desc['interface-types']).includes('uefi')) return 'not UEFI';
  const mapping = obj(desc.mapping);
  if (mapping.device !== 'flash') return `device ${String(mapping.device)}, not flash`;
  if (mapping.mode !== undefined && mapping.mode !== 'split')
    return `mode ${String(mapping.mode)}, not split`;
  const refused = strings(desc.features).filter((f) => REFUSED_FEATURES.includes(f));
  if (refused.length > 0) return `has ${refused.join(', ')}`;
  const q35 = (Array.isArray(desc.targets) ? desc.targets : []).some((t) => {
    const target = obj(t);
    return (
      target.architecture === 'x86_64' &&
      strings(target.machines).some((m) => globToRegExp(m).test(Q35_MACHINE))
    );
  });
  if (!q35) return 'not for x86_64 pc-q35';
  const image = (v: unknown): string | undefined => {
    const f = obj(v);
    const file = f.filename;
    return typeof file === 'string' && FIRMWARE_PATH.test(file) && (f.format ?? 'raw') === 'raw'
      ? file
      : undefined;
  };
  const code = image(mapping.executable);
  const varsTemplate = image(mapping['nvram-template']);
  if (!code || !varsTemplate) return 'no raw code image and variable store template with plain paths';
  return { code, varsTemplate, descriptor: name };
}

/** The descriptor files of a host in QEMU's priority order (by file name; /etc shadows /usr/share). */
async function descriptorFiles(host: HostAccess): Promise<string[]> {
  const byName = new Map<string, string>();
  for (const dir of [...FIRMWARE_DESCRIPTOR_DIRS].reverse()) {
    const r = await host.run(['ls', '-1', dir], { allowFailure: true, timeoutMs: 20_000 });
    if (r.code !== 0) continue;
    for (const file of r.stdout.split('\n'))
      if (/^[A-Za-z0-9_.+-]+\.json$/.test(file)) byName.set(file, `${dir}/${file}`);
  }
  return [...byName.keys()].sort().map((k) => byName.get(k) as string);
}

/** The first OVMF pair the host's descriptors name whose two images are there; undefined if none. */
export async function findOvmf(host: HostAccess = LOCAL_HOST): Promise<Ovmf | undefined> {
  for (const file of await descriptorFiles(host)) {
    const text = await host.readText(file);
    if (text === undefined) continue;
    const ovmf = ovmfFromDescriptor(text, file);
    if (typeof ovmf === 'string') continue;
    const present = await host.run(['test', '-f', ovmf.code, '-a', '-f', ovmf.varsTemplate], {
      allowFailure: true,
      timeoutMs: 20_000,
    });
    if (present.code === 0) return ovmf;
  }
  return undefined;
}

/** What to install for OVMF, in the host's own package manager's words (Debian's `ovmf` by default). */
export function ovmfInstallHint(host: HostAccess = LOCAL_HOST): string {
  const pm = host.local ? (hostPackageManager() ?? 'apt') : 'apt';
  return `install with: ${installCommand(pm, ['ovmf'], !host.local || process.getuid?.() === 0)}`;
}

/**
 * The OVMF pair a uefi study boots with on `host`; a ConfigError naming the package when the host has
 * none (before any boot). Undefined for a bios study.
 */
export async function studyOvmf(
  study: Pick<Study, 'source' | 'guest'>,
  host: HostAccess = LOCAL_HOST,
): Promise<Ovmf | undefined> {
  if ((study.guest.firmware ?? 'bios') !== 'uefi') return undefined;
  const ovmf = await findOvmf(host);
  if (ovmf) return ovmf;
  throw new ConfigError(
    study.source,
    'guest.firmware',
    `uefi needs OVMF (UEFI firmware for QEMU), which ${host.label} lacks: no firmware descriptor in ${FIRMWARE_DESCRIPTOR_DIRS.join(' or ')} names a UEFI pflash firmware without Secure Boot for pc-q35 whose files exist; ${ovmfInstallHint(host)}`,
  );
}

/** One line for plan, doctor and the report: "uefi (OVMF_CODE_4M.fd, vars from OVMF_VARS_4M.fd)". */
export function firmwareText(firmware: GuestFirmware, ovmf?: Ovmf): string {
  if (firmware === 'bios' || !ovmf) return firmware;
  return `uefi (OVMF ${ovmf.code}, variables from ${basename(ovmf.varsTemplate)})`;
}

interface PflashBlock {
  qdev?: string;
  inserted?: { file?: string; ro?: boolean };
}

/** What a live check saw of the firmware, and what does not match the study. */
export interface FirmwareSeen {
  /** e.g. "uefi: pflash0 /usr/share/OVMF/OVMF_CODE_4M.fd read-only, pflash1 …; /sys/firmware/efi in the guest". */
  seen: string[];
  problems: string[];
}

/**
 * QEMU's pflash drives, from its monitor (its own socket or libvirt's): a uefi guest has OVMF's code
 * read-only on flash0 (the file asked, when known) and a writable variable store on flash1; a bios
 * guest has no pflash at all (q35 then drops its flash devices).
 */
export async function pflashCheck(
  monitor: Monitor,
  firmware: GuestFirmware,
  code?: string,
): Promise<FirmwareSeen> {
  const blocks = await monitor<PflashBlock[]>('query-block');
  const flash = (unit: number) => blocks.find((b) => b.qdev === `/machine/system.flash${unit}`)?.inserted;
  const all = blocks.filter((b) => b.qdev?.startsWith('/machine/system.flash'));
  const seen = all.map(
    (b) =>
      `pflash ${b.qdev?.replace('/machine/system.', '')} ${b.inserted?.file ?? '(empty)'}${b.inserted?.ro ? ' read-only' : ''}`,
  );
  const problems: string[] = [];
  if (firmware === 'bios') {
    if (all.length > 0)
      problems.push(`guest.firmware bios asked, but QEMU has pflash drives (${seen.join(', ')})`);
    return { seen: seen.length > 0 ? seen : ['no pflash (SeaBIOS)'], problems };
  }
  const [code0, vars1] = [flash(0), flash(1)];
  if (!code0?.file) problems.push('guest.firmware uefi asked, but QEMU has no pflash0 (OVMF code)');
  else {
    if (code0.ro !== true)
      problems.push(`pflash0 (${code0.file}) is writable; OVMF's code must be read-only`);
    if (code !== undefined && code0.file !== code)
      problems.push(`pflash0 is ${code0.file}, expected OVMF's code ${code}`);
  }
  if (!vars1?.file) problems.push('guest.firmware uefi asked, but QEMU has no pflash1 (the variable store)');
  else if (vars1.ro === true)
    problems.push(`pflash1 (${vars1.file}) is read-only; the variable store must be writable`);
  return { seen, problems };
}

/**
 * The guest's own view (argv through its agent): Linux has /sys/firmware/efi exactly when it was
 * booted by UEFI. A uefi guest that came up under BIOS is a failed point, never a mislabeled figure.
 */
export async function guestFirmwareCheck(
  exec: (argv: string[], opts: { timeoutMs: number }) => Promise<GuestExecResult>,
  firmware: GuestFirmware,
): Promise<FirmwareSeen> {
  const r = await exec(['test', '-d', '/sys/firmware/efi'], { timeoutMs: 30_000 });
  if (r.timedOut || (r.exitCode !== 0 && r.exitCode !== 1))
    return {
      seen: [],
      problems: [`the guest's firmware could not be checked: test -d /sys/firmware/efi exited ${r.exitCode}`],
    };
  const efi = r.exitCode === 0;
  const seen = [efi ? '/sys/firmware/efi in the guest' : 'no /sys/firmware/efi in the guest'];
  if (firmware === 'uefi' && !efi)
    return {
      seen,
      problems: ['guest.firmware uefi asked, but the guest booted without UEFI (no /sys/firmware/efi)'],
    };
  if (firmware === 'bios' && efi)
    return {
      seen,
      problems: ['guest.firmware bios asked, but the guest booted under UEFI (/sys/firmware/efi exists)'],
    };
  return { seen, problems: [] };
}

/** Both checks, joined: the firmware line a point keeps, or a PointFailure naming every mismatch. */
export async function verifyFirmware(
  live: {
    monitor: Monitor;
    exec: (argv: string[], opts: { timeoutMs: number }) => Promise<GuestExecResult>;
  },
  firmware: GuestFirmware,
  code?: string,
): Promise<string> {
  const checks = [
    await pflashCheck(live.monitor, firmware, code),
    await guestFirmwareCheck(live.exec, firmware),
  ];
  const problems = checks.flatMap((c) => c.problems);
  if (problems.length > 0)
    throw new PointFailure(`the live VM does not run the study's firmware: ${problems.join('; ')}`);
  return `${firmware}: ${checks.flatMap((c) => c.seen).join('; ')}`;
}
