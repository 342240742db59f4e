import {
  type RaceComparison,
  type RaceState,
  type RaceVerdict,
  raceRules,
  replayLooks,
} from '../race/rule.js';
import { type Comparison, compareSamples, controlFamily } from '../stats/compare.js';
import { HOST_VARIANT_ID, type Variant } from '../study/types.js';
import { referenceVariant, variantFormat, variantPath } from '../study/variants.js';
import { buildModel, pairsDifferingIn, type ReportModel } from './charts.js';
import type { ReportData, ReportRun } from './data.js';
import { escapeMarkdown as esc } from './escape.js';
import type { Step } from './points.js';
import type { Series } from './series.js';
import type { WorkloadInfo } from './workloads.js';

/** One measured figure the conclusion can compare (a workload's metric at one step). */
interface Measure {
  workload: WorkloadInfo;
  metric: string;
  label: string;
  unit: string;
  scale: number;
  step: (s: Series) => Step | undefined;
}

export type Question =
  | 'backend'
  | 'iothread'
  | 'threads-cpu'
  | 'cache'
  | 'bus'
  | 'memory'
  | 'format'
  | 'path'
  | 'runs';

/** A comparison of b against reference a on one measure, with its (family-controlled) verdict. */
export interface Claim {
  question: Question;
  run: string;
  a: Series;
  b: Series;
  /** The workload the measure comes from (racing stops a variant's workload once its claims are decided). */
  workload: string;
  measure: string;
  unit: string;
  meanA: number;
  meanB: number;
  comparison: Comparison;
  /** In a raced run: after how many repetitions the stopping rule decided it, or that it stayed open. */
  race?: RaceVerdict;
}

