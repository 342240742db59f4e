import type { MetricRow } from '../study/results.js';
import type { Study, Variant, Workload } from '../study/types.js';
import { UserError } from '../util/errors.js';

/** What a report needs to know about one run, whatever store or file it came from. */
export interface ReportRun {
  id: string;
  /** Short name shown in legends when several runs are compared ("hostA", "before"). */
  label: string;
  name: string;
  status: string;
  started?: string;
  accelerator?: string;
  acceleratorReason?: string;
  hostFacts: Record<string, unknown>;
  hostName?: string;
  /** Each host's own facts, by host name, for runs over several hosts (shown side by side). */
  factsByHost?: Record<string, Record<string, unknown>>;
  study?: Study;
  variants: Variant[];
  /** Results imported from elsewhere (`kvmio import fio`): figures without a VM configuration. */
  imported: boolean;
}

export interface ReportFailure {
  run: string;
  host?: string;
  variant: string;
  workload: string;
  step?: string | number | null;
  rep?: number;
  reason: string;
  consoleTail?: string;
  /** A later attempt of the point succeeded (after --resume); the failure still counts as a finding. */
  retried?: boolean;
}

/** The report's whole input: runs, their metric rows (the export contract) and failed points. */
export interface ReportData {
  runs: ReportRun[];
  rows: MetricRow[];
  failures: ReportFailure[];
}

/** The slice of the results store the report reads (src/store/store.ts). */
export interface ReportStore {
  getRun(id: string): unknown;
  metricRows(runId: string): MetricRow[];
  variants?(runId: string): Variant[];
  failures?(runId: string): unknown[];
  hosts?(runId: string): { name: string; facts?: Record<string, unknown> }[];
}

/** Builds the report input from the store; `latest` resolves to the newest run. */
export function loadReportData(store: ReportStore, runIds: readonly string[]): ReportData {
  if (runIds.length === 0) throw new UserError('report: name at least one run (a run id or "latest")');
  const metas = runIds.map((id) => {
    const meta = store.getRun(id) as Record<string, unknown> | undefined;
    if (!meta) throw new UserError(`report: no run "${id}" in the store (see "kvmio runs")`);
    return meta;
  });
  const runs: ReportRun[] = [];
  const rows: MetricRow[] = [];
  const failures: ReportFailure[] = [];
  const seen = new Set<string>();
  for (const meta of metas) {
    const id = String(meta.id);
    if (seen.has(id)) continue; // "latest" and its id named together
    seen.add(id);
    const variants = store.variants?.(id) ?? [];
    const hosts = store.hosts?.(id) ?? [];
    const hostName = hosts[0]?.name;
    const run = runFromMeta(hostName ? { hostName, ...meta } : meta, variants);
    if (hosts.length > 1) run.factsByHost = Object.fromEntries(hosts.map((h) => [h.name, h.facts ?? {}]));
    runs.push(run);
    for (const row of store.metricRows(id)) rows.push(row);
    for (const f of store.failures?.(id) ?? [])
      failures.push(failureFromRecord(id, f as Record<string, unknown>));
  }
  return withLabels(perHostAggregate({ runs, rows, failures }));
}

/** A run as `kvmio export --format json` writes it, or as a fixture keeps it. */
export interface RunExport {
  run: Record<string, unknown>;
  hosts?: { name: string }[];
  variants?: Variant[];
  rows: MetricRow[];
  failures?: Record<string, unknown>[];
}

export function reportDataFromExports(docs: readonly RunExport[]): ReportData {
  const runs = docs.map((d) => {
    const hostName = d.hosts?.[0]?.name;
    return runFromMeta(hostName ? { hostName, ...d.run } : d.run, d.variants ?? []);
  });
  const rows = docs.flatMap((d) => d.rows);
  const failures = docs.flatMap((d) => (d.failures ?? []).map((f) => failureFromRecord(String(d.run.id), f)));
  return withLabels(perHostAggregate({ runs, rows, failures }));
}

/**
 * Shapes runs with several hosts or guests for the charts: a run measured on several hosts becomes
 * one series set per host (`RUN@HOST`, labelled by the host), so hosts compare side by side like runs;
 * where several guests ran at once, only their `guest: all` aggregate is charted (the per-guest rows
 * stay in the store and the export).
 */
