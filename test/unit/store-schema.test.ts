import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { SCHEMA_VERSION } from '../../src/store/schema.js';
import { Store } from '../../src/store/store.js';
import { UserError } from '../../src/util/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmio-store-schema-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('an empty file is migrated to the current schema, in WAL mode', () => {
  const path = join(dir, 'fresh.sqlite');
  const store = Store.open(path);
  assert.equal(store.schemaVersion(), SCHEMA_VERSION);
  const tables = (
    store.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as {
      name: string;
    }[]
  ).map((t) => t.name);
  for (const t of [
    'artifacts',
    'hosts',
    'measurements',
    'migrations',
    'points',
    'runs',
    'series',
    'variants',
  ]) {
    assert.ok(tables.includes(t), `table ${t} exists`);
  }
  assert.equal(store.db.pragma('journal_mode', { simple: true }), 'wal');
  const applied = store.db.prepare('SELECT version FROM migrations ORDER BY version').all() as {
    version: number;
  }[];
  assert.deepEqual(
    applied.map((m) => m.version),
    Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1),
  );
  store.close();
});

test('reopening keeps the data and does not migrate again', () => {
  const path = join(dir, 'reopen.sqlite');
  const first = Store.open(path);
  const id = first.createRun({ name: 'keep', source: 'test', kvmioVersion: '0.0.0' });
  const pid = first.startPoint(id, { index: 0, round: 0, host: 'local', variant: 'v', workload: 'w' });
  first.finishPoint(pid, {
    status: 'ok',
    measurements: [{ step: null, metric: 'read.iops', value: 1234.5, unit: 'IOPS' }],
  });
  first.close();
  const again = Store.open(path);
  assert.equal(again.schemaVersion(), SCHEMA_VERSION);
  assert.equal(
    (again.db.prepare('SELECT COUNT(*) AS n FROM migrations').get() as { n: number }).n,
    SCHEMA_VERSION,
  );
  assert.equal(again.getRun(id)?.name, 'keep');
  assert.deepEqual(
    again.metricRows(id).map((r) => [r.metric, r.value]),
    [['read.iops', 1234.5]],
  );
  again.close();
});

test('a store from a newer kvmio is refused with a clear message', () => {
  const path = join(dir, 'newer.sqlite');
  const db = new Database(path);
  db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  db.close();
  assert.throws(
    () => Store.open(path),
    (e: unknown) => e instanceof UserError && /newer than this kvmio/.test(e.message),
  );
});

test('reading verbs do not create a store that is not there', () => {
  const path = join(dir, 'missing.sqlite');
  assert.throws(
    () => Store.open(path, { mustExist: true }),
    (e: unknown) => e instanceof UserError && /no results store/.test(e.message),
  );
});

test('a file that is not SQLite is a user error, not a crash', async () => {
  const { writeFileSync } = await import('node:fs');
  const path = join(dir, 'text.sqlite');
  writeFileSync(path, 'this is not a database, just text that is long enough to have a header'.repeat(20));
  assert.throws(() => Store.open(path), UserError);
});
