//! `sandbox audit verify`.

use crate::approver::inert;
use crate::exit::{Code, Failure};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain of a log: exit 0 when intact, 1 naming the
    /// first bad `seq` otherwise.
    Verify {
        /// The audit log (JSON Lines).
        file: PathBuf,
    },
    /// Print a log (and its rotated segments) as one readable line per
    /// event, filtered; tool-supplied text is shown inert. This is a view;
    /// `verify` is the integrity check.
    Show {
        /// The audit log (JSON Lines).
        file: PathBuf,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

impl AuditCommand {
    pub fn execute(self) -> Result<i32, Failure> {
        match self {
            AuditCommand::Show { file, filter } => {
                let filter = filter.filter()?;
                let events = sandbox_audit::events(&file).map_err(|e| Failure::usage(e.to_string()))?;
                let mut out = String::new();
                for ev in events {
                    match ev {
                        Ok(ev) if filter.matches(&ev) => {
                            out.push_str(&show(&ev));
                            out.push('\n');
                        }
                        Ok(_) => {}
                        Err(e @ sandbox_audit::ReadError::Line { .. }) => {
                            out.push_str(&inert(&e.to_string(), false));
                            out.push('\n');
                        }
                        Err(e) => return Err(Failure::usage(e.to_string())),
                    }
                }
                super::emit(&out);
                Ok(0)
            }
            AuditCommand::Verify { file } => match sandbox_audit::verify_log(&file, |_, _| {}) {
                Ok(r) => {
                    let mut out = format!("ok: {} events, {} tasks, head {}\n", r.events, r.tasks, r.head);
                    if let (Some(a), Some(b)) = (r.first_ts, r.last_ts) {
                        out.push_str(&format!("period: {a} .. {b}\n"));
                    }
                    out.push_str("note: a hash chain cannot show events cut from the end; ");
                    out.push_str("compare the head with a copy kept elsewhere\n");
                    super::emit(&out);
                    Ok(0)
                }
                Err(sandbox_audit::LogVerifyError::Read(e)) => Err(Failure::usage(e.to_string())),
                Err(sandbox_audit::LogVerifyError::Broken { file: bad, error }) => {
                    let place = if bad == file { String::new() } else { format!("in `{}`: ", bad.display()) };
                    Err(Failure::new(
                        Code::Negative,
                        format!("audit log `{}` is not intact: {place}{error}", file.display()),
                    ))
                }
            },
        }
    }
}

/// One event as a line: `seq time kind details`.
fn show(ev: &Value) -> String {
    let text = |k: &str| match &ev[k] {
        Value::String(s) => inert(s, false),
        Value::Null => String::new(),
        v => v.to_string(),
    };
    let time = text("ts").get(11..23).unwrap_or("").to_owned();
    let what = {
        let mut t = format!("{} `{}`", text("capability"), text("target"));
        if ev["dest"].is_string() {
            t.push_str(&format!(" -> `{}`", text("dest")));
        }
        if ev["resolved"].is_string() {
            t.push_str(&format!(" (leads to `{}`)", text("resolved")));
        }
        t
    };
    let details = match ev["kind"].as_str().unwrap_or("") {
        "task-start" => {
            let mut t = format!(
                "task {} agent {} user {} manifest {}",
                text("task"),
                text("agent"),
                text("user"),
                text("manifest")
            );
            if ev["intent"].is_string() {
                t.push_str(&format!(" intent \"{}\"", text("intent")));
            }
            t
        }
        "call" => format!("{what}: {} by {}", text("decision"), text("rule")),
        "approval" => {
            let by = ev["approval"]["by"]
                .as_array()
                .map(|a| a.iter().map(|v| inert(v.as_str().unwrap_or(""), false)).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            let via = inert(ev["approval"]["via"].as_str().unwrap_or(""), false);
            format!("{what}: {} via {via} by [{by}]: {}", text("decision"), text("reason"))
        }
        "result" => {
            let mut t = format!("{what}: {}", text("outcome"));
            if ev["reason"].is_string() {
                t.push_str(&format!(" ({})", text("reason")));
            }
            t.push_str(&format!(", {} bytes out, {} us", text("bytes_out"), text("duration_us")));
            t
        }
        "task-end" => format!(
            "status {}, exit code {}, {} calls: {}",
            text("status"),
            text("exit_code"),
            text("calls"),
            text("reason")
        ),
        _ => text("reason"),
    };
    format!("{:>5} {time} {:<10} {details}", text("seq"), text("kind"))
}

/// The filters `audit export` and `audit report` share; every one given
/// must hold.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Events at or after this time: a date (2026-11-23, midnight UTC) or
    /// an RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Events before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only this task's events.
    #[arg(long, value_name = "ID")]
    pub task: Option<String>,
    /// Only events of runs acting for this user.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Only events with this decision (allow, deny, invalid, limit, ask,
    /// approved, rejected).
    #[arg(long, value_name = "DECISION")]
    pub decision: Option<String>,
    /// Only events of this capability (fs.read), or family (fs).
    #[arg(long, value_name = "CAPABILITY")]
    pub capability: Option<String>,
}

impl FilterArgs {
    /// The filter, or a usage error naming the bad value.
    pub fn filter(&self) -> Result<sandbox_audit::Filter, Failure> {
        let time = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(|t| sandbox_audit::parse_time(t).map_err(|e| Failure::usage(format!("--{flag}: {e}"))))
                .transpose()
        };
        const DECISIONS: &[&str] = &["allow", "deny", "invalid", "limit", "ask", "approved", "rejected"];
        if let Some(d) = &self.decision
            && !DECISIONS.contains(&d.as_str())
        {
            return Err(Failure::usage(format!(
                "--decision: `{}` is not a decision; use one of {}",
                inert(d, false),
                DECISIONS.join(", ")
            )));
        }
        let filter = sandbox_audit::Filter {
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            task: self.task.clone(),
            user: self.user.clone(),
            decision: self.decision.clone(),
            capability: self.capability.clone(),
        };
        if let (Some(a), Some(b)) = (filter.since, filter.until)
            && a >= b
        {
            return Err(Failure::usage("--since must be before --until"));
        }
        Ok(filter)
    }
}
