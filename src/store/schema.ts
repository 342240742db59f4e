import type Database from 'better-sqlite3';
import { UserError } from '../util/errors.js';

/**
 * The store's schema as forward migrations. PRAGMA user_version holds the number of migrations
 * applied; `migrations` keeps when each ran. Never edit a released migration: add the next one.
 */

export const MIGRATIONS: readonly string[] = [
  // 1: runs, their hosts and variants, points with their figures, series and artifacts.
  `
  CREATE TABLE migrations (version INTEGER PRIMARY KEY, applied TEXT NOT NULL);
  CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    source TEXT,
    study TEXT,
    only_globs TEXT,
    status TEXT NOT NULL CHECK (status IN ('running', 'complete', 'partial', 'interrupted')),
    started TEXT NOT NULL,
    ended TEXT,
    kvmio_version TEXT,
    accelerator TEXT,
    accelerator_reason TEXT,
    notes TEXT
  );
  CREATE TABLE hosts (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    uri TEXT,
    facts TEXT,
    PRIMARY KEY (run_id, name)
  );
  CREATE TABLE variants (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    position INTEGER NOT NULL,
    spec TEXT NOT NULL,
    PRIMARY KEY (run_id, id)
  );
  CREATE TABLE points (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    round INTEGER NOT NULL,
    host TEXT NOT NULL,
    variant TEXT NOT NULL,
    workload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'running')),
    started TEXT NOT NULL,
    ended TEXT,
    duration_s REAL,
    error TEXT,
    console_tail TEXT,
    UNIQUE (run_id, idx, attempt)
  );
  CREATE INDEX points_run ON points(run_id, idx);
  -- guest and step have no declared type: SQLite then keeps numbers as numbers and text as text.
  CREATE TABLE measurements (
    point_id INTEGER NOT NULL REFERENCES points(id) ON DELETE CASCADE,
    guest,
    step,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    unit TEXT NOT NULL
  );
  CREATE INDEX measurements_point ON measurements(point_id);
  CREATE TABLE series (
    point_id INTEGER NOT NULL REFERENCES points(id) ON DELETE CASCADE,
    t REAL NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL
  );
  CREATE INDEX series_point ON series(point_id);
  CREATE TABLE artifacts (
    point_id INTEGER NOT NULL REFERENCES points(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (point_id, name)
  );
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Applies the migrations this file has not seen yet, each in its own immediate transaction. The
 * version is read again once the write lock is held, so a second kvmio migrating the same file at the
 * same moment waits, then finds the work done.
 */
export function migrate(db: Database.Database, file: string): number {
  for (;;) {
    const applied = db
      .transaction(() => {
        const current = db.pragma('user_version', { simple: true }) as number;
        if (current > SCHEMA_VERSION) throw newerSchema(file, current);
        if (current === SCHEMA_VERSION) return false;
        db.exec(MIGRATIONS[current] as string);
        db.prepare('INSERT INTO migrations (version, applied) VALUES (?, ?)').run(
          current + 1,
          new Date().toISOString(),
        );
        db.pragma(`user_version = ${current + 1}`);
        return true;
      })
      .immediate();
    if (!applied) return SCHEMA_VERSION;
  }
}

export function newerSchema(file: string, version: number): UserError {
  return new UserError(
    `${file} has schema version ${version}, newer than this kvmio knows (${SCHEMA_VERSION}): upgrade kvmio to read it`,
  );
}

/** Tables every kvmio store has from its first migration on: a SQLite file without them is not a store. */
export const STORE_TABLES = ['migrations', 'runs', 'points', 'measurements'] as const;
