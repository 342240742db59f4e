import { hostReachable } from '../host/access.js';
import { UserError } from '../util/errors.js';
import { formatBytes, formatSeconds } from '../util/units.js';
import { globToRegExp } from './glob.js';
import { seededShuffle } from './shuffle.js';
import { HOST_VARIANT_ID, type Study, type Variant, type Workload } from './types.js';
import { bootGroupKey, variantDisks } from './variants.js';

export interface PlannedPoint {
  index: number;
  /** Repetition, 0-based. */
  round: number;
  /** Host name; 'local' when the study has no hosts. */
  host: string;
  /** A variant id, or 'host' for the bare-host baseline. */
  variantId: string;
  /** Workload name. */
  workload: string;
  /** A fresh VM is needed before this point (the previous one, if any, is stopped). */
  boot: boolean;
  /** The running VM switches to this variant live (hot-plug of the test disk) before this point. */
  switchLive: boolean;
}

export interface Plan {
  study: Study;
  /** VM variants of this plan, in the study's order (after --only). */
  variants: Variant[];
  /** Whether the bare-host baseline (`host`) is part of this plan (after --only). */
  baseline: boolean;
  /** Every point in run order. */
  points: PlannedPoint[];
  boots: number;
  liveSwitches: number;
  /** Seconds spent measuring (ramp + runtime, summed over points). */
  measureSeconds: number;
  /** measureSeconds plus boots, live switches and per-point overhead. */
  estimatedSeconds: number;
  notes: string[];
}

export interface PlanOptions {
  /** Globs over variant ids (`*`, `?`); `host` is the baseline. */
  only?: string[];
}

/**
 * Cost model of the estimate. Guesses from TCG runs on a small host; KVM is faster, so the estimate
 * errs long. Seconds unless named otherwise.
 */
export const PLAN_COSTS = {
  /** Boot of the builtin guest until its agent answers (TCG). */
  bootSeconds: 8,
  /** Hot-unplug of the test disk, hot-plug of the next one, verification. */
  switchSeconds: 2,
  /** Starting the tool, collecting its output, storing the point. */
  pointOverheadSeconds: 1,
  /**
   * mkfs, initdb, PostgreSQL's start and stop, then pgbench -i per scale unit. Measured under TCG on
   * 2 CPUs: about 24 s at scale 1 and 263 s at scale 50 under load, half that on a quiet host.
   */
  pgbenchStartSeconds: 20,
  pgbenchInitSecondsPerScale: 3,
  /** rsync: creating the source tree and copying it, per file and per byte. */
  rsyncSecondsPerFile: 0.002,
  rsyncBytesPerSecond: 50e6,
} as const;

/** The host baseline is fio against the disk itself; pgbench and rsync need the guest's filesystem. */
export function hostCanRun(workload: Workload): boolean {
  return workload.kind === 'fio' || workload.kind === 'sweep';
}

/** Measured seconds of one point of this workload. */
export function workloadSeconds(w: Workload): number {
  switch (w.kind) {
    case 'fio':
      return w.rampSeconds + w.runtimeSeconds;
    case 'sweep': {
      // The rate-limited form first measures the maximum, then runs each step.
      const runs = w.iodepths ? w.iodepths.length : (w.steps ?? 0) + 1;
      return runs * (w.rampSeconds + w.runtimeSeconds);
    }
    case 'pgbench':
      return (
        PLAN_COSTS.pgbenchStartSeconds +
        w.scale * PLAN_COSTS.pgbenchInitSecondsPerScale +
        w.clients.length * Math.max(1, w.rates?.length ?? 0) * w.runtimeSeconds
      );
    case 'rsync':
      // Writing the source tree, then copying it: twice the files and bytes.
      return (
        2 *
        (w.files * PLAN_COSTS.rsyncSecondsPerFile + (w.files * w.sizeBytes) / PLAN_COSTS.rsyncBytesPerSecond)
      );
  }
}

