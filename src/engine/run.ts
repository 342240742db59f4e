import type { GuestVm } from '../guest/vm.js';
import { lockDisk, prepareDiskFile } from '../safety/index.js';
import type { Store } from '../store/store.js';
import { type Plan, type PlannedPoint, planStudy } from '../study/plan.js';
import { HOST_VARIANT_ID, type Study, type Variant, type Workload } from '../study/types.js';
import { errorMessage, PointFailure, UserError } from '../util/errors.js';
import { onCleanup, onInterrupt } from '../util/proc.js';
import { VERSION } from '../version.js';
import { adaptiveNeeds } from './adaptive.js';
import {
  type AccelChoice,
  backendArtifacts,
  bootGuest,
  chooseAccelerator,
  collectHostFacts,
  loadWorkloads,
} from './backends.js';
import type { RunEventSink } from './events.js';
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
}

export interface RunStudyResult {
  runId: string;
  status: 'complete' | 'partial' | 'interrupted';
  plan: Plan;
  ok: number;
  failed: number;
  accelerator: AccelChoice;
}

/** Seconds allowed for a guest to boot before the point is failed (the backend has its own, shorter). */
const BOOT_GUARD_MS = 240_000;
const STOP_GUARD_MS = 30_000;

function withDeadline<T>(what: string, p: Promise<T>, ms: number, onExpire?: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expire = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onExpire?.();
      reject(new PointFailure(`${what} did not finish within ${Math.round(ms / 1000)} s`));
    }, ms);
  });
  return Promise.race([p, expire]).finally(() => clearTimeout(timer));
}

interface RunContext {
  store: Store;
  runId: string;
  study: Study;
  plan: Plan;
  accel: AccelChoice;
  emit: RunEventSink;
  interrupted: () => boolean;
}

/** The one VM of the run at a time: reused, switched live or rebooted as the next point needs. */
class VmSlot {
  vm: GuestVm | undefined;
  private seq = 0;
  constructor(
    private readonly ctx: RunContext,
    private readonly log: (line: string) => void,
  ) {}

  async forPoint(variant: Variant, p: Pick<PlannedPoint, 'boot' | 'host'>): Promise<GuestVm> {
    const vm = this.vm;
    if (vm && !p.boot && vm.variant.id === variant.id) return vm;
    if (vm && !p.boot && vm.canSwitchLive(variant)) {
      await withDeadline(`live switch to ${variant.id}`, vm.switchVariant(variant), 120_000);
      return vm;
    }
    await this.stop();
    const host = this.ctx.study.hosts.find((h) => h.name === p.host);
    const name = `kvmio-${process.pid}-${++this.seq}`;
    this.vm = await withDeadline(
      `boot of ${variant.id}`,
      bootGuest({
        study: this.ctx.study,
        variant,
        accel: this.ctx.accel.accel,
        name,
        uri: host?.uri ?? this.ctx.study.libvirt.uri,
        host: p.host,
        log: this.log,
      }),
      BOOT_GUARD_MS,
    );
    return this.vm;
  }

