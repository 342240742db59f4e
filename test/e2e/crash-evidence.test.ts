import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { renderReport } from '../../src/report/index.js';
import { parseStudy } from '../../src/study/load.js';
import { studyScratch, untilGuestFioStarts, withStudyRun } from '../helpers/small-study.js';
import { qemuPids } from '../helpers/vm.js';

/**
 * A QEMU that dies mid-point is a finding with its evidence: QEMU is sent SIGSEGV while fio runs in
 * the guest; the failed point stores the signal, QEMU's last stderr lines and the kernel's account for
 * that pid (a signal sent from user space leaves no kernel line, and the failure says so: the kernel's
 * own segfault lines are matched in the kernel-log unit test on a recorded line), and the report's
 * failures table shows it under the variant.
 */

const { dir } = studyScratch('crash');

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
  let killed: number | undefined;
  const killQemuOnce = () => {
    const [pid] = qemuPids();
    if (pid === undefined) return false;
    killed = pid;
    setTimeout(() => process.kill(pid, 'SIGSEGV'), 2000);
    return true;
  };
  await withStudyRun(
    study,
    join(dir, 'results.sqlite'),
    async (run) => {
      assert.ok(killed, 'fio never started');
      const failures = run.store.failures(run.runId);
      assert.equal(failures.length, 1, JSON.stringify(run.points, null, 1));
      const f = failures[0]!;
      assert.equal(f.variant, 'blk-threads-io0-4k');
      assert.match(f.reason, /QEMU \(.*\) was killed by SIGSEGV unexpectedly/);
      assert.match(
        f.reason,
        new RegExp(`kernel log: nothing about pid ${killed} or its threads|kernel log for pid ${killed}:`),
      );
      const out = join(dir, 'report');
      await renderReport(run.store, [run.runId], out);
      const html = readFileSync(join(out, 'index.html'), 'utf8');
      assert.match(html, /<h2>Failed points<\/h2>/);
      assert.match(html, /<td>blk-threads-io0-4k<\/td>.*was killed by SIGSEGV unexpectedly.*<br>kernel log/s);
    },
    { onEvent: untilGuestFioStarts(killQemuOnce) },
  );
  assert.deepEqual(qemuPids(), [], 'no QEMU left');
});
