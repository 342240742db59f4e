import type { Command } from 'commander';
import { doctor, formatDoctor } from '../../host/doctor.js';
import { printJson } from '../common.js';

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description(
      'what this host can do: QEMU, accelerator (KVM or TCG), fio, libvirt, hugepages, io_uring, guest',
    )
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }) => {
      const report = await doctor({ log: (line) => process.stderr.write(`${line}\n`) });
      // Exit 0 even under TCG: the host is usable, the warning says what the numbers mean.
      if (opts.json) printJson(report);
      else process.stdout.write(formatDoctor(report));
    });
}
