//! Compliance reports of an audit log, in HTML or Markdown, for an auditor
//! to attach: the period and filters, the log's files and their SHA-256,
//! the verification result, counts, every approval, refused call and
//! finding, charts, and a section per control saying which evidence in
//! this log supports it and what the log cannot show.
//!
//! [`collect`] reads the log once (streaming; only counts and the listed
//! rows are kept); [`html`] and [`markdown`] render what it found with the
//! [`Context`] the caller determined (verification, checkpoints, filters).
//!
//! All log text is untrusted. In HTML it is escaped by construction (maud)
//! and its hidden characters are shown as marked escapes; the page has no
//! script, loads nothing, and says so in a Content-Security-Policy. In
//! Markdown it is backslash-escaped (see [`text::markdown`]).

mod collect;
pub mod controls;
mod html;
mod md;
pub mod text;
pub mod timeline;

pub use collect::{
    Approval, Counted, Denial, Evidence, FileDigest, Finding, Listed, MAX_KEYS, MAX_TEXT, PolicyUse, Row, Tally,
    collect,
};
pub use html::html;
pub use md::markdown_report as markdown;

use std::path::PathBuf;

/// Buckets in the calls-over-time chart, at most.
pub const TIMELINE_BUCKETS: usize = 48;
/// Tools shown one by one in the decisions-by-tool chart; the rest are
/// shown together.
pub const CHART_TOOLS: usize = 12;

/// A compliance framework.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Framework {
    /// SOC 2 (Trust Services Criteria).
    Soc2,
    /// HIPAA Security Rule, 45 CFR 164.312.
    Hipaa,
    /// PCI DSS v4.0.
    Pci,
}

impl Framework {
    /// Every framework, in report order.
    pub const ALL: [Framework; 3] = [Framework::Soc2, Framework::Hipaa, Framework::Pci];

    /// Its name as shown.
    pub fn name(self) -> &'static str {
        match self {
            Framework::Soc2 => "SOC 2",
            Framework::Hipaa => "HIPAA Security Rule (45 CFR 164.312)",
            Framework::Pci => "PCI DSS v4.0",
        }
    }

    /// `soc2`, `hipaa`, `pci`.
    pub fn slug(self) -> &'static str {
        match self {
            Framework::Soc2 => "soc2",
            Framework::Hipaa => "hipaa",
            Framework::Pci => "pci",
        }
    }
}

/// What verifying the log's hash chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    /// Every hash and link verified.
    Intact {
        /// Events verified.
        events: u64,
        /// Hash of the last event.
        head: String,
    },
    /// The chain breaks.
    Broken {
        /// The file holding the first bad line.
        file: PathBuf,
        /// The first bad `seq`.
        seq: u64,
        /// Its line in that file.
        line: u64,
        /// Why.
        reason: String,
    },
}

/// What verifying the signed checkpoints found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoints {
    /// No checkpoints were given to check.
    NotGiven,
    /// Every checkpoint verified.
    Verified {
        /// The checkpoint file.
        file: PathBuf,
        /// Key id of the public key they verified under.
        key: String,
        /// Checkpoints verified.
        checkpoints: u64,
        /// Events covered by the latest one.
        size: u64,
        /// Its `head`.
        head: String,
        /// Its time.
        ts: String,
        /// Events after it, not covered by any signature.
        uncovered: u64,
        /// An incomplete last line of the checkpoint file that was ignored.
        torn_line: Option<u64>,
    },
    /// They did not verify (or could not be read).
    Failed {
        /// The checkpoint file.
        file: PathBuf,
        /// The first problem.
        reason: String,
    },
}

/// What the report is about, besides the events: determined by the caller.
#[derive(Debug, Clone)]
pub struct Context {
    /// The log as named on the command line.
    pub log: PathBuf,
    /// When the report was made, in milliseconds since the epoch.
    pub generated_ms: u64,
    /// The frameworks covered.
    pub frameworks: Vec<Framework>,
    /// The filters given, as `(flag, value)`, e.g. `("--user", "dana")`.
    pub filters: Vec<(String, String)>,
    /// The chain's verification.
    pub integrity: Integrity,
    /// The checkpoints' verification.
    pub checkpoints: Checkpoints,
    /// Rows listed per table at most.
    pub max_rows: usize,
    /// The version of `sandbox` that made the report.
    pub generator: String,
}

impl Context {
    /// Whether the log verified (and its checkpoints, when given).
    pub fn verified(&self) -> bool {
        matches!(self.integrity, Integrity::Intact { .. }) && !matches!(self.checkpoints, Checkpoints::Failed { .. })
    }
}

/// Sections of a report, `(id, title)`, in order; both renderers use them.
pub const SECTIONS: [(&str, &str); 9] = [
    ("verification", "Verification"),
    ("summary", "Summary"),
    ("charts", "Charts"),
    ("controls", "Controls"),
    ("approvals", "Approvals"),
    ("denials", "Refused calls"),
    ("findings", "Findings"),
    ("counts", "Counts"),
    ("files", "Log files and retention"),
];
