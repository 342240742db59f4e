import assert from 'node:assert/strict';
import { test } from 'node:test';
import { qemuCapabilities } from '../../src/qemu/capabilities.js';
import { qemuPids } from '../helpers/vm.js';

test('capabilities come from QMP and are cached per binary', async () => {
  const before = qemuPids().length;
  const caps = await qemuCapabilities();
  assert.ok(caps.version.major >= 7);
  assert.ok(caps.aioModes.includes('threads') && caps.aioModes.includes('native'));
  // iothread-vq-mapping appeared in virtio-blk with QEMU 9.0: the QOM answer must agree.
  assert.equal(caps.iothreadVqMapping, caps.version.major >= 9);
  const t = Date.now();
  assert.equal(await qemuCapabilities(), caps);
  assert.ok(Date.now() - t < 50, 'second call is served from the cache');
  assert.equal(qemuPids().length, before, 'the probing QEMU has exited');
});
