import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { run, waitFor } from '../util/proc.js';
import type { GuestImage } from './build.js';
import { builtGuest } from './build.js';
import { type CpioReadEntry, readCpio } from './cpio.js';
import { disksBySerial } from './disks.js';
import { dynamicInfo, LIBRARY_DIRS } from './elf.js';
import { GUEST_RELEASES } from './recipe.js';
import type { GuestVm } from './vm.js';

/**
 * kvmio's own fio, taken from the built guest: the fio binary, every shared library it needs (its
 * DT_NEEDED, recursively) and the guest's dynamic loader, in one flat directory. Run through that
 * loader with `--library-path` it needs nothing of the system it runs on: it is the client of the
 * guests' fio servers on the host (the same fio version as theirs), and the fio of a user's guest
 * that has none (copied in through the guest agent, removed afterwards).
 */

/** The loader's name in the bundle (amd64 glibc's). */
export const BUNDLE_LOADER = 'ld-linux-x86-64.so.2';
/** Where the bundle is copied in a user's guest. */
export const GUEST_FIO_DIR = '/tmp/kvmio-fio';
const PROGRAM = 'usr/bin/fio';

export interface FioBundle {
  /** Host directory holding fio, its libraries and the loader. */
  dir: string;
  /** What the bundled fio prints for --version, e.g. "fio-3.39". */
  version: string;
  /** File names in the bundle (fio, the loader, the libraries by soname). */
  files: string[];
  bytes: number;
}

/** The command that runs the bundle in `dir` (a host path, or GUEST_FIO_DIR inside a guest). */
export function bundleCommand(dir: string): string[] {
  return [posix.join(dir, BUNDLE_LOADER), '--library-path', dir, posix.join(dir, 'fio')];
}

/** A path inside an archive with every symlink on the way followed; undefined when it leads nowhere. */
export function resolveInArchive(entries: Map<string, CpioReadEntry>, path: string): string | undefined {
  let parts = posix.normalize(path).split('/').filter(Boolean);
  for (let hops = 0, i = 0; i < parts.length; ) {
    const prefix = parts.slice(0, i + 1).join('/');
    const e = entries.get(prefix);
    if (!e) return undefined;
    if (e.type === 'symlink') {
      if (++hops > 40) return undefined;
      const base = e.target.startsWith('/') ? [] : parts.slice(0, i);
      const target = posix.normalize(
        [...base, e.target.replace(/^\/+/, ''), ...parts.slice(i + 1)].join('/'),
      );
      // A link climbing above the archive's root stays at the root, as it would in a chroot.
      parts = target.split('/').filter((p) => p && p !== '..');
      i = 0;
      continue;
    }
    i++;
  }
  return parts.join('/');
}

/**
 * fio and its libraries as they are in the guest's archive: file name -> data. Libraries are looked
 * up as the guest's loader does (DT_RUNPATH/DT_RPATH with $ORIGIN, then the Debian library
 * directories) and named by the soname fio and its libraries ask for; the loader by its own name.
 */
export function bundleFromArchive(
  entries: Map<string, CpioReadEntry>,
  program = PROGRAM,
): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const file = (path: string): { path: string; data: Buffer } | undefined => {
    const real = resolveInArchive(entries, path);
    const e = real === undefined ? undefined : entries.get(real);
    return e?.type === 'file' ? { path: real as string, data: e.data } : undefined;
  };
  const fio = file(program);
  if (!fio) throw new Error(`the built guest has no ${program}`);
  out.set('fio', fio.data);
  const interpreter = dynamicInfo(fio.data).interpreter;
  if (!interpreter) throw new Error(`${program} in the built guest is not a dynamic ELF program`);
  const loader = file(interpreter);
  if (!loader) throw new Error(`the built guest lacks fio's loader ${interpreter}`);
  if (posix.basename(interpreter) !== BUNDLE_LOADER)
    throw new Error(`fio's loader is ${interpreter}, not amd64 glibc's ${BUNDLE_LOADER}`);
  out.set(BUNDLE_LOADER, loader.data);
  const pending = [fio];
  while (pending.length) {
    const { path, data } = pending.shift() as { path: string; data: Buffer };
    const info = dynamicInfo(data);
    const origin = posix.dirname(path);
    const dirs = [
      ...info.runpath.map((r) => r.replace(/\$(ORIGIN|\{ORIGIN\})/g, `/${origin}`).replace(/^\/+/, '')),
      ...LIBRARY_DIRS,
    ];
    for (const soname of info.needed) {
      if (out.has(soname)) continue;
      if (soname.includes('/'))
        throw new Error(`${path} needs ${soname} by path; kvmio bundles sonames only`);
      const lib = dirs.map((d) => file(posix.join(d, soname))).find((f) => f !== undefined);
      if (!lib) throw new Error(`${path} in the built guest needs ${soname}, which the guest lacks`);
      out.set(soname, lib.data);
      pending.push(lib);
    }
  }
  return out;
}

/**
 * The bundle of a built guest, made once next to its kernel and initramfs (and checked by running
 * `fio --version` through its loader on this host).
 */
