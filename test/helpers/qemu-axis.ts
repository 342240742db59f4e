import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Store } from '../../src/store/store.js';
import { kvmio } from './kvmio-cli.js';
import { qemu10 } from './stack.js';

/**
 * The qemu axis end to end, for either backend: `kvmio run` of a study whose matrix.qemu names the
 * system QEMU and QEMU 10, then what the store and the report say about it.
 */

export const SYSTEM_QEMU = '/usr/bin/qemu-system-x86_64';

export function axisStudy(opts: { backend: 'qemu' | 'libvirt'; diskPath: string; qemu10: string }): string {
  return `name: qemu-axis-${opts.backend}
backend: ${opts.backend}
guest: { vcpus: 1, memory: 512MiB }
disk: { path: ${opts.diskPath}, size: 64MiB }
qemus: { q72: ${SYSTEM_QEMU}, q10: ${opts.qemu10} }
matrix: { aio: [native], iothreads: [1], qemu: [q72, q10] }
repetitions: 1
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 2s, ramp: 0s }
`;
}

/** `kvmio run` of the axis study into a store in `dir`, then checkAxisRun on it, the report in `dir` too. */
export function runAndCheckAxis(study: string, dir: string): void {
  const db = join(dir, 'results.sqlite');
  const run = kvmio(['run', study, '--db', db, '--quiet']);
  assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
  checkAxisRun(db, join(dir, 'report'), {
    q72: versionOf(SYSTEM_QEMU),
    q10: versionOf(qemu10()),
    qemu10: qemu10(),
  });
}

/** Checks a finished run: both variants ok on their own VM and QEMU, recorded per point, reported by version. */
function checkAxisRun(
  db: string,
  outDir: string,
  versions: { q72: string; q10: string; qemu10: string },
): void {
  const store = Store.open(db, { readonly: true });
  let runId: string;
  try {
    const run = store.getRun('latest');
    assert.ok(run);
    runId = run.id;
    assert.equal(run.status, 'complete');
    const points = store.points(run.id);
    assert.deepEqual(points.map((p) => [p.variant, p.status]).sort(), [
      ['blk-native-io1-4k-qemu-q10', 'ok'],
      ['blk-native-io1-4k-qemu-q72', 'ok'],
    ]);
    for (const p of points) {
      const artifacts = store.artifacts(p.id);
      const key = Object.keys(artifacts).find((k) => k === 'qemu' || k.endsWith('.qemu'));
      assert.ok(key, `point ${p.variant} records its QEMU: ${Object.keys(artifacts).join(', ')}`);
      const running = JSON.parse(artifacts[key] as string) as { path: string; version: string };
      const q10 = p.variant.endsWith('q10');
      assert.deepEqual(running, {
        path: q10 ? versions.qemu10 : SYSTEM_QEMU,
        version: q10 ? versions.q10 : versions.q72,
      });
      assert.ok(
        store
          .metricRows(run.id)
          .some((r) => r.variant === p.variant && r.metric === 'read.iops' && r.value > 0),
      );
    }
  } finally {
    store.close();
  }
  const report = kvmio(['report', '--db', db, runId, '--out', outDir], { timeoutMs: 300_000 });
  assert.equal(report.status, 0, report.stderr);
  const html = readFileSync(join(outDir, 'index.html'), 'utf8');
  assert.match(html, /<h2>QEMU version<\/h2>/);
  assert.ok(html.includes(`native (iothread) · QEMU ${versions.q10}`), 'labelled by QEMU 10 version');
  assert.ok(html.includes(`native (iothread) · QEMU ${versions.q72}`), 'labelled by QEMU 7.2 version');
  assert.ok(existsSync(join(outDir, 'summary.md')));
}

/** "10.0.2" from `QEMU -version`. */
function versionOf(qemu: string): string {
  const r = spawnSync(qemu, ['-version'], { encoding: 'utf8' });
  const v = /version (\d+\.\d+\.\d+)/.exec(r.stdout)?.[1];
  assert.ok(v, `${qemu} -version: ${r.stdout}${r.stderr}`);
  return v;
}
