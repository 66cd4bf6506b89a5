//! Delivering to one sink: read what it has not been sent, send it, and
//! only then move its cursor.

use crate::cursor::{self, Cursor, CursorError, Lock};
use crate::source::{CheckpointTail, EventTail, SourceError};
use crate::{Origin, Record, Stream};
use sandbox_policy::{Sink, SinkTarget};
use std::path::{Path, PathBuf};

/// The most records sent in one batch (one HTTP request, one TCP write).
const MAX_BATCH: usize = 500;
/// A batch stops growing once its events add up to this many bytes.
const MAX_BATCH_BYTES: usize = 512 * 1024;

/// How a sink sends a batch.
pub(crate) trait Transport: std::fmt::Debug + Send {
    /// Sends every record, in order; `Ok` once the sink has them.
    fn send(&mut self, records: &[Record]) -> Result<(), SendError>;
}

/// Why a batch was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendError {
    /// Worth trying again later: no connection, a timeout, 429, 5xx.
    Unavailable(String),
    /// The sink refused the batch for a reason retrying will not change.
    Refused(String),
}

/// What kind of failure a [`SinkError`] is, and so what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The sink cannot be reached or asks to wait: try again later.
    Unavailable,
    /// Another process is forwarding to this sink: it, or a later try,
    /// delivers.
    Busy,
    /// The sink refused (bad token, bad request), or the setting or a
    /// local file is wrong: fix the configuration.
    Refused,
    /// The log or checkpoint file does not match what the sink was sent
    /// (replaced, rewritten, cut short) or is not intact: nothing more is
    /// sent until someone has looked and reset the cursor.
    Mismatch,
}

/// A failure to deliver to a sink, as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sink `{sink}` ({target}): {message}")]
pub struct SinkError {
    /// What kind of failure.
    pub class: ErrorClass,
    /// The sink's name.
    pub sink: String,
    /// Its type and address (`syslog 10.0.0.5:6514`).
    pub target: String,
    /// What went wrong (never the token).
    pub message: String,
}

/// What one [`Delivery::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Sent a batch and moved the cursor past it.
    Sent {
        /// Events in the batch.
        events: usize,
        /// Checkpoint lines in the batch.
        checkpoints: usize,
    },
    /// Nothing new to send: the sink has everything committed so far.
    Idle,
}

/// A batch read but not yet sent (or sent but its cursor not yet stored):
/// it goes again, as it is, before anything else is read.
#[derive(Debug)]
struct Pending {
    records: Vec<Record>,
    /// The cursor once the batch is delivered.
    after: Cursor,
    events: usize,
    checkpoints: usize,
}

/// Delivery of one log (and its checkpoint file) to one sink.
#[derive(Debug)]
pub struct Delivery {
    name: String,
    target: String,
    log: PathBuf,
    checkpoints: PathBuf,
    cursor_path: PathBuf,
    lock_path: PathBuf,
    lock: Option<Lock>,
    cursor: Cursor,
    tails: Option<(EventTail, CheckpointTail)>,
    pending: Option<Pending>,
    transport: Box<dyn Transport>,
}

