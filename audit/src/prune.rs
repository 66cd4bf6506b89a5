//! Pruning: deleting whole rotated segments whose events are all older
//! than a date, never the live file, never inside the retention period,
//! and always on record.
//!
//! # The prune record
//!
//! A log whose first events were deleted no longer starts at `seq` 0 with
//! the genesis `prev`, so a verifier must be told where it may start. A
//! prune, under the log's lock:
//!
//! 1. verifies the whole log (a broken log is refused: pruning must not
//!    launder a tampered segment away);
//! 2. appends one JSON line to `<log>.pruned` ([`PruneRecord`]: the seqs
//!    removed, each removed segment's first and last `seq`, the `prev` of
//!    its first event and the hash of its last, the first kept `seq` and
//!    its `prev`, the log's identity), and syncs it;
//! 3. appends a `finding` event (rule `audit.prune`) to the live file whose
//!    `content_sha256` is the SHA-256 of that line, and syncs it;
//! 4. deletes the segments, oldest first, and syncs the directory.
//!
//! [`crate::verify_log`] accepts a log that starts at `seq` K > 0 only when
//! the last line of `<log>.pruned` names K as a place the log may start
//! (the first kept `seq`, or the first `seq` of a segment it removed, for a
//! prune interrupted while deleting), the first event's `prev` is the one
//! recorded there, and a finding in the chain vouches for the line. So the
//! record cannot be forged or edited without breaking the chain, and a
//! missing first segment that no prune removed is still reported.

use crate::log::{AuditError, AuditLog, Origin};
use crate::read::{ReadError, io_reason};
use crate::verify::LogVerifyError;
use crate::{Event, format_hash, parse_hash};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The `rule` of the finding that vouches for a prune record.
pub const PRUNE_RULE: &str = "audit.prune";

/// Version of the prune record format.
const RECORD_VERSION: u32 = 1;

/// `<log>.pruned`: where prunes are recorded, one JSON line each.
pub fn record_path(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".pruned");
    PathBuf::from(p)
}

/// One prune, as a line of `<log>.pruned`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneRecord {
    /// Format version, 1.
    pub v: u32,
    /// The log's identity: the hash of its event 0 (kept across prunes).
    pub log: String,
    /// When the prune ran (RFC 3339 UTC).
    pub at: String,
    /// The `--before` date: every removed event is older.
    pub before: String,
    /// The retention period the prune respected, as written.
    pub retention: String,
    /// The `seq` of the first event kept.
    pub first_kept: u64,
    /// That event's `prev`: the hash of the last event removed.
    pub prev: String,
    /// The segments removed, oldest first.
    pub segments: Vec<PrunedSegment>,
    /// For a log with signed checkpoints: the earliest signed checkpoint
    /// that covers every removed event, which shows how old they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<PruneProof>,
    /// For a log with signed checkpoints: the id of the checkpoint key
    /// that signed this record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// For a log with signed checkpoints: the Ed25519 signature (hex) of
    /// the record without `sig` ([`PruneRecord::signed_form`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

/// The signed checkpoint a signed prune rests on: every removed event was
/// in the log when it was made, at least the retention before the prune.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneProof {
    /// Its `size`: greater than the `seq` of the last removed event.
    pub size: u64,
    /// Its `ts`, as signed.
    pub ts: String,
}

/// A segment a prune removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrunedSegment {
    /// Its file name.
    pub file: String,
    /// `seq` of its first event.
    pub first: u64,
    /// `seq` of its last event.
    pub last: u64,
    /// `prev` of its first event.
    pub prev: String,
    /// `hash` of its last event.
    pub head: String,
    /// `ts` of its newest event.
    pub newest: String,
}

impl PruneRecord {
    /// The bytes the signature covers: the record without `sig`, compact,
    /// members in declaration order.
    pub fn signed_form(&self) -> Vec<u8> {
        let unsigned = PruneRecord { sig: None, ..self.clone() };
        // Strings, numbers and lists serialise into memory without fail.
        serde_json::to_vec(&unsigned).unwrap_or_default()
    }

    /// Whether the record is signed by `key` with a valid signature.
    pub fn signed_by(&self, key: &crate::checkpoint::PublicKey) -> bool {
        match (&self.key, &self.sig) {
            (Some(id), Some(sig)) => id == key.id() && key.verifies(&self.signed_form(), sig),
            _ => false,
        }
    }

