import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureGuest, GUEST_KERNEL_CMDLINE } from '../src/guest/build.js';
import type { GuestVm } from '../src/guest/vm.js';
import { probeAccelerator } from '../src/host/accel.js';
import { hostFacts } from '../src/host/facts.js';
import { startQemuVm } from '../src/qemu/vm.js';
import { lockDisk } from '../src/safety/lock.js';
import { seededRandom } from '../src/study/shuffle.js';
import type { FioWorkload } from '../src/study/types.js';
import { errorMessage, UserError } from '../src/util/errors.js';
import { run } from '../src/util/proc.js';
import { formatBytes } from '../src/util/units.js';
import { runWorkload, type WorkloadResult } from '../src/workloads/index.js';
import { cpuAccounting } from './bench/cpu.js';
import { racing } from './bench/racing.js';
import { repetitionsNeeded } from './bench/reps.js';
import {
  BENCH_DISK_BYTES,
  BENCH_VARIANT,
  type BenchOptions,
  benchDisk,
  cv,
  median,
  pct,
} from './bench/shared.js';
import { storeScale } from './bench/store-scale.js';
import { timeToAnswer } from './bench/time.js';

/**
 * kvmio's own benchmark: each figure measures kvmio against the plain tool, side by side in one
 * run, and rewrites its own section of BENCHMARKS.md (sections of figures not run are kept as they are).
 *
 *   node dist/scripts/bench.js [--only ID,...] [--quick] [--rounds N] [--runtime S] [--disk PATH] [--destroy-data PATH]
 */

interface Figure {
  id: string;
  title: string;
  /** Returns the Markdown body of the figure's section; undefined for a figure not built yet. */
  run?: (opts: BenchOptions) => Promise<string>;
}

// ---- statistics: ratio of medians with a bootstrap interval ------------------------------------------

/** 95% percentile-bootstrap interval of median(a)/median(b), resampling each side independently. */
function ratioInterval(a: readonly number[], b: readonly number[], resamples = 2000): [number, number] {
  const rand = seededRandom('12345');
  const pick = (xs: readonly number[]) => Array.from(xs, () => xs[Math.floor(rand() * xs.length)] as number);
  const ratios = Array.from({ length: resamples }, () => median(pick(a)) / median(pick(b))).sort(
    (x, y) => x - y,
  );
  return [
    ratios[Math.floor(0.025 * resamples)] as number,
    ratios[Math.ceil(0.975 * resamples) - 1] as number,
  ];
}

// ---- figure 1, host: the host baseline through kvmio against bare fio --------------------------------

interface FidelityJob {
  name: string;
  rw: 'randread' | 'randwrite' | 'read';
  bs: number;
  iodepth: number;
}

const FIDELITY_JOBS: FidelityJob[] = [
  { name: 'randread-4k-qd1', rw: 'randread', bs: 4096, iodepth: 1 },
  { name: 'randread-4k-qd32', rw: 'randread', bs: 4096, iodepth: 32 },
  { name: 'randwrite-4k-qd1', rw: 'randwrite', bs: 4096, iodepth: 1 },
  { name: 'read-1m-qd8', rw: 'read', bs: 1 << 20, iodepth: 8 },
];

const FIDELITY_DISK_BYTES = BENCH_DISK_BYTES;

/** fio as a user would type it by hand: written out here on purpose, not taken from kvmio's argv builder. */
function bareFioArgv(job: FidelityJob, disk: string, o: BenchOptions): string[] {
  return [
    'fio',
    `--name=${job.name}`,
    `--filename=${disk}`,
    '--direct=1',
    '--ioengine=libaio',
    `--rw=${job.rw}`,
    `--bs=${job.bs}`,
    `--iodepth=${job.iodepth}`,
    '--numjobs=1',
    '--time_based',
    `--runtime=${o.runtimeSeconds}`,
    `--ramp_time=${o.rampSeconds}`,
    '--output-format=json',
  ];
}

