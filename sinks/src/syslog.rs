//! Syslog: RFC 5424 messages over TCP, framed by octet counting (RFC 6587
//! section 3.4.1: `MSG-LEN SP SYSLOG-MSG`, no trailing newline).
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME sandbox PROCID MSGID [sandbox@32473 seq="…" task="…" hash="…" …] MSG
//! ```
//!
//! - PRI: facility `authpriv` (10), a fixed choice: the log records access
//!   decisions. Severity by [`severity`].
//! - TIMESTAMP: the event's `ts` (UTC, microseconds); HOSTNAME: this
//!   host's name; PROCID: the id of the process that sends (a run, or
//!   `sandbox audit forward`); MSGID: the event's `kind`, or `checkpoint`.
//! - STRUCTURED-DATA: one element, SD-ID [`SD_ID`], with the event's
//!   `seq`, `task`, `hash` and the fields a SIEM filters on. Each value is
//!   the field's text as written in the log line (JSON escapes kept, so a
//!   control character stays `\n` or `\u001b`), then escaped per RFC 5424
//!   (`"`, `\` and `]` preceded by `\`).
//! - MSG: the log line itself, exactly (UTF-8 JSON), without a BOM: JSON
//!   parsers in SIEMs take it as it is, and RFC 5424 allows MSG-ANY.

use crate::deliver::{SendError, Transport};
use crate::{Fields, Origin, Record};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// `authpriv`.
pub const FACILITY: u8 = 10;
/// The SD-ID of the structured data element: `sandbox` at enterprise
/// number 32473, the number RFC 5612 reserves for documentation, as no
/// private enterprise number is registered for sandbox.
pub const SD_ID: &str = "sandbox@32473";
/// APP-NAME.
pub const APP_NAME: &str = "sandbox";

/// SD-PARAMs of an event, in this order, when the event has them.
const EVENT_PARAMS: &[&str] =
    &["seq", "task", "hash", "user", "agent", "capability", "target", "dest", "decision", "rule", "outcome", "status"];
/// SD-PARAMs of a checkpoint line.
const CHECKPOINT_PARAMS: &[&str] = &["size", "head", "log", "key"];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// RFC 5424 severities used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Severity {
    /// `finding` events, and a run stopped because the log failed.
    Error = 3,
    /// Refusals: calls decided `deny`, `limit` or `invalid`, rejected
    /// approvals, runs stopped by a limit or refused.
    Warning = 4,
    /// Calls put to a human (`ask`) and approved ones.
    Notice = 5,
    /// Everything else: allowed calls, results, task starts, normal ends,
    /// checkpoints.
    Informational = 6,
}

/// The severity of a record.
pub(crate) fn severity(f: &Fields<'_>) -> Severity {
    match f.kind().as_str() {
        "finding" => Severity::Error,
        "task-end" => match f.string("status").as_deref() {
            Some("exit") => Severity::Informational,
            Some("audit-failure") => Severity::Error,
            _ => Severity::Warning,
        },
        _ => match f.string("decision").as_deref() {
            Some("deny" | "limit" | "invalid" | "rejected") => Severity::Warning,
            Some("ask" | "approved") => Severity::Notice,
            _ => Severity::Informational,
        },
    }
}

/// The RFC 5424 message (SYSLOG-MSG) for a record.
pub fn message(record: &Record, origin: &Origin) -> Vec<u8> {
    // The readers hand out JSON objects only; anything else still gets a
    // well-formed message, with the line as MSG.
    let fields = Fields::parse(record).ok();
    let sev = fields.as_ref().map_or(Severity::Informational, severity);
    let ts = fields
        .as_ref()
        .and_then(Fields::time)
        .map(|t| humantime::format_rfc3339_micros(t).to_string())
        .unwrap_or_else(|| "-".into());
    let kind = fields.as_ref().map(Fields::kind).unwrap_or_default();
    let msgid = if !kind.is_empty() && kind.len() <= 32 && kind.bytes().all(|b| (33..=126).contains(&b)) {
        kind.as_str()
    } else {
        "-"
    };
    let mut head =
        format!("<{}>1 {ts} {} {APP_NAME} {} {msgid} [{SD_ID}", FACILITY * 8 + sev as u8, origin.hostname, origin.pid);
    let params = match record.stream {
        crate::Stream::Event => EVENT_PARAMS,
        crate::Stream::Checkpoint => CHECKPOINT_PARAMS,
    };
    if let Some(f) = &fields {
        for name in params {
            if let Some(text) = f.text(name) {
                let _ = write!(head, " {name}=\"");
                escape_param(text, &mut head);
                head.push('"');
            }
        }
    }
    head.push_str("] ");
    let mut out = head.into_bytes();
    out.extend_from_slice(&record.line);
    out
}

