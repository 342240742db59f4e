import type { BootRequest, VmBackend } from '../guest/vm.js';
import { LOCAL_HOST } from '../host/access.js';
import { errorMessage } from '../util/errors.js';
import type { QemuVm } from './vm.js';

/**
 * Direct QEMU on this machine: kvmio starts QEMU itself and talks QMP and the guest agent. The VM
 * modules load on the first boot, so a run that only measures the host never loads them.
 */
export function qemuBackend(): VmBackend<QemuVm> {
  return {
    isLocal: true,
    access: LOCAL_HOST,
    reach: async () => undefined,
    facts: async () => {
      try {
        const { hostFacts } = await import('../host/facts.js');
        return { ...(await hostFacts()) };
      } catch (err) {
        // Facts are provenance, not a precondition: a run without them still measures.
        return { error: `host facts unavailable: ${errorMessage(err)}` };
      }
    },
    checkFirmware: async (study) => {
      await (await import('./firmware.js')).studyOvmf(study);
    },
    stage: async () => undefined,
    boot: async (req: BootRequest) => {
      const [{ ensureGuest, GUEST_KERNEL_CMDLINE }, { startQemuVm }] = await Promise.all([
        import('../guest/build.js'),
        import('./vm.js'),
      ]);
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
      return {
        'qemu.argv': JSON.stringify(vm.argv),
        ...(stderr ? { 'qemu.stderr': stderr } : {}),
        ...(vm.qemu ? { qemu: JSON.stringify(vm.qemu) } : {}),
        ...(vm.firmware ? { firmware: vm.firmware } : {}),
        ...vm.daemon?.artifacts(),
      };
    },
  };
}
