import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { RunEvent } from '../../src/engine/events.js';
import { runStudy } from '../../src/engine/run.js';
import { Store } from '../../src/store/store.js';
import { parseStudy } from '../../src/study/load.js';
import type { HostSpec, Study } from '../../src/study/types.js';
import { FakeBackend } from '../helpers/fake-backend.js';

/** The run engine's rules against a fake VmBackend (test/helpers/fake-backend.ts): no VM, no QEMU. */
const dir = mkdtempSync(join(tmpdir(), 'kvmio-engine-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let seq = 0;

function study(extra = '', backend = 'qemu'): Study {
  const n = ++seq;
  return parseStudy(studyText(n, extra, backend), join(dir, `study-${n}.yaml`));
}

function studyText(n: number, extra = '', backend = 'qemu'): string {
  return `name: fake-${n}
backend: ${backend}
guest: { vcpus: 1, memory: 512MiB }
disk: { path: ${join(dir, `disk-${n}.raw`)}, size: 16MiB }
matrix: { aio: [threads, native], iothreads: [0] }
baseline: false
repetitions: 2
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 1s, ramp: 0s }
${extra}`;
}

async function run(s: Study, backends: (host: HostSpec) => FakeBackend, resume?: string) {
  const store = Store.open(join(dir, `results-${seq}.sqlite`));
  const events: RunEvent[] = [];
  const result = await runStudy(s, {
    store,
    resume,
    accelerator: { accel: 'tcg', reason: 'fake backend' },
    backends: async (_study, host) => backends(host),
    onEvent: (e) => events.push(e),
  });
  return { store, result, events };
}

test('a fault costs one point: the failed point has its reason, every other point is measured', async () => {
  const backend = new FakeBackend({ fioFails: (n) => n === 2 });
  const { store, result } = await run(study(), () => backend);
  assert.equal(result.status, 'partial');
  assert.equal(result.ok, 3);
  assert.equal(result.failed, 1);
  const failed = store.points(result.runId).filter((p) => p.status === 'failed');
  assert.equal(failed.length, 1);
  assert.match(String(failed[0]?.error), /fake fio run 2 failed/);
  // The fault leaves the VM in an unknown state: the next point boots afresh.
  assert.equal(backend.boots, 2);
  assert.ok(backend.verified >= 3, 'every measured point is verified after its workload');
  store.close();
});

test('a host whose guests fail to boot twice in a row is given up; the other host runs on', async () => {
  const hosts = `hosts:
  - { name: good, uri: "qemu:///system" }
  - { name: bad, uri: "qemu:///session", disk: { path: ${join(dir, 'bad-host.raw')}, size: 16MiB } }`;
  const good = new FakeBackend();
  const bad = new FakeBackend({ bootFails: () => true });
  const { store, result } = await run(study(hosts, 'libvirt'), (h) => (h.name === 'bad' ? bad : good));
  assert.equal(result.status, 'partial');
  assert.deepEqual(
    result.failedHosts.map((h) => h.name),
    ['bad'],
  );
  assert.match(result.failedHosts[0]?.reason ?? '', /did not boot twice in a row; last: fake boot/);
  assert.equal(bad.boots, 2, 'no boot is tried after the host was given up');
  const points = store.points(result.runId);
  assert.ok(points.filter((p) => p.host === 'good').every((p) => p.status === 'ok'));
  const skipped = points.filter((p) => p.host === 'bad').slice(2);
  assert.ok(skipped.length > 0 && skipped.every((p) => /host bad failed earlier/.test(String(p.error))));
  store.close();
});

test('resume runs exactly the points that are missing or failed, then the run is complete', async () => {
  const s = study();
  const first = new FakeBackend({ fioFails: (n) => n === 1 || n === 4 });
  const { store, result } = await run(s, () => first);
  assert.equal(result.failed, 2);
  store.close();
  const again = new FakeBackend();
  const resumed = await runStudy(s, {
    store: Store.open(store.path),
    resume: result.runId,
    accelerator: { accel: 'tcg', reason: 'fake backend' },
    backends: async () => again,
  });
  assert.equal(resumed.status, 'complete');
  assert.equal(again.fioRuns, 2, 'only the two failed points ran again');
  const reopened = Store.open(store.path);
  assert.equal(reopened.points(result.runId).filter((p) => p.status === 'ok').length, 4);
  reopened.close();
});

test('adaptive: steady figures stop after the planned rounds, spread ones get rounds up to the maximum', async () => {
  const steady = new FakeBackend();
  const calm = await run(study('adaptive: { ci: 5%, max: 4 }'), () => steady);
  assert.equal(calm.result.status, 'complete');
  assert.equal(steady.fioRuns, 4, 'two variants x two planned rounds, no adaptive round');
  assert.equal(calm.events.filter((e) => e.event === 'adaptive-round').length, 0);
  calm.store.close();

  // Each round's runs (two per round) alternate between x1 and x3 IOPS: every variant sees both, the
  // CI never gets within 5%, so rounds run until max 4.
  const noisy = new FakeBackend({ iopsFactor: (n) => (Math.floor((n - 1) / 2) % 2 === 0 ? 1 : 3) });
  const wild = await run(study('adaptive: { ci: 5%, max: 4 }'), () => noisy);
  assert.equal(wild.result.status, 'complete');
  assert.equal(wild.events.filter((e) => e.event === 'adaptive-round').length, 2);
  assert.equal(noisy.fioRuns, 8, 'two variants x four rounds');
  wild.store.close();
});

test('an interrupt stops the run within the cleanup budget, resumable, with no point left running', async () => {
  const n = ++seq;
  const file = join(dir, `study-${n}.yaml`);
  writeFileSync(file, studyText(n));
  const db = join(dir, `interrupt-${n}.sqlite`);
  const helper = fileURLToPath(new URL('../helpers/fake-run.js', import.meta.url));
  // Each fio takes a minute: the interrupt lands in the middle of the first point.
  const child = spawn(process.execPath, [helper, file, db, '60000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let sentAt = 0;
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (!sentAt && out.includes('"point-start"')) {
      sentAt = Date.now();
      child.kill('SIGINT');
    }
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  const tookMs = Date.now() - sentAt;
  assert.ok(sentAt > 0, 'the run started a point');
  assert.equal(code, 130);
  // runCleanups' budget is 4 s; a process start and SQLite writes fit in the rest.
  assert.ok(tookMs < 6000, `stopped ${tookMs} ms after SIGINT`);
  const events = out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as RunEvent);
  const interrupted = events.find((e) => e.event === 'interrupted');
  assert.ok(interrupted, 'the run said it was interrupted');
  const store = Store.open(db);
  const run = store.listRuns()[0];
  assert.equal(run?.status, 'interrupted');
  assert.deepEqual(
    store.points(run?.id as string).filter((p) => p.status !== 'ok'),
    [],
    'the interrupted point is discarded, not left running or failed',
  );
  assert.match(JSON.stringify(interrupted), /--resume/);
  store.close();
});

test('a guest booted a second time is a warning of the run, kept in the log of the point that booted it', async () => {
  const why = 'boot of blk-threads-io0-4k: the guest kernel panicked while booting under TCG';
  const backend = new FakeBackend({ bootWarning: (boots) => (boots === 1 ? why : undefined) });
  const { store, result, events } = await run(study(), () => backend);
  assert.equal(result.status, 'complete');
  assert.equal(backend.boots, 1, 'one boot, the others switch live');
  const warnings = events.filter((e) => e.event === 'warning');
  assert.deepEqual(
    warnings.map((e) => e.event === 'warning' && e.line),
    [why],
    'said once, when the VM booted, not again on the points that reuse it',
  );
  const [first, ...rest] = store.points(result.runId);
  assert.match(
    store.artifacts(first?.id as number).log ?? '',
    /WARNING: boot of blk-threads-io0-4k: the guest kernel panicked/,
  );
  for (const p of rest) assert.doesNotMatch(store.artifacts(p.id).log ?? '', /WARNING/);
  store.close();
});
