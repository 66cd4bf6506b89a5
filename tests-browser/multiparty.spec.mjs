// Two reviewers in two browsers: under a two-reviewer rule one approval
// leaves the request pending (and the page says so); the second approval
// decides it. A reviewer sees the service's refusal (403) when they lack
// the rule's role, and cannot decide on a task they run themselves.
//
// The script submits its requests through the runner API.
//
// Environment:
//   SANDBOX_APPROVALS_URL           the service
//   SANDBOX_REVIEWER_TOKEN          reviewer 1 (holds the role `sre`)
//   SANDBOX_SECOND_REVIEWER_TOKEN   reviewer 2 (no role)
//   SANDBOX_SECOND_REVIEWER_NAME    reviewer 2's name
//   SANDBOX_RUNNER_TOKEN            a runner token
//
// Prints `RESULT {json}` with the request ids; exits 0 when every check
// passed.
import crypto from 'node:crypto';
import { cardById, check, checkAuthHeaders, checkQuiet, login, need, open, run } from './lib.mjs';

const base = need('SANDBOX_APPROVALS_URL');
const token1 = need('SANDBOX_REVIEWER_TOKEN');
const token2 = need('SANDBOX_SECOND_REVIEWER_TOKEN');
const name2 = need('SANDBOX_SECOND_REVIEWER_NAME');
const runnerToken = need('SANDBOX_RUNNER_TOKEN');

async function submit(target, user, require) {
  const sha = (s) => 'sha256:' + crypto.createHash('sha256').update(s).digest('hex');
  const body = {
    task: `task-${target}`,
    user,
    agent: 'probe',
    intent: `change ${target}`,
    capability: 'fs.write',
    target,
    dest: null,
    rule: 'fs.write:src/**',
    require,
    preview: '--- current\n+++ proposed\n@@ -1 +1 @@\n-old\n+new\n',
    content_sha256: sha('new\n'),
    effect_sha256: sha(`fs.write ${target} new`),
    size: 4,
    timeout_ms: 600000,
  };
  const res = await fetch(`${base}/api/runner/requests`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${runnerToken}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  check(res.status === 201, `submitted ${target} (${res.status} ${text})`);
  return JSON.parse(text).id;
}

async function outcome(page, target, state) {
  await page.waitForFunction(
    ([t, s]) => [...document.querySelectorAll('#activity li')].some((li) => li.textContent.includes(t) && li.textContent.includes(s)),
    [target, state],
  );
}

async function main() {
  const two = await submit('src/two.rs', 'carol', { min: 2 });
  const role = await submit('src/role.rs', 'carol', { role: 'sre' });
  const own = await submit('src/own.rs', name2, { any: true });

  const b1 = await open(base);
  const b2 = await open(base);
  try {
    const name1 = await login(b1.page, base, token1);
    check((await login(b2.page, base, token2)) === name2, `the second reviewer is logged in as ${name2}`);

    // Reviewer 1 approves the two-reviewer request: it stays pending.
    const c1 = cardById(b1.page, 'pending', two);
    await c1.waitFor({ state: 'visible' });
    check((await c1.textContent()).includes('at least 2 distinct reviewers approve'), 'the rule is said in words');
    await c1.locator('button.approve').click();
    await outcome(b1.page, 'src/two.rs', 'now pending');
    check(true, 'one approval of two leaves the request pending, and the page says so');
    await b1.page.waitForFunction((id) => {
      const c = document.querySelector(`#pending article[data-id="${id}"]`);
      return c && c.querySelector('button.approve').disabled && c.textContent.includes('You voted approve');
    }, two);
    check(true, 'reviewer 1 cannot vote twice: the buttons are off and the page says why');
    await b1.page.waitForFunction((id) => {
      const c = document.querySelector(`#pending article[data-id="${id}"]`);
      return c && c.querySelector('.status-line').textContent.includes('1 of 2 approvals');
    }, two);
    check(true, 'the card counts 1 of 2 approvals');

    // Reviewer 2 sees reviewer 1's vote at the next refresh.
    const c2 = cardById(b2.page, 'pending', two);
    await b2.page.waitForFunction(
      ([id, n]) => {
        const c = document.querySelector(`#pending article[data-id="${id}"]`);
        return c && c.querySelector('.vote-list') && c.querySelector('.vote-list').textContent.includes(n);
      },
      [two, name1],
    );
    check(true, `reviewer 2 sees ${name1}'s vote`);

    // Not their role: the service refuses, the page shows its reason.
    const r2 = cardById(b2.page, 'pending', role);
    await r2.waitFor({ state: 'visible' });
    check((await r2.locator('.decide-note').textContent()).includes('role'), 'the page warns that the role is missing');
    await r2.locator('button.approve').click();
    const err = r2.locator('.error');
    await err.waitFor({ state: 'visible' });
    const errText = await err.textContent();
    check(errText.includes('403') && errText.includes('sre'), `the refusal is shown: ${errText}`);

    // Their own task: no buttons.
    const o2 = cardById(b2.page, 'pending', own);
    await o2.waitFor({ state: 'visible' });
    check(await o2.locator('button.approve').isDisabled(), 'a reviewer cannot approve their own task');
    check((await o2.locator('.decide-note').textContent()).includes('you cannot decide'), 'and the page says why');

    // The second approval decides.
    await c2.locator('textarea.comment').fill('second pair of eyes');
    await c2.locator('button.approve').click();
    await outcome(b2.page, 'src/two.rs', 'now approved');
    check(true, 'the second approval approves');

    // Reviewer 1: the role request is theirs to decide; the own-task one too.
    const r1 = cardById(b1.page, 'pending', role);
    await r1.locator('textarea.comment').fill('no');
    await r1.locator('button.reject').click();
    await outcome(b1.page, 'src/role.rs', 'now rejected');
    await cardById(b1.page, 'pending', own).locator('button.approve').click();
    await outcome(b1.page, 'src/own.rs', 'now approved');

    // History on reviewer 1's page: both votes on the two-reviewer request.
    const h = cardById(b1.page, 'history', two);
    await h.waitFor({ state: 'visible' });
    const votes = await h.locator('.vote').allTextContents();
    check(votes.length === 2, `two votes in the history: ${JSON.stringify(votes)}`);
    check(votes.some((v) => v.includes(name1) && v.includes('approved')), `${name1}'s approval is listed`);
    check(votes.some((v) => v.includes(name2) && v.includes('second pair of eyes')), `${name2}'s approval and comment are listed`);
    check((await h.locator('.status .state').first().textContent()) === 'approved', 'the history says approved');

    for (const [b, t] of [[b1, token1], [b2, token2]]) {
      checkQuiet(b.seen);
      checkAuthHeaders(b.seen, t);
    }
    console.log(`RESULT ${JSON.stringify({ two, role, own })}`);
  } finally {
    await b1.close();
    await b2.close();
  }
}

run(main);
