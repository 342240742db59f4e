import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { runtimeDir } from '../util/paths.js';
import { spawnOwned } from '../util/proc.js';
import { qemuBinary } from './binary.js';
import { QmpClient } from './qmp.js';
import { aioEvidence, aioFallbackWarnings } from './verify.js';

/**
 * What this QEMU binary can do, asked of QEMU itself through QMP (never guessed from its version
 * string): the aio modes of its file driver and whether virtio-blk can spread queues over iothreads.
 */
export interface QemuCapabilities {
  binary: string;
  version: { major: number; minor: number; micro: number; package: string };
  /** Values of the BlockdevAioOptions enum, e.g. threads, native, io_uring. */
  aioModes: string[];
  /** virtio-blk-pci has `iothread-vq-mapping` (QEMU 9.0+): one disk served by several iothreads. */
  iothreadVqMapping: boolean;
  /** virtio-scsi-pci has it too (QEMU 10.0+). */
  scsiIothreadVqMapping: boolean;
  /**
   * block-stream takes `backing-mask-protocol` (QEMU 8.0+): libvirt (10.x and later) then leaves the
   * raw format layer out of a raw disk, and so does kvmio's direct backend (omitsRawFormatLayer).
   */
  backingMaskProtocol: boolean;
}

const cache = new Map<string, QemuCapabilities>();

export interface SchemaEntry {
  name: string;
  'meta-type': string;
  'arg-type'?: string;
  values?: string[];
  members?: Array<{ name: string } | string>;
}

/** Reads the capabilities through an already connected QMP client. */
export async function capabilitiesFromQmp(qmp: QmpClient, binary = qemuBinary()): Promise<QemuCapabilities> {
  const version = await qmp.execute<{
    qemu: { major: number; minor: number; micro: number };
    package: string;
  }>('query-version');
  const schema = await qmp.execute<SchemaEntry[]>('query-qmp-schema');
  // Type names are masked in the introspected schema; the aio enum is the one listing threads+native.
  const aioEnum = schema.find((e) => {
    const values = entryNames(e);
    return e['meta-type'] === 'enum' && values.includes('threads') && values.includes('native');
  });
  const hasProp = async (typename: string, prop: string) => {
    const props = await qmp.execute<Array<{ name: string }>>('qom-list-properties', { typename });
    return props.some((p) => p.name === prop);
  };
  return {
    binary,
    version: { ...version.qemu, package: version.package },
    aioModes: aioEnum ? entryNames(aioEnum) : ['threads'],
    iothreadVqMapping: await hasProp('virtio-blk-pci', 'iothread-vq-mapping'),
    scsiIothreadVqMapping: await hasProp('virtio-scsi-pci', 'iothread-vq-mapping'),
    backingMaskProtocol: commandTakes(schema, 'block-stream', 'backing-mask-protocol'),
  };
}

/** Whether a QMP command of the introspected schema has an argument of that name. */
export function commandTakes(schema: SchemaEntry[], command: string, argument: string): boolean {
  const entry = schema.find((e) => e['meta-type'] === 'command' && e.name === command);
  const args = entry && schema.find((e) => e.name === entry['arg-type']);
  return args ? entryNames(args).includes(argument) : false;
}

/** An enum's values, or an object's member names (the argument names of a command's arg-type). */
function entryNames(e: SchemaEntry): string[] {
  if (e.values) return e.values;
  return (e.members ?? []).map((m) => (typeof m === 'string' ? m : m.name));
}

/**
 * Capabilities of a QEMU binary, cached per binary (path, size and mtime) for this process.
 * Starts it once with no machine (-machine none -S) and asks over QMP.
 */
export async function qemuCapabilities(binary = qemuBinary()): Promise<QemuCapabilities> {
  const key = binaryKey(binary);
  const hit = cache.get(key);
  if (hit) return hit;
  const caps = await withBareQemu(binary, 'probing capabilities', (qmp) => capabilitiesFromQmp(qmp, binary));
  cache.set(key, caps);
  return caps;
}

/** Whether an aio mode works in this QEMU on this host: true, or why not in QEMU's words. */
export type AioProbe = Record<string, true | string>;

const aioCache = new Map<string, AioProbe>();

/**
 * Tries every aio mode this QEMU offers for real, on this host: a file node with that mode on a
 * scratch file (O_DIRECT for native), one 4 KiB read through it (recent QEMU sets the context up on
 * the first request), then the context itself in /proc and no fallback warning on stderr, exactly as
 * live verification judges a VM. An error from blockdev-add, a fallback warning or a missing context
 * is the mode's reason.
 */
