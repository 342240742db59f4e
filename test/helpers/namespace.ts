import { type SpawnSyncReturns, spawnSync } from 'node:child_process';

/**
 * Runs argv in a private mount namespace (unshare -m, root only) where each `over` path shows the
 * `with` path instead: a host as it would be without some of its tools or files, for this process
 * only. The script is fixed; the paths and argv are its arguments, never spliced into it.
 */
const SCRIPT = 'while [ "$1" != -- ]; do mount --rbind "$2" "$1" || exit 97; shift 2; done; shift; exec "$@"';

export interface Bind {
  over: string;
  with: string;
}

export function inMountNamespace(
  binds: readonly Bind[],
  argv: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs: number },
): SpawnSyncReturns<string> {
  const pairs = binds.flatMap((b) => [b.over, b.with]);
  return spawnSync(
    'unshare',
    ['--mount', '--propagation', 'private', 'sh', '-c', SCRIPT, 'sh', ...pairs, '--', ...argv],
    { encoding: 'utf8', env: opts.env ?? process.env, cwd: opts.cwd, timeout: opts.timeoutMs },
  );
}
