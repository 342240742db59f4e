import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, test } from 'node:test';
import { makeTestDisk } from '../helpers/vm.js';

/** Ctrl-C while a VM runs: kvmio's cleanups stop QEMU and remove its sockets before exiting 130. */

const disk = makeTestDisk(16 * 1024 * 1024);
after(() => disk.remove());

const script = `
import { startQemuVm } from ${JSON.stringify(new URL('../../src/qemu/vm.js', import.meta.url).href)};
import { testStudy, testVariant } from ${JSON.stringify(new URL('../helpers/vm.js', import.meta.url).href)};
const vm = await startQemuVm({
  study: testStudy(${JSON.stringify(disk.path)}, { memoryMiB: 128 }),
  variant: testVariant({ aio: 'native', iothreads: 1 }),
  accel: 'tcg',
  paused: true,
});
console.log(JSON.stringify({ pid: vm.qemuPid(), dir: vm.dir }));
setInterval(() => {}, 1000);
`;

test('SIGINT stops the running QEMU and exits 130', async () => {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const started = await new Promise<{ pid: number; dir: string }>((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => resolve(JSON.parse(d.toString())));
    child.once('exit', () => reject(new Error(`the script exited early: ${stderr}`)));
  });
  assert.ok(existsSync(`/proc/${started.pid}`));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill('SIGINT');
  assert.equal(await exited, 130);
  assert.ok(!existsSync(`/proc/${started.pid}`), 'QEMU is gone');
  assert.ok(!existsSync(started.dir), 'its runtime directory (sockets) is removed');
});
