import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import type { MetricRow } from '../study/results.js';
import type { Study, Variant } from '../study/types.js';
import { errorMessage, UserError } from '../util/errors.js';
import { migrate, newerSchema, SCHEMA_VERSION, STORE_TABLES } from './schema.js';

/**
 * The results store: one SQLite file. Every figure keeps its provenance (run, host, variant, round,
 * workload, step), every failed point its reason. Each point is committed when it ends (WAL), so a crash
 * loses at most the point in progress.
 */

export type RunStatus = 'running' | 'complete' | 'partial' | 'interrupted';
export type PointStatus = 'ok' | 'failed' | 'running';
export type { Step } from '../study/results.js';

import type { Step } from '../study/results.js';

export interface RunRecord {
  id: string;
  name: string;
  /** Where the study came from: a file path, `preset:NAME`, or `import:fio`. */
  source: string | null;
  /** The validated study as it ran (undefined for imported runs). */
  study: Study | undefined;
  /** --only globs the run was planned with (resume replans with the same). */
  only: string[] | undefined;
  status: RunStatus;
  started: string;
  ended: string | null;
  kvmioVersion: string | null;
  accelerator: string | null;
  acceleratorReason: string | null;
  notes: string[];
  /** Facts of the run's first host (CPU, kernel, QEMU, fio versions…). */
  hostFacts: Record<string, unknown>;
}

export interface NewRun {
  name: string;
  source: string;
  study?: Study;
  only?: string[];
  kvmioVersion: string;
  accelerator?: string;
  acceleratorReason?: string;
  notes?: string[];
  /** Run id; default `YYYYMMDD-HHMM-name`, made unique in this store. */
  id?: string;
  status?: RunStatus;
  started?: Date;
}

export interface HostRecord {
  name: string;
  uri: string | null;
  facts: Record<string, unknown>;
}

export interface PointRecord {
  /** Row id, unique in the store. */
  id: number;
  run: string;
  index: number;
  attempt: number;
  round: number;
  host: string;
  variant: string;
  workload: string;
  status: PointStatus;
  started: string;
  ended: string | null;
  durationSeconds: number | null;
  error: string | null;
  consoleTail: string | null;
}

export interface FailureRecord {
  run: string;
  index: number;
  attempt: number;
  host: string;
  variant: string;
  workload: string;
  /** The repetition (round), as in MetricRow.rep. */
  rep: number;
  step: Step;
  reason: string;
  consoleTail: string | null;
  /** A later attempt of the same point (after --resume) succeeded. */
  retried: boolean;
}

export interface Measurement {
  guest?: string | number;
  step: Step;
  metric: string;
  value: number;
  unit: string;
}

export interface PointOutcome {
  status: 'ok' | 'failed';
  measurements?: Measurement[];
  series?: { t: number; metric: string; value: number }[];
  artifacts?: Record<string, string>;
  error?: string;
  consoleTail?: string;
}

/** One line of `kvmio runs --json`. */
export interface RunListing {
  id: string;
  name: string;
  status: RunStatus;
  points: number;
  failed: number;
  started: string;
  host: string;
}

export const DEFAULT_GUEST = 0;

interface RunRow {
  id: string;
  name: string;
  source: string | null;
  study: string | null;
  only_globs: string | null;
  status: RunStatus;
  started: string;
  ended: string | null;
  kvmio_version: string | null;
  accelerator: string | null;
  accelerator_reason: string | null;
  notes: string | null;
}

/** A points row: the record's fields, under the columns' names where they differ. */
type PointRow = Omit<PointRecord, 'run' | 'index' | 'durationSeconds' | 'consoleTail'> & {
  run_id: string;
  idx: number;
  duration_s: number | null;
  console_tail: string | null;
};