    /// Checks what a record says of itself, without a key: its times parse,
    /// every removed segment is older than `before`, and `before` is at
    /// least the retention older than the prune. A forger who writes the
    /// record can make these hold; a signed record cannot be made up.
    pub fn consistent(&self) -> Result<(), String> {
        let time = |what: &str, t: &str| {
            humantime::parse_rfc3339(t)
                .map_err(|e| format!("its `{what}` `{}` is not an RFC 3339 time ({e})", t.escape_debug()))
        };
        let at = time("at", &self.at)?;
        let before = time("before", &self.before)?;
        let retention = Retention::parse(&self.retention).map_err(|e| format!("its `retention`: {e}"))?;
        // `at` was written to the second before version 0.2; allow for it.
        if before + retention.period > at + Duration::from_secs(1) {
            return Err(format!(
                "it removed events younger than its own retention: before {} is within {} of the prune at {}",
                self.before, self.retention, self.at
            ));
        }
        for s in &self.segments {
            // `before` was written to the second before version 0.2 too.
            if time("newest", &s.newest)? >= before + Duration::from_secs(1) {
                return Err(format!(
                    "segment `{}` held an event of {}, not older than before {}",
                    s.file.escape_debug(),
                    s.newest,
                    self.before
                ));
            }
        }
        if let Some(p) = &self.proof {
            let made = time("proof.ts", &p.ts)?;
            if p.size < self.first_kept {
                return Err(format!(
                    "its proof (a checkpoint of {} events) does not cover the removed events up to seq {}",
                    p.size,
                    self.first_kept.saturating_sub(1)
                ));
            }
            if made + retention.period > at + Duration::from_secs(1) {
                return Err(format!(
                    "its proof, the checkpoint signed at {}, is not older than the retention {} at the prune ({})",
                    p.ts, self.retention, self.at
                ));
            }
        }
        Ok(())
    }

    /// The `prev` the log's first event must have when the log starts at
    /// `seq`, if this record lets it start there.
    pub fn start_at(&self, seq: u64) -> Option<[u8; 32]> {
        if seq == self.first_kept {
            return parse_hash(&self.prev);
        }
        self.segments.iter().find(|s| s.first == seq).and_then(|s| parse_hash(&s.prev))
    }
}

/// The last line of `<log>.pruned`, parsed, with `sha256:` of its bytes
/// (without the newline) and its 1-based line number; `None` when the log
/// was never pruned.
pub fn last_record(log: &Path) -> Result<Option<(PruneRecord, String, u64)>, ReadError> {
    let path = record_path(log);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadError::Io { path, reason: io_reason(&e) }),
    };
    let mut last = None;
    let mut number = 0;
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(|e| ReadError::Io { path: path.clone(), reason: io_reason(&e) })?;
        number += 1;
        last = Some((line, number));
    }
    let Some((line, number)) = last else { return Ok(None) };
    let record: PruneRecord = serde_json::from_slice(&line).map_err(|e| ReadError::Line {
        path: path.clone(),
        line: number,
        reason: format!("not a prune record: {e}"),
    })?;
    Ok(Some((record, sha256_hex(&line), number)))
}

/// Why a prune did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// Refused by the rules (retention, nothing to go on): nothing changed.
    #[error("{0}")]
    Refused(String),
    /// The log does not verify: nothing changed.
    #[error(transparent)]
    NotIntact(LogVerifyError),
    /// The log could not be opened, locked or written.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The prune record or a segment could not be written or removed.
    #[error("{path}: {what}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The step.
        what: &'static str,
        /// The operating system's reason.
        reason: String,
    },
}

/// What to prune.
#[derive(Debug, Clone)]
pub struct PruneRequest {
    /// Delete only segments whose every event is older than this.
    pub before: SystemTime,
    /// A retention period given by the operator, used when the log records
    /// none, and never allowed to shorten the one it records.
    pub retention: Option<Retention>,
    /// Who prunes: the identity of the `finding` event.
    pub origin: Origin,
    /// How long to wait for the log's lock.
    pub lock_wait: Duration,
    /// The checkpoint file of a log with signed checkpoints, and the key
    /// that signs them. Required when that file holds checkpoints: the
    /// prune then removes only events a signed checkpoint shows are older
    /// than the retention, and signs its record.
    pub signing: Option<PruneSigning>,
}

/// How a prune of a log with signed checkpoints proves itself.
#[derive(Debug, Clone)]
pub struct PruneSigning {
    /// The log's checkpoint key.
    pub key: std::sync::Arc<crate::checkpoint::SigningKey>,
    /// The log's checkpoint file.
    pub checkpoints: PathBuf,
}

