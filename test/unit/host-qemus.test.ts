import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type DoctorQemu, doctorQemuSources, formatDoctorQemus } from '../../src/host/qemus.js';

/** What doctor learnt of the two QEMUs of the test machine, recorded (fixtures/qemu/README). */
const fixtures = fileURLToPath(new URL('../../../test/fixtures/qemu/', import.meta.url));
function recorded(file: string, why: string[]): DoctorQemu {
  const { capabilities: c, aio } = JSON.parse(readFileSync(`${fixtures}${file}`, 'utf8'));
  return {
    path: c.binary,
    why,
    version: `${c.version.major}.${c.version.minor}.${c.version.micro}`,
    package: c.version.package,
    aio,
    vqMapping: { 'virtio-blk': c.iothreadVqMapping, 'virtio-scsi': c.scsiIothreadVqMapping },
  };
}

test('doctor lists each QEMU with version, why, the aio modes that work and vq-mapping per bus', () => {
  const q72 = recorded('abilities-7.2.json', ['default (qemu-system-x86_64 on PATH)']);
  const q10 = recorded('abilities-10.0.json', ['KVMIO_QEMU', 'matrix.qemu q10 of axis.yaml']);
  assert.deepEqual(formatDoctorQemus([q10, q72]), [
    '/opt/kvmio/qemu-10/bin/qemu-system-x86_64 10.0.2 (KVMIO_QEMU; matrix.qemu q10 of axis.yaml): aio threads, native, io_uring; one disk over several iothreads (iothread-vq-mapping): virtio-blk yes, virtio-scsi yes',
    '/usr/bin/qemu-system-x86_64 7.2.22 (default (qemu-system-x86_64 on PATH)): aio threads, native, io_uring; one disk over several iothreads (iothread-vq-mapping): virtio-blk no, virtio-scsi no',
  ]);
  // A mode whose read fell back is named with QEMU's reason, not listed as working.
  const fallback = {
    ...q10,
    aio: { ...q10.aio, io_uring: 'Unable to use linux io_uring, falling back to thread pool' },
  };
  assert.match(
    formatDoctorQemus([fallback])[0]!,
    /aio threads, native, io_uring NOT \(Unable to use linux io_uring/,
  );
  assert.equal(
    formatDoctorQemus([
      { path: '/opt/q/qemu', why: ['matrix.qemu x'], error: 'exited (1) while probing' },
    ])[0],
    '/opt/q/qemu (matrix.qemu x): cannot be probed: exited (1) while probing',
  );
});

test('doctor looks at KVMIO_QEMU, the QEMU found without it, and those a study names', () => {
  const sources = doctorQemuSources([{ path: '/opt/q/qemu', why: 'matrix.qemu q of s.yaml' }], {
    KVMIO_QEMU: '/nonexistent/qemu',
    PATH: '/nonexistent-bin',
  });
  assert.deepEqual(sources[0], {
    path: '/nonexistent/qemu',
    why: 'KVMIO_QEMU=/nonexistent/qemu is not an executable file',
  });
  assert.equal(sources.length, 3);
  assert.deepEqual(sources[2], { path: '/opt/q/qemu', why: 'matrix.qemu q of s.yaml' });
});
