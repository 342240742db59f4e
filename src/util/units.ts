import { UserError } from './errors.js';

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  B: 1,
  K: 1024,
  KB: 1000,
  KIB: 1024,
  M: 1024 ** 2,
  MB: 1000 ** 2,
  MIB: 1024 ** 2,
  G: 1024 ** 3,
  GB: 1000 ** 3,
  GIB: 1024 ** 3,
  T: 1024 ** 4,
  TB: 1000 ** 4,
  TIB: 1024 ** 4,
};

/** Parses "4k", "16M", "1GiB", "512" into bytes. Throws UserError with the allowed forms. */
export function parseSize(input: string | number): number {
  if (typeof input === 'number' && Number.isFinite(input) && input >= 0) return Math.floor(input);
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(String(input));
  const unit = m?.[2]?.toUpperCase() ?? '';
  const factor = SIZE_UNITS[unit];
  if (!m || factor === undefined) {
    throw new UserError(`"${input}" is not a size: use a number with B, KiB, MiB, GiB, TiB (or k, M, G, T)`);
  }
  return Math.floor(Number(m[1]) * factor);
}

const DURATION_UNITS: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600, ms: 0.001 };

/** Parses "30s", "2m", "1h", "500ms" or a bare number of seconds into seconds. */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number' && Number.isFinite(input) && input >= 0) return input;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(String(input));
  if (!m) throw new UserError(`"${input}" is not a duration: use a number with s, m or h (e.g. 30s, 2m)`);
  return Number(m[1]) * (DURATION_UNITS[m[2] ?? ''] ?? 1);
}

/** Formats bytes the way fio and QEMU accept them: the largest exact binary unit. */
export function formatSizeForTool(bytes: number): string {
  for (const [suffix, factor] of [
    ['G', 1024 ** 3],
    ['M', 1024 ** 2],
    ['k', 1024],
  ] as const) {
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor}${suffix}`;
  }
  return String(bytes);
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${value >= 100 || i === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[i]}`;
}

export function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m${String(sec).padStart(2, '0')}s`;
  return `${sec}s`;
}
