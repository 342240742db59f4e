import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { formatQemuLine } from '../../src/cli/commands/plan.js';
import { type AxisQemu, qemuRefusal } from '../../src/qemu/axis.js';
import { variantLabel } from '../../src/report/series.js';
import { parseStudy } from '../../src/study/load.js';
import { planStudy } from '../../src/study/plan.js';
import { parseQemuVersionOutput } from '../../src/study/qemus.js';
import { idWithoutQemu } from '../../src/study/variants.js';
import { configErrorMessage } from '../helpers/refusal.js';

const fixtures = fileURLToPath(new URL('../../../test/fixtures/qemu/', import.meta.url));
const bin = fileURLToPath(new URL('../../../bin/kvmio.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'kvmio-qemu-axis-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** An executable that answers -version with a real QEMU's recorded output (fixtures/qemu/README). */
function fakeQemu(name: string, versionFile: string | undefined, mode = 0o755): string {
  const path = join(dir, name);
  const text = versionFile ? readFileSync(join(fixtures, versionFile), 'utf8') : 'hello\n';
  writeFileSync(path, `#!/bin/sh\ncat <<'EOF'\n${text}EOF\n`);
  chmodSync(path, mode);
  return path;
}

const q72 = fakeQemu('qemu-7.2', 'version-7.2.txt');
const q10 = fakeQemu('qemu-10', 'version-10.0.txt');
const q10twin = fakeQemu('qemu-10-twin', 'version-10.0.txt');
const notQemu = fakeQemu('not-qemu', undefined);
const notExecutable = fakeQemu('not-executable', 'version-10.0.txt', 0o644);

const WORKLOAD = 'workloads:\n  - {name: r, kind: fio, rw: randread, bs: 4k, runtime: 2s}\n';
const study = (body: string) => parseStudy(`${body}\n${WORKLOAD}`, join(dir, 'axis.yaml'));
const refusal = (body: string) => configErrorMessage(() => study(body));

const abilities = (file: string, path: string, name: string): AxisQemu => {
  const recorded = JSON.parse(readFileSync(join(fixtures, file), 'utf8'));
  const version = `${recorded.capabilities.version.major}.${recorded.capabilities.version.minor}.${recorded.capabilities.version.micro}`;
  return { qemu: { name, path, version }, capabilities: recorded.capabilities, aio: recorded.aio };
};

test('-version output of real QEMUs reads as their version and package', () => {
  assert.deepEqual(parseQemuVersionOutput(readFileSync(join(fixtures, 'version-10.0.txt'), 'utf8')), {
    version: '10.0.2',
    package: 'Debian 1:10.0.2+ds-2+deb13u1~bpo12+1',
  });
  assert.equal(
    parseQemuVersionOutput(readFileSync(join(fixtures, 'version-7.2.txt'), 'utf8'))?.version,
    '7.2.22',
  );
  assert.equal(parseQemuVersionOutput('qemu-img version 7.2.22\n'), undefined);
});

test('matrix.qemu paths: one variant per QEMU, named by the version -version printed', () => {
  const s = study(`matrix:\n  aio: [native, io_uring]\n  qemu: [${q72}, ${q10}]`);
  assert.deepEqual(
    s.variants.map((v) => v.id),
    [
      'blk-native-io1-4k-qemu-7.2.22',
      'blk-native-io1-4k-qemu-10.0.2',
      'blk-uring-io1-4k-qemu-7.2.22',
      'blk-uring-io1-4k-qemu-10.0.2',
    ],
  );
  assert.deepEqual(s.variants[1]?.qemu, { name: '10.0.2', path: q10, version: '10.0.2' });
  assert.equal(idWithoutQemu(s.variants[1]!), 'blk-native-io1-4k');
});

test('qemus: names the QEMUs; exclude takes the names; variants on different QEMUs never switch live', () => {
  const s = study(
    `qemus: {old: ${q72}, new: ${q10}}\nrepetitions: 3\nmatrix:\n  aio: [native, io_uring]\n  qemu: [old, new]\nexclude:\n  - {aio: io_uring, qemu: old}`,
  );
  assert.deepEqual(
    s.variants.map((v) => v.id),
    ['blk-native-io1-4k-qemu-old', 'blk-native-io1-4k-qemu-new', 'blk-uring-io1-4k-qemu-new'],
  );
  const plan = planStudy(s);
  const byId = new Map(s.variants.map((v) => [v.id, v]));
  let previous: string | undefined;
  for (const p of plan.points) {
    const qemu = byId.get(p.variantId)?.qemu?.path;
    if (previous !== undefined && qemu !== previous)
      assert.ok(p.boot, `point ${p.index} changes QEMU without a boot`);
    if (p.switchLive) assert.equal(qemu, previous, `point ${p.index} switches live across QEMUs`);
    previous = qemu;
  }
  // Two QEMUs, three rounds: at least one boot per QEMU per round after the first (the last carries over).
  assert.ok(plan.boots >= 4, `boots ${plan.boots}`);
  assert.ok(plan.liveSwitches >= 1, 'native and io_uring on the new QEMU share its VM');
  assert.ok(plan.notes.some((n) => n.includes('never switch live') && n.includes(q10)));
});

test('a QEMU path or name that is not allowed is refused with the file, the field and what is allowed', () => {
  const missing = refusal(`matrix:\n  qemu: [${q10}, /nonexistent/qemu-system-x86_64]`);
  assert.match(
    missing,
    /axis\.yaml(:\d+)?: matrix\.qemu\[1\]: \/nonexistent\/qemu-system-x86_64 does not exist; allowed: an absolute path to a QEMU/,
  );
  assert.match(
    refusal(`matrix:\n  qemu: [${notExecutable}]`),
    /matrix\.qemu\[0\]: .*not-executable is not executable/,
  );
  assert.match(
    refusal(`matrix:\n  qemu: [${notQemu}]`),
    /matrix\.qemu\[0\]: .*not-qemu is not a QEMU: -version printed "hello"/,
  );
  assert.match(
    refusal('matrix:\n  qemu: [bin/qemu]'),
    /matrix\.qemu\[0\]: "bin\/qemu" is not allowed: an absolute path/,
  );
  assert.match(
    refusal(`qemus: {a: ${q10}}\nmatrix:\n  qemu: [b]`),
    /matrix\.qemu\[0\]: "b" is not allowed: .*\(a\)/,
  );
  assert.match(
    refusal(`matrix:\n  qemu: [${q10}, ${q10twin}]`),
    /matrix\.qemu\[1\]: .* is QEMU 10\.0\.2 like .*: give them names in qemus:/,
  );
  assert.match(refusal(`qemus: {a: ${q10}}`), /qemus: names QEMUs but matrix\.qemu uses none of them/);
  assert.match(refusal(`qemus: {a: ${notQemu}}\nmatrix:\n  qemu: [a]`), /qemus\.a: .*is not a QEMU/);
  assert.match(refusal(`qemus: {"a b": ${q10}}\nmatrix:\n  qemu: [a]`), /the name "a b" is not allowed/);
  assert.match(
    refusal(`backend: libvirt\nlibvirt: {uri: "qemu+ssh://root@far/system"}\nmatrix:\n  qemu: [${q10}]`),
    /matrix\.qemu: names QEMU binaries of this machine, but the VMs run elsewhere/,
  );
  assert.match(
    refusal(`matrix:\n  qemu: [${q10}]\nexclude:\n  - {qemu: [7.2.22]}`),
    /exclude\[0\]\.qemu.*"7\.2\.22" is not a QEMU of matrix\.qemu; allowed: 10\.0\.2/,
  );
});

test('the CLI refuses a bad QEMU with exit 2 and one line, no stack', () => {
  const file = join(dir, 'bad.yaml');
  writeFileSync(file, `matrix:\n  qemu: [${notQemu}]\n${WORKLOAD}`);
  const r = spawnSync(process.execPath, [bin, 'plan', file], { encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /matrix\.qemu\[0\]: .* is not a QEMU/);
});

test('a QEMU without iothread-vq-mapping, or an aio mode that fails here, refuses the variant with the reason', () => {
  const old = abilities('abilities-7.2.json', '/usr/bin/qemu-system-x86_64', '7.2.22');
  const recent = abilities('abilities-10.0.json', '/opt/kvmio/qemu-10/bin/qemu-system-x86_64', '10.0.2');
  const s = study(`matrix:\n  aio: [io_uring]\n  iothreads: [2]\n  queues: [2]\n  qemu: [${q72}]`);
  const v = s.variants[0]!;
  assert.match(
    qemuRefusal(v, old) ?? '',
    /cannot spread one virtio-blk disk over 2 iothreads: that needs iothread-vq-mapping/,
  );
  assert.equal(qemuRefusal(v, recent), undefined);
  const noUring = {
    ...recent,
    aio: { ...recent.aio, io_uring: 'Unable to use linux io_uring, falling back to thread pool' },
  };
  assert.match(
    qemuRefusal(v, noUring) ?? '',
    /aio=io_uring does not work on this host: Unable to use linux io_uring/,
  );
  assert.equal(
    formatQemuLine(recent),
    'QEMU 10.0.2: /opt/kvmio/qemu-10/bin/qemu-system-x86_64; aio threads, native, io_uring; one disk over several iothreads: virtio-blk, virtio-scsi',
  );
  assert.match(formatQemuLine(old), /QEMU 7\.2\.22: .*one disk over several iothreads: no$/);
});

test('the report labels variants of the axis by their QEMU version', () => {
  const s = study(`qemus: {new: ${q10}}\nmatrix:\n  aio: [native]\n  qemu: [new]`);
  assert.equal(variantLabel(s.variants[0], s.variants[0]!.id), 'native (iothread) · QEMU 10.0.2');
});
