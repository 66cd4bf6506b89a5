//! The append-only, hash-chained log writer.
//!
//! Events are first recorded in memory ([`AuditLog::record`]); they reach
//! the file when the caller asks: [`AuditLog::write`] hands them to the
//! operating system, [`AuditLog::sync`] also makes them durable
//! (`fdatasync`). The runtime syncs before every effect and at the end of a
//! task (the write-ahead rule), and writes before the tool's own output
//! leaves the host.
//!
//! `seq`, `prev` and `hash` are assigned at write time, under an exclusive
//! lock on the file, from the file's actual last event: several runs may
//! append to one log. The tail is re-read only when the file grew since
//! this writer's last append, and opening a log reads only its tail.

use crate::event::{Event, MAX_TARGET_BYTES, SCHEMA_VERSION};
use crate::{GENESIS, hash_line};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The longest line the tail reader accepts.
const MAX_LINE: u64 = 256 * 1024;

/// Why the log could not be written. The runtime refuses the call that
/// needed it and stops the task.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Opening, writing or syncing failed.
    #[error("audit log `{path}`: {what}: {reason}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// The step that failed.
        what: &'static str,
        /// The operating system's reason.
        reason: String,
    },
    /// Another writer held the lock for longer than the bound.
    #[error("audit log `{path}`: could not lock it within {}", humantime::format_duration(*.waited))]
    Locked {
        /// The log file.
        path: PathBuf,
        /// How long the writer waited.
        waited: Duration,
    },
    /// The file's last line is not a complete event.
    #[error("audit log `{path}`: {reason}; refusing to append (run `sandbox audit verify` on it)")]
    BadTail {
        /// The log file.
        path: PathBuf,
        /// What is wrong with the tail.
        reason: String,
    },
}

/// Where the chain stands: the last event's `seq` and `hash`, and the file
/// length they were read at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    next_seq: u64,
    prev: [u8; 32],
    len: u64,
}

/// A log open for appending.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    head: Head,
    /// Recorded, not yet written: (`ts`, serialised body without braces).
    pending: Vec<(String, Vec<u8>)>,
    /// Written but not yet fsynced.
    unsynced: bool,
    lock_wait: Duration,
    /// Scratch buffer for lines, reused.
    buf: Vec<u8>,
    written: u64,
}

impl AuditLog {
    /// Opens (or creates) the log at `path` for appending, creating its
    /// directory if needed, and reads the chain's head from its tail.
    /// A lock held by another writer for longer than `lock_wait` fails.
    pub fn open(path: &Path, lock_wait: Duration) -> Result<AuditLog, AuditError> {
        let io_err = |what, e: io::Error| AuditError::Io { path: path.to_owned(), what, reason: reason(&e) };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io_err("cannot create its directory", e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| io_err("cannot open it", e))?;
        let meta = file.metadata().map_err(|e| io_err("cannot stat it", e))?;
        if !meta.is_file() {
            return Err(AuditError::Io {
                path: path.to_owned(),
                what: "cannot use it",
                reason: "not a regular file".into(),
            });
        }
        let mut log = AuditLog {
            path: path.to_owned(),
            file,
            head: Head { next_seq: 0, prev: [0; 32], len: 0 },
            pending: Vec::new(),
            unsynced: false,
            lock_wait,
            buf: Vec::with_capacity(4096),
            written: 0,
        };
        log.lock()?;
        let head = log.read_head();
        log.unlock();
        log.head = head?;
        Ok(log)
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Events written by this writer so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Events recorded in memory and not yet written.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// True when events are recorded but not yet durable.
    pub fn is_dirty(&self) -> bool {
        !self.pending.is_empty() || self.unsynced
    }

    /// Records an event in memory, stamped with the current time. Nothing
    /// is written until [`write`](Self::write) or [`sync`](Self::sync).
    pub fn record(&mut self, event: &Event<'_>) {
        let ts = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
        let mut body = Vec::with_capacity(512);
        let cut_target = event.target.filter(|t| t.len() > MAX_TARGET_BYTES);
        let cut_dest = event.dest.filter(|t| t.len() > MAX_TARGET_BYTES);
        let mut ser = serde_json::Serializer::with_formatter(&mut body, LogFormatter);
        let result = if cut_target.is_some() || cut_dest.is_some() {
            let mut e = event.clone();
            if let Some(t) = cut_target {
                e.target = Some(cut(t));
                e.target_sha256 = Some(sha256_hex(t.as_bytes()));
            }
            if let Some(d) = cut_dest {
                e.dest = Some(cut(d));
                e.dest_sha256 = Some(sha256_hex(d.as_bytes()));
            }
            e.serialize(&mut ser)
        } else {
            event.serialize(&mut ser)
        };
        // Serialising plain strings and numbers into memory cannot fail.
        debug_assert!(result.is_ok());
        // Strip the object's braces: the log adds its own fields around it.
        body.pop();
        body.remove(0);
        self.pending.push((ts, body));
    }

    /// Writes recorded events to the file (no fsync).
    pub fn write(&mut self) -> Result<(), AuditError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.lock()?;
        let result = self.append_pending();
        self.unlock();
        result
    }

    /// Writes recorded events and makes everything written durable.
    pub fn sync(&mut self) -> Result<(), AuditError> {
        self.write()?;
        if self.unsynced {
            self.file.sync_data().map_err(|e| self.io("cannot sync it", e))?;
            self.unsynced = false;
        }
        Ok(())
    }

