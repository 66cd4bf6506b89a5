//! The approval service: the routes of [`crate::protocol`] and the reviewer
//! page, over a [`Store`].
//!
//! Every request is first checked to be addressed to this service (`Host`
//! must be its own address, `421` otherwise; a state-changing request with
//! a foreign or `null` `Origin` gets `403`), then for a token (`401`), then
//! for its meaning. A reviewer's decision is checked in the order id
//! (`404`), state (`409`), right to vote (`403`), body (`400`); a runner's
//! submission in the order body (`400`), rule that can never be met
//! (`422`).
//!
//! Requests expire at `created + timeout_ms`: checked on every read and
//! by a sweep once a second. A runner's wait is woken by every change of
//! state (one process-wide signal), by the request's expiry, by the end of
//! the wait, and by the service stopping.
//!
//! Logs (`tracing`): one event per request with method, path (never the
//! query), status and duration; one per submission, vote and expiry with
//! ids and names. Never a token, never a body.

mod checks;

pub use checks::{AddressError, Origins};

use crate::config::{Directory, Reviewer, Runner};
use crate::protocol::{
    ApiError, DecisionBody, MAX_WAIT_SECS, Me, RequestList, RequestView, State, StateOnly, Submission, Submitted, Vote,
};
use crate::rules;
use crate::store::{Record, Store, StoreError, VoteAdded, VoteRecord, now_ms, rfc3339};
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State as Shared};
use axum::http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

/// The largest request body read (a submission with a 64 KiB preview,
/// JSON-escaped, fits).
const MAX_BODY: usize = 1024 * 1024;
/// The longest reviewer comment.
const MAX_COMMENT: usize = 16 * 1024;
/// How often pending requests are checked for expiry.
const SWEEP: Duration = Duration::from_secs(1);
/// How long open connections are given to finish once the service stops.
const GRACE: Duration = Duration::from_secs(5);

const INDEX_HTML: &str = include_str!("../page/index.html");
const PAGE_JS: &str = include_str!("../page/page.js");
const PAGE_CSS: &str = include_str!("../page/page.css");

/// Headers on every answer: nothing is cached, nothing is framed, the page
/// runs only its own script and style.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
];

/// The service: reviewers and runners, where requests are kept, and its
/// own addresses.
#[derive(Debug, Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: Directory,
    store: Arc<dyn Store>,
    origins: Origins,
    /// Bumped on every change of a request (new, vote, decision, expiry).
    changed: watch::Sender<u64>,
    /// Set once the service is stopping: waits return at once.
    stopping: watch::Sender<bool>,
    /// Votes are evaluated one at a time.
    votes: Mutex<()>,
}

/// An error answer: a status and one line.
#[derive(Debug)]
struct Fail {
    status: StatusCode,
    message: String,
}

impl Fail {
    fn new(status: StatusCode, message: impl Into<String>) -> Fail {
        Fail { status, message: message.into() }
    }

    fn not_found(id: &str) -> Fail {
        Fail::new(StatusCode::NOT_FOUND, format!("no request `{}`", crate::config::printable(id)))
    }

    fn internal(e: impl std::fmt::Display) -> Fail {
        tracing::error!(error = %e, "internal error");
        Fail::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error (see the service's log)")
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(ApiError { error: self.message })).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl Service {
    /// A service for the reviewers and runners of `dir`, keeping requests
    /// in `store`, answering to `origins`.
    pub fn new(dir: Directory, store: Arc<dyn Store>, origins: Origins) -> Service {
        Service {
            inner: Arc::new(Inner {
                dir,
                store,
                origins,
                changed: watch::Sender::new(0),
                stopping: watch::Sender::new(false),
                votes: Mutex::new(()),
            }),
        }
    }

    /// The routes, with the address checks, security headers and logging.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(page_index))
            .route("/page.js", get(page_js))
            .route("/page.css", get(page_css))
            .route("/api/me", get(me))
            .route("/api/requests", get(list))
            .route("/api/requests/{id}/decision", post(decide))
            .route("/api/runner/requests", post(submit))
            .route("/api/runner/requests/{id}", get(runner_get))
            .fallback(no_route)
            .method_not_allowed_fallback(wrong_method)
            .layer(from_fn_with_state(self.inner.clone(), guard))
            .layer(from_fn(log))
            .with_state(self.inner.clone())
    }

    /// Moves every pending request past its expiry to `expired`; returns
    /// how many moved.
    pub async fn expire_due(&self) -> Result<usize, StoreError> {
        self.inner.expire_due().await
    }

    /// Serves on `listener` until `shutdown` resolves, then stops: waits
    /// in progress return at once, open connections get a few seconds.
    /// Requests that expired while the service was down expire first.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Err(e) = self.inner.expire_due().await {
            tracing::error!(error = %e, "expiry sweep failed");
        }
        let sweeper = {
            let inner = self.inner.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SWEEP);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(e) = inner.expire_due().await {
                        tracing::error!(error = %e, "expiry sweep failed");
                    }
                }
            })
        };
        let inner = self.inner.clone();
        let graceful = async move {
            shutdown.await;
            tracing::info!("stopping");
            inner.stopping.send_replace(true);
        };
        let mut stopped = self.inner.stopping.subscribe();
        let server = axum::serve(listener, self.router()).with_graceful_shutdown(graceful);
        let result = tokio::select! {
            r = server.into_future() => r,
            () = async {
                let _ = stopped.wait_for(|s| *s).await;
                tokio::time::sleep(GRACE).await;
            } => Ok(()),
        };
        sweeper.abort();
        result
    }
}

