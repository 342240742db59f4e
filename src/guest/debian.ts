import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { compressionOf, decompress } from '../util/decompress.js';
import { UserError } from '../util/errors.js';
import { HttpNotFound, httpGet } from '../util/http.js';
import { packageFile } from '../util/paths.js';
import { parseStanzas } from './deb822.js';
import type { ResolvedPackage } from './recipe.js';

/**
 * The Debian archive, read the way apt reads it but without apt: the release's signed index
 * (InRelease, or Release + Release.gpg) verified with Debian's archive keys shipped in src/guest/keys,
 * then the Packages index and every .deb checked against the SHA-256 sums that signature covers.
 * Works on any Linux host: nothing of the host's package system is used.
 */

export const DEFAULT_MIRROR = 'http://deb.debian.org/debian';
export const DEFAULT_SECURITY_MIRROR = 'http://deb.debian.org/debian-security';
const COMPONENT = 'main';
const ARCH = 'amd64';

export interface DebianMirrors {
  mirror: string;
  security: string;
  /** Where the mirrors came from, for the build log. */
  from: string;
}

/**
 * KVMIO_DEBIAN_MIRROR and KVMIO_DEBIAN_SECURITY_MIRROR when set, else the mirrors this host's apt
 * uses for the release or, for another release than the host's, for its own Debian release (local
 * mirrors keep working), else Debian's own.
 */
export function debianMirrors(release: string, sourcesText = readHostSources()): DebianMirrors {
  const entries = parseAptSources(sourcesText);
  const find = (suite: string) => entries.find((e) => e.suites.includes(suite))?.uri;
  const findAny = (test: (suite: string) => boolean) => entries.find((e) => e.suites.some(test))?.uri;
  const debianSuite = (s: string) => DEBIAN_RELEASES.includes(s);
  const env = process.env;
  const mirror = env.KVMIO_DEBIAN_MIRROR || find(release) || findAny(debianSuite);
  const security =
    env.KVMIO_DEBIAN_SECURITY_MIRROR ||
    find(`${release}-security`) ||
    findAny((s) => s.endsWith('-security') && debianSuite(s.replace(/-security$/, '')));
  const from = env.KVMIO_DEBIAN_MIRROR
    ? 'KVMIO_DEBIAN_MIRROR'
    : mirror
      ? "this host's apt sources"
      : "Debian's default mirror";
  return {
    mirror: (mirror ?? DEFAULT_MIRROR).replace(/\/$/, ''),
    security: (security ?? DEFAULT_SECURITY_MIRROR).replace(/\/$/, ''),
    from,
  };
}

/** Debian release names whose archive (one archive serves every release) also serves the guest's. */
const DEBIAN_RELEASES = ['bullseye', 'bookworm', 'trixie', 'forky', 'sid', 'stable', 'oldstable', 'testing'];

function readHostSources(): string {
  const files = ['/etc/apt/sources.list'];
  const dir = '/etc/apt/sources.list.d';
  try {
    for (const f of readdirSync(dir))
      if (f.endsWith('.list') || f.endsWith('.sources')) files.push(join(dir, f));
  } catch {
    // not a Debian-family host: Debian's default mirror is used
  }
  return files
    .filter((f) => existsSync(f))
    .map((f) => `${f.endsWith('.sources') ? '#deb822' : '#one-line'}\n${readFileSync(f, 'utf8')}`)
    .join('\n');
}

