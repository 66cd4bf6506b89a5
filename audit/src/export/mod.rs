//! Exports of a log for auditors, spreadsheets and SIEMs.
//!
//! | format | what | one event is |
//! |---|---|---|
//! | `jsonl` | the events as stored, byte for byte (hashes can be rechecked) | its line |
//! | `csv` | a spreadsheet summary (RFC 4180), fixed columns [`csv::COLUMNS`] | a record |
//! | `ocsf` | OCSF [`ocsf::OCSF_VERSION`] JSON, the original line in `raw_data` | a line |
//! | `cef` | ArcSight Common Event Format | a line |
//!
//! The formatters ([`to_ocsf`], [`to_cef`], [`csv_row`]) are a library API
//! of their own (the SIEM sinks use them); [`export`] streams a whole log
//! (rotated segments first) through an [`Exporter`], one event at a time.
//!
//! Everything in a log is untrusted text (a tool chose its paths, URLs,
//! arguments and intent). No format lets it out raw: JSON escapes control
//! characters and, beyond what JSON requires, Unicode format characters
//! (bidi overrides, zero-width characters, tags) and line separators as
//! `\uXXXX`; CSV and CEF show them as the text `\xNN` (controls) or
//! `\u{XXXX}` (see [`inert`]); CEF escapes its own separators; CSV cells
//! that a spreadsheet would run as a formula start with `'`.

pub mod cef;
pub mod csv;
pub mod ocsf;

pub use self::cef::to_cef;
pub use self::csv::{COLUMNS, csv_row};
pub use self::ocsf::{OCSF_CLASSES, OCSF_PROFILES, OCSF_VERSION, to_ocsf};

use crate::read::{Events, Filter, ReadError};
use serde_json::Value;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;
use std::str::FromStr;
use std::time::UNIX_EPOCH;
use unicode_properties::general_category::{GeneralCategory, UnicodeGeneralCategory};

/// The product version written into OCSF `metadata.product.version` and
/// the CEF header.
pub const PRODUCT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The lines as stored.
    Jsonl,
    /// RFC 4180 CSV with a header record.
    Csv,
    /// OCSF JSON, one object per line.
    Ocsf,
    /// CEF, one event per line.
    Cef,
}

impl Format {
    /// Every format, in the order the help lists them.
    pub const ALL: [Format; 4] = [Format::Jsonl, Format::Csv, Format::Ocsf, Format::Cef];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Ocsf => "ocsf",
            Format::Cef => "cef",
        }
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        Format::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
            format!("`{}` is not an export format; use one of {}", inert(s), names.join(", "))
        })
    }
}

/// What the formats need that the log does not record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The host whose runtime wrote the log: OCSF `device.hostname` and
    /// `src_endpoint.hostname`, CEF `dvchost`.
    pub host: String,
}

impl Source {
    /// The events were written on this machine: its host name (`unknown`
    /// when the kernel does not say).
    ///
    /// # Ambient Authority
    ///
    /// Reads `/proc/sys/kernel/hostname`.
    pub fn local_ambient() -> Source {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        Source { host }
    }
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A file could not be read, or a line is not an event (naming the file
    /// and line). What was exported before it stays written.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The output could not be written.
    #[error("cannot write the export: {}", crate::read::io_reason(.0))]
    Write(#[source] io::Error),
}

/// How many events an export read and wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events read (every line of every file).
    pub read: u64,
    /// Events that passed the filter and were written.
    pub exported: u64,
}

/// Writes events in one format to `W`, one at a time.
#[derive(Debug)]
pub struct Exporter<W: Write> {
    format: Format,
    source: Source,
    out: Out<W>,
}

#[derive(Debug)]
enum Out<W: Write> {
    Lines(W),
    Csv(Box<::csv::Writer<W>>),
}

impl<W: Write> Exporter<W> {
    /// An exporter writing to `out`; a CSV export starts with its header
    /// record.
    pub fn new(format: Format, source: Source, out: W) -> io::Result<Exporter<W>> {
        let out = match format {
            Format::Csv => Out::Csv(Box::new(self::csv::writer(out)?)),
            _ => Out::Lines(out),
        };
        Ok(Exporter { format, source, out })
    }

    /// Writes one event: `line` is its line as stored (with or without the
    /// newline), `ev` the same line parsed.
    pub fn write(&mut self, line: &[u8], ev: &Value) -> io::Result<()> {
        match (&mut self.out, self.format) {
            (Out::Csv(w), _) => w.write_record(csv_row(ev)).map_err(self::csv::io_error),
            (Out::Lines(w), Format::Jsonl) => {
                w.write_all(line.strip_suffix(b"\n").unwrap_or(line))?;
                w.write_all(b"\n")
            }
            (Out::Lines(w), Format::Ocsf) => {
                let raw = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line));
                write_json_line(w, &to_ocsf(&raw, ev, &self.source))
            }
            (Out::Lines(w), _) => {
                w.write_all(to_cef(ev, &self.source).as_bytes())?;
                w.write_all(b"\n")
            }
        }
    }

    /// Flushes what was written.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Out::Lines(w) => w.flush(),
            Out::Csv(w) => w.flush(),
        }
    }
}

