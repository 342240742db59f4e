/** The data guard and disk locks (see README "Safety"). */
export { type PrepareOptions, prepareDiskFile } from './disk.js';
export { type GuardOptions, guardTarget, type TargetInfo } from './guard.js';
export { lockDisk } from './lock.js';
export { prepareDiskOn } from './remote.js';
