import { openBackend } from '../backends.js';
import type { GuestVm } from '../guest/vm.js';
import { closeHostAccesses } from '../host/access.js';
import { pairKey, raceRules, replayLooks } from '../race/rule.js';
import { raceComparisons } from '../report/conclusion.js';
import { loadReportData } from '../report/data.js';
import { lockDisk, prepareDiskFile, prepareDiskOn } from '../safety/index.js';
import { checkLvmTarget, createScratchLv, removeScratchLv, type ScratchLv } from '../safety/lvm.js';
import type { Store, PointOutcome as StoredOutcome } from '../store/store.js';
import { studyDiskSpecs } from '../study/disks.js';
import { type Plan, type PlannedPoint, planStudy } from '../study/plan.js';
import { HOST_VARIANT_ID, type Study, type Variant, type Workload } from '../study/types.js';
import { errorMessage, HostUnreachableError, PointFailure, UserError } from '../util/errors.js';
import { onCleanup, onInterrupt } from '../util/proc.js';
import { VERSION } from '../version.js';
import type { WorkloadResult } from '../workloads/types.js';
import { adaptiveNeeds } from './adaptive.js';
import { type AccelChoice, chooseAccelerator, loadWorkloads } from './backends.js';
import type { RunEventSink } from './events.js';
import { GuestGroup, withDeadline } from './guests.js';
import { type BackendFactory, guestDisk, type HostRun, hostRuns, localDisks } from './hosts.js';
import { stepMeasurements } from './results.js';
import { resumeCommand } from './resume.js';

/**
 * The run loop: plan, record the run, guard and lock the disk, then run the points in plan order.
 * A fault costs the point (recorded failed, with the reason and the console tail), never the run;
 * Ctrl-C leaves a consistent store and says how to resume.
 */

export interface RunStudyOptions {
  store: Store;
  only?: string[];
  /** Run id to finish: ok points are kept, missing and failed ones are run. */
  resume?: string;
  destroyData?: string[];
  onEvent?: RunEventSink;
  /** The accelerator to use instead of probing (tests, `doctor` already knows). */
  accelerator?: AccelChoice;
  /** Racing: rounds beyond the minimum are not started when they would end after this many seconds. */
  budgetSeconds?: number;
  /** Flags of the run command that shaped the study (--race, --budget), for the resume command. */
  resumeFlags?: string[];
  /** Makes each host's VM backend (default: the study's `backend`); tests pass a fake one. */
  backends?: BackendFactory;
}

export interface RunStudyResult {
  runId: string;
  status: 'complete' | 'partial' | 'interrupted';
  plan: Plan;
  ok: number;
  failed: number;
  accelerator: AccelChoice;
  /** Hosts given up on (libvirt did not answer, or guests did not boot), with why; the others ran on. */
  failedHosts: Array<{ name: string; reason: string }>;
}

interface RunContext {
  store: Store;
  runId: string;
  study: Study;
  plan: Plan;
  accel: AccelChoice;
  emit: RunEventSink;
  interrupted: () => boolean;
  destroyData?: string[];
}

function variantFor(study: Study, id: string): Variant {
  const v = study.variants.find((x) => x.id === id);
  if (!v) throw new Error(`plan names variant ${id}, which the study does not have`);
  return v;
}

function workloadFor(study: Study, name: string): Workload {
  const w = study.workloads.find((x) => x.name === name);
  if (!w) throw new Error(`plan names workload ${name}, which the study does not have`);
  return w;
}

/** How a point ended; `booting` marks a failure before the workload started (boot or live switch). */
interface PointOutcome {
  ok: boolean;
  error?: unknown;
  booting?: boolean;
}

