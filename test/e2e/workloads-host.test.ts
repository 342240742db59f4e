import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { SweepWorkload } from '../../src/study/types.js';
import { run as runCommand } from '../../src/util/proc.js';
import type { FioJob } from '../../src/workloads/fio-json.js';
import { runWorkload } from '../../src/workloads/index.js';
import { treeGeneratorArgv } from '../../src/workloads/rsync.js';
import type { MetricValue, StepResult } from '../../src/workloads/types.js';
import { fioWorkload } from '../helpers/workloads.js';

/** The host baseline: the same fio jobs run on the host against a file, figures checked against fio's JSON. */

const dir = mkdtempSync(join(tmpdir(), 'kvmio-host-'));
const disk = join(dir, 'disk.img');
writeFileSync(disk, '');
truncateSync(disk, 128 * 1024 * 1024);
after(() => rmSync(dir, { recursive: true, force: true }));

const value = (ms: MetricValue[], name: string) => ms.find((m) => m.metric === name)?.value;

function assertMatchesFioJson(step: StepResult, dirs: Array<'read' | 'write'>): void {
  const raw = JSON.parse(step.artifacts?.fio_json ?? '') as { jobs: FioJob[] };
  const job = raw.jobs[0] as FioJob;
  for (const d of dirs) {
    assert.equal(value(step.metrics, `${d}.iops`), job[d].iops);
    assert.equal(value(step.metrics, `${d}.bw_bytes`), job[d].bw_bytes);
    assert.equal(value(step.metrics, `${d}.clat_p99_ns`), job[d].clat_ns.percentile?.['99.000000']);
    assert.equal(value(step.metrics, `${d}.clat_mean_ns`), job[d].clat_ns.mean);
  }
  assert.equal(value(step.metrics, 'guest.usr_pct'), job.usr_cpu);
  const cpu = value(step.metrics, 'cpu.total_s') ?? 0;
  const window = value(step.metrics, 'cpu.window_s') ?? 0;
  assert.ok(window > 1 && window < 3, `window ${window} s ≈ the 2 s runtime`);
  assert.ok(cpu > 0 && cpu <= window * 2 + 0.05, `fio CPU ${cpu} s within the window on 2 cores`);
  assert.ok((value(step.metrics, 'cpu.pct_per_kiops') ?? 0) > 0);
}

const fio = fioWorkload();

test('host baseline fio: one step, fio’s own figures, fio’s CPU, the exact argv', async () => {
  const r = await runWorkload({ kind: 'host', diskPath: disk }, fio);
  assert.equal(r.steps.length, 1);
  const step = r.steps[0] as StepResult;
  assert.equal(step.step, null);
  assertMatchesFioJson(step, ['read']);
  const argv = JSON.parse(step.artifacts?.argv ?? '[]') as string[];
  assert.deepEqual(argv.slice(0, 4), ['fio', '--name=randread-qd1', `--filename=${disk}`, '--direct=1']);
  assert.ok(argv.includes('--output-format=json'));
});

test('host baseline sweep: a max run, then rate-limited steps that reach their targets', async () => {
  const sweep: SweepWorkload = {
    kind: 'sweep',
    name: 'sweep',
    rw: 'randwrite',
    bs: 4096,
    steps: 2,
    fromShare: 0.01,
    iodepth: 1,
    numjobs: 1,
    runtimeSeconds: 2,
    rampSeconds: 1,
  };
  const r = await runWorkload({ kind: 'host', diskPath: disk }, sweep);
  assert.deepEqual(
    r.steps.map((s) => typeof s.step),
    ['string', 'number', 'number'],
  );
  assert.equal(r.steps[0]?.step, 'max');
  const max = value(r.steps[0]?.metrics ?? [], 'write.iops') ?? 0;
  for (const s of r.steps) assertMatchesFioJson(s, ['write']);
  const low = r.steps[1] as StepResult;
  assert.equal(low.step, Math.round(max * 0.01));
  const achieved = value(low.metrics, 'write.iops') ?? 0;
  assert.ok(
    Math.abs(achieved - (low.step as number)) <= 0.1 * (low.step as number) + 5,
    `${achieved} vs ${low.step}`,
  );
  const argv = JSON.parse(low.artifacts?.argv ?? '[]') as string[];
  assert.ok(argv.includes(`--rate_iops=${low.step}`));
});

test('pgbench and rsync are not host-baseline workloads', async () => {
  await assert.rejects(
    runWorkload(
      { kind: 'host', diskPath: disk },
      { kind: 'rsync', name: 'r', files: 1, sizeBytes: 4096, seed: 1 },
    ),
    /host baseline runs fio and sweep workloads only/,
  );
});

test('the rsync tree generator (fio create_only) lays out the same files for the same seed', async () => {
  const w = {
    kind: 'rsync' as const,
    name: 'r',
    files: 1500,
    sizeBytes: 8192,
    sizeMinBytes: 4096,
    sizeMaxBytes: 16384,
    seed: 3,
  };
  const digests: string[] = [];
  for (const run of ['a', 'b']) {
    const gen = treeGeneratorArgv(w, join(dir, run));
    assert.equal(gen.dirs.length, 2, '1000 files per directory');
    for (const d of gen.dirs) mkdirSync(d, { recursive: true });
    await runCommand(gen.argv, { timeoutMs: 60_000 });
    const h = createHash('sha256');
    let files = 0;
    for (const d of gen.dirs) {
      for (const f of readdirSync(d).sort()) {
        const size = statSync(join(d, f)).size;
        assert.ok(size >= 4096 && size <= 16384, `${f}: ${size} bytes`);
        h.update(f).update(readFileSync(join(d, f)));
        files++;
      }
    }
    assert.equal(files, 1500);
    digests.push(h.digest('hex'));
  }
  assert.equal(digests[0], digests[1]);
});
