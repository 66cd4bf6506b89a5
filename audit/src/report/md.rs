//! The Markdown report: the same sections as the HTML one, as plain
//! CommonMark with GitHub tables. Every piece of log text goes through
//! [`text::markdown`](super::text::markdown) (metacharacters escaped,
//! hidden characters as code-span escapes); our own text is written here.
//! Links point at the headings' own anchors (GitHub's slugs), so the
//! document needs no HTML.

use super::collect::{Approval, Counted, Denial, Evidence, Finding, Listed, Row, Tally};
use super::controls::{Item, controls};
use super::html::num;
use super::text::{Clipped, markdown};
use super::timeline::{CLASSES, format_ms, label, width_words};
use super::{Checkpoints, Context, Integrity, MAX_KEYS, SECTIONS, TIMELINE_BUCKETS};
use std::fmt::Write;

/// Log text, escaped.
fn g(s: &str) -> String {
    markdown(s)
}

fn clip(c: &Clipped) -> String {
    let mut s = g(&c.text);
    if c.cut > 0 {
        let _ = write!(s, " *… {} more characters (whole in the log)*", num(c.cut as u64));
    }
    s
}

fn path(p: &std::path::Path) -> String {
    g(&p.display().to_string())
}

/// The heading anchor (GitHub's slug of the heading text) of a section or
/// table the controls link to.
fn anchor(link: &str) -> (&'static str, &'static str) {
    match link {
        "verification" => ("verification", "Verification"),
        "summary" => ("summary", "Summary"),
        "charts" | "chart-time" => ("charts", "Charts"),
        "controls" => ("controls", "Controls"),
        "approvals" => ("approvals", "Approvals"),
        "denials" => ("refused-calls", "Refused calls"),
        "findings" => ("findings", "Findings"),
        "counts" => ("counts", "Counts"),
        "by-user" => ("by-user", "Counts by user"),
        "policies" => ("manifests-in-force", "Manifests in force"),
        "preapproved" => ("pre-approved-effects", "Pre-approved effects"),
        "retention" => ("retention", "Retention"),
        _ => ("log-files-and-retention", "Log files and retention"),
    }
}

/// The report as one Markdown document.
pub fn markdown_report(ctx: &Context, ev: &Evidence) -> String {
    let mut o = String::new();
    header(&mut o, ctx, ev);
    verification(&mut o, ctx, ev);
    let _ = writeln!(
        o,
        "Sections: {}\n",
        SECTIONS.iter().map(|(id, _)| anchor(id)).map(|(a, t)| format!("[{t}](#{a})")).collect::<Vec<_>>().join(" · ")
    );
    summary(&mut o, ev);
    charts(&mut o, ev);
    control_sections(&mut o, ctx, ev);
    approvals(&mut o, ctx, &ev.approvals);
    denials(&mut o, ctx, &ev.denials);
    findings(&mut o, ctx, &ev.findings);
    counts(&mut o, ev);
    files(&mut o, ev);
    let _ = writeln!(
        o,
        "---\n\nThis report summarises what the log recorded; it is evidence to examine, not an attestation. \
         To check it independently: compare the SHA-256 of the files above with `sha256sum`, and verify the chain \
         with `sandbox audit verify` or, without our binary, `scripts/verify-audit.py` (Python standard library only).\n\n\
         Made by sandbox {} at {}. Log text (paths, intents, names) is shown as recorded, with Markdown characters \
         escaped; hidden and control characters appear as escapes in code spans, such as `\\u{{202e}}`.",
        ctx.generator,
        format_ms(ctx.generated_ms)
    );
    o
}

