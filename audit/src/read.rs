//! Reading a log back: its files in order (rotated segments, then the live
//! file) and its events, with the filters `export` and `report` share.
//!
//! # Segments
//!
//! A log at `dir/audit.jsonl` may have been rotated: its older events then
//! live in `dir/audit.jsonl.<seq>` files, where `<seq>` is the `seq` of the
//! segment's first event written as 12 digits. The chain runs through the
//! segments in `seq` order and on into the live file.

use serde_json::Value;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Digits of the `seq` in a segment's name.
pub const SEGMENT_DIGITS: usize = 12;

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A file could not be opened or read.
    #[error("audit log `{path}`: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// A line is not a JSON object.
    #[error("audit log `{path}` line {line}: not an audit event ({reason})")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number in that file.
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

/// The name of the segment of `log` whose first event has `seq`.
pub fn segment_path(log: &Path, first_seq: u64) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{first_seq:0width$}", width = SEGMENT_DIGITS));
    log.with_file_name(name)
}

/// The rotated segments of `log` (not the live file), as `(first seq,
/// path)` in `seq` order. A log never rotated has none.
pub fn segments(log: &Path) -> Result<Vec<(u64, PathBuf)>, ReadError> {
    let dir = match log.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let Some(base) = log.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ReadError::Io { path: dir, reason: io_reason(&e) }),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ReadError::Io { path: dir.clone(), reason: io_reason(&e) })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(digits) = name.strip_prefix(base).and_then(|r| r.strip_prefix('.')) else { continue };
        if digits.len() == SEGMENT_DIGITS
            && digits.bytes().all(|b| b.is_ascii_digit())
            && let Ok(seq) = digits.parse::<u64>()
        {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Every file of the log in chain order: its segments, then the live file
/// (when it exists).
pub fn files(log: &Path) -> Result<Vec<PathBuf>, ReadError> {
    let mut out: Vec<PathBuf> = segments(log)?.into_iter().map(|(_, p)| p).collect();
    match std::fs::metadata(log) {
        Ok(_) => out.push(log.to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !out.is_empty() => {}
        Err(e) => return Err(ReadError::Io { path: log.to_owned(), reason: io_reason(&e) }),
    }
    Ok(out)
}

/// The events of a log, segments first, each as parsed JSON. This reads;
/// it does not verify (see [`crate::verify`]).
#[derive(Debug)]
pub struct Events {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<(PathBuf, BufReader<File>, u64)>,
    buf: Vec<u8>,
}

/// Opens the log at `log` (and its segments) for reading events.
pub fn events(log: &Path) -> Result<Events, ReadError> {
    Ok(Events { files: files(log)?.into_iter(), current: None, buf: Vec::new() })
}

impl Events {
    /// The line the last `next` returned an event (or a
    /// [`ReadError::Line`]) for, exactly as stored, its newline included
    /// when it has one; with its file and 1-based line number. `export
    /// --format jsonl` copies these bytes.
    pub fn raw(&self) -> Option<(&Path, u64, &[u8])> {
        let (path, _, line) = self.current.as_ref()?;
        Some((path, *line, &self.buf))
    }
}

impl Iterator for Events {
    type Item = Result<Value, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                let path = self.files.next()?;
                match File::open(&path) {
                    Ok(f) => self.current = Some((path, BufReader::new(f), 0)),
                    Err(e) => {
                        let reason = io_reason(&e);
                        return Some(Err(ReadError::Io { path, reason }));
                    }
                }
            }
            let (path, reader, line) = self.current.as_mut()?;
            self.buf.clear();
            match reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => {
                    self.current = None;
                    continue;
                }
                Ok(_) => {
                    *line += 1;
                    let text = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
                    let parsed = serde_json::from_slice::<Value>(text)
                        .map_err(|e| e.to_string())
                        .and_then(|v| if v.is_object() { Ok(v) } else { Err("not an object".to_owned()) });
                    return Some(parsed.map_err(|reason| ReadError::Line { path: path.clone(), line: *line, reason }));
                }
                Err(e) => {
                    let err = ReadError::Io { path: path.clone(), reason: io_reason(&e) };
                    self.current = None;
                    return Some(Err(err));
                }
            }
        }
    }
}

/// Which events to keep: every given condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `ts` at or after this time.
    pub since: Option<SystemTime>,
    /// `ts` before this time.
    pub until: Option<SystemTime>,
    /// `task` equals this.
    pub task: Option<String>,
    /// `user` equals this.
    pub user: Option<String>,
    /// `decision` equals this (`allow`, `deny`, `ask`, `approved`, ...).
    pub decision: Option<String>,
    /// `capability` equals this, or, given without a dot (`fs`), starts
    /// with it and a dot.
    pub capability: Option<String>,
}

impl Filter {
    /// True when no condition is set.
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether `ev` passes every condition. An event without a readable
    /// `ts` fails a time condition.
    pub fn matches(&self, ev: &Value) -> bool {
        let field = |k: &str| ev.get(k).and_then(Value::as_str);
        if self.since.is_some() || self.until.is_some() {
            let Some(ts) = field("ts").and_then(|t| humantime::parse_rfc3339(t).ok()) else { return false };
            if self.since.is_some_and(|s| ts < s) || self.until.is_some_and(|u| ts >= u) {
                return false;
            }
        }
        let same = |want: &Option<String>, k: &str| want.as_deref().is_none_or(|w| field(k) == Some(w));
        if !same(&self.task, "task") || !same(&self.user, "user") || !same(&self.decision, "decision") {
            return false;
        }
        match self.capability.as_deref() {
            None => true,
            Some(c) if c.contains('.') => field("capability") == Some(c),
            Some(family) => field("capability")
                .is_some_and(|have| have.strip_prefix(family).is_some_and(|rest| rest.starts_with('.'))),
        }
    }
}

