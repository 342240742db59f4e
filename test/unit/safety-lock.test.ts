import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { lockDisk, lockFileFor } from '../../src/safety/lock.js';

/** One kvmio run per disk: exclusive across processes, stale locks taken over. */

let work = '';
before(() => {
  work = mkdtempSync(join(tmpdir(), 'kvmio-lock-'));
  process.env.KVMIO_RUNTIME_DIR = join(work, 'run');
});
after(() => rmSync(work, { recursive: true, force: true }));

const lockModule = fileURLToPath(new URL('../../src/safety/lock.js', import.meta.url));

/** A second process that takes the lock, says so, and holds it until stdin closes. */
function holderProcess(disk: string) {
  const code = `
    const { lockDisk } = await import(${JSON.stringify(lockModule)});
    lockDisk(${JSON.stringify(disk)});
    process.stdout.write('locked\\n');
    process.stdin.resume();
    process.stdin.on('end', () => process.exit(0));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
    env: process.env,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('locked') && resolve());
    child.on('exit', (c) => reject(new Error(`holder exited with ${c}`)));
  });
  return { child, ready };
}

test('a second lock on the same disk throws naming the holder pid; release frees it', () => {
  const disk = join(work, 'disk.raw');
  const release = lockDisk(disk);
  assert.throws(
    () => lockDisk(disk),
    new RegExp(`in use by another kvmio run \\(pid ${process.pid}, since `),
  );
  // The same disk through another spelling is the same lock.
  assert.throws(() => lockDisk(join(work, '.', 'run', '..', 'disk.raw')), /in use by another kvmio run/);
  release();
  assert.equal(existsSync(lockFileFor(disk)), false);
  lockDisk(disk)();
});

test('a lock held by another process is refused, and freed when that process exits', async (t) => {
  const disk = join(work, 'shared.raw');
  const { child, ready } = holderProcess(disk);
  t.after(() => child.kill('SIGKILL'));
  await ready;
  assert.throws(() => lockDisk(disk), new RegExp(`\\(pid ${child.pid}, since `));
  const exited = new Promise((r) => child.once('exit', r));
  child.stdin.end();
  await exited;
  assert.equal(existsSync(lockFileFor(disk)), false, 'released on a normal exit');
  lockDisk(disk)();
});

test('a stale lock (dead pid, or a pid reused by another process) is taken over', () => {
  const disk = join(work, 'stale.raw');
  const file = lockFileFor(disk);
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
    encoding: 'utf8',
  });
  writeFileSync(
    file,
    JSON.stringify({ pid: Number(dead.stdout), start: '1', path: disk, since: 'x', token: 't' }),
  );
  const release = lockDisk(disk);
  assert.equal(JSON.parse(readFileSync(file, 'utf8')).pid, process.pid);
  release();
  // Our own pid but another start time: the process that wrote it is gone.
  writeFileSync(file, JSON.stringify({ pid: process.pid, start: '1', path: disk, since: 'x', token: 't' }));
  lockDisk(disk)();
  // A lock file left half-written by a writer that died.
  writeFileSync(file, '{"pid":');
  lockDisk(disk)();
  assert.equal(existsSync(file), false);
});

test('a killed holder leaves a stale lock that the next run takes over', async () => {
  const disk = join(work, 'killed.raw');
  const { child, ready } = holderProcess(disk);
  await ready;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  assert.equal(existsSync(lockFileFor(disk)), true);
  lockDisk(disk)();
});
