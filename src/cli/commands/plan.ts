import type { Command } from 'commander';
import { notYet } from '../common.js';

export function registerPlan(program: Command): void {
  program
    .command('plan')
    .description('(not built yet)')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(notYet('plan'));
}
