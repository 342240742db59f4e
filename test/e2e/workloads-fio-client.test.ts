import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { freePort } from '../../src/guest/forward.js';
import { run, waitFor } from '../../src/util/proc.js';
import { runFioClients } from '../../src/workloads/fio-client.js';

/**
 * fio client/server as kvmio drives several guests with it, with two real `fio --server` processes on loopback standing in
 * for two guests behind host port forwards.
 */

const dir = mkdtempSync(join(tmpdir(), 'kvmio-fioclient-'));
const disk = join(dir, 'disk.img');
writeFileSync(disk, '');
truncateSync(disk, 64 * 1024 * 1024);
const servers: Array<{ pid?: number; done: Promise<unknown> }> = [];
after(async () => {
  for (const s of servers) {
    if (s.pid !== undefined) {
      try {
        process.kill(s.pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    await s.done;
  }
  rmSync(dir, { recursive: true, force: true });
});

function accepts(port: number): Promise<true | undefined> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(undefined));
  });
}

test('two fio servers driven at once: a step per guest and an aggregate that sums them', async () => {
  const ports = [await freePort(), await freePort()];
  for (const port of ports) {
    const s: { pid?: number; done: Promise<unknown> } = { done: Promise.resolve() };
    s.done = run(['fio', `--server=127.0.0.1,${port}`], {
      allowFailure: true,
      timeoutMs: 120_000,
      onSpawn: (pid) => (s.pid = pid),
    });
    servers.push(s);
  }
  // fio --server listens within a moment; wait until both ports accept connections.
  for (const port of ports) await waitFor(`fio --server on port ${port}`, () => accepts(port), 10_000);
  const steps = await runFioClients(
    ports.map((port) => ({ host: '127.0.0.1', port })),
    {
      name: 'rr',
      rw: 'randread',
      bs: 4096,
      iodepth: 2,
      numjobs: 1,
      runtimeSeconds: 2,
      rampSeconds: 1,
      ioengine: 'libaio',
      extra: {},
    },
    disk,
    null,
    { deadline: Date.now() + 120_000, log: () => undefined, series: false },
  );
  assert.deepEqual(
    steps.map((s) => s.guest),
    [0, 1, 'all'],
  );
  const iops = steps.map((s) => s.metrics.find((m) => m.metric === 'read.iops')?.value ?? 0);
  assert.ok((iops[0] ?? 0) > 0 && (iops[1] ?? 0) > 0);
  assert.equal(iops[2], (iops[0] ?? 0) + (iops[1] ?? 0), 'aggregate IOPS is the sum of the guests');
  const raw = JSON.parse(steps[2]?.artifacts?.fio_json ?? '') as {
    client_stats: Array<{ jobname: string; port: number; read: { iops: number; clat_ns: { mean: number } } }>;
  };
  for (const [guest, port] of ports.entries()) {
    assert.equal(
      iops[guest],
      raw.client_stats.find((j) => j.jobname !== 'All clients' && j.port === port)?.read.iops,
    );
  }
  const all = raw.client_stats.find((j) => j.jobname === 'All clients');
  assert.equal(
    steps[2]?.metrics.find((m) => m.metric === 'read.clat_mean_ns')?.value,
    all?.read.clat_ns.mean,
  );
  assert.match(steps[2]?.artifacts?.fio_job ?? '', /^\[rr\]\nfilename=/);
});
