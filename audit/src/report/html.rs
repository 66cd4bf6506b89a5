//! The HTML report: one self-contained file. Inline CSS (allowed by its
//! hash in the Content-Security-Policy), inline SVG charts with titles and
//! a table of the same numbers, no script, no external resource. Every
//! piece of log text goes through [`guest`]: escaped by maud, isolated for
//! bidi, hidden characters shown as marked escapes.

use super::collect::{Counted, Evidence, Row, Tally};
use super::controls::{Control, Item, controls};
use super::text::{Clipped, Piece, escape_of, pieces, visible};
use super::timeline::{Buckets, CLASSES, Class, format_ms, label, width_words};
use super::{CHART_TOOLS, Checkpoints, Context, Integrity, SECTIONS, TIMELINE_BUCKETS};
use base64::Engine;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use sha2::{Digest, Sha256};

const CSS: &str = include_str!("style.css");

/// The report as one HTML document.
pub fn html(ctx: &Context, ev: &Evidence) -> String {
    let style_hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(CSS.as_bytes()));
    let csp = format!(
        "default-src 'none'; style-src 'sha256-{style_hash}'; img-src 'none'; script-src 'none'; \
         base-uri 'none'; form-action 'none'"
    );
    let title = format!("Audit evidence report: {}", visible(&file_name(ctx)));
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content=(csp);
                meta name="referrer" content="no-referrer";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="generator" content=(ctx.generator);
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                (header(ctx, ev))
                (verification(ctx, ev))
                nav.toc aria-label="Sections" {
                    @for (id, name) in SECTIONS {
                        a href={ "#" (id) } { (name) }
                    }
                }
                (summary(ev))
                (charts(ev))
                (control_sections(ctx, ev))
                (approvals(ctx, ev))
                (denials(ctx, ev))
                (findings(ctx, ev))
                (counts(ev))
                (files(ev))
                footer {
                    p {
                        "This report summarises what the log recorded; it is evidence to examine, not an attestation. "
                        "To check it independently: compare the SHA-256 of the files above with "
                        code { "sha256sum" } ", and verify the chain with " code { "sandbox audit verify" }
                        " or, without our binary, " code { "scripts/verify-audit.py" } " (Python standard library only)."
                    }
                    p { "Made by sandbox " (ctx.generator) " at " (format_ms(ctx.generated_ms)) ". "
                        "Log text (paths, intents, names) is shown as recorded; hidden and control characters appear as marked escapes such as "
                        span.esc { "\\u{202e}" } "." }
                }
            }
        }
    }
    .into_string()
}

fn file_name(ctx: &Context) -> String {
    ctx.log.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| ctx.log.display().to_string())
}

