import type { GuestVm } from '../guest/vm.js';
import type { PlannedPoint } from '../study/plan.js';
import type { Variant } from '../study/types.js';
import { errorMessage, PointFailure } from '../util/errors.js';
import { type Accel, bootGuest } from './backends.js';
import { guestDisk, type HostRun } from './hosts.js';

/**
 * The guests of one host (issue 8): `guest.count` VMs of the same variant, booted together, switched
 * live together and stopped together. With one guest this is the single VM the run loop always had.
 * Each guest's fio server port is forwarded once per VM (GuestVm.forwardPort) and reused by every fio
 * point on it.
 */

export const BOOT_GUARD_MS = 240_000;
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

/**
 * Staging the guest image on a libvirt host replaces its volumes: two local URIs may be one daemon, so
 * their first boots stage one after the other. Remote hosts stage concurrently.
 */
let localStaging: Promise<unknown> = Promise.resolve();

export class GuestGroup {
  vms: GuestVm[] = [];
  private servers = new Map<GuestVm, { host: string; port: number }>();
  private staged = false;

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
    await this.stage();
    const study = this.host.study;
    const boots = Array.from({ length: this.count }, (_, g) => {
      const name = `kvmio-${process.pid}-${++bootSeq}`;
      return withDeadline(
        `boot of ${variant.id}${this.count > 1 ? ` (guest ${g})` : ''} on ${this.host.name}`,
        bootGuest({
          study: { ...study, disk: guestDisk(study.disk, g) },
          variant,
          accel: this.accel,
          name,
          uri: this.host.uri,
          host: this.host.name,
          log: this.log,
        }),
        BOOT_GUARD_MS,
      );
    });
    const settled = await Promise.allSettled(boots);
    this.vms = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) {
      await this.stop();
      throw failed.reason;
    }
    return this.vms;
  }

  private async stage(): Promise<void> {
    const study = this.host.study;
    if (this.staged || study.backend !== 'libvirt') return;
    const [{ ensureGuest }, { stageGuest }, { Virsh }] = await Promise.all([
      import('../guest/build.js'),
      import('../libvirt/stage.js'),
      import('../libvirt/virsh.js'),
    ]);
    const image = await ensureGuest({ log: this.log, release: study.guest.release });
    const virsh = new Virsh(this.host.uri);
    await virsh.ensureReachable(20_000);
    if (this.host.local) {
      const mine = localStaging.then(() => stageGuest(virsh, image));
      localStaging = mine.catch(() => undefined);
      await mine;
    } else await stageGuest(virsh, image);
    this.staged = true;
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
