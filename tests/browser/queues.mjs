// Drives the queue dashboard like an operator would: sign in through the
// login form, open a failed job from the list, press Retry, and reload the
// job page until it shows "succeeded".
//
//   node tests/browser/queues.mjs <base-url> <email> <password> <job-id>
//
// Run by tests/api/dashboard.rs, which starts the app and the workers.
// Uses Debian's /usr/bin/chromium (CHROMIUM overrides the path); never
// downloads a browser. Exits 0 on success, 1 with a message otherwise.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [baseUrl, email, password, jobId] = process.argv.slice(2);
if (!baseUrl || !email || !password || !jobId) {
  console.error('usage: node queues.mjs <base-url> <email> <password> <job-id>');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const RELOADS = 150; // × 200 ms: at most ~30 s for the retried job to succeed

const profile = mkdtempSync(join(tmpdir(), 'dispatch-chromium-'));
let browser;
let page;
try {
  // A fresh profile each run: playwright passes it as --user-data-dir.
  browser = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    timeout: 60_000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  page = browser.pages()[0] ?? (await browser.newPage());
  page.setDefaultTimeout(15_000);
  const violations = [];
  page.on('console', (msg) => {
    if (/Content Security Policy/i.test(msg.text())) violations.push(msg.text());
  });

  // 1. Unauthenticated: the dashboard sends us to its login form.
  await page.goto(`${baseUrl}/admin/queues`);
  if (!page.url().endsWith('/admin/queues/login')) {
    throw new Error(`expected the login page, got ${page.url()}`);
  }
  await page.fill('input[name="email"]', email);
  await page.fill('input[name="password"]', password);
  await Promise.all([
    page.waitForURL(`${baseUrl}/admin/queues`),
    page.click('button[type="submit"]'),
  ]);
  await page.waitForSelector('table#queues');
  console.log('signed in; overview shown');

  // 2. The failed jobs list, then the job's own page.
  await page.click('nav a:text-is("Failed")');
  await page.waitForSelector(`tr[data-job="${jobId}"]`);
  await Promise.all([
    page.waitForURL(`${baseUrl}/admin/queues/jobs/${jobId}`),
    page.click(`tr[data-job="${jobId}"] a`),
  ]);
  const before = (await page.textContent('#job-state'))?.trim();
  if (before !== 'failed') throw new Error(`expected a failed job, the page says ${before}`);
  console.log('job page shows failed');

  // 3. Retry; the POST redirects back to the job page.
  await Promise.all([
    page.waitForURL(`${baseUrl}/admin/queues/jobs/${jobId}`),
    page.click('button:text-is("Retry")'),
  ]);
  console.log('retry pressed');

  // 4. Reload until the worker has run it again (bounded).
  let state = '';
  for (let i = 0; i < RELOADS; i += 1) {
    state = (await page.textContent('#job-state'))?.trim() ?? '';
    if (state === 'succeeded') break;
    await page.waitForTimeout(200);
    await page.reload();
  }
  if (state !== 'succeeded') throw new Error(`the job never succeeded; last state: ${state}`);
  if (violations.length) throw new Error(`CSP violations: ${violations.join('; ')}`);
  console.log('job page shows succeeded');
  await browser.close();
  browser = undefined;
  process.exitCode = 0;
} catch (err) {
  console.error(`browser test failed: ${err?.stack || err}`);
  if (page) {
    const text = await page.textContent('main').catch(() => '');
    console.error(`last page: ${page.url()}\n${(text || '').trim().slice(0, 2000)}`);
  }
  process.exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
