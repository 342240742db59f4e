import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadPreset, parseStudy } from '../../src/study/load.js';
import { hostCanRun, planStudy } from '../../src/study/plan.js';
import { listPresets } from '../../src/study/presets.js';
import { UserError } from '../../src/util/errors.js';

const bin = fileURLToPath(new URL('../../../bin/kvmio.js', import.meta.url));

test('every preset plans: each variant x workload x round exactly once, host first in each round', () => {
  for (const name of listPresets()) {
    const s = loadPreset(name);
    const plan = planStudy(s);
    // The host baseline runs the workloads the host can run (fio, sweep); VMs run every one.
    const hostWorkloads = s.baseline ? s.workloads.filter(hostCanRun).length : 0;
    assert.equal(
      plan.points.length,
      (s.variants.length * s.workloads.length + hostWorkloads) * s.repetitions,
      name,
    );
    const seen = new Set(plan.points.map((p) => `${p.round}/${p.variantId}/${p.workload}`));
    assert.equal(seen.size, plan.points.length, `${name}: a point twice`);
    assert.deepEqual(
      plan.points.map((p) => p.index),
      plan.points.map((_, i) => i),
    );
    assert.ok(
      plan.boots >= 1 && plan.estimatedSeconds > plan.measureSeconds && plan.measureSeconds > 0,
      name,
    );
  }
});

test('seed preset boots fewer VMs than it has variants (disk knobs switch live)', () => {
  const plan = planStudy(loadPreset('seed'));
  assert.ok(plan.boots < plan.variants.length, `boots ${plan.boots} vs variants ${plan.variants.length}`);
  // Two memory backings, three rounds: 2 boots in the first round, then the last group carries over.
  assert.equal(plan.boots, 4);
});

test('repetitions are interleaved: round r ends before round r+1 starts', () => {
  const plan = planStudy(loadPreset('backends'));
  const rounds = plan.points.map((p) => p.round);
  assert.deepEqual(
    rounds,
    [...rounds].sort((a, b) => a - b),
  );
  for (let r = 0; r < 3; r++) {
    const ids = new Set(plan.points.filter((p) => p.round === r).map((p) => p.variantId));
    assert.equal(ids.size, plan.variants.length + 1, `round ${r} lacks variants`);
  }
});

test('the order is deterministic, and shuffled per round', () => {
  const a = planStudy(loadPreset('seed'));
  const b = planStudy(loadPreset('seed'));
  assert.deepEqual(a.points, b.points);
  const order = (r: number) => [
    ...new Set(a.points.filter((p) => p.round === r && p.variantId !== 'host').map((p) => p.variantId)),
  ];
  assert.notDeepEqual(order(0), order(1));
  // Another study name gives another (still deterministic) order.
  const renamed = { ...loadPreset('seed'), name: 'seed-2' };
  assert.notDeepEqual(
    planStudy(renamed).points.map((p) => p.variantId),
    a.points.map((p) => p.variantId),
  );
});

test('variants that share a VM stay together, and a round opens with the group the last one ended on', () => {
  const plan = planStudy(loadPreset('seed'));
  const memoryOf = new Map(plan.variants.map((v) => [v.id, v.memory]));
  for (let r = 0; r < 3; r++) {
    const groups = plan.points
      .filter((p) => p.round === r && p.variantId !== 'host')
      .map((p) => memoryOf.get(p.variantId));
    const changes = groups.filter((g, i) => i > 0 && g !== groups[i - 1]).length;
    assert.equal(changes, 1, `round ${r}: groups split`);
    if (r > 0) {
      const prev = plan.points.filter((p) => p.round === r - 1 && p.variantId !== 'host').at(-1)!;
      assert.equal(groups[0], memoryOf.get(prev.variantId));
    }
  }
  // A boot exactly where the memory backing changes; live switches elsewhere between variants.
  let running: string | undefined;
  let variant: string | undefined;
  for (const p of plan.points) {
    if (p.variantId === 'host') {
      assert.ok(!p.boot && !p.switchLive);
      continue;
    }
    const memory = memoryOf.get(p.variantId);
    assert.equal(p.boot, memory !== running, `point ${p.index}`);
    assert.equal(p.switchLive, memory === running && p.variantId !== variant, `point ${p.index}`);
    running = memory;
    variant = p.variantId;
  }
});

