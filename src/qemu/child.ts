import type { ChildProcess } from 'node:child_process';
import { sleep } from '../util/proc.js';
import type { QmpClient } from './qmp.js';

/**
 * What QEMU and the storage daemon have in common as kvmio's long-lived children: the tail of their
 * stderr (failure reports, fallback warnings since a mark), their end, and a stop by QMP quit that
 * falls back to SIGKILL.
 */

/** The last `keep` characters a child wrote to stderr, and how many it wrote in all. */
export class StderrTail {
  text = '';
  total = 0;

  constructor(
    child: ChildProcess,
    readonly keep = 8192,
  ) {
    child.stderr?.on('data', (d: Buffer) => {
      const text = d.toString('utf8');
      this.total += text.length;
      this.text = (this.text + text).slice(-keep);
    });
  }

  /** What came after the child had written `mark` characters (as much as is kept). */
  since(mark: number): string {
    const count = Math.min(this.total - mark, this.text.length);
    return count <= 0 ? '' : this.text.slice(-count);
  }
}

/**
 * Resolves when the child has exited (or could not start); `onEnd` is told how, in words ("was
 * killed by SIGSEGV", "exited with code 1") or with the spawn error's message.
 */
export function childEnd(
  child: ChildProcess,
  onEnd: (how: { code: number | null; signal: NodeJS.Signals | null; error?: string }) => void,
): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      onEnd({ code, signal });
      resolve();
    });
    child.once('error', (err) => {
      onEnd({ code: null, signal: null, error: err.message });
      resolve();
    });
  });
}

/** Asks a running child to quit over QMP and SIGKILLs it when it has not within a few seconds. */
export async function quitThenKill(
  qmp: QmpClient | undefined,
  child: ChildProcess,
  exited: Promise<void>,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  if (qmp && !qmp.closed) await qmp.execute('quit', undefined, { timeoutMs: 2000 }).catch(() => undefined);
  const quit = await Promise.race([exited.then(() => true), sleep(3000).then(() => false)]);
  if (!quit) {
    child.kill('SIGKILL');
    await exited;
  }
}
