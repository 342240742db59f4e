import type { Command } from 'commander';
import { notYet } from '../common.js';

export function registerGuest(program: Command): void {
  program
    .command('guest')
    .description('(not built yet)')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(notYet('guest'));
}
