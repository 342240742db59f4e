import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkVariant } from '../../src/qemu/argv.js';
import { qemuCapabilities } from '../../src/qemu/capabilities.js';
import { startQemuVm } from '../../src/qemu/vm.js';
import { loadPreset } from '../../src/study/load.js';
import { AIO_MODES, BUSES, MEMORY_BACKINGS } from '../../src/study/types.js';
import { makeTestDisk, qemuPids, testStudy, testVariant } from '../helpers/vm.js';

/**
 * Real QEMU accepts the argv of every combination and the live VM matches it: each starts paused
 * (-S, no guest), is verified through QMP and /proc, and quits.
 */
// Four files: the seed's multi-disk variants use disk.raw and disk.raw.1 … disk.raw.3.
const disk = makeTestDisk(64 * 1024 * 1024, 4);
after(() => disk.remove());

test('QEMU accepts every aio x iothreads x bus x memory combination (cache none) and matches it live', async () => {
  const before = qemuPids().length;
  const study = testStudy(disk.path, { memoryMiB: 128 });
  for (const aio of AIO_MODES)
    for (const iothreads of [0, 1])
      for (const bus of BUSES)
        for (const memory of MEMORY_BACKINGS) {
          const variant = testVariant({ aio, iothreads, bus, memory, cache: 'none' });
          const vm = await startQemuVm({
            study,
            variant,
            accel: 'tcg',
            paused: true,
            name: `accept-${variant.id}`,
          });
          try {
            const status = await vm.qmp.execute<{ status: string }>('query-status');
            assert.equal(status.status, 'prelaunch', variant.id);
          } finally {
            await vm.stop();
          }
        }
  assert.equal(qemuPids().length, before, 'no QEMU left running');
});

test('the other cache modes start and match live (cache flags and write cache verified through QMP)', async () => {
  const study = testStudy(disk.path, { memoryMiB: 128 });
  for (const [aio, cache, bus] of [
    ['threads', 'writethrough', 'virtio-blk'],
    ['io_uring', 'writeback', 'virtio-scsi'],
    ['native', 'directsync', 'virtio-blk'],
    ['threads', 'unsafe', 'virtio-scsi'],
  ] as const) {
    const variant = testVariant({ aio, cache, bus });
    const vm = await startQemuVm({ study, variant, accel: 'tcg', paused: true, name: `cache-${cache}` });
    await vm.stop();
  }
});

test('every variant of the seed preset starts in real QEMU, or is refused only for iothread-vq-mapping', async () => {
  const seed = loadPreset('seed');
  const caps = await qemuCapabilities();
  // A small guest: this checks the storage configuration, not the memory size.
  const study = { ...testStudy(disk.path, { memoryMiB: 128 }), source: seed.source };
  let started = 0;
  for (const variant of seed.variants) {
    try {
      checkVariant(variant, caps, seed.source);
    } catch (err) {
      assert.ok(
        variant.iothreads > 1 && (variant.disks ?? 1) === 1 && !caps.iothreadVqMapping,
        `${variant.id}: ${(err as Error).message}`,
      );
      assert.match((err as Error).message, /cannot spread one .* disk over \d+ iothreads/);
      continue;
    }
    const vm = await startQemuVm({ study, variant, accel: 'tcg', paused: true, name: `seed-${variant.id}` });
    await vm.stop();
    started++;
  }
  assert.ok(
    started >= seed.variants.length / 2,
    `${started} of ${seed.variants.length} seed variants started`,
  );
});

test('kvmio argv prints the variant as argv (JSON) and refuses unknown variants with exit 2', () => {
  const bin = fileURLToPath(new URL('../../../bin/kvmio.js', import.meta.url));
  const r = spawnSync(
    process.execPath,
    [bin, 'argv', '--preset', 'quick', '--variant', 'blk-native-io1-4k', '--json'],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { argv: string[]; variant: { id: string } };
  assert.equal(out.variant.id, 'blk-native-io1-4k');
  assert.ok(out.argv.includes('-blockdev'));
  assert.equal(JSON.parse(out.argv[out.argv.indexOf('-blockdev') + 1] ?? '').aio, 'native');
  assert.ok(out.argv.some((a) => a.startsWith('virtio-blk-pci,') && a.includes('iothread=kvmio-iot0')));
  const bad = spawnSync(process.execPath, [bin, 'argv', '--preset', 'quick', '--variant', 'nope'], {
    encoding: 'utf8',
  });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /no variant "nope"; its variants are: blk-threads-io0-4k/);
});
