//! The controls a report speaks to, and what this log says for each: the
//! evidence it holds (with counts, and the table that lists it) and what
//! it cannot show. Written from /work/shared/CONTROLS.md: what auditors
//! ask, and what `sandbox` records to answer it. The text is ours; no log
//! text appears in it, only counts.

use super::collect::Evidence;
use super::{Checkpoints, Context, Framework, Integrity};

/// One statement of evidence, with the section that lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The statement. Text in backticks is code.
    pub text: String,
    /// The `id` of the section of the report that lists the events.
    pub link: Option<&'static str>,
}

/// A control and what this log holds for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// The framework.
    pub framework: Framework,
    /// `CC6.1`, `164.312(b)`, `10.2`.
    pub id: &'static str,
    /// Its name.
    pub title: &'static str,
    /// What an auditor asks.
    pub asks: &'static str,
    /// What in this log supports it.
    pub evidence: Vec<Item>,
    /// What this log cannot show.
    pub limits: Vec<String>,
}

impl Control {
    /// The anchor of its section: `control-soc2-cc6-1`.
    pub fn anchor(&self) -> String {
        let id: String =
            self.id.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
        format!("control-{}-{}", self.framework.slug(), id.trim_matches('-').replace("--", "-"))
    }
}

/// `1 denial`, `3 denials`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn item(text: impl Into<String>, link: &'static str) -> Item {
    Item { text: text.into(), link: Some(link) }
}

fn plain(text: impl Into<String>) -> Item {
    Item { text: text.into(), link: None }
}

/// What the log says about who the users are.
fn identity(ev: &Evidence) -> (Item, Option<String>) {
    let starts = ev.total.tasks;
    let users = count(ev.users.rows.len() as u64, "distinct user", "distinct users");
    if starts > 0 && ev.verified_users == starts {
        (
            item(
                format!("{users}; every run's user was verified before it ran ({starts} of {starts} runs)"),
                "by-user",
            ),
            None,
        )
    } else {
        let unverified = starts - ev.verified_users;
        (
            item(
                format!(
                    "{users}, named on every event; users are recorded as given (unverified): \
                     {unverified} of {starts} runs carry no `user_verified`"
                ),
                "by-user",
            ),
            Some(
                "Users are recorded as given (unverified): the name is whatever the operator or runner passed \
                 as `--user`. Verified identity (a signed identity token checked before the run) comes with a \
                 later version; until then this log does not prove who a user is."
                    .to_owned(),
            ),
        )
    }
}

fn chain(ctx: &Context) -> Item {
    match &ctx.integrity {
        Integrity::Intact { events, .. } => item(
            format!(
                "the hash chain of all {events} events of the log verified: no event edited, removed, inserted or reordered"
            ),
            "verification",
        ),
        Integrity::Broken { seq, .. } => item(
            format!("the hash chain is NOT INTACT: it breaks at seq {seq}; events from there on cannot be trusted"),
            "verification",
        ),
    }
}

fn checkpoint_item(ctx: &Context) -> (Option<Item>, Option<String>) {
    match &ctx.checkpoints {
        Checkpoints::Verified { checkpoints, size, uncovered, .. } => (
            Some(item(
                format!(
                    "{} verified under the given public key; they cover the first {size} events ({uncovered} after the last checkpoint are not yet covered)",
                    count(*checkpoints, "signed checkpoint", "signed checkpoints")
                ),
                "verification",
            )),
            None,
        ),
        Checkpoints::Failed { .. } => (
            Some(item("the signed checkpoints did NOT verify against this log (see Verification)", "verification")),
            None,
        ),
        Checkpoints::NotGiven => (
            None,
            Some(
                "No signed checkpoints were checked: a plain hash chain cannot show a log cut short at its end, \
                 or rewritten whole and re-chained. Configure `[audit] signing_key` and make this report with \
                 `--checkpoints` and `--public-key`."
                    .to_owned(),
            ),
        ),
    }
}

fn retention(ev: &Evidence) -> Item {
    let recorded: Vec<&str> = ev.retention.keys().filter(|k| !k.is_empty()).map(String::as_str).collect();
    let without = ev.retention.get("").copied().unwrap_or(0);
    let text = match (recorded.len(), without) {
        (0, _) => "no retention period is recorded on the runs in this log".to_owned(),
        (_, 0) => format!("retention recorded on every run: {}", recorded.join(", ")),
        _ => format!("retention recorded: {}; {} without one", recorded.join(", "), count(without, "run", "runs")),
    };
    item(text, "retention")
}

