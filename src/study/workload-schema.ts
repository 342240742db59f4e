import {
  closest,
  describe,
  isPlainMap,
  readBool,
  readDuration,
  readEnum,
  readInt,
  readList,
  readMap,
  readShare,
  readSize,
  readString,
} from './fields.js';
import { FIO_EXTRA_OPTIONS, FIO_IOENGINES, FIO_VALUE_HELP, FIO_VALUE_PATTERN } from './fio-options.js';
import type { FioWorkload, PgbenchWorkload, RsyncWorkload, SweepWorkload, Workload } from './types.js';
import type { KeyPath, YamlSource } from './yaml-source.js';

const KINDS = ['fio', 'sweep', 'pgbench', 'rsync'] as const;
/** Every fio `rw` mode a study may name. */
export const FIO_RW: readonly FioWorkload['rw'][] = [
  'read',
  'write',
  'randread',
  'randwrite',
  'rw',
  'randrw',
  'readwrite',
  'randtrim',
  'trim',
];
const MIXED_RW: FioWorkload['rw'][] = ['rw', 'randrw', 'readwrite'];

/** Workload defaults: short enough to try, long enough to settle. Units: seconds and bytes. */
export const WORKLOAD_DEFAULTS = {
  fio: { rw: 'randread', bs: 4096, iodepth: 1, numjobs: 1, runtime: 30, ramp: 2, ioengine: 'libaio' },
  sweep: { rw: 'randread', bs: 4096, iodepth: 32, numjobs: 1, steps: 10, from: 0.1, runtime: 20, ramp: 2 },
  pgbench: { scale: 10, clients: [1, 4, 16], runtime: 30, readonly: false },
  rsync: { files: 10000, size: 16 * 1024, seed: 1 },
} as const;

export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const NAME_HELP = 'letters, digits, ".", "_" and "-", starting with a letter or digit (at most 64)';

const KIB = 1024;
const GIB = 1024 ** 3;
const TIB = 1024 ** 4;
const MAX_RUNTIME = 24 * 3600;

/** fio options kvmio sets itself, or that have their own workload key. */
const FIO_OWNED_OPTIONS: Record<string, string> = {
  filename: 'kvmio sets it to the disk under test',
  'output-format': 'kvmio reads fio JSON',
  output: 'kvmio reads fio JSON',
  name: 'use the workload name',
  rw: 'use the workload key rw',
  readwrite: 'use the workload key rw',
  bs: 'use the workload key bs',
  blocksize: 'use the workload key bs',
  iodepth: 'use the workload key iodepth',
  numjobs: 'use the workload key numjobs',
  runtime: 'use the workload key runtime',
  ramp_time: 'use the workload key ramp',
  size: 'use the workload key size',
  rwmixread: 'use the workload key rwmixread',
  rate_iops: 'use the workload key rate_iops',
  ioengine: 'use the workload key ioengine',
};

function has(map: Record<string, unknown>, key: string): boolean {
  return map[key] !== undefined;
}

function readCommon(src: YamlSource, path: KeyPath, w: Record<string, unknown>) {
  return {
    rw: has(w, 'rw') ? readEnum(src, [...path, 'rw'], w.rw, FIO_RW) : undefined,
    bs: has(w, 'bs')
      ? readSize(src, [...path, 'bs'], w.bs, { min: 512, max: GIB, multipleOf: 512 })
      : undefined,
    iodepth: has(w, 'iodepth') ? readInt(src, [...path, 'iodepth'], w.iodepth, 1, 4096) : undefined,
    numjobs: has(w, 'numjobs') ? readInt(src, [...path, 'numjobs'], w.numjobs, 1, 256) : undefined,
    runtime: has(w, 'runtime')
      ? readDuration(src, [...path, 'runtime'], w.runtime, 1, MAX_RUNTIME)
      : undefined,
    ramp: has(w, 'ramp') ? readDuration(src, [...path, 'ramp'], w.ramp, 0, 3600) : undefined,
    size: has(w, 'size')
      ? readSize(src, [...path, 'size'], w.size, { min: 1024 * KIB, max: 64 * TIB })
      : undefined,
  };
}

/** The job keys fio and sweep workloads share, with the kind's defaults where the study leaves them out. */
function readJob(
  src: YamlSource,
  path: KeyPath,
  w: Record<string, unknown>,
  d: { rw: FioWorkload['rw']; bs: number; iodepth: number; numjobs: number; runtime: number; ramp: number },
) {
  const c = readCommon(src, path, w);
  const job = {
    rw: c.rw ?? d.rw,
    bs: c.bs ?? d.bs,
    iodepth: c.iodepth ?? d.iodepth,
    numjobs: c.numjobs ?? d.numjobs,
    runtimeSeconds: c.runtime ?? d.runtime,
    rampSeconds: c.ramp ?? d.ramp,
  };
  return { job, size: c.size };
}

