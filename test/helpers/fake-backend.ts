import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type {
  BootRequest,
  GuestExecOptions,
  GuestExecResult,
  GuestVm,
  VmBackend,
} from '../../src/guest/vm.js';
import type { Variant } from '../../src/study/types.js';
import { PointFailure } from '../../src/util/errors.js';
import { sleep } from '../../src/util/proc.js';

/**
 * A VmBackend with no VM, for the run engine's rules: guests answer fio with a fio JSON recorded from
 * a real run (test/fixtures/fio/randread-qd1.json, see its README), its IOPS scaled per run where a
 * test needs spread.
 */

const FIO_JSON = readFileSync(
  fileURLToPath(new URL('../../../test/fixtures/fio/randread-qd1.json', import.meta.url)),
  'utf8',
);

/** What a fake host does: per boot, whether it fails; per fio run, its IOPS factor, a failure or a hang. */
export interface Script {
  bootFails?: (variant: Variant, boots: number) => boolean;
  fioFails?: (runs: number) => boolean;
  /** Speed of fio run `runs` (1-based, all variants counted) on `variant`: IOPS and bandwidth times it, latency divided by it. */
  iopsFactor?: (runs: number, variant: Variant) => number;
  /** fio runs this long (ms) before it answers. */
  fioMs?: number;
  /** Boot `boots` came up only at its second try: why (as the backends' boot retry says it). */
  bootWarning?: (boots: number) => string | undefined;
}

export class FakeBackend implements VmBackend<FakeVm> {
  readonly isLocal = true;
  /** No host behind it: nothing runs on a host of its own. */
  readonly access = undefined;
  boots = 0;
  fioRuns = 0;
  verified = 0;
  constructor(private readonly script: Script = {}) {}
  get fioMs(): number {
    return this.script.fioMs ?? 0;
  }
  async reach(): Promise<void> {}
  async facts(): Promise<Record<string, unknown>> {
    return { fake: true };
  }
  async stage(): Promise<void> {}
  async boot(req: BootRequest): Promise<FakeVm> {
    this.boots++;
    if (this.script.bootFails?.(req.variant, this.boots))
      throw new PointFailure(`fake boot of ${req.variant.id} failed`);
    const vm = new FakeVm(req.name, req.variant, this);
    vm.bootWarning = this.script.bootWarning?.(this.boots);
    return vm;
  }
  async verify(): Promise<void> {
    this.verified++;
  }
  artifacts(vm: FakeVm): Record<string, string> {
    return { 'fake.name': vm.name };
  }
  /** fio in the guest: writes the recorded JSON (IOPS scaled) where --output points. */
  fio(variant: Variant): string {
    const run = ++this.fioRuns;
    if (this.script.fioFails?.(run)) throw new PointFailure(`fake fio run ${run} failed`);
    const report = JSON.parse(FIO_JSON);
    const factor = this.script.iopsFactor?.(run, variant) ?? 1;
    for (const job of report.jobs) {
      job.read.iops *= factor;
      job.read.bw_bytes *= factor;
      job.read.clat_ns.mean /= factor;
      job.read.lat_ns.mean /= factor;
    }
    return JSON.stringify(report);
  }
}

export class FakeVm implements GuestVm {
  readonly bootMs = 1;
  bootWarning?: string;
  private files = new Map<string, string>();
  constructor(
    readonly name: string,
    public variant: Variant,
    private readonly backend: FakeBackend,
  ) {}
  async exec(argv: string[], _opts: GuestExecOptions): Promise<GuestExecResult> {
    if (argv[0] === 'fio') {
      const out = argv.find((a) => a.startsWith('--output='))?.slice('--output='.length);
      if (out) this.files.set(out, this.backend.fio(this.variant));
      if (this.backend.fioMs) await sleep(this.backend.fioMs);
    }
    return { exitCode: 0, stdout: '', stderr: '' };
  }
  async readFile(path: string): Promise<Buffer> {
    return Buffer.from(this.files.get(path) ?? '');
  }
  async writeFile(): Promise<void> {}
  async testDisk(): Promise<string> {
    return '/dev/vdb';
  }
  async testDisks(): Promise<string[]> {
    return ['/dev/vdb'];
  }
  qemuPid(): number {
    return process.pid;
  }
  async ping(): Promise<{ monitorMs: number; agentMs: number }> {
    return { monitorMs: 1, agentMs: 1 };
  }
  canSwitchLive(): boolean {
    return true;
  }
  async switchVariant(next: Variant): Promise<void> {
    this.variant = next;
  }
  consoleTail(): string {
    return '';
  }
  async stop(): Promise<void> {}
}
