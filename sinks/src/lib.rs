//! Forwarding the audit log to a SIEM: the `[[audit.sink]]` entries of a
//! manifest (syslog, RFC 5424 over TCP; Splunk HTTP Event Collector).
//!
//! The local log stays the source of truth. A sink is fed *from the file*,
//! never from the writer: [`Delivery`] reads the events a sink has not been
//! sent yet (after its cursor), checks them as a hash chain, makes them
//! durable, sends them, and only then moves the cursor. So a sink that is
//! down costs the writer nothing, and catches up later from the file.
//!
//! Delivery is at least once: a batch whose sending failed, or whose
//! cursor could not be stored, is sent again. Every message carries the
//! event's `seq`, `task` and `hash`, by which a SIEM can drop duplicates.
//!
//! A separate crate (not a module of `sandbox-audit`) because it needs the
//! manifest's sink settings and an HTTP/TLS client, neither of which the
//! log writer and verifier should depend on.

pub mod cursor;
pub mod deliver;
pub mod hec;
pub mod source;
pub mod syslog;

pub use deliver::{Delivery, ErrorClass, SinkError, Step};

use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Which file a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// An event of the audit log.
    Event,
    /// A line of the checkpoint file.
    Checkpoint,
}

/// One thing a sink is sent: the exact bytes of a line of the log or of the
/// checkpoint file, without its newline. Always a JSON object in UTF-8 (the
/// reader checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Where it comes from.
    pub stream: Stream,
    /// The line.
    pub line: Vec<u8>,
}

/// Who sends: the host name and the process id written into messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The host name (`-` when it is not printable ASCII).
    pub hostname: String,
    /// The id of the process that sends (not necessarily the run's).
    pub pid: u32,
}

impl Origin {
    /// This machine's host name and this process's id.
    ///
    /// # Ambient Authority
    ///
    /// Reads the host name from the kernel.
    pub fn of_this_process_ambient() -> Origin {
        let uname = rustix::system::uname();
        let name = uname.nodename().to_string_lossy();
        let printable = !name.is_empty() && name.len() <= 255 && name.bytes().all(|b| (33..=126).contains(&b));
        Origin { hostname: if printable { name.into_owned() } else { "-".into() }, pid: std::process::id() }
    }
}

/// A record's top-level members, as the raw JSON text of each value.
pub(crate) struct Fields<'a> {
    stream: Stream,
    members: BTreeMap<String, &'a RawValue>,
}

impl<'a> Fields<'a> {
    /// Parses a record. Fails only on a line that is not a JSON object,
    /// which the readers never hand out.
    pub(crate) fn parse(record: &'a Record) -> Result<Fields<'a>, serde_json::Error> {
        Ok(Fields { stream: record.stream, members: serde_json::from_slice(&record.line)? })
    }

    /// The event's `kind`, or `checkpoint` for a checkpoint line.
    pub(crate) fn kind(&self) -> String {
        match self.stream {
            Stream::Checkpoint => "checkpoint".into(),
            Stream::Event => self.string("kind").unwrap_or_default(),
        }
    }

    /// A string member, decoded.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.members.get(name).and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
    }

    /// A member as it is written in the line: a string's content between
    /// its quotes with its JSON escapes kept (so control characters stay
    /// `\n`, `\u001b`, ...), or a number or boolean as written. `None` for
    /// objects, arrays, null and absent members.
    pub(crate) fn text(&self, name: &str) -> Option<&'a str> {
        let raw = self.members.get(name)?.get();
        match raw.as_bytes().first()? {
            b'"' => raw.get(1..raw.len() - 1),
            b'{' | b'[' | b'n' => None,
            _ => Some(raw),
        }
    }

    /// `ts`, when it is an RFC 3339 time.
    pub(crate) fn time(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339(&self.string("ts")?).ok()
    }
}

/// Logs for the tests, written by the real writer.
#[cfg(test)]
pub(crate) mod test_log {
    #![allow(clippy::unwrap_used)]

    use sandbox_audit::{AuditLog, Decision, Event, Kind};
    use std::path::Path;
    use std::time::Duration;

    /// Appends `n` allowed `fs.read` calls, one sync each, rotating the
    /// live file past `rotate` bytes.
    pub(crate) fn append(log: &Path, n: usize, rotate: Option<u64>) {
        append_targets(log, &(0..n).map(|i| format!("src/{i}.rs")).collect::<Vec<_>>(), rotate);
    }

    /// Appends one call per target, one sync each.
    pub(crate) fn append_targets(log: &Path, targets: &[String], rotate: Option<u64>) {
        let mut w = AuditLog::open(log, Duration::from_secs(2)).unwrap();
        w.set_rotate(rotate);
        for t in targets {
            w.record(&Event {
                kind: Kind::Call,
                task: "t1",
                capability: Some("fs.read"),
                target: Some(t),
                decision: Some(Decision::Allow),
                ..Event::default()
            });
            w.sync().unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_the_json_text_of_strings() {
        let r = Record {
            stream: Stream::Event,
            line: br#"{"seq":7,"kind":"call","target":"a\"b\\c\u001b]","ok":true,"args":["x"],"n":null}"#.to_vec(),
        };
        let f = Fields::parse(&r).unwrap();
        assert_eq!(f.kind(), "call");
        assert_eq!(f.text("seq"), Some("7"));
        assert_eq!(f.text("target"), Some(r#"a\"b\\c\u001b]"#));
        assert_eq!(f.string("target").as_deref(), Some("a\"b\\c\u{1b}]"));
        assert_eq!(f.text("ok"), Some("true"));
        assert_eq!(f.text("args"), None);
        assert_eq!(f.text("n"), None);
        assert_eq!(f.text("absent"), None);
        let cp = Record { stream: Stream::Checkpoint, line: br#"{"kind":"x","size":3}"#.to_vec() };
        assert_eq!(Fields::parse(&cp).unwrap().kind(), "checkpoint");
    }

    #[test]
    fn the_origin_is_printable() {
        let o = Origin::of_this_process_ambient();
        assert!(o.hostname.bytes().all(|b| (33..=126).contains(&b)), "{o:?}");
        assert_eq!(o.pid, std::process::id());
    }
}
