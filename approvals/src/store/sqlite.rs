//! Requests kept in one SQLite file (through `rusqlite`, SQLite bundled).
//!
//! The schema is created on first open and versioned with
//! `PRAGMA user_version`; a file written by a newer version is refused.
//! The journal is WAL with `synchronous = FULL`: a vote the service
//! answered is on disk.

use super::{Record, Store, StoreError, VoteAdded, VoteRecord};
use crate::protocol::{State, Submission, Vote};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// The schema this version writes.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE requests (
    id          TEXT PRIMARY KEY NOT NULL,
    runner      TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL,
    decided_ms  INTEGER,
    submission  TEXT NOT NULL
);
CREATE INDEX requests_by_state ON requests (state, created_ms);
CREATE TABLE votes (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id     TEXT NOT NULL REFERENCES requests (id),
    reviewer       TEXT NOT NULL,
    decision       TEXT NOT NULL,
    at_ms          INTEGER NOT NULL,
    comment        TEXT NOT NULL,
    effect_sha256  TEXT NOT NULL,
    UNIQUE (request_id, reviewer)
);
";

/// A [`Store`] in an SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed, readable by its owner only: previews
    /// may hold the content of private files) the database at `path` and
    /// sets up its schema.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let fail = |reason: String| StoreError::Open { path: path.display().to_string(), reason };
        // SQLite gives its journal files the permissions of the database.
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(crate::config::io_reason(&e))),
        }
        let conn = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        SqliteStore::setup(conn).map_err(|e| match e {
            StoreError::Backend(reason) => fail(reason),
            other => other,
        })
    }

    /// A database in memory (for tests).
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        SqliteStore::setup(Connection::open_in_memory().map_err(backend)?)
    }

    fn setup(mut conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(backend)?;
        // Reading the version is the first access: it fails on a file that
        // is not a database.
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(backend)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Backend(format!(
                "schema version {version} is newer than this sandbox understands ({SCHEMA_VERSION})"
            )));
        }
        conn.pragma_update(None, "journal_mode", "WAL").map_err(backend)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(backend)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(backend)?;
        if version == 0 {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive).map_err(backend)?;
            // Another process may have created it between the two reads.
            let again: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(backend)?;
            if again == 0 {
                tx.execute_batch(SCHEMA).map_err(backend)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
        }
        Ok(SqliteStore { conn: Mutex::new(conn) })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Backend("the database connection is poisoned".into()))
    }
}

/// The columns [`row`] reads, in order.
const COLUMNS: &str = "id, runner, state, created_ms, expires_ms, decided_ms, submission";

struct Row {
    id: String,
    runner: String,
    state: String,
    created_ms: i64,
    expires_ms: i64,
    decided_ms: Option<i64>,
    submission: String,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        id: r.get(0)?,
        runner: r.get(1)?,
        state: r.get(2)?,
        created_ms: r.get(3)?,
        expires_ms: r.get(4)?,
        decided_ms: r.get(5)?,
        submission: r.get(6)?,
    })
}

fn vote_str(v: Vote) -> &'static str {
    match v {
        Vote::Approve => "approve",
        Vote::Reject => "reject",
    }
}

