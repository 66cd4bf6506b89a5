//! `sandbox audit report`: a compliance report of a log, in HTML or
//! Markdown, for an auditor to attach. The log is verified (its chain, and
//! its signed checkpoints when a public key is given), then read once for
//! the report; see `sandbox_audit::report`.
//!
//! Exit codes: 0 the report was written and the log verified; 1 the report
//! was written but the log (or its checkpoints) did not verify, which the
//! report says at its top; 2 bad usage, or a log, key or checkpoint file
//! that cannot be read (no report is written); 70 the report could not be
//! written.

use super::audit::FilterArgs;
use crate::exit::{Code, Failure};
use clap::{Args, ValueEnum};
use sandbox_audit::checkpoint::{self, CheckpointVerifyError, PublicKey};
use sandbox_audit::report::{self, Checkpoints, Context, Framework, Integrity};
use sandbox_audit::{LogVerifyError, VerifyReport};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The report's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One self-contained HTML file (inline CSS and SVG, no script).
    Html,
    /// Markdown (CommonMark with GitHub tables).
    Md,
}

/// A compliance framework whose controls the report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FrameworkArg {
    /// SOC 2: CC6.1, CC6.3, CC7.2, CC8.1.
    Soc2,
    /// HIPAA Security Rule: 164.312(a)(1), (b), (c)(1), (d).
    Hipaa,
    /// PCI DSS v4.0: 8.2, 10.2, 10.3.
    Pci,
}

impl From<FrameworkArg> for Framework {
    fn from(f: FrameworkArg) -> Framework {
        match f {
            FrameworkArg::Soc2 => Framework::Soc2,
            FrameworkArg::Hipaa => Framework::Hipaa,
            FrameworkArg::Pci => Framework::Pci,
        }
    }
}

/// `sandbox audit report`'s arguments.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The audit log (JSON Lines); its rotated segments are read too.
    pub file: PathBuf,
    /// html or md.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Format,
    /// Cover only this framework's controls (repeatable); default: all three.
    #[arg(long, value_enum, value_name = "FRAMEWORK")]
    pub framework: Vec<FrameworkArg>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Write the report to FILE (atomically: whole or not at all) instead
    /// of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The checkpoint file; default: FILE.checkpoints. Needs --public-key.
    #[arg(long, value_name = "CP", requires = "public_key")]
    pub checkpoints: Option<PathBuf>,
    /// Verify the log against its signed checkpoints under this public key
    /// (KEY.pub from `sandbox audit keygen`), and report how far they cover.
    #[arg(long, value_name = "KEY.pub")]
    pub public_key: Option<PathBuf>,
    /// Rows listed at most in each of the approvals, refused calls and
    /// findings tables; the rest are counted and said to be left out.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_rows: u64,
}

