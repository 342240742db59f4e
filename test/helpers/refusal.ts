import assert from 'node:assert/strict';
import { ConfigError } from '../../src/util/errors.js';

/** The message of the ConfigError `load` throws (a study refused); the test fails when it loads. */
export function configErrorMessage(load: () => unknown): string {
  try {
    load();
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  assert.fail('the study was accepted');
}
