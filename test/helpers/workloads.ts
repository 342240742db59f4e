import type { FioWorkload } from '../../src/study/types.js';

/** An fio workload for tests: a short 4k random read at QD1 unless `over` says otherwise. */
export function fioWorkload(over: Partial<FioWorkload> = {}): FioWorkload {
  return {
    kind: 'fio',
    name: 'randread-qd1',
    rw: 'randread',
    bs: 4096,
    iodepth: 1,
    numjobs: 1,
    runtimeSeconds: 2,
    rampSeconds: 1,
    ioengine: 'libaio',
    extra: {},
    ...over,
  };
}