/// `12,345`.
pub fn num(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Log text: escaped, isolated, hidden characters as marked escapes.
fn guest(s: &str) -> Markup {
    html! {
        bdi.g {
            @for p in pieces(s) {
                @match p {
                    Piece::Text(t) => { (t) }
                    Piece::Escape(c) => { span.esc title={ "U+" (format!("{:04X}", c as u32)) ": a hidden, control or formatting character, shown as an escape" } { (escape_of(c)) } }
                }
            }
        }
    }
}

fn clipped(c: &Clipped) -> Markup {
    html! {
        (guest(&c.text))
        @if c.cut > 0 {
            span.cut { " … " (num(c.cut as u64)) " more characters (whole in the log)" }
        }
    }
}

/// A hash from the log: shown as text (it is log text too).
fn hash(s: &str) -> Markup {
    html! { span.hash { (guest(s)) } }
}

fn header(ctx: &Context, ev: &Evidence) -> Markup {
    let period = match (&ev.first_ts, &ev.last_ts) {
        (Some(a), Some(b)) => html! { (guest(a)) " to " (guest(b)) },
        _ => html! { span.none { "no events" } },
    };
    html! {
        header.top {
            p.kicker { "sandbox · audit evidence" }
            h1 { "Audit evidence report" }
            dl.meta {
                dt { "Log" } dd { span.mono { (guest(&ctx.log.display().to_string())) } " (" (ev.files.len()) " file" @if ev.files.len() != 1 { "s" } ", see " a href="#files" { "Log files" } ")" }
                dt { "Period" } dd { (period) " (UTC; the first and last events in this report)" }
                dt { "Filters" } dd {
                    @if ctx.filters.is_empty() { "none: every event of the log" }
                    @else {
                        @for (i, (flag, value)) in ctx.filters.iter().enumerate() {
                            @if i > 0 { ", " }
                            code { (flag) } " " (guest(value))
                        }
                        " (every filter must hold; verification always covers the whole log)"
                    }
                }
                dt { "Frameworks" } dd { @for (i, f) in ctx.frameworks.iter().enumerate() { @if i > 0 { ", " } (f.name()) } }
                dt { "Events" } dd { (num(ev.selected)) " in this report, of " (num(ev.events)) " in the log" }
                dt { "Generated" } dd { (format_ms(ctx.generated_ms)) " by sandbox " (ctx.generator) }
            }
        }
    }
}

fn verification(ctx: &Context, ev: &Evidence) -> Markup {
    let cp = match &ctx.checkpoints {
        Checkpoints::NotGiven => html! {
            p.cp { "Signed checkpoints: not checked. A hash chain alone cannot show a log cut short at its end or rewritten whole; "
                   "make this report with " code { "--checkpoints" } " and " code { "--public-key" } " to check them." }
        },
        Checkpoints::Verified { file, key, checkpoints, size, head, ts, uncovered, torn_line } => html! {
            p.cp {
                strong { "Signed checkpoints verified: " }
                (num(*checkpoints)) " in " span.mono { (guest(&file.display().to_string())) } " under key " code { (guest(key)) }
                "; the latest, made " (guest(ts)) ", covers the first " (num(*size)) " events (head " (hash(head)) "). "
                @if *uncovered > 0 { (num(*uncovered)) " later events are not covered by any checkpoint yet." }
                @else { "Every event is covered." }
                @if let Some(l) = torn_line { " The checkpoint file's last line (" (l) ") is incomplete and was ignored." }
            }
        },
        Checkpoints::Failed { file, reason } => html! {
            p.cp.bad { "Signed checkpoints did NOT verify (" span.mono { (guest(&file.display().to_string())) } "): " (guest(reason)) }
        },
    };
    let stale = match &ctx.integrity {
        Integrity::Intact { events, .. } if *events != ev.events => html! {
            p { "Note: " (num(ev.events)) " events were read for this report and " (num(*events)) " verified; the log changed while the report was made." }
        },
        _ => html! {},
    };
    let unreadable = if ev.unreadable > 0 {
        html! { p { strong { (num(ev.unreadable)) " lines are not audit events" } " and are left out of every count." } }
    } else {
        html! {}
    };
    match &ctx.integrity {
        Integrity::Intact { events, head } => html! {
            section.banner.ok #verification aria-labelledby="verification-title" {
                h2 #verification-title { span.verdict { "INTACT" } "The log's hash chain verified" }
                p { "All " (num(*events)) " events of the log were recomputed: no event was edited, removed, inserted or reordered. "
                    "Head (hash of the last event): " (hash(head)) }
                (unreadable) (stale) (cp)
            }
        },
        Integrity::Broken { file, seq, line, reason } => html! {
            section.banner.bad #verification role="alert" aria-labelledby="verification-title" {
                h2 #verification-title { span.verdict { "NOT INTACT" } "This log has been altered or damaged" }
                p { strong { "The hash chain breaks at seq " (seq) } " (" span.mono { (guest(&file.display().to_string())) } ", line " (line) "): " (guest(reason)) }
                p { "Events from seq " (seq) " on cannot be trusted. They are still counted and listed below as read, so that they can be examined, "
                    "but nothing in this report vouches for them." }
                (unreadable) (cp)
            }
        },
    }
}

