import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { testDiskSerials } from '../../src/guest/disks.js';
import { domainXml } from '../../src/libvirt/xml.js';
import { type CpuWindow, cpuWindowMetrics, withStorageDaemon } from '../../src/metrics/cpu.js';
import { daemonSockets, qemuArgv, testDiskBlockdevs } from '../../src/qemu/argv.js';
import { parseDaemonVersion, storageDaemonArgv, storageDaemonBeside } from '../../src/qemu/storage-daemon.js';
import { libvirtLines } from '../../src/report/conclusion.js';
import { variantLabel } from '../../src/report/series.js';
import { parseStudy } from '../../src/study/load.js';
import { planStudy } from '../../src/study/plan.js';
import { bootGroupKey, makeVariant, variantProblem } from '../../src/study/variants.js';
import { configErrorMessage } from '../helpers/refusal.js';

/**
 * matrix.path: where a variant's disk is served. The study reads the axis from an allow-list and
 * leaves out what cannot work with the reason; QEMU's argv and the storage daemon's are built from the
 * same node description; the daemon's CPU joins QEMU's window as a class of its own.
 */

const work = mkdtempSync(join(tmpdir(), 'kvmio-path-unit-'));
after(() => rmSync(work, { recursive: true, force: true }));

const WORKLOAD = 'workloads:\n  - { kind: fio, name: r, rw: randread, bs: 4k, iodepth: 1, runtime: 2s }\n';

function load(yaml: string) {
  return parseStudy(`disk: { path: /var/tmp/kvmio-path.raw, size: 64M }\n${yaml}\n${WORKLOAD}`, 'path.yaml');
}

const refusal = (yaml: string) => configErrorMessage(() => load(yaml));

const study = {
  source: 'test',
  guest: { vcpus: 1, memoryBytes: 512 * 1024 * 1024, count: 1 },
  disk: { path: '/var/tmp/d.raw', sizeBytes: 64 * 1024 * 1024 },
};

test('matrix.path makes one variant per path, ids suffixed -vhost and -nbd, each booting its own VM', () => {
  const s = load('repetitions: 1\nmatrix: { aio: [native], path: [qemu, vhost-user-blk, nbd] }');
  assert.deepEqual(
    s.variants.map((v) => v.id),
    ['blk-native-io1-4k', 'blk-native-io1-4k-vhost', 'blk-native-io1-4k-nbd'],
  );
  assert.equal(s.variants[0]?.path, undefined, 'path qemu stays absent, so ids of older studies hold');
  assert.equal(new Set(s.variants.map(bootGroupKey)).size, 3);
  const p = planStudy(s);
  assert.equal(p.boots, 3);
  // Two daemon variants differing in aio do not share a VM either (the daemon is set up at boot).
  const two = load('repetitions: 1\nmatrix: { aio: [native, threads], path: [nbd] }');
  assert.equal(planStudy(two).boots, 2);
});

test('matrix.path refuses an unknown path with the allowed values', () => {
  assert.match(
    refusal('matrix: { path: [spdk] }'),
    /path\.yaml:\d+: matrix\.path\[0\]: .*qemu, vhost-user-blk, nbd/,
  );
});

test('combinations a path cannot run are left out with the reason, or refused when nothing is left', () => {
  const s = load('matrix: { bus: [virtio-blk, virtio-scsi], path: [vhost-user-blk] }');
  assert.deepEqual(
    s.variants.map((v) => v.id),
    ['blk-native-io1-4k-vhost'],
  );
  assert.ok(
    s.notes?.some((n) =>
      /scsi-native-io1-4k-vhost left out: path vhost-user-blk is a virtio-blk device/.test(n),
    ),
    JSON.stringify(s.notes),
  );
  assert.match(
    refusal('matrix: { bus: [virtio-scsi], path: [vhost-user-blk] }'),
    /matrix: every combination is impossible: .*virtio-blk device.*; use bus virtio-blk with path vhost-user-blk/,
  );
  assert.match(
    variantProblem(makeVariant({ path: 'nbd', iothreads: 2 })) ?? '',
    /one iothread of the storage daemon.*use iothreads 0 or 1 with path nbd, or disks: \[2\]/,
  );
  assert.match(
    variantProblem(makeVariant({ path: 'vhost-user-blk', disks: 2, iothreads: 2 })) ?? '',
    /same serial \(vhost_user_blk\)/,
  );
  assert.equal(variantProblem(makeVariant({ path: 'nbd', disks: 2, iothreads: 2 })), undefined);
});

