//! Signed checkpoints: a log's size and head, signed with Ed25519.
//!
//! A hash chain shows an edited, removed or inserted event, but not a log
//! cut short or rewritten whole and re-chained by someone holding the file.
//! A checkpoint fixes the log at one moment: its identity, how many events
//! it had and the hash of the last one, signed by the runtime's key. A
//! verifier holding the public key then sees a log that is shorter than a
//! checkpoint says, or whose event at a checkpoint's position has another
//! hash.
//!
//! # Format
//!
//! A checkpoint is one JSON line in the checkpoint file (by default the
//! log's path with `.checkpoints` added):
//!
//! ```text
//! {"log":"sha256:…","size":120,"head":"sha256:…","ts":"2026-11-23T09:00:00.000000Z","key":"0123456789abcdef","sig":"…"}
//! ```
//!
//! - `log`: the hash of event 0, the log's identity;
//! - `size`: the number of events (the `seq` the next event gets);
//! - `head`: the hash of the event with `seq` `size - 1`;
//! - `ts`: when the checkpoint was made (RFC 3339 UTC, microseconds);
//! - `key`: the key id, the first 16 hex digits of the SHA-256 of the
//!   32-byte public key;
//! - `sig`: the Ed25519 signature (RFC 8032, 64 bytes as 128 lowercase hex
//!   digits) over the *signed form*: the same object without `sig`, members
//!   in the order above, compact (no spaces), as `serde_json` writes it.
//!
//! The line is exactly the signed form with `,"sig":"…"` added before the
//! closing brace; a verifier refuses any other spelling.
//!
//! # Keys
//!
//! [`keygen`] writes the private key (the 32-byte Ed25519 seed as 64 hex
//! digits and a newline) with mode 0600, and the public key beside it with
//! `.pub` added (64 hex digits and a newline). [`SigningKey::load`] refuses a
//! private key that its group or others may read or write, as ssh does.

use crate::verify::{LogVerifyError, VerifyReport, verify_log};
use crate::{format_hash, hash_line, parse_hash, without_hash};
use ed25519_dalek::Signer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use zeroize::Zeroizing;

/// Hex digits of a key id.
pub const KEY_ID_LEN: usize = 16;
/// The longest checkpoint line a reader accepts (a real one is about 330
/// bytes).
const MAX_LINE: u64 = 4096;

/// Why a key could not be made or loaded. One line, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{what} `{path}`: {reason}")]
pub struct KeyError {
    /// `signing key`, `public key`.
    pub what: &'static str,
    /// The key file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

fn key_error(what: &'static str, path: &Path, reason: impl Into<String>) -> KeyError {
    KeyError { what, path: path.to_owned(), reason: reason.into() }
}

/// The key id of a public key: the first 16 hex digits of its SHA-256.
pub fn key_id(public: &ed25519_dalek::VerifyingKey) -> String {
    let digest = Sha256::digest(public.as_bytes());
    hex::encode(&digest[..KEY_ID_LEN / 2])
}

/// The private key that signs checkpoints, with its key id. Its `Debug`
/// shows the id only; the seed is wiped from memory when it is dropped.
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    id: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// A public key that checks checkpoints, with its key id.
#[derive(Debug, Clone)]
pub struct PublicKey {
    key: ed25519_dalek::VerifyingKey,
    id: String,
}

/// The file of the public key belonging to the private key at `private`:
/// the same name with `.pub` added.
pub fn public_key_path(private: &Path) -> PathBuf {
    let mut p = private.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// Reads a small key file: a regular file of at most 256 bytes, trimmed.
fn read_key_file(what: &'static str, path: &Path) -> Result<(Zeroizing<String>, std::fs::Metadata), KeyError> {
    let err = |reason: String| key_error(what, path, reason);
    // Looked at before opening, so that a FIFO cannot block the open.
    let meta = std::fs::metadata(path).map_err(|e| err(crate::read::io_reason(&e)))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    let file = File::open(path).map_err(|e| err(crate::read::io_reason(&e)))?;
    let mut text = Zeroizing::new(String::new());
    file.take(257).read_to_string(&mut text).map_err(|e| err(crate::read::io_reason(&e)))?;
    if text.len() > 256 {
        return Err(err("too long for a key file (expected 64 hex digits)".into()));
    }
    let trimmed = Zeroizing::new(text.trim().to_owned());
    Ok((trimmed, meta))
}

/// Decodes the 64 hex digits of a key file into 32 bytes.
fn decode_key(what: &'static str, path: &Path, text: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(key_error(what, path, "not hex (expected 64 hex digits, as `sandbox audit keygen` writes)"));
    }
    if text.len() != 64 {
        return Err(key_error(
            what,
            path,
            format!("wrong length: {} hex digits, expected 64 (a 32-byte Ed25519 key)", text.len()),
        ));
    }
    let mut out = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text, out.as_mut()).map_err(|e| key_error(what, path, format!("not hex ({e})")))?;
    Ok(out)
}

impl SigningKey {
    /// Loads the private key at `path`. Refused: a missing or unreadable
    /// file, anything but 64 hex digits, and a file its group or others
    /// may access (mode bits 077), as ssh refuses such keys.
    pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
        const WHAT: &str = "signing key";
        let (text, meta) = read_key_file(WHAT, path)?;
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(key_error(
                WHAT,
                path,
                format!(
                    "permissions {mode:04o} are too open: the private key must be accessible only by its owner (chmod 600 {})",
                    path.display()
                ),
            ));
        }
        let seed = decode_key(WHAT, path, &text)?;
        Ok(SigningKey::from_seed(&seed))
    }

    fn from_seed(seed: &[u8; 32]) -> SigningKey {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let id = key_id(&key.verifying_key());
        SigningKey { key, id }
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        PublicKey { key: self.key.verifying_key(), id: self.id.clone() }
    }
}

