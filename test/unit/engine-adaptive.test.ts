import assert from 'node:assert/strict';
import { test } from 'node:test';
import { adaptiveNeeds, mainMetric } from '../../src/engine/adaptive.js';
import type { MetricRow } from '../../src/study/results.js';
import type { FioWorkload } from '../../src/study/types.js';

const lat: FioWorkload = {
  kind: 'fio',
  name: 'lat',
  rw: 'randwrite',
  bs: 4096,
  iodepth: 1,
  numjobs: 1,
  runtimeSeconds: 2,
  rampSeconds: 0,
  ioengine: 'libaio',
  extra: {},
};

function rows(variant: string, values: number[]): MetricRow[] {
  return values.map((value, rep) => ({
    run: 'r',
    host: 'local',
    variant,
    guest: 0,
    workload: 'lat',
    step: null,
    rep,
    metric: 'write.iops',
    value,
    unit: 'IOPS',
  }));
}

test('the main metric of a write job is write.iops', () => {
  assert.equal(mainMetric(lat, rows('a', [1])), 'write.iops');
});

test('a tight variant needs no more rounds; a noisy one does, until the maximum', () => {
  const spec = { ciShare: 0.05, maxRepetitions: 5 };
  const pairs = [
    { variant: 'tight', workload: lat },
    { variant: 'noisy', workload: lat },
  ];
  const data = [...rows('tight', [1000, 1001, 999]), ...rows('noisy', [500, 1500, 900])];
  const needs = adaptiveNeeds(spec, pairs, data, 3);
  assert.deepEqual(
    needs.map((n) => n.variant),
    ['noisy'],
  );
  assert.ok((needs[0]?.share ?? 0) > 0.05);
  assert.deepEqual(adaptiveNeeds(spec, pairs, data, 5), [], 'no rounds beyond maxRepetitions');
});

test('a single value cannot show a confidence interval: another round is needed', () => {
  const needs = adaptiveNeeds(
    { ciShare: 0.1, maxRepetitions: 3 },
    [{ variant: 'one', workload: lat }],
    rows('one', [1000]),
    1,
  );
  assert.equal(needs.length, 1);
  assert.ok(Number.isNaN(needs[0]?.share));
});

test('a variant with no figure at all (every attempt failed) gets no extra round', () => {
  assert.deepEqual(
    adaptiveNeeds({ ciShare: 0.1, maxRepetitions: 3 }, [{ variant: 'dead', workload: lat }], [], 1),
    [],
  );
});