/// A retention period and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// The period.
    pub period: Duration,
    /// As written (`6y`).
    pub text: String,
}

impl Retention {
    /// Parses a period as the manifest's `[audit] retention` takes it.
    pub fn parse(text: &str) -> Result<Retention, String> {
        match humantime::parse_duration(text) {
            Ok(period) if !period.is_zero() => Ok(Retention { period, text: text.to_owned() }),
            Ok(_) => Err(format!("`{text}` is not a retention period (it is zero)")),
            Err(e) => Err(format!("`{text}` is not a retention period ({e}); write for example \"6y\" or \"90d\"")),
        }
    }
}

/// What a prune did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// The retention period respected, and where it came from.
    pub retention: Retention,
    /// `seq` of the `task-start` that recorded it; `None`: given by the
    /// operator.
    pub retention_seq: Option<u64>,
    /// The record written (`None`: nothing was old enough to remove).
    pub record: Option<PruneRecord>,
    /// `seq` of the finding that vouches for it.
    pub finding_seq: Option<u64>,
    /// Why segments older than `before` were kept anyway: no signed
    /// checkpoint shows they are older than the retention.
    pub unproven: Option<String>,
}

/// For a writer about to sign checkpoints of `log` with the key whose
/// public half is `key`: refuses a log that starts after a prune this key
/// did not sign (made without the key, or forged).
pub fn check_signed(log: &Path, key: &crate::checkpoint::PublicKey) -> Result<(), String> {
    let files = crate::read::files(log).map_err(|e| e.to_string())?;
    let Some(first) = files.first() else { return Ok(()) };
    let start = crate::verify::first_seq(first).map_err(|e| format!("audit log `{}`: {e}", first.display()))?;
    if start.unwrap_or(0) == 0 {
        return Ok(());
    }
    match last_record(log).map_err(|e| e.to_string())? {
        Some((r, _, _)) if r.signed_by(key) => Ok(()),
        Some((_, _, line)) => Err(format!(
            "audit log `{}` starts after a prune (`{}` line {line}) that checkpoint key {} did not sign: no checkpoint is signed over it (a log with signed checkpoints is pruned with `sandbox audit prune --signing-key`; check it with `sandbox audit verify --public-key`)",
            log.display(),
            record_path(log).display(),
            key.id()
        )),
        // Verification reports the missing record; signing needs the
        // log's identity, which fails on its own.
        None => Ok(()),
    }
}

/// `<log>.checkpoints`: where a log's checkpoints are unless the manifest
/// says otherwise.
pub fn default_checkpoints(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".checkpoints");
    PathBuf::from(p)
}

/// A segment as the walk saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: PathBuf,
    first: u64,
    last: u64,
    prev: [u8; 32],
    head: [u8; 32],
    newest: Option<SystemTime>,
    newest_text: String,
}

/// Prunes the log at `log`: see the module documentation.
pub fn prune(log: &Path, req: &PruneRequest) -> Result<Pruned, PruneError> {
    if std::fs::metadata(log).is_err() {
        return Err(PruneError::Refused(format!("audit log `{}`: no such file", log.display())));
    }
    let mut writer = AuditLog::open(log, req.lock_wait)?;
    writer.set_origin(req.origin.clone());
    writer.lock_for_maintenance()?;
    let result = prune_locked(log, req, &mut writer);
    writer.unlock_after_maintenance();
    result
}