interface Sample {
  iops: number;
  clatMeanNs: number;
}

async function bareFio(job: FidelityJob, disk: string, o: BenchOptions): Promise<Sample> {
  const r = await run(bareFioArgv(job, disk, o), {
    timeoutMs: (o.runtimeSeconds + o.rampSeconds + 60) * 1000,
  });
  return fioSample(r.stdout, job);
}

async function kvmioHostFio(job: FidelityJob, disk: string, o: BenchOptions): Promise<Sample> {
  return kvmioSample(await runWorkload({ kind: 'host', diskPath: disk }, fioWorkload(job, o)), job);
}

/** The disk for the host baseline: kvmio's own file, written once so reads hit real blocks, not holes. */
const fidelityDisk = benchDisk;

type Runner = (job: FidelityJob) => Promise<Sample>;

/** Runs every job `rounds` times on both sides, interleaved; returns the samples per job and side. */
async function interleaved(o: BenchOptions, jobs: FidelityJob[], bare: Runner, kvmio: Runner) {
  const samples = new Map(jobs.map((j) => [j.name, { bare: [] as Sample[], kvmio: [] as Sample[] }]));
  for (let round = 1; round <= o.rounds; round++) {
    for (const job of jobs) {
      // Alternate who goes first so that drift (page cache, device state, other load) hits both equally.
      const order = round % 2 ? (['bare', 'kvmio'] as const) : (['kvmio', 'bare'] as const);
      for (const who of order) {
        const s = await (who === 'bare' ? bare : kvmio)(job);
        samples.get(job.name)?.[who].push(s);
        o.log(`round ${round}/${o.rounds} ${job.name} ${who}: ${Math.round(s.iops)} IOPS`);
      }
    }
  }
  return samples;
}

/** The table and verdict of a fidelity figure (goal: every IOPS ratio within 2%). */
function fidelityTable(samples: Map<string, { bare: Sample[]; kvmio: Sample[] }>, sideName: string): string {
  const rows: string[] = [];
  let worst = 0;
  let noiseExplains = true;
  for (const [name, { bare, kvmio }] of samples) {
    const iopsB = bare.map((s) => s.iops);
    const iopsK = kvmio.map((s) => s.iops);
    const ratio = median(iopsK) / median(iopsB);
    const [lo, hi] = ratioInterval(iopsK, iopsB);
    const latRatio = median(kvmio.map((s) => s.clatMeanNs)) / median(bare.map((s) => s.clatMeanNs));
    worst = Math.max(worst, Math.abs(ratio - 1));
    if (Math.abs(ratio - 1) > 0.02 && (lo > 1 || hi < 1)) noiseExplains = false;
    rows.push(
      `| ${name} | ${Math.round(median(iopsB))} | ${Math.round(median(iopsK))} | ${ratio.toFixed(3)} (${pct(ratio)}) | ` +
        `${lo.toFixed(3)}–${hi.toFixed(3)} | ${(cv(iopsB) * 100).toFixed(1)}% | ${latRatio.toFixed(3)} | ${Math.abs(ratio - 1) <= 0.02 ? 'yes' : 'no'} |`,
    );
  }
  const verdict =
    worst <= 0.02
      ? `**Goal met**: every IOPS ratio is within 2% (largest deviation ${(worst * 100).toFixed(1)}%).`
      : `**Goal missed**: the largest IOPS deviation is ${(worst * 100).toFixed(1)}% (goal 2%). ` +
        (noiseExplains
          ? "Every 95% interval contains 1 and bare fio's own run-to-run spread (CV) is of the same size: on this " +
            'machine the difference is noise, not a cost of kvmio; a quieter host or more rounds (`--rounds`) are needed to resolve 2%.'
          : 'At least one interval excludes 1: kvmio changes that result; see the rows whose interval excludes 1.');
  return [
    `| job | bare fio IOPS (median) | ${sideName} IOPS (median) | IOPS ratio | 95% interval | bare fio CV | mean clat ratio | within 2% |`,
    '|---|---:|---:|---:|---:|---:|---:|:---:|',
    ...rows,
    '',
    verdict,
  ].join('\n');
}

