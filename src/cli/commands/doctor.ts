import type { Command } from 'commander';
import { notYet } from '../common.js';

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('(not built yet)')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(notYet('doctor'));
}
