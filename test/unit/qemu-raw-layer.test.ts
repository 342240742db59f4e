import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  ASSUMED_CAPABILITIES,
  omitsRawFormatLayer,
  qemuArgv,
  testDiskBlockdevs,
} from '../../src/qemu/argv.js';
import { commandTakes, type QemuCapabilities, type SchemaEntry } from '../../src/qemu/capabilities.js';
import type { Study } from '../../src/study/types.js';
import { makeVariant } from '../../src/study/variants.js';

/**
 * libvirt leaves the raw format layer out of a raw disk when QEMU's block jobs have
 * backing-mask-protocol; the direct backend follows the same rule, read from the same schema.
 * The schema excerpts (block-stream and its argument type) are recorded from QEMU 7.2 and 10.0.2;
 * see test/fixtures/qmp/README.md.
 */

const schema = (version: string) =>
  JSON.parse(readFileSync(`test/fixtures/qmp/schema/block-stream-${version}.json`, 'utf8')) as SchemaEntry[];
const abilities = (version: string) =>
  (
    JSON.parse(readFileSync(`test/fixtures/qemu/abilities-${version}.json`, 'utf8')) as {
      capabilities: QemuCapabilities;
    }
  ).capabilities;

test('backing-mask-protocol is read from the introspected schema: QEMU 10.0 has it, 7.2 has not', () => {
  assert.equal(commandTakes(schema('10.0'), 'block-stream', 'backing-mask-protocol'), true);
  assert.equal(commandTakes(schema('7.2'), 'block-stream', 'backing-mask-protocol'), false);
  // Any argument both know is found on both; an unknown command or argument is not.
  for (const v of ['7.2', '10.0']) {
    assert.equal(commandTakes(schema(v), 'block-stream', 'device'), true);
    assert.equal(commandTakes(schema(v), 'block-stream', 'no-such-argument'), false);
    assert.equal(commandTakes(schema(v), 'no-such-command', 'device'), false);
  }
  // The recorded capabilities of both binaries agree with their schemas.
  assert.equal(abilities('10.0').backingMaskProtocol, true);
  assert.equal(abilities('7.2').backingMaskProtocol, false);
});

const raw = makeVariant({ aio: 'native', iothreads: 1, detectZeroes: 'unmap' });
const qcow2 = makeVariant({ aio: 'native', iothreads: 1, format: 'qcow2' });

test('a raw disk without the layer is one protocol node under the format node’s name, with its zero detection', () => {
  const nodes = testDiskBlockdevs(raw, '/var/tmp/d.raw', 0, undefined, undefined, true);
  assert.equal(nodes.length, 1);
  assert.deepEqual(nodes[0], {
    driver: 'file',
    filename: '/var/tmp/d.raw',
    aio: 'native',
    cache: { direct: true, 'no-flush': false },
    discard: 'unmap',
    'node-name': 'kvmio-test',
    'detect-zeroes': 'unmap',
  });
  const withLayer = testDiskBlockdevs(raw, '/var/tmp/d.raw', 0, undefined, undefined, false);
  assert.deepEqual(
    withLayer.map((n) => [n.driver, n['node-name'], n['detect-zeroes']]),
    [
      ['file', 'kvmio-test-file', undefined],
      ['raw', 'kvmio-test', 'unmap'],
    ],
  );
});

test('a qcow2 disk keeps its format node either way', () => {
  for (const omit of [true, false]) {
    const nodes = testDiskBlockdevs(qcow2, '/var/tmp/d.qcow2', 0, undefined, undefined, omit);
    assert.deepEqual(
      nodes.map((n) => [n.driver, n['node-name']]),
      [
        ['file', 'kvmio-test-file'],
        ['qcow2', 'kvmio-test'],
      ],
    );
  }
});

test('argv leaves the layer out exactly on a QEMU with backing-mask-protocol', () => {
  const study: Pick<Study, 'guest' | 'disk' | 'source'> = {
    source: 'test',
    guest: { vcpus: 1, memoryBytes: 512 * 1024 * 1024, count: 1 },
    disk: { path: '/var/tmp/d.raw', sizeBytes: 1 << 30 },
  };
  const drivers = (caps: QemuCapabilities) =>
    qemuArgv({
      name: 'vm1',
      study,
      variant: raw,
      accel: 'tcg',
      capabilities: caps,
      runtimeDir: '/tmp/kvmio-x',
    })
      .filter((_, i, a) => a[i - 1] === '-blockdev')
      .map((b) => (JSON.parse(b) as { driver: string }).driver)
      .filter((d) => d === 'file' || d === 'raw');
  for (const v of ['7.2', '10.0']) {
    const caps = abilities(v);
    assert.equal(omitsRawFormatLayer(caps), v === '10.0');
    assert.deepEqual(drivers(caps), v === '10.0' ? ['file'] : ['file', 'raw']);
  }
  assert.deepEqual(drivers(ASSUMED_CAPABILITIES), ['file', 'raw']);
});
