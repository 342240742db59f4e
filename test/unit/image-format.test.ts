import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { domainXml } from '../../src/libvirt/xml.js';
import { qemuArgv } from '../../src/qemu/argv.js';
import { startQemuVm } from '../../src/qemu/vm.js';
import { prepareDiskFile } from '../../src/safety/disk.js';
import { studyDiskSpecs } from '../../src/study/disks.js';
import { QCOW2_DEFAULTS } from '../../src/study/image-schema.js';
import { parseStudy } from '../../src/study/load.js';
import { planStudy } from '../../src/study/plan.js';
import { bootGroupKey, makeVariant } from '../../src/study/variants.js';
import { configErrorMessage } from '../helpers/refusal.js';
import { qemuPids, testStudy } from '../helpers/vm.js';

/**
 * The image format axis: the study's qcow2 settings are read from an allow-list, the image is made
 * with real qemu-img and filled from the raw file, QEMU (paused, no guest) opens a qcow2 node over a
 * file node, and live verification reads the format node back.
 */

let work = '';
before(() => {
  work = mkdtempSync(join(tmpdir(), 'kvmio-format-'));
  process.env.KVMIO_CACHE = join(work, 'cache');
});
after(() => rmSync(work, { recursive: true, force: true }));

const WORKLOAD = 'workloads:\n  - { kind: fio, name: r, rw: randread, bs: 4k, iodepth: 1, runtime: 2s }\n';

function load(yaml: string) {
  return parseStudy(`${yaml}\n${WORKLOAD}`, 'format.yaml');
}

const refusal = (yaml: string) => configErrorMessage(() => load(yaml));

test('matrix.format makes raw and qcow2 variants with the qcow2 settings of disk.qcow2', () => {
  const s = load(
    [
      'disk: { path: /var/tmp/kvmio-fmt.raw, size: 64M, qcow2: { cluster_size: 128k, preallocation: metadata, lazy_refcounts: true, l2_cache_size: 1M } }',
      'matrix: { aio: [native], format: [raw, qcow2] }',
    ].join('\n'),
  );
  assert.deepEqual(
    s.variants.map((v) => v.id),
    ['blk-native-io1-4k', 'blk-native-io1-4k-qcow2'],
  );
  assert.equal(
    s.variants[0]?.format,
    undefined,
    'a raw variant leaves format absent, as a study without the axis does',
  );
  assert.equal(s.variants[1]?.format, 'qcow2');
  assert.deepEqual(s.disk.qcow2, {
    clusterSizeBytes: 128 * 1024,
    preallocation: 'metadata',
    lazyRefcounts: true,
    l2CacheSizeBytes: 1024 * 1024,
  });
  // The raw file first (the image is filled from it), then the image beside it.
  assert.deepEqual(
    studyDiskSpecs(s).map((d) => [d.path, d.imageOf]),
    [
      ['/var/tmp/kvmio-fmt.raw', undefined],
      ['/var/tmp/kvmio-fmt.raw.qcow2', '/var/tmp/kvmio-fmt.raw'],
    ],
  );
  // Different formats never share a VM: the plan boots again.
  assert.notEqual(bootGroupKey(s.variants[0]!), bootGroupKey(s.variants[1]!));
  const points = planStudy(s).points;
  const switches = points.filter((p, i) => i > 0 && p.variantId !== points[i - 1]?.variantId);
  assert.ok(switches.length > 0);
  for (const p of switches) assert.ok(p.boot, `${p.variantId} after another format boots a VM`);
});

test('qcow2 settings outside the allow-list are refused with the file, the key and what is allowed', () => {
  const disk = (q: string) => `disk: { path: /var/tmp/k.raw, qcow2: ${q} }\nmatrix: { format: [qcow2] }`;
  assert.match(
    refusal(disk('{ cluster_size: 96k }')),
    /^format\.yaml:\d+: disk\.qcow2\.cluster_size: "96k" is not allowed: a power of two from 512 to 2M \(512, 1k, 2k, 4k, .*, 1M, 2M\)/,
  );
  assert.match(
    refusal(disk('{ preallocation: sparse }')),
    /disk\.qcow2\.preallocation: "sparse" is not allowed; allowed: off, metadata, falloc, full/,
  );
  assert.match(
    refusal(disk('{ lazy_refcount: true }')),
    /disk\.qcow2\.lazy_refcount: unknown key \(did you mean "lazy_refcounts"\?\)/,
  );
  assert.match(
    refusal(disk('{ l2_cache_size: 1k }')),
    /disk\.qcow2\.l2_cache_size: "1k" is out of range: from 128 KiB/,
  );
  assert.match(
    refusal('matrix: { format: [vmdk] }'),
    /matrix\.format\[0\]: "vmdk" is not allowed; allowed: raw, qcow2/,
  );
  assert.match(
    refusal('disk: { path: /var/tmp/k.raw, qcow2: { cluster_size: 64k } }'),
    /disk\.qcow2: is set but no variant uses format qcow2/,
  );
  assert.match(
    refusal('disk: { path: /dev/sdz }\nmatrix: { format: [raw, qcow2] }'),
    /disk\.path: "\/dev\/sdz" is a block device, but matrix.format has qcow2/,
  );
  assert.match(
    refusal(`backend: libvirt\n${disk('{ l2_cache_size: 1M }')}`),
    /disk\.qcow2\.l2_cache_size: is not expressible in libvirt: .*cache-size.*use disk\.qcow2\.cache_size/,
  );
  assert.match(
    refusal(`backend: libvirt\nlibvirt: { uri: "qemu+ssh://root@b/system" }\n${disk('{}')}`),
    /matrix\.format: qcow2 runs on this machine only/,
  );
});

