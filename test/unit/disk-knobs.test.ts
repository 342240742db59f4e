import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { diskXml } from '../../src/libvirt/xml.js';
import { testDiskBlockdevs, testDiskDevices } from '../../src/qemu/argv.js';
import { parseStudy } from '../../src/study/load.js';
import { makeVariant } from '../../src/study/variants.js';
import { ConfigError } from '../../src/util/errors.js';

const study = (matrix: string) =>
  parseStudy(
    `matrix: ${matrix}\nworkloads:\n  - { name: r, kind: fio, rw: randread, bs: 4k, runtime: 2s }\n`,
    '/tmp/knobs.yaml',
  );

describe('discard and detect_zeroes as matrix axes', () => {
  test('each value is a variant; the defaults (unmap, off) add nothing to the id', () => {
    const s = study('{ aio: [native], discard: [ignore, unmap], detect_zeroes: [off, on] }');
    assert.deepEqual(
      s.variants.map((v) => v.id),
      [
        'blk-native-io1-4k-nodiscard',
        'blk-native-io1-4k-nodiscard-dz',
        'blk-native-io1-4k',
        'blk-native-io1-4k-dz',
      ],
    );
    assert.equal(s.variants[2]?.discard, undefined);
    assert.equal(s.variants[1]?.detectZeroes, 'on');
  });

  test("detect_zeroes unmap without discard unmap is QEMU's refusal: left out with a note, or the study refused", () => {
    const mixed = study('{ discard: [ignore, unmap], detect_zeroes: [unmap] }');
    assert.deepEqual(
      mixed.variants.map((v) => v.id),
      ['blk-native-io1-4k-dzunmap'],
    );
    assert.ok(
      mixed.notes?.some((n) => /nodiscard-dzunmap left out: detect_zeroes=unmap needs discard=unmap/.test(n)),
    );
    assert.throws(
      () => study('{ discard: [ignore], detect_zeroes: [unmap] }'),
      (e: unknown) =>
        e instanceof ConfigError &&
        /matrix: every combination is impossible: detect_zeroes=unmap needs discard=unmap; use discard unmap/.test(
          e.message,
        ),
    );
  });

  test('unknown values are refused with what is allowed; exclude takes the axes by their matrix names', () => {
    assert.throws(
      () => study('{ discard: [trim] }'),
      (e: unknown) => e instanceof ConfigError && /matrix\.discard\[0\].*ignore, unmap/.test(e.message),
    );
    const s = parseStudy(
      'matrix: { detect_zeroes: [off, on, unmap] }\nexclude: [{ detect_zeroes: [on], discard: [unmap] }]\nworkloads:\n  - { name: r, kind: fio, rw: randread, bs: 4k, runtime: 2s }\n',
      '/tmp/knobs.yaml',
    );
    assert.deepEqual(
      s.variants.map((v) => v.id),
      ['blk-native-io1-4k', 'blk-native-io1-4k-dzunmap'],
    );
  });
});

describe('the knobs on the QEMU command line and in libvirt XML', () => {
  test('QEMU: discard on both nodes, detect-zeroes on the format node only when asked', () => {
    const [file, format] = testDiskBlockdevs(
      makeVariant({ discard: 'ignore', detectZeroes: 'on' }),
      '/dev/vg/lv',
    );
    assert.equal(file?.driver, 'host_device');
    assert.equal(file?.discard, 'ignore');
    assert.equal(file?.['detect-zeroes'], undefined);
    assert.equal(format?.discard, 'ignore');
    assert.equal(format?.['detect-zeroes'], 'on');
    const [, plain] = testDiskBlockdevs(makeVariant(), '/var/tmp/d.raw');
    assert.equal(plain?.discard, 'unmap');
    assert.equal(plain?.['detect-zeroes'], undefined);
  });

  test('libvirt: <driver discard=… detect_zeroes=…>, discard always explicit', () => {
    const xml = diskXml({
      variant: makeVariant({ aio: 'native', detectZeroes: 'unmap' }),
      diskPath: '/dev/vg/lv',
    });
    assert.match(
      xml,
      /<driver name='qemu' type='raw' cache='none' io='native' discard='unmap' detect_zeroes='unmap' queues='1'\/>/,
    );
    const ignore = diskXml({ variant: makeVariant({ discard: 'ignore' }), diskPath: '/var/tmp/d.raw' });
    assert.match(ignore, /discard='ignore'/);
    assert.doesNotMatch(ignore, /detect_zeroes/);
  });

  test('cache x qcow2: the cache flags reach both nodes of the image and the device write cache', () => {
    const v = makeVariant({ aio: 'threads', cache: 'writeback', format: 'qcow2' });
    const [file, format] = testDiskBlockdevs(v, '/var/tmp/d.raw.qcow2');
    assert.deepEqual(file?.cache, { direct: false, 'no-flush': false });
    assert.equal(format?.driver, 'qcow2');
    assert.deepEqual(format?.cache, { direct: false, 'no-flush': false });
    assert.equal(testDiskDevices(v)[0]?.['write-cache'], 'on');
    const direct = testDiskBlockdevs(makeVariant({ cache: 'directsync', format: 'qcow2' }), '/x.qcow2');
    assert.deepEqual(
      direct.map((n) => n.cache),
      [
        { direct: true, 'no-flush': false },
        { direct: true, 'no-flush': false },
      ],
    );
    assert.equal(
      testDiskDevices(makeVariant({ cache: 'directsync', format: 'qcow2' }))[0]?.['write-cache'],
      'off',
    );
    assert.match(
      diskXml({ variant: v, diskPath: '/var/tmp/d.raw' }),
      /<driver name='qemu' type='qcow2' cache='writeback' io='threads' discard='unmap' queues='1'\/>\n\s*<source file='\/var\/tmp\/d\.raw\.qcow2'\/>/,
    );
  });
});
