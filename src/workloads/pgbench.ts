import type { GuestVm } from '../guest/vm.js';
import type { PgbenchWorkload } from '../study/types.js';
import { PointFailure } from '../util/errors.js';
import type { RunContext } from './fio.js';
import { guestRun, guestTry, mkfsAndMount, unmount } from './guest-cmd.js';
import type { MetricValue, StepResult, WorkloadResult } from './types.js';
import { duringWindow, startGuestMeters, windowArtifacts, windowMetrics } from './window.js';

/**
 * PostgreSQL in the guest, data directory on ext4 on the test disk: initdb, start (jit off, UNIX socket
 * only), `pgbench -i -s scale`, then one timed run per client count (and per --rate), stop, unmount.
 * Every command is argv; the postgres tools run as the postgres user through busybox chpst, found
 * on the guest's PATH (the guest's release decides PostgreSQL's version and directory).
 */

const MOUNT = '/mnt/kvmio-pg';
const PG_HOME = `${MOUNT}/pg`;
const DATA = `${PG_HOME}/data`;
const LOG = `${PG_HOME}/postgres.log`;
const SOCKET_DIR = '/tmp/kvmio-pgsock';

const asPostgres = (tool: string, ...args: string[]) => ['chpst', '-u', 'postgres', tool, ...args];

export interface PgbenchFigures {
  tps: number;
  latMeanMs?: number;
  latStddevMs?: number;
  lagMeanMs?: number;
  transactions?: number;
  failed?: number;
}

