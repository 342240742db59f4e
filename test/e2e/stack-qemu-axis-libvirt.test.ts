import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { axisStudy, checkAxisRun, kvmio, SYSTEM_QEMU, versionOf } from '../helpers/qemu-axis.js';
import { qemu10 } from '../helpers/stack.js';

/**
 * QEMU version as a matrix axis under libvirt: the system QEMU and QEMU 10 each the `<emulator>` of
 * their own domain (checked in the live XML and by query-version), aio=native with an iothread, 1
 * repetition, fio 2 s under TCG. Where libvirt cannot probe QEMU 10 the test is skipped with
 * libvirt's own words. The disk lives in /var/tmp: libvirt's QEMU cannot enter mkdtemp's 0700 dirs.
 */

const dir = mkdtempSync(join(tmpdir(), 'kvmio-qemu-axis-lv-'));
const diskPath = `/var/tmp/kvmio-e2e-axis-${process.pid}.raw`;
after(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(diskPath, { force: true });
});

const probe = spawnSync(
  'virsh',
  ['-c', 'qemu:///system', 'domcapabilities', '--emulatorbin', qemu10(), '--virttype', 'qemu'],
  { encoding: 'utf8', timeout: 120_000 },
);
const skip =
  probe.status === 0
    ? false
    : `libvirt cannot run ${qemu10()}: ${(probe.stderr || probe.error?.message || '').trim().replace(/\n/g, '; ')}`;

test('matrix.qemu under libvirt: each QEMU the <emulator> of its own domain, recorded and reported by version', {
  timeout: 900_000,
  skip,
}, () => {
  const study = join(dir, 'axis.yaml');
  writeFileSync(study, axisStudy({ backend: 'libvirt', diskPath, qemu10: qemu10() }));
  const db = join(dir, 'results.sqlite');
  const run = kvmio(['run', study, '--db', db, '--quiet']);
  assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
  checkAxisRun(db, join(dir, 'report'), {
    q72: versionOf(SYSTEM_QEMU),
    q10: versionOf(qemu10()),
    qemu10: qemu10(),
  });
});