fn summary(ev: &Evidence) -> Markup {
    let t = &ev.total;
    let tiles: [(&str, u64, bool); 9] = [
        ("events", ev.selected, false),
        ("tasks", ev.tasks, false),
        ("host calls", t.calls, false),
        ("refused calls", t.refused(), t.refused() > 0),
        ("approved", t.approved, false),
        ("rejected", t.rejected, t.rejected > 0),
        ("findings", ev.findings.total, ev.findings.total > 0),
        ("users", ev.users.rows.len() as u64, false),
        ("tools", ev.agents.rows.len() as u64, false),
    ];
    html! {
        section #summary {
            h2 { "Summary" }
            div.tiles {
                @for (name, n, flag) in tiles {
                    div.tile.bad[flag] { span.n { (num(n)) } span.l { (name) } }
                }
            }
        }
    }
}

fn class_css(c: Class) -> &'static str {
    match c {
        Class::Allowed => "c-allow",
        Class::Asked => "c-ask",
        Class::Refused => "c-deny",
    }
}

/// A round number at or above `n` for an axis: 1, 2, 5, 10, 20, 50, ...
fn nice(n: u64) -> u64 {
    let mut m = 1;
    loop {
        for f in [1, 2, 5] {
            if f * m >= n {
                return f * m;
            }
        }
        m *= 10;
    }
}

fn charts(ev: &Evidence) -> Markup {
    html! {
        section #charts {
            h2 { "Charts" }
            @match ev.timeline.buckets(TIMELINE_BUCKETS) {
                Some(b) => (timeline_chart(&b)),
                None => p.none { "No host calls in this report: nothing to chart." },
            }
            @if ev.total.calls > 0 { (tools_chart(&ev.agents)) }
        }
    }
}