function parseJson<T>(text: string | null, fallback: T): T {
  if (text === null || text === '') return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

function pointFromRow(r: PointRow): PointRecord {
  return {
    id: r.id,
    run: r.run_id,
    index: r.idx,
    attempt: r.attempt,
    round: r.round,
    host: r.host,
    variant: r.variant,
    workload: r.workload,
    status: r.status,
    started: r.started,
    ended: r.ended,
    durationSeconds: r.duration_s,
    error: r.error,
    consoleTail: r.console_tail,
  };
}

/** `20261125-1043-quick`: sortable, readable, names the study. */
export function runIdFor(name: string, when: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  const stamp = `${when.getUTCFullYear()}${p(when.getUTCMonth() + 1)}${p(when.getUTCDate())}-${p(when.getUTCHours())}${p(when.getUTCMinutes())}`;
  const slug = name.replace(/[^A-Za-z0-9._-]+/g, '-').slice(0, 40) || 'run';
  return `${stamp}-${slug}`;
}

/** How long a writer waits for another one (20 imports at once, a run committing a point). */
const BUSY_TIMEOUT_MS = 60_000;

/** The tables of a SQLite file, or a UserError when the file is not SQLite at all. */
function tableNames(db: Database.Database): Set<string> {
  const rows = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[];
  return new Set(rows.map((r) => r.name));
}

/** Refuses a file that is not a kvmio store, or one written by a newer kvmio, or a damaged one. */
function checkStore(db: Database.Database, path: string): void {
  const tables = tableNames(db);
  const missing = STORE_TABLES.filter((t) => !tables.has(t));
  if (missing.length > 0) {
    throw new UserError(
      `${path} is not a kvmio results store (a SQLite file without the tables ${missing.join(', ')})`,
    );
  }
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > SCHEMA_VERSION) throw newerSchema(path, version);
  const check = String(db.pragma('quick_check(1)', { simple: true }));
  if (check !== 'ok') throw damaged(path, check);
  // A store at this kvmio's version has every column this kvmio's migrations make.
  if (version === SCHEMA_VERSION) {
    for (const [table, want] of currentColumns()) {
      const have = new Set(columnsOf(db, table));
      const lost = want.filter((c) => !have.has(c));
      if (lost.length > 0) throw damaged(path, `table ${table} lacks the columns ${lost.join(', ')}`);
    }
  }
}

function columnsOf(db: Database.Database, table: string): string[] {
  return (db.prepare('SELECT name FROM pragma_table_info(?)').all(table) as Array<{ name: string }>).map(
    (r) => r.name,
  );
}

let columnsNow: Map<string, string[]> | undefined;

/** Every table and column a store of this version has, from the migrations run on an empty database. */
function currentColumns(): Map<string, string[]> {
  if (!columnsNow) {
    const mem = new Database(':memory:');
    try {
      migrate(mem, ':memory:');
      columnsNow = new Map([...tableNames(mem)].map((t) => [t, columnsOf(mem, t)]));
    } finally {
      mem.close();
    }
  }
  return columnsNow;
}

/**
 * A read-only connection that works where the user may only read. A WAL store in a directory the user
 * cannot write has no -shm file to share, so SQLite cannot open it in place: kvmio then reads a copy
 * into memory, marked as a rollback-journal database (header bytes 18–19), and the file stays as it was.
 */
function readable(db: Database.Database, file: string, path: string): Database.Database {
  try {
    checkStore(db, path);
    return db;
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    if (code !== 'SQLITE_CANTOPEN' && !code.startsWith('SQLITE_READONLY')) throw err;
  }
  db.close();
  const image = readFileSync(file);
  if (image.length > 19) image.fill(1, 18, 20);
  const copy = new Database(image, { readonly: true });
  try {
    checkStore(copy, path);
  } catch (err) {
    copy.close();
    throw err;
  }
  return copy;
}

/** A writer's connection: WAL, schema up to date; an empty file becomes a store, another program's is refused. */
function writable(db: Database.Database, path: string): Database.Database {
  const tables = tableNames(db);
  if (tables.size > 0) checkStore(db, path);
  if (db.pragma('journal_mode', { simple: true }) !== 'wal') db.pragma('journal_mode = WAL');
  migrate(db, path);
  return db;
}

function damaged(path: string, detail: string): UserError {
  const oneLine = detail
    .replace(/\*\*\*[^*]*\*\*\*/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 160);
  return new UserError(`${path} is a damaged results store (SQLite: ${oneLine})`);
}

/** SQLite's own failures (not a database, damaged) as one clear line naming the file. */
function storeError(err: unknown, path: string): UserError {
  if (err instanceof UserError) return err;
  const code = (err as { code?: string }).code;
  const message = (err as Error).message;
  if (code === 'SQLITE_NOTADB')
    return new UserError(`${path} is not a kvmio results store (not a SQLite database)`);
  if (code === 'SQLITE_CORRUPT') return damaged(path, message);
  return new UserError(`${path} is not a usable kvmio results store: ${message}`);
}

