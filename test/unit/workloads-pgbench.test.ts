import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { PgbenchWorkload } from '../../src/study/types.js';
import { PointFailure } from '../../src/util/errors.js';
import {
  parsePgbenchOutput,
  pgbenchMetrics,
  pgbenchRunArgv,
  pgbenchSteps,
} from '../../src/workloads/pgbench.js';

// Fixtures: pgbench 15 against PostgreSQL 15 on this host (see test/fixtures/workloads/README.md).
const fixture = (name: string) =>
  readFileSync(new URL(`../../../test/fixtures/workloads/${name}`, import.meta.url), 'utf8');

test('TPC-B run: tps and mean latency as pgbench printed them', () => {
  const f = parsePgbenchOutput(fixture('pgbench-c2.txt'));
  assert.equal(f.tps, 567.041149);
  assert.equal(f.latMeanMs, 3.527);
  assert.equal(f.transactions, 1125);
  assert.equal(f.failed, 0);
  assert.equal(f.lagMeanMs, undefined);
  const ms = pgbenchMetrics(f);
  assert.deepEqual(ms.slice(0, 2), [
    { metric: 'pgbench.tps', value: 567.041149, unit: 'tps' },
    { metric: 'pgbench.lat_mean_ms', value: 3.527, unit: 'ms' },
  ]);
});

test('rate-limited run: schedule lag and stddev too', () => {
  const f = parsePgbenchOutput(fixture('pgbench-c4-rate200.txt'));
  assert.equal(f.tps, 183.79614);
  assert.equal(f.latMeanMs, 103.505);
  assert.equal(f.latStddevMs, 140.175);
  assert.equal(f.lagMeanMs, 91.87);
});

test('select-only run parses', () => {
  const f = parsePgbenchOutput(fixture('pgbench-select-c1.txt'));
  assert.ok(f.tps > 0);
  assert.ok((f.latMeanMs ?? 0) > 0);
});

test('output without a tps line fails the point with the output', () => {
  assert.throws(() => parsePgbenchOutput(fixture('pgbench-init-s2.txt')), /printed no "tps = " line/);
});

const w: PgbenchWorkload = {
  kind: 'pgbench',
  name: 'pg',
  scale: 2,
  clients: [1, 4],
  rates: [100, 200],
  runtimeSeconds: 3,
  readOnly: true,
};

test('steps: each client count with each rate, named clients@rate', () => {
  assert.deepEqual(
    pgbenchSteps(w).map((s) => s.step),
    ['1@100', '1@200', '4@100', '4@200'],
  );
  assert.deepEqual(
    pgbenchSteps({ ...w, rates: undefined }).map((s) => s.step),
    [1, 4],
  );
});

test('run argv: as postgres via chpst, over the UNIX socket, -S for read-only', () => {
  assert.deepEqual(pgbenchRunArgv(w, 4, 2, 100), [
    'chpst',
    '-u',
    'postgres',
    'pgbench',
    '-c',
    '4',
    '-j',
    '2',
    '-T',
    '3',
    '-R',
    '100',
    '-S',
    '-h',
    '/tmp/kvmio-pgsock',
    'postgres',
  ]);
});

test('a window that ends before any transaction is a failed point naming the clients and the window', () => {
  assert.throws(
    () => parsePgbenchOutput(fixture('pgbench-c32-no-transaction.txt')),
    (e: unknown) =>
      e instanceof PointFailure &&
      /no transaction with 32 client\(s\) in its 1 s window .*longer runtime/.test(e.message),
  );
});
