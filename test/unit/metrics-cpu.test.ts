import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  accountWindow,
  cpuEfficiency,
  type ProcSample,
  parseProcStat,
  parseSchedstat,
} from '../../src/metrics/cpu.js';
import { percentile } from '../../src/metrics/probe.js';
import { classifyThread } from '../../src/study/qemu-threads.js';

// Recorded from a real qemu-system-x86_64 7.2 (TCG, debug-threads=on, one iothread, aio=threads);
// the command and method are in the fixture's "recorded" field.
const fixture = JSON.parse(
  readFileSync(new URL('../../../test/fixtures/workloads/qemu-proc-tasks.json', import.meta.url), 'utf8'),
) as {
  pid: number;
  stat: string;
  tasks: Array<{ tid: number; comm: string; stat: string; schedstat: string }>;
};

test('QEMU thread names of a real process classify as vcpu, iothread, main, worker, other', () => {
  const classes = fixture.tasks.map((t) => [
    t.comm.trim(),
    classifyThread(t.comm.trim(), t.tid, fixture.pid),
  ]);
  assert.deepEqual(classes, [
    ['qemu-system-x86', 'main'],
    ['call_rcu', 'other'],
    ['IO iothread0', 'iothread'],
    ['CPU 0/TCG', 'vcpu'],
    ['worker', 'worker'],
    ['worker', 'worker'],
  ]);
  assert.equal(classifyThread('CPU 3/KVM', 10, 1), 'vcpu');
  // seen in the product's guests: the monitor's out-of-band thread is not a disk iothread
  assert.equal(classifyThread('IO mon_iothread', 10, 1), 'other');
});

test('stat lines whose comm holds spaces and slashes parse from the last parenthesis', () => {
  const vcpu = fixture.tasks.find((t) => t.comm.startsWith('CPU 0/TCG'));
  assert.ok(vcpu);
  const s = parseProcStat(vcpu.stat);
  assert.equal(s.comm, 'CPU 0/TCG');
  const fields = vcpu.stat.slice(vcpu.stat.lastIndexOf(')') + 2).split(' ');
  assert.equal(s.ticks, Number(fields[11]) + Number(fields[12]));
  assert.equal(s.ppid, Number(fields[1]));
  assert.equal(parseSchedstat(vcpu.schedstat), Number(vcpu.schedstat.split(' ')[0]));
  assert.equal(parseProcStat('1 (a) b)) S 0 1 1 0 -1 0 0 0 0 0 7 8 1 2 20').comm, 'a) b)');
});

const sample = (atMs: number, processNs: number, tasks: Array<[number, string, number]>): ProcSample => ({
  atMs,
  processNs,
  tasks: new Map(tasks.map(([tid, comm, cpuNs]) => [tid, { comm, cpuNs }])),
});

test('a window counts threads born inside it from zero and gives exited threads’ time to workers', () => {
  const pid = 100;
  const w = accountWindow(pid, [
    sample(0, 10e9, [
      [100, 'qemu-system-x86', 1e9],
      [101, 'CPU 0/KVM', 5e9],
      [102, 'worker', 1e9],
    ]),
    // worker 103 is born, worker 102 has exited (its last 0.3 s are only in the process total)
    sample(1000, 11.5e9, [
      [100, 'qemu-system-x86', 1.1e9],
      [101, 'CPU 0/KVM', 5.8e9],
      [103, 'worker', 0.2e9],
    ]),
    sample(2000, 13e9, [
      [100, 'qemu-system-x86', 1.2e9],
      [101, 'CPU 0/KVM', 6.6e9],
      [103, 'worker', 0.5e9],
      [104, 'IO iothread0', 0.1e9],
    ]),
  ]);
  assert.equal(w.seconds, 2);
  assert.equal(w.totalS, 3);
  assert.ok(Math.abs(w.byClass.vcpu - 1.6) < 1e-9);
  assert.ok(Math.abs(w.byClass.main - 0.2) < 1e-9);
  assert.ok(Math.abs(w.byClass.iothread - 0.1) < 1e-9);
  assert.ok(Math.abs(w.unseenS - (3 - 1.6 - 0.2 - 0.1 - 0.5)) < 1e-9);
  assert.ok(w.unseenS > 0);
  assert.ok(Math.abs(w.byClass.worker - (0.5 + w.unseenS)) < 1e-9);
  const sum = Object.values(w.byClass).reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(sum - w.totalS) < 1e-9);
});

test('when threads show more than the tick-rounded process total, their sum is the total', () => {
  const w = accountWindow(1, [
    sample(0, 1e9, [[1, 'qemu-system-x86', 1e9]]),
    sample(1000, 1.01e9, [[1, 'qemu-system-x86', 1.014e9]]),
  ]);
  assert.equal(w.unseenS, 0);
  assert.ok(Math.abs(w.totalS - 0.014) < 1e-9);
  assert.ok(Math.abs(w.byClass.main - 0.014) < 1e-9);
});

test('CPU per kIOPS and per GB/s: % of one core over the window divided by the rate', () => {
  const ms = cpuEfficiency(1.5, 3, { iops: 25_000, bwBytes: 102_400_000 });
  assert.deepEqual(ms, [
    { metric: 'cpu.pct_per_kiops', value: 50 / 25, unit: '%/kIOPS' },
    { metric: 'cpu.pct_per_gbps', value: 50 / 0.1024, unit: '%/(GB/s)' },
  ]);
});

test('nearest-rank percentile', () => {
  const v = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(v, 99), 99);
  assert.equal(percentile(v, 100), 100);
  assert.equal(percentile([5], 99), 5);
  assert.ok(Number.isNaN(percentile([], 99)));
});
