// A million clients through the web front end, as a user would: log in, choose the file on
// the clients page, press Import, and watch the progress bar until the summary shows.
// Prints the bar's value every few seconds. Not a test (it takes a minute or two): run by
// `bash bench/web_import.sh`, which starts a release `server` on a fresh database.
//
// Settings (environment): BASE_URL, EMAIL, PASSWORD, LINES (default 1000000), CHROMIUM.

import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import en from '../web/app/i18n/en.js';

// playwright-core as the browser test has it (tests/js, installed by `bash .ci/test`).
const { chromium } = createRequire(new URL('../tests/js/package.json', import.meta.url))('playwright-core');

const { BASE_URL, EMAIL, PASSWORD } = process.env;
const LINES = Number(process.env.LINES || 1000000);

const file = `/tmp/mailwarm-web-import-${LINES}.csv`;
const rows = ['email,full_name,tags,plan,seats'];
for (let i = 0; i < LINES; i += 1) {
  rows.push(`web-${i}@example-${i % 97}.com,Web Client ${i},${i % 10 === 0 ? 'ten' : ''},${i % 10 === 3 ? 'pro' : 'free'},${i % 500}`);
}
writeFileSync(file, `${rows.join('\n')}\n`);
console.log(`${LINES} lines, ${(rows.join('\n').length / 1e6).toFixed(0)} MB`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
const page = await (await browser.newContext({ baseURL: BASE_URL })).newPage();
await page.goto('/login');
await page.getByLabel(en['field.email']).fill(EMAIL);
await page.getByLabel(en['field.password']).fill(PASSWORD);
await page.getByRole('button', { name: en['login.submit'] }).click();
await page.getByRole('heading', { level: 1, name: en['mailings.title'] }).waitFor();
await page.goto('/clients');
await page.locator('#csv-file').setInputFiles(file);
const started = Date.now();
await page.getByRole('button', { name: en['clients.import'], exact: true }).click();
const summary = page.locator('#import-summary');
for (;;) {
  if (await summary.count()) break;
  const bar = page.locator('#import-progress');
  const text = await page.locator('#import-progress + p').textContent();
  console.log(`${((Date.now() - started) / 1000).toFixed(0)} s: bar ${await bar.getAttribute('value')} of ${await bar.getAttribute('max')}: ${text}`);
  await page.waitForTimeout(5000);
}
console.log(`${((Date.now() - started) / 1000).toFixed(1)} s: ${await summary.textContent()}`);
await browser.close();
