import { accessSync, constants, statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { runSync } from '../util/proc.js';
import { describe, isPlainMap, readList, readString } from './fields.js';
import type { VariantQemu } from './types.js';
import type { KeyPath, YamlSource } from './yaml-source.js';

/**
 * The matrix's qemu axis as a study file gives it: `qemus:` names and `matrix.qemu` items, each
 * binary run with -version while the study is read (what it can do is asked at plan time, by
 * qemu/axis.ts).
 */

/** A QEMU's name in `qemus:` (and so in variant ids): short, no path characters. */
const QEMU_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;
const QEMU_NAME_HELP = 'letters, digits, ".", "_" and "-", starting with a letter or digit (at most 32)';
const QEMU_VALUE_HELP =
  'an absolute path to a QEMU system emulator (e.g. /usr/bin/qemu-system-x86_64) or a name from qemus:';

/** `qemus: {NAME: PATH}`: named QEMU binaries for matrix.qemu (paths checked when the matrix uses them). */
export function readQemus(src: YamlSource, value: unknown): Map<string, string> {
  const out = new Map<string, string>();
  if (value === undefined) return out;
  if (!isPlainMap(value))
    src.fail(
      ['qemus'],
      `is ${describe(value)}, expected a map of names to QEMU paths, e.g. q10: /opt/qemu-10/bin/qemu-system-x86_64`,
    );
  for (const [name, path] of Object.entries(value)) {
    if (!QEMU_NAME.test(name))
      src.fail(['qemus', name], `the name ${describe(name)} is not allowed: ${QEMU_NAME_HELP}`);
    const p = readString(src, ['qemus', name], path);
    if (!isAbsolute(p))
      src.fail(
        ['qemus', name],
        `${describe(p)} is not an absolute path: ${QEMU_VALUE_HELP.split(' or ')[0]}`,
      );
    out.set(name, p);
  }
  return out;
}

/**
 * matrix.qemu: each item a path or a `qemus:` name, checked by running it with -version. A bare path
 * is named by its version, so two paths of one version need names in qemus:.
 */
export function readQemuAxis(src: YamlSource, value: unknown, qemus: Map<string, string>): VariantQemu[] {
  const names = [...qemus.keys()];
  const items = readList(
    src,
    ['matrix', 'qemu'],
    value,
    (path, item) => {
      const text = readString(src, path, item);
      if (text.includes('/')) {
        if (!isAbsolute(text)) src.fail(path, `${describe(text)} is not allowed: ${QEMU_VALUE_HELP}`);
        return { path, given: text, file: text, named: undefined };
      }
      const file = qemus.get(text);
      if (file === undefined)
        src.fail(
          path,
          `${describe(text)} is not allowed: ${QEMU_VALUE_HELP}${names.length > 0 ? ` (${names.join(', ')})` : ' (there is no qemus: map)'}`,
        );
      return { path, given: text, file, named: text };
    },
    { allowScalar: true, nonEmpty: true },
  );
  const out: VariantQemu[] = [];
  for (const item of items) {
    const where: KeyPath = item.named ? ['qemus', item.named] : item.path;
    const probe = probeQemuVersion(item.file);
    if ('problem' in probe) src.fail(where, `${item.file} ${probe.problem}; allowed: ${QEMU_VALUE_HELP}`);
    const name = item.named ?? probe.version;
    const twin = out.find((q) => q.path === item.file || q.name === name);
    if (twin)
      src.fail(
        item.path,
        twin.path === item.file
          ? `${item.file} is already in the list (as ${twin.name})`
          : `${item.file} is QEMU ${probe.version} like ${twin.path}: give them names in qemus: to tell them apart`,
      );
    out.push({ name, path: item.file, version: probe.version });
  }
  return out;
}

export function readExcludedQemu(
  src: YamlSource,
  path: KeyPath,
  value: unknown,
  qemus: VariantQemu[] | undefined,
): string {
  if (!qemus) src.fail(path, 'excludes a QEMU, but matrix.qemu is not given');
  const names = qemus.map((q) => q.name);
  const given = readString(src, path, value);
  const q = qemus.find((x) => x.name === given || x.path === given);
  if (!q) src.fail(path, `${describe(given)} is not a QEMU of matrix.qemu; allowed: ${names.join(', ')}`);
  return q.name;
}

/** What `QEMU -version` says: "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2…)". */
export interface QemuVersionProbe {
  /** "10.0.2" */
  version: string;
  /** The distribution's package version in parentheses, when printed. */
  package?: string;
}

/** Reads the version from `-version` output; undefined when it is not QEMU's. */
export function parseQemuVersionOutput(text: string): QemuVersionProbe | undefined {
  const m = /^QEMU emulator version (\d+\.\d+\.\d+)(?: \(([^)\n]{1,120})\))?/m.exec(text);
  if (!m) return undefined;
  return { version: m[1] as string, ...(m[2] ? { package: m[2] } : {}) };
}

/**
 * Runs `PATH -version` (argv, no shell) and reads its version, or says why PATH is not a QEMU kvmio
 * can start: missing, not an executable file, failing, or printing something else.
 */
export function probeQemuVersion(path: string): QemuVersionProbe | { problem: string } {
  if (!path.startsWith('/')) return { problem: 'is not an absolute path' };
  try {
    if (!statSync(path).isFile()) return { problem: 'is not a file' };
  } catch {
    return { problem: 'does not exist' };
  }
  try {
    accessSync(path, constants.X_OK);
  } catch {
    return { problem: 'is not executable' };
  }
  const r = runSync([path, '-version'], { timeoutMs: 20_000 });
  if (r.error) return { problem: `could not be run: ${r.error}` };
  if (r.timedOut) return { problem: 'did not answer -version within 20 s' };
  if (r.code !== 0) {
    const why = r.signal ? `was killed by ${r.signal}` : `exited with code ${r.code}`;
    const tail = (r.stderr || r.stdout || '').trim().split('\n').slice(-1)[0] ?? '';
    return { problem: `${why} when asked for -version${tail ? `: ${tail.slice(0, 200)}` : ''}` };
  }
  return (
    parseQemuVersionOutput(r.stdout) ?? {
      problem: `is not a QEMU: -version printed ${JSON.stringify(r.stdout.trim().split('\n')[0]?.slice(0, 80) ?? '')}`,
    }
  );
}
