import type { Accel } from '../host/accel.js';
import { DEFAULT_MACHINE, type MachineType } from '../study/guest-shape.js';
import type { Study } from '../study/types.js';
import { PointFailure } from '../util/errors.js';
import { qemuCpuModel } from './argv.js';
import type { Monitor } from './verify.js';

/**
 * The guest's shape as the running QEMU has it, read over QMP (its own socket, or libvirt's monitor
 * connection): the concrete machine type (`pc-q35-10.0`, what `q35` resolved to), the vCPU model,
 * the vCPU count and the base memory. Two backends that run "the same variant" must agree on it.
 */
export interface RunningShape {
  /** The versioned machine type, e.g. "pc-q35-7.2" or "pc-i440fx-10.0". */
  machine: string;
  /** The vCPU model as QEMU names it: "host" (host-passthrough) or "max" (libvirt's maximum), … */
  cpuModel: string;
  vcpus: number;
  /** vCPU topology from the CPUs' ids, e.g. "2 sockets × 1 core × 1 thread" (the guest sees it: ht, cmp_legacy). */
  topology: string;
  memoryBytes: number;
}

export async function readRunningShape(monitor: Monitor): Promise<RunningShape> {
  const typeOf = (path: string) => monitor<string>('qom-get', { path, property: 'type' });
  const cpus =
    await monitor<Array<{ 'qom-path': string; props?: Record<string, number> }>>('query-cpus-fast');
  const first = cpus[0];
  if (!first) throw new Error('QEMU reports no vCPUs (query-cpus-fast is empty)');
  const memory = await monitor<{ 'base-memory': number }>('query-memory-size-summary');
  return {
    machine: (await typeOf('/machine')).replace(/-machine$/, ''),
    cpuModel: (await typeOf(first['qom-path'])).replace(/-x86_64-cpu$/, ''),
    vcpus: cpus.length,
    topology: topologyOf(cpus.map((c) => c.props ?? {})),
    memoryBytes: memory['base-memory'],
  };
}

/** "S socket(s) × C core(s) × T thread(s)" from the vCPUs' socket-id / core-id / thread-id. */
function topologyOf(ids: Array<Record<string, number>>): string {
  /** The most distinct `key` values within one group of vCPUs. */
  const most = (key: string, group: (id: Record<string, number>) => string) => {
    const seen = new Map<string, Set<number | undefined>>();
    for (const id of ids) {
      const g = seen.get(group(id)) ?? new Set();
      g.add(id[key]);
      seen.set(group(id), g);
    }
    return Math.max(...[...seen.values()].map((g) => g.size));
  };
  const sockets = most('socket-id', () => '');
  const cores = most('core-id', (id) => `${id['socket-id']}`);
  const threads = most('thread-id', (id) => `${id['socket-id']}/${id['core-id']}`);
  return `${sockets} socket(s) × ${cores} core(s) × ${threads} thread(s)`;
}

/** Where two running guests differ in shape, one line per part ("machine: pc-q35-7.2 vs pc-i440fx-7.2"); empty when the same. */
export function shapeDifferences(
  a: RunningShape,
  b: RunningShape,
  labels: [string, string] = ['first', 'second'],
): string[] {
  return (['machine', 'cpuModel', 'vcpus', 'topology', 'memoryBytes'] as const).flatMap((key) =>
    a[key] === b[key] ? [] : [`${key}: ${labels[0]} ${a[key]}, ${labels[1]} ${b[key]}`],
  );
}

/** What the study asks the running guest to be (the builtin guest; a user's own domain brings its own). */
export interface ShapeExpectation {
  machine: MachineType;
  accel: Accel;
  vcpus: number;
  memoryBytes: number;
}

const MACHINE_FAMILY: Record<MachineType, RegExp> = { q35: /^pc-q35-/, pc: /^pc-i440fx-/ };

/** Where the running guest is not what the study asks for, one line per part; empty when it is. */
export function shapeProblems(running: RunningShape, want: ShapeExpectation): string[] {
  const problems: string[] = [];
  if (!MACHINE_FAMILY[want.machine].test(running.machine))
    problems.push(`machine type is ${running.machine}, the study asks for ${want.machine}`);
  const cpu = qemuCpuModel(want.accel);
  if (running.cpuModel !== cpu)
    problems.push(`vCPU model is ${running.cpuModel}, the ${want.accel} rule is ${cpu}`);
  if (running.vcpus !== want.vcpus)
    problems.push(`${running.vcpus} vCPU(s), the study asks for ${want.vcpus}`);
  // libvirt's topology for a bare <vcpu>N</vcpu>, as the study's domain; direct QEMU's argv says the same.
  const topology = `${want.vcpus} socket(s) × 1 core(s) × 1 thread(s)`;
  if (running.topology !== topology)
    problems.push(`vCPU topology is ${running.topology}, expected ${topology}`);
  if (running.memoryBytes !== want.memoryBytes)
    problems.push(`memory is ${running.memoryBytes} bytes, the study asks for ${want.memoryBytes}`);
  return problems;
}

/**
 * Reads the freshly booted guest's shape and fails the point (PointFailure) when it is not the
 * study's: both backends run this, so a backend that boots another machine or CPU is caught.
 */
export async function checkRunningShape(
  monitor: Monitor,
  study: Pick<Study, 'guest'>,
  accel: Accel,
  vmName: string,
): Promise<RunningShape> {
  const running = await readRunningShape(monitor);
  const problems = shapeProblems(running, {
    machine: study.guest.machine ?? DEFAULT_MACHINE,
    accel,
    vcpus: study.guest.vcpus,
    memoryBytes: study.guest.memoryBytes,
  });
  if (problems.length > 0)
    throw new PointFailure(`the running guest ${vmName} is not the study's: ${problems.join('; ')}`);
  return running;
}
