import type { Command } from 'commander';
import { notYet } from '../common.js';

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('(not built yet)')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(notYet('run'));
}