function selectVariants(
  study: Study,
  only: string[] | undefined,
): { variants: Variant[]; baseline: boolean } {
  if (!only || only.length === 0) return { variants: study.variants, baseline: study.baseline };
  const ids = [...(study.baseline ? [HOST_VARIANT_ID] : []), ...study.variants.map((v) => v.id)];
  const patterns = only.map((glob) => {
    const re = globToRegExp(glob);
    if (!ids.some((id) => re.test(id))) {
      throw new UserError(`--only "${glob}" matches no variant of ${study.source}; ids: ${ids.join(', ')}`);
    }
    return re;
  });
  const keep = (id: string) => patterns.some((re) => re.test(id));
  return {
    variants: study.variants.filter((v) => keep(v.id)),
    baseline: study.baseline && keep(HOST_VARIANT_ID),
  };
}

/** Variants grouped by the VM they can share, groups in order of first appearance. */
function bootGroups(variants: Variant[]): Map<string, Variant[]> {
  const groups = new Map<string, Variant[]>();
  for (const v of variants) {
    const key = bootGroupKey(v);
    groups.set(key, [...(groups.get(key) ?? []), v]);
  }
  return groups;
}

function planNotes(study: Study, plan: Pick<Plan, 'variants' | 'baseline'>, only?: string[]): string[] {
  const notes = [...(study.notes ?? [])];
  if (only && only.length > 0) {
    const total = study.variants.length + (study.baseline ? 1 : 0);
    const kept = plan.variants.length + (plan.baseline ? 1 : 0);
    notes.push(`--only ${only.join(',')}: ${kept} of ${total} variants`);
  }
  const own = study.guest.domain;
  if (own) {
    notes.push(
      `guest: a transient copy of ${'file' in own ? own.file : `the libvirt domain ${own.name}`} under a new name, kept whole plus the test disk(s), their controller(s) and iothreads; its own disks are attached through throwaway qcow2 overlays (or read-only), so the copy never writes them, and a defined domain is only read. Refused when it is running or a running VM uses its disks`,
    );
  }
  if (!own && plan.variants.some((v) => v.memory === 'hugepages')) {
    const bytes = study.guest.memoryBytes * study.guest.count;
    notes.push(
      `hugepages variants need ${formatBytes(bytes)} of free 2 MiB hugepages (${bytes / (2 * 1024 ** 2)} pages) on the host`,
    );
  }
  const multi = plan.variants.filter((v) => v.iothreads > 1 && variantDisks(v) === 1);
  if (multi.length > 0) {
    notes.push(
      `${multi.length} variant(s) give one disk several iothreads: that needs QEMU's iothread-vq-mapping (QEMU 9.0 or later); on older QEMU add matrix disks: [N] for one iothread per disk`,
    );
  }
  const most = Math.max(1, ...plan.variants.map(variantDisks));
  if (most > 1) {
    notes.push(
      `multi-disk variants use ${study.disk.path} and ${most - 1} more file(s) next to it (${study.disk.path}.1 …), ${formatBytes(study.disk.sizeBytes)} each; disk i is served by iothread i mod N`,
    );
  }
  const qemus = [...new Map(plan.variants.flatMap((v) => (v.qemu ? [[v.qemu.path, v.qemu]] : []))).values()];
  if (qemus.length > 0)
    notes.push(
      `QEMU axis: ${qemus.map((q) => `${q.version} (${q.path})`).join(', ')}; variants on different QEMUs never switch live: each QEMU boots its own VM${study.backend === 'libvirt' ? ' (the domain names it as <emulator>)' : ''}`,
    );
  if (study.hosts.length > 1)
    notes.push(`${study.hosts.length} hosts run at the same time, each its own copy of the plan`);
  if (study.guest.count > 1)
    notes.push(
      `${study.guest.count} guests per variant, booted together, each on its own disk file (disk.path, then disk.path.guest1, …); fio workloads drive them at once (fio client/server), other workloads run on each guest in turn`,
    );
  if (plan.baseline) {
    notes.push('host points run on the bare host; a running VM is kept (idle) through them');
    const guestOnly = study.workloads.filter((w) => !hostCanRun(w)).map((w) => w.name);
    if (guestOnly.length > 0)
      notes.push(
        `baseline: ${guestOnly.join(', ')} run${guestOnly.length === 1 ? 's' : ''} in the guest only (pgbench and rsync need the guest's filesystem): no host point`,
      );
  }
  if (study.adaptive) {
    const extra = study.adaptive.maxRepetitions - study.repetitions;
    if (extra > 0) {
      notes.push(
        `adaptive: up to ${extra} more round(s) for points whose 95% CI is wider than ±${study.adaptive.ciShare * 100}% of the mean (not in the estimate)`,
      );
    }
  }
  return notes;
}

