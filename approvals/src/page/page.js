// The reviewer page of `sandbox approvals serve`.
//
// Plain script, no build step, no external resources, nothing inline (the
// service may send `Content-Security-Policy: default-src 'self'`). The
// reviewer token lives in sessionStorage only and travels in an
// `Authorization: Bearer` header; no cookie is ever used.
//
// Everything a tool supplies (target, dest, intent, preview, agent, user,
// task) and everything another reviewer typed (comments) reaches the page
// through `textContent` and text nodes only, never as markup. Characters
// that could hide or disguise text (control characters and terminal
// escapes, bidi overrides and isolates, zero-width and other invisible
// characters) are shown as escapes (`\x1b`, `\u{202e}`) and highlighted.
// Long text is shown complete or cut visibly ("… N more characters"),
// with a button that shows the rest.
'use strict';

(() => {
  const TOKEN_KEY = 'sandbox-approvals-reviewer-token';
  const PENDING_EVERY_MS = 3000;
  const HISTORY_EVERY = 3; // history on every third pending refresh
  const HISTORY_MAX = 50; // decided requests shown
  const PAGE = 50; // pending requests asked for at a time (the service caps a page at 200)
  const SHORT_LIMIT = 4096; // characters of a one-line field shown before a cut
  const HEAD_LIMIT = 160; // characters of the target in a card's title (the fields show more)
  const LONG_LIMIT = 8192; // characters of the intent or a comment
  const PREVIEW_LIMIT = 70000; // the service caps previews at 64 KiB

  // ---------------------------------------------------------------- DOM helpers

  const $ = (id) => document.getElementById(id);

  /** An element with a class and children (strings become text nodes). */
  function el(tag, cls, ...children) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      e.append(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // ------------------------------------------------------------ inert text

  const NAMES = {
    0x00: 'NUL', 0x07: 'BEL (bell)', 0x08: 'BS (backspace)', 0x09: 'TAB', 0x0a: 'LF (line feed)',
    0x0b: 'VT', 0x0c: 'FF', 0x0d: 'CR (carriage return)', 0x1b: 'ESC (terminal escape)', 0x7f: 'DEL',
    0x9b: 'CSI (terminal escape)', 0x9d: 'OSC (terminal escape)',
    0x00ad: 'SOFT HYPHEN', 0x034f: 'COMBINING GRAPHEME JOINER', 0x061c: 'ARABIC LETTER MARK',
    0x115f: 'HANGUL CHOSEONG FILLER', 0x1160: 'HANGUL JUNGSEONG FILLER', 0x180e: 'MONGOLIAN VOWEL SEPARATOR',
    0x200b: 'ZERO WIDTH SPACE', 0x200c: 'ZERO WIDTH NON-JOINER', 0x200d: 'ZERO WIDTH JOINER',
    0x200e: 'LEFT-TO-RIGHT MARK', 0x200f: 'RIGHT-TO-LEFT MARK', 0x2028: 'LINE SEPARATOR',
    0x2029: 'PARAGRAPH SEPARATOR', 0x202a: 'LEFT-TO-RIGHT EMBEDDING', 0x202b: 'RIGHT-TO-LEFT EMBEDDING',
    0x202c: 'POP DIRECTIONAL FORMATTING', 0x202d: 'LEFT-TO-RIGHT OVERRIDE', 0x202e: 'RIGHT-TO-LEFT OVERRIDE',
    0x2060: 'WORD JOINER', 0x2066: 'LEFT-TO-RIGHT ISOLATE', 0x2067: 'RIGHT-TO-LEFT ISOLATE',
    0x2068: 'FIRST STRONG ISOLATE', 0x2069: 'POP DIRECTIONAL ISOLATE', 0x2800: 'BRAILLE PATTERN BLANK',
    0x3164: 'HANGUL FILLER', 0xfeff: 'ZERO WIDTH NO-BREAK SPACE (BOM)', 0xffa0: 'HALFWIDTH HANGUL FILLER',
  };

  // Control, format (bidi controls, zero-width characters, tags), private
  // use, unassigned, surrogates, line and paragraph separators.
  const HIDDEN_CLASS = /^[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Cs}\p{Zl}\p{Zp}]$/u;
  const SPACE_SEPARATOR = /^\p{Zs}$/u;
  const MARK = /^\p{M}$/u;
  // Letters and marks that draw nothing, and variation selectors.
  const INVISIBLE = /^[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2800\u3164\ufe00-\ufe0f\uffa0\u{e0100}-\u{e01ef}]$/u;
  const RTL = /[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc\u{10800}-\u{10fff}\u{1e800}-\u{1efff}]/u;
  const MAX_MARKS = 2; // combining marks kept on one base character

  function escapeOf(cp) {
    // Control characters (C0, DEL, C1) as `\xNN`, like the terminal prompt.
    if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) return '\\x' + cp.toString(16).padStart(2, '0');
    return '\\u{' + cp.toString(16).padStart(4, '0') + '}';
  }

  function describe(cp) {
    const hex = 'U+' + cp.toString(16).toUpperCase().padStart(4, '0');
    const name = NAMES[cp];
    return `${hex}${name ? ' ' + name : ''}: a hidden, control or formatting character, shown as an escape`;
  }

  /**
   * Splits text into runs: `{text}` shown as is, `{esc, cp}` shown as an
   * escape. `multiline` keeps LF and TAB as they are.
   */
  function runs(text, multiline) {
    const out = [];
    let plain = '';
    let marks = 0;
    for (const ch of text) {
      const cp = ch.codePointAt(0);
      let hide;
      if (multiline && (cp === 0x0a || cp === 0x09)) {
        hide = false;
      } else if (cp === 0x20) {
        hide = false;
      } else if (HIDDEN_CLASS.test(ch) || SPACE_SEPARATOR.test(ch) || INVISIBLE.test(ch)) {
        hide = true;
      } else if (MARK.test(ch)) {
        marks += 1;
        hide = marks > MAX_MARKS;
      } else {
        hide = false;
      }
      if (!MARK.test(ch)) marks = 0;
      if (hide) {
        if (plain) out.push({ text: plain });
        plain = '';
        out.push({ esc: escapeOf(cp), cp });
      } else {
        plain += ch;
      }
    }
    if (plain) out.push({ text: plain });
    return out;
  }

  /** Appends text to `parent` as text nodes and highlighted escapes; returns the number of escapes. */
  function appendInert(parent, text, multiline) {
    let n = 0;
    for (const r of runs(text, multiline)) {
      if (r.esc) {
        const s = el('span', 'esc', r.esc);
        s.title = describe(r.cp);
        parent.append(s);
        n += 1;
      } else {
        parent.append(document.createTextNode(r.text));
      }
    }
    return n;
  }

  /** Cuts text to `limit` characters (code points): `[shown, more]`. */
  function cut(text, limit) {
    const cps = Array.from(text);
    if (cps.length <= limit) return [text, 0];
    return [cps.slice(0, limit).join(''), cps.length - limit];
  }

  function plural(n, one, many) {
    return `${n} ${n === 1 ? one : many}`;
  }

  /** A marker saying how many characters were not shown, and a button showing them. */
  function cutMarker(more, showAll) {
    const box = el('span', 'cut', `… ${plural(more, 'more character', 'more characters')} `);
    const b = el('button', 'show-all', 'show all');
    b.type = 'button';
    b.addEventListener('click', showAll);
    box.append(b);
    return box;
  }

  /** A note under a field that holds escapes or right-to-left text. */
  function notes(escapes, text) {
    const parts = [];
    if (escapes > 0) {
      parts.push(el('span', 'warn', `${plural(escapes, 'hidden or control character', 'hidden or control characters')} shown as escapes`));
    }
    if (RTL.test(text)) {
      parts.push(el('span', 'warn', 'contains right-to-left characters (shown in stored order, left to right)'));
    }
    return parts.length ? el('span', 'notes', ...parts) : null;
  }

  /**
   * Tool-supplied text as an inert element: `cls` one of `ident` (paths,
   * names: one line, strictly left to right) or `prose` (the intent).
   */
  function guestText(text, opts = {}) {
    const { limit = SHORT_LIMIT, kind = 'ident', multiline = false, all = false } = opts;
    const box = el('span', `guest ${kind}`);
    if (text === null || text === undefined) {
      box.classList.add('none');
      box.append('(none)');
      return box;
    }
    text = String(text);
    if (text === '') {
      box.classList.add('none');
      box.append('(empty)');
      return box;
    }
    const [shown, more] = all ? [text, 0] : cut(text, limit);
    const value = el('span', 'value');
    const escapes = appendInert(value, shown, multiline);
    box.append(value);
    if (more > 0) {
      box.append(cutMarker(more, () => box.replaceWith(guestText(text, { ...opts, all: true }))));
    }
    const n = notes(escapes, shown);
    if (n) box.append(n);
    return box;
  }

  // ------------------------------------------------------------- previews

  /**
   * The preview's lines, classified: `{cls, text}`, or `null` when it is no
   * unified diff. A diff starts with `--- ` and `+++ ` headers (`current`,
   * `proposed`); an append's preview is its added lines. Inside a hunk the
   * `@@ -a,b +c,d @@` counts decide, so a removed line starting `-- ` is
   * not taken for a header.
   */
  function diffLines(text, capability) {
    const lines = text.split('\n');
    if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
    const headed = lines.length >= 2 && lines[0].startsWith('--- ') && lines[1].startsWith('+++ ');
    const appended = capability === 'fs.append' && lines.length > 0 && lines[0].startsWith('+');
    if (!headed && !appended) return null;
    const out = [];
    let oldLeft = 0;
    let newLeft = 0;
    for (const line of lines) {
      if (oldLeft > 0 || newLeft > 0) {
        const c = line[0];
        if (c === ' ' || line === '') {
          oldLeft -= 1;
          newLeft -= 1;
          out.push({ cls: 'ctx', text: line });
          continue;
        }
        if (c === '-') {
          oldLeft -= 1;
          out.push({ cls: 'del', text: line });
          continue;
        }
        if (c === '+') {
          newLeft -= 1;
          out.push({ cls: 'add', text: line });
          continue;
        }
        if (c === '\\') {
          out.push({ cls: 'meta', text: line });
          continue;
        }
        oldLeft = 0;
        newLeft = 0; // a malformed hunk: fall through to the line kinds below
      }
      const hunk = /^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@/.exec(line);
      if (hunk) {
        oldLeft = hunk[1] === undefined ? 1 : Number(hunk[1]);
        newLeft = hunk[2] === undefined ? 1 : Number(hunk[2]);
        out.push({ cls: 'hunk', text: line });
      } else if (line.startsWith('--- ') || line.startsWith('+++ ')) {
        out.push({ cls: 'file', text: line });
      } else if (line.startsWith('+')) {
        out.push({ cls: 'add', text: line });
      } else if (line.startsWith('-')) {
        out.push({ cls: 'del', text: line });
      } else if (line.startsWith(' ')) {
        out.push({ cls: 'ctx', text: line });
      } else {
        out.push({ cls: 'meta', text: line });
      }
    }
    return out;
  }

  function previewBlock(req, all = false) {
    const text = req.preview;
    const wrap = el('div', 'preview-wrap');
    if (text === null || text === undefined || text === '') {
      wrap.append(el('p', 'none', '(no preview)'));
      return wrap;
    }
    const [shown, more] = all ? [text, 0] : cut(String(text), PREVIEW_LIMIT);
    const lines = diffLines(shown, req.capability);
    const pre = el('pre', 'preview guest');
    let escapes = 0;
    if (lines) {
      wrap.append(el('p', 'preview-kind', 'Change, as a unified diff (current → proposed):'));
      pre.classList.add('diff');
      for (const l of lines) {
        const row = el('span', `line ${l.cls}`);
        escapes += appendInert(row, l.text, true);
        row.append('\n');
        pre.append(row);
      }
    } else {
      wrap.append(el('p', 'preview-kind', 'Preview, as text:'));
      pre.classList.add('text');
      escapes += appendInert(pre, shown, true);
    }
    wrap.append(pre);
    if (more > 0) {
      wrap.append(cutMarker(more, () => wrap.replaceWith(previewBlock(req, true))));
    }
    const n = notes(escapes, shown);
    if (n) wrap.append(n);
    return wrap;
  }

  // ------------------------------------------------------------ formatting

  let clockSkewMs = 0; // service clock minus ours, from `Date` headers

  function now() {
    return Date.now() + clockSkewMs;
  }

  function duration(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const r = s % 60;
    if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m ${String(r).padStart(2, '0')}s`;
    if (m > 0) return `${m}m ${String(r).padStart(2, '0')}s`;
    return `${r}s`;
  }

  function ago(iso) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return '';
    const d = now() - t;
    return d >= 0 ? `${duration(d)} ago` : `in ${duration(-d)}`;
  }

  function timeEl(iso) {
    const t = el('time', 'when');
    t.dateTime = String(iso ?? '');
    t.append(String(iso ?? '(unknown)'));
    const rel = ago(iso);
    if (rel) t.title = rel;
    return t;
  }

  function countdown(iso) {
    const c = el('span', 'countdown');
    c.dataset.expires = String(iso);
    tickOne(c);
    return c;
  }

  function tickOne(c) {
    const t = Date.parse(c.dataset.expires);
    if (Number.isNaN(t)) {
      c.textContent = '';
      return;
    }
    const left = t - now();
    c.classList.toggle('soon', left < 60000);
    c.classList.toggle('over', left <= 0);
    c.textContent = left > 0 ? `expires in ${duration(left)}` : 'time is up: expired unless already decided';
  }

  function tickAll() {
    for (const c of document.querySelectorAll('.countdown')) tickOne(c);
  }

  function size(n) {
    if (n === null || n === undefined) return null;
    const units = ['KiB', 'MiB', 'GiB'];
    let v = n;
    let u = '';
    for (const unit of units) {
      if (v < 1024) break;
      v /= 1024;
      u = unit;
    }
    return u ? `${n} bytes (${v.toFixed(1)} ${u})` : plural(n, 'byte', 'bytes');
  }

  /** The vote rule in words, with guest-supplied names inert. */
  function requireWords(r) {
    const box = el('span', 'require');
    if (!r || typeof r !== 'object') {
      box.append('(unknown rule)');
    } else if ('any' in r) {
      box.append('any one reviewer approves');
    } else if (Array.isArray(r.all)) {
      box.append(`all ${plural(r.all.length, 'named reviewer', 'named reviewers')} approve: `);
      r.all.forEach((name, i) => {
        if (i > 0) box.append(', ');
        box.append(guestText(name));
      });
    } else if ('min' in r) {
      box.append(`at least ${plural(Number(r.min), 'distinct reviewer approves', 'distinct reviewers approve')}`);
    } else if ('role' in r) {
      box.append('at least one reviewer holding the role ');
      box.append(guestText(r.role));
      box.append(' approves');
    } else {
      box.append(guestText(JSON.stringify(r)));
    }
    box.append(' (any one rejection rejects)');
    return box;
  }

  /** How far the votes are from meeting the rule. */
  function progress(req) {
    const r = req.require || {};
    const votes = Array.isArray(req.votes) ? req.votes : [];
    const approvers = [...new Set(votes.filter((v) => v.decision === 'approve').map((v) => v.by))];
    const box = el('span', 'progress');
    if (Array.isArray(r.all)) {
      const missing = r.all.filter((n) => !approvers.includes(n));
      box.append(`${approvers.length} of ${r.all.length} approved`);
      if (missing.length) {
        box.append('; still needed: ');
        missing.forEach((name, i) => {
          if (i > 0) box.append(', ');
          box.append(guestText(name));
        });
      }
    } else if ('min' in r) {
      box.append(`${approvers.length} of ${Number(r.min)} approvals`);
    } else if ('role' in r) {
      box.append(`${plural(approvers.length, 'approval', 'approvals')} so far; one from a reviewer with the role is needed`);
    } else {
      box.append(`${plural(approvers.length, 'approval', 'approvals')} so far; one is enough`);
    }
    return box;
  }

  function votesBlock(req) {
    const votes = Array.isArray(req.votes) ? req.votes : [];
    const box = el('div', 'votes');
    box.append(el('h4', null, `Votes (${votes.length})`));
    if (!votes.length) {
      box.append(el('p', 'none', 'No votes yet.'));
      return box;
    }
    const list = el('ul', 'vote-list');
    for (const v of votes) {
      const verb = v.decision === 'approve' ? 'approved' : v.decision === 'reject' ? 'rejected' : String(v.decision);
      const item = el('li', `vote ${v.decision === 'approve' ? 'yes' : 'no'}`);
      item.append(el('span', 'vote-by', guestText(v.by)), ' ', el('strong', 'vote-verb', verb), ' at ', timeEl(v.at));
      if (v.comment) {
        item.append(el('span', 'vote-comment', ': ', guestText(v.comment, { kind: 'prose', limit: LONG_LIMIT })));
      } else {
        item.append(el('span', 'vote-comment none', ' (no comment)'));
      }
      if (v.effect_sha256 && v.effect_sha256 !== req.effect_sha256) {
        item.append(el('span', 'warn', ' cast on a different effect: ', guestText(v.effect_sha256)));
      }
      list.append(item);
    }
    box.append(list);
    return box;
  }

  // ------------------------------------------------------------------ cards

  function row(dl, label, ...value) {
    dl.append(el('dt', null, label), el('dd', null, ...value));
  }

  function stateBadge(state) {
    return el('span', `state state-${['pending', 'approved', 'rejected', 'expired'].includes(state) ? state : 'other'}`, String(state));
  }

  /** The parts of a request that never change (what, who, why). */
  function details(req) {
    const dl = el('dl', 'fields');
    row(dl, 'user (acts for)', guestText(req.user));
    row(dl, 'tool', guestText(req.agent));
    row(dl, 'task', guestText(req.task));
    row(dl, 'intent', guestText(req.intent, { kind: 'prose', limit: LONG_LIMIT }));
    row(dl, 'capability', guestText(req.capability));
    row(dl, 'target', guestText(req.target, { kind: 'ident target' }));
    if (req.dest !== null && req.dest !== undefined) {
      row(dl, 'destination', guestText(req.dest, { kind: 'ident target' }));
    }
    row(dl, 'rule asking', guestText(req.rule));
    row(dl, 'approved when', requireWords(req.require));
    const sz = size(req.size);
    if (sz) row(dl, 'size', sz);
    row(dl, 'content sha256', guestText(req.content_sha256, { kind: 'ident hash' }));
    row(dl, 'effect sha256', guestText(req.effect_sha256, { kind: 'ident hash' }), el('span', 'hint', ' (votes are bound to this effect)'));
    row(dl, 'created', timeEl(req.created));
    row(dl, 'request id', guestText(req.id, { kind: 'ident hash' }));
    return dl;
  }

  function signature(req) {
    return JSON.stringify([req.state, req.votes, req.decided, req.expires]);
  }

  function cardHead(req) {
    const h = el('h3', 'card-head');
    h.append(el('span', 'cap', String(req.capability ?? '')), ' ', guestText(req.target, { kind: 'ident target', limit: HEAD_LIMIT }));
    if (req.dest !== null && req.dest !== undefined) {
      h.append(' → ', guestText(req.dest, { kind: 'ident target', limit: HEAD_LIMIT }));
    }
    return h;
  }

  /** The changing part of a pending card: expiry, progress, votes. */
  function pendingStatus(req) {
    const box = el('div', 'status');
    const line = el('p', 'status-line', stateBadge(req.state), ' ', countdown(req.expires), ' (', 'expires ', timeEl(req.expires), ') · ', progress(req));
    box.append(line, votesBlock(req));
    return box;
  }

  function decideForm(req) {
    const form = el('form', 'decide');
    const id = `comment-${String(req.id).replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const label = el('label', null, 'Comment (optional)');
    label.htmlFor = id;
    const comment = el('textarea', 'comment');
    comment.id = id;
    comment.rows = 2;
    comment.maxLength = 4000;
    comment.name = 'comment';
    const approve = el('button', 'approve', 'Approve');
    approve.type = 'button';
    approve.dataset.decision = 'approve';
    const reject = el('button', 'reject', 'Reject');
    reject.type = 'button';
    reject.dataset.decision = 'reject';
    const note = el('p', 'decide-note');
    const result = el('p', 'result');
    result.setAttribute('role', 'status');
    result.hidden = true;
    const error = el('p', 'error');
    error.setAttribute('role', 'alert');
    error.hidden = true;
    form.append(label, comment, el('div', 'buttons', approve, reject), note, result, error);
    form.addEventListener('submit', (e) => e.preventDefault());
    for (const b of [approve, reject]) {
      b.addEventListener('click', () => decide(latest.get(String(req.id)) || req, b.dataset.decision, form));
    }
    return form;
  }

  /** Enables or disables the buttons for what this reviewer may still do. */
  function updateDecideForm(form, req) {
    const note = form.querySelector('.decide-note');
    clear(note);
    let blocked = false;
    const votes = Array.isArray(req.votes) ? req.votes : [];
    const mine = me && votes.find((v) => v.by === me.name);
    if (me && req.user === me.name) {
      blocked = true;
      note.append('This is a task you run (user ', guestText(req.user), '): you cannot decide on it.');
    } else if (mine) {
      blocked = true;
      note.append(`You voted ${mine.decision} at `, timeEl(mine.at), '; the request waits for the other votes its rule needs.');
    } else if (me && req.require && Array.isArray(req.require.all) && !req.require.all.includes(me.name)) {
      note.append('You are not named in this rule\u2019s list; the service will refuse your vote.');
    } else if (me && req.require && 'role' in req.require && !(me.roles || []).includes(req.require.role)) {
      note.append('You do not hold the role this rule needs; the service will refuse your vote.');
    }
    note.hidden = !note.firstChild;
    for (const b of form.querySelectorAll('button[data-decision]')) {
      b.disabled = blocked || form.dataset.busy === '1';
    }
  }

  // The newest view of each pending request, for its buttons.
  const latest = new Map();

  function pendingCard(req) {
    latest.set(String(req.id), req);
    const card = el('article', 'card pending-card');
    card.dataset.id = req.id;
    card.dataset.sig = signature(req);
    const status = pendingStatus(req);
    const form = decideForm(req);
    card.append(cardHead(req), status, details(req), el('h4', null, 'What will happen'), previewBlock(req), form);
    updateDecideForm(form, req);
    return card;
  }

  function updatePendingCard(card, req) {
    latest.set(String(req.id), req);
    const sig = signature(req);
    if (card.dataset.sig === sig) return;
    card.dataset.sig = sig;
    card.querySelector('.status').replaceWith(pendingStatus(req));
    updateDecideForm(card.querySelector('form.decide'), req);
  }

  function historyStatus(req) {
    const box = el('div', 'status');
    const line = el('p', 'status-line', stateBadge(req.state));
    if (req.decided) line.append(' decided at ', timeEl(req.decided));
    else line.append(' (expired ', timeEl(req.expires), ')');
    line.append(' · rule: ', requireWords(req.require));
    const who = el('p', 'status-line who', 'user ', guestText(req.user), ' · tool ', guestText(req.agent), ' · task ', guestText(req.task));
    box.append(line, who, votesBlock(req));
    return box;
  }

  function historyCard(req) {
    const card = el('article', `card history-card history-${String(req.state)}`);
    card.dataset.id = req.id;
    card.dataset.sig = signature(req);
    const more = el('details', 'more');
    more.append(el('summary', null, 'Request details and preview'), details(req), previewBlock(req));
    card.append(cardHead(req), historyStatus(req), more);
    return card;
  }

  function updateHistoryCard(card, req) {
    const sig = signature(req);
    if (card.dataset.sig === sig) return;
    card.dataset.sig = sig;
    card.className = `card history-card history-${String(req.state)}`;
    card.querySelector('.status').replaceWith(historyStatus(req));
  }

  /** Puts `list` into `container` by id, keeping cards (and what a reviewer typed or opened) that remain. */
  function reconcile(container, list, make, update) {
    const existing = new Map();
    for (const c of container.children) existing.set(c.dataset.id, c);
    const keep = new Set();
    let prev = null;
    for (const req of list) {
      const key = String(req.id);
      keep.add(key);
      let card = existing.get(key);
      if (card) update(card, req);
      else card = make(req);
      const want = prev ? prev.nextSibling : container.firstChild;
      if (want !== card) container.insertBefore(card, want);
      prev = card;
    }
    for (const [key, card] of existing) {
      if (!keep.has(key)) card.remove();
    }
  }

  // --------------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  let token = null;
  let me = null;

  async function api(method, path, body, useToken = token) {
    const headers = { Accept: 'application/json', Authorization: `Bearer ${useToken}` };
    const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, `the approval service could not be reached (${e.message})`);
    }
    const date = Date.parse(res.headers.get('Date') || '');
    if (!Number.isNaN(date)) {
      const skew = date - Date.now();
      clockSkewMs = Math.abs(skew) > 2000 ? skew : 0;
    }
    let data = null;
    try {
      data = await res.json();
    } catch {
      data = null;
    }
    if (!res.ok) {
      const msg = data && typeof data.error === 'string' ? data.error : `HTTP ${res.status}`;
      throw new ApiError(res.status, msg);
    }
    return data;
  }

  /** One page of requests in `state`: `{ requests, total }`. */
  async function listRequests(state, limit, offset = 0) {
    const query = `state=${encodeURIComponent(state)}&limit=${limit}&offset=${offset}`;
    const data = await api('GET', `/api/requests?${query}`);
    const requests = data && Array.isArray(data.requests) ? data.requests : [];
    const total = data && Number.isSafeInteger(data.total) ? data.total : requests.length;
    return { requests, total };
  }

  let pendingPages = 1; // pages of pending requests shown; "Show more" adds one

  /** The first `pendingPages` pages of pending requests (each id once) and how many are pending in all. */
  async function listPending() {
    const seen = new Set();
    const pending = [];
    let total = 0;
    for (let p = 0; p < pendingPages; p += 1) {
      const page = await listRequests('pending', PAGE, p * PAGE);
      total = page.total;
      for (const r of page.requests) {
        if (!seen.has(String(r.id))) {
          seen.add(String(r.id));
          pending.push(r);
        }
      }
      if (page.requests.length < PAGE) break;
    }
    return { pending, total: Math.max(total, pending.length) };
  }

  // ---------------------------------------------------------------- activity

  function activity(...parts) {
    const list = $('activity');
    const item = el('li', null, el('span', 'activity-time', new Date().toLocaleTimeString()), ' ', ...parts);
    list.prepend(item);
    while (list.children.length > 10) list.lastChild.remove();
  }

  function banner(text) {
    const b = $('banner');
    clear(b);
    if (text) appendInert(b, text, false);
    b.hidden = !text;
  }

  // ------------------------------------------------------------------ decide

  async function decide(req, decision, form) {
    const result = form.querySelector('.result');
    const error = form.querySelector('.error');
    const comment = form.querySelector('textarea').value;
    error.hidden = true;
    result.hidden = true;
    form.dataset.busy = '1';
    updateDecideForm(form, req);
    const verb = decision === 'approve' ? 'approval' : 'rejection';
    try {
      const out = await api('POST', `/api/requests/${encodeURIComponent(req.id)}/decision`, { decision, comment });
      const state = out && out.state ? String(out.state) : 'unknown';
      clear(result);
      result.append(`Your ${verb} was recorded. The request is now `, stateBadge(state));
      if (state === 'pending') result.append(': its rule waits for more votes.');
      result.hidden = false;
      activity(`You voted ${decision} on `, el('span', 'cap', String(req.capability ?? '')), ' ', guestText(req.target, { kind: 'ident target' }), ': now ', stateBadge(state));
      // Shown at once; the next refresh brings the service's own record.
      req.votes = [...(req.votes || []), { by: me ? me.name : '', decision, at: new Date(now()).toISOString(), comment }];
      req.state = state;
      const status = form.closest('article') && form.closest('article').querySelector('.status');
      if (status) status.replaceWith(pendingStatus(req));
    } catch (e) {
      if (e.status === 401) {
        logout('The service refused your token; log in again.');
        return;
      }
      clear(error);
      error.append(e.status ? `Refused (${e.status}): ` : '');
      appendInert(error, e.message, false);
      error.hidden = false;
      activity(`Your ${verb} of `, guestText(req.target, { kind: 'ident target' }), ' failed: ', guestText(e.message, { kind: 'prose' }));
    } finally {
      delete form.dataset.busy;
      updateDecideForm(form, req);
    }
    refresh(true);
  }

  // ----------------------------------------------------------------- refresh

  let timer = null;
  let ticks = 0;
  let running = false;
  let again = false;

  async function refresh(withHistory) {
    if (!token) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      const { pending, total } = await listPending();
      reconcile($('pending'), pending, pendingCard, updatePendingCard);
      $('pending-count').textContent = total > pending.length ? `(${pending.length} of ${total})` : `(${pending.length})`;
      $('pending-empty').hidden = pending.length > 0;
      const more = $('pending-more');
      more.textContent = `Show more (${total - pending.length} not shown)`;
      more.hidden = total <= pending.length;
      $('pending-updated').textContent = new Date().toLocaleTimeString();
      if (withHistory) {
        const lists = await Promise.all(['approved', 'rejected', 'expired'].map((st) => listRequests(st, HISTORY_MAX)));
        const key = (r) => Date.parse(r.decided || r.expires || r.created) || 0;
        const decided = lists.flatMap((l) => l.requests).sort((a, b) => key(b) - key(a)).slice(0, HISTORY_MAX);
        reconcile($('history'), decided, historyCard, updateHistoryCard);
        $('history-empty').hidden = decided.length > 0;
        $('history-updated').textContent = new Date().toLocaleTimeString();
      }
      banner('');
    } catch (e) {
      if (e.status === 401) {
        logout('The service refused your token; log in again.');
        return;
      }
      banner(`Could not refresh: ${e.message}. Retrying.`);
    } finally {
      running = false;
    }
    if (again) {
      again = false;
      refresh(true);
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      ticks += 1;
      await refresh(ticks % HISTORY_EVERY === 0);
      if (token) schedule();
    }, PENDING_EVERY_MS);
  }

  // -------------------------------------------------------------- login/out

  function showMe() {
    $('me-name').textContent = '';
    $('me-name').append(guestText(me.name));
    const roles = $('me-roles');
    clear(roles);
    if (Array.isArray(me.roles) && me.roles.length) {
      roles.append(' (roles: ');
      me.roles.forEach((r, i) => {
        if (i > 0) roles.append(', ');
        roles.append(guestText(r));
      });
      roles.append(')');
    }
    $('whoami').hidden = false;
  }

  /** Logs in with `candidate`: `ok`, `refused` (the service does not know it) or `error`. */
  async function login(candidate) {
    const err = $('login-error');
    err.hidden = true;
    try {
      me = await api('GET', '/api/me', undefined, candidate);
    } catch (e) {
      clear(err);
      err.append(e.status === 401 ? 'The service does not know this token.' : `Could not log in: ${e.message}`);
      err.hidden = false;
      return e.status === 401 || e.status === 403 ? 'refused' : 'error';
    }
    token = candidate;
    sessionStorage.setItem(TOKEN_KEY, candidate);
    $('token').value = '';
    $('login').hidden = true;
    $('app').hidden = false;
    showMe();
    ticks = 0;
    await refresh(true);
    schedule();
    return 'ok';
  }

  /** Resumes the tab's session; an unreachable service is asked again. */
  async function resume(saved) {
    $('login').hidden = false;
    const outcome = await login(saved);
    if (outcome === 'refused') logout('Your saved session ended; log in again.');
    else if (outcome === 'error' && sessionStorage.getItem(TOKEN_KEY) === saved) {
      setTimeout(() => {
        if (!token && sessionStorage.getItem(TOKEN_KEY) === saved) resume(saved);
      }, PENDING_EVERY_MS);
    }
  }

  function logout(message) {
    token = null;
    me = null;
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(timer);
    latest.clear();
    pendingPages = 1;
    for (const id of ['pending', 'history', 'activity']) clear($(id));
    $('whoami').hidden = true;
    $('app').hidden = true;
    $('login').hidden = false;
    const err = $('login-error');
    clear(err);
    if (message) err.append(message);
    err.hidden = !message;
    $('token').focus();
  }

  function start() {
    $('login-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const t = $('token').value.trim();
      if (t) login(t);
    });
    $('logout').addEventListener('click', () => logout('Logged out.'));
    $('refresh').addEventListener('click', () => refresh(true));
    $('pending-more').addEventListener('click', () => {
      pendingPages += 1;
      refresh(false);
    });
    setInterval(tickAll, 1000);
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) {
      resume(saved);
    } else {
      logout('');
    }
  }

  // Only for tests and the curious: the inert-text rules, without the DOM.
  window.sandboxApprovals = Object.freeze({ runs, diffLines });

  start();
})();