fn timeline_chart(b: &Buckets) -> Markup {
    let (w, h, left, top, bottom) = (960.0_f64, 240.0_f64, 48.0_f64, 14.0_f64, 40.0_f64);
    let plot_w = w - left - 10.0;
    let plot_h = h - top - bottom;
    let max = b.buckets.iter().map(|x| x.counts.iter().sum::<u64>()).max().unwrap_or(0);
    let ymax = nice(max.max(1));
    // Gridlines at whole numbers: 0, 25, 50, 75, 100; 0, 2, 4, ... 10.
    let steps = if ymax.is_multiple_of(4) {
        4
    } else if ymax.is_multiple_of(5) {
        5
    } else {
        ymax.min(2)
    };
    let n = b.buckets.len() as f64;
    let slot = plot_w / n;
    let bar = (slot * 0.8).max(1.0);
    let y = |v: u64| top + plot_h - (v as f64 / ymax as f64) * plot_h;
    let total: u64 = b.buckets.iter().map(|x| x.counts.iter().sum::<u64>()).sum();
    let busiest = b.buckets.iter().max_by_key(|x| x.counts.iter().sum::<u64>());
    let desc = format!(
        "{} calls from {} to {} UTC in {} buckets of {}; the busiest bucket ({}) holds {} calls. Each bar is split into allowed, needed approval and refused.",
        num(total),
        label(b.buckets[0].start_ms, b.width_ms),
        label(b.buckets[b.buckets.len() - 1].start_ms + b.width_ms, b.width_ms),
        b.buckets.len(),
        width_words(b.width_ms),
        busiest.map(|x| label(x.start_ms, b.width_ms)).unwrap_or_default(),
        num(max)
    );
    let ticks: Vec<usize> = {
        let last = b.buckets.len() - 1;
        let mut t = vec![0, last / 2, last];
        t.dedup();
        t
    };
    html! {
        figure #chart-time {
            figcaption #chart-time-title { "Calls over time (" (width_words(b.width_ms)) " per bar, UTC)" }
            svg viewBox={ "0 0 " (w) " " (h) } width=(w) height=(h) role="img" aria-labelledby="chart-time-svg-title chart-time-desc" xmlns="http://www.w3.org/2000/svg" {
                title #chart-time-svg-title { "Calls over time" }
                desc #chart-time-desc { (desc) }
                @for i in 0..=steps {
                    @let v = ymax * i / steps;
                    line.grid x1=(left) x2=(w - 10.0) y1=(fmt(y(v))) y2=(fmt(y(v))) {}
                    text x=(left - 6.0) y=(fmt(y(v) + 4.0)) text-anchor="end" { (num(v)) }
                }
                line.axis x1=(left) x2=(w - 10.0) y1=(fmt(top + plot_h)) y2=(fmt(top + plot_h)) {}
                @for (i, bk) in b.buckets.iter().enumerate() {
                    @let x = left + slot * i as f64 + (slot - bar) / 2.0;
                    g {
                        title { (label(bk.start_ms, b.width_ms)) ": "
                            @for (k, c) in CLASSES.iter().enumerate() { @if k > 0 { ", " } (num(bk.counts[k])) " " (c.label()) } }
                        @for (k, c) in CLASSES.iter().enumerate() {
                            @let below: u64 = bk.counts[..k].iter().sum();
                            @if bk.counts[k] > 0 {
                                rect class=(class_css(*c)) x=(fmt(x)) width=(fmt(bar)) y=(fmt(y(below + bk.counts[k]))) height=(fmt(y(below) - y(below + bk.counts[k]))) {}
                            }
                        }
                    }
                }
                @for i in &ticks {
                    @let x = left + slot * *i as f64 + slot / 2.0;
                    @let anchor = if *i == 0 { "start" } else if *i + 1 == b.buckets.len() { "end" } else { "middle" };
                    @let tx = if *i == 0 { left } else if *i + 1 == b.buckets.len() { w - 10.0 } else { x };
                    line.axis x1=(fmt(x)) x2=(fmt(x)) y1=(fmt(top + plot_h)) y2=(fmt(top + plot_h + 5.0)) {}
                    text x=(fmt(tx)) y=(fmt(top + plot_h + 18.0)) text-anchor=(anchor) { (label(b.buckets[*i].start_ms, b.width_ms)) }
                }
                text x=(fmt(left)) y=(fmt(h - 4.0)) { "bucket start (UTC), " (width_words(b.width_ms)) " per bar" }
            }
            (legend(&CLASSES.map(|c| (class_css(c), c.label()))))
            details {
                summary { "The numbers of this chart as a table" }
                table {
                    thead { tr { th { "from (UTC)" } @for c in CLASSES { th.n { (c.label()) } } th.n { "total" } } }
                    tbody {
                        @for bk in b.buckets.iter().filter(|x| x.counts.iter().sum::<u64>() > 0) {
                            tr { td { (label(bk.start_ms, b.width_ms)) } @for k in 0..3 { td.n { (num(bk.counts[k])) } } td.n { (num(bk.counts.iter().sum())) } }
                        }
                    }
                }
            }
        }
    }
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

/// Call decisions of a tally, in chart order.
fn decisions(t: &Tally) -> [(&'static str, &'static str, u64); 5] {
    [
        ("c-allow", "allow", t.allow),
        ("c-ask", "ask (needed approval)", t.ask),
        ("c-deny", "deny", t.deny),
        ("c-invalid", "invalid", t.invalid),
        ("c-limit", "limit", t.limit),
    ]
}

fn legend(items: &[(&str, &str)]) -> Markup {
    html! {
        ul.legend aria-hidden="true" {
            @for (css, name) in items { li { span class={ "sw " (css) } {} (name) } }
        }
    }
}

