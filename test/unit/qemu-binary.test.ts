import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { locateQemu } from '../../src/qemu/binary.js';

// A fake root laid out as distributions lay QEMU out; locateQemu looks only at paths under it.
const root = mkdtempSync(join(tmpdir(), 'kvmio-qemu-root-'));
after(() => rmSync(root, { recursive: true, force: true }));

function place(path: string, mode = 0o755): void {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  writeFileSync(join(root, path), '');
  chmodSync(join(root, path), mode);
}

test('RHEL layout: /usr/libexec/qemu-kvm is found when qemu-system-x86_64 is not on PATH', () => {
  place('usr/libexec/qemu-kvm');
  place('usr/bin/qemu-kvm');
  const loc = locateQemu({ root, env: { PATH: '/usr/local/bin:/usr/bin' } });
  assert.deepEqual(loc, {
    binary: '/usr/libexec/qemu-kvm',
    found: true,
    reason: 'qemu-system-x86_64 is not on PATH; /usr/libexec/qemu-kvm is',
  });
});

test('PATH wins over the fallbacks; the first PATH entry holding it is taken', () => {
  place('opt/qemu/bin/qemu-system-x86_64');
  place('usr/bin/qemu-system-x86_64');
  const loc = locateQemu({ root, env: { PATH: 'relative:/opt/qemu/bin:/usr/bin' } });
  assert.equal(loc.binary, '/opt/qemu/bin/qemu-system-x86_64');
  assert.equal(loc.reason, 'qemu-system-x86_64 on PATH');
  rmSync(join(root, 'opt'), { recursive: true });
  rmSync(join(root, 'usr/bin/qemu-system-x86_64'));
});

test('a file without the execute bit is not a QEMU', () => {
  rmSync(join(root, 'usr'), { recursive: true });
  place('usr/libexec/qemu-kvm', 0o644);
  place('usr/bin/qemu-kvm');
  assert.equal(locateQemu({ root, env: { PATH: '/usr/bin' } }).binary, '/usr/bin/qemu-kvm');
});

test('KVMIO_QEMU is taken as given, by path or by PATH name; a wrong one is reported, not replaced', () => {
  place('srv/qemu-10/bin/qemu-system-x86_64');
  assert.deepEqual(locateQemu({ root, env: { KVMIO_QEMU: '/srv/qemu-10/bin/qemu-system-x86_64' } }), {
    binary: '/srv/qemu-10/bin/qemu-system-x86_64',
    found: true,
    reason: 'KVMIO_QEMU',
  });
  assert.equal(
    locateQemu({ root, env: { KVMIO_QEMU: 'qemu-kvm', PATH: '/usr/bin' } }).binary,
    '/usr/bin/qemu-kvm',
  );
  const wrong = locateQemu({ root, env: { KVMIO_QEMU: '/nowhere/qemu', PATH: '/usr/bin' } });
  assert.equal(wrong.found, false);
  assert.equal(wrong.binary, '/nowhere/qemu');
  assert.match(wrong.reason, /KVMIO_QEMU=\/nowhere\/qemu is not an executable file/);
});

test('nothing anywhere: not found, and the reason lists where it looked', () => {
  rmSync(join(root, 'usr'), { recursive: true });
  const loc = locateQemu({ root, env: { PATH: '/usr/bin:/bin' } });
  assert.equal(loc.found, false);
  assert.equal(loc.binary, 'qemu-system-x86_64');
  assert.match(loc.reason, /\/usr\/libexec\/qemu-kvm/);
});