/** Runs one point on its host's guests and stores its outcome. */
async function runPoint(
  ctx: RunContext,
  host: HostRun,
  group: GuestGroup,
  p: PlannedPoint,
  adaptive: boolean,
  left: number,
): Promise<PointOutcome> {
  const { runId } = ctx;
  const study = host.study;
  const workload = workloadFor(study, p.workload);
  const logLines: string[] = [];
  const log = (line: string) => {
    logLines.push(`${new Date().toISOString()} ${line}`);
    ctx.emit({ event: 'log', run: runId, line });
  };
  const started = Date.now();
  const pointId = beginPoint(ctx, p, left, adaptive);
  let vm: GuestVm | undefined;
  let vms: GuestVm[] = [];
  let booting = false;
  try {
    const workloads = await loadWorkloads();
    // Every wait inside the workload is bounded by its own duration; this guard catches the rest.
    const timeoutMs = workloads.workloadTimeoutMs(workload);
    let result: WorkloadResult;
    if (p.variantId === HOST_VARIANT_ID) {
      // The baseline runs fio on the host that owns the disk, reached as its CPU figures are.
      const access = host.backend.access;
      if (!access)
        throw new PointFailure(
          `the host baseline runs fio on ${host.name}, and kvmio has no way onto it (${host.uri} is not qemu+ssh://)`,
        );
      const target = { kind: 'host' as const, diskPath: study.disk.path, host: access };
      result = await withDeadline(
        `${p.workload} on ${p.variantId}`,
        workloads.runWorkload(target, workload, { timeoutMs, log }),
        timeoutMs + 30_000,
      );
    } else {
      booting = true;
      vms = await group.forPoint(variantFor(study, p.variantId), p);
      vm = vms[0];
      booting = false;
      if (group.booted)
        for (const g of vms)
          if (g.bootWarning) {
            logLines.push(`${new Date().toISOString()} WARNING: ${g.bootWarning}`);
            ctx.emit({ event: 'warning', run: runId, line: g.bootWarning });
          }
      result = await runOnGuests(workloads, group, vms, workload, { timeoutMs, log }, p);
      // Recent QEMU may fall back to the thread pool on the first guest request: check again.
      for (const g of vms) await host.backend.verify(g);
    }
    if (ctx.interrupted()) return { ok: false };
    const { measurements, artifacts, series } = stepMeasurements(result);
    vms.forEach((g, i) => {
      const prefix = vms.length > 1 ? `guest=${i}/` : '';
      const own = { ...host.backend.artifacts(g), console: g.consoleTail(200) };
      for (const [k, v] of Object.entries(own)) artifacts[`${prefix}${k}`] = v;
    });
    if (logLines.length > 0) artifacts.log = logLines.join('\n');
    endPoint(ctx, p, pointId, started, { status: 'ok', measurements, artifacts, series });
    return { ok: true };
  } catch (err) {
    if (ctx.interrupted()) return { ok: false }; // the interrupt handler removes the point
    const vmNow = vm ?? group.vms[0];
    const detail = err instanceof PointFailure ? err.detail : {};
    const consoleTail = detail.consoleTail ?? vmNow?.consoleTail(40) ?? '';
    const artifacts: Record<string, string> = vmNow ? host.backend.artifacts(vmNow) : {};
    if (detail.stderrTail) artifacts['qemu.stderr'] = detail.stderrTail;
    if (detail.kernelLog) artifacts['kernel.log'] = detail.kernelLog;
    if (vmNow) artifacts.console = vmNow.consoleTail(200);
    if (logLines.length > 0) artifacts.log = logLines.join('\n');
    const reason = errorMessage(err);
    // A fault leaves the VM in an unknown state: the next point boots a fresh one.
    if (p.variantId !== HOST_VARIANT_ID) await group.stop();
    endPoint(ctx, p, pointId, started, { status: 'failed', error: reason, consoleTail, artifacts });
    return { ok: false, error: err, booting };
  }
}

/**
 * A workload on the host's guests: one guest as always; several run fio workloads at the same moment
 * through fio client/server (a step per guest and "all"), and other workloads on each guest in turn
 * (a step per guest, no aggregate: they were not measured at the same moment).
 */
