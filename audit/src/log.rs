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
//!
//! # Complete or absent
//!
//! A batch is one `write` of whole lines. When it fails (a full disk, an
//! I/O error) the file is cut back to where the chain stood, so no torn
//! line is left behind. When the writer dies in the middle of it (a crash,
//! `SIGKILL`), the next writer to take the lock finds the torn last line
//! and cuts it off: that incomplete line only, and only when the line
//! before it is a complete event and the piece is no longer than one line.
//! The cut is synced, and the next batch starts with a `finding` event
//! (rule `audit.torn-tail`) giving the bytes removed and their SHA-256.
//! Anything else at the end of a log is refused.
//!
//! # Rotation
//!
//! With [`AuditLog::set_rotate`], a live file that has reached the size is
//! renamed, under the lock, to its segment name
//! ([`crate::read::segment_path`], the `seq` of its first event) before the
//! next batch, and the chain continues in a fresh live file. After taking
//! the lock every writer checks that its open file is still the file at the
//! log's path, and reopens it otherwise, so nobody appends to a segment.

use crate::event::{Event, Kind, MAX_TARGET_BYTES, SCHEMA_VERSION};
use crate::{GENESIS, hash_line};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The longest line the tail reader looks at: a torn piece longer than
/// this is refused rather than cut.
const MAX_LINE: u64 = 256 * 1024;
/// How much of the tail is read first; more only for longer lines.
const FIRST_TAIL: u64 = 16 * 1024;
/// A head length no file has: forces the tail to be read again.
const UNKNOWN_LEN: u64 = u64::MAX;
/// How often a writer follows a log that is replaced under it (rotated by
/// others) before giving up.
const MAX_REOPENS: u32 = 64;
/// The `rule` of the finding that records a cut torn tail.
pub const TORN_TAIL_RULE: &str = "audit.torn-tail";

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
    /// The file's end is not a complete event, and is not a torn last line
    /// that may be cut off.
    #[error("audit log `{path}`: {reason}; refusing to append (run `sandbox audit verify` on it)")]
    BadTail {
        /// The log file.
        path: PathBuf,
        /// What is wrong with the tail.
        reason: String,
    },
    /// The sync hook (the checkpoint writer) failed; its message names its
    /// file.
    #[error("{0}")]
    Hook(String),
}

/// Runs after every successful [`AuditLog::sync`] with the number of
/// events (the next `seq`) and the last event's hash; the flag is set when
/// the caller marked the point with [`AuditLog::sync_milestone`]. An error
/// fails the sync. The runtime's checkpoint writer is one.
pub type SyncHook = Box<dyn FnMut(u64, [u8; 32], bool) -> Result<(), String> + Send>;

struct Hook(SyncHook);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncHook")
    }
}

/// A torn last line that a writer cut off the live file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// Where the file was cut (its new length).
    pub offset: u64,
    /// How many bytes were removed.
    pub bytes: u64,
    /// `sha256:` of the removed bytes.
    pub sha256: String,
    /// Whether the removed piece ended with a newline (a complete line that
    /// is not a valid event) rather than being cut short.
    pub had_newline: bool,
}

impl Repair {
    /// What happened, for the `finding` event's `reason`.
    pub fn reason(&self) -> String {
        let what = if self.had_newline {
            "its last line was not a valid event (a write that did not complete?)"
        } else {
            "its last line was incomplete (no newline: a writer stopped mid-append)"
        };
        format!("audit log: {what}; its {} bytes were cut off at offset {}", self.bytes, self.offset)
    }
}

/// Whom the log's own findings (a cut torn tail) are recorded for: the run
/// that met them. Empty fields are written as empty strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// Task id.
    pub task: String,
    /// Who the run acts for.
    pub user: String,
    /// The tool's name.
    pub agent: String,
    /// `sha256:` of the component.
    pub component: String,
    /// `sha256:` of the manifest.
    pub policy: String,
}

