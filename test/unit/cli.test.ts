import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../../../bin/kvmio.js', import.meta.url));

test('--help lists every verb of the product', () => {
  const out = execFileSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
  for (const verb of [
    'doctor',
    'guest',
    'plan',
    'run',
    'runs',
    'report',
    'export',
    'import',
    'compare',
    'xml',
    'argv',
  ]) {
    assert.match(out, new RegExp(`^\\s+${verb}\\b`, 'm'), `verb ${verb} missing from --help`);
  }
});

test('an unknown verb is a usage error with exit 2', () => {
  const r = spawnSync(process.execPath, [bin, 'frobnicate'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown command/);
});
