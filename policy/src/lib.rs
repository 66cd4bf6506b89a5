//! Capability manifests for `sandbox`: strict parsing, compiled decisions.
//!
//! A manifest is parsed once ([`manifest::load`]), compiled into matchers
//! ([`Policy`]) and then only consulted: [`fs::FsPolicy::decide`] answers
//! allow, ask or deny with the rule that decided. This crate does no I/O
//! beyond reading the manifest file and knows nothing of wasmtime, so it
//! can be tested and fuzzed on its own.
//!
//! Deny by default: a manifest that grants nothing lets a tool do nothing.

pub mod caller;
pub mod diff;
pub mod fs;
pub mod http;
pub mod manifest;
pub mod narrow;
pub mod path;
pub mod process;
pub mod program_writes;
pub mod redact;
pub mod secrets;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use caller::{Caller, IdentitySettings, Jwks, Tier, When};
pub use fs::{Decision, FsOp, FsPolicy, Verdict};
pub use http::{HttpPolicy, HttpTarget};
pub use manifest::{ManifestError, load, parse};
pub use path::{PathError, RelPath};
pub use process::{ProcessPolicy, ProcessRule};
pub use redact::RedactSettings;

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
    /// `[approval] require`: whose votes approve; default any one reviewer.
    pub approval_require: Require,
    /// `[approval] writes`: per call (default) or one diff at the end.
    pub approval_writes: Writes,
    /// `[limits]`.
    pub limits: Limits,
    /// `[audit] path`, relative to the manifest's directory; default
    /// `audit.jsonl` beside the manifest.
    pub audit_path: PathBuf,
    /// The rest of `[audit]`: signing, checkpoints, retention, rotation,
    /// sinks.
    pub audit: AuditSettings,
    /// `[identity]`: how identity tokens are verified; `None`: no tokens
    /// are accepted, and `--user` is recorded as unverified.
    pub identity: Option<IdentitySettings>,
    /// `[secrets.NAME]`: where each secret's value comes from.
    pub secrets: std::collections::BTreeMap<String, secrets::SecretSource>,
    /// The secrets' values, read by the runtime when a run starts (empty
    /// until then); `Debug` shows only their names.
    pub secret_values: secrets::SecretValues,
    /// `[redact]`: detectors applied to the audit log, and to data returned
    /// to the tool with `outputs = true` or for `always` paths.
    pub redact: RedactSettings,
}

impl Policy {
    /// The policy for one caller: grants and rules limited by `when` to
    /// other tiers or claims are dropped (fs grants are kept only to name
    /// the rule of a denial). Resolved once per run, before the tool starts.
    pub fn for_caller(&self, caller: &Caller) -> Policy {
        let mut out = self.clone();
        out.fs = self.fs.for_caller(caller);
        out.http = self.http.for_caller(caller);
        out.process = self.process.for_caller(caller);
        out
    }
}

/// `[audit]` besides `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// `signing_key`: the Ed25519 key file (`sandbox audit keygen`) that
    /// signs checkpoints; none: no checkpoints are written.
    pub signing_key: Option<PathBuf>,
    /// `checkpoints`: where checkpoints go; default `<audit path>.checkpoints`
    /// (of the effective path, after `--audit`).
    pub checkpoints: Option<PathBuf>,
    /// `checkpoint_every`: a checkpoint after this many events (and at the
    /// end of every task); default 1000.
    pub checkpoint_every: u64,
    /// `retention`: how long events must be kept; recorded on `task-start`
    /// and in reports, enforced by `sandbox audit prune`.
    pub retention: Option<Retention>,
    /// `rotate`: start a new file once the log reaches this many bytes;
    /// none: never rotate.
    pub rotate: Option<u64>,
    /// `[[audit.sink]]`: where events are also forwarded as they are
    /// written (the file stays the source of truth).
    pub sinks: Vec<Sink>,
}

