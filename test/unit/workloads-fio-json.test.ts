import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { FioJob } from '../../src/workloads/fio-json.js';
import { fioJobMetrics, fioJobThroughput, parseFioJson, singleJob } from '../../src/workloads/fio-json.js';

// Fixtures: fio 3.33 on this host against a 256 MiB file (see test/fixtures/workloads/README.md).
const fixture = (name: string) =>
  readFileSync(new URL(`../../../test/fixtures/workloads/${name}`, import.meta.url), 'utf8');

type Raw = { jobs: FioJob[] };
const metric = (ms: ReturnType<typeof fioJobMetrics>, name: string) =>
  ms.find((m) => m.metric === name)?.value;

function assertCarriesFioFigures(file: string, dirs: Array<'read' | 'write'>): void {
  const text = fixture(file);
  const raw = JSON.parse(text.slice(text.indexOf('\n{') + 1 || 0)) as Raw;
  const job = singleJob(parseFioJson(text));
  const ms = fioJobMetrics(job);
  const rawJob = raw.jobs[0] as FioJob;
  for (const dir of dirs) {
    const d = rawJob[dir];
    assert.equal(metric(ms, `${dir}.iops`), d.iops);
    assert.equal(metric(ms, `${dir}.bw_bytes`), d.bw_bytes);
    assert.equal(metric(ms, `${dir}.clat_mean_ns`), d.clat_ns.mean);
    assert.equal(metric(ms, `${dir}.clat_p50_ns`), d.clat_ns.percentile?.['50.000000']);
    assert.equal(metric(ms, `${dir}.clat_p99_ns`), d.clat_ns.percentile?.['99.000000']);
    assert.equal(metric(ms, `${dir}.clat_p999_ns`), d.clat_ns.percentile?.['99.900000']);
    assert.equal(metric(ms, `${dir}.lat_mean_ns`), d.lat_ns.mean);
    assert.ok(d.iops > 0, `${file}: fio did ${dir} I/O`);
  }
  for (const dir of ['read', 'write'] as const) {
    if (!dirs.includes(dir)) assert.equal(metric(ms, `${dir}.iops`), undefined, `${file}: no ${dir} figures`);
  }
  assert.equal(metric(ms, 'guest.usr_pct'), rawJob.usr_cpu);
  assert.equal(metric(ms, 'guest.sys_pct'), rawJob.sys_cpu);
}

test('randread QD1: read figures are fio’s own, no write figures', () => {
  assertCarriesFioFigures('fio-randread-qd1.json', ['read']);
});

test('randwrite QD64: write figures', () => {
  assertCarriesFioFigures('fio-randwrite-qd64.json', ['write']);
});

test('rate-limited sweep step: achieved IOPS near the rate', () => {
  assertCarriesFioFigures('fio-sweep-step-rate500.json', ['read']);
  const job = singleJob(parseFioJson(fixture('fio-sweep-step-rate500.json')));
  assert.ok(Math.abs(job.read.iops - 500) < 25, `rate_iops=500 gave ${job.read.iops}`);
});

test('two group-reported jobs, randrw 70/30: both directions, throughput sums them', () => {
  assertCarriesFioFigures('fio-randrw-2jobs.json', ['read', 'write']);
  const job = singleJob(parseFioJson(fixture('fio-randrw-2jobs.json')));
  const t = fioJobThroughput(job);
  assert.equal(t.iops, job.read.iops + job.write.iops);
  assert.equal(t.bwBytes, job.read.bw_bytes + job.write.bw_bytes);
});

test('jobs without group reporting are refused rather than merged', () => {
  const report = parseFioJson(fixture('fio-randread-2jobs-separate.json'));
  assert.equal(report.jobs.length, 2);
  assert.throws(() => singleJob(report), /expected one group-reported fio job, got 2/);
});

test('fio’s note lines before the JSON are kept as preamble, the document still parses', () => {
  const report = parseFioJson(fixture('fio-psync-with-preamble.json'));
  assert.match(report.preamble[0] ?? '', /^note: both iodepth >= 1 and synchronous I\/O engine/);
  assert.equal(report.version, 'fio-3.33');
  assert.ok(singleJob(report).read.iops > 0);
});

test('output without a JSON document is an error that keeps the output', () => {
  assert.throws(() => parseFioJson('fio: failed to open /dev/vdb\n'), /no JSON document/);
});
