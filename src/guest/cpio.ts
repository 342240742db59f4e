import { once } from 'node:events';
import { createWriteStream } from 'node:fs';

/**
 * A writer for the "newc" cpio format the kernel unpacks as an initramfs. Written here (rather than
 * running cpio) so that owners and modes are set explicitly and the archive is reproducible.
 */

export type CpioEntry =
  | { path: string; type: 'dir'; mode: number; uid?: number; gid?: number }
  | { path: string; type: 'file'; mode: number; data: Buffer; uid?: number; gid?: number }
  | { path: string; type: 'symlink'; target: string }
  | { path: string; type: 'char'; mode: number; major: number; minor: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function header(fields: {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  rdevMajor: number;
  rdevMinor: number;
  name: string;
}): Buffer {
  const name = Buffer.from(`${fields.name}\0`, 'utf8');
  const text =
    '070701' +
    [
      fields.ino,
      fields.mode,
      fields.uid,
      fields.gid,
      1, // nlink
      0, // mtime: fixed, for reproducible archives
      fields.size,
      0,
      0, // dev major/minor
      fields.rdevMajor,
      fields.rdevMinor,
      name.length,
      0, // check
    ]
      .map(hex8)
      .join('');
  return Buffer.concat([Buffer.from(text, 'latin1'), name, pad(110 + name.length)]);
}

function pad(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}

/** Writes entries (parents before children) to `file` as a newc archive; returns its size in bytes. */
export async function writeCpio(file: string, entries: Iterable<CpioEntry>): Promise<number> {
  const out = createWriteStream(file);
  let size = 0;
  const write = async (chunk: Buffer) => {
    size += chunk.length;
    if (!out.write(chunk)) await once(out, 'drain');
  };
  let ino = 1;
  for (const e of entries) {
    const name = e.path.replace(/^\/+/, '');
    const base = { ino: ino++, uid: 0, gid: 0, rdevMajor: 0, rdevMinor: 0, name };
    if (e.type === 'dir') {
      await write(header({ ...base, mode: S_IFDIR | e.mode, uid: e.uid ?? 0, gid: e.gid ?? 0, size: 0 }));
    } else if (e.type === 'file') {
      const h = { ...base, mode: S_IFREG | e.mode, uid: e.uid ?? 0, gid: e.gid ?? 0, size: e.data.length };
      await write(header(h));
      await write(e.data);
      await write(pad(e.data.length));
    } else if (e.type === 'symlink') {
      const target = Buffer.from(e.target, 'utf8');
      await write(header({ ...base, mode: S_IFLNK | 0o777, size: target.length }));
      await write(target);
      await write(pad(target.length));
    } else {
      await write(
        header({ ...base, mode: S_IFCHR | e.mode, size: 0, rdevMajor: e.major, rdevMinor: e.minor }),
      );
    }
  }
  await write(
    header({ ino: 0, mode: 0, uid: 0, gid: 0, size: 0, rdevMajor: 0, rdevMinor: 0, name: 'TRAILER!!!' }),
  );
  out.end();
  await once(out, 'finish');
  return size;
}

/** An entry read back from a newc archive: regular files with their data, symlinks with their target. */
export type CpioReadEntry =
  | { type: 'file'; mode: number; data: Buffer }
  | { type: 'symlink'; target: string }
  | { type: 'dir' | 'other'; mode: number };

const S_IFMT = 0o170000;

/**
 * Reads a newc archive (several concatenated ones too, as an initramfs may be): path -> entry, a
 * later entry of a path replacing an earlier one as the kernel's unpacker does. File data are views
 * into `buf`. Throws on anything that is not a well-formed newc archive.
 */
export function readCpio(buf: Buffer): Map<string, CpioReadEntry> {
  const out = new Map<string, CpioReadEntry>();
  const align = (n: number) => n + ((4 - (n % 4)) % 4);
  let at = 0;
  while (at < buf.length) {
    // Padding between concatenated archives is zeros.
    if (buf[at] === 0) {
      at++;
      continue;
    }
    if (at + 110 > buf.length) throw new Error(`cpio: truncated header at ${at}`);
    const magic = buf.toString('latin1', at, at + 6);
    if (magic !== '070701' && magic !== '070702') throw new Error(`cpio: not a newc header at ${at}`);
    const field = (i: number) => {
      const text = buf.toString('latin1', at + 6 + i * 8, at + 14 + i * 8);
      if (!/^[0-9a-fA-F]{8}$/.test(text)) throw new Error(`cpio: bad header field at ${at}`);
      return Number.parseInt(text, 16);
    };
    const mode = field(1);
    const size = field(6);
    const nameSize = field(11);
    const nameEnd = at + 110 + nameSize;
    const dataAt = align(nameEnd);
    if (nameSize < 1 || dataAt + size > buf.length) throw new Error(`cpio: entry at ${at} runs past the end`);
    const name = buf.toString('utf8', at + 110, nameEnd - 1).replace(/^(\.\/|\/)+/, '');
    at = align(dataAt + size);
    if (name === 'TRAILER!!!') continue;
    const data = buf.subarray(dataAt, dataAt + size);
    const kind = mode & S_IFMT;
    if (kind === S_IFREG) out.set(name, { type: 'file', mode: mode & 0o7777, data });
    else if (kind === S_IFLNK) out.set(name, { type: 'symlink', target: data.toString('utf8') });
    else out.set(name, { type: kind === S_IFDIR ? 'dir' : 'other', mode: mode & 0o7777 });
  }
  return out;
}
