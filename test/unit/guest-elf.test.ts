import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { dynamicInfo, isElf, moduleName } from '../../src/guest/elf.js';
import { run } from '../../src/util/proc.js';

test('reads the needed libraries and interpreter of a real binary as readelf does', async (t) => {
  const binary = process.execPath; // node itself: a dynamically linked amd64 ELF
  const info = dynamicInfo(readFileSync(binary));
  assert.ok(info.needed.includes('libc.so.6'), info.needed.join(','));
  assert.match(info.interpreter ?? '', /ld-linux-x86-64\.so\.2$/);
  const readelf = await run(['readelf', '-d', binary], { allowFailure: true }).catch(() => undefined);
  if (readelf?.code !== 0) return t.skip('readelf not installed');
  const expected = [...readelf.stdout.matchAll(/\(NEEDED\).*\[(.+)\]/g)].map((m) => m[1]);
  assert.deepEqual(info.needed, expected);
});

test('non-ELF files have no dependencies', () => {
  const script = Buffer.from('#!/bin/sh\necho hi\n');
  assert.equal(isElf(script), false);
  assert.deepEqual(dynamicInfo(script), { needed: [], runpath: [] });
});

test('module names use underscores and drop the extension', () => {
  assert.equal(moduleName('kernel/drivers/char/hw_random/virtio-rng.ko'), 'virtio_rng');
  assert.equal(moduleName('virtio_blk.ko.xz'), 'virtio_blk');
  assert.equal(moduleName('sd_mod'), 'sd_mod');
});