/// Streams the events of the log at `log` (its rotated segments, then the
/// live file) that pass `filter` through `exporter`, and flushes it.
///
/// Every line must be an event: a JSON object with a `seq`, an RFC 3339
/// `ts` and a `kind`, ending with a newline. The first line that is not
/// stops the export with [`ReadError::Line`] naming its file and line;
/// what was written before it stays written (and flushed). This reads;
/// it does not verify the chain (see [`crate::verify_log`]).
pub fn export<W: Write>(log: &Path, filter: &Filter, exporter: &mut Exporter<W>) -> Result<Counts, ExportError> {
    let result = stream(log, filter, exporter);
    let flushed = exporter.flush().map_err(ExportError::Write);
    let counts = result?;
    flushed?;
    Ok(counts)
}

fn stream<W: Write>(log: &Path, filter: &Filter, exporter: &mut Exporter<W>) -> Result<Counts, ExportError> {
    let mut events: Events = crate::read::events(log)?;
    let mut counts = Counts::default();
    while let Some(ev) = events.next() {
        let ev = ev?;
        let Some((path, line_no, line)) = events.raw() else { continue };
        let not_event = |reason: String| ReadError::Line { path: path.to_owned(), line: line_no, reason };
        if !line.ends_with(b"\n") {
            return Err(not_event("the line is incomplete (no newline): being written, or torn".into()).into());
        }
        check(&ev).map_err(not_event)?;
        counts.read += 1;
        if filter.matches(&ev) {
            exporter.write(line, &ev).map_err(ExportError::Write)?;
            counts.exported += 1;
        }
    }
    Ok(counts)
}

/// What every exported event must have: a `seq`, a `ts` that is an RFC
/// 3339 time after 1970, a `kind`.
pub fn check(ev: &Value) -> Result<(), String> {
    if ev.get("seq").and_then(Value::as_u64).is_none() {
        return Err("no `seq`".into());
    }
    if time_ms(ev).is_none() {
        return Err("no RFC 3339 `ts`".into());
    }
    if text(ev, "kind").is_none() {
        return Err("no `kind`".into());
    }
    Ok(())
}

// ----------------------------------------------------------------- shared

/// A string member of an event, when present and not empty.
pub(crate) fn text<'a>(ev: &'a Value, key: &str) -> Option<&'a str> {
    ev.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A member as text: a string as it is, a number or boolean as JSON, an
/// absent or null member as nothing.
pub(crate) fn field(ev: &Value, key: &str) -> Option<String> {
    match ev.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        v => Some(v.to_string()),
    }
}

/// `ts` as milliseconds since the epoch.
pub(crate) fn time_ms(ev: &Value) -> Option<u64> {
    let t = humantime::parse_rfc3339(text(ev, "ts")?).ok()?;
    u64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()
}

/// An id for the event: its `hash`, else `task:seq`.
pub(crate) fn event_uid(ev: &Value) -> String {
    match text(ev, "hash") {
        Some(h) => h.to_owned(),
        None => format!("{}:{}", text(ev, "task").unwrap_or(""), ev["seq"]),
    }
}

/// The last component of a workspace path (the path itself when it has
/// none, `.` for the root).
pub(crate) fn basename(path: &str) -> &str {
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(name) if !name.is_empty() => name,
        _ if path.is_empty() => ".",
        _ => path,
    }
}

/// An `http.send` target `METHOD URL` as its method and URL.
pub(crate) fn http_target(target: &str) -> (Option<&str>, &str) {
    match target.split_once(' ') {
        Some((method, url)) if !method.is_empty() && method.bytes().all(|b| b.is_ascii_alphabetic()) => {
            (Some(method), url)
        }
        _ => (None, target),
    }
}

/// The program of a `process.run` target (the argv as one line, the
/// program first, quoted Rust-style when it holds spaces or quotes).
pub(crate) fn program(target: &str) -> &str {
    let Some(quoted) = target.strip_prefix('"') else {
        return target.split(' ').next().unwrap_or(target);
    };
    let mut escaped = false;
    for (i, c) in quoted.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return &quoted[..i],
            _ => {}
        }
    }
    quoted
}

/// How bad an event is, shared by OCSF `severity_id` and CEF severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    Unknown,
    Informational,
    Low,
    Medium,
    High,
}

/// Whether what the event records succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Not known from this event (a call's outcome is in its result).
    Unknown,
    Success,
    Failure,
}

/// What the policy did with the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    Allowed,
    Blocked,
    /// Waiting for a human (`ask`).
    Pending,
}

/// An event's severity, status and disposition, decided once for every
/// format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Assessment {
    pub severity: Severity,
    pub status: Status,
    pub disposition: Option<Disposition>,
}

