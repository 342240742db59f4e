import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { DoctorReport } from '../../src/host/doctor.js';

const bin = fileURLToPath(new URL('../../../bin/kvmio.js', import.meta.url));

/** Runs the real `kvmio doctor`: real QEMU, fio, virsh; the accelerator probe is cached per host boot. */
function doctor(args: string[]) {
  const r = spawnSync(process.execPath, [bin, 'doctor', ...args], { encoding: 'utf8', timeout: 180_000 });
  return r;
}

test('doctor --json reports host facts, accelerator, libvirt and guest, exit 0', () => {
  const r = doctor(['--json']);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout) as DoctorReport;
  const f = report.facts;
  assert.match(f.kvmioVersion, /^\d+\.\d+\.\d+/);
  assert.ok(f.cpu.logicalCpus >= 1 && f.memoryBytes > 0);
  assert.match(f.qemu.version ?? '', /^\d+\.\d+/);
  assert.match(f.fio.version ?? '', /^\d+\.\d+/);
  assert.equal(typeof f.hugepages.total, 'number');
  assert.ok(Array.isArray(f.hugepages.mounts));
  assert.equal(typeof f.ioUring.kernelDetail, 'string');
  assert.equal(typeof f.ioUring.qemuAccepts, 'boolean');
  assert.ok(['kvm', 'tcg'].includes(report.accelerator.accel));
  assert.ok(report.accelerator.reason.length > 0);
  if (report.accelerator.accel === 'tcg') {
    assert.match(report.accelerator.warning ?? '', /TCG/);
    assert.ok(report.warnings.includes(report.accelerator.warning!));
  }
  assert.equal(typeof report.libvirtDaemon.answers, 'boolean');
  assert.equal(report.guest.built, true, 'the accelerator probe needs (and builds) the guest');
  assert.match(report.guest.kernelVersion ?? '', /cloud-amd64$/);
});

test('doctor prints a table and, under TCG, the warning', () => {
  const r = doctor([]);
  assert.equal(r.status, 0, r.stderr);
  for (const row of [
    'qemu',
    'accelerator',
    'fio',
    'libvirt daemon',
    'hugepages',
    'io_uring kernel',
    'io_uring qemu',
    'guest',
  ]) {
    assert.match(r.stdout, new RegExp(`^${row}\\s{2,}\\S`, 'm'), `row ${row}`);
  }
  if (/^accelerator\s+TCG/m.test(r.stdout)) assert.match(r.stdout, /^WARNING: KVM is not usable/m);
});
