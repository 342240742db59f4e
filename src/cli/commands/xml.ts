import type { Command } from 'commander';
import { builtGuest, GUEST_KERNEL_CMDLINE } from '../../guest/build.js';
import { guestContentTag, nvramPath, stagedGuestPaths } from '../../libvirt/stage.js';
import { diskXml, domainXml, scsiControllerXml } from '../../libvirt/xml.js';
import { studyOvmf } from '../../qemu/firmware.js';
import { testDiskPaths } from '../../study/disks.js';
import { loadStudyArg } from '../../study/load.js';
import { variantDisks } from '../../study/variants.js';
import { accelFlag, withStudyArg } from '../common.js';
import { findVariant } from './argv.js';

interface XmlFlags {
  preset?: string;
  variant: string;
  accel: string;
  diskOnly?: boolean;
  iothreadVqMapping?: boolean;
}

export function registerXml(program: Command): void {
  withStudyArg(
    program
      .command('xml')
      .description('print the libvirt domain XML of one variant of a study (valid by virt-xml-validate)'),
  )
    .requiredOption('--variant <id>', 'variant id (see "kvmio plan")')
    .option('--accel <kvm|tcg>', "domain type: kvm, or tcg for <domain type='qemu'>", 'kvm')
    .option('--disk-only', 'only the test disk (and its virtio-scsi controller), to paste into your own VM')
    .option(
      '--iothread-vq-mapping',
      'target libvirt >= 10 with QEMU >= 9: one virtio-blk disk served by several iothreads',
    )
    .action(async (file: string | undefined, flags: XmlFlags) => {
      const accel = accelFlag(flags.accel);
      const study = loadStudyArg(file, flags.preset);
      const variant = findVariant(study, flags.variant);
      const iothreadVqMapping = flags.iothreadVqMapping ?? false;
      if (study.guest.domain && !flags.diskOnly) {
        const { previewOwnDomain } = await import('../../libvirt/own.js');
        const { merged } = await previewOwnDomain(study, variant, accel, { iothreadVqMapping });
        process.stdout.write(merged.xml);
        for (const n of merged.notes) process.stderr.write(`note: ${n}\n`);
        return;
      }
      if (flags.diskOnly) {
        const paths = testDiskPaths(study.disk.path, variantDisks(variant));
        const parts = paths.map((diskPath, index) =>
          diskXml({ variant, diskPath, iothreadVqMapping, index, qcow2: study.disk.qcow2 }),
        );
        if (variant.bus === 'virtio-scsi')
          parts.push(...paths.map((_, index) => scsiControllerXml(variant, '', index)));
        if (variant.iothreads > 0)
          parts.push(`<!-- and in <domain>: <iothreads>${variant.iothreads}</iothreads> -->`);
        process.stdout.write(`${parts.join('\n')}\n`);
        return;
      }
      const guest = builtGuest(study.guest.release);
      if (!guest) {
        process.stderr.write(
          'note: the guest is not built yet ("kvmio guest build"): kernel and initrd paths are placeholders\n',
        );
      }
      const name = `kvmio-${variant.id}`;
      // The OVMF of this machine: a domain for another host names that host's files.
      const ovmf = await studyOvmf(study);
      const staged = guest
        ? stagedGuestPaths(await guestContentTag(guest))
        : { kernel: 'GUEST/vmlinuz', initrd: 'GUEST/initrd.img' };
      process.stdout.write(
        domainXml({
          study,
          variant,
          guest: { ...staged, cmdline: GUEST_KERNEL_CMDLINE },
          accel,
          name,
          iothreadVqMapping,
          ...(ovmf ? { firmware: { ...ovmf, nvram: nvramPath(name) } } : {}),
        }),
      );
    });
}
