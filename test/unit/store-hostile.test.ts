import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { importFio } from '../../src/store/import-fio.js';
import { Store } from '../../src/store/store.js';

/**
 * Result stores from elsewhere and stores shared by several kvmio at once: concurrent writers wait
 * their turn, read verbs change nothing, and files that are not (readable) kvmio stores are refused
 * with one line, exit 2.
 */

const bin = fileURLToPath(new URL('../../../bin/kvmio.js', import.meta.url));
// Recorded with fio 3.33: see test/fixtures/fio/README.md.
const fixtures = fileURLToPath(new URL('../../../test/fixtures/fio/', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'kvmio-store-hostile-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const kvmio = (args: string[], opts: { uid?: number } = {}) => {
  const argv =
    opts.uid === undefined
      ? [process.execPath, bin, ...args]
      : [
          'setpriv',
          `--reuid=${opts.uid}`,
          `--regid=${opts.uid}`,
          '--clear-groups',
          process.execPath,
          bin,
          ...args,
        ];
  return spawnSync(argv[0] as string, argv.slice(1), { encoding: 'utf8' });
};

/** Asserts exit 2 with exactly one line on stderr, matching `re`, and no stack trace. */
function refused(r: ReturnType<typeof kvmio>, re: RegExp): void {
  assert.equal(r.status, 2, r.stderr);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0] as string, re);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
}

const READ_VERBS = (db: string, out: string): string[][] => [
  ['runs', '--db', db],
  ['runs', '--json', '--db', db],
  ['report', 'latest', '--no-png', '--out', out, '--db', db],
  ['export', 'latest', '--db', db],
  ['compare', 'latest', 'latest', '--db', db],
];

function importedStore(name: string): string {
  const db = join(dir, name);
  const store = Store.open(db);
  importFio(store, [join(fixtures, 'two-jobs.json')]);
  store.close();
  return db;
}

test('20 kvmio import into one new store at once all succeed and every run is kept', async () => {
  const db = join(dir, 'concurrent.sqlite');
  const results = await Promise.all(
    Array.from(
      { length: 20 },
      (_, i) =>
        new Promise<{ code: number | null; stderr: string }>((resolve) => {
          const child = spawn(process.execPath, [
            bin,
            'import',
            'fio',
            join(fixtures, i % 2 ? 'two-jobs.json' : 'randread-qd1.json'),
            '--label',
            `import-${i}`,
            '--db',
            db,
          ]);
          let stderr = '';
          child.stderr.on('data', (d) => {
            stderr += d;
          });
          child.on('close', (code) => resolve({ code, stderr }));
        }),
    ),
  );
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  const store = Store.open(db, { readonly: true });
  const runs = store.listRuns();
  assert.equal(runs.length, 20);
  assert.deepEqual(
    new Set(runs.map((r) => r.name)),
    new Set(Array.from({ length: 20 }, (_, i) => `import-${i}`)),
  );
  assert.equal(
    runs.reduce((n, r) => n + r.points, 0),
    30,
  );
  store.close();
});

test("read verbs refuse another program's SQLite file and leave it byte for byte as it was", () => {
  const db = join(dir, 'other.sqlite');
  const other = new Database(db);
  other.exec('CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES (1)');
  other.close();
  const before = readFileSync(db);
  for (const args of READ_VERBS(db, join(dir, 'other-report'))) {
    refused(kvmio(args), /other\.sqlite is not a kvmio results store/);
  }
  assert.deepEqual(readFileSync(db), before);
  assert.equal(existsSync(`${db}-wal`), false, 'no switch to WAL');
  assert.equal(existsSync(join(dir, 'other-report')), false);
  // Writers refuse it too: kvmio adds its tables to no one else's file.
  refused(
    kvmio(['import', 'fio', join(fixtures, 'randread-qd1.json'), '--db', db]),
    /not a kvmio results store/,
  );
  assert.deepEqual(readFileSync(db), before);
});

