//! The tool's stdout and stderr: passed through to the host's, counted
//! against `limits.output`, and never ahead of the audit log.
//!
//! Before any byte of the tool's output leaves the host, every audit event
//! recorded so far is written to the log file (the operating system has it;
//! it is fsynced before the next effect and at the end). So data a tool
//! read cannot reach its caller before the read is on record. Beyond the
//! limit, the run stops (exit code 123).

use sandbox_host_api::{SharedAudit, Stop, StopCell, lock_audit};
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Which host stream a guest stream writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The host's stdout.
    Stdout,
    /// The host's stderr.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A guest output stream with a byte budget and the audit-first rule.
#[derive(Clone)]
pub struct GuardedOutput {
    stream: Stream,
    limit: u64,
    written: Arc<AtomicU64>,
    audit: SharedAudit,
    stop: StopCell,
}

impl std::fmt::Debug for GuardedOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedOutput")
            .field("stream", &self.stream)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl GuardedOutput {
    /// A stream to `stream` allowing `limit` bytes in all.
    pub fn new(stream: Stream, limit: u64, audit: SharedAudit, stop: StopCell) -> GuardedOutput {
        GuardedOutput { stream, limit, written: Arc::new(AtomicU64::new(0)), audit, stop }
    }

    fn put(&self, bytes: &[u8]) -> Result<(), StreamError> {
        let before = self.written.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if before + bytes.len() as u64 > self.limit {
            let _ = self.stop.set(Stop::Output { stream: self.stream.name(), limit: self.limit });
            return Err(StreamError::trap(&format!(
                "{} exceeded the output limit of {} bytes",
                self.stream.name(),
                self.limit
            )));
        }
        if let Err(e) = lock_audit(&self.audit).write() {
            let _ = self.stop.set(Stop::Audit(e.to_string()));
            return Err(StreamError::trap(&format!("audit log failed: {e}")));
        }
        let result = match self.stream {
            Stream::Stdout => std::io::stdout().write_all(bytes),
            Stream::Stderr => std::io::stderr().write_all(bytes),
        };
        result.map_err(|e| StreamError::LastOperationFailed(e.into()))
    }

    fn flush_host(&self) -> std::io::Result<()> {
        match self.stream {
            Stream::Stdout => std::io::stdout().flush(),
            Stream::Stderr => std::io::stderr().flush(),
        }
    }
}

impl IsTerminal for GuardedOutput {
    fn is_terminal(&self) -> bool {
        match self.stream {
            Stream::Stdout => std::io::IsTerminal::is_terminal(&std::io::stdout()),
            Stream::Stderr => std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }
}

impl StdoutStream for GuardedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuardedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuardedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.put(&bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.flush_host().map_err(|e| StreamError::LastOperationFailed(e.into()))
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for GuardedOutput {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.put(buf).map(|()| buf.len()).map_err(std::io::Error::other))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.flush_host())
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