/// Resolves on SIGTERM or SIGINT. Installs the handlers at once (so call
/// it before announcing that the service is ready); needs a tokio runtime.
pub fn termination_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

impl Inner {
    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Runs a store call off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| StoreError::Backend(format!("a database task failed: {e}")))?
    }

    async fn expire_due(&self) -> Result<usize, StoreError> {
        let now = now_ms();
        let moved = self
            .blocking(move |st| {
                let mut moved = Vec::new();
                for (id, at) in st.due_expiries(now)? {
                    if st.set_state(&id, State::Expired, at)? {
                        moved.push(id);
                    }
                }
                Ok(moved)
            })
            .await?;
        for id in &moved {
            tracing::info!(id = %id, "request expired");
        }
        if !moved.is_empty() {
            self.notify();
        }
        Ok(moved.len())
    }

    /// The request, expired first if its time is up.
    async fn fresh(&self, id: String) -> Result<Option<Record>, Fail> {
        let now = now_ms();
        let (record, moved) = self
            .blocking(move |st| {
                let Some(r) = st.get(&id)? else {
                    return Ok((None, false));
                };
                if r.state == State::Pending && r.expires_ms <= now {
                    let moved = st.set_state(&id, State::Expired, r.expires_ms)?;
                    return Ok((st.get(&id)?, moved));
                }
                Ok((Some(r), false))
            })
            .await
            .map_err(Fail::internal)?;
        if moved && let Some(r) = &record {
            tracing::info!(id = %r.id, "request expired");
            self.notify();
        }
        Ok(record)
    }

    fn reviewer(&self, headers: &HeaderMap) -> Result<&Reviewer, Fail> {
        let token = checks::bearer(headers).ok_or_else(|| {
            Fail::new(StatusCode::UNAUTHORIZED, "missing reviewer token (`Authorization: Bearer ...`)")
        })?;
        self.dir.reviewer_by_token(token).ok_or_else(|| Fail::new(StatusCode::UNAUTHORIZED, "unknown reviewer token"))
    }

    fn runner(&self, headers: &HeaderMap) -> Result<&Runner, Fail> {
        let token = checks::bearer(headers)
            .ok_or_else(|| Fail::new(StatusCode::UNAUTHORIZED, "missing runner token (`Authorization: Bearer ...`)"))?;
        self.dir.runner_by_token(token).ok_or_else(|| Fail::new(StatusCode::UNAUTHORIZED, "unknown runner token"))
    }
}

/// Refuses requests not addressed to this service; adds the security
/// headers to every answer.
async fn guard(Shared(inner): Shared<Arc<Inner>>, req: Request, next: Next) -> Response {
    let state_changing = !matches!(*req.method(), Method::GET | Method::HEAD);
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    let mut response = match inner.origins.check(req.headers(), authority.as_deref(), state_changing) {
        Ok(()) => next.run(req).await,
        Err((status, message)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
            Fail::new(status, message).into_response()
        }
    };
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    response
}

/// One event per request: method, path (without the query), status.
async fn log(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let mut path: String = crate::config::printable(req.uri().path());
    if path.len() > 200 {
        let mut cut = 200;
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        path.truncate(cut);
        path.push_str("...");
    }
    let start = std::time::Instant::now();
    let response = next.run(req).await;
    tracing::info!(
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        ms = start.elapsed().as_millis() as u64,
        "request"
    );
    response
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    ([(CONTENT_TYPE, content_type)], text).into_response()
}

