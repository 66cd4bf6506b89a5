//! The audit event: one JSON object per line.

use serde::Serialize;

/// Audit schema version written as `v`.
pub const SCHEMA_VERSION: u32 = 1;

/// Guest-controlled text fields (`target`, `dest`) longer than this are cut
/// at a character boundary and the full value's `sha256:` is written beside
/// them (`target_sha256`, `dest_sha256`).
pub const MAX_TARGET_BYTES: usize = 4096;

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A run begins: identity, manifest and component hashes, limits.
    #[default]
    TaskStart,
    /// A host call, before anything happens: capability, target, decision.
    Call,
    /// A human's (or the deny approver's) answer to an `ask` decision.
    Approval,
    /// What a host call did: outcome, bytes, duration.
    Result,
    /// A run ends: exit status and the reason it stopped.
    TaskEnd,
    /// Something the runtime noticed outside a call (a torn log tail cut
    /// off, a prune).
    Finding,
}

/// The decision on a `call` event, or the answer on an `approval` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// The manifest allows the call.
    Allow,
    /// The manifest refuses the call.
    Deny,
    /// The request was malformed.
    Invalid,
    /// A run limit refused the call.
    Limit,
    /// The manifest allows the call once a human approves it.
    Ask,
    /// A human approved.
    Approved,
    /// A human rejected, or nobody answered in time.
    Rejected,
}

/// Who answered an approval request, and when.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalRecord<'a> {
    /// `deny`, `tty`.
    pub via: &'a str,
    /// The people who decided; empty when nobody did (deny, timeout).
    pub by: Vec<String>,
    /// RFC 3339 time of the answer.
    pub at: String,
    /// The approval service's request id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// The run limits as recorded on `task-start`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LimitsRecord {
    /// Bytes of linear memory.
    pub memory: u64,
    /// Milliseconds of wall-clock time.
    pub time_ms: u64,
    /// Host calls.
    pub calls: u64,
    /// Bytes per read or output stream.
    pub output: u64,
}

/// Who a run acts for beyond `user`, written on each of its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Principal {
    /// True only when `user` is the subject of an identity token the
    /// runtime verified.
    pub user_verified: bool,
    /// The token's claims named by `[identity] claims`.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub claims: std::collections::BTreeMap<String, serde_json::Value>,
    /// `interactive`, `subagent`, `background` or `api`.
    pub tier: String,
    /// Who asked whom: `--on-behalf-of`, in order (user, primary agent,
    /// sub-agent).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delegation: Vec<String>,
    /// `sha256:` of the task manifest that narrowed this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_policy: Option<String>,
}

/// The fields of one event, in the order they are written. `v`, `seq` and
/// `ts` come first and `prev`, `hash` last; they are added by the log.
/// Absent fields are omitted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Event<'a> {
    /// Event kind.
    pub kind: Kind,
    /// Task id.
    pub task: &'a str,
    /// Who the run acts for.
    pub user: &'a str,
    /// The tool's name.
    pub agent: &'a str,
    /// `sha256:` of the component's bytes.
    pub component: &'a str,
    /// `sha256:` of the manifest file's bytes.
    pub policy: &'a str,
    /// Verification, tier, delegation and task scope of `user`: on every
    /// event of a run (absent only on events written outside one).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub principal: Option<&'a Principal>,
    /// `fs.read`, `fs.write`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capability: Option<&'a str>,
    /// The normalised path (or the raw one when it was invalid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'a str>,
    /// Set by the log when `target` was cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_sha256: Option<String>,
    /// Second target: the destination of a rename.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest: Option<&'a str>,
    /// Set by the log when `dest` was cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest_sha256: Option<String>,
    /// Where a symlink led (the path the call was also decided on), or the
    /// addresses a host name resolved to (each one checked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved: Option<&'a str>,
    /// The names (never the values) of the headers a tool sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<&'a [String]>,
    /// The working directory of a command (workspace-relative).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<&'a str>,
    /// The names (never the values) of the variables a tool set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<&'a [String]>,
    /// The tool's last `task.set-intent`, or the run's `--intent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent: Option<&'a str>,
    /// On `call` and `approval` events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The manifest rule, built-in or limit that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'a str>,
    /// A human-readable reason (refusals, stops).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// Bytes a write or append would store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `sha256:` of the bytes a write or append would store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_sha256: Option<&'a str>,
    /// On `approval` events: `sha256:` of the canonical description of the
    /// effect the approval is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect_sha256: Option<&'a str>,
    /// On `approval` events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRecord<'a>>,
    /// On `result` events: `ok` or the error variant (`denied`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'a str>,
    /// Bytes the tool sent with the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    /// Bytes returned to the tool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    /// On `result` events of HTTP requests: the response status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// On `result` events of HTTP requests: the address connected to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<&'a str>,
    /// On `result` events of commands: output was cut at the limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    /// On `result` events of commands: how file access was confined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confinement: Option<&'a str>,
    /// Time the call took, approval waits included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// On `task-start`: the manifest's `name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<&'a str>,
    /// On `task-start`: the workspace root on the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<&'a str>,
    /// On `task-start`: the arguments given to the tool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<&'a [String]>,
    /// On `task-start`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsRecord>,
    /// On `task-start`: who answers approval requests (`deny`, `tty`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approver: Option<&'a str>,
    /// On `task-start`: `[audit] retention` as written (`6y`), which
    /// `sandbox audit prune` honours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<&'a str>,
    /// On `task-end`: `exit`, `time-limit`, `memory-limit`, `trap`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'a str>,
    /// On `task-end`: the exit code of `sandbox run`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// On `task-end`: host calls counted against `limits.calls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<u64>,
    /// Text replaced by `[redacted:TYPE]` in this event's fields, and in
    /// the data returned to the tool on `result` events, counted by type
    /// (`{"card-number": 2}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redactions: Option<&'a std::collections::BTreeMap<String, u64>>,
}
