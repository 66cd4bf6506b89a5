// Shared by the browser tests of the reviewer page: Debian's chromium
// driven by playwright-core, a fresh profile per run, and checks that fail
// with one clear line.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const CHROMIUM = process.env.SANDBOX_CHROMIUM || '/usr/bin/chromium';

/** Bounds every wait, so that a broken page fails the test instead of hanging it. */
export const PATIENCE_MS = Number(process.env.SANDBOX_BROWSER_PATIENCE_MS || 60000);

export function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`the environment variable ${name} is not set`);
    process.exit(2);
  }
  return v;
}

/** The message with everything but printable ASCII escaped, for a terminal. */
function printable(s) {
  return String(s).replace(/[^\x20-\x7e\n]/gu, (c) => `\\u{${c.codePointAt(0).toString(16)}}`);
}

export function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${printable(what)}`);
  console.log(`ok: ${printable(what)}`);
}

/**
 * A headless chromium with a fresh user-data-dir, and one page that records
 * uncaught errors, dialogs, Content-Security-Policy reports and the
 * requests the page makes.
 */
export async function open(baseUrl) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sandbox-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
    timeout: PATIENCE_MS,
  });
  context.setDefaultTimeout(PATIENCE_MS);
  const page = context.pages()[0] || (await context.newPage());
  const seen = { errors: [], dialogs: [], csp: [], console: [], requests: [] };
  page.on('pageerror', (e) => seen.errors.push(String(e)));
  page.on('dialog', async (d) => {
    seen.dialogs.push(`${d.type()}: ${d.message()}`);
    await d.dismiss();
  });
  page.on('console', (m) => {
    const text = m.text();
    seen.console.push(`${m.type()}: ${text}`);
    if (/Content.Security.Policy/i.test(text)) seen.csp.push(text);
  });
  page.on('request', async (r) => {
    // allHeaders(): the headers as sent, cookies and authorization included.
    const headers = await r.allHeaders().catch(() => r.headers());
    seen.requests.push({ url: r.url(), method: r.method(), headers });
  });
  const origin = new URL(baseUrl).origin;
  // Nothing but the service itself: a page that reached out elsewhere fails.
  await context.route('**/*', (route) => {
    const u = route.request().url();
    if (new URL(u).origin === origin) return route.continue();
    seen.errors.push(`the page asked for a foreign resource: ${u}`);
    return route.abort();
  });
  const close = async () => {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, seen, close };
}

/** Logs in with `token` and waits until the page shows who is logged in. */
export async function login(page, baseUrl, token) {
  await page.goto(baseUrl, { waitUntil: 'load' });
  await page.locator('#login').waitFor({ state: 'visible' });
  await page.fill('#token', token);
  await page.click('#login-button');
  await page.locator('#whoami').waitFor({ state: 'visible' });
  return (await page.textContent('#me-name')).trim();
}

/** The pending card whose target reads `target`, waiting for it. */
export function pendingCard(page, target) {
  return page.locator('#pending article.card').filter({
    has: page.locator('.card-head .guest.target .value', { hasText: target }),
  });
}

/** A card by request id, in `#pending` or `#history`. */
export function cardById(page, list, id) {
  return page.locator(`#${list} article.card[data-id=${JSON.stringify(id)}]`);
}

/** Checks the page made no error, dialog or CSP report. */
export function checkQuiet(seen) {
  check(seen.errors.length === 0, `no uncaught error on the page ${JSON.stringify(seen.errors)}`);
  check(seen.dialogs.length === 0, `no dialog opened ${JSON.stringify(seen.dialogs)}`);
  check(seen.csp.length === 0, `no Content-Security-Policy violation ${JSON.stringify(seen.csp)}`);
}

/** Every API call carried the token as a Bearer header, none carried a cookie. */
export function checkAuthHeaders(seen, token) {
  const api = seen.requests.filter((r) => new URL(r.url).pathname.startsWith('/api/'));
  check(api.length > 0, `the page called the API (${api.length} calls)`);
  check(
    api.every((r) => (r.headers.authorization || '').startsWith('Bearer ')),
    'every API call carries an Authorization: Bearer header',
  );
  check(
    api.some((r) => r.headers.authorization === `Bearer ${token}`),
    'the reviewer token travels in the Authorization header',
  );
  check(
    seen.requests.every((r) => !('cookie' in r.headers)),
    'no request carries a cookie',
  );
  check(
    seen.requests.every((r) => !r.url.includes(token)),
    'the token never appears in a URL',
  );
}

/** Runs `main`, prints the outcome, exits 0 or 1. */
export async function run(main) {
  try {
    await main();
    console.log('browser test passed');
    process.exit(0);
  } catch (e) {
    console.error(`browser test FAILED: ${printable(e && e.stack ? e.stack : e)}`);
    process.exit(1);
  }
}

export async function screenshot(page, name) {
  const dir = process.env.SANDBOX_SCREENSHOT_DIR;
  if (!dir) return;
  fs.mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: true });
}
