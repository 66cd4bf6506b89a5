//! One streaming pass over a log's files: their SHA-256, and the
//! aggregates and lists a report shows. Nothing else of the log is kept in
//! memory, so the report of a large log costs its lists (capped) and its
//! counts, not its size.

use super::text::Clipped;
use super::timeline::{Class, Timeline, millis};
use crate::read::{ReadError, io_reason};
use crate::{Filter, format_hash};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Characters of a target, intent or reason kept for a listed row; the
/// rest is counted and said to be left out.
pub const MAX_TEXT: usize = 600;
/// Distinct keys (users, tools, capabilities, manifests, rules) counted
/// one by one; beyond it the rest are counted together as "others", so a
/// hostile log cannot make the report hold unbounded tables.
pub const MAX_KEYS: usize = 5_000;
/// Longest line read as an event; a longer one is counted as unreadable.
const MAX_LINE: u64 = 16 << 20;

/// One file of the log as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// The path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Lines in it.
    pub lines: u64,
    /// SHA-256 of its bytes, `sha256:<hex>`.
    pub sha256: String,
}

/// Counts of calls and their decisions for one user, tool or capability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// `task-start` events.
    pub tasks: u64,
    /// `call` events.
    pub calls: u64,
    /// Calls the manifest allowed.
    pub allow: u64,
    /// Calls that needed approval.
    pub ask: u64,
    /// Calls a rule denied.
    pub deny: u64,
    /// Malformed calls.
    pub invalid: u64,
    /// Calls refused by a run limit.
    pub limit: u64,
    /// Approvals granted.
    pub approved: u64,
    /// Approvals refused (or expired).
    pub rejected: u64,
}

impl Tally {
    /// Calls refused for any reason.
    pub fn refused(&self) -> u64 {
        self.deny + self.invalid + self.limit
    }

    /// `(decision, meaning, count)` for each decision, in report order.
    pub fn by_decision(&self) -> [(&'static str, &'static str, u64); 7] {
        [
            ("allow", "call allowed by the manifest", self.allow),
            ("ask", "call needed a human's approval", self.ask),
            ("deny", "call denied by a rule", self.deny),
            ("invalid", "call was malformed", self.invalid),
            ("limit", "call refused by a run limit", self.limit),
            ("approved", "a human approved", self.approved),
            ("rejected", "rejected, or nobody answered in time", self.rejected),
        ]
    }

    pub(super) fn add(&mut self, o: &Tally) {
        self.tasks += o.tasks;
        self.calls += o.calls;
        self.allow += o.allow;
        self.ask += o.ask;
        self.deny += o.deny;
        self.invalid += o.invalid;
        self.limit += o.limit;
        self.approved += o.approved;
        self.rejected += o.rejected;
    }
}

/// Counts by a key, with at most [`MAX_KEYS`] keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counted<T> {
    /// Per key, in key order.
    pub rows: BTreeMap<String, T>,
    /// Keys beyond the cap, counted together.
    pub others: Option<T>,
    /// How many keys were folded into `others`.
    pub others_keys: u64,
    seen_others: HashSet<String>,
}

impl<T: Default> Counted<T> {
    fn entry(&mut self, key: &str) -> &mut T {
        if !self.rows.contains_key(key) && self.rows.len() >= MAX_KEYS {
            if self.seen_others.len() < MAX_KEYS * 4 && self.seen_others.insert(key.to_owned()) {
                self.others_keys += 1;
            }
            return self.others.get_or_insert_with(T::default);
        }
        self.rows.entry(key.to_owned()).or_default()
    }
}

/// A list the report shows in full up to a cap, and how many more there were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed<T> {
    /// The rows kept (the first ones, in log order).
    pub rows: Vec<T>,
    /// How many there were in all.
    pub total: u64,
}

impl<T> Default for Listed<T> {
    fn default() -> Listed<T> {
        Listed { rows: Vec::new(), total: 0 }
    }
}

impl<T> Listed<T> {
    /// Rows counted but not kept.
    pub fn more(&self) -> u64 {
        self.total - self.rows.len() as u64
    }
}

/// What every listed event says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Row {
    /// `seq`.
    pub seq: Option<u64>,
    /// `ts`.
    pub ts: String,
    /// Task id.
    pub task: String,
    /// Who the run acted for.
    pub user: String,
    /// The tool.
    pub agent: String,
    /// `fs.write`, ...
    pub capability: String,
    /// The path, URL or argv.
    pub target: Clipped,
    /// A rename's destination.
    pub dest: Option<Clipped>,
    /// The rule that decided.
    pub rule: String,
    /// The intent given for the call.
    pub intent: Option<Clipped>,
}

