import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { copyFile, readFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { cacheDir } from '../util/paths.js';
import { onCleanup, processAlive, run, sleep } from '../util/proc.js';
import { type CpioEntry, writeCpio } from './cpio.js';
import { aptWorkspace, downloadAll, resolveClosure, updateIndex } from './debian.js';
import { dynamicInfo, isElf, moduleDepends, moduleName } from './elf.js';
import {
  contentHash,
  GUEST_ASSETS,
  GUEST_EXCLUDES,
  GUEST_MODULES,
  GUEST_PACKAGES,
  GUEST_PROGRAMS,
  GUEST_TREES,
  type ResolvedPackage,
  readAssets,
  recipeHash,
  SKIP_UNPACK,
} from './recipe.js';

export { GUEST_KERNEL_CMDLINE, GUEST_MIN_MEMORY_MIB, GUEST_READY_MARKER } from './recipe.js';

/** The embedded guest: a Debian cloud kernel and an initramfs with everything the workloads need. */
export interface GuestImage {
  dir: string;
  kernel: string;
  initrd: string;
  hash: string;
  kernelVersion: string;
}

interface Manifest {
  hash: string;
  recipe: string;
  kernelVersion: string;
  builtAt: string;
  buildSeconds: number;
  initrdBytes: number;
  packages: ResolvedPackage[];
}

function guestRoot(): string {
  const dir = join(cacheDir(), 'guest');
  mkdirSync(dir, { recursive: true });
  return dir;
}

function imageIn(dir: string, m: Pick<Manifest, 'hash' | 'kernelVersion'>): GuestImage {
  return {
    dir,
    kernel: join(dir, 'vmlinuz'),
    initrd: join(dir, 'initrd.img'),
    hash: m.hash,
    kernelVersion: m.kernelVersion,
  };
}

/** The guest built for the current recipe, if any (no network access, no rebuild). */
export function builtGuest(): GuestImage | undefined {
  const current = join(guestRoot(), 'current.json');
  if (!existsSync(current)) return undefined;
  try {
    const { dir } = JSON.parse(readFileSync(current, 'utf8')) as { dir: string };
    const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
    if (m.recipe !== recipeHash(readAssets())) return undefined;
    const image = imageIn(dir, m);
    return existsSync(image.kernel) && existsSync(image.initrd) ? image : undefined;
  } catch {
    return undefined;
  }
}

/** Returns the built guest, building it first if needed (or always, with force). */
export async function ensureGuest(
  opts: { force?: boolean; log?: (line: string) => void } = {},
): Promise<GuestImage> {
  if (!opts.force) {
    const ready = builtGuest();
    if (ready) return ready;
  }
  const release = await lockBuild(opts.log);
  try {
    // Another process may have built it while we waited for the lock.
    const ready = opts.force ? undefined : builtGuest();
    return ready ?? (await buildGuest(opts.log ?? (() => {})));
  } finally {
    release();
  }
}

async function lockBuild(log?: (line: string) => void): Promise<() => void> {
  const lock = join(guestRoot(), 'build.lock');
  for (let waited = 0; ; waited++) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      return () => rmSync(lock, { recursive: true, force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let owner = 0;
    try {
      owner = Number(readFileSync(join(lock, 'pid'), 'utf8'));
    } catch {
      // the owner is between mkdir and writing its pid
    }
    const abandoned =
      !owner && Date.now() - (statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? 0) > 10_000;
    if ((owner && !processAlive(owner)) || abandoned) {
      rmSync(lock, { recursive: true, force: true });
      continue;
    }
    if (waited === 0) log?.(`waiting for another guest build (pid ${owner || '?'})`);
    if (waited > 1800) throw new Error(`guest build lock ${lock} held for 30 minutes`);
    await sleep(1000);
  }
}

async function buildGuest(log: (line: string) => void): Promise<GuestImage> {
  const started = Date.now();
  const root = guestRoot();
  const assets = readAssets();
  const recipe = recipeHash(assets);
  const ws = aptWorkspace(join(root, 'apt'));
  log('guest: refreshing the Debian package index');
  await updateIndex(ws);
  const packages = await resolveClosure(ws, GUEST_PACKAGES);
  const hash = contentHash(recipe, packages);
  log(`guest: ${packages.length} packages, downloading what is not cached yet`);
  const debs = await downloadAll(ws, packages);

  const work = join(root, `work-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  const tree = join(work, 'tree');
  mkdirSync(tree, { recursive: true });
  // ~600 MB of unpacked packages: removed on Ctrl-C too.
  const unregister = onCleanup(() => rmSync(work, { recursive: true, force: true }));
  try {
    log('guest: unpacking packages');
    await unpackAll(
      debs.filter((_, i) => !SKIP_UNPACK.some((re) => re.test(packages[i]!.name))),
      tree,
    );
    const kernelVersion = readdirSync(join(tree, 'lib/modules'))[0];
    if (!kernelVersion) throw new Error('the kernel package has no /lib/modules');
    log(`guest: assembling initramfs (kernel ${kernelVersion})`);
    const image = new ImageTree(tree);
    await image.collect(assets, kernelVersion);
    const out = join(work, 'out');
    mkdirSync(out);
    const initrdBytes = await writeCpio(join(out, 'initrd.img'), image.entries());
    await copyFile(join(tree, 'boot', `vmlinuz-${kernelVersion}`), join(out, 'vmlinuz'));
    const manifest: Manifest = {
      hash,
      recipe,
      kernelVersion,
      builtAt: new Date().toISOString(),
      buildSeconds: Math.round((Date.now() - started) / 100) / 10,
      initrdBytes,
      packages,
    };
    writeFileSync(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    const dir = join(root, hash.slice(0, 16));
    rmSync(dir, { recursive: true, force: true });
    renameSync(out, dir);
    // Atomic, so that a concurrent builtGuest() never reads half a file.
    writeFileSync(join(root, 'current.json.tmp'), `${JSON.stringify({ dir }, null, 2)}\n`);
    renameSync(join(root, 'current.json.tmp'), join(root, 'current.json'));
    pruneOldGuests(root, dir);
    log(`guest: built in ${manifest.buildSeconds}s, initramfs ${(initrdBytes / 2 ** 20).toFixed(1)} MiB`);
    return imageIn(dir, manifest);
  } finally {
    rmSync(work, { recursive: true, force: true });
    unregister();
  }
}

/**
 * Removes guests of earlier recipes, once they are an hour old: a VM started just before the rebuild
 * may still be about to read its kernel and initramfs.
 */
function pruneOldGuests(root: string, keep: string): void {
  for (const name of readdirSync(root)) {
    const dir = join(root, name);
    const builder = /^work-(\d+)$/.exec(name);
    if (builder && !processAlive(Number(builder[1]))) rmSync(dir, { recursive: true, force: true });
    if (dir === keep || !/^[0-9a-f]{16}$/.test(name)) continue;
    if (Date.now() - statSync(dir).mtimeMs > 3600_000) rmSync(dir, { recursive: true, force: true });
  }
}

async function unpackAll(debs: string[], tree: string): Promise<void> {
  const queue = [...debs];
  const worker = async () => {
    for (let deb = queue.shift(); deb; deb = queue.shift()) {
      await run(['dpkg-deb', '-x', deb, tree], { timeoutMs: 300_000 });
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

/** Debian bookworm packages still ship /bin, /lib...: the guest uses the merged-/usr layout. */
function guestPath(debPath: string): string {
  return debPath.replace(/^(bin|sbin|lib|lib64)\//, 'usr/$1/');
}

const LIBRARY_DIRS = ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu', 'lib', 'usr/lib'];

/** The guest's files, gathered from the unpacked packages, and written out as cpio entries. */
class ImageTree {
  private readonly files = new Map<string, CpioEntry>();
  private readonly libsDone = new Set<string>();

  constructor(private readonly tree: string) {}

  async collect(assets: Map<string, Buffer>, kernelVersion: string): Promise<void> {
    for (const dir of ['proc', 'sys', 'dev', 'run', 'root', 'etc/kvmio', 'var/tmp', 'mnt'])
      this.dir(dir, 0o755);
    this.dir('tmp', 0o1777);
    this.dir('var/lib/postgresql', 0o755, 102, 102);
    for (const top of ['bin', 'sbin', 'lib', 'lib64'])
      this.files.set(top, { path: top, type: 'symlink', target: `usr/${top}` });
    this.files.set('var/run', { path: 'var/run', type: 'symlink', target: '/run' });
    this.files.set('etc/mtab', { path: 'etc/mtab', type: 'symlink', target: '/proc/mounts' });
    // The kernel opens /dev/console for PID 1 before devtmpfs is mounted.
    this.files.set('dev/console', { path: 'dev/console', type: 'char', mode: 0o600, major: 5, minor: 1 });
    this.files.set('dev/null', { path: 'dev/null', type: 'char', mode: 0o666, major: 1, minor: 3 });

    for (const p of GUEST_PROGRAMS) this.add(p);
    for (const t of GUEST_TREES) this.add(t);
    this.appendPostgresDefaults();
    this.modules(kernelVersion);
    await this.busyboxApplets();

    for (const [name, data] of assets) {
      const spec = GUEST_ASSETS[name];
      if (spec) this.files.set(spec.path, { path: spec.path, type: 'file', mode: spec.mode, data });
    }
    const text = (path: string, content: string) =>
      this.files.set(path, { path, type: 'file', mode: 0o644, data: Buffer.from(content) });
    text('etc/hostname', 'kvmio-guest\n');
    text('etc/hosts', '127.0.0.1 localhost kvmio-guest\n::1 localhost\n');
    text('etc/nsswitch.conf', 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n');
    text('etc/resolv.conf', '');
    text('etc/shells', '/bin/sh\n');
  }

  /**
   * initdb copies postgresql.conf.sample into every new cluster: JIT off there (its library is left
   * out of the guest), so that a cluster made without options runs as the study expects.
   */
  private appendPostgresDefaults(): void {
    const path = 'usr/share/postgresql/15/postgresql.conf.sample';
    const sample = this.files.get(path);
    if (sample?.type !== 'file') throw new Error(`guest: ${path} missing from postgresql-15`);
    const extra = '\n# kvmio guest: the JIT provider (libLLVM) is not in the guest.\njit = off\n';
    this.files.set(path, { ...sample, data: Buffer.concat([sample.data, Buffer.from(extra)]) });
  }

  private dir(path: string, mode: number, uid = 0, gid = 0): void {
    this.files.set(path, { path, type: 'dir', mode, uid, gid });
  }

  /** Adds a path of the unpacked packages: files, directories (recursively) and symlinks (and their targets). */
  private add(debPath: string): void {
    if (GUEST_EXCLUDES.some((re) => re.test(debPath))) return;
    const target = guestPath(debPath);
    if (this.files.has(target)) return;
    const abs = join(this.tree, debPath);
    const st = lstatSync(abs, { throwIfNoEntry: false });
    if (!st) throw new Error(`guest: ${debPath} is not in the unpacked packages`);
    if (st.isSymbolicLink()) {
      const link = readlinkSync(abs);
      this.files.set(target, { path: target, type: 'symlink', target: link });
      const resolved = link.startsWith('/')
        ? link.slice(1)
        : posix.normalize(posix.join(posix.dirname(debPath), link));
      this.add(resolved);
    } else if (st.isDirectory()) {
      this.dir(target, st.mode & 0o7777);
      for (const child of readdirSync(abs).sort()) this.add(`${debPath}/${child}`);
    } else if (st.isFile()) {
      const data = readFileSync(abs);
      this.files.set(target, { path: target, type: 'file', mode: st.mode & 0o7777, data });
      if (isElf(data)) this.libraries(debPath, data);
    }
  }

  private libraries(debPath: string, data: Buffer): void {
    const info = dynamicInfo(data);
    if (info.interpreter) this.add(info.interpreter.replace(/^\//, ''));
    const origin = posix.dirname(debPath);
    const dirs = [
      ...info.runpath.map((r) => r.replace(/\$(ORIGIN|\{ORIGIN\})/g, `/${origin}`).replace(/^\//, '')),
      ...LIBRARY_DIRS,
    ];
    for (const lib of info.needed) {
      if (this.libsDone.has(lib)) continue;
      const found = dirs
        .map((d) => posix.normalize(`${d}/${lib}`))
        .find((p) => existsSync(join(this.tree, p)));
      if (!found) throw new Error(`guest: ${debPath} needs ${lib}, which no downloaded package provides`);
      this.libsDone.add(lib);
      this.add(found);
    }
  }

  /** The wanted modules and their dependencies, plus the load order the init script follows. */
  private modules(kernelVersion: string): void {
    const base = `lib/modules/${kernelVersion}`;
    const byName = new Map<string, string>();
    const walk = (rel: string) => {
      for (const e of readdirSync(join(this.tree, base, rel), { withFileTypes: true })) {
        const child = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) walk(child);
        else if (/\.ko(\.(xz|zst|gz))?$/.test(e.name)) byName.set(moduleName(e.name), child);
      }
    };
    walk('kernel');
    const order: string[] = [];
    const visiting = new Set<string>();
    const visit = (name: string) => {
      if (order.includes(name) || visiting.has(name)) return;
      const rel = byName.get(name);
      if (!rel) return; // built into the kernel
      visiting.add(name);
      for (const dep of moduleDepends(readFileSync(join(this.tree, base, rel)))) visit(dep);
      order.push(name);
    };
    for (const m of GUEST_MODULES) {
      if (!byName.has(m)) throw new Error(`guest: kernel module ${m} not found in ${base}`);
      visit(m);
    }
    const paths = order.map((n) => byName.get(n)!);
    for (const rel of paths) this.add(`${base}/${rel}`);
    const list = Buffer.from(`${paths.join('\n')}\n`);
    this.files.set('etc/kvmio/modules', { path: 'etc/kvmio/modules', type: 'file', mode: 0o644, data: list });
  }

  /** A symlink per busybox applet, where no real program of that name is in the guest. */
  private async busyboxApplets(): Promise<void> {
    // busybox-static runs anywhere, so asking it for its applet list is safe.
    const r = await run([join(this.tree, 'bin/busybox'), '--list-full'], { timeoutMs: 10_000 });
    for (const applet of r.stdout.split('\n').map((l) => l.trim())) {
      if (!applet || applet === 'linuxrc') continue;
      const path = guestPath(applet);
      const name = posix.basename(path);
      const taken = ['usr/bin', 'usr/sbin'].some((d) => this.files.has(`${d}/${name}`));
      if (!taken) this.files.set(path, { path, type: 'symlink', target: '/bin/busybox' });
    }
  }

  /** Entries in an order the kernel can unpack: every parent directory before its children. */
  *entries(): Generator<CpioEntry> {
    const emitted = new Set<string>();
    const paths = [...this.files.keys()].sort();
    for (const path of paths) {
      const parts = path.split('/');
      for (let i = 1; i < parts.length; i++) {
        const parent = parts.slice(0, i).join('/');
        if (emitted.has(parent)) continue;
        emitted.add(parent);
        yield (this.files.get(parent) as CpioEntry | undefined) ?? { path: parent, type: 'dir', mode: 0o755 };
      }
      if (emitted.has(path)) continue;
      emitted.add(path);
      yield this.files.get(path)!;
    }
  }
}

/** Size of the guest's files on disk, for reports. */
export function guestSizeBytes(image: GuestImage): { kernel: number; initrd: number } {
  return { kernel: statSync(image.kernel).size, initrd: statSync(image.initrd).size };
}

// Re-exported for the CLI and tests that want to read what went into a guest.
export async function guestManifest(image: GuestImage): Promise<Manifest> {
  return JSON.parse(await readFile(join(image.dir, 'manifest.json'), 'utf8')) as Manifest;
}
export type { Manifest as GuestManifest };
