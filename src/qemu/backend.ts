import { ensureGuest, GUEST_KERNEL_CMDLINE } from '../guest/build.js';
import type { BootRequest, VmBackend } from '../guest/vm.js';
import { hostFacts } from '../host/facts.js';
import { errorMessage } from '../util/errors.js';
import { type QemuVm, startQemuVm } from './vm.js';

/** Direct QEMU on this machine: kvmio starts QEMU itself and talks QMP and the guest agent. */
export function qemuBackend(): VmBackend<QemuVm> {
  return {
    isLocal: true,
    reach: async () => undefined,
    facts: async () => {
      try {
        return { ...(await hostFacts()) };
      } catch (err) {
        // Facts are provenance, not a precondition: a run without them still measures.
        return { error: `host facts unavailable: ${errorMessage(err)}` };
      }
    },
    stage: async () => undefined,
    boot: async (req: BootRequest) => {
      const image = await ensureGuest({ log: req.log, release: req.study.guest.release });
      return startQemuVm({
        study: req.study,
        variant: req.variant,
        image: { kernel: image.kernel, initrd: image.initrd, cmdline: GUEST_KERNEL_CMDLINE },
        accel: req.accel,
        name: req.name,
        log: req.log,
      });
    },
    verify: (vm) => vm.verifyAio(),
    artifacts: (vm) => {
      const stderr = vm.stderr();
      return { 'qemu.argv': JSON.stringify(vm.argv), ...(stderr ? { 'qemu.stderr': stderr } : {}) };
    },
  };
}
