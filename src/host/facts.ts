import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, hostname, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { qemuBinary, qemuLocation } from '../qemu/binary.js';
import { VERSION } from '../version.js';
import { type HostAccess, LOCAL_HOST } from './access.js';

/** What a run records about the host it measured on. */
export interface HostFacts {
  kvmioVersion: string;
  hostname: string;
  os?: string;
  kernel: string;
  cpu: { model: string; logicalCpus: number; physicalCores: number; sockets: number };
  memoryBytes: number;
  /** Which QEMU binary and why it was chosen (see qemu/binary.ts). */
  qemu: { binary: string; reason?: string; version?: string; error?: string };
  libvirt: { virshVersion?: string; error?: string };
  fio: { version?: string; error?: string };
  hugepages: HugepageFacts;
  ioUring: {
    /** kernel.io_uring_disabled (0 allowed, 1 root/group only, 2 disabled); absent on older kernels. */
    kernelSysctl?: number;
    /** A real io_uring job (fio) succeeded on this host. */
    kernelWorks?: boolean;
    kernelDetail: string;
    /** QEMU accepted `-blockdev ...,aio=io_uring`. */
    qemuAccepts?: boolean;
    qemuDetail: string;
  };
}

export interface HugepageFacts {
  /** Default huge page size in bytes (Hugepagesize). */
  sizeBytes: number;
  total: number;
  free: number;
  reserved: number;
  /** Mount points of hugetlbfs, with their page size option when given. */
  mounts: { path: string; pagesize?: string }[];
}

// ---- parsers of /proc and tool output (pure, unit-tested on this host's real files) ----------

export function parseCpuinfo(text: string): HostFacts['cpu'] {
  const blocks = text.split(/\n\s*\n/).filter((b) => /^processor\s*:/m.test(b));
  const field = (block: string, key: string) =>
    new RegExp(`^${key}\\s*:\\s*(.*)$`, 'm').exec(block)?.[1]?.trim();
  const cores = new Set<string>();
  const sockets = new Set<string>();
  for (const b of blocks) {
    const socket = field(b, 'physical id') ?? '0';
    sockets.add(socket);
    cores.add(`${socket}/${field(b, 'core id') ?? field(b, 'processor')}`);
  }
  const first = blocks[0] ?? '';
  return {
    model: field(first, 'model name') ?? field(first, 'cpu model') ?? 'unknown',
    logicalCpus: blocks.length,
    physicalCores: cores.size,
    sockets: sockets.size,
  };
}

/** /proc/meminfo as bytes (kB lines) and counts (HugePages_* lines). */
export function parseMeminfo(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([\w()]+):\s+(\d+)(\s+kB)?/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]) * (m[3] ? 1024 : 1));
  }
  return out;
}

export function parseHugetlbfsMounts(mounts: string): HugepageFacts['mounts'] {
  return mounts
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f[2] === 'hugetlbfs' && f[1])
    .map((f) => {
      const pagesize = /(?:^|,)pagesize=([^,]+)/.exec(f[3] ?? '')?.[1];
      return pagesize ? { path: unescapeMount(f[1]!), pagesize } : { path: unescapeMount(f[1]!) };
    });
}

function unescapeMount(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)" -> "7.2.22". */
export function parseQemuVersion(text: string): string | undefined {
  return /QEMU emulator version (\d+\.\d+(?:\.\d+)?)/.exec(text)?.[1];
}

/** "fio-3.33" -> "3.33". */
export function parseFioVersion(text: string): string | undefined {
  return /fio-(\d+(?:\.\d+)*)/.exec(text)?.[1];
}

// ---- probes (on this machine, or on another host through its access) ----------------------------

