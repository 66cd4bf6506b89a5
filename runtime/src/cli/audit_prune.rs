//! `sandbox audit prune FILE --before DATE [--retention PERIOD]
//! [--signing-key KEY [--checkpoints CP]]`: deletes whole rotated segments
//! older than DATE, never inside the retention period, and records the
//! prune in the chain (see `sandbox_audit::prune`); with the checkpoint
//! key, only what signed checkpoints prove old enough, and signed.

use crate::exit::{Code, Failure};
use sandbox_audit::prune::PruneSigning;
use sandbox_audit::{LogVerifyError, Origin, PruneError, PruneRequest, Retention};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the prune waits for a writer's lock on the log.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Runs the prune and prints what it did.
pub fn prune(
    file: &Path,
    before: &str,
    retention: Option<&str>,
    signing_key: Option<&Path>,
    checkpoints: Option<PathBuf>,
) -> Result<i32, Failure> {
    let before = sandbox_audit::parse_time(before).map_err(|e| Failure::usage(format!("--before: {e}")))?;
    let retention =
        retention.map(|r| Retention::parse(r).map_err(|e| Failure::usage(format!("--retention: {e}")))).transpose()?;
    let user = crate::run::os_user();
    let origin = Origin {
        task: format!("prune-{}", uuid::Uuid::now_v7()),
        user,
        agent: "sandbox audit prune".into(),
        component: String::new(),
        policy: String::new(),
    };
    let signing = match signing_key {
        Some(k) => Some(PruneSigning {
            key: std::sync::Arc::new(
                sandbox_audit::SigningKey::load(k).map_err(|e| Failure::usage(format!("--signing-key: {e}")))?,
            ),
            checkpoints: checkpoints.unwrap_or_else(|| sandbox_audit::prune::default_checkpoints(file)),
        }),
        None => None,
    };
    let req = PruneRequest { before, retention, origin, lock_wait: LOCK_WAIT, signing };
    let done = sandbox_audit::prune(file, &req).map_err(|e| failure(file, e))?;
    let source = match done.retention_seq {
        Some(seq) => format!("as recorded by the task-start at seq {seq}"),
        None => "as given with --retention".into(),
    };
    let mut out = format!("retention: {} ({source})\n", done.retention.text);
    match (&done.record, done.finding_seq) {
        (Some(r), Some(finding)) => {
            let first = r.segments.first().map_or(r.first_kept, |s| s.first);
            let files: Vec<&str> = r.segments.iter().map(|s| s.file.as_str()).collect();
            out.push_str(&format!(
                "pruned: seq {first}..={} ({} events) in {} segment(s): {}\n",
                r.first_kept - 1,
                r.first_kept - first,
                files.len(),
                files.join(", ")
            ));
            out.push_str(&format!(
                "the log now starts at seq {} (prev {}); recorded in `{}` and by the finding at seq {finding}\n",
                r.first_kept,
                r.prev,
                sandbox_audit::prune::record_path(file).display()
            ));
        }
        _ if done.unproven.is_some() => out.push_str("nothing pruned\n"),
        _ => out.push_str(&format!(
            "nothing pruned: no rotated segment holds only events older than {}\n",
            humantime::format_rfc3339_seconds(before)
        )),
    }
    if let Some(r) = &done.record
        && let (Some(key), Some(proof)) = (&r.key, &r.proof)
    {
        out.push_str(&format!(
            "signed with key {key}; proven by the checkpoint of {} events signed at {}\n",
            proof.size, proof.ts
        ));
    }
    if let Some(why) = &done.unproven {
        out.push_str(&format!("note: {why}\n"));
    }
    super::emit(&out);
    Ok(0)
}

/// Refused (exit 2), a log that does not verify (exit 1), or a log or file
/// that could not be written (exit 126).
fn failure(file: &Path, e: PruneError) -> Failure {
    match e {
        PruneError::Refused(why) => Failure::usage(format!("nothing pruned: {why}")),
        PruneError::NotIntact(LogVerifyError::Read(e)) => Failure::usage(format!("nothing pruned: {e}")),
        PruneError::NotIntact(LogVerifyError::Broken { file: bad, error }) => {
            let place = if bad == file { String::new() } else { format!("in `{}`: ", bad.display()) };
            Failure::new(
                Code::Negative,
                format!("nothing pruned: audit log `{}` is not intact: {place}{error}", file.display()),
            )
        }
        e @ (PruneError::Audit(_) | PruneError::Io { .. }) => Failure::new(Code::Audit, format!("prune failed: {e}")),
    }
}