/// An `approval` event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Approval {
    /// The event's common fields.
    pub row: Row,
    /// `approved` or `rejected`.
    pub decision: String,
    /// `tty`, `service`, `deny`.
    pub via: String,
    /// The reviewers who decided; empty when nobody did.
    pub by: Vec<String>,
    /// When they decided.
    pub at: String,
    /// The approval service's request id.
    pub request: Option<String>,
    /// The effect the decision is bound to.
    pub effect_sha256: Option<String>,
    /// The content to be written.
    pub content_sha256: Option<String>,
    /// Why (a rejection's reason).
    pub reason: Option<Clipped>,
}

/// A refused call: its `call` event and the reason from its `result`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Denial {
    /// The call's common fields.
    pub row: Row,
    /// `deny`, `invalid` or `limit`.
    pub decision: String,
    /// The reason the tool was given (from the call's `result`).
    pub reason: Option<Clipped>,
}

/// A `finding` event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Finding {
    /// The event's common fields.
    pub row: Row,
    /// What was found.
    pub reason: Option<Clipped>,
    /// Bytes concerned (a torn tail's size).
    pub size: Option<u64>,
    /// Their SHA-256.
    pub content_sha256: Option<String>,
}

/// A manifest in force: its name(s) and how many runs used it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyUse {
    /// Manifest names recorded with this hash.
    pub names: BTreeSet<String>,
    /// Runs that started under it.
    pub tasks: u64,
    /// Events recorded under it.
    pub events: u64,
}

/// Everything a report shows about the events that pass its filter.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// The log's files in chain order, with their digests.
    pub files: Vec<FileDigest>,
    /// Lines read as events (whether or not they pass the filter).
    pub events: u64,
    /// Lines that are not events (not JSON objects, or too long).
    pub unreadable: u64,
    /// Events passing the filter.
    pub selected: u64,
    /// `ts` of the first and last selected events.
    pub first_ts: Option<String>,
    /// See `first_ts`.
    pub last_ts: Option<String>,
    /// Distinct tasks among the selected events.
    pub tasks: u64,
    /// Selected events by `kind`.
    pub kinds: BTreeMap<String, u64>,
    /// All selected calls and approvals.
    pub total: Tally,
    /// By user.
    pub users: Counted<Tally>,
    /// By tool (agent).
    pub agents: Counted<Tally>,
    /// By capability.
    pub capabilities: Counted<Tally>,
    /// `task-end` events by `status`.
    pub statuses: BTreeMap<String, u64>,
    /// Manifests in force, by `policy` hash.
    pub policies: Counted<PolicyUse>,
    /// `retention` as recorded on `task-start` events, with counts.
    pub retention: BTreeMap<String, u64>,
    /// `task-start` events whose user was verified (`user_verified: true`).
    pub verified_users: u64,
    /// Calls that only read (`fs.read`, `fs.stat`, `fs.list-dir`, HTTP
    /// GET and HEAD).
    pub reads: u64,
    /// Effects (writes, removals, renames, commands, HTTP requests that
    /// change state) allowed without a human by a pre-approving rule, by
    /// rule.
    pub preapproved: Counted<u64>,
    /// Of those, changes to files.
    pub preapproved_changes: u64,
    /// Approvals (granted) of changes to files.
    pub approved_changes: u64,
    /// Rejections of changes to files.
    pub rejected_changes: u64,
    /// Approvals that name at least one reviewer.
    pub named_approvals: u64,
    /// Approvals decided through the approval service.
    pub service_approvals: u64,
    /// Rejections nobody decided (no approver, timeout).
    pub unattended_rejections: u64,
    /// Calls over time.
    pub timeline: Timeline,
    /// Every approval event (capped).
    pub approvals: Listed<Approval>,
    /// Every refused call (capped).
    pub denials: Listed<Denial>,
    /// Every finding (capped).
    pub findings: Listed<Finding>,
}