fn header(o: &mut String, ctx: &Context, ev: &Evidence) {
    let period = match (&ev.first_ts, &ev.last_ts) {
        (Some(a), Some(b)) => format!("{} to {} (UTC; the first and last events in this report)", g(a), g(b)),
        _ => "no events".to_owned(),
    };
    let filters = if ctx.filters.is_empty() {
        "none: every event of the log".to_owned()
    } else {
        let f: Vec<String> = ctx.filters.iter().map(|(flag, v)| format!("`{flag}` {}", g(v))).collect();
        format!("{} (every filter must hold; verification always covers the whole log)", f.join(", "))
    };
    let frameworks: Vec<&str> = ctx.frameworks.iter().map(|f| f.name()).collect();
    let _ = writeln!(o, "# Audit evidence report\n");
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(
        o,
        "| Log | {} ({} file{}, see [Log files](#log-files-and-retention)) |",
        path(&ctx.log),
        ev.files.len(),
        if ev.files.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(o, "| Period | {period} |");
    let _ = writeln!(o, "| Filters | {filters} |");
    let _ = writeln!(o, "| Frameworks | {} |", frameworks.join(", "));
    let _ = writeln!(o, "| Events | {} in this report, of {} in the log |", num(ev.selected), num(ev.events));
    let _ = writeln!(o, "| Generated | {} by sandbox {} |\n", format_ms(ctx.generated_ms), ctx.generator);
}

fn verification(o: &mut String, ctx: &Context, ev: &Evidence) {
    let _ = writeln!(o, "## Verification\n");
    match &ctx.integrity {
        Integrity::Intact { events, head } => {
            let _ = writeln!(
                o,
                "> **INTACT: the log's hash chain verified.** All {} events of the log were recomputed: no event was \
                 edited, removed, inserted or reordered. Head (hash of the last event): {}\n",
                num(*events),
                g(head)
            );
            if *events != ev.events {
                let _ = writeln!(
                    o,
                    "Note: {} events were read for this report and {} verified; the log changed while the report was made.\n",
                    num(ev.events),
                    num(*events)
                );
            }
        }
        Integrity::Broken { file, seq, line, reason } => {
            let _ = writeln!(
                o,
                "> **⚠ NOT INTACT: this log has been altered or damaged.** The hash chain breaks at seq {seq} ({}, line \
                 {line}): {}.\n>\n> Events from seq {seq} on cannot be trusted. They are still counted and listed below \
                 as read, so that they can be examined, but nothing in this report vouches for them.\n",
                path(file),
                g(reason)
            );
        }
    }
    if ev.unreadable > 0 {
        let _ = writeln!(o, "**{} lines are not audit events** and are left out of every count.\n", num(ev.unreadable));
    }
    match &ctx.checkpoints {
        Checkpoints::NotGiven => {
            let _ = writeln!(
                o,
                "Signed checkpoints: not checked. A hash chain alone cannot show a log cut short at its end or \
                 rewritten whole; make this report with `--checkpoints` and `--public-key` to check them.\n"
            );
        }
        Checkpoints::Verified { file, key, checkpoints, size, head, ts, uncovered, torn_line } => {
            let _ = write!(
                o,
                "**Signed checkpoints verified:** {} in {} under key {}; the latest, made {}, covers the first {} \
                 events (head {}). ",
                num(*checkpoints),
                path(file),
                g(key),
                g(ts),
                num(*size),
                g(head)
            );
            if *uncovered > 0 {
                let _ = write!(o, "{} later events are not covered by any checkpoint yet.", num(*uncovered));
            } else {
                o.push_str("Every event is covered.");
            }
            if let Some(l) = torn_line {
                let _ = write!(o, " The checkpoint file's last line ({l}) is incomplete and was ignored.");
            }
            o.push_str("\n\n");
        }
        Checkpoints::Failed { file, reason } => {
            let _ = writeln!(o, "> **⚠ Signed checkpoints did NOT verify** ({}): {}\n", path(file), g(reason));
        }
    }
}

fn summary(o: &mut String, ev: &Evidence) {
    let t = &ev.total;
    let _ = writeln!(o, "## Summary\n");
    let _ = writeln!(
        o,
        "| events | tasks | host calls | refused calls | approved | rejected | findings | users | tools |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n\
         | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        num(ev.selected),
        num(ev.tasks),
        num(t.calls),
        num(t.refused()),
        num(t.approved),
        num(t.rejected),
        num(ev.findings.total),
        num(ev.users.rows.len() as u64),
        num(ev.agents.rows.len() as u64)
    );
}

fn charts(o: &mut String, ev: &Evidence) {
    let _ = writeln!(o, "## Charts\n");
    let Some(b) = ev.timeline.buckets(TIMELINE_BUCKETS) else {
        let _ = writeln!(o, "*No host calls in this report: nothing to chart.*\n");
        return;
    };
    let _ = writeln!(
        o,
        "### Calls over time\n\n{} per bucket, UTC; buckets with no calls are left out. The HTML report draws this as a chart.\n",
        width_words(b.width_ms)
    );
    let _ = write!(o, "| from (UTC) |");
    for c in CLASSES {
        let _ = write!(o, " {} |", c.label());
    }
    let _ = writeln!(o, " total |\n|---|---:|---:|---:|---:|");
    for bk in b.buckets.iter().filter(|x| x.counts.iter().sum::<u64>() > 0) {
        let _ = write!(o, "| {} |", label(bk.start_ms, b.width_ms));
        for n in bk.counts {
            let _ = write!(o, " {} |", num(n));
        }
        let _ = writeln!(o, " {} |", num(bk.counts.iter().sum()));
    }
    let _ = writeln!(o, "\n### Decisions by tool\n");
    let _ = writeln!(o, "| tool | calls | allow | ask | deny | invalid | limit |\n|---|---:|---:|---:|---:|---:|---:|");
    let mut rows: Vec<(&String, &Tally)> = ev.agents.rows.iter().filter(|r| r.1.calls > 0).collect();
    rows.sort_by(|a, b| b.1.calls.cmp(&a.1.calls).then(a.0.cmp(b.0)));
    for (name, t) in rows {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} |",
            g(name),
            num(t.calls),
            num(t.allow),
            num(t.ask),
            num(t.deny),
            num(t.invalid),
            num(t.limit)
        );
    }
    o.push('\n');
}

