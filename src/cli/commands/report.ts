import type { Command } from 'commander';
import { notYet } from '../common.js';

export function registerReport(program: Command): void {
  program
    .command('report')
    .description('(not built yet)')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(notYet('report'));
}
