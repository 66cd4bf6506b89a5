// The HTML report of `sandbox audit report` in a real browser, opened from
// a file:// URL as an auditor would open an attachment: it renders with its
// styles (allowed by the Content-Security-Policy), shows every section,
// every approval and refused call, both charts with their titles and text
// equivalents, makes no request and logs no error, and hostile log text is
// inert (no element injected, no script run, no link out, hidden characters
// shown as escapes). A report of a tampered log says NOT INTACT at its top.
//
// Environment:
//   SANDBOX_REPORT_HTML      the report of an intact log
//   SANDBOX_REPORT_TAMPERED  the report of the same log, tampered with
//   SANDBOX_REPORT_EXPECT    JSON: { approvals: [{seq, by, request}],
//                            denials: [{seq, rule}], hostile: [strings],
//                            controls: [anchors], bad_seq }
//   SANDBOX_SCREENSHOT_DIR   when set, full-page screenshots go there
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import { check, checkQuiet, need, open, run, screenshot } from './lib.mjs';

const reportPath = need('SANDBOX_REPORT_HTML');
const tamperedPath = need('SANDBOX_REPORT_TAMPERED');
const expect = JSON.parse(fs.readFileSync(need('SANDBOX_REPORT_EXPECT'), 'utf8'));

const SECTIONS = ['verification', 'summary', 'charts', 'controls', 'approvals', 'denials', 'findings', 'counts', 'files'];

/** Opens `file` and returns the browser, after checking what it loaded. */
async function show(file) {
  const url = pathToFileURL(file).href;
  const b = await open(url);
  const response = await b.page.goto(url, { waitUntil: 'load' });
  check(response === null || response.ok(), `the report opens from ${url}`);
  return { ...b, url };
}

/** Nothing but the file itself was requested, and nothing complained. */
function checkSelfContained(b) {
  const others = b.seen.requests.filter((r) => r.url !== b.url);
  check(others.length === 0, `the report made no request of its own ${JSON.stringify(others.map((r) => r.url))}`);
  const errors = b.seen.console.filter((m) => m.startsWith('error'));
  check(errors.length === 0, `no console error ${JSON.stringify(errors)}`);
  checkQuiet(b.seen);
}

/** No element, attribute or link the log could have injected. */
async function checkInert(page) {
  const found = await page.evaluate(() => {
    const all = [...document.querySelectorAll('*')];
    return {
      scripts: document.querySelectorAll('script, iframe, object, embed, img, form, input, link[rel], base').length,
      handlers: all.filter((e) => [...e.attributes].some((a) => a.name.toLowerCase().startsWith('on'))).length,
      links: [...document.querySelectorAll('a[href]')].map((a) => a.getAttribute('href')).filter((h) => !h.startsWith('#')),
      pwned: window.__pwned === undefined ? null : String(window.__pwned),
      hiddenInText: /[\u202a-\u202e\u2066-\u2069\u200b-\u200f\u2060\ufeff\x00-\x08\x0b-\x1f\x7f-\x9f]/u.test(document.body.innerText),
    };
  });
  check(found.scripts === 0, `no script, image, frame, form or link element (${found.scripts})`);
  check(found.handlers === 0, `no event-handler attribute (${found.handlers})`);
  check(found.links.length === 0, `every link stays in the report ${JSON.stringify(found.links)}`);
  check(found.pwned === null, 'no injected script ran');
  check(!found.hiddenInText, 'no bidi, zero-width or control character reaches the rendered text');
}

