import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { DoctorReport } from '../../src/host/doctor.js';
import { qemuBinary } from '../../src/qemu/binary.js';
import { inMountNamespace } from '../helpers/namespace.js';

/**
 * A RHEL-like host: QEMU is /usr/libexec/qemu-kvm and nothing named qemu-system-x86_64 is on PATH.
 * In a private mount namespace, /usr/libexec is a directory holding only qemu-kvm (this host's real
 * QEMU, bind-mounted), and the real qemu-system-x86_64 is hidden under an empty non-executable file.
 */

const bin = fileURLToPath(new URL('../../../bin/kvmio.js', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'kvmio-libexec-'));
after(() => rmSync(work, { recursive: true, force: true }));

test('doctor finds and runs /usr/libexec/qemu-kvm when qemu-system-x86_64 is not on PATH', {
  timeout: 600_000,
}, () => {
  const real = realpathSync(qemuBinary());
  const libexec = join(work, 'libexec');
  mkdirSync(libexec);
  writeFileSync(join(libexec, 'qemu-kvm'), '');
  const empty = join(work, 'empty');
  writeFileSync(empty, '');
  chmodSync(empty, 0o644);
  const env = { ...process.env };
  delete env.KVMIO_QEMU;
  const r = inMountNamespace(
    [
      { over: join(libexec, 'qemu-kvm'), with: real },
      { over: '/usr/libexec', with: libexec },
      { over: real, with: empty },
    ],
    [process.execPath, bin, 'doctor', '--json'],
    { env, timeoutMs: 500_000 },
  );
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout) as DoctorReport;
  assert.equal(report.facts.qemu.binary, '/usr/libexec/qemu-kvm');
  assert.equal(report.facts.qemu.reason, 'qemu-system-x86_64 is not on PATH; /usr/libexec/qemu-kvm is');
  assert.match(report.facts.qemu.version ?? '', /^\d+\.\d+/, 'and it ran');
  assert.deepEqual(
    report.missing.needs.map((n) => n.need),
    [],
  );
});