function readFio(src: YamlSource, path: KeyPath, w: Record<string, unknown>, name: string): FioWorkload {
  const d = WORKLOAD_DEFAULTS.fio;
  const { job, size } = readJob(src, path, w, d);
  const rw = job.rw;
  const out: FioWorkload = {
    kind: 'fio',
    name,
    ...job,
    ioengine: has(w, 'ioengine')
      ? readEnum(src, [...path, 'ioengine'], w.ioengine, FIO_IOENGINES)
      : d.ioengine,
    extra: {},
  };
  if (size !== undefined) out.sizeBytes = size;
  if (has(w, 'rwmixread')) {
    if (!MIXED_RW.includes(rw)) {
      src.fail([...path, 'rwmixread'], `only applies to mixed rw (${MIXED_RW.join(', ')}), not rw: ${rw}`);
    }
    out.rwmixread = readInt(src, [...path, 'rwmixread'], w.rwmixread, 0, 100);
  }
  if (has(w, 'rate_iops')) out.rateIops = readInt(src, [...path, 'rate_iops'], w.rate_iops, 1, 100_000_000);
  if (has(w, 'extra')) {
    const extra = readMap(src, [...path, 'extra'], w.extra, Object.keys(w.extra ?? {}));
    for (const [key, value] of Object.entries(extra)) {
      const keyPath = [...path, 'extra', key];
      const owned = FIO_OWNED_OPTIONS[key];
      if (owned) src.fail(keyPath, `cannot be set in extra: ${owned}`);
      if (!(FIO_EXTRA_OPTIONS as readonly string[]).includes(key)) {
        const hint = closest(key, FIO_EXTRA_OPTIONS);
        src.fail(
          keyPath,
          `is not an fio option kvmio passes on${hint ? ` (did you mean "${hint}"?)` : ''}; allowed (README, Safety): ${FIO_EXTRA_OPTIONS.join(', ')}`,
        );
      }
      if (!['string', 'number', 'boolean'].includes(typeof value)) {
        src.fail(keyPath, 'expected a text, a number or true/false (passed to fio as --key=value)');
      }
      const text = typeof value === 'boolean' ? (value ? '1' : '0') : String(value);
      if (!FIO_VALUE_PATTERN.test(text))
        src.fail(keyPath, `${describe(text)} is not allowed: ${FIO_VALUE_HELP}`);
      out.extra[key] = text;
    }
  }
  return out;
}

function readSweep(src: YamlSource, path: KeyPath, w: Record<string, unknown>, name: string): SweepWorkload {
  const d = WORKLOAD_DEFAULTS.sweep;
  const { job, size } = readJob(src, path, w, d);
  const out: SweepWorkload = {
    kind: 'sweep',
    name,
    ...job,
    fromShare: has(w, 'from') ? readShare(src, [...path, 'from'], w.from, 0.01, 0.99) : d.from,
  };
  if (size !== undefined) out.sizeBytes = size;
  if (has(w, 'iodepths')) {
    if (has(w, 'steps') || has(w, 'from')) {
      src.fail(
        [...path, 'iodepths'],
        'use either iodepths (a queue-depth sweep) or steps/from (a rate-limited sweep), not both',
      );
    }
    out.iodepths = readList(src, [...path, 'iodepths'], w.iodepths, (p, v) => readInt(src, p, v, 1, 4096), {
      unique: true,
      nonEmpty: true,
    });
  } else {
    out.steps = has(w, 'steps') ? readInt(src, [...path, 'steps'], w.steps, 2, 100) : d.steps;
  }
  return out;
}

function readPgbench(
  src: YamlSource,
  path: KeyPath,
  w: Record<string, unknown>,
  name: string,
): PgbenchWorkload {
  const d = WORKLOAD_DEFAULTS.pgbench;
  const out: PgbenchWorkload = {
    kind: 'pgbench',
    name,
    scale: has(w, 'scale') ? readInt(src, [...path, 'scale'], w.scale, 1, 100_000) : d.scale,
    clients: has(w, 'clients')
      ? readList(src, [...path, 'clients'], w.clients, (p, v) => readInt(src, p, v, 1, 1000), {
          allowScalar: true,
          unique: true,
          nonEmpty: true,
        })
      : [...d.clients],
    runtimeSeconds: has(w, 'runtime')
      ? readDuration(src, [...path, 'runtime'], w.runtime, 1, MAX_RUNTIME)
      : d.runtime,
    readOnly: has(w, 'readonly') ? readBool(src, [...path, 'readonly'], w.readonly) : d.readonly,
  };
  if (has(w, 'rates')) {
    out.rates = readList(src, [...path, 'rates'], w.rates, (p, v) => readInt(src, p, v, 1, 10_000_000), {
      allowScalar: true,
      unique: true,
      nonEmpty: true,
    });
  }
  return out;
}

