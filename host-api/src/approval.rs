//! The approval seam: who says yes to a call the manifest lets through
//! only with a human's approval.
//!
//! The corridor builds an [`ApprovalRequest`] describing exactly the effect
//! that will run (capability, normalised targets, size, the SHA-256 of the
//! content and a preview), asks the run's [`Approver`], records the
//! [`Answer`] as an `approval` audit event, and performs exactly that effect
//! if approved. Nothing the tool does can answer: approvers talk to people
//! over channels the tool has no door to.

use std::time::{Duration, SystemTime};

/// What a reviewer is asked to approve. Every text field that came from the
/// tool (`target`, `dest`, `intent`, `preview`) must be shown as inert text.
#[derive(Debug, Clone)]
pub struct ApprovalRequest<'a> {
    /// Task id.
    pub task: &'a str,
    /// Who the run acts for.
    pub user: &'a str,
    /// The tool's name.
    pub agent: &'a str,
    /// The tool's stated reason, if any.
    pub intent: Option<&'a str>,
    /// `fs.write`, `fs.remove`, ...
    pub capability: &'a str,
    /// The normalised path.
    pub target: &'a str,
    /// The destination of a rename.
    pub dest: Option<&'a str>,
    /// The manifest rule that asks for approval.
    pub rule: &'a str,
    /// Bytes to be written, for writes and appends.
    pub size: Option<u64>,
    /// `sha256:` of the bytes to be written.
    pub content_sha256: Option<&'a str>,
    /// `sha256:` of a canonical description of the whole effect
    /// (capability, targets, content): what an approval is bound to.
    pub effect_sha256: &'a str,
    /// Whose votes approve.
    pub require: &'a sandbox_policy::Require,
    /// A short human-readable view of the change (a diff, the new text).
    pub preview: Option<&'a str>,
    /// How long to wait for an answer; no answer in time is a rejection.
    pub timeout: Duration,
}

/// An approver's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// True only when a person approved this exact request.
    pub approved: bool,
    /// The channel: `deny`, `tty`, ...
    pub via: &'static str,
    /// Who decided; empty when nobody did.
    pub by: Vec<String>,
    /// When the answer came.
    pub at: SystemTime,
    /// Why, in a few words (`approved at the terminal`, `timed out after
    /// 60s`, `no approver configured`).
    pub reason: String,
    /// The approval service's request id, when a service answered.
    pub request: Option<String>,
}

impl Answer {
    /// A rejection that nobody made.
    pub fn refused(via: &'static str, reason: impl Into<String>) -> Answer {
        Answer { approved: false, via, by: Vec::new(), at: SystemTime::now(), reason: reason.into(), request: None }
    }
}

/// Answers approval requests. Implementations block until they have an
/// answer or the request's timeout passes.
pub trait Approver: Send + std::fmt::Debug {
    /// The channel's name, as written in audit events.
    fn via(&self) -> &'static str;
    /// Decides one request.
    fn ask(&mut self, request: &ApprovalRequest<'_>) -> Answer;
}

/// Rejects everything: the default for runs without a terminal.
#[derive(Debug, Default)]
pub struct DenyApprover;

impl Approver for DenyApprover {
    fn via(&self) -> &'static str {
        "deny"
    }

    fn ask(&mut self, _: &ApprovalRequest<'_>) -> Answer {
        Answer::refused("deny", "no approver for this run (approval via `deny`)")
    }
}
