import type { Command } from 'commander';
import { notYet } from '../common.js';

export function registerExport(program: Command): void {
  program
    .command('export')
    .description('(not built yet)')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(notYet('export'));
}