impl PublicKey {
    /// Loads the public key at `path` (64 hex digits).
    pub fn load(path: &Path) -> Result<PublicKey, KeyError> {
        const WHAT: &str = "public key";
        let (text, _) = read_key_file(WHAT, path)?;
        let bytes = decode_key(WHAT, path, &text)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| key_error(WHAT, path, "not an Ed25519 public key (not a valid curve point)"))?;
        Ok(PublicKey { id: key_id(&key), key })
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The key id the file at `path` would have if it held a private key (a
/// seed): lets a verifier given the private key by mistake say so.
pub fn seed_key_id(path: &Path) -> Option<String> {
    let (text, _) = read_key_file("key", path).ok()?;
    let seed = decode_key("key", path, &text).ok()?;
    Some(SigningKey::from_seed(&seed).id)
}

/// Makes a new key pair: the private key at `out` (mode 0600) and the
/// public key at `out.pub`. Neither file may exist. Returns the key.
pub fn keygen(out: &Path) -> Result<SigningKey, KeyError> {
    const WHAT: &str = "signing key";
    let public_path = public_key_path(out);
    for (what, p) in [(WHAT, out), ("public key", public_path.as_path())] {
        if std::fs::symlink_metadata(p).is_ok() {
            return Err(key_error(what, p, "already exists; refusing to overwrite a key (remove it first)"));
        }
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut())
        .map_err(|e| key_error(WHAT, out, format!("the system has no random numbers to give ({e})")))?;
    let key = SigningKey::from_seed(&seed);
    let write = |path: &Path, mode: u32, text: &[u8]| -> io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?;
        f.write_all(text)?;
        f.sync_all()
    };
    let mut private = Zeroizing::new(hex::encode(seed.as_ref()));
    private.push('\n');
    write(out, 0o600, private.as_bytes()).map_err(|e| {
        if e.kind() != io::ErrorKind::AlreadyExists {
            let _ = std::fs::remove_file(out);
        }
        key_error(WHAT, out, crate::read::io_reason(&e))
    })?;
    let public = format!("{}\n", hex::encode(key.key.verifying_key().as_bytes()));
    if let Err(e) = write(&public_path, 0o644, public.as_bytes()) {
        // Leave no private key without its public half.
        let _ = std::fs::remove_file(out);
        if e.kind() != io::ErrorKind::AlreadyExists {
            let _ = std::fs::remove_file(&public_path);
        }
        return Err(key_error("public key", &public_path, crate::read::io_reason(&e)));
    }
    Ok(key)
}

/// One checkpoint line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// `sha256:` of event 0: the log's identity.
    pub log: String,
    /// Number of events covered.
    pub size: u64,
    /// `sha256:` of the event with `seq` `size - 1`.
    pub head: String,
    /// When it was made, RFC 3339 UTC.
    pub ts: String,
    /// Key id of the signing key.
    pub key: String,
    /// Ed25519 signature over the signed form, hex.
    pub sig: String,
}

/// The signed form: a checkpoint without `sig`.
#[derive(Serialize)]
struct Signed<'a> {
    log: &'a str,
    size: u64,
    head: &'a str,
    ts: &'a str,
    key: &'a str,
}

impl Checkpoint {
    /// Signs a checkpoint for a log whose event 0 has hash `log`, with
    /// `size` events, the last of which has hash `head`, made at `ts`.
    pub fn sign(key: &SigningKey, log: &[u8; 32], size: u64, head: &[u8; 32], ts: SystemTime) -> Checkpoint {
        let mut cp = Checkpoint {
            log: format_hash(log),
            size,
            head: format_hash(head),
            ts: humantime::format_rfc3339_micros(ts).to_string(),
            key: key.id.clone(),
            sig: String::new(),
        };
        cp.sig = key.sign_hex(&cp.signed_form());
        cp
    }

    /// The bytes the signature covers.
    pub fn signed_form(&self) -> Vec<u8> {
        let s = Signed { log: &self.log, size: self.size, head: &self.head, ts: &self.ts, key: &self.key };
        // Plain strings and a number serialise into memory without fail.
        serde_json::to_vec(&s).unwrap_or_default()
    }

    /// The line as written (without the newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a line (without its newline): the members, their forms, and
    /// that the line is spelled exactly as [`to_line`](Self::to_line)
    /// writes it. The signature is not checked here.
    pub fn parse(line: &[u8]) -> Result<Checkpoint, String> {
        let cp: Checkpoint = serde_json::from_slice(line).map_err(|e| format!("not a checkpoint ({e})"))?;
        if parse_hash(&cp.log).is_none() {
            return Err(format!("`log` is not a `sha256:` hash: `{}`", cp.log.escape_debug()));
        }
        if parse_hash(&cp.head).is_none() {
            return Err(format!("`head` is not a `sha256:` hash: `{}`", cp.head.escape_debug()));
        }
        if cp.size == 0 {
            return Err("`size` is 0".into());
        }
        if humantime::parse_rfc3339(&cp.ts).is_err() {
            return Err(format!("`ts` is not an RFC 3339 UTC time: `{}`", cp.ts.escape_debug()));
        }
        let lower_hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !lower_hex(&cp.key, KEY_ID_LEN) {
            return Err(format!("`key` is not a key id (16 hex digits): `{}`", cp.key.escape_debug()));
        }
        if !lower_hex(&cp.sig, 128) {
            return Err("`sig` is not an Ed25519 signature (128 hex digits)".into());
        }
        if cp.to_line().as_bytes() != line {
            return Err("not written in the canonical form (edited?)".into());
        }
        Ok(cp)
    }

    /// Whether `sig` is a valid signature of the signed form under `key`
    /// (strict verification: no malleable or small-order forms).
    pub fn signature_valid(&self, key: &PublicKey) -> bool {
        key.verifies(&self.signed_form(), &self.sig)
    }
}

impl SigningKey {
    /// An Ed25519 signature of `message`, as 128 lowercase hex digits.
    pub(crate) fn sign_hex(&self, message: &[u8]) -> String {
        hex::encode(self.key.sign(message).to_bytes())
    }
}

impl PublicKey {
    /// Whether `sig` (128 hex digits) is a valid signature of `message`
    /// (strict verification: no malleable or small-order forms).
    pub(crate) fn verifies(&self, message: &[u8], sig: &str) -> bool {
        let mut raw = [0u8; 64];
        if hex::decode_to_slice(sig, &mut raw).is_err() {
            return false;
        }
        let sig = ed25519_dalek::Signature::from_bytes(&raw);
        self.key.verify_strict(message, &sig).is_ok()
    }
}

/// Why a checkpoint could not be written. The runtime treats it as an
/// audit failure: the run stops (exit 126).
#[derive(Debug, thiserror::Error)]
#[error("checkpoint file `{path}`: {reason}")]
pub struct CheckpointError {
    /// The checkpoint file.
    pub path: PathBuf,
    /// What failed.
    pub reason: String,
}

/// Where a log's chain stands, as the checkpoint writer is told after a
/// sync: the number of events and the hash of the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Number of events (the `seq` of the next one).
    pub size: u64,
    /// Hash of the event with `seq` `size - 1`.
    pub head: [u8; 32],
}

/// Writes the checkpoints of one log: after syncs that cross a multiple of
/// `every` events, and at milestones (the end of a task).
#[derive(Debug)]
pub struct Checkpointer {
    key: SigningKey,
    log: PathBuf,
    path: PathBuf,
    file: File,
    every: u64,
    lock_wait: Duration,
    /// Hash of event 0, once known.
    identity: Option<[u8; 32]>,
    /// The size at the last sync looked at.
    seen: u64,
    /// The largest size known to be checkpointed in the file.
    covered: u64,
}

