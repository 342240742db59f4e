import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { readRunningShape, shapeDifferences, shapeProblems } from '../../src/qemu/running-shape.js';
import type { Monitor } from '../../src/qemu/verify.js';

/** A monitor that answers from QMP replies recorded from real QEMUs (fixtures/qmp/README.md). */
function recorded(name: string): Monitor {
  const url = new URL(`../../../test/fixtures/qmp/running-shape/${name}.json`, import.meta.url);
  const answers = JSON.parse(readFileSync(url, 'utf8')) as Record<string, unknown>;
  return async <T>(command: string, args?: Record<string, unknown>): Promise<T> => {
    const key = command === 'qom-get' ? `qom-get ${args?.path} ${args?.property}` : command;
    if (!(key in answers)) throw new Error(`no recorded answer for ${key}`);
    return answers[key] as T;
  };
}

test('the running shape as QEMU reports it: versioned machine type, vCPU model, count, topology, memory', async () => {
  assert.deepEqual(await readRunningShape(recorded('q35-7.2')), {
    machine: 'pc-q35-7.2',
    cpuModel: 'max',
    vcpus: 2,
    topology: '2 socket(s) × 1 core(s) × 1 thread(s)',
    memoryBytes: 512 * 1024 * 1024,
  });
  // QEMU 10's q35 is the study's own machine type.
  assert.equal((await readRunningShape(recorded('q35-10.0'))).machine, 'pc-q35-10.0');
  assert.equal((await readRunningShape(recorded('pc-7.2'))).machine, 'pc-i440fx-7.2');
});

test('the backend comparison fails when one backend boots i440fx and the other q35, or another topology', async () => {
  const q35 = await readRunningShape(recorded('q35-7.2'));
  const pc = await readRunningShape(recorded('pc-7.2'));
  assert.deepEqual(shapeDifferences(q35, q35), []);
  assert.deepEqual(shapeDifferences(q35, pc, ['direct QEMU', 'libvirt']), [
    'machine: direct QEMU pc-q35-7.2, libvirt pc-i440fx-7.2',
  ]);
  assert.deepEqual(shapeDifferences(q35, await readRunningShape(recorded('q35-7.2-cores'))), [
    'topology: first 2 socket(s) × 1 core(s) × 1 thread(s), second 1 socket(s) × 2 core(s) × 1 thread(s)',
  ]);
  assert.deepEqual(shapeDifferences(q35, await readRunningShape(recorded('q35-10.0'))), [
    'machine: first pc-q35-7.2, second pc-q35-10.0',
  ]);
});

test('a running guest that is not the study asked for is named part by part', async () => {
  const want = { machine: 'q35', accel: 'tcg', vcpus: 2, memoryBytes: 512 * 1024 * 1024 } as const;
  assert.deepEqual(shapeProblems(await readRunningShape(recorded('q35-7.2')), want), []);
  assert.deepEqual(shapeProblems(await readRunningShape(recorded('q35-10.0')), want), []);
  assert.deepEqual(shapeProblems(await readRunningShape(recorded('pc-7.2')), { ...want, machine: 'pc' }), []);
  assert.deepEqual(shapeProblems(await readRunningShape(recorded('pc-7.2')), want), [
    'machine type is pc-i440fx-7.2, the study asks for q35',
  ]);
  assert.deepEqual(
    shapeProblems(await readRunningShape(recorded('q35-7.2-cores')), {
      ...want,
      accel: 'kvm',
      vcpus: 4,
      memoryBytes: 1 << 30,
    }),
    [
      'vCPU model is max, the kvm rule is host',
      '2 vCPU(s), the study asks for 4',
      'vCPU topology is 1 socket(s) × 2 core(s) × 1 thread(s), expected 4 socket(s) × 1 core(s) × 1 thread(s)',
      'memory is 536870912 bytes, the study asks for 1073741824',
    ],
  );
});
