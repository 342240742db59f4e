import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { closeHostAccesses, hostAccessFor, type SshHost } from '../../src/host/access.js';
import { QemuCpuMeter } from '../../src/metrics/cpu.js';
import { THREAD_CLASSES } from '../../src/study/qemu-threads.js';
import { sleep } from '../../src/util/proc.js';
import { releaseTestHost, testHostUp } from '../helpers/test-host.js';

/**
 * Per-thread CPU on a remote host: a QEMU on the test host (scripts/test-host.sh: its own network
 * namespace, sshd and libvirtd, reached only by SSH) read over SSH and, since both hosts share this
 * kernel, read locally at the same time.
 */

let uri = '';

before(() => {
  uri = testHostUp();
  assert.match(uri, /^qemu\+ssh:\/\/root@[\d.]+\/system$/);
});
after(async () => {
  await closeHostAccesses();
  releaseTestHost();
});

test('per-thread CPU of a QEMU on the test host, read over SSH, matches the same QEMU read locally', {
  timeout: 120_000,
}, async () => {
  const host = hostAccessFor(uri, false) as SshHost;
  assert.ok(host && !host.local);
  // A QEMU started on the test host (SeaBIOS looking for a boot device); both
  // hosts share this kernel, so /proc here sees the same threads.
  let pid: number | undefined;
  const qemu = host.run(
    [
      'sh',
      '-c',
      'echo "$$"; exec "$@"',
      'qemu',
      'qemu-system-x86_64',
      '-name',
      'kvmio-e2e-cpu,debug-threads=on',
      '-machine',
      'q35',
      '-accel',
      'tcg',
      '-m',
      '64',
      '-display',
      'none',
      '-nodefaults',
      '-object',
      'iothread,id=io0',
    ],
    {
      allowFailure: true,
      timeoutMs: 30_000,
      onStdout: (c) => {
        pid ??= Number(/^(\d+)\n/.exec(c)?.[1]) || undefined;
      },
    },
  );
  for (let i = 0; i < 100 && pid === undefined; i++) await sleep(100);
  assert.ok(pid, 'QEMU started on the test host');
  await sleep(1500);
  // The remote reader session is warmed up first, so both windows open within a round trip.
  await QemuCpuMeter.start(pid, { host }).then((m) => m.cancel());
  const remote = await QemuCpuMeter.start(pid, { host, intervalMs: 500 });
  const local = await QemuCpuMeter.start(pid, { intervalMs: 500 });
  await sleep(3000);
  const [r, l] = await Promise.all([remote.stop(), local.stop()]);
  await host.run(['kill', String(pid)]);
  await qemu;
  assert.ok(l.byClass.vcpu > 0 && l.byClass.main > 0, `QEMU runs: ${JSON.stringify(l.byClass)}`);
  // Same classes, same threads. The two windows open and close a round trip apart (on this loaded
  // machine up to a few hundred ms), so the comparison is of CPU per second of each window.
  assert.deepEqual(r.threads, l.threads);
  assert.ok(Math.abs(r.seconds - l.seconds) < 0.5, `${r.seconds} vs ${l.seconds}`);
  const rate = (w: typeof l, c: (typeof THREAD_CLASSES)[number]) => w.byClass[c] / w.seconds;
  for (const c of THREAD_CLASSES)
    assert.ok(
      Math.abs(rate(r, c) - rate(l, c)) <= 0.1 * rate(l, c) + 0.02,
      `${c}: ${rate(r, c)} vs ${rate(l, c)} CPU s/s`,
    );
  assert.ok(Math.abs(r.totalS / r.seconds - l.totalS / l.seconds) <= 0.1 * (l.totalS / l.seconds) + 0.02);
});
