import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { qemuBinary } from '../../src/qemu/binary.js';
import { Store } from '../../src/store/store.js';
import { sleep } from '../../src/util/proc.js';
import { kvmio, startKvmio, writeStudy } from '../helpers/kvmio-cli.js';
import { studyScratch } from '../helpers/small-study.js';

/**
 * What a kvmio killed without its cleanups left behind is stopped by the next `kvmio run` (and
 * `--resume`), which says so, one line per item: its own QEMU processes (`-name kvmio-PID-N`) and its
 * transient libvirt domains, recognised by name and metadata, only when that kvmio is gone. Real QEMU,
 * real libvirt; the libvirt case kills kvmio with SIGKILL mid-run.
 */

const started: ChildProcess[] = [];
after(() => {
  for (const c of started) if (c.exitCode === null) c.kill('SIGKILL');
});
const { dir, libvirtDisk: varDisk } = studyScratch('leftovers');

/** An idle real QEMU named as kvmio names its VMs. */
function idleQemu(name: string): ChildProcess {
  const q = spawn(
    qemuBinary(),
    ['-name', `${name},debug-threads=on`, '-machine', 'none', '-display', 'none', '-nodefaults', '-S'],
    { stdio: 'ignore' },
  );
  started.push(q);
  return q;
}

const alive = (pid: number | undefined) => pid !== undefined && existsSync(`/proc/${pid}`);

test('kvmio run stops the QEMU of a kvmio that is gone, says so, and leaves a live owner alone', {
  timeout: 60_000,
}, async () => {
  const gone = spawnSync('true').pid;
  const orphan = idleQemu(`kvmio-${gone}-1`);
  const owned = idleQemu(`kvmio-${process.pid}-9999`);
  await sleep(500);
  assert.ok(alive(orphan.pid) && alive(owned.pid), 'both QEMUs run');
  const study = writeStudy(
    dir,
    'q',
    `name: q
backend: qemu
disk: { path: ${join(dir, 'disk.raw')}, size: 64MiB }
matrix: { aio: [threads], iothreads: [0] }
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 2s, ramp: 0s }
`,
  );
  // --resume of a run that is not there: refused after the leftovers were stopped, before any boot.
  const r = kvmio(['run', study, '--db', join(dir, 'q.sqlite'), '--resume', 'no-such-run', '--quiet'], {
    timeoutMs: 30_000,
  });
  assert.equal(r.status, 2, r.stderr);
  const said = r.stderr.split('\n').filter((l) => /stopped QEMU/.test(l));
  assert.deepEqual(said, [
    `kvmio: stopped QEMU pid ${orphan.pid} (VM kvmio-${gone}-1), left running by kvmio pid ${gone}, which is gone`,
  ]);
  const deadline = Date.now() + 5000;
  while (alive(orphan.pid) && orphan.exitCode === null && Date.now() < deadline) await sleep(100);
  assert.ok(orphan.exitCode !== null || orphan.signalCode !== null, 'the orphan QEMU ended');
  assert.ok(alive(owned.pid) && owned.exitCode === null, 'the QEMU of a live kvmio runs on');
  owned.kill('SIGKILL');
});

/**
 * `unshare` that runs argv under a hostname of its own (the pid stays argv's: unshare and sh exec).
 * Every kvmio reaps the leftovers of dead kvmio processes of its own host name: under this name only
 * this test's kvmio processes do, whatever other kvmio runs on this machine meanwhile.
 */
function asHost(argv: string[]): string[] {
  return [
    'unshare',
    '--uts',
    'sh',
    '-c',
    'hostname "$1" && shift && exec "$@"',
    'sh',
    `kvmio-e2e-${process.pid}`,
    ...argv,
  ];
}

function domains(): string[] {
  return execFileSync('virsh', ['-c', 'qemu:///system', 'list', '--name'], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean);
}

test('SIGKILL of kvmio mid-run leaves its transient domain; --resume destroys it, says so, completes', {
  timeout: 600_000,
}, async () => {
  const db = join(dir, 'lv.sqlite');
  const study = writeStudy(
    dir,
    'lv',
    `name: lv
backend: libvirt
guest: { vcpus: 1, memory: 512MiB }
disk: { path: ${varDisk}, size: 64MiB }
matrix: { aio: [threads], iothreads: [0] }
baseline: false
repetitions: 1
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 2s, ramp: 0s }
`,
  );
  const run = startKvmio(['run', study, '--db', db, '--json'], { via: asHost });
  const { child } = run;
  started.push(child);
  const domain = `kvmio-${child.pid}-1`;
  const deadline = Date.now() + 400_000;
  while (!domains().includes(domain) && Date.now() < deadline && child.exitCode === null) await sleep(500);
  assert.ok(domains().includes(domain), `the domain never started:\n${run.stderr()}`);
  const runId = run.runId();
  assert.ok(runId, 'the run started');
  child.kill('SIGKILL');
  await run.exit;
  await sleep(1000);
  assert.ok(domains().includes(domain), 'libvirt keeps the domain of a SIGKILLed kvmio');

  const resumed = kvmio(['run', study, '--db', db, '--resume', runId, '--quiet'], {
    via: asHost,
    timeoutMs: 500_000,
  });
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.ok(
    resumed.stderr
      .split('\n')
      .includes(
        `kvmio: libvirt: destroying ${domain}, left running by kvmio pid ${child.pid}, which is gone`,
      ),
    resumed.stderr,
  );
  assert.ok(!domains().includes(domain), 'the leftover domain is gone');
  const store = Store.open(db, { readonly: true });
  try {
    assert.equal(store.getRun(runId)?.status, 'complete');
  } finally {
    store.close();
  }
});
