import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DOMParser } from '@xmldom/xmldom';
import { ensureGuest, GUEST_KERNEL_CMDLINE } from '../../src/guest/build.js';
import { Virsh } from '../../src/libvirt/virsh.js';
import { Store } from '../../src/store/store.js';

/**
 * A user's own domain, varied for real under libvirt (TCG): the "user's OS" is kvmio's built guest
 * kernel and initrd declared in the user's XML, with vCPU and emulator pinning, an iothread of its own,
 * hugepages, a data disk and an extra virtio-scsi controller at a fixed PCI address. A two-variant
 * study runs on it from the file, then from the name of a defined domain; every point's stored domain
 * XML keeps all of the user's, the data disk is byte-for-byte unchanged, and `virsh dumpxml NAME` is
 * identical before and after. Files live in /var/tmp: libvirt's QEMU cannot enter 0700 directories.
 */

const URI = 'qemu:///system';
const virsh = new Virsh(URI);
const bin = fileURLToPath(new URL('../../../bin/kvmio.js', import.meta.url));
const dir = mkdtempSync(`/var/tmp/kvmio-e2e-own-${process.pid}-`);
chmodSync(dir, 0o711);
const userName = `kvmio-e2e-user-${process.pid}`;
const dataDisk = join(dir, 'data.raw');
// The user's console, logged by libvirt: what a copy's kernel said when a run fails.
const consoleLog = join(dir, 'console.log');
let reachable = false;
let userXml = '';

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

before(async () => {
  reachable = (await virsh.tryRun(['version'])) !== undefined;
  if (!reachable) return;
  const image = await ensureGuest();
  copyFileSync(image.kernel, join(dir, 'vmlinuz'));
  copyFileSync(image.initrd, join(dir, 'initrd.img'));
  writeFileSync(dataDisk, randomBytes(4 * 1024 * 1024));
  userXml = `<domain type='qemu'>
  <name>${userName}</name>
  <uuid>6b1c9a40-5d7e-4a51-9b7e-3c2f0a1d${String(process.pid % 10000).padStart(4, '0')}</uuid>
  <description>a user's VM that kvmio must keep whole</description>
  <memory unit='MiB'>512</memory>
  <memoryBacking>
    <hugepages/>
  </memoryBacking>
  <vcpu placement='static'>2</vcpu>
  <iothreads>1</iothreads>
  <cputune>
    <vcpupin vcpu='0' cpuset='0'/>
    <vcpupin vcpu='1' cpuset='1'/>
    <emulatorpin cpuset='1'/>
    <iothreadpin iothread='1' cpuset='0'/>
  </cputune>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${join(dir, 'vmlinuz')}</kernel>
    <initrd>${join(dir, 'initrd.img')}</initrd>
    <cmdline>${GUEST_KERNEL_CMDLINE}</cmdline>
  </os>
  <features>
    <acpi/>
  </features>
  <cpu mode='custom' match='exact' check='none'>
    <model fallback='allow'>qemu64</model>
  </cpu>
  <on_reboot>destroy</on_reboot>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source file='${dataDisk}'/>
      <target dev='vda' bus='virtio'/>
      <serial>user-data</serial>
    </disk>
    <controller type='scsi' index='0' model='virtio-scsi'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>
    </controller>
    <controller type='usb' model='none'/>
    <serial type='pty'>
      <log file='${consoleLog}' append='on'/>
      <target port='0'/>
    </serial>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <memballoon model='none'/>
  </devices>
</domain>
`;
  writeFileSync(join(dir, 'vm.xml'), userXml);
});

after(async () => {
  if (reachable) await virsh.tryRun(['undefine', userName]);
  rmSync(dir, { recursive: true, force: true });
  if (reachable) {
    const left = (await virsh.run(['list', '--all', '--name'])).split('\n').map((s) => s.trim());
    assert.ok(!left.some((n) => n.startsWith(`kvmio-${process.pid}-`)), `a copy is left: ${left.join(' ')}`);
  }
});

function studyFile(domain: string, file: string): string {
  writeFileSync(
    file,
    `name: own-domain
backend: libvirt
guest: { domain: ${domain} }
disk: { path: ${join(dir, 'test.raw')}, size: 64MiB }
matrix: { aio: [threads], iothreads: [1], bus: [virtio-blk, virtio-scsi], memory: [hugepages] }
baseline: false
repetitions: 1
workloads:
  - { kind: fio, name: rr, rw: randread, bs: 4k, iodepth: 1, runtime: 2s, ramp: 0s, size: 16MiB }
`,
  );
  return file;
}

function runStudy(study: string, db: string): void {
  const r = spawnSync(process.execPath, [bin, 'run', study, '--db', db], {
    encoding: 'utf8',
    env: { ...process.env, KVMIO_ACCEL: 'tcg' },
    timeout: 900_000,
  });
  if (r.status !== 0) {
    const console = existsSync(consoleLog)
      ? readFileSync(consoleLog, 'utf8').split('\n').slice(-40).join('\n')
      : '';
    assert.fail(
      `kvmio run failed (exit ${r.status}):\n${r.stderr.slice(-3000)}\nthe copies' console:\n${console}`,
    );
  }
}