impl Delivery {
    /// Prepares delivery of `log` and the checkpoint file `checkpoints` to
    /// `sink`. Nothing is opened or connected yet; a Splunk HEC token is
    /// read from its environment variable now.
    ///
    /// # Ambient Authority
    ///
    /// Reads the environment; [`step`](Self::step) later opens files beside
    /// the log and connects to the sink.
    pub fn open_ambient(log: &Path, checkpoints: &Path, sink: &Sink, origin: Origin) -> Result<Delivery, SinkError> {
        let (target, transport): (String, Box<dyn Transport>) = match &sink.target {
            SinkTarget::Syslog { address } => {
                (format!("syslog {address}"), Box::new(crate::syslog::SyslogTcp::new(address, origin)))
            }
            SinkTarget::SplunkHec { url, token_env } => {
                let target = format!("splunk-hec {}", crate::hec::shown(url));
                let refused = |message: String| SinkError {
                    class: ErrorClass::Refused,
                    sink: sink.name.clone(),
                    target: target.clone(),
                    message,
                };
                let token = match std::env::var(token_env) {
                    Ok(t) if !t.is_empty() => t,
                    Ok(_) | Err(std::env::VarError::NotPresent) => {
                        return Err(refused(format!("the HEC token variable `{token_env}` is not set")));
                    }
                    Err(std::env::VarError::NotUnicode(_)) => {
                        return Err(refused(format!("the HEC token in `{token_env}` is not text")));
                    }
                };
                if !token.bytes().all(|b| (33..=126).contains(&b)) {
                    return Err(refused(format!(
                        "the HEC token in `{token_env}` holds characters a header cannot carry"
                    )));
                }
                (target, Box::new(crate::hec::Hec::new(url, token, origin)))
            }
        };
        Ok(Delivery {
            name: sink.name.clone(),
            target,
            log: log.to_owned(),
            checkpoints: checkpoints.to_owned(),
            cursor_path: cursor::path(log, &sink.name),
            lock_path: cursor::lock_path(log, &sink.name),
            lock: None,
            cursor: Cursor::default(),
            tails: None,
            pending: None,
            transport,
        })
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sink's type and address, as shown in messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The cursor file.
    pub fn cursor_path(&self) -> &Path {
        &self.cursor_path
    }

    /// The `seq` of the last event delivered, as far as this delivery
    /// knows (after its first step).
    pub fn delivered_through(&self) -> Option<u64> {
        self.cursor.event.as_ref().map(|m| m.seq)
    }

    fn err(&self, class: ErrorClass, message: String) -> SinkError {
        SinkError { class, sink: self.name.clone(), target: self.target.clone(), message }
    }

    fn mismatch(&self, what: String) -> SinkError {
        self.err(
            ErrorClass::Mismatch,
            format!(
                "{what}; nothing more is sent to this sink until its cursor `{}` is reset",
                self.cursor_path.display()
            ),
        )
    }

    fn source_error(&self, e: SourceError) -> SinkError {
        match e {
            SourceError::Mismatch(m) => self.mismatch(m),
            SourceError::Io(m) => self.err(ErrorClass::Refused, m),
            SourceError::Locked(m) => self.err(ErrorClass::Unavailable, m),
        }
    }

    fn acquire(&mut self) -> Result<(), SinkError> {
        if self.lock.is_some() {
            return Ok(());
        }
        match cursor::try_lock(&self.lock_path) {
            Ok(Some(lock)) => {
                self.lock = Some(lock);
                Ok(())
            }
            Ok(None) => Err(self.err(
                ErrorClass::Busy,
                format!("another process is forwarding to it (it holds `{}`)", self.lock_path.display()),
            )),
            Err(e) => Err(self.err(
                ErrorClass::Refused,
                format!("cannot open `{}`: {}", self.lock_path.display(), sandbox_audit::read::io_reason(&e)),
            )),
        }
    }

    /// Forgets where the sink stands (deletes its cursor): the next step
    /// starts again at the log's first event. Takes the sink's lock.
    pub fn reset(&mut self) -> Result<(), SinkError> {
        self.acquire()?;
        cursor::remove(&self.cursor_path).map_err(|e| {
            self.err(
                ErrorClass::Refused,
                format!("cannot remove `{}`: {}", self.cursor_path.display(), sandbox_audit::read::io_reason(&e)),
            )
        })?;
        self.cursor = Cursor::default();
        self.tails = None;
        self.pending = None;
        Ok(())
    }

    /// Sends the next batch the sink has not been sent (events first, then
    /// checkpoint lines), and moves the cursor past it. A batch that fails
    /// is kept and sent again, unchanged, by the next step.
    pub fn step(&mut self) -> Result<Step, SinkError> {
        self.acquire()?;
        if self.tails.is_none() {
            let cursor = match cursor::load(&self.cursor_path, &self.name) {
                Ok(c) => c.unwrap_or_default(),
                Err(e @ CursorError::Invalid { .. }) => return Err(self.mismatch(e.to_string())),
                Err(e @ CursorError::Unreadable { .. }) => return Err(self.err(ErrorClass::Refused, e.to_string())),
            };
            let events = EventTail::resume(&self.log, cursor.event.as_ref()).map_err(|e| self.source_error(e))?;
            let checkpoints = CheckpointTail::resume(&self.checkpoints, cursor.checkpoints.as_ref())
                .map_err(|e| self.source_error(e))?;
            self.cursor = cursor;
            self.tails = Some((events, checkpoints));
        }
        if self.pending.is_none() {
            self.pending = self.next_batch()?;
        }
        let Some(pending) = &self.pending else { return Ok(Step::Idle) };
        self.transport.send(&pending.records).map_err(|e| match e {
            SendError::Unavailable(m) => self.err(ErrorClass::Unavailable, m),
            SendError::Refused(m) => self.err(ErrorClass::Refused, m),
        })?;
        if let Err(e) = cursor::store(&self.cursor_path, &self.name, &pending.after) {
            return Err(self.err(
                ErrorClass::Refused,
                format!(
                    "sent, but cannot store the cursor `{}`: {}; what was sent goes again",
                    self.cursor_path.display(),
                    sandbox_audit::read::io_reason(&e)
                ),
            ));
        }
        let Some(sent) = self.pending.take() else { return Ok(Step::Idle) };
        self.cursor = sent.after;
        Ok(Step::Sent { events: sent.events, checkpoints: sent.checkpoints })
    }

    fn next_batch(&mut self) -> Result<Option<Pending>, SinkError> {
        let Some((events, _)) = self.tails.as_mut() else { return Ok(None) };
        let lines = events.read(MAX_BATCH, MAX_BATCH_BYTES);
        let lines = lines.map_err(|e| self.source_error(e))?;
        if let Some(last) = lines.last() {
            let after = Cursor { event: Some(last.mark()), checkpoints: self.cursor.checkpoints.clone() };
            let n = lines.len();
            let records = lines.into_iter().map(|l| Record { stream: Stream::Event, line: l.bytes }).collect();
            return Ok(Some(Pending { records, after, events: n, checkpoints: 0 }));
        }
        let sent = self.cursor.event.as_ref().map_or(0, |m| m.seq + 1);
        let Some((_, checkpoints)) = self.tails.as_mut() else { return Ok(None) };
        let lines = checkpoints.read(MAX_BATCH, sent);
        let lines = lines.map_err(|e| self.source_error(e))?;
        if let Some(last) = lines.last() {
            let after = Cursor { event: self.cursor.event.clone(), checkpoints: Some(last.mark()) };
            let n = lines.len();
            let records = lines.into_iter().map(|l| Record { stream: Stream::Checkpoint, line: l.bytes }).collect();
            return Ok(Some(Pending { records, after, events: 0, checkpoints: n }));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
