import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { compareRuns } from '../../src/engine/compare.js';
import { runStudy } from '../../src/engine/run.js';
import { closeHostAccesses } from '../../src/host/access.js';
import { loadReportData } from '../../src/report/data.js';
import { exportJson } from '../../src/store/export.js';
import { Store } from '../../src/store/store.js';
import { parseStudy } from '../../src/study/load.js';
import type { MetricRow } from '../../src/study/types.js';
import { releaseTestHost, testHost, testHostUp } from '../helpers/test-host.js';

/**
 * Remote hosts end to end: the test host (scripts/test-host.sh: its own network namespace, sshd and
 * libvirtd, reached only by qemu+ssh:// and SSH) next to the local libvirt. Real QEMU under TCG, fio
 * 2–3 s, one boot per host per study. Disks in /var/tmp (libvirt's QEMU cannot enter mkdtemp's dirs).
 */

let uri = '';
const tag = `${process.pid}`;
const disks: string[] = [];
const diskOf = (name: string) => {
  const path = `/var/tmp/kvmio-e2e-remote-${tag}-${name}.raw`;
  disks.push(path);
  return path;
};
const dir = mkdtempSync(join(tmpdir(), 'kvmio-e2e-remote-'));

before(() => {
  uri = testHostUp();
  assert.match(uri, /^qemu\+ssh:\/\/root@[\d.]+\/system$/);
});
after(async () => {
  await closeHostAccesses();
  rmSync(dir, { recursive: true, force: true });
  for (const d of disks) rmSync(d, { force: true });
  releaseTestHost();
});

function studyText(name: string, variants: string, workloads: string): string {
  return `name: ${name}
backend: libvirt
guest: { vcpus: 1, memory: 512MiB }
disk: { path: ${diskOf(`${name}-local`)}, size: 64MiB }
matrix: ${variants}
baseline: true
repetitions: 1
hosts:
  - { name: local, uri: "qemu:///system" }
  - { name: th, uri: "${uri}", disk: { path: ${diskOf(`${name}-th`)}, size: 64MiB } }
workloads:
${workloads}`;
}

test('a study over the local host and the test host: both measured fully, facts of both exported', {
  timeout: 600_000,
}, async (t) => {
  const study = parseStudy(
    studyText(
      'e2e-remote',
      '{ aio: [native], iothreads: [1] }',
      '  - { kind: fio, name: rw, rw: randrw, rwmixread: 50, bs: 4k, iodepth: 4, size: 32MiB, runtime: 3s, ramp: 1s }\n',
    ),
    join(dir, 'remote.yaml'),
  );
  const store = Store.open(join(dir, 'remote.sqlite'));
  const logs: string[] = [];
  try {
    const r = await runStudy(study, {
      store,
      accelerator: { accel: 'tcg', reason: 'e2e test' },
      onEvent: (e) => {
        if (e.event === 'log') logs.push(e.line);
      },
    });
    const why = () => `${JSON.stringify(store.points(r.runId), null, 1)}\n${logs.slice(-30).join('\n')}`;
    assert.equal(r.status, 'complete', why());
    const rows = store.metricRows(r.runId);
    const value = (host: string, variant: string, metric: string) =>
      rows.find((x: MetricRow) => x.host === host && x.variant === variant && x.metric === metric)?.value;
    const vmVariant = study.variants[0]?.id ?? '';
    for (const host of ['local', 'th']) {
      const cpu = ['cpu.vcpu_s', 'cpu.iothread_s', 'cpu.main_s', 'cpu.window_s', 'cpu.pct_per_kiops'];
      t.diagnostic(`${host}: ${cpu.map((m) => `${m}=${value(host, vmVariant, m)?.toFixed(3)}`).join(' ')}`);
      for (const metric of ['read.iops', 'write.iops', 'read.clat_mean_ns', 'write.clat_mean_ns'])
        for (const variant of [vmVariant, 'host'])
          assert.ok((value(host, variant, metric) ?? 0) > 0, `${host}/${variant}/${metric}: ${why()}`);
      assert.ok((value(host, vmVariant, 'cpu.vcpu_s') ?? 0) > 0, `${host} cpu.vcpu_s`);
      // The variant's disk is served by its iothread: the window (timed from fio's first request) sees
      // it work, on the test host as here.
      assert.ok((value(host, vmVariant, 'cpu.iothread_s') ?? 0) > 0, `${host} cpu.iothread_s: ${why()}`);
      assert.ok((value(host, vmVariant, 'cpu.pct_per_kiops') ?? 0) > 0, `${host} cpu.pct_per_kiops`);
      // The baseline's CPU is fio's own on that host.
      assert.ok((value(host, 'host', 'cpu.total_s') ?? 0) > 0, `${host} baseline cpu.total_s`);
    }
    // The export carries both hosts' facts, the remote ones read on the test host.
    const doc = exportJson(store, r.runId);
    const facts = (name: string) => doc.hosts.find((h) => h.name === name)?.facts as Record<string, unknown>;
    for (const name of ['local', 'th']) {
      const f = facts(name);
      assert.match(String(f.kernel), /^\d+\.\d+/, name);
      assert.match(String((f.qemu as { version?: string }).version), /^\d+\.\d+/, name);
      assert.match(String((f.fio as { version?: string }).version), /^\d+\.\d+/, name);
      assert.match(String((f.libvirt as { virshVersion?: string }).virshVersion), /^\d+\.\d+/, name);
      assert.ok((f.cpu as { logicalCpus: number }).logicalCpus > 0, name);
      assert.match(String(f.accelerator), /^(kvm|tcg)$/, name);
    }
    assert.match(String(facts('th').remote), /^root@/);
    // The test host's accelerator is its own probe's (libvirt there has no kvm: no /dev/kvm on this
    // machine), not the controller's.
    assert.equal(facts('local').acceleratorReason, 'e2e test');
    assert.equal(facts('th').accelerator, 'tcg');
    assert.match(
      String(facts('th').acceleratorReason),
      /^libvirt at qemu\+ssh:\/\/\S+ offers no kvm domains: .*kvm/,
    );
    assert.ok(
      logs.some((l) => /^th: accelerator tcg: libvirt at qemu\+ssh:/.test(l)),
      logs.join('\n'),
    );
    // Hosts side by side: the report has a series set per host, each with its own facts; compare
    // takes RUN@HOST.
    const report = loadReportData(store, [r.runId]);
    assert.deepEqual(report.runs.map((x) => x.label).sort(), ['local', 'th']);
    assert.match(String(report.runs.find((x) => x.label === 'th')?.hostFacts.remote), /^root@/);
    assert.equal(report.runs.find((x) => x.label === 'th')?.acceleratorReason, facts('th').acceleratorReason);
    const lines = compareRuns(store, `${r.runId}@local`, `${r.runId}@th`);
    assert.ok(lines.some((l) => l.variant === vmVariant && l.metric === 'read.iops' && l.meanB > 0));
    assert.throws(() => compareRuns(store, `${r.runId}@nope`, `${r.runId}@th`), /no host "nope"/);
    assert.match(String((facts('th').libvirtHost as Record<string, unknown>).qemu), /^\d+\.\d+/);
  } finally {
    store.close();
  }
});

