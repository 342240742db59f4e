import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { test } from 'node:test';
import { probeAccelerator, TCG_WARNING } from '../../src/host/accel.js';
import {
  parseCpuinfo,
  parseFioVersion,
  parseHugetlbfsMounts,
  parseMeminfo,
  parseQemuVersion,
} from '../../src/host/facts.js';
import { UserError } from '../../src/util/errors.js';

// The parsers are checked against this host's live /proc files and Node's own view of the machine.

test('cpuinfo: logical CPUs and model agree with os.cpus()', () => {
  const cpu = parseCpuinfo(readFileSync('/proc/cpuinfo', 'utf8'));
  assert.equal(cpu.logicalCpus, cpus().length);
  assert.equal(cpu.model, cpus()[0]?.model.trim());
  assert.ok(cpu.physicalCores >= 1 && cpu.physicalCores <= cpu.logicalCpus);
  assert.ok(cpu.sockets >= 1);
});

test('meminfo: MemTotal is os.totalmem(), hugepage counts are numbers', () => {
  const m = parseMeminfo(readFileSync('/proc/meminfo', 'utf8'));
  assert.equal(m.get('MemTotal'), totalmem());
  assert.equal(typeof m.get('HugePages_Total'), 'number');
  assert.ok((m.get('HugePages_Free') ?? 0) <= (m.get('HugePages_Total') ?? 0));
  assert.equal(m.get('Hugepagesize')! % 4096, 0);
});

test('hugetlbfs mounts are found with their page size', () => {
  const live = readFileSync('/proc/mounts', 'utf8');
  const mounts = parseHugetlbfsMounts(live);
  assert.equal(mounts.length, live.split('\n').filter((l) => l.split(' ')[2] === 'hugetlbfs').length);
  // Recorded /proc/mounts line from this host after scripts/services.sh, plus an escaped space.
  assert.deepEqual(
    parseHugetlbfsMounts(
      'hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\nnone /mnt/huge\\040pages hugetlbfs rw 0 0\nproc /proc proc rw 0 0\n',
    ),
    [{ path: '/dev/hugepages', pagesize: '2M' }, { path: '/mnt/huge pages' }],
  );
});

test('tool versions are read from their real output', () => {
  // Output of `qemu-system-x86_64 --version` and `fio --version` on this host.
  assert.equal(
    parseQemuVersion(
      'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022',
    ),
    '7.2.22',
  );
  assert.equal(parseFioVersion('fio-3.33\n'), '3.33');
  assert.equal(parseQemuVersion('bash: qemu: command not found'), undefined);
});

test('KVMIO_ACCEL overrides the probe; a wrong value is a user error', async () => {
  const saved = process.env.KVMIO_ACCEL;
  try {
    process.env.KVMIO_ACCEL = 'tcg';
    assert.deepEqual(await probeAccelerator(), {
      accel: 'tcg',
      reason: 'KVMIO_ACCEL=tcg',
      warning: TCG_WARNING,
    });
    process.env.KVMIO_ACCEL = 'kvm';
    assert.deepEqual(await probeAccelerator(), { accel: 'kvm', reason: 'KVMIO_ACCEL=kvm' });
    process.env.KVMIO_ACCEL = 'hvf';
    await assert.rejects(probeAccelerator(), (e) => e instanceof UserError && /kvm.*tcg/.test(e.message));
  } finally {
    if (saved === undefined) delete process.env.KVMIO_ACCEL;
    else process.env.KVMIO_ACCEL = saved;
  }
});
