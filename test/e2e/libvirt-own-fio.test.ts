import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  copyFileSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { builtGuest, ensureGuest, GUEST_KERNEL_CMDLINE } from '../../src/guest/build.js';
import { writeCpio } from '../../src/guest/cpio.js';
import { fioBundle } from '../../src/guest/fio-bundle.js';
import { Virsh } from '../../src/libvirt/virsh.js';
import { Store } from '../../src/store/store.js';

/**
 * A user's guest without fio: kvmio's built bookworm guest, whose initramfs gets a second cpio
 * archive appended that replaces /usr/bin/fio and /usr/bin/rsync by dangling symlinks (the kernel
 * unpacks appended archives over the first, as a distribution's early microcode archive is). A fio
 * study on it runs with kvmio's own fio — the trixie guest's fio-3.39 with its own loader and
 * libraries, copied in through the guest agent — and an rsync study is refused naming rsync.
 */

const URI = 'qemu:///system';
const virsh = new Virsh(URI);
const bin = fileURLToPath(new URL('../../../bin/kvmio.js', import.meta.url));
const dir = mkdtempSync(`/var/tmp/kvmio-e2e-ownfio-${process.pid}-`);
chmodSync(dir, 0o711);
let reachable = false;

before(async () => {
  reachable = (await virsh.tryRun(['version'])) !== undefined;
  if (!reachable) return;
  const image = await ensureGuest({ release: 'bookworm' });
  await ensureGuest({ release: 'trixie' });
  copyFileSync(image.kernel, join(dir, 'vmlinuz'));
  const hide = join(dir, 'hide.cpio');
  await writeCpio(hide, [
    { path: 'usr/bin/fio', type: 'symlink', target: '/nonexistent/fio' },
    { path: 'usr/bin/rsync', type: 'symlink', target: '/nonexistent/rsync' },
  ]);
  copyFileSync(image.initrd, join(dir, 'initrd.img'));
  appendFileSync(join(dir, 'initrd.img'), readFileSync(hide));
  writeFileSync(
    join(dir, 'vm.xml'),
    `<domain type='qemu'>
  <name>kvmio-e2e-nofio-${process.pid}</name>
  <memory unit='MiB'>768</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${join(dir, 'vmlinuz')}</kernel>
    <initrd>${join(dir, 'initrd.img')}</initrd>
    <cmdline>${GUEST_KERNEL_CMDLINE}</cmdline>
  </os>
  <features><acpi/></features>
  <on_reboot>destroy</on_reboot>
  <devices>
    <serial type='pty'><target port='0'/></serial>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <memballoon model='none'/>
  </devices>
</domain>
`,
  );
});

after(() => rmSync(dir, { recursive: true, force: true }));

function study(name: string, workload: string): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    `name: ${name}
backend: libvirt
guest: { domain: ${join(dir, 'vm.xml')}, release: trixie }
disk: { path: ${join(dir, 'test.raw')}, size: 64MiB }
matrix: { aio: [threads], iothreads: [1], bus: [virtio-blk] }
baseline: false
repetitions: 1
workloads:
  - ${workload}
`,
  );
  return file;
}

function run(file: string, db: string) {
  return spawnSync(process.execPath, [bin, 'run', file, '--db', db, '--json'], {
    encoding: 'utf8',
    env: { ...process.env, KVMIO_ACCEL: 'tcg' },
    timeout: 900_000,
  });
}

test("a guest without fio runs a fio point with kvmio's own fio", { timeout: 900_000 }, async (t) => {
  if (!reachable) return t.skip(`libvirt is not reachable at ${URI} (run scripts/services.sh)`);
  const trixie = builtGuest('trixie');
  assert.ok(trixie);
  const bundle = await fioBundle(trixie);
  const db = join(dir, 'fio.sqlite');
  const r = run(
    study(
      'nofio',
      '{ kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 2s, ramp: 0s, size: 16MiB }',
    ),
    db,
  );
  assert.equal(r.status, 0, `kvmio run failed:\n${r.stderr.slice(-3000)}`);
  const store = Store.open(db);
  try {
    const points = store.points(store.getRun('latest')!.id);
    assert.equal(points.length, 1);
    const p = points[0]!;
    assert.equal(p.status, 'ok', p.error ?? '');
    const artifacts = store.artifacts(p.id);
    // The boot's log (the check of what the guest needs) is a run event.
    assert.match(
      r.stdout,
      /has no fio in its PATH: kvmio brought its own \(fio-3\.39 of its trixie guest, \d+ MiB with its libraries and loader\) to \/tmp\/kvmio-fio\/fio/,
    );
    // The guest's only fio is the bundle: its JSON says which fio produced the figures.
    const json = JSON.parse(artifacts.fio_json ?? '{}') as { 'fio version'?: string };
    assert.equal(json['fio version'], bundle.version);
    assert.equal(bundle.version, 'fio-3.39');
  } finally {
    store.close();
  }
});

test('a guest without rsync is refused for an rsync study, naming rsync', { timeout: 900_000 }, async (t) => {
  if (!reachable) return t.skip(`libvirt is not reachable at ${URI} (run scripts/services.sh)`);
  const db = join(dir, 'rsync.sqlite');
  const r = run(study('norsync', '{ kind: rsync, name: tree, files: 20, size: 4KiB }'), db);
  assert.notEqual(r.status, 0);
  const store = Store.open(db);
  try {
    const p = store.points(store.getRun('latest')!.id)[0]!;
    assert.equal(p.status, 'failed');
    assert.match(
      p.error ?? '',
      /lacks rsync \(in its PATH\), which the study's workloads run; install them in your guest \(it lacks fio too, which kvmio would bring itself\)/,
    );
  } finally {
    store.close();
  }
});
