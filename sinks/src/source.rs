//! Reading what a sink has not been sent yet: the events after its cursor
//! (across rotated segments and into the live file), checked as a hash
//! chain, and the new lines of the checkpoint file.
//!
//! Only *committed* events are read: the length of the live file is taken
//! under a shared lock on it, which the writer's exclusive lock per append
//! excludes, so a half-written append (or one the writer is about to cut
//! back after an error) is never seen. What was read is then synced to
//! disk (`fdatasync` on the reader's own descriptor) before it is handed
//! out: a sink never gets an event that a crash could still take from the
//! file.

use crate::cursor::{CheckpointMark, EventMark};
use sandbox_audit::read::{io_reason, segments};
use sandbox_audit::{Chain, GENESIS, format_hash, parse_hash};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the reader waits for a writer's lock on the live file.
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// The longest line read (the writer's own lines stay far below it).
const MAX_LINE: u64 = 1 << 20;

/// Why reading for a sink stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The log or checkpoint file disagrees with the cursor, or is not an
    /// intact chain: nothing more is sent until someone looks.
    #[error("{0}")]
    Mismatch(String),
    /// A file could not be read.
    #[error("{0}")]
    Io(String),
    /// A writer held the log's lock for longer than the bound.
    #[error("{0}")]
    Locked(String),
}

fn io_err(path: &Path, e: &io::Error) -> SourceError {
    SourceError::Io(format!("cannot read `{}`: {}", path.display(), io_reason(e)))
}

/// One event read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Its `seq`.
    pub seq: u64,
    /// Its `hash`.
    pub hash: [u8; 32],
    /// The line, without its newline.
    pub bytes: Vec<u8>,
    /// The `seq` of the first event of the file holding it.
    pub file: u64,
    /// The byte offset of the line in that file.
    pub offset: u64,
}

impl Line {
    /// The cursor mark for this event.
    pub fn mark(&self) -> EventMark {
        EventMark { seq: self.seq, hash: format_hash(&self.hash), file: self.file, offset: self.offset }
    }
}

/// An open file of the log and where reading stands in it.
#[derive(Debug)]
struct Open {
    file: File,
    path: PathBuf,
    /// `seq` of its first event.
    first: u64,
    /// Offset of the next line to read.
    pos: u64,
    /// Opened as the live file (it may be rotated away under us).
    live: bool,
    /// Device and inode, to notice a rotation.
    id: (u64, u64),
    /// Read to its end and no longer written: the next event is in the
    /// next file.
    finished: bool,
}

enum Found {
    /// The file holding the `seq`, positioned at its line.
    At(Open),
    /// The log does not reach that `seq` (yet).
    NotYet,
    /// The log starts after that `seq`, at this one.
    Before(u64),
}

#[derive(serde::Deserialize)]
struct Head {
    seq: u64,
    prev: Option<String>,
}

fn head_of(line: &[u8], path: &Path, offset: u64) -> Result<Head, SourceError> {
    serde_json::from_slice(line).map_err(|e| {
        SourceError::Mismatch(format!("`{}` at byte {offset} is not an audit event ({e})", path.display()))
    })
}

/// Reads complete lines from `file` between `pos` and `limit`, giving each
/// (without its newline) and its offset to `each`, until `each` says stop.
/// Returns the offset after the last line taken. An incomplete last line
/// is left for later.
fn each_line(
    file: &mut File,
    path: &Path,
    pos: u64,
    limit: u64,
    mut each: impl FnMut(&[u8], u64) -> Result<bool, SourceError>,
) -> Result<u64, SourceError> {
    if pos >= limit {
        return Ok(pos);
    }
    file.seek(SeekFrom::Start(pos)).map_err(|e| io_err(path, &e))?;
    let mut reader = BufReader::new(Read::by_ref(file).take(limit - pos));
    let mut at = pos;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n =
            Read::by_ref(&mut reader).take(MAX_LINE + 1).read_until(b'\n', &mut buf).map_err(|e| io_err(path, &e))?;
        if buf.last() != Some(&b'\n') {
            if n as u64 > MAX_LINE {
                return Err(SourceError::Mismatch(format!(
                    "`{}` at byte {at}: a line longer than {MAX_LINE} bytes (not an audit log?)",
                    path.display()
                )));
            }
            return Ok(at);
        }
        if !each(&buf[..n - 1], at)? {
            return Ok(at);
        }
        at += n as u64;
    }
}