  async stop(): Promise<void> {
    const vm = this.vm;
    this.vm = undefined;
    if (!vm) return;
    await withDeadline(`stop of ${vm.name}`, vm.stop(), STOP_GUARD_MS).catch((err) =>
      this.log(`stopping ${vm.name}: ${errorMessage(err)}`),
    );
  }
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

/** Runs one point and stores its outcome. Returns whether it succeeded. */
async function runPoint(
  ctx: RunContext,
  slot: VmSlot,
  p: PlannedPoint,
  adaptive: boolean,
  left: number,
): Promise<boolean> {
  const { store, runId, study } = ctx;
  const workload = workloadFor(study, p.workload);
  const logLines: string[] = [];
  const log = (line: string) => {
    logLines.push(`${new Date().toISOString()} ${line}`);
    ctx.emit({ event: 'log', run: runId, line });
  };
  const started = Date.now();
  const pointId = store.startPoint(runId, {
    index: p.index,
    round: p.round,
    host: p.host,
    variant: p.variantId,
    workload: p.workload,
  });
  ctx.emit({
    event: 'point-start',
    run: runId,
    index: p.index,
    round: p.round,
    host: p.host,
    variant: p.variantId,
    workload: p.workload,
    left,
    adaptive,
  });
  let vm: GuestVm | undefined;
  try {
    const { runWorkload, workloadTimeoutMs } = await loadWorkloads();
    // Every wait inside the workload is bounded by its own duration; this guard catches the rest.
    const timeoutMs = workloadTimeoutMs(workload);
    let target: Parameters<typeof runWorkload>[0];
    if (p.variantId === HOST_VARIANT_ID) {
      target = { kind: 'host', diskPath: study.disk.path };
    } else {
      vm = await slot.forPoint(variantFor(study, p.variantId), p);
      target = { kind: 'guest', vm };
    }
    const result = await withDeadline(
      `${p.workload} on ${p.variantId}`,
      runWorkload(target, workload, { timeoutMs, log }),
      timeoutMs + 30_000,
    );
    if (ctx.interrupted()) return false;
    const { measurements, artifacts, series } = stepMeasurements(result);
    if (vm) Object.assign(artifacts, backendArtifacts(vm), { console: vm.consoleTail(200) });
    if (logLines.length > 0) artifacts.log = logLines.join('\n');
    store.finishPoint(pointId, { status: 'ok', measurements, artifacts, series });
    ctx.emit({
      event: 'point-end',
      run: runId,
      index: p.index,
      variant: p.variantId,
      workload: p.workload,
      status: 'ok',
      durationSeconds: (Date.now() - started) / 1000,
    });
    return true;
  } catch (err) {
    if (ctx.interrupted()) return false; // the interrupt handler removes the point
    const vmNow = vm ?? slot.vm;
    const detail = err instanceof PointFailure ? err.detail : {};
    const consoleTail = detail.consoleTail ?? vmNow?.consoleTail(40) ?? '';
    const artifacts: Record<string, string> = vmNow ? backendArtifacts(vmNow) : {};
    if (detail.stderrTail) artifacts['qemu.stderr'] = detail.stderrTail;
    if (vmNow) artifacts.console = vmNow.consoleTail(200);
    if (logLines.length > 0) artifacts.log = logLines.join('\n');
    const reason = errorMessage(err);
    // A fault leaves the VM in an unknown state: the next point boots a fresh one.
    if (p.variantId !== HOST_VARIANT_ID) await slot.stop();
    store.finishPoint(pointId, { status: 'failed', error: reason, consoleTail, artifacts });
    ctx.emit({
      event: 'point-end',
      run: runId,
      index: p.index,
      variant: p.variantId,
      workload: p.workload,
      status: 'failed',
      durationSeconds: (Date.now() - started) / 1000,
      error: reason,
    });
    return false;
  }
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
  const { store } = opts;
  const emit: RunEventSink = opts.onEvent ?? (() => undefined);
  const only = opts.resume ? checkResumable(store, opts.resume, study, opts.only) : opts.only;
  const plan = planStudy(study, { only });
  if (plan.points.length === 0)
    throw new UserError(`${study.source}: the plan has no points (no variants or workloads)`);

  // Nothing is written to the disk under test, and no run recorded, before the guard passed.
  const releaseLock = lockDisk(study.disk.path);
  const releaseOnExit = onCleanup(releaseLock);
  try {
    await prepareDiskFile(study.disk, { destroyData: opts.destroyData });
    const needsVm = plan.points.some((p) => p.variantId !== HOST_VARIANT_ID);
    const accel: AccelChoice =
      opts.accelerator ??
      (needsVm ? await chooseAccelerator() : { accel: 'tcg', reason: 'no VM in this plan' });

    let runId: string;
    const resumed = opts.resume !== undefined;
    if (opts.resume) {
      runId = store.requireRun(opts.resume).id;
      // Points left `running` by a process that died: not a finding, just not measured.
      store.discardRunningPoints(runId);
      store.setRunStatus(runId, 'running', false);
      store.setAccelerator(runId, accel.accel, accel.reason);
    } else {
      runId = store.createRun({
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
    }
    const facts = {
      ...(await collectHostFacts()),
      accelerator: accel.accel,
      acceleratorReason: accel.reason,
    };
    const hostSpecs = study.hosts.length > 0 ? study.hosts : [{ name: 'local', uri: study.libvirt.uri }];
    for (const h of hostSpecs) store.setHost(runId, h.name, h.uri, facts);

    let interruptedBy: string | undefined;
    const resume = resumeCommand(study, runId, store.path);
    const offInterrupt = onInterrupt((signal) => {
      interruptedBy = signal;
      emit({ event: 'interrupted', run: runId, signal, resume });
    });
    // Runs last among cleanups (registered first): VMs are gone by then. Synchronous SQLite writes.
    const offCleanup = onCleanup(() => {
      if (!interruptedBy) return;
      store.discardRunningPoints(runId);
      store.setRunStatus(runId, 'interrupted');
    });

    const ctx: RunContext = {
      store,
      runId,
      study,
      plan,
      accel,
      emit,
      interrupted: () => interruptedBy !== undefined,
    };
    const slot = new VmSlot(ctx, (line) => emit({ event: 'log', run: runId, line }));
    const okBefore = store.okIndexes(runId);
    const todo = plan.points.filter((p) => !okBefore.has(p.index));
    const startedAt = Date.now();
    emit({
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

    try {
      let left = todo.length;
      for (const p of todo) {
        if (ctx.interrupted()) break;
        await runPoint(ctx, slot, p, false, left--);
      }
      // Adaptive rounds; their indexes continue after the plan's (and after earlier adaptive rounds').
      while (study.adaptive && !ctx.interrupted()) {
        const stored = store.points(runId);
        const nextIndex = Math.max(plan.points.length, ...stored.map((p) => p.index + 1));
        const round = nextAdaptiveRound(ctx, nextIndex);
        if (round.points.length === 0) break;
        emit({
          event: 'adaptive-round',
          run: runId,
          round: round.points[0]?.round ?? 0,
          points: round.points.length,
          reasons: round.reasons,
        });
        let roundLeft = round.points.length;
        for (const p of round.points) {
          if (ctx.interrupted()) break;
          await runPoint(ctx, slot, p, true, roundLeft--);
        }
      }
    } catch (err) {
      // Not a point's fault (those are caught per point) but the engine's or the store's: the run
      // stops, resumable, and says why.
      if (!ctx.interrupted()) {
        store.discardRunningPoints(runId);
        store.setRunStatus(runId, 'interrupted');
        offCleanup();
        offInterrupt();
      }
      throw err;
    } finally {
      if (!ctx.interrupted()) await slot.stop();
    }
    if (ctx.interrupted()) {
      // The process is on its way out (proc.ts exits after the cleanups): never resolve.
      await new Promise(() => undefined);
    }
    offInterrupt();
    offCleanup();

    const points = store.points(runId);
    const failed = points.filter((p) => p.status !== 'ok').length;
    const missing = plan.points.filter((p) => !points.some((q) => q.index === p.index)).length;
    const status = failed + missing === 0 ? 'complete' : 'partial';
    store.setRunStatus(runId, status);
    emit({
      event: 'run-end',
      run: runId,
      status,
      ok: points.length - failed,
      failed,
      seconds: (Date.now() - startedAt) / 1000,
    });
    return { runId, status, plan, ok: points.length - failed, failed, accelerator: accel };
  } finally {
    releaseOnExit();
    releaseLock();
  }
}
