import { accessSync, constants, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Where the QEMU binary is: distributions put it in different places (Debian, Ubuntu, Arch, SUSE:
 * qemu-system-x86_64 on PATH; RHEL, Rocky, Alma, CentOS: /usr/libexec/qemu-kvm; some: /usr/bin/qemu-kvm).
 * This is the one place that decides which binary kvmio starts.
 */

export interface QemuLocation {
  /** What kvmio runs: an absolute path when found, else the PATH name (so errors name it). */
  binary: string;
  found: boolean;
  /** Why this binary, in words for `kvmio doctor`. */
  reason: string;
}

const PATH_NAME = 'qemu-system-x86_64';
/** Searched after PATH, in this order. */
export const QEMU_FALLBACKS = ['/usr/libexec/qemu-kvm', '/usr/bin/qemu-kvm'];

export interface QemuSearch {
  env?: NodeJS.ProcessEnv;
  /** Prefix for every absolute path looked at (tests point it at a fake root). */
  root?: string;
}

/** Whether `path` is a regular file this process may execute (not a directory, not a dangling link). */
export function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function onPath(name: string, env: NodeJS.ProcessEnv, root: string): string | undefined {
  for (const dir of (env.PATH ?? '').split(':')) {
    if (!dir.startsWith('/')) continue; // relative PATH entries depend on the cwd: not trusted
    const candidate = join(dir, name);
    if (isExecutableFile(join(root, candidate))) return candidate;
  }
  return undefined;
}

/** KVMIO_QEMU, else qemu-system-x86_64 on PATH, else /usr/libexec/qemu-kvm, else /usr/bin/qemu-kvm. */
export function locateQemu(search: QemuSearch = {}): QemuLocation {
  const env = search.env ?? process.env;
  const root = search.root ?? '/';
  const chosen = env.KVMIO_QEMU;
  if (chosen) {
    const path = chosen.includes('/') ? chosen : onPath(chosen, env, root);
    if (path && isExecutableFile(join(root, path)))
      return { binary: path, found: true, reason: 'KVMIO_QEMU' };
    return {
      binary: chosen,
      found: false,
      reason: `KVMIO_QEMU=${chosen} is not an executable file${chosen.includes('/') ? '' : ' on PATH'}`,
    };
  }
  const fromPath = onPath(PATH_NAME, env, root);
  if (fromPath) return { binary: fromPath, found: true, reason: `${PATH_NAME} on PATH` };
  for (const path of QEMU_FALLBACKS) {
    if (isExecutableFile(join(root, path)))
      return { binary: path, found: true, reason: `${PATH_NAME} is not on PATH; ${path} is` };
  }
  return {
    binary: PATH_NAME,
    found: false,
    reason: `neither ${PATH_NAME} on PATH nor ${QEMU_FALLBACKS.join(' nor ')} exists (or set KVMIO_QEMU)`,
  };
}

let located: QemuLocation | undefined;

/** The QEMU binary kvmio starts, located once per process. */
export function qemuLocation(): QemuLocation {
  located ??= locateQemu();
  return located;
}

export function qemuBinary(): string {
  return qemuLocation().binary;
}
