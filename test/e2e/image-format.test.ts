import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { renderReport } from '../../src/report/index.js';
import { parseStudy } from '../../src/study/load.js';
import { libvirtUnreachable } from '../helpers/libvirt.js';
import { assertEveryPointOk, studyScratch, withStudyRun } from '../helpers/small-study.js';
import { qemuPids } from '../helpers/vm.js';

/**
 * matrix.format [raw, qcow2] end to end under TCG, on each backend: kvmio makes the qcow2 image
 * beside the raw file, boots a VM per format, live verification sees the qcow2 node over the file
 * node (and libvirt's <driver type='qcow2'>), fio runs on both, and the report has the format
 * section. libvirt's disk is in /var/tmp: its QEMU cannot enter mkdtemp's 0700 directories.
 */

const { dir, libvirtDisk } = studyScratch('format');

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
  await withStudyRun(study, join(dir, `${backend}.sqlite`), async (run) => {
    assertEveryPointOk(run, ['blk-native-io1-4k', 'blk-native-io1-4k-qcow2']);
    const iops = (variant: string) =>
      run.store.metricRows(run.runId).find((x) => x.variant === variant && x.metric === 'read.iops')?.value ??
      0;
    assert.ok(iops('blk-native-io1-4k') > 0 && iops('blk-native-io1-4k-qcow2') > 0);
    assert.ok(existsSync(`${disk}.qcow2`), 'the qcow2 image was made beside the raw file');
    const out = join(dir, `report-${backend}`);
    await renderReport(run.store, [run.runId], out);
    const charts = readdirSync(join(out, 'charts'));
    assert.ok(
      charts.some((c) => c.startsWith('format-')),
      `no format chart among ${charts.join(', ')}`,
    );
    assert.match(readFileSync(join(out, 'index.html'), 'utf8'), /raw vs qcow2/);
  });
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
  const unreachable = await libvirtUnreachable();
  if (unreachable) return t.skip(unreachable);
  await runFormats('libvirt', libvirtDisk);
});