/// The controls of `framework`, with this log's evidence.
pub fn controls(framework: Framework, ctx: &Context, ev: &Evidence) -> Vec<Control> {
    let t = &ev.total;
    let calls = count(t.calls, "host call", "host calls");
    let decided = item(
        format!(
            "{calls}, each decided by the operator's manifest before it took effect (deny by default): {} allowed, {} needed a human's approval, {} refused",
            t.allow,
            t.ask,
            t.refused()
        ),
        "counts",
    );
    let denied = item(
        format!(
            "{} ({} denied by a rule, {} invalid, {} over a run limit), each listed with its rule and reason",
            count(t.refused(), "refused call", "refused calls"),
            t.deny,
            t.invalid,
            t.limit
        ),
        "denials",
    );
    let policies = item(
        format!(
            "{} in force, identified by the SHA-256 recorded on every event",
            count(ev.policies.rows.len() as u64, "manifest", "manifests")
        ),
        "policies",
    );
    let approvals = item(
        format!(
            "{} asked a human: {} approved, {} rejected or expired; each approval records the reviewer(s), the time, the approval service's request id where there is one, and the SHA-256 of the exact effect approved",
            count(t.ask, "call", "calls"),
            t.approved,
            t.rejected
        ),
        "approvals",
    );
    let preapproved_total: u64 = ev.preapproved.rows.values().sum::<u64>() + ev.preapproved.others.unwrap_or(0);
    let preapproved = item(
        format!(
            "{} allowed without a human because the manifest pre-approves them (`auto_approve`, `approval = \"never\"`), counted by rule",
            count(preapproved_total, "effect was", "effects were")
        ),
        "preapproved",
    );
    let changes = item(
        format!(
            "{}: {} approved by a human (with the content's SHA-256), {} pre-approved by rule, {} rejected (a rejected change did not happen)",
            count(
                ev.approved_changes + ev.preapproved_changes + ev.rejected_changes,
                "change to files",
                "changes to files"
            ),
            ev.approved_changes,
            ev.preapproved_changes,
            ev.rejected_changes
        ),
        "approvals",
    );
    let findings = item(
        count(ev.findings.total, "finding", "findings")
            + " recorded by the runtime (for example a repaired torn log tail)",
        "findings",
    );
    let stopped: u64 = ev.statuses.iter().filter(|(s, _)| s.as_str() != "exit").map(|(_, n)| n).sum();
    let stops = item(
        format!(
            "{} stopped by a limit, a refusal or a failure (see the task-end statuses)",
            count(stopped, "run", "runs")
        ),
        "counts",
    );
    let reads = item(
        format!(
            "{calls} recorded before they took effect, reads included ({} reads); each names the user, the tool, the time, the capability, the target, the decision and the rule",
            ev.reads
        ),
        "counts",
    );
    let (who, who_limit) = identity(ev);
    let (cp, cp_limit) = checkpoint_item(ctx);
    let outside = "Activity outside `sandbox` (people, other tools, other hosts) is not in this log.".to_owned();
    let manifests_limit = "The manifests' contents are not in the log, only their SHA-256: keep the manifests, and review changes to them with `sandbox policy diff`.".to_owned();
    let push_some = |v: &mut Vec<String>, s: &Option<String>| {
        if let Some(s) = s {
            v.push(s.clone());
        }
    };
    let mut out = Vec::new();
    match framework {
        Framework::Soc2 => {
            let mut l = vec![manifests_limit.clone()];
            push_some(&mut l, &who_limit);
            out.push(Control {
                framework,
                id: "CC6.1",
                title: "Logical access security",
                asks: "What bounds the agent's access? A call outside its grant is denied, with the identity in the record.",
                evidence: vec![decided.clone(), denied.clone(), policies.clone(), who.clone()],
                limits: l,
            });
            out.push(Control {
                framework,
                id: "CC6.3",
                title: "Authorisation of access and changes",
                asks: "Was each privileged action authorised by a named human before it ran?",
                evidence: vec![
                    approvals.clone(),
                    item(
                        format!(
                            "{} named the reviewer(s); {} through the approval service, which authenticates each reviewer by token; {} rejected with nobody deciding (no approver for the run, or no answer in time)",
                            count(ev.named_approvals, "decision", "decisions"),
                            ev.service_approvals,
                            ev.unattended_rejections
                        ),
                        "approvals",
                    ),
                    preapproved.clone(),
                ],
                limits: vec![
                    "Who approved the pre-approval lists, and when, is in the manifests' change history (`sandbox policy diff`), not in this log.".to_owned(),
                    "A terminal (tty) approval records whoever answered at the runner's terminal; only the approval service authenticates reviewers.".to_owned(),
                ],
            });
            out.push(Control {
                framework,
                id: "CC7.2",
                title: "Monitoring for anomalies",
                asks: "Would you notice an agent doing something unexpected?",
                evidence: vec![denied.clone(), findings.clone(), stops.clone(), item("calls over time and decisions by tool, charted", "charts")],
                limits: vec![
                    "Whether anyone looked at these events when they happened: forward them to a SIEM (`[audit] sinks`, `sandbox audit export`) and keep its alert records.".to_owned(),
                    "No anomaly detection runs on this log; the report counts what was recorded.".to_owned(),
                ],
            });
            out.push(Control {
                framework,
                id: "CC8.1",
                title: "Change management",
                asks: "Who approved this change to that file, and when?",
                evidence: vec![changes.clone(), preapproved.clone(), policies.clone()],
                limits: vec![
                    "The log holds the SHA-256 of each change's content and of each approved effect, not the content or the diff itself.".to_owned(),
                    outside.clone(),
                ],
            });
        }
        Framework::Hipaa => {
            let mut l = Vec::new();
            push_some(&mut l, &who_limit);
            l.push("Emergency access, automatic logoff and encryption (164.312(a)(2)(ii)-(iv)) are outside what this log records.".to_owned());
            out.push(Control {
                framework,
                id: "164.312(a)(1)",
                title: "Access control",
                asks: "Is access to systems holding ePHI limited to the people and software granted it?",
                evidence: vec![decided.clone(), denied.clone(), who.clone(), policies.clone()],
                limits: l,
            });
            let mut l = vec![
                outside.clone(),
                "Six years of retention (164.316(b)(2)) depends on where this log and its copies are kept: the log records the setting, not the storage.".to_owned(),
            ];
            push_some(&mut l, &cp_limit);
            let mut e = vec![reads.clone(), chain(ctx)];
            e.extend(cp.clone());
            e.push(retention(ev));
            out.push(Control {
                framework,
                id: "164.312(b)",
                title: "Audit controls",
                asks: "Is activity in systems holding ePHI recorded, and can it be examined?",
                evidence: e,
                limits: l,
            });
            let mut e = vec![changes.clone(), chain(ctx)];
            e.extend(cp.clone());
            out.push(Control {
                framework,
                id: "164.312(c)(1)",
                title: "Integrity",
                asks: "Is ePHI protected from improper alteration or destruction?",
                evidence: e,
                limits: vec![
                    "The log records hashes of the data written, not the data: whether a file was altered outside `sandbox` cannot be seen here.".to_owned(),
                ],
            });
            let mut l = Vec::new();
            push_some(&mut l, &who_limit);
            l.push("Reviewers of terminal (tty) approvals are not authenticated by `sandbox`.".to_owned());
            out.push(Control {
                framework,
                id: "164.312(d)",
                title: "Person or entity authentication",
                asks: "Is the person or entity seeking access the one claimed?",
                evidence: vec![
                    who.clone(),
                    item(
                        format!(
                            "{} came through the approval service, which authenticates each reviewer by token",
                            count(ev.service_approvals, "approval decision", "approval decisions")
                        ),
                        "approvals",
                    ),
                    plain("each event names the tool and the SHA-256 of its component, so the software acting is identified exactly"),
                ],
                limits: l,
            });
        }
        Framework::Pci => {
            let mut l = Vec::new();
            push_some(&mut l, &who_limit);
            l.push("Whether one ID is shared by several people cannot be seen from the log.".to_owned());
            out.push(Control {
                framework,
                id: "8.2",
                title: "User identification",
                asks: "Does every user have a unique ID before accessing system components?",
                evidence: vec![
                    who.clone(),
                    plain("each event also names the tool (agent) and its component's SHA-256"),
                ],
                limits: l,
            });
            out.push(Control {
                framework,
                id: "10.2",
                title: "Audit logs capture individual access",
                asks: "Is every access recorded, with who, what, when and whether it succeeded (10.2.1, 10.2.2)?",
                evidence: vec![reads.clone(), denied.clone(), approvals.clone()],
                limits: vec![
                    "Which files hold cardholder data: the log names paths, not how they are classified.".to_owned(),
                    outside.clone(),
                ],
            });
            let mut e = vec![chain(ctx)];
            e.extend(cp.clone());
            e.push(item("the log's files with their SHA-256 are listed, so this report can be matched to the files it was made from", "files"));
            e.push(plain(
                "tools have no way to the log: a built-in rule (`builtin:audit-log`) refuses any write to it",
            ));
            let mut l = Vec::new();
            push_some(&mut l, &cp_limit);
            l.push("Keep copies off the host where the writer cannot reach them (10.3.3): a SIEM sink, exports, and the checkpoints.".to_owned());
            out.push(Control {
                framework,
                id: "10.3",
                title: "Audit logs are protected",
                asks: "Can the agent, or anyone, alter or destroy the log unnoticed?",
                evidence: e,
                limits: l,
            });
        }
    }
    out
}