/// The complete line at `pos`, if there is one.
fn line_at(file: &mut File, path: &Path, pos: u64) -> Result<Option<Vec<u8>>, SourceError> {
    let limit = file.metadata().map_err(|e| io_err(path, &e))?.len();
    let mut out = None;
    each_line(file, path, pos, limit, |line, _| {
        out = Some(line.to_vec());
        Ok(false)
    })?;
    Ok(out)
}

/// Opens a file of the log at its start; `None` when it does not exist or
/// has no complete line yet.
fn open_at_start(path: &Path, live: bool) -> Result<Option<Open>, SourceError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, &e)),
    };
    let meta = file.metadata().map_err(|e| io_err(path, &e))?;
    let Some(line) = line_at(&mut file, path, 0)? else { return Ok(None) };
    let first = head_of(&line, path, 0)?.seq;
    Ok(Some(Open { file, path: path.to_owned(), first, pos: 0, live, id: (meta.dev(), meta.ino()), finished: false }))
}

/// The events of one log after a cursor.
#[derive(Debug)]
pub struct EventTail {
    log: PathBuf,
    /// Where the chain stands; `None` until the first event is read when
    /// starting without a cursor.
    chain: Option<Chain>,
    open: Option<Open>,
}

impl EventTail {
    /// Positions a reader after `mark` (the last event sent), or before the
    /// log's first event without one. The event at the mark must be in the
    /// log with the hash the mark names.
    pub fn resume(log: &Path, mark: Option<&EventMark>) -> Result<EventTail, SourceError> {
        let mut tail = EventTail { log: log.to_owned(), chain: None, open: None };
        let Some(mark) = mark else { return Ok(tail) };
        let want = parse_hash(&mark.hash)
            .ok_or_else(|| SourceError::Mismatch(format!("the cursor's hash `{}` is malformed", mark.hash)))?;
        match tail.locate(mark.seq, Some((mark.file, mark.offset)))? {
            Found::At(mut open) => {
                let line = line_at(&mut open.file, &open.path, open.pos)?
                    .ok_or_else(|| SourceError::Io(format!("`{}` changed while being read", open.path.display())))?;
                let head = head_of(&line, &open.path, open.pos)?;
                let prev = head.prev.as_deref().and_then(parse_hash).unwrap_or(GENESIS);
                let mut chain = Chain::starting_at(mark.seq, prev);
                let checked = chain.check(&line, 0).map_err(|e| {
                    SourceError::Mismatch(format!(
                        "the log's event seq {} (`{}` at byte {}) does not verify: {}",
                        mark.seq,
                        open.path.display(),
                        open.pos,
                        e.reason
                    ))
                })?;
                if checked.hash != want {
                    return Err(SourceError::Mismatch(format!(
                        "the log holds another event at seq {} than the one sent ({} there, {} sent): the log was replaced or rewritten",
                        mark.seq,
                        format_hash(&checked.hash),
                        mark.hash
                    )));
                }
                open.pos += line.len() as u64 + 1;
                tail.chain = Some(chain);
                tail.open = Some(open);
            }
            Found::NotYet => {
                return Err(SourceError::Mismatch(format!(
                    "seq {} was sent but the log ends before it: the log was replaced or cut short",
                    mark.seq
                )));
            }
            Found::Before(first) if first == mark.seq + 1 => tail.chain = Some(Chain::starting_at(first, want)),
            Found::Before(first) => {
                return Err(SourceError::Mismatch(format!(
                    "the log now starts at seq {first}: the events after seq {} were removed before they were sent",
                    mark.seq
                )));
            }
        }
        Ok(tail)
    }

