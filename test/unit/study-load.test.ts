import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseCpuset } from '../../src/study/cpuset.js';
import { loadPreset, loadStudy, loadStudyArg, parseStudy } from '../../src/study/load.js';
import { planStudy } from '../../src/study/plan.js';
import { listPresets } from '../../src/study/presets.js';
import type { FioWorkload, PgbenchWorkload, RsyncWorkload, SweepWorkload } from '../../src/study/types.js';
import { variantId } from '../../src/study/variants.js';
import { ConfigError, UserError } from '../../src/util/errors.js';

const good = (name: string) =>
  fileURLToPath(new URL(`../../../test/fixtures/studies/good/${name}`, import.meta.url));

test('every preset the README lists is shipped and loads', () => {
  const names = listPresets();
  for (const name of ['quick', 'seed', 'backends', 'iothreads', 'bus', 'hugepages', 'apps']) {
    assert.ok(names.includes(name), `preset ${name} missing`);
    const study = loadPreset(name);
    assert.equal(study.name, name);
    assert.equal(study.source, `preset:${name}`);
    assert.ok(study.variants.length > 0);
    assert.ok(study.workloads.length > 0);
  }
});

test('quick preset is CI-sized: six blk/4k variants, one 3 s job, small disk, baseline', () => {
  const s = loadPreset('quick');
  assert.deepEqual(s.variants.map((v) => v.id).sort(), [
    'blk-native-io0-4k',
    'blk-native-io1-4k',
    'blk-threads-io0-4k',
    'blk-threads-io1-4k',
    'blk-uring-io0-4k',
    'blk-uring-io1-4k',
  ]);
  assert.equal(s.repetitions, 1);
  assert.equal(s.baseline, true);
  assert.ok(s.disk.sizeBytes <= 256 * 1024 ** 2);
  assert.ok(s.disk.path.startsWith('/var/tmp/'));
  const [w] = s.workloads as FioWorkload[];
  assert.deepEqual(
    [s.workloads.length, w!.rw, w!.bs, w!.iodepth, w!.runtimeSeconds, w!.rampSeconds],
    [1, 'randread', 4096, 1, 3, 1],
  );
});

test('seed preset covers the study: every aio mode, 0-4 iothreads, both buses, both memory backings', () => {
  const s = loadPreset('seed');
  const knobs = (k: 'aio' | 'iothreads' | 'bus' | 'memory') =>
    [...new Set(s.variants.map((v) => v[k]))].sort();
  assert.deepEqual(knobs('aio'), ['io_uring', 'native', 'threads']);
  assert.deepEqual(knobs('iothreads'), [0, 1, 2, 4]);
  assert.deepEqual(knobs('bus'), ['virtio-blk', 'virtio-scsi']);
  assert.deepEqual(knobs('memory'), ['4k', 'hugepages']);
  assert.equal(s.repetitions, 3);
  assert.equal(s.baseline, true);
  const kinds = new Set(s.workloads.map((w) => w.kind));
  assert.deepEqual([...kinds].sort(), ['fio', 'pgbench', 'rsync', 'sweep']);
  const fio = s.workloads
    .filter((w): w is FioWorkload => w.kind === 'fio')
    .map((w) => `${w.rw}/${w.bs}/${w.iodepth}`);
  for (const want of [
    'randread/4096/1',
    'randwrite/4096/1',
    'randread/4096/64',
    'randwrite/4096/64',
    `read/${16 * 1024 ** 2}/16`,
    `write/${16 * 1024 ** 2}/16`,
  ]) {
    assert.ok(fio.includes(want), `seed lacks fio ${want}`);
  }
});

test('ids are readable and stable', () => {
  const base = {
    aio: 'native',
    iothreads: 1,
    bus: 'virtio-blk',
    memory: '4k',
    queues: 1,
    cache: 'none',
  } as const;
  assert.equal(variantId(base), 'blk-native-io1-4k');
  assert.equal(
    variantId({ ...base, aio: 'io_uring', bus: 'virtio-scsi', memory: 'hugepages', iothreads: 0 }),
    'scsi-uring-io0-huge',
  );
  assert.equal(variantId({ ...base, queues: 4, cache: 'directsync' }), 'blk-native-io1-4k-q4-directsync');
  assert.equal(variantId({ ...base, aio: 'threads', cache: 'writeback' }), 'blk-threads-io1-4k-writeback');
});

