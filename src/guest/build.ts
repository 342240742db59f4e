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
import { unpackDebs } from './deb.js';
import { debianMirrors, debianSources, downloadDebs, loadPackages } from './debian.js';
import { dynamicInfo, isElf, LIBRARY_DIRS, moduleDepends, moduleName } from './elf.js';
import {
  contentHash,
  DEFAULT_GUEST_RELEASE,
  GUEST_ASSETS,
  GUEST_MODULES,
  type GuestRecipe,
  type GuestRelease,
  guestRecipe,
  type ResolvedPackage,
  readAssets,
  recipeHash,
  SKIP_UNPACK,
} from './recipe.js';
import { indexPackages, resolveClosure } from './resolve.js';

export {
  DEFAULT_GUEST_RELEASE,
  GUEST_KERNEL_CMDLINE,
  GUEST_MIN_MEMORY_MIB,
  GUEST_READY_MARKER,
  type GuestRelease,
} from './recipe.js';

/** The embedded guest: a Debian cloud kernel and an initramfs with everything the workloads need. */
export interface GuestImage {
  dir: string;
  kernel: string;
  initrd: string;
  hash: string;
  kernelVersion: string;
  release: GuestRelease;
}

interface Manifest {
  release: GuestRelease;
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

function imageIn(dir: string, m: Pick<Manifest, 'hash' | 'kernelVersion' | 'release'>): GuestImage {
  return {
    dir,
    kernel: join(dir, 'vmlinuz'),
    initrd: join(dir, 'initrd.img'),
    hash: m.hash,
    kernelVersion: m.kernelVersion,
    release: m.release,
  };
}

/** The file naming the current guest of a release. */
function currentFile(root: string, release: GuestRelease): string {
  return join(root, `current-${release}.json`);
}

/** The guest built for the current recipe of `release`, if any (no network access, no rebuild). */
export function builtGuest(release: GuestRelease = DEFAULT_GUEST_RELEASE): GuestImage | undefined {
  const current = currentFile(guestRoot(), release);
  if (!existsSync(current)) return undefined;
  try {
    const { dir } = JSON.parse(readFileSync(current, 'utf8')) as { dir: string };
    const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
    if (m.recipe !== recipeHash(readAssets(), release)) return undefined;
    const image = imageIn(dir, m);
    return existsSync(image.kernel) && existsSync(image.initrd) ? image : undefined;
  } catch {
    return undefined;
  }
}

/** Returns the built guest, building it first if needed (or always, with force). */
export async function ensureGuest(
  opts: { force?: boolean; log?: (line: string) => void; release?: GuestRelease } = {},
): Promise<GuestImage> {
  const release = opts.release ?? DEFAULT_GUEST_RELEASE;
  if (!opts.force) {
    const ready = builtGuest(release);
    if (ready) return ready;
  }
  const unlock = await lockBuild(opts.log);
  try {
    // Another process may have built it while we waited for the lock.
    const ready = opts.force ? undefined : builtGuest(release);
    return ready ?? (await buildGuest(guestRecipe(release), opts.log ?? (() => {})));
  } finally {
    unlock();
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

async function buildGuest(spec: GuestRecipe, log: (line: string) => void): Promise<GuestImage> {
  const started = Date.now();
  const root = guestRoot();
  const assets = readAssets();
  const { release } = spec;
  const recipe = recipeHash(assets, release);
  const mirrors = debianMirrors(release);
  log(`guest: Debian ${release} from ${mirrors.mirror} and ${mirrors.security} (${mirrors.from})`);
  const index = await loadPackages(debianSources(release, mirrors), join(root, `index-${release}`), log);
  const resolved = resolveClosure(indexPackages(index), spec.packages);
  const packages: ResolvedPackage[] = resolved.map(({ name, version, arch }) => ({ name, version, arch }));
  const hash = contentHash(recipe, packages);
  log(`guest: ${packages.length} packages`);
  // apt's archive directory of earlier kvmio versions: the .debs there are reused once their hash checks.
  const debs = await downloadDebs(resolved, join(root, `apt-${release}`, 'archives'), log);

  const work = join(root, `work-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  const tree = join(work, 'tree');
  mkdirSync(tree, { recursive: true });
  // ~600 MB of unpacked packages: removed on Ctrl-C too.
  const unregister = onCleanup(() => rmSync(work, { recursive: true, force: true }));
  try {
    log('guest: unpacking packages');
    await unpackDebs(
      debs.filter((_, i) => !SKIP_UNPACK.some((re) => re.test(packages[i]!.name))),
      tree,
    );
    const modulesDir = ['usr/lib/modules', 'lib/modules'].find((d) => existsSync(join(tree, d)));
    const kernelVersion = modulesDir ? readdirSync(join(tree, modulesDir))[0] : undefined;
    if (!modulesDir || !kernelVersion) throw new Error('the kernel package has no /lib/modules');
    log(`guest: assembling the ${release} initramfs (kernel ${kernelVersion})`);
    const image = new ImageTree(tree, spec);
    await image.collect(assets, `${modulesDir}/${kernelVersion}`);
    const out = join(work, 'out');
    mkdirSync(out);
    const initrdBytes = await writeCpio(join(out, 'initrd.img'), image.entries());
    await copyFile(join(tree, 'boot', `vmlinuz-${kernelVersion}`), join(out, 'vmlinuz'));
    const manifest: Manifest = {
      release,
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
    const current = currentFile(root, release);
    writeFileSync(`${current}.tmp`, `${JSON.stringify({ dir }, null, 2)}\n`);
    renameSync(`${current}.tmp`, current);
    pruneOldGuests(root);
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
function pruneOldGuests(root: string): void {
  const keep = new Set<string>();
  for (const name of readdirSync(root)) {
    if (!/^current-[a-z]+\.json$/.test(name)) continue;
    try {
      keep.add((JSON.parse(readFileSync(join(root, name), 'utf8')) as { dir: string }).dir);
    } catch {
      // half-written by a concurrent build: that build keeps its own guest
    }
  }
  for (const name of readdirSync(root)) {
    const dir = join(root, name);
    const builder = /^work-(\d+)$/.exec(name);
    if (builder && !processAlive(Number(builder[1]))) rmSync(dir, { recursive: true, force: true });
    if (keep.has(dir) || !/^[0-9a-f]{16}$/.test(name)) continue;
    if (Date.now() - statSync(dir).mtimeMs > 3600_000) rmSync(dir, { recursive: true, force: true });
  }
}

/** Debian bookworm packages still ship /bin, /lib...: the guest uses the merged-/usr layout. */
function guestPath(debPath: string): string {
  return debPath.replace(/^(bin|sbin|lib|lib64)\//, 'usr/$1/');
}

/** The guest's files, gathered from the unpacked packages, and written out as cpio entries. */
class ImageTree {
  private readonly files = new Map<string, CpioEntry>();
  private readonly libsDone = new Set<string>();

  constructor(
    private readonly tree: string,
    private readonly spec: GuestRecipe,
  ) {}

  /** `modules` is the kernel's module directory in the unpacked packages (usr/lib/modules/<version>). */
  async collect(assets: Map<string, Buffer>, modules: string): Promise<void> {
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

    for (const p of this.spec.programs) this.add(this.located(p));
    for (const t of this.spec.trees) this.add(this.located(t));
    this.appendPostgresDefaults();
    await this.modules(modules);
    await this.busyboxApplets();

    for (const [name, data] of assets) {
      const spec = GUEST_ASSETS[name];
      if (spec) this.files.set(spec.path, { path: spec.path, type: 'file', mode: spec.mode, data });
    }
    this.appendPostgresPath();
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
    const pg = this.spec.postgresMajor;
    const path = `usr/share/postgresql/${pg}/postgresql.conf.sample`;
    const sample = this.files.get(path);
    if (sample?.type !== 'file') throw new Error(`guest: ${path} missing from postgresql-${pg}`);
    const extra = '\n# kvmio guest: the JIT provider (libLLVM) is not in the guest.\njit = off\n';
    this.files.set(path, { ...sample, data: Buffer.concat([sample.data, Buffer.from(extra)]) });
  }

  /** PostgreSQL's programs on every guest command's PATH (the env asset is the same for every release). */
  private appendPostgresPath(): void {
    const path = GUEST_ASSETS.env!.path;
    const env = this.files.get(path);
    if (env?.type !== 'file') throw new Error(`guest: asset ${path} missing`);
    const extra = `export PATH=$PATH:/usr/lib/postgresql/${this.spec.postgresMajor}/bin\n`;
    this.files.set(path, { ...env, data: Buffer.concat([env.data, Buffer.from(extra)]) });
  }

  /** A path as the unpacked packages have it, merged-/usr or not (bookworm's ship some under /bin, /lib; trixie's under /usr). */
  private located(path: string): string {
    if (lstatSync(join(this.tree, path), { throwIfNoEntry: false })) return path;
    const other = /^usr\/(bin|sbin|lib|lib64)\//.test(path)
      ? path.slice(4)
      : /^(bin|sbin|lib|lib64)\//.test(path)
        ? `usr/${path}`
        : path;
    return lstatSync(join(this.tree, other), { throwIfNoEntry: false }) ? other : path;
  }

  private dir(path: string, mode: number, uid = 0, gid = 0): void {
    this.files.set(path, { path, type: 'dir', mode, uid, gid });
  }

  /** Adds a path of the unpacked packages: files, directories (recursively) and symlinks (and their targets). */
  private add(debPath: string): void {
    if (this.spec.excludes.some((re) => re.test(debPath))) return;
    debPath = this.located(debPath);
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

  /**
   * The wanted modules and their dependencies, plus the load order the init script follows.
   * Compressed modules (trixie's are .ko.xz) are unpacked in the tree first: the guest's busybox
   * insmod loads plain .ko files, and their dependencies are read from the ELF.
   */
  private async modules(base: string): Promise<void> {
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
    const visit = async (name: string) => {
      if (order.includes(name) || visiting.has(name)) return;
      const rel = byName.get(name);
      if (!rel) return; // built into the kernel
      visiting.add(name);
      const plain = await decompressModule(join(this.tree, base), rel);
      byName.set(name, plain);
      for (const dep of moduleDepends(readFileSync(join(this.tree, base, plain)))) await visit(dep);
      order.push(name);
    };
    const builtinFile = join(this.tree, base, 'modules.builtin');
    const builtin = new Set(
      existsSync(builtinFile)
        ? readFileSync(builtinFile, 'utf8').split('\n').filter(Boolean).map(moduleName)
        : [],
    );
    for (const m of GUEST_MODULES) {
      if (builtin.has(m)) continue;
      if (!byName.has(m)) throw new Error(`guest: kernel module ${m} not found in ${base}`);
      await visit(m);
    }
    const paths = order.map((n) => byName.get(n)!);
    for (const rel of paths) this.add(`${base}/${rel}`);
    const list = Buffer.from(`${paths.join('\n')}\n`);
    this.files.set('etc/kvmio/modules', { path: 'etc/kvmio/modules', type: 'file', mode: 0o644, data: list });
  }

  /** A symlink per busybox applet, where no real program of that name is in the guest. */
  private async busyboxApplets(): Promise<void> {
    // busybox-static runs anywhere, so asking it for its applet list is safe.
    const r = await run([join(this.tree, this.located('usr/bin/busybox')), '--list-full'], {
      timeoutMs: 10_000,
    });
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

/** Unpacks a compressed module in place (xz, zstd or gzip, as Debian's kernels ship them); returns its plain name. */
async function decompressModule(dir: string, rel: string): Promise<string> {
  const m = /^(.*\.ko)\.(xz|zst|gz)$/.exec(rel);
  if (!m) return rel;
  const tool = { xz: ['xz', '-d', '-f'], zst: ['zstd', '-q', '-d', '-f', '--rm'], gz: ['gzip', '-d', '-f'] }[
    m[2]!
  ]!;
  await run([...tool, join(dir, rel)], { timeoutMs: 60_000 });
  return m[1]!;
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
