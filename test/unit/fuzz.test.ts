/**
 * Hostile input, generated: thousands of mutated study files, fio documents and results stores
 * through plan/argv/xml, import, report and export, in process for speed and through the real CLI
 * for a few. Every outcome must be a result or a UserError (exit 2) of one line; nothing is written
 * outside the paths given; time and memory stay bounded. Seeded (KVMIO_FUZZ_SEED to vary it); the
 * in-process parts run a fixed number of cases (over 3,000 in all; KVMIO_FUZZ_SCALE multiplies them),
 * each bounded in CPU time, so that a loaded machine makes the test slower, never smaller; the CLI
 * sample is time-boxed (KVMIO_FUZZ_SECONDS, 38 by default). The seeds of the mutations are the presets,
 * the study fixtures and the recorded fio and run fixtures.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { domainXml } from '../../src/libvirt/xml.js';
import { qemuArgv } from '../../src/qemu/argv.js';
import {
  loadReportData,
  type RunExport,
  reportDataFromExports,
  writeReport,
} from '../../src/report/index.js';
import { exportJson, rowsToCsv } from '../../src/store/export.js';
import { importFio } from '../../src/store/import-fio.js';
import { Store } from '../../src/store/store.js';
import { parseStudy } from '../../src/study/load.js';
import { planStudy } from '../../src/study/plan.js';
import { HOST_VARIANT_ID } from '../../src/study/types.js';
import { UserError } from '../../src/util/errors.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const bin = join(ROOT, 'bin/kvmio.js');
const SEED = Number(process.env.KVMIO_FUZZ_SEED ?? 14);
const BUDGET_MS = Number(process.env.KVMIO_FUZZ_SECONDS ?? 38) * 1000;
/** Longest a single case may take: a quadratic path or a hang shows here. */
const CASE_LIMIT_MS = 10_000;
const dir = mkdtempSync(join(tmpdir(), 'kvmio-fuzz-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const SCALE = Number(process.env.KVMIO_FUZZ_SCALE ?? 1);
/** Share of the time budget for the CLI sample. */
const share = (part: number) => Math.round(BUDGET_MS * part);
/** Exactly `numRuns` cases (scaled), never cut short by the clock: the count is what was asked. */
const params = (numRuns: number): fc.Parameters<unknown> => ({
  seed: SEED,
  numRuns: Math.max(1, Math.round(numRuns * SCALE)),
  endOnFailure: true,
});
/** Cases per part (over 3,000 in all) and the CPU seconds each part may take at most. */
const COUNTS = { studies: 2000, fio: 1000, reports: 60, stores: 400 };
const CPU_LIMIT_S = { studies: 90, fio: 90, reports: 90, stores: 60 };
let total = 0;
const scaled = (n: number) => Math.max(1, Math.round(n * SCALE));

/** Asserts the part ran all its cases within its CPU time (user + system, unaffected by load). */
function ranAll(part: keyof typeof COUNTS, ran: number, cpuBefore: NodeJS.CpuUsage): void {
  const used = process.cpuUsage(cpuBefore);
  const seconds = (used.user + used.system) / 1e6;
  assert.equal(ran, scaled(COUNTS[part]), `${part}: every case ran`);
  assert.ok(seconds <= CPU_LIMIT_S[part] * SCALE, `${part}: ${seconds.toFixed(1)} s of CPU`);
  total += ran;
}

/** Runs one case: a result, or a UserError of one bounded line; anything else fails the property. */
function clean<T>(what: string, f: () => T): T | undefined {
  const t0 = performance.now();
  try {
    return f();
  } catch (err) {
    if (!(err instanceof UserError))
      throw new Error(`${what}: not a user error: ${(err as Error)?.stack ?? err}`);
    assert.doesNotMatch(err.message, /[\n\r]/, `${what}: one line`);
    assert.ok(err.message.length <= 2100, `${what}: message of ${err.message.length} characters`);
    return undefined;
  } finally {
    assert.ok(performance.now() - t0 < CASE_LIMIT_MS, `${what}: took ${performance.now() - t0} ms`);
  }
}

async function cleanAsync<T>(what: string, f: () => Promise<T>): Promise<T | undefined> {
  const t0 = performance.now();
  try {
    return await f();
  } catch (err) {
    if (!(err instanceof UserError))
      throw new Error(`${what}: not a user error: ${(err as Error)?.stack ?? err}`);
    assert.doesNotMatch(err.message, /[\n\r]/, `${what}: one line`);
    return undefined;
  } finally {
    assert.ok(performance.now() - t0 < CASE_LIMIT_MS, `${what}: took ${performance.now() - t0} ms`);
  }
}

/** Every file under `root`, relative to it. */
function tree(root: string): string[] {
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => !e.isDirectory())
    .map((e) => relative(root, join(e.parentPath, e.name)))
    .sort();
}

/** Text someone else wrote: path escapes, markup, formulas, control characters, anything. */
const hostileText = fc.oneof(
  fc.constantFrom(
    '../../../../tmp/kvmio-fuzz-escape',
    '/etc/passwd',
    'q"><img src=x onerror=alert(7)>',
    '<script>alert(1)</script>',
    '=HYPERLINK("http://x")',
    '+cmd|calc',
    '-1',
    '@SUM(1)',
    '`rm -rf /`',
    '**bold** _em_ [link](http://x)',
    'a:b,c=d',
    '\u001b[2J\u001b[31mred',
    'nul\u0000byte',
    'line\nbreak',
    '\u202eevil',
    '',
    ' ',
    '.',
    '..',
    'x'.repeat(5000),
    '1e309',
    'NaN',
  ),
  fc.string({ unit: 'binary', maxLength: 60 }),
);

// ---- studies: plan, argv, xml ------------------------------------------------------------------

const studySeeds = [
  ...readdirSync(join(ROOT, 'presets')).map((f) => join(ROOT, 'presets', f)),
  ...readdirSync(join(ROOT, 'test/fixtures/studies/good')).map((f) =>
    join(ROOT, 'test/fixtures/studies/good', f),
  ),
].map((f) => readFileSync(f, 'utf8'));

/** A line-level mutation of a YAML text. */
const yamlMutation = fc.oneof(
  fc.record({ kind: fc.constant('value' as const), at: fc.nat(), text: hostileText }),
  fc.record({ kind: fc.constant('drop' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('dup' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), key: hostileText, text: hostileText }),
  fc.record({
    kind: fc.constant('bytes' as const),
    at: fc.nat(),
    text: fc.string({ unit: 'binary', maxLength: 8 }),
  }),
  fc.record({
    kind: fc.constant('number' as const),
    at: fc.nat(),
    n: fc.oneof(fc.integer(), fc.double(), fc.constantFrom(0, -1, 1e12, 2 ** 53, 4096)),
  }),
);
type YamlMutation = typeof yamlMutation extends fc.Arbitrary<infer T> ? T : never;

function mutateYaml(text: string, mutations: YamlMutation[]): string {
  const lines = text.split('\n');
  for (const m of mutations) {
    const i = m.at % Math.max(lines.length, 1);
    const line = lines[i] ?? '';
    const value = (v: string) => line.replace(/:\s.*$/, `: ${v}`);
    if (m.kind === 'value') lines[i] = value(JSON.stringify(m.text));
    else if (m.kind === 'number') lines[i] = value(String(m.n));
    else if (m.kind === 'drop') lines.splice(i, 1);
    else if (m.kind === 'dup') lines.splice(i, 0, line);
    else if (m.kind === 'insert')
      lines.splice(
        i,
        0,
        `${line.match(/^\s*/)?.[0] ?? ''}${JSON.stringify(m.key)}: ${JSON.stringify(m.text)}`,
      );
    else {
      const at = m.at % Math.max(line.length, 1);
      lines[i] = line.slice(0, at) + m.text + line.slice(at);
    }
  }
  return lines.join('\n');
}

const image = { kernel: 'GUEST/vmlinuz', initrd: 'GUEST/initrd.img', cmdline: 'console=ttyS0' };

test('mutated studies: plan, argv and xml give a result or one clean line', (t) => {
  let cases = 0;
  const cpu = process.cpuUsage();
  fc.assert(
    fc.property(
      fc.constantFrom(...studySeeds),
      fc.array(yamlMutation, { minLength: 1, maxLength: 6 }),
      (seed, muts) => {
        cases++;
        const text = mutateYaml(seed, muts);
        const study = clean('parse', () => parseStudy(text, join(dir, 'fuzz-study.yaml')));
        if (!study) return;
        clean('plan', () => planStudy(study));
        const variant = study.variants.find((v) => v.id !== HOST_VARIANT_ID);
        if (!variant) return;
        clean('argv', () =>
          qemuArgv({ name: 'kvmio-fuzz', study, variant, accel: 'kvm', image, runtimeDir: join(dir, 'rt') }),
        );
        clean('xml', () => domainXml({ study, variant, guest: image, accel: 'kvm', name: 'kvmio-fuzz' }));
      },
    ),
    params(COUNTS.studies),
  );
  t.diagnostic(`${cases} studies`);
  ranAll('studies', cases, cpu);
});

// ---- fio documents: import fio -----------------------------------------------------------------

const fioSeeds = ['randread-qd1.json', 'two-jobs.json'].map(
  (f) => JSON.parse(readFileSync(join(ROOT, 'test/fixtures/fio', f), 'utf8')) as unknown,
);

/** Paths of every value in a JSON document (objects and arrays included). */
function paths(
  v: unknown,
  at: (string | number)[] = [],
  out: (string | number)[][] = [],
): (string | number)[][] {
  out.push(at);
  if (Array.isArray(v)) for (const [i, x] of v.entries()) paths(x, [...at, i], out);
  else if (typeof v === 'object' && v !== null)
    for (const [k, x] of Object.entries(v)) paths(x, [...at, k], out);
  return out;
}

function setAt(doc: unknown, path: (string | number)[], value: unknown, remove: boolean): unknown {
  if (path.length === 0) return remove ? {} : value;
  let node = doc as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) node = node[k] as Record<string | number, unknown>;
  const last = path[path.length - 1] as string | number;
  if (remove && !Array.isArray(node)) delete node[last];
  else node[last] = value;
  return doc;
}

const fioMutation = fc.record({
  at: fc.nat(),
  remove: fc.boolean(),
  value: fc.oneof(
    fc.jsonValue({ maxDepth: 2 }),
    hostileText,
    fc.constantFrom(null, '123', -1, 1e308, [], {}),
  ),
});
const layout = fc.constantFrom('pretty', 'minified', 'tabs', 'bom', 'preamble', 'truncated');

function serialise(doc: unknown, how: string): string {
  const pretty = JSON.stringify(doc, null, 2);
  if (how === 'minified') return JSON.stringify(doc);
  if (how === 'tabs') return JSON.stringify(doc, null, '\t');
  if (how === 'bom') return `\ufeff${pretty}`;
  if (how === 'preamble')
    return `note: both iodepth >= 1 and synchronous I/O engine are selected\n${pretty}\ntrailing text`;
  if (how === 'truncated') return pretty.slice(0, Math.floor(pretty.length / 2));
  return pretty;
}

test('mutated fio documents: import fio stores them whole or refuses them in one line', (t) => {
  const store = Store.open(join(dir, 'fio.sqlite'));
  store.db.pragma('synchronous = OFF'); // a scratch store: speed over durability
  const file = join(dir, 'fuzz-fio.json');
  let cases = 0;
  const cpu = process.cpuUsage();
  try {
    fc.assert(
      fc.property(
        fc.constantFrom(...fioSeeds),
        fc.array(fioMutation, { minLength: 0, maxLength: 4 }),
        layout,
        (seed, muts, how) => {
          cases++;
          let doc = structuredClone(seed);
          for (const m of muts) {
            const all = paths(doc);
            doc = setAt(doc, all[m.at % all.length] as (string | number)[], m.value, m.remove);
          }
          writeFileSync(file, serialise(doc, how));
          const r = clean('import', () => importFio(store, [file]));
          if (!r) return;
          for (const row of store.metricRows(r.runId)) assert.ok(Number.isFinite(row.value), row.metric);
          assert.ok(['complete', 'partial'].includes(store.getRun(r.runId)?.status ?? ''));
        },
      ),
      params(COUNTS.fio),
    );
  } finally {
    store.close();
  }
  t.diagnostic(`${cases} fio documents`);
  ranAll('fio', cases, cpu);
});

// ---- stores someone else made: report and export -----------------------------------------------

const recorded = JSON.parse(
  readFileSync(join(ROOT, 'test/fixtures/runs/report-fixture.json'), 'utf8'),
) as RunExport;
const METRICS = [
  'read.iops',
  'read.clat_mean_ns',
  'write.bw_bytes',
  'rsync.seconds',
  'pgbench.tps',
  'cpu.pct_per_kiops',
];

const hostileRun = fc.record({
  runName: hostileText,
  runId: hostileText,
  variants: fc.array(hostileText, { minLength: 1, maxLength: 3 }),
  workloads: fc.array(hostileText, { minLength: 1, maxLength: 3 }),
  values: fc.array(fc.oneof(fc.double(), fc.double({ min: 0, max: 1e6, noNaN: true })), {
    minLength: 1,
    maxLength: 24,
  }),
  steps: fc.constantFrom(null, 'max', 1, -1, 'x/../y'),
  keepVariants: fc.boolean(),
});

test('reports and exports of hostile stores: files only inside --out, names as text', async (t) => {
  let cases = 0;
  const cpu = process.cpuUsage();
  await fc.assert(
    fc.asyncProperty(hostileRun, async (h) => {
      cases++;
      const run = { ...recorded.run, id: h.runId || 'r', name: h.runName };
      const rows = h.values.map((value, i) => ({
        run: run.id,
        host: 'local',
        variant: h.variants[i % h.variants.length] as string,
        guest: 0,
        workload: h.workloads[i % h.workloads.length] as string,
        step: h.steps,
        rep: i % 3,
        metric: METRICS[i % METRICS.length] as string,
        value,
        unit: 'x',
      }));
      // The recorded run's variants, renamed: VM configurations with hostile ids (or none at all).
      const variants = h.keepVariants
        ? (recorded.variants ?? [])
            .slice(0, h.variants.length)
            .map((v, i) => ({ ...v, id: h.variants[i] as string }))
        : [];
      const data = reportDataFromExports([
        {
          run,
          variants,
          rows,
          failures: [{ variant: h.variants[0], workload: h.workloads[0], reason: h.runName }],
        },
      ]);
      const base = join(dir, `report-${cases}`);
      const out = join(base, 'out');
      const result = await cleanAsync('report', () => writeReport(data, out, { png: false }));
      if (result) {
        assert.deepEqual(
          tree(base).filter((f) => !f.startsWith(`out/`)),
          [],
          'nothing outside --out',
        );
        for (const c of result.charts) assert.match(c.id, /^[A-Za-z0-9_-]+$/);
        const html = readFileSync(result.index, 'utf8');
        assert.doesNotMatch(html, /<img|<script/i);
        assert.doesNotMatch(
          readFileSync(result.summary, 'utf8').replace(/```xml[\s\S]*?```/g, ''),
          /(?<!\\)<|undefined/,
        );
      }
      rmSync(base, { recursive: true, force: true });
      const csv = rowsToCsv(rows);
      for (const line of csv.split('\n').slice(1, -1))
        assert.doesNotMatch(line, /^"?[=+\-@]/, 'the first cell (run) is neutralised');
    }),
    params(COUNTS.reports),
  );
  t.diagnostic(`${cases} reports`);
  ranAll('reports', cases, cpu);
});

// ---- damaged stores: every read verb's path -------------------------------------------------------

test('damaged stores: read verbs give a result or one clean line', (t) => {
  const good = join(dir, 'good.sqlite');
  const s = Store.open(good);
  importFio(s, [join(ROOT, 'test/fixtures/fio/two-jobs.json')]);
  importFio(s, [join(ROOT, 'test/fixtures/fio/randread-qd1.json')]);
  s.db.pragma('wal_checkpoint(TRUNCATE)');
  s.close();
  const bytes = readFileSync(good);
  const file = join(dir, 'damaged.sqlite');
  let cases = 0;
  const cpu = process.cpuUsage();
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          at: fc.nat(bytes.length - 1),
          byte: fc.integer({ min: 0, max: 255 }),
          len: fc.integer({ min: 1, max: 64 }),
        }),
        {
          minLength: 1,
          maxLength: 6,
        },
      ),
      (damage) => {
        cases++;
        const copy = Buffer.from(bytes);
        for (const d of damage) copy.fill(d.byte, d.at, Math.min(d.at + d.len, copy.length));
        rmSync(`${file}-wal`, { force: true });
        rmSync(`${file}-shm`, { force: true });
        writeFileSync(file, copy);
        const store = clean('open', () => Store.open(file, { readonly: true }));
        if (!store) return;
        try {
          clean('runs', () => store.listRuns());
          clean('report data', () => loadReportData(store, ['latest']));
          clean('export', () => rowsToCsv(exportJson(store, 'latest').rows));
        } finally {
          store.close();
        }
        assert.deepEqual(readFileSync(file), copy, 'a read verb changes nothing');
      },
    ),
    params(COUNTS.stores),
  );
  t.diagnostic(`${cases} damaged stores`);
  ranAll('stores', cases, cpu);
});

