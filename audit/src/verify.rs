//! Offline verification of a log: recompute every hash and the chain.
//!
//! [`Chain`] checks one line at a time and remembers where the chain
//! stands, so that callers can verify a log spread over several files, or
//! look at each event's `seq` and hash as it goes (checkpoints);
//! [`verify`] runs it over one reader.

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

/// One verified event, as [`Chain::check`] returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// Its `seq`.
    pub seq: u64,
    /// Its `hash`.
    pub hash: [u8; 32],
}

/// Where a verification stands: the `seq` the next event must have and
/// the hash its `prev` must name.
#[derive(Debug, Clone)]
pub struct Chain {
    prev: [u8; 32],
    expected: u64,
    start: u64,
    tasks: BTreeSet<String>,
    first_ts: Option<String>,
    last_ts: Option<String>,
}

impl Default for Chain {
    fn default() -> Chain {
        Chain::new()
    }
}

impl Chain {
    /// A chain that starts at the first event of a log (`seq` 0, `prev`
    /// all zeros).
    pub fn new() -> Chain {
        Chain::starting_at(0, GENESIS)
    }

    /// A chain that starts at `seq` with `prev` (the events before were
    /// pruned, or are checked elsewhere).
    pub fn starting_at(seq: u64, prev: [u8; 32]) -> Chain {
        Chain { prev, expected: seq, start: seq, tasks: BTreeSet::new(), first_ts: None, last_ts: None }
    }

    /// The `seq` the next event must have.
    pub fn next_seq(&self) -> u64 {
        self.expected
    }

    /// The hash of the last event checked (or the starting `prev`).
    pub fn head(&self) -> [u8; 32] {
        self.prev
    }

    /// Checks one line (without its newline) found at `line_no` (1-based,
    /// for the error) and moves the chain on.
    pub fn check(&mut self, line: &[u8], line_no: u64) -> Result<Checked, VerifyError> {
        let fail = |reason: String| VerifyError { seq: self.expected, line: line_no, reason };
        let fields: Fields = serde_json::from_slice(line).map_err(|e| fail(format!("not an audit event: {e}")))?;
        if fields.v != 1 {
            return Err(fail(format!("unknown schema version {}", fields.v)));
        }
        if fields.seq != self.expected {
            let reason = if fields.seq > self.expected {
                format!("missing: the line holds seq {} (events removed or reordered?)", fields.seq)
            } else {
                format!("out of order: the line holds seq {} (events inserted or reordered?)", fields.seq)
            };
            return Err(fail(reason));
        }
        let prefix = without_hash(line).ok_or_else(|| fail("the line does not end with its `hash` member".into()))?;
        let claimed = parse_hash(&fields.hash).ok_or_else(|| fail(format!("malformed hash `{}`", fields.hash)))?;
        if hash_line(prefix) != claimed {
            return Err(fail("the event's content does not match its hash (edited?)".into()));
        }
        if parse_hash(&fields.prev) != Some(self.prev) {
            return Err(fail(format!(
                "`prev` is {} but the previous event's hash is {} (events removed, inserted or reordered?)",
                fields.prev,
                format_hash(&self.prev)
            )));
        }
        if !prefix.ends_with(format!(",\"prev\":\"{}\"", fields.prev).as_bytes()) {
            return Err(fail("`prev` is not the last member before `hash`".into()));
        }
        if fields.kind.is_empty() {
            return Err(fail("empty `kind`".into()));
        }
        self.tasks.insert(fields.task);
        if self.first_ts.is_none() {
            self.first_ts = Some(fields.ts.clone());
        }
        self.last_ts = Some(fields.ts);
        self.prev = claimed;
        self.expected += 1;
        Ok(Checked { seq: fields.seq, hash: claimed })
    }

    /// Checks every line of `input`, calling `each` for each event.
    pub fn check_all(&mut self, input: impl Read, mut each: impl FnMut(Checked, &[u8])) -> Result<(), VerifyError> {
        let mut reader = BufReader::new(input);
        let mut line_no: u64 = 0;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(|e| VerifyError {
                seq: self.expected,
                line: line_no + 1,
                reason: format!("cannot read the log: {e}"),
            })?;
            if n == 0 {
                return Ok(());
            }
            line_no += 1;
            if line.pop() != Some(b'\n') {
                return Err(VerifyError {
                    seq: self.expected,
                    line: line_no,
                    reason: "the last line is incomplete (no newline)".into(),
                });
            }
            let checked = self.check(&line, line_no)?;
            each(checked, &line);
        }
    }

    /// What was verified so far.
    pub fn report(&self) -> VerifyReport {
        VerifyReport {
            events: self.expected - self.start,
            tasks: self.tasks.len(),
            head: format_hash(&self.prev),
            first_ts: self.first_ts.clone(),
            last_ts: self.last_ts.clone(),
        }
    }
}

/// Verifies a whole log read from `input`.
pub fn verify(input: impl Read) -> Result<VerifyReport, VerifyError> {
    let mut chain = Chain::new();
    chain.check_all(input, |_, _| {})?;
    Ok(chain.report())
}

/// Where verifying a log on disk failed: the file, then the place in it.
#[derive(Debug, thiserror::Error)]
pub enum LogVerifyError {
    /// A file of the log could not be listed or opened.
    #[error(transparent)]
    Read(#[from] crate::ReadError),
    /// The chain breaks in `file`.
    #[error("{}: {error}", file.display())]
    Broken {
        /// The file (segment or live file) holding the first bad line.
        file: std::path::PathBuf,
        /// Where and why.
        error: VerifyError,
    },
}

/// Verifies a log on disk: its rotated segments in order and then the live
/// file, as one chain, calling `each` for every event.
pub fn verify_log(log: &std::path::Path, mut each: impl FnMut(Checked, &[u8])) -> Result<VerifyReport, LogVerifyError> {
    let mut chain = Chain::new();
    for file in crate::read::files(log)? {
        let f = std::fs::File::open(&file)
            .map_err(|e| crate::ReadError::Io { path: file.clone(), reason: crate::read::io_reason(&e) })?;
        chain.check_all(f, &mut each).map_err(|error| LogVerifyError::Broken { file: file.clone(), error })?;
    }
    Ok(chain.report())
}