/// A reader that hashes and counts the bytes that pass through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Reads the log at `log` (its rotated segments, then the live file) once,
/// keeping the counts of every event that passes `filter` and, of those,
/// at most `max_rows` approvals, refused calls and findings each.
pub fn collect(log: &Path, filter: &Filter, max_rows: usize) -> Result<Evidence, ReadError> {
    let mut c = Collector { ev: Evidence::default(), max_rows, tasks: HashSet::new(), waiting: HashMap::new() };
    for path in crate::read::files(log)? {
        let io = |e: std::io::Error| ReadError::Io { path: path.clone(), reason: io_reason(&e) };
        let file = File::open(&path).map_err(io)?;
        let mut reader = BufReader::new(Hashing { inner: file, hasher: Sha256::new(), bytes: 0 });
        let mut lines = 0u64;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = (&mut reader).take(MAX_LINE).read_until(b'\n', &mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            lines += 1;
            if buf.last() == Some(&b'\n') {
                buf.pop();
            } else if n as u64 == MAX_LINE {
                // Too long to be an event: skip to the end of the line.
                c.ev.unreadable += 1;
                loop {
                    buf.clear();
                    let m = (&mut reader).take(MAX_LINE).read_until(b'\n', &mut buf).map_err(io)?;
                    if m == 0 || buf.last() == Some(&b'\n') {
                        break;
                    }
                }
                continue;
            }
            match serde_json::from_slice::<Value>(&buf) {
                Ok(v) if v.is_object() => c.add(&v, filter),
                _ => c.ev.unreadable += 1,
            }
        }
        let h = reader.into_inner();
        c.ev.files.push(FileDigest { path, bytes: h.bytes, lines, sha256: format_hash(&h.hasher.finalize().into()) });
    }
    c.ev.tasks = c.tasks.len() as u64;
    Ok(c.ev)
}

struct Collector {
    ev: Evidence,
    max_rows: usize,
    tasks: HashSet<String>,
    /// Per task, the listed refused call whose `result` (with the reason)
    /// has not been read yet.
    waiting: HashMap<String, usize>,
}

fn text<'a>(ev: &'a Value, key: &str) -> Option<&'a str> {
    ev.get(key).and_then(Value::as_str)
}