test('paths served by the daemon run on this machine only and with the builtin guest', () => {
  assert.match(
    refusal('backend: libvirt\nlibvirt: { uri: "qemu+ssh://root@far/system" }\nmatrix: { path: [nbd] }'),
    /matrix\.path: vhost-user-blk and nbd run on this machine only/,
  );
});

test('vhost-user-blk: QEMU shares guest memory, has the device on a vhost-user socket and no node or iothread of the disk', () => {
  const variant = makeVariant({ aio: 'native', iothreads: 1, path: 'vhost-user-blk', format: 'qcow2' });
  const argv = qemuArgv({ name: 'x', study, variant, accel: 'tcg', runtimeDir: '/run/k', binary: 'qemu' });
  assert.ok(argv.includes('memory-backend-memfd,id=kvmio-mem,size=512M,share=on'), argv.join(' '));
  assert.ok(argv.includes('socket,id=kvmio-test-vhost,path=/run/k/qsd-vhost-0.sock'));
  assert.ok(
    argv.includes(
      'vhost-user-blk-pci,id=kvmio-test-dev,bus=kvmio-rp-test,chardev=kvmio-test-vhost,num-queues=1',
    ),
  );
  assert.ok(!argv.includes('-blockdev'), 'QEMU opens no node of the image');
  assert.ok(!argv.some((a) => a.startsWith('iothread,')), "the iothread is the daemon's");
  const huge = qemuArgv({
    name: 'x',
    study,
    variant: makeVariant({ path: 'vhost-user-blk', memory: 'hugepages' }),
    accel: 'tcg',
    runtimeDir: '/run/k',
    binary: 'qemu',
  });
  assert.ok(huge.some((a) => a.startsWith('memory-backend-file,') && a.endsWith('share=on')));
  assert.deepEqual(testDiskSerials(variant), ['vhost_user_blk']);
});

test('nbd: QEMU has an NBD client node on the daemon socket under the usual device and iothread', () => {
  const variant = makeVariant({ aio: 'io_uring', iothreads: 1, path: 'nbd', cache: 'unsafe' });
  const argv = qemuArgv({ name: 'x', study, variant, accel: 'tcg', runtimeDir: '/run/k', binary: 'qemu' });
  const nodes = argv.flatMap((a, i) => (argv[i - 1] === '-blockdev' ? [JSON.parse(a)] : []));
  assert.deepEqual(nodes, [
    {
      driver: 'nbd',
      'node-name': 'kvmio-test',
      server: { type: 'unix', path: '/run/k/qsd-nbd.sock' },
      export: 'kvmio-test-export',
      cache: { direct: false, 'no-flush': true },
      discard: 'unmap',
    },
  ]);
  assert.ok(argv.includes('iothread,id=kvmio-iot0'));
  assert.ok(argv.some((a) => a.startsWith('virtio-blk-pci,') && a.includes('drive=kvmio-test')));
  assert.ok(argv.includes('memory-backend-ram,id=kvmio-mem,size=512M'), 'nbd needs no shared memory');
  assert.throws(() => testDiskBlockdevs(variant, '/var/tmp/d.raw'), /sockets are not known/);
});