export interface Conclusion {
  claims: Claim[];
  recommended: Map<string, Series | undefined>;
  markdown: string;
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return '?';
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

function measures(m: ReportModel): Measure[] {
  const out: Measure[] = [];
  const singleStep = (w: WorkloadInfo) => (s: Series) => {
    const steps = m.index.steps(s.run, s.variant, w.name);
    return steps.includes(null) ? null : steps.length === 1 ? steps[0] : undefined;
  };
  for (const w of m.workloads) {
    const step = singleStep(w);
    for (const dir of w.dirs) {
      const what = `${w.rwLabel}${w.dirs.length > 1 ? ` ${dir}` : ''} ${w.params}`;
      if (w.cls === 'qd1')
        out.push({
          workload: w,
          metric: `${dir}.clat_mean_ns`,
          label: `latency, ${what}`,
          unit: 'µs',
          scale: 1e-3,
          step,
        });
      if (w.cls === 'iops') {
        out.push({
          workload: w,
          metric: `${dir}.iops`,
          label: `IOPS, ${what}`,
          unit: 'IOPS',
          scale: 1,
          step,
        });
      }
      if (w.cls === 'throughput')
        out.push({
          workload: w,
          metric: `${dir}.bw_bytes`,
          label: `throughput, ${what}`,
          unit: 'MB/s',
          scale: 1e-6,
          step,
        });
    }
    if (w.cls === 'iops' || w.cls === 'qd1' || w.cls === 'throughput')
      // The study warns that aio=native may block the VM: the monitor's round trip makes that a number.
      out.push({
        workload: w,
        metric: 'probe.qmp_rtt_p99_ms',
        label: `QMP round trip p99 (VM responsiveness), ${w.rwLabel} ${w.params}`,
        unit: 'ms',
        scale: 1,
        step,
      });
    if (w.cls === 'iops')
      out.push({
        workload: w,
        metric: 'cpu.pct_per_kiops',
        label: `CPU per 1000 IOPS, ${w.rwLabel} ${w.params}`,
        unit: '%',
        scale: 1,
        step,
      });
    if (w.cls === 'rsync')
      out.push({ workload: w, metric: 'rsync.seconds', label: 'rsync time', unit: 's', scale: 1, step });
    if (w.cls === 'pgbench') {
      // The busiest client count: where backends differ most in the study's latency-vs-TPS chart.
      const top = (s: Series) => {
        const steps = m.index.steps(s.run, s.variant, w.name).filter((x) => x !== null);
        return steps.sort((x, y) => Number.parseFloat(String(y)) - Number.parseFloat(String(x)))[0];
      };
      out.push({
        workload: w,
        metric: 'pgbench.tps',
        label: 'pgbench TPS at the most clients',
        unit: 'TPS',
        scale: 1,
        step: top,
      });
      out.push({
        workload: w,
        metric: 'pgbench.lat_mean_ms',
        label: 'pgbench latency at the most clients',
        unit: 'ms',
        scale: 1,
        step: top,
      });
    }
  }
  return out;
}

function compareOn(m: ReportModel, question: Question, a: Series, b: Series, ms: Measure[]): Claim[] {
  const out: Claim[] = [];
  for (const me of ms) {
    const sa = me.step(a);
    const sb = me.step(b);
    if (sa === undefined || sb === undefined) continue;
    const va = m.index.values(a.run, a.variant, me.workload.name, sa, me.metric);
    const vb = m.index.values(b.run, b.variant, me.workload.name, sb, me.metric);
    if (va.length === 0 || vb.length === 0) continue;
    const comparison = compareSamples(va, vb, { metric: me.metric });
    out.push({
      question,
      run: b.run,
      a,
      b,
      workload: me.workload.name,
      measure: me.label,
      unit: me.unit,
      meanA: comparison.meanA * me.scale,
      meanB: comparison.meanB * me.scale,
      comparison,
    });
  }
  return out;
}

/** The reference the report compares with: the study's recommendation when the run has it. */
function reference(list: Series[]): Series | undefined {
  const withDef = list.filter((s) => s.def !== undefined && s.variant !== HOST_VARIANT_ID);
  const ref = referenceVariant(withDef.map((s) => s.def as Variant));
  return withDef.find((s) => s.def === ref);
}

function gatherClaims(m: ReportModel, run: ReportRun): Claim[] {
  const list = m.ordered.filter((s) => s.run === run.id && s.variant !== HOST_VARIANT_ID);
  const ref = reference(list);
  if (!ref) return [];
  const ms = measures(m);
  const probes = ms.filter((x) => x.metric.startsWith('probe.'));
  const perf = ms.filter((x) => x.metric !== 'cpu.pct_per_kiops' && !x.metric.startsWith('probe.'));
  const cpu = ms.filter((x) => x.metric === 'cpu.pct_per_kiops');
  const claims: Claim[] = [];
  // Backends at the reference's other settings.
  for (const s of list) {
    if (s === ref || !s.def || !ref.def) continue;
    const sameDevice =
      s.def.bus === ref.def.bus &&
      s.def.memory === ref.def.memory &&
      s.def.queues === ref.def.queues &&
      variantFormat(s.def) === variantFormat(ref.def) &&
      variantPath(s.def) === variantPath(ref.def);
    if (!sameDevice) continue;
    if (s.def.cache !== ref.def.cache) {
      // A cache mode is judged at the reference's aio mode and iothreads, or not at all.
      if (s.def.aio === ref.def.aio && s.def.iothreads === ref.def.iothreads)
        claims.push(...compareOn(m, 'cache', ref, s, perf));
      continue;
    }
    if (s.def.aio !== ref.def.aio && (s.def.iothreads === ref.def.iothreads || s.def.aio === 'threads'))
      claims.push(...compareOn(m, 'backend', ref, s, perf));
    if (s.def.aio === ref.def.aio && s.def.iothreads !== ref.def.iothreads)
      claims.push(...compareOn(m, 'iothread', ref, s, [...perf, ...probes]));
    if (s.def.aio === 'threads') claims.push(...compareOn(m, 'threads-cpu', ref, s, cpu));
  }
  for (const [a, b] of pairsDifferingIn(m, 'bus').filter(([a]) => a.run === run.id)) {
    const [blk, scsi] = a.def?.bus === 'virtio-blk' ? [a, b] : [b, a];
    claims.push(...compareOn(m, 'bus', blk, scsi, [...perf, ...cpu]));
  }
  for (const [a, b] of pairsDifferingIn(m, 'memory').filter(([a]) => a.run === run.id)) {
    const [small, huge] = a.def?.memory === '4k' ? [a, b] : [b, a];
    claims.push(...compareOn(m, 'memory', small, huge, [...perf, ...cpu]));
  }
  for (const [a, b] of pairsDifferingIn(m, 'format').filter(([a]) => a.run === run.id)) {
    const [raw, image] = variantFormat(a.def ?? {}) === 'raw' ? [a, b] : [b, a];
    claims.push(...compareOn(m, 'format', raw, image, [...perf, ...cpu]));
  }
  // A disk served by the storage daemon against the same disk served by QEMU itself (or another path).
  for (const [a, b] of pairsDifferingIn(m, 'path').filter(([a]) => a.run === run.id)) {
    const order = ['qemu', 'vhost-user-blk', 'nbd'];
    const [base, other] =
      order.indexOf(variantPath(a.def ?? {})) <= order.indexOf(variantPath(b.def ?? {})) ? [a, b] : [b, a];
    claims.push(...compareOn(m, 'path', base, other, [...perf, ...cpu]));
  }
  return claims;
}

function runClaims(m: ReportModel): Claim[] {
  const [first, ...rest] = m.data.runs;
  if (!first) return [];
  const out: Claim[] = [];
  const ms = measures(m);
  for (const run of rest) {
    for (const a of m.ordered.filter((s) => s.run === first.id)) {
      const b = m.ordered.find((s) => s.run === run.id && s.variant === a.variant);
      if (b) out.push(...compareOn(m, 'runs', a, b, ms));
    }
  }
  return out;
}

function failedVariants(m: ReportModel, runId: string): Set<string> {
  return new Set(m.data.failures.filter((f) => f.run === runId).map((f) => f.variant));
}

/**
 * The recommendation follows the evidence: the reference (native + iothread, as the study advises)
 * unless another variant without failures beats it on at least one measure and loses on none.
 */
function recommend(m: ReportModel, run: ReportRun, claims: Claim[]): Series | undefined {
  const list = m.ordered.filter((s) => s.run === run.id && s.variant !== HOST_VARIANT_ID);
  const ref = reference(list);
  const failed = failedVariants(m, run.id);
  const mine = claims.filter((c) => c.run === run.id && c.a === ref && c.question !== 'runs');
  let best = ref && !failed.has(ref.variant) ? ref : undefined;
  let bestWins = 0;
  for (const s of list) {
    if (s === ref || failed.has(s.variant)) continue;
    const cs = mine.filter((c) => c.b === s);
    const wins = cs.filter((c) => c.comparison.kind === 'better').length;
    const losses = cs.filter((c) => c.comparison.kind === 'worse').length;
    if (wins > bestWins && losses === 0) {
      best = s;
      bestWins = wins;
    }
  }
  return best;
}

/** The libvirt XML the recommended variant stands for. */
export function libvirtLines(s: Series): string[] {
  const v = s.def;
  if (!v) return [];
  const iothread = v.iothreads > 0 ? ` iothread='1'` : '';
  const queues = v.queues > 1 && v.bus === 'virtio-blk' ? ` queues='${v.queues}'` : '';
  const lines: string[] = [];
  if (v.iothreads > 0) lines.push(`<iothreads>${v.iothreads}</iothreads>`);
  const path = variantPath(v);
  if (path === 'vhost-user-blk') {
    // The storage daemon opens the image (driver, cache and aio are its own); QEMU shares memory with it.
    lines.push(
      v.memory === 'hugepages'
        ? "<memoryBacking><hugepages/><access mode='shared'/></memoryBacking>"
        : "<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>",
    );
    lines.push("<disk type='vhostuser' device='disk'><driver name='qemu' type='raw'/>");
    lines.push("<source type='unix' path='DAEMON-SOCKET'/>");
    return lines;
  }
  if (v.memory === 'hugepages') lines.push('<memoryBacking><hugepages/></memoryBacking>');
  // NBD: the daemon opens the image with the aio mode; QEMU's side is a raw NBD client.
  const type = path === 'nbd' ? 'raw' : variantFormat(v);
  const io = path === 'nbd' ? '' : ` io='${v.aio}'`;
  if (path === 'nbd')
    lines.push(
      "<disk type='network' device='disk'><source protocol='nbd' name='EXPORT'><host transport='unix' socket='DAEMON-SOCKET'/></source>",
    );
  if (v.bus === 'virtio-scsi') {
    lines.push(`<controller type='scsi' model='virtio-scsi'><driver${iothread}/></controller>`);
    lines.push(`<driver name='qemu' type='${type}' cache='${v.cache}'${io}/>`);
  } else {
    lines.push(`<driver name='qemu' type='${type}' cache='${v.cache}'${io}${iothread}${queues}/>`);
  }
  return lines;
}

const claimLine = (c: Claim) =>
  `- ${esc(c.measure)}: **${esc(c.b.label)}** ${fmt(c.meanB)} ${c.unit} vs **${esc(c.a.label)}** ${fmt(c.meanA)} ${c.unit} (n = ${c.comparison.nB}/${c.comparison.nA}): ${c.comparison.phrase}${raceNote(c)}`;

function headline(cs: Claim[], subject: string): string {
  if (cs.length === 0) return '';
  const count = (kind: Comparison['kind']) => cs.filter((c) => c.comparison.kind === kind).length;
  const parts = [
    [count('better'), 'better'],
    [count('worse'), 'worse'],
    [count('no-real-difference'), 'different by less than the practical threshold'],
    [count('no-significant-difference'), 'not significantly different'],
    [count('too-noisy'), 'too noisy to tell'],
  ]
    .filter(([n]) => (n as number) > 0)
    .map(([n, what]) => `${what} on ${n}`);
  return `${subject}, ${cs.length} measure${cs.length === 1 ? '' : 's'}: ${parts.join(', ')}.`;
}

/** Markdown of claims, one block per compared variant: its headline, then a line per measure. */
function claimsByVariant(cs: Claim[]): string[] {
  return [...new Set(cs.map((c) => c.b))].flatMap((b) => {
    const sub = cs.filter((c) => c.b === b);
    return [
      headline(sub, `**${esc(b.label)}** against **${esc(sub[0]?.a.label ?? '')}**`),
      '',
      ...sub.map(claimLine),
      '',
    ];
  });
}

const QUESTIONS: [Question, string][] = [
  ['backend', 'Which backend'],
  ['iothread', 'Does an IO thread matter'],
  ['threads-cpu', 'CPU cost of aio=threads'],
  ['cache', 'Which cache mode'],
  ['bus', 'virtio-blk vs virtio-scsi'],
  ['memory', 'Huge pages vs 4k pages'],
  ['format', 'raw vs qcow2'],
  ['path', 'Where the I/O is served'],
  ['runs', 'Runs compared'],
];

/**
 * Every comparison the report makes, before multiple-comparison control: the one selection that
 * the conclusion, and racing, judge.
 */
export function reportClaims(m: ReportModel): Claim[] {
  return [...m.data.runs.flatMap((r) => gatherClaims(m, r)), ...runClaims(m)];
}

/** A comparison's identity across racing's looks: its run (and host), question, sides and measure. */
function claimKey(c: Claim): string {
  return JSON.stringify([c.run, c.question, c.a.variant, c.b.variant, c.measure]);
}

/** The report's comparisons on the rows of the first `repetitions` rounds: what racing judges. */
export function raceComparisons(data: ReportData, repetitions: number): RaceComparison[] {
  const rows = data.rows.filter((r) => r.rep < repetitions).map((r) => ({ ...r }));
  return reportClaims(buildModel({ ...data, rows })).map((c) => ({
    key: claimKey(c),
    a: c.a.variant,
    b: c.b.variant,
    workload: c.workload,
    nA: c.comparison.nA,
    nB: c.comparison.nB,
    means: c.comparison,
  }));
}

/** A raced run's decisions, replayed from its own rows (its hosts together, no other run). */
function raceOf(m: ReportModel, run: ReportRun): RaceState | undefined {
  const rules = run.study ? raceRules(run.study) : undefined;
  if (!rules) return undefined;
  const base = run.id.replace(/@.*$/, '');
  const mine = (id: string) => id === base || id.startsWith(`${base}@`);
  const data: ReportData = {
    runs: m.data.runs.filter((r) => mine(r.id)),
    rows: m.data.rows.filter((r) => mine(r.run)),
    failures: m.data.failures.filter((f) => mine(f.run)),
  };
  const rounds = data.rows.reduce((n, r) => Math.max(n, r.rep + 1), 0);
  return replayLooks(rules, rounds, (n) => raceComparisons(data, n));
}

function raceNote(c: Claim): string {
  if (!c.race) return '';
  if (c.race.decidedAt === undefined) return ' — still open when the run ended';
  return ` — decided (${c.race.decision}) after ${c.race.decidedAt} repetitions`;
}

export function buildConclusion(m: ReportModel): Conclusion {
  const raw = reportClaims(m);
  const adjusted = controlFamily(raw.map((c) => c.comparison));
  const races = new Map(m.data.runs.map((r) => [r.id, raceOf(m, r)]));
  const claims: Claim[] = raw.map((c, i) => {
    const race = c.question === 'runs' ? undefined : races.get(c.run)?.verdicts.get(claimKey(c));
    return { ...c, comparison: adjusted[i] as Comparison, ...(race ? { race } : {}) };
  });
  const recommended = new Map<string, Series | undefined>();
  const md: string[] = [];
  const title = m.data.runs.map((r) => `${esc(r.name)} (${esc(r.id)})`).join(', ');
  md.push(`# kvmio report: ${title}`, '');
  for (const r of m.data.runs) {
    if (r.accelerator === 'tcg') {
      md.push(
        `> **${m.data.runs.length > 1 ? `Run ${esc(r.label)}` : 'This run'} ran under TCG (software emulation), not KVM**${r.acceleratorReason ? `: ${esc(r.acceleratorReason)}` : ''}. Its absolute figures say nothing about KVM performance, and differences between variants may not carry over.`,
        '',
      );
    }
  }
  md.push(
    `Comparisons use Welch's t-test on the repetitions, with Holm–Bonferroni control over all ${claims.length} comparisons of this report; differences under ${Math.round((claims[0]?.comparison.practicalThreshold ?? 0.05) * 100)}% (either way round) count as no real difference. CI is Fieller's confidence interval of the ratio of the means at the Holm-adjusted level, written as a relative difference; it reads the same whichever variant is the reference.`,
    '',
  );
  for (const run of m.data.runs) {
    if (m.data.runs.length > 1) md.push(`## Run ${esc(run.label)}: ${esc(run.name)} (${esc(run.id)})`, '');
    const mine = claims.filter((c) => c.run === run.id && c.question !== 'runs');
    const race = races.get(run.id);
    const rules = run.study ? raceRules(run.study) : undefined;
    if (race && rules) {
      const decided = mine.filter((c) => c.race?.decidedAt !== undefined).length;
      md.push(
        `Raced: ${rules.minRepetitions} to ${rules.maxRepetitions} repetitions. After every round from the ${rules.minRepetitions}th, each of the ${race.comparisons} comparisons was judged at its share of alpha (Pocock-type alpha spending over the rounds, Bonferroni over the comparisons), and a variant's workload stopped once all its comparisons were decided: ${decided} decided, ${mine.length - decided} still open when the run ended. The verdicts below are the fixed-sample analysis of what was measured.`,
        '',
      );
    }
    for (const [q, heading] of QUESTIONS.filter(([q]) => q !== 'runs')) {
      const cs = mine.filter((c) => c.question === q);
      if (cs.length === 0) continue;
      md.push(`${m.data.runs.length > 1 ? '###' : '##'} ${heading}`, '');
      md.push(...claimsByVariant(cs));
    }
    const fails = m.data.failures.filter((f) => f.run === run.id);
    md.push(`${m.data.runs.length > 1 ? '###' : '##'} Failures`, '');
    if (fails.length === 0) md.push('No point failed.', '');
    else {
      md.push(`${fails.length} point(s) failed — a crashed QEMU is a finding, not noise:`, '');
      for (const f of fails)
        md.push(
          `- ${esc(f.variant)}, ${esc(f.workload)}${f.step !== null && f.step !== undefined ? ` step ${esc(String(f.step))}` : ''}${f.rep !== undefined ? ` rep ${f.rep}` : ''}: ${esc(f.reason)}${f.retried ? ' (a later attempt succeeded)' : ''}`,
        );
      md.push('');
    }
    const rec = recommend(m, run, claims);
    recommended.set(run.id, rec);
    md.push(`${m.data.runs.length > 1 ? '###' : '##'} Recommended configuration`, '');
    if (!m.ordered.some((s) => s.run === run.id && s.def !== undefined))
      md.push(
        run.imported
          ? "Imported fio results: fio's own figures, measured outside kvmio. They come with no VM configuration, so there is none to recommend."
          : 'No variant of this run has a VM disk configuration kvmio knows: there is none to recommend.',
        '',
      );
    else if (!rec)
      md.push(
        'No variant can be recommended from this run (no guest variant completed without failures).',
        '',
      );
    else {
      const ref = reference(m.ordered.filter((s) => s.run === run.id && s.variant !== HOST_VARIANT_ID));
      const decided = claims.some(
        (c) =>
          c.run === run.id &&
          c.a === ref &&
          (c.comparison.kind === 'better' || c.comparison.kind === 'worse'),
      );
      const why =
        rec !== ref
          ? `It measured better than ${esc(ref?.label ?? 'the reference')} on some measures and worse on none`
          : decided
            ? 'No variant beat it on some measure without losing on another'
            : "This run does not separate the variants: this is the study's recommendation, which nothing here contradicts, not a finding of this run";
      md.push(
        `**${esc(rec.label)}** (variant ${esc(rec.variant)}). ${why}.`,
        '',
        '```xml',
        ...libvirtLines(rec),
        '```',
        '',
      );
    }
  }
  const cross = claims.filter((c) => c.question === 'runs');
  if (cross.length > 0) {
    md.push('## Runs compared', '');
    md.push(...claimsByVariant(cross));
  }
  return { claims, recommended, markdown: `${md.join('\n').trimEnd()}\n` };
}
