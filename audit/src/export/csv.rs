//! CSV for spreadsheets: RFC 4180 (quoted where needed, CRLF), a header
//! record, then one record per event with the fixed [`COLUMNS`].
//!
//! A cell is the field's text with [`hidden`](super::hidden) characters
//! shown as `\xNN` or `\u{XXXX}` ([`inert`]), so a record is always one
//! line; a cell starting with `=`, `+`, `-` or `@` (what a spreadsheet
//! would evaluate as a formula; OWASP's tab and CR cannot start a cell
//! after escaping) is prefixed with `'`.

use super::{field, inert};
use serde_json::Value;
use std::io::{self, Write};

/// The columns, in order. `decision` is a call's or approval's decision;
/// `outcome` is a result's outcome or a task-end's status.
pub const COLUMNS: [&str; 11] =
    ["seq", "ts", "kind", "task", "user", "agent", "capability", "target", "decision", "rule", "outcome"];

/// The record of one event, each cell made safe for a spreadsheet.
pub fn csv_row(ev: &Value) -> [String; 11] {
    let outcome = if ev.get("kind").and_then(Value::as_str) == Some("task-end") { "status" } else { "outcome" };
    COLUMNS.map(|c| cell(&field(ev, if c == "outcome" { outcome } else { c }).unwrap_or_default()))
}

/// One cell: hidden characters shown, formulas defused.
pub fn cell(text: &str) -> String {
    let shown = inert(text);
    if shown.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{shown}") } else { shown }
}

/// A CSV writer on `out` (RFC 4180: CRLF, quotes doubled) that has
/// written the header record.
pub(crate) fn writer<W: Write>(out: W) -> io::Result<::csv::Writer<W>> {
    let mut w = ::csv::WriterBuilder::new().terminator(::csv::Terminator::CRLF).from_writer(out);
    w.write_record(COLUMNS).map_err(io_error)?;
    Ok(w)
}

/// A CSV writer's error as the I/O error it carries (so that a closed pipe
/// is still `BrokenPipe`), or as an I/O error of its own.
pub(crate) fn io_error(e: ::csv::Error) -> io::Error {
    match e.into_kind() {
        ::csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}