impl Origin {
    /// A `finding` event of this origin: `rule` and `reason` set, the rest
    /// left to the caller.
    pub fn finding<'a>(&'a self, rule: &'a str, reason: &'a str) -> Event<'a> {
        Event {
            kind: Kind::Finding,
            task: &self.task,
            user: &self.user,
            agent: &self.agent,
            component: &self.component,
            policy: &self.policy,
            rule: Some(rule),
            reason: Some(reason),
            ..Event::default()
        }
    }
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
    /// Rotate the live file once it has reached this many bytes.
    rotate: Option<u64>,
    origin: Origin,
    /// Torn tails cut off whose `finding` is not written yet.
    unrecorded: Vec<Repair>,
    /// Every torn tail this writer cut off.
    repairs: Vec<Repair>,
    hook: Option<Hook>,
    #[cfg(debug_assertions)]
    faults: fault::Plan,
}

impl AuditLog {
    /// Opens (or creates) the log at `path` for appending, creating its
    /// directory if needed, and reads the chain's head from its tail,
    /// cutting off a torn last line (see the module documentation). A
    /// lock held by another writer for longer than `lock_wait` fails.
    pub fn open(path: &Path, lock_wait: Duration) -> Result<AuditLog, AuditError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| AuditError::Io {
                path: path.to_owned(),
                what: "cannot create its directory",
                reason: reason(&e),
            })?;
        }
        let file = open_file(path)?;
        let mut log = AuditLog {
            path: path.to_owned(),
            file,
            head: Head { next_seq: 0, prev: GENESIS, len: UNKNOWN_LEN },
            pending: Vec::new(),
            unsynced: false,
            lock_wait,
            buf: Vec::with_capacity(4096),
            written: 0,
            rotate: None,
            origin: Origin::default(),
            unrecorded: Vec::new(),
            repairs: Vec::new(),
            hook: None,
            #[cfg(debug_assertions)]
            faults: fault::Plan::from_env(path)?,
        };
        log.lock()?;
        let head = log.read_head();
        log.unlock();
        log.head = head?;
        Ok(log)
    }

    /// Rotates the live file before a batch once it has reached `bytes`
    /// (`[audit] rotate`); `None` never rotates.
    pub fn set_rotate(&mut self, bytes: Option<u64>) {
        self.rotate = bytes;
    }

    /// Whom the log's own findings are recorded for (the current run).
    pub fn set_origin(&mut self, origin: Origin) {
        self.origin = origin;
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the chain stands after this writer's last append (or the tail
    /// read at open): the number of events and the last event's hash.
    pub fn head(&self) -> (u64, [u8; 32]) {
        (self.head.next_seq, self.head.prev)
    }

    /// Sets the hook that runs after every successful sync.
    pub fn set_sync_hook(&mut self, hook: SyncHook) {
        self.hook = Some(Hook(hook));
    }

    /// Removes the sync hook: later syncs run nothing after them.
    pub fn clear_sync_hook(&mut self) {
        self.hook = None;
    }

    /// Events written by this writer so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Events recorded in memory and not yet written.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Torn tails this writer cut off (each recorded by a `finding` event
    /// at the start of the batch that followed).
    pub fn repairs(&self) -> &[Repair] {
        &self.repairs
    }

    /// True when events are recorded but not yet durable.
    pub fn is_dirty(&self) -> bool {
        !self.pending.is_empty() || !self.unrecorded.is_empty() || self.unsynced
    }

    /// Drops the events recorded but not written (after a write failed)
    /// and returns how many there were; what is already in the file stays.
    pub fn discard_pending(&mut self) -> usize {
        let n = self.pending.len();
        self.pending.clear();
        n
    }

    /// Records an event in memory, stamped with the current time. Nothing
    /// is written until [`write`](Self::write) or [`sync`](Self::sync).
    pub fn record(&mut self, event: &Event<'_>) {
        let ts = now();
        let body = serialise(event);
        self.pending.push((ts, body));
    }

    /// Writes recorded events to the file (no fsync).
    pub fn write(&mut self) -> Result<(), AuditError> {
        if self.pending.is_empty() && self.unrecorded.is_empty() {
            return Ok(());
        }
        self.lock()?;
        let result = self.append_pending();
        self.unlock();
        result
    }

    /// Writes recorded events and makes everything written durable.
    pub fn sync(&mut self) -> Result<(), AuditError> {
        self.sync_marked(false)
    }

    /// Like [`sync`](Self::sync), and tells the sync hook that this point
    /// matters (the end of a task: a checkpoint is due).
    pub fn sync_milestone(&mut self) -> Result<(), AuditError> {
        self.sync_marked(true)
    }

    fn sync_marked(&mut self, milestone: bool) -> Result<(), AuditError> {
        self.write()?;
        if self.unsynced {
            #[cfg(debug_assertions)]
            if let Some(e) = self.faults.error(fault::Op::Sync) {
                return Err(self.io("cannot sync it", e));
            }
            self.file.sync_data().map_err(|e| self.io("cannot sync it", e))?;
            self.unsynced = false;
        }
        if let Some(Hook(hook)) = &mut self.hook {
            hook(self.head.next_seq, self.head.prev, milestone).map_err(AuditError::Hook)?;
        }
        Ok(())
    }

    /// Takes the log's lock for work besides appending (a prune): nothing
    /// is appended or rotated by anyone until
    /// [`unlock_after_maintenance`](Self::unlock_after_maintenance).
    pub(crate) fn lock_for_maintenance(&mut self) -> Result<(), AuditError> {
        self.lock()?;
        self.refresh_head().inspect_err(|_| self.unlock())
    }

    /// With the lock held: appends what is recorded and syncs it.
    pub(crate) fn append_locked(&mut self) -> Result<(), AuditError> {
        if !self.pending.is_empty() || !self.unrecorded.is_empty() {
            self.append_pending()?;
        }
        if self.unsynced {
            self.file.sync_data().map_err(|e| self.io("cannot sync it", e))?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Releases the lock taken by
    /// [`lock_for_maintenance`](Self::lock_for_maintenance).
    pub(crate) fn unlock_after_maintenance(&mut self) {
        self.unlock();
    }

    fn io(&self, what: &'static str, e: io::Error) -> AuditError {
        AuditError::Io { path: self.path.clone(), what, reason: reason(&e) }
    }

    fn bad_tail(&self, reason: String) -> AuditError {
        AuditError::BadTail { path: self.path.clone(), reason }
    }

    /// Takes the lock on the file at the log's path: when the file this
    /// writer holds open was rotated away (or replaced) meanwhile, it
    /// reopens the path and locks again.
    fn lock(&mut self) -> Result<(), AuditError> {
        let start = Instant::now();
        for _ in 0..MAX_REOPENS {
            self.lock_file(start)?;
            match self.still_the_log() {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    self.unlock();
                    self.file = open_file(&self.path)?;
                    self.head.len = UNKNOWN_LEN;
                }
                Err(e) => {
                    self.unlock();
                    return Err(e);
                }
            }
        }
        Err(self.io("cannot lock it", io::Error::other("it was replaced too often while waiting")))
    }

    fn lock_file(&mut self, start: Instant) -> Result<(), AuditError> {
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

    /// Whether the open file is the one at the log's path (same device and
    /// inode).
    fn still_the_log(&self) -> Result<bool, AuditError> {
        let mine = self.file.metadata().map_err(|e| self.io("cannot stat it", e))?;
        match std::fs::metadata(&self.path) {
            Ok(there) => Ok(there.dev() == mine.dev() && there.ino() == mine.ino()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io("cannot stat it", e)),
        }
    }

    fn unlock(&mut self) {
        // Closing the file releases the lock too; an unlock error leaves
        // nothing to repair here.
        let _ = self.file.unlock();
    }

    /// Reads the head again when the file changed under this writer; it
    /// may never move back (events removed from a log being written).
    fn refresh_head(&mut self) -> Result<(), AuditError> {
        let len = self.file.metadata().map_err(|e| self.io("cannot stat it", e))?.len();
        if len == self.head.len {
            return Ok(());
        }
        let fresh = self.read_head()?;
        if fresh.next_seq < self.head.next_seq {
            return Err(self.bad_tail(format!(
                "it now ends before seq {}, which this writer already wrote (events were removed)",
                self.head.next_seq - 1
            )));
        }
        self.head = fresh;
        Ok(())
    }

    /// Under the lock: continue the chain from the file's real last event.
    fn append_pending(&mut self) -> Result<(), AuditError> {
        self.refresh_head()?;
        if let Some(limit) = self.rotate
            && self.head.len >= limit
        {
            self.rotate_file()?;
        }
        let findings: Vec<(String, Vec<u8>)> =
            self.unrecorded.iter().map(|r| (now(), serialise(&self.repair_event(r, &r.reason())))).collect();
        let mut head = self.head;
        self.buf.clear();
        for (ts, body) in findings.iter().chain(&self.pending) {
            let start = self.buf.len();
            // Written into the buffer directly: no allocation per event.
            let _ = write!(self.buf, "{{\"v\":{SCHEMA_VERSION},\"seq\":{}", head.next_seq);
            self.buf.extend_from_slice(b",\"ts\":\"");
            self.buf.extend_from_slice(ts.as_bytes());
            self.buf.extend_from_slice(b"\",");
            self.buf.extend_from_slice(body);
            self.buf.extend_from_slice(b",\"prev\":\"sha256:");
            push_hex(&mut self.buf, &head.prev);
            self.buf.extend_from_slice(b"\"");
            let hash = hash_line(&self.buf[start..]);
            self.buf.extend_from_slice(b",\"hash\":\"sha256:");
            push_hex(&mut self.buf, &hash);
            self.buf.extend_from_slice(b"\"}\n");
            head.next_seq += 1;
            head.prev = hash;
        }
        if let Err(e) = self.write_buf() {
            // Leave no torn line behind: cut back to where the chain stood.
            // Should that fail too, the next writer cuts the torn line.
            let _ = self.file.set_len(self.head.len);
            return Err(self.io("cannot write it", e));
        }
        head.len = self.head.len + self.buf.len() as u64;
        self.written += (findings.len() + self.pending.len()) as u64;
        self.head = head;
        self.pending.clear();
        self.unrecorded.clear();
        self.unsynced = true;
        Ok(())
    }

    fn write_buf(&mut self) -> io::Result<()> {
        #[cfg(debug_assertions)]
        if let Some(fault) = self.faults.check(fault::Op::Write) {
            // A fault strikes halfway, inside a line: what a full disk or a
            // crash does to a large write.
            let mut half = self.buf.len() / 2;
            if half > 0 && self.buf[half - 1] == b'\n' {
                half += 1;
            }
            self.file.write_all(&self.buf[..half])?;
            return fault.strike();
        }
        self.file.write_all(&self.buf)
    }

    /// The `finding` event that records a cut torn tail.
    fn repair_event<'a>(&'a self, r: &'a Repair, reason: &'a str) -> Event<'a> {
        Event { size: Some(r.bytes), content_sha256: Some(&r.sha256), ..self.origin.finding(TORN_TAIL_RULE, reason) }
    }

    /// Under the lock: renames the live file to its segment name, makes
    /// the rename durable, and continues in a fresh live file (locked, its
    /// head read again: it is empty unless another writer was faster).
    fn rotate_file(&mut self) -> Result<(), AuditError> {
        let first = first_seq(&self.file).map_err(|e| match e {
            TailError::Io(e) => self.io("cannot read it", e),
            TailError::Bad(why) => self.bad_tail(why),
        })?;
        let segment = crate::read::segment_path(&self.path, first);
        #[cfg(debug_assertions)]
        if let Some(e) = self.faults.error(fault::Op::Rotate) {
            return Err(self.io("cannot rotate it", e));
        }
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &self.path,
            rustix::fs::CWD,
            &segment,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(|e| self.io("cannot rotate it", e.into()))?;
        tracing::debug!(segment = %segment.display(), "audit log rotated");
        sync_dir(&self.path).map_err(|e| self.io("cannot sync its directory after rotating it", e))?;
        // The old file's lock is released when it is closed, once the new
        // one is held: writers waiting on it find it renamed and follow.
        let fresh = open_file(&self.path)?;
        let _old = std::mem::replace(&mut self.file, fresh);
        self.head.len = UNKNOWN_LEN;
        self.lock()?;
        self.refresh_head()
    }

    /// Reads the last event's `seq` and `hash` from the end of the file,
    /// cutting off a torn last line first.
    fn read_head(&mut self) -> Result<Head, AuditError> {
        let len = self.file.metadata().map_err(|e| self.io("cannot stat it", e))?.len();
        let tail = read_tail(&self.file, len).map_err(|e| match e {
            TailError::Io(e) => self.io("cannot read it", e),
            TailError::Bad(why) => self.bad_tail(why),
        })?;
        match tail {
            Tail::Empty => self.head_of_segments(0),
            Tail::Event { seq, hash } => Ok(Head { next_seq: seq + 1, prev: hash, len }),
            Tail::Torn { cut_at, removed, before } => {
                let head = match before {
                    Some((seq, hash)) => Head { next_seq: seq + 1, prev: hash, len: cut_at },
                    None => self.head_of_segments(cut_at)?,
                };
                self.file.set_len(cut_at).map_err(|e| self.io("cannot cut off its torn last line", e))?;
                self.file.sync_data().map_err(|e| self.io("cannot sync it", e))?;
                let repair = Repair {
                    offset: cut_at,
                    bytes: removed.len() as u64,
                    sha256: sha256_hex(&removed),
                    had_newline: removed.ends_with(b"\n"),
                };
                tracing::warn!(log = %self.path.display(), "{}", repair.reason());
                self.unrecorded.push(repair.clone());
                self.repairs.push(repair);
                Ok(head)
            }
        }
    }

    /// The head when the live file holds no event: the last event of the
    /// newest rotated segment, or the genesis of a log never rotated.
    fn head_of_segments(&self, len: u64) -> Result<Head, AuditError> {
        let segments = crate::read::segments(&self.path).map_err(|e| AuditError::Io {
            path: self.path.clone(),
            what: "cannot list its segments",
            reason: e.to_string(),
        })?;
        let Some((_, last)) = segments.last() else {
            return Ok(Head { next_seq: 0, prev: GENESIS, len });
        };
        let bad = |why: String| self.bad_tail(format!("its newest segment `{}` {why}", last.display()));
        let file = File::open(last).map_err(|e| bad(format!("cannot be read: {}", reason(&e))))?;
        let seg_len = file.metadata().map_err(|e| bad(format!("cannot be read: {}", reason(&e))))?.len();
        match read_tail(&file, seg_len) {
            Ok(Tail::Event { seq, hash }) => Ok(Head { next_seq: seq + 1, prev: hash, len }),
            Ok(Tail::Empty) => Err(bad("is empty".into())),
            Ok(Tail::Torn { .. }) => Err(bad("does not end with a complete event".into())),
            Err(TailError::Io(e)) => Err(bad(format!("cannot be read: {}", reason(&e)))),
            Err(TailError::Bad(why)) => Err(bad(why)),
        }
    }
}

