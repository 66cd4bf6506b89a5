//! Where requests and votes are kept: the [`Store`] trait, an SQLite
//! implementation ([`SqliteStore`], the default, one file) and an in-memory
//! one ([`MemoryStore`], for tests).
//!
//! The trait is synchronous; the service calls it off its async threads
//! (`spawn_blocking`). Its state-changing operations are conditional, so
//! that two reviewers voting at once, or a vote racing the expiry sweep,
//! cannot both win: [`Store::add_vote`] adds a vote only to a pending,
//! unexpired request the reviewer has not voted on, and
//! [`Store::set_state`] moves a request only out of `pending`.
//!
//! # A PostgreSQL implementation
//!
//! would need: the same two tables (`requests` with the submission as
//! `jsonb` or columns, `votes` with `UNIQUE (request_id, reviewer)`), each
//! conditional operation as one statement or a transaction
//! (`INSERT ... SELECT ... WHERE state = 'pending' AND expires_ms > $now`,
//! `UPDATE ... WHERE state = 'pending'`), a connection pool (the blocking
//! `postgres` crate with `r2d2`, or an async driver behind an async variant
//! of this trait), and, when several service instances share one database,
//! `LISTEN`/`NOTIFY` on state changes so that a runner waiting on one
//! instance learns of a vote cast on another (the service's own wake-up
//! signal is per process). Times are integer milliseconds since the Unix
//! epoch everywhere, so no time zone handling is involved.

mod memory;
mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use crate::protocol::{RequestView, State, Submission, Vote, VoteView};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Request id.
    pub id: String,
    /// The runner that submitted it.
    pub runner: String,
    /// Where it stands.
    pub state: State,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Expiry time (`created + timeout_ms`), milliseconds since the epoch.
    pub expires_ms: i64,
    /// Decision time, once decided or expired.
    pub decided_ms: Option<i64>,
    /// What the runner submitted.
    pub submission: Submission,
    /// Votes, in the order they were cast.
    pub votes: Vec<VoteRecord>,
}

/// One vote as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteRecord {
    /// Reviewer name.
    pub by: String,
    /// Approve or reject.
    pub decision: Vote,
    /// Milliseconds since the epoch.
    pub at_ms: i64,
    /// The reviewer's comment.
    pub comment: String,
    /// The request's `effect_sha256` the vote was cast on.
    pub effect_sha256: String,
}

impl Record {
    /// The request as the API shows it.
    pub fn view(&self) -> RequestView {
        let s = &self.submission;
        RequestView {
            id: self.id.clone(),
            state: self.state,
            task: s.task.clone(),
            user: s.user.clone(),
            agent: s.agent.clone(),
            capability: s.capability.clone(),
            target: s.target.clone(),
            dest: s.dest.clone(),
            intent: s.intent.clone(),
            preview: s.preview.clone(),
            content_sha256: s.content_sha256.clone(),
            effect_sha256: s.effect_sha256.clone(),
            size: s.size,
            rule: s.rule.clone(),
            require: s.require.clone(),
            created: rfc3339(self.created_ms),
            expires: rfc3339(self.expires_ms),
            votes: self
                .votes
                .iter()
                .map(|v| VoteView {
                    by: v.by.clone(),
                    decision: v.decision,
                    at: rfc3339(v.at_ms),
                    comment: v.comment.clone(),
                    effect_sha256: v.effect_sha256.clone(),
                })
                .collect(),
            decided: self.decided_ms.map(rfc3339),
        }
    }
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let t = match u64::try_from(ms) {
        Ok(ms) => UNIX_EPOCH + Duration::from_millis(ms),
        Err(_) => UNIX_EPOCH,
    };
    humantime::format_rfc3339_millis(t).to_string()
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What [`Store::add_vote`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteAdded {
    /// The vote is recorded.
    Added,
    /// No request has this id.
    NotFound,
    /// The request is decided or expired (or past its expiry time).
    NotPending,
    /// This reviewer already voted on it.
    AlreadyVoted,
}

/// A storage failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or set up.
    #[error("database `{path}`: {reason}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A query failed.
    #[error("database error: {0}")]
    Backend(String),
    /// A stored row could not be read back.
    #[error("database: stored request `{id}` is unreadable: {reason}")]
    Corrupt {
        /// The request.
        id: String,
        /// Why.
        reason: String,
    },
    /// A request with this id exists already.
    #[error("a request with id `{0}` exists already")]
    Duplicate(String),
}

/// Requests and their votes, kept across restarts.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Adds a new request (its votes are ignored; its state should be
    /// `pending`).
    fn insert(&self, record: &Record) -> Result<(), StoreError>;

