import assert from 'node:assert/strict';
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeCpio } from '../../src/guest/cpio.js';
import { run } from '../../src/util/proc.js';

test('the newc archive unpacks with cpio into the same tree', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kvmio-cpio-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const archive = join(dir, 'a.cpio');
  const odd = Buffer.from('three bytes plus'); // a length that needs padding
  const size = await writeCpio(archive, [
    { path: 'etc', type: 'dir', mode: 0o755 },
    { path: 'etc/kvmio', type: 'dir', mode: 0o700 },
    { path: 'etc/kvmio/x', type: 'file', mode: 0o640, data: odd },
    { path: 'etc/link', type: 'symlink', target: 'kvmio/x' },
    { path: 'tmp', type: 'dir', mode: 0o1777 },
  ]);
  assert.equal(size % 4, 0);
  assert.equal(size, readFileSync(archive).length);
  const out = join(dir, 'out');
  await run(['mkdir', out]);
  await run(['cpio', '-idm', '--quiet', '-D', out, '-F', archive]);
  assert.deepEqual(readFileSync(join(out, 'etc/kvmio/x')), odd);
  assert.equal(lstatSync(join(out, 'etc/kvmio/x')).mode & 0o7777, 0o640);
  assert.equal(lstatSync(join(out, 'etc/kvmio')).mode & 0o7777, 0o700);
  assert.equal(lstatSync(join(out, 'tmp')).mode & 0o7777, 0o1777);
  assert.equal(readlinkSync(join(out, 'etc/link')), 'kvmio/x');
});