/// Opens the log file for reading and appending, creating it.
fn open_file(path: &Path) -> Result<File, AuditError> {
    let io_err = |what, e: io::Error| AuditError::Io { path: path.to_owned(), what, reason: reason(&e) };
    let file =
        OpenOptions::new().read(true).append(true).create(true).open(path).map_err(|e| io_err("cannot open it", e))?;
    let meta = file.metadata().map_err(|e| io_err("cannot stat it", e))?;
    if !meta.is_file() {
        return Err(AuditError::Io {
            path: path.to_owned(),
            what: "cannot use it",
            reason: "not a regular file".into(),
        });
    }
    Ok(file)
}

/// Makes a rename in the log's directory durable.
fn sync_dir(log: &Path) -> io::Result<()> {
    let dir = match log.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// What the end of a file holds.
#[derive(Debug)]
enum Tail {
    /// Nothing.
    Empty,
    /// A complete event, whose hash matches.
    Event { seq: u64, hash: [u8; 32] },
    /// A torn last line (no newline, or not a valid event) that may be cut:
    /// the file's length without it, its bytes, and the event before it
    /// (`None`: it is the file's only line).
    Torn { cut_at: u64, removed: Vec<u8>, before: Option<(u64, [u8; 32])> },
}

#[derive(Debug)]
enum TailError {
    Io(io::Error),
    Bad(String),
}

/// Reads the end of `file` (of length `len`): as little as its last line
/// needs, and the line before it when the last is torn.
fn read_tail(file: &File, len: u64) -> Result<Tail, TailError> {
    if len == 0 {
        return Ok(Tail::Empty);
    }
    // The torn piece and the line before it, each at most one line.
    let cap = len.min(2 * (MAX_LINE + 1));
    let mut take = len.min(FIRST_TAIL);
    loop {
        let mut tail = vec![0; take as usize];
        file.read_exact_at(&mut tail, len - take).map_err(TailError::Io)?;
        match inspect_tail(&tail, take == len) {
            Some(Found::Event(seq, hash)) => return Ok(Tail::Event { seq, hash }),
            Some(Found::Torn { start, before }) => {
                let removed = tail[start..].to_vec();
                return Ok(Tail::Torn { cut_at: len - removed.len() as u64, removed, before });
            }
            Some(Found::Bad(why)) => return Err(TailError::Bad(why)),
            None if take < cap => take = (take * 8).min(cap),
            None => return Err(TailError::Bad(format!("its last lines are longer than {MAX_LINE} bytes"))),
        }
    }
}

enum Found {
    Event(u64, [u8; 32]),
    Torn { start: usize, before: Option<(u64, [u8; 32])> },
    Bad(String),
}

/// Looks at the last bytes of a file; `None` when more are needed.
/// `whole`: `tail` is the whole file.
fn inspect_tail(tail: &[u8], whole: bool) -> Option<Found> {
    let complete = tail.last() == Some(&b'\n');
    let body = if complete { &tail[..tail.len() - 1] } else { tail };
    let last_start = match body.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None if whole => 0,
        None => return None,
    };
    if complete && let Some((seq, hash)) = parse_event(&body[last_start..]) {
        return Some(Found::Event(seq, hash));
    }
    let piece = (tail.len() - last_start) as u64;
    if piece > MAX_LINE + 1 {
        return Some(Found::Bad(format!(
            "its last line is not a complete event and is longer than {MAX_LINE} bytes, too long to be one torn append"
        )));
    }
    if last_start == 0 {
        return whole.then_some(Found::Torn { start: 0, before: None });
    }
    let before = &body[..last_start - 1];
    let before_start = match before.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None if whole => 0,
        None => return None,
    };
    Some(match parse_event(&before[before_start..]) {
        Some(ev) => Found::Torn { start: last_start, before: Some(ev) },
        None => Found::Bad(
            "its last line is not a complete event, and neither is the line before it (not a torn append)".into(),
        ),
    })
}

