import type { Command } from 'commander';
import { notYet } from '../common.js';

export function registerArgv(program: Command): void {
  program
    .command('argv')
    .description('(not built yet)')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(notYet('argv'));
}
