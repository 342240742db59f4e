import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { clockTicksPerSecond, parseProcStat } from '../../src/metrics/cpu.js';
import type { PgbenchWorkload, RsyncWorkload, SweepWorkload } from '../../src/study/types.js';
import type { FioJob } from '../../src/workloads/fio-json.js';
import { runWorkload } from '../../src/workloads/index.js';
import type { MetricValue, StepResult, WorkloadTarget } from '../../src/workloads/types.js';
import { bootTestGuest, qemuPids, type TestGuest, testVariant } from '../helpers/vm.js';
import { fioWorkload } from '../helpers/workloads.js';

/**
 * Every workload kind in the real embedded guest under TCG (one boot for the file), each figure checked
 * against what fio, pgbench and rsync printed (kept as artifacts), and the guest left clean.
 */

let guest: TestGuest;
let target: WorkloadTarget;
before(async () => {
  // aio=threads with an iothread: both the iothread and the (coming and going) worker pool show up.
  guest = await bootTestGuest({
    name: 'kvmio-e2e-workloads',
    variant: testVariant({ aio: 'threads', iothreads: 1 }),
  });
  target = { kind: 'guest', vm: guest.vm };
});
after(async () => {
  await guest?.dispose();
  assert.deepEqual(qemuPids(), [], 'no QEMU left behind');
});

const value = (ms: MetricValue[], name: string) => ms.find((m) => m.metric === name)?.value;
const CLASSES = ['cpu.vcpu_s', 'cpu.iothread_s', 'cpu.main_s', 'cpu.worker_s', 'cpu.other_s'];

function assertHostMeasured(step: StepResult, windowS: number): void {
  const total = value(step.metrics, 'cpu.total_s') ?? Number.NaN;
  const classSum = CLASSES.reduce((s, m) => s + (value(step.metrics, m) ?? Number.NaN), 0);
  assert.ok(Math.abs(classSum - total) < 1e-9, `classes ${classSum} add up to total ${total}`);
  assert.ok(total > 0, 'QEMU used CPU');
  const window = value(step.metrics, 'cpu.window_s') ?? 0;
  assert.ok(Math.abs(window - windowS) < 0.5, `window ${window} s ≈ ${windowS} s`);
  assert.ok((value(step.metrics, 'probe.samples') ?? 0) >= 2, 'monitor/agent probed during the window');
  assert.ok((value(step.metrics, 'probe.qmp_rtt_p99_ms') ?? -1) >= 0);
}

function assertFioFigures(step: StepResult, dir: 'read' | 'write'): void {
  const job = (JSON.parse(step.artifacts?.fio_json ?? '') as { jobs: FioJob[] }).jobs[0] as FioJob;
  assert.equal(value(step.metrics, `${dir}.iops`), job[dir].iops);
  assert.equal(value(step.metrics, `${dir}.bw_bytes`), job[dir].bw_bytes);
  assert.equal(value(step.metrics, `${dir}.clat_mean_ns`), job[dir].clat_ns.mean);
  assert.equal(value(step.metrics, `${dir}.clat_p99_ns`), job[dir].clat_ns.percentile?.['99.000000']);
  assert.equal(value(step.metrics, `${dir}.lat_mean_ns`), job[dir].lat_ns.mean);
  assert.equal(value(step.metrics, 'guest.sys_pct'), job.sys_cpu);
  assert.ok(job[dir].iops > 0);
  assert.ok((value(step.metrics, 'cpu.pct_per_kiops') ?? 0) > 0);
}

test('fio in the guest: fio’s figures, QEMU CPU by thread class, probes', async () => {
  const w = fioWorkload();
  const pid = guest.vm.qemuPid();
  const tick = 1 / (await clockTicksPerSecond());
  const cpuBefore = parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8')).ticks * tick;
  const r = await runWorkload(target, w, { series: true });
  const cpuAfter = parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8')).ticks * tick;
  const step = r.steps[0] as StepResult;
  assertFioFigures(step, 'read');
  assertHostMeasured(step, 2);
  // The window's total lies within the whole process's CPU over the run, read independently (±2 ticks).
  assert.ok((value(step.metrics, 'cpu.total_s') ?? 0) <= cpuAfter - cpuBefore + 2 * tick);
  assert.ok((value(step.metrics, 'cpu.iothread_s') ?? 0) > 0, 'the iothread served the disk');
  assert.ok((value(step.metrics, 'cpu.vcpu_s') ?? 0) > 0);
  assert.ok((JSON.parse(step.artifacts?.cpu_series ?? '[]') as unknown[]).length >= 1);
  const argv = JSON.parse(step.artifacts?.argv ?? '[]') as string[];
  assert.ok(argv.includes(`--filename=${await guest.vm.testDisk()}`));
  const tmp = await guest.vm.exec(['ls', '/tmp'], { timeoutMs: 10_000 });
  assert.doesNotMatch(tmp.stdout, /kvmio-fio-/, 'fio output file removed');
});