    /// The `seq` of the next event to read, once known.
    pub fn next_seq(&self) -> Option<u64> {
        self.chain.as_ref().map(Chain::next_seq)
    }

    /// The log's files that hold events, as (first seq, path, live).
    fn files(&self) -> Result<Vec<(u64, PathBuf, bool)>, SourceError> {
        let segs = segments(&self.log).map_err(|e| SourceError::Io(e.to_string()))?;
        let mut out: Vec<(u64, PathBuf, bool)> = segs.into_iter().map(|(s, p)| (s, p, false)).collect();
        if let Some(open) = open_at_start(&self.log, true)? {
            out.push((open.first, self.log.clone(), true));
        }
        Ok(out)
    }

    /// Finds the line of `seq`, trying the `hint` (first seq of its file,
    /// offset) first.
    fn locate(&self, seq: u64, hint: Option<(u64, u64)>) -> Result<Found, SourceError> {
        let files = self.files()?;
        let Some(i) = files.iter().rposition(|(first, ..)| *first <= seq) else {
            return Ok(files.first().map_or(Found::NotYet, |(first, ..)| Found::Before(*first)));
        };
        let (first, path, live) = &files[i];
        let Some(mut open) = open_at_start(path, *live)? else { return Ok(Found::NotYet) };
        if let Some((file, offset)) = hint
            && file == open.first
            && let Some(line) = line_at(&mut open.file, path, offset)?
            && serde_json::from_slice::<Head>(&line).is_ok_and(|h| h.seq == seq)
        {
            open.pos = offset;
            return Ok(Found::At(open));
        }
        let limit = open.file.metadata().map_err(|e| io_err(path, &e))?.len();
        let mut found = None;
        each_line(&mut open.file, path, 0, limit, |line, offset| {
            let at = head_of(line, path, offset)?.seq;
            if at == seq {
                found = Some(offset);
                return Ok(false);
            }
            if at > seq {
                return Err(SourceError::Mismatch(format!(
                    "seq {seq} is missing from the log: `{}` goes from before it to seq {at}",
                    path.display()
                )));
            }
            Ok(true)
        })?;
        match (found, files.get(i + 1)) {
            (Some(offset), _) => {
                open.pos = offset;
                Ok(Found::At(open))
            }
            (None, None) => Ok(Found::NotYet),
            (None, Some((next, ..))) => Err(SourceError::Mismatch(format!(
                "seq {seq} is missing from the log: `{}` (from seq {first}) ends before it and the next file starts at seq {next}",
                path.display()
            ))),
        }
    }

    /// The file that must follow a finished one: the one starting at `seq`.
    fn successor(&self, seq: u64) -> Result<Option<Open>, SourceError> {
        let segment = |seq: u64| -> Result<Option<Open>, SourceError> {
            let segs = segments(&self.log).map_err(|e| SourceError::Io(e.to_string()))?;
            match segs.iter().find(|(s, _)| *s == seq) {
                Some((_, p)) => Ok(open_at_start(p, false)?.filter(|o| o.first == seq)),
                None => Ok(None),
            }
        };
        if let Some(open) = segment(seq)? {
            return Ok(Some(open));
        }
        match open_at_start(&self.log, true)? {
            Some(open) if open.first == seq => Ok(Some(open)),
            Some(open) => {
                // Rotated again between the two looks?
                if let Some(seg) = segment(seq)? {
                    return Ok(Some(seg));
                }
                Err(SourceError::Mismatch(format!(
                    "the log's events end at seq {} but its live file `{}` starts at seq {}: the log was replaced",
                    seq.saturating_sub(1),
                    self.log.display(),
                    open.first
                )))
            }
            None => {
                let segs = segments(&self.log).map_err(|e| SourceError::Io(e.to_string()))?;
                match segs.iter().find(|(s, _)| *s > seq) {
                    Some((s, p)) => Err(SourceError::Mismatch(format!(
                        "seq {seq} is missing from the log: the next file `{}` starts at seq {s}",
                        p.display()
                    ))),
                    None => Ok(None),
                }
            }
        }
    }

