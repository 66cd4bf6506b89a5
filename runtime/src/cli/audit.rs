//! `sandbox audit verify`.

use crate::approver::inert;
use crate::exit::{Code, Failure};
use clap::Subcommand;
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
    /// Print a log as one readable line per event (tool-supplied text is
    /// shown inert). This is a view; `verify` is the integrity check.
    Show {
        /// The audit log (JSON Lines).
        file: PathBuf,
        /// Only the events of this task.
        #[arg(long, value_name = "ID")]
        task: Option<String>,
    },
}

impl AuditCommand {
    pub fn execute(self) -> Result<i32, Failure> {
        match self {
            AuditCommand::Show { file, task } => {
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    Failure::usage(format!("audit log `{}`: {}", file.display(), sandbox_policy::io_reason(&e)))
                })?;
                let mut out = String::new();
                for (n, line) in text.lines().enumerate() {
                    match serde_json::from_str::<Value>(line) {
                        Ok(ev) if task.as_deref().is_none_or(|t| ev["task"] == t) => {
                            out.push_str(&show(&ev));
                            out.push('\n');
                        }
                        Ok(_) => {}
                        Err(_) => out.push_str(&format!("line {}: not an event\n", n + 1)),
                    }
                }
                super::emit(&out);
                Ok(0)
            }
            AuditCommand::Verify { file } => {
                let f = std::fs::File::open(&file).map_err(|e| {
                    Failure::usage(format!("audit log `{}`: {}", file.display(), sandbox_policy::io_reason(&e)))
                })?;
                match sandbox_audit::verify(f) {
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
                    Err(e) => {
                        Err(Failure::new(Code::Negative, format!("audit log `{}` is not intact: {e}", file.display())))
                    }
                }
            }
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
