import type { Command } from 'commander';
import { notYet } from '../common.js';

export function registerXml(program: Command): void {
  program
    .command('xml')
    .description('(not built yet)')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(notYet('xml'));
}