impl Checkpointer {
    /// Opens (or creates) the checkpoint file `path` of the log at `log`,
    /// whose chain stands at `size` events now. A checkpoint is due when a
    /// sync crosses a multiple of `every` (at least 1) events. Waits at
    /// most `lock_wait` for another writer's lock on the file.
    pub fn open(
        key: SigningKey,
        log: &Path,
        path: &Path,
        every: u64,
        size: u64,
        lock_wait: Duration,
    ) -> Result<Checkpointer, CheckpointError> {
        let err = |reason: String| CheckpointError { path: path.to_owned(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("cannot create its directory: {}", crate::read::io_reason(&e))))?;
        }
        if let Ok(meta) = std::fs::metadata(path)
            && !meta.is_file()
        {
            return Err(err("not a regular file".into()));
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o644)
            .open(path)
            .map_err(|e| err(format!("cannot open it: {}", crate::read::io_reason(&e))))?;
        // Signing over a prune this key did not sign would vouch for a
        // deletion nobody proved.
        crate::prune::check_signed(log, &key.public()).map_err(err)?;
        Ok(Checkpointer {
            key,
            log: log.to_owned(),
            path: path.to_owned(),
            file,
            every: every.max(1),
            lock_wait,
            identity: None,
            seen: size,
            covered: 0,
        })
    }

    /// The checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This writer as the log's sync hook ([`crate::AuditLog::set_sync_hook`]).
    pub fn into_hook(mut self) -> crate::log::SyncHook {
        Box::new(move |size, head, milestone| {
            self.synced(Position { size, head }, milestone).map(drop).map_err(|e| e.to_string())
        })
    }

    /// Told after a sync made every event up to `at` durable: writes a
    /// checkpoint when the sync crossed a multiple of `every` events, or
    /// when `milestone` is set, unless the file already covers `at.size`.
    /// Returns whether one was written.
    pub fn synced(&mut self, at: Position, milestone: bool) -> Result<bool, CheckpointError> {
        let crossed = at.size / self.every > self.seen / self.every;
        self.seen = self.seen.max(at.size);
        if at.size == 0 || at.size <= self.covered || !(crossed || milestone) {
            return Ok(false);
        }
        self.write(at)
    }

    fn err(&self, reason: String) -> CheckpointError {
        CheckpointError { path: self.path.clone(), reason }
    }

    fn io(&self, what: &str, e: &io::Error) -> CheckpointError {
        self.err(format!("{what}: {}", crate::read::io_reason(e)))
    }

    /// Appends one checkpoint under the file's lock, then syncs it.
    fn write(&mut self, at: Position) -> Result<bool, CheckpointError> {
        let identity = match self.identity {
            Some(id) => id,
            None => {
                let id = log_identity(&self.log).map_err(|reason| self.err(reason))?;
                self.identity = Some(id);
                id
            }
        };
        lock_within(&self.file, self.lock_wait).map_err(|reason| self.err(reason))?;
        let result = self.append_locked(identity, at);
        // Closing the file releases the lock too; nothing to repair here.
        let _ = self.file.unlock();
        result
    }

    fn append_locked(&mut self, identity: [u8; 32], at: Position) -> Result<bool, CheckpointError> {
        let len = self.file.metadata().map_err(|e| self.io("cannot stat it", &e))?.len();
        let (len, last) = self.tail(len)?;
        // Another run on the same log may have checkpointed further already:
        // sizes in the file never go back.
        if let Some(last) = last.as_deref().and_then(|l| Checkpoint::parse(l).ok())
            && last.size >= at.size
            && parse_hash(&last.log) == Some(identity)
        {
            self.covered = last.size;
            return Ok(false);
        }
        let cp = Checkpoint::sign(&self.key, &identity, at.size, &at.head, SystemTime::now());
        let mut line = cp.to_line().into_bytes();
        line.push(b'\n');
        if let Err(e) = self.file.write_all(&line) {
            let _ = self.file.set_len(len);
            return Err(self.io("cannot write it", &e));
        }
        self.file.sync_data().map_err(|e| self.io("cannot sync it", &e))?;
        self.covered = at.size;
        Ok(true)
    }

    /// The file's last complete line. An incomplete last line (a crash
    /// while it was written) is cut off first. Returns the length after
    /// that and the line.
    fn tail(&mut self, len: u64) -> Result<(u64, Option<Vec<u8>>), CheckpointError> {
        if len == 0 {
            return Ok((0, None));
        }
        let take = len.min(2 * MAX_LINE);
        let mut buf = vec![0; take as usize];
        self.file.seek(SeekFrom::Start(len - take)).map_err(|e| self.io("cannot read it", &e))?;
        self.file.read_exact(&mut buf).map_err(|e| self.io("cannot read it", &e))?;
        let mut len = len;
        if buf.last() != Some(&b'\n') {
            let keep = match buf.iter().rposition(|b| *b == b'\n') {
                Some(i) => i + 1,
                None if take == len => 0,
                None => return Err(self.err(format!("its last line is longer than {MAX_LINE} bytes"))),
            };
            let cut = buf.len() - keep;
            tracing::warn!(path = %self.path.display(), bytes = cut, "cutting an incomplete last checkpoint line");
            len -= cut as u64;
            self.file.set_len(len).map_err(|e| self.io("cannot cut its incomplete last line", &e))?;
            buf.truncate(keep);
        }
        let Some(body) = buf.strip_suffix(b"\n") else { return Ok((len, None)) };
        let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        Ok((len, Some(body[start..].to_vec())))
    }
}

/// Takes the exclusive lock on `file`, waiting at most `wait`.
fn lock_within(file: &File, wait: Duration) -> Result<(), String> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {
                let waited = start.elapsed();
                if waited >= wait {
                    return Err(format!("could not lock it within {}", humantime::format_duration(waited)));
                }
                std::thread::sleep(pause.min(wait - waited));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock it: {}", crate::read::io_reason(&e)));
            }
        }
    }
}

/// The identity of the log at `log`: the hash of its event 0 (read from
/// its first segment, or the live file, and checked against its content).
/// For a log whose first segments were pruned ([`mod@crate::prune`]) it is the
/// identity its last prune record carries over, when that record names the
/// `seq` and `prev` the log now starts with.
pub fn log_identity(log: &Path) -> Result<[u8; 32], String> {
    let files = crate::read::files(log).map_err(|e| e.to_string())?;
    let first = files.first().ok_or_else(|| format!("audit log `{}`: it has no events", log.display()))?;
    let bad = |reason: &str| format!("audit log `{}`: {reason}", first.display());
    let f = File::open(first).map_err(|e| bad(&crate::read::io_reason(&e)))?;
    let mut line = Vec::new();
    BufReader::new(f.take(256 * 1024)).read_until(b'\n', &mut line).map_err(|e| bad(&crate::read::io_reason(&e)))?;
    if line.pop() != Some(b'\n') {
        return Err(bad("its first line is not a complete event"));
    }
    #[derive(Deserialize)]
    struct First {
        seq: u64,
        prev: String,
        hash: String,
    }
    let ev: First = serde_json::from_slice(&line).map_err(|e| bad(&format!("its first line is not an event ({e})")))?;
    let hash = parse_hash(&ev.hash).ok_or_else(|| bad("its first event has a malformed hash"))?;
    if without_hash(&line).map(hash_line) != Some(hash) {
        return Err(bad("its first event does not match its hash"));
    }
    if ev.seq == 0 {
        return Ok(hash);
    }
    let record = crate::prune::last_record(log).map_err(|e| e.to_string())?;
    match record {
        Some((r, _, _)) if r.start_at(ev.seq).is_some_and(|p| parse_hash(&ev.prev) == Some(p)) => parse_hash(&r.log)
            .ok_or_else(|| {
                format!("`{}`: its last record has a malformed `log`", crate::prune::record_path(log).display())
            }),
        _ => Err(bad(&format!(
            "its first event has seq {}, and no prune record accounts for the events before it: the log's identity is unknown",
            ev.seq
        ))),
    }
}