/// `seq` and `hash` of a line that is an event whose hash matches.
fn parse_event(line: &[u8]) -> Option<(u64, [u8; 32])> {
    #[derive(serde::Deserialize)]
    struct Tail {
        seq: u64,
        hash: String,
    }
    let t: Tail = serde_json::from_slice(line).ok()?;
    let hash = crate::parse_hash(&t.hash)?;
    (hash_line(crate::without_hash(line)?) == hash).then_some((t.seq, hash))
}

/// The `seq` of a file's first event (to name its segment).
fn first_seq(file: &File) -> Result<u64, TailError> {
    let len = file.metadata().map_err(TailError::Io)?.len();
    let mut head = vec![0; len.min(MAX_LINE + 1) as usize];
    file.read_exact_at(&mut head, 0).map_err(TailError::Io)?;
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct First {
        seq: u64,
    }
    serde_json::from_slice::<First>(line)
        .map(|f| f.seq)
        .map_err(|e| TailError::Bad(format!("its first line is not an event ({e}); cannot rotate it")))
}

/// Appends `bytes` as lowercase hex.
fn push_hex(buf: &mut Vec<u8>, bytes: &[u8; 32]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        buf.push(HEX[usize::from(b >> 4)]);
        buf.push(HEX[usize::from(b & 15)]);
    }
}