const SQLITE_STATEMENT_METHODS = ['all', 'get', 'run', 'iterate'] as const;

/**
 * SQLite finds some damage only when a page is read, long after the store opened: every statement of
 * the store turns such a failure into one line naming the file (storeError), wherever it happens.
 * SQLITE_ERROR is also what a wrong statement of kvmio's own gives: it is the file's fault only when
 * the store, checked again, is damaged or no longer a store this kvmio reads; otherwise it stays an
 * internal error.
 */
function guardSqlite(db: Database.Database, path: string): void {
  let checking = false;
  const storeFault = (err: unknown): unknown => {
    checking = true;
    try {
      checkStore(db, path);
      return err;
    } catch (fault) {
      return fault instanceof UserError ? fault : damaged(path, errorMessage(fault));
    } finally {
      checking = false;
    }
  };
  const translate = (err: unknown): unknown => {
    const code = (err as { code?: unknown }).code;
    if (checking || typeof code !== 'string') return err;
    if (/^SQLITE_(CORRUPT|NOTADB)/.test(code)) return storeError(err, path);
    return code === 'SQLITE_ERROR' ? storeFault(err) : err;
  };
  const prepare = db.prepare.bind(db);
  db.prepare = ((sql: string) => {
    let statement: Database.Statement;
    try {
      statement = prepare(sql);
    } catch (err) {
      throw translate(err);
    }
    const target = statement as unknown as Record<string, (...args: unknown[]) => unknown>;
    for (const method of SQLITE_STATEMENT_METHODS) {
      const original = target[method]!.bind(statement);
      target[method] = (...args: unknown[]) => {
        try {
          return original(...args);
        } catch (err) {
          throw translate(err);
        }
      };
    }
    return statement;
  }) as typeof db.prepare;
}

export class Store {
  private constructor(
    readonly db: Database.Database,
    readonly path: string,
  ) {
    guardSqlite(db, path);
  }