run(async () => {
  const b = await show(reportPath);
  const { page } = b;
  try {
    check((await page.title()).startsWith('Audit evidence report'), 'the page is titled');
    for (const id of SECTIONS) {
      check(await page.locator(`section#${id}`).isVisible(), `section #${id} is shown`);
    }
    const styled = await page.evaluate(() => getComputedStyle(document.querySelector('.banner')).borderTopStyle);
    check(styled === 'solid', 'the inline style sheet applies under the Content-Security-Policy');
    const banner = page.locator('#verification');
    check((await banner.getAttribute('class')).includes('ok'), 'the verification banner is the intact one');
    check((await banner.innerText()).includes('INTACT'), 'the banner says INTACT');

    // Every approval and refused call of the log, in its table.
    for (const a of expect.approvals) {
      const row = page.locator('#approvals tbody tr', { hasText: new RegExp(`seq ${a.seq}(?!\\d)`) });
      check((await row.count()) === 1, `approval seq ${a.seq} is listed once`);
      check(await row.isVisible(), `approval seq ${a.seq} is visible`);
      const text = await row.innerText();
      for (const name of a.by) check(text.includes(name), `approval seq ${a.seq} names reviewer ${name}`);
      if (a.request) check(text.includes(a.request), `approval seq ${a.seq} shows request ${a.request}`);
      if (a.effect) check(text.includes(a.effect), `approval seq ${a.seq} shows its effect hash`);
    }
    const approvalRows = await page.locator('#approvals tbody tr').count();
    check(approvalRows === expect.approvals.length, `the approvals table has ${expect.approvals.length} rows (${approvalRows})`);
    for (const d of expect.denials) {
      const row = page.locator('#denials tbody tr', { hasText: new RegExp(`seq ${d.seq}(?!\\d)`) });
      check((await row.count()) === 1 && (await row.isVisible()), `refused call seq ${d.seq} is listed and visible`);
      check((await row.innerText()).includes(d.rule), `refused call seq ${d.seq} names its rule`);
    }
    const denialRows = await page.locator('#denials tbody tr').count();
    check(denialRows === expect.denials.length, `the refused-calls table has ${expect.denials.length} rows (${denialRows})`);

    // Both charts, with their titles and text equivalents.
    for (const [id, title] of [
      ['chart-time', 'Calls over time'],
      ['chart-tools', 'Decisions by tool'],
    ]) {
      const svg = page.locator(`#${id} svg[role=img]`);
      check(await svg.isVisible(), `chart ${title} is drawn`);
      check((await page.locator(`#${id} svg > title`).textContent()) === title, `chart ${title} has its title`);
      const desc = await page.locator(`#${id} svg > desc`).textContent();
      check(desc.length > 20, `chart ${title} has a text description`);
      const bars = await page.locator(`#${id} svg rect`).count();
      check(bars > 0, `chart ${title} has bars (${bars})`);
      const box = await svg.boundingBox();
      check(box && box.width > 300 && box.height > 50, `chart ${title} has a size (${JSON.stringify(box)})`);
      check((await page.locator(`#${id} details table tbody tr`).count()) > 0, `chart ${title} has its numbers as a table`);
    }

    // A section per control, of every framework.
    for (const anchor of expect.controls) {
      check(await page.locator(`article.control#${anchor}`).isVisible(), `control ${anchor} is shown`);
    }
    const unverified = await page.locator('#controls').innerText();
    check(unverified.includes('users are recorded as given (unverified)'), 'the controls say users are unverified');

    // Hostile text is there, as text.
    const body = await page.locator('body').innerText();
    for (const h of expect.hostile) check(body.includes(h), `hostile text shown as text: ${h}`);
    check(body.includes('\\u{202e}'), 'U+202E is shown as a visible escape');
    check((await page.locator('span.esc').count()) > 0, 'hidden characters are marked escapes');
    await checkInert(page);

    // Every link to a table lands on an element of the page.
    const targets = await page.evaluate(() =>
      [...document.querySelectorAll('a[href^="#"]')].map((a) => a.getAttribute('href').slice(1)).filter((id) => !document.getElementById(id)),
    );
    check(targets.length === 0, `every link in the report has its target ${JSON.stringify(targets)}`);
    await screenshot(page, 'audit-report');
    checkSelfContained(b);
  } finally {
    await b.close();
  }

  const t = await show(tamperedPath);
  try {
    const banner = t.page.locator('#verification');
    check((await banner.getAttribute('class')).includes('bad'), 'a tampered log gets the alarm banner');
    const text = await banner.innerText();
    check(text.includes('NOT INTACT'), 'the banner says NOT INTACT');
    check(text.includes(`seq ${expect.bad_seq}`), `the banner names seq ${expect.bad_seq}`);
    const top = await banner.boundingBox();
    check(top && top.y < 700, `the banner is at the top of the page (y ${top && top.y})`);
    const color = await t.page.evaluate(() => getComputedStyle(document.querySelector('#verification')).backgroundColor);
    check(color !== 'rgba(0, 0, 0, 0)', `the banner is coloured (${color})`);
    await checkInert(t.page);
    await screenshot(t.page, 'audit-report-tampered');
    checkSelfContained(t);
  } finally {
    await t.close();
  }
});
