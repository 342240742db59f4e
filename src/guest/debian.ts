import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { run } from '../util/proc.js';
import type { GuestRelease, ResolvedPackage } from './recipe.js';

/**
 * Downloads Debian packages with the host's apt-get, but against a private package index, an empty
 * dpkg status and a private archive cache: nothing is installed on the host, and the host's own
 * sources and pinning do not matter (the guest is made from the Debian release its recipe names).
 */

const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

export interface AptWorkspace {
  dir: string;
  archives: string;
}

function aptOptions(dir: string): string[] {
  const o = (k: string, v: string) => ['-o', `${k}=${v}`];
  return [
    ...o('Dir::State::status', join(dir, 'status')),
    ...o('Dir::State::Lists', join(dir, 'lists')),
    ...o('Dir::Cache', join(dir, 'cache')),
    ...o('Dir::Cache::archives', join(dir, 'archives')),
    ...o('Dir::Etc::sourcelist', join(dir, 'sources.list')),
    ...o('Dir::Etc::sourceparts', join(dir, 'empty')),
    ...o('Dir::Etc::preferences', join(dir, 'empty', 'none')),
    ...o('Dir::Etc::preferencesparts', join(dir, 'empty')),
    ...o('Debug::NoLocking', '1'),
    ...o('APT::Install-Recommends', 'false'),
    ...o('APT::Get::Assume-Yes', 'true'),
    // As root, apt would download as the _apt user, which cannot write into the user's cache.
    ...(process.getuid?.() === 0 ? o('APT::Sandbox::User', 'root') : []),
  ];
}

export function aptWorkspace(dir: string, release: GuestRelease): AptWorkspace {
  for (const sub of ['lists/partial', 'cache', 'archives/partial', 'empty']) {
    mkdirSync(join(dir, sub), { recursive: true });
  }
  writeFileSync(join(dir, 'status'), '');
  const { mirror, security } = debianMirrors(readHostSources(), release);
  const signed = existsSync(KEYRING) ? `[signed-by=${KEYRING}] ` : '';
  writeFileSync(
    join(dir, 'sources.list'),
    [
      `deb ${signed}${mirror} ${release} main`,
      `deb ${signed}${mirror} ${release}-updates main`,
      `deb ${signed}${security} ${release}-security main`,
      '',
    ].join('\n'),
  );
  return { dir, archives: join(dir, 'archives') };
}

/**
 * The Debian mirrors to fetch the guest's packages from: KVMIO_DEBIAN_MIRROR and
 * KVMIO_DEBIAN_SECURITY_MIRROR when set, else the ones this host's apt already uses for the guest's
 * release, or for another Debian release than the host's, the mirror its apt uses for its own Debian
 * release (one Debian archive serves every release; kvmio goes wherever the operator's apt goes,
 * proxies and local mirrors included).
 */
export function debianMirrors(
  sourcesText: string,
  release: GuestRelease,
): { mirror: string; security: string } {
  const entries = parseAptSources(sourcesText);
  const find = (suite: string) => entries.find((e) => e.suites.includes(suite))?.uri;
  const findAny = (test: (suite: string) => boolean) => entries.find((e) => e.suites.some(test))?.uri;
  const debianSuite = (s: string) => DEBIAN_RELEASES.includes(s);
  const mirror = process.env.KVMIO_DEBIAN_MIRROR || find(release) || findAny(debianSuite);
  const security =
    process.env.KVMIO_DEBIAN_SECURITY_MIRROR ||
    find(`${release}-security`) ||
    findAny((s) => s.endsWith('-security') && debianSuite(s.replace(/-security$/, ''))) ||
    mirror;
  if (!mirror || !security) {
    throw new UserError(
      `this host's apt sources have no Debian mirror to build the ${release} guest from: ` +
        'set KVMIO_DEBIAN_MIRROR (and KVMIO_DEBIAN_SECURITY_MIRROR) to a Debian mirror URL',
    );
  }
  return { mirror, security };
}

/** Debian release names whose archive also serves the guest's release. */
const DEBIAN_RELEASES = ['bullseye', 'bookworm', 'trixie', 'forky', 'sid', 'stable', 'oldstable', 'testing'];

function readHostSources(): string {
  const files = ['/etc/apt/sources.list'];
  const dir = '/etc/apt/sources.list.d';
  if (existsSync(dir)) {
    for (const f of readdirSync(dir))
      if (f.endsWith('.list') || f.endsWith('.sources')) files.push(join(dir, f));
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

async function apt(ws: AptWorkspace, args: string[], timeoutMs: number) {
  try {
    return await run(['apt-get', ...aptOptions(ws.dir), ...args], { timeoutMs });
  } catch (e) {
    if (e instanceof UserError) {
      throw new UserError('building the guest needs apt-get and dpkg-deb (a Debian or Ubuntu host)');
    }
    throw e;
  }
}

export async function updateIndex(ws: AptWorkspace): Promise<void> {
  await apt(ws, ['update'], 300_000);
}

/** The full dependency closure of `packages`, as apt would install it on an empty system. */
export async function resolveClosure(
  ws: AptWorkspace,
  packages: readonly string[],
): Promise<ResolvedPackage[]> {
  const r = await apt(ws, ['-s', 'install', ...packages], 120_000);
  return parseSimulation(r.stdout);
}

/** Parses `apt-get -s install` lines such as "Inst libc6 (2.36-9 Debian:12.12/stable [amd64]) []". */
export function parseSimulation(stdout: string): ResolvedPackage[] {
  const out: ResolvedPackage[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^Inst (\S+) (?:\[\S+\] )?\((\S+) .*\[([a-z0-9]+)\]\)/.exec(line);
    if (m) out.push({ name: m[1]!, version: m[2]!, arch: m[3]! });
  }
  return out;
}

/** Downloads (or finds in the archive cache) every package; returns their .deb paths. */
export async function downloadAll(ws: AptWorkspace, packages: readonly ResolvedPackage[]): Promise<string[]> {
  await apt(ws, ['install', '--download-only', ...packages.map((p) => `${p.name}=${p.version}`)], 900_000);
  const files = packages.map((p) => {
    const file = join(ws.archives, debFileName(p));
    if (!existsSync(file)) throw new Error(`apt-get did not leave ${file}`);
    return file;
  });
  // Keep the cache to what the current guest is made of: older versions would only pile up.
  const wanted = new Set(packages.map(debFileName));
  for (const name of readdirSync(ws.archives)) {
    if (name.endsWith('.deb') && !wanted.has(name)) rmSync(join(ws.archives, name), { force: true });
  }
  return files;
}

/** apt's archive file name: epoch colons are escaped as %3a. */
export function debFileName(p: ResolvedPackage): string {
  return `${p.name}_${p.version.replace(/:/g, '%3a')}_${p.arch}.deb`;
}
