import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, printable, quoted, UserError } from '../../src/util/errors.js';

test('printable escapes newline, ESC, NUL, DEL, C1 and bidi controls', () => {
  assert.equal(printable('a\nb\rc\td'), 'a\\nb\\rc\\td');
  assert.equal(printable('\u001b[31mred\u0000'), '\\e[31mred\\x00');
  assert.equal(printable('x\u007fy\u009bz'), 'x\\x7fy\\x9bz');
  assert.equal(printable('abc\u202edef\u2028'), 'abc\\u202edef\\u2028');
  assert.equal(printable('plain ünïcode ✓'), 'plain ünïcode ✓');
});

test('printable cuts long text and says how much was left out', () => {
  const out = printable('x'.repeat(10_000_000), 50);
  assert.equal(out, `${'x'.repeat(50)}… (9999950 more characters)`);
});

test('quoted quotes, escapes and cuts a value', () => {
  assert.equal(quoted('a"b\n'), '"a\\"b\\n"');
  assert.ok(quoted('y'.repeat(1000)).length < 200);
});

test('a UserError message is one printable line of bounded length', () => {
  const e = new UserError(`bad: ${'\u001b]0;pwned\u0007'}\n${'z'.repeat(100_000)}`);
  assert.doesNotMatch(e.message, /[\u0000-\u001f\u007f]/);
  assert.ok(e.message.length < 2100, `message of ${e.message.length} characters`);
  const c = new ConfigError('s.yaml', 'matrix.a\nb', 'unknown key', 3);
  assert.equal(c.message, 's.yaml:3: matrix.a\\nb: unknown key');
});
