import { quoted } from '../util/errors.js';
import { formatBytes, parseDuration, parseSize } from '../util/units.js';
import type { KeyPath, YamlSource } from './yaml-source.js';

/**
 * Typed readers for study-file values. Each one either returns the value in kvmio's units or fails
 * with the key path and what is allowed, phrased for the person editing the file.
 */

export function describe(value: unknown): string {
  if (value === null || value === undefined) return 'empty';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  if (typeof value === 'string') return quoted(value);
  return String(value);
}

export function isPlainMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** The allowed word closest to a typo, if it is close enough to be the likely intent. */
export function closest(word: string, allowed: readonly string[]): string | undefined {
  const lower = word.toLowerCase();
  const containing = allowed.filter((c) => lower.length >= 3 && c.toLowerCase().includes(lower));
  if (containing.length === 1) return containing[0];
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const candidate of allowed) {
    const d = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/** A map with only the given keys (a typo is reported with the likely key). */
export function readMap(
  src: YamlSource,
  path: KeyPath,
  value: unknown,
  allowed: readonly string[],
): Record<string, unknown> {
  if (!isPlainMap(value))
    src.fail(path, `is ${describe(value)}, expected a map with keys: ${allowed.join(', ')}`);
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      const hint = closest(key, allowed);
      src.fail(
        [...path, key],
        `unknown key${hint ? ` (did you mean "${hint}"?)` : ''}; allowed: ${allowed.join(', ')}`,
      );
    }
  }
  return value;
}

export function readInt(src: YamlSource, path: KeyPath, value: unknown, min: number, max: number): number {
  const allowed = `a whole number from ${min} to ${max}`;
  if (typeof value !== 'number') src.fail(path, `is ${describe(value)}, expected ${allowed}`);
  if (!Number.isInteger(value) || value < min || value > max)
    src.fail(path, `${value} is out of range: ${allowed}`);
  return value;
}

export function readBool(src: YamlSource, path: KeyPath, value: unknown): boolean {
  if (typeof value !== 'boolean') src.fail(path, `is ${describe(value)}, expected true or false`);
  return value;
}

export function readEnum<T extends string>(
  src: YamlSource,
  path: KeyPath,
  value: unknown,
  allowed: readonly T[],
): T {
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    const hint = typeof value === 'string' ? closest(value, allowed) : undefined;
    src.fail(
      path,
      `${describe(value)} is not allowed${hint ? ` (did you mean "${hint}"?)` : ''}; allowed: ${allowed.join(', ')}`,
    );
  }
  return value as T;
}

export function readString(
  src: YamlSource,
  path: KeyPath,
  value: unknown,
  pattern?: RegExp,
  patternHelp?: string,
): string {
  if (typeof value !== 'string' || value.trim() === '')
    src.fail(path, `is ${describe(value)}, expected a text`);
  if (pattern && !pattern.test(value)) src.fail(path, `${describe(value)} is not allowed: ${patternHelp}`);
  return value;
}

export interface SizeLimits {
  min: number;
  max: number;
  multipleOf?: number;
}

const SIZE_FORMS = 'a size such as 4k, 16M, 1GiB (units B, KiB, MiB, GiB, TiB or k, M, G, T)';

export function readSize(src: YamlSource, path: KeyPath, value: unknown, limits: SizeLimits): number {
  if (typeof value !== 'number' && typeof value !== 'string')
    src.fail(path, `is ${describe(value)}, expected ${SIZE_FORMS}`);
  let bytes: number;
  try {
    bytes = parseSize(value);
  } catch {
    src.fail(path, `${describe(value)} is not a size: use ${SIZE_FORMS}`);
  }
  if (typeof value === 'number' && !Number.isInteger(value))
    src.fail(path, `${value} is not a whole number of bytes`);
  if (bytes < limits.min || bytes > limits.max) {
    src.fail(
      path,
      `${describe(value)} is out of range: from ${formatBytes(limits.min)} to ${formatBytes(limits.max)}`,
    );
  }
  if (limits.multipleOf && bytes % limits.multipleOf !== 0) {
    src.fail(path, `${describe(value)} is not a multiple of ${formatBytes(limits.multipleOf)}`);
  }
  return bytes;
}

export function readDuration(
  src: YamlSource,
  path: KeyPath,
  value: unknown,
  min: number,
  max: number,
): number {
  const forms = 'a duration such as 30s, 2m (or a number of seconds)';
  if (typeof value !== 'number' && typeof value !== 'string')
    src.fail(path, `is ${describe(value)}, expected ${forms}`);
  let seconds: number;
  try {
    seconds = parseDuration(value);
  } catch {
    src.fail(path, `${describe(value)} is not a duration: use ${forms}`);
  }
  if (seconds < min || seconds > max) {
    src.fail(path, `${describe(value)} is out of range: from ${min} s to ${max} s`);
  }
  return seconds;
}

/** "5%" or 0.05: a share of something, returned as a fraction. */
export function readShare(src: YamlSource, path: KeyPath, value: unknown, min: number, max: number): number {
  const allowed = `a percentage from ${min * 100}% to ${max * 100}% (e.g. "5%", or 0.05)`;
  let share: number | undefined;
  if (typeof value === 'number') share = value;
  else if (typeof value === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(value);
    if (m) share = Number(m[1]) / 100;
  }
  if (share === undefined || !Number.isFinite(share))
    src.fail(path, `is ${describe(value)}, expected ${allowed}`);
  if (share < min || share > max) src.fail(path, `${describe(value)} is out of range: ${allowed}`);
  return share;
}

/** A list; a single scalar counts as a one-item list (`aio: native` = `aio: [native]`). */
export function readList<T>(
  src: YamlSource,
  path: KeyPath,
  value: unknown,
  readItem: (itemPath: KeyPath, item: unknown) => T,
  opts: { allowScalar?: boolean; unique?: boolean; nonEmpty?: boolean } = {},
): T[] {
  let items: unknown[];
  if (Array.isArray(value)) items = value;
  else if (opts.allowScalar && value !== null && value !== undefined && typeof value !== 'object')
    items = [value];
  else src.fail(path, `is ${describe(value)}, expected a list`);
  if (opts.nonEmpty && items.length === 0) src.fail(path, 'is an empty list: give at least one value');
  const out = items.map((item, i) => readItem(Array.isArray(value) ? [...path, i] : path, item));
  if (opts.unique) {
    out.forEach((v, i) => {
      if (out.indexOf(v) !== i)
        src.fail(Array.isArray(value) ? [...path, i] : path, `${describe(v)} appears twice`);
    });
  }
  return out;
}
