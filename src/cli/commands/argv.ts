import { join } from 'node:path';
import type { Command } from 'commander';
import { builtGuest, GUEST_KERNEL_CMDLINE } from '../../guest/build.js';
import { qemuArgv } from '../../qemu/argv.js';
import { qemuCapabilities } from '../../qemu/capabilities.js';
import { studyOvmf } from '../../qemu/firmware.js';
import { loadStudyArg } from '../../study/load.js';
import { HOST_VARIANT_ID, type Study, type Variant } from '../../study/types.js';
import { UserError } from '../../util/errors.js';
import { runtimeDir } from '../../util/paths.js';
import { shellQuote } from '../../util/proc.js';
import { accelFlag, printJson, withStudyArg } from '../common.js';

interface ArgvFlags {
  preset?: string;
  variant: string;
  accel: string;
  json?: boolean;
}

/** Finds a variant by id, or says which ids the study has. Shared with `kvmio xml`. */
export function findVariant(study: Study, id: string): Variant {
  if (id === HOST_VARIANT_ID) throw new UserError(`"${id}" is the bare-host baseline: it has no VM`);
  const v = study.variants.find((x) => x.id === id);
  if (!v) {
    throw new UserError(
      `${study.source}: no variant "${id}"; its variants are: ${study.variants.map((x) => x.id).join(', ')}`,
    );
  }
  return v;
}

export function registerArgv(program: Command): void {
  withStudyArg(program.command('argv').description('print the QEMU command line of one variant of a study'))
    .requiredOption('--variant <id>', 'variant id (see "kvmio plan")')
    .option('--accel <kvm|tcg>', 'accelerator of the command line', 'kvm')
    .option('--json', 'machine-readable output: { variant, argv, pinning, notes }')
    .action(async (file: string | undefined, flags: ArgvFlags) => {
      const accel = accelFlag(flags.accel);
      const study = loadStudyArg(file, flags.preset);
      const variant = findVariant(study, flags.variant);
      if (study.guest.domain) {
        // A user's domain is libvirt's to translate: its own command line, not the builtin guest's.
        const { previewOwnDomain } = await import('../../libvirt/own.js');
        const { merged, native } = await previewOwnDomain(study, variant, accel, { native: true });
        if (flags.json) printJson({ variant, native: native?.trim() ?? '', notes: merged.notes });
        else {
          process.stdout.write(`${native?.trim() ?? ''}\n`);
          for (const n of merged.notes) process.stderr.write(`note: ${n}\n`);
        }
        return;
      }
      const notes: string[] = [];
      const guest = builtGuest(study.guest.release);
      if (!guest)
        notes.push(
          'the guest is not built yet ("kvmio guest build"): kernel and initrd paths are placeholders',
        );
      const name = `kvmio-${variant.id}`;
      const ovmf = await studyOvmf(study);
      const vmDir = join(runtimeDir(), name);
      if (ovmf)
        notes.push(
          `uefi: kvmio copies OVMF's variable store template ${ovmf.varsTemplate} into the VM's runtime directory for every VM (removed when it stops)`,
        );
      const argv = qemuArgv({
        ...(ovmf ? { firmware: { code: ovmf.code, vars: join(vmDir, 'OVMF_VARS.fd') } } : {}),
        name,
        study,
        variant,
        accel,
        image: {
          kernel: guest?.kernel ?? 'GUEST/vmlinuz',
          initrd: guest?.initrd ?? 'GUEST/initrd.img',
          cmdline: GUEST_KERNEL_CMDLINE,
        },
        runtimeDir: vmDir,
        capabilities: await qemuCapabilities(),
      });
      const pinning = study.pinning;
      if (pinning) {
        notes.push(
          'QEMU does not pin threads itself: after start kvmio runs "taskset -pc LIST TID" per thread (vCPU i -> i-th CPU of pinning.vcpus, "IO kvmio-iot*" threads -> pinning.iothreads, the rest -> pinning.emulator)',
        );
      }
      if (flags.json) {
        printJson({ variant, argv, pinning: pinning ?? null, notes });
        return;
      }
      const [bin, ...rest] = argv;
      const lines = [shellQuote(bin ?? '')];
      for (let i = 0; i < rest.length; i++) {
        const arg = rest[i] ?? '';
        const next = rest[i + 1];
        if (arg.startsWith('-') && next !== undefined && !next.startsWith('-')) {
          lines.push(`  ${arg} ${shellQuote(next)}`);
          i++;
        } else {
          lines.push(`  ${shellQuote(arg)}`);
        }
      }
      process.stdout.write(`${lines.join(' \\\n')}\n`);
      for (const n of notes) process.stderr.write(`note: ${n}\n`);
    });
}