export async function probeAioModes(binary = qemuBinary()): Promise<AioProbe> {
  const key = binaryKey(binary);
  const hit = aioCache.get(key);
  if (hit) return hit;
  const caps = await qemuCapabilities(binary);
  const dir = mkdtempSync(join(scratchBase(), 'aio-probe-'));
  const file = join(dir, 'probe.raw');
  writeFileSync(file, Buffer.alloc(64 * 1024));
  try {
    const out = await withBareQemu(binary, 'probing aio modes', async (qmp, session) => {
      const result: AioProbe = {};
      for (const [i, mode] of caps.aioModes.entries()) {
        const node = `kvmio-aio-${i}`;
        const before = aioEvidence(session.pid);
        const warningsBefore = aioFallbackWarnings(session.stderr()).length;
        try {
          await qmp.execute('blockdev-add', {
            driver: 'file',
            'node-name': node,
            filename: file,
            aio: mode,
            cache: { direct: mode === 'native', 'no-flush': false },
          });
        } catch (e) {
          result[mode] = `QEMU refuses it: ${(e as Error).message}`;
          continue;
        }
        const read = await qmp
          .execute<string>('human-monitor-command', { 'command-line': `qemu-io ${node} "read 0 4096"` })
          .catch((e: Error) => `Error: ${e.message}`);
        await new Promise((r) => setTimeout(r, 50));
        const after = aioEvidence(session.pid);
        const warnings = aioFallbackWarnings(session.stderr()).slice(warningsBefore);
        if (/error|failed/i.test(String(read ?? ''))) result[mode] = `a read failed: ${String(read).trim()}`;
        else if (warnings.length > 0) result[mode] = warnings.join('; ');
        else if (mode === 'native' && after.nativeRings <= before.nativeRings)
          result[mode] = 'no Linux AIO context after a read';
        else if (mode === 'io_uring' && after.uringFds <= before.uringFds)
          result[mode] = 'no io_uring instance after a read';
        else result[mode] = true;
        await qmp.execute('blockdev-del', { 'node-name': node }).catch(() => undefined);
      }
      return result;
    });
    aioCache.set(key, out);
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A directory on a disk filesystem (O_DIRECT works there, unlike tmpfs). */
function scratchBase(): string {
  return process.env.KVMIO_SCRATCH_DIR || '/var/tmp';
}

interface BareSession {
  pid: number;
  stderr: () => string;
}

/** Runs `fn` against `binary` started with no machine and paused, then ends that QEMU. */
async function withBareQemu<T>(
  binary: string,
  what: string,
  fn: (qmp: QmpClient, session: BareSession) => Promise<T>,
): Promise<T> {
  const dir = mkdtempSync(join(runtimeDir(), 'caps-'));
  const sock = join(dir, 'qmp.sock');
  const child = spawnOwned(
    binary,
    ['-machine', 'none', '-S', '-nodefaults', '-display', 'none', '-qmp', `unix:${sock},server=on,wait=off`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  let exited: string | undefined;
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.on('exit', (code, signal) => {
    exited = `exited (${signal ?? code})`;
  });
  child.on('error', (e: NodeJS.ErrnoException) => {
    exited = e.code === 'ENOENT' ? 'is not installed' : e.message;
  });
  try {
    const qmp = await QmpClient.connect(sock, {
      timeoutMs: 10_000,
      checkAlive: () => {
        if (exited === 'is not installed') {
          throw new UserError(`${binary} is not installed (run "make demo", or set KVMIO_QEMU)`);
        }
        if (exited) throw new Error(`${binary} ${exited} while ${what}: ${stderr.trim()}`);
      },
    });
    try {
      return await fn(qmp, { pid: child.pid as number, stderr: () => stderr });
    } finally {
      await qmp.execute('quit').catch(() => undefined);
      qmp.close();
    }
  } finally {
    if (!exited) {
      const gone = new Promise((r) => child.once('exit', r));
      const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
      await gone;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

function binaryKey(binary: string): string {
  try {
    const resolved = binary.includes('/') ? binary : whichSync(binary);
    const st = statSync(resolved);
    return `${resolved}:${st.size}:${st.mtimeMs}`;
  } catch {
    return binary;
  }
}

function whichSync(cmd: string): string {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = join(dir || '.', cmd);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return cmd;
}
