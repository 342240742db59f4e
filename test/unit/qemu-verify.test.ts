import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { qemuBinary } from '../../src/qemu/binary.js';
import { qemuCapabilities } from '../../src/qemu/capabilities.js';
import { aioFallbackWarnings } from '../../src/qemu/verify.js';
import { startQemuVm } from '../../src/qemu/vm.js';
import type { AioMode } from '../../src/study/types.js';
import { makeTestDisk, qemuPids, testStudy, testVariant } from '../helpers/vm.js';

/**
 * Live verification catches a QEMU that runs another aio mode than the variant asks, on whichever
 * QEMU $KVMIO_QEMU names (7.2 sets aio contexts up at open, recent QEMU on the first request). Each
 * VM starts paused (-S, no guest).
 */
const disk = makeTestDisk(64 * 1024 * 1024);
const scratch = mkdtempSync(join(tmpdir(), 'kvmio-verify-'));
after(() => {
  disk.remove();
  rmSync(scratch, { recursive: true, force: true });
});
const study = testStudy(disk.path, { memoryMiB: 128 });

test('a VM whose test disk runs another aio mode than the variant says fails verification', async () => {
  const before = qemuPids().length;
  const cases: Array<[ran: AioMode, asked: AioMode, why: RegExp]> = [
    ['threads', 'native', /aio=native asked, but QEMU has no Linux AIO context/],
    ['threads', 'io_uring', /aio=io_uring asked, but QEMU has no io_uring instance/],
    ['io_uring', 'native', /aio=native asked, but QEMU has no Linux AIO context/],
    ['native', 'io_uring', /aio=io_uring asked, but QEMU has no io_uring instance/],
    ['native', 'threads', /aio=threads asked, but QEMU has 1 Linux AIO and 0 io_uring contexts/],
  ];
  for (const [ran, asked, why] of cases) {
    for (const iothreads of [0, 1]) {
      const vm = await startQemuVm({
        study,
        variant: testVariant({ aio: ran, iothreads }),
        accel: 'tcg',
        paused: true,
        name: `verify-${ran}-${iothreads}`,
      });
      try {
        // What kvmio believes the VM runs, while QEMU runs `ran`.
        vm.variant = testVariant({ aio: asked, iothreads });
        await assert.rejects(
          vm.verifyLive({ fresh: true }),
          why,
          `${ran} run as ${asked}, iothreads ${iothreads}`,
        );
        vm.variant = testVariant({ aio: ran, iothreads });
        await vm.verifyLive({ fresh: true });
      } finally {
        await vm.stop();
      }
    }
  }
  assert.equal(qemuPids().length, before, 'no QEMU left running');
});

test("a test disk whose zero detection is not the variant's fails verification (QMP's detect_zeroes)", async () => {
  const before = qemuPids().length;
  const vm = await startQemuVm({
    study,
    variant: testVariant({ aio: 'threads', detectZeroes: 'on' }),
    accel: 'tcg',
    paused: true,
    name: 'verify-dz',
  });
  try {
    vm.variant = testVariant({ aio: 'threads' });
    await assert.rejects(vm.verifyLive({ fresh: true }), /kvmio-test detect_zeroes is "on", expected "off"/);
    vm.variant = testVariant({ aio: 'threads', detectZeroes: 'unmap' });
    await assert.rejects(
      vm.verifyLive({ fresh: true }),
      /kvmio-test detect_zeroes is "on", expected "unmap"/,
    );
    vm.variant = testVariant({ aio: 'threads', detectZeroes: 'on' });
    await vm.verifyLive({ fresh: true });
  } finally {
    await vm.stop();
  }
  assert.equal(qemuPids().length, before, 'no QEMU left running');
});

test('a QEMU that cannot set up io_uring or Linux AIO fails the point with its own words', async (t) => {
  // The QEMU runs under a seccomp filter that fails io_uring_setup and io_setup with EPERM, as a
  // container's seccomp profile does; nothing outside this one process changes.
  const qemu = qemuBinary();
  const wrapper = join(scratch, 'qemu-denied');
  const helper = fileURLToPath(new URL('../../../test/helpers/deny-syscalls.py', import.meta.url));
  writeFileSync(wrapper, `#!/bin/sh\nexec python3 '${helper}' io_uring_setup,io_setup -- '${qemu}' "$@"\n`);
  chmodSync(wrapper, 0o755);
  const { major } = (await qemuCapabilities(qemu)).version;
  for (const [aio, warning] of [
    ['io_uring', /Unable to use linux io_uring, falling back to thread pool: .*Operation not permitted/],
    ['native', /Unable to use Linux AIO, falling back to thread pool: .*Operation not permitted/],
  ] as const) {
    const start = startQemuVm({
      study,
      variant: testVariant({ aio, iothreads: 1 }),
      accel: 'tcg',
      paused: true,
      binary: wrapper,
      name: `denied-${aio}`,
    });
    const err = await start.then(
      async (vm) => {
        await vm.stop();
        assert.fail(`aio=${aio} verified on a QEMU that cannot set it up`);
      },
      (e: Error) => e,
    );
    t.diagnostic(`QEMU ${major}, aio=${aio}: ${err.message}`);
    const fellBack = new RegExp(
      `aio=${aio} asked, but QEMU fell back to the thread pool: .*${warning.source}`,
    );
    // QEMU 7.2 sets the context up when it opens the node and exits when it cannot; QEMU 10 carries
    // on with the thread pool and says so on stderr (versions between: either, as they do).
    const exited = /exited with code 1 unexpectedly: .*Unable to use (io_uring|native AIO|Linux AIO)/is;
    if (major >= 10) assert.match(err.message, fellBack);
    else if (major <= 7) assert.match(err.message, exited);
    else assert.ok(fellBack.test(err.message) || exited.test(err.message), err.message);
  }
});

test('QEMU fallback warnings are picked out of stderr, each once', () => {
  // Lines as QEMU 10.0.2 (Debian bookworm-backports) printed them under the test above.
  const stderr = [
    'qemu-system-x86_64: Unable to use linux io_uring, falling back to thread pool: failed to init linux io_uring ring: Operation not permitted',
    'qemu-system-x86_64: terminating on signal 15',
    'qemu-system-x86_64: Unable to use linux io_uring, falling back to thread pool: failed to init linux io_uring ring: Operation not permitted',
    'qemu-system-x86_64: Unable to use Linux AIO, falling back to thread pool: failed to create linux AIO context: Operation not permitted',
  ].join('\n');
  assert.deepEqual(aioFallbackWarnings(stderr), [
    'Unable to use linux io_uring, falling back to thread pool: failed to init linux io_uring ring: Operation not permitted',
    'Unable to use Linux AIO, falling back to thread pool: failed to create linux AIO context: Operation not permitted',
  ]);
  assert.deepEqual(
    aioFallbackWarnings('qemu-system-x86_64: warning: host doesnt support requested feature'),
    [],
  );
  assert.deepEqual(aioFallbackWarnings(undefined), []);
});
