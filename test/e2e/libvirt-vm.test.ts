import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { ensureGuest, type GuestImage } from '../../src/guest/build.js';
import type { GuestVm } from '../../src/guest/vm.js';
import { Virsh } from '../../src/libvirt/virsh.js';
import { type LibvirtVm, startLibvirtVm } from '../../src/libvirt/vm.js';
import type { Study, Variant } from '../../src/study/types.js';
import { assertDomainsGone, libvirtTestStudy, LIBVIRT_URI as URI } from '../helpers/libvirt.js';
import { makeSparseFile } from '../helpers/vm.js';

/**
 * Real libvirt under TCG (domain type 'qemu'): two guests booted side by side, one per memory backing
 * (4k, hugepages). The 4k guest is switched live from virtio-blk/native/iothread to
 * virtio-scsi/io_uring and then to the main loop, and fio runs on the test disk after every switch.
 * Disks live directly in /var/tmp: libvirt's QEMU (user libvirt-qemu) cannot enter mkdtemp's 0700 dirs.
 */

const virsh = new Virsh(URI);
const tag = `${process.pid}`;
const disks = ['a', 'b', 'c'].map((d) => `/var/tmp/kvmio-e2e-libvirt-${tag}-${d}.raw`);
const names = [`kvmio-e2e-lv-${tag}-4k`, `kvmio-e2e-lv-${tag}-huge`];
const vms: GuestVm[] = [];

function variant(over: Omit<Variant, 'id' | 'cache' | 'queues'> & Partial<Variant>): Variant {
  const id = `${over.bus === 'virtio-blk' ? 'blk' : 'scsi'}-${over.aio}-io${over.iothreads}-${over.memory}`;
  return { id, cache: 'none', queues: 1, ...over };
}

function study(diskPath: string, pinning?: Study['pinning']): Study {
  return libvirtTestStudy('e2e-libvirt', diskPath, { pinning });
}

/** A 2 s fio job on the guest's test disk; returns the bytes it moved. */
async function fio(vm: GuestVm, device: string, rw: 'randread' | 'randwrite'): Promise<number> {
  const r = await vm.exec(
    [
      'fio',
      '--name=t',
      `--filename=${device}`,
      `--rw=${rw}`,
      '--bs=4k',
      '--iodepth=4',
      '--ioengine=libaio',
      '--direct=1',
      '--size=32m',
      '--runtime=2',
      '--time_based',
      '--output-format=json',
    ],
    { timeoutMs: 120_000 },
  );
  assert.equal(r.exitCode, 0, `fio failed: ${r.stderr}`);
  const job = (JSON.parse(r.stdout) as { jobs: Array<Record<string, { io_bytes: number }>> }).jobs[0];
  const bytes = job?.[rw === 'randread' ? 'read' : 'write']?.io_bytes ?? 0;
  assert.ok(bytes > 0, `fio moved no data on ${device}`);
  return bytes;
}

/** Requests the QEMU block layer counted for the guest-visible target (host-side evidence). */
async function blockRequests(name: string, target: string): Promise<number> {
  const out = await virsh.run(['domblkstat', name, target]);
  return [...out.matchAll(/(rd_req|wr_req)\s+(\d+)/g)].reduce((s, m) => s + Number(m[2]), 0);
}

