//! Capability manifests for `sandbox`: strict parsing, compiled decisions.
//!
//! A manifest is parsed once ([`manifest::load`]), compiled into matchers
//! ([`Policy`]) and then only consulted: [`fs::FsPolicy::decide`] answers
//! allow, ask or deny with the rule that decided. This crate does no I/O
//! beyond reading the manifest file and knows nothing of wasmtime, so it
//! can be tested and fuzzed on its own.
//!
//! Deny by default: a manifest that grants nothing lets a tool do nothing.

pub mod fs;
pub mod http;
pub mod manifest;
pub mod path;
pub mod process;

use std::path::PathBuf;
use std::time::Duration;

pub use fs::{Decision, FsOp, FsPolicy, Verdict};
pub use http::{HttpPolicy, HttpTarget};
pub use manifest::{ManifestError, load, parse};
pub use path::{PathError, RelPath};
pub use process::{ProcessPolicy, ProcessRule};

/// How long a human has to answer an approval request when the manifest
/// does not say.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(60);

/// A compiled manifest.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `name`, or the manifest's file stem.
    pub name: String,
    /// `description`, shown to reviewers.
    pub description: Option<String>,
    /// `sha256:<hex>` of the manifest file's bytes: the policy hash on
    /// every audit event.
    pub hash: String,
    /// The manifest file as named by the operator.
    pub source: PathBuf,
    /// `[workspace] root`, relative to the manifest's directory; default:
    /// that directory.
    pub workspace_root: PathBuf,
    /// `[fs]` grants.
    pub fs: FsPolicy,
    /// `[http]` rules; none: every request is denied.
    pub http: HttpPolicy,
    /// `[[process.allow]]` rules; none: every command is denied.
    pub process: ProcessPolicy,
    /// `[approval] via`; `None` means: `tty` when the run has a controlling
    /// terminal, else `deny`.
    pub approval_via: Option<ApprovalVia>,
    /// `[approval] timeout`; default 60 s. No answer in time is a rejection.
    pub approval_timeout: Duration,
    /// `[limits]`.
    pub limits: Limits,
    /// `[audit] path`, relative to the manifest's directory; default
    /// `audit.jsonl` beside the manifest.
    pub audit_path: PathBuf,
}

/// Run limits. Defaults: 256 MiB memory, 60 s wall-clock time, 100,000
/// host calls, 16 MiB output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Total linear memory of the component, in bytes. Exceeding it stops
    /// the run.
    pub memory: u64,
    /// Wall-clock time for the whole run, approval waits excluded.
    /// Exceeding it stops the run.
    pub time: Duration,
    /// `sandbox:host` calls per run (`fs`, `http`, `process`). Beyond it,
    /// every call fails with `limit-exceeded`.
    pub calls: u64,
    /// The largest read returned to the tool, and the most the tool may
    /// write to each of its stdout and stderr.
    pub output: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { memory: 256 << 20, time: Duration::from_secs(60), calls: 100_000, output: 16 << 20 }
    }
}

/// Who answers approval requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalVia {
    /// Nobody: every request is rejected.
    Deny,
    /// The human at the controlling terminal.
    Tty,
}

impl ApprovalVia {
    /// Parses `deny` or `tty`.
    pub fn parse(s: &str) -> Result<ApprovalVia, String> {
        match s {
            "deny" => Ok(ApprovalVia::Deny),
            "tty" => Ok(ApprovalVia::Tty),
            s if s.starts_with("http://") || s.starts_with("https://") => {
                Err(format!("`{s}`: approval services are not supported by this version; use \"deny\" or \"tty\""))
            }
            s => Err(format!("`{s}` is not one of \"deny\", \"tty\"")),
        }
    }

    /// The name written in audit events.
    pub fn name(&self) -> &'static str {
        match self {
            ApprovalVia::Deny => "deny",
            ApprovalVia::Tty => "tty",
        }
    }
}

/// An I/O error as a short lowercase reason, without the `(os error N)`
/// suffix.
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}