    /// The request with this id, with its votes.
    fn get(&self, id: &str) -> Result<Option<Record>, StoreError>;

    /// Requests in `state` (all when `None`), newest first, at most
    /// `limit` of them after skipping the first `offset`.
    fn list(&self, state: Option<State>, limit: Option<usize>, offset: usize) -> Result<Vec<Record>, StoreError>;

    /// How many requests are in `state` (all when `None`), submitted by
    /// `runner` (any when `None`).
    fn count(&self, state: Option<State>, runner: Option<&str>) -> Result<usize, StoreError>;

    /// Records a vote if the request is pending, not past its expiry at
    /// `vote.at_ms`, and this reviewer has not voted on it yet.
    fn add_vote(&self, id: &str, vote: &VoteRecord) -> Result<VoteAdded, StoreError>;

    /// Moves a pending request to `to` (decided at `at_ms`). Returns
    /// whether it moved: `false` when it was no longer pending.
    fn set_state(&self, id: &str, to: State, at_ms: i64) -> Result<bool, StoreError>;

    /// Pending requests whose expiry is at or before `now_ms`: their ids
    /// and expiry times, soonest first.
    fn due_expiries(&self, now_ms: i64) -> Result<Vec<(String, i64)>, StoreError>;
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::protocol::Require;

    pub fn record(id: &str, created_ms: i64, timeout_ms: i64) -> Record {
        Record {
            id: id.into(),
            runner: "ci".into(),
            state: State::Pending,
            created_ms,
            expires_ms: created_ms + timeout_ms,
            decided_ms: None,
            submission: Submission {
                task: "t1".into(),
                user: "dave".into(),
                agent: "replace".into(),
                intent: Some("fix \u{1b}[31m typo".into()),
                capability: "fs.write".into(),
                target: "src/a.rs".into(),
                dest: None,
                rule: "fs.write[0] src/**".into(),
                require: Require::Min(2),
                preview: Some("--- a\n+++ b\n".into()),
                content_sha256: Some(format!("sha256:{}", "1".repeat(64))),
                effect_sha256: format!("sha256:{}", "2".repeat(64)),
                size: Some(12),
                timeout_ms: u64::try_from(timeout_ms).unwrap(),
            },
            votes: vec![],
        }
    }

    fn vote(by: &str, at_ms: i64) -> VoteRecord {
        VoteRecord {
            by: by.into(),
            decision: Vote::Approve,
            at_ms,
            comment: format!("ok from {by}"),
            effect_sha256: format!("sha256:{}", "2".repeat(64)),
        }
    }