    /// The earliest file with events, when starting without a cursor.
    fn earliest(&self) -> Result<Option<Open>, SourceError> {
        let segs = segments(&self.log).map_err(|e| SourceError::Io(e.to_string()))?;
        if let Some((_, p)) = segs.first() {
            return open_at_start(p, false);
        }
        open_at_start(&self.log, true)
    }

    /// How far `open` may be read: its committed length, and whether it is
    /// no longer written (a segment, or a live file rotated away).
    fn committed(&self, open: &Open) -> Result<(u64, bool), SourceError> {
        let len = |f: &File| f.metadata().map(|m| m.len()).map_err(|e| io_err(&open.path, &e));
        if !open.live {
            return Ok((len(&open.file)?, true));
        }
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            match open.file.try_lock_shared() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(SourceError::Locked(format!(
                        "`{}` stayed locked by a writer for {}",
                        open.path.display(),
                        humantime::format_duration(LOCK_WAIT)
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&open.path, &e)),
            }
        }
        let result = len(&open.file).and_then(|n| match std::fs::metadata(&self.log) {
            Ok(m) => Ok((n, (m.dev(), m.ino()) != open.id)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((n, true)),
            Err(e) => Err(io_err(&self.log, &e)),
        });
        let _ = open.file.unlock();
        result
    }

    /// Reads up to `max_lines` events (stopping once `max_bytes` are
    /// reached) that follow the last one read, each checked against the
    /// chain and durable on disk. Empty when the log has nothing new.
    pub fn read(&mut self, max_lines: usize, max_bytes: usize) -> Result<Vec<Line>, SourceError> {
        let mut out: Vec<Line> = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max_lines && bytes < max_bytes {
            if self.open.as_ref().is_none_or(|o| o.finished) {
                let next = match (self.next_seq(), &self.open) {
                    (None, _) => self.earliest()?,
                    (Some(seq), Some(_)) => self.successor(seq)?,
                    (Some(seq), None) => match self.locate(seq, None)? {
                        Found::At(open) => Some(open),
                        Found::NotYet => None,
                        Found::Before(first) => {
                            return Err(SourceError::Mismatch(format!(
                                "the log now starts at seq {first}: the events from seq {seq} were removed before they were sent"
                            )));
                        }
                    },
                };
                match next {
                    Some(open) => self.open = Some(open),
                    None => break,
                }
            }
            let Some(open) = self.open.as_ref() else { break };
            let (limit, done) = self.committed(open)?;
            let Some(open) = self.open.as_mut() else { break };
            if limit < open.pos {
                return Err(SourceError::Mismatch(format!(
                    "`{}` shrank below what was already read: it was replaced or truncated",
                    open.path.display()
                )));
            }
            let (first, path) = (open.first, open.path.clone());
            let chain = &mut self.chain;
            let before = out.len();
            open.pos = each_line(&mut open.file, &path, open.pos, limit, |line, offset| {
                if out.len() >= max_lines || bytes >= max_bytes {
                    return Ok(false);
                }
                if chain.is_none() {
                    // Without a cursor: the chain starts at the first event
                    // there is (seq 0, or the first one kept after pruning).
                    let head = head_of(line, &path, offset)?;
                    let prev = head.prev.as_deref().and_then(parse_hash).unwrap_or(GENESIS);
                    *chain = Some(if head.seq == 0 { Chain::new() } else { Chain::starting_at(head.seq, prev) });
                }
                let Some(chain) = chain.as_mut() else { return Ok(false) };
                let checked = chain.check(line, 0).map_err(|e| {
                    SourceError::Mismatch(format!(
                        "the log is not intact at seq {} (`{}` at byte {offset}): {}; nothing from there on is sent (see `sandbox audit verify`)",
                        e.seq,
                        path.display(),
                        e.reason
                    ))
                })?;
                bytes += line.len();
                out.push(Line { seq: checked.seq, hash: checked.hash, bytes: line.to_vec(), file: first, offset });
                Ok(true)
            })?;
            if out.len() > before {
                open.file.sync_data().map_err(|e| io_err(&path, &e))?;
            }
            if open.pos == limit && done {
                open.finished = true;
                continue;
            }
            break;
        }
        Ok(out)
    }
}