fn record(conn: &Connection, row: Row) -> Result<Record, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { id: row.id.clone(), reason };
    let state = State::parse(&row.state).ok_or_else(|| corrupt(format!("unknown state `{}`", row.state)))?;
    let submission: Submission = serde_json::from_str(&row.submission).map_err(|e| corrupt(e.to_string()))?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT reviewer, decision, at_ms, comment, effect_sha256 FROM votes WHERE request_id = ?1 ORDER BY seq",
        )
        .map_err(backend)?;
    let raw = stmt
        .query_map([&row.id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    let mut votes = Vec::with_capacity(raw.len());
    for (by, decision, at_ms, comment, effect_sha256) in raw {
        let decision = match decision.as_str() {
            "approve" => Vote::Approve,
            "reject" => Vote::Reject,
            other => return Err(corrupt(format!("unknown decision `{other}`"))),
        };
        votes.push(VoteRecord { by, decision, at_ms, comment, effect_sha256 });
    }
    Ok(Record {
        id: row.id,
        runner: row.runner,
        state,
        created_ms: row.created_ms,
        expires_ms: row.expires_ms,
        decided_ms: row.decided_ms,
        submission,
        votes,
    })
}

impl Store for SqliteStore {
    fn insert(&self, r: &Record) -> Result<(), StoreError> {
        let submission = serde_json::to_string(&r.submission).map_err(|e| StoreError::Backend(e.to_string()))?;
        let conn = self.lock()?;
        let result = conn.execute(
            "INSERT INTO requests (id, runner, state, created_ms, expires_ms, decided_ms, submission) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![r.id, r.runner, r.state.as_str(), r.created_ms, r.expires_ms, r.decided_ms, submission],
        );
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(StoreError::Duplicate(r.id.clone()))
            }
            Err(e) => Err(backend(e)),
        }
    }

    fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let conn = self.lock()?;
        let found = conn
            .query_row(&format!("SELECT {COLUMNS} FROM requests WHERE id = ?1"), [id], row)
            .optional()
            .map_err(backend)?;
        found.map(|r| record(&conn, r)).transpose()
    }

    fn list(&self, state: Option<State>, limit: Option<usize>, offset: usize) -> Result<Vec<Record>, StoreError> {
        let conn = self.lock()?;
        let limit = limit.and_then(|l| i64::try_from(l).ok()).unwrap_or(-1);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let rows = match state {
            Some(s) => {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM requests WHERE state = ?1 \
                         ORDER BY created_ms DESC, rowid DESC LIMIT ?2 OFFSET ?3"
                    ))
                    .map_err(backend)?;
                stmt.query_map(params![s.as_str(), limit, offset], row).map_err(backend)?.collect::<Result<Vec<_>, _>>()
            }
            None => {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM requests ORDER BY created_ms DESC, rowid DESC LIMIT ?1 OFFSET ?2"
                    ))
                    .map_err(backend)?;
                stmt.query_map(params![limit, offset], row).map_err(backend)?.collect::<Result<Vec<_>, _>>()
            }
        }
        .map_err(backend)?;
        rows.into_iter().map(|r| record(&conn, r)).collect()
    }

    fn count(&self, state: Option<State>, runner: Option<&str>) -> Result<usize, StoreError> {
        let conn = self.lock()?;
        let n: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM requests WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR runner = ?2)",
                params![state.map(State::as_str), runner],
                |r| r.get(0),
            )
            .map_err(backend)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn add_vote(&self, id: &str, vote: &VoteRecord) -> Result<VoteAdded, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
        let found: Option<(String, i64)> = tx
            .query_row("SELECT state, expires_ms FROM requests WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(backend)?;
        let Some((state, expires_ms)) = found else {
            return Ok(VoteAdded::NotFound);
        };
        if state != State::Pending.as_str() || vote.at_ms >= expires_ms {
            return Ok(VoteAdded::NotPending);
        }
        let voted: Option<i64> = tx
            .query_row("SELECT 1 FROM votes WHERE request_id = ?1 AND reviewer = ?2", [id, &vote.by], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        if voted.is_some() {
            return Ok(VoteAdded::AlreadyVoted);
        }
        tx.execute(
            "INSERT INTO votes (request_id, reviewer, decision, at_ms, comment, effect_sha256) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, vote.by, vote_str(vote.decision), vote.at_ms, vote.comment, vote.effect_sha256],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(VoteAdded::Added)
    }

    fn set_state(&self, id: &str, to: State, at_ms: i64) -> Result<bool, StoreError> {
        let conn = self.lock()?;
        let n = conn
            .execute(
                "UPDATE requests SET state = ?2, decided_ms = ?3 WHERE id = ?1 AND state = 'pending'",
                params![id, to.as_str(), at_ms],
            )
            .map_err(backend)?;
        Ok(n == 1)
    }

    fn due_expiries(&self, now_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, expires_ms FROM requests WHERE state = 'pending' AND expires_ms <= ?1 ORDER BY expires_ms",
            )
            .map_err(backend)?;
        stmt.query_map([now_ms], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(backend)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::tests::{exercise, record as sample};

    #[test]
    fn in_memory() {
        exercise(&SqliteStore::open_in_memory().unwrap());
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite");
        {
            let store = SqliteStore::open(&path).unwrap();
            exercise(&store);
        }
        let store = SqliteStore::open(&path).unwrap();
        let r1 = store.get("r1").unwrap().unwrap();
        assert_eq!(r1.state, State::Approved);
        assert_eq!(r1.votes.len(), 2);
        assert_eq!(r1.submission, sample("r1", 1_000, 10_000).submission);
        assert_eq!(store.list(None, None, 0).unwrap().len(), 3);
    }

    #[test]
    fn refuses_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-db");
        std::fs::write(&path, b"this is not a database, just text that is long enough to be a header").unwrap();
        let e = SqliteStore::open(&path).unwrap_err();
        assert!(e.to_string().contains("not a database"), "{e}");

        let path = dir.path().join("newer.sqlite");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 7).unwrap();
        let e = SqliteStore::open(&path).unwrap_err();
        assert!(e.to_string().contains("schema version 7"), "{e}");

        let e = SqliteStore::open(&dir.path().join("missing/dir/x.sqlite")).unwrap_err();
        assert!(matches!(e, StoreError::Open { .. }), "{e}");
        assert!(e.to_string().contains("no such file or directory"), "{e}");
    }

    #[test]
    fn new_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite");
        let store = SqliteStore::open(&path).unwrap();
        exercise(&store);
        // While it is open, the write-ahead log exists too.
        for name in ["a.sqlite", "a.sqlite-wal"] {
            let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{name}: {mode:o}");
        }
    }
}
