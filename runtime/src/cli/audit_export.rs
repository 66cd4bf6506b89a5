//! `sandbox audit export FILE --format jsonl|csv|ocsf|cef [FILTERS]`: the
//! events of a log (rotated segments first) in a format for auditors,
//! spreadsheets and SIEMs, streamed to stdout.
//!
//! Exit codes: 0 the export is complete and the log verifies; 1 the export
//! is complete but the log does not verify (one line on stderr names the
//! first bad `seq`); 2 invalid usage, a log that cannot be read, or a line
//! that is not an event (one line on stderr naming the file and line; the
//! events before it have been written, so a partial export is told apart
//! by the exit code and that line); 70 stdout could not be written.

use crate::approver::inert;
use crate::exit::{Code, Failure};
use sandbox_audit::export::{self, ExportError, Exporter, Format, Source};
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Runs the export of `file` in `format` with `filter` to stdout.
pub fn export(file: &Path, format: &str, filter: &super::audit::FilterArgs) -> Result<i32, Failure> {
    let format: Format = format.parse().map_err(|e: String| Failure::usage(format!("--format: {e}")))?;
    let filter = filter.filter()?;
    // Refuse a missing or unreadable log before anything is written (a
    // CSV export would otherwise have printed its header).
    sandbox_audit::read::files(file).map_err(|e| Failure::usage(e.to_string()))?;
    let stdout = io::stdout().lock();
    let mut exporter = Exporter::new(format, Source::local_ambient(), BufWriter::with_capacity(1 << 16, stdout))
        .map_err(write_failure)?;
    match export::export(file, &filter, &mut exporter) {
        Ok(_) => {}
        Err(ExportError::Read(e)) => {
            return Err(Failure::usage(format!("{e}; the export stopped there (what came before it was written)")));
        }
        // A reader that went away (`| head`) ends the export quietly, as
        // for every other command's output.
        Err(ExportError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(0),
        Err(ExportError::Write(e)) => return Err(write_failure(e)),
    }
    drop(exporter);
    // The export is not the integrity check, but it must not pass off a
    // broken log as sound: the chain is checked (a second streaming pass)
    // and a break is reported.
    match sandbox_audit::verify_log(file, |_, _| {}) {
        Ok(_) => Ok(0),
        Err(e) => {
            let _ = io::stdout().flush();
            Err(Failure::new(
                Code::Negative,
                format!(
                    "audit log `{}` does not verify: {}; the export holds its events as they are (see `sandbox audit verify`)",
                    file.display(),
                    inert(&e.to_string(), false)
                ),
            ))
        }
    }
}

fn write_failure(e: io::Error) -> Failure {
    Failure::internal(format!("cannot write the export: {}", sandbox_audit::read::io_reason(&e)))
}
