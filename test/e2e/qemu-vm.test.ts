import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { qemuThreads } from '../../src/qemu/pinning.js';
import type { QemuVm } from '../../src/qemu/vm.js';
import type { Variant } from '../../src/study/types.js';
import { bootTestGuest, qemuPids, type TestGuest, testVariant } from '../helpers/vm.js';

/**
 * One real guest (TCG by default) for the whole file: guest commands, files, live switching of the
 * test disk through several variants with fio on each, and QEMU dying under a pending call.
 */

let guest: TestGuest;
let rebooted: TestGuest | undefined;
let vm: QemuVm;
let qemuBefore: number[];

before(async () => {
  qemuBefore = qemuPids();
  guest = await bootTestGuest({
    variant: testVariant({ aio: 'native', iothreads: 0 }),
    name: 'kvmio-e2e-vm',
  });
  vm = guest.vm;
});

after(async () => {
  await guest?.dispose();
  await rebooted?.dispose();
  const left = qemuPids().filter((p) => !qemuBefore.includes(p));
  assert.deepEqual(left, [], 'no QEMU left running');
});

test('boots to an answering agent and runs argv commands with exit codes', async (t) => {
  t.diagnostic(`boot to agent: ${vm.bootMs} ms`);
  const uname = await vm.exec(['uname', '-r'], { timeoutMs: 10_000 });
  assert.equal(uname.exitCode, 0);
  assert.match(uname.stdout, /^\d+\.\d+\.\d+[-+]\S+\n$/);
  const failing = await vm.exec(['ls', '/no/such/path'], { timeoutMs: 10_000 });
  assert.notEqual(failing.exitCode, 0);
  assert.match(failing.stderr, /no\/such\/path/);
  const echoed = await vm.exec(['cat'], { timeoutMs: 10_000, input: 'via stdin\n' });
  assert.equal(echoed.stdout, 'via stdin\n');
  const ping = await vm.ping();
  assert.ok(ping.monitorMs > 0 && ping.agentMs > 0);
});

test('a command past its timeout is killed and reported', async () => {
  const t = Date.now();
  const r = await vm.exec(['sleep', '30'], { timeoutMs: 1000 });
  assert.equal(r.timedOut, true);
  assert.ok(Date.now() - t < 10_000);
  const pidof = await vm.exec(['pidof', 'sleep'], { timeoutMs: 10_000 });
  assert.equal(pidof.stdout.trim(), '', 'the timed-out command was killed in the guest');
});

test('reads and writes guest files, large ones in chunks', async () => {
  const version = (await vm.readFile('/proc/version')).toString();
  assert.match(version, /^Linux version/);
  const big = Buffer.alloc(3 * 1024 * 1024 + 17, 'kvmio');
  await vm.writeFile('/tmp/big', big);
  const back = await vm.readFile('/tmp/big');
  assert.equal(back.length, big.length);
  assert.ok(back.equals(big));
});

async function fioOn(dev: string): Promise<number> {
  const r = await vm.exec(
    [
      'fio',
      '--name=t',
      `--filename=${dev}`,
      '--direct=1',
      '--rw=randread',
      '--bs=4k',
      '--runtime=1',
      '--time_based',
      '--output-format=json',
    ],
    { timeoutMs: 60_000 },
  );
  assert.equal(r.exitCode, 0, r.stderr);
  const json = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')));
  return json.jobs[0].read.io_bytes as number;
}

test('switches the test disk live through several variants; the guest sees each and fio runs', async (t) => {
  assert.equal(await vm.testDisk(), '/dev/vda');
  const steps: Variant[] = [
    testVariant({ aio: 'threads', iothreads: 1 }),
    testVariant({ aio: 'io_uring', iothreads: 1, bus: 'virtio-scsi' }),
    testVariant({ aio: 'native', iothreads: 1 }),
  ];
  for (const next of steps) {
    assert.ok(vm.canSwitchLive(next));
    await vm.switchVariant(next); // verifies the live config through QMP, throws on a mismatch
    assert.equal(vm.variant.id, next.id);
    const dev = await vm.testDisk();
    assert.match(dev, next.bus === 'virtio-blk' ? /^\/dev\/vd[a-z]$/ : /^\/dev\/sd[a-z]$/);
    assert.ok((await fioOn(dev)) > 0);
    t.diagnostic(`switch to ${next.id}: ${vm.lastSwitchMs} ms`);
  }
  assert.equal(vm.canSwitchLive(testVariant({ memory: 'hugepages' })), false);
});

test('a variant that needs a reboot (hugepages, virtio-scsi) boots pinned, and fio runs', async (t) => {
  const next = testVariant({ aio: 'native', iothreads: 1, bus: 'virtio-scsi', memory: 'hugepages' });
  assert.equal(vm.canSwitchLive(next), false);
  const started = Date.now();
  await guest.dispose();
  rebooted = await bootTestGuest({
    variant: next,
    name: 'kvmio-e2e-vm2',
    pinning: { vcpus: '0-1', emulator: '1', iothreads: '0' },
  });
  vm = rebooted.vm;
  t.diagnostic(`reboot into ${next.id} (stop + boot to agent): ${Date.now() - started} ms`);
  assert.match(await vm.testDisk(), /^\/dev\/sd[a-z]$/);
  assert.ok((await fioOn(await vm.testDisk())) > 0);
  const allowed = new Map(
    qemuThreads(vm.qemuPid()).map((th) => [
      th.comm,
      /Cpus_allowed_list:\s*(\S+)/.exec(
        readFileSync(`/proc/${vm.qemuPid()}/task/${th.tid}/status`, 'utf8'),
      )?.[1],
    ]),
  );
  assert.equal(allowed.get('CPU 0/TCG'), '0');
  assert.equal(allowed.get('CPU 1/TCG'), '1');
  assert.equal(allowed.get('IO kvmio-iot0'), '0');
  assert.equal(allowed.get('qemu-system-x86'), '1');
});

test('QEMU killed mid-exec: the pending call fails fast with the exit signal', async () => {
  const pending = vm.exec(['sleep', '60'], { timeoutMs: 120_000 });
  await new Promise((r) => setTimeout(r, 300));
  const t = Date.now();
  process.kill(vm.qemuPid(), 'SIGKILL');
  await assert.rejects(pending, /QEMU \(kvmio-e2e-vm2\) was killed by SIGKILL unexpectedly/);
  assert.ok(Date.now() - t < 3000, `rejected after ${Date.now() - t} ms`);
  await assert.rejects(vm.exec(['true'], { timeoutMs: 1000 }), /SIGKILL/);
  await vm.stop();
  await vm.stop(); // idempotent
});