test('direct QEMU: a qcow2 format node with the cache sizes over a file node on PATH.qcow2', () => {
  const study = {
    ...testStudy('/var/tmp/k.raw', { memoryMiB: 128 }),
    disk: {
      path: '/var/tmp/k.raw',
      sizeBytes: 64 << 20,
      qcow2: { ...QCOW2_DEFAULTS, l2CacheSizeBytes: 1 << 20, cacheSizeBytes: 2 << 20 },
    },
  };
  const argv = qemuArgv({
    name: 'fmt',
    study,
    variant: makeVariant({ aio: 'native', iothreads: 1, format: 'qcow2' }),
    accel: 'tcg',
    runtimeDir: '/run/kvmio-x',
  });
  const nodes = argv.flatMap((a, i) => (argv[i - 1] === '-blockdev' ? [JSON.parse(a)] : []));
  assert.deepEqual(
    nodes.map((n) => [n.driver, n['node-name'], n.filename ?? n.file]),
    [
      ['file', 'kvmio-test-file', '/var/tmp/k.raw.qcow2'],
      ['qcow2', 'kvmio-test', 'kvmio-test-file'],
    ],
  );
  assert.equal(nodes[1]['l2-cache-size'], 1 << 20);
  assert.equal(nodes[1]['cache-size'], 2 << 20);
  const raw = qemuArgv({
    name: 'fmt',
    study,
    variant: makeVariant({ aio: 'native', iothreads: 1 }),
    accel: 'tcg',
    runtimeDir: '/run/kvmio-x',
  });
  const rawNodes = raw.flatMap((a, i) => (raw[i - 1] === '-blockdev' ? [JSON.parse(a)] : []));
  assert.deepEqual(
    rawNodes.map((n) => [n.driver, n.filename ?? n.file]),
    [
      ['file', '/var/tmp/k.raw'],
      ['raw', 'kvmio-test-file'],
    ],
  );
  assert.equal(rawNodes[1]['l2-cache-size'], undefined, 'cache sizes are qcow2 options only');
});

test('libvirt: <driver type=qcow2> with metadata_cache on the image, raw as before', () => {
  const s = load(
    'backend: libvirt\ndisk: { path: /var/tmp/k.raw, size: 64M, qcow2: { cache_size: 2M } }\nmatrix: { format: [raw, qcow2] }',
  );
  const xml = (i: number) =>
    domainXml({
      study: s,
      variant: s.variants[i]!,
      guest: { kernel: '/k', initrd: '/i', cmdline: 'c' },
      accel: 'tcg',
      name: 'fmt',
    });
  const qcow2 = xml(1);
  assert.match(
    qcow2,
    /<driver name='qemu' type='qcow2' cache='none' io='native' discard='unmap' iothread='1' queues='1'>/,
  );
  assert.match(qcow2, /<metadata_cache>\s*<max_size unit='bytes'>2097152<\/max_size>\s*<\/metadata_cache>/);
  assert.match(qcow2, /<source file='\/var\/tmp\/k\.raw\.qcow2'\/>/);
  if (spawnSync('virt-xml-validate', ['--help']).error === undefined) {
    const file = join(work, 'qcow2-domain.xml');
    writeFileSync(file, qcow2);
    const r = spawnSync('virt-xml-validate', [file, 'domain'], { encoding: 'utf8' });
    assert.equal(r.status, 0, `libvirt's schema refuses the qcow2 domain: ${r.stdout}${r.stderr}`);
  }
  const raw = xml(0);
  assert.match(
    raw,
    /<driver name='qemu' type='raw' cache='none' io='native' discard='unmap' iothread='1' queues='1'\/>/,
  );
  assert.doesNotMatch(raw, /metadata_cache/);
  assert.match(raw, /<source file='\/var\/tmp\/k\.raw'\/>/);
});