async function fidelityHost(o: BenchOptions): Promise<string> {
  const disk = await fidelityDisk(o);
  const release = lockDisk(disk);
  let samples: Awaited<ReturnType<typeof interleaved>>;
  try {
    samples = await interleaved(
      o,
      FIDELITY_JOBS,
      (job) => bareFio(job, disk, o),
      (job) => kvmioHostFio(job, disk, o),
    );
  } finally {
    release();
  }
  return [
    `Bare fio against the host baseline run through kvmio (\`runWorkload({kind: 'host'})\`, which also samples`,
    `host CPU during the measured window), same job, same ${formatBytes(FIDELITY_DISK_BYTES)} preallocated and`,
    `fully written disk file, interleaved (who goes first alternates), ${o.rounds} rounds of`,
    `${o.rampSeconds} s ramp + ${o.runtimeSeconds} s measured each. Ratio = median(kvmio) / median(bare);`,
    'the interval is a 95% percentile bootstrap of that ratio over the rounds.',
    '',
    fidelityTable(samples, 'kvmio host'),
  ].join('\n');
}

/** Parses fio's JSON (possibly preceded by warnings) into the sample of the job's direction. */
function fioSample(text: string, job: FidelityJob): Sample {
  const j = JSON.parse(text.slice(text.indexOf('{'))) as {
    jobs: {
      read: { iops: number; clat_ns: { mean: number } };
      write: { iops: number; clat_ns: { mean: number } };
    }[];
  };
  const d = j.jobs[0]?.[job.rw === 'randwrite' ? 'write' : 'read'];
  if (!d) throw new Error(`fio ${job.name}: no job in its JSON`);
  return { iops: d.iops, clatMeanNs: d.clat_ns.mean };
}

function fioWorkload(job: FidelityJob, o: BenchOptions): FioWorkload {
  return {
    kind: 'fio',
    name: job.name,
    rw: job.rw,
    bs: job.bs,
    iodepth: job.iodepth,
    numjobs: 1,
    runtimeSeconds: o.runtimeSeconds,
    rampSeconds: o.rampSeconds,
    ioengine: 'libaio',
    extra: {},
  };
}

function kvmioSample(result: WorkloadResult, job: FidelityJob): Sample {
  const dir = job.rw === 'randwrite' ? 'write' : 'read';
  const metric = (name: string) => result.steps[0]?.metrics.find((m) => m.metric === `${dir}.${name}`)?.value;
  const iops = metric('iops');
  const clat = metric('clat_mean_ns');
  if (iops === undefined || clat === undefined)
    throw new Error(`kvmio ${job.name}: no ${dir}.iops/clat in its metrics`);
  return { iops, clatMeanNs: clat };
}

// ---- figure 1, guest: guest fio through kvmio against fio typed by hand in the same guest -------------

