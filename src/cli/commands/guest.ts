import type { Command } from 'commander';
import { builtGuest, ensureGuest } from '../../guest/build.js';
import { UserError } from '../../util/errors.js';

export function registerGuest(program: Command): void {
  const guest = program.command('guest').description('the embedded guest (Debian cloud kernel + initramfs)');
  guest
    .command('build')
    .description('build the guest if needed and print its directory (progress on stderr)')
    .option('--force', 'rebuild even if a guest for this recipe is cached')
    .action(async (opts: { force?: boolean }) => {
      const image = await ensureGuest({
        force: opts.force,
        log: (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(`${image.dir}\n`);
    });
  guest
    .command('path')
    .description("print the built guest's directory (exit 1 if it is not built)")
    .action(() => {
      const image = builtGuest();
      if (!image) throw new UserError('the guest is not built: run "kvmio guest build"', 1);
      process.stdout.write(`${image.dir}\n`);
    });
}