async function runOnGuests(
  workloads: Awaited<ReturnType<typeof loadWorkloads>>,
  group: GuestGroup,
  vms: GuestVm[],
  workload: Workload,
  opts: { timeoutMs: number; log: (line: string) => void },
  p: PlannedPoint,
): Promise<WorkloadResult> {
  const guard = (what: Promise<WorkloadResult>, n = 1) =>
    withDeadline(`${p.workload} on ${p.variantId}`, what, n * opts.timeoutMs + 30_000);
  const only = vms[0];
  if (vms.length === 1 && only)
    return guard(workloads.runWorkload({ kind: 'guest', vm: only }, workload, opts));
  if (workload.kind === 'fio') {
    const guests = await group.fioServers(workloads.FIO_SERVER_PORT);
    return guard(workloads.runWorkload({ kind: 'guests', guests }, workload, opts));
  }
  const steps: WorkloadResult['steps'] = [];
  for (const [i, vm] of vms.entries()) {
    const r = await guard(workloads.runWorkload({ kind: 'guest', vm }, workload, opts));
    steps.push(...r.steps.map((s) => ({ ...s, guest: i })));
  }
  return { steps };
}

/**
 * One host's share of the run: its points in plan order on its own guests, concurrently with the
 * other hosts. In a study with `hosts`, a host is given up when it does not answer or its guests fail
 * to boot twice in a row: its remaining points are recorded failed with the reason, the host record
 * gets `failed`, and the other hosts go on. Without `hosts`, a fault costs the point and the next
 * point boots afresh.
 */
class HostWorker {
  readonly group: GuestGroup;
  failure: string | undefined;
  private bootFailuresInARow = 0;

  constructor(
    private readonly ctx: RunContext,
    readonly host: HostRun,
    private readonly baseFacts: Record<string, unknown>,
  ) {
    this.group = new GuestGroup(host, ctx.accel.accel, (line) =>
      ctx.emit({ event: 'log', run: ctx.runId, line: this.multiHost ? `${host.name}: ${line}` : line }),
    );
  }

  private get multiHost(): boolean {
    return this.ctx.study.hosts.length > 0;
  }

  /**
   * Checks that the host answers, prepares a remote host's disks there (this machine's are prepared
   * before the run starts) and records its facts.
   */
  async open(): Promise<void> {
    if (this.multiHost) {
      try {
        await this.host.backend.reach();
        const access = this.host.backend.access;
        if (access && !access.local) {
          const { study } = this.ctx;
          const disks = Array.from({ length: study.guest.count }, (_, g) =>
            guestDisk(this.host.study.disk, g),
          );
          for (const disk of disks.flatMap((d) => studyDiskSpecs(study, d)))
            await prepareDiskOn(access, disk, { destroyData: this.ctx.destroyData });
        }
      } catch (err) {
        this.fail(errorMessage(err));
        return;
      }
    }
    const facts = await this.host.backend.facts();
    const { guest } = this.ctx.study;
    this.ctx.store.setHost(this.ctx.runId, this.host.name, this.host.uri, {
      ...this.baseFacts,
      ...facts,
      // The builtin guest's firmware (every point verifies it live); a user's domain keeps its own.
      ...(guest.domain ? {} : { firmware: guest.firmware ?? 'bios' }),
      ...(await this.ownAccelerator()),
    });
  }

  /** A remote host's accelerator, probed on that host (its guests run with it), said loudly when TCG. */
  private async ownAccelerator(): Promise<Record<string, unknown>> {
    const probe = this.host.backend.accelerator;
    if (this.host.local || !probe || !needsVm(this.ctx.plan)) return {};
    const log = (line: string) =>
      this.ctx.emit({ event: 'log', run: this.ctx.runId, line: `${this.host.name}: ${line}` });
    try {
      const a = await probe(log);
      log(`accelerator ${a.accel}: ${a.reason}${a.warning ? `. ${a.warning}` : ''}`);
      return { accelerator: a.accel, acceleratorReason: a.reason };
    } catch (err) {
      return { accelerator: 'unknown', acceleratorReason: `not probed on the host: ${errorMessage(err)}` };
    }
  }

