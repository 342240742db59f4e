import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadStudy } from '../../src/study/load.js';
import { planStudy } from '../../src/study/plan.js';
import { UserError } from '../../src/util/errors.js';

/**
 * The malformed-input corpus: each file in test/fixtures/studies/bad ends with `# expect:` lines, the
 * fragments its error message must hold. Written by hand (inputs, not recordings).
 */
const dir = fileURLToPath(new URL('../../../test/fixtures/studies/bad/', import.meta.url));
const bin = fileURLToPath(new URL('../../../bin/kvmio.js', import.meta.url));
const corpus = readdirSync(dir)
  .filter((f) => f.endsWith('.yaml'))
  .sort()
  .map((name) => ({
    name,
    file: join(dir, name),
    expects: readFileSync(join(dir, name), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('# expect: '))
      .map((l) => l.slice('# expect: '.length)),
  }));

test('the corpus has at least 30 malformed studies, each with an expectation', () => {
  assert.ok(corpus.length >= 30, `${corpus.length} files`);
  for (const c of corpus) assert.ok(c.expects.length > 0, `${c.name} has no # expect: line`);
});

test('library: every malformed study is a UserError naming the file and the expected key path/problem', () => {
  for (const c of corpus) {
    assert.throws(
      () => planStudy(loadStudy(c.file)),
      (e: Error) => {
        assert.ok(e instanceof UserError, `${c.name}: ${e.stack}`);
        assert.ok(
          e.message.startsWith(`${c.file}`),
          `${c.name}: message does not start with the file: ${e.message}`,
        );
        for (const x of c.expects)
          assert.ok(e.message.includes(x), `${c.name}:\n  got:  ${e.message}\n  want: ${x}`);
        return true;
      },
      c.name,
    );
  }
});

function runCli(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

test('CLI: kvmio plan FILE exits 2 with the message on stderr and no stack trace', async () => {
  const pending = [...corpus];
  const worker = async () => {
    for (let c = pending.shift(); c; c = pending.shift()) {
      const r = await runCli(['plan', c.file]);
      assert.equal(r.status, 2, `${c.name}: exit ${r.status}\n${r.stderr}`);
      assert.equal(r.stdout, '', c.name);
      for (const x of c.expects) assert.ok(r.stderr.includes(x), `${c.name}: stderr lacks ${x}\n${r.stderr}`);
      assert.doesNotMatch(r.stderr, /\n\s+at /, `${c.name}: stack trace`);
      assert.equal(r.stderr.trim().split('\n').length, 1, `${c.name}: one line expected\n${r.stderr}`);
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
});

test('CLI: bad paths, presets and flags are answered clearly with exit 2', async () => {
  const cases: [string[], RegExp][] = [
    [['plan', '/nonexistent/s.yaml'], /^kvmio: \/nonexistent\/s\.yaml: no such file \(presets: apps,/],
    [['plan', dir], /is a directory, not a study file/],
    [
      ['plan', '--preset', 'fast'],
      /no preset named "fast"; presets: apps, backends, bus, hugepages, iothreads, quick, seed/,
    ],
    [['plan'], /give a study FILE or --preset NAME/],
    [['plan', join(dir, 'empty.yaml'), '--preset', 'quick'], /not both/],
    [
      ['plan', '--preset', 'quick', '--only', 'scsi-*'],
      /--only "scsi-\*" matches no variant of preset:quick; ids: host, blk-/,
    ],
    [['plan', '--preset'], /argument missing/],
  ];
  for (const [args, want] of cases) {
    const r = await runCli(args);
    assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status}`);
    assert.match(r.stderr, want, args.join(' '));
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  }
});