/// A log and its checkpoints that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointReport {
    /// The log's own chain.
    pub chain: VerifyReport,
    /// Key id of the public key the checkpoints verified under.
    pub key: String,
    /// Number of checkpoints verified (complete lines of the file).
    pub checkpoints: u64,
    /// The latest checkpoint (the largest `size`).
    pub latest: Checkpoint,
    /// Events after the latest checkpoint: not covered by any signature.
    pub uncovered: u64,
    /// The 1-based line number of an incomplete last line that was
    /// ignored (a crash while it was written).
    pub torn_line: Option<u64>,
    /// Every checkpoint verified, as (`size`, `ts`), in file order.
    pub signed: Vec<(u64, String)>,
    /// Checkpoints whose last event was pruned away ([`mod@crate::prune`]):
    /// their signature and the log's identity were checked, their `head`
    /// only where the last prune record names that event's hash.
    pub pruned: u64,
}

/// Whether the prune record a pruned log starts after proves itself: signed
/// by the checkpoint key, and resting on a checkpoint (among the verified
/// `claims`) that covers every removed event and is at least the
/// retention older than the prune.
fn prune_proven(r: &crate::prune::PruneRecord, claims: &[Claim], key: &PublicKey) -> Result<(), String> {
    match (&r.key, &r.sig) {
        (None, _) | (_, None) => {
            return Err(format!(
                "the log starts after a prune that is not signed: with signed checkpoints a prune must be signed with their key ({}); this one was made without it, or forged",
                key.id()
            ));
        }
        (Some(id), Some(_)) if id != key.id() => {
            return Err(format!("the prune is signed by key {id}, not by the checkpoint key {}", key.id()));
        }
        _ if !r.signed_by(key) => return Err("the prune record's signature does not verify (edited or forged)".into()),
        _ => {}
    }
    // That the record agrees with its own times (the proof's included)
    // was checked by `verify_log` before the log could start after it.
    let Some(proof) = &r.proof else {
        return Err("the signed prune names no checkpoint that proves the removed events old enough".into());
    };
    if !claims.iter().any(|c| c.size == proof.size && c.ts == proof.ts) {
        return Err(format!(
            "the checkpoint its proof names ({} events, signed at {}) is not among the signed checkpoints",
            proof.size, proof.ts
        ));
    }
    Ok(())
}

/// The hashes of removed events that a prune record names: the last event
/// of each removed segment, and the one before the first kept event.
fn pruned_heads(r: &crate::prune::PruneRecord) -> BTreeMap<u64, [u8; 32]> {
    let mut out = BTreeMap::new();
    for s in &r.segments {
        if let Some(h) = parse_hash(&s.head) {
            out.insert(s.last, h);
        }
    }
    if let (Some(seq), Some(h)) = (r.first_kept.checked_sub(1), parse_hash(&r.prev)) {
        out.insert(seq, h);
    }
    out
}

/// What is wrong with one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointProblem {
    /// The line is not a well-formed checkpoint.
    #[error("checkpoint at line {line} is malformed: {reason}")]
    Malformed {
        /// 1-based line in the checkpoint file.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// Its key id is not the given public key's.
    #[error("signed by another key: checkpoint at line {line} names key {found}, the public key given is {given}")]
    OtherKey {
        /// 1-based line in the checkpoint file.
        line: u64,
        /// The key id the checkpoint names.
        found: String,
        /// The key id of the public key given.
        given: String,
    },
    /// The signature does not verify.
    #[error("checkpoint file edited (bad signature): checkpoint at line {line} is not signed by key {key}")]
    BadSignature {
        /// 1-based line in the checkpoint file.
        line: u64,
        /// The key id.
        key: String,
    },
    /// A checkpoint names fewer events than one before it.
    #[error(
        "checkpoints out of order: checkpoint at line {line} says {size} events, the one at line {before_line} said {before}"
    )]
    Decreasing {
        /// 1-based line in the checkpoint file.
        line: u64,
        /// Its size.
        size: u64,
        /// The line of the larger one before it.
        before_line: u64,
        /// Its size.
        before: u64,
    },
    /// The log's event 0 is not the one the checkpoint names.
    #[error("another log: event 0 has hash {found}, checkpoint at line {line} says {expected}")]
    OtherLog {
        /// 1-based line in the checkpoint file.
        line: u64,
        /// The log's event 0 hash.
        found: String,
        /// The checkpoint's `log`.
        expected: String,
    },
    /// The log has fewer events than the checkpoint says.
    #[error("log cut short: checkpoint at line {line} says {size} events, the log has {events}")]
    CutShort {
        /// 1-based line in the checkpoint file.
        line: u64,
        /// The checkpoint's size.
        size: u64,
        /// Events in the log.
        events: u64,
    },
    /// The event at the checkpoint's position has another hash.
    #[error("rewritten history: event {seq} has hash {found}, checkpoint at line {line} says {expected}")]
    Rewritten {
        /// 1-based line in the checkpoint file.
        line: u64,
        /// `size - 1`.
        seq: u64,
        /// The log's hash at `seq`.
        found: String,
        /// The checkpoint's `head`.
        expected: String,
    },
}

impl CheckpointProblem {
    /// The 1-based line of the checkpoint at fault.
    pub fn line(&self) -> u64 {
        match self {
            CheckpointProblem::Malformed { line, .. }
            | CheckpointProblem::OtherKey { line, .. }
            | CheckpointProblem::BadSignature { line, .. }
            | CheckpointProblem::Decreasing { line, .. }
            | CheckpointProblem::OtherLog { line, .. }
            | CheckpointProblem::CutShort { line, .. }
            | CheckpointProblem::Rewritten { line, .. } => *line,
        }
    }
}

