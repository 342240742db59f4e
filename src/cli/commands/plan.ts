import type { Command } from 'commander';
import { type AxisQemu, checkQemuAxis } from '../../qemu/axis.js';
import { firmwareText, type Ovmf, studyOvmf } from '../../qemu/firmware.js';
import { shapeForRun } from '../../study/budget.js';
import { splitGlobs } from '../../study/glob.js';
import { DEFAULT_MACHINE, describePinning, guestCpuModel } from '../../study/guest-shape.js';
import { isLocalLibvirtUri } from '../../study/libvirt-uri.js';
import { loadStudyArg } from '../../study/load.js';
import { type Plan, type PlannedPoint, planStudy } from '../../study/plan.js';
import { variantDetectZeroes, variantDiscard } from '../../study/variants.js';
import { formatBytes, formatSeconds } from '../../util/units.js';
import { printJson, withOnly, withRaceAndBudget, withStudyArg } from '../common.js';
import { formatTable } from '../table.js';

interface PlanFlags {
  preset?: string;
  only?: string[];
  json?: boolean;
  race?: boolean;
  budget?: string;
}

/** The machine-readable plan: the contract of `kvmio plan --json`. */
export function planJson(plan: Plan, qemus: AxisQemu[] = [], ovmf?: Ovmf) {
  const { study } = plan;
  return {
    study: {
      name: study.name,
      source: study.source,
      backend: study.backend,
      repetitions: study.repetitions,
      ...(study.race ? { race: { minRepetitions: study.race.minRepetitions } } : {}),
      ...(study.guest.domain
        ? {}
        : {
            guest: {
              machine: study.guest.machine ?? DEFAULT_MACHINE,
              vcpus: study.guest.vcpus,
              memoryBytes: study.guest.memoryBytes,
              ...(study.pinning ? { pinning: study.pinning } : {}),
              firmware: study.guest.firmware ?? 'bios',
              ...(ovmf ? { ovmf: { code: ovmf.code, varsTemplate: ovmf.varsTemplate } } : {}),
            },
          }),
    },
    variants: plan.variants.map((v) => ({
      id: v.id,
      aio: v.aio,
      iothreads: v.iothreads,
      bus: v.bus,
      memory: v.memory,
      queues: v.queues,
      cache: v.cache,
      disks: v.disks ?? 1,
      format: v.format ?? 'raw',
      discard: variantDiscard(v),
      detect_zeroes: variantDetectZeroes(v),
      ...(v.qemu ? { qemu: v.qemu } : {}),
    })),
    ...(qemus.length > 0 ? { qemus: qemus.map(qemuAbilities) } : {}),
    baseline: plan.baseline,
    workloads: study.workloads.map((w) => w.name),
    points: plan.points,
    boots: plan.boots,
    liveSwitches: plan.liveSwitches,
    measureSeconds: plan.measureSeconds,
    estimatedSeconds: plan.estimatedSeconds,
    notes: plan.notes,
  };
}

/** Run order, one line per round and host: each variant visit once, marked how its VM is reached. */
function runOrder(points: PlannedPoint[]): string[] {
  const lines: string[] = [];
  let key = '';
  let visits: string[] = [];
  let last = '';
  const flush = () => {
    if (visits.length === 0) return;
    // Wrapped so that long rounds stay readable in a terminal.
    let line = `  ${key}:`;
    const indent = ' '.repeat(line.length);
    visits.forEach((visit, i) => {
      const item = ` ${visit}${i < visits.length - 1 ? ',' : ''}`;
      if (line.length + item.length > 110 && line.trim() !== `${key}:`) {
        lines.push(line);
        line = indent;
      }
      line += item;
    });
    lines.push(line);
    visits = [];
  };
  for (const p of points) {
    const lineKey = `round ${p.round + 1} on ${p.host}`;
    if (lineKey !== key) {
      flush();
      key = lineKey;
      last = '';
    }
    const visit = `${p.round}/${p.host}/${p.variantId}`;
    if (visit === last) continue;
    last = visit;
    visits.push(`${p.boot ? '[boot] ' : ''}${p.variantId}`);
  }
  flush();
  return lines;
}

/** What the plan learnt of one QEMU of the axis. */
function qemuAbilities(q: AxisQemu) {
  return {
    name: q.qemu.name,
    path: q.qemu.path,
    version: q.qemu.version,
    aio: q.aio,
    vqMapping: {
      'virtio-blk': q.capabilities.iothreadVqMapping,
      'virtio-scsi': q.capabilities.scsiIothreadVqMapping,
    },
  };
}