fn prune_locked(log: &Path, req: &PruneRequest, writer: &mut AuditLog) -> Result<Pruned, PruneError> {
    // A torn tail the open cut off is recorded before anything else.
    writer.append_locked()?;
    let walked = walk(log)?;
    let (retention, retention_seq) = match (&walked.retention, &req.retention) {
        (Some((text, seq)), given) => {
            let recorded = Retention::parse(text).map_err(|why| {
                PruneError::Refused(format!(
                    "audit log `{}`: the retention recorded at seq {seq} is unusable: {why}",
                    log.display()
                ))
            })?;
            if let Some(g) = given
                && g.period < recorded.period
            {
                return Err(PruneError::Refused(format!(
                    "--retention {} is shorter than the retention {} the log records (task-start seq {seq}); prune does not shorten it",
                    g.text, recorded.text
                )));
            }
            match given {
                Some(g) if g.period > recorded.period => (g.clone(), None),
                _ => (recorded, Some(*seq)),
            }
        }
        (None, Some(g)) => (g.clone(), None),
        (None, None) => {
            return Err(PruneError::Refused(format!(
                "audit log `{}` records no retention (no task-start has one); give --retention",
                log.display()
            )));
        }
    };
    let now = SystemTime::now();
    let cutoff = now.checked_sub(retention.period).unwrap_or(SystemTime::UNIX_EPOCH);
    if req.before > cutoff {
        let source = match retention_seq {
            Some(seq) => format!("as recorded at seq {seq}"),
            None => "as given".into(),
        };
        return Err(PruneError::Refused(format!(
            "--before {} is within the retention period of {} ({source}): nothing younger than {} may be deleted",
            rfc3339(req.before),
            retention.text,
            rfc3339(cutoff)
        )));
    }
    let signed = match &req.signing {
        Some(signing) => Some(signed_checkpoints(log, signing)?),
        None => {
            let cp = default_checkpoints(log);
            if std::fs::metadata(&cp).is_ok_and(|m| m.len() > 0) {
                return Err(PruneError::Refused(format!(
                    "audit log `{}` has signed checkpoints (`{}`): give --signing-key so the prune is proven by them and signed",
                    log.display(),
                    cp.display()
                )));
            }
            None
        }
    };
    // A signed prune removes a segment only when a signed checkpoint that
    // covers its last event is at least the retention old.
    let proof_for = |s: &Seen| -> Option<PruneProof> {
        let sizes = signed.as_ref()?;
        let (size, ts) = sizes.iter().find(|(size, _)| *size > s.last)?;
        let made = humantime::parse_rfc3339(ts).ok()?;
        (made <= cutoff).then(|| PruneProof { size: *size, ts: ts.clone() })
    };
    let old: Vec<&Seen> = walked.segments.iter().take_while(|s| s.newest.is_some_and(|t| t < req.before)).collect();
    let doomed: Vec<&Seen> = match &signed {
        Some(_) => old.iter().copied().take_while(|s| proof_for(s).is_some()).collect(),
        None => old.clone(),
    };
    let unproven = (doomed.len() < old.len()).then(|| {
        let kept = old[doomed.len()];
        format!(
            "segment `{}` (seq {}..={}) and later ones were kept: no checkpoint signed before {} covers them",
            kept.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            kept.first,
            kept.last,
            rfc3339(cutoff)
        )
    });
    let Some(last) = doomed.last() else {
        return Ok(Pruned { retention, retention_seq, record: None, finding_seq: None, unproven });
    };
    let identity = match walked.identity {
        Some(id) => format_hash(&id),
        None => walked.record_identity.clone().ok_or_else(|| {
            PruneError::Refused(format!("audit log `{}`: starts after seq 0 without a prune record", log.display()))
        })?,
    };
    let mut record = PruneRecord {
        v: RECORD_VERSION,
        log: identity,
        at: humantime::format_rfc3339_micros(now).to_string(),
        before: humantime::format_rfc3339_micros(req.before).to_string(),
        retention: retention.text.clone(),
        first_kept: last.last + 1,
        prev: format_hash(&last.head),
        segments: doomed
            .iter()
            .map(|s| PrunedSegment {
                file: s.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                first: s.first,
                last: s.last,
                prev: format_hash(&s.prev),
                head: format_hash(&s.head),
                newest: s.newest_text.clone(),
            })
            .collect(),
        proof: proof_for(last),
        key: None,
        sig: None,
    };
    if let Some(signing) = &req.signing {
        record.key = Some(signing.key.id().to_owned());
        record.sig = Some(signing.key.sign_hex(&record.signed_form()));
    }
    let line =
        serde_json::to_vec(&record).map_err(|e| PruneError::Refused(format!("cannot encode the record: {e}")))?;
    let record_file = record_path(log);
    append_record(&record_file, &line)?;

    let removed = last.last + 1 - doomed[0].first;
    let reason = format!(
        "audit log pruned: seq {}..={} ({removed} events in {} segments, all older than {}; retention {}) were deleted; the log now starts at seq {} (recorded in `{}`)",
        doomed[0].first,
        last.last,
        doomed.len(),
        record.before,
        retention.text,
        record.first_kept,
        record_file.display()
    );
    let sha = sha256_hex(&line);
    let target = record_file.display().to_string();
    writer.record(&Event {
        target: Some(&target),
        size: Some(line.len() as u64),
        content_sha256: Some(&sha),
        ..req.origin.finding(PRUNE_RULE, &reason)
    });
    writer.append_locked()?;
    let finding_seq = writer.head().0 - 1;

    let io =
        |path: &Path, what, e: std::io::Error| PruneError::Io { path: path.to_owned(), what, reason: io_reason(&e) };
    for s in &doomed {
        std::fs::remove_file(&s.path).map_err(|e| io(&s.path, "cannot delete it", e))?;
    }
    sync_dir(log).map_err(|e| io(log, "cannot sync its directory", e))?;
    Ok(Pruned { retention, retention_seq, record: Some(record), finding_seq: Some(finding_seq), unproven })
}