/// A message framed for TCP: its length in octets, a space, the message.
pub fn frame(record: &Record, origin: &Origin) -> Vec<u8> {
    let msg = message(record, origin);
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(&msg);
    out
}

/// Escapes a PARAM-VALUE: `"`, `\` and `]` get a `\` before them.
pub fn escape_param(text: &str, out: &mut String) {
    for c in text.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// A TCP connection to a syslog receiver, opened on first use and again
/// after any failure.
///
/// TCP syslog has no acknowledgements: a batch counts as sent once the
/// kernel took all of it on a connection the receiver had not closed.
/// Before each batch the connection is checked for a close by the
/// receiver (so nothing is written into a connection already gone), and
/// after it, for a close that arrived meanwhile; either way the batch is
/// sent again on a new connection. A receiver that accepts bytes and then
/// crashes before processing them can still lose them: put a relay with a
/// disk queue in between where that matters.
#[derive(Debug)]
pub(crate) struct SyslogTcp {
    address: String,
    origin: Origin,
    stream: Option<TcpStream>,
}

impl SyslogTcp {
    /// A sender to `address` (`host:port`); nothing is connected yet.
    pub(crate) fn new(address: &str, origin: Origin) -> SyslogTcp {
        SyslogTcp { address: address.to_owned(), origin, stream: None }
    }

    fn connect(&self) -> Result<TcpStream, SendError> {
        let addrs = self
            .address
            .to_socket_addrs()
            .map_err(|e| SendError::Unavailable(format!("cannot resolve `{}`: {e}", self.address)))?;
        let mut last = format!("`{}` resolves to no address", self.address);
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    s.set_write_timeout(Some(WRITE_TIMEOUT)).and_then(|()| s.set_nodelay(true)).map_err(|e| {
                        SendError::Unavailable(format!("{addr}: {}", sandbox_audit::read::io_reason(&e)))
                    })?;
                    return Ok(s);
                }
                Err(e) => last = format!("cannot connect to {addr}: {}", sandbox_audit::read::io_reason(&e)),
            }
        }
        Err(SendError::Unavailable(last))
    }
}

/// Whether the receiver has closed the connection (or it broke).
fn closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    let gone = match stream.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    gone || stream.set_nonblocking(false).is_err()
}

