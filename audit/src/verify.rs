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
    /// `seq` of the first event: 0, or where a vouched-for prune left the
    /// log starting.
    pub first_seq: u64,
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
            first_seq: self.start,
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
///
/// Besides every event, this checks that each segment holds events and is
/// named for the `seq` of its first one (so a segment removed from the
/// middle, renamed, or edited at a boundary is reported), and that a log
/// starting after `seq` 0 was pruned: the last record in `<log>.pruned`
/// names that `seq` and its `prev`, and an `audit.prune` finding in the
/// chain vouches for the record (see [`crate::prune`]).
pub fn verify_log(log: &std::path::Path, mut each: impl FnMut(Checked, &[u8])) -> Result<VerifyReport, LogVerifyError> {
    walk(log, |_, checked, line| each(checked, line))
}

/// The file an event was read from, as [`walk`] reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileRef<'a> {
    /// Its position among the log's files.
    pub index: usize,
    pub path: &'a std::path::Path,
    /// A rotated segment (else the live file).
    pub segment: bool,
}

/// [`verify_log`], telling `each` which file every event came from.
pub(crate) fn walk(
    log: &std::path::Path,
    mut each: impl FnMut(FileRef<'_>, Checked, &[u8]),
) -> Result<VerifyReport, LogVerifyError> {
    use crate::ReadError;
    let files = crate::read::files(log)?;
    let broken = |file: &std::path::Path, seq: u64, line: u64, reason: String| LogVerifyError::Broken {
        file: file.to_owned(),
        error: VerifyError { seq, line, reason },
    };
    let record = crate::prune::last_record(log)?;
    let record_file = crate::prune::record_path(log);
    let start = match files.first() {
        Some(first) => first_seq(first).map_err(|reason| ReadError::Io { path: first.clone(), reason })?,
        None => None,
    };
    let (mut chain, vouch) = match (start, &record) {
        (Some(k), Some((r, sha, line))) if k != 0 => match r.start_at(k) {
            Some(prev) => {
                if let Err(why) = r.consistent() {
                    let reason = format!("the prune record the log starts after is not consistent: {why}");
                    return Err(broken(&record_file, k, *line, reason));
                }
                (Chain::starting_at(k, prev), Some((sha.as_str(), *line)))
            }
            None => {
                return Err(broken(
                    &record_file,
                    k,
                    *line,
                    format!(
                        "the log starts at seq {k}, which its last prune record does not name as a place it may start (it kept seq {} on)",
                        r.first_kept
                    ),
                ));
            }
        },
        (Some(k), None) if k != 0 => {
            return Err(broken(
                &files[0],
                0,
                1,
                format!(
                    "missing: the log starts at seq {k}, and no prune record (`{}`) accounts for the events before it",
                    record_file.display()
                ),
            ));
        }
        _ => (Chain::new(), None),
    };
    let mut vouched = false;
    for (index, file) in files.iter().enumerate() {
        let segment = file.as_path() != log;
        let expected = chain.next_seq();
        if segment
            && let Some(named) = segment_seq(file)
            && named != expected
        {
            return Err(broken(
                file,
                expected,
                1,
                format!(
                    "the segment is named for seq {named}, but the chain continues at seq {expected} (a segment removed, renamed or edited at its boundary?)"
                ),
            ));
        }
        let f = std::fs::File::open(file)
            .map_err(|e| ReadError::Io { path: file.clone(), reason: crate::read::io_reason(&e) })?;
        let at = FileRef { index, path: file, segment };
        chain
            .check_all(f, |checked, line| {
                if let Some((sha, _)) = vouch
                    && !vouched
                    && vouches(line, sha)
                {
                    vouched = true;
                }
                each(at, checked, line)
            })
            .map_err(|error| LogVerifyError::Broken { file: file.clone(), error })?;
        if segment && chain.next_seq() == expected {
            return Err(broken(
                file,
                expected,
                1,
                "the segment holds no events (a rotation never leaves one empty)".into(),
            ));
        }
    }
    if let (Some((sha, line)), false) = (vouch, vouched) {
        return Err(broken(
            &record_file,
            chain.report().first_seq,
            line,
            format!(
                "no `{}` finding in the chain vouches for this prune record ({sha}): it was not written by a prune, or edited",
                crate::prune::PRUNE_RULE
            ),
        ));
    }
    Ok(chain.report())
}

/// The `seq` in a segment's name.
fn segment_seq(file: &std::path::Path) -> Option<u64> {
    let name = file.file_name()?.to_str()?;
    let (_, digits) = name.rsplit_once('.')?;
    digits.parse().ok()
}

/// The `seq` of a file's first line, if it has one that says.
pub(crate) fn first_seq(file: &std::path::Path) -> Result<Option<u64>, String> {
    let f = std::fs::File::open(file).map_err(|e| crate::read::io_reason(&e))?;
    let mut line = Vec::new();
    BufReader::new(f.take(256 * 1024)).read_until(b'\n', &mut line).map_err(|e| crate::read::io_reason(&e))?;
    #[derive(serde::Deserialize)]
    struct First {
        seq: u64,
    }
    Ok(serde_json::from_slice::<First>(line.strip_suffix(b"\n").unwrap_or(&line)).ok().map(|f| f.seq))
}

/// Whether a verified line is the `audit.prune` finding whose
/// `content_sha256` is `sha`.
fn vouches(line: &[u8], sha: &str) -> bool {
    let rule = format!("\"rule\":\"{}\"", crate::prune::PRUNE_RULE);
    if !line.windows(rule.len()).any(|w| w == rule.as_bytes()) {
        return false;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else { return false };
    v["kind"] == "finding" && v["rule"] == crate::prune::PRUNE_RULE && v["content_sha256"] == sha
}
