import { test } from 'node:test';
import { writeStudy } from '../helpers/kvmio-cli.js';
import { emulatorProblem } from '../helpers/libvirt.js';
import { axisStudy, runAndCheckAxis } from '../helpers/qemu-axis.js';
import { studyScratch } from '../helpers/small-study.js';
import { qemu10 } from '../helpers/stack.js';

/**
 * QEMU version as a matrix axis under libvirt: the system QEMU and QEMU 10 each the `<emulator>` of
 * their own domain (checked in the live XML and by query-version), aio=native with an iothread, 1
 * repetition, fio 2 s under TCG. Where libvirt cannot probe QEMU 10 the test is skipped with
 * libvirt's own words. The disk lives in /var/tmp: libvirt's QEMU cannot enter mkdtemp's 0700 dirs.
 */

const { dir, libvirtDisk: diskPath } = studyScratch('axis');

const skip = emulatorProblem(qemu10()) ?? false;

test('matrix.qemu under libvirt: each QEMU the <emulator> of its own domain, recorded and reported by version', {
  timeout: 900_000,
  skip,
}, () => {
  const study = writeStudy(dir, 'axis', axisStudy({ backend: 'libvirt', diskPath, qemu10: qemu10() }));
  runAndCheckAxis(study, dir);
});