async fn page_index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn page_js() -> Response {
    asset("text/javascript; charset=utf-8", PAGE_JS)
}

async fn page_css() -> Response {
    asset("text/css; charset=utf-8", PAGE_CSS)
}

async fn no_route() -> Fail {
    Fail::new(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn wrong_method() -> Fail {
    Fail::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint")
}

/// `key=value` pairs of a query; `400` on a key not in `allowed` or given
/// twice.
fn query(raw: Option<String>, allowed: &[&str]) -> Result<Vec<(String, String)>, Fail> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(Fail::new(
                StatusCode::BAD_REQUEST,
                format!("unknown query parameter `{}`", crate::config::printable(&k)),
            ));
        }
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(Fail::new(StatusCode::BAD_REQUEST, format!("query parameter `{k}` given twice")));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// `GET /api/me`.
async fn me(Shared(inner): Shared<Arc<Inner>>, headers: HeaderMap) -> Result<Json<crate::protocol::Me>, Fail> {
    let r = inner.reviewer(&headers)?;
    Ok(Json(Me { name: r.name.clone(), roles: r.roles.clone() }))
}

/// `GET /api/requests[?state=...][&limit=N]`.
async fn list(
    Shared(inner): Shared<Arc<Inner>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<RequestList>, Fail> {
    inner.reviewer(&headers)?;
    let mut state = None;
    let mut limit = None;
    for (k, v) in query(raw, &["state", "limit"])? {
        if k == "state" {
            state = Some(State::parse(&v).ok_or_else(|| {
                Fail::new(StatusCode::BAD_REQUEST, "`state` must be pending, approved, rejected or expired")
            })?);
        } else {
            limit = Some(
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Fail::new(StatusCode::BAD_REQUEST, "`limit` must be a positive integer"))?,
            );
        }
    }
    inner.expire_due().await.map_err(Fail::internal)?;
    let records = inner.blocking(move |st| st.list(state, limit)).await.map_err(Fail::internal)?;
    Ok(Json(RequestList { requests: records.iter().map(Record::view).collect() }))
}

/// `POST /api/requests/{id}/decision`.
async fn decide(
    Shared(inner): Shared<Arc<Inner>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<StateOnly>, Fail> {
    let reviewer = inner.reviewer(&headers)?.clone();
    // Read now, judged last: the order of the checks is the contract.
    let bytes = axum::body::to_bytes(body, MAX_BODY).await;
    let Ok(Path(id)) = id else {
        return Err(Fail::new(StatusCode::NOT_FOUND, "no such request"));
    };
    let _one_at_a_time = inner.votes.lock().await;
    let record = inner.fresh(id.clone()).await?.ok_or_else(|| Fail::not_found(&id))?;
    if record.state != State::Pending {
        return Err(Fail::new(StatusCode::CONFLICT, format!("the request is already {}", record.state.as_str())));
    }
    if record.votes.iter().any(|v| v.by == reviewer.name) {
        return Err(Fail::new(StatusCode::CONFLICT, format!("`{}` already voted on this request", reviewer.name)));
    }
    let sub = &record.submission;
    rules::may_vote(&sub.require, &sub.user, &reviewer.name, &inner.dir)
        .map_err(|e| Fail::new(StatusCode::FORBIDDEN, e.to_string()))?;
    let bytes = bytes.map_err(|_| {
        Fail::new(StatusCode::BAD_REQUEST, format!("the body is unreadable or larger than {MAX_BODY} bytes"))
    })?;
    let body: DecisionBody = serde_json::from_slice(&bytes)
        .map_err(|e| Fail::new(StatusCode::BAD_REQUEST, format!("invalid decision: {e}")))?;
    if body.comment.len() > MAX_COMMENT {
        return Err(Fail::new(StatusCode::BAD_REQUEST, format!("`comment` is longer than {MAX_COMMENT} bytes")));
    }
    let now = now_ms();
    let vote = VoteRecord {
        by: reviewer.name.clone(),
        decision: body.decision,
        at_ms: now,
        comment: body.comment,
        effect_sha256: sub.effect_sha256.clone(),
    };
    let vid = id.clone();
    match inner.blocking(move |st| st.add_vote(&vid, &vote)).await.map_err(Fail::internal)? {
        VoteAdded::Added => {}
        VoteAdded::NotFound => return Err(Fail::not_found(&id)),
        VoteAdded::NotPending => return Err(Fail::new(StatusCode::CONFLICT, "the request is no longer pending")),
        VoteAdded::AlreadyVoted => {
            return Err(Fail::new(StatusCode::CONFLICT, format!("`{}` already voted on this request", reviewer.name)));
        }
    }
    let record = inner.fresh(id.clone()).await?.ok_or_else(|| Fail::not_found(&id))?;
    let votes: Vec<(&str, Vote)> = record.votes.iter().map(|v| (v.by.as_str(), v.decision)).collect();
    let sub = &record.submission;
    let mut state = rules::evaluate(&sub.require, &sub.user, &votes, &inner.dir);
    if record.state != State::Pending {
        state = record.state;
    } else if state != State::Pending {
        let sid = id.clone();
        let moved = inner.blocking(move |st| st.set_state(&sid, state, now)).await.map_err(Fail::internal)?;
        if !moved {
            let sid = id.clone();
            let now_state = inner.blocking(move |st| st.get(&sid)).await.map_err(Fail::internal)?;
            state = now_state.map_or(state, |r| r.state);
        }
    }
    inner.notify();
    tracing::info!(
        id = %id,
        reviewer = %reviewer.name,
        decision = if body.decision == Vote::Approve { "approve" } else { "reject" },
        state = state.as_str(),
        "vote recorded"
    );
    Ok(Json(StateOnly { state }))
}

/// `POST /api/runner/requests`.
async fn submit(
    Shared(inner): Shared<Arc<Inner>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Submitted>), Fail> {
    let runner = inner.runner(&headers)?.name.clone();
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        Fail::new(StatusCode::BAD_REQUEST, format!("the body is unreadable or larger than {MAX_BODY} bytes"))
    })?;
    let submission: Submission = serde_json::from_slice(&bytes)
        .map_err(|e| Fail::new(StatusCode::BAD_REQUEST, format!("invalid submission: {e}")))?;
    if let Some(m) = checks::malformed(&submission) {
        return Err(Fail::new(StatusCode::BAD_REQUEST, format!("invalid submission: {m}")));
    }
    rules::feasible(&submission.require, &submission.user, &inner.dir)
        .map_err(|e| Fail::new(StatusCode::UNPROCESSABLE_ENTITY, format!("the rule can never be met: {e}")))?;
    let created_ms = now_ms();
    let expires_ms = created_ms.saturating_add(i64::try_from(submission.timeout_ms).unwrap_or(i64::MAX));
    let record = Record {
        id: uuid::Uuid::new_v4().to_string(),
        runner: runner.clone(),
        state: State::Pending,
        created_ms,
        expires_ms,
        decided_ms: None,
        submission,
        votes: Vec::new(),
    };
    let id = record.id.clone();
    inner.blocking(move |st| st.insert(&record)).await.map_err(Fail::internal)?;
    inner.notify();
    tracing::info!(id = %id, runner = %runner, "request submitted");
    Ok((StatusCode::CREATED, Json(Submitted { id, state: State::Pending, expires: rfc3339(expires_ms) })))
}