/** Reads both apt formats: one-line `deb [opts] URI SUITE COMP…` and deb822 stanzas (URIs:, Suites:). */
export function parseAptSources(text: string): { uri: string; suites: string[] }[] {
  const out: { uri: string; suites: string[] }[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
    if (m) out.push({ uri: m[1]!.replace(/\/$/, ''), suites: [m[2]!] });
  }
  for (const stanza of text.split(/\n\s*\n|#deb822|#one-line/)) {
    const field = (name: string) =>
      new RegExp(`^${name}:\\s*(.+)$`, 'mi').exec(stanza.replace(/^#.*$/gm, ''))?.[1]?.trim().split(/\s+/);
    const types = field('Types');
    const uris = field('URIs');
    const suites = field('Suites');
    if (!types?.includes('deb') || !uris || !suites) continue;
    for (const uri of uris) out.push({ uri: uri.replace(/\/$/, ''), suites });
  }
  return out;
}

export interface DebianSource {
  uri: string;
  suite: string;
}

/** The suites a guest of `release` is made from: the release, its updates and security suites, and any extra. */
export function debianSources(
  release: string,
  mirrors: DebianMirrors,
  extraSuites: readonly string[] = [],
): DebianSource[] {
  return [
    { uri: mirrors.mirror, suite: release },
    { uri: mirrors.mirror, suite: `${release}-updates` },
    { uri: mirrors.security, suite: `${release}-security` },
    ...extraSuites.map((suite) => ({ uri: mirrors.mirror, suite })),
  ];
}

// ---- the signed release index ------------------------------------------------------------------

export interface ReleaseIndex {
  suite: string;
  codename: string;
  /** Path under dists/SUITE/ -> SHA-256 and size, from the signed SHA256 field. */
  files: Map<string, { sha256: string; size: number }>;
  byHash: boolean;
}

export function parseRelease(text: string): ReleaseIndex {
  const stanza = parseStanzas(text)[0] ?? new Map<string, string>();
  const files = new Map<string, { sha256: string; size: number }>();
  for (const line of (stanza.get('SHA256') ?? '').split('\n')) {
    const m = /^([0-9a-f]{64})\s+(\d+)\s+(\S+)$/.exec(line.trim());
    if (m) files.set(m[3]!, { sha256: m[1]!, size: Number(m[2]) });
  }
  return {
    suite: stanza.get('Suite') ?? '',
    codename: stanza.get('Codename') ?? '',
    files,
    byHash: stanza.get('Acquire-By-Hash') === 'yes',
  };
}

/** The archive keys of the Debian releases kvmio builds from (public data from debian-archive-keyring). */
const KEY_FILES = [
  'debian-archive-bookworm-automatic.asc',
  'debian-archive-bookworm-security-automatic.asc',
  'debian-archive-bookworm-stable.asc',
  'debian-archive-trixie-automatic.asc',
  'debian-archive-trixie-security-automatic.asc',
  'debian-archive-trixie-stable.asc',
];

let keyring: Promise<openpgp.Key[]> | undefined;

export function archiveKeys(): Promise<openpgp.Key[]> {
  keyring ??= (async () => {
    const keys: openpgp.Key[] = [];
    for (const f of KEY_FILES)
      keys.push(
        ...(await openpgp.readKeys({ armoredKeys: readFileSync(packageFile('src/guest/keys', f), 'utf8') })),
      );
    return keys;
  })();
  return keyring;
}

/** Resolves when at least one signature is by one of `keys` and verifies; otherwise throws, saying why. */
async function checkSignatures(
  signatures: { keyID: openpgp.KeyID; verified: Promise<true> }[],
  what: string,
): Promise<void> {
  const problems: string[] = [];
  for (const s of signatures) {
    try {
      await s.verified;
      return;
    } catch (e) {
      problems.push(`${s.keyID.toHex()}: ${(e as Error).message}`);
    }
  }
  throw new UserError(
    `${what}: no valid signature by a Debian archive key (${problems.join('; ') || 'unsigned'})`,
  );
}

/** The signed text of an InRelease file, once a Debian archive key's signature over it verifies. */
export async function verifyInRelease(inRelease: string, what: string): Promise<string> {
  const message = await openpgp.readCleartextMessage({ cleartextMessage: inRelease }).catch(() => {
    throw new UserError(`${what} is not an OpenPGP signed message`);
  });
  const result = await openpgp.verify({ message, verificationKeys: await archiveKeys() });
  await checkSignatures(result.signatures, what);
  return result.data;
}

/** A Release file with a detached signature (Release.gpg), for mirrors without InRelease. */
export async function verifyRelease(
  release: Buffer,
  armoredSignature: string,
  what: string,
): Promise<string> {
  const signature = await openpgp.readSignature({ armoredSignature }).catch(() => {
    throw new UserError(`${what}.gpg is not an OpenPGP signature`);
  });
  const message = await openpgp.createMessage({ text: release.toString('utf8') });
  const result = await openpgp.verify({ message, signature, verificationKeys: await archiveKeys() });
  await checkSignatures(result.signatures, what);
  return release.toString('utf8');
}

/**
 * The release index of `source`, its signature verified. Only the signed text is parsed: for
 * InRelease, what openpgp returns as the signed data, not the file's bytes.
 */
export async function verifiedRelease(source: DebianSource): Promise<ReleaseIndex> {
  const base = `${source.uri}/dists/${source.suite}`;
  let text: string;
  try {
    text = await verifyInRelease((await httpGet(`${base}/InRelease`)).toString('utf8'), `${base}/InRelease`);
  } catch (e) {
    if (!(e instanceof HttpNotFound)) throw e;
    const release = await httpGet(`${base}/Release`);
    const signature = (await httpGet(`${base}/Release.gpg`)).toString('utf8');
    text = await verifyRelease(release, signature, `${base}/Release`);
  }
  const index = parseRelease(text);
  if (index.codename !== source.suite && index.suite !== source.suite) {
    // A mirror serving another release under this name (apt refuses this too).
    throw new UserError(
      `${base}: the signed index is for ${index.codename || index.suite}, not ${source.suite}`,
    );
  }
  return index;
}

// ---- the Packages index ------------------------------------------------------------------------

export interface DebianPackage extends ResolvedPackage {
  /** Path of the .deb under the source's URI (pool/...). */
  filename: string;
  sha256: string;
  size: number;
  /** The relation fields as written (parsed with parseRelations by the resolver, for the few it visits). */
  depends?: string;
  preDepends?: string;
  provides?: string;
  /** required, important, standard, optional: decides between providers of a virtual package. */
  priority?: string;
  uri: string;
}

const PACKAGE_FIELDS: Record<string, string> = {
  Package: 'name',
  Version: 'version',
  Architecture: 'arch',
  Filename: 'filename',
  SHA256: 'sha256',
  Size: 'size',
  Depends: 'depends',
  'Pre-Depends': 'preDepends',
  Provides: 'provides',
  Priority: 'priority',
};

/**
 * The amd64 and all packages of a Packages file. Reads only the fields above, line by line: the
 * index has ~65,000 stanzas, and the guest needs a few hundred of them.
 */
export function parsePackages(text: string, uri: string): DebianPackage[] {
  const out: DebianPackage[] = [];
  let rec: Record<string, string> = {};
  const flush = () => {
    const { name, version, arch, filename, sha256 } = rec;
    if (name && version && arch && filename && sha256 && (arch === ARCH || arch === 'all')) {
      // These end up in a URL and a cache file name: Debian's own syntax only, never a path elsewhere.
      if (
        !/^[a-z0-9][a-z0-9+.-]*$/.test(name) ||
        !/^[A-Za-z0-9.+~:-]+$/.test(version) ||
        !/^pool\/[A-Za-z0-9+.~_%/-]+\.deb$/.test(filename) ||
        filename.split('/').includes('..') ||
        !/^[0-9a-f]{64}$/.test(sha256)
      )
        throw new UserError(`${uri}: Packages entry ${JSON.stringify(name).slice(0, 80)} is malformed`);
      out.push({
        name,
        version,
        arch,
        filename,
        sha256,
        size: Number(rec.size ?? 0),
        ...(rec.depends ? { depends: rec.depends } : {}),
        ...(rec.preDepends ? { preDepends: rec.preDepends } : {}),
        ...(rec.provides ? { provides: rec.provides } : {}),
        ...(rec.priority ? { priority: rec.priority } : {}),
        uri,
      });
    }
    rec = {};
  };
  let at = 0;
  while (at < text.length) {
    let end = text.indexOf('\n', at);
    if (end < 0) end = text.length;
    if (end === at) flush();
    else {
      const colon = text.indexOf(':', at);
      if (colon > at && colon < end) {
        const key = PACKAGE_FIELDS[text.slice(at, colon)];
        if (key) rec[key] = text.slice(colon + 1, end).trim();
      }
    }
    at = end + 1;
  }
  flush();
  return out;
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/**
 * The packages of every source, each Packages file checked against its signed release index. The
 * uncompressed index is cached under its SHA-256, so an unchanged suite is not downloaded again.
 */
export async function loadPackages(
  sources: readonly DebianSource[],
  cache: string,
  log: (line: string) => void = () => {},
): Promise<DebianPackage[]> {
  mkdirSync(cache, { recursive: true });
  const all: DebianPackage[] = [];
  const keep = new Set<string>();
  for (const source of sources) {
    const release = await verifiedRelease(source);
    const plainPath = `${COMPONENT}/binary-${ARCH}/Packages`;
    const plain = release.files.get(plainPath);
    if (!plain)
      throw new UserError(`${source.uri}/dists/${source.suite}: the signed index lists no ${plainPath}`);
    keep.add(plain.sha256);
    const cached = join(cache, plain.sha256);
    let text: Buffer | undefined;
    if (existsSync(cached)) {
      text = readFileSync(cached);
      if (sha256(text) !== plain.sha256) text = undefined;
    }
    if (!text) {
      const packed = ['.xz', '.gz', ''].map((ext) => `${plainPath}${ext}`).find((p) => release.files.has(p))!;
      const want = release.files.get(packed)!;
      const url = release.byHash
        ? `${source.uri}/dists/${source.suite}/${COMPONENT}/binary-${ARCH}/by-hash/SHA256/${want.sha256}`
        : `${source.uri}/dists/${source.suite}/${packed}`;
      log(`guest: fetching ${source.suite} ${packed} (${(want.size / 2 ** 20).toFixed(1)} MiB)`);
      const body = await httpGet(url);
      if (sha256(body) !== want.sha256) throw new UserError(`${url}: SHA-256 differs from the signed index`);
      text = await decompress(body, compressionOf(packed));
      if (sha256(text) !== plain.sha256)
        throw new UserError(`${url}: uncompressed SHA-256 differs from the signed index`);
      writeFileSync(`${cached}.tmp`, text);
      renameSync(`${cached}.tmp`, cached);
    }
    all.push(...parsePackages(text.toString('utf8'), source.uri));
  }
  for (const name of readdirSync(cache)) if (!keep.has(name)) rmSync(join(cache, name), { force: true });
  return all;
}

// ---- .deb downloads ----------------------------------------------------------------------------

/** The archive file name apt uses (epoch colons escaped as %3a), so that one cache serves both. */
export function debFileName(p: ResolvedPackage): string {
  return `${p.name}_${p.version.replace(/:/g, '%3a')}_${p.arch}.deb`;
}

/**
 * Every package's .deb in `dir`, downloaded unless a file with the signed SHA-256 is already there.
 * Files of other versions are removed: the cache holds what the current guest is made of.
 */
export async function downloadDebs(
  packages: readonly DebianPackage[],
  dir: string,
  log: (line: string) => void = () => {},
): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const missing = packages.filter((p) => {
    const file = join(dir, debFileName(p));
    return !existsSync(file) || sha256(readFileSync(file)) !== p.sha256;
  });
  if (missing.length) {
    const mib = missing.reduce((n, p) => n + p.size, 0) / 2 ** 20;
    log(`guest: downloading ${missing.length} of ${packages.length} packages (${mib.toFixed(0)} MiB)`);
  }
  const queue = [...missing];
  const worker = async () => {
    for (let p = queue.shift(); p; p = queue.shift()) {
      const url = `${p.uri}/${p.filename}`;
      const body = await httpGet(url, { timeoutMs: 300_000 });
      if (sha256(body) !== p.sha256) throw new UserError(`${url}: SHA-256 differs from the signed index`);
      const file = join(dir, debFileName(p));
      writeFileSync(`${file}.part`, body);
      renameSync(`${file}.part`, file);
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  const wanted = new Set(packages.map(debFileName));
  for (const name of readdirSync(dir)) {
    if (name.endsWith('.deb') && !wanted.has(name)) rmSync(join(dir, name), { force: true });
  }
  return packages.map((p) => join(dir, debFileName(p)));
}
