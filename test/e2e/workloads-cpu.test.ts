import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { clockTicksPerSecond, parseProcStat, QemuCpuMeter } from '../../src/metrics/cpu.js';
import { THREAD_CLASSES } from '../../src/study/qemu-threads.js';
import { run, sleep } from '../../src/util/proc.js';

/**
 * CPU accounting against a real QEMU whose vCPU spins: a boot sector that is `jmp $` (EB FE), booted by
 * SeaBIOS under TCG. The per-class figures must add up to the whole process's utime+stime delta from
 * /proc/PID/stat, read independently around the window.
 */

const dir = mkdtempSync(join(tmpdir(), 'kvmio-cpu-'));
let qemuPid: number | undefined;
let qemuExit: Promise<unknown> | undefined;
after(async () => {
  if (qemuPid !== undefined) {
    try {
      process.kill(qemuPid, 'SIGKILL');
    } catch {
      // already gone
    }
    await qemuExit;
  }
  rmSync(dir, { recursive: true, force: true });
});

function processTicks(pid: number): number {
  return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8')).ticks;
}

test('per-class CPU of a spinning TCG guest adds up to /proc/PID/stat of the whole QEMU process', async () => {
  // SeaBIOS ignores a disk of a single sector: 1 MiB with the boot sector first.
  const boot = Buffer.alloc(1024 * 1024);
  boot[0] = 0xeb; // jmp $
  boot[1] = 0xfe;
  boot[510] = 0x55;
  boot[511] = 0xaa;
  const image = join(dir, 'spin.img');
  writeFileSync(image, boot);
  // biome-ignore format: one QEMU option per line
  const argv = [
    'qemu-system-x86_64', '-machine', 'q35', '-accel', 'tcg', '-name', 'kvmio-cpu-test,debug-threads=on',
    '-nodefaults', '-display', 'none', '-m', '64',
    '-object', 'iothread,id=iothread0',
    '-drive', `file=${image},format=raw,if=ide`,
  ];
  qemuExit = run(argv, { allowFailure: true, timeoutMs: 120_000, onSpawn: (p) => (qemuPid = p) });
  assert.ok(qemuPid);
  const pid = qemuPid;
  await sleep(1500); // SeaBIOS reaches the boot sector

  const tick = 1 / (await clockTicksPerSecond());
  const outerStart = processTicks(pid);
  const meter = await QemuCpuMeter.start(pid, { series: true });
  const innerStart = processTicks(pid);
  await sleep(2500);
  const innerEnd = processTicks(pid);
  const w = await meter.stop();
  const outerEnd = processTicks(pid);

  const classSum = THREAD_CLASSES.reduce((s, c) => s + w.byClass[c], 0);
  assert.ok(Math.abs(classSum - w.totalS) < 1e-9, 'classes add up to the process total by construction');
  // The meter's window lies between the inner and outer independent reads. /proc/PID/stat counts whole
  // ticks, so each bound may be off by one tick at either end: two ticks of tolerance.
  assert.ok(
    w.totalS >= (innerEnd - innerStart) * tick - 2 * tick,
    `${w.totalS} vs inner ${(innerEnd - innerStart) * tick}`,
  );
  assert.ok(
    w.totalS <= (outerEnd - outerStart) * tick + 2 * tick,
    `${w.totalS} vs outer ${(outerEnd - outerStart) * tick}`,
  );
  // No thread exits here, so what the live threads' schedstat (ns) shows matches the process total up to
  // the tick rounding of the two process reads.
  assert.ok(w.unseenS <= 3 * tick, `unseen ${w.unseenS}`);
  // The spinning vCPU takes most of the process's CPU (how much CPU it gets depends on the host's load).
  assert.ok(
    w.byClass.vcpu > 0.8 * w.totalS && w.byClass.vcpu > 0.1,
    `vcpu ${w.byClass.vcpu} of ${w.totalS} s`,
  );
  assert.equal(w.threads.vcpu, 1);
  assert.equal(w.threads.iothread, 1);
  assert.equal(w.threads.main, 1);
  assert.ok((w.series?.length ?? 0) >= 2, 'one series point per second');
});