    fn io(&self, what: &'static str, e: io::Error) -> AuditError {
        AuditError::Io { path: self.path.clone(), what, reason: reason(&e) }
    }

    fn lock(&mut self) -> Result<(), AuditError> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            match self.file.try_lock() {
                Ok(()) => return Ok(()),
                Err(std::fs::TryLockError::WouldBlock) => {
                    let waited = start.elapsed();
                    if waited >= self.lock_wait {
                        return Err(AuditError::Locked { path: self.path.clone(), waited });
                    }
                    std::thread::sleep(pause.min(self.lock_wait - waited));
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(self.io("cannot lock it", e)),
            }
        }
    }

    fn unlock(&mut self) {
        // Closing the file releases the lock too; an unlock error leaves
        // nothing to repair here.
        let _ = self.file.unlock();
    }

    /// Under the lock: continue the chain from the file's real last event.
    fn append_pending(&mut self) -> Result<(), AuditError> {
        let len = self.file.metadata().map_err(|e| self.io("cannot stat it", e))?.len();
        if len != self.head.len {
            self.head = self.read_head()?;
        }
        let mut head = self.head;
        self.buf.clear();
        for (ts, body) in &self.pending {
            let start = self.buf.len();
            self.buf.extend_from_slice(b"{\"v\":");
            self.buf.extend_from_slice(SCHEMA_VERSION.to_string().as_bytes());
            self.buf.extend_from_slice(b",\"seq\":");
            self.buf.extend_from_slice(head.next_seq.to_string().as_bytes());
            self.buf.extend_from_slice(b",\"ts\":\"");
            self.buf.extend_from_slice(ts.as_bytes());
            self.buf.extend_from_slice(b"\",");
            self.buf.extend_from_slice(body);
            self.buf.extend_from_slice(b",\"prev\":\"sha256:");
            self.buf.extend_from_slice(hex::encode(head.prev).as_bytes());
            self.buf.extend_from_slice(b"\"");
            let hash = hash_line(&self.buf[start..]);
            self.buf.extend_from_slice(b",\"hash\":\"sha256:");
            self.buf.extend_from_slice(hex::encode(hash).as_bytes());
            self.buf.extend_from_slice(b"\"}\n");
            head.next_seq += 1;
            head.prev = hash;
        }
        if let Err(e) = self.file.write_all(&self.buf) {
            // Leave no torn line behind: cut back to where the chain stood.
            let _ = self.file.set_len(self.head.len);
            return Err(self.io("cannot write it", e));
        }
        head.len = self.head.len + self.buf.len() as u64;
        self.written += self.pending.len() as u64;
        self.head = head;
        self.pending.clear();
        self.unsynced = true;
        Ok(())
    }

    /// Reads the last event's `seq` and `hash` from the end of the file.
    fn read_head(&mut self) -> Result<Head, AuditError> {
        let len = self.file.metadata().map_err(|e| self.io("cannot stat it", e))?.len();
        if len == 0 {
            return Ok(Head { next_seq: 0, prev: GENESIS, len: 0 });
        }
        let bad = |reason: String| AuditError::BadTail { path: self.path.clone(), reason };
        let take = len.min(MAX_LINE);
        let mut tail = vec![0; take as usize];
        self.file.seek(SeekFrom::Start(len - take)).map_err(|e| self.io("cannot read it", e))?;
        self.file.read_exact(&mut tail).map_err(|e| self.io("cannot read it", e))?;
        if tail.last() != Some(&b'\n') {
            return Err(bad("its last line is incomplete (no newline: a torn append?)".into()));
        }
        let body = &tail[..tail.len() - 1];
        let start = match body.iter().rposition(|b| *b == b'\n') {
            Some(i) => i + 1,
            None if take == len => 0,
            None => return Err(bad(format!("its last line is longer than {MAX_LINE} bytes"))),
        };
        let line = &body[start..];
        #[derive(serde::Deserialize)]
        struct Tail {
            seq: u64,
            hash: String,
        }
        let t: Tail = serde_json::from_slice(line).map_err(|e| bad(format!("its last line is not an event ({e})")))?;
        let prev = crate::parse_hash(&t.hash)
            .ok_or_else(|| bad(format!("its last event has a malformed hash `{}`", t.hash)))?;
        if hash_line(crate::without_hash(line).ok_or_else(|| bad("its last event has no trailing `hash`".into()))?)
            != prev
        {
            return Err(bad(format!("its last event (seq {}) does not match its hash", t.seq)));
        }
        Ok(Head { next_seq: t.seq + 1, prev, len })
    }
}

/// Compact JSON that also escapes, as `\uXXXX`, the characters besides
/// C0 controls that split lines or act on terminals in the tools people
/// read logs with: C1 controls (U+0080..U+009F, including NEL and the
/// 8-bit CSI), U+2028 and U+2029, bidi controls and zero-width characters.
struct LogFormatter;

fn escaped_in_log(c: char) -> bool {
    matches!(c, '\u{80}'..='\u{9f}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{061c}' | '\u{feff}')
}

impl serde_json::ser::Formatter for LogFormatter {
    fn write_string_fragment<W: ?Sized + Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if escaped_in_log(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                write!(writer, "\\u{:04x}", c as u32)?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

fn cut(s: &str) -> &str {
    let mut end = MAX_TARGET_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn reason(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s.to_lowercase(),
    }
}
