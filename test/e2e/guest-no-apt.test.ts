import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Store } from '../../src/store/store.js';
import { inMountNamespace } from '../helpers/namespace.js';

/**
 * The guest is built on a host without apt or dpkg: in a private mount namespace apt-get, dpkg and
 * dpkg-deb are empty non-executable files and /etc/apt an empty directory (so no host apt sources
 * either: Debian's default mirror is used). Then a short study runs on that guest.
 *
 * The cache (KVMIO_CACHE) is the test's own, kept between runs in the temp directory: the signed
 * index and the .debs there are reused once their hashes check, so reruns do not download again;
 * the built guest itself is removed first, so every run builds it.
 */

const bin = fileURLToPath(new URL('../../../bin/kvmio.js', import.meta.url));
const cache = join(tmpdir(), 'kvmio-test-guest-no-apt-cache');
const work = mkdtempSync(join(tmpdir(), 'kvmio-no-apt-'));
after(() => rmSync(work, { recursive: true, force: true }));

const HIDDEN_FILES = ['/usr/bin/apt-get', '/usr/bin/apt', '/usr/bin/dpkg', '/usr/bin/dpkg-deb'];

test('guest build with apt, dpkg and the apt sources hidden, then a study on that guest', {
  timeout: 1_800_000,
}, () => {
  mkdirSync(join(cache, 'guest'), { recursive: true });
  for (const name of readdirSync(join(cache, 'guest'))) {
    if (/^[0-9a-f]{16}$|^current.*\.json$/.test(name))
      rmSync(join(cache, 'guest', name), { recursive: true });
  }
  const empty = join(work, 'empty');
  writeFileSync(empty, '');
  chmodSync(empty, 0o644);
  const emptyDir = join(work, 'empty-dir');
  mkdirSync(emptyDir);
  const binds = [
    ...HIDDEN_FILES.filter((f) => existsSync(f)).map((over) => ({ over, with: empty })),
    { over: '/etc/apt', with: emptyDir },
  ];
  const env: NodeJS.ProcessEnv = { ...process.env, KVMIO_CACHE: cache };
  delete env.KVMIO_DEBIAN_MIRROR;
  delete env.KVMIO_DEBIAN_SECURITY_MIRROR;

  // The namespace really hides them.
  const probe = inMountNamespace(
    binds,
    ['sh', '-c', 'dpkg-deb --version; apt-get --version; ls -A /etc/apt'],
    {
      env,
      timeoutMs: 30_000,
    },
  );
  assert.match(probe.stderr, /dpkg-deb: Permission denied/);
  assert.match(probe.stderr, /apt-get: Permission denied/);
  assert.equal(probe.stdout.trim(), '');

  const started = Date.now();
  const build = inMountNamespace(binds, [process.execPath, bin, 'guest', 'build'], {
    env,
    timeoutMs: 1_500_000,
  });
  assert.equal(build.status, 0, `${build.stdout}\n${build.stderr}`);
  const seconds = (Date.now() - started) / 1000;
  assert.match(
    build.stderr,
    /from http:\/\/deb\.debian\.org\/debian and http:\/\/deb\.debian\.org\/debian-security \(Debian's default mirror\)/,
  );
  assert.match(build.stderr, /guest: built in/);
  const downloads = /downloading (\d+) of (\d+) packages/.exec(build.stderr);
  process.stderr.write(
    `guest-no-apt: build ${seconds.toFixed(0)}s, ${downloads ? `${downloads[1]} of ${downloads[2]} packages downloaded` : 'every package from the cache'}\n`,
  );

  const study = join(work, 'study.yaml');
  writeFileSync(
    study,
    `name: no-apt
backend: qemu
guest: { vcpus: 1, memory: 512MiB }
disk: { path: ${join(work, 'disk.raw')}, size: 64MiB }
matrix: { aio: [threads], iothreads: [0] }
baseline: false
repetitions: 1
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 2s, ramp: 0s }
`,
  );
  const db = join(work, 'results.sqlite');
  const run = spawnSync(process.execPath, [bin, 'run', study, '--db', db], {
    env: { ...env, KVMIO_ACCEL: process.env.KVMIO_TEST_ACCEL ?? 'tcg' },
    encoding: 'utf8',
    timeout: 900_000,
  });
  assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
  const store = Store.open(db);
  try {
    const iops = store.db.prepare(`SELECT value FROM measurements WHERE metric = 'read.iops'`).all() as {
      value: number;
    }[];
    assert.ok(iops.length >= 1 && iops.every((r) => r.value > 0), JSON.stringify(iops));
  } finally {
    store.close();
  }
});