async function fidelityGuest(o: BenchOptions): Promise<string> {
  const disk = await fidelityDisk(o);
  const release = lockDisk(disk);
  const { accel, reason } = await probeAccelerator({ log: o.log });
  const image = await ensureGuest({ log: o.log });
  let vm: GuestVm | undefined;
  let samples: Awaited<ReturnType<typeof interleaved>>;
  try {
    vm = await startQemuVm({
      study: {
        guest: { vcpus: 2, memoryBytes: 1 << 30, count: 1 },
        disk: { path: disk, sizeBytes: FIDELITY_DISK_BYTES },
        source: 'bench',
      },
      variant: BENCH_VARIANT,
      image: { kernel: image.kernel, initrd: image.initrd, cmdline: GUEST_KERNEL_CMDLINE },
      accel,
      log: o.log,
    });
    const guest = vm;
    const testDisk = await guest.testDisk();
    const timeoutMs = (2 * (o.runtimeSeconds + o.rampSeconds) + 120) * 1000;
    samples = await interleaved(
      o,
      FIDELITY_JOBS,
      async (job) => {
        const out = `/tmp/bench-${job.name}.json`;
        const r = await guest.exec([...bareFioArgv(job, testDisk, o), `--output=${out}`], { timeoutMs });
        if (r.exitCode !== 0)
          throw new Error(`guest fio ${job.name} exited ${r.exitCode}: ${r.stderr.trim()}`);
        return fioSample((await guest.readFile(out)).toString('utf8'), job);
      },
      async (job) => kvmioSample(await runWorkload({ kind: 'guest', vm: guest }, fioWorkload(job, o)), job),
    );
  } finally {
    await vm?.stop();
    release();
  }
  return [
    `fio typed by hand in the guest (through the guest agent, output to a file) against the same job run by`,
    `kvmio's guest workload (\`runWorkload({kind: 'guest'})\`, which also samples host CPU per QEMU thread and`,
    `guest CPU during the window), one VM (variant ${BENCH_VARIANT.id}, accelerator ${accel}: ${reason.split(':')[0]}),`,
    `same disk as above, interleaved, ${o.rounds} rounds of ${o.rampSeconds} s ramp + ${o.runtimeSeconds} s each.`,
    '',
    fidelityTable(samples, 'kvmio guest'),
  ].join('\n');
}

const FIGURES: Figure[] = [
  {
    id: 'fidelity-host',
    title: '1a. Fidelity: the host baseline through kvmio against bare fio',
    run: fidelityHost,
  },
  {
    id: 'fidelity-guest',
    title: '1b. Fidelity: guest fio through kvmio against fio by hand in the same guest',
    run: fidelityGuest,
  },
  {
    id: 'cpu-accounting',
    title: '2. CPU accounting: per-class CPU against /proc and pidstat',
    run: cpuAccounting,
  },
  {
    id: 'time-to-answer',
    title: '3. Time to answer: share of wall time inside measured windows',
    run: timeToAnswer,
  },
  { id: 'store-scale', title: '4. Scale of the store and report', run: storeScale },
  {
    id: 'repetitions',
    title: '5. Repetitions needed to tell a 5% difference at QD1',
    run: repetitionsNeeded,
  },
  { id: 'racing', title: '6. Racing: the stopping rule and a study fixed against raced', run: racing },
];

// ---- BENCHMARKS.md: one section per figure, rewritten only for the figures that ran ---------------------

const BENCH_FILE = 'BENCHMARKS.md';

function section(id: string, title: string, body: string): string {
  return `<!-- figure:${id} -->\n## ${title}\n\n${body}\n<!-- /figure:${id} -->`;
}

function existingSections(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/<!-- figure:([\w-]+) -->[\s\S]*?<!-- \/figure:\1 -->/g))
    out.set(m[1] as string, m[0]);
  return out;
}

async function machineLine(): Promise<string> {
  const f = await hostFacts();
  return (
    `Measured on ${f.hostname}: ${f.cpu.model}, ${f.cpu.logicalCpus} logical CPUs, ${formatBytes(f.memoryBytes)} RAM, ` +
    `${f.os ?? 'Linux'} kernel ${f.kernel}, QEMU ${f.qemu.version ?? '?'}, fio ${f.fio.version ?? '?'}, kvmio ${f.kvmioVersion}.`
  );
}