function qemuImgInfo(path: string): Record<string, unknown> {
  return JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', path], { encoding: 'utf8' }));
}

test('the qcow2 image is made with the options, filled from the raw file, and made anew each run', async () => {
  const raw = join(work, 'img.raw');
  const spec = { path: raw, sizeBytes: 8 << 20 };
  await prepareDiskFile(spec);
  const q = { ...QCOW2_DEFAULTS, clusterSizeBytes: 128 * 1024, lazyRefcounts: true };
  const image = `${raw}.qcow2`;
  await prepareDiskFile({ path: image, sizeBytes: spec.sizeBytes, qcow2: q, imageOf: raw });
  const info = qemuImgInfo(image) as {
    format: string;
    'virtual-size': number;
    'cluster-size': number;
    'format-specific': { data: { 'lazy-refcounts': boolean } };
  };
  assert.equal(info.format, 'qcow2');
  assert.equal(info['virtual-size'], spec.sizeBytes);
  assert.equal(info['cluster-size'], 128 * 1024);
  assert.equal(info['format-specific'].data['lazy-refcounts'], true);
  assert.equal(statSync(image).mode & 0o777, 0o600);
  // Filled: the guest reads the raw file's data through the image, every cluster allocated.
  execFileSync('qemu-img', ['compare', '-U', '-f', 'raw', '-F', 'qcow2', raw, image]);
  const map = JSON.parse(
    execFileSync('qemu-img', ['map', '-U', '--output=json', image], { encoding: 'utf8' }),
  ) as Array<{ data: boolean; zero: boolean }>;
  assert.ok(
    map.every((m) => m.data && !m.zero),
    'no unallocated or zero cluster',
  );
  // A second run makes it again (kvmio's own file), with the options of that run.
  await prepareDiskFile({
    path: image,
    sizeBytes: spec.sizeBytes,
    qcow2: { ...q, clusterSizeBytes: 64 * 1024 },
    imageOf: raw,
  });
  assert.equal((qemuImgInfo(image) as { 'cluster-size': number })['cluster-size'], 64 * 1024);
  // A user's file at the image's path is refused and left alone.
  const theirs = join(work, 'theirs.raw');
  await prepareDiskFile({ path: theirs, sizeBytes: 1 << 20 });
  writeFileSync(`${theirs}.qcow2`, 'my data');
  await assert.rejects(
    prepareDiskFile({ path: `${theirs}.qcow2`, sizeBytes: 1 << 20, qcow2: q, imageOf: theirs }),
    /was not created by kvmio; kvmio will not write to it/,
  );
  assert.equal(readFileSync(`${theirs}.qcow2`, 'utf8'), 'my data');
});

test('live verification sees the qcow2 node over the file node, and a mismatch fails', async () => {
  const raw = join(work, 'live.raw');
  await prepareDiskFile({ path: raw, sizeBytes: 16 << 20 });
  const q = { ...QCOW2_DEFAULTS, lazyRefcounts: true };
  await prepareDiskFile({ path: `${raw}.qcow2`, sizeBytes: 16 << 20, qcow2: q, imageOf: raw });
  const before = qemuPids().length;
  const study = { ...testStudy(raw, { memoryMiB: 128 }), disk: { path: raw, sizeBytes: 16 << 20, qcow2: q } };
  const qcow2 = makeVariant({ aio: 'native', iothreads: 1, format: 'qcow2' });
  const vm = await startQemuVm({ study, variant: qcow2, accel: 'tcg', paused: true, name: 'fmt-verify' });
  try {
    await vm.verifyLive({ fresh: true });
    // The image was made with lazy refcounts: a study that says otherwise does not match it.
    study.disk.qcow2 = { ...q, lazyRefcounts: false };
    await assert.rejects(vm.verifyLive({ fresh: true }), /kvmio-test lazy refcounts is true, expected false/);
    study.disk.qcow2 = q;
    // kvmio believing the disk raw while QEMU runs qcow2 is caught.
    vm.variant = makeVariant({ aio: 'native', iothreads: 1 });
    await assert.rejects(
      vm.verifyLive({ fresh: true }),
      /QEMU has no block node for .*live\.raw|has a qcow2 node/,
    );
  } finally {
    await vm.stop();
  }
  assert.equal(qemuPids().length, before, 'no QEMU left running');
});
