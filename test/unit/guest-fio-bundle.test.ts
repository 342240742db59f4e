import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { builtGuest } from '../../src/guest/build.js';
import { type CpioReadEntry, readCpio, writeCpio } from '../../src/guest/cpio.js';
import { dynamicInfo } from '../../src/guest/elf.js';
import {
  BUNDLE_LOADER,
  bundleCommand,
  bundleFromArchive,
  fioBundle,
  resolveInArchive,
} from '../../src/guest/fio-bundle.js';
import { GUEST_RELEASES } from '../../src/guest/recipe.js';
import { run } from '../../src/util/proc.js';

/**
 * kvmio's own fio bundle. The archive tests use small archives written here; the library resolution
 * is checked against the real built guests in the cache (~/.cache/kvmio), skipped where none is built.
 */

test('a newc archive reads back, a later archive replacing entries as the kernel does', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kvmio-cpio-read-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const a = join(dir, 'a.cpio');
  const b = join(dir, 'b.cpio');
  await writeCpio(a, [
    { path: 'usr', type: 'dir', mode: 0o755 },
    { path: 'usr/bin', type: 'dir', mode: 0o755 },
    { path: 'usr/bin/fio', type: 'file', mode: 0o755, data: Buffer.from('odd length') },
    { path: 'bin', type: 'symlink', target: 'usr/bin' },
  ]);
  await writeCpio(b, [{ path: 'usr/bin/fio', type: 'symlink', target: '/nowhere' }]);
  const first = readCpio(readFileSync(a));
  assert.deepEqual(first.get('usr/bin/fio'), { type: 'file', mode: 0o755, data: Buffer.from('odd length') });
  assert.deepEqual(first.get('bin'), { type: 'symlink', target: 'usr/bin' });
  assert.equal(resolveInArchive(first, 'bin/fio'), 'usr/bin/fio');
  appendFileSync(a, readFileSync(b));
  const both = readCpio(readFileSync(a));
  assert.deepEqual(both.get('usr/bin/fio'), { type: 'symlink', target: '/nowhere' });
  assert.equal(resolveInArchive(both, '/bin/fio'), undefined);
  assert.throws(() => bundleFromArchive(both), /the built guest has no usr\/bin\/fio/);
  assert.throws(() => readCpio(Buffer.from('not a cpio archive'.repeat(10))), /not a newc header/);
});

test('symlinks resolve inside the archive: relative, absolute, through directories, never above its root', () => {
  const entries = new Map<string, CpioReadEntry>([
    ['lib64', { type: 'symlink', target: 'usr/lib64' }],
    ['usr', { type: 'dir', mode: 0o755 }],
    ['usr/lib64', { type: 'dir', mode: 0o755 }],
    [
      'usr/lib64/ld-linux-x86-64.so.2',
      { type: 'symlink', target: '../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2' },
    ],
    ['usr/lib', { type: 'dir', mode: 0o755 }],
    ['usr/lib/x86_64-linux-gnu', { type: 'dir', mode: 0o755 }],
    ['usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2', { type: 'file', mode: 0o755, data: Buffer.from('x') }],
    ['up', { type: 'symlink', target: '../../../usr' }],
    ['loop', { type: 'symlink', target: 'loop' }],
  ]);
  assert.equal(
    resolveInArchive(entries, '/lib64/ld-linux-x86-64.so.2'),
    'usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2',
  );
  assert.equal(resolveInArchive(entries, 'up/lib64'), 'usr/lib64');
  assert.equal(resolveInArchive(entries, 'loop/x'), undefined);
  assert.equal(resolveInArchive(entries, 'usr/missing'), undefined);
});

for (const release of GUEST_RELEASES) {
  test(`the fio bundle of the built ${release} guest holds fio's whole library closure and runs on the host`, async (t) => {
    const image = builtGuest(release);
    if (!image) return t.skip(`no built ${release} guest in the cache`);
    const entries = readCpio(readFileSync(image.initrd));
    const files = bundleFromArchive(entries);
    assert.ok(files.has('fio') && files.has(BUNDLE_LOADER) && files.has('libc.so.6'));
    // Closed: everything any bundled file needs is in the bundle, under the name it is asked for.
    for (const [name, data] of files)
      for (const needed of dynamicInfo(data).needed)
        assert.ok(files.has(needed), `${name} needs ${needed}, which the bundle lacks`);
    // The bundled files are the guest's own, byte for byte.
    const libc = resolveInArchive(entries, 'usr/lib/x86_64-linux-gnu/libc.so.6') as string;
    const libcEntry = entries.get(libc);
    assert.ok(libcEntry?.type === 'file');
    assert.deepEqual(files.get('libc.so.6'), libcEntry.data);

    const bundle = await fioBundle(image);
    const version = release === 'trixie' ? 'fio-3.39' : 'fio-3.33';
    assert.equal(bundle.version, version);
    assert.deepEqual(bundle.files, [...files.keys()].sort());
    // The guest's own loader says where it finds each library: every one inside the bundle.
    const listed = await run([...bundleCommand(bundle.dir).slice(0, 3), '--list', join(bundle.dir, 'fio')]);
    const resolved = listed.stdout
      .split('\n')
      .map((l) => /=>\s+(\S+)/.exec(l)?.[1])
      .filter((p): p is string => p !== undefined);
    assert.ok(resolved.length > 10, listed.stdout);
    for (const path of resolved)
      assert.ok(path.startsWith(`${bundle.dir}/`), `${path} is outside the bundle`);
    const r = await run([...bundleCommand(bundle.dir), '--version']);
    assert.equal(r.stdout.trim(), version);
  });
}

test('a library the guest lacks fails the bundle, naming it', (t) => {
  const image = builtGuest('trixie') ?? builtGuest('bookworm');
  if (!image) return t.skip('no built guest in the cache');
  const entries = readCpio(readFileSync(image.initrd));
  const libaio = [...entries.keys()].find((p) => /\/libaio\.so\.1(t64)?$/.test(p));
  assert.ok(libaio);
  entries.delete(libaio);
  assert.throws(
    () => bundleFromArchive(entries),
    /usr\/bin\/fio in the built guest needs libaio\.so\.1(t64)?, which the guest lacks/,
  );
});
