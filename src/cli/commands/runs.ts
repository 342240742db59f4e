import type { Command } from 'commander';
import { notYet } from '../common.js';

export function registerRuns(program: Command): void {
  program
    .command('runs')
    .description('(not built yet)')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(notYet('runs'));
}
