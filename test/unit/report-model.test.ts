/** Pure labelling and classification rules of the report (no measurement data involved). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { libvirtLines } from '../../src/report/conclusion.js';
import type { Series } from '../../src/report/series.js';
import { variantLabel, varyingKnobs } from '../../src/report/series.js';
import { classify } from '../../src/report/workloads.js';
import type { FioWorkload, Variant, Workload } from '../../src/study/types.js';
import { fioWorkload } from '../helpers/workloads.js';

const v = (over: Partial<Variant>): Variant => ({
  id: 'x',
  aio: 'native',
  iothreads: 1,
  bus: 'virtio-blk',
  memory: '4k',
  queues: 1,
  cache: 'none',
  ...over,
});

test("legends use the study's wording", () => {
  assert.equal(variantLabel(v({}), 'x'), 'native (iothread)');
  assert.equal(variantLabel(v({ iothreads: 0 }), 'x'), 'native (no iothread)');
  // An iothread is named alike for every aio mode; the study's "threads" runs in the main loop.
  assert.equal(variantLabel(v({ aio: 'io_uring' }), 'x'), 'io_uring (iothread)');
  assert.equal(variantLabel(v({ aio: 'threads' }), 'x'), 'threads (iothread)');
  assert.equal(variantLabel(v({ aio: 'io_uring', iothreads: 0 }), 'x'), 'io_uring (no iothread)');
  assert.equal(variantLabel(v({ aio: 'threads', iothreads: 0 }), 'x'), 'threads');
  const bothThreads = varyingKnobs([v({ aio: 'threads' }), v({ aio: 'threads', iothreads: 0 })]);
  assert.equal(variantLabel(v({ aio: 'threads', iothreads: 0 }), 'x', bothThreads), 'threads (no iothread)');
  assert.equal(variantLabel(v({ iothreads: 4 }), 'x'), 'native (4 iothreads)');
  assert.equal(variantLabel(undefined, 'host'), 'host');
  const varying = varyingKnobs([v({}), v({ bus: 'virtio-scsi' }), v({ memory: 'hugepages' })]);
  assert.equal(variantLabel(v({ bus: 'virtio-scsi' }), 'x', varying), 'native (iothread) · scsi');
  assert.equal(variantLabel(v({ memory: 'hugepages' }), 'x', varying), 'native (iothread) · hugepages');
  // A knob every variant shares (queues 4 in the seed preset) is not repeated in every label.
  assert.equal(
    variantLabel(v({ queues: 4 }), 'x', varyingKnobs([v({ queues: 4 }), v({ queues: 4, iothreads: 0 })])),
    'native (iothread)',
  );
});

test('charts are chosen by the workload parameters, not by its name', () => {
  const fio = (over: Partial<FioWorkload>): Workload => fioWorkload({ name: 'anything', ...over });
  assert.equal(classify('w', fio({}), new Set()).cls, 'qd1');
  assert.equal(classify('w', fio({ iodepth: 64 }), new Set()).cls, 'iops');
  assert.equal(classify('w', fio({ iodepth: 64 }), new Set()).params, 'BS=4k QD=64');
  assert.equal(
    classify('w', fio({ bs: 16 * 1024 * 1024, iodepth: 16, rw: 'read' }), new Set()).cls,
    'throughput',
  );
  assert.equal(
    classify('w', fio({ bs: 16 * 1024 * 1024, rw: 'write' }), new Set()).rwLabel,
    'Sequential Write',
  );
  assert.equal(classify('w', undefined, new Set(['pgbench.tps'])).cls, 'pgbench');
  assert.equal(classify('w', undefined, new Set(['rsync.seconds'])).cls, 'rsync');
});

test('the recommended configuration is written as libvirt XML', () => {
  const s = (def: Variant) => ({ def }) as Series;
  assert.deepEqual(libvirtLines(s(v({}))), [
    '<iothreads>1</iothreads>',
    "<driver name='qemu' type='raw' cache='none' io='native' iothread='1'/>",
  ]);
  assert.deepEqual(libvirtLines(s(v({ bus: 'virtio-scsi', aio: 'io_uring' }))), [
    '<iothreads>1</iothreads>',
    "<controller type='scsi' model='virtio-scsi'><driver iothread='1'/></controller>",
    "<driver name='qemu' type='raw' cache='none' io='io_uring'/>",
  ]);
  assert.deepEqual(libvirtLines(s(v({ iothreads: 0, memory: 'hugepages' }))), [
    '<memoryBacking><hugepages/></memoryBacking>',
    "<driver name='qemu' type='raw' cache='none' io='native'/>",
  ]);
});
