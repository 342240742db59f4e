/** The boot limit both backends wait for a guest's agent: it follows the accelerator, vCPUs, host CPUs and load. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  BOOT_BASE_SECONDS,
  BOOT_MAX_FACTOR,
  bootLimit,
  bootLimitMessage,
  localBootLimit,
} from '../../src/guest/boot-limit.js';

test('a guest with a host CPU per vCPU on an idle host gets the base limit of its accelerator', () => {
  assert.equal(bootLimit({ accel: 'tcg', vcpus: 2, hostCpus: 2, load: 0 }).ms, 120_000);
  assert.equal(bootLimit({ accel: 'kvm', vcpus: 2, hostCpus: 8, load: 1 }).ms, 60_000);
  assert.equal(bootLimit({ accel: 'tcg', vcpus: 1, hostCpus: 4 }).ms, BOOT_BASE_SECONDS.tcg * 1000);
});

test('vCPUs and load beyond the host CPUs stretch the limit, up to a cap', () => {
  // The case that failed at 120 s: a 4-vCPU TCG guest on a 2-CPU host at load 2.
  const loaded = bootLimit({ accel: 'tcg', vcpus: 4, hostCpus: 2, load: 2 });
  assert.equal(loaded.ms, 360_000);
  assert.equal(loaded.why, '120 s for TCG × 3.00: 4 vCPU(s) + load 2.0 on 2 host CPU(s)');
  assert.equal(bootLimit({ accel: 'tcg', vcpus: 4, hostCpus: 2 }).ms, 240_000);
  assert.ok(
    bootLimit({ accel: 'tcg', vcpus: 4, hostCpus: 2, load: 3 }).ms >
      bootLimit({ accel: 'tcg', vcpus: 4, hostCpus: 2, load: 1 }).ms,
  );
  // A host at load 25 does not make a hung guest wait for an hour.
  assert.equal(
    bootLimit({ accel: 'tcg', vcpus: 4, hostCpus: 2, load: 25 }).ms,
    BOOT_MAX_FACTOR * BOOT_BASE_SECONDS.tcg * 1000,
  );
});

test('the limit on this machine counts every guest of a group, and the error says the limit and why', () => {
  const one = localBootLimit('tcg', { vcpus: 2, count: 1 });
  const three = localBootLimit('tcg', { vcpus: 2, count: 3 });
  assert.ok(one.ms >= 120_000);
  assert.match(three.why, /^120 s for TCG × \d+\.\d\d: 6 vCPU\(s\) \+ load \d+\.\d on \d+ host CPU\(s\)$/);
  assert.equal(
    bootLimitMessage('guest agent', bootLimit({ accel: 'tcg', vcpus: 4, hostCpus: 2, load: 2 })),
    'guest agent did not answer within 360 s (the boot limit: 120 s for TCG × 3.00: 4 vCPU(s) + load 2.0 on 2 host CPU(s))',
  );
});