  private fail(reason: string): void {
    this.failure = reason;
    const { store, runId } = this.ctx;
    const facts = store.hosts(runId).find((h) => h.name === this.host.name)?.facts ?? {};
    store.setHost(runId, this.host.name, this.host.uri, { ...this.baseFacts, ...facts, failed: reason });
    this.ctx.emit({ event: 'log', run: runId, line: `host ${this.host.name} given up: ${reason}` });
  }

  /** Why the host does not answer (a failed point may be the host gone: sshd or libvirtd down), if so. */
  private async unreachable(): Promise<string | undefined> {
    // Remote hosts only: a busy local libvirtd answering slowly is not a host gone.
    if (this.host.local) return undefined;
    try {
      await this.host.backend.reach();
      return undefined;
    } catch (err) {
      return errorMessage(err);
    }
  }

  /** `left` counts the points left on all hosts together (the progress view shows one count). */
  async run(points: PlannedPoint[], adaptive: boolean, left: { n: number }): Promise<void> {
    for (const p of points) {
      if (this.ctx.interrupted()) break;
      if (this.failure) {
        skipPoint(this.ctx, p, `host ${this.host.name} failed earlier: ${this.failure}`, adaptive, left.n--);
        continue;
      }
      const out = await runPoint(this.ctx, this.host, this.group, p, adaptive, left.n--);
      if (this.ctx.interrupted() || !this.multiHost) continue;
      if (out.ok) {
        this.bootFailuresInARow = 0;
        continue;
      }
      const gone =
        out.error instanceof HostUnreachableError ? errorMessage(out.error) : await this.unreachable();
      if (gone !== undefined) this.fail(gone);
      else if (out.booting && ++this.bootFailuresInARow >= 2)
        this.fail(`guests did not boot twice in a row; last: ${errorMessage(out.error)}`);
    }
  }
}

async function runOnHosts(workers: HostWorker[], points: PlannedPoint[], adaptive: boolean): Promise<void> {
  const left = { n: points.length };
  await Promise.all(
    workers.map((w) =>
      w.run(
        points.filter((p) => p.host === w.host.name),
        adaptive,
        left,
      ),
    ),
  );
}

/** Records the start of a point in the store and tells the progress view; returns the point's row id. */
function beginPoint(ctx: RunContext, p: PlannedPoint, left: number, adaptive: boolean): number {
  const at = { index: p.index, round: p.round, host: p.host, variant: p.variantId, workload: p.workload };
  const pointId = ctx.store.startPoint(ctx.runId, at);
  ctx.emit({ event: 'point-start', run: ctx.runId, ...at, left, adaptive });
  return pointId;
}

/** Commits a point's outcome (one transaction) and tells the progress view; the twin of beginPoint. */
function endPoint(
  ctx: RunContext,
  p: PlannedPoint,
  pointId: number,
  started: number,
  outcome: StoredOutcome,
): void {
  ctx.store.finishPoint(pointId, outcome);
  ctx.emit({
    event: 'point-end',
    run: ctx.runId,
    index: p.index,
    variant: p.variantId,
    workload: p.workload,
    status: outcome.status,
    durationSeconds: (Date.now() - started) / 1000,
    ...(outcome.error === undefined ? {} : { error: outcome.error }),
  });
}

/** Records a point of a failed host as failed without running it (resume runs it again). */
function skipPoint(ctx: RunContext, p: PlannedPoint, reason: string, adaptive: boolean, left: number): void {
  const pointId = beginPoint(ctx, p, left, adaptive);
  endPoint(ctx, p, pointId, Date.now(), { status: 'failed', error: reason, consoleTail: '', artifacts: {} });
}