fn item(i: &Item) -> String {
    match i.link {
        Some(l) => {
            let (a, t) = anchor(l);
            format!("{} ([→ {t}](#{a}))", i.text)
        }
        None => i.text.clone(),
    }
}

fn control_sections(o: &mut String, ctx: &Context, ev: &Evidence) {
    let _ = writeln!(
        o,
        "## Controls\n\nFor each control: what an auditor asks, which evidence in this log supports it (with counts, \
         linked to the tables that list it), and what this log cannot show. Counts cover the events in this report.\n"
    );
    for f in &ctx.frameworks {
        let _ = writeln!(o, "### {}\n", f.name());
        for c in controls(*f, ctx, ev) {
            let _ = writeln!(o, "#### {} {}\n\n*Asks:* {}\n\n**Evidence in this log:**\n", c.id, c.title, c.asks);
            for i in &c.evidence {
                let _ = writeln!(o, "- {}", item(i));
            }
            let _ = writeln!(o, "\n**What this log cannot show:**\n");
            for l in &c.limits {
                let _ = writeln!(o, "- {l}");
            }
            o.push('\n');
        }
    }
}

fn when(r: &Row) -> String {
    let seq = r.seq.map(|s| s.to_string()).unwrap_or_else(|| "?".into());
    format!("{} (seq {seq})", g(&r.ts))
}

fn action(r: &Row) -> String {
    let mut s = format!("{} {}", g(&r.capability), clip(&r.target));
    if let Some(d) = &r.dest {
        let _ = write!(s, " → {}", clip(d));
    }
    if let Some(i) = &r.intent {
        let _ = write!(s, "<br>intent: {}", clip(i));
    }
    s
}

fn who(r: &Row) -> String {
    format!("{}<br>tool {}<br>task {}", g(&r.user), g(&r.agent), g(&r.task))
}

fn more<T>(o: &mut String, l: &Listed<T>, what: &str, how: &str) {
    if l.more() > 0 {
        let _ = writeln!(o, "\n> **… and {} more {what} not listed.** The counts include them. {how}", num(l.more()));
    }
    o.push('\n');
}