// ---- the real CLI: exit 0 or 2, one line, no stack, nothing written where it was not asked ----------

test('the CLI on mutated inputs: exit 0 or 2, one line on error, no stack trace, no stray files', () => {
  const cwd = join(dir, 'cli-cwd');
  mkdirSync(cwd);
  const inputs = join(dir, 'cli-inputs');
  mkdirSync(inputs);
  const rng = fc.sample(
    fc.tuple(
      fc.constantFrom(...studySeeds),
      fc.array(yamlMutation, { minLength: 1, maxLength: 4 }),
      fc.constantFrom(...fioSeeds),
      fioMutation,
      layout,
    ),
    { seed: SEED, numRuns: 4 },
  );
  const t0 = performance.now();
  rng.forEach(([study, muts, fio, fm, how], i) => {
    if (performance.now() - t0 > share(0.2)) return;
    const studyFile = join(inputs, `study-${i}.yaml`);
    writeFileSync(studyFile, mutateYaml(study, muts));
    const doc = structuredClone(fio);
    const all = paths(doc);
    const fioFile = join(inputs, `fio-${i}.json`);
    writeFileSync(
      fioFile,
      serialise(setAt(doc, all[fm.at % all.length] as (string | number)[], fm.value, fm.remove), how),
    );
    const db = join(inputs, `store-${i}.sqlite`);
    for (const args of [
      ['plan', studyFile],
      ['import', 'fio', fioFile, '--db', db],
      ['report', 'latest', '--no-png', '--out', join(inputs, `report-${i}`), '--db', db],
    ]) {
      const r = spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8', timeout: 60_000 });
      const what = `kvmio ${args.join(' ')}`;
      assert.ok(r.status === 0 || r.status === 2, `${what}: exit ${r.status}: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /^\s+at /m, `${what}: no stack trace`);
      if (r.status === 2) assert.equal(r.stderr.trimEnd().split('\n').length, 1, `${what}: ${r.stderr}`);
    }
  });
  assert.deepEqual(readdirSync(cwd), [], 'nothing written in the working directory');
  const expected = /^(study-\d+\.yaml|fio-\d+\.json|store-\d+\.sqlite(-wal|-shm)?|report-\d+\/.*)$/;
  for (const f of tree(inputs)) assert.match(f, expected);
});

test('thousands of cases in all, and memory bounded over the whole fuzz run', (t) => {
  t.diagnostic(`${total} in-process cases`);
  assert.ok(total >= 3000 * SCALE, `${total} cases`);
  const rss = process.memoryUsage().rss;
  assert.ok(rss < 2 * 1024 ** 3, `rss ${Math.round(rss / 1024 ** 2)} MiB`);
});
