//! `sandbox audit ...`: `show` here, `verify` and `keygen` in `audit_keys.rs`, `export` in `audit_export.rs`,
//! `prune` in `audit_prune.rs`, `report` in `audit_report.rs`.

use crate::approver::inert;
use crate::exit::Failure;
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain of a log: exit 0 when intact, 1 naming the
    /// first bad `seq` otherwise. With --public-key, also verify the log
    /// against its signed checkpoints: a log cut short, rewritten or from
    /// another key fails (exit 1) naming the first bad checkpoint.
    Verify {
        /// The audit log (JSON Lines).
        file: PathBuf,
        /// The checkpoint file; default: FILE.checkpoints. Needs --public-key.
        #[arg(long, value_name = "CP", requires = "public_key")]
        checkpoints: Option<PathBuf>,
        /// The public key the checkpoints must be signed with (KEY.pub from
        /// `sandbox audit keygen`).
        #[arg(long, value_name = "KEY.pub")]
        public_key: Option<PathBuf>,
    },
    /// Make an Ed25519 key pair for signing checkpoints: the private key at
    /// FILE (mode 0600) and the public key at FILE.pub. Neither may exist.
    Keygen {
        /// Where the private key goes.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write the events of a log (and its rotated segments) to stdout as
    /// jsonl (the lines as stored), csv, ocsf or cef, filtered, streamed.
    /// Exit 0; 1 when the log does not verify (the export is still whole);
    /// 2 when a line is not an event (the export stops there).
    Export {
        /// The audit log (JSON Lines).
        file: PathBuf,
        /// jsonl, csv, ocsf or cef.
        #[arg(long, value_name = "FORMAT")]
        format: String,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Make a compliance report of a log for an auditor: HTML (one
    /// self-contained file) or Markdown, with the period, the files and
    /// their SHA-256, the verification result, counts, every approval,
    /// refused call and finding, charts, and what the log shows for each
    /// SOC 2, HIPAA and PCI DSS control. Exit 0; 1 when the log (or its
    /// checkpoints) does not verify (the report is still written, and says
    /// so); 2 for bad usage or unreadable files.
    Report(super::audit_report::ReportArgs),
    /// Delete the rotated segments of a log whose events are all older
    /// than DATE, never the live file, and record the prune in the chain
    /// and in FILE.pruned, so the log still verifies. Refused (exit 2) when
    /// DATE is within the retention period the log records (its latest
    /// task-start `retention`, else --retention); exit 1 when the log does
    /// not verify; 126 when it cannot be written. A log with signed
    /// checkpoints needs --signing-key: only events a signed checkpoint
    /// shows are older than the retention are removed, and the prune
    /// record is signed, so `verify --public-key` can tell it from a forgery.
    Prune {
        /// The audit log (JSON Lines).
        file: PathBuf,
        /// Delete only segments whose every event is older than this: a
        /// date (2026-11-23, midnight UTC) or an RFC 3339 time.
        #[arg(long, value_name = "DATE")]
        before: String,
        /// The retention period (6y, 90d) when the log records none; it
        /// cannot shorten one the log records.
        #[arg(long, value_name = "PERIOD")]
        retention: Option<String>,
        /// The log's checkpoint key ([audit] signing_key).
        #[arg(long, value_name = "KEY")]
        signing_key: Option<PathBuf>,
        /// The checkpoint file; default: FILE.checkpoints. Needs --signing-key.
        #[arg(long, value_name = "CP", requires = "signing_key")]
        checkpoints: Option<PathBuf>,
    },
    /// Deliver to the manifest's [[audit.sink]]s every event (and
    /// checkpoint line) they have not been sent, from each sink's cursor
    /// file beside the log, then exit: 0 when all are caught up; 1 when a
    /// sink's cursor does not match the log (nothing is resent until the
    /// cursor is reset with --reset); 2 for a sink that refuses (bad token);
    /// 75 when a sink stays unreachable for --wait.
    Forward(super::audit_forward::ForwardArgs),
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
            AuditCommand::Verify { file, checkpoints, public_key } => {
                super::audit_keys::verify(&file, checkpoints, public_key)
            }
            AuditCommand::Keygen { out } => super::audit_keys::keygen(&out),
            AuditCommand::Forward(args) => super::audit_forward::forward(args),
            AuditCommand::Prune { file, before, retention, signing_key, checkpoints } => {
                super::audit_prune::prune(&file, &before, retention.as_deref(), signing_key.as_deref(), checkpoints)
            }
            AuditCommand::Export { file, format, filter } => super::audit_export::export(&file, &format, &filter),
            AuditCommand::Report(args) => super::audit_report::report(args),
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
