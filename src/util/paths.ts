import { mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

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

/**
 * A file shipped with kvmio (keys, assets), found relative to this module, never to the cwd: this
 * file runs as src/util/paths.ts or dist/src/util/paths.js, in a clone or an npm install.
 */
export function packageFile(...parts: string[]): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const root = join(here, here.endsWith('/dist/src/util/') ? '../../..' : '../..');
  return join(root, ...parts);
}
