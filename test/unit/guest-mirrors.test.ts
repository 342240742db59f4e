import assert from 'node:assert/strict';
import { test } from 'node:test';
import { debianMirrors, parseAptSources } from '../../src/guest/debian.js';

// Both formats as apt writes them; the deb822 stanza mirrors this machine's /etc/apt/sources.list.d/debian.sources.
const deb822 = `#deb822
Types: deb
# a comment between fields
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security/
Suites: bookworm-security
Components: main
`;
const oneLine =
  '#one-line\ndeb [signed-by=/k.gpg] http://other.example/debian bookworm main\n# deb http://old.example/x bookworm main\n';

test('apt sources in both formats give the guest release mirrors', () => {
  assert.deepEqual(parseAptSources(oneLine), [{ uri: 'http://other.example/debian', suites: ['bookworm'] }]);
  const mirrors = debianMirrors(deb822, 'bookworm');
  assert.deepEqual(mirrors, {
    mirror: 'http://mirror.example/debian',
    security: 'http://mirror.example/debian-security',
  });
});

test("a guest release the host's apt does not list comes from the host's Debian mirror", () => {
  assert.deepEqual(debianMirrors(deb822, 'trixie'), {
    mirror: 'http://mirror.example/debian',
    security: 'http://mirror.example/debian-security',
  });
});

test('a host without a Debian source is told to set KVMIO_DEBIAN_MIRROR', () => {
  const saved = process.env.KVMIO_DEBIAN_MIRROR;
  delete process.env.KVMIO_DEBIAN_MIRROR;
  try {
    assert.throws(
      () => debianMirrors('#one-line\ndeb http://archive.example/ubuntu jammy main\n', 'trixie'),
      /KVMIO_DEBIAN_MIRROR/,
    );
  } finally {
    if (saved !== undefined) process.env.KVMIO_DEBIAN_MIRROR = saved;
  }
});
