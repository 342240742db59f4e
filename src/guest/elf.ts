/**
 * Just enough ELF64 reading to assemble the guest without host tools (no readelf, no kmod): the
 * shared libraries a binary needs, its program interpreter, and a kernel module's dependencies.
 */

const SHT_DYNAMIC = 6;
const PT_INTERP = 3;
const DT_NEEDED = 1;
const DT_RPATH = 15;
const DT_RUNPATH = 29;

interface Section {
  name: string;
  type: number;
  offset: number;
  size: number;
  link: number;
}

/** Where an amd64 Debian system's loader looks for libraries, relative to its root (no ld.so.cache). */
export const LIBRARY_DIRS = ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu', 'lib', 'usr/lib'];

export function isElf(buf: Buffer): boolean {
  return buf.length >= 64 && buf.readUInt32BE(0) === 0x7f454c46;
}

function sections(buf: Buffer): Section[] {
  if (!isElf(buf) || buf[4] !== 2 || buf[5] !== 1) return []; // only ELF64 little-endian (amd64)
  const shoff = Number(buf.readBigUInt64LE(0x28));
  const shentsize = buf.readUInt16LE(0x3a);
  const shnum = buf.readUInt16LE(0x3c);
  const shstrndx = buf.readUInt16LE(0x3e);
  if (shoff === 0 || shoff + shnum * shentsize > buf.length) return [];
  const raw = [];
  for (let i = 0; i < shnum; i++) {
    const at = shoff + i * shentsize;
    raw.push({
      nameOff: buf.readUInt32LE(at),
      type: buf.readUInt32LE(at + 4),
      offset: Number(buf.readBigUInt64LE(at + 0x18)),
      size: Number(buf.readBigUInt64LE(at + 0x20)),
      link: buf.readUInt32LE(at + 0x28),
    });
  }
  const names = raw[shstrndx];
  return raw.map((s) => ({
    name: names ? cString(buf, names.offset + s.nameOff) : '',
    type: s.type,
    offset: s.offset,
    size: s.size,
    link: s.link,
  }));
}

function cString(buf: Buffer, at: number): string {
  const end = buf.indexOf(0, at);
  return buf.toString('latin1', at, end < 0 ? buf.length : end);
}

export interface DynamicInfo {
  needed: string[];
  /** DT_RUNPATH and DT_RPATH entries, unexpanded ($ORIGIN is left to the caller). */
  runpath: string[];
  interpreter?: string;
}

/** DT_NEEDED, DT_RUNPATH/DT_RPATH and PT_INTERP of an ELF64 file; empty for anything else. */
export function dynamicInfo(buf: Buffer): DynamicInfo {
  const info: DynamicInfo = { needed: [], runpath: [] };
  const all = sections(buf);
  for (const dyn of all.filter((s) => s.type === SHT_DYNAMIC)) {
    const strtab = all[dyn.link];
    if (!strtab) continue;
    for (let at = dyn.offset; at + 16 <= dyn.offset + dyn.size; at += 16) {
      const tag = Number(buf.readBigInt64LE(at));
      if (tag === 0) break;
      const val = Number(buf.readBigUInt64LE(at + 8));
      if (tag === DT_NEEDED) info.needed.push(cString(buf, strtab.offset + val));
      else if (tag === DT_RUNPATH || tag === DT_RPATH)
        info.runpath.push(
          ...cString(buf, strtab.offset + val)
            .split(':')
            .filter(Boolean),
        );
    }
  }
  if (isElf(buf) && buf[4] === 2) {
    const phoff = Number(buf.readBigUInt64LE(0x20));
    const phentsize = buf.readUInt16LE(0x36);
    const phnum = buf.readUInt16LE(0x38);
    for (let i = 0; i < phnum; i++) {
      const at = phoff + i * phentsize;
      if (at + 0x28 > buf.length) break;
      if (buf.readUInt32LE(at) === PT_INTERP) {
        info.interpreter = cString(buf, Number(buf.readBigUInt64LE(at + 8)));
      }
    }
  }
  return info;
}

/** The `key=value` strings of a kernel module's .modinfo section. */
export function modinfo(buf: Buffer): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const sec = sections(buf).find((s) => s.name === '.modinfo');
  if (!sec) return out;
  for (const entry of buf.toString('latin1', sec.offset, sec.offset + sec.size).split('\0')) {
    const eq = entry.indexOf('=');
    if (eq <= 0) continue;
    const key = entry.slice(0, eq);
    out.set(key, [...(out.get(key) ?? []), entry.slice(eq + 1)]);
  }
  return out;
}

/** Names of the modules a kernel module depends on (as the kernel spells them: underscores). */
export function moduleDepends(buf: Buffer): string[] {
  const deps = modinfo(buf).get('depends')?.[0] ?? '';
  return deps
    .split(',')
    .map((d) => d.trim())
    .filter(Boolean)
    .map(moduleName);
}

/** Kernel module name from a file name or a name: "virtio-rng.ko" -> "virtio_rng". */
export function moduleName(fileOrName: string): string {
  return (fileOrName.split('/').pop() ?? fileOrName).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}