impl Transport for SyslogTcp {
    fn send(&mut self, records: &[Record]) -> Result<(), SendError> {
        let mut bytes = Vec::new();
        for r in records {
            bytes.extend_from_slice(&frame(r, &self.origin));
        }
        if self.stream.as_ref().is_some_and(closed) {
            self.stream = None;
        }
        let stream = match self.stream.take() {
            Some(s) => s,
            None => self.connect()?,
        };
        let written = (&stream).write_all(&bytes).and_then(|()| (&stream).flush());
        if let Err(e) = written {
            return Err(SendError::Unavailable(format!(
                "sending to `{}` failed: {}",
                self.address,
                sandbox_audit::read::io_reason(&e)
            )));
        }
        if closed(&stream) {
            return Err(SendError::Unavailable(format!("`{}` closed the connection", self.address)));
        }
        self.stream = Some(stream);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stream;

    fn origin() -> Origin {
        Origin { hostname: "host-1".into(), pid: 4242 }
    }

    fn event(line: &str) -> Record {
        Record { stream: Stream::Event, line: line.as_bytes().to_vec() }
    }

    #[test]
    fn an_event_becomes_an_rfc5424_message() {
        let line = r#"{"v":1,"seq":3,"ts":"2026-11-23T10:00:00.123456Z","kind":"call","task":"t-1","user":"dana","agent":"probe","component":"sha256:c","policy":"sha256:p","capability":"fs.read","target":"src/a.txt","decision":"deny","rule":"fs.deny:**/.env","prev":"sha256:00","hash":"sha256:ab"}"#;
        let msg = String::from_utf8(message(&event(line), &origin())).unwrap();
        let want = format!(
            "<84>1 2026-11-23T10:00:00.123456Z host-1 sandbox 4242 call [sandbox@32473 seq=\"3\" task=\"t-1\" hash=\"sha256:ab\" user=\"dana\" agent=\"probe\" capability=\"fs.read\" target=\"src/a.txt\" decision=\"deny\" rule=\"fs.deny:**/.env\"] {line}"
        );
        assert_eq!(msg, want);
        let framed = frame(&event(line), &origin());
        assert_eq!(framed, format!("{} {want}", want.len()).into_bytes());
    }

    #[test]
    fn severities_follow_the_decision() {
        let sev = |line: &str| severity(&Fields::parse(&event(line)).unwrap());
        assert_eq!(sev(r#"{"kind":"call","decision":"allow"}"#), Severity::Informational);
        for d in ["deny", "limit", "invalid"] {
            assert_eq!(sev(&format!(r#"{{"kind":"call","decision":"{d}"}}"#)), Severity::Warning);
        }
        assert_eq!(sev(r#"{"kind":"call","decision":"ask"}"#), Severity::Notice);
        assert_eq!(sev(r#"{"kind":"approval","decision":"approved"}"#), Severity::Notice);
        assert_eq!(sev(r#"{"kind":"approval","decision":"rejected"}"#), Severity::Warning);
        assert_eq!(sev(r#"{"kind":"result","outcome":"ok"}"#), Severity::Informational);
        assert_eq!(sev(r#"{"kind":"finding","reason":"torn tail"}"#), Severity::Error);
        assert_eq!(sev(r#"{"kind":"task-end","status":"exit","exit_code":1}"#), Severity::Informational);
        assert_eq!(sev(r#"{"kind":"task-end","status":"time-limit"}"#), Severity::Warning);
        assert_eq!(sev(r#"{"kind":"task-end","status":"audit-failure"}"#), Severity::Error);
        let cp = Record { stream: Stream::Checkpoint, line: br#"{"size":3}"#.to_vec() };
        assert_eq!(severity(&Fields::parse(&cp).unwrap()), Severity::Informational);
    }

    #[test]
    fn hostile_values_stay_inside_their_param() {
        // The log line escapes the quote, backslash and newline as JSON;
        // the SD value then escapes `"`, `\` and `]` once more.
        let line =
            r#"{"seq":1,"kind":"call","target":"x\"] [evil@1 a=\"b\"]\\\n<13>1 - - - - -","prev":"p","hash":"h"}"#;
        let msg = String::from_utf8(message(&event(line), &origin())).unwrap();
        let sd = r#"target="x\\\"\] [evil@1 a=\\\"b\\\"\]\\\\\\n<13>1 - - - - -""#;
        assert!(msg.contains(sd), "{msg}");
        assert!(msg.ends_with(&format!("] {line}")));
        assert_eq!(msg.matches('\n').count(), 0);
        let mut s = String::new();
        escape_param(r#"a"b\c]d"#, &mut s);
        assert_eq!(s, r#"a\"b\\c\]d"#);
    }

    #[test]
    fn checkpoints_and_odd_records_get_well_formed_headers() {
        let cp = Record {
            stream: Stream::Checkpoint,
            line: br#"{"log":"sha256:l","size":12,"head":"sha256:h","ts":"2026-11-23T10:00:00Z","key":"k1","sig":"s"}"#
                .to_vec(),
        };
        let msg = String::from_utf8(message(&cp, &origin())).unwrap();
        assert!(
            msg.starts_with(
                "<86>1 2026-11-23T10:00:00.000000Z host-1 sandbox 4242 checkpoint [sandbox@32473 size=\"12\" head=\"sha256:h\" log=\"sha256:l\" key=\"k1\"] {"
            ),
            "{msg}"
        );
        // No time, a kind that is not a valid MSGID: NILVALUEs.
        let odd = event(r#"{"kind":"has space","seq":1}"#);
        let msg = String::from_utf8(message(&odd, &origin())).unwrap();
        assert!(msg.starts_with("<86>1 - host-1 sandbox 4242 - [sandbox@32473 seq=\"1\"] "), "{msg}");
    }
}
