//! The runner's side: submit a request, wait for its outcome.
//!
//! Blocking (the runtime calls it from a host call). Connection failures
//! are retried until the request's own deadline, so a runner rides out a
//! restart of the service; the service keeps the request.

use crate::protocol::{ApiError, RequestView, State, Submission, Submitted};
use std::time::{Duration, Instant};

/// The longest single wait asked of the service.
const WAIT_STEP: Duration = Duration::from_secs(25);

/// Why a request could not be settled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The service refused the request (the reason is its message).
    #[error("the approval service refused the request ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The service's one-line reason.
        message: String,
    },
    /// The service could not be reached before the deadline.
    #[error("the approval service at {url} could not be reached: {reason}")]
    Unreachable {
        /// Base URL.
        url: String,
        /// The last error.
        reason: String,
    },
    /// The deadline passed without a decision.
    #[error("no decision before the deadline")]
    Timeout,
}

/// A client for one service, with one runner token.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client for the service at `base` (`http://host:port`), using the
    /// runner `token`.
    pub fn new(base: &str, token: &str) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(WAIT_STEP + Duration::from_secs(10)))
            .max_redirects(0)
            .build()
            .new_agent();
        Client { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), agent }
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> ClientError {
        ClientError::Unreachable { url: self.base.clone(), reason: e.to_string() }
    }

    fn refused(status: u16, mut body: ureq::Body) -> ClientError {
        let message = body.read_json::<ApiError>().map(|e| e.error).unwrap_or_else(|_| format!("HTTP {status}"));
        ClientError::Refused { status, message }
    }

    /// Submits a request, retrying connection failures until `deadline`.
    pub fn submit(&self, s: &Submission, deadline: Instant) -> Result<Submitted, ClientError> {
        let url = format!("{}/api/runner/requests", self.base);
        let mut last = None;
        while Instant::now() < deadline {
            match self.agent.post(&url).header("Authorization", &format!("Bearer {}", self.token)).send_json(s) {
                Ok(resp) if resp.status() == 201 => {
                    return resp.into_body().read_json::<Submitted>().map_err(|e| self.unreachable(e));
                }
                // A proxy in front of a restarting service: try again.
                Ok(resp) if resp.status().is_server_error() => {
                    last = Some(format!("HTTP {}", resp.status().as_u16()));
                    std::thread::sleep(
                        Duration::from_millis(500).min(deadline.saturating_duration_since(Instant::now())),
                    );
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    return Err(Client::refused(status, resp.into_body()));
                }
                Err(e) => {
                    last = Some(e.to_string());
                    std::thread::sleep(
                        Duration::from_millis(500).min(deadline.saturating_duration_since(Instant::now())),
                    );
                }
            }
        }
        Err(match last {
            Some(reason) => ClientError::Unreachable { url: self.base.clone(), reason },
            None => ClientError::Timeout,
        })
    }

    /// Waits until the request is decided or `deadline` passes, retrying
    /// connection failures (a restarting service) meanwhile.
    pub fn wait(&self, id: &str, deadline: Instant) -> Result<RequestView, ClientError> {
        let mut last_error = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(match last_error {
                    Some(reason) => ClientError::Unreachable { url: self.base.clone(), reason },
                    None => ClientError::Timeout,
                });
            }
            let secs = left.min(WAIT_STEP).as_secs().max(1);
            let url = format!("{}/api/runner/requests/{id}?wait={secs}", self.base);
            match self.agent.get(&url).header("Authorization", &format!("Bearer {}", self.token)).call() {
                Ok(resp) if resp.status() == 200 => {
                    let view = resp.into_body().read_json::<RequestView>().map_err(|e| self.unreachable(e))?;
                    if view.state != State::Pending {
                        return Ok(view);
                    }
                    last_error = None;
                }
                // Too many waits of this runner at once: a slot frees
                // as soon as one of them is answered.
                Ok(resp) if resp.status().is_server_error() || resp.status() == 429 => {
                    last_error = Some(format!("HTTP {}", resp.status().as_u16()));
                    std::thread::sleep(Duration::from_millis(1000).min(left));
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    return Err(Client::refused(status, resp.into_body()));
                }
                Err(e) => {
                    last_error = Some(e.to_string());
                    std::thread::sleep(Duration::from_millis(500).min(left));
                }
            }
        }
    }
}
