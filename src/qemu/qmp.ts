import { connect, type Socket } from 'node:net';
import { sleep } from '../util/proc.js';

/**
 * A small QMP client: JSON lines over a UNIX socket. Commands carry ids so that replies are matched
 * even when events interleave; errors become QmpError with QMP's class and description.
 */

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export interface QmpGreeting {
  version: { qemu: { major: number; minor: number; micro: number }; package: string };
  capabilities: string[];
}

export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command} failed: ${errorClass}: ${desc}`);
    this.name = 'QmpError';
  }
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer?: NodeJS.Timeout;
}

type EventListener = (ev: QmpEvent) => void;

export interface QmpConnectOptions {
  /** Keep retrying the connection (the socket appears shortly after QEMU starts) for this long. */
  timeoutMs?: number;
  /** Called between retries; throw from it to abort (e.g. QEMU already exited). */
  checkAlive?: () => void;
}

export class QmpClient {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly listeners = new Set<EventListener>();
  private closedError: Error | undefined;
  greeting!: QmpGreeting;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => this.failAll(new Error(`QMP connection closed (${err.message})`)));
    socket.on('close', () => this.failAll(new Error('QMP connection closed')));
  }

  /** Connects, reads the greeting and negotiates capabilities (leaves negotiation mode). */
  static async connect(path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    for (;;) {
      opts.checkAlive?.();
      let client: QmpClient | undefined;
      try {
        client = new QmpClient(await openSocket(path));
        client.greeting = await client.readGreeting(Math.max(1000, deadline - Date.now()));
        await client.execute('qmp_capabilities');
        return client;
      } catch (err) {
        client?.close();
        const code = (err as NodeJS.ErrnoException).code;
        const retriable = code === 'ENOENT' || code === 'ECONNREFUSED';
        if (!retriable || Date.now() > deadline) throw err;
        await sleep(50);
      }
    }
  }

  private greetingWaiter: ((g: QmpGreeting) => void) | undefined;

  private readGreeting(timeoutMs: number): Promise<QmpGreeting> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no QMP greeting')), timeoutMs);
      this.greetingWaiter = (g) => {
        clearTimeout(timer);
        resolve(g);
      };
      this.pending.set('greeting', {
        command: 'greeting',
        resolve: () => undefined,
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  /** Runs a QMP command; rejects with QmpError on an error reply, or when the connection dies. */
  execute<T = unknown>(command: string, args?: object, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = `kvmio-${this.nextId++}`;
    const msg: Record<string, unknown> = { execute: command, id };
    if (args && Object.keys(args).length > 0) msg.arguments = args;
    return new Promise<T>((resolve, reject) => {
      const entry: Pending = { command, resolve: resolve as (v: unknown) => void, reject };
      if (opts.timeoutMs !== undefined) {
        entry.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new Error(`QMP ${command}: no reply within ${opts.timeoutMs} ms`));
        }, opts.timeoutMs);
      }
      this.pending.set(id, entry);
      this.socket.write(`${JSON.stringify(msg)}\n`);
    });
  }

  /** Subscribes to every event; returns an unsubscribe function. */
  onEvent(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Resolves with the first event named `name` matching `predicate`. Call it BEFORE the command that
   * triggers the event, then await it: events that arrived earlier are not replayed.
   */
  waitEvent(
    name: string,
    predicate: (data: Record<string, unknown>) => boolean,
    timeoutMs: number,
  ): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      if (this.closedError) {
        reject(this.closedError);
        return;
      }
      const done = () => {
        clearTimeout(timer);
        off();
        this.deathWatchers.delete(onDeath);
      };
      const onDeath = (err: Error) => {
        done();
        reject(err);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for QMP event ${name}`));
      }, timeoutMs);
      const off = this.onEvent((ev) => {
        if (ev.event === name && predicate(ev.data ?? {})) {
          done();
          resolve(ev);
        }
      });
      this.deathWatchers.add(onDeath);
    });
  }

  private readonly deathWatchers = new Set<(err: Error) => void>();

  /** Rejects every pending call and event wait with `err` (used when QEMU dies). */
  failAll(err: Error): void {
    if (!this.closedError) this.closedError = err;
    for (const [id, p] of this.pending) {
      if (p.timer) clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(err);
    }
    for (const w of [...this.deathWatchers]) w(err);
    this.socket.destroy();
  }

  get closed(): boolean {
    return this.closedError !== undefined;
  }

  close(): void {
    this.failAll(new Error('QMP client closed'));
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return; // QEMU only sends JSON; ignore anything else rather than dying
    }
    if ('QMP' in msg) {
      this.pending.delete('greeting');
      this.greetingWaiter?.(msg.QMP as QmpGreeting);
      return;
    }
    if (typeof msg.event === 'string') {
      for (const l of [...this.listeners]) l(msg as unknown as QmpEvent);
      return;
    }
    const id = typeof msg.id === 'string' ? msg.id : undefined;
    const entry = id ? this.pending.get(id) : undefined;
    if (!id || !entry) return;
    this.pending.delete(id);
    if (entry.timer) clearTimeout(entry.timer);
    if ('error' in msg) {
      const e = msg.error as { class?: string; desc?: string };
      entry.reject(new QmpError(entry.command, e.class ?? 'GenericError', e.desc ?? 'unknown error'));
    } else {
      entry.resolve(msg.return);
    }
  }
}

function openSocket(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    s.once('connect', () => {
      s.removeListener('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}
