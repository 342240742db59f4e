import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  linkSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  symlinkSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, type TestContext, test } from 'node:test';
import { prepareDiskFile } from '../../src/safety/disk.js';
import { guardTarget } from '../../src/safety/guard.js';
import { parseStudy } from '../../src/study/load.js';
import { run, sleep } from '../../src/util/proc.js';

/**
 * The data guard against real block devices (loop devices, as root): every refusal must leave the device
 * byte-for-byte unchanged, and every loop device and mount is removed even when a test fails.
 */

const isRoot = process.getuid?.() === 0;
let work = '';

before(() => {
  work = mkdtempSync(join(tmpdir(), 'kvmio-safety-'));
  process.env.KVMIO_CACHE = join(work, 'cache');
});
after(() => rmSync(work, { recursive: true, force: true }));

async function loopDevice(t: TestContext, name: string, sizeMiB = 16): Promise<string> {
  const backing = join(work, `${name}.img`);
  await run(['truncate', '-s', `${sizeMiB}M`, backing]);
  const dev = (await run(['losetup', '-f', '--show', backing])).stdout.trim();
  t.after(async () => {
    await run(['losetup', '-d', dev], { allowFailure: true });
    rmSync(backing, { force: true });
  });
  return dev;
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function ext4Loop(t: TestContext, name: string): Promise<string> {
  const dev = await loopDevice(t, name);
  await run(['mkfs.ext4', '-q', '-L', 'data', dev]);
  return dev;
}

test('a loop device holding ext4 is refused, named with its label, and left unchanged', {
  skip: !isRoot,
}, async (t) => {
  const dev = await ext4Loop(t, 'ext4');
  const before = await sha256(dev);
  await assert.rejects(guardTarget(dev, {}), (e: Error) => {
    assert.equal(e.name, 'UserError');
    assert.match(e.message, new RegExp(`^${dev} holds ext4 \\(label "data"\\); kvmio will not write to it`));
    assert.match(e.message, new RegExp(`pass --destroy-data ${dev}$`));
    return true;
  });
  await assert.rejects(prepareDiskFile({ path: dev, sizeBytes: 0 }, {}), /holds ext4/);
  // Its backing file is in use through the loop device, whatever --destroy-data says.
  const backing = join(work, 'ext4.img');
  await assert.rejects(
    guardTarget(backing, { destroyData: [backing] }),
    new RegExp(`^UserError: ${backing} is attached to ${dev}; kvmio will not write to a disk in use`),
  );
  assert.equal(await sha256(dev), before);
});

test('--destroy-data naming that exact device (or a symlink to it) allows it', {
  skip: !isRoot,
}, async (t) => {
  const dev = await ext4Loop(t, 'allowed');
  const info = await guardTarget(dev, { destroyData: [dev] });
  assert.deepEqual(info, {
    path: dev,
    kind: 'block',
    sizeBytes: 16 << 20,
    createdByKvmio: false,
    exists: true,
  });
  const link = join(work, 'by-name');
  symlinkSync(dev, link);
  t.after(() => rmSync(link, { force: true }));
  assert.equal((await guardTarget(link, { destroyData: [dev] })).path, dev);
  assert.equal((await guardTarget(dev, { destroyData: [link] })).path, dev);
});

test('--destroy-data naming another path does not allow it', { skip: !isRoot }, async (t) => {
  const dev = await ext4Loop(t, 'other-a');
  const other = await loopDevice(t, 'other-b');
  const before = await sha256(dev);
  await assert.rejects(
    guardTarget(dev, { destroyData: [other, `${dev}1`] }),
    new RegExp(`holds ext4 .*--destroy-data names ${other}, ${dev}1, not this disk`),
  );
  assert.equal(await sha256(dev), before);
});

test('a mounted loop device is refused even with --destroy-data', { skip: !isRoot }, async (t) => {
  const dev = await ext4Loop(t, 'mounted');
  const mnt = join(work, 'mnt with space');
  mkdirSync(mnt);
  await run(['mount', dev, mnt]);
  t.after(async () => {
    await run(['umount', mnt], { allowFailure: true });
  });
  await assert.rejects(
    guardTarget(dev, { destroyData: [dev] }),
    new RegExp(`${dev} is mounted at ${mnt} as ext4; kvmio will not write to a disk in use`),
  );
});

test('a swap signature is refused; active swap is refused even with --destroy-data', {
  skip: !isRoot,
}, async (t) => {
  const dev = await loopDevice(t, 'swap');
  await run(['mkswap', '-L', 'myswap', dev]);
  const before = await sha256(dev);
  await assert.rejects(
    guardTarget(dev, {}),
    new RegExp(`${dev} holds a swap signature \\(label "myswap"\\)`),
  );
  assert.equal(await sha256(dev), before);
  // swapon may be refused inside some containers; the active-swap check is exercised only where it works.
  const on = await run(['swapon', dev], { allowFailure: true });
  if (on.code !== 0) return;
  t.after(async () => {
    await run(['swapoff', dev], { allowFailure: true });
  });
  await assert.rejects(guardTarget(dev, { destroyData: [dev] }), /is active swap/);
});

test('a partition table is refused', { skip: !isRoot }, async (t) => {
  const dev = await loopDevice(t, 'mbr');
  // A DOS MBR with one Linux partition from sector 2048 (sfdisk is not installed everywhere).
  const mbr = Buffer.alloc(512);
  const entry = 446;
  mbr[entry + 4] = 0x83;
  mbr.writeUInt32LE(2048, entry + 8);
  mbr.writeUInt32LE(8192, entry + 12);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  const fd = openSync(dev, 'r+');
  writeSync(fd, mbr, 0, 512, 0);
  closeSync(fd);
  await assert.rejects(guardTarget(dev, {}), new RegExp(`${dev} holds a dos partition table`));
});

test('a device open by a running QEMU is refused even with --destroy-data', { skip: !isRoot }, async (t) => {
  const dev = await loopDevice(t, 'vm');
  // An empty device named with --destroy-data passes...
  assert.equal((await guardTarget(dev, { destroyData: [dev] })).kind, 'block');
  // ...until a VM (stopped before its first instruction, no machine needed) has it open.
  const qemu = spawn(
    'qemu-system-x86_64',
    [
      '-machine',
      'none',
      '-S',
      '-nographic',
      '-name',
      'guest=victim',
      '-drive',
      `file=${dev},format=raw,if=none,id=d0`,
    ],
    { stdio: 'ignore' },
  );
  t.after(() => {
    qemu.kill('SIGKILL');
  });
  let refused: Error | undefined;
  for (let i = 0; i < 50 && !refused; i++) {
    await sleep(100);
    refused = await guardTarget(dev, { destroyData: [dev] }).then(
      () => undefined,
      (e: Error) => e,
    );
  }
  assert.match(
    refused?.message ?? 'not refused',
    new RegExp(`is open by qemu-system-x86 \\(pid ${qemu.pid}, VM "victim"\\)`),
  );
});

test('a block device smaller than the disk size asked for is refused', { skip: !isRoot }, async (t) => {
  const dev = await loopDevice(t, 'small');
  const destroyData = [dev];
  await assert.rejects(
    prepareDiskFile({ path: dev, sizeBytes: 1 << 30 }, { destroyData }),
    /smaller than the disk size asked for/,
  );
  assert.equal(
    (await prepareDiskFile({ path: dev, sizeBytes: 8 << 20 }, { destroyData })).sizeBytes,
    16 << 20,
  );
});

test('a block device with no size in the study is used whole, not at the 4 GiB default', {
  skip: !isRoot,
}, async (t) => {
  const dev = await loopDevice(t, 'whole');
  const study = parseStudy(
    `disk: { path: ${dev} }\nworkloads: [ { kind: fio, runtime: 2s } ]\n`,
    'whole.yaml',
  );
  assert.equal(study.disk.sizeBytes, 0);
  const info = await prepareDiskFile(study.disk, { destroyData: [dev] });
  assert.equal(info.sizeBytes, 16 << 20);
});

test('a block device without any signature still needs --destroy-data naming it', {
  skip: !isRoot,
}, async (t) => {
  const dev = await loopDevice(t, 'raw');
  const before = await sha256(dev);
  await assert.rejects(
    prepareDiskFile({ path: dev, sizeBytes: 0 }, {}),
    new RegExp(
      `^UserError: ${dev} is a block device \\(no signature found\\); kvmio will not write to it\\. To allow it, pass --destroy-data ${dev}$`,
    ),
  );
  assert.equal(await sha256(dev), before);
  assert.equal((await guardTarget(dev, { destroyData: [dev] })).kind, 'block');
});

/** An ext4 image on a loop device, mounted: the disk in use that the next two tests reach by other names. */
async function mountedImage(t: TestContext, name: string): Promise<{ image: string; dev: string }> {
  const dev = await ext4Loop(t, name);
  const mnt = join(work, `mnt-${name}`);
  mkdirSync(mnt);
  await run(['mount', dev, mnt]);
  t.after(async () => {
    await run(['umount', mnt], { allowFailure: true });
  });
  return { image: join(work, `${name}.img`), dev };
}

test('a hard link to the image of a mounted loop device is refused even with --destroy-data naming it', {
  skip: !isRoot,
}, async (t) => {
  const { image, dev } = await mountedImage(t, 'linked');
  const link = join(work, 'link.raw');
  linkSync(image, link);
  t.after(() => rmSync(link, { force: true }));
  const before = await sha256(image);
  await assert.rejects(
    prepareDiskFile({ path: link, sizeBytes: 16 << 20 }, { destroyData: [link] }),
    new RegExp(`${link} is attached to ${dev}; kvmio will not write to a disk in use`),
  );
  assert.equal(await sha256(image), before);
});

test('a second loop device over the image of a mounted one is refused even with --destroy-data', {
  skip: !isRoot,
}, async (t) => {
  const { image, dev } = await mountedImage(t, 'twice');
  const second = (await run(['losetup', '-f', '--show', image])).stdout.trim();
  t.after(async () => {
    await run(['losetup', '-d', second], { allowFailure: true });
  });
  const before = await sha256(image);
  await assert.rejects(
    prepareDiskFile({ path: second, sizeBytes: 0 }, { destroyData: [second] }),
    new RegExp(
      `${second} shares its backing file ${image} with ${dev}, which is mounted at .*; kvmio will not write to a disk in use`,
    ),
  );
  assert.equal(await sha256(image), before);
});
