import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseVirshVersion } from '../../src/libvirt/stack.js';

// Recorded from `virsh -c qemu:///system version --daemon` on the test machine (libvirt 11.3.0 from
// bookworm-backports, system QEMU 7.2); without --daemon the last line is missing.
const recorded = `Compiled against library: libvirt 11.3.0
Using library: libvirt 11.3.0
Using API: QEMU 11.3.0
Running hypervisor: QEMU 7.2.22
Running against daemon: 11.3.0
`;

test('the daemon and hypervisor versions come from virsh version --daemon', () => {
  assert.deepEqual(parseVirshVersion(recorded), { daemon: [11, 3, 0], hypervisor: [7, 2, 22] });
});

test('without the daemon line the daemon version is unknown, never the client library', () => {
  const withoutDaemon = recorded.replace(/Running against daemon.*\n/, '');
  assert.deepEqual(parseVirshVersion(withoutDaemon), { daemon: undefined, hypervisor: [7, 2, 22] });
});