test('sweep in the guest: max, then rate-limited steps', async () => {
  const w: SweepWorkload = {
    kind: 'sweep',
    name: 'sweep',
    rw: 'randwrite',
    bs: 4096,
    steps: 2,
    fromShare: 0.25,
    iodepth: 4,
    numjobs: 1,
    runtimeSeconds: 2,
    rampSeconds: 1,
  };
  const r = await runWorkload(target, w);
  assert.equal(r.steps.length, 3);
  assert.equal(r.steps[0]?.step, 'max');
  const max = value(r.steps[0]?.metrics ?? [], 'write.iops') ?? 0;
  for (const s of r.steps) {
    assertFioFigures(s, 'write');
    assertHostMeasured(s, 2);
  }
  const low = r.steps[1] as StepResult;
  assert.equal(low.step, Math.max(1, Math.round(max * 0.25)));
  assert.ok((JSON.parse(low.artifacts?.argv ?? '[]') as string[]).includes(`--rate_iops=${low.step}`));
  assert.ok((value(low.metrics, 'write.iops') ?? 0) <= (low.step as number) * 1.1 + 5, 'rate limit held');
});

test('pgbench in the guest: TPS and latency per client count as pgbench printed them', async () => {
  const w: PgbenchWorkload = {
    kind: 'pgbench',
    name: 'pgbench',
    scale: 1,
    clients: [1, 2],
    runtimeSeconds: 6,
    readOnly: false,
  };
  const r = await runWorkload(target, w);
  assert.deepEqual(
    r.steps.map((s) => s.step),
    [1, 2],
  );
  for (const s of r.steps) {
    const out = s.artifacts?.pgbench_output ?? '';
    assert.equal(value(s.metrics, 'pgbench.tps'), Number(/^tps = ([\d.]+)/m.exec(out)?.[1]));
    assert.equal(
      value(s.metrics, 'pgbench.lat_mean_ms'),
      Number(/^latency average = ([\d.]+) ms/m.exec(out)?.[1]),
    );
    assert.match(out, new RegExp(`^number of clients: ${s.step}$`, 'm'));
    assert.ok((value(s.metrics, 'pgbench.tps') ?? 0) > 0);
    assertHostMeasured(s, 6);
  }
  const mounts = await guest.vm.exec(['cat', '/proc/mounts'], { timeoutMs: 10_000 });
  assert.doesNotMatch(mounts.stdout, /kvmio-pg/, 'data filesystem unmounted');
  const ps = await guest.vm.exec(['ps'], { timeoutMs: 10_000 });
  assert.doesNotMatch(ps.stdout, /postgres:/, 'postgres stopped');
});

test('rsync in the guest: the copy time busybox time measured, rsync’s own counts', async () => {
  const w: RsyncWorkload = {
    kind: 'rsync',
    name: 'rsync',
    files: 300,
    sizeBytes: 8192,
    sizeMinBytes: 4096,
    sizeMaxBytes: 16384,
    seed: 7,
  };
  const r = await runWorkload(target, w);
  const step = r.steps[0] as StepResult;
  const out = step.artifacts?.rsync_output ?? '';
  assert.equal(value(step.metrics, 'rsync.seconds'), Number(/^real ([\d.]+)$/m.exec(out)?.[1]));
  assert.equal(value(step.metrics, 'rsync.files'), 300);
  assert.match(out, /^Number of regular files transferred: 300$/m);
  const bytes = value(step.metrics, 'rsync.bytes') ?? 0;
  assert.ok(bytes >= 300 * 4096 && bytes <= 300 * 16384, `${bytes} bytes in 4k..16k files`);
  assert.ok(
    (value(step.metrics, 'rsync.host_seconds') ?? 0) >= (value(step.metrics, 'rsync.seconds') ?? 0) - 0.05,
  );
  const mounts = await guest.vm.exec(['cat', '/proc/mounts'], { timeoutMs: 10_000 });
  assert.doesNotMatch(mounts.stdout, /kvmio-rsync/, 'source tmpfs and target filesystem unmounted');
});