test('the matrix example study loads as written', () => {
  const s = loadStudy(good('matrix-example.yaml'));
  assert.equal(s.name, 'my-study');
  // 3 aio x 4 iothreads x 2 bus x 2 memory = 48, minus threads with 2 iothreads (4).
  assert.equal(s.variants.length, 44);
  assert.ok(s.variants.some((v) => v.id === 'blk-native-io1-4k'));
  assert.ok(!s.variants.some((v) => v.id.startsWith('blk-threads-io2')));
  assert.equal(planStudy(s).boots < s.variants.length, true);
});

test('the full example parses every key into kvmio units', () => {
  const s = loadStudy(good('full.yaml'));
  assert.equal(s.name, 'full-example');
  assert.equal(s.backend, 'libvirt');
  assert.equal(s.guest.memoryBytes, 1024 ** 3);
  assert.deepEqual(s.pinning, { vcpus: '0-1', emulator: '1', iothreads: '0' });
  assert.deepEqual(s.adaptive, { ciShare: 0.05, maxRepetitions: 6 });
  const [, mixed, sweep, qd, pg, rsync] = s.workloads as [
    FioWorkload,
    FioWorkload,
    SweepWorkload,
    SweepWorkload,
    PgbenchWorkload,
    RsyncWorkload,
  ];
  assert.deepEqual(
    [
      mixed.rw,
      mixed.rwmixread,
      mixed.bs,
      mixed.numjobs,
      mixed.runtimeSeconds,
      mixed.rampSeconds,
      mixed.sizeBytes,
      mixed.rateIops,
      mixed.ioengine,
    ],
    ['randrw', 70, 8192, 2, 60, 5, 512 * 1024 ** 2, 2000, 'io_uring'],
  );
  assert.deepEqual(mixed.extra, { direct: '1', norandommap: '1', random_distribution: 'zipf:1.2' });
  assert.deepEqual([sweep.steps, sweep.fromShare, sweep.iodepth, sweep.iodepths], [5, 0.2, 32, undefined]);
  assert.deepEqual([qd.iodepths, qd.steps], [[1, 4, 16, 64], undefined]);
  assert.deepEqual([pg.scale, pg.clients, pg.rates, pg.readOnly], [5, [1, 8], [100, 500], true]);
  assert.deepEqual([rsync.files, rsync.sizeMinBytes, rsync.sizeMaxBytes, rsync.seed], [1000, 1024, 65536, 7]);
  assert.deepEqual(
    s.hosts.map((h) => h.name),
    ['here', 'there'],
  );
  assert.equal(s.hosts[1]!.disk!.sizeBytes, 100 * 1024 ** 3);
});

test('exclude removes the partial variants it names (a list matches any of its values)', () => {
  const s = loadStudy(good('full.yaml'));
  const ids = s.variants.map((v) => v.id);
  assert.ok(!ids.some((id) => id.startsWith('blk-threads-io2') || id.startsWith('scsi-threads-io2')));
  assert.ok(!s.variants.some((v) => v.memory === 'hugepages' && v.bus === 'virtio-scsi'));
  assert.ok(!s.variants.some((v) => v.queues === 2 && v.iothreads < 2));
  assert.ok(ids.includes('blk-native-io2-4k-q2'));
  // 3 aio x 3 iothreads x 2 bus x 2 memory x 2 queues = 72, minus the three rules.
  assert.equal(s.variants.length, 30);
  assert.equal(new Set(ids).size, ids.length);
});

test('defaults: a study of one fio job is one blk-native-io1-4k variant', () => {
  const s = loadStudy(good('minimal.yaml'));
  assert.equal(s.name, 'minimal');
  assert.deepEqual(
    s.variants.map((v) => v.id),
    ['blk-native-io1-4k'],
  );
  assert.deepEqual(
    [s.backend, s.repetitions, s.baseline, s.libvirt.uri],
    ['qemu', 3, false, 'qemu:///system'],
  );
  assert.deepEqual([s.guest.vcpus, s.guest.memoryBytes, s.guest.count], [2, 1024 ** 3, 1]);
  assert.deepEqual(s.disk, { path: '/var/tmp/kvmio.raw', sizeBytes: 4 * 1024 ** 3 });
  const w = s.workloads[0] as FioWorkload;
  assert.deepEqual(
    [w.name, w.rw, w.bs, w.iodepth, w.numjobs, w.ioengine],
    ['randread-4k-qd1', 'randread', 4096, 1, 1, 'libaio'],
  );
});

