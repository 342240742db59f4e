import { HostUnreachableError } from '../util/errors.js';
import { CommandError, type RunResult, run } from '../util/proc.js';

/**
 * A thin wrapper over `virsh -c URI …`: argv only, never a shell. virsh works on every URI libvirt
 * knows (local, qemu+ssh://, qemu+tls://), which is what lets kvmio drive remote hosts with no agent of
 * its own.
 */

export class VirshError extends Error {
  constructor(
    readonly args: readonly string[],
    readonly virshMessage: string,
  ) {
    super(`virsh ${args.slice(0, 2).join(' ')}: ${virshMessage}`);
    this.name = 'VirshError';
  }
}

/** virsh's own words ("error: …" lines), without the "error: " prefixes and the generic first line. */
function virshMessage(result: RunResult): string {
  const text = (result.stderr || result.stdout).trim();
  const lines = text
    .split('\n')
    .map((l) => l.replace(/^error:\s*/, '').trim())
    .filter((l) => l && !/^Failed to (connect|get|start|create)[^:]*$/.test(l));
  return (lines.length ? lines : [text || `exit code ${result.code}`]).join('; ');
}

/** The libvirt daemon at a URI does not answer: the whole host is out, not one point. */
export class LibvirtUnreachableError extends HostUnreachableError {
  constructor(
    readonly uri: string,
    readonly reason: string,
  ) {
    super(`libvirt at ${uri} does not answer: ${reason}`);
    this.name = 'LibvirtUnreachableError';
  }
}

export class Virsh {
  constructor(
    readonly uri: string,
    readonly timeoutMs = 60_000,
  ) {}

  /** True when the URI points at this machine (no host part), so local files and /proc apply. */
  get isLocal(): boolean {
    return isLocalUri(this.uri);
  }

  /** Runs `virsh -c URI args…`, returns stdout; throws VirshError with virsh's message. */
  async run(args: readonly string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<string> {
    const argv = ['virsh', '-q', '-c', this.uri, ...args];
    let result: RunResult;
    try {
      result = await run(argv, {
        timeoutMs: opts.timeoutMs ?? this.timeoutMs,
        input: opts.input,
        allowFailure: true,
      });
    } catch (e) {
      if (e instanceof CommandError) throw new VirshError(args, virshMessage(e.result));
      throw e;
    }
    if (result.timedOut)
      throw new VirshError(args, `timed out after ${Math.round((opts.timeoutMs ?? this.timeoutMs) / 1000)}s`);
    if (result.code !== 0) throw new VirshError(args, virshMessage(result));
    return result.stdout;
  }

  /** Throws LibvirtUnreachableError unless the daemon at the URI answers within timeoutMs. */
  async ensureReachable(timeoutMs = 30_000): Promise<void> {
    try {
      await this.run(['uri'], { timeoutMs });
    } catch (e) {
      throw new LibvirtUnreachableError(
        this.uri,
        e instanceof VirshError ? e.virshMessage : (e as Error).message,
      );
    }
  }

  /** Like run, but resolves undefined instead of throwing (for probes and best-effort cleanup). */
  async tryRun(args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<string | undefined> {
    try {
      return await this.run(args, opts);
    } catch {
      return undefined;
    }
  }

  /** A QMP command through libvirt's monitor connection; returns the `return` member. */
  async monitor<T = unknown>(domain: string, execute: string, args?: Record<string, unknown>): Promise<T> {
    const cmd = JSON.stringify(args ? { execute, arguments: args } : { execute });
    const out = await this.run(['qemu-monitor-command', domain, cmd]);
    return parseQmpReply<T>(out, execute);
  }

  /** A guest-agent command through libvirt's agent connection; returns the `return` member. */
  async agent<T = unknown>(
    domain: string,
    execute: string,
    args?: Record<string, unknown>,
    timeoutSeconds = 10,
  ): Promise<T> {
    const cmd = JSON.stringify(args ? { execute, arguments: args } : { execute });
    const out = await this.run(['qemu-agent-command', domain, '--timeout', String(timeoutSeconds), cmd], {
      timeoutMs: (timeoutSeconds + 20) * 1000,
    });
    return parseQmpReply<T>(out, execute);
  }
}

function parseQmpReply<T>(out: string, execute: string): T {
  const reply = JSON.parse(out) as { return?: T; error?: { class: string; desc: string } };
  if (reply.error) throw new Error(`${execute}: ${reply.error.class}: ${reply.error.desc}`);
  return reply.return as T;
}

export function isLocalUri(uri: string): boolean {
  try {
    const u = new URL(uri);
    return u.hostname === '' || u.hostname === 'localhost';
  } catch {
    return false;
  }
}
