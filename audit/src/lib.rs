//! Tamper-evident audit log for `sandbox`: JSON Lines, hash-chained.
//!
//! # Canonical form and chain
//!
//! Each line is one JSON object whose members come in a fixed order:
//! `v`, `seq`, `ts`, the event's own fields ([`Event`]), `prev`, `hash`.
//! It is compact (no spaces); strings are escaped as `serde_json` does
//! (`\"`, `\\`, C0 controls as `\n`, `\u001b`, ...) and, in addition, C1
//! controls, U+2028, U+2029, bidi controls and zero-width characters as
//! `\uXXXX`; other text is UTF-8. So an event is always one line to any
//! reader, and no byte of it acts on a terminal.
//!
//! The *canonical form* of an event is its line without the final member
//! `,"hash":"sha256:…"` (and without the newline): the exact bytes from `{`
//! through the value of `prev`, followed by `}`. `hash` is the SHA-256 of
//! the canonical form; `prev` is the previous event's `hash`, or
//! `sha256:` and 64 zeros for the first event of a log. `seq` counts from 0
//! without gaps. So any changed byte, and any removed, inserted or
//! reordered line, breaks the chain at the first event affected.
//!
//! A plain chain cannot show that lines were cut from the end of the file,
//! nor a log rewritten whole and re-chained: signed checkpoints
//! ([`checkpoint`]) can.

pub mod checkpoint;
pub mod event;
pub mod export;
pub mod log;
pub mod owned;
pub mod prune;
pub mod read;
pub mod report;
pub mod verify;

pub use checkpoint::{
    Checkpoint, CheckpointError, CheckpointProblem, CheckpointReport, CheckpointVerifyError, Checkpointer, KeyError,
    PublicKey, SigningKey, keygen, verify_checkpoints,
};
pub use event::{ApprovalRecord, Decision, Event, Kind, LimitsRecord, Principal};
pub use log::{AuditError, AuditLog, Origin, Repair, SyncHook};
pub use prune::{PruneError, PruneRecord, PruneRequest, Pruned, Retention, prune};
pub use read::{Filter, ReadError, events, parse_time};
pub use verify::{Chain, Checked, LogVerifyError, VerifyError, VerifyReport, verify, verify_log};

use sha2::{Digest, Sha256};

/// `prev` of the first event of a log.
pub const GENESIS: [u8; 32] = [0; 32];

/// The suffix every line ends with: `,"hash":"sha256:` + 64 hex + `"}`.
const HASH_MEMBER_LEN: usize = ",\"hash\":\"sha256:".len() + 64 + "\"}".len();

/// SHA-256 of an event's canonical form, given the line up to (not
/// including) its `,"hash"` member.
pub fn hash_line(prefix: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prefix);
    h.update(b"}");
    h.finalize().into()
}

/// The line without its final `,"hash":"sha256:…"}` member: what
/// [`hash_line`] takes. `None` when the line does not end that way.
pub fn without_hash(line: &[u8]) -> Option<&[u8]> {
    let split = line.len().checked_sub(HASH_MEMBER_LEN)?;
    let (prefix, member) = line.split_at(split);
    let hex = member.strip_prefix(b",\"hash\":\"sha256:")?.strip_suffix(b"\"}")?;
    hex.iter().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()).then_some(prefix)
}

/// Parses `sha256:<64 lowercase hex>`.
pub fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let hex = s.strip_prefix("sha256:")?;
    if hex.len() != 64 || hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0; 32];
    hex::decode_to_slice(hex, &mut out).ok()?;
    Some(out)
}

/// Formats a hash as `sha256:<hex>`.
pub fn format_hash(h: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(h))
}

#[cfg(test)]
mod tests;
