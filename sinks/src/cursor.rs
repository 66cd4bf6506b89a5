//! A sink's cursor: the last event (and checkpoint line) it was sent, kept
//! beside the log in `<log>.sink-<name>.cursor` and replaced atomically
//! (written to `….cursor.tmp`, synced, renamed over it, directory synced).
//!
//! ```json
//! {"v":1,"sink":"siem","event":{"seq":41,"hash":"sha256:…","file":0,"offset":18321},"checkpoints":{"start":612,"end":918,"sha256":"sha256:…"},"updated":"2026-11-23T10:00:00.000000Z"}
//! ```
//!
//! Whoever forwards to a sink holds an exclusive lock on
//! `<log>.sink-<name>.lock` meanwhile, so two processes never send the
//! same events or write the cursor at once. No cursor file means: nothing
//! sent yet, start at the log's first event. Files are opened without
//! following symbolic links.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Version of the cursor file format.
const VERSION: u32 = 1;
/// The largest cursor file read.
const MAX_CURSOR_BYTES: u64 = 64 * 1024;

/// Where a sink stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The last event sent; none before the first.
    pub event: Option<EventMark>,
    /// The last checkpoint line sent; none before the first.
    pub checkpoints: Option<CheckpointMark>,
}

/// The last event sent to a sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMark {
    /// Its `seq`.
    pub seq: u64,
    /// Its `hash` (`sha256:…`).
    pub hash: String,
    /// A hint where it was: the `seq` of the first event of the file that
    /// held it (for a rotated segment, the number in its name) ...
    pub file: u64,
    /// ... and the byte offset of its line there. Checked before use, and
    /// searched for when wrong.
    pub offset: u64,
}

/// The last checkpoint line sent to a sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointMark {
    /// Byte offset of that line in the checkpoint file.
    pub start: u64,
    /// Byte offset after it (after its newline): where the next one starts.
    pub end: u64,
    /// `sha256:` of the line, its newline included.
    pub sha256: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    v: u32,
    sink: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<EventMark>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checkpoints: Option<CheckpointMark>,
    updated: String,
}

/// Why a cursor could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// The file exists but cannot be read.
    #[error("cannot read `{}`: {reason}", path.display())]
    Unreadable {
        /// The cursor file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not a cursor of this sink.
    #[error("`{}` is not a valid cursor of this sink: {reason}", path.display())]
    Invalid {
        /// The cursor file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn beside(log: &Path, suffix: &str) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// `<log>.sink-<name>.cursor`.
pub fn path(log: &Path, sink: &str) -> PathBuf {
    beside(log, &format!(".sink-{sink}.cursor"))
}

/// `<log>.sink-<name>.lock`.
pub fn lock_path(log: &Path, sink: &str) -> PathBuf {
    beside(log, &format!(".sink-{sink}.lock"))
}

/// Every file kept for `sink` beside `log`: its cursor, the cursor's
/// temporary file, and its lock (for keeping them out of a tool's reach).
pub fn own_files(log: &Path, sink: &str) -> [PathBuf; 3] {
    let cursor = path(log, sink);
    [beside(&cursor, ".tmp"), cursor, lock_path(log, sink)]
}

fn nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// Reads the cursor of `sink` at `path`; `None` when there is none.
pub fn load(path: &Path, sink: &str) -> Result<Option<Cursor>, CursorError> {
    let unreadable =
        |e: io::Error| CursorError::Unreadable { path: path.to_owned(), reason: sandbox_audit::read::io_reason(&e) };
    let invalid = |reason: String| CursorError::Invalid { path: path.to_owned(), reason };
    let file = match OpenOptions::new().read(true).custom_flags(nofollow()).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e)),
    };
    let mut text = Vec::new();
    file.take(MAX_CURSOR_BYTES + 1).read_to_end(&mut text).map_err(unreadable)?;
    if text.len() as u64 > MAX_CURSOR_BYTES {
        return Err(invalid(format!("longer than {MAX_CURSOR_BYTES} bytes")));
    }
    let disk: OnDisk = serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
    if disk.v != VERSION {
        return Err(invalid(format!("unknown version {}", disk.v)));
    }
    if disk.sink != sink {
        return Err(invalid(format!("it belongs to sink `{}`", disk.sink.escape_debug())));
    }
    if let Some(e) = &disk.event
        && sandbox_audit::parse_hash(&e.hash).is_none()
    {
        return Err(invalid(format!("malformed event hash `{}`", e.hash.escape_debug())));
    }
    if let Some(c) = &disk.checkpoints
        && (c.start >= c.end || sandbox_audit::parse_hash(&c.sha256).is_none())
    {
        return Err(invalid("malformed checkpoint position".into()));
    }
    Ok(Some(Cursor { event: disk.event, checkpoints: disk.checkpoints }))
}

