import type { AccelResult } from '../host/accel.js';

/** The accelerator a run uses and why. */
export type AccelChoice = AccelResult;

/**
 * The modules the run loop drives, loaded on first use: the CLI stays quick to start, and a run that
 * only measures the host never loads the VM backends.
 */

export async function chooseAccelerator(): Promise<AccelChoice> {
  const { probeAccelerator } = await import('../host/accel.js');
  const r = await probeAccelerator();
  return { accel: r.accel, reason: r.reason, warning: r.warning };
}

export async function loadWorkloads(): Promise<typeof import('../workloads/index.js')> {
  return import('../workloads/index.js');
}