async function toolVersion(host: HostAccess, argv: string[], parse: (s: string) => string | undefined) {
  try {
    const r = await host.run(argv, { timeoutMs: 20_000, allowFailure: true });
    const version = parse(`${r.stdout}\n${r.stderr}`);
    return version
      ? { version }
      : { error: (r.stderr || r.stdout).trim().split('\n')[0] || `exit ${r.code}` };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

export async function qemuVersion(host: HostAccess = LOCAL_HOST): Promise<string | undefined> {
  return (await toolVersion(host, [qemuBinaryOn(host), '--version'], parseQemuVersion)).version;
}

/** This machine's QEMU is found by the one locator; other hosts run the one on their PATH. */
function qemuBinaryOn(host: HostAccess): string {
  return host.local ? qemuBinary() : 'qemu-system-x86_64';
}

/** A 64 KiB file for a probe, in `dir` on the host. */
async function probeFile(host: HostAccess, dir: string, name: string): Promise<string> {
  const file = join(dir, name);
  await host.run(['truncate', '-s', '64K', file], { timeoutMs: 20_000 });
  return file;
}

/** A 4 KiB io_uring read by fio: the kernel can refuse io_uring (sysctl, seccomp) even when it is built. */
async function probeKernelIoUring(
  host: HostAccess,
  dir: string,
): Promise<{ works?: boolean; detail: string }> {
  try {
    const file = await probeFile(host, dir, 'uring-probe');
    const r = await host.run(
      [
        'fio',
        '--name=uring-probe',
        `--filename=${file}`,
        '--ioengine=io_uring',
        '--rw=read',
        '--bs=4k',
        '--size=64k',
        '--output-format=terse',
      ],
      { timeoutMs: 20_000, allowFailure: true },
    );
    if (r.code === 0) return { works: true, detail: 'fio io_uring read succeeded' };
    return {
      works: false,
      detail: (r.stderr || r.stdout).trim().split('\n').slice(-1)[0] ?? `fio exit ${r.code}`,
    };
  } catch (e) {
    return { detail: `not probed: ${(e as Error).message}` };
  }
}

/** Starts QEMU paused with an io_uring blockdev and quits it through the monitor. */
async function probeQemuIoUring(
  host: HostAccess,
  dir: string,
): Promise<{ accepts?: boolean; detail: string }> {
  try {
    const file = await probeFile(host, dir, 'qemu-uring-probe');
    const r = await host.run(
      [
        qemuBinaryOn(host),
        '-machine',
        'none',
        '-S',
        '-nodefaults',
        '-display',
        'none',
        '-monitor',
        'stdio',
        '-blockdev',
        `driver=file,node-name=uring-probe,filename=${file},aio=io_uring`,
      ],
      { input: 'quit\n', timeoutMs: 20_000, allowFailure: true },
    );
    if (r.code === 0) return { accepts: true, detail: 'QEMU opened a blockdev with aio=io_uring' };
    return { accepts: false, detail: r.stderr.trim().split('\n').slice(-1)[0] ?? `exit ${r.code}` };
  } catch (e) {
    return { detail: `not probed: ${(e as Error).message}` };
  }
}

/** What a run records about a host: this machine by default, or another one through its access. */
export async function hostFacts(host: HostAccess = LOCAL_HOST): Promise<HostFacts> {
  const read = async (path: string) => host.readText(path);
  const [meminfoText, sysctl, osRelease, cpuinfo, mounts] = await Promise.all(
    [
      '/proc/meminfo',
      '/proc/sys/kernel/io_uring_disabled',
      '/etc/os-release',
      '/proc/cpuinfo',
      '/proc/mounts',
    ].map(read),
  );
  const meminfo = parseMeminfo(meminfoText ?? '');
  const osName = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(osRelease ?? '')?.[1];
  const scratch = host.local
    ? mkdtempSync(join(tmpdir(), 'kvmio-facts-'))
    : (await host.run(['mktemp', '-d', '/tmp/kvmio-facts-XXXXXX'], { timeoutMs: 20_000 })).stdout.trim();
  try {
    const [qemu, virsh, fio, kernelUring, qemuUring, names] = await Promise.all([
      toolVersion(host, [qemuBinaryOn(host), '--version'], parseQemuVersion),
      toolVersion(host, ['virsh', '--version'], (s) => /^(\d+\.\d+\.\d+)/m.exec(s.trim())?.[1]),
      toolVersion(host, ['fio', '--version'], parseFioVersion),
      probeKernelIoUring(host, scratch),
      probeQemuIoUring(host, scratch),
      host.local
        ? Promise.resolve({ hostname: hostname(), kernel: release() })
        : host.run(['uname', '-n', '-r'], { timeoutMs: 20_000 }).then((r) => {
            const [name = 'unknown', kernel = 'unknown'] = r.stdout.trim().split(/\s+/);
            return { hostname: name, kernel };
          }),
    ]);
    const cpu = parseCpuinfo(cpuinfo ?? '');
    return {
      kvmioVersion: VERSION,
      hostname: names.hostname,
      ...(osName ? { os: osName } : {}),
      kernel: names.kernel,
      cpu:
        cpu.logicalCpus > 0 || !host.local
          ? cpu
          : {
              model: cpus()[0]?.model ?? 'unknown',
              logicalCpus: cpus().length,
              physicalCores: cpus().length,
              sockets: 1,
            },
      memoryBytes: meminfo.get('MemTotal') ?? 0,
      qemu: host.local
        ? { binary: qemuLocation().binary, reason: qemuLocation().reason, ...qemu }
        : { binary: qemuBinaryOn(host), ...qemu },
      libvirt: virsh.version ? { virshVersion: virsh.version } : { error: virsh.error },
      fio,
      hugepages: {
        sizeBytes: meminfo.get('Hugepagesize') ?? 0,
        total: meminfo.get('HugePages_Total') ?? 0,
        free: meminfo.get('HugePages_Free') ?? 0,
        reserved: meminfo.get('HugePages_Rsvd') ?? 0,
        mounts: parseHugetlbfsMounts(mounts ?? ''),
      },
      ioUring: {
        ...(sysctl !== undefined ? { kernelSysctl: Number(sysctl.trim()) } : {}),
        ...(kernelUring.works !== undefined ? { kernelWorks: kernelUring.works } : {}),
        kernelDetail: kernelUring.detail,
        ...(qemuUring.accepts !== undefined ? { qemuAccepts: qemuUring.accepts } : {}),
        qemuDetail: qemuUring.detail,
      },
    };
  } finally {
    if (host.local) rmSync(scratch, { recursive: true, force: true });
    else if (scratch.startsWith('/tmp/kvmio-facts-'))
      await host
        .run(['rm', '-rf', '--', scratch], { allowFailure: true, timeoutMs: 20_000 })
        .catch(() => undefined);
  }
}
