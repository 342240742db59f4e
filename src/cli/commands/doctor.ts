import type { Command } from 'commander';
import { doctor, formatDoctor } from '../../host/doctor.js';
import { axisQemus } from '../../qemu/axis.js';
import { loadStudyArg } from '../../study/load.js';
import { printJson } from '../common.js';

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description(
      'what this host can do: QEMU, accelerator (KVM or TCG), fio, libvirt, hugepages, io_uring, guest',
    )
    .option('--json', 'machine-readable output')
    .option('--study <file>', "also probe the QEMUs of this study's matrix.qemu")
    .option('--preset <name>', "also probe the QEMUs of this preset's matrix.qemu")
    .action(async (opts: { json?: boolean; study?: string; preset?: string }) => {
      const study =
        opts.study !== undefined || opts.preset !== undefined
          ? loadStudyArg(opts.study, opts.preset)
          : undefined;
      const qemus = study
        ? axisQemus(study.variants).map((q) => ({
            path: q.path,
            why: `matrix.qemu ${q.name} of ${study.source}`,
          }))
        : [];
      const report = await doctor({
        log: (line) => process.stderr.write(`${line}\n`),
        qemus,
        needs: study?.disk.lvm ? ['lvm2'] : [],
        ...(study ? { firmware: study.guest.firmware } : {}),
      });
      // Exit 0 even under TCG: the host is usable, the warning says what the numbers mean.
      if (opts.json) printJson(report);
      else process.stdout.write(formatDoctor(report));
    });
}
