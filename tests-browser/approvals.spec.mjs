// A reviewer in a real browser: logs in with a reviewer token, sees the
// pending requests, approves one and rejects the other with a comment, and
// finds both in the history with their votes. Then reloads (still logged in:
// the token is in sessionStorage) and logs out.
//
// Environment:
//   SANDBOX_APPROVALS_URL   the service, e.g. http://127.0.0.1:8700
//   SANDBOX_REVIEWER_TOKEN  a reviewer token
//   SANDBOX_REVIEWER_NAME   the reviewer's name (checked when set)
//   SANDBOX_APPROVE_TARGET  the target of the request to approve
//   SANDBOX_REJECT_TARGET   the target of the request to reject
//   SANDBOX_EXPECT_DIFF     when `1`, both previews must be rendered diffs
//   SANDBOX_SCREENSHOT_DIR  when set, screenshots go there
//
// Prints `RESULT {json}` with the ids it approved and rejected; exits 0
// when every check passed.
import { cardById, check, checkAuthHeaders, checkQuiet, login, need, open, pendingCard, run, screenshot } from './lib.mjs';

const base = need('SANDBOX_APPROVALS_URL');
const token = need('SANDBOX_REVIEWER_TOKEN');
const approveTarget = need('SANDBOX_APPROVE_TARGET');
const rejectTarget = need('SANDBOX_REJECT_TARGET');
const expectName = process.env.SANDBOX_REVIEWER_NAME;
const expectDiff = process.env.SANDBOX_EXPECT_DIFF === '1';
const APPROVE_COMMENT = 'checked the diff: fine';
const REJECT_COMMENT = 'not this file, please';

async function inspect(page, target) {
  const card = pendingCard(page, target);
  await card.waitFor({ state: 'visible' });
  const shownTarget = await card.locator('dl.fields .guest.target .value').first().textContent();
  check(shownTarget === target, `the full target is shown: ${JSON.stringify(shownTarget)}`);
  const text = await card.innerText();
  for (const label of ['user (acts for)', 'tool', 'task', 'intent', 'capability', 'rule asking', 'approved when', 'content sha256', 'effect sha256', 'created']) {
    check(text.includes(label), `the card for ${target} shows ${label}`);
  }
  check(/sha256:[0-9a-f]{64}/.test(text), `the card for ${target} shows a full sha256`);
  check(/expires in \d/.test(text), `the card for ${target} counts down to its expiry`);
  check(text.includes('any one reviewer approves'), `the card for ${target} says the rule in words`);
  if (expectDiff) {
    check((await card.locator('pre.preview.diff .line.add').count()) > 0, `the preview of ${target} shows added lines`);
    check((await card.locator('pre.preview.diff .line.del').count()) > 0, `the preview of ${target} shows removed lines`);
    check((await card.locator('pre.preview.diff .line.file').count()) === 2, `the preview of ${target} has --- / +++ headers`);
  }
  check(await card.locator('button.approve').isEnabled(), `Approve is enabled for ${target}`);
  return { card, id: await card.getAttribute('data-id') };
}

async function vote(page, card, button, comment, target, expectState) {
  await card.locator('textarea.comment').fill(comment);
  await card.locator(button).click();
  // The card leaves the pending list at the next refresh; the activity list
  // keeps the outcome.
  await page.waitForFunction(
    ([t, s]) => [...document.querySelectorAll('#activity li')].some((li) => li.textContent.includes(t) && li.textContent.includes(`now ${s}`)),
    [target, expectState],
  );
  check(true, `the page shows ${target} ${expectState} after the vote`);
}

async function main() {
  const { page, context, seen, close } = await open(base);
  try {
    // A wrong token is refused, with a message.
    await page.goto(base, { waitUntil: 'load' });
    await page.fill('#token', 'not-a-reviewer-token');
    await page.click('#login-button');
    await page.locator('#login-error').waitFor({ state: 'visible' });
    check(!(await page.locator('#app').isVisible()), 'a wrong token does not log in');

    const name = await login(page, base, token);
    if (expectName) check(name === expectName, `logged in as ${expectName} (page says ${JSON.stringify(name)})`);
    const storage = await page.evaluate(() => ({
      session: Object.keys(sessionStorage).map((k) => sessionStorage.getItem(k)),
      local: localStorage.length,
      cookie: document.cookie,
    }));
    check(storage.session.includes(token), 'the token is kept in sessionStorage');
    check(storage.local === 0 && storage.cookie === '', 'nothing in localStorage or cookies');
    check((await context.cookies()).length === 0, 'the browser holds no cookie');

    const a = await inspect(page, approveTarget);
    const r = await inspect(page, rejectTarget);
    check(a.id !== r.id, 'two distinct pending requests');
    await screenshot(page, 'pending');

    await vote(page, a.card, 'button.approve', APPROVE_COMMENT, approveTarget, 'approved');
    await vote(page, r.card, 'button.reject', REJECT_COMMENT, rejectTarget, 'rejected');

    // Both leave the pending list and appear in the history with their votes.
    await cardById(page, 'pending', a.id).waitFor({ state: 'detached' });
    await cardById(page, 'pending', r.id).waitFor({ state: 'detached' });
    for (const [id, target, state, verb, comment] of [
      [a.id, approveTarget, 'approved', 'approved', APPROVE_COMMENT],
      [r.id, rejectTarget, 'rejected', 'rejected', REJECT_COMMENT],
    ]) {
      const h = cardById(page, 'history', id);
      await h.waitFor({ state: 'visible' });
      const badge = await h.locator('.status .state').first().textContent();
      check(badge === state, `history shows ${target} as ${state}`);
      const v = await h.locator('.vote').first().textContent();
      check(v.includes(name) && v.includes(verb) && v.includes(comment), `history shows the vote on ${target}: ${JSON.stringify(v)}`);
      check(/\d{4}-\d\d-\d\dT/.test(v), `the vote on ${target} has its time`);
    }
    const activity = await page.locator('#activity').textContent();
    check(activity.includes('now approved') && activity.includes('now rejected'), 'the activity list shows both outcomes');
    await screenshot(page, 'history');

    // A reload keeps the session (sessionStorage); the history is still there.
    await page.reload({ waitUntil: 'load' });
    await page.locator('#whoami').waitFor({ state: 'visible' });
    await cardById(page, 'history', a.id).waitFor({ state: 'visible' });
    check(true, 'after a reload the reviewer is still logged in and the history is shown');

    await page.click('#logout');
    await page.locator('#login').waitFor({ state: 'visible' });
    const left = await page.evaluate(() => sessionStorage.length);
    check(left === 0, 'logging out forgets the token');
    check((await page.locator('#pending article').count()) === 0, 'logging out clears the requests from the page');

    checkQuiet(seen);
    checkAuthHeaders(seen, token);
    console.log(`RESULT ${JSON.stringify({ reviewer: name, approved: a.id, rejected: r.id })}`);
  } finally {
    await close();
  }
}

run(main);
