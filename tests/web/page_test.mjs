// kvscope in a real browser: headless Chromium (Debian's, driven by puppeteer-core)
// opens build-web/site at 1280x720 and does what a student would: C (cache off), then
// Space six times. The page's title is the window title (kvui::window_title), so it
// says what the window shows: the prefill predicts "language" after "Python is a
// programming", and the sixth step is "Step 5, decode, cache off". Then L and Right
// x3 open lesson chapter 4. S (before L) must download a PNG. Screenshots go to OUT_DIR; scripts/web --test then has
// tests/ui_png_check.cpp find the cache panel's 9 rows (8 recomputed, 1 computed now)
// in their tag colours in step5-cache-off.png, as the desktop's presenter test does.
//   node tests/web/page_test.mjs SITE_DIR OUT_DIR        (scripts/web --test runs it)
import fs from 'node:fs';
import path from 'node:path';
import puppeteer from 'puppeteer-core';
import { serve } from '../../app/web/serve.mjs';

const [site, outDir] = process.argv.slice(2);
const chromium = process.env.KVSCOPE_CHROMIUM ?? '/usr/bin/chromium';
const kLimitMs = 150000;  // the whole test, the browser's start included

function fail(msg) {
  console.error(`page_test: FAIL: ${msg}`);
  process.exit(1);
}

// A key press as a person makes it: ImGui 1.86 reads key state once a frame.
async function press(page, key) {
  await page.keyboard.press(key, { delay: 50 });
}

// Waits until the title passes test; fails naming what the title was.
async function waitTitle(page, what, test, ...args) {
  try {
    await page.waitForFunction(test, { timeout: 30000, polling: 50 }, ...args);
  } catch {
    fail(`the page title never showed ${what}; it is "${await page.title()}"`);
  }
  console.log(`page_test: ${await page.title()}`);
}

async function screenshot(page, name) {
  const file = path.join(outDir, name);
  await page.screenshot({ path: file });
  console.log(`page_test: wrote ${file}`);
}

// S saves a screenshot; in the browser that is a download of kvscope-DATE-TIME.png.
async function downloadedScreenshot(page) {
  const cdp = await page.createCDPSession();
  await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: path.resolve(outDir) });
  await press(page, 'KeyS');
  const png = (f) => /^kvscope-\d{8}-\d{6}\.png$/.test(f);
  for (let waited = 0; waited < 10000; waited += 100) {
    const f = fs.readdirSync(outDir).find(png);
    const bytes = f ? fs.readFileSync(path.join(outDir, f)) : null;
    if (bytes && bytes.length > 8 && bytes.subarray(1, 4).toString() === 'PNG') {
      console.log(`page_test: S downloaded ${f} (${bytes.length} bytes)`);
      return;
    }
    await new Promise((done) => setTimeout(done, 100));
  }
  fail('S did not download a kvscope-*.png within 10 s');
}

async function run(page, url, errors) {
  await page.goto(url);
  try {
    await page.waitForFunction(() => typeof Browser !== 'undefined' && Browser.mainLoop.currentFrameNumber > 3,
                               { timeout: 60000, polling: 100 });
  } catch {
    fail(`no frame was drawn within 60 s${errors.length ? ': ' + errors.join('; ') : ''}`);
  }
  await press(page, 'KeyC');
  await press(page, 'Space');
  await waitTitle(page, 'the prefill predicting "language"',
                  () => document.title === "kvscope: Step 0, prefill, cache off, next 'language'");
  for (let step = 1; step <= 5; ++step) {
    await press(page, 'Space');
    await waitTitle(page, `Step ${step}`, (s) => document.title.startsWith(`kvscope: Step ${s}, decode, cache off`),
                    step);
  }
  await new Promise((done) => setTimeout(done, 1500));  // the new row's slide-in and flash (cache_panel.cpp) end
  await screenshot(page, 'step5-cache-off.png');
  await downloadedScreenshot(page);
  await press(page, 'KeyL');
  for (let i = 0; i < 3; ++i) await press(page, 'ArrowRight');
  await waitTitle(page, 'lesson chapter 4', () => document.title.endsWith('(lesson chapter 4)'));
  await screenshot(page, 'lesson-chapter4.png');
}

async function main() {
  if (!site || !outDir) fail('usage: node tests/web/page_test.mjs SITE_DIR OUT_DIR');
  if (!fs.existsSync(path.join(site, 'index.html'))) fail(`${site}: no index.html (build it with scripts/web)`);
  if (!fs.existsSync(chromium)) fail(`${chromium}: no such browser (apt-get install chromium)`);
  fs.mkdirSync(outDir, { recursive: true });
  const { server, url } = await serve(site);
  // WebGL 2 in software: no GPU in CI.
  const browser = await puppeteer.launch({
    executablePath: chromium, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--enable-unsafe-swiftshader', '--use-angle=swiftshader'],
  });
  const errors = [];
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 720 });
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    await run(page, url, errors);
  } finally {
    await browser.close();
    server.close();
  }
  if (errors.length) fail(`the page reported errors: ${errors.join('; ')}`);
  console.log('page_test: passed');
}

setTimeout(() => fail(`not done after ${kLimitMs / 1000} s`), kLimitMs).unref();
main().catch((e) => fail(e.message));
