import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runStudy } from '../../src/engine/run.js';
import { guardTarget } from '../../src/safety/guard.js';
import {
  checkLvmTarget,
  deviceMapperProblem,
  lvcreateArgv,
  ownerTag,
  removeLeftoverLvs,
} from '../../src/safety/lvm.js';
import { Store } from '../../src/store/store.js';
import { parseStudy } from '../../src/study/load.js';
import { UserError } from '../../src/util/errors.js';
import { assertEveryPointOk, withStudyRun } from '../helpers/small-study.js';
import { qemuPids } from '../helpers/vm.js';

/**
 * disk.lvm on a real volume group: a sparse file in a temporary directory on a loop device, made a
 * PV and a VG of its own (a name unique to this test process), torn down in `after` whatever
 * happened. Before any boot kvmio refuses a VG that is not there, one without room and a thin pool
 * that is not one; the data guard accepts the block device kvmio made and no other. Where the
 * kernel has device-mapper, a small study runs on a scratch LV kvmio makes and removes; where it has
 * none (some container and microVM kernels), that study is refused before anything boots, with the
 * reason, and the run test says why it is skipped. The LV of a kvmio that is gone is removed by the
 * next run either way (without device-mapper on inactive LVs, which LVM makes from metadata alone).
 */

const LVM_ENV = { ...process.env, LVM_SUPPRESS_FD_WARNINGS: '1' };
const lvm = (argv: string[]) => execFileSync(argv[0]!, argv.slice(1), { env: LVM_ENV, encoding: 'utf8' });
const has = (program: string) => spawnSync(program, ['--version'], { env: LVM_ENV }).status === 0;

const dir = mkdtempSync(join(tmpdir(), 'kvmio-e2e-lvm-'));
const vg = `kvmioe2e${process.pid}`;
const missing = !has('lvcreate')
  ? 'lvm2 is not installed (make test installs it)'
  : !has('losetup')
    ? 'losetup is not installed'
    : undefined;
const noDm = deviceMapperProblem();
const loops: string[] = [];

function loopDevice(name: string, bytes: number): string {
  const file = join(dir, name);
  const fd = openSync(file, 'w');
  ftruncateSync(fd, bytes);
  closeSync(fd);
  const dev = execFileSync('losetup', ['--find', '--show', file], { encoding: 'utf8' }).trim();
  loops.push(dev);
  return dev;
}

/** LVs of the test's VG with their tags. */
function lvsOfVg(): Array<{ name: string; tags: string }> {
  const out = JSON.parse(lvm(['lvs', '--reportformat', 'json', '-o', 'lv_name,lv_tags', vg])) as {
    report: Array<{ lv: Array<{ lv_name: string; lv_tags: string }> }>;
  };
  return out.report[0]!.lv.map((r) => ({ name: r.lv_name, tags: r.lv_tags }));
}

const vgExists = () => spawnSync('vgs', [vg], { env: LVM_ENV }).status === 0;

before(() => {
  if (missing) return;
  const pv = loopDevice('pv.img', 256 * 1024 ** 2);
  lvm(['pvcreate', '--yes', pv]);
  lvm(['vgcreate', '--yes', vg, pv]);
});

after(() => {
  if (vgExists()) spawnSync('vgremove', ['--yes', '--force', vg], { env: LVM_ENV });
  for (const dev of loops) {
    spawnSync('pvremove', ['--yes', dev], { env: LVM_ENV });
    spawnSync('losetup', ['-d', dev]);
  }
  rmSync(dir, { recursive: true, force: true });
});

const studyText = (lvmSpec: string) => `name: e2e-lvm
backend: qemu
guest: { vcpus: 1, memory: 512MiB }
disk: { lvm: ${lvmSpec} }
matrix: { aio: [threads], iothreads: [0], discard: [ignore, unmap] }
repetitions: 1
workloads:
  - { kind: fio, name: rw, rw: randwrite, bs: 4k, iodepth: 1, runtime: 2s, ramp: 0s, size: 32MiB }
`;

