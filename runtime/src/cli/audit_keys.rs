//! `sandbox audit keygen` and `sandbox audit verify` (the chain, and with a
//! public key the signed checkpoints too).

use crate::exit::{Code, Failure};
use sandbox_audit::checkpoint::{self, CheckpointProblem, CheckpointVerifyError, PublicKey};
use sandbox_audit::{LogVerifyError, VerifyReport};
use std::path::{Path, PathBuf};

/// `sandbox audit keygen --out K`: writes `K` and `K.pub`.
pub fn keygen(out: &Path) -> Result<i32, Failure> {
    let key = checkpoint::keygen(out).map_err(|e| Failure::usage(e.to_string()))?;
    let public = checkpoint::public_key_path(out);
    super::emit(&format!(
        "wrote {} (private key, mode 0600) and {} (public key); key id {}\n\
         sign checkpoints with it: [audit] signing_key = \"{}\" in the manifest\n\
         verify with: sandbox audit verify LOG --public-key {}\n",
        out.display(),
        public.display(),
        key.id(),
        out.display(),
        public.display()
    ));
    Ok(0)
}

/// `sandbox audit verify FILE [--checkpoints CP] [--public-key KEY]`.
pub fn verify(file: &Path, checkpoints: Option<PathBuf>, public_key: Option<PathBuf>) -> Result<i32, Failure> {
    let Some(key_path) = public_key else {
        let report = sandbox_audit::verify_log(file, |_, _| {}).map_err(|e| log_failure(file, e))?;
        let mut out = chain_lines(&report);
        out.push_str("note: a hash chain cannot show events cut from the end; ");
        out.push_str("verify with --public-key against the log's signed checkpoints, or compare the head with a copy kept elsewhere\n");
        super::emit(&out);
        return Ok(0);
    };
    // The private key given by mistake (its `.pub` beside it says so):
    // whether its bytes happen to be a curve point or not, say what it is.
    let beside = checkpoint::public_key_path(&key_path);
    if let Some(id) = checkpoint::seed_key_id(&key_path)
        && PublicKey::load(&beside).is_ok_and(|p| p.id() == id)
    {
        return Err(Failure::usage(private_given(&key_path)));
    }
    let key = PublicKey::load(&key_path).map_err(|e| Failure::usage(e.to_string()))?;
    let cp = checkpoints.unwrap_or_else(|| sandbox_policy::AuditSettings::default().checkpoints_for(file));
    let report = match checkpoint::verify_checkpoints(file, &cp, &key) {
        Ok(r) => r,
        Err(CheckpointVerifyError::Log(e)) => return Err(log_failure(file, e)),
        Err(e @ CheckpointVerifyError::Read { .. }) => return Err(Failure::usage(e.to_string())),
        Err(e @ CheckpointVerifyError::Prune { .. }) => {
            return Err(Failure::new(
                Code::Negative,
                format!("audit log `{}` is not proven by its checkpoints: {e}", file.display()),
            ));
        }
        Err(e @ CheckpointVerifyError::Empty { .. }) => {
            return Err(Failure::new(Code::Negative, format!("audit log `{}`: {e}", file.display())));
        }
        Err(CheckpointVerifyError::Bad { path, problem }) => {
            let mut msg =
                format!("audit log `{}` fails its checkpoints in `{}`: {problem}", file.display(), path.display());
            if let CheckpointProblem::OtherKey { found, .. } = &problem
                && checkpoint::seed_key_id(&key_path).as_deref() == Some(found.as_str())
            {
                msg.push_str(&format!(" ({})", private_given(&key_path)));
            }
            return Err(Failure::new(Code::Negative, msg));
        }
    };
    let mut out = chain_lines(&report.chain);
    let latest = &report.latest;
    out.push_str(&format!(
        "checkpoints: {} verified with key {} (`{}`); the latest covers {} events, signed at {}\n",
        report.checkpoints,
        report.key,
        cp.display(),
        latest.size,
        latest.ts
    ));
    if report.uncovered == 0 {
        out.push_str("covered: every event is covered by the latest checkpoint\n");
    } else {
        out.push_str(&format!(
            "not yet covered: {} event(s) after the latest checkpoint (a run still going, or one that ended without its checkpoint)\n",
            report.uncovered
        ));
    }
    if report.pruned > 0 {
        out.push_str(&format!(
            "note: {} checkpoint(s) end in events pruned away (the log now starts at seq {}): their signatures and the log's identity verified, their heads where the prune record keeps those hashes\n",
            report.pruned, report.chain.first_seq
        ));
    }
    if let Some(line) = report.torn_line {
        out.push_str(&format!(
            "note: the last line of `{}` (line {line}) is incomplete (a crash while it was written?) and was ignored; every complete line verified\n",
            cp.display()
        ));
    }
    super::emit(&out);
    Ok(0)
}

/// What to say when `--public-key` names the private key.
fn private_given(key_path: &Path) -> String {
    format!(
        "`{}` is the private signing key; give its public key, `{}`",
        key_path.display(),
        checkpoint::public_key_path(key_path).display()
    )
}

/// The lines plain `verify` prints for an intact chain.
fn chain_lines(r: &VerifyReport) -> String {
    let mut out = format!("ok: {} events, {} tasks, head {}\n", r.events, r.tasks, r.head);
    if r.first_seq > 0 {
        out.push_str(&format!("pruned: the log starts at seq {} (earlier segments were pruned)\n", r.first_seq));
    }
    if let (Some(a), Some(b)) = (&r.first_ts, &r.last_ts) {
        out.push_str(&format!("period: {a} .. {b}\n"));
    }
    out
}

/// A log that could not be read (exit 2) or whose chain is broken (exit 1).
fn log_failure(file: &Path, e: LogVerifyError) -> Failure {
    match e {
        LogVerifyError::Read(e) => Failure::usage(e.to_string()),
        LogVerifyError::Broken { file: bad, error } => {
            let place = if bad == file { String::new() } else { format!("in `{}`: ", bad.display()) };
            Failure::new(Code::Negative, format!("audit log `{}` is not intact: {place}{error}", file.display()))
        }
    }
}
