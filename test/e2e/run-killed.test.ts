import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Store } from '../../src/store/store.js';
import { sleep } from '../../src/util/proc.js';

/**
 * kvmio killed with SIGKILL (the OOM killer, a CI timeout) runs no cleanup at all: its QEMU must still
 * end with it, so that the disk is free and `--resume` finishes the run instead of refusing a disk held
 * by a VM whose owner is gone.
 */

const bin = fileURLToPath(new URL('../../../bin/kvmio.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'kvmio-run-killed-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const disk = join(dir, 'disk.raw');
const study = join(dir, 'killed.yaml');
const db = join(dir, 'results.sqlite');
writeFileSync(
  study,
  `name: killed
backend: qemu
guest: { vcpus: 1, memory: 512MiB }
disk: { path: ${disk}, size: 64MiB }
matrix: { aio: [threads], iothreads: [0] }
repetitions: 2
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 2s, ramp: 0s }
`,
);

/** Processes whose command line names the test disk: the QEMU serving it. */
function holders(): string[] {
  try {
    return execFileSync('pgrep', ['-f', `filename.*${disk}`], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean);
  } catch {
    return [];
  }
}

test('SIGKILL of kvmio mid-run ends its QEMU, and --resume completes the run', {
  timeout: 420_000,
}, async () => {
  const env = { ...process.env, KVMIO_ACCEL: 'tcg' };
  const child = spawn(process.execPath, [bin, 'run', study, '--db', db, '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const runId = () => /"event":"run-start"[^\n]*"run":"([^"]+)"/.exec(out)?.[1];

  // Wait until the VM serves the disk (QEMU started for the first point).
  const deadline = Date.now() + 300_000;
  while (holders().length === 0 && Date.now() < deadline && child.exitCode === null) await sleep(200);
  const qemu = holders();
  assert.ok(qemu.length > 0, `QEMU never started:\n${err}`);
  assert.ok(runId(), 'the run started');
  child.kill('SIGKILL');
  await exited;

  const gone = Date.now() + 5000;
  while (qemu.some((pid) => existsSync(`/proc/${pid}`)) && Date.now() < gone) await sleep(100);
  assert.deepEqual(
    qemu.filter((pid) => existsSync(`/proc/${pid}`)),
    [],
    'QEMU ends with the kvmio that started it',
  );

  const resumed = spawnSync(
    process.execPath,
    [bin, 'run', study, '--db', db, '--resume', runId()!, '--quiet'],
    {
      encoding: 'utf8',
      env,
      timeout: 360_000,
    },
  );
  assert.equal(resumed.status, 0, resumed.stderr);
  const store = Store.open(db);
  try {
    assert.equal(store.getRun(runId()!)?.status, 'complete');
    assert.deepEqual(
      store.points(runId()!).map((p) => p.status),
      ['ok', 'ok'],
    );
  } finally {
    store.close();
  }
  assert.deepEqual(holders(), [], 'nothing left on the disk');
});
