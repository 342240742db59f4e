import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { QmpClient, QmpError } from '../../src/qemu/qmp.js';
import { trackChild } from '../../src/util/proc.js';
import { qemuPids } from '../helpers/vm.js';

/** The QMP client against a real QEMU with no guest (paused q35 machine). */

const dir = mkdtempSync(join(tmpdir(), 'kvmio-qmp-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function startQemu(sock: string) {
  const child = spawn(
    'qemu-system-x86_64',
    [
      '-machine',
      'q35',
      '-accel',
      'tcg',
      '-S',
      '-nodefaults',
      '-display',
      'none',
      '-qmp',
      `unix:${sock},server=on,wait=off`,
    ],
    { stdio: 'ignore' },
  );
  trackChild(child);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return { child, exited };
}

test('greeting, a command, an error with its class, and an event', async () => {
  const sock = join(dir, 'a.sock');
  const { exited } = startQemu(sock);
  const qmp = await QmpClient.connect(sock, { timeoutMs: 10_000 });
  try {
    assert.ok(qmp.greeting.version.qemu.major >= 7);
    const status = await qmp.execute<{ status: string; running: boolean }>('query-status');
    assert.deepEqual([status.status, status.running], ['prelaunch', false]);
    await assert.rejects(qmp.execute('no-such-command'), (e: unknown) => {
      assert.ok(e instanceof QmpError);
      assert.equal(e.errorClass, 'CommandNotFound');
      assert.match(e.desc, /no-such-command/);
      return true;
    });
    await assert.rejects(qmp.execute('qom-get', { path: '/machine', property: 'nope' }), /GenericError/);
    // Subscribe first, then trigger: RESUME follows cont.
    const resumed = qmp.waitEvent('RESUME', () => true, 5000);
    await qmp.execute('cont');
    const ev = await resumed;
    assert.equal(ev.event, 'RESUME');
    assert.ok(ev.timestamp.seconds > 0);
    const stopped = qmp.waitEvent('STOP', () => true, 5000);
    await qmp.execute('stop');
    await stopped;
  } finally {
    await qmp.execute('quit').catch(() => undefined);
    qmp.close();
    await exited;
  }
});

test('when QEMU dies, pending waits reject at once', async () => {
  const sock = join(dir, 'b.sock');
  const { child, exited } = startQemu(sock);
  const qmp = await QmpClient.connect(sock, { timeoutMs: 10_000 });
  const waiting = qmp.waitEvent('NEVER', () => true, 60_000);
  const t = Date.now();
  child.kill('SIGKILL');
  await assert.rejects(waiting, /closed/);
  assert.ok(Date.now() - t < 2000);
  await assert.rejects(qmp.execute('query-status'), /closed/);
  await exited;
  assert.ok(!qemuPids().includes(child.pid ?? -1));
});
