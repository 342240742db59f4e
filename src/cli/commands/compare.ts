import type { Command } from 'commander';
import { notYet } from '../common.js';

export function registerCompare(program: Command): void {
  program
    .command('compare')
    .description('(not built yet)')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(notYet('compare'));
}