/** One line per QEMU: "10.0.2 (q10): /opt/…; aio threads, native, io_uring; vq-mapping virtio-blk, virtio-scsi". */
export function formatQemuLine(q: AxisQemu): string {
  const a = qemuAbilities(q);
  const aio = Object.entries(a.aio).map(([mode, ok]) => (ok === true ? mode : `${mode} (not here: ${ok})`));
  const vq = Object.entries(a.vqMapping)
    .filter(([, ok]) => ok)
    .map(([bus]) => bus);
  return `QEMU ${a.version}${a.name !== a.version ? ` (${a.name})` : ''}: ${a.path}; aio ${aio.join(', ')}; one disk over several iothreads: ${vq.length > 0 ? vq.join(', ') : 'no'}`;
}

/** "guest q35, 8 vCPUs (host-passthrough under KVM, maximum under TCG), 8.0 GiB, pinned vcpus 0-7, …". */
function guestLine(study: Plan['study']): string {
  const pins = study.pinning ? `pinned ${describePinning(study.pinning)}` : 'not pinned';
  return `guest ${study.guest.machine ?? DEFAULT_MACHINE}, ${study.guest.vcpus} vCPU(s) (${guestCpuModel('kvm')} under KVM, ${guestCpuModel('tcg')} under TCG), ${formatBytes(study.guest.memoryBytes)}, ${pins}`;
}

export function formatPlan(plan: Plan, qemus: AxisQemu[] = [], ovmf?: Ovmf): string {
  const { study } = plan;
  const onQemus = plan.variants.some((v) => v.qemu);
  const out: string[] = [];
  out.push(
    `Study ${study.name} (${study.source})${study.description ? `: ${study.description}` : ''}`,
    `  backend ${study.backend}, ${plan.variants.length} VM variant(s)${plan.baseline ? ' + host baseline' : ''}, ` +
      `${study.workloads.length} workload(s) (${study.workloads.map((w) => w.name).join(', ')}), ` +
      `${study.repetitions} repetition(s)`,
    ...(study.guest.domain
      ? []
      : [`  ${guestLine(study)}`, `  guest firmware ${firmwareText(study.guest.firmware ?? 'bios', ovmf)}`]),
    '',
    'Variants:',
    formatTable(
      [
        'ID',
        'AIO',
        'IOTHREADS',
        'DISKS',
        'BUS',
        'MEMORY',
        'QUEUES',
        'CACHE',
        'FORMAT',
        'DISCARD',
        'ZEROES',
        ...(onQemus ? ['QEMU'] : []),
      ],
      [
        ...(plan.baseline
          ? [['host', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', ...(onQemus ? ['-'] : [])]]
          : []),
        ...plan.variants.map((v) => [
          v.id,
          v.aio,
          String(v.iothreads),
          String(v.disks ?? 1),
          v.bus,
          v.memory,
          String(v.queues),
          v.cache,
          v.format ?? 'raw',
          variantDiscard(v),
          variantDetectZeroes(v),
          ...(onQemus ? [v.qemu ? v.qemu.version : 'default'] : []),
        ]),
      ],
    ),
    ...(qemus.length > 0 ? ['', 'QEMUs (probed now):', ...qemus.map((q) => `  ${formatQemuLine(q)}`)] : []),
    '',
    `Run order (${plan.points.length} points; each variant runs every workload; [boot] = fresh VM, others switch live):`,
    ...runOrder(plan.points),
    '',
    `VM boots: ${plan.boots}   live switches: ${plan.liveSwitches}`,
    `Measuring: ${formatSeconds(plan.measureSeconds)}   estimated total: ${formatSeconds(plan.estimatedSeconds)}`,
  );
  if (plan.notes.length > 0) out.push('', 'Notes:', ...plan.notes.map((n) => `  - ${n}`));
  return `${out.join('\n')}\n`;
}

export function registerPlan(program: Command): void {
  withRaceAndBudget(
    withOnly(
      withStudyArg(
        program
          .command('plan')
          .description(
            'show the variants and points of a study in run order, the VM boots and the time it takes',
          ),
      ),
    ),
  )
    .option('--json', 'machine-readable output')
    .action(async (file: string | undefined, flags: PlanFlags) => {
      const globs = splitGlobs(flags.only ?? []);
      const { study, only } = shapeForRun(
        loadStudyArg(file, flags.preset),
        flags,
        globs.length > 0 ? globs : undefined,
      );
      const plan = planStudy(study, { only });
      const qemus = await checkQemuAxis(study, plan.variants);
      // Where the VMs run on this machine, a uefi study without OVMF is refused now (remote hosts: at run).
      const local =
        study.backend === 'qemu' || (study.hosts.length === 0 && isLocalLibvirtUri(study.libvirt.uri));
      const ovmf = local ? await studyOvmf(study) : undefined;
      if (flags.json) printJson(planJson(plan, qemus, ovmf));
      else process.stdout.write(formatPlan(plan, qemus, ovmf));
    });
}