function writeBenchFile(file: string, done: Map<string, string>, header: string[]): void {
  const old = existsSync(file) ? existingSections(readFileSync(file, 'utf8')) : new Map<string, string>();
  const sections = FIGURES.map(
    (f) => done.get(f.id) ?? old.get(f.id) ?? section(f.id, f.title, '_Not measured yet._'),
  );
  writeFileSync(file, `${[...header, '', ...sections].join('\n')}\n`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      runtime: { type: 'string' },
      ramp: { type: 'string', default: '1' },
      disk: { type: 'string', default: '/var/tmp/kvmio-bench/fidelity.raw' },
      'destroy-data': { type: 'string', multiple: true, default: [] },
      out: { type: 'string', default: BENCH_FILE },
    },
  });
  const count = (name: string, v: string | undefined, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min)
      throw new UserError(`--${name}: ${v} is not a whole number ≥ ${min}`);
    return n;
  };
  const wanted = values.only ? values.only.split(',') : FIGURES.map((f) => f.id);
  const unknown = wanted.filter((id) => !FIGURES.some((f) => f.id === id));
  if (unknown.length)
    throw new UserError(
      `--only: unknown figure ${unknown.join(', ')} (known: ${FIGURES.map((f) => f.id).join(', ')})`,
    );
  const disk = resolve(values.disk as string);
  if (disk.startsWith('/var/tmp/kvmio-bench/'))
    mkdirSync('/var/tmp/kvmio-bench', { recursive: true, mode: 0o700 });
  const opts: BenchOptions = {
    // --quick: a smoke run of every figure (few rounds, short jobs); explicit values still win.
    rounds: count('rounds', values.rounds ?? (values.quick ? '2' : '6'), 2),
    runtimeSeconds: count('runtime', values.runtime ?? (values.quick ? '2' : '3'), 1),
    rampSeconds: count('ramp', values.ramp, 0),
    disk,
    destroyData: values['destroy-data'] as string[],
    quick: values.quick === true,
    log: (line) => process.stderr.write(`bench: ${line}\n`),
  };
  const started = new Date();
  const done = new Map<string, string>();
  const facts = await hostFacts();
  const qemuLine = `QEMU ${facts.qemu.version ?? '?'} (${facts.qemu.binary}).`;
  for (const figure of FIGURES.filter((f) => wanted.includes(f.id))) {
    if (!figure.run) {
      if (values.only) opts.log(`figure ${figure.id} is not built yet`);
      continue;
    }
    opts.log(`figure ${figure.id}`);
    const t0 = Date.now();
    const loadBefore = loadavg()[0] ?? 0;
    let body: string;
    try {
      body = await figure.run(opts);
    } catch (e) {
      if (e instanceof UserError) throw e;
      body = `**Failed**: ${errorMessage(e)}`;
    }
    const took = ((Date.now() - t0) / 1000).toFixed(0);
    const load = `Host load average (1 min): ${loadBefore.toFixed(1)} at the start, ${(loadavg()[0] ?? 0).toFixed(1)} at the end, on ${cpus().length} CPUs.`;
    // A figure rerun on another QEMU than the rest of the file says which, and how to get it again.
    const how = `\n\n${load} ${qemuLine}\nReproduce: \`${process.env.KVMIO_QEMU ? `KVMIO_QEMU=${process.env.KVMIO_QEMU} ` : ''}node dist/scripts/bench.js --only ${figure.id}${opts.quick ? ' --quick' : ''} --rounds ${opts.rounds} --runtime ${opts.runtimeSeconds} --ramp ${opts.rampSeconds}\` (took ${took} s, ${started.toISOString().slice(0, 10)}).`;
    done.set(figure.id, section(figure.id, figure.title, body + how));
  }
  const header = [
    '# kvmio benchmarks',
    '',
    'kvmio measured against the plain tools, side by side in one run (ratios, never absolute times alone).',
    '`make bench` reruns every figure and rewrites this file; `--only ID` reruns one and keeps the others.',
    '',
    await machineLine(),
    `Last run: ${started.toISOString()}, ${done.size} figure(s) in ${Math.round((Date.now() - started.getTime()) / 1000)} s` +
      ' (`make bench`, every figure, must stay under 20 minutes on this machine).',
  ];
  const out = resolve(values.out as string);
  writeBenchFile(out, done, header);
  opts.log(`wrote ${out}`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${errorMessage(e)}\n`);
  process.exit(e instanceof UserError ? e.exitCode : 1);
});
