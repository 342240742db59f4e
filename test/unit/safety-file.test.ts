import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { prepareDiskFile } from '../../src/safety/disk.js';
import { guardTarget } from '../../src/safety/guard.js';

/** The data guard for raw files: kvmio writes only to files it created, unless told otherwise. */

let work = '';
before(() => {
  work = mkdtempSync(join(tmpdir(), 'kvmio-safety-file-'));
  process.env.KVMIO_CACHE = join(work, 'cache');
});
after(() => rmSync(work, { recursive: true, force: true }));

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

test("an existing user's file is refused and left unchanged", async () => {
  const path = join(work, 'precious.img');
  writeFileSync(path, 'my thesis\n'.repeat(1000));
  const before = sha256(path);
  const mtime = statSync(path).mtimeMs;
  await assert.rejects(prepareDiskFile({ path, sizeBytes: 1 << 20 }, {}), (e: Error) => {
    assert.equal(e.name, 'UserError');
    assert.equal(
      e.message,
      `${path} exists (9.8 KiB) and was not created by kvmio; kvmio will not write to it. ` +
        `To allow it, pass --destroy-data ${path}`,
    );
    return true;
  });
  assert.equal(sha256(path), before);
  assert.equal(statSync(path).mtimeMs, mtime);
});

test('a file kvmio made is created 0600 and written in full, and accepted on the second run', async () => {
  const path = join(work, 'bench.raw');
  assert.deepEqual(await guardTarget(path, {}), {
    path,
    kind: 'file',
    sizeBytes: 0,
    createdByKvmio: false,
    exists: false,
  });
  const first = await prepareDiskFile({ path, sizeBytes: 64 << 20 }, {});
  assert.deepEqual(first, { path, kind: 'file', sizeBytes: 64 << 20, createdByKvmio: true, exists: true });
  const st = statSync(path);
  assert.equal(st.mode & 0o777, 0o600);
  assert.equal(st.size, 64 << 20);
  assert.ok(st.blocks * 512 >= 64 << 20, 'every block written, so reads measure storage, not holes');
  const head = readFileSync(path).subarray(0, 4096);
  assert.ok(
    head.some((b) => b !== 0),
    'written with data, not zeros',
  );
  // Second run: recognised, and resized to a new requested size.
  assert.equal((await guardTarget(path, {})).createdByKvmio, true);
  const second = await prepareDiskFile({ path, sizeBytes: 32 << 20 }, {});
  assert.equal(second.createdByKvmio, true);
  assert.equal(statSync(path).size, 32 << 20);
});

test('a file recreated by someone else at the path of a kvmio file is refused', async () => {
  const path = join(work, 'reused-name.raw');
  await prepareDiskFile({ path, sizeBytes: 1 << 20 }, {});
  unlinkSync(path);
  writeFileSync(path, 'not kvmio');
  await assert.rejects(guardTarget(path, {}), /was not created by kvmio/);
});

test('preallocation allocates every block; fill: false leaves the file sparse', async () => {
  const path = join(work, 'full.raw');
  await prepareDiskFile({ path, sizeBytes: 16 << 20 }, { preallocate: true, fill: false });
  assert.ok(statSync(path).blocks * 512 >= 16 << 20);
  const sparse = join(work, 'sparse.raw');
  await prepareDiskFile({ path: sparse, sizeBytes: 16 << 20 }, { fill: false });
  assert.ok(statSync(sparse).blocks * 512 < 1 << 20);
});

test('--destroy-data allows a foreign file, through a symlink too', async () => {
  const path = join(work, 'given-up.img');
  writeFileSync(path, 'old');
  const link = join(work, 'given-up-link');
  symlinkSync(path, link);
  const info = await prepareDiskFile({ path: link, sizeBytes: 1 << 20 }, { destroyData: [path] });
  assert.deepEqual(info, { path, kind: 'file', sizeBytes: 1 << 20, createdByKvmio: false, exists: true });
  await assert.rejects(guardTarget(path, { destroyData: [join(work, 'other.img')] }), /not this disk/);
});

test('bad paths get one clear message and create nothing', async () => {
  const missingDir = join(work, 'no-such-dir', 'disk.raw');
  await assert.rejects(
    prepareDiskFile({ path: missingDir, sizeBytes: 1 << 20 }, {}),
    new RegExp(
      `cannot create the disk file ${missingDir}: directory ${join(work, 'no-such-dir')} does not exist`,
    ),
  );
  const dir = join(work, 'a-dir');
  mkdirSync(dir);
  await assert.rejects(guardTarget(dir, {}), /is a directory; kvmio needs a raw file or a block device/);
  const dangling = join(work, 'dangling');
  symlinkSync(join(work, 'nowhere.raw'), dangling);
  await assert.rejects(guardTarget(dangling, {}), /symbolic link to a file that does not exist/);
  await assert.rejects(guardTarget('/dev/null', {}), /is a character device/);
  await assert.rejects(
    prepareDiskFile({ path: '/dev/sdzz9', sizeBytes: 1 << 20 }, {}),
    /^UserError: no such device: \/dev\/sdzz9$/,
  );
  assert.throws(() => statSync('/dev/sdzz9'), /ENOENT/);
  await assert.rejects(
    prepareDiskFile({ path: join(work, 'zero.raw'), sizeBytes: 0 }, {}),
    /must be positive/,
  );
  assert.throws(() => statSync(join(work, 'zero.raw')), /ENOENT/);
});
