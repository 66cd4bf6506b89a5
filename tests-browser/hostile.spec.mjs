// Tool-supplied text that tries to run script, hide or disguise itself
// (markup, terminal escapes, bidi overrides, zero-width characters) is
// rendered inert: nothing runs, no markup appears, every hidden character
// is shown as a highlighted escape, and long text is cut visibly and can be
// shown whole.
//
// The script submits its own hostile request through the runner API, then
// reviews it in the browser and rejects it with a hostile comment.
//
// Environment:
//   SANDBOX_APPROVALS_URL   the service, e.g. http://127.0.0.1:8700
//   SANDBOX_REVIEWER_TOKEN  a reviewer token
//   SANDBOX_RUNNER_TOKEN    a runner token (to submit the request)
//   SANDBOX_SCREENSHOT_DIR  when set, screenshots go there
import crypto from 'node:crypto';
import { cardById, check, checkAuthHeaders, checkQuiet, login, need, open, run, screenshot } from './lib.mjs';

const base = need('SANDBOX_APPROVALS_URL');
const token = need('SANDBOX_REVIEWER_TOKEN');
const runnerToken = need('SANDBOX_RUNNER_TOKEN');

const SCRIPT = '<script>window.__pwned = "script"</script>';
const IMG = '<img src=x onerror="window.__pwned = \'img\'">';
const LONG = 9000; // more than the page shows of an intent before a cut
const intent =
  '\x1b[2J\x1b[31mall good\x1b[0m \u202eevil\u202c ' + SCRIPT + ' ' + IMG + ' \x9b6n end;' + 'x'.repeat(LONG) + '|tail';
const target = 'src/report\u202efdp.exe\u200b\u2060\ufeff.txt';
const dest = 'src/' + SCRIPT + '\x1b[8m\u2066hidden\u2069\u200c.rs';
const preview = [
  '--- current',
  '+++ proposed',
  '@@ -1,3 +1,3 @@',
  '-<b>old</b>',
  '+' + SCRIPT + '\x1b]0;owned\x07',
  ' \u2067ctx\u2069\u200d' + IMG,
  '--- looks like a header\u202a',
  '+plain',
  '',
].join('\n');
const comment = IMG + ' \u202egnirts\u202c \x1b[1m';
// Every character the page must show as an escape, as it shows it.
const ESCAPES = ['\\x1b', '\\x9b', '\\x07', '\\u{202e}', '\\u{202c}', '\\u{200b}', '\\u{2060}', '\\u{feff}', '\\u{2066}', '\\u{2069}', '\\u{2067}', '\\u{200c}', '\\u{200d}', '\\u{202a}'];
const RAW = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/u;

