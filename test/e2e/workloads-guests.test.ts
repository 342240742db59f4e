import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { freePort } from '../../src/guest/forward.js';
import type { FioWorkload } from '../../src/study/types.js';
import { FIO_SERVER_PORT, runWorkload } from '../../src/workloads/index.js';
import type { StepResult } from '../../src/workloads/types.js';
import { bootTestGuest, qemuPids, type TestGuest } from '../helpers/vm.js';

/**
 * Two real guests driven at once with fio client/server. The host port forward to each guest's
 * fio server is made here through the monitor (hostfwd_add on the qemu backend's user-mode netdev); in
 * the product that is the backend's part.
 */

let guests: TestGuest[] = [];
before(async () => {
  guests = await Promise.all([
    bootTestGuest({ name: 'kvmio-e2e-guests-0' }),
    bootTestGuest({ name: 'kvmio-e2e-guests-1' }),
  ]);
});
after(async () => {
  await Promise.all(guests.map((g) => g.dispose()));
  assert.deepEqual(qemuPids(), [], 'no QEMU left behind');
});

test('fio on two guests at once: a step per guest with its QEMU’s CPU, and "all" summing them', async () => {
  const targets = [];
  for (const g of guests) {
    const port = await freePort();
    await g.vm.qmp.execute('human-monitor-command', {
      'command-line': `hostfwd_add kvmio-net tcp:127.0.0.1:${port}-:${FIO_SERVER_PORT}`,
    });
    targets.push({ vm: g.vm, server: { host: '127.0.0.1', port } });
  }
  const w: FioWorkload = {
    kind: 'fio',
    name: 'randread-qd4',
    rw: 'randread',
    bs: 4096,
    iodepth: 4,
    numjobs: 1,
    runtimeSeconds: 2,
    rampSeconds: 1,
    ioengine: 'libaio',
    extra: {},
  };
  const r = await runWorkload({ kind: 'guests', guests: targets }, w);
  assert.deepEqual(
    r.steps.map((s) => s.guest),
    [0, 1, 'all'],
  );
  const v = (s: StepResult | undefined, m: string) => s?.metrics.find((x) => x.metric === m)?.value;
  const [g0, g1, all] = r.steps;
  assert.ok((v(g0, 'read.iops') ?? 0) > 0 && (v(g1, 'read.iops') ?? 0) > 0);
  assert.equal(v(all, 'read.iops'), (v(g0, 'read.iops') ?? 0) + (v(g1, 'read.iops') ?? 0));
  assert.equal(v(all, 'cpu.total_s'), (v(g0, 'cpu.total_s') ?? 0) + (v(g1, 'cpu.total_s') ?? 0));
  for (const s of [g0, g1]) {
    assert.ok((v(s, 'cpu.total_s') ?? 0) > 0, 'each guest’s QEMU measured');
    assert.ok((v(s, 'probe.samples') ?? 0) >= 2);
  }
  const raw = JSON.parse(all?.artifacts?.fio_json ?? '') as {
    client_stats: Array<{ jobname: string; port: number; read: { iops: number } }>;
  };
  targets.forEach((t, i) => {
    const job = raw.client_stats.find((j) => j.jobname !== 'All clients' && j.port === t.server.port);
    assert.equal(v(r.steps[i], 'read.iops'), job?.read.iops);
  });
  for (const g of guests) {
    const ps = await g.vm.exec(['ps'], { timeoutMs: 10_000 });
    assert.doesNotMatch(ps.stdout, /fio --server/, `fio server stopped:\n${ps.stdout}`);
  }
});