test("the daemon's argv opens the image as QEMU would and exports it on each path", () => {
  const sockets = daemonSockets('/run/k');
  const vhost = storageDaemonArgv({
    binary: '/opt/q/bin/qemu-storage-daemon',
    variant: makeVariant({
      aio: 'native',
      iothreads: 1,
      path: 'vhost-user-blk',
      queues: 2,
      cache: 'directsync',
    }),
    diskPaths: ['/var/tmp/d.raw'],
    sockets,
  });
  const arg = (argv: string[], flag: string) =>
    argv.flatMap((a, i) => (argv[i - 1] === flag ? [a.startsWith('{') ? JSON.parse(a) : a] : []));
  assert.equal(vhost[0], '/opt/q/bin/qemu-storage-daemon');
  assert.deepEqual(arg(vhost, '--object'), ['iothread,id=kvmio-iot0']);
  assert.deepEqual(arg(vhost, '--blockdev'), [
    {
      driver: 'file',
      'node-name': 'kvmio-test-file',
      filename: '/var/tmp/d.raw',
      aio: 'native',
      cache: { direct: true, 'no-flush': false },
      discard: 'unmap',
    },
    {
      driver: 'raw',
      'node-name': 'kvmio-test',
      file: 'kvmio-test-file',
      cache: { direct: true, 'no-flush': false },
      discard: 'unmap',
    },
  ]);
  assert.deepEqual(arg(vhost, '--export'), [
    {
      type: 'vhost-user-blk',
      id: 'kvmio-test-export',
      'node-name': 'kvmio-test',
      writable: true,
      iothread: 'kvmio-iot0',
      addr: { type: 'unix', path: '/run/k/qsd-vhost-0.sock' },
      'num-queues': 2,
      // directsync has no guest write cache: the export flushes every write.
      writethrough: true,
    },
  ]);
  assert.deepEqual(vhost.slice(-4), [
    '--chardev',
    'socket,id=kvmio-qsd-qmp,path=/run/k/qsd-qmp.sock,server=on,wait=off',
    '--monitor',
    'chardev=kvmio-qsd-qmp',
  ]);
  const nbd = storageDaemonArgv({
    binary: 'qsd',
    variant: makeVariant({ path: 'nbd', format: 'qcow2', disks: 2, iothreads: 2 }),
    diskPaths: ['/var/tmp/d.raw.qcow2', '/var/tmp/d.raw.1.qcow2'],
    sockets,
  });
  assert.deepEqual(arg(nbd, '--nbd-server'), [{ addr: { type: 'unix', path: '/run/k/qsd-nbd.sock' } }]);
  assert.deepEqual(
    arg(nbd, '--export').map((e) => [e.type, e.id, e['node-name'], e.iothread, e.name]),
    [
      ['nbd', 'kvmio-test-export', 'kvmio-test', 'kvmio-iot0', 'kvmio-test-export'],
      ['nbd', 'kvmio-test-export-1', 'kvmio-test-1', 'kvmio-iot1', 'kvmio-test-export-1'],
    ],
  );
  assert.deepEqual(
    arg(nbd, '--blockdev').map((n) => [n.driver, n['node-name']]),
    [
      ['file', 'kvmio-test-file'],
      ['qcow2', 'kvmio-test'],
      ['file', 'kvmio-test-file-1'],
      ['qcow2', 'kvmio-test-1'],
    ],
  );
  assert.throws(
    () => storageDaemonArgv({ binary: 'qsd', variant: makeVariant(), diskPaths: ['/x'], sockets }),
    /served by QEMU/,
  );
});

test('the storage daemon is looked up beside its QEMU first, and its version read from --version', () => {
  const bin = join(work, 'prefix', 'bin');
  mkdirSync(bin, { recursive: true });
  const qemu = join(bin, 'qemu-system-x86_64');
  const daemon = join(bin, 'qemu-storage-daemon');
  for (const f of [qemu, daemon]) {
    writeFileSync(f, '#!/bin/sh\n');
    chmodSync(f, 0o755);
  }
  assert.equal(storageDaemonBeside(qemu, { PATH: '/nonexistent' }), daemon);
  const other = join(work, 'other');
  mkdirSync(other);
  assert.equal(storageDaemonBeside(join(other, 'qemu-system-x86_64'), { PATH: bin }), daemon);
  assert.equal(storageDaemonBeside(join(other, 'qemu-system-x86_64'), { PATH: other }), undefined);
  // As Debian 12's and bookworm-backports' daemons print it.
  assert.equal(
    parseDaemonVersion('qemu-storage-daemon version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n'),
    '7.2.22',
  );
  assert.equal(parseDaemonVersion('no version here'), undefined);
});

test("the daemon's CPU joins QEMU's window as class storage-daemon and counts in CPU per kIOPS", () => {
  const classes = (o: Partial<CpuWindow['byClass']>) => ({
    vcpu: 0,
    iothread: 0,
    main: 0,
    worker: 0,
    other: 0,
    'storage-daemon': 0,
    ...o,
  });
  const qemu: CpuWindow = {
    seconds: 2,
    byClass: classes({ vcpu: 1, main: 0.2 }),
    totalS: 1.2,
    unseenS: 0,
    threads: classes({ vcpu: 1, main: 1 }),
    series: [{ t: 1, ...classes({ vcpu: 0.5 }) }],
  };
  const daemon: CpuWindow = {
    seconds: 2,
    byClass: classes({ main: 0.1, iothread: 0.3 }),
    totalS: 0.4,
    unseenS: 0,
    threads: classes({ main: 1, iothread: 1 }),
    series: [{ t: 1, ...classes({ iothread: 0.2, main: 0.05 }) }],
  };
  const w = withStorageDaemon(qemu, daemon);
  assert.equal(w.byClass['storage-daemon'], 0.4);
  assert.ok(Math.abs(w.totalS - 1.6) < 1e-12);
  assert.equal(w.threads['storage-daemon'], 2);
  assert.ok(Math.abs((w.series?.[0]?.['storage-daemon'] ?? 0) - 0.25) < 1e-12);
  const m = cpuWindowMetrics(w, { iops: 1000, bwBytes: 0 });
  assert.equal(m.find((x) => x.metric === 'cpu.storage_daemon_s')?.value, 0.4);
  // 1.6 s over 2 s is 80% of a core, at 1 kIOPS.
  assert.ok(Math.abs((m.find((x) => x.metric === 'cpu.pct_per_kiops')?.value ?? 0) - 80) < 1e-9);
  assert.equal(
    cpuWindowMetrics(qemu).find((x) => x.metric === 'cpu.storage_daemon_s'),
    undefined,
    'a window without a daemon has no daemon metric',
  );
});

