import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseStudy } from '../../src/study/load.js';
import { studyScratch, withStudyRun } from '../helpers/small-study.js';
import { qemuPids } from '../helpers/vm.js';

/**
 * Several guests per host on the direct-QEMU backend: guest.count 2 boots two guests, forwards each one's fio server
 * port to loopback (GuestVm.forwardPort, HMP hostfwd_add) and drives both at once with fio --client;
 * an rsync workload runs on each guest in turn (a row set per guest, no aggregate). TCG, fio 2 s. The
 * guests are Debian 13's (fio 3.39): the client is kvmio's bundle of that guest's fio, not the host's.
 */

const { dir } = studyScratch('multi-guests');

const studyText = `name: e2e-multi-guests
backend: qemu
guest: { vcpus: 1, memory: 512MiB, count: 2, release: trixie }
disk: { path: ${join(dir, 'disk.raw')}, size: 64MiB }
matrix: { aio: [threads], iothreads: [0] }
baseline: false
repetitions: 1
workloads:
  - { kind: fio, name: rw, rw: randwrite, bs: 4k, iodepth: 4, size: 32MiB, runtime: 2s, ramp: 0s }
  - { kind: rsync, name: copy, files: 20, size: 4KiB }
`;

test('two guests on the qemu backend: fio at once with an "all" row, rsync on each in turn', {
  timeout: 300_000,
}, async () => {
  const study = parseStudy(studyText, join(dir, 'guests.yaml'));
  await withStudyRun(study, join(dir, 'results.sqlite'), ({ store, result, runId, points, why }) => {
    assert.equal(result.status, 'complete', why);
    assert.deepEqual(result.failedHosts, []);
    const rows = store.metricRows(runId);
    const guestsOf = (workload: string) => [
      ...new Set(rows.filter((x) => x.workload === workload).map((x) => String(x.guest))),
    ];
    assert.deepEqual(guestsOf('rw').sort(), ['0', '1', 'all']);
    assert.deepEqual(guestsOf('copy').sort(), ['0', '1']);
    const iops = (guest: number | string) =>
      rows.find((x) => x.workload === 'rw' && x.guest === guest && x.metric === 'write.iops')?.value ?? 0;
    assert.ok(iops(0) > 0 && iops(1) > 0);
    assert.equal(iops('all'), iops(0) + iops(1));
    // Each guest wrote to a disk of its own: the study's, and one beside it.
    const fioPoint = points.find((p) => p.workload === 'rw');
    const artifacts = store.artifacts(fioPoint?.id ?? -1);
    assert.match(artifacts['guest=0/qemu.argv'] ?? '', /disk\.raw\\"/);
    assert.match(artifacts['guest=1/qemu.argv'] ?? '', /disk\.raw\.guest1\\"/);
    assert.match(
      artifacts['step=- guest=all/argv'] ?? '',
      /--client=127\.0\.0\.1,\d+.*--client=127\.0\.0\.1,\d+/,
    );
    const argv = JSON.parse(artifacts['step=- guest=all/argv'] ?? '[]') as string[];
    assert.match(argv[0] ?? '', /\/fio-bundle\/ld-linux-x86-64\.so\.2$/, 'the client is the bundled fio');
    const json = JSON.parse(artifacts['step=- guest=all/fio_json'] ?? '{}') as { 'fio version'?: string };
    assert.equal(json['fio version'], 'fio-3.39');
  });
  assert.deepEqual(qemuPids(), [], 'no QEMU left');
});