/**
 * Orders the points: repetitions interleaved across variants (round after round), variants shuffled
 * per round with a seed from the study name and round (resume replays the same plan), variants that
 * share a VM kept together so that each group boots once per round, and the last group of a round
 * opening the next one so that its VM carries over.
 */
export function planStudy(study: Study, opts: PlanOptions = {}): Plan {
  const { variants, baseline } = selectVariants(study, opts.only);
  const groups = bootGroups(variants);
  const hostSpecs = study.hosts.length > 0 ? study.hosts : [{ name: 'local', uri: study.libvirt.uri }];
  const hosts = hostSpecs.map((h) => h.name);
  // The baseline is fio on the host's own disk: kvmio runs it where it reaches the host itself.
  const noBaseline = hostSpecs.filter((h) => study.backend === 'libvirt' && !hostReachable(h.uri));
  const points: PlannedPoint[] = [];
  let boots = 0;
  let liveSwitches = 0;
  let measureSeconds = 0;

  const add = (
    round: number,
    host: string,
    variantId: string,
    first: { boot: boolean; switchLive: boolean },
  ) => {
    const workloads = variantId === HOST_VARIANT_ID ? study.workloads.filter(hostCanRun) : study.workloads;
    workloads.forEach((w, i) => {
      points.push({
        index: points.length,
        round,
        host,
        variantId,
        workload: w.name,
        boot: i === 0 && first.boot,
        switchLive: i === 0 && first.switchLive,
      });
      measureSeconds += workloadSeconds(w);
    });
  };

  for (const host of hosts) {
    let runningGroup: string | undefined;
    let runningVariant: string | undefined;
    for (let round = 0; round < study.repetitions; round++) {
      const seed = `${study.name}#${round}`;
      let order = seededShuffle([...groups.keys()], `${seed}:groups`);
      if (runningGroup !== undefined && order.includes(runningGroup)) {
        order = [runningGroup, ...order.filter((k) => k !== runningGroup)];
      }
      if (baseline && !noBaseline.some((h) => h.name === host))
        add(round, host, HOST_VARIANT_ID, { boot: false, switchLive: false });
      for (const key of order) {
        for (const v of seededShuffle(groups.get(key)!, `${seed}:${key}`)) {
          const boot = runningGroup !== key;
          const switchLive = !boot && runningVariant !== v.id;
          if (boot) boots++;
          if (switchLive) liveSwitches++;
          runningGroup = key;
          runningVariant = v.id;
          add(round, host, v.id, { boot, switchLive });
        }
      }
    }
  }

  // Hosts run their (identical) shares at the same time: the wall-clock estimate is one host's.
  const estimatedSeconds =
    (measureSeconds +
      points.length * PLAN_COSTS.pointOverheadSeconds +
      boots * PLAN_COSTS.bootSeconds +
      liveSwitches * PLAN_COSTS.switchSeconds) /
    hosts.length;
  const notes = planNotes(study, { variants, baseline }, opts.only);
  if (baseline && noBaseline.length > 0)
    notes.push(
      `baseline: no host points on ${noBaseline.map((h) => `${h.name} (${h.uri})`).join(', ')}: kvmio runs the baseline's fio on a remote host over SSH only (qemu+ssh://)`,
    );
  if (study.race) {
    const least = planStudy({ ...study, repetitions: study.race.minRepetitions, race: undefined }, opts);
    notes.push(
      `racing: ${study.race.minRepetitions} to ${study.repetitions} repetitions; a variant's workload stops once every comparison the report makes with it is decided, so the run takes between ${formatSeconds(least.estimatedSeconds)} and ${formatSeconds(estimatedSeconds)}`,
    );
  }
  return {
    study,
    variants,
    baseline,
    points,
    boots,
    liveSwitches,
    measureSeconds: Math.round(measureSeconds),
    estimatedSeconds: Math.round(estimatedSeconds),
    notes,
  };
}