fn approvals(o: &mut String, ctx: &Context, l: &Listed<Approval>) {
    let _ = writeln!(
        o,
        "## Approvals\n\n{} in this report. Every answer to a call that needed a human: who decided, when, through \
         what, and the SHA-256 of the exact effect the decision is bound to.\n",
        num(l.total)
    );
    if l.total == 0 {
        let _ = writeln!(o, "*No approvals in this report.*\n");
        return;
    }
    let _ = writeln!(o, "| when | decision | action | for | decided by | bound to |\n|---|---|---|---|---|---|");
    for a in &l.rows {
        let mut act = format!("{}<br>rule {}", action(&a.row), g(&a.row.rule));
        if let Some(r) = &a.reason {
            let _ = write!(act, "<br>reason: {}", clip(r));
        }
        let by = if a.by.is_empty() {
            "*nobody*".to_owned()
        } else {
            a.by.iter().map(|b| format!("**{}**", g(b))).collect::<Vec<_>>().join(", ")
        };
        let mut decided = format!("{by}<br>via {} at {}", g(&a.via), g(&a.at));
        if let Some(r) = &a.request {
            let _ = write!(decided, "<br>request {}", g(r));
        }
        let mut bound = String::new();
        if let Some(e) = &a.effect_sha256 {
            let _ = write!(bound, "effect {}", g(e));
        }
        if let Some(c) = &a.content_sha256 {
            let _ = write!(bound, "<br>content {}", g(c));
        }
        let _ = writeln!(
            o,
            "| {} | **{}** | {act} | {} | {decided} | {bound} |",
            when(&a.row),
            g(&a.decision),
            who(&a.row)
        );
    }
    more(
        o,
        l,
        "approvals",
        &format!(
            "Raise `--max-rows` (now {}), or list them with `sandbox audit show LOG --decision approved` and `--decision rejected`.",
            ctx.max_rows
        ),
    );
}

fn denials(o: &mut String, ctx: &Context, l: &Listed<Denial>) {
    let _ = writeln!(
        o,
        "## Refused calls\n\n{} in this report. Every call the manifest denied, that was malformed, or that went over \
         a run limit, with the rule that decided and the reason the tool was given. Nothing of these calls happened.\n",
        num(l.total)
    );
    if l.total == 0 {
        let _ = writeln!(o, "*No refused calls in this report.*\n");
        return;
    }
    let _ = writeln!(o, "| when | decision | action | rule | reason | for |\n|---|---|---|---|---|---|");
    for d in &l.rows {
        let reason = d.reason.as_ref().map(clip).unwrap_or_else(|| "*not recorded*".into());
        let _ = writeln!(
            o,
            "| {} | **{}** | {} | {} | {reason} | {} |",
            when(&d.row),
            g(&d.decision),
            action(&d.row),
            g(&d.row.rule),
            who(&d.row)
        );
    }
    more(
        o,
        l,
        "refused calls",
        &format!(
            "Raise `--max-rows` (now {}), or list them with `sandbox audit show LOG --decision deny` (and `invalid`, `limit`).",
            ctx.max_rows
        ),
    );
}

fn findings(o: &mut String, ctx: &Context, l: &Listed<Finding>) {
    let _ = writeln!(
        o,
        "## Findings\n\n{} in this report. Things the runtime noticed outside a call and recorded in the chain, such \
         as a torn log tail it repaired after a crash.\n",
        num(l.total)
    );
    if l.total == 0 {
        let _ = writeln!(o, "*No findings in this report.*\n");
        return;
    }
    let _ = writeln!(o, "| when | rule | what | bytes | task |\n|---|---|---|---|---|");
    for f in &l.rows {
        let mut bytes = f.size.map(num).unwrap_or_default();
        if let Some(c) = &f.content_sha256 {
            let _ = write!(bytes, "<br>{}", g(c));
        }
        let _ = writeln!(
            o,
            "| {} | {} | {} | {bytes} | {} |",
            when(&f.row),
            g(&f.row.rule),
            f.reason.as_ref().map(clip).unwrap_or_default(),
            g(&f.row.task)
        );
    }
    more(
        o,
        l,
        "findings",
        &format!("Raise `--max-rows` (now {}), or list them with `sandbox audit show LOG`.", ctx.max_rows),
    );
}

