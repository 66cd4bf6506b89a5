//! `sandbox approvals serve` and `sandbox approvals token`.

use crate::exit::Failure;
use clap::Subcommand;
use sandbox_approvals::server::{MAX_CONNECTIONS, Origins, Service, termination_signal};
use sandbox_approvals::store::SqliteStore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Run the approval service: reviewers decide on the requests runners
    /// submit (`sandbox run --approve http://ADDR`), on a web page at `/`
    /// and a JSON API. Prints `listening on URL` once ready; stops on
    /// SIGTERM or SIGINT.
    Serve {
        /// The address to listen on (`HOST:PORT`; port 0 picks a free one).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8700")]
        listen: SocketAddr,
        /// The reviewers file: `[[reviewer]]` name, roles, token_sha256 and
        /// `[[runner]]` name, token_sha256.
        #[arg(long, value_name = "FILE")]
        reviewers: PathBuf,
        /// The SQLite database that keeps requests and votes (created if
        /// missing).
        #[arg(long, value_name = "FILE")]
        db: PathBuf,
        /// The URL reviewers and runners use when the service sits behind a
        /// proxy (`https://approvals.example.com`); requests for any other
        /// host are refused.
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
    },
    /// Print a new random token (line 1) and its `sha256:` hash for the
    /// reviewers file (line 2).
    Token,
}

impl ApprovalsCommand {
    pub fn execute(self) -> Result<i32, Failure> {
        match self {
            ApprovalsCommand::Token => {
                let (token, hash) = sandbox_approvals::new_token();
                super::emit(&format!("{token}\n{hash}\n"));
                Ok(0)
            }
            ApprovalsCommand::Serve { listen, reviewers, db, public_url } => serve(listen, &reviewers, &db, public_url),
        }
    }
}

fn serve(
    listen: SocketAddr,
    reviewers: &std::path::Path,
    db: &std::path::Path,
    public_url: Option<String>,
) -> Result<i32, Failure> {
    let descriptors = raise_descriptor_limit();
    let dir = sandbox_approvals::config::load(reviewers).map_err(|e| Failure::usage(e.to_string()))?;
    // Checked before anything is opened; checked again with the real port.
    Origins::new(listen, public_url.as_deref()).map_err(|e| Failure::usage(e.to_string()))?;
    // Bound before the database is opened: a refusal creates nothing.
    let listener = std::net::TcpListener::bind(listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| Failure::usage(format!("--listen {listen}: {}", sandbox_policy::io_reason(&e))))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::internal(format!("--listen {listen}: {}", sandbox_policy::io_reason(&e))))?;
    let store = SqliteStore::open(db).map_err(|e| Failure::usage(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("approvals")
        .build()
        .map_err(|e| Failure::internal(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| Failure::internal(format!("--listen {listen}: {}", sandbox_policy::io_reason(&e))))?;
        let origins = Origins::new(local, public_url.as_deref()).map_err(|e| Failure::usage(e.to_string()))?;
        let stop = termination_signal().map_err(|e| {
            Failure::internal(format!("cannot handle SIGTERM and SIGINT: {}", sandbox_policy::io_reason(&e)))
        })?;
        let line = if origins.url() == format!("http://{local}") {
            format!("listening on http://{local}\n")
        } else {
            format!("listening on http://{local} (reviewers open {})\n", origins.url())
        };
        let service = Service::new(dir, Arc::new(store), origins);
        service.set_max_connections(connection_bound(descriptors));
        super::emit(&line);
        tracing::info!(address = %local, "approval service ready");
        service.serve(listener, stop).await.map_err(|e| Failure::internal(format!("the service failed: {e}")))?;
        Ok(0)
    })
}

/// Raises the soft limit on open files to the hard limit (a few hundred
/// idle clients must not exhaust the service's descriptors); returns the
/// soft limit now in force (`None`: unlimited).
fn raise_descriptor_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return limit.maximum,
            Err(e) => tracing::warn!(error = %e, "cannot raise the limit on open files"),
        }
    }
    limit.current
}

/// The connections served at once: [`MAX_CONNECTIONS`], fewer when the
/// descriptor limit leaves less room (64 are kept for the database, the
/// listener and the runtime).
fn connection_bound(descriptors: Option<u64>) -> usize {
    let room = descriptors.map_or(usize::MAX, |d| usize::try_from(d.saturating_sub(64)).unwrap_or(usize::MAX));
    MAX_CONNECTIONS.min(room).max(1)
}