/// The log's signed checkpoints, as (`size`, `ts`), after checking the log
/// against them: a prune must not launder a log its checkpoints do not
/// vouch for.
fn signed_checkpoints(log: &Path, signing: &PruneSigning) -> Result<Vec<(u64, String)>, PruneError> {
    let public = signing.key.public();
    let report = crate::checkpoint::verify_checkpoints(log, &signing.checkpoints, &public).map_err(|e| match e {
        crate::checkpoint::CheckpointVerifyError::Log(e) => PruneError::NotIntact(e),
        e => PruneError::Refused(format!(
            "audit log `{}` does not verify against its checkpoints under key {}: {e}",
            log.display(),
            public.id()
        )),
    })?;
    Ok(report.signed)
}

/// What verifying the log under the lock found out.
struct Walked {
    segments: Vec<Seen>,
    /// The hash of event 0, when the log still has it.
    identity: Option<[u8; 32]>,
    /// The identity the last prune record carries.
    record_identity: Option<String>,
    /// The newest `task-start` `retention` and its `seq`.
    retention: Option<(String, u64)>,
}

fn walk(log: &Path) -> Result<Walked, PruneError> {
    let mut segments: Vec<Seen> = Vec::new();
    let mut identity = None;
    let mut retention = None;
    let mut current: Option<usize> = None;
    crate::verify::walk(log, |file, c, line| {
        if c.seq == 0 {
            identity = Some(c.hash);
        }
        if contains(line, b"\"kind\":\"task-start\"")
            && contains(line, b"\"retention\":")
            && let Some(r) = field(line, "retention")
        {
            retention = Some((r, c.seq));
        }
        let ts = ts_of(line);
        let t = ts.and_then(|t| humantime::parse_rfc3339(t).ok());
        if current != Some(file.index) {
            current = Some(file.index);
            if file.segment {
                segments.push(Seen {
                    path: file.path.to_owned(),
                    first: c.seq,
                    last: c.seq,
                    prev: field(line, "prev").and_then(|p| parse_hash(&p)).unwrap_or_default(),
                    head: c.hash,
                    newest: None,
                    newest_text: String::new(),
                });
            }
        }
        if file.segment
            && let Some(s) = segments.last_mut()
        {
            s.last = c.seq;
            s.head = c.hash;
            // An event without a readable time keeps its segment.
            match (t, s.newest) {
                (None, _) => s.newest = Some(SystemTime::now() + Duration::from_secs(1 << 40)),
                (Some(t), Some(n)) if t <= n => {}
                (Some(t), _) => {
                    s.newest = Some(t);
                    s.newest_text = ts.unwrap_or_default().to_owned();
                }
            }
        }
    })
    .map_err(PruneError::NotIntact)?;
    let record_identity =
        last_record(log).map_err(|e| PruneError::NotIntact(LogVerifyError::Read(e)))?.map(|(r, _, _)| r.log);
    Ok(Walked { segments, identity, record_identity, retention })
}

fn append_record(path: &Path, line: &[u8]) -> Result<(), PruneError> {
    let io = |what, e: std::io::Error| PruneError::Io { path: path.to_owned(), what, reason: io_reason(&e) };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| io("cannot open it", e))?;
    let len = f.metadata().map_err(|e| io("cannot stat it", e))?.len();
    let mut bytes = line.to_vec();
    bytes.push(b'\n');
    if let Err(e) = f.write_all(&bytes) {
        let _ = f.set_len(len);
        return Err(io("cannot write it", e));
    }
    f.sync_data().map_err(|e| io("cannot sync it", e))?;
    sync_dir(path).map_err(|e| io("cannot sync its directory", e))
}

fn sync_dir(file: &Path) -> std::io::Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The `ts` of a verified event line: its third member, in the canonical
/// form `{"v":1,"seq":N,"ts":"..."`.
fn ts_of(line: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b",\"ts\":\"";
    let head = &line[..line.len().min(64)];
    let start = head.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = line[start..].iter().position(|b| *b == b'"')?;
    std::str::from_utf8(&line[start..start + len]).ok()
}

/// A string member of a verified event line.
fn field(line: &[u8], name: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    v.get(name)?.as_str().map(str::to_owned)
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
