import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { DoctorReport } from '../../src/host/doctor.js';
import { qemu10 } from '../helpers/stack.js';

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

test('doctor --study lists KVMIO_QEMU, the default QEMU and the study matrix.qemu, each probed for real', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvmio-doctor-qemus-'));
  try {
    const study = join(dir, 'axis.yaml');
    writeFileSync(
      study,
      `matrix: { qemu: [/usr/bin/qemu-system-x86_64, ${qemu10()}] }\nworkloads: [ { kind: fio, runtime: 2s } ]\n`,
    );
    const r = spawnSync(process.execPath, [bin, 'doctor', '--json', '--study', study], {
      encoding: 'utf8',
      timeout: 300_000,
      env: { ...process.env, KVMIO_QEMU: qemu10() },
    });
    assert.equal(r.status, 0, r.stderr);
    const { qemus } = JSON.parse(r.stdout) as DoctorReport;
    const ten = qemus.find((q) => q.path === qemu10());
    const system = qemus.find((q) => q.path === '/usr/bin/qemu-system-x86_64');
    assert.equal(qemus.length, 2, JSON.stringify(qemus));
    assert.ok(ten && system, JSON.stringify(qemus));
    assert.ok(ten.why.includes('KVMIO_QEMU') && ten.why.some((w) => w.startsWith('matrix.qemu 10.')));
    assert.ok(
      system.why.some((w) => w.startsWith('default')) &&
        system.why.some((w) => w.startsWith('matrix.qemu 7.')),
    );
    assert.match(ten.version ?? '', /^10\./);
    assert.deepEqual(ten.vqMapping, { 'virtio-blk': true, 'virtio-scsi': true });
    assert.match(system.version ?? '', /^7\.2\./);
    assert.deepEqual(system.vqMapping, { 'virtio-blk': false, 'virtio-scsi': false });
    // Every mode either works or carries QEMU's reason; on this machine all three work in both.
    for (const q of [ten, system]) assert.deepEqual(q.aio, { threads: true, native: true, io_uring: true });
    const text = spawnSync(process.execPath, [bin, 'doctor', '--study', study], {
      encoding: 'utf8',
      timeout: 300_000,
      env: { ...process.env, KVMIO_QEMU: qemu10() },
    });
    assert.match(
      text.stdout,
      /^QEMUs:\n {2}\/opt\/kvmio\/qemu-10\/bin\/qemu-system-x86_64 10\.0\.\d+ \(KVMIO_QEMU; matrix\.qemu/m,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