/// `GET /api/runner/requests/{id}[?wait=SECONDS]`: the request, once it
/// is decided or the wait is over.
async fn runner_get(
    Shared(inner): Shared<Arc<Inner>>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    let runner = inner.runner(&headers)?.name.clone();
    let mut wait = 0;
    for (_, v) in query(raw, &["wait"])? {
        wait = v
            .parse::<u64>()
            .map_err(|_| Fail::new(StatusCode::BAD_REQUEST, "`wait` must be a whole number of seconds"))?
            .min(MAX_WAIT_SECS);
    }
    let Ok(Path(id)) = id else {
        return Err(Fail::new(StatusCode::NOT_FOUND, "no such request"));
    };
    let mut changed = inner.changed.subscribe();
    let mut stopping = inner.stopping.subscribe();
    let deadline = Instant::now() + Duration::from_secs(wait);
    loop {
        // A runner sees only the requests it submitted.
        let record =
            inner.fresh(id.clone()).await?.filter(|r| r.runner == runner).ok_or_else(|| Fail::not_found(&id))?;
        let stop = *stopping.borrow_and_update();
        if record.state != State::Pending || Instant::now() >= deadline || stop {
            let view: RequestView = record.view();
            return Ok(Json(view).into_response());
        }
        let to_expiry = u64::try_from(record.expires_ms.saturating_sub(now_ms())).unwrap_or(0);
        let wake = deadline.min(Instant::now() + Duration::from_millis(to_expiry + 1));
        tokio::select! {
            r = changed.changed() => {
                if r.is_err() {
                    tokio::time::sleep_until(wake).await;
                }
            }
            () = tokio::time::sleep_until(wake) => {}
            _ = stopping.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests;