  /**
   * Opens the store at `path`. Writers create it if needed and bring its schema up to date; readers
   * (`readonly`) open it read-only, change nothing (no tables, no journal switch) and refuse anything
   * that is not a kvmio store this kvmio can read. Both refuse another program's SQLite file.
   */
  static open(path: string, opts: { readonly?: boolean; mustExist?: boolean } = {}): Store {
    const file = resolve(path);
    const readonly = opts.readonly ?? false;
    if ((opts.mustExist || readonly) && !existsSync(file)) {
      throw new UserError(`no results store at ${path} (run "kvmio run" first, or pass --db PATH)`);
    }
    if (existsSync(file) && !statSync(file).isFile()) {
      throw new UserError(`${path} is not a kvmio results store (not a regular file)`);
    }
    let db: Database.Database;
    try {
      if (!readonly) mkdirSync(dirname(file), { recursive: true });
      db = new Database(file, { readonly, fileMustExist: readonly });
    } catch (err) {
      throw new UserError(`cannot open the results store ${path}: ${(err as Error).message}`);
    }
    try {
      // Before anything that takes a lock: concurrent writers wait their turn instead of failing.
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      db = readonly ? readable(db, file, path) : writable(db, path);
      db.pragma('foreign_keys = ON');
    } catch (err) {
      if (db.open) db.close();
      throw storeError(err, path);
    }
    return new Store(db, file);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  // ---- writing ----------------------------------------------------------------------------------

  /** Picks a free id and inserts under one write lock: two kvmio starting the same study never collide. */
  createRun(r: NewRun): string {
    return this.db.transaction(() => this.insertRun(r)).immediate();
  }

  private insertRun(r: NewRun): string {
    const started = r.started ?? new Date();
    const base = r.id ?? runIdFor(r.name, started);
    let id = base;
    for (let n = 2; this.db.prepare('SELECT 1 FROM runs WHERE id = ?').get(id); n++) id = `${base}-${n}`;
    this.db
      .prepare(
        `INSERT INTO runs (id, name, source, study, only_globs, status, started, kvmio_version, accelerator,
           accelerator_reason, notes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        id,
        r.name,
        r.source,
        r.study ? JSON.stringify(r.study) : null,
        r.only && r.only.length > 0 ? JSON.stringify(r.only) : null,
        r.status ?? 'running',
        started.toISOString(),
        r.kvmioVersion,
        r.accelerator ?? null,
        r.acceleratorReason ?? null,
        JSON.stringify(r.notes ?? []),
      );
    return id;
  }

  setRunStatus(id: string, status: RunStatus, ended: boolean = status !== 'running'): void {
    this.db
      .prepare('UPDATE runs SET status = ?, ended = ? WHERE id = ?')
      .run(status, ended ? new Date().toISOString() : null, id);
  }

  setAccelerator(id: string, accel: string, reason: string): void {
    this.db
      .prepare('UPDATE runs SET accelerator = ?, accelerator_reason = ? WHERE id = ?')
      .run(accel, reason, id);
  }

  addRunNotes(id: string, notes: string[]): void {
    const run = this.getRun(id);
    if (!run) return;
    const merged = [...run.notes, ...notes.filter((n) => !run.notes.includes(n))];
    this.db.prepare('UPDATE runs SET notes = ? WHERE id = ?').run(JSON.stringify(merged), id);
  }

  setHost(runId: string, name: string, uri: string | null, facts: Record<string, unknown>): void {
    this.db
      .prepare(
        `INSERT INTO hosts (run_id, name, uri, facts) VALUES (?, ?, ?, ?)
         ON CONFLICT (run_id, name) DO UPDATE SET uri = excluded.uri, facts = excluded.facts`,
      )
      .run(runId, name, uri, JSON.stringify(facts));
  }

  setVariants(runId: string, variants: ReadonlyArray<{ id: string }>): void {
    const ins = this.db.prepare(
      `INSERT INTO variants (run_id, id, position, spec) VALUES (?, ?, ?, ?)
       ON CONFLICT (run_id, id) DO UPDATE SET spec = excluded.spec`,
    );
    this.db
      .transaction(() => {
        variants.forEach((v, i) => {
          ins.run(runId, v.id, i, JSON.stringify(v));
        });
      })
      .immediate();
  }

  /** Records that a point started (status running); returns its row id for finishPoint. */
  startPoint(
    runId: string,
    p: { index: number; round: number; host: string; variant: string; workload: string },
    started: Date = new Date(),
  ): number {
    return this.db.transaction(() => this.insertPoint(runId, p, started)).immediate();
  }

  private insertPoint(
    runId: string,
    p: { index: number; round: number; host: string; variant: string; workload: string },
    started: Date,
  ): number {
    const prev = this.db
      .prepare('SELECT MAX(attempt) AS a FROM points WHERE run_id = ? AND idx = ?')
      .get(runId, p.index) as { a: number | null };
    const info = this.db
      .prepare(
        `INSERT INTO points (run_id, idx, attempt, round, host, variant, workload, status, started)
         VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?)`,
      )
      .run(runId, p.index, (prev.a ?? 0) + 1, p.round, p.host, p.variant, p.workload, started.toISOString());
    return Number(info.lastInsertRowid);
  }

  /** Stores a point's outcome and figures in one transaction: the point is either all there or not. */
  finishPoint(pointId: number, outcome: PointOutcome, ended: Date = new Date()): void {
    const row = this.db.prepare('SELECT started FROM points WHERE id = ?').get(pointId) as
      | { started: string }
      | undefined;
    if (!row) throw new Error(`finishPoint: no point ${pointId}`);
    const duration = (ended.getTime() - Date.parse(row.started)) / 1000;
    const insM = this.db.prepare(
      'INSERT INTO measurements (point_id, guest, step, metric, value, unit) VALUES (?, ?, ?, ?, ?, ?)',
    );
    const insS = this.db.prepare('INSERT INTO series (point_id, t, metric, value) VALUES (?, ?, ?, ?)');
    const insA = this.db.prepare(
      'INSERT INTO artifacts (point_id, name, text) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET text = excluded.text',
    );
    this.db
      .transaction(() => {
        this.db
          .prepare(
            'UPDATE points SET status = ?, ended = ?, duration_s = ?, error = ?, console_tail = ? WHERE id = ?',
          )
          .run(
            outcome.status,
            ended.toISOString(),
            duration,
            outcome.error ?? null,
            outcome.consoleTail ?? null,
            pointId,
          );
        if (outcome.status === 'ok') {
          for (const m of outcome.measurements ?? []) {
            if (!Number.isFinite(m.value)) continue; // NaN/Infinity are not figures (SQLite would store NULL)
            insM.run(pointId, m.guest ?? DEFAULT_GUEST, m.step, m.metric, m.value, m.unit);
          }
          for (const s of outcome.series ?? [])
            if (Number.isFinite(s.value)) insS.run(pointId, s.t, s.metric, s.value);
        }
        for (const [name, text] of Object.entries(outcome.artifacts ?? {})) insA.run(pointId, name, text);
      })
      .immediate();
  }

  /**
   * Removes points left `running` (interrupted, or the process died): an interruption is not a finding,
   * and resume runs them again. Their figures were never stored (a point commits when it ends).
   */
  discardRunningPoints(runId: string): number {
    return this.db.prepare("DELETE FROM points WHERE run_id = ? AND status = 'running'").run(runId).changes;
  }

  /**
   * A point left `running` (the process died or was interrupted): failed with `reason`. Called on
   * interrupt and when a run is resumed, so no point stays `running` after its process is gone.
   */
  failRunningPoints(runId: string, reason: string): number {
    const now = new Date().toISOString();
    return this.db
      .prepare(
        `UPDATE points SET status = 'failed', ended = ?, error = ?,
           duration_s = (julianday(?) - julianday(started)) * 86400
         WHERE run_id = ? AND status = 'running'`,
      )
      .run(now, reason, now, runId).changes;
  }

  // ---- reading (the report's API) ------------------------------------------------------------------

  /** `latest` (the newest run) or an exact id; undefined when there is no such run. */
  resolveRunId(id: string): string | undefined {
    const row =
      id === 'latest'
        ? (this.db.prepare('SELECT id FROM runs ORDER BY started DESC, rowid DESC LIMIT 1').get() as
            | { id: string }
            | undefined)
        : (this.db.prepare('SELECT id FROM runs WHERE id = ?').get(id) as { id: string } | undefined);
    return row?.id;
  }

  /** Like resolveRunId, but a missing run is a UserError listing what there is. */
  requireRun(id: string): RunRecord {
    const run = this.getRun(id);
    if (run) return run;
    const ids = this.listRuns()
      .slice(0, 5)
      .map((r) => r.id);
    throw new UserError(
      ids.length === 0
        ? `no runs in ${this.path} (run "kvmio run" first, or pass --db)`
        : `no run "${id}" in ${this.path}; recent runs: ${ids.join(', ')} (or "latest")`,
    );
  }

  getRun(id: string): RunRecord | undefined {
    const resolved = this.resolveRunId(id);
    if (!resolved) return undefined;
    const r = this.db.prepare('SELECT * FROM runs WHERE id = ?').get(resolved) as RunRow | undefined;
    // A damaged index can name a run whose row is gone: that run is not there.
    if (!r) return undefined;
    const firstHost = this.hosts(resolved)[0];
    return {
      id: r.id,
      name: r.name,
      source: r.source,
      study: parseJson<Study | undefined>(r.study, undefined),
      only: parseJson<string[] | undefined>(r.only_globs, undefined),
      status: r.status,
      started: r.started,
      ended: r.ended,
      kvmioVersion: r.kvmio_version,
      accelerator: r.accelerator,
      acceleratorReason: r.accelerator_reason,
      notes: parseJson<string[]>(r.notes, []),
      hostFacts: firstHost?.facts ?? {},
    };
  }

  listRuns(): RunListing[] {
    const rows = this.db
      .prepare(
        `SELECT r.id, r.name, r.status, r.started,
           (SELECT COUNT(DISTINCT idx) FROM points p WHERE p.run_id = r.id AND p.status = 'ok') AS ok,
           (SELECT COUNT(DISTINCT idx) FROM points p WHERE p.run_id = r.id) AS total,
           (SELECT COUNT(DISTINCT idx) FROM points p WHERE p.run_id = r.id AND p.status = 'failed'
              AND NOT EXISTS (SELECT 1 FROM points q WHERE q.run_id = p.run_id AND q.idx = p.idx AND q.status = 'ok'))
             AS failed,
           (SELECT GROUP_CONCAT(name, ',') FROM hosts h WHERE h.run_id = r.id) AS host
         FROM runs r ORDER BY r.started DESC, r.rowid DESC`,
      )
      .all() as Array<{
      id: string;
      name: string;
      status: RunStatus;
      started: string;
      total: number;
      failed: number;
      host: string | null;
    }>;
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      status: r.status,
      points: r.total,
      failed: r.failed,
      started: r.started,
      host: r.host ?? '',
    }));
  }

  hosts(runId: string): HostRecord[] {
    const id = this.resolveRunId(runId) ?? runId;
    return (
      this.db.prepare('SELECT name, uri, facts FROM hosts WHERE run_id = ? ORDER BY rowid').all(id) as Array<{
        name: string;
        uri: string | null;
        facts: string | null;
      }>
    ).map((h) => ({ name: h.name, uri: h.uri, facts: parseJson<Record<string, unknown>>(h.facts, {}) }));
  }

  /** The run's variants in the study's order (for imports: what each imported file or job was). */
  variants(runId: string): Variant[] {
    const id = this.resolveRunId(runId) ?? runId;
    return (
      this.db.prepare('SELECT spec FROM variants WHERE run_id = ? ORDER BY position').all(id) as Array<{
        spec: string;
      }>
    ).map((v) => {
      try {
        return JSON.parse(v.spec) as Variant;
      } catch {
        throw damaged(this.path, `a variant of run ${id} is not valid JSON`);
      }
    });
  }

  /** The latest attempt of every point, in plan order. */
  points(runId: string): PointRecord[] {
    const id = this.resolveRunId(runId) ?? runId;
    return (
      this.db
        .prepare(
          `SELECT * FROM points p WHERE run_id = ?
             AND attempt = (SELECT MAX(attempt) FROM points q WHERE q.run_id = p.run_id AND q.idx = p.idx)
           ORDER BY idx`,
        )
        .all(id) as PointRow[]
    ).map(pointFromRow);
  }

  /** Every failed attempt, including those a resume later retried successfully (a crash is a finding). */
  failures(runId: string): FailureRecord[] {
    const id = this.resolveRunId(runId) ?? runId;
    const rows = this.db
      .prepare(
        `SELECT p.*, EXISTS (SELECT 1 FROM points q WHERE q.run_id = p.run_id AND q.idx = p.idx AND q.status = 'ok')
           AS retried
         FROM points p WHERE run_id = ? AND status = 'failed' ORDER BY idx, attempt`,
      )
      .all(id) as Array<PointRow & { retried: number }>;
    return rows.map((r) => ({
      run: r.run_id,
      index: r.idx,
      attempt: r.attempt,
      host: r.host,
      variant: r.variant,
      workload: r.workload,
      rep: r.round,
      step: null,
      reason: r.error ?? 'failed',
      consoleTail: r.console_tail,
      retried: r.retried === 1,
    }));
  }

  /** Every figure of the run's successful points: the export contract (one row per figure). */
  metricRows(runId: string): MetricRow[] {
    const id = this.resolveRunId(runId) ?? runId;
    return this.db
      .prepare(
        `SELECT p.run_id AS run, p.host, p.variant, m.guest, p.workload, m.step, p.round AS rep, m.metric, m.value,
           m.unit
         FROM measurements m JOIN points p ON p.id = m.point_id
         WHERE p.run_id = ? AND p.status = 'ok'
         ORDER BY p.idx, m.rowid`,
      )
      .all(id) as MetricRow[];
  }

  artifacts(pointId: number): Record<string, string> {
    const rows = this.db
      .prepare('SELECT name, text FROM artifacts WHERE point_id = ? ORDER BY name')
      .all(pointId) as Array<{
      name: string;
      text: string;
    }>;
    return Object.fromEntries(rows.map((r) => [r.name, r.text]));
  }

  series(pointId: number): { t: number; metric: string; value: number }[] {
    return this.db
      .prepare('SELECT t, metric, value FROM series WHERE point_id = ? ORDER BY metric, t')
      .all(pointId) as { t: number; metric: string; value: number }[];
  }

  /** Indexes of points that have an ok attempt (resume skips them). */
  okIndexes(runId: string): Set<number> {
    return new Set(
      (
        this.db
          .prepare("SELECT DISTINCT idx FROM points WHERE run_id = ? AND status = 'ok'")
          .all(runId) as Array<{
          idx: number;
        }>
      ).map((r) => r.idx),
    );
  }
}