/** Every stored point ran, and its domain XML still holds everything of the user's. */
function checkStoredPoints(db: string): void {
  const store = Store.open(db);
  try {
    const run = store.getRun('latest');
    assert.ok(run);
    const points = store.points(run.id);
    assert.equal(points.length, 2);
    for (const p of points) {
      assert.equal(p.status, 'ok', `point ${p.variant} failed`);
      const xml = store.artifacts(p.id)['libvirt.xml'];
      assert.ok(xml, `point ${p.variant} stored no domain XML`);
      const root = new DOMParser().parseFromString(xml, 'text/xml').documentElement;
      assert.ok(root);
      const all = (tag: string) => Array.from(root.getElementsByTagName(tag));
      const attr = (tag: string, name: string) => all(tag).map((e) => e.getAttribute(name));
      assert.deepEqual(attr('vcpupin', 'cpuset'), ['0', '1'], 'vCPU pinning kept');
      assert.deepEqual(attr('emulatorpin', 'cpuset'), ['1'], 'emulator pinning kept');
      assert.ok(attr('iothreadpin', 'iothread').includes('1'), "the user's iothread pin kept");
      assert.equal(all('iothreads')[0]?.textContent, '2', "the user's iothread and kvmio's");
      assert.equal(all('hugepages').length, 1, 'hugepages kept');
      assert.equal(all('description')[0]?.textContent, "a user's VM that kvmio must keep whole");
      const disks = all('disk');
      const data = disks.find((d) => d.getElementsByTagName('serial')[0]?.textContent === 'user-data');
      assert.ok(data, "the user's data disk is there");
      assert.match(data.getElementsByTagName('source')[0]?.getAttribute('file') ?? '', /overlay-0\.qcow2$/);
      assert.equal(data.getElementsByTagName('target')[0]?.getAttribute('dev'), 'vda');
      const test = disks.find((d) => d.getElementsByTagName('serial')[0]?.textContent === 'kvmio-test');
      assert.ok(test, "kvmio's test disk is there");
      assert.notEqual(test.getElementsByTagName('target')[0]?.getAttribute('dev'), 'vda');
      const scsi = all('controller').filter((c) => c.getAttribute('type') === 'scsi');
      const fixed = scsi.find((c) => c.getAttribute('index') === '0');
      assert.equal(
        fixed?.getElementsByTagName('address')[0]?.getAttribute('slot'),
        '0x07',
        'extra controller kept',
      );
      if (p.variant.startsWith('scsi'))
        assert.deepEqual(
          scsi.map((c) => c.getAttribute('index')),
          ['0', '1'],
          "kvmio's controller comes after the user's",
        );
      assert.equal(all('name')[0]?.textContent?.startsWith(userName), false, 'runs under a new name');
      assert.equal(all('uuid').length, 0, "the user's UUID is not reused");
    }
  } finally {
    store.close();
  }
}

test("a study varies the user's own domain from its file; the user's disk is unchanged", {
  timeout: 900_000,
}, async (t) => {
  if (!reachable) return t.skip(`libvirt is not reachable at ${URI} (run scripts/services.sh)`);
  const before = sha256(dataDisk);
  const db = join(dir, 'file.sqlite');
  runStudy(studyFile(join(dir, 'vm.xml'), join(dir, 'file.yaml')), db);
  checkStoredPoints(db);
  assert.equal(sha256(dataDisk), before, "the user's data disk changed");
  assert.deepEqual(
    readdirSync('/var/tmp').filter((f) => f.startsWith(`kvmio-kvmio-${process.pid}`)),
    [],
    'overlays are removed',
  );
});

test('the same study by domain name leaves `virsh dumpxml NAME` identical', {
  timeout: 900_000,
}, async (t) => {
  if (!reachable) return t.skip(`libvirt is not reachable at ${URI} (run scripts/services.sh)`);
  await virsh.run(['define', join(dir, 'vm.xml')]);
  const definition = await virsh.run(['dumpxml', userName]);
  const inactive = await virsh.run(['dumpxml', '--inactive', userName]);
  const before = sha256(dataDisk);
  const db = join(dir, 'name.sqlite');
  runStudy(studyFile(userName, join(dir, 'name.yaml')), db);
  checkStoredPoints(db);
  assert.equal(await virsh.run(['dumpxml', userName]), definition);
  assert.equal(await virsh.run(['dumpxml', '--inactive', userName]), inactive);
  assert.equal((await virsh.run(['domstate', userName])).trim(), 'shut off');
  assert.equal(sha256(dataDisk), before, "the user's data disk changed");
  execFileSync('virsh', ['-c', URI, 'undefine', userName]);
});