/// Parses a time given on the command line: RFC 3339 (`2026-11-23T09:00:00Z`,
/// fractions and offsets allowed) or a date (`2026-11-23`, midnight UTC).
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    let t = text.trim();
    let full =
        if t.len() == 10 && t.as_bytes().get(4) == Some(&b'-') { format!("{t}T00:00:00Z") } else { t.to_owned() };
    humantime::parse_rfc3339(&full)
        .or_else(|_| parse_with_offset(&full))
        .map_err(|_| format!("`{text}` is not a date (2026-11-23) or an RFC 3339 time (2026-11-23T09:00:00Z)"))
}

/// RFC 3339 with a `+HH:MM`/`-HH:MM` offset, which humantime does not take.
fn parse_with_offset(t: &str) -> Result<SystemTime, ()> {
    let split = t.len().checked_sub(6).ok_or(())?;
    let (local, offset) = t.split_at(split);
    let sign = match offset.as_bytes()[0] {
        b'+' => 1i64,
        b'-' => -1,
        _ => return Err(()),
    };
    let (h, m) = offset[1..].split_once(':').ok_or(())?;
    let (h, m): (u64, u64) = (h.parse().map_err(|_| ())?, m.parse().map_err(|_| ())?);
    if h > 23 || m > 59 {
        return Err(());
    }
    let base = humantime::parse_rfc3339(&format!("{local}Z")).map_err(|_| ())?;
    let shift = std::time::Duration::from_secs(h * 3600 + m * 60);
    // Local time minus a positive offset is the UTC time.
    if sign > 0 { base.checked_sub(shift).ok_or(()) } else { base.checked_add(shift).ok_or(()) }
}

/// An I/O error as a short lowercase reason (`no such file or directory`).
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(t: &str) -> SystemTime {
        parse_time(t).unwrap()
    }

    #[test]
    fn times_parse_as_dates_utc_and_offsets() {
        assert_eq!(at("2026-11-23"), at("2026-11-23T00:00:00Z"));
        assert_eq!(at("2026-11-23T10:30:00+02:00"), at("2026-11-23T08:30:00Z"));
        assert_eq!(at("2026-11-23T10:30:00-01:30"), at("2026-11-23T12:00:00Z"));
        assert_eq!(at("2026-11-23T10:30:00.250000Z"), at("2026-11-23T10:30:00.25Z"));
        for bad in ["yesterday", "2026-13-01", "2026-11-23T10:30:00+25:00", ""] {
            assert!(parse_time(bad).unwrap_err().contains("is not a date"), "{bad}");
        }
    }

    #[test]
    fn filters_combine() {
        let ev = json!({"ts": "2026-11-23T10:00:00.000000Z", "task": "t1", "user": "dana",
                        "decision": "deny", "capability": "fs.read"});
        let f = |f: Filter| f.matches(&ev);
        assert!(f(Filter::default()));
        assert!(f(Filter { since: Some(at("2026-11-23T10:00:00Z")), ..Filter::default() }));
        assert!(!f(Filter { until: Some(at("2026-11-23T10:00:00Z")), ..Filter::default() }), "until is exclusive");
        assert!(f(Filter { task: Some("t1".into()), user: Some("dana".into()), ..Filter::default() }));
        assert!(!f(Filter { user: Some("dan".into()), ..Filter::default() }));
        assert!(f(Filter { capability: Some("fs".into()), decision: Some("deny".into()), ..Filter::default() }));
        assert!(!f(Filter { capability: Some("f".into()), ..Filter::default() }));
        assert!(!f(Filter { capability: Some("fs.write".into()), ..Filter::default() }));
        assert!(!Filter { since: Some(at("2026-01-01")), ..Filter::default() }.matches(&json!({"task": "t1"})));
    }

    #[test]
    fn segments_come_in_seq_order_before_the_live_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        assert!(matches!(files(&log), Err(ReadError::Io { .. })), "a missing log is an error");
        for seq in [1200u64, 0, 37] {
            std::fs::write(segment_path(&log, seq), format!("{{\"seq\":{seq}}}\n")).unwrap();
        }
        std::fs::write(dir.path().join("audit.jsonl.12"), "").unwrap();
        std::fs::write(dir.path().join("audit.jsonl.checkpoints"), "").unwrap();
        std::fs::write(dir.path().join("other.jsonl.000000000001"), "").unwrap();
        std::fs::write(&log, "{\"seq\":1300}\nnot json\n").unwrap();
        let names: Vec<String> =
            files(&log).unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(
            names,
            ["audit.jsonl.000000000000", "audit.jsonl.000000000037", "audit.jsonl.000000001200", "audit.jsonl"]
        );
        let got: Vec<_> = events(&log).unwrap().collect();
        let seqs: Vec<u64> = got[..4].iter().map(|e| e.as_ref().unwrap()["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [0, 37, 1200, 1300]);
        let err = got[4].as_ref().unwrap_err().to_string();
        assert!(err.contains("audit.jsonl` line 2: not an audit event"), "{err}");
    }
}