/** Plans the adaptive rounds, one at a time, after the planned ones: returns the points of the next round. */
function nextAdaptiveRound(
  ctx: RunContext,
  nextIndex: number,
): { points: PlannedPoint[]; reasons: string[] } {
  const spec = ctx.study.adaptive;
  if (!spec) return { points: [], reasons: [] };
  const done = ctx.store.points(ctx.runId);
  const rounds = done.reduce((m, p) => Math.max(m, p.round + 1), ctx.study.repetitions);
  const ids = [...(ctx.plan.baseline ? [HOST_VARIANT_ID] : []), ...ctx.plan.variants.map((v) => v.id)];
  const pairs = ids.flatMap((variant) => ctx.study.workloads.map((workload) => ({ variant, workload })));
  const needs = adaptiveNeeds(spec, pairs, ctx.store.metricRows(ctx.runId), rounds);
  const hosts = ctx.study.hosts.length > 0 ? ctx.study.hosts.map((h) => h.name) : ['local'];
  const points: PlannedPoint[] = [];
  for (const host of hosts) {
    for (const n of needs) {
      points.push({
        index: nextIndex + points.length,
        round: rounds,
        host,
        variantId: n.variant,
        workload: n.workload,
        boot: false,
        switchLive: false,
      });
    }
  }
  const reasons = needs.map(
    (n) =>
      `${n.variant}/${n.workload}: ${n.n} rep(s), CI ${Number.isNaN(n.share) ? 'unknown' : `±${(n.share * 100).toFixed(1)}%`}`,
  );
  return { points, reasons };
}

/**
 * Racing: the planned rounds one at a time; after each round from the minimum on, the report's
 * comparisons are judged (race/) and the (variant, workload) pairs whose comparisons are all decided
 * leave the later rounds. Returns the indexes of the planned points left out.
 */
async function runRaced(
  ctx: RunContext,
  workers: HostWorker[],
  todo: PlannedPoint[],
  budgetSeconds: number | undefined,
): Promise<Set<number>> {
  const rules = raceRules(ctx.study);
  const skipped = new Set<number>();
  if (!rules) return skipped;
  const started = Date.now();
  let pointsRun = 0;
  let racing: Set<string> | undefined;
  let counts = { decided: 0, open: 0 };
  let outOfTime = false;
  for (let round = 0; round < ctx.study.repetitions && !ctx.interrupted(); round++) {
    const planned = todo.filter((p) => p.round === round);
    let points = racing ? planned.filter((p) => racing?.has(pairKey(p.variantId, p.workload))) : planned;
    const elapsed = (Date.now() - started) / 1000;
    // A round beyond the minimum is started only when it ends within the budget, at the pace so far.
    if (budgetSeconds !== undefined && round >= rules.minRepetitions && pointsRun > 0) {
      outOfTime ||= elapsed + (elapsed / pointsRun) * points.length > budgetSeconds;
      if (outOfTime) points = [];
    }
    for (const p of planned) if (!points.includes(p)) skipped.add(p.index);
    ctx.emit({
      event: 'race-round',
      run: ctx.runId,
      round,
      points: points.length,
      skipped: planned.length - points.length,
      ...counts,
      ...(outOfTime ? { reason: 'the time budget is spent' } : {}),
    });
    await runOnHosts(workers, points, false);
    pointsRun += points.length;
    if (round + 1 < rules.minRepetitions) continue;
    const data = loadReportData(ctx.store, [ctx.runId]);
    const state = replayLooks(rules, round + 1, (n) => raceComparisons(data, n));
    racing = state.racing;
    const decided = [...state.verdicts.values()].filter((v) => v.decidedAt !== undefined).length;
    counts = { decided, open: state.verdicts.size - decided };
  }
  return skipped;
}

