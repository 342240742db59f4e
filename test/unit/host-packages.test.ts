import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { installCommand, missingAdvice, missingNeeds, packageManagerOf } from '../../src/host/packages.js';

// ID/ID_LIKE lines as the distributions' own /etc/os-release files spell them (quoted and not).
const OS_RELEASES: [string, string | undefined][] = [
  ['ID=debian', 'apt'],
  ['ID=ubuntu\nID_LIKE=debian', 'apt'],
  ['ID="rocky"\nID_LIKE="rhel centos fedora"', 'dnf'],
  ['ID="almalinux"\nID_LIKE="rhel centos fedora"', 'dnf'],
  ['ID="rhel"\nID_LIKE="fedora"', 'dnf'],
  ['ID=fedora', 'dnf'],
  ['ID="opensuse-leap"\nID_LIKE="suse opensuse"', 'zypper'],
  ['ID="sles"\nID_LIKE="suse"', 'zypper'],
  ['ID=arch', 'pacman'],
  ['ID=nixos', undefined],
];

test('package manager from os-release ID and ID_LIKE', () => {
  for (const [text, pm] of OS_RELEASES) assert.equal(packageManagerOf(text), pm, text);
  assert.equal(packageManagerOf(readFileSync('/etc/os-release', 'utf8')), 'apt', 'this host is Debian');
});

test('install commands name each distribution’s packages, with sudo when not root', () => {
  assert.equal(installCommand('dnf', ['qemu', 'fio'], false), 'sudo dnf install -y qemu-kvm fio');
  assert.equal(
    installCommand('apt', ['qemu', 'libvirt'], true),
    'apt-get install -y qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients',
  );
  assert.equal(installCommand('pacman', ['qemu'], true), 'pacman -S --needed qemu-base');
  assert.equal(installCommand('zypper', ['fio', 'fio'], true), 'zypper install -y fio');
});

test('missing needs: looked up on PATH (and sbin); QEMU from the locator', () => {
  // This host has every tool: with its PATH nothing but a missing QEMU is reported.
  assert.deepEqual(
    missingNeeds(false).map((m) => m.need),
    ['qemu'],
  );
  const bare = missingNeeds(true, { PATH: '/nonexistent' }).map((m) => m.need);
  assert.ok(bare.includes('fio') && bare.includes('libvirt'), bare.join());
  assert.ok(!bare.includes('e2fsprogs'), 'mkfs.ext4 is found in /usr/sbin without PATH');
  const advice = missingAdvice(missingNeeds(false, { PATH: '/nonexistent' }), 'dnf');
  assert.match(advice[0]!, /^this host lacks qemu: every measurement runs in QEMU; fio: /);
  assert.match(advice[1]!, /^install with: (sudo )?dnf install -y qemu-kvm fio libvirt-daemon-kvm/);
  assert.deepEqual(missingAdvice([], 'apt'), []);
});
