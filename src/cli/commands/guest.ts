import type { Command } from 'commander';
import { builtGuest, ensureGuest } from '../../guest/build.js';
import { DEFAULT_GUEST_RELEASE, GUEST_RELEASES, type GuestRelease } from '../../guest/recipe.js';
import { UserError } from '../../util/errors.js';

function guestRelease(value: string): GuestRelease {
  if (!(GUEST_RELEASES as readonly string[]).includes(value))
    throw new UserError(`--release: "${value}" is not allowed; allowed: ${GUEST_RELEASES.join(', ')}`);
  return value as GuestRelease;
}

export function registerGuest(program: Command): void {
  const guest = program.command('guest').description('the embedded guest (Debian cloud kernel + initramfs)');
  guest
    .command('build')
    .description('build the guest if needed and print its directory (progress on stderr)')
    .option('--force', 'rebuild even if a guest for this recipe is cached')
    .option(
      '--release <release>',
      `Debian release of the guest: ${GUEST_RELEASES.join(' | ')}`,
      DEFAULT_GUEST_RELEASE,
    )
    .action(async (opts: { force?: boolean; release: string }) => {
      const image = await ensureGuest({
        release: guestRelease(opts.release),
        force: opts.force,
        log: (line) => process.stderr.write(`${line}\n`),
      });
      process.stdout.write(`${image.dir}\n`);
    });
  guest
    .command('path')
    .description("print the built guest's directory (exit 1 if it is not built)")
    .option(
      '--release <release>',
      `Debian release of the guest: ${GUEST_RELEASES.join(' | ')}`,
      DEFAULT_GUEST_RELEASE,
    )
    .action((opts: { release: string }) => {
      const image = builtGuest(guestRelease(opts.release));
      if (!image) throw new UserError('the guest is not built: run "kvmio guest build"', 1);
      process.stdout.write(`${image.dir}\n`);
    });
}
