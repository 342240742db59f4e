import type { Command } from 'commander';
import { notYet } from '../common.js';

export function registerImport(program: Command): void {
  program
    .command('import')
    .description('(not built yet)')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(notYet('import'));
}
