import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { variantTables } from '../../src/cli/summary.js';
import { stepMeasurements } from '../../src/engine/results.js';
import { resumeCommand } from '../../src/engine/resume.js';
import type { MetricRow } from '../../src/study/results.js';

test('the resume command names the preset or the file, and --db unless it is the default', () => {
  assert.equal(
    resumeCommand({ source: 'preset:quick' }, 'ID', resolve('kvmio.sqlite')),
    'kvmio run --preset quick --resume ID',
  );
  assert.equal(
    resumeCommand({ source: 'my study.yaml' }, 'ID', '/tmp/x.sqlite'),
    "kvmio run 'my study.yaml' --resume ID --db /tmp/x.sqlite",
  );
});

test('workload steps become measurements; artifacts of several steps are named by step', () => {
  const r = stepMeasurements({
    steps: [
      {
        step: 'max',
        metrics: [{ metric: 'read.iops', value: 900, unit: 'IOPS' }],
        artifacts: { 'fio.json': 'a' },
      },
      {
        step: 450,
        metrics: [{ metric: 'read.iops', value: 450, unit: 'IOPS' }],
        artifacts: { 'fio.json': 'b', cpu_series: JSON.stringify([{ t: 1, vcpu: 0.25, iothread: 0.5 }]) },
      },
    ],
  });
  assert.deepEqual(r.measurements, [
    { guest: undefined, step: 'max', metric: 'read.iops', value: 900, unit: 'IOPS' },
    { guest: undefined, step: 450, metric: 'read.iops', value: 450, unit: 'IOPS' },
  ]);
  assert.deepEqual(Object.keys(r.artifacts).sort(), [
    'step=450/cpu_series',
    'step=450/fio.json',
    'step=max/fio.json',
  ]);
  assert.deepEqual(r.series, [
    { t: 1, metric: 'cpu.vcpu_s@450', value: 0.25 },
    { t: 1, metric: 'cpu.iothread_s@450', value: 0.5 },
  ]);
});

test('the end-of-run table shows, per variant, IOPS and mean/p99 completion latency in µs', () => {
  const row = (variant: string, rep: number, metric: string, value: number): MetricRow => ({
    run: 'r',
    host: 'local',
    variant,
    guest: 0,
    workload: 'lat',
    step: null,
    rep,
    metric,
    value,
    unit: '',
  });
  const text = variantTables([
    row('blk-native-io1-4k', 0, 'read.iops', 1000),
    row('blk-native-io1-4k', 1, 'read.iops', 2000),
    row('blk-native-io1-4k', 0, 'read.clat_mean_ns', 500_000),
    row('blk-native-io1-4k', 1, 'read.clat_mean_ns', 700_000),
    row('blk-native-io1-4k', 0, 'read.clat_p99_ns', 900_000),
    row('blk-native-io1-4k', 1, 'read.clat_p99_ns', 1_100_000),
    row('host', 0, 'read.iops', 5000),
  ]);
  const lines = text.split('\n');
  assert.equal(lines[0], 'blk-native-io1-4k');
  assert.match(lines[1] ?? '', /workload\s+reps\s+IOPS\s+clat mean µs\s+clat p99 µs/);
  assert.match(lines[3] ?? '', /^\s+lat\s+2\s+1,500\s+600\.0\s+1,000$/);
  assert.ok(lines.includes('host'));
});
