import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DEFAULT_MIRROR,
  DEFAULT_SECURITY_MIRROR,
  debianMirrors,
  debianSources,
  parseAptSources,
} from '../../src/guest/debian.js';

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
  withEnv({}, () =>
    assert.deepEqual(debianMirrors('bookworm', deb822), {
      mirror: 'http://mirror.example/debian',
      security: 'http://mirror.example/debian-security',
      from: "this host's apt sources",
    }),
  );
});

test("a host without Debian sources for the release (any non-Debian host) uses Debian's own mirrors", () => {
  withEnv({}, () =>
    assert.deepEqual(debianMirrors('trixie', '#one-line\ndeb http://archive.example/ubuntu jammy main\n'), {
      mirror: DEFAULT_MIRROR,
      security: DEFAULT_SECURITY_MIRROR,
      from: "Debian's default mirror",
    }),
  );
});

test('KVMIO_DEBIAN_MIRROR and KVMIO_DEBIAN_SECURITY_MIRROR win over the host sources', () => {
  withEnv(
    { KVMIO_DEBIAN_MIRROR: 'http://local/debian/', KVMIO_DEBIAN_SECURITY_MIRROR: 'http://local/sec' },
    () => {
      const m = debianMirrors('bookworm', deb822);
      assert.deepEqual(m, {
        mirror: 'http://local/debian',
        security: 'http://local/sec',
        from: 'KVMIO_DEBIAN_MIRROR',
      });
      assert.deepEqual(
        debianSources('bookworm', m, ['bookworm-backports']).map((s) => `${s.uri} ${s.suite}`),
        [
          'http://local/debian bookworm',
          'http://local/debian bookworm-updates',
          'http://local/sec bookworm-security',
          'http://local/debian bookworm-backports',
        ],
      );
    },
  );
});

function withEnv(vars: Record<string, string>, body: () => void): void {
  const names = ['KVMIO_DEBIAN_MIRROR', 'KVMIO_DEBIAN_SECURITY_MIRROR'];
  const saved = names.map((n) => process.env[n]);
  for (const n of names) delete process.env[n];
  Object.assign(process.env, vars);
  try {
    body();
  } finally {
    names.forEach((n, i) => {
      if (saved[i] === undefined) delete process.env[n];
      else process.env[n] = saved[i];
    });
  }
}