export async function fioBundle(image: Pick<GuestImage, 'dir' | 'initrd'>): Promise<FioBundle> {
  const dir = join(image.dir, 'fio-bundle');
  const manifest = join(dir, 'bundle.json');
  if (existsSync(manifest)) return JSON.parse(readFileSync(manifest, 'utf8')) as FioBundle;
  const files = bundleFromArchive(readCpio(readFileSync(image.initrd)));
  const work = `${dir}.tmp-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    let bytes = 0;
    for (const [name, data] of files) {
      writeFileSync(join(work, name), data, { mode: name === BUNDLE_LOADER ? 0o755 : 0o644 });
      bytes += data.length;
    }
    const r = await run([...bundleCommand(work), '--version'], { timeoutMs: 30_000, allowFailure: true });
    const version = r.stdout.trim();
    if (r.code !== 0 || !/^fio-\d/.test(version))
      throw new Error(
        `the fio bundled from ${image.initrd} does not run on this host: ${(r.stderr || r.stdout).trim().split('\n')[0]}`,
      );
    // bundle.json is written last: a directory without it is incomplete, never used.
    const bundle: FioBundle = { dir, version, files: [...files.keys()].sort(), bytes };
    writeFileSync(join(work, 'bundle.json'), `${JSON.stringify(bundle, null, 2)}\n`);
    try {
      renameSync(work, dir);
    } catch (e) {
      // A concurrent kvmio made the same bundle first.
      if (!existsSync(manifest)) throw e;
    }
    return bundle;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The host command for an fio client that speaks to fio servers of `serverVersion` ("fio-3.39"):
 * the bundle of the built guest with that fio, else the host's own fio when it is that version.
 */
export async function hostFioClient(serverVersion: string): Promise<string[]> {
  for (const release of GUEST_RELEASES) {
    const image = builtGuest(release);
    if (!image) continue;
    const bundle = await fioBundle(image);
    if (bundle.version === serverVersion) return bundleCommand(bundle.dir);
  }
  const host = await run(['fio', '--version'], { allowFailure: true, timeoutMs: 30_000 }).catch(
    () => undefined,
  );
  if (host?.code === 0 && host.stdout.trim() === serverVersion) return ['fio'];
  throw new Error(
    `no fio client of version ${serverVersion} for the guests' fio servers: no built guest has it, and the host's fio is ${host?.code === 0 ? host.stdout.trim() : 'missing'} (fio's client/server protocol connects equal versions only)`,
  );
}

export interface InstalledFio {
  /** argv prefix that runs the copied fio in the guest. */
  command: string[];
  /** Removes the copy from the guest; never throws. */
  remove(): Promise<void>;
}

/** Serial of the read-only disk that carries the bundle into a guest. */
export const FIO_DISK_SERIAL = 'kvmio-fio';

/**
 * The bundle as one tar archive (made once, next to it): the content of the disk that carries it
 * into a guest, where any tar reads it straight from the device.
 */
export async function bundleArchive(bundle: FioBundle): Promise<string> {
  const file = join(bundle.dir, 'fio.tar');
  if (existsSync(file)) return file;
  const work = `${file}.tmp-${process.pid}`;
  try {
    await run(
      [
        'tar',
        '--format=ustar',
        '--owner=0',
        '--group=0',
        '--numeric-owner',
        '-cf',
        work,
        '-C',
        bundle.dir,
        ...bundle.files,
      ],
      { timeoutMs: 120_000 },
    );
    renameSync(work, file);
  } finally {
    rmSync(work, { force: true });
  }
  return file;
}

/**
 * Copies the bundle into a guest and checks that it runs there. The data go on a read-only disk
 * (`plug` attaches the archive with serial FIO_DISK_SERIAL and returns how to detach it) that the
 * guest's tar unpacks into GUEST_FIO_DIR, everything driven through the guest agent: the agent's
 * own file writes carry about 30 KiB/s under emulation, far too slow for the ~60 MiB. Nothing is
 * installed: the files live in GUEST_FIO_DIR until remove().
 */
export async function installFioBundle(
  vm: Pick<GuestVm, 'exec' | 'readFile'>,
  bundle: FioBundle,
  plug: (archive: string) => Promise<() => Promise<void>>,
): Promise<InstalledFio> {
  const step = async (argv: string[], timeoutMs = 60_000) => {
    const r = await vm.exec(argv, { timeoutMs }).catch((e: Error) => ({
      exitCode: 127,
      stdout: '',
      stderr: e.message,
      timedOut: false,
    }));
    if (r.exitCode !== 0 || r.timedOut)
      throw new Error(
        `copying kvmio's fio into the guest: ${argv.join(' ')} ${r.timedOut ? 'timed out' : `exited with ${r.exitCode}`}: ${(r.stderr || r.stdout).trim().split('\n')[0] ?? ''}`,
      );
    return r;
  };
  const remove = async () => {
    await vm.exec(['rm', '-rf', GUEST_FIO_DIR], { timeoutMs: 30_000 }).catch(() => undefined);
  };
  const archive = await bundleArchive(bundle);
  await step(['rm', '-rf', GUEST_FIO_DIR]);
  await step(['mkdir', '-m', '0700', GUEST_FIO_DIR]);
  try {
    const unplug = await plug(archive);
    try {
      const device = await waitFor(
        `the guest to see kvmio's fio disk (serial ${FIO_DISK_SERIAL})`,
        async () => (await disksBySerial(vm)).get(FIO_DISK_SERIAL),
        60_000,
        500,
      );
      await step(['tar', '-xf', device, '-C', GUEST_FIO_DIR], 600_000);
    } finally {
      await unplug();
    }
    await step(['chmod', '0700', posix.join(GUEST_FIO_DIR, BUNDLE_LOADER)]);
    const command = bundleCommand(GUEST_FIO_DIR);
    const r = await step([...command, '--version']);
    if (r.stdout.trim() !== bundle.version)
      throw new Error(`kvmio's fio in the guest says ${r.stdout.trim()}, not ${bundle.version}`);
    return { command, remove };
  } catch (e) {
    await remove();
    throw e;
  }
}
