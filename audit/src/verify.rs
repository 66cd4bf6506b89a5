//! Offline verification of a log: recompute every hash and the chain.

use crate::{GENESIS, format_hash, hash_line, parse_hash, without_hash};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};

/// A log that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of events.
    pub events: u64,
    /// Distinct task ids.
    pub tasks: usize,
    /// `hash` of the last event (`sha256:` + 64 zeros for an empty log):
    /// keep it elsewhere to detect a log cut short later.
    pub head: String,
    /// `ts` of the first and last events.
    pub first_ts: Option<String>,
    /// `ts` of the last event.
    pub last_ts: Option<String>,
}

/// The first place a log fails to verify. `seq` is the sequence number the
/// event on that line should have had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("seq {seq} (line {line}): {reason}")]
pub struct VerifyError {
    /// The first bad sequence number.
    pub seq: u64,
    /// 1-based line number in the file.
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

#[derive(serde::Deserialize)]
struct Fields {
    v: u64,
    seq: u64,
    ts: String,
    kind: String,
    task: String,
    prev: String,
    hash: String,
}

/// Verifies a whole log read from `input`.
pub fn verify(input: impl Read) -> Result<VerifyReport, VerifyError> {
    let mut reader = BufReader::new(input);
    let mut prev = GENESIS;
    let mut expected: u64 = 0;
    let mut line_no: u64 = 0;
    let mut tasks = BTreeSet::new();
    let mut first_ts = None;
    let mut last_ts = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        let fail = |line: u64, reason: String| VerifyError { seq: expected, line, reason };
        let n =
            reader.read_until(b'\n', &mut line).map_err(|e| fail(line_no + 1, format!("cannot read the log: {e}")))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if line.last() != Some(&b'\n') {
            return Err(fail(line_no, "the last line is incomplete (no newline)".into()));
        }
        line.pop();
        let fields: Fields =
            serde_json::from_slice(&line).map_err(|e| fail(line_no, format!("not an audit event: {e}")))?;
        if fields.v != 1 {
            return Err(fail(line_no, format!("unknown schema version {}", fields.v)));
        }
        if fields.seq != expected {
            let reason = if fields.seq > expected {
                format!("missing: the line holds seq {} (events removed or reordered?)", fields.seq)
            } else {
                format!("out of order: the line holds seq {} (events inserted or reordered?)", fields.seq)
            };
            return Err(fail(line_no, reason));
        }
        let prefix =
            without_hash(&line).ok_or_else(|| fail(line_no, "the line does not end with its `hash` member".into()))?;
        let claimed =
            parse_hash(&fields.hash).ok_or_else(|| fail(line_no, format!("malformed hash `{}`", fields.hash)))?;
        if hash_line(prefix) != claimed {
            return Err(fail(line_no, "the event's content does not match its hash (edited?)".into()));
        }
        if parse_hash(&fields.prev) != Some(prev) {
            return Err(fail(
                line_no,
                format!(
                    "`prev` is {} but the previous event's hash is {} (events removed, inserted or reordered?)",
                    fields.prev,
                    format_hash(&prev)
                ),
            ));
        }
        if !prefix.ends_with(format!(",\"prev\":\"{}\"", fields.prev).as_bytes()) {
            return Err(fail(line_no, "`prev` is not the last member before `hash`".into()));
        }
        if fields.kind.is_empty() {
            return Err(fail(line_no, "empty `kind`".into()));
        }
        tasks.insert(fields.task);
        if first_ts.is_none() {
            first_ts = Some(fields.ts.clone());
        }
        last_ts = Some(fields.ts);
        prev = claimed;
        expected += 1;
    }
    Ok(VerifyReport { events: expected, tasks: tasks.len(), head: format_hash(&prev), first_ts, last_ts })
}