test('a file that is not SQLite, a damaged store and a directory: exit 2, one line', () => {
  const garbage = join(dir, 'garbage.sqlite');
  writeFileSync(garbage, Buffer.alloc(8192, 0x5a));
  for (const args of READ_VERBS(garbage, join(dir, 'garbage-report')))
    refused(kvmio(args), /garbage\.sqlite is not a kvmio results store \(not a SQLite database\)/);
  const damaged = importedStore('damaged.sqlite');
  const bytes = readFileSync(damaged);
  bytes.fill(0xff, 2 * 4096, 3 * 4096); // one whole b-tree page
  writeFileSync(damaged, bytes);
  for (const args of READ_VERBS(damaged, join(dir, 'damaged-report')))
    refused(kvmio(args), /damaged\.sqlite is a damaged results store \(SQLite: /);
  assert.deepEqual(readFileSync(damaged), bytes);
  const folder = join(dir, 'a-directory.sqlite');
  mkdirSync(folder);
  refused(kvmio(['runs', '--db', folder]), /not a regular file/);
});

test('a store from a newer kvmio is refused by every verb, not rendered', () => {
  const db = importedStore('newer.sqlite');
  const raw = new Database(db);
  raw.pragma('user_version = 99');
  raw.close();
  for (const args of [
    ...READ_VERBS(db, join(dir, 'newer-report')),
    ['import', 'fio', join(fixtures, 'randread-qd1.json'), '--db', db],
  ])
    refused(
      kvmio(args),
      /newer\.sqlite has schema version 99, newer than this kvmio knows \(\d+\): upgrade kvmio/,
    );
  assert.equal(existsSync(join(dir, 'newer-report')), false);
});

test('read verbs work on a store the user can only read, in a directory they cannot write', {
  skip: process.getuid?.() !== 0 ? 'needs root to run the verbs as nobody' : false,
}, () => {
  const ro = join(dir, 'readonly');
  mkdirSync(ro);
  const db = join(ro, 'shared.sqlite');
  copyFileSync(importedStore('to-share.sqlite'), db);
  const out = mkdtempSync(join(tmpdir(), 'kvmio-nobody-report-'));
  chmodSync(out, 0o777);
  chmodSync(db, 0o444);
  chmodSync(ro, 0o555);
  chmodSync(dir, 0o755);
  try {
    const before = readFileSync(db);
    const nobody = 65534;
    const runs = kvmio(['runs', '--json', '--db', db], { uid: nobody });
    assert.equal(runs.status, 0, runs.stderr);
    assert.equal((JSON.parse(runs.stdout) as unknown[]).length, 1);
    for (const args of READ_VERBS(db, join(out, 'report'))) {
      const r = kvmio(args, { uid: nobody });
      assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    }
    assert.ok(existsSync(join(out, 'report', 'index.html')));
    assert.deepEqual(readFileSync(db), before);
  } finally {
    chmodSync(ro, 0o755);
    chmodSync(dir, 0o700);
    rmSync(out, { recursive: true, force: true });
  }
});

test('import fio stores a file of many jobs once, not once per job', () => {
  // 400 copies of the recorded job, as one fio run of 400 jobs prints them.
  const doc = JSON.parse(readFileSync(join(fixtures, 'randread-qd1.json'), 'utf8')) as {
    jobs: Record<string, unknown>[];
  };
  const job = doc.jobs[0] as Record<string, unknown>;
  doc.jobs = Array.from({ length: 400 }, (_, i) => ({ ...job, jobname: `job${i}` }));
  const file = join(dir, 'many-jobs.json');
  writeFileSync(file, JSON.stringify(doc, null, 2));
  const db = join(dir, 'many.sqlite');
  const store = Store.open(db);
  const r = importFio(store, [file]);
  assert.equal(r.points, 400);
  const raw = store.db
    .prepare("SELECT COUNT(*) AS n, SUM(LENGTH(text)) AS bytes FROM artifacts WHERE name = 'fio.json'")
    .get() as { n: number; bytes: number };
  assert.equal(raw.n, 1);
  assert.equal(raw.bytes, readFileSync(file, 'utf8').length);
  store.db.pragma('wal_checkpoint(TRUNCATE)');
  store.close();
  assert.ok(statSync(db).size < 4 * statSync(file).size, `store of ${statSync(db).size} bytes`);
});

test('kvmio runs counts a point in progress as running, not failed', () => {
  const db = join(dir, 'in-progress.sqlite');
  const store = Store.open(db);
  const id = store.createRun({ name: 'busy', source: 'test', kvmioVersion: '0.0.0' });
  const done = store.startPoint(id, { index: 0, round: 0, host: 'local', variant: 'v', workload: 'w' });
  store.finishPoint(done, { status: 'ok', measurements: [] });
  store.startPoint(id, { index: 1, round: 0, host: 'local', variant: 'v', workload: 'w2' });
  const during = kvmio(['runs', '--json', '--db', db]);
  assert.equal(during.status, 0, during.stderr);
  const [listing] = JSON.parse(during.stdout) as { points: number; failed: number }[];
  assert.deepEqual({ points: listing?.points, failed: listing?.failed }, { points: 2, failed: 0 });
  store.close();
});
