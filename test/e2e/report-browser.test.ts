/**
 * Loads the report of a real recorded run (test/fixtures/runs/) in Debian's chromium, headless,
 * through file://: every chart must be drawn (an SVG with data marks), with no console error and no
 * network request. Keeps a full-page screenshot in tmp/report-browser.png (gitignored); with
 * KVMIO_UPDATE_DOCS_IMAGES=1 it also refreshes the README's images in docs/images/.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type Browser, chromium } from 'playwright-core';
import {
  type ReportResult,
  type RunExport,
  reportDataFromExports,
  writeReport,
} from '../../src/report/index.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const FIXTURE = join(ROOT, 'test/fixtures/runs/report-fixture.json');
const CHROMIUM = '/usr/bin/chromium';

let out: string;
let profile: string;
let result: ReportResult;
let browser: Browser | undefined;

before(async () => {
  out = mkdtempSync(join(tmpdir(), 'kvmio-report-browser-'));
  profile = mkdtempSync(join(tmpdir(), 'kvmio-chromium-'));
  const doc = JSON.parse(readFileSync(FIXTURE, 'utf8')) as RunExport;
  result = await writeReport(reportDataFromExports([doc]), out);
});

after(async () => {
  await browser?.close();
  rmSync(out, { recursive: true, force: true });
  rmSync(profile, { recursive: true, force: true });
});

test('chromium draws every chart of index.html with no console error', {
  skip: !existsSync(CHROMIUM) && 'no /usr/bin/chromium',
}, async () => {
  // A persistent context gives the fresh user-data-dir; never a downloaded browser.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
  });
  browser = context.browser() ?? undefined;
  try {
    const page = await context.newPage();
    const errors: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('request', (r) => {
      if (!r.url().startsWith('file:')) requests.push(r.url());
    });
    await page.goto(pathToFileURL(join(out, 'index.html')).href, { waitUntil: 'load' });
    const drawn = await page.$$eval('figure.chart', (figs) =>
      figs.map((f) => {
        const svg = f.querySelector('svg');
        const marks = svg
          ? svg.querySelectorAll('.role-mark path, .role-mark line, .role-mark rect').length
          : 0;
        const box = svg?.getBoundingClientRect();
        return { id: f.getAttribute('data-chart'), marks, width: box?.width ?? 0, height: box?.height ?? 0 };
      }),
    );
    assert.equal(drawn.length, result.charts.length, 'one figure per chart');
    for (const d of drawn) {
      assert.ok(d.marks > 0, `chart ${d.id} has no data marks`);
      assert.ok(d.width > 100 && d.height > 100, `chart ${d.id} is laid out (${d.width}×${d.height})`);
    }
    assert.deepEqual(errors, []);
    assert.deepEqual(requests, []);
    const keep = join(ROOT, 'tmp');
    mkdirSync(keep, { recursive: true });
    const shot = join(keep, 'report-browser.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.equal(readFileSync(shot).subarray(1, 4).toString(), 'PNG');
    // A phone-sized viewport: the charts shrink to the width instead of overflowing the page.
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `page scrolls sideways by ${overflow}px on a phone`);
    await page.screenshot({ path: join(keep, 'report-browser-phone.png') });
    if (process.env.KVMIO_UPDATE_DOCS_IMAGES === '1') {
      const docs = join(ROOT, 'docs/images');
      mkdirSync(docs, { recursive: true });
      await page.setViewportSize({ width: 1280, height: 900 });
      await page.screenshot({ path: join(docs, 'report-page.png') });
      await page
        .locator('.charts')
        .first()
        .screenshot({ path: join(docs, 'report-charts.png') });
      for (const id of [
        'latency-qd1',
        'iops-max',
        'cpu-per-kiops-iops-randread',
        'lat-vs-iops-sweep-randread',
      ]) {
        const png = join(out, 'charts', `${id}.png`);
        if (existsSync(png)) copyFileSync(png, join(docs, `report-${id}.png`));
      }
    }
  } finally {
    await context.close();
  }
});
