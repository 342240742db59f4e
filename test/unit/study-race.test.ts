/** `race:` in a study, `--race` and `--budget`: parsed, refused with exit-2 errors, and fitted. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fitToBudget, shapeForRun } from '../../src/study/budget.js';
import { parseStudy } from '../../src/study/load.js';
import { planStudy } from '../../src/study/plan.js';
import { ConfigError, UserError } from '../../src/util/errors.js';

const BASE = `name: r
disk: { path: /var/tmp/kvmio-race-unit.raw, size: 64MiB }
matrix: { aio: [threads, native, io_uring], iothreads: [0, 1] }
baseline: true
workloads:
  - { kind: fio, name: lat, rw: randread, bs: 4k, iodepth: 1, runtime: 30s, ramp: 1s }
`;

test('race: true and race: { min } in a study; refused with adaptive or too few repetitions', () => {
  assert.deepEqual(parseStudy(`${BASE}repetitions: 6\nrace: true\n`, 'r.yaml').race, { minRepetitions: 3 });
  assert.deepEqual(parseStudy(`${BASE}repetitions: 6\nrace: { min: 4 }\n`, 'r.yaml').race, {
    minRepetitions: 4,
  });
  assert.equal(parseStudy(`${BASE}repetitions: 6\nrace: false\n`, 'r.yaml').race, undefined);
  const refused = (extra: string, re: RegExp) =>
    assert.throws(
      () => parseStudy(`${BASE}${extra}`, 'r.yaml'),
      (e: unknown) => e instanceof ConfigError && re.test(e.message),
    );
  refused('repetitions: 3\nrace: true\n', /r\.yaml.*race.*above its minimum of 3/);
  refused('repetitions: 6\nrace: { min: 1 }\n', /race\.min/);
  refused('repetitions: 6\nrace: { mni: 4 }\n', /race\.mni.*did you mean "min"/);
  refused('repetitions: 6\nrace: yes please\n', /race.*expected true, false or a map/);
  refused('repetitions: 6\nrace: true\nadaptive: { ci: 5% }\n', /use one of race or adaptive/);
  // --race on a study that has too few repetitions: exit 2 naming the flag.
  assert.throws(
    () => shapeForRun(parseStudy(BASE, 'r.yaml'), { race: true }, undefined),
    (e: unknown) => e instanceof UserError && /--race: r\.yaml: racing needs repetitions/.test(e.message),
  );
});

test('a racing plan states the range of its duration', () => {
  const plan = planStudy(parseStudy(`${BASE}repetitions: 6\nrace: true\n`, 'r.yaml'));
  const note = plan.notes.find((n) => n.startsWith('racing:'));
  assert.match(note ?? '', /^racing: 3 to 6 repetitions; .* between \d+m\d\ds and \d+m\d\ds$/);
});

test('--budget: what fits is left alone; otherwise races, then fewer repetitions, shorter windows, fewer variants', () => {
  const study = parseStudy(`${BASE}repetitions: 6\n`, 'r.yaml');
  const full = planStudy(study).estimatedSeconds;
  const roomy = fitToBudget(study, full + 1);
  assert.equal(roomy.study.race, undefined);
  assert.equal(roomy.study.repetitions, 6);
  assert.match(roomy.study.notes?.at(-1) ?? '', /the plan fits as it is/);

  // Just below the full plan: racing makes the sure part (3 rounds) fit.
  const raced = fitToBudget(study, full - 1);
  assert.deepEqual(raced.study.race, { minRepetitions: 3 });
  assert.ok(raced.sureSeconds <= full - 1);
  assert.ok(raced.study.notes?.some((n) => /racing on: rounds 4–6/.test(n)));

  // Tight: repetitions, then windows shrink; the sure part always fits the budget.
  const tight = fitToBudget(study, full / 6);
  assert.ok(tight.sureSeconds <= full / 6, `${tight.sureSeconds} > ${full / 6}`);
  assert.equal(tight.study.race?.minRepetitions, 2);
  const note = tight.study.notes?.find((n) => n.startsWith('budget')) ?? '';
  assert.match(note, /minimum repetitions 3 → 2/);
  assert.match(note, /measured windows shortened .*lat 30s → \d+s/);

  // Tighter still: variants go, the host baseline first and native with an iothread never.
  const tiny = fitToBudget(study, 60);
  assert.ok(tiny.sureSeconds <= 60);
  const kept = planStudy(tiny.study, { only: tiny.only });
  assert.ok(kept.variants.some((v) => v.id === 'blk-native-io1-4k'));
  assert.equal(kept.baseline, false);
  assert.match(tiny.study.notes?.join('\n') ?? '', /variants dropped: host, /);

  // Impossible: one clear line naming the budget and what it would take.
  assert.throws(
    () => fitToBudget(study, 5),
    (e: unknown) =>
      e instanceof UserError && /--budget 5s cannot hold this study: .* it needs \d+s/.test(e.message),
  );
  assert.throws(
    () => shapeForRun(study, { budget: '0s' }, undefined),
    /--budget 0s: give a positive duration/,
  );
});
