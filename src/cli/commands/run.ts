import type { Command } from 'commander';
import { resumeCommand } from '../../engine/resume.js';
import { runStudy } from '../../engine/run.js';
import { Virsh } from '../../libvirt/virsh.js';
import { checkQemuAxis } from '../../qemu/axis.js';
import { stopLeftoverQemus } from '../../safety/leftovers.js';
import { removeLeftoverLvs } from '../../safety/lvm.js';
import { Store } from '../../store/store.js';
import { shapeForRun } from '../../study/budget.js';
import { splitGlobs } from '../../study/glob.js';
import { loadStudyArg } from '../../study/load.js';
import { planStudy } from '../../study/plan.js';
import type { Study } from '../../study/types.js';
import { UserError } from '../../util/errors.js';
import { withDb, withOnly, withRaceAndBudget, withStudyArg } from '../common.js';
import { createProgress, progressMode } from '../progress.js';
import { variantTables } from '../summary.js';

interface RunFlags {
  preset?: string;
  only: string[];
  db: string;
  resume?: string;
  destroyData: string[];
  quiet?: boolean;
  json?: boolean;
  race?: boolean;
  budget?: string;
}

const collect = (value: string, previous: string[]) => [...previous, value];

export function registerRun(program: Command): void {
  withRaceAndBudget(
    withDb(
      withOnly(
        withStudyArg(
          program
            .command('run')
            .description(
              'run a study on real VMs and store every figure; --resume finishes an interrupted run',
            ),
        ),
      )
        .option('--resume <run>', 'finish this run: measure its missing and failed points, keep the others')
        .option(
          '--destroy-data <path>',
          'allow writing over data found on this exact disk path (repeatable); everything on it is lost',
          collect,
          [],
        )
        .option('--quiet', 'no progress and no table: only where the results are')
        .option('--json', 'progress as JSON lines on stdout (one event per line)'),
    ),
  ).action(async (file: string | undefined, flags: RunFlags) => {
    if (flags.quiet && flags.json) throw new UserError('--quiet and --json exclude each other: choose one');
    const shaped = shapeForRun(
      loadStudyArg(file, flags.preset),
      flags,
      flags.only.length > 0 ? splitGlobs(flags.only) : undefined,
    );
    const { study } = shaped;
    // A variant one of the matrix's QEMUs cannot run is refused before anything boots.
    await checkQemuAxis(study, planStudy(study, { only: shaped.only }).variants);
    const runFlags = [...(flags.race ? ['--race'] : []), ...(flags.budget ? ['--budget', flags.budget] : [])];
    const store = Store.open(flags.db);
    await stopLeftovers(study, (line) => process.stderr.write(`kvmio: ${line}\n`));
    const progress = createProgress(progressMode(flags, process.stderr), process.stderr);
    let warning: string | undefined;
    try {
      const result = await runStudy(study, {
        store,
        only: shaped.only,
        budgetSeconds: shaped.budgetSeconds,
        resumeFlags: runFlags,
        resume: flags.resume,
        destroyData: flags.destroyData,
        onEvent: (e) => {
          if (e.event === 'run-start') warning = e.warning;
          progress.sink(e);
        },
      });
      progress.done();
      // A partial run (some points failed) is not a success for scripts and CI.
      if (result.status === 'partial') process.exitCode = 1;
      if (flags.json) return;
      const out = (s: string) => process.stdout.write(`${s}\n`);
      if (!flags.quiet) {
        const rows = store.metricRows(result.runId);
        if (rows.length > 0) out(`\n${variantTables(rows)}\n`);
        // The latest attempt of each point that is still failed (earlier attempts stay in the store).
        const latest = new Map(
          store
            .failures(result.runId)
            .filter((x) => !x.retried)
            .map((x) => [x.index, x]),
        );
        for (const f of latest.values()) {
          out(`FAILED ${f.variant} ${f.workload} (round ${f.rep + 1}): ${f.reason.split('\n')[0]}`);
        }
        if (warning) out(`WARNING: ${warning}`);
      }
      out(`run ${result.runId}: ${result.status}, ${result.ok} point(s) ok, ${result.failed} failed`);
      out(`results: ${store.path} (run ${result.runId})`);
      out(`report:  kvmio report --db ${flags.db} ${result.runId}`);
      out(`export:  kvmio export ${result.runId} --db ${flags.db} --format csv`);
      if (result.status === 'partial')
        out(`retry the failed points: ${resumeCommand(study, result.runId, store.path, runFlags)}`);
    } finally {
      progress.done();
      store.close();
    }
  });
}

/**
 * Before a run (and a resume): what a kvmio killed without cleanup left on this machine and on the
 * study's libvirt hosts, its own QEMU processes and transient domains, is stopped, and its scratch LVs
 * removed, one line each; the disk guard would otherwise refuse a disk held by a VM whose owner is gone.
 */
async function stopLeftovers(study: Study, say: (line: string) => void): Promise<void> {
  await stopLeftoverQemus(say);
  if (study.backend === 'libvirt') await stopLeftoverDomains(study, say);
  // After the VMs that held them: a killed kvmio's scratch LVs (disk.lvm studies have LVM here).
  if (study.disk.lvm) await removeLeftoverLvs(say);
}

async function stopLeftoverDomains(study: Study, say: (line: string) => void): Promise<void> {
  const { reapOrphans } = await import('../../libvirt/vm.js');
  const uris = new Set(study.hosts.length > 0 ? study.hosts.map((h) => h.uri) : [study.libvirt.uri]);
  for (const uri of uris) {
    const virsh = new Virsh(uri);
    // A host that does not answer is the run's to report; its leftovers wait for a later run.
    if (await virsh.tryRun(['uri'], { timeoutMs: 20_000 })) await reapOrphans(virsh, say);
  }
}
