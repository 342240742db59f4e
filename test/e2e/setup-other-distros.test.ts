import assert from 'node:assert/strict';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { inMountNamespace } from '../helpers/namespace.js';

/**
 * scripts/setup.sh on a distribution without apt: in a mount namespace whose /etc/os-release is
 * Fedora's, Rocky's, openSUSE's or Arch's, with apt-get, dpkg and fio hidden, setup.sh never calls apt
 * and names what to install with that host's own package manager, exit 1. The os-release lines are the
 * ID/ID_LIKE fields those distributions ship. setup.sh runs from a copy of the repository's layout
 * whose npm and build steps are already up to date (it must not run npm ci on the shared tree).
 */

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'kvmio-setup-distros-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const repo = join(dir, 'repo');
mkdirSync(join(repo, 'scripts'), { recursive: true });
for (const d of ['src', 'test']) mkdirSync(join(repo, d));
copyFileSync(join(ROOT, 'scripts/setup.sh'), join(repo, 'scripts/setup.sh'));
copyFileSync(join(ROOT, 'package-lock.json'), join(repo, 'package-lock.json'));
const old = new Date('2001-01-01T00:00:00Z');
utimesSync(join(repo, 'package-lock.json'), old, old);
symlinkSync(join(ROOT, 'node_modules'), join(repo, 'node_modules'));
symlinkSync(join(ROOT, 'dist'), join(repo, 'dist'));
const hidden = join(dir, 'hidden');
writeFileSync(hidden, '', { mode: 0o644 });

const DISTROS = [
  { name: 'Fedora', osRelease: 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=41\n', install: 'dnf install -y' },
  {
    name: 'Rocky',
    osRelease: 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.5"\n',
    install: 'dnf install -y',
  },
  {
    name: 'openSUSE',
    osRelease: 'NAME="openSUSE Leap"\nID="opensuse-leap"\nID_LIKE="suse opensuse"\nVERSION_ID="15.6"\n',
    install: 'zypper install -y',
  },
  {
    name: 'Arch',
    osRelease: 'NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n',
    install: 'pacman -S --needed',
  },
];

for (const distro of DISTROS) {
  test(`setup.sh on ${distro.name}: no apt, says what to install with ${distro.install.split(' ')[0]}`, () => {
    const osRelease = join(dir, `${distro.name}.os-release`);
    writeFileSync(osRelease, distro.osRelease);
    const r = inMountNamespace(
      [
        { over: '/etc/os-release', with: osRelease },
        ...['/usr/bin/apt-get', '/usr/bin/apt', '/usr/bin/dpkg', '/usr/bin/dpkg-query', '/usr/bin/fio'].map(
          (over) => ({ over, with: hidden }),
        ),
      ],
      ['bash', join(repo, 'scripts/setup.sh')],
      { timeoutMs: 60_000 },
    );
    const out = `${r.stdout}${r.stderr}`;
    assert.equal(r.status, 1, out);
    assert.doesNotMatch(out, /apt-get|dpkg/);
    assert.match(out, /setup: not a Debian host/);
    assert.match(out, /setup: this host lacks fio: .*\(no fio\)/);
    assert.match(out, new RegExp(`^setup: install with: ${distro.install} fio$`, 'm'));
  });
}