fn owned(ev: &Value, key: &str) -> String {
    match ev.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

fn clipped(ev: &Value, key: &str) -> Option<Clipped> {
    text(ev, key).map(|s| Clipped::new(s, MAX_TEXT))
}

/// Whether a call only reads.
fn is_read(capability: &str, target: &str) -> bool {
    matches!(capability, "fs.read" | "fs.stat" | "fs.list-dir" | "fs.list")
        || (capability == "http.send" && (target.starts_with("GET ") || target.starts_with("HEAD ")))
}

/// Whether a call changes files (including end-of-task change sets).
fn is_change(capability: &str) -> bool {
    capability.starts_with("fs.") && !is_read(capability, "")
}

fn row(ev: &Value) -> Row {
    Row {
        seq: ev.get("seq").and_then(Value::as_u64),
        ts: owned(ev, "ts"),
        task: owned(ev, "task"),
        user: owned(ev, "user"),
        agent: owned(ev, "agent"),
        capability: owned(ev, "capability"),
        target: clipped(ev, "target").unwrap_or_default(),
        dest: clipped(ev, "dest"),
        rule: owned(ev, "rule"),
        intent: clipped(ev, "intent"),
    }
}

impl Collector {
    fn add(&mut self, ev: &Value, filter: &Filter) {
        self.ev.events += 1;
        let kind = text(ev, "kind").unwrap_or("");
        let task = text(ev, "task").unwrap_or("");
        // A refused call's reason is on its `result`, which may not pass
        // the filter itself (`--decision deny`): pair before filtering.
        if kind == "result"
            && let Some(&i) = self.waiting.get(task)
        {
            let d = &mut self.ev.denials.rows[i];
            if text(ev, "capability") == Some(d.row.capability.as_str())
                && clipped(ev, "target").unwrap_or_default() == d.row.target
            {
                d.reason = clipped(ev, "reason");
                self.waiting.remove(task);
            }
        }
        if kind == "task-end" {
            self.waiting.remove(task);
        }
        if !filter.matches(ev) {
            return;
        }
        let e = &mut self.ev;
        e.selected += 1;
        *e.kinds.entry(kind.to_owned()).or_default() += 1;
        if let Some(ts) = text(ev, "ts") {
            if e.first_ts.is_none() {
                e.first_ts = Some(ts.to_owned());
            }
            e.last_ts = Some(ts.to_owned());
        }
        if !self.tasks.contains(task) {
            self.tasks.insert(task.to_owned());
        }
        let policy = text(ev, "policy").unwrap_or("");
        e.policies.entry(policy).events += 1;
        let user = text(ev, "user").unwrap_or("");
        let agent = text(ev, "agent").unwrap_or("");
        let capability = text(ev, "capability").unwrap_or("");
        let target = text(ev, "target").unwrap_or("");
        let decision = text(ev, "decision").unwrap_or("");
        let mut tally = Tally::default();
        match kind {
            "task-start" => {
                tally.tasks = 1;
                let p = e.policies.entry(policy);
                p.tasks += 1;
                if let Some(name) = text(ev, "manifest")
                    && p.names.len() < 16
                {
                    p.names.insert(name.to_owned());
                }
                let retention = text(ev, "retention").unwrap_or("");
                *e.retention.entry(retention.to_owned()).or_default() += 1;
                if ev.get("user_verified").and_then(Value::as_bool) == Some(true) {
                    e.verified_users += 1;
                }
            }
            "task-end" => *e.statuses.entry(owned(ev, "status")).or_default() += 1,
            "call" => {
                tally.calls = 1;
                let class = match decision {
                    "allow" => {
                        tally.allow = 1;
                        Class::Allowed
                    }
                    "ask" => {
                        tally.ask = 1;
                        Class::Asked
                    }
                    "invalid" => {
                        tally.invalid = 1;
                        Class::Refused
                    }
                    "limit" => {
                        tally.limit = 1;
                        Class::Refused
                    }
                    _ => {
                        tally.deny = 1;
                        Class::Refused
                    }
                };
                if let Some(ms) = text(ev, "ts").and_then(millis) {
                    e.timeline.add(ms, class);
                }
                if is_read(capability, target) {
                    e.reads += 1;
                } else if decision == "allow" {
                    *e.preapproved.entry(text(ev, "rule").unwrap_or("")) += 1;
                    if is_change(capability) {
                        e.preapproved_changes += 1;
                    }
                }
                if class == Class::Refused {
                    e.denials.total += 1;
                    if e.denials.rows.len() < self.max_rows {
                        e.denials.rows.push(Denial { row: row(ev), decision: decision.to_owned(), reason: None });
                        self.waiting.insert(task.to_owned(), e.denials.rows.len() - 1);
                    }
                }
            }
            "approval" => {
                let approved = decision == "approved";
                if approved {
                    tally.approved = 1;
                } else {
                    tally.rejected = 1;
                }
                let a = &ev["approval"];
                let by: Vec<String> =
                    a["by"].as_array().map(|v| v.iter().map(owned_value).collect()).unwrap_or_default();
                let via = a["via"].as_str().unwrap_or("").to_owned();
                if !by.is_empty() {
                    e.named_approvals += 1;
                } else if !approved {
                    e.unattended_rejections += 1;
                }
                if via == "service" {
                    e.service_approvals += 1;
                }
                if is_change(capability) {
                    if approved {
                        e.approved_changes += 1;
                    } else {
                        e.rejected_changes += 1;
                    }
                }
                e.approvals.total += 1;
                if e.approvals.rows.len() < self.max_rows {
                    e.approvals.rows.push(Approval {
                        row: row(ev),
                        decision: decision.to_owned(),
                        via,
                        by,
                        at: a["at"].as_str().unwrap_or("").to_owned(),
                        request: a["request"].as_str().map(str::to_owned),
                        effect_sha256: text(ev, "effect_sha256").map(str::to_owned),
                        content_sha256: text(ev, "content_sha256").map(str::to_owned),
                        reason: clipped(ev, "reason"),
                    });
                }
            }
            "finding" => {
                e.findings.total += 1;
                if e.findings.rows.len() < self.max_rows {
                    e.findings.rows.push(Finding {
                        row: row(ev),
                        reason: clipped(ev, "reason"),
                        size: ev.get("size").and_then(Value::as_u64),
                        content_sha256: text(ev, "content_sha256").map(str::to_owned),
                    });
                }
            }
            _ => {}
        }
        e.total.add(&tally);
        e.users.entry(user).add(&tally);
        e.agents.entry(agent).add(&tally);
        if !capability.is_empty() && (kind == "call" || kind == "approval") {
            e.capabilities.entry(capability).add(&tally);
        }
    }
}

fn owned_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}
