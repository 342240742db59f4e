import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runStudy } from '../../src/engine/run.js';
import { Virsh } from '../../src/libvirt/virsh.js';
import { kvmioDomains } from '../../src/libvirt/vm.js';
import { loadReportData } from '../../src/report/data.js';
import { Store } from '../../src/store/store.js';
import { parseStudy } from '../../src/study/load.js';
import type { MetricRow } from '../../src/study/results.js';

/**
 * Several hosts and guests end to end, real libvirt under TCG: three hosts run at once — `a` (qemu:///system) and `b`
 * (qemu+unix:///system, another name for the same local daemon), each with two guests per variant driven
 * together by fio client/server; and `down`, whose URI does not answer (a host whose guests fail to
 * boot is given up likewise: test/unit/engine-run.test.ts). Two variants that switch live; fio 2 s.
 * Disks in /var/tmp: libvirt's QEMU cannot enter mkdtemp's 0700 directories.
 */

const tag = `${process.pid}`;
const diskOf = (host: string) => `/var/tmp/kvmio-e2e-multi-${tag}-${host}.raw`;
const dir = mkdtempSync(join(tmpdir(), 'kvmio-e2e-multi-'));
after(() => {
  rmSync(dir, { recursive: true, force: true });
  for (const h of ['a', 'b', 'down'])
    for (const suffix of ['', '.guest1']) rmSync(`${diskOf(h)}${suffix}`, { force: true });
});

const studyText = `name: e2e-multi
backend: libvirt
guest: { vcpus: 1, memory: 512MiB, count: 2 }
disk: { path: ${diskOf('a')}, size: 64MiB }
matrix: { aio: [threads, native], iothreads: [0] }
baseline: false
repetitions: 1
hosts:
  - { name: a, uri: "qemu:///system" }
  - { name: b, uri: "qemu+unix:///system", disk: { path: ${diskOf('b')}, size: 64MiB } }
  - { name: down, uri: "qemu+tcp://127.0.0.1:1/system", disk: { path: ${diskOf('down')}, size: 64MiB } }
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 4, size: 32MiB, runtime: 2s, ramp: 0s }
`;

function qemuProcesses(): string[] {
  try {
    return execFileSync('pgrep', ['-af', 'qemu-system'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes(`kvmio-${process.pid}-`));
  } catch {
    return [];
  }
}

test('two hosts on one local libvirt, two guests each, and one host that does not answer', {
  timeout: 420_000,
}, async () => {
  const study = parseStudy(studyText, join(dir, 'multi.yaml'));
  const store = Store.open(join(dir, 'results.sqlite'));
  const logs: string[] = [];
  let end: Record<string, unknown> | undefined;
  try {
    const r = await runStudy(study, {
      store,
      accelerator: { accel: 'tcg', reason: 'e2e test' },
      onEvent: (e) => {
        if (e.event === 'log') logs.push(e.line);
        if (e.event === 'run-end') end = e;
      },
    });
    const why = () => `${JSON.stringify(store.points(r.runId), null, 1)}\n${logs.slice(-30).join('\n')}`;

    // The unreachable host is reported with libvirt's reason; the run is partial because of it alone.
    assert.equal(r.status, 'partial');
    assert.deepEqual(r.failedHosts.map((h) => h.name).sort(), ['down']);
    const reason = (name: string) => r.failedHosts.find((h) => h.name === name)?.reason ?? '';
    assert.match(reason('down'), /does not answer.*Connection refused/i);
    assert.deepEqual(end?.failedHosts, r.failedHosts);
    const hosts = store.hosts(r.runId);
    assert.deepEqual(hosts.map((h) => h.name).sort(), ['a', 'b', 'down']);
    const down = hosts.find((h) => h.name === 'down');
    assert.match(String(down?.facts.failed), /127\.0\.0\.1:1/);
    const points = store.points(r.runId);
    for (const host of ['a', 'b']) {
      const own = points.filter((p) => p.host === host);
      assert.equal(own.length, 2, why());
      assert.ok(
        own.every((p) => p.status === 'ok'),
        why(),
      );
      // Facts per host, from libvirt: QEMU and libvirt versions and the CPU.
      const facts = hosts.find((h) => h.name === host)?.facts.libvirtHost as Record<string, unknown>;
      assert.match(String(facts.qemu), /^\d+\.\d+/);
      assert.ok(Number(facts.cpus) > 0);
    }
    const downPoints = points.filter((p) => p.host === 'down');
    assert.equal(downPoints.length, 2);
    assert.ok(downPoints.every((p) => p.status === 'failed' && /does not answer/.test(p.error ?? '')));

    // Per guest and "all": the aggregate IOPS and bandwidth are the sums of the two guests'.
    const rows = store.metricRows(r.runId);
    const value = (host: string, variant: string, guest: MetricRow['guest'], metric: string) =>
      rows.find((x) => x.host === host && x.variant === variant && x.guest === guest && x.metric === metric)
        ?.value;
    for (const host of ['a', 'b']) {
      for (const variant of study.variants.map((v) => v.id)) {
        const g0 = value(host, variant, 0, 'read.iops');
        const g1 = value(host, variant, 1, 'read.iops');
        assert.ok(g0 !== undefined && g0 > 0 && g1 !== undefined && g1 > 0, `${host}/${variant}: ${why()}`);
        assert.equal(value(host, variant, 'all', 'read.iops'), g0 + g1);
        const b0 = value(host, variant, 0, 'read.bw_bytes') ?? 0;
        const b1 = value(host, variant, 1, 'read.bw_bytes') ?? 0;
        assert.equal(value(host, variant, 'all', 'read.bw_bytes'), b0 + b1);
      }
    }
    // The report puts the hosts side by side (one series set per host) and charts the guests' aggregate.
    const report = loadReportData(store, [r.runId]);
    assert.deepEqual(report.runs.map((x) => x.label).sort(), ['a', 'b']);
    assert.ok(report.rows.length > 0 && report.rows.every((x) => x.guest === 'all' || x.workload !== 'rr'));
    assert.equal(
      report.rows.find((x) => x.run === `${r.runId}@a` && x.metric === 'read.iops' && x.guest === 'all')
        ?.value,
      value('a', study.variants[0]!.id, 'all', 'read.iops'),
    );
    // The two variants share a VM: each host booted its two guests once and switched them live.
    assert.equal(logs.filter((l) => /^a: libvirt: kvmio-\d+-\d+ up in/.test(l)).length, 2, logs.join('\n'));
  } finally {
    store.close();
  }
  const mine = (await kvmioDomains(new Virsh('qemu:///system'))).filter((n) =>
    n.startsWith(`kvmio-${process.pid}-`),
  );
  assert.deepEqual(mine, [], 'no kvmio domain of this run left');
  assert.deepEqual(qemuProcesses(), [], 'no QEMU left');
});