impl Default for AuditSettings {
    fn default() -> AuditSettings {
        AuditSettings {
            signing_key: None,
            checkpoints: None,
            checkpoint_every: 1000,
            retention: None,
            rotate: None,
            sinks: Vec::new(),
        }
    }
}

impl AuditSettings {
    /// The checkpoint file for the log at `log`.
    pub fn checkpoints_for(&self, log: &Path) -> PathBuf {
        self.checkpoints.clone().unwrap_or_else(|| {
            let mut p = log.as_os_str().to_owned();
            p.push(".checkpoints");
            PathBuf::from(p)
        })
    }
}

/// `[audit] retention`: the period and the text the operator wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// The period.
    pub period: Duration,
    /// As written (`"6y"`), for the log and reports.
    pub text: String,
}

/// One `[[audit.sink]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sink {
    /// `name`, default the type; distinct per manifest (it names the
    /// sink's cursor file).
    pub name: String,
    /// Where it sends.
    pub target: SinkTarget,
}

/// The kinds of sinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTarget {
    /// `type = "syslog"`: RFC 5424 messages over TCP to `address`
    /// (`host:port`), octet-counted (RFC 6587).
    Syslog {
        /// `host:port`.
        address: String,
    },
    /// `type = "splunk-hec"`: Splunk HTTP Event Collector at `url`, with
    /// the token read from the environment variable `token_env`.
    SplunkHec {
        /// The collector endpoint.
        url: url::Url,
        /// The variable holding the HEC token (never the manifest).
        token_env: String,
    },
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
    /// An approval service (`sandbox approvals serve`) at this base URL.
    Service(String),
}

impl ApprovalVia {
    /// Parses `deny`, `tty`, or an `http://` or `https://` service URL.
    pub fn parse(s: &str) -> Result<ApprovalVia, String> {
        match s {
            "deny" => Ok(ApprovalVia::Deny),
            "tty" => Ok(ApprovalVia::Tty),
            s if s.starts_with("http://") || s.starts_with("https://") => {
                let url = url::Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
                if !url.username().is_empty() || url.password().is_some() {
                    // Never echo the credentials back.
                    let host = url.host_str().unwrap_or("");
                    return Err(format!(
                        "the URL for `{host}` holds userinfo (`user@` or `user:password@`); the runner authenticates with SANDBOX_APPROVAL_TOKEN"
                    ));
                }
                if url.query().is_some() || url.fragment().is_some() || url.host().is_none() {
                    return Err(format!("`{s}` must be a base URL (`http://host:port`)"));
                }
                Ok(ApprovalVia::Service(url.as_str().trim_end_matches('/').to_owned()))
            }
            s => Err(format!("`{s}` is not one of \"deny\", \"tty\", or an http(s) URL of an approval service")),
        }
    }

    /// The name written in audit events: `deny`, `tty`, `service`.
    pub fn name(&self) -> &'static str {
        match self {
            ApprovalVia::Deny => "deny",
            ApprovalVia::Tty => "tty",
            ApprovalVia::Service(_) => "service",
        }
    }
}

/// Whose votes approve a request (`[approval] require`). Any one rejection
/// rejects; a reviewer never votes on a task run for themselves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Require {
    /// Any one reviewer (the default).
    #[default]
    Any,
    /// Every reviewer named.
    All(Vec<String>),
    /// At least this many distinct reviewers.
    Min(u32),
    /// At least one reviewer holding this role.
    Role(String),
}

impl std::fmt::Display for Require {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Require::Any => f.write_str("any one reviewer"),
            Require::All(names) => write!(f, "all of {}", names.join(", ")),
            Require::Min(n) => write!(f, "at least {n} reviewers"),
            Require::Role(r) => write!(f, "a reviewer with role {r}"),
        }
    }
}

/// When writes are put to approval (`[approval] writes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Writes {
    /// Each write is approved when it is made (the default).
    #[default]
    PerCall,
    /// Writes are staged; the whole task's changes are approved as one diff
    /// at the end and applied together, or not at all.
    EndOfTask,
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
