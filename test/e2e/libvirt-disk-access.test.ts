import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkQemuCanReach, qemuDacIds } from '../../src/libvirt/dac.js';
import { Virsh } from '../../src/libvirt/virsh.js';
import { Store } from '../../src/store/store.js';
import { UserError } from '../../src/util/errors.js';
import { kvmio, writeStudy } from '../helpers/kvmio-cli.js';
import { studyScratch } from '../helpers/small-study.js';

/**
 * libvirt's QEMU runs as an unprivileged user (libvirt-qemu here) and cannot enter a 0700 directory
 * such as mkdtemp's: `kvmio run` refuses such a disk before the first boot (exit 2, one line naming the
 * directory), records no run and starts no domain. Access is checked as that user with its groups, so
 * a directory QEMU may enter through its group passes. Real libvirt, real directories.
 */

const { dir } = studyScratch('disk-access');
const virsh = new Virsh('qemu:///system');

function domains(): string[] {
  return execFileSync('virsh', ['-c', 'qemu:///system', 'list', '--all', '--name'], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean);
}

test('a disk in a directory libvirt QEMU cannot enter: exit 2 before any boot, naming the directory', () => {
  chmodSync(dir, 0o700);
  const disk = join(dir, 'disk.raw');
  const db = join(dir, 'results.sqlite');
  const study = writeStudy(
    dir,
    'closed',
    `name: closed
backend: libvirt
guest: { vcpus: 1, memory: 512MiB }
disk: { path: ${disk}, size: 64MiB }
matrix: { aio: [threads], iothreads: [0] }
baseline: false
repetitions: 1
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 2s, ramp: 0s }
`,
  );
  const before = domains();
  const started = Date.now();
  const r = kvmio(['run', study, '--db', db, '--quiet'], { timeoutMs: 120_000 });
  assert.equal(r.status, 2, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, new RegExp(`closed\\.yaml: disk\\.path .*cannot enter ${dir}[;]`));
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  // Refused before anything booted (a boot under TCG alone takes longer than this bound).
  assert.ok(Date.now() - started < 60_000);
  assert.deepEqual(domains(), before, 'no domain was started');
  if (existsSync(db)) {
    const store = Store.open(db, { readonly: true });
    try {
      assert.deepEqual(store.listRuns(), [], 'no run recorded');
    } finally {
      store.close();
    }
  }
});

test('access is checked as the user libvirt names, with its groups', async () => {
  const ids = await qemuDacIds(virsh);
  assert.ok(ids && ids.uid !== 0, 'libvirt runs QEMU unprivileged here');
  const groupOf = (name: string) =>
    Number(execFileSync('getent', ['group', name], { encoding: 'utf8' }).split(':')[2]);
  // The QEMU user's supplementary group (kvm on Debian) opens a directory closed to others.
  const byGroup = mkdtempSync(join('/var/tmp', 'kvmio-disk-access-group-'));
  try {
    chownSync(byGroup, 0, groupOf('kvm'));
    chmodSync(byGroup, 0o710);
    await checkQemuCanReach(virsh, join(byGroup, 'disk.raw'), 's.yaml');
    chmodSync(byGroup, 0o700);
    await assert.rejects(
      checkQemuCanReach(virsh, join(byGroup, 'disk.raw'), 's.yaml'),
      (e: unknown) => e instanceof UserError && e.message.includes(`cannot enter ${byGroup};`),
    );
  } finally {
    rmSync(byGroup, { recursive: true, force: true });
  }
  // Directories that do not exist yet are the disk guard's to create or refuse.
  await checkQemuCanReach(virsh, '/var/tmp/kvmio-no-such-dir/sub/disk.raw', 's.yaml');
});