fn tools_chart(agents: &Counted<Tally>) -> Markup {
    let mut rows: Vec<(String, Tally)> = agents.rows.iter().map(|(k, v)| (visible(k), *v)).collect();
    rows.sort_by(|a, b| b.1.calls.cmp(&a.1.calls).then(a.0.cmp(&b.0)));
    let mut others = agents.others.unwrap_or_default();
    let extra = rows.len().saturating_sub(CHART_TOOLS);
    for (_, t) in rows.drain(CHART_TOOLS.min(rows.len())..) {
        others.add(&t);
    }
    if others.calls > 0 {
        rows.push((format!("{} other tools", num(extra as u64 + agents.others_keys)), others));
    }
    rows.retain(|r| r.1.calls > 0);
    let (w, label_w, row_h, top) = (960.0_f64, 190.0_f64, 26.0_f64, 8.0_f64);
    let h = top + row_h * rows.len() as f64 + 28.0;
    let plot_w = w - label_w - 70.0;
    let max = rows.iter().map(|r| r.1.calls).max().unwrap_or(1).max(1);
    let scale = |v: u64| v as f64 / max as f64 * plot_w;
    let desc = rows
        .iter()
        .map(|(name, t)| {
            format!(
                "{name}: {} calls ({})",
                num(t.calls),
                decisions(t)
                    .iter()
                    .filter(|d| d.2 > 0)
                    .map(|d| format!("{} {}", num(d.2), d.1))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    html! {
        figure #chart-tools {
            figcaption #chart-tools-title { "Decisions by tool" }
            svg viewBox={ "0 0 " (w) " " (fmt(h)) } width=(w) height=(fmt(h)) role="img" aria-labelledby="chart-tools-svg-title chart-tools-desc" xmlns="http://www.w3.org/2000/svg" {
                title #chart-tools-svg-title { "Decisions by tool" }
                desc #chart-tools-desc { (desc) }
                @for (i, (name, t)) in rows.iter().enumerate() {
                    @let y = top + row_h * i as f64;
                    @let shown: String = if name.chars().count() > 28 { name.chars().take(27).collect::<String>() + "…" } else { name.clone() };
                    g {
                        title { (name) ": " (num(t.calls)) " calls" @for d in decisions(t) { @if d.2 > 0 { ", " (num(d.2)) " " (d.1) } } }
                        text x=(fmt(label_w - 8.0)) y=(fmt(y + 15.0)) text-anchor="end" { (shown) }
                        @for (k, d) in decisions(t).iter().enumerate() {
                            @let before: u64 = decisions(t)[..k].iter().map(|d| d.2).sum();
                            @if d.2 > 0 {
                                rect class=(d.0) x=(fmt(label_w + scale(before))) y=(fmt(y + 3.0)) width=(fmt(scale(d.2).max(1.0))) height=(fmt(row_h - 8.0)) {}
                            }
                        }
                        text x=(fmt(label_w + scale(t.calls) + 6.0)) y=(fmt(y + 15.0)) { (num(t.calls)) }
                    }
                }
                line.axis x1=(label_w) x2=(label_w) y1=(top) y2=(fmt(top + row_h * rows.len() as f64)) {}
                text x=(label_w) y=(fmt(h - 6.0)) { "calls per tool, split by the manifest's decision" }
            }
            (legend(&decisions(&Tally::default()).map(|d| (d.0, d.1))))
            details {
                summary { "The numbers of this chart as a table" }
                table {
                    thead { tr { th { "tool" } th.n { "calls" } @for d in decisions(&Tally::default()) { th.n { (d.1) } } } }
                    tbody {
                        @for (name, t) in &rows {
                            tr { td { (guest(name)) } td.n { (num(t.calls)) } @for d in decisions(t) { td.n { (num(d.2)) } } }
                        }
                    }
                }
            }
        }
    }
}

fn ours(text: &str) -> Markup {
    // Our own text, with `code` in backticks.
    html! {
        @for (i, part) in text.split('`').enumerate() {
            @if i % 2 == 1 { code { (part) } } @else { (part) }
        }
    }
}

fn item(i: &Item) -> Markup {
    html! {
        li {
            (ours(&i.text))
            @if let Some(link) = i.link {
                " " a href={ "#" (link) } { "→ " (SECTIONS.iter().chain(EXTRA.iter()).find(|s| s.0 == link).map(|s| s.1).unwrap_or(link)) }
            }
        }
    }
}

/// Linked places that are not top-level sections.
const EXTRA: [(&str, &str); 5] = [
    ("by-user", "Counts by user"),
    ("policies", "Manifests in force"),
    ("preapproved", "Pre-approved effects"),
    ("retention", "Retention"),
    ("chart-time", "Charts"),
];

fn control(c: &Control) -> Markup {
    html! {
        article.control id=(c.anchor()) {
            h4 { span.cid { (c.id) } (c.title) }
            p.asks { "Asks: " (c.asks) }
            div.cols {
                div { h5 { "Evidence in this log" } ul { @for i in &c.evidence { (item(i)) } } }
                div.limits { h5 { "What this log cannot show" } ul { @for l in &c.limits { li { (ours(l)) } } } }
            }
        }
    }
}

fn control_sections(ctx: &Context, ev: &Evidence) -> Markup {
    html! {
        section #controls {
            h2 { "Controls" }
            p { "For each control: what an auditor asks, which evidence in this log supports it (with counts, linked to the tables that list it), "
                "and what this log cannot show. Counts cover the events in this report." }
            @for f in &ctx.frameworks {
                section.framework id={ "framework-" (f.slug()) } {
                    h3 { (f.name()) }
                    @for c in controls(*f, ctx, ev) { (control(&c)) }
                }
            }
        }
    }
}

fn when(r: &Row) -> Markup {
    // `2026-11-23T16:17:46.504Z` on two lines: date, then time.
    let (date, time) = match r.ts.split_once('T') {
        Some((d, t)) if d.len() == 10 && d.bytes().all(|b| b.is_ascii_digit() || b == b'-') => (d, Some(t)),
        _ => (r.ts.as_str(), None),
    };
    html! {
        (guest(date))
        @if let Some(t) = time { br; (guest(t)) }
        br;
        span.sub { "seq " @if let Some(s) = r.seq { (s) } @else { "?" } }
    }
}

fn action(r: &Row) -> Markup {
    html! {
        code { (guest(&r.capability)) } " " (clipped(&r.target))
        @if let Some(d) = &r.dest { " → " (clipped(d)) }
        @if let Some(i) = &r.intent { br; span.sub { "intent: " (clipped(i)) } }
    }
}

fn who(r: &Row) -> Markup {
    html! {
        (guest(&r.user)) br;
        span.sub { "tool " (guest(&r.agent)) } br;
        span.sub { "task " (guest(&r.task)) }
    }
}

fn more(n: u64, what: &str, how: &str) -> Markup {
    html! {
        @if n > 0 {
            p.more { strong { "… and " (num(n)) " more " (what) " not listed." } " The counts include them. " (ours(how)) }
        }
    }
}

fn pill(decision: &str) -> Markup {
    let css = match decision {
        "approved" | "rejected" | "allow" | "ask" | "deny" | "invalid" | "limit" => decision,
        _ => "other",
    };
    html! { span class={ "pill " (css) } { (guest(decision)) } }
}

fn approvals(ctx: &Context, ev: &Evidence) -> Markup {
    let l = &ev.approvals;
    html! {
        section #approvals {
            h2 { "Approvals (" (num(l.total)) ")" }
            p { "Every answer to a call that needed a human: who decided, when, through what, and the SHA-256 of the exact effect the decision is bound to." }
            @if l.total == 0 { p.none { "No approvals in this report." } }
            @else {
                table {
                    thead { tr { th { "when" } th { "decision" } th { "action" } th { "for" } th { "decided by" } th { "bound to" } } }
                    tbody {
                        @for a in &l.rows {
                            tr {
                                td { (when(&a.row)) }
                                td { (pill(&a.decision)) }
                                td { (action(&a.row)) br; span.sub { "rule " (guest(&a.row.rule)) }
                                     @if let Some(r) = &a.reason { br; span.sub { "reason: " (clipped(r)) } } }
                                td { (who(&a.row)) }
                                td {
                                    @if a.by.is_empty() { span.none { "nobody" } }
                                    @else { @for (i, b) in a.by.iter().enumerate() { @if i > 0 { ", " } strong.reviewer { (guest(b)) } } }
                                    br; span.sub { "via " (guest(&a.via)) " at " (guest(&a.at)) }
                                    @if let Some(r) = &a.request { br; span.sub { "request " (guest(r)) } }
                                }
                                td {
                                    @if let Some(e) = &a.effect_sha256 { span.sub { "effect " } (hash(e)) }
                                    @if let Some(c) = &a.content_sha256 { br; span.sub { "content " } (hash(c)) }
                                }
                            }
                        }
                    }
                }
                (more(l.more(), "approvals", &format!("Raise `--max-rows` (now {}), or list them with `sandbox audit show LOG --decision approved` and `--decision rejected`.", ctx.max_rows)))
            }
        }
    }
}

