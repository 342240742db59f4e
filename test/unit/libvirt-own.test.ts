import assert from 'node:assert/strict';
import { linkSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { inUseReason } from '../../src/libvirt/own.js';
import { parseStudy } from '../../src/study/load.js';
import { ConfigError } from '../../src/util/errors.js';

/**
 * The running-VM check of a user's domain: by name, by UUID whatever the name, and by the file or
 * device behind a disk path (a hard link, a backing file). The running domains' XML is the live
 * `virsh dumpxml` shape: disks with `<source>` and `<backingStore>` chains.
 */

const dir = mkdtempSync(join(tmpdir(), 'kvmio-own-inuse-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const disk = join(dir, 'user.qcow2');
writeFileSync(disk, 'user data');
const link = join(dir, 'same-file-other-name.qcow2');
linkSync(disk, link);

const user = { userName: 'db-vm', userUuid: '6b1c9a40-5d7e-4a51-9b7e-3c2f0a1d0001', userDiskPaths: [disk] };

function live(name: string, uuid: string, diskXml: string): { name: string; xml: string } {
  return {
    name,
    xml: `<domain type='qemu' id='7'><name>${name}</name><uuid>${uuid}</uuid><devices>${diskXml}</devices></domain>`,
  };
}

const other = live(
  'web',
  '11111111-2222-3333-4444-555555555555',
  `<disk type='file' device='disk'><source file='${join(dir, 'web.raw')}'/><target dev='vda' bus='virtio'/></disk>`,
);

test('a running domain that is not the user domain and shares none of its disks lets it run', () => {
  assert.equal(inUseReason(user, [other], 'vm.xml'), undefined);
});

test('the user domain running under its own name is refused', () => {
  assert.match(inUseReason(user, [other, live('db-vm', 'x', '')], 'vm.xml') ?? '', /domain db-vm is running/);
});

test('a copy under another name with the same UUID is refused, whatever the case of the UUID', () => {
  const copy = live('db-vm-clone', user.userUuid.toUpperCase(), '');
  assert.match(
    inUseReason(user, [copy], 'vm.xml') ?? '',
    /^vm\.xml: the running domain db-vm-clone has its UUID 6b1c9a40-5d7e-4a51-9b7e-3c2f0a1d0001: it is this domain under another name/,
  );
});

test('a disk in use under another path (a hard link) is refused by its inode', () => {
  const byLink = live(
    'thief',
    '22222222-2222-3333-4444-555555555555',
    `<disk type='file' device='disk'><source file='${link}'/><target dev='vda' bus='virtio'/></disk>`,
  );
  assert.equal(
    inUseReason(user, [byLink], 'vm.xml'),
    `vm.xml: its disk ${disk} is in use by the running domain thief (as ${link})`,
  );
});

test("a disk that is the backing file of a running domain's overlay is refused", () => {
  const overlay = live(
    'snap',
    '33333333-2222-3333-4444-555555555555',
    `<disk type='file' device='disk'><source file='${join(dir, 'top.qcow2')}'/><backingStore type='file'><format type='qcow2'/><source file='${disk}'/><backingStore/></backingStore><target dev='vda' bus='virtio'/></disk>`,
  );
  assert.match(inUseReason(user, [overlay], 'vm.xml') ?? '', /in use by the running domain snap$/);
});

test('guest.domain with a remote libvirt URI or remote hosts is refused at load, naming the URI', () => {
  const xml = join(dir, 'vm.xml');
  writeFileSync(xml, '<domain/>');
  const study = (extra: string) =>
    `backend: libvirt\nguest: { domain: ${xml} }\n${extra}workloads:\n  - { kind: fio, name: rr, rw: randread, bs: 4k, runtime: 2s }\n`;
  assert.throws(
    () => parseStudy(study('libvirt: { uri: "qemu+ssh://root@hv1/system" }\n'), join(dir, 's.yaml')),
    (e: unknown) =>
      e instanceof ConfigError &&
      /guest\.domain: runs on a local libvirt only .*qemu\+ssh:\/\/root@hv1\/system is remote/.test(
        e.message,
      ),
  );
  assert.throws(
    () => parseStudy(study('hosts:\n  - { name: hv2, uri: "qemu+tls://hv2/system" }\n'), join(dir, 's.yaml')),
    (e: unknown) => e instanceof ConfigError && /qemu\+tls:\/\/hv2\/system is remote/.test(e.message),
  );
  assert.doesNotThrow(() => parseStudy(study(''), join(dir, 's.yaml')));
});
