import { connect, type Socket } from 'node:net';
import { type AgentCall, agentExec, agentReadFile, agentWriteFile } from '../guest/agent-protocol.js';
import { type BootLimit, bootLimitMessage } from '../guest/boot-limit.js';
import type { GuestExecOptions, GuestExecResult } from '../guest/vm.js';
import { sleep } from '../util/proc.js';

/**
 * Client of qemu-guest-agent over the host end of its virtio-serial chardev (a UNIX socket).
 * The agent has no request ids and serves one request at a time, so calls are queued; after a
 * timeout the stream may hold a stale reply, so the next call re-synchronises with
 * guest-sync-delimited (whose reply is preceded by a 0xFF byte that marks where fresh data starts).
 */

export class AgentError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`guest agent ${command} failed: ${errorClass}: ${desc}`);
    this.name = 'AgentError';
  }
}

const SENTINEL = 0xff;
const FILE_CHUNK = 1024 * 1024;

export class AgentClient {
  private socket: Socket | undefined;
  private buffer = Buffer.alloc(0);
  /** While true, bytes before the next 0xFF are stale and dropped. */
  private awaitingSentinel = false;
  private waiter: { resolve: (msg: Record<string, unknown>) => void; reject: (e: Error) => void } | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private inSync = false;
  private deadError: Error | undefined;
  private nextSyncId = Math.floor(Math.random() * 1e9);

  constructor(private readonly socketPath: string) {}

  /** Rejects the call in flight and every later one (QEMU died or the VM is stopping). */
  fail(err: Error): void {
    this.deadError = err;
    this.waiter?.reject(err);
    this.waiter = undefined;
    this.socket?.destroy();
    this.socket = undefined;
  }

  close(): void {
    this.fail(new Error('guest agent client closed'));
  }

  /**
   * Waits until the agent answers a guest-sync-delimited, retrying up to the boot limit (the guest
   * is booting; until its agent opens the port, requests go unanswered).
   */
  async waitReady(limit: BootLimit, checkAlive?: () => void): Promise<void> {
    const deadline = Date.now() + limit.ms;
    let last: unknown;
    while (Date.now() < deadline) {
      checkAlive?.();
      if (this.deadError) throw this.deadError;
      try {
        await this.serialized(() => this.sync(1000));
        return;
      } catch (err) {
        last = err;
        if (this.deadError) throw this.deadError;
        await sleep(200);
      }
    }
    throw new Error(
      `${bootLimitMessage('guest agent', limit)}${last instanceof Error ? `; last: ${last.message}` : ''}`,
    );
  }

  /** Runs one agent command (queued behind others) and returns its `return` value. */
  call<T = unknown>(command: string, args?: object, timeoutMs = 10_000): Promise<T> {
    return this.serialized(async () => {
      if (!this.inSync) await this.syncWithin(timeoutMs);
      return (await this.request(command, args, timeoutMs)) as T;
    });
  }

  async ping(): Promise<void> {
    await this.call('guest-ping');
  }

  exec(argv: string[], opts: GuestExecOptions): Promise<GuestExecResult> {
    return agentExec(this.boundCall, argv, opts);
  }

  readFile(path: string): Promise<Buffer> {
    return agentReadFile(this.boundCall, path, FILE_CHUNK);
  }

  writeFile(path: string, data: string | Buffer): Promise<void> {
    return agentWriteFile(this.boundCall, path, data, FILE_CHUNK);
  }

  private readonly boundCall: AgentCall = (command, args, timeoutMs) => this.call(command, args, timeoutMs);

  // ---- wire -----------------------------------------------------------------------------------

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async ensureSocket(): Promise<Socket> {
    if (this.deadError) throw this.deadError;
    if (this.socket) return this.socket;
    const s = await new Promise<Socket>((resolve, reject) => {
      const sock = connect(this.socketPath);
      sock.once('connect', () => {
        sock.removeListener('error', reject);
        resolve(sock);
      });
      sock.once('error', reject);
    });
    s.on('data', (d: Buffer) => this.onData(d));
    const lost = () => {
      if (this.socket === s) this.socket = undefined;
      this.inSync = false;
      this.waiter?.reject(new Error('guest agent connection closed'));
      this.waiter = undefined;
    };
    s.on('error', lost);
    s.on('close', lost);
    this.socket = s;
    this.buffer = Buffer.alloc(0);
    return s;
  }

  /**
   * Re-synchronises, retrying within the caller's time budget: a guest busy with a hot-plug under
   * emulation can miss one 5 s sync and still answer the next.
   */
  private async syncWithin(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.sync(Math.min(5000, Math.max(1000, deadline - Date.now())));
        return;
      } catch (err) {
        if (this.deadError || Date.now() >= deadline) throw err;
      }
    }
  }

  private async sync(timeoutMs: number): Promise<void> {
    this.inSync = false;
    const socket = await this.ensureSocket();
    const id = this.nextSyncId++;
    this.buffer = Buffer.alloc(0);
    this.awaitingSentinel = true;
    // A leading 0xFF makes the agent's parser drop any half-received request.
    socket.write(Buffer.from([SENTINEL]));
    socket.write(`${JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } })}\n`);
    // Replies to earlier, timed-out syncs carry other ids (each after its own 0xFF): skip them.
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const reply = await this.readReply(Math.max(1, deadline - Date.now()), 'guest-sync-delimited');
      if (reply.return === id) break;
      this.awaitingSentinel = true;
    }
    this.inSync = true;
  }

  private async request(command: string, args: object | undefined, timeoutMs: number): Promise<unknown> {
    const msg: Record<string, unknown> = { execute: command };
    if (args) msg.arguments = args;
    return this.send(msg, timeoutMs, command);
  }

  private async send(msg: object, timeoutMs: number, command: string): Promise<unknown> {
    const socket = await this.ensureSocket();
    socket.write(`${JSON.stringify(msg)}\n`);
    const reply = await this.readReply(timeoutMs, command);
    if ('error' in reply) {
      const e = reply.error as { class?: string; desc?: string };
      throw new AgentError(command, e.class ?? 'GenericError', e.desc ?? 'unknown error');
    }
    return reply.return;
  }

  private readReply(timeoutMs: number, command: string): Promise<Record<string, unknown>> {
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        this.inSync = false; // a late reply would be mistaken for the next one
        reject(new Error(`guest agent ${command}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.drain();
    });
  }

  private onData(d: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, d]);
    this.drain();
  }

  private drain(): void {
    if (this.awaitingSentinel) {
      const at = this.buffer.indexOf(SENTINEL);
      if (at < 0) {
        this.buffer = Buffer.alloc(0);
        return;
      }
      this.buffer = this.buffer.subarray(at + 1);
      this.awaitingSentinel = false;
    }
    for (;;) {
      const nl = this.buffer.indexOf(0x0a);
      if (nl < 0) return;
      const line = this.buffer.subarray(0, nl).toString('utf8').trim();
      this.buffer = this.buffer.subarray(nl + 1);
      if (!line) continue;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      const w = this.waiter;
      this.waiter = undefined;
      // No one waiting: a reply to a request that already timed out; dropped.
      w?.resolve(msg);
    }
  }
}