/// Why a log and its checkpoints did not verify.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointVerifyError {
    /// The log itself could not be read, or its chain is broken.
    #[error(transparent)]
    Log(#[from] LogVerifyError),
    /// The checkpoint file could not be read.
    #[error("checkpoint file `{}`: {reason}", path.display())]
    Read {
        /// The checkpoint file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The checkpoint file holds no complete checkpoint.
    #[error("checkpoint file `{}` holds no checkpoint: nothing vouches for the log", path.display())]
    Empty {
        /// The checkpoint file.
        path: PathBuf,
    },
    /// The prune the log starts after is not signed with the checkpoint
    /// key, or not proven old enough by a signed checkpoint.
    #[error("prune record `{}` line {line}: {reason}", path.display())]
    Prune {
        /// The prune record file.
        path: PathBuf,
        /// 1-based line of the record.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The first bad checkpoint.
    #[error("checkpoint file `{}`: {problem}", path.display())]
    Bad {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong, and at which line.
        problem: CheckpointProblem,
    },
}

/// A checkpoint whose signature verified, as far as the log pass needs it.
struct Claim {
    line: u64,
    size: u64,
    log: [u8; 32],
    head: [u8; 32],
    ts: String,
}

/// Verifies the log at `log` (its segments and live file, as one chain)
/// and every checkpoint in `checkpoints` under `key`: each signature, its
/// key id, that sizes never go back, that the log's event 0 is the one
/// named, that the log has at least `size` events and that the event at
/// `size - 1` has the hash named. The log is read once and not held in
/// memory. The first bad checkpoint (by line) is reported. An incomplete
/// last line in the checkpoint file is ignored and reported in
/// [`CheckpointReport::torn_line`]. For a pruned log the identity is the
/// one its prune record carries ([`log_identity`]), and a checkpoint whose
/// last event was pruned away is counted in [`CheckpointReport::pruned`].
pub fn verify_checkpoints(
    log: &Path,
    checkpoints: &Path,
    key: &PublicKey,
) -> Result<CheckpointReport, CheckpointVerifyError> {
    let read_err =
        |e: &io::Error| CheckpointVerifyError::Read { path: checkpoints.to_owned(), reason: crate::read::io_reason(e) };
    let bad = |problem: CheckpointProblem| CheckpointVerifyError::Bad { path: checkpoints.to_owned(), problem };
    let meta = std::fs::metadata(checkpoints).map_err(|e| read_err(&e))?;
    if !meta.is_file() {
        return Err(CheckpointVerifyError::Read { path: checkpoints.to_owned(), reason: "not a regular file".into() });
    }
    let mut reader = BufReader::new(File::open(checkpoints).map_err(|e| read_err(&e))?);

    // Pass 1 over the checkpoint file: forms, keys, signatures, order. The
    // first problem here ends the pass; claims before it are still checked
    // against the log, since one of them may be the first bad line.
    let mut claims: Vec<Claim> = Vec::new();
    let mut first_problem: Option<CheckpointProblem> = None;
    let mut torn_line = None;
    let mut latest: Option<(u64, Checkpoint)> = None;
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut reader).take(MAX_LINE + 1).read_until(b'\n', &mut buf).map_err(|e| read_err(&e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if buf.pop() != Some(b'\n') {
            if n as u64 > MAX_LINE {
                first_problem = Some(CheckpointProblem::Malformed {
                    line: line_no,
                    reason: format!("longer than {MAX_LINE} bytes"),
                });
                break;
            }
            // No newline: the last line, cut short by a crash mid-write.
            torn_line = Some(line_no);
            break;
        }
        let cp = match Checkpoint::parse(&buf) {
            Ok(cp) => cp,
            Err(reason) => {
                first_problem = Some(CheckpointProblem::Malformed { line: line_no, reason });
                break;
            }
        };
        if cp.key != key.id {
            first_problem =
                Some(CheckpointProblem::OtherKey { line: line_no, found: cp.key.clone(), given: key.id.clone() });
            break;
        }
        if !cp.signature_valid(key) {
            first_problem = Some(CheckpointProblem::BadSignature { line: line_no, key: key.id.clone() });
            break;
        }
        if let Some((before_line, before)) = &latest
            && cp.size < before.size
        {
            first_problem = Some(CheckpointProblem::Decreasing {
                line: line_no,
                size: cp.size,
                before_line: *before_line,
                before: before.size,
            });
            break;
        }
        let (Some(log_hash), Some(head)) = (parse_hash(&cp.log), parse_hash(&cp.head)) else {
            // `Checkpoint::parse` checked both forms already.
            first_problem = Some(CheckpointProblem::Malformed { line: line_no, reason: "bad hash".into() });
            break;
        };
        claims.push(Claim { line: line_no, size: cp.size, log: log_hash, head, ts: cp.ts.clone() });
        latest = Some((line_no, cp));
    }

    // Pass 2 over the log: the hash at every position a claim names.
    let mut wanted: BTreeMap<u64, Option<[u8; 32]>> = BTreeMap::new();
    wanted.insert(0, None);
    for c in &claims {
        wanted.insert(c.size - 1, None);
    }
    let chain = verify_log(log, |checked, _| {
        if let Some(slot) = wanted.get_mut(&checked.seq) {
            *slot = Some(checked.hash);
        }
    })?;
    // The `seq` the next event gets: the log's size as checkpoints count it.
    let end = chain.first_seq + chain.events;
    // A pruned log (verify_log checked that its last prune record is
    // vouched for by the chain) carries its identity in that record, which
    // also names the hashes of a few removed events.
    let mut unproven_prune = None;
    let (identity, removed) = if chain.first_seq == 0 {
        (wanted.get(&0).copied().flatten(), BTreeMap::new())
    } else {
        match crate::prune::last_record(log).map_err(LogVerifyError::from)? {
            Some((r, _, line)) => {
                // Reported after the checkpoints themselves, which may show
                // more precisely what was rewritten.
                if let Err(reason) = prune_proven(&r, &claims, key) {
                    unproven_prune =
                        Some(CheckpointVerifyError::Prune { path: crate::prune::record_path(log), line, reason });
                }
                (parse_hash(&r.log), pruned_heads(&r))
            }
            None => (None, BTreeMap::new()),
        }
    };
    let mut pruned = 0;
    for c in &claims {
        if let Some(found) = identity
            && found != c.log
        {
            return Err(bad(CheckpointProblem::OtherLog {
                line: c.line,
                found: format_hash(&found),
                expected: format_hash(&c.log),
            }));
        }
        if c.size > end || identity.is_none() {
            return Err(bad(CheckpointProblem::CutShort { line: c.line, size: c.size, events: end }));
        }
        let seq = c.size - 1;
        let found = if seq >= chain.first_seq {
            wanted.get(&seq).copied().flatten()
        } else {
            pruned += 1;
            match removed.get(&seq) {
                Some(h) => Some(*h),
                // Pruned away and not named by the record: nothing to compare.
                None => continue,
            }
        };
        if found != Some(c.head) {
            return Err(bad(CheckpointProblem::Rewritten {
                line: c.line,
                seq,
                found: found.map(|h| format_hash(&h)).unwrap_or_else(|| "(none)".into()),
                expected: format_hash(&c.head),
            }));
        }
    }
    if let Some(problem) = first_problem {
        return Err(bad(problem));
    }
    if let Some(e) = unproven_prune {
        return Err(e);
    }
    let Some((_, latest)) = latest else {
        return Err(CheckpointVerifyError::Empty { path: checkpoints.to_owned() });
    };
    Ok(CheckpointReport {
        signed: claims.iter().map(|c| (c.size, c.ts.clone())).collect(),
        uncovered: end - latest.size,
        pruned,
        chain,
        key: key.id.clone(),
        checkpoints: claims.len() as u64,
        latest,
        torn_line,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::AuditLog;
    use crate::tests::event;
    use std::os::unix::fs::PermissionsExt;

    const WAIT: Duration = Duration::from_secs(2);

    fn append(log: &mut AuditLog, prefix: &str, n: usize) {
        for i in 0..n {
            log.record(&event(&format!("{prefix}{i}")));
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn lines(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p).unwrap().lines().map(str::to_owned).collect()
    }

    /// A key pair in `dir`: (private path, key, public key).
    fn pair(dir: &Path, name: &str) -> (PathBuf, SigningKey, PublicKey) {
        let path = dir.join(name);
        let key = keygen(&path).unwrap();
        let public = PublicKey::load(&public_key_path(&path)).unwrap();
        (path, key, public)
    }

    /// A log of `n` events with a checkpoint writer (every `every`) hooked
    /// in; the last sync is a milestone.
    fn checkpointed_log(dir: &Path, key: SigningKey, n: usize, every: u64) -> (PathBuf, PathBuf) {
        let path = dir.join("audit.jsonl");
        let cp = dir.join("audit.jsonl.checkpoints");
        let mut log = AuditLog::open(&path, WAIT).unwrap();
        let cps = Checkpointer::open(key, &path, &cp, every, log.head().0, WAIT).unwrap();
        log.set_sync_hook(cps.into_hook());
        for i in 0..n {
            log.record(&event(&format!("src/{i}")));
            log.sync().unwrap();
        }
        log.sync_milestone().unwrap();
        (path, cp)
    }

    #[test]
    fn keygen_writes_a_private_key_only_its_owner_may_read_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (path, key, public) = pair(dir.path(), "audit.key");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&public_key_path(&path)) & 0o600, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() == 65 && text.ends_with('\n') && text[..64].bytes().all(|b| b.is_ascii_hexdigit()));
        let pub_text = std::fs::read_to_string(public_key_path(&path)).unwrap();
        assert_eq!(pub_text.trim().len(), 64);
        assert_ne!(text.trim(), pub_text.trim(), "the public file must not hold the seed");
        // Key id: the first 16 hex digits of SHA-256 of the 32 public bytes.
        let raw = hex::decode(pub_text.trim()).unwrap();
        assert_eq!(public.id(), &hex::encode(Sha256::digest(&raw))[..16]);
        assert_eq!(key.id(), public.id());
        assert_eq!(SigningKey::load(&path).unwrap().id(), key.id());
        assert!(!format!("{key:?}").contains(text.trim()), "Debug must not show the seed");

        let before = std::fs::read(&path).unwrap();
        let err = keygen(&path).unwrap_err().to_string();
        assert!(err.contains("already exists; refusing to overwrite"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        // Only the .pub exists: still refused, and no private key is left.
        let other = dir.path().join("other.key");
        std::fs::write(public_key_path(&other), "x").unwrap();
        let err = keygen(&other).unwrap_err().to_string();
        assert!(err.contains("other.key.pub`: already exists"), "{err}");
        assert!(!other.exists());
        // Two keys are different keys.
        let (_, second, _) = pair(dir.path(), "second.key");
        assert_ne!(second.id(), key.id());
    }

    #[test]
    fn bad_key_files_are_refused_with_one_line_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _, _) = pair(dir.path(), "audit.key");
        let at = |name: &str, text: &str, mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        let signing = |p: &Path| SigningKey::load(p).unwrap_err().to_string();
        let missing = signing(&dir.path().join("nope.key"));
        assert!(missing.starts_with("signing key `") && missing.ends_with("nope.key`: no such file or directory"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let open = signing(&path);
        assert!(open.contains("permissions 0640 are too open") && open.contains("chmod 600"), "{open}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o604)).unwrap();
        assert!(signing(&path).contains("permissions 0604 are too open"));
        let short = signing(&at("short.key", "abcd\n", 0o600));
        assert!(short.contains("wrong length: 4 hex digits, expected 64"), "{short}");
        let nothex = signing(&at("nothex.key", &"zz".repeat(32), 0o600));
        assert!(nothex.contains("not hex"), "{nothex}");
        let long = signing(&at("long.key", &"a".repeat(300), 0o600));
        assert!(long.contains("too long"), "{long}");
        assert!(signing(dir.path()).contains("not a regular file"));
        for msg in [missing, open, short, nothex, long] {
            assert!(!msg.contains('\n'), "{msg}");
        }
        let public = |p: &Path| PublicKey::load(p).unwrap_err().to_string();
        assert!(public(&at("p1.pub", "abc", 0o644)).contains("wrong length"));
        // A y coordinate with no point on the curve.
        let not_point = (0u8..=255)
            .map(|b| {
                let mut bytes = [0u8; 32];
                bytes[0] = b;
                bytes[1] = 1;
                hex::encode(bytes)
            })
            .find(|h| {
                let mut a = [0u8; 32];
                hex::decode_to_slice(h, &mut a).unwrap();
                ed25519_dalek::VerifyingKey::from_bytes(&a).is_err()
            })
            .unwrap();
        assert!(public(&at("p2.pub", &not_point, 0o644)).contains("not an Ed25519 public key"));
    }

    #[test]
    fn a_checkpoint_signs_its_canonical_form_and_any_edit_breaks_it() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key, public) = pair(dir.path(), "k");
        let (_, _, other) = pair(dir.path(), "other");
        let cp = Checkpoint::sign(&key, &[1; 32], 120, &[2; 32], SystemTime::UNIX_EPOCH);
        let line = cp.to_line();
        assert!(line.starts_with(&format!(
            "{{\"log\":\"sha256:{}\",\"size\":120,\"head\":\"sha256:{}\",\"ts\":\"1970-01-01T00:00:00.000000Z\",\"key\":\"{}\",\"sig\":\"",
            "01".repeat(32),
            "02".repeat(32),
            key.id()
        )));
        assert_eq!(&cp.signed_form()[..], line[..line.find(",\"sig\"").unwrap()].to_owned().add_brace().as_bytes());
        let parsed = Checkpoint::parse(line.as_bytes()).unwrap();
        assert_eq!(parsed, cp);
        assert!(parsed.signature_valid(&public));
        assert!(!parsed.signature_valid(&other));
        for (from, to) in [("\"size\":120", "\"size\":121"), ("T00:00:00", "T00:00:01"), ("sha256:0101", "sha256:0102")]
        {
            let edited = Checkpoint::parse(line.replacen(from, to, 1).as_bytes()).unwrap();
            assert!(!edited.signature_valid(&public), "{from} -> {to}");
        }
        let malformed = |l: String| Checkpoint::parse(l.as_bytes()).unwrap_err();
        assert!(malformed(line.replace(",\"size\"", ", \"size\"")).contains("canonical form"));
        assert!(malformed(line.replace("\"size\":120", "\"size\":0")).contains("`size` is 0"));
        assert!(malformed(line.replace("}", ",\"x\":1}")).contains("unknown field"));
        assert!(malformed(line.replace("\"key\":\"", "\"key\":\"A")).contains("`key` is not a key id"));
        assert!(malformed(line.replace("sha256:0101", "md5:0101")).contains("`log` is not"));
    }

    trait AddBrace {
        fn add_brace(self) -> String;
    }

    impl AddBrace for String {
        fn add_brace(mut self) -> String {
            self.push('}');
            self
        }
    }

    #[test]
    fn the_writer_checkpoints_every_n_events_and_at_milestones_only_once_per_size() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key, public) = pair(dir.path(), "k");
        let (log, cp) = checkpointed_log(dir.path(), key, 7, 3);
        let sizes: Vec<u64> = lines(&cp).iter().map(|l| Checkpoint::parse(l.as_bytes()).unwrap().size).collect();
        assert_eq!(sizes, [3, 6, 7], "at 3 and 6 events, and the milestone at 7");
        let report = verify_checkpoints(&log, &cp, &public).unwrap();
        assert_eq!((report.checkpoints, report.latest.size, report.uncovered, report.torn_line), (3, 7, 0, None));
        assert_eq!(report.chain.events, 7);
        assert_eq!(report.latest.head, report.chain.head);

        // A second writer on the same log: a milestone at an unchanged size
        // adds nothing; a batch crossing two multiples writes one.
        let mut w = AuditLog::open(&log, WAIT).unwrap();
        let (_, key2, _) = (0, SigningKey::load(&dir.path().join("k")).unwrap(), 0);
        w.set_sync_hook(Checkpointer::open(key2, &log, &cp, 3, w.head().0, WAIT).unwrap().into_hook());
        w.sync_milestone().unwrap();
        assert_eq!(lines(&cp).len(), 3);
        append(&mut w, "more/", 6);
        w.sync().unwrap();
        let last = Checkpoint::parse(lines(&cp).last().unwrap().as_bytes()).unwrap();
        assert_eq!((lines(&cp).len(), last.size), (4, 13));
        let report = verify_checkpoints(&log, &cp, &public).unwrap();
        assert_eq!((report.checkpoints, report.uncovered), (4, 0));
        // Events after the last checkpoint are counted, not covered.
        append(&mut w, "late/", 2);
        w.write().unwrap();
        assert_eq!(verify_checkpoints(&log, &cp, &public).unwrap().uncovered, 2);
    }

    #[test]
    fn the_writer_cuts_a_torn_last_line_and_never_writes_a_smaller_size_after_a_larger() {
        let dir = tempfile::tempdir().unwrap();
        let (keyfile, key, public) = pair(dir.path(), "k");
        let (log, cp) = checkpointed_log(dir.path(), key, 4, 100);
        let good = std::fs::read_to_string(&cp).unwrap();
        assert_eq!(good.lines().count(), 1);
        // A crash while a checkpoint was written leaves half a line.
        std::fs::write(&cp, format!("{good}{}", &good[..40])).unwrap();
        let report = verify_checkpoints(&log, &cp, &public).unwrap();
        assert_eq!((report.checkpoints, report.torn_line), (1, Some(2)));

        let mut w = AuditLog::open(&log, WAIT).unwrap();
        let writer = Checkpointer::open(SigningKey::load(&keyfile).unwrap(), &log, &cp, 100, w.head().0, WAIT).unwrap();
        w.set_sync_hook(writer.into_hook());
        append(&mut w, "x/", 2);
        w.sync_milestone().unwrap();
        let ls = lines(&cp);
        assert_eq!(ls.len(), 2, "the torn line is gone, the new checkpoint follows");
        assert_eq!(ls[0], good.trim_end());
        assert_eq!(Checkpoint::parse(ls[1].as_bytes()).unwrap().size, 6);
        assert_eq!(verify_checkpoints(&log, &cp, &public).unwrap().torn_line, None);

        // Another run checkpointed further meanwhile: this writer's smaller
        // size is not written after it.
        let (_, head) = w.head();
        let ahead = Checkpoint::sign(
            &SigningKey::load(&keyfile).unwrap(),
            &log_identity(&log).unwrap(),
            50,
            &head,
            SystemTime::now(),
        );
        std::fs::write(&cp, format!("{}\n{}\n", ls.join("\n"), ahead.to_line())).unwrap();
        append(&mut w, "y/", 1);
        w.sync_milestone().unwrap();
        assert_eq!(lines(&cp).len(), 3);
    }

    #[test]
    fn a_pruned_log_keeps_its_identity_for_writers_and_verifiers() {
        let dir = tempfile::tempdir().unwrap();
        let (keyfile, key, public) = pair(dir.path(), "k");
        let path = dir.path().join("audit.jsonl");
        let cp = dir.path().join("audit.jsonl.checkpoints");
        let mut log = AuditLog::open(&path, WAIT).unwrap();
        log.set_rotate(Some(1024));
        log.set_sync_hook(Checkpointer::open(key, &path, &cp, 4, 0, WAIT).unwrap().into_hook());
        for i in 0..24 {
            log.record(&event(&format!("old/{i}")));
            log.sync().unwrap();
        }
        log.sync_milestone().unwrap();
        drop(log);
        let identity = log_identity(&path).unwrap();
        // Old enough for a retention of one second.
        std::thread::sleep(Duration::from_millis(1300));
        let req = crate::PruneRequest {
            before: SystemTime::now() - Duration::from_millis(1100),
            retention: Some(crate::Retention::parse("1s").unwrap()),
            origin: crate::Origin { task: "prune".into(), user: "ops".into(), ..crate::Origin::default() },
            lock_wait: WAIT,
            signing: Some(crate::prune::PruneSigning {
                key: std::sync::Arc::new(SigningKey::load(&keyfile).unwrap()),
                checkpoints: cp.clone(),
            }),
        };
        let record = crate::prune(&path, &req).unwrap().record.unwrap();
        assert!(record.signed_by(&public) && record.proof.is_some(), "{record:?}");
        assert!(record.first_kept > 4, "{record:?}");

        // Event 0 is gone; the identity is the one the prune record carries.
        assert_eq!(log_identity(&path).unwrap(), identity);
        let report = verify_checkpoints(&path, &cp, &public).unwrap();
        assert_eq!(report.chain.first_seq, record.first_kept);
        assert!(report.pruned >= 1 && report.pruned < report.checkpoints, "{report:?}");
        assert_eq!(report.latest.size, 24);
        assert_eq!(report.uncovered, 1, "the prune's own finding");

        // A writer on the pruned log goes on checkpointing it.
        let mut w = AuditLog::open(&path, WAIT).unwrap();
        let writer = Checkpointer::open(SigningKey::load(&keyfile).unwrap(), &path, &cp, 4, w.head().0, WAIT).unwrap();
        w.set_sync_hook(writer.into_hook());
        append(&mut w, "new/", 3);
        w.sync_milestone().unwrap();
        let report = verify_checkpoints(&path, &cp, &public).unwrap();
        assert_eq!((report.latest.size, report.uncovered), (28, 0));
        assert_eq!(Checkpoint::parse(lines(&cp).last().unwrap().as_bytes()).unwrap().log, format_hash(&identity));

        // The hash the record keeps for the last removed event is compared
        // with a checkpoint there; a forged one is found.
        let forged = SigningKey::load(&keyfile).unwrap();
        let line = Checkpoint::sign(&forged, &identity, record.first_kept, &[7; 32], SystemTime::now()).to_line();
        let bad_cp = dir.path().join("forged.cp");
        std::fs::write(&bad_cp, format!("{line}\n")).unwrap();
        match verify_checkpoints(&path, &bad_cp, &public) {
            Err(CheckpointVerifyError::Bad { problem: CheckpointProblem::Rewritten { line: 1, seq, .. }, .. }) => {
                assert_eq!(seq, record.first_kept - 1);
            }
            other => panic!("{other:?}"),
        }
        // A log whose first events are missing without a prune record has
        // no identity: the writer refuses rather than guess.
        std::fs::remove_file(crate::prune::record_path(&path)).unwrap();
        assert!(log_identity(&path).unwrap_err().contains("no prune record accounts for the events before it"));
    }

    #[test]
    fn verification_finds_cut_rewritten_foreign_and_edited_logs_and_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key, public) = pair(dir.path(), "k");
        let (_, _, other_public) = pair(dir.path(), "other");
        let (log, cp) = checkpointed_log(dir.path(), key, 10, 4);
        assert_eq!(lines(&cp).len(), 3, "4, 8, 10");
        let problem = |log: &Path, cp: &Path, key: &PublicKey| match verify_checkpoints(log, cp, key) {
            Err(CheckpointVerifyError::Bad { problem, .. }) => problem,
            other => panic!("expected a bad checkpoint, got {other:?}"),
        };
        let log_lines = lines(&log);
        let write_log = |name: &str, ls: &[String]| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("{}\n", ls.join("\n"))).unwrap();
            p
        };

        // Cut short: the plain chain still verifies.
        let cut = write_log("cut.jsonl", &log_lines[..9]);
        assert!(crate::verify_log(&cut, |_, _| {}).is_ok());
        let p = problem(&cut, &cp, &public);
        assert_eq!(p, CheckpointProblem::CutShort { line: 3, size: 10, events: 9 });
        assert_eq!(p.to_string(), "log cut short: checkpoint at line 3 says 10 events, the log has 9");
        let cut = write_log("cut2.jsonl", &log_lines[..5]);
        assert!(matches!(problem(&cut, &cp, &public), CheckpointProblem::CutShort { line: 2, size: 8, events: 5 }));

        // Rewritten from event 6 on and re-chained by a writer: a valid chain.
        let rewritten = write_log("rewritten.jsonl", &log_lines[..6]);
        let mut w = AuditLog::open(&rewritten, WAIT).unwrap();
        append(&mut w, "forged/", 4);
        w.sync().unwrap();
        assert_eq!(crate::verify_log(&rewritten, |_, _| {}).unwrap().events, 10);
        let p = problem(&rewritten, &cp, &public);
        assert!(matches!(p, CheckpointProblem::Rewritten { line: 2, seq: 7, .. }), "{p:?}");
        assert!(p.to_string().starts_with("rewritten history: event 7 has hash sha256:"), "{p}");

        // Another log altogether.
        let foreign = dir.path().join("foreign.jsonl");
        let mut w = AuditLog::open(&foreign, WAIT).unwrap();
        append(&mut w, "other/", 10);
        w.sync().unwrap();
        assert!(matches!(problem(&foreign, &cp, &public), CheckpointProblem::OtherLog { line: 1, .. }));

        // Another key.
        let p = problem(&log, &cp, &other_public);
        assert!(p.to_string().starts_with("signed by another key: checkpoint at line 1 names key "), "{p}");

        // An edited checkpoint line (a larger size, to cover a forged log).
        let cp_lines = lines(&cp);
        let edited_cp = |name: &str, ls: &[String]| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("{}\n", ls.join("\n"))).unwrap();
            p
        };
        let mut ls = cp_lines.clone();
        ls[1] = ls[1].replace("\"size\":8", "\"size\":9");
        let p = problem(&log, &edited_cp("edited.cp", &ls), &public);
        assert_eq!(p, CheckpointProblem::BadSignature { line: 2, key: public.id().to_owned() });
        assert!(p.to_string().starts_with("checkpoint file edited (bad signature)"));

        // Sizes that go back.
        let ls = vec![cp_lines[1].clone(), cp_lines[0].clone()];
        assert!(matches!(
            problem(&log, &edited_cp("order.cp", &ls), &public),
            CheckpointProblem::Decreasing { line: 2, size: 4, before_line: 1, before: 8 }
        ));

        // The first bad line wins, whatever kind of problem it has: line 1
        // says more events than the cut log has, line 3 is garbage.
        let ls = vec![cp_lines[2].clone(), cp_lines[2].clone(), "garbage".into()];
        let cut = write_log("cut3.jsonl", &log_lines[..3]);
        assert!(matches!(
            problem(&cut, &edited_cp("first.cp", &ls), &public),
            CheckpointProblem::CutShort { line: 1, .. }
        ));
        assert!(matches!(
            problem(&log, &edited_cp("first.cp", &ls), &public),
            CheckpointProblem::Malformed { line: 3, .. }
        ));

        // No checkpoint at all vouches for nothing.
        let empty = edited_cp("empty.cp", &[]);
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(verify_checkpoints(&log, &empty, &public), Err(CheckpointVerifyError::Empty { .. })));
        let missing = verify_checkpoints(&log, &dir.path().join("missing.cp"), &public).unwrap_err();
        assert!(matches!(missing, CheckpointVerifyError::Read { .. }), "{missing}");
    }
}