describe('disk.lvm on a loop-backed volume group', { skip: missing }, () => {
  test('before any boot: a VG that is not there, one without room, a pool that is not one', async () => {
    const refuses = (spec: Parameters<typeof checkLvmTarget>[0], pattern: RegExp) =>
      assert.rejects(
        checkLvmTarget(spec, 'e2e.yaml'),
        (e: unknown) => e instanceof UserError && pattern.test(e.message),
      );
    await refuses(
      { vg: `${vg}x`, sizeBytes: 64 * 1024 ** 2 },
      new RegExp(`e2e.yaml: disk.lvm.vg: volume group "${vg}x" does not exist`),
    );
    await refuses(
      { vg, sizeBytes: 1024 ** 3 },
      new RegExp(`disk.lvm.size: 1.0 GiB does not fit in volume group ${vg}, which has 2\\d\\d MiB free`),
    );
    await refuses(
      { vg, sizeBytes: 64 * 1024 ** 2, thinPool: 'pool' },
      /disk\.lvm\.thin: "pool" is no logical volume of/,
    );
    assert.ok(vgExists(), 'the VG is intact');
  });

  test('the data guard: a block device kvmio did not make needs --destroy-data, one it made does not', async () => {
    const dev = loopDevice('plain.img', 32 * 1024 ** 2);
    await assert.rejects(
      guardTarget(dev),
      (e: unknown) =>
        e instanceof UserError && /is a block device \(no signature found\).*--destroy-data/.test(e.message),
    );
    const info = await guardTarget(dev, { kvmioDevices: [dev] });
    assert.equal(info.kind, 'block');
    assert.equal(info.createdByKvmio, true);
    // Another device named as kvmio's does not vouch for this one.
    await assert.rejects(guardTarget(dev, { kvmioDevices: [loops[0]!] }), UserError);
  });

  test('without device-mapper in the kernel, the study is refused before anything boots', {
    skip: noDm ? false : 'this kernel has device-mapper: the next test runs the study',
  }, async () => {
    const study = parseStudy(studyText(`{ vg: ${vg}, size: 64MiB }`), join(dir, 'lvm.yaml'));
    const store = Store.open(join(dir, 'nodm.sqlite'));
    try {
      await assert.rejects(
        runStudy(study, { store, accelerator: { accel: 'tcg', reason: 'e2e test' } }),
        (e: unknown) =>
          e instanceof UserError && /disk\.lvm: this kernel has no device-mapper driver/.test(e.message),
      );
      assert.deepEqual(store.listRuns(), [], 'no run recorded');
    } finally {
      store.close();
    }
    assert.deepEqual(lvsOfVg(), [], 'no LV made');
    assert.ok(vgExists());
    assert.deepEqual(qemuPids(), [], 'nothing booted');
  });

  test('a study runs on a scratch LV kvmio made, and the LV is gone after', {
    timeout: 300_000,
    skip: noDm ?? false,
  }, async () => {
    const study = parseStudy(studyText(`{ vg: ${vg}, size: 64MiB }`), join(dir, 'lvm.yaml'));
    await withStudyRun(study, join(dir, 'results.sqlite'), (run) => {
      assertEveryPointOk(run, ['blk-threads-io0-4k', 'blk-threads-io0-4k-nodiscard']);
      const facts = run.store.hosts(run.runId)[0]?.facts as {
        lvm?: { vg: string; name: string; path: string };
      };
      assert.equal(facts.lvm?.vg, vg);
      assert.match(facts.lvm?.name ?? '', new RegExp(`^kvmio-${process.pid}-\\d+$`));
      assert.equal(facts.lvm?.path, `/dev/${vg}/${facts.lvm?.name}`);
    });
    assert.deepEqual(lvsOfVg(), [], 'the scratch LV is removed');
    assert.ok(vgExists(), 'the VG is intact');
    assert.deepEqual(qemuPids(), [], 'no QEMU left');
  });

  test("a killed kvmio's LV is removed by the next run; a live kvmio's and a user's LVs stay", async () => {
    // Without device-mapper LVM still writes metadata: the LVs are made inactive (not zeroed, no
    // signatures wiped), with kvmio's own lvcreate argv and tags otherwise; removal is kvmio's as is.
    const make = (argv: string[]) =>
      lvm(
        noDm
          ? [
              ...argv.map((a, i) => (argv[i - 1] === '--wipesignatures' ? 'n' : a)),
              '--driverloaded',
              'n',
              '--activate',
              'n',
              '--zero',
              'n',
            ]
          : argv,
      );
    const gone = spawnSync('true').pid;
    const spec = { vg, sizeBytes: 8 * 1024 ** 2 };
    const host = ownerTag().split('=')[1]!.split(':')[0];
    make(lvcreateArgv(spec, `kvmio-${gone}-1`, `kvmio_owner=${host}:${gone}:1`));
    make(lvcreateArgv(spec, `kvmio-${process.pid}-99`));
    make(lvcreateArgv(spec, `kvmio-${gone}-2`, `kvmio_owner=${host}x:${gone}:1`));
    make(['lvcreate', '--yes', '-n', 'users', '-L', '8m', vg]);
    assert.match(
      lvsOfVg().find((l) => l.name === `kvmio-${process.pid}-99`)?.tags ?? '',
      new RegExp(`^kvmio,kvmio_owner=${host}:${process.pid}:\\d+$`),
      "LVM keeps kvmio's tags as given",
    );
    const said: string[] = [];
    await removeLeftoverLvs((l) => said.push(l));
    assert.deepEqual(said, [`removed LV ${vg}/kvmio-${gone}-1, made by kvmio pid ${gone}, which is gone`]);
    assert.deepEqual(
      lvsOfVg()
        .map((l) => l.name)
        .sort(),
      [`kvmio-${gone}-2`, `kvmio-${process.pid}-99`, 'users'].sort(),
      "another host's LV, a live kvmio's and the user's stay",
    );
  });
});
