import { sleep } from '../util/proc.js';
import type { GuestExecOptions, GuestExecResult } from './vm.js';

/**
 * The guest-agent commands kvmio uses (guest-exec with captured output, guest-file-*), written once
 * over any transport: the agent's chardev socket (direct QEMU) or `virsh qemu-agent-command` (libvirt).
 */
export type AgentCall = <T = unknown>(command: string, args?: object, timeoutMs?: number) => Promise<T>;

interface ExecStatus {
  exited: boolean;
  exitcode?: number;
  signal?: number;
  'out-data'?: string;
  'err-data'?: string;
  'out-truncated'?: boolean;
  'err-truncated'?: boolean;
}

function toExecResult(st: ExecStatus): GuestExecResult {
  const exitCode = st.exitcode ?? (st.signal !== undefined ? 128 + st.signal : -1);
  // The agent keeps at most 16 MiB of each stream: say so rather than return silently cut output.
  const cut = (truncated: boolean | undefined) =>
    truncated ? '\n[kvmio: output truncated by the guest agent]\n' : '';
  return {
    exitCode,
    stdout: Buffer.from(st['out-data'] ?? '', 'base64').toString('utf8'),
    stderr:
      Buffer.from(st['err-data'] ?? '', 'base64').toString('utf8') +
      cut(st['out-truncated']) +
      cut(st['err-truncated']),
  };
}

/** guest-exec of argv (no shell) with captured output; polls its status until exit or the deadline. */
export async function agentExec(
  call: AgentCall,
  argv: string[],
  opts: GuestExecOptions,
): Promise<GuestExecResult> {
  const [path, ...arg] = argv;
  if (!path) throw new Error('guest exec: empty argv');
  const args: Record<string, unknown> = { path, arg, 'capture-output': true };
  if (opts.input !== undefined) args['input-data'] = Buffer.from(opts.input).toString('base64');
  const { pid } = await call<{ pid: number }>('guest-exec', args);
  const deadline = Date.now() + opts.timeoutMs;
  let interval = 20;
  for (;;) {
    const st = await call<ExecStatus>('guest-exec-status', { pid });
    if (st.exited) return toExecResult(st);
    if (Date.now() > deadline) {
      // guest-exec searches PATH, so busybox's or procps' kill both work; the command may have exited meanwhile.
      await call('guest-exec', { path: 'kill', arg: ['-9', String(pid)] }).catch(() => undefined);
      const after = await finalStatus(call, pid);
      const result = after ? toExecResult(after) : { exitCode: 137, stdout: '', stderr: '' };
      return { ...result, timedOut: true };
    }
    await sleep(interval);
    interval = Math.min(interval * 2, 250);
  }
}

/** Collects the status of a killed command so that the agent forgets it (and we keep its output). */
async function finalStatus(call: AgentCall, pid: number): Promise<ExecStatus | undefined> {
  for (let i = 0; i < 20; i++) {
    const st = await call<ExecStatus>('guest-exec-status', { pid }).catch(() => undefined);
    if (st?.exited) return st;
    await sleep(100);
  }
  return undefined;
}

/** Reads a guest file in chunks of `chunkBytes` (the transport limits how much one reply may carry). */
export async function agentReadFile(call: AgentCall, path: string, chunkBytes: number): Promise<Buffer> {
  const handle = await call<number>('guest-file-open', { path, mode: 'r' });
  try {
    const parts: Buffer[] = [];
    for (;;) {
      const r = await call<{ count: number; 'buf-b64': string; eof: boolean }>(
        'guest-file-read',
        { handle, count: chunkBytes },
        30_000,
      );
      parts.push(Buffer.from(r['buf-b64'], 'base64'));
      if (r.eof || r.count === 0) break;
    }
    return Buffer.concat(parts);
  } finally {
    await call('guest-file-close', { handle }).catch(() => undefined);
  }
}

export async function agentWriteFile(
  call: AgentCall,
  path: string,
  data: string | Buffer,
  chunkBytes: number,
): Promise<void> {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  const handle = await call<number>('guest-file-open', { path, mode: 'w' });
  try {
    for (let off = 0; off < bytes.length; off += chunkBytes) {
      const chunk = bytes.subarray(off, off + chunkBytes);
      await call('guest-file-write', { handle, 'buf-b64': chunk.toString('base64') }, 30_000);
    }
  } finally {
    await call('guest-file-close', { handle }).catch(() => undefined);
  }
}