fn denials(ctx: &Context, ev: &Evidence) -> Markup {
    let l = &ev.denials;
    html! {
        section #denials {
            h2 { "Refused calls (" (num(l.total)) ")" }
            p { "Every call the manifest denied, that was malformed, or that went over a run limit, with the rule that decided and the reason the tool was given. Nothing of these calls happened." }
            @if l.total == 0 { p.none { "No refused calls in this report." } }
            @else {
                table {
                    thead { tr { th { "when" } th { "decision" } th { "action" } th { "rule" } th { "reason" } th { "for" } } }
                    tbody {
                        @for d in &l.rows {
                            tr {
                                td { (when(&d.row)) }
                                td { (pill(&d.decision)) }
                                td { (action(&d.row)) }
                                td { code { (guest(&d.row.rule)) } }
                                td { @if let Some(r) = &d.reason { (clipped(r)) } @else { span.none { "not recorded" } } }
                                td { (who(&d.row)) }
                            }
                        }
                    }
                }
                (more(l.more(), "refused calls", &format!("Raise `--max-rows` (now {}), or list them with `sandbox audit show LOG --decision deny` (and `invalid`, `limit`).", ctx.max_rows)))
            }
        }
    }
}

fn findings(ctx: &Context, ev: &Evidence) -> Markup {
    let l = &ev.findings;
    html! {
        section #findings {
            h2 { "Findings (" (num(l.total)) ")" }
            p { "Things the runtime noticed outside a call and recorded in the chain, such as a torn log tail it repaired after a crash." }
            @if l.total == 0 { p.none { "No findings in this report." } }
            @else {
                table {
                    thead { tr { th { "when" } th { "rule" } th { "what" } th { "bytes" } th { "task" } } }
                    tbody {
                        @for f in &l.rows {
                            tr {
                                td { (when(&f.row)) }
                                td { code { (guest(&f.row.rule)) } }
                                td { @if let Some(r) = &f.reason { (clipped(r)) } }
                                td { @if let Some(s) = f.size { (num(s)) } @if let Some(c) = &f.content_sha256 { br; (hash(c)) } }
                                td { (guest(&f.row.task)) }
                            }
                        }
                    }
                }
                (more(l.more(), "findings", &format!("Raise `--max-rows` (now {}), or list them with `sandbox audit show LOG`.", ctx.max_rows)))
            }
        }
    }
}