/// One line of the checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointLine {
    /// The line, without its newline.
    pub bytes: Vec<u8>,
    /// Its byte offset.
    pub start: u64,
    /// The offset after its newline.
    pub end: u64,
}

impl CheckpointLine {
    /// The cursor mark for this line.
    pub fn mark(&self) -> CheckpointMark {
        let mut h = Sha256::new();
        h.update(&self.bytes);
        h.update(b"\n");
        CheckpointMark { start: self.start, end: self.end, sha256: format_hash(&h.finalize().into()) }
    }
}

/// The lines of a checkpoint file after a cursor.
#[derive(Debug)]
pub struct CheckpointTail {
    path: PathBuf,
    end: u64,
}

impl CheckpointTail {
    /// Positions a reader after `mark`, whose line must still be in the
    /// file unchanged.
    pub fn resume(path: &Path, mark: Option<&CheckpointMark>) -> Result<CheckpointTail, SourceError> {
        let Some(mark) = mark else { return Ok(CheckpointTail { path: path.to_owned(), end: 0 }) };
        let gone = |why: &str| {
            SourceError::Mismatch(format!(
                "the checkpoint file `{}` {why} than the line at byte {} that was sent: it was replaced or rewritten",
                path.display(),
                mark.start
            ))
        };
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(gone("is gone, no longer")),
            Err(e) => return Err(io_err(path, &e)),
        };
        let line = line_at(&mut file, path, mark.start)?.ok_or_else(|| gone("is shorter"))?;
        let again = CheckpointLine { start: mark.start, end: mark.start + line.len() as u64 + 1, bytes: line };
        if again.mark() != *mark {
            return Err(gone("holds another line"));
        }
        Ok(CheckpointTail { path: path.to_owned(), end: mark.end })
    }

    /// Reads up to `max_lines` new lines, each a JSON object. A checkpoint
    /// whose `size` is more than `events_sent` waits until those events
    /// were sent, so a SIEM never holds a checkpoint ahead of its events.
    pub fn read(&mut self, max_lines: usize, events_sent: u64) -> Result<Vec<CheckpointLine>, SourceError> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.end == 0 => return Ok(Vec::new()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SourceError::Mismatch(format!(
                    "the checkpoint file `{}` is gone, though lines of it were sent",
                    self.path.display()
                )));
            }
            Err(e) => return Err(io_err(&self.path, &e)),
        };
        let limit = file.metadata().map_err(|e| io_err(&self.path, &e))?.len();
        if limit < self.end {
            return Err(SourceError::Mismatch(format!(
                "the checkpoint file `{}` shrank below what was already sent: it was replaced or truncated",
                self.path.display()
            )));
        }
        let mut out = Vec::new();
        let path = self.path.clone();
        self.end = each_line(&mut file, &path, self.end, limit, |line, start| {
            if out.len() >= max_lines {
                return Ok(false);
            }
            let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
                SourceError::Mismatch(format!(
                    "the checkpoint file `{}` at byte {start}: not JSON ({e})",
                    path.display()
                ))
            })?;
            if !v.is_object() {
                return Err(SourceError::Mismatch(format!(
                    "the checkpoint file `{}` at byte {start}: not a JSON object",
                    path.display()
                )));
            }
            if v.get("size").and_then(serde_json::Value::as_u64).is_some_and(|size| size > events_sent) {
                return Ok(false);
            }
            out.push(CheckpointLine { bytes: line.to_vec(), start, end: start + line.len() as u64 + 1 });
            Ok(true)
        })?;
        if !out.is_empty() {
            file.sync_data().map_err(|e| io_err(&self.path, &e))?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
