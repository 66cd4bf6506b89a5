//! The JSON the service, its runners and its reviewers exchange.
//!
//! Runner side (authenticated with a runner token):
//! - `POST /api/runner/requests` with a [`Submission`] -> `201` [`Submitted`],
//!   or `422` with an [`ApiError`] when its `require` can never be met,
//!   `413` when the body is larger than [`MAX_BODY`], `429` when the runner
//!   already has [`MAX_PENDING_PER_RUNNER`] requests pending.
//! - `GET /api/runner/requests/{id}?wait=SECONDS` -> [`RequestView`] once it
//!   is decided or the wait (at most 30 s) passes; runners ask again until
//!   their own timeout.
//!
//! Reviewer side (authenticated with a reviewer token):
//! - `GET /api/me` -> [`Me`].
//! - `GET /api/requests[?state=pending|approved|rejected|expired][&limit=N][&offset=M]`
//!   -> [`RequestList`], one page (default [`DEFAULT_PAGE`], at most
//!   [`MAX_PAGE`] requests) and the `total`.
//! - `POST /api/requests/{id}/decision` with a [`DecisionBody`] -> [`StateOnly`].
//!
//! Every error body is an [`ApiError`].

use serde::{Deserialize, Serialize};

/// Whose votes approve. Serialised as `{"any": true}`, `{"all": [...]}`,
/// `{"min": N}` or `{"role": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Require {
    /// Any one reviewer.
    Any(bool),
    /// Every reviewer named.
    All(Vec<String>),
    /// At least this many distinct reviewers.
    Min(u32),
    /// At least one reviewer with this role.
    Role(String),
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for votes.
    Pending,
    /// The rule was met.
    Approved,
    /// A reviewer rejected it.
    Rejected,
    /// Nobody decided in time.
    Expired,
}

impl State {
    /// `pending`, `approved`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Rejected => "rejected",
            State::Expired => "expired",
        }
    }

    /// Parses `pending`, `approved`, `rejected`, `expired`.
    pub fn parse(s: &str) -> Option<State> {
        [State::Pending, State::Approved, State::Rejected, State::Expired].into_iter().find(|st| st.as_str() == s)
    }
}

/// A reviewer's vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vote {
    /// Approve.
    Approve,
    /// Reject.
    Reject,
}

/// What a runner submits: exactly the effect waiting for approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// Task id.
    pub task: String,
    /// Who the run acts for; never a reviewer of this request.
    pub user: String,
    /// The tool's name.
    pub agent: String,
    /// The tool's stated reason.
    pub intent: Option<String>,
    /// `fs.write`, `http.send`, `process.run`, `fs.changes`, ...
    pub capability: String,
    /// The normalised target.
    pub target: String,
    /// A second target (rename destination).
    pub dest: Option<String>,
    /// The manifest rule that asks for approval.
    pub rule: String,
    /// Whose votes approve.
    pub require: Require,
    /// Text shown to reviewers (a diff, the argv, the request), at most 64 KiB.
    pub preview: Option<String>,
    /// `sha256:` of the content that will be written or sent.
    pub content_sha256: Option<String>,
    /// `sha256:` of a canonical description of the whole effect: the
    /// approval is bound to it.
    pub effect_sha256: String,
    /// Bytes to be written or sent.
    pub size: Option<u64>,
    /// How long reviewers have, in milliseconds.
    pub timeout_ms: u64,
}

/// The service's answer to a submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// Request id.
    pub id: String,
    /// Always `pending` on success.
    pub state: State,
    /// RFC 3339 time after which the request expires.
    pub expires: String,
}

/// One recorded vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteView {
    /// Reviewer name.
    pub by: String,
    /// Approve or reject.
    pub decision: Vote,
    /// RFC 3339 time of the vote.
    pub at: String,
    /// The reviewer's comment.
    pub comment: String,
    /// The request's `effect_sha256` the vote was cast on.
    pub effect_sha256: String,
}

/// A request as the service shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    /// Request id.
    pub id: String,
    /// Where it stands.
    pub state: State,
    /// Task id.
    pub task: String,
    /// Who the run acts for.
    pub user: String,
    /// The tool's name.
    pub agent: String,
    /// `fs.write`, ...
    pub capability: String,
    /// The normalised target.
    pub target: String,
    /// A second target.
    pub dest: Option<String>,
    /// The tool's stated reason.
    pub intent: Option<String>,
    /// Text for reviewers.
    pub preview: Option<String>,
    /// `sha256:` of the content.
    pub content_sha256: Option<String>,
    /// `sha256:` of the effect the votes are bound to.
    pub effect_sha256: String,
    /// Bytes to be written or sent.
    pub size: Option<u64>,
    /// The manifest rule that asks for approval.
    pub rule: String,
    /// Whose votes approve.
    pub require: Require,
    /// RFC 3339 creation time.
    pub created: String,
    /// RFC 3339 expiry time.
    pub expires: String,
    /// Votes so far.
    pub votes: Vec<VoteView>,
    /// RFC 3339 time of the decision, once decided.
    pub decided: Option<String>,
}

/// The list reviewers get: one page of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestList {
    /// Newest first: at most `limit` (default [`DEFAULT_PAGE`], at most
    /// [`MAX_PAGE`]) after skipping `offset`.
    pub requests: Vec<RequestView>,
    /// How many requests match in all (every page).
    #[serde(default)]
    pub total: u64,
}

/// Requests on one page of `GET /api/requests` when `limit` is not given.
pub const DEFAULT_PAGE: usize = 50;

/// The largest `limit` of `GET /api/requests`.
pub const MAX_PAGE: usize = 200;

/// The most requests one runner may have pending at once; past it a
/// submission gets `429`.
pub const MAX_PENDING_PER_RUNNER: usize = 64;

/// The most waits (`GET /api/runner/requests/{id}?wait=`) one runner may
/// have in progress at once; past it a wait gets `429` (runners try again
/// a moment later).
pub const MAX_WAITS_PER_RUNNER: usize = 64;

/// The largest request body the service reads, in bytes; a larger one gets
/// `413`. A submission with a 64 KiB preview fits with room to spare.
pub const MAX_BODY: usize = 512 * 1024;

/// A reviewer's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Approve or reject.
    pub decision: Vote,
    /// Why (may be empty).
    #[serde(default)]
    pub comment: String,
}

/// The state after a vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateOnly {
    /// Still `pending` while a multi-party rule waits for more votes.
    pub state: State,
}

/// Who a reviewer token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    /// Reviewer name.
    pub name: String,
    /// Roles.
    pub roles: Vec<String>,
}

/// Every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What is wrong, one line.
    pub error: String,
}

/// The longest `preview` the service accepts, in bytes (64 KiB); runners
/// cut longer text visibly before submitting.
pub const MAX_PREVIEW: usize = 64 * 1024;

/// The longest wait (`?wait=`) the service honours, in seconds.
pub const MAX_WAIT_SECS: u64 = 30;