function readRsync(src: YamlSource, path: KeyPath, w: Record<string, unknown>, name: string): RsyncWorkload {
  const d = WORKLOAD_DEFAULTS.rsync;
  const sizeLimits = { min: 1, max: GIB };
  const out: RsyncWorkload = {
    kind: 'rsync',
    name,
    files: has(w, 'files') ? readInt(src, [...path, 'files'], w.files, 1, 100_000_000) : d.files,
    sizeBytes: d.size,
    seed: has(w, 'seed') ? readInt(src, [...path, 'seed'], w.seed, 0, 2 ** 31 - 1) : d.seed,
  };
  const ranged = has(w, 'size_min') || has(w, 'size_max');
  if (ranged) {
    if (has(w, 'size'))
      src.fail([...path, 'size'], 'use either size (every file the same) or size_min/size_max, not both');
    for (const key of ['size_min', 'size_max'])
      if (!has(w, key)) src.fail([...path, key], 'missing: size_min and size_max go together');
    const min = readSize(src, [...path, 'size_min'], w.size_min, sizeLimits);
    const max = readSize(src, [...path, 'size_max'], w.size_max, sizeLimits);
    if (min > max) src.fail([...path, 'size_max'], `is smaller than size_min (${w.size_min})`);
    out.sizeMinBytes = min;
    out.sizeMaxBytes = max;
    out.sizeBytes = Math.round((min + max) / 2);
  } else if (has(w, 'size')) {
    out.sizeBytes = readSize(src, [...path, 'size'], w.size, sizeLimits);
  }
  return out;
}

const KIND_KEYS: Record<(typeof KINDS)[number], string[]> = {
  fio: [
    'rw',
    'bs',
    'iodepth',
    'numjobs',
    'runtime',
    'ramp',
    'size',
    'rwmixread',
    'rate_iops',
    'ioengine',
    'extra',
  ],
  sweep: ['rw', 'bs', 'iodepth', 'numjobs', 'runtime', 'ramp', 'size', 'steps', 'from', 'iodepths'],
  pgbench: ['scale', 'clients', 'rates', 'runtime', 'readonly'],
  rsync: ['files', 'size', 'size_min', 'size_max', 'seed'],
};

/** A readable default name, e.g. `randread-4k-qd1`, so short workload lists need no names. */
function defaultName(kind: string, w: Record<string, unknown>): string {
  const bs = String(w.bs ?? '4k')
    .toLowerCase()
    .replace(/i?b$/, '');
  if (kind === 'fio')
    return `${w.rw ?? WORKLOAD_DEFAULTS.fio.rw}-${bs}-qd${w.iodepth ?? WORKLOAD_DEFAULTS.fio.iodepth}`;
  if (kind === 'sweep') return `sweep-${w.rw ?? WORKLOAD_DEFAULTS.sweep.rw}-${bs}`;
  return kind;
}

export function readWorkload(src: YamlSource, path: KeyPath, value: unknown): Workload {
  if (!isPlainMap(value)) {
    src.fail(
      path,
      `is ${describe(value)}, expected a map such as { kind: fio, rw: randread, bs: 4k, iodepth: 1 }`,
    );
  }
  if (!has(value, 'kind')) src.fail([...path, 'kind'], `missing; allowed: ${KINDS.join(', ')}`);
  const kind = readEnum(src, [...path, 'kind'], value.kind, KINDS);
  const w = readMap(src, path, value, ['kind', 'name', ...KIND_KEYS[kind]]);
  const name = has(w, 'name')
    ? readString(src, [...path, 'name'], w.name, NAME_PATTERN, NAME_HELP)
    : defaultName(kind, w);
  switch (kind) {
    case 'fio':
      return readFio(src, path, w, name);
    case 'sweep':
      return readSweep(src, path, w, name);
    case 'pgbench':
      return readPgbench(src, path, w, name);
    case 'rsync':
      return readRsync(src, path, w, name);
  }
}

export function readWorkloads(src: YamlSource, value: unknown): Workload[] {
  const path = ['workloads'];
  if (value === undefined)
    src.fail(
      path,
      'missing: give at least one workload, e.g. - { kind: fio, rw: randread, bs: 4k, iodepth: 1 }',
    );
  const workloads = readList(src, path, value, (p, v) => readWorkload(src, p, v), { nonEmpty: true });
  workloads.forEach((w, i) => {
    const first = workloads.findIndex((o) => o.name === w.name);
    if (first !== i) {
      src.fail(
        [...path, i, 'name'],
        `"${w.name}" is already the name of workloads[${first}]: give each workload its own name:`,
      );
    }
  });
  return workloads;
}