/// `sandbox audit report FILE --format html|md ...`.
pub fn report(args: ReportArgs) -> Result<i32, Failure> {
    let filter = args.filter.filter()?;
    let key = args.public_key.as_deref().map(PublicKey::load).transpose().map_err(|e| Failure::usage(e.to_string()))?;
    let cp_path = args
        .checkpoints
        .clone()
        .unwrap_or_else(|| sandbox_policy::AuditSettings::default().checkpoints_for(&args.file));
    if let Some(out) = &args.out {
        refuse_overwrite(out, &args.file, key.as_ref().map(|_| cp_path.as_path()))?;
    }
    let (integrity, checkpoints) = verify(&args.file, key.as_ref().map(|k| (k, cp_path.as_path())))?;
    let max_rows = usize::try_from(args.max_rows).unwrap_or(usize::MAX);
    let evidence = report::collect(&args.file, &filter, max_rows).map_err(|e| Failure::usage(e.to_string()))?;
    let mut frameworks: Vec<Framework> = args.framework.iter().copied().map(Framework::from).collect();
    if frameworks.is_empty() {
        frameworks = Framework::ALL.to_vec();
    }
    frameworks.sort();
    frameworks.dedup();
    let ctx = Context {
        log: args.file.clone(),
        generated_ms: report::timeline::now_ms(),
        frameworks,
        filters: filters(&args.filter),
        integrity,
        checkpoints,
        max_rows,
        generator: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let text = match args.format {
        Format::Html => report::html(&ctx, &evidence),
        Format::Md => report::markdown(&ctx, &evidence),
    };
    match &args.out {
        Some(out) => write_atomically(out, text.as_bytes())?,
        None => super::emit(&text),
    }
    if ctx.verified() {
        return Ok(0);
    }
    let what = match (&ctx.integrity, &ctx.checkpoints) {
        (Integrity::Broken { seq, .. }, _) => format!("is not intact (the chain breaks at seq {seq})"),
        _ => "fails its signed checkpoints".to_owned(),
    };
    Err(Failure::new(
        Code::Negative,
        format!("audit log `{}` {what}; the report was written and says so at its top", args.file.display()),
    ))
}

/// The filters given, for the report to show.
fn filters(f: &FilterArgs) -> Vec<(String, String)> {
    [
        ("--since", &f.since),
        ("--until", &f.until),
        ("--task", &f.task),
        ("--user", &f.user),
        ("--decision", &f.decision),
        ("--capability", &f.capability),
    ]
    .into_iter()
    .filter_map(|(flag, v)| v.as_ref().map(|v| (flag.to_owned(), v.clone())))
    .collect()
}

/// The chain's verification and, with a key, the checkpoints'. A log that
/// cannot be read (or a checkpoint file that cannot be) is a usage error;
/// a log or checkpoints that fail are reported in the report.
fn verify(log: &Path, with: Option<(&PublicKey, &Path)>) -> Result<(Integrity, Checkpoints), Failure> {
    let intact = |r: VerifyReport| Integrity::Intact { events: r.events, head: r.head };
    let chain = |e: LogVerifyError| match e {
        LogVerifyError::Read(e) => Err(Failure::usage(e.to_string())),
        LogVerifyError::Broken { file, error } => {
            Ok(Integrity::Broken { file, seq: error.seq, line: error.line, reason: error.reason })
        }
    };
    let plain = || sandbox_audit::verify_log(log, |_, _| {}).map(intact).or_else(chain);
    let Some((key, cp)) = with else {
        return Ok((plain()?, Checkpoints::NotGiven));
    };
    let failed = |reason: String| Checkpoints::Failed { file: cp.to_owned(), reason };
    match checkpoint::verify_checkpoints(log, cp, key) {
        Ok(r) => Ok((
            intact(r.chain),
            Checkpoints::Verified {
                file: cp.to_owned(),
                key: r.key,
                checkpoints: r.checkpoints,
                size: r.latest.size,
                head: r.latest.head,
                ts: r.latest.ts,
                uncovered: r.uncovered,
                torn_line: r.torn_line,
            },
        )),
        Err(CheckpointVerifyError::Log(e)) => {
            let integrity = chain(e)?;
            Ok((integrity, failed("not checked: the log's own hash chain does not verify".to_owned())))
        }
        Err(e @ CheckpointVerifyError::Read { .. }) => Err(Failure::usage(e.to_string())),
        Err(e) => Ok((plain()?, failed(e.to_string()))),
    }
}

/// Refuses `--out` naming the log, one of its segments, or the checkpoint
/// file: the report would replace the evidence it describes.
fn refuse_overwrite(out: &Path, log: &Path, cp: Option<&Path>) -> Result<(), Failure> {
    let Ok(target) = std::fs::canonicalize(out) else { return Ok(()) };
    let files = sandbox_audit::read::files(log).map_err(|e| Failure::usage(e.to_string()))?;
    let evidence = files.iter().map(PathBuf::as_path).chain(cp).chain([log]);
    for f in evidence {
        if std::fs::canonicalize(f).is_ok_and(|f| f == target) {
            return Err(Failure::usage(format!(
                "--out `{}` is the audit log or its checkpoints; write the report elsewhere",
                out.display()
            )));
        }
    }
    Ok(())
}

/// Writes `bytes` to `out` through a temporary file in the same directory,
/// synced and renamed over `out`: a reader sees the old file or the whole
/// report, never part of it.
fn write_atomically(out: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let fail = |e: &dyn std::fmt::Display| Failure::new(Code::Internal, format!("--out `{}`: {e}", out.display()));
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if out.is_dir() {
        return Err(Failure::usage(format!("--out `{}` is a directory", out.display())));
    }
    let mut tmp = tempfile::Builder::new().prefix(".sandbox-report-").tempfile_in(dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Failure::usage(format!("--out `{}`: its directory does not exist", out.display()))
        } else {
            fail(&e)
        }
    })?;
    tmp.write_all(bytes).and_then(|()| tmp.as_file().sync_all()).map_err(|e| fail(&e))?;
    tmp.persist(out).map_err(|e| fail(&e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
