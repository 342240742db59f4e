import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Store } from '../../src/store/store.js';

/**
 * A fault costs a point, not the run: QEMU is killed with SIGKILL while fio runs in the guest; that
 * point is recorded failed with a reason, the other variant is measured on a fresh VM, and no QEMU
 * is left behind. Real QEMU under TCG, the embedded guest, fio 2 s.
 */

const bin = fileURLToPath(new URL('../../../bin/kvmio.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'kvmio-run-fault-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const study = join(dir, 'fault.yaml');
const db = join(dir, 'results.sqlite');
writeFileSync(
  study,
  `name: fault
backend: qemu
guest: { vcpus: 1, memory: 512MiB }
disk: { path: ${join(dir, 'disk.raw')}, size: 64MiB }
matrix: { aio: [threads, native], iothreads: [0] }
baseline: false
repetitions: 1
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 2s, ramp: 0s }
`,
);

function pgrep(pattern: string): number[] {
  try {
    return execFileSync('pgrep', ['-f', '--', pattern], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

test('QEMU killed with SIGKILL mid-point: that point fails with a reason, the other variant finishes, no QEMU left', {
  timeout: 600_000,
}, async () => {
  const child = spawn(process.execPath, [bin, 'run', study, '--db', db, '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, KVMIO_ACCEL: process.env.KVMIO_TEST_ACCEL ?? 'tcg' },
  });
  const vmPattern = `-name kvmio-${child.pid}-`;
  const events: Array<Record<string, unknown>> = [];
  let stderr = '';
  let killed: number | undefined;
  let buf = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      const e = JSON.parse(line) as Record<string, unknown>;
      events.push(e);
      // fio has been started in the guest of the first point: kill its QEMU a second into the job.
      if (killed === undefined && e.event === 'log' && /^guest: .*fio/.test(String(e.line))) {
        killed = -1;
        setTimeout(() => {
          const [pid] = pgrep(vmPattern);
          assert.ok(pid, "the run's QEMU is running");
          killed = pid;
          process.kill(pid, 'SIGKILL');
        }, 1000);
      }
    }
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  assert.ok(killed && killed > 0, `QEMU was found and killed (stderr: ${stderr})`);
  assert.equal(code, 1, 'a partial run exits 1');

  const store = Store.open(db);
  const run = store.getRun('latest');
  assert.ok(run);
  assert.equal(run.status, 'partial');
  const points = store.points(run.id);
  assert.deepEqual(
    points.map((p) => p.status),
    ['failed', 'ok'],
  );
  const [failed, ok] = points;
  assert.ok(failed?.error && failed.error.length > 0, 'a reason');
  assert.match(failed.error, /QEMU|SIGKILL|killed|exited|agent/i);
  assert.notEqual(failed.variant, ok?.variant);
  const failures = store.failures(run.id);
  assert.equal(failures.length, 1);
  const rows = store.metricRows(run.id);
  assert.ok(rows.some((r) => r.variant === ok?.variant && r.metric === 'read.iops' && r.value > 0));
  assert.ok(
    rows.every((r) => r.variant === ok?.variant),
    'no figure from the killed point',
  );
  store.close();
  assert.deepEqual(pgrep(vmPattern), [], 'no QEMU left');
});
