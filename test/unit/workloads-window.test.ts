import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { blockRequests } from '../../src/qemu/blockstats.js';
import { sleep } from '../../src/util/proc.js';
import { duringWindow, type WindowMeter } from '../../src/workloads/window.js';

const recorded = JSON.parse(
  readFileSync(
    fileURLToPath(new URL('../../../test/fixtures/qmp/query-blockstats.json', import.meta.url)),
    'utf8',
  ),
) as Array<{ stats: Record<string, number>; parent?: { stats: Record<string, number> } }>;

test('blockRequests: reads and writes of the devices, not counted again for their file nodes', () => {
  assert.equal(blockRequests(recorded), 0);
  const busy = structuredClone(recorded);
  for (const e of busy) {
    e.stats.rd_operations = 5;
    e.stats.wr_operations = 7;
    if (e.parent) e.parent.stats.rd_operations = 5;
  }
  assert.equal(blockRequests(busy), 12 * busy.length);
  assert.throws(() => blockRequests({ error: 'x' }), /not a list/);
});

/** A meter that records when it ran. */
function clockMeter(log: { openedAt?: number; closedAt?: number }): () => Promise<WindowMeter> {
  return async () => {
    log.openedAt = performance.now();
    return {
      stop: async () => {
        log.closedAt = performance.now();
        return {};
      },
      cancel: () => undefined,
    };
  };
}

test('duringWindow: with ioStarted, the ramp counts from the first I/O and the window stays inside the run', async () => {
  const t0 = performance.now();
  // The "tool" starts its I/O 400 ms after launch and ends 400 + 200 (ramp) + 600 (runtime) ms after.
  const ioAt = t0 + 400;
  let endedAt = Number.POSITIVE_INFINITY;
  const work = sleep(1200).then(() => {
    endedAt = performance.now();
    return 'done';
  });
  const log: { openedAt?: number; closedAt?: number } = {};
  const r = await duringWindow(work, 200, 600, clockMeter(log), async () => performance.now() >= ioAt);
  assert.equal(r.result, 'done');
  const opened = (log.openedAt ?? 0) - t0;
  const closed = (log.closedAt ?? 0) - t0;
  assert.ok(opened >= 600, `window opened ${opened} ms after launch: after the I/O began and the ramp`);
  // Closed by its own length (600 ms less how late the I/O was seen), or at the latest when the run ended.
  assert.ok(
    closed <= endedAt - t0 + 50,
    `window closed ${closed} ms after launch, run ended ${endedAt - t0}`,
  );
  assert.ok(closed > opened, `window of ${closed - opened} ms`);
});

test('duringWindow: without ioStarted, the window is timed from the launch', async () => {
  const t0 = performance.now();
  const log: { openedAt?: number; closedAt?: number } = {};
  await duringWindow(sleep(700), 200, 300, clockMeter(log));
  const opened = (log.openedAt ?? 0) - t0;
  assert.ok(opened >= 190, `opened at ${opened} ms, after the ramp`);
});