fn tally_table(o: &mut String, title: &str, key: &str, c: &Counted<Tally>, runs: bool) {
    let _ = writeln!(o, "### {title}\n");
    let _ = writeln!(
        o,
        "| {key} |{} calls | allowed | asked | refused | approved | rejected |\n|---|{}---:|---:|---:|---:|---:|---:|",
        if runs { " runs |" } else { "" },
        if runs { "---:|" } else { "" }
    );
    let row = |o: &mut String, name: String, t: &Tally| {
        let _ = write!(o, "| {name} |");
        if runs {
            let _ = write!(o, " {} |", num(t.tasks));
        }
        let _ = writeln!(
            o,
            " {} | {} | {} | {} | {} | {} |",
            num(t.calls),
            num(t.allow),
            num(t.ask),
            num(t.refused()),
            num(t.approved),
            num(t.rejected)
        );
    };
    for (k, t) in &c.rows {
        row(o, if k.is_empty() { "*(none)*".to_owned() } else { g(k) }, t);
    }
    if let Some(t) = &c.others {
        row(o, format!("*{} others (beyond {MAX_KEYS} distinct values)*", num(c.others_keys)), t);
    }
    o.push('\n');
}

fn counts(o: &mut String, ev: &Evidence) {
    let _ = writeln!(o, "## Counts\n\n### By decision\n\n| decision | meaning | events |\n|---|---|---:|");
    for (d, meaning, n) in ev.total.by_decision() {
        let _ = writeln!(o, "| {d} | {meaning} | {} |", num(n));
    }
    o.push('\n');
    tally_table(o, "By user", "user", &ev.users, true);
    tally_table(o, "By tool (agent)", "tool", &ev.agents, true);
    tally_table(o, "By capability", "capability", &ev.capabilities, false);
    let _ = writeln!(o, "### How runs ended\n\n| task-end status | runs |\n|---|---:|");
    for (s, n) in &ev.statuses {
        let _ = writeln!(o, "| {} | {} |", g(s), num(*n));
    }
    if ev.statuses.is_empty() {
        let _ = writeln!(o, "| *no task-end events in this report* | |");
    }
    let _ = writeln!(
        o,
        "\n### Manifests in force\n\nBy SHA-256 of the manifest file.\n\n| manifest SHA-256 | name(s) | runs | events |\n|---|---|---:|---:|"
    );
    for (h, p) in &ev.policies.rows {
        let names: Vec<String> = p.names.iter().map(|n| g(n)).collect();
        let _ = writeln!(o, "| {} | {} | {} | {} |", g(h), names.join(", "), num(p.tasks), num(p.events));
    }
    let _ = writeln!(
        o,
        "\n### Pre-approved effects\n\nEffects allowed without a human, by the pre-approving rule.\n\n| rule | effects |\n|---|---:|"
    );
    for (r, n) in &ev.preapproved.rows {
        let _ = writeln!(o, "| {} | {} |", g(r), num(*n));
    }
    if let Some(n) = ev.preapproved.others {
        let _ = writeln!(o, "| *other rules* | {} |", num(n));
    }
    if ev.preapproved.rows.is_empty() {
        let _ = writeln!(o, "| *none: every effect in this report needed a human, or was refused* | |");
    }
    o.push('\n');
}

fn files(o: &mut String, ev: &Evidence) {
    let _ = writeln!(
        o,
        "## Log files and retention\n\nThe files this report was made from, in chain order (rotated segments, then \
         the live file).\n\n| file | bytes | lines | SHA-256 |\n|---|---:|---:|---|"
    );
    for f in &ev.files {
        let _ = writeln!(o, "| {} | {} | {} | {} |", path(&f.path), num(f.bytes), num(f.lines), f.sha256);
    }
    let _ = writeln!(o, "\n### Retention\n");
    if ev.retention.keys().all(String::is_empty) {
        let _ = writeln!(
            o,
            "No retention period is recorded on the runs in this report (`[audit] retention` was not set, or the runs predate it).\n"
        );
    } else {
        let _ = writeln!(o, "| retention recorded on task-start | runs |\n|---|---:|");
        for (r, n) in &ev.retention {
            let _ =
                writeln!(o, "| {} | {} |", if r.is_empty() { "*(not recorded)*".to_owned() } else { g(r) }, num(*n));
        }
        let _ = writeln!(
            o,
            "\nAs recorded by the runtime; `sandbox audit prune` refuses to delete events younger than the retention period.\n"
        );
    }
}
