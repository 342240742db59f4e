import { mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Where kvmio keeps what it builds once (the guest): $KVMIO_CACHE, default ~/.cache/kvmio. */
export function cacheDir(): string {
  const dir =
    process.env.KVMIO_CACHE || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'kvmio');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Per-process runtime directory for sockets and logs; unique so that two runs never collide. */
export function runtimeDir(): string {
  const base = process.env.KVMIO_RUNTIME_DIR || join(process.env.XDG_RUNTIME_DIR || '/tmp', 'kvmio');
  mkdirSync(base, { recursive: true, mode: 0o700 });
  return base;
}

export const DEFAULT_DB = 'kvmio.sqlite';