function perHostAggregate(data: ReportData): ReportData {
  const withAll = new Set(
    data.rows
      .filter((r) => r.guest === 'all')
      .map((r) => JSON.stringify([r.run, r.host, r.variant, r.workload, r.step, r.rep])),
  );
  const rows = data.rows.filter(
    (r) =>
      r.guest === 'all' ||
      !withAll.has(JSON.stringify([r.run, r.host, r.variant, r.workload, r.step, r.rep])),
  );
  const runs: ReportRun[] = [];
  for (const run of data.runs) {
    const hosts = [...new Set(rows.filter((r) => r.run === run.id).map((r) => r.host))];
    if (hosts.length <= 1) {
      runs.push(run);
      continue;
    }
    for (const host of hosts) {
      const facts = run.factsByHost?.[host] ?? run.hostFacts;
      // A remote host's accelerator is its own probe's, recorded in its facts.
      const own = typeof facts.accelerator === 'string' ? facts.accelerator : undefined;
      runs.push({
        ...run,
        id: `${run.id}@${host}`,
        label: host,
        hostName: host,
        hostFacts: facts,
        ...(own
          ? {
              accelerator: own,
              acceleratorReason:
                typeof facts.acceleratorReason === 'string' ? facts.acceleratorReason : undefined,
            }
          : {}),
      });
    }
    for (const r of rows) if (r.run === run.id) r.run = `${run.id}@${r.host}`;
    for (const f of data.failures) if (f.run === run.id && f.host) f.run = `${run.id}@${f.host}`;
  }
  return { runs, rows, failures: data.failures };
}

function parseMaybeJson(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}

function runFromMeta(meta: Record<string, unknown>, variants: Variant[]): ReportRun {
  const study = parseMaybeJson(meta.study) as Study | undefined;
  const hostFacts = (parseMaybeJson(meta.hostFacts ?? meta.host_facts ?? meta.facts) ?? {}) as Record<
    string,
    unknown
  >;
  const accel = meta.accelerator ?? meta.accel ?? hostFacts.accelerator ?? hostFacts.accel;
  const accelReason = meta.acceleratorReason ?? meta.accelerator_reason ?? hostFacts.acceleratorReason;
  return {
    id: String(meta.id),
    label: String(meta.label ?? meta.id),
    name: String(meta.name ?? study?.name ?? meta.id),
    status: String(meta.status ?? 'unknown'),
    started: meta.started === undefined ? undefined : String(meta.started),
    accelerator: accel === undefined || accel === null ? undefined : String(accel),
    acceleratorReason: accelReason === undefined || accelReason === null ? undefined : String(accelReason),
    hostFacts,
    hostName: meta.hostName === undefined ? undefined : String(meta.hostName),
    study,
    variants: variants.length > 0 ? variants : (study?.variants ?? []),
    imported: String(meta.source ?? '').startsWith('import:'),
  };
}

function failureFromRecord(runId: string, f: Record<string, unknown>): ReportFailure {
  return {
    run: String(f.run ?? runId),
    host: typeof f.host === 'string' ? f.host : undefined,
    variant: String(f.variant ?? '?'),
    workload: String(f.workload ?? '?'),
    step: (f.step as string | number | null | undefined) ?? null,
    rep: typeof f.rep === 'number' ? f.rep : undefined,
    reason: String(f.reason ?? f.error ?? 'failed'),
    consoleTail:
      typeof (f.consoleTail ?? f.console_tail) === 'string'
        ? String(f.consoleTail ?? f.console_tail)
        : undefined,
    retried: f.retried === true,
  };
}

/** Legend labels for runs: the host name when runs come from different hosts, else the run id. */
function withLabels(data: ReportData): ReportData {
  const hostOf = (r: ReportRun) => String(r.hostName ?? r.hostFacts.hostname ?? r.hostFacts.host ?? '');
  const hosts = new Set(data.runs.map(hostOf));
  const byHost = hosts.size === data.runs.length && !hosts.has('');
  for (const r of data.runs) {
    if (r.label === r.id && byHost) r.label = hostOf(r);
  }
  return data;
}

/** The study's workload definition by name, for classifying charts by parameters rather than names. */
export function workloadOf(run: ReportRun | undefined, name: string): Workload | undefined {
  return run?.study?.workloads.find((w) => w.name === name);
}