describe('libvirt backend under TCG', { timeout: 900_000 }, () => {
  let image: GuestImage;
  let reachable = false;
  before(async () => {
    reachable = (await virsh.tryRun(['version'])) !== undefined;
    if (!reachable) return;
    image = await ensureGuest();
    for (const d of disks) makeSparseFile(d);
  });
  after(async () => {
    for (const vm of vms) await vm.stop();
    for (const d of disks) rmSync(d, { force: true });
    // An interrupted kvmio may run out of cleanup time before removing its console log.
    await assertDomainsGone(virsh, names);
  });

  test('boot 4k and hugepages guests, exec, fio, live switches', async (t) => {
    if (!reachable) return t.skip(`libvirt is not reachable at ${URI} (run scripts/services.sh)`);
    const first = variant({ aio: 'native', iothreads: 1, bus: 'virtio-blk', memory: '4k' });
    const huge = variant({ aio: 'native', iothreads: 1, bus: 'virtio-blk', memory: 'hugepages' });
    const boots = [first, huge].map((v, i) =>
      startLibvirtVm({
        study: study(disks[i] as string, i === 0 ? { iothreads: '1' } : undefined),
        variant: v,
        image,
        accel: 'tcg',
        uri: URI,
        name: names[i] as string,
      }),
    );
    const settled = await Promise.allSettled(boots);
    for (const s of settled) if (s.status === 'fulfilled') vms.push(s.value);
    for (const s of settled) if (s.status === 'rejected') throw s.reason;
    const [vm, hugeVm] = vms as [LibvirtVm, LibvirtVm];
    t.diagnostic(
      `boot under TCG: 4k ${(vm.bootMs / 1000).toFixed(1)} s, hugepages ${(hugeVm.bootMs / 1000).toFixed(1)} s`,
    );

    const uname = await vm.exec(['uname', '-r'], { timeoutMs: 20_000 });
    assert.equal(uname.exitCode, 0);
    assert.equal(uname.stdout.trim(), image.kernelVersion);
    const ping = await vm.ping();
    assert.ok(ping.monitorMs > 0 && ping.agentMs > 0);
    assert.match(readFileSync(`/proc/${vm.qemuPid()}/cmdline`, 'utf8'), new RegExp(`guest=${names[0]}`));
    await vm.writeFile('/tmp/kvmio-probe', 'hello libvirt');
    assert.equal((await vm.readFile('/tmp/kvmio-probe')).toString(), 'hello libvirt');

    // Hugepages guest: QEMU's RAM is on hugetlbfs, and it cannot become a 4k guest without a reboot.
    assert.match(readFileSync(`/proc/${hugeVm.qemuPid()}/maps`, 'utf8'), /\/dev\/hugepages\//);
    assert.equal(hugeVm.canSwitchLive({ ...huge, id: 'x', memory: '4k' }), false);
    assert.equal(await hugeVm.testDisk(), '/dev/vda');
    await fio(hugeVm, '/dev/vda', 'randread');

    // 4k guest: blk/native/iothread -> scsi/io_uring/iothread -> blk/threads/main loop.
    assert.equal(await vm.testDisk(), '/dev/vda');
    await fio(vm, '/dev/vda', 'randread');
    const scsi = variant({ aio: 'io_uring', iothreads: 1, bus: 'virtio-scsi', memory: '4k', queues: 2 });
    assert.equal(vm.canSwitchLive(scsi), true);
    await vm.switchVariant(scsi);
    assert.equal(vm.variant.id, scsi.id);
    assert.equal(await vm.testDisk(), '/dev/sda');
    const before = await blockRequests(names[0] as string, 'sda');
    await fio(vm, '/dev/sda', 'randwrite');
    assert.ok((await blockRequests(names[0] as string, 'sda')) > before, 'QEMU saw the I/O on the new disk');
    assert.match(await virsh.run(['dumpxml', names[0] as string]), /<driver queues='2' iothread='1'\/>/);

    const mainLoop = variant({ aio: 'threads', iothreads: 0, bus: 'virtio-blk', memory: '4k' });
    await vm.switchVariant(mainLoop);
    assert.equal(await vm.testDisk(), '/dev/vda');
    assert.doesNotMatch(await virsh.run(['dumpxml', names[0] as string]), /<iothreads>/);
    await fio(vm, '/dev/vda', 'randread');

    // Back to an iothread: added live, and pinned as the study's pinning says.
    await vm.switchVariant(
      variant({ aio: 'native', iothreads: 1, bus: 'virtio-blk', memory: '4k', queues: 2 }),
    );
    assert.match(await virsh.run(['iothreadinfo', names[0] as string]), /^\s*1\s+1\s*$/m);
    await fio(vm, '/dev/vda', 'randwrite');
    for (const v of vms) await v.stop();
  });

  test('SIGINT destroys the domain and exits 130', async (t) => {
    if (!reachable) return t.skip(`libvirt is not reachable at ${URI}`);
    const name = `kvmio-e2e-lv-${tag}-int`;
    names.push(name);
    const script = `
import { startLibvirtVm } from ${JSON.stringify(new URL('../../src/libvirt/vm.js', import.meta.url).href)};
await startLibvirtVm(${JSON.stringify({
      study: study(disks[2] as string),
      variant: variant({ aio: 'threads', iothreads: 0, bus: 'virtio-blk', memory: '4k' }),
      image,
      accel: 'tcg',
      uri: URI,
      name,
    })});
setInterval(() => {}, 1000);
`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    // Interrupt as soon as the domain runs (kvmio is still waiting for the guest to boot).
    const deadline = Date.now() + 120_000;
    while ((await virsh.tryRun(['domstate', name]))?.trim() !== 'running') {
      assert.ok(Date.now() < deadline && child.exitCode === null, `the domain never started: ${stderr}`);
      await new Promise((r) => setTimeout(r, 300));
    }
    child.kill('SIGINT');
    assert.equal(await exited, 130);
    assert.equal(await virsh.tryRun(['domstate', name]), undefined, 'the domain is gone');
  });
});
