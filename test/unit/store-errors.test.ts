/**
 * Which SQLite failures are the user's: a store damaged, replaced or changed under kvmio is a one-line
 * user error naming the file; a wrong statement of kvmio's own on a sound store stays an internal
 * error (a bug to report, not a message blaming the user's file).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { Store } from '../../src/store/store.js';
import { UserError } from '../../src/util/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmio-store-errors-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function storeWithRun(name: string): { store: Store; runId: string } {
  const store = Store.open(join(dir, name));
  const runId = store.createRun({ name: 'r', source: 'test', kvmioVersion: 'test' });
  return { store, runId };
}

test('a wrong statement on a sound store is an internal error, not the file', () => {
  const { store } = storeWithRun('sound.sqlite');
  try {
    assert.throws(
      () => store.db.prepare('SELECT no_such_column FROM runs').all(),
      (err: unknown) => !(err instanceof UserError) && /no such column: no_such_column/.test(String(err)),
    );
    assert.throws(
      () => store.db.prepare('SELEC 1').all(),
      (err: unknown) => !(err instanceof UserError) && /syntax error/.test(String(err)),
    );
  } finally {
    store.close();
  }
});

test('a table dropped under an open store: one line naming the file and what it lacks', () => {
  const { store, runId } = storeWithRun('dropped.sqlite');
  try {
    const other = new Database(store.path);
    other.exec('DROP TABLE points');
    other.close();
    assert.throws(
      () => store.points(runId),
      (err: unknown) =>
        err instanceof UserError &&
        err.message.includes(store.path) &&
        /without the tables points/.test(err.message) &&
        !err.message.includes('\n'),
    );
  } finally {
    store.close();
  }
});

test('a column dropped under an open store is damage, named', () => {
  const { store, runId } = storeWithRun('column.sqlite');
  try {
    const other = new Database(store.path);
    other.exec('ALTER TABLE runs DROP COLUMN notes');
    other.close();
    assert.throws(
      () => store.addRunNotes(runId, ['a note']),
      (err: unknown) =>
        err instanceof UserError && /damaged results store .*runs lacks the columns notes/.test(err.message),
    );
  } finally {
    store.close();
  }
});
