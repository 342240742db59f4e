/**
 * A verdict must not depend on which side is the reference: swapping A and B mirrors it (better ↔
 * worse, every other kind unchanged), before and after Holm's control, over many generated samples.
 * The regression case is a real recorded run (test/fixtures/runs/report-fixture.json, see its README).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  buildConclusion,
  buildModel,
  type RunExport,
  reportDataFromExports,
} from '../../src/report/index.js';
import {
  type Comparison,
  compareSamples,
  controlFamily,
  decide,
  type VerdictKind,
} from '../../src/stats/index.js';
import { seededRandom } from '../../src/study/shuffle.js';

const MIRROR: Record<VerdictKind, VerdictKind> = {
  better: 'worse',
  worse: 'better',
  'no-real-difference': 'no-real-difference',
  'no-significant-difference': 'no-significant-difference',
  'too-noisy': 'too-noisy',
};

/** Samples of a positive metric: lognormal-ish spread around a mean, as repetitions of a benchmark are. */
function sample(rand: () => number, n: number, mean: number, cv: number): number[] {
  return Array.from({ length: n }, () => {
    // Box–Muller from the seeded PRNG.
    const z = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
    return mean * Math.exp(cv * z);
  });
}

function mirrored(ab: Comparison, ba: Comparison, what: string): void {
  assert.equal(ba.kind, MIRROR[ab.kind], `${what}: ${ab.phrase} / ${ba.phrase}`);
  assert.equal(ba.p, ab.p, what);
  assert.equal(decide(ba.interval, ba.practicalThreshold), decide(ab.interval, ab.practicalThreshold), what);
  // The interval of A/B is the reciprocal of the interval of B/A (1/0 = ∞).
  const same = (x: number, y: number) => x === y || Math.abs(x - y) <= 1e-9 * Math.abs(y);
  assert.ok(
    same(ba.interval.low, 1 / ab.interval.high),
    `${what}: ${ba.interval.low} vs 1/${ab.interval.high}`,
  );
  assert.ok(
    same(ba.interval.high, 1 / ab.interval.low),
    `${what}: ${ba.interval.high} vs 1/${ab.interval.low}`,
  );
}

test('swapping the sides mirrors every verdict over 5,000 generated sample pairs', () => {
  const rand = seededRandom('verdict-symmetry');
  const seen = new Set<VerdictKind>();
  for (let i = 0; i < 5000; i++) {
    const nA = 2 + Math.floor(rand() * 5);
    const nB = 2 + Math.floor(rand() * 5);
    const base = 10 ** (1 + rand() * 5);
    // Ratios from 0.25× to 4× (a third within ±3%), spreads from 0.1% to 80%: every verdict kind occurs.
    const ratio = rand() < 1 / 3 ? 1.03 ** (2 * rand() - 1) : 4 ** (2 * rand() - 1);
    const cv = rand() < 1 / 3 ? 0.001 + rand() * 0.02 : 0.001 + rand() * 0.8;
    const a = sample(rand, nA, base, cv);
    const b = sample(rand, nB, base * ratio, cv * (0.5 + rand()));
    const metric = rand() < 0.5 ? 'read.iops' : 'read.clat_mean_ns';
    const ab = compareSamples(a, b, { metric });
    const ba = compareSamples(b, a, { metric });
    mirrored(ab, ba, `pair ${i}`);
    seen.add(ab.kind);
  }
  assert.deepEqual([...seen].sort(), Object.keys(MIRROR).sort(), 'every verdict kind was generated');
});

test("Holm's control keeps the mirror: a family compared one way and the other way round", () => {
  const rand = seededRandom('family-symmetry');
  for (let f = 0; f < 300; f++) {
    const pairs = Array.from({ length: 2 + Math.floor(rand() * 8) }, () => {
      const base = 100 + rand() * 1000;
      const ratio = 2 ** (2 * rand() - 1);
      return [sample(rand, 3, base, 0.02 + rand() * 0.3), sample(rand, 3, base * ratio, 0.02 + rand() * 0.3)];
    }) as [number[], number[]][];
    const ab = controlFamily(pairs.map(([a, b]) => compareSamples(a, b, { metric: 'write.iops' })));
    const ba = controlFamily(pairs.map(([a, b]) => compareSamples(b, a, { metric: 'write.iops' })));
    ab.forEach((c, i) => {
      mirrored(c, ba[i] as Comparison, `family ${f} #${i}`);
      // The adjusted interval excludes 1 exactly when the adjusted p is below alpha.
      const excludes = c.interval.low > 1 || c.interval.high < 1;
      assert.equal(excludes, c.pAdjusted < c.alpha, `family ${f} #${i}: p_adj ${c.pAdjusted}`);
    });
  }
});

test('recorded run: QD1 random-write latency, native without vs with an iothread, reads the same both ways', () => {
  // 352 µs (2 reps) against 1,638 µs (2 reps): once "no significant difference (p = 1.00)", the other
  // way round "too noisy to tell (± 641%)". A 4.6× difference of unknown sign is not "no difference".
  const doc = JSON.parse(
    readFileSync(
      fileURLToPath(new URL('../../../test/fixtures/runs/report-fixture.json', import.meta.url)),
      'utf8',
    ),
  ) as RunExport;
  const values = (variant: string) =>
    doc.rows
      .filter(
        (r) => r.variant === variant && r.workload === 'lat-randwrite' && r.metric === 'write.clat_mean_ns',
      )
      .map((r) => r.value);
  const io0 = values('blk-native-io0-4k');
  const io1 = values('blk-native-io1-4k');
  assert.equal(io0.length, 2);
  assert.equal(io1.length, 2);
  const one = compareSamples(io1, io0, { metric: 'write.clat_mean_ns' });
  const other = compareSamples(io0, io1, { metric: 'write.clat_mean_ns' });
  assert.ok(one.meanA / one.meanB > 4.5);
  assert.equal(one.kind, 'too-noisy');
  assert.equal(other.kind, 'too-noisy');
  assert.doesNotMatch(one.phrase, /no (significant|real) difference/);

  // And in the report, where the reference is native with an iothread and the family is controlled.
  const model = buildModel(reportDataFromExports([doc]));
  const claim = buildConclusion(model).claims.find(
    (c) =>
      c.question === 'iothread' &&
      c.b.variant === 'blk-native-io0-4k' &&
      c.a.variant === 'blk-native-io1-4k' &&
      c.measure.startsWith('latency, Random Write'),
  );
  assert.ok(claim, 'the report compares the two');
  assert.equal(claim.comparison.kind, 'too-noisy', claim.comparison.phrase);
});