/** Same study, same plan: a resume must not mix two different studies under one run id. */
function checkResumable(
  store: Store,
  runId: string,
  study: Study,
  only: string[] | undefined,
): string[] | undefined {
  const run = store.requireRun(runId);
  if (!run.study) throw new UserError(`run ${run.id} was imported, not measured: there is nothing to resume`);
  if (run.status === 'complete') throw new UserError(`run ${run.id} is already complete: nothing to resume`);
  const strip = (s: Study) => JSON.stringify({ ...s, source: undefined });
  if (strip(run.study) !== strip(study)) {
    throw new UserError(
      `run ${run.id} was made from a different study (${run.source}); resume it with the same study file or preset, unchanged`,
    );
  }
  const stored = run.only;
  if (only && only.length > 0 && JSON.stringify(only) !== JSON.stringify(stored ?? [])) {
    throw new UserError(
      `run ${run.id} was planned with --only ${stored?.join(',') ?? '(none)'}; resume without --only or with the same`,
    );
  }
  return stored;
}

export async function runStudy(study: Study, opts: RunStudyOptions): Promise<RunStudyResult> {
  const only = opts.resume ? checkResumable(opts.store, opts.resume, study, opts.only) : opts.only;
  const plan = planStudy(study, { only });
  if (plan.points.length === 0)
    throw new UserError(`${study.source}: the plan has no points (no variants or workloads)`);
  // Nothing is written to the disk under test, and no run recorded, before the guard passed.
  const scratch = await makeScratchLv(study, plan);
  try {
    return await runOnDisk(scratch ? { ...study, disk: { ...study.disk, path: scratch.lv.path } } : study);
  } finally {
    await scratch?.remove();
  }

  async function runOnDisk(onDisk: Study): Promise<RunStudyResult> {
    const hosts = await hostRuns(onDisk, opts.backends ?? openBackend);
    const releaseDisks = await lockAndPrepareDisks(
      onDisk,
      hosts,
      opts.destroyData,
      scratch ? [scratch.lv.path] : [],
    );
    try {
      // The VMs' side of the disks (libvirt's QEMU user must reach them), before the first boot.
      if (needsVm(plan))
        for (const h of hosts) {
          await h.backend.checkDisk?.(h.study);
          await h.backend.checkFirmware?.(h.study);
        }
      const accel = opts.accelerator ?? (await acceleratorFor(plan));
      const runId = openRun(opts.store, study, plan, only, accel, opts.resume);
      const accelFacts = {
        accelerator: accel.accel,
        acceleratorReason: accel.reason,
        ...(scratch ? { lvm: scratch.lv } : {}),
      };
      // Recorded at once (a run lists its hosts even if it dies early); facts follow per host.
      for (const h of hosts) opts.store.setHost(runId, h.name, h.uri, accelFacts);
      const emit: RunEventSink = opts.onEvent ?? (() => undefined);
      const interrupt = wireInterrupt(
        opts.store,
        runId,
        emit,
        resumeCommand(study, runId, opts.store.path, opts.resumeFlags),
      );
      const ctx: RunContext = {
        store: opts.store,
        runId,
        study,
        plan,
        accel,
        emit,
        interrupted: interrupt.interrupted,
        destroyData: opts.destroyData,
      };
      const workers = hosts.map((h) => new HostWorker(ctx, h, accelFacts));
      const startedAt = Date.now();
      const todo = announceRun(ctx, opts.resume !== undefined);
      const raced = await runRounds(ctx, workers, todo, opts.budgetSeconds, interrupt);
      return finishRun(ctx, workers, raced, startedAt);
    } finally {
      releaseDisks();
    }
  }
}

/**
 * disk.lvm: checks the volume group (or thin pool) and makes the run's scratch LV, removed by
 * `remove` at the end of the run, on error, and by the cleanups on Ctrl-C (registered before any VM,
 * so they run after the VMs are gone).
 */
async function makeScratchLv(
  study: Study,
  plan: Plan,
): Promise<{ lv: ScratchLv; remove: () => Promise<void> } | undefined> {
  const spec = study.disk.lvm;
  if (!spec || !needsVm(plan)) return undefined;
  await checkLvmTarget(spec, study.source);
  const lv = await createScratchLv(spec, study.source);
  let removed: Promise<void> | undefined;
  const remove = () => {
    removed ??= removeScratchLv(lv);
    return removed;
  };
  const off = onCleanup(remove);
  return {
    lv,
    remove: async () => {
      off();
      await remove();
    },
  };
}

