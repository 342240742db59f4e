import assert from 'node:assert/strict';
import { test } from 'node:test';
import { libvirtUriProblem } from '../../src/study/libvirt-uri.js';
import { parseStudy } from '../../src/study/load.js';
import { planStudy } from '../../src/study/plan.js';
import { ConfigError } from '../../src/util/errors.js';

/** The error a study text raises, or a failure when it loads. */
function refusal(text: string): ConfigError {
  try {
    parseStudy(text, 'hostile.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError || (err as Error).name === 'UserError', `not a user error: ${err}`);
    return err as ConfigError;
  }
  assert.fail('the study was accepted');
}

test('keys and values with newline, ESC or NUL are escaped in messages', () => {
  const e = refusal('"bad\\nkey\\u001b[2J\\u0000": 1\nworkloads: [ { kind: fio } ]\n');
  assert.match(e.message, /^hostile\.yaml:1: bad\\nkey\\e\[2J\\x00: unknown key/);
  assert.doesNotMatch(e.message, /[\u0000-\u001f]/);
  const v = refusal('backend: "qemu\\u001b]0;title\\u0007"\nworkloads: [ { kind: fio } ]\n');
  assert.match(v.message, /"qemu\\e\]0;title\\x07" is not allowed/);
});

test('a long value is cut in the message (longer ones are refused by the value limit)', () => {
  const e = refusal(`backend: "${'q'.repeat(4000)}"\nworkloads: [ { kind: fio } ]\n`);
  assert.ok(e.message.length < 500, `message of ${e.message.length} characters`);
  assert.match(e.message, /more characters/);
});

test('libvirt URIs: the QEMU driver over local, ssh, tls, tcp; no ext, no file- or command-naming parameters', () => {
  for (const uri of [
    'qemu:///system',
    'qemu:///session',
    'qemu+unix:///system',
    'qemu+ssh://root@hv1/system',
    'qemu+ssh://hv1.example.org:2222/system?no_verify=1&no_tty=1',
    'qemu+tcp://127.0.0.1:16509/system',
    'qemu+tls://[fe80::1]/system',
  ])
    assert.equal(libvirtUriProblem(uri), undefined, uri);
  for (const [uri, want] of [
    ['qemu+ext:///system?command=/tmp/x', /transport "ext"/],
    ['qemu+ssh://h/system?keyfile=/root/.ssh/id_rsa', /parameter "keyfile"/],
    ['qemu+ssh://h/system?command=/bin/sh', /parameter "command"/],
    ['qemu+unix:///system?socket=/tmp/s', /parameter "socket"/],
    ['qemu+tls://h/system?pkipath=/tmp', /parameter "pkipath"/],
    ['qemu+ssh://h/system?known_hosts=/tmp/k', /parameter "known_hosts"/],
    ['xen:///system', /not an allowed libvirt URI/],
    ['qemu+ssh://-oProxyCommand=x/system', /not an allowed|not a host name/],
    ['qemu://host/system', /a local URI/],
  ] as const)
    assert.match(libvirtUriProblem(uri) ?? 'accepted', want, uri);
});

test('fio extra: the allow-listed options pass, and values stay one option', () => {
  const s = parseStudy(
    'workloads:\n  - { kind: fio, rw: randrw, ioengine: io_uring, extra: { norandommap: true, bssplit: "4k/50:8k/50", random_distribution: "zipf:1.2", hipri: 1 } }\n',
    'ok.yaml',
  );
  const w = s.workloads[0]!;
  assert.equal(w.kind, 'fio');
  if (w.kind === 'fio')
    assert.deepEqual(w.extra, {
      norandommap: '1',
      bssplit: '4k/50:8k/50',
      random_distribution: 'zipf:1.2',
      hipri: '1',
    });
  for (const option of [
    'exec_prerun',
    'exec_postrun',
    'trigger',
    'write_lat_log',
    'read_iolog',
    'unlink',
    'directory',
    'mem',
    'ioscheduler',
    'verify_state_save',
  ])
    assert.match(
      refusal(`workloads: [ { kind: fio, extra: { ${option}: x } } ]\n`).message,
      /is not an fio option kvmio passes on/,
      option,
    );
});

test('baseline with pgbench and rsync: the host runs fio only, and the plan says why', () => {
  const s = parseStudy(
    'baseline: true\nrepetitions: 1\nworkloads:\n  - { kind: fio, runtime: 2s }\n  - { kind: pgbench, clients: 1, runtime: 2s }\n  - { kind: rsync, files: 10 }\n',
    'apps.yaml',
  );
  const plan = planStudy(s);
  const hostPoints = plan.points.filter((p) => p.variantId === 'host');
  assert.deepEqual(
    hostPoints.map((p) => p.workload),
    ['randread-4k-qd1'],
  );
  assert.equal(plan.points.filter((p) => p.variantId !== 'host').length, 3);
  assert.ok(
    plan.notes.some((n) => /baseline: pgbench, rsync run in the guest only/.test(n)),
    plan.notes.join('\n'),
  );
});

test('a study file over 1 MiB is refused before it is parsed, naming the limit', () => {
  const e = refusal(`workloads: [ { kind: fio } ]\n#${'x'.repeat(1024 * 1024)}\n`);
  assert.match(e.message, /^hostile\.yaml: the file is \d+ characters, over the limit of 1048576 \(1 MiB\)/);
});

test('more than 10,000 keys: refused with the limit, in linear time', () => {
  const keys = Array.from({ length: 100_000 }, (_, i) => `k${i.toString(36)}: 1`).join('\n');
  const started = Date.now();
  const e = refusal(`${keys}\nworkloads: [ { kind: fio } ]\n`);
  assert.match(e.message, /^hostile\.yaml:\d+: more than 10000 keys and values, the limit for a study file$/);
  // Quadratic work on 100,000 keys takes minutes; linear work takes well under a second.
  assert.ok(Date.now() - started < 60_000, `${Date.now() - started} ms`);
});

test('a duplicate key is still refused, with its line', () => {
  assert.match(
    refusal('workloads: []\nbaseline: true\nworkloads: []\n').message,
    /^hostile\.yaml:3: .*unique/,
  );
});

test('a value over 4096 characters is refused with its line and the limit', () => {
  const e = refusal(`description: "${'d'.repeat(5000)}"\nworkloads: [ { kind: fio } ]\n`);
  assert.match(e.message, /^hostile\.yaml:1: a value of 5000 characters, over the limit of 4096$/);
});

test('the largest matrix allowed plans without overflowing the stack', () => {
  // 3 aio × 5 iothreads × 4 queues × 16 disks = 960 variants (disks ≥ iothreads keeps most).
  const s = parseStudy(
    'matrix: { aio: [threads, native, io_uring], iothreads: [0, 1, 2, 3, 4], queues: [1, 2, 4, 8], disks: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16] }\nrepetitions: 2\nworkloads: [ { kind: fio }, { kind: sweep }, { kind: rsync, files: 10 } ]\n',
    'big.yaml',
  );
  const plan = planStudy(s);
  assert.ok(plan.points.length > 5000, `${plan.points.length} points`);
});
