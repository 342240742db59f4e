import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseStudy } from '../../src/study/load.js';
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

test('a 10 MB value is cut in the message', () => {
  const e = refusal(`backend: "${'q'.repeat(10_000_000)}"\nworkloads: [ { kind: fio } ]\n`);
  assert.ok(e.message.length < 500, `message of ${e.message.length} characters`);
  assert.match(e.message, /more characters/);
});