/// A `result` outcome that means the call was refused, not tried.
fn refused_outcome(outcome: &str) -> bool {
    matches!(outcome, "denied" | "invalid" | "limit-exceeded" | "not-approved")
}

/// Judges an event. The table is in the README (`audit export`).
pub(crate) fn assess(ev: &Value) -> Assessment {
    use {Disposition as D, Severity as S, Status as T};
    let get = |k| text(ev, k).unwrap_or("");
    let (severity, status, disposition) = match get("kind") {
        "call" => match get("decision") {
            "allow" => (S::Informational, T::Unknown, Some(D::Allowed)),
            "ask" => (S::Informational, T::Unknown, Some(D::Pending)),
            "deny" | "invalid" | "limit" => (S::Medium, T::Failure, Some(D::Blocked)),
            _ => (S::Unknown, T::Unknown, None),
        },
        "approval" => match get("decision") {
            "approved" => (S::Informational, T::Success, Some(D::Allowed)),
            "rejected" => (S::Low, T::Failure, Some(D::Blocked)),
            _ => (S::Unknown, T::Unknown, None),
        },
        "result" => match get("outcome") {
            "ok" | "staged" | "applied" => (S::Informational, T::Success, Some(D::Allowed)),
            "not-approved" => (S::Low, T::Failure, Some(D::Blocked)),
            o if refused_outcome(o) => (S::Medium, T::Failure, Some(D::Blocked)),
            "" => (S::Unknown, T::Unknown, None),
            _ => (S::Low, T::Failure, Some(D::Allowed)),
        },
        "task-start" => (S::Informational, T::Success, None),
        "task-end" => match get("status") {
            "exit" if ev.get("exit_code").and_then(Value::as_i64) == Some(0) => (S::Informational, T::Success, None),
            "exit" | "refused" | "changes-rejected" => (S::Low, T::Failure, None),
            "audit-failure" => (S::High, T::Failure, None),
            _ => (S::Medium, T::Failure, None),
        },
        "finding" if get("rule").starts_with("audit.") => (S::High, T::Unknown, None),
        "finding" => (S::Medium, T::Unknown, None),
        _ => (S::Unknown, T::Unknown, None),
    };
    Assessment { severity, status, disposition }
}

/// What the event says happened, in its own words: a call's or approval's
/// `decision`, a result's `outcome`, a task-end's `status`.
pub(crate) fn state(ev: &Value) -> Option<&str> {
    match text(ev, "kind")? {
        "call" | "approval" => text(ev, "decision"),
        "result" => text(ev, "outcome"),
        "task-end" => text(ev, "status"),
        _ => None,
    }
}

/// One line saying what the event records: `call fs.read src/a.txt: allow
/// by fs.read:src/**`, `task-end: exit (the tool exited)`.
pub(crate) fn summary(ev: &Value) -> String {
    let mut s = text(ev, "kind").unwrap_or("event").to_owned();
    for k in ["capability", "target"] {
        if let Some(v) = text(ev, k) {
            let _ = write!(s, " {v}");
        }
    }
    if let Some(d) = text(ev, "dest") {
        let _ = write!(s, " -> {d}");
    }
    if let Some(st) = state(ev) {
        let _ = write!(s, ": {st}");
    }
    if let Some(r) = text(ev, "rule") {
        let _ = write!(s, " by {r}");
    }
    if let Some(r) = text(ev, "reason") {
        let _ = write!(s, " ({r})");
    }
    s
}

// ------------------------------------------------------- untrusted text

/// Characters no export leaves raw: controls (C0, DEL, C1), Unicode format
/// characters (bidi controls and overrides, zero-width characters, the
/// BOM, tag characters, soft hyphen) and the line and paragraph separators.
pub fn hidden(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// `s` with every [`hidden`] character shown as text: `\xNN` for a control
/// character (`\x0a` for a newline, `\x1b` for ESC), `\u{XXXX}` for the
/// others (`\u{202e}`). Everything else, backslashes included, is kept:
/// the log (`jsonl`) holds the exact text.
pub fn inert(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_inert(&mut out, c);
    }
    out
}

/// Appends `c` to `out` as [`inert`] shows it.
pub(crate) fn push_inert(out: &mut String, c: char) {
    if c.is_control() {
        let _ = write!(out, "\\x{:02x}", c as u32);
    } else if hidden(c) {
        let _ = write!(out, "\\u{{{:04x}}}", c as u32);
    } else {
        out.push(c);
    }
}

/// Writes `v` as one line of compact JSON in which every [`hidden`]
/// character is escaped as `\uXXXX` (serde_json escapes only C0).
pub(crate) fn write_json_line(w: &mut impl Write, v: &Value) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(&mut *w, InertJson);
    // serde_json hands back the writer's own I/O error (its kind kept).
    serde::Serialize::serialize(v, &mut ser).map_err(io::Error::from)?;
    w.write_all(b"\n")
}

struct InertJson;

impl serde_json::ser::Formatter for InertJson {
    fn write_string_fragment<W: ?Sized + Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if hidden(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests;