/// Replaces the cursor of `sink` at `path` atomically and durably.
pub fn store(path: &Path, sink: &str, cursor: &Cursor) -> io::Result<()> {
    let disk = OnDisk {
        v: VERSION,
        sink: sink.to_owned(),
        event: cursor.event.clone(),
        checkpoints: cursor.checkpoints.clone(),
        updated: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
    };
    let mut text = serde_json::to_vec(&disk).map_err(io::Error::other)?;
    text.push(b'\n');
    let tmp = beside(path, ".tmp");
    // A stale temporary file (or anything else there) goes first; then the
    // file is created anew, never opened through a link.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = OpenOptions::new().write(true).create_new(true).custom_flags(nofollow()).open(&tmp)?;
    f.write_all(&text)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Deletes the cursor at `path` (nothing to do when there is none).
pub fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The exclusive right to forward to one sink, held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Takes the lock at `path` without waiting: `None` when another process
/// holds it.
pub fn try_lock(path: &Path) -> io::Result<Option<Lock>> {
    let file = OpenOptions::new().read(true).write(true).create(true).custom_flags(nofollow()).open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(Lock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Cursor {
        Cursor {
            event: Some(EventMark { seq: 41, hash: format!("sha256:{}", "ab".repeat(32)), file: 0, offset: 1234 }),
            checkpoints: Some(CheckpointMark { start: 10, end: 90, sha256: format!("sha256:{}", "cd".repeat(32)) }),
        }
    }

    #[test]
    fn cursors_round_trip_and_belong_to_their_sink() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let p = path(&log, "siem");
        assert_eq!(p.file_name().unwrap(), "audit.jsonl.sink-siem.cursor");
        assert_eq!(lock_path(&log, "siem").file_name().unwrap(), "audit.jsonl.sink-siem.lock");
        assert_eq!(load(&p, "siem").unwrap(), None);
        store(&p, "siem", &sample()).unwrap();
        assert_eq!(load(&p, "siem").unwrap(), Some(sample()));
        assert!(!beside(&p, ".tmp").exists());
        store(&p, "siem", &Cursor::default()).unwrap();
        assert_eq!(load(&p, "siem").unwrap(), Some(Cursor::default()));
        let err = load(&p, "other").unwrap_err().to_string();
        assert!(err.contains("belongs to sink `siem`"), "{err}");
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert_eq!(load(&p, "siem").unwrap(), None);
    }

    #[test]
    fn broken_cursors_and_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.cursor");
        for bad in
            ["", "{}", "not json", r#"{"v":2,"sink":"s","updated":""}"#, r#"{"v":1,"sink":"s","updated":"","x":1}"#]
        {
            std::fs::write(&p, bad).unwrap();
            assert!(matches!(load(&p, "s"), Err(CursorError::Invalid { .. })), "{bad}");
        }
        std::fs::write(
            &p,
            r#"{"v":1,"sink":"s","updated":"","event":{"seq":1,"hash":"sha256:x","file":0,"offset":0}}"#,
        )
        .unwrap();
        assert!(load(&p, "s").unwrap_err().to_string().contains("malformed event hash"));
        // A link planted at the cursor is not followed, for reading or writing.
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "keep").unwrap();
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&target, &p).unwrap();
        assert!(matches!(load(&p, "s"), Err(CursorError::Unreadable { .. })));
        std::os::unix::fs::symlink(&target, beside(&p, ".tmp")).unwrap();
        store(&p, "s", &sample()).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(load(&p, "s").unwrap(), Some(sample()));
    }

    #[test]
    fn one_holder_of_the_lock_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.lock");
        let held = try_lock(&p).unwrap().unwrap();
        assert!(try_lock(&p).unwrap().is_none());
        drop(held);
        assert!(try_lock(&p).unwrap().is_some());
    }
}
