import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { clientStepResults, fioClientArgv, fioJobFile } from '../../src/workloads/fio-client.js';
import { parseFioJson } from '../../src/workloads/fio-json.js';

// Recorded from real fio 3.33 client/server mode on loopback (test/fixtures/workloads/README.md).
const text = readFileSync(
  new URL('../../../test/fixtures/workloads/fio-client-2servers.json', import.meta.url),
  'utf8',
);
const servers = [
  { host: '127.0.0.1', port: 18765 },
  { host: '127.0.0.1', port: 18766 },
];
const value = (s: { metrics: Array<{ metric: string; value: number }> } | undefined, m: string) =>
  s?.metrics.find((x) => x.metric === m)?.value;

test('client mode: one step per guest in server order, and fio’s aggregate as guest "all"', () => {
  const report = parseFioJson(text);
  assert.equal(report.jobs.length, 0);
  assert.equal(report.clientStats?.length, 3);
  const steps = clientStepResults(report, servers, null);
  assert.deepEqual(
    steps.map((s) => s.guest),
    [0, 1, 'all'],
  );
  const raw = JSON.parse(text) as {
    client_stats: Array<{ port: number; read: { iops: number; bw_bytes: number } }>;
  };
  assert.equal(value(steps[0], 'read.iops'), raw.client_stats.find((j) => j.port === 18765)?.read.iops);
  assert.equal(
    value(steps[1], 'read.iops'),
    raw.client_stats.find((j) => j.port === 18766 && j !== raw.client_stats[2])?.read.iops,
  );
  // IOPS and bandwidth of "all" are the guests' sum (fio's own aggregate divides by the longest runtime,
  // 25938.09 here); its mean latency is fio's combined figure.
  const sumIops = (value(steps[0], 'read.iops') ?? 0) + (value(steps[1], 'read.iops') ?? 0);
  assert.equal(value(steps[2], 'read.iops'), sumIops);
  const sumBw = (value(steps[0], 'read.bw_bytes') ?? 0) + (value(steps[1], 'read.bw_bytes') ?? 0);
  assert.equal(value(steps[2], 'read.bw_bytes'), sumBw);
  assert.equal(value(steps[2], 'read.clat_mean_ns'), 301516.7);
  assert.equal(value(steps[2], 'read.clat_p99_ns'), undefined, 'fio gives no percentiles for the aggregate');
});

test('a server missing from the report fails the point', () => {
  assert.throws(
    () => clientStepResults(parseFioJson(text), [...servers, { host: '127.0.0.1', port: 1 }], null),
    /reported nothing for the server at 127.0.0.1:1/,
  );
});

test('job file and client argv', () => {
  const job = fioJobFile(
    {
      name: 'rr',
      rw: 'randread',
      bs: 4096,
      iodepth: 4,
      numjobs: 1,
      runtimeSeconds: 2,
      rampSeconds: 1,
      ioengine: 'libaio',
      extra: { norandommap: '1' },
    },
    '/dev/vda',
  );
  assert.match(job, /^\[rr\]\nfilename=\/dev\/vda\ndirect=1\n/);
  assert.match(job, /\nbs=4k\n/);
  assert.match(job, /\nnorandommap=1\n$/);
  assert.deepEqual(fioClientArgv(servers, '/x/rr.fio'), [
    'fio',
    '--client=127.0.0.1,18765',
    '--client=127.0.0.1,18766',
    '--eta=never',
    '--output-format=json',
    '/x/rr.fio',
  ]);
});

test('fio 3.39 as a client of two servers ("global options" an empty list) parses to the same steps', () => {
  // Recorded from the trixie guest's fio 3.39, run from kvmio's bundle on loopback (fixtures README).
  const text339 = readFileSync(
    new URL('../../../test/fixtures/workloads/fio-client-2servers-3.39.json', import.meta.url),
    'utf8',
  );
  assert.deepEqual(JSON.parse(text339)['global options'], []);
  const report = parseFioJson(text339);
  assert.equal(report.version, 'fio-3.39');
  assert.deepEqual(report.globalOptions, {});
  const steps = clientStepResults(report, servers, null);
  assert.deepEqual(
    steps.map((s) => s.guest),
    [0, 1, 'all'],
  );
  const iops = steps.map((s) => value(s, 'read.iops') ?? 0);
  assert.ok(iops[0]! > 0 && iops[1]! > 0);
  assert.equal(iops[2], iops[0]! + iops[1]!);
});

test('the client command can be the bundled fio', () => {
  const bundled = [
    '/c/fio-bundle/ld-linux-x86-64.so.2',
    '--library-path',
    '/c/fio-bundle',
    '/c/fio-bundle/fio',
  ];
  assert.deepEqual(fioClientArgv(servers, '/x/rr.fio', bundled).slice(0, 5), [
    ...bundled,
    '--client=127.0.0.1,18765',
  ]);
});
