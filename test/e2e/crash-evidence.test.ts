import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runStudy } from '../../src/engine/run.js';
import { renderReport } from '../../src/report/index.js';
import { Store } from '../../src/store/store.js';
import { parseStudy } from '../../src/study/load.js';
import { qemuPids } from '../helpers/vm.js';

/**
 * A QEMU that dies mid-point is a finding with its evidence: QEMU is sent SIGSEGV while fio runs in
 * the guest; the failed point stores the signal, QEMU's last stderr lines and the kernel's account for
 * that pid (a signal sent from user space leaves no kernel line, and the failure says so: the kernel's
 * own segfault lines are matched in the kernel-log unit test on a recorded line), and the report's
 * failures table shows it under the variant.
 */

const dir = mkdtempSync(join(tmpdir(), 'kvmio-e2e-crash-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const studyText = `name: e2e-crash
backend: qemu
guest: { vcpus: 1, memory: 512MiB }
disk: { path: ${join(dir, 'disk.raw')}, size: 64MiB }
matrix: { aio: [threads], iothreads: [0] }
repetitions: 1
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 20s, ramp: 0s }
`;

test('QEMU killed by SIGSEGV mid-point: the failure carries the signal and the kernel account', {
  timeout: 300_000,
}, async () => {
  const study = parseStudy(studyText, join(dir, 'crash.yaml'));
  const store = Store.open(join(dir, 'results.sqlite'));
  let killed: number | undefined;
  try {
    const r = await runStudy(study, {
      store,
      accelerator: { accel: 'tcg', reason: 'e2e test' },
      onEvent: (e) => {
        // fio has started in the guest: the point is under way.
        if (e.event === 'log' && e.line.startsWith('guest: ') && e.line.includes('fio') && !killed) {
          const [pid] = qemuPids();
          if (pid === undefined) return;
          killed = pid;
          setTimeout(() => process.kill(pid, 'SIGSEGV'), 2000);
        }
      },
    });
    assert.ok(killed, 'fio never started');
    const failures = store.failures(r.runId);
    assert.equal(failures.length, 1, JSON.stringify(store.points(r.runId), null, 1));
    const f = failures[0]!;
    assert.equal(f.variant, 'blk-threads-io0-4k');
    assert.match(f.reason, /QEMU \(.*\) was killed by SIGSEGV unexpectedly/);
    assert.match(
      f.reason,
      new RegExp(`kernel log: nothing about pid ${killed} or its threads|kernel log for pid ${killed}:`),
    );
    const out = join(dir, 'report');
    await renderReport(store, [r.runId], out);
    const html = readFileSync(join(out, 'index.html'), 'utf8');
    assert.match(html, /<h2>Failed points<\/h2>/);
    assert.match(html, /<td>blk-threads-io0-4k<\/td>.*was killed by SIGSEGV unexpectedly.*<br>kernel log/s);
  } finally {
    store.close();
  }
  assert.deepEqual(qemuPids(), [], 'no QEMU left');
});