test('--only keeps matching ids; host is the baseline; a glob that matches nothing lists the ids', () => {
  const s = loadPreset('quick');
  const plan = planStudy(s, { only: ['blk-native-*', 'host'] });
  assert.deepEqual(
    plan.variants.map((v) => v.id),
    ['blk-native-io0-4k', 'blk-native-io1-4k'],
  );
  assert.equal(plan.baseline, true);
  assert.equal(planStudy(s, { only: ['*-io?-4k'] }).baseline, false);
  assert.equal(
    planStudy(s, { only: ['host'] }).points.every((p) => p.variantId === 'host' && !p.boot),
    true,
  );
  assert.throws(
    () => planStudy(s, { only: ['scsi-*'] }),
    (e: Error) =>
      e instanceof UserError &&
      e.message.includes('--only "scsi-*" matches no variant') &&
      e.message.includes('host, blk-threads-io0-4k'),
  );
});

test('hosts: each host runs the whole plan with its own VM', () => {
  const s = parseStudy(
    'backend: libvirt\nmatrix: { aio: [threads, native] }\nrepetitions: 2\nhosts:\n  - { name: a, uri: "qemu:///system" }\n  - { name: b, uri: "qemu+ssh://b/system" }\nworkloads: [ { kind: fio, runtime: 3s } ]\n',
    'hosts.yaml',
  );
  const plan = planStudy(s);
  assert.deepEqual([...new Set(plan.points.map((p) => p.host))], ['a', 'b']);
  assert.equal(plan.boots, 2);
  assert.equal(plan.points.length, 2 * 2 * 2);
});

test('the estimate adds ramp+runtime per point plus boots and switches', () => {
  const s = parseStudy(
    'matrix: { aio: [threads, native] }\nrepetitions: 1\nworkloads: [ { kind: fio, runtime: 3s, ramp: 1s } ]\n',
    'est.yaml',
  );
  const plan = planStudy(s);
  assert.equal(plan.measureSeconds, 8);
  assert.equal(plan.boots, 1);
  assert.equal(plan.liveSwitches, 1);
  assert.ok(plan.estimatedSeconds >= 8 + 8 + 2);
});

test('kvmio plan --preset seed --json: the documented shape', () => {
  const r = spawnSync(process.execPath, [bin, 'plan', '--preset', 'seed', '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.deepEqual(Object.keys(out.variants[0]).sort(), [
    'aio',
    'bus',
    'cache',
    'detect_zeroes',
    'discard',
    'disks',
    'format',
    'id',
    'iothreads',
    'memory',
    'queues',
  ]);
  assert.ok(out.boots < out.variants.length);
  for (const key of ['points', 'boots', 'measureSeconds', 'estimatedSeconds', 'notes'])
    assert.ok(key in out, key);
  assert.deepEqual(Object.keys(out.points[0]).sort(), [
    'boot',
    'host',
    'index',
    'round',
    'switchLive',
    'variantId',
    'workload',
  ]);
});

test('kvmio plan --preset quick --only: human table with boots and estimate', () => {
  const r = spawnSync(process.execPath, [bin, 'plan', '--preset', 'quick', '--only', 'blk-uring-*,host'], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^ {2}blk-uring-io0-4k +io_uring +0 +1 +virtio-blk +4k +1 +none +raw +unmap +off$/m);
  assert.doesNotMatch(r.stdout, /blk-native/);
  assert.match(r.stdout, /round 1 on local: host, \[boot\] blk-uring-io\d-4k, blk-uring-io\d-4k/);
  assert.match(r.stdout, /VM boots: 1 {3}live switches: 1/);
  assert.match(r.stdout, /estimated total: \d+s/);
});

test('kvmio plan: --only is repeatable and leaves the FILE argument alone', () => {
  const file = fileURLToPath(new URL('../../../presets/quick.yaml', import.meta.url));
  const r = spawnSync(
    process.execPath,
    [bin, 'plan', '--only', 'blk-threads-*', '--only', 'host', file, '--json'],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.deepEqual(
    out.variants.map((v: { id: string }) => v.id),
    ['blk-threads-io0-4k', 'blk-threads-io1-4k'],
  );
  assert.equal(out.baseline, true);
});