test('the report labels a path and gives its libvirt XML', () => {
  const v = makeVariant({ aio: 'native', iothreads: 1, path: 'vhost-user-blk' });
  assert.equal(variantLabel(v, v.id), 'native (iothread) · vhost-user-blk');
  const series = { def: v } as Parameters<typeof libvirtLines>[0];
  const lines = libvirtLines(series).join('\n');
  assert.match(lines, /<source type='memfd'\/><access mode='shared'\/>/);
  assert.match(lines, /<disk type='vhostuser' device='disk'>/);
  const nbd = libvirtLines({ def: makeVariant({ path: 'nbd' }) } as Parameters<typeof libvirtLines>[0]);
  assert.match(nbd.join('\n'), /<source protocol='nbd' name='EXPORT'><host transport='unix'/);
  assert.ok(!nbd.join('\n').includes(' io='), "the NBD client has no aio mode: the daemon's file node has");
});

const libvirtUp =
  spawnSync('virsh', ['-c', 'qemu:///system', 'version'], { encoding: 'utf8', timeout: 20_000 }).status === 0;

test('libvirt XML of the daemon paths: valid, and libvirt translates it into the argv kvmio gives QEMU itself', {
  skip:
    spawnSync('virt-xml-validate', ['--help']).error !== undefined && 'virt-xml-validate is not installed',
}, () => {
  const sockets = daemonSockets('/var/tmp/kvmio-qsd-x');
  const full = { ...study, name: 'x', variants: [] } as unknown as Parameters<typeof domainXml>[0]['study'];
  const native = (path: 'vhost-user-blk' | 'nbd') => {
    const variant = makeVariant({ aio: 'native', iothreads: 1, path });
    const xml = domainXml({
      study: full,
      variant,
      guest: { kernel: '/var/tmp/k', initrd: '/var/tmp/i', cmdline: 'x' },
      accel: 'tcg',
      name: `kvmio-path-${path}`,
      sockets,
    });
    const file = join(work, `${path}.xml`);
    writeFileSync(file, xml);
    const schema = spawnSync('virt-xml-validate', [file, 'domain'], { encoding: 'utf8' });
    assert.equal(schema.status, 0, `${path}: virt-xml-validate: ${schema.stderr}`);
    if (!libvirtUp) return { xml, argv: undefined };
    const r = spawnSync('virsh', ['-c', 'qemu:///system', 'domxml-to-native', 'qemu-argv', '--xml', file], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, `${path}: libvirt refuses the XML: ${r.stderr}`);
    return { xml, argv: r.stdout };
  };
  const vhost = native('vhost-user-blk');
  assert.match(vhost.xml, /<access mode='shared'\/>/);
  assert.ok(!vhost.xml.includes('<iothreads>'), "vhost-user-blk's iothread is the daemon's");
  if (vhost.argv) {
    assert.match(vhost.argv, /"qom-type":"memory-backend-memfd"[^']*"share":true/);
    assert.match(vhost.argv, /socket,id=([\w-]+),path=\/var\/tmp\/kvmio-qsd-x\/qsd-vhost-0\.sock/);
    assert.match(vhost.argv, /"driver":"vhost-user-blk-pci","num-queues":1/);
  }
  const nbd = native('nbd');
  assert.match(nbd.xml, /<host transport='unix' socket='\/var\/tmp\/kvmio-qsd-x\/qsd-nbd\.sock'\/>/);
  if (nbd.argv) {
    assert.match(
      nbd.argv,
      /"driver":"nbd","server":\{"type":"unix","path":"\/var\/tmp\/kvmio-qsd-x\/qsd-nbd\.sock"\},"export":"kvmio-test-export"/,
    );
    assert.match(nbd.argv, /"driver":"virtio-blk-pci","iothread":"iothread1"/);
  }
});
