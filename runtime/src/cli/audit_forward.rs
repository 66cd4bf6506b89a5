//! `sandbox audit forward FILE --manifest M`: deliver to the manifest's
//! sinks what they have not been sent, then exit (for cron jobs and after
//! an outage).

use crate::exit::{Code, Failure};
use crate::forward::{Outcome, catch_up_ambient, describe_unfinished};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// The audit log (JSON Lines); its rotated segments are read too.
    pub file: PathBuf,
    /// The manifest whose `[[audit.sink]]`s get the events (and whose
    /// `[audit] checkpoints` names the checkpoint file).
    #[arg(long, value_name = "M")]
    pub manifest: PathBuf,
    /// Only this sink (repeatable); default: every sink of the manifest.
    #[arg(long = "sink", value_name = "NAME")]
    pub sinks: Vec<String>,
    /// Give a sink up after this long without progress (30s, 5m).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub wait: String,
    /// Delete the cursors of the --sink sinks first, so they get the log
    /// again from its first event (after a cursor mismatch was looked
    /// into). Needs --sink.
    #[arg(long, requires = "sinks")]
    pub reset: bool,
}

/// Runs `audit forward`: exit 0 when every sink is caught up; 1 when a
/// sink's cursor does not match the log (a finding: nothing is resent
/// until the cursor is reset); 2 for invalid usage or a sink that refuses
/// (bad token, bad URL); 75 when a sink stayed unreachable or busy.
pub fn forward(args: ForwardArgs) -> Result<i32, Failure> {
    let policy = sandbox_policy::load(&args.manifest).map_err(|e| Failure::usage(e.to_string()))?;
    let patience = humantime::parse_duration(&args.wait)
        .ok()
        .filter(|d| !d.is_zero() && *d <= Duration::from_secs(24 * 3600))
        .ok_or_else(|| {
            Failure::usage(format!(
                "--wait `{}` is not a duration between 1s and 24h (30s, 5m)",
                args.wait.escape_debug()
            ))
        })?;
    if policy.audit.sinks.is_empty() {
        return Err(Failure::usage(format!("`{}` declares no [[audit.sink]]", args.manifest.display())));
    }
    for name in &args.sinks {
        if !policy.audit.sinks.iter().any(|s| &s.name == name) {
            return Err(Failure::usage(format!(
                "`{}` declares no sink named `{}`",
                args.manifest.display(),
                name.escape_debug()
            )));
        }
    }
    match std::fs::symlink_metadata(&args.file) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(Failure::usage(format!("`{}` is not a regular file", args.file.display()))),
        Err(e) => {
            return Err(Failure::usage(format!(
                "cannot read `{}`: {}",
                args.file.display(),
                sandbox_audit::read::io_reason(&e)
            )));
        }
    }
    let sinks: Vec<_> =
        policy.audit.sinks.iter().filter(|s| args.sinks.is_empty() || args.sinks.contains(&s.name)).cloned().collect();
    let checkpoints = policy.audit.checkpoints_for(&args.file);
    let results = catch_up_ambient(&args.file, &checkpoints, &sinks, patience, args.reset);
    let mut code = 0;
    let mut out = String::new();
    for r in &results {
        match &r.outcome {
            Outcome::CaughtUp { events, checkpoints, through } => {
                let through = through.map_or("no events yet".to_owned(), |s| format!("through seq {s}"));
                out.push_str(&format!(
                    "sink `{}` ({}): caught up {through}; sent {events} event(s), {checkpoints} checkpoint line(s)\n",
                    r.name, r.target
                ));
            }
            other => {
                let line = describe_unfinished(&r.name, &r.target, other).unwrap_or_default();
                eprintln!("sandbox: {line}");
                let this = match other {
                    Outcome::Failed(e) if e.class == sandbox_sinks::ErrorClass::Mismatch => Code::Negative,
                    Outcome::Failed(_) => Code::Usage,
                    _ => Code::Unavailable,
                } as i32;
                // The most serious one wins: a mismatch, then a refusal.
                code = match (code, this) {
                    (0, c) => c,
                    (c, t) => c.min(t),
                };
            }
        }
    }
    super::emit(&out);
    Ok(code)
}
