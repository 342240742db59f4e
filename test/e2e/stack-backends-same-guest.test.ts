import { spawnSync } from 'node:child_process';
import { sameGuestTests } from '../helpers/same-guest.js';
import { qemu10 } from '../helpers/stack.js';

/**
 * The same study booted on both backends runs the same guest on the study's stack: QEMU 10 for the
 * direct backend and as libvirt's <emulator>. There libvirt leaves the raw format layer out, and
 * so must the direct backend.
 */
const version =
  spawnSync(qemu10(), ['-version'], { encoding: 'utf8' }).stdout.match(/version (\S+)/)?.[1] ?? '10';
sameGuestTests({ name: version, path: qemu10(), version });
