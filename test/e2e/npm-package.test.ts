import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { DoctorReport } from '../../src/host/doctor.js';

/**
 * kvmio as its users get it: `npm pack` of this repository (prepack compiles), installed with
 * `npm install -g --prefix` into an empty prefix (dependencies from the npm registry, better-sqlite3
 * built or taken prebuilt), then run from a directory that has nothing of kvmio in it.
 */

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'kvmio-npm-'));
// A compiled file whose source was deleted: prepack must not ship it.
const stale = join(repo, 'dist/src', `stale-${process.pid}.js`);
after(() => {
  rmSync(work, { recursive: true, force: true });
  rmSync(stale, { force: true });
});

function npm(args: string[], cwd: string, timeoutMs: number) {
  const r = spawnSync('npm', args, { cwd, encoding: 'utf8', timeout: timeoutMs });
  assert.equal(r.status, 0, `npm ${args.join(' ')}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

test('npm pack, npm install -g --prefix, then doctor and plan --preset quick from another directory', {
  timeout: 1_800_000,
}, () => {
  const started = Date.now();
  writeFileSync(stale, 'export const stale = true;\n');
  npm(['pack', '--pack-destination', work], repo, 600_000);
  const tarball = readdirSync(work).find((f) => /^kvmio-\d+\.\d+\.\d+\.tgz$/.test(f));
  assert.ok(tarball, 'npm pack made kvmio-VERSION.tgz');
  const listing = spawnSync('tar', ['-tzf', join(work, tarball)], { encoding: 'utf8' }).stdout.split('\n');
  assert.ok(listing.includes('package/dist/src/cli/main.js'), 'the compiled CLI is shipped');
  assert.ok(!listing.some((f) => f.includes('stale-')), 'a compiled file without a source is not shipped');
  const prefix = join(work, 'prefix');
  npm(['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', join(work, tarball)], work, 1_200_000);
  const installed = Date.now();

  const elsewhere = join(work, 'elsewhere');
  mkdirSync(elsewhere);
  const kvmio = join(prefix, 'bin', 'kvmio');
  const run = (args: string[]) =>
    spawnSync(kvmio, args, { cwd: elsewhere, encoding: 'utf8', timeout: 600_000 });

  const plan = run(['plan', '--preset', 'quick']);
  assert.equal(plan.status, 0, plan.stderr);
  assert.match(plan.stdout, /Study quick \(preset:quick\)/);
  assert.match(plan.stdout, /6 VM variant\(s\) \+ host baseline/);

  const doctor = run(['doctor', '--json']);
  assert.equal(doctor.status, 0, doctor.stderr);
  const report = JSON.parse(doctor.stdout) as DoctorReport;
  assert.match(report.facts.qemu.version ?? '', /^\d+\.\d+/);
  // The QEMU the environment names (KVMIO_QEMU, as the QEMU 10 stack tests set it) wins over PATH.
  assert.equal(
    report.facts.qemu.reason,
    process.env.KVMIO_QEMU ? 'KVMIO_QEMU' : 'qemu-system-x86_64 on PATH',
  );
  assert.deepEqual(report.missing.needs, [], 'this host has every tool kvmio uses');
  assert.equal(report.missing.packageManager, 'apt');

  // Nothing was read from or written to the repository or the cwd by the installed kvmio.
  assert.deepEqual(readdirSync(elsewhere), []);
  process.stderr.write(
    `npm-package: pack+install ${((installed - started) / 1000).toFixed(0)}s, total ${((Date.now() - started) / 1000).toFixed(0)}s\n`,
  );
});
