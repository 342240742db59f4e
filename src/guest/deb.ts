import {
  chmodSync,
  linkSync,
  lstatSync,
  mkdirSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Readable } from 'node:stream';
import { extract, type Header } from 'tar-stream';
import { compressionOf, decompress } from '../util/decompress.js';

/**
 * Unpacks a .deb (deb(5): an ar archive holding debian-binary, control.tar.* and data.tar.*) into a
 * directory, in Node: no dpkg-deb, no tar on the host. Owners are not kept (the guest builder sets
 * its own); modes, symlinks and hard links are. No entry is written outside the directory, whatever
 * the archive says.
 */

interface ArMember {
  name: string;
  data: Buffer;
}

/** The members of an ar archive ("!<arch>\n", then 60-byte headers, each member padded to 2 bytes). */
export function readAr(buf: Buffer, what: string): ArMember[] {
  if (buf.toString('latin1', 0, 8) !== '!<arch>\n') throw new Error(`${what}: not an ar archive`);
  const out: ArMember[] = [];
  let at = 8;
  while (at + 60 <= buf.length) {
    const name = buf
      .toString('latin1', at, at + 16)
      .trim()
      .replace(/\/$/, '');
    const size = Number(buf.toString('latin1', at + 48, at + 58).trim());
    if (!Number.isInteger(size) || size < 0 || at + 60 + size > buf.length)
      throw new Error(`${what}: ar member ${name} is truncated`);
    out.push({ name, data: buf.subarray(at + 60, at + 60 + size) });
    at += 60 + size + (size % 2);
  }
  return out;
}

/** The data.tar of a .deb, decompressed. */
export async function debDataTar(buf: Buffer, what: string): Promise<Buffer> {
  const members = readAr(buf, what);
  if (members[0]?.name !== 'debian-binary' || !members[0].data.toString('latin1').startsWith('2.'))
    throw new Error(`${what}: not a Debian binary package (format 2.x)`);
  const data = members.find((m) => /^data\.tar(\.(xz|zst|gz))?$/.test(m.name));
  if (!data) throw new Error(`${what}: no data.tar member`);
  return decompress(data.data, compressionOf(data.name));
}

/** "./usr/bin/x" -> "usr/bin/x"; undefined for the root entry; throws for a path leaving the tree. */
function entryPath(name: string, what: string): string | undefined {
  const clean = posix.normalize(name.replace(/^\.?\/+/, '')).replace(/\/+$/, '');
  if (clean === '.' || clean === '') return undefined;
  if (clean.startsWith('/') || clean === '..' || clean.startsWith('../'))
    throw new Error(`${what}: entry ${JSON.stringify(name)} leaves the package's tree`);
  return clean;
}

/**
 * Makes the parent directories of `rel` under `root`, following symlinks already unpacked only while
 * they stay inside `root` (merged-/usr links such as lib -> usr/lib); returns the absolute path.
 */
function placeInside(root: string, realRoot: string, rel: string, what: string): string {
  const parts = rel.split('/');
  let dir = root;
  for (const part of parts.slice(0, -1)) {
    dir = join(dir, part);
    const st = lstatSync(dir, { throwIfNoEntry: false });
    if (!st) mkdirSync(dir, { mode: 0o755 });
    else if (st.isSymbolicLink()) {
      const real = realpathSync(dir);
      if (real !== realRoot && !real.startsWith(`${realRoot}/`))
        throw new Error(`${what}: ${rel} would be written through a link leaving the tree`);
    } else if (!st.isDirectory()) throw new Error(`${what}: ${rel}: a parent is not a directory`);
  }
  return join(dir, parts[parts.length - 1]!);
}

export async function unpackDeb(file: string, root: string): Promise<void> {
  const what = posix.basename(file);
  const tar = await debDataTar(await readFile(file), what);
  const realRoot = realpathSync(root);
  const ex = extract();
  Readable.from([tar]).pipe(ex);
  for await (const entry of ex) {
    const h: Header = entry.header;
    const rel = entryPath(h.name, what);
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    if (rel === undefined) continue;
    const target = placeInside(root, realRoot, rel, what);
    const mode = (h.mode ?? 0o644) & 0o7777;
    const existing = lstatSync(target, { throwIfNoEntry: false });
    if (h.type === 'directory') {
      if (!existing) mkdirSync(target, { mode });
      else if (existing.isDirectory()) chmodSync(target, mode);
      continue;
    }
    // A later package replaces an earlier one's file, as dpkg does; never a directory.
    if (existing && !existing.isDirectory()) rmSync(target);
    if (h.type === 'file' || h.type === 'contiguous-file') {
      writeFileSync(target, Buffer.concat(chunks), { mode });
      chmodSync(target, mode); // writeFileSync's mode is masked by the umask
    } else if (h.type === 'symlink') {
      symlinkSync(h.linkname ?? '', target);
    } else if (h.type === 'link') {
      const source = entryPath(h.linkname ?? '', what);
      if (source === undefined) throw new Error(`${what}: hard link ${rel} has no target`);
      linkSync(placeInside(root, realRoot, source, what), target);
    }
    // Device nodes and fifos are not in Debian's packages' data; the guest builder makes its own.
  }
}

/** Unpacks every .deb into `root`, in order (a later package's file wins, as with dpkg). */
export async function unpackDebs(files: readonly string[], root: string): Promise<void> {
  for (const file of files) await unpackDeb(file, root);
}