    /// The behaviour every store must have.
    pub fn exercise(store: &dyn Store) {
        store.insert(&record("r1", 1_000, 10_000)).unwrap();
        store.insert(&record("r2", 2_000, 1_000)).unwrap();
        store.insert(&record("r3", 3_000, 10_000)).unwrap();
        assert!(matches!(store.insert(&record("r1", 1_000, 10_000)), Err(StoreError::Duplicate(_))));

        let r1 = store.get("r1").unwrap().unwrap();
        assert_eq!(r1, record("r1", 1_000, 10_000));
        assert_eq!(store.get("nope").unwrap(), None);

        let ids = |s: Option<State>, l: Option<usize>| -> Vec<String> {
            store.list(s, l, 0).unwrap().into_iter().map(|r| r.id).collect()
        };
        assert_eq!(ids(None, None), ["r3", "r2", "r1"]);
        assert_eq!(ids(None, Some(2)), ["r3", "r2"]);
        assert_eq!(ids(Some(State::Pending), None), ["r3", "r2", "r1"]);
        assert!(ids(Some(State::Approved), None).is_empty());
        let page = |l: usize, o: usize| -> Vec<String> {
            store.list(None, Some(l), o).unwrap().into_iter().map(|r| r.id).collect()
        };
        assert_eq!(page(2, 1), ["r2", "r1"]);
        assert_eq!(page(2, 2), ["r1"]);
        assert!(page(2, 3).is_empty());
        assert_eq!(store.count(None, None).unwrap(), 3);
        assert_eq!(store.count(Some(State::Pending), Some("ci")).unwrap(), 3);
        assert_eq!(store.count(Some(State::Pending), Some("other")).unwrap(), 0);
        assert_eq!(store.count(Some(State::Approved), None).unwrap(), 0);

        // Votes: one per reviewer, only while pending and unexpired.
        assert_eq!(store.add_vote("r1", &vote("alice", 1_500)).unwrap(), VoteAdded::Added);
        assert_eq!(store.add_vote("r1", &vote("alice", 1_600)).unwrap(), VoteAdded::AlreadyVoted);
        assert_eq!(store.add_vote("r1", &vote("bob", 1_700)).unwrap(), VoteAdded::Added);
        assert_eq!(store.add_vote("nope", &vote("bob", 1_700)).unwrap(), VoteAdded::NotFound);
        assert_eq!(store.add_vote("r2", &vote("bob", 3_000)).unwrap(), VoteAdded::NotPending);
        let r1 = store.get("r1").unwrap().unwrap();
        assert_eq!(r1.votes, vec![vote("alice", 1_500), vote("bob", 1_700)]);

        // State changes only out of pending.
        assert!(store.set_state("r1", State::Approved, 1_800).unwrap());
        assert!(!store.set_state("r1", State::Rejected, 1_900).unwrap());
        assert!(!store.set_state("nope", State::Rejected, 1_900).unwrap());
        let r1 = store.get("r1").unwrap().unwrap();
        assert_eq!((r1.state, r1.decided_ms), (State::Approved, Some(1_800)));
        assert_eq!(store.add_vote("r1", &vote("carol", 1_850)).unwrap(), VoteAdded::NotPending);
        assert_eq!(ids(Some(State::Approved), None), ["r1"]);
        assert_eq!(ids(Some(State::Pending), None), ["r3", "r2"]);

        // Expiry: r2 expires at 3000, r3 at 13000; r1 is decided.
        assert_eq!(store.due_expiries(2_999).unwrap(), []);
        assert_eq!(store.due_expiries(3_000).unwrap(), [("r2".to_owned(), 3_000)]);
        assert_eq!(store.due_expiries(20_000).unwrap(), [("r2".to_owned(), 3_000), ("r3".to_owned(), 13_000)]);
        assert!(store.set_state("r2", State::Expired, 3_000).unwrap());
        assert_eq!(store.due_expiries(5_000).unwrap(), []);
        assert_eq!(ids(Some(State::Expired), None), ["r2"]);
        assert_eq!(store.get("r2").unwrap().unwrap().view().decided.as_deref(), Some("1970-01-01T00:00:03.000Z"));
    }

    #[test]
    fn memory_store() {
        exercise(&MemoryStore::default());
    }

    #[test]
    fn views() {
        let mut r = record("r1", 1_000, 10_000);
        r.votes.push(vote("alice", 1_500));
        let v = r.view();
        assert_eq!(v.created, "1970-01-01T00:00:01.000Z");
        assert_eq!(v.expires, "1970-01-01T00:00:11.000Z");
        assert_eq!(v.votes[0].at, "1970-01-01T00:00:01.500Z");
        assert_eq!(v.votes[0].effect_sha256, r.submission.effect_sha256);
        assert_eq!(v.decided, None);
    }
}
