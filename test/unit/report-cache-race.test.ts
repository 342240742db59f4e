/**
 * The cache-mode question and a raced run's decisions, from two real recorded runs of the same study
 * (test/fixtures/runs/racing-*.json, see its README): cache none against directsync for 4 KiB random
 * writes at QD1, 8 fixed repetitions and raced from 3. Expected values are computed here from the rows.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildModel } from '../../src/report/charts.js';
import { buildConclusion, type Conclusion } from '../../src/report/conclusion.js';
import { type RunExport, reportDataFromExports } from '../../src/report/index.js';

const load = (name: string) =>
  JSON.parse(
    readFileSync(fileURLToPath(new URL(`../../../test/fixtures/runs/${name}`, import.meta.url)), 'utf8'),
  ) as RunExport;

const fixed = load('racing-fixed.json');
const raced = load('racing-raced.json');

const conclude = (doc: RunExport): Conclusion => buildConclusion(buildModel(reportDataFromExports([doc])));

/** How many repetitions of a variant the run measured, from its rows. */
function repetitions(doc: RunExport, variant: string): number {
  const reps = new Set(doc.rows.filter((r) => r.variant === variant).map((r) => r.rep));
  return reps.size;
}

test('the fixed run judges cache directsync against none at the same aio mode and iothreads, and prefers none', () => {
  const c = conclude(fixed);
  const cache = c.claims.filter((x) => x.question === 'cache');
  assert.equal(
    cache.length,
    1,
    `one cache claim, got ${c.claims.map((x) => `${x.question} ${x.measure}`).join('; ')}`,
  );
  const claim = cache[0];
  assert.ok(claim);
  assert.equal(claim.a.variant, 'blk-native-io1-4k');
  assert.equal(claim.b.variant, 'blk-native-io1-4k-directsync');
  assert.equal(claim.a.def?.aio, claim.b.def?.aio);
  assert.equal(claim.a.def?.iothreads, claim.b.def?.iothreads);
  // directsync makes each write an O_DSYNC write on the host: several times the latency, and judged so.
  assert.ok(claim.meanB > 2 * claim.meanA, `directsync ${claim.meanB} vs none ${claim.meanA}`);
  assert.equal(claim.comparison.kind, 'worse');
  assert.equal(claim.comparison.nA, 8);
  assert.equal(claim.comparison.nB, 8);
  assert.equal(claim.race, undefined, 'a fixed run has no race decisions');
  assert.equal([...c.recommended.values()][0]?.variant, 'blk-native-io1-4k');
  assert.match(c.markdown, /Which cache mode/);
  assert.doesNotMatch(c.markdown, /still open|decided \(/);
});

test('the raced run stopped both variants at the repetition its one comparison was decided, with the same answer', () => {
  const c = conclude(raced);
  const claim = c.claims.find((x) => x.question === 'cache');
  assert.ok(claim);
  assert.equal(claim.comparison.kind, 'worse');
  assert.equal(claim.race?.decision, 'different');
  const at = claim.race?.decidedAt;
  assert.ok(at !== undefined && at >= 3 && at < 8, `decided at ${at}`);
  // Racing stops measuring once decided: each variant has exactly the repetitions up to the decision.
  assert.equal(repetitions(raced, 'blk-native-io1-4k'), at);
  assert.equal(repetitions(raced, 'blk-native-io1-4k-directsync'), at);
  assert.equal(repetitions(fixed, 'blk-native-io1-4k'), 8);
  assert.match(c.markdown, new RegExp(`decided \\(different\\) after ${at} repetitions`));
  assert.equal(
    [...c.recommended.values()][0]?.variant,
    [...conclude(fixed).recommended.values()][0]?.variant,
  );
});
