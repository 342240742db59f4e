import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  kernelAccount,
  parseKmsgRecord,
  readKernelLog,
  recordsForTasks,
  taskIds,
} from '../../src/host/kernel-log.js';

/**
 * The kernel's account of a crashed QEMU. The segfault and Code lines are the ones the seed study
 * recorded from a real io_uring crash on LVM (its "io_uring still has stability issues" slide), put in
 * /dev/kmsg's record framing (PRI,SEQ,USEC,FLAGS;message) with the study's timestamp; the OOM line is
 * the kernel's oom_kill message form.
 */
const RECORDED = [
  '4,100,763134450950,-;show_signal_msg: 7 callbacks suppressed',
  '6,101,763134450954,-;IO iotthread1[37282]: segfault at 7ff05adffffe0 ip 00007ff06251e47c sp 00007ff05adffffe0 error 6 in liburing.so.2.9[347c,7ff06251d000+3000] likely on CPU 14 (core 6, socket 0)',
  '6,102,763134452235,-;Code: c3 41 83 ca 02 eb d6 0f 1f 80 00 00 00 00 f3 0f 1e fa 48 83 ec 38 66 0f ef c0 64 48 8b 04 25 28 00 00 00 48 89 44 24 28 31 c0 <89> 14 24 48 89 e2 0f 11 44 24 08 89 4c 24 04 c7 44 24 0c 08 00 00',
  '6,103,763135000000,-;EXT4-fs (loop0): mounted filesystem with ordered data mode',
  '3,104,763140000000,-;Out of memory: Killed process 4242 (qemu-system-x86) total-vm:9000000kB, anon-rss:8000000kB',
].map((r) => parseKmsgRecord(r)!);

test('a segfault in a QEMU thread is found by the thread id, with the Code line after it', () => {
  const lines = recordsForTasks(RECORDED, [37280, 37282]);
  assert.equal(lines.length, 2);
  assert.equal(
    lines[0],
    '[763134.450954] IO iotthread1[37282]: segfault at 7ff05adffffe0 ip 00007ff06251e47c sp 00007ff05adffffe0 error 6 in liburing.so.2.9[347c,7ff06251d000+3000] likely on CPU 14 (core 6, socket 0)',
  );
  assert.match(lines[1] ?? '', /^\[763134\.452235\] Code: c3 41/);
});

test('records about other processes, and from before the process started, are left out', () => {
  assert.deepEqual(recordsForTasks(RECORDED, [1234]), []);
  assert.deepEqual(recordsForTasks(RECORDED, [37282], 763134500000), []);
  // The OOM killer names the process by pid.
  assert.deepEqual(recordsForTasks(RECORDED, [4242]), [
    '[763140.000000] Out of memory: Killed process 4242 (qemu-system-x86) total-vm:9000000kB, anon-rss:8000000kB',
  ]);
});

test("this host's kernel log reads, and a live process's account says what it found", () => {
  const log = readKernelLog();
  if (!Array.isArray(log)) {
    assert.match(kernelAccount(process.pid, []).summary, /^kernel log unreadable: /);
    return;
  }
  assert.ok(log.length > 0, 'the kernel log has records');
  assert.ok(log.every((r) => Number.isFinite(r.usec) && typeof r.text === 'string'));
  assert.ok(taskIds(process.pid).includes(process.pid));
  assert.equal(
    kernelAccount(process.pid, taskIds(process.pid)).summary,
    `kernel log: nothing about pid ${process.pid} or its threads`,
  );
  assert.equal(parseKmsgRecord('not a record'), undefined);
});