test('the test host goes away mid-run: the local host completes, the run names th, --resume finishes it', {
  timeout: 900_000,
}, async () => {
  const study = parseStudy(
    studyText(
      'e2e-remote-gone',
      '{ aio: [threads, native], iothreads: [0] }',
      '  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, size: 32MiB, runtime: 2s, ramp: 0s }\n',
    ),
    join(dir, 'gone.yaml'),
  );
  const store = Store.open(join(dir, 'gone.sqlite'));
  const hostOf = new Map<number, string>();
  let stopped = false;
  try {
    const r = await runStudy(study, {
      store,
      accelerator: { accel: 'tcg', reason: 'e2e test' },
      onEvent: (e) => {
        if (e.event === 'point-start') hostOf.set(e.index, e.host);
        // After th's first point: the host goes away (sshd, libvirtd and its VMs killed).
        if (e.event === 'point-end' && hostOf.get(e.index) === 'th' && !stopped) {
          stopped = true;
          testHost('stop');
        }
      },
    });
    assert.ok(stopped);
    assert.equal(r.status, 'partial');
    assert.deepEqual(
      r.failedHosts.map((h) => h.name),
      ['th'],
    );
    assert.match(r.failedHosts[0]?.reason ?? '', /does not answer/);
    const points = store.points(r.runId);
    const local = points.filter((p) => p.host === 'local');
    assert.equal(local.length, 3); // two variants and the baseline
    assert.ok(local.every((p) => p.status === 'ok'));
    const th = points.filter((p) => p.host === 'th');
    assert.ok(th.some((p) => p.status !== 'ok'));

    testHost('up');
    const again = await runStudy(study, {
      store,
      resume: r.runId,
      accelerator: { accel: 'tcg', reason: 'e2e test' },
    });
    assert.equal(again.status, 'complete', JSON.stringify(store.points(r.runId), null, 1));
    const after = store.points(r.runId).filter((p) => p.host === 'th');
    assert.equal(after.length, 3);
    assert.ok(after.every((p) => p.status === 'ok'));
    const rows = store.metricRows(r.runId);
    for (const v of study.variants)
      assert.ok(
        rows.some((x) => x.host === 'th' && x.variant === v.id && x.metric === 'cpu.vcpu_s' && x.value > 0),
      );
  } finally {
    store.close();
    testHost('up');
  }
});