fn tally_table(id: &str, caption: &str, key: &str, c: &Counted<Tally>, runs: bool) -> Markup {
    html! {
        table id=(id) {
            caption { (caption) }
            thead { tr { th { (key) } @if runs { th.n { "runs" } } th.n { "calls" } th.n { "allowed" } th.n { "asked" } th.n { "refused" } th.n { "approved" } th.n { "rejected" } } }
            tbody {
                @for (k, t) in &c.rows {
                    tr { td { @if k.is_empty() { span.none { "(none)" } } @else { (guest(k)) } } (tally_cells(t, runs)) }
                }
                @if let Some(t) = &c.others {
                    tr { td { span.none { (num(c.others_keys)) " others (beyond " (super::MAX_KEYS) " distinct values)" } } (tally_cells(t, runs)) }
                }
            }
        }
    }
}

fn tally_cells(t: &Tally, runs: bool) -> Markup {
    html! {
        @if runs { td.n { (num(t.tasks)) } }
        td.n { (num(t.calls)) } td.n { (num(t.allow)) } td.n { (num(t.ask)) } td.n { (num(t.refused())) } td.n { (num(t.approved)) } td.n { (num(t.rejected)) }
    }
}

fn counts(ev: &Evidence) -> Markup {
    let rows = ev.total.by_decision();
    html! {
        section #counts {
            h2 { "Counts" }
            table #by-decision {
                caption { "By decision" }
                thead { tr { th { "decision" } th { "meaning" } th.n { "events" } } }
                tbody { @for (d, meaning, n) in rows { tr { td { (pill(d)) } td { (meaning) } td.n { (num(n)) } } } }
            }
            (tally_table("by-user", "By user", "user", &ev.users, true))
            (tally_table("by-tool", "By tool (agent)", "tool", &ev.agents, true))
            (tally_table("by-capability", "By capability", "capability", &ev.capabilities, false))
            table #by-status {
                caption { "How runs ended (task-end status)" }
                thead { tr { th { "status" } th.n { "runs" } } }
                tbody {
                    @for (s, n) in &ev.statuses { tr { td { (guest(s)) } td.n { (num(*n)) } } }
                    @if ev.statuses.is_empty() { tr { td.none colspan="2" { "no task-end events in this report" } } }
                }
            }
            table #policies {
                caption { "Manifests in force (by SHA-256 of the manifest file)" }
                thead { tr { th { "manifest SHA-256" } th { "name(s)" } th.n { "runs" } th.n { "events" } } }
                tbody {
                    @for (h, p) in &ev.policies.rows {
                        tr { td { (hash(h)) } td { @for (i, n) in p.names.iter().enumerate() { @if i > 0 { ", " } (guest(n)) } } td.n { (num(p.tasks)) } td.n { (num(p.events)) } }
                    }
                }
            }
            table #preapproved {
                caption { "Effects allowed without a human, by the pre-approving rule" }
                thead { tr { th { "rule" } th.n { "effects" } } }
                tbody {
                    @for (r, n) in &ev.preapproved.rows { tr { td { code { (guest(r)) } } td.n { (num(*n)) } } }
                    @if let Some(n) = ev.preapproved.others { tr { td.none { "other rules" } td.n { (num(n)) } } }
                    @if ev.preapproved.rows.is_empty() { tr { td.none colspan="2" { "none: every effect in this report needed a human, or was refused" } } }
                }
            }
        }
    }
}

