/**
 * A study with `baseline: true` and remote hosts: the baseline is fio on each host's own disk, which
 * kvmio reaches on this machine and over SSH (qemu+ssh://) but not through qemu+tcp:// or qemu+tls://.
 * The plan schedules host points only where the run can measure them, and says which hosts have none,
 * so that no run ends "partial" on points planned to fail.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseStudy } from '../../src/study/load.js';
import { planStudy } from '../../src/study/plan.js';

const study = parseStudy(
  `name: fleet
backend: libvirt
guest: { vcpus: 1, memory: 512MiB }
disk: { path: /var/tmp/kvmio-plan-baseline.raw, size: 64MiB }
matrix: { aio: [threads], iothreads: [0] }
baseline: true
repetitions: 2
hosts:
  - { name: here, uri: "qemu:///system" }
  - { name: bySsh, uri: "qemu+ssh://root@10.0.0.2/system" }
  - { name: byTcp, uri: "qemu+tcp://10.0.0.3/system" }
  - { name: byTls, uri: "qemu+tls://10.0.0.4/system" }
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 2s, ramp: 0s }
`,
  'fleet.yaml',
);

test('baseline points on this machine and over SSH, none through tcp/tls, with a note naming them', () => {
  const plan = planStudy(study);
  const hostPoints = (host: string) => plan.points.filter((p) => p.host === host && p.variantId === 'host');
  assert.equal(hostPoints('here').length, 2);
  assert.equal(hostPoints('bySsh').length, 2);
  assert.equal(hostPoints('byTcp').length, 0);
  assert.equal(hostPoints('byTls').length, 0);
  // The VM points stay on every host.
  for (const host of ['here', 'bySsh', 'byTcp', 'byTls'])
    assert.equal(plan.points.filter((p) => p.host === host && p.variantId !== 'host').length, 2);
  assert.ok(
    plan.notes.includes(
      "baseline: no host points on byTcp (qemu+tcp://10.0.0.3/system), byTls (qemu+tls://10.0.0.4/system): kvmio runs the baseline's fio on a remote host over SSH only (qemu+ssh://)",
    ),
    plan.notes.join('\n'),
  );
});

test('a remote default URI without hosts: no baseline point either', () => {
  const remote = parseStudy(
    `name: one
backend: libvirt
libvirt: { uri: "qemu+tcp://10.0.0.3/system" }
disk: { path: /var/tmp/kvmio-plan-baseline.raw, size: 64MiB }
matrix: { aio: [threads], iothreads: [0] }
baseline: true
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 2s, ramp: 0s }
`,
    'one.yaml',
  );
  const plan = planStudy(remote);
  assert.deepEqual(
    plan.points.filter((p) => p.variantId === 'host'),
    [],
  );
  assert.ok(plan.notes.some((n) => n.startsWith('baseline: no host points on local (qemu+tcp://')));
});