fn now() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// An event's members, compact, without the braces (the log adds its own
/// fields around them); guest text longer than the limit is cut with its
/// hash beside it.
fn serialise(event: &Event<'_>) -> Vec<u8> {
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
    body
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
        // Every character escaped here is outside ASCII (serde_json has
        // escaped the C0 controls already).
        if fragment.is_ascii() {
            return writer.write_all(fragment.as_bytes());
        }
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

/// Test hook, honoured only in debug builds: `SANDBOX_TEST_AUDIT_FAULT`
/// makes chosen writes, syncs or rotations of this writer fail, so tests
/// can show that a full disk or an I/O error refuses the call and stops
/// the task. A comma-separated list of `OP@N=WHAT` (the N-th time, from 1)
/// or `OP@N+=WHAT` (the N-th time and every time after), where OP is
/// `write`, `sync` or `rotate` and WHAT is `enospc`, `eio`, `erofs`,
/// `eacces`, `edquot`, or (writes only) `crash`: the process kills itself
/// with SIGKILL halfway through the write. A failing write first writes
/// about half of its batch, ending inside a line, as a full disk does.
#[cfg(debug_assertions)]
pub(crate) mod fault {
    use super::AuditError;
    use std::io;
    use std::path::Path;

    /// The variable that holds the plan.
    pub const VAR: &str = "SANDBOX_TEST_AUDIT_FAULT";

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Op {
        Write,
        Sync,
        Rotate,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {
        Errno(i32),
        Crash,
    }

    impl Fault {
        /// Fails the way this fault says.
        pub fn strike(self) -> io::Result<()> {
            match self {
                Fault::Errno(n) => Err(io::Error::from_raw_os_error(n)),
                Fault::Crash => {
                    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
                    unreachable!("SIGKILL cannot be caught")
                }
            }
        }
    }

    #[derive(Debug, Clone, Copy)]
    struct Rule {
        op: Op,
        nth: u64,
        onwards: bool,
        fault: Fault,
    }

    /// The faults planned for one writer, and how often each operation ran.
    #[derive(Debug, Default)]
    pub struct Plan {
        rules: Vec<Rule>,
        counts: [u64; 3],
    }

    impl Plan {
        pub fn from_env(log: &Path) -> Result<Plan, AuditError> {
            match std::env::var(VAR) {
                Ok(spec) => Plan::parse(&spec).map_err(|why| AuditError::Io {
                    path: log.to_owned(),
                    what: "cannot honour the test hook",
                    reason: format!("{VAR}: {why}"),
                }),
                Err(_) => Ok(Plan::default()),
            }
        }

        pub fn parse(spec: &str) -> Result<Plan, String> {
            let mut rules = Vec::new();
            for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let bad = || format!("`{item}` is not OP@N=WHAT");
                let (op, rest) = item.split_once('@').ok_or_else(bad)?;
                let (nth, what) = rest.split_once('=').ok_or_else(bad)?;
                let op = match op {
                    "write" => Op::Write,
                    "sync" => Op::Sync,
                    "rotate" => Op::Rotate,
                    _ => return Err(bad()),
                };
                let (nth, onwards) = match nth.strip_suffix('+') {
                    Some(n) => (n, true),
                    None => (nth, false),
                };
                let nth: u64 = nth.parse().map_err(|_| bad())?;
                let fault = match what {
                    "enospc" => Fault::Errno(28),
                    "eio" => Fault::Errno(5),
                    "erofs" => Fault::Errno(30),
                    "eacces" => Fault::Errno(13),
                    "edquot" => Fault::Errno(122),
                    "crash" if op == Op::Write => Fault::Crash,
                    _ => return Err(bad()),
                };
                rules.push(Rule { op, nth, onwards, fault });
            }
            Ok(Plan { rules, counts: [0; 3] })
        }

        /// Counts one `op` and returns the fault planned for it.
        pub fn check(&mut self, op: Op) -> Option<Fault> {
            let count = &mut self.counts[op as usize];
            *count += 1;
            let n = *count;
            self.rules.iter().find(|r| r.op == op && (r.nth == n || (r.onwards && n > r.nth))).map(|r| r.fault)
        }

        /// Like [`check`](Self::check), as the error to return.
        pub fn error(&mut self, op: Op) -> Option<io::Error> {
            self.check(op).map(|f| match f.strike() {
                Err(e) => e,
                Ok(()) => io::Error::other("injected fault"),
            })
        }
    }
}

#[cfg(all(test, debug_assertions))]
impl AuditLog {
    /// Plans faults for this writer (see [`fault`]).
    pub(crate) fn inject_faults(&mut self, spec: &str) {
        #[allow(clippy::unwrap_used)]
        {
            self.faults = fault::Plan::parse(spec).unwrap();
        }
    }

    /// The head this writer knows: (`seq` of the next event, file length).
    pub(crate) fn known_head(&self) -> (u64, u64) {
        (self.head.next_seq, self.head.len)
    }
}