fn files(ev: &Evidence) -> Markup {
    html! {
        section #files {
            h2 { "Log files and retention" }
            table {
                caption { "The files this report was made from, in chain order (rotated segments, then the live file)" }
                thead { tr { th { "file" } th.n { "bytes" } th.n { "lines" } th { "SHA-256" } } }
                tbody {
                    @for f in &ev.files {
                        tr { td.mono { (guest(&f.path.display().to_string())) } td.n { (num(f.bytes)) } td.n { (num(f.lines)) } td { span.hash { (f.sha256) } } }
                    }
                }
            }
            h3 #retention { "Retention" }
            @if ev.retention.keys().all(String::is_empty) {
                p { "No retention period is recorded on the runs in this report (" code { "[audit] retention" } " was not set, or the runs predate it)." }
            } @else {
                table {
                    thead { tr { th { "retention recorded on task-start" } th.n { "runs" } } }
                    tbody { @for (r, n) in &ev.retention { tr { td { @if r.is_empty() { span.none { "(not recorded)" } } @else { (guest(r)) } } td.n { (num(*n)) } } } }
                }
                p.sub { "As recorded by the runtime; " code { "sandbox audit prune" } " refuses to delete events younger than the retention period." }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_axes() {
        assert_eq!(num(0), "0");
        assert_eq!(num(1234567), "1,234,567");
        assert_eq!(num(100), "100");
        assert_eq!(nice(0), 1);
        assert_eq!(nice(3), 5);
        assert_eq!(nice(11), 20);
        assert_eq!(nice(50), 50);
    }

    #[test]
    fn log_text_is_escaped_and_its_hidden_characters_marked() {
        let m = guest("<script>alert(1)</script>\u{202e}&\"").into_string();
        assert!(!m.contains("<script>"), "{m}");
        assert!(m.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{m}");
        assert!(m.contains("<span class=\"esc\""), "{m}");
        assert!(m.contains("\\u{202e}</span>&amp;&quot;"), "{m}");
        assert!(!m.contains('\u{202e}'));
    }
}
