import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Virsh } from '../../src/libvirt/virsh.js';
import { parseStudy } from '../../src/study/load.js';
import { libvirtUnreachable } from '../helpers/libvirt.js';
import { studyScratch, untilGuestFioStarts, withStudyRun } from '../helpers/small-study.js';

/**
 * libvirt's QEMU dying mid-point is a finding with its evidence, as on the direct backend: the QEMU
 * of this test's own domain (kvmio-<this pid>-N, found by libvirt's pid file) is sent SIGSEGV while
 * fio runs in the guest; the failed point stores libvirt's account (its log says the domain crashed;
 * libvirt records no signal number, and the failure says so), QEMU's last log lines and the kernel's
 * account for that pid (a signal sent from user space leaves no kernel line, and the failure says
 * so; the kernel's own segfault lines are matched in the kernel-log unit test on a recorded line).
 * The disk is in /var/tmp: libvirt's QEMU cannot enter mkdtemp's 0700 directories.
 */

const { dir, libvirtDisk: disk } = studyScratch('lvcrash');

const studyText = `name: e2e-libvirt-crash
backend: libvirt
guest: { vcpus: 1, memory: 512MiB }
disk: { path: ${disk}, size: 64MiB }
matrix: { aio: [threads], iothreads: [0] }
repetitions: 1
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 20s, ramp: 0s }
`;

/** The QEMU pid of this process's own running domain, from libvirt's pid file. */
function ownDomainQemu(): { name: string; pid: number } | undefined {
  const prefix = `kvmio-${process.pid}-`;
  const file = readdirSync('/run/libvirt/qemu').find((f) => f.startsWith(prefix) && f.endsWith('.pid'));
  if (!file) return undefined;
  return { name: file.slice(0, -4), pid: Number(readFileSync(join('/run/libvirt/qemu', file), 'utf8')) };
}

test("libvirt: QEMU killed by SIGSEGV mid-point: the failure carries libvirt's account, QEMU's log and the kernel's", {
  timeout: 300_000,
}, async (t) => {
  const unreachable = await libvirtUnreachable();
  if (unreachable) return t.skip(unreachable);
  const study = parseStudy(studyText, join(dir, 'crash.yaml'));
  let killed: { name: string; pid: number } | undefined;
  const killQemuOnce = () => {
    killed = ownDomainQemu();
    const pid = killed?.pid;
    if (pid) setTimeout(() => process.kill(pid, 'SIGSEGV'), 2000);
    return killed !== undefined;
  };
  const crashed = await withStudyRun(
    study,
    join(dir, 'results.sqlite'),
    (run) => {
      assert.ok(killed, 'fio never started, or no domain of this process was found');
      const failures = run.store.failures(run.runId);
      assert.equal(failures.length, 1, JSON.stringify(run.points, null, 1));
      const f = failures[0]!;
      assert.equal(f.variant, 'blk-threads-io0-4k');
      assert.match(
        f.reason,
        new RegExp(`QEMU of domain ${killed.name} \\(pid ${killed.pid}\\) ended unexpectedly`),
      );
      // A signal sent from user space: libvirt records only that QEMU crashed, not which signal.
      assert.match(f.reason, /libvirt says reason=crashed: QEMU ended without being asked to/, f.reason);
      assert.match(
        f.reason,
        new RegExp(`its log \\(/var/log/libvirt/qemu/${killed.name}\\.log\\) ends:\\n`),
        f.reason,
      );
      assert.match(f.reason, /shutting down, reason=crashed/, f.reason);
      assert.match(
        f.reason,
        new RegExp(
          `kernel log: nothing about pid ${killed.pid} or its threads|kernel log for pid ${killed.pid}:`,
        ),
      );
      return killed;
    },
    { onEvent: untilGuestFioStarts(killQemuOnce) },
  );
  const virsh = new Virsh('qemu:///system');
  assert.equal(await virsh.tryRun(['domstate', crashed.name]), undefined, 'the transient domain is gone');
});
