import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { renderReport } from '../../src/report/index.js';
import { parseStudy } from '../../src/study/load.js';
import { libvirtUnreachable } from '../helpers/libvirt.js';
import { assertEveryPointOk, studyScratch, withStudyRun } from '../helpers/small-study.js';
import { pgrep, qemuPids } from '../helpers/vm.js';

/**
 * matrix.path [qemu, vhost-user-blk, nbd] × format [raw, qcow2] end to end under TCG on the direct
 * backend (and the two daemon paths under libvirt, whose QEMU reaches the daemon's sockets as its
 * unprivileged user; the disk is in /var/tmp, which that user can enter): kvmio starts qemu-storage-daemon beside QEMU for the vhost-user-blk and nbd variants,
 * every point's live verification sees QEMU's device (vhost-user-blk-pci, or the NBD client node
 * under virtio-blk) and the daemon's export, nodes and aio mode, fio runs on each, the daemon's CPU is
 * measured as its own class, and no daemon is left behind.
 */

const { dir, libvirtDisk } = studyScratch('path');

/** Storage daemons this process started and that still run. */
const daemonPids = () => pgrep(['-P', String(process.pid), '-f', 'qemu-storage-daemon']);

// libvirt's monitor and agent calls are virsh commands: the guest-side poll that sees a vhost-user-blk
// disk's first request takes longer there, so its fio runs longer.
const studyText = (
  backend: string,
  disk: string,
  paths: string,
  runtime = backend === 'libvirt' ? '5s' : '2s',
) => `name: e2e-path-${backend}
backend: ${backend}
guest: { vcpus: 1, memory: 512MiB }
disk: { path: ${disk}, size: 64MiB }
matrix: { aio: [native], iothreads: [1], format: [raw, qcow2], path: [${paths}] }
repetitions: 1
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: ${runtime}, ramp: 0s }
`;

async function runPaths(backend: 'qemu' | 'libvirt', disk: string, ids: string[]): Promise<void> {
  const paths = [...new Set(ids.map((id) => /-(vhost|nbd)$/.exec(id)?.[1] ?? 'qemu'))]
    .map((p) => (p === 'vhost' ? 'vhost-user-blk' : p))
    .join(', ');
  const study = parseStudy(studyText(backend, disk, paths), join(dir, `${backend}.yaml`));
  await withStudyRun(study, join(dir, `${backend}.sqlite`), async (run) => {
    assertEveryPointOk(run, ids);
    const rows = run.store.metricRows(run.runId);
    const metric = (variant: string, name: string) =>
      rows.find((x) => x.variant === variant && x.metric === name)?.value;
    for (const id of ids) assert.ok((metric(id, 'read.iops') ?? 0) > 0, `${id} has read IOPS`);
    for (const id of ids.filter((x) => /-(vhost|nbd)$/.test(x))) {
      const daemon = metric(id, 'cpu.storage_daemon_s') ?? 0;
      const total = metric(id, 'cpu.total_s') ?? 0;
      assert.ok(daemon > 0, `${id}: the storage daemon's CPU is measured (${daemon} s)`);
      assert.ok(total > daemon, `${id}: the total (${total} s) holds QEMU's and the daemon's CPU`);
    }
    for (const id of ids.filter((x) => !/-(vhost|nbd)$/.test(x)))
      assert.equal(metric(id, 'cpu.storage_daemon_s'), undefined, `${id} has no storage daemon`);
    const out = join(dir, `report-${backend}`);
    await renderReport(run.store, [run.runId], out);
    const charts = readdirSync(join(out, 'charts'));
    assert.ok(
      charts.some((c) => c.startsWith('path-')),
      `no path chart among ${charts.join(', ')}`,
    );
    assert.match(readFileSync(join(out, 'index.html'), 'utf8'), /Where the I\/O is served/);
  });
  assert.deepEqual(daemonPids(), [], 'no storage daemon left');
}

test('path qemu, vhost-user-blk and nbd with raw and qcow2 on the direct QEMU backend: every point ok, verified live', {
  timeout: 900_000,
}, async () => {
  await runPaths('qemu', join(dir, 'disk.raw'), [
    'blk-native-io1-4k',
    'blk-native-io1-4k-vhost',
    'blk-native-io1-4k-nbd',
    'blk-native-io1-4k-qcow2',
    'blk-native-io1-4k-qcow2-vhost',
    'blk-native-io1-4k-qcow2-nbd',
  ]);
  assert.deepEqual(qemuPids(), [], 'no QEMU left');
});

// Path qemu under libvirt (raw and qcow2) is image-format.test.ts's: here the two daemon paths.
test('path vhost-user-blk and nbd with raw and qcow2 on the libvirt backend: every point ok, verified live', {
  timeout: 900_000,
}, async (t) => {
  const unreachable = await libvirtUnreachable();
  if (unreachable) return t.skip(unreachable);
  await runPaths('libvirt', libvirtDisk, [
    'blk-native-io1-4k-vhost',
    'blk-native-io1-4k-nbd',
    'blk-native-io1-4k-qcow2-vhost',
    'blk-native-io1-4k-qcow2-nbd',
  ]);
});
