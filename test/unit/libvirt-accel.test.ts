import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type ProbeVirsh, probeDomainXml, probeLibvirtAccelerator } from '../../src/libvirt/accel.js';
import { VirshError } from '../../src/libvirt/virsh.js';

const GUEST = { kernel: '/var/lib/kvmio/guest-ab-kernel', initrd: '/var/lib/kvmio/guest-ab-initrd' };
const URI = 'qemu+ssh://root@10.200.0.2/system';

/**
 * virsh's answer on this machine (libvirt 11.3, QEMU 7.2, no /dev/kvm), recorded with
 * `virsh -c qemu:///system domcapabilities --virttype kvm`, as Virsh.run reports it.
 */
const NO_KVM =
  "failed to get emulator capabilities; invalid argument: the accel 'kvm' is not supported by '/usr/bin/qemu-system-x86_64' on this host";

/** A virsh that answers from a script: each command's handler, and every call recorded. */
function fakeVirsh(answer: (args: readonly string[]) => string | Error): ProbeVirsh & { calls: string[][] } {
  const calls: string[][] = [];
  const run = async (args: readonly string[]) => {
    calls.push([...args]);
    const a = answer(args);
    if (a instanceof Error) throw a;
    return a;
  };
  return {
    uri: URI,
    calls,
    run,
    tryRun: async (args: readonly string[]) => {
      try {
        return await run(args);
      } catch {
        return undefined;
      }
    },
  };
}

test("libvirt without kvm domains: TCG with libvirt's reason and the host, nothing booted", async () => {
  const virsh = fakeVirsh((args) =>
    args[0] === 'domcapabilities' ? new VirshError(args, NO_KVM) : new Error(`unexpected ${args[0]}`),
  );
  const r = await probeLibvirtAccelerator(virsh, GUEST);
  assert.equal(r.accel, 'tcg');
  assert.equal(r.reason, `libvirt at ${URI} offers no kvm domains: ${NO_KVM}`);
  assert.ok(r.warning);
  assert.deepEqual(
    virsh.calls.map((c) => c[0]),
    ['domcapabilities'],
  );
});

test('a kvm domain whose guest agent answers: KVM, and the probe domain is destroyed', async () => {
  let pings = 0;
  const virsh = fakeVirsh((args) => {
    if (args[0] === 'qemu-agent-command')
      return ++pings < 2 ? new VirshError(args, 'not yet') : '{"return":{}}';
    if (args[0] === 'domstate') return 'running\n';
    return '';
  });
  const r = await probeLibvirtAccelerator(virsh, GUEST, { timeoutMs: 10_000 });
  assert.equal(r.accel, 'kvm');
  assert.match(r.reason, new RegExp(`booted in a kvm domain of libvirt at ${URI.replace(/[.+]/g, '\\$&')}`));
  assert.equal(r.warning, undefined);
  const name = virsh.calls.find((c) => c[0] === 'qemu-agent-command')?.[1];
  assert.match(name ?? '', /^kvmio-accel-\d+-\d+$/);
  assert.deepEqual(virsh.calls.at(-1), ['destroy', name]);
});

test('a kvm domain that hangs: TCG when the time is up, the domain destroyed', async () => {
  const virsh = fakeVirsh((args) => {
    if (args[0] === 'qemu-agent-command') return new VirshError(args, 'Guest agent is not responding');
    if (args[0] === 'domstate') return 'running\n';
    return '';
  });
  const r = await probeLibvirtAccelerator(virsh, GUEST, { timeoutMs: 1500 });
  assert.equal(r.accel, 'tcg');
  assert.match(r.reason, /offers kvm domains but the guest did not boot in one within 2s/);
  assert.equal(virsh.calls.at(-1)?.[0], 'destroy');
});

test('a kvm domain libvirt cannot start or that stops: TCG with the reason', async () => {
  const refused = fakeVirsh((args) =>
    args[0] === 'create'
      ? new VirshError(args, 'Could not access KVM kernel module: No such file or directory')
      : '',
  );
  const a = await probeLibvirtAccelerator(refused, GUEST);
  assert.equal(a.accel, 'tcg');
  assert.match(a.reason, /cannot start one: Could not access KVM kernel module/);
  const stopped = fakeVirsh((args) =>
    args[0] === 'qemu-agent-command'
      ? new VirshError(args, 'domain is not running')
      : args[0] === 'domstate'
        ? 'shut off\n'
        : '',
  );
  const b = await probeLibvirtAccelerator(stopped, GUEST);
  assert.equal(b.accel, 'tcg');
  assert.match(b.reason, /started a kvm domain but it is shut off while booting/);
});

test('probeDomainXml: a kvm domain of the staged guest with the agent channel, no disk', () => {
  const xml = probeDomainXml('kvmio-accel-1-1', { kernel: "/k'x", initrd: '/i' }, '/opt/q/bin/qemu');
  assert.match(xml, /^<domain type='kvm'>/);
  assert.match(xml, /<kernel>\/k&apos;x<\/kernel>/);
  assert.match(xml, /<emulator>\/opt\/q\/bin\/qemu<\/emulator>/);
  assert.match(xml, /name='org\.qemu\.guest_agent\.0'/);
  assert.match(xml, /owner-pid='\d+'/);
  assert.doesNotMatch(xml, /<disk/);
});