/**
 * Locks every disk file of the study (multi-disk variants add files beside each disk) and prepares
 * it behind the data guard. Returns the release of the locks, also registered for an abrupt exit.
 */
async function lockAndPrepareDisks(
  study: Study,
  hosts: HostRun[],
  destroyData: string[] | undefined,
  kvmioDevices: string[],
): Promise<() => void> {
  const disks = localDisks(study, hosts).flatMap((d) => studyDiskSpecs(study, d));
  const releases: Array<() => void> = [];
  const releaseLocks = () => {
    for (const release of releases.splice(0)) release();
  };
  const offExit = onCleanup(releaseLocks);
  const release = () => {
    offExit();
    releaseLocks();
  };
  try {
    for (const disk of disks) releases.push(lockDisk(disk.path));
    for (const [i, disk] of disks.entries()) {
      const info = await prepareDiskFile(disk, { destroyData, kvmioDevices });
      if (i === 0 && info.kind === 'block' && study.guest.count > 1)
        throw new UserError(
          `${study.source}: guest.count ${study.guest.count} gives every guest a disk of its own, as files beside disk.path; ${disk.path} is a block device: use a file, or guest.count 1`,
        );
    }
  } catch (err) {
    release();
    throw err;
  }
  return release;
}

const needsVm = (plan: Plan) => plan.points.some((p) => p.variantId !== HOST_VARIANT_ID);

async function acceleratorFor(plan: Plan): Promise<AccelChoice> {
  return needsVm(plan) ? chooseAccelerator() : { accel: 'tcg', reason: 'no VM in this plan' };
}

/** Records a new run, or reopens the one being resumed; returns its id. */
function openRun(
  store: Store,
  study: Study,
  plan: Plan,
  only: string[] | undefined,
  accel: AccelChoice,
  resume: string | undefined,
): string {
  if (resume) {
    const runId = store.requireRun(resume).id;
    // Points left `running` by a process that died: not a finding, just not measured.
    store.discardRunningPoints(runId);
    store.setRunStatus(runId, 'running', false);
    store.setAccelerator(runId, accel.accel, accel.reason);
    return runId;
  }
  const runId = store.createRun({
    name: study.name,
    source: study.source,
    study,
    only,
    kvmioVersion: VERSION,
    accelerator: accel.accel,
    acceleratorReason: accel.reason,
    notes: plan.notes,
  });
  store.setVariants(runId, plan.variants);
  return runId;
}

interface InterruptWiring {
  interrupted: () => boolean;
  /** Unhooks the handlers once the run ended on its own. */
  off: () => void;
}

/**
 * Ctrl-C marks the run interrupted and says how to resume; the store is made consistent in the
 * last cleanup (registered first, it runs after the VMs are gone), with synchronous SQLite writes.
 */
function wireInterrupt(store: Store, runId: string, emit: RunEventSink, resume: string): InterruptWiring {
  let interruptedBy: string | undefined;
  const offInterrupt = onInterrupt((signal) => {
    interruptedBy = signal;
    emit({ event: 'interrupted', run: runId, signal, resume });
  });
  const offCleanup = onCleanup(() => {
    if (!interruptedBy) return;
    store.discardRunningPoints(runId);
    store.setRunStatus(runId, 'interrupted');
  });
  return {
    interrupted: () => interruptedBy !== undefined,
    off: () => {
      offCleanup();
      offInterrupt();
    },
  };
}

