import { BOOT_SETUP_SECONDS, localBootLimit } from '../guest/boot-limit.js';
import type { GuestVm } from '../guest/vm.js';
import type { Accel } from '../host/accel.js';
import type { PlannedPoint } from '../study/plan.js';
import type { Variant } from '../study/types.js';
import { errorMessage, PointFailure } from '../util/errors.js';
import { guestDisk, type HostRun } from './hosts.js';

/**
 * The guests of one host: `guest.count` VMs of the same variant, booted together, switched
 * live together and stopped together; with one guest, a single VM.
 * Each guest's fio server port is forwarded once per VM (GuestVm.forwardPort) and reused by every fio
 * point on it.
 */

const STOP_GUARD_MS = 30_000;
const SWITCH_GUARD_MS = 120_000;

export function withDeadline<T>(what: string, p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expire = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new PointFailure(`${what} did not finish within ${Math.round(ms / 1000)} s`)),
      ms,
    );
  });
  return Promise.race([p, expire]).finally(() => clearTimeout(timer));
}

/** Domain names unique across the hosts and guests of this process (two URIs may name one daemon). */
let bootSeq = 0;

export class GuestGroup {
  vms: GuestVm[] = [];
  /** The last forPoint booted these VMs (rather than reusing or switching the running ones). */
  booted = false;
  private servers = new Map<GuestVm, { host: string; port: number }>();

  constructor(
    private readonly host: HostRun,
    private readonly accel: Accel,
    private readonly log: (line: string) => void,
  ) {}

  get count(): number {
    return this.host.study.guest.count;
  }

  async forPoint(variant: Variant, p: Pick<PlannedPoint, 'boot'>): Promise<GuestVm[]> {
    const running = this.vms;
    this.booted = false;
    if (running.length > 0 && !p.boot && running.every((vm) => vm.variant.id === variant.id)) return running;
    if (running.length > 0 && !p.boot && running.every((vm) => vm.canSwitchLive(variant))) {
      await Promise.all(
        running.map((vm) =>
          vm.variant.id === variant.id
            ? undefined
            : withDeadline(
                `live switch of ${vm.name} to ${variant.id}`,
                vm.switchVariant(variant),
                SWITCH_GUARD_MS,
              ),
        ),
      );
      return running;
    }
    await this.stop();
    await this.host.backend.stage(this.log);
    const study = this.host.study;
    // The backends wait for the agent up to the boot limit; this guard only catches a boot that hangs.
    const guardMs = localBootLimit(this.accel, study.guest).ms + BOOT_SETUP_SECONDS * 1000;
    const boots = Array.from({ length: this.count }, (_, g) => {
      const name = `kvmio-${process.pid}-${++bootSeq}`;
      return withDeadline(
        `boot of ${variant.id}${this.count > 1 ? ` (guest ${g})` : ''} on ${this.host.name}`,
        this.host.backend.boot({
          study: { ...study, disk: guestDisk(study.disk, g) },
          variant,
          accel: this.accel,
          name,
          log: this.log,
        }),
        guardMs,
      );
    });
    const settled = await Promise.allSettled(boots);
    this.vms = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) {
      await this.stop();
      throw failed.reason;
    }
    this.booted = true;
    return this.vms;
  }

  /** Each guest's fio server as the controller reaches it (forwarded once per VM). */
  async fioServers(
    guestPort: number,
  ): Promise<Array<{ vm: GuestVm; server: { host: string; port: number } }>> {
    const out = [];
    for (const vm of this.vms) {
      let server = this.servers.get(vm);
      if (!server) {
        if (!vm.forwardPort)
          throw new PointFailure(`${vm.name}: this backend cannot forward a guest port (fio client/server)`);
        server = await vm.forwardPort(guestPort);
        this.servers.set(vm, server);
        this.log(`${vm.name}: fio server port ${guestPort} reached at ${server.host}:${server.port}`);
      }
      out.push({ vm, server });
    }
    return out;
  }

  async stop(): Promise<void> {
    const vms = this.vms;
    this.vms = [];
    this.servers.clear();
    await Promise.all(
      vms.map((vm) =>
        withDeadline(`stop of ${vm.name}`, vm.stop(), STOP_GUARD_MS).catch((err) =>
          this.log(`stopping ${vm.name}: ${errorMessage(err)}`),
        ),
      ),
    );
  }
}