/** Reads pgbench's summary as it printed it. */
export function parsePgbenchOutput(text: string): PgbenchFigures {
  const num = (re: RegExp) => {
    const m = re.exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const tps = num(/^tps = (\d+(?:\.\d+)?)/m);
  // A window spent connecting the clients ends with no transaction and no "tps = " line.
  if (tps === undefined && num(/^number of transactions actually processed: (\d+)/m) === 0)
    throw new PointFailure(
      `pgbench completed no transaction with ${num(/^number of clients: (\d+)/m) ?? '?'} client(s) in its ${num(/^duration: (\d+) s/m) ?? '?'} s window (-T also covers connecting the clients): give the workload a longer runtime`,
      { stderrTail: text.trim().slice(-600) },
    );
  if (tps === undefined)
    throw new PointFailure(`pgbench printed no "tps = " line:\n${text.trim().slice(-600)}`);
  return {
    tps,
    latMeanMs: num(/^latency average = (\d+(?:\.\d+)?) ms/m),
    latStddevMs: num(/^latency stddev = (\d+(?:\.\d+)?) ms/m),
    lagMeanMs: num(/^rate limit schedule lag: avg (\d+(?:\.\d+)?)/m),
    transactions: num(/^number of transactions actually processed: (\d+)/m),
    failed: num(/^number of failed transactions: (\d+)/m),
  };
}

export function pgbenchMetrics(f: PgbenchFigures): MetricValue[] {
  const out: MetricValue[] = [{ metric: 'pgbench.tps', value: f.tps, unit: 'tps' }];
  if (f.latMeanMs !== undefined) out.push({ metric: 'pgbench.lat_mean_ms', value: f.latMeanMs, unit: 'ms' });
  if (f.latStddevMs !== undefined)
    out.push({ metric: 'pgbench.lat_stddev_ms', value: f.latStddevMs, unit: 'ms' });
  if (f.lagMeanMs !== undefined) out.push({ metric: 'pgbench.lag_mean_ms', value: f.lagMeanMs, unit: 'ms' });
  if (f.transactions !== undefined)
    out.push({ metric: 'pgbench.transactions', value: f.transactions, unit: 'count' });
  if (f.failed !== undefined) out.push({ metric: 'pgbench.failed', value: f.failed, unit: 'count' });
  return out;
}

/** The runs of a pgbench workload: every client count, each with every rate when rates are given. */
export function pgbenchSteps(
  w: PgbenchWorkload,
): Array<{ clients: number; rate?: number; step: number | string }> {
  const out: Array<{ clients: number; rate?: number; step: number | string }> = [];
  for (const clients of w.clients) {
    if (w.rates?.length) for (const rate of w.rates) out.push({ clients, rate, step: `${clients}@${rate}` });
    else out.push({ clients, step: clients });
  }
  return out;
}

export function pgbenchRunArgv(
  w: PgbenchWorkload,
  clients: number,
  threads: number,
  rate?: number,
): string[] {
  const args = ['-c', String(clients), '-j', String(threads), '-T', String(w.runtimeSeconds)];
  if (rate !== undefined) args.push('-R', String(rate));
  if (w.readOnly) args.push('-S');
  return asPostgres('pgbench', ...args, '-h', SOCKET_DIR, 'postgres');
}

async function startPostgres(vm: GuestVm, w: PgbenchWorkload, ctx: RunContext): Promise<void> {
  const slow = 600_000;
  await mkfsAndMount(vm, MOUNT, slow);
  await guestRun(vm, ['mkdir', '-p', DATA, SOCKET_DIR], 30_000);
  await guestRun(vm, ['chown', 'postgres', PG_HOME, DATA, SOCKET_DIR], 30_000);
  ctx.log('pgbench: initdb');
  await guestRun(
    vm,
    asPostgres('initdb', '-D', DATA, '-A', 'trust', '--no-locale', '-E', 'UTF8', '--no-sync'),
    slow,
  );
  const conf = `${DATA}/postgresql.conf`;
  const settings = [
    '# kvmio: no JIT (its compile time is noise), no TCP',
    'jit = off',
    "listen_addresses = ''",
    `unix_socket_directories = '${SOCKET_DIR}'`,
  ].join('\n');
  await vm.writeFile(conf, `${(await vm.readFile(conf)).toString('utf8')}\n${settings}\n`);
  ctx.log('pgbench: starting postgres');
  try {
    await guestRun(vm, asPostgres('pg_ctl', '-w', '-t', '300', '-D', DATA, '-l', LOG, 'start'), slow);
  } catch (err) {
    const log = await vm.readFile(LOG).then(
      (b) => b.toString('utf8').trim().split('\n').slice(-10).join('\n'),
      () => '(no server log)',
    );
    throw new PointFailure(`${(err as Error).message}\npostgres log:\n${log}`, { stderrTail: log });
  }
  ctx.log(`pgbench: pgbench -i -s ${w.scale}`);
  await guestRun(
    vm,
    asPostgres('pgbench', '-i', '-s', String(w.scale), '-h', SOCKET_DIR, 'postgres'),
    slow * 3,
  );
}

async function stopPostgres(vm: GuestVm): Promise<void> {
  await guestTry(vm, asPostgres('pg_ctl', '-w', '-t', '120', '-D', DATA, '-m', 'fast', 'stop'), 180_000);
  await unmount(vm, MOUNT);
}

export async function runPgbench(vm: GuestVm, w: PgbenchWorkload, ctx: RunContext): Promise<WorkloadResult> {
  const steps: StepResult[] = [];
  try {
    await startPostgres(vm, w, ctx);
    const nproc = Number((await guestRun(vm, ['nproc'], 30_000)).stdout.trim()) || 1;
    for (const s of pgbenchSteps(w)) {
      const argv = pgbenchRunArgv(w, s.clients, Math.min(s.clients, nproc), s.rate);
      ctx.log(`guest: ${argv.join(' ')}`);
      const timeoutMs = Math.max(
        1000,
        Math.min((2 * w.runtimeSeconds + 120) * 1000, ctx.deadline - Date.now()),
      );
      // pgbench has no ramp: the window is its runtime from the moment it was started.
      const { result, window } = await duringWindow(
        guestRun(vm, argv, timeoutMs),
        0,
        w.runtimeSeconds * 1000,
        () => startGuestMeters(vm, ctx.series),
      );
      const printed = `${result.stdout}${result.stderr ? `\n${result.stderr}` : ''}`;
      steps.push({
        step: s.step,
        metrics: [...pgbenchMetrics(parsePgbenchOutput(result.stdout)), ...windowMetrics(window)],
        artifacts: { argv: JSON.stringify(argv), pgbench_output: printed, ...windowArtifacts(window) },
      });
    }
  } finally {
    await stopPostgres(vm);
  }
  return { steps };
}