/** Tells the progress view what the run will do; returns the points still to measure. */
function announceRun(ctx: RunContext, resumed: boolean): PlannedPoint[] {
  const { store, runId, study, plan, accel } = ctx;
  const okBefore = store.okIndexes(runId);
  const todo = plan.points.filter((p) => !okBefore.has(p.index));
  ctx.emit({
    event: 'run-start',
    run: runId,
    name: study.name,
    db: store.path,
    resumed,
    todo: todo.length,
    total: plan.points.length,
    alreadyDone: plan.points.length - todo.length,
    estimatedSeconds: plan.estimatedSeconds,
    accelerator: accel.accel,
    acceleratorReason: accel.reason,
    warning: accel.warning,
    notes: plan.notes,
  });
  return todo;
}

/**
 * The rounds: the planned ones (raced or all of them), then any adaptive ones. Returns the planned
 * points racing left out. An interrupt never returns: the process is on its way out.
 */
async function runRounds(
  ctx: RunContext,
  workers: HostWorker[],
  todo: PlannedPoint[],
  budgetSeconds: number | undefined,
  interrupt: InterruptWiring,
): Promise<Set<number>> {
  let raced = new Set<number>();
  try {
    await Promise.all(workers.map((w) => w.open()));
    if (ctx.study.race) raced = await runRaced(ctx, workers, todo, budgetSeconds);
    else await runOnHosts(workers, todo, false);
    await runAdaptiveRounds(ctx, workers);
  } catch (err) {
    // Not a point's fault (those are caught per point) but the engine's or the store's: the run
    // stops, resumable, and says why.
    if (!ctx.interrupted()) {
      ctx.store.discardRunningPoints(ctx.runId);
      ctx.store.setRunStatus(ctx.runId, 'interrupted');
      interrupt.off();
    }
    throw err;
  } finally {
    if (!ctx.interrupted()) await Promise.all(workers.map((w) => w.group.stop()));
    await closeHostAccesses();
  }
  // proc.ts exits after the cleanups: never resolve.
  if (ctx.interrupted()) await new Promise(() => undefined);
  interrupt.off();
  return raced;
}

/** Adaptive rounds until no pair needs one; their indexes continue after the plan's and earlier rounds'. */
async function runAdaptiveRounds(ctx: RunContext, workers: HostWorker[]): Promise<void> {
  while (ctx.study.adaptive && !ctx.interrupted()) {
    const stored = ctx.store.points(ctx.runId);
    const nextIndex = Math.max(ctx.plan.points.length, ...stored.map((p) => p.index + 1));
    const round = nextAdaptiveRound(ctx, nextIndex);
    if (round.points.length === 0) break;
    ctx.emit({
      event: 'adaptive-round',
      run: ctx.runId,
      round: round.points[0]?.round ?? 0,
      points: round.points.length,
      reasons: round.reasons,
    });
    await runOnHosts(workers, round.points, true);
  }
}

/** The run's final status: complete when every planned point racing kept is ok and no host failed. */
function finishRun(
  ctx: RunContext,
  workers: HostWorker[],
  raced: Set<number>,
  startedAt: number,
): RunStudyResult {
  const { store, runId, plan, emit } = ctx;
  const points = store.points(runId);
  const failed = points.filter((p) => p.status !== 'ok').length;
  const missing = plan.points.filter(
    (p) => !raced.has(p.index) && !points.some((q) => q.index === p.index),
  ).length;
  const failedHosts = workers.flatMap((w) => (w.failure ? [{ name: w.host.name, reason: w.failure }] : []));
  const status = failed + missing === 0 && failedHosts.length === 0 ? 'complete' : 'partial';
  store.setRunStatus(runId, status);
  for (const h of failedHosts) emit({ event: 'log', run: runId, line: `host ${h.name} failed: ${h.reason}` });
  emit({
    event: 'run-end',
    run: runId,
    status,
    ok: points.length - failed,
    failed,
    seconds: (Date.now() - startedAt) / 1000,
    ...(failedHosts.length > 0 ? { failedHosts } : {}),
  });
  return { runId, status, plan, ok: points.length - failed, failed, accelerator: ctx.accel, failedHosts };
}
