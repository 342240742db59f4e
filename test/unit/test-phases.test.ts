import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * make test's phase logic (scripts/test-phases.sh) in a scratch tree where the commands it runs are
 * stand-ins that log what they were asked: node (the test runner), libvirtd --version, the QEMUs,
 * and test-stack.sh/services.sh (which "upgrade" libvirt by changing what libvirtd --version says).
 * The version lines have the real programs' format.
 */

const script = fileURLToPath(new URL('../../../scripts/test-phases.sh', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'kvmio-test-phases-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

function executable(path: string, text: string): void {
  writeFileSync(path, `#!/bin/sh\n${text}\n`);
  chmodSync(path, 0o755);
}

/** Runs the script in a fresh tree; libvirt starts at `libvirt`, test-stack makes it 11.3.0. */
function runPhases(opts: { libvirt: string; arg?: string; failingNode?: string }) {
  const root = mkdtempSync(join(scratch, 'tree-'));
  const bin = join(root, 'fakebin');
  const log = join(root, 'log');
  const version = join(root, 'libvirt-version');
  for (const dir of ['scripts', 'fakebin', 'dist/test/unit', 'dist/test/e2e'])
    mkdirSync(join(root, dir), { recursive: true });
  copyFileSync(script, join(root, 'scripts/test-phases.sh'));
  for (const f of [
    'unit/a.test.js',
    'e2e/guest-boot.test.js',
    'e2e/libvirt-vm.test.js',
    'e2e/stack-qemu10-direct.test.js',
  ])
    writeFileSync(join(root, 'dist/test', f), '');
  writeFileSync(version, opts.libvirt);
  executable(join(root, 'scripts/test-stack.sh'), `echo test-stack >> ${log}; echo 11.3.0 > ${version}`);
  executable(join(root, 'scripts/services.sh'), `echo services >> ${log}`);
  executable(join(bin, 'libvirtd'), `echo "libvirtd (libvirt) $(cat ${version})"`);
  executable(
    join(bin, 'qemu-system-x86_64'),
    'echo "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)"',
  );
  executable(
    join(bin, 'qemu10'),
    'echo "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)"',
  );
  // The runner fails when its file list contains `failingNode`.
  executable(
    join(bin, 'node'),
    `echo "node $*" >> ${log}\ncase "$*" in *"${opts.failingNode ?? 'no-such-file'}"*) exit 1 ;; esac`,
  );
  const r = spawnSync('bash', [join(root, 'scripts/test-phases.sh'), ...(opts.arg ? [opts.arg] : [])], {
    encoding: 'utf8',
    env: { PATH: `${bin}:/usr/bin:/bin`, KVMIO_TEST_QEMU10: join(bin, 'qemu10') },
  });
  return { ...r, log: readFileSync(log, 'utf8').trim().split('\n') };
}

const runs = (line: string) =>
  line.replace(/^node --test --test-concurrency=1 --test-reporter=spec /, '').split(' ');

test('on Debian 12 libvirt 9.0 everything but the stack files runs first, then the stack files and libvirt again on 11.3', () => {
  const r = runPhases({ libvirt: '9.0.0' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.log.length, 4, r.log.join('\n'));
  assert.deepEqual(runs(r.log[0]!), [
    'dist/test/unit/a.test.js',
    'dist/test/e2e/guest-boot.test.js',
    'dist/test/e2e/libvirt-vm.test.js',
  ]);
  assert.deepEqual(r.log.slice(1, 3), ['test-stack', 'services']);
  assert.deepEqual(runs(r.log[3]!), [
    'dist/test/e2e/stack-qemu10-direct.test.js',
    'dist/test/e2e/libvirt-vm.test.js',
  ]);
  assert.match(r.stdout, /test phase 1: the host's stack: QEMU 7\.2\.22, libvirt 9\.0\.0\n/);
  assert.match(
    r.stdout,
    /test phase 2: the study's stack: QEMU 10\.0\.2 \(\S+qemu10\), libvirt 11\.3\.0 \(its default QEMU: 7\.2\.22\)/,
  );
});

test('where libvirt is already 11.x phase 1 runs on it, says so, and phase 2 does not rerun the libvirt files', () => {
  const r = runPhases({ libvirt: '11.3.0' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /libvirt is already 11\.3\.0, not Debian 12's 9\.0 .*phase 1 runs on 11\.3\.0/);
  assert.match(r.stdout, /the libvirt e2e files already ran on libvirt 11\.3\.0 in phase 1/);
  assert.deepEqual(runs(r.log.at(-1)!), ['dist/test/e2e/stack-qemu10-direct.test.js']);
});

test('a failing phase 1 still runs phase 2, and the script fails naming phase 1', () => {
  const r = runPhases({ libvirt: '9.0.0', failingNode: 'guest-boot' });
  assert.equal(r.status, 1);
  assert.equal(r.log.length, 4);
  assert.match(r.stderr, /tests failed in phase 1 \(host's stack\)$/m);
});

test('each phase runs alone by its argument; another argument is refused with exit 2', () => {
  const host = runPhases({ libvirt: '9.0.0', arg: 'host' });
  assert.equal(host.status, 0, host.stderr);
  assert.equal(host.log.length, 1);
  const study = runPhases({ libvirt: '9.0.0', arg: 'study' });
  assert.equal(study.status, 0, study.stderr);
  assert.deepEqual(study.log.slice(0, 2), ['test-stack', 'services']);
  assert.deepEqual(runs(study.log[2]!), [
    'dist/test/e2e/stack-qemu10-direct.test.js',
    'dist/test/e2e/libvirt-vm.test.js',
  ]);
  const bad = spawnSync('bash', [script, 'everything'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown phase 'everything' \(host, study\)/);
});