test('aio=native with a buffered cache is left out of the matrix with a note', () => {
  const s = loadStudy(good('native-writeback.yaml'));
  const ids = s.variants.map((v) => v.id);
  assert.ok(!ids.includes('blk-native-io1-4k-writeback'));
  assert.deepEqual(ids, ['blk-threads-io1-4k', 'blk-threads-io1-4k-writeback', 'blk-native-io1-4k']);
  assert.ok(
    s.notes?.some((n) => n.includes('blk-native-io1-4k-writeback left out') && n.includes('O_DIRECT')),
  );
});

test('a scalar stands for a one-value list in the matrix; sizes and durations take units', () => {
  const s = parseStudy(
    'matrix: { aio: io_uring, iothreads: 2 }\nworkloads:\n  - { kind: fio, bs: 1MiB, runtime: 2m, ramp: 500ms, size: 1G }\n',
    '/tmp/inline.yaml',
  );
  assert.deepEqual(
    s.variants.map((v) => v.id),
    ['blk-uring-io2-4k'],
  );
  const w = s.workloads[0] as FioWorkload;
  assert.deepEqual([w.bs, w.runtimeSeconds, w.rampSeconds, w.sizeBytes], [1024 ** 2, 120, 0.5, 1024 ** 3]);
});

test('guest.domain is a file (a path or .xml) or a libvirt domain name, and needs the libvirt backend', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvmio-study-'));
  try {
    writeFileSync(join(dir, 'vm.xml'), '<domain type="kvm"><name>mine</name></domain>\n');
    const file = join(dir, 'study.yaml');
    writeFileSync(file, 'backend: libvirt\nguest: { domain: vm.xml }\nworkloads: [ { kind: fio } ]\n');
    assert.deepEqual(loadStudy(file).guest.domain, { file: join(dir, 'vm.xml') });
    writeFileSync(file, 'backend: libvirt\nguest: { domain: db-vm }\nworkloads: [ { kind: fio } ]\n');
    assert.deepEqual(loadStudy(file).guest.domain, { name: 'db-vm' });
    for (const bad of ['"db vm;rm"', '{ domain: vm.xml, vcpus: 2 }']) {
      const guest = bad.startsWith('{') ? bad : `{ domain: ${bad} }`;
      writeFileSync(file, `backend: libvirt\nguest: ${guest}\nworkloads: [ { kind: fio } ]\n`);
      assert.throws(
        () => loadStudy(file),
        (e: unknown) => e instanceof ConfigError && e.keyPath === 'guest.domain',
      );
    }
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('errors name the file and line, are ConfigErrors, and never need a stack', () => {
  const err = (() => {
    try {
      parseStudy('name: x\nworkloads:\n  - kind: fio\n    iodepth: 5000\n', 'my.yaml');
    } catch (e) {
      return e;
    }
  })();
  assert.ok(err instanceof ConfigError);
  assert.equal(err.file, 'my.yaml');
  assert.equal(err.keyPath, 'workloads[0].iodepth');
  assert.equal(err.line, 4);
  assert.equal(
    err.message,
    'my.yaml:4: workloads[0].iodepth: 5000 is out of range: a whole number from 1 to 4096',
  );
});

test('FILE|--preset: exactly one; unknown presets and files are listed clearly', () => {
  assert.throws(
    () => loadStudyArg(undefined, undefined),
    (e: Error) => e instanceof UserError && /--preset NAME \(presets: apps, /.test(e.message),
  );
  assert.throws(() => loadStudyArg('a.yaml', 'quick'), /not both/);
  assert.throws(
    () => loadPreset('fast'),
    /no preset named "fast"; presets: apps, backends, bus, hugepages, iothreads, quick, seed/,
  );
  assert.throws(
    () => loadStudy('/nonexistent/study.yaml'),
    /^UserError: \/nonexistent\/study.yaml: no such file/,
  );
  assert.throws(() => loadStudy(tmpdir()), /is a directory/);
  assert.equal(loadStudyArg(undefined, 'quick').name, 'quick');
});

test('cpuset lists', () => {
  assert.deepEqual(parseCpuset('0-1,4'), [0, 1, 4]);
  assert.deepEqual(parseCpuset('3'), [3]);
  assert.equal(parseCpuset('1-0'), undefined);
  assert.equal(parseCpuset('a'), undefined);
  assert.equal(parseCpuset(''), undefined);
});