async function submit() {
  const sha = (s) => 'sha256:' + crypto.createHash('sha256').update(s).digest('hex');
  const body = {
    task: 'task-hostile',
    user: 'mallory',
    agent: 'probe\u200d' + IMG,
    intent,
    capability: 'fs.rename',
    target,
    dest,
    rule: 'fs.write:src/**',
    require: { any: true },
    preview,
    content_sha256: null,
    effect_sha256: sha(target + dest),
    size: null,
    timeout_ms: 600000,
  };
  const res = await fetch(`${base}/api/runner/requests`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${runnerToken}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  check(res.status === 201, `the service took the hostile request (${res.status} ${text})`);
  return JSON.parse(text).id;
}

/** Tags the page itself builds; anything else would be injected markup. */
const TAGS = ['DIV', 'SECTION', 'H2', 'H3', 'H4', 'P', 'SPAN', 'STRONG', 'OL', 'UL', 'LI', 'DL', 'DT', 'DD', 'PRE', 'TIME', 'ARTICLE', 'FORM', 'LABEL', 'TEXTAREA', 'BUTTON', 'DETAILS', 'SUMMARY', 'CODE'];

async function inert(page, where) {
  const found = await page.evaluate((tags) => {
    const bad = [];
    for (const e of document.querySelectorAll('#app *')) {
      if (!tags.includes(e.tagName)) bad.push(`<${e.tagName.toLowerCase()}>`);
      for (const a of e.attributes) {
        // (an empty `style` is what a screenshot's caret hiding leaves behind)
        const styled = a.name === 'style' && a.value.trim() !== '';
        if (/^on/i.test(a.name) || styled || a.name === 'src' || a.name === 'href') bad.push(`${e.tagName}[${a.name}]`);
      }
    }
    return { bad, scripts: document.scripts.length, pwned: window.__pwned === undefined ? null : String(window.__pwned) };
  }, TAGS);
  check(found.pwned === null, `${where}: no injected script ran (window.__pwned is ${found.pwned})`);
  check(found.scripts === 1, `${where}: the page's own script is the only one (${found.scripts})`);
  check(found.bad.length === 0, `${where}: no injected element or attribute ${JSON.stringify(found.bad)}`);
  const shown = await page.locator('body').innerText();
  const raw = RAW.exec(shown);
  check(raw === null, `${where}: no control, bidi or zero-width character reaches the screen ${raw ? JSON.stringify(raw[0]) : ''}`);
}

async function main() {
  const id = await submit();
  const { page, seen, close } = await open(base);
  try {
    await login(page, base, token);
    const card = cardById(page, 'pending', id);
    await card.waitFor({ state: 'visible' });
    await page.waitForTimeout(500); // give anything injected the chance to run
    await inert(page, 'pending');

    const escapes = await card.locator('.esc').allTextContents();
    for (const e of ESCAPES) check(escapes.includes(e), `${e} is shown as a marked escape`);
    const shownTarget = await card.locator('dl.fields .guest.target .value').first().textContent();
    check(
      shownTarget === 'src/report\\u{202e}fdp.exe\\u{200b}\\u{2060}\\u{feff}.txt',
      `the target is shown whole with its hidden characters escaped: ${shownTarget}`,
    );
    const text = await card.textContent();
    check(text.includes(SCRIPT) && text.includes(IMG), 'markup from the tool is shown as text');
    check(text.includes('hidden or control characters shown as escapes'), 'fields with escapes say so');

    // The intent is cut visibly, and "show all" shows all of it.
    const intentBox = card.locator('dd > .guest.prose').first();
    const chars = Array.from(intent).length;
    const more = chars - 8192;
    check((await intentBox.locator('.cut').textContent()).includes(`… ${more} more characters`), `the intent is cut visibly: … ${more} more characters`);
    check(!(await intentBox.textContent()).includes('|tail'), 'the cut part is not shown');
    await intentBox.locator('button.show-all').click();
    const whole = card.locator('dd > .guest.prose').first();
    check((await whole.textContent()).includes('x|tail'), '"show all" shows the intent to its end');
    check((await whole.locator('.cut').count()) === 0, 'no cut marker once shown whole');

    // The preview is a diff, coloured, with its markup and escapes inert.
    const del = await card.locator('pre.preview.diff .line.del').allTextContents();
    const add = await card.locator('pre.preview.diff .line.add').allTextContents();
    const ctx = await card.locator('pre.preview.diff .line.ctx').allTextContents();
    check(del.some((l) => l.startsWith('-<b>old</b>')), 'a removed line is shown as removed, markup as text');
    check(add.some((l) => l.startsWith('+' + SCRIPT + '\\x1b]0;owned\\x07')), 'an added line is shown as added, escapes visible');
    check(ctx.some((l) => l.includes('\\u{2067}ctx\\u{2069}\\u{200d}')), 'a context line keeps its isolates visible');
    check(del.some((l) => l.startsWith('--- looks like a header\\u{202a}')), 'a removed line that looks like a header stays a removed line');
    await screenshot(page, 'hostile');

    await card.locator('textarea.comment').fill(comment);
    await card.locator('button.reject').click();
    const h = cardById(page, 'history', id);
    await h.waitFor({ state: 'visible' });
    const vote = await h.locator('.vote').first().textContent();
    check(vote.includes(IMG) && vote.includes('\\u{202e}gnirts\\u{202c}') && vote.includes('\\x1b[1m'), `the comment is shown inert: ${vote}`);
    await h.locator('details.more summary').click();
    await page.waitForTimeout(300);
    await inert(page, 'history');

    // The page's rules, character by character (its own function).
    const cases = [
      ['tab\there', false, 'tab\\x09here'],
      ['tab\there', true, 'tab\there'],
      ['line\nbreak\r', true, 'line\nbreak\\x0d'],
      ['nb\u00a0sp', false, 'nb\\u{00a0}sp'],
      ['soft\u00adhyphen', false, 'soft\\u{00ad}hyphen'],
      ['sep\u2028par\u2029', false, 'sep\\u{2028}par\\u{2029}'],
      ['tag\u{e0041}s', false, 'tag\\u{e0041}s'],
      ['fill\u3164er', false, 'fill\\u{3164}er'],
      ['arabic\u061cmark', false, 'arabic\\u{061c}mark'],
      ['z\u0301\u0302\u0303\u0304', false, 'z\u0301\u0302\\u{0303}\\u{0304}'],
      ['caf\u00e9 \u05e9\u05dc\u05d5\u05dd', false, 'caf\u00e9 \u05e9\u05dc\u05d5\u05dd'],
    ];
    const got = await page.evaluate(
      (cs) => cs.map(([t, m]) => window.sandboxApprovals.runs(t, m).map((r) => (r.esc ? r.esc : r.text)).join('')),
      cases,
    );
    cases.forEach(([t, , want], i) => check(got[i] === want, `${JSON.stringify(t)} is shown as ${JSON.stringify(want)} (got ${JSON.stringify(got[i])})`));

    checkQuiet(seen);
    checkAuthHeaders(seen, token);
  } finally {
    await close();
  }
}

run(main);
