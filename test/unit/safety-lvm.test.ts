import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { installCommand } from '../../src/host/packages.js';
import {
  deviceMapperProblem,
  lvcreateArgv,
  ownerTag,
  parseOwnerTag,
  scratchLvName,
} from '../../src/safety/lvm.js';
import { parseStudy } from '../../src/study/load.js';
import { lvmNameProblem } from '../../src/study/lvm-names.js';
import { ConfigError } from '../../src/util/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmio-unit-lvm-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const WORKLOAD = 'workloads:\n  - { name: r, kind: fio, rw: randread, bs: 4k, runtime: 2s }\n';
const load = (text: string) => parseStudy(`${text}\n${WORKLOAD}`, join(dir, 'lvm.yaml'));
const refused = (text: string, pattern: RegExp) =>
  assert.throws(
    () => load(text),
    (e: unknown) => e instanceof ConfigError && pattern.test(e.message),
  );

describe('LVM names', () => {
  test("LVM's own rules: letters, digits, + _ . -, no leading hyphen, no reserved names, at most 127", () => {
    for (const ok of ['pve', 'vg0', 'data_vg', 'a.b+c-d', '_x', 'x'.repeat(127)])
      assert.equal(lvmNameProblem(ok), undefined, ok);
    for (const bad of ['-vg', 'a/b', '../etc', 'vg name', 'v$g', '', 'x'.repeat(128)])
      assert.match(lvmNameProblem(bad) ?? '', /not an LVM name/, bad);
    assert.match(lvmNameProblem('..') ?? '', /reserves/);
    assert.match(lvmNameProblem('snapshot') ?? '', /reserves/);
    assert.match(lvmNameProblem('pool_tmeta') ?? '', /"_tmeta", which LVM reserves/);
  });

  test('scratch LVs are kvmio-PID-N, owned by a tag with host, pid and start time', () => {
    assert.equal(scratchLvName(4242, 3), 'kvmio-4242-3');
    const tag = ownerTag(process.pid, 'host-1.example');
    const owner = parseOwnerTag(tag);
    assert.equal(owner?.host, 'host-1.example');
    assert.equal(owner?.pid, process.pid);
    assert.ok((owner?.startTicks ?? 0) > 0);
    assert.deepEqual(
      parseOwnerTag(ownerTag(1, 'odd host/name')),
      parseOwnerTag(ownerTag(1, 'odd_host_name')),
    );
    assert.equal(parseOwnerTag('kvmio'), undefined);
    assert.equal(parseOwnerTag('kvmio_owner=h:1'), undefined);
  });
});

describe('disk.lvm in a study', () => {
  test('a VG and a size; the thin pool optional; the path stands for the LV until the run makes it', () => {
    const thick = load('disk: { lvm: { vg: pve, size: 1GiB } }');
    assert.deepEqual(thick.disk.lvm, { vg: 'pve', sizeBytes: 1024 ** 3 });
    assert.equal(thick.disk.sizeBytes, 1024 ** 3);
    assert.equal(thick.disk.path, '/dev/pve/kvmio-scratch');
    const thin = load('disk: { lvm: { vg: pve, size: 64MiB, thin: data } }');
    assert.deepEqual(thin.disk.lvm, { vg: 'pve', sizeBytes: 64 * 1024 ** 2, thinPool: 'data' });
  });

  test('names that are not LVM names never reach LVM or a path', () => {
    refused('disk: { lvm: { vg: "../etc", size: 1GiB } }', /disk\.lvm\.vg: .*letters, digits and \+ _ \. -/);
    refused('disk: { lvm: { vg: "-f", size: 1GiB } }', /disk\.lvm\.vg/);
    refused('disk: { lvm: { vg: pve, size: 1GiB, thin: "a/b" } }', /disk\.lvm\.thin/);
    refused('disk: { lvm: { vg: pve, size: 1GiB, thin: x_tmeta } }', /disk\.lvm\.thin: .*LVM reserves/);
    refused('disk: { lvm: { size: 1GiB } }', /disk\.lvm\.vg: missing/);
    refused('disk: { lvm: { vg: pve } }', /disk\.lvm\.size: missing/);
    refused('disk: { lvm: { vg: pve, size: 1GiB, stripes: 2 } }', /disk\.lvm\.stripes/);
  });

  test('one raw disk for one guest on this machine', () => {
    refused(
      'disk: { path: /var/tmp/x.raw, lvm: { vg: pve, size: 1GiB } }',
      /disk\.path: cannot go with disk\.lvm/,
    );
    refused(
      'disk: { lvm: { vg: pve, size: 1GiB } }\nmatrix: { format: [raw, qcow2] }',
      /disk\.lvm: .*format: \[raw\]/,
    );
    refused(
      'disk: { lvm: { vg: pve, size: 1GiB } }\nmatrix: { disks: [2], iothreads: [1] }',
      /disk\.lvm: .*disks: \[1\]/,
    );
    refused('disk: { lvm: { vg: pve, size: 1GiB } }\nguest: { count: 2 }', /disk\.lvm: .*guest\.count 1/);
    refused(
      'backend: libvirt\ndisk: { lvm: { vg: pve, size: 1GiB } }\nhosts: [ { name: b, uri: "qemu+ssh://root@b/system" } ]',
      /disk\.lvm: makes the LV on this machine/,
    );
  });
});

describe('what kvmio runs', () => {
  test('lvcreate: thick with -L in the VG, thin with -V in the pool; tagged, never through a shell', () => {
    const owner = 'kvmio_owner=h:1:2';
    assert.deepEqual(lvcreateArgv({ vg: 'pve', sizeBytes: 4 * 1024 ** 3 }, 'kvmio-1-1', owner), [
      'lvcreate',
      '--yes',
      '--wipesignatures',
      'y',
      '--addtag',
      'kvmio',
      '--addtag',
      owner,
      '-n',
      'kvmio-1-1',
      '-L',
      '4294967296b',
      'pve',
    ]);
    assert.deepEqual(
      lvcreateArgv({ vg: 'pve', sizeBytes: 1024 ** 3, thinPool: 'data' }, 'kvmio-1-2', owner).slice(-5),
      ['-V', '1073741824b', '--thinpool', 'data', 'pve'],
    );
  });

  test('device-mapper is read from /proc/misc: its absence is said with the way out', () => {
    const without = join(dir, 'misc-without');
    writeFileSync(without, '229 fuse\n237 loop-control\n');
    assert.match(deviceMapperProblem(without) ?? '', /no device-mapper driver.*modprobe dm_mod/);
    const withDm = join(dir, 'misc-with');
    writeFileSync(withDm, '229 fuse\n236 device-mapper\n237 loop-control\n');
    assert.equal(deviceMapperProblem(withDm), undefined);
  });

  test('lvm2 is a package of its own on every package manager', () => {
    assert.equal(installCommand('apt', ['lvm2'], true), 'apt-get install -y lvm2');
    assert.equal(installCommand('dnf', ['lvm2'], false), 'sudo dnf install -y lvm2');
  });
});
