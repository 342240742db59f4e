import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runStudy } from '../../src/engine/run.js';
import { Virsh } from '../../src/libvirt/virsh.js';
import { renderReport } from '../../src/report/index.js';
import { Store } from '../../src/store/store.js';
import { parseStudy } from '../../src/study/load.js';
import { qemuPids } from '../helpers/vm.js';

/**
 * matrix.format [raw, qcow2] end to end under TCG, on each backend: kvmio makes the qcow2 image
 * beside the raw file, boots a VM per format, live verification sees the qcow2 node over the file
 * node (and libvirt's <driver type='qcow2'>), fio runs on both, and the report has the format
 * section. libvirt's disk is in /var/tmp: its QEMU cannot enter mkdtemp's 0700 directories.
 */

const dir = mkdtempSync(join(tmpdir(), 'kvmio-e2e-format-'));
const libvirtDisk = `/var/tmp/kvmio-e2e-format-${process.pid}.raw`;
after(() => {
  rmSync(dir, { recursive: true, force: true });
  for (const p of [libvirtDisk, `${libvirtDisk}.qcow2`]) rmSync(p, { force: true });
});

const studyText = (backend: string, disk: string) => `name: e2e-format-${backend}
backend: ${backend}
guest: { vcpus: 1, memory: 512MiB }
disk: { path: ${disk}, size: 64MiB, qcow2: { cluster_size: 64k, preallocation: metadata, lazy_refcounts: true, cache_size: 1M } }
matrix: { aio: [native], iothreads: [1], format: [raw, qcow2] }
repetitions: 1
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 2s, ramp: 0s }
`;

async function runFormats(backend: 'qemu' | 'libvirt', disk: string): Promise<void> {
  const study = parseStudy(studyText(backend, disk), join(dir, `${backend}.yaml`));
  const store = Store.open(join(dir, `${backend}.sqlite`));
  try {
    const r = await runStudy(study, { store, accelerator: { accel: 'tcg', reason: 'e2e test' } });
    const points = store.points(r.runId);
    const why = JSON.stringify([...points, ...store.failures(r.runId)], null, 1);
    assert.equal(r.status, 'complete', why);
    assert.deepEqual(
      // Rounds run in a shuffled order: compare as a set.
      points.map((p) => [p.variant, p.status]).sort(),
      [
        ['blk-native-io1-4k', 'ok'],
        ['blk-native-io1-4k-qcow2', 'ok'],
      ],
      why,
    );
    const iops = (variant: string) =>
      store.metricRows(r.runId).find((x) => x.variant === variant && x.metric === 'read.iops')?.value ?? 0;
    assert.ok(iops('blk-native-io1-4k') > 0 && iops('blk-native-io1-4k-qcow2') > 0);
    assert.ok(existsSync(`${disk}.qcow2`), 'the qcow2 image was made beside the raw file');
    const out = join(dir, `report-${backend}`);
    await renderReport(store, [r.runId], out);
    const charts = readdirSync(join(out, 'charts'));
    assert.ok(
      charts.some((c) => c.startsWith('format-')),
      `no format chart among ${charts.join(', ')}`,
    );
    assert.match(readFileSync(join(out, 'index.html'), 'utf8'), /raw vs qcow2/);
  } finally {
    store.close();
  }
}

test('format raw and qcow2 on the direct QEMU backend: every point ok, verified live', {
  timeout: 420_000,
}, async () => {
  await runFormats('qemu', join(dir, 'disk.raw'));
  assert.deepEqual(qemuPids(), [], 'no QEMU left');
});

test('format raw and qcow2 on the libvirt backend: every point ok, verified live', {
  timeout: 420_000,
}, async (t) => {
  const virsh = new Virsh('qemu:///system');
  if ((await virsh.tryRun(['version'])) === undefined)
    return t.skip('libvirt is not reachable (run scripts/services.sh)');
  await runFormats('libvirt', libvirtDisk);
});
