import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import type { RunEventSink } from '../../src/engine/events.js';
import { type RunStudyResult, runStudy } from '../../src/engine/run.js';
import { type PointRecord, Store } from '../../src/store/store.js';
import type { Study } from '../../src/study/types.js';

/**
 * Shared by e2e tests that run a small study end to end under TCG and read back what it stored:
 * where its files go, the run itself with its store, and the check that every point came out ok.
 */

/**
 * A temporary directory for a test file's studies and stores, and a disk path in /var/tmp for the
 * libvirt backend (libvirt's QEMU cannot enter mkdtemp's 0700 directories). Both go after the file's
 * tests, with the qcow2 image kvmio makes beside the disk.
 */
export function studyScratch(name: string): { dir: string; libvirtDisk: string } {
  const dir = mkdtempSync(join(tmpdir(), `kvmio-e2e-${name}-`));
  const libvirtDisk = `/var/tmp/kvmio-e2e-${name}-${process.pid}.raw`;
  after(() => {
    rmSync(dir, { recursive: true, force: true });
    for (const p of [libvirtDisk, `${libvirtDisk}.qcow2`]) rmSync(p, { force: true });
  });
  return { dir, libvirtDisk };
}

/** A finished run of a study, its store still open. */
export interface StudyRun {
  store: Store;
  result: RunStudyResult;
  runId: string;
  points: PointRecord[];
  /** The run's points and failures, for assertion messages: why a run did not come out as expected. */
  why: string;
}

/**
 * Runs `study` under TCG into a new store at `storePath`, hands the run to `inspect` while the store
 * is open, and closes the store whatever happened.
 */
export async function withStudyRun<T>(
  study: Study,
  storePath: string,
  inspect: (run: StudyRun) => T | Promise<T>,
  opts: { onEvent?: RunEventSink } = {},
): Promise<T> {
  const store = Store.open(storePath);
  try {
    const result = await runStudy(study, {
      store,
      accelerator: { accel: 'tcg', reason: 'e2e test' },
      onEvent: opts.onEvent,
    });
    const points = store.points(result.runId);
    const why = JSON.stringify([...points, ...store.failures(result.runId)], null, 1);
    return await inspect({ store, result, runId: result.runId, points, why });
  } finally {
    store.close();
  }
}

/** Asserts that the run completed with exactly `variants`, each ok. Rounds run in a shuffled order: compared as a set. */
export function assertEveryPointOk(run: StudyRun, variants: string[]): void {
  assert.equal(run.result.status, 'complete', run.why);
  assert.deepEqual(
    run.points.map((p) => [p.variant, p.status]).sort(),
    variants.map((v) => [v, 'ok']).sort(),
    run.why,
  );
}

/**
 * A run's event sink that calls `act` at each line of a guest's fio output until `act` returns true:
 * from then on the measured point is under way, the moment tests that break a VM mid-point wait for.
 */
export function untilGuestFioStarts(act: () => boolean): RunEventSink {
  let done = false;
  return (e) => {
    if (!done && e.event === 'log' && e.line.startsWith('guest: ') && e.line.includes('fio')) done = act();
  };
}
