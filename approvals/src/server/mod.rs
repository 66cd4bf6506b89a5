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
    ApiError, DEFAULT_PAGE, DecisionBody, MAX_BODY, MAX_PAGE, MAX_PENDING_PER_RUNNER, MAX_WAIT_SECS,
    MAX_WAITS_PER_RUNNER, Me, RequestList, RequestView, State, StateOnly, Submission, Submitted, Vote,
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

/// How long a client has to send a request's head (from connecting, or
/// from the end of its previous answer): past it the connection is closed.
/// This is also how long an idle kept-alive connection stays open.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a request's body once its head arrived.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The most connections served at once; past it new connections wait in
/// the listen queue until one closes (at the latest after
/// [`HEADER_TIMEOUT`] for a silent one).
pub const MAX_CONNECTIONS: usize = 512;
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
    /// Submissions are counted against the runner's quota one at a time.
    submissions: Mutex<()>,
    /// Waits in progress, by runner name.
    waits: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// Connections served at once.
    max_connections: std::sync::atomic::AtomicUsize,
}

/// A wait in progress, counted against its runner until dropped.
struct WaitSlot {
    inner: Arc<Inner>,
    runner: String,
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        let mut waits = self.inner.waits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = waits.get_mut(&self.runner) {
            *n -= 1;
            if *n == 0 {
                waits.remove(&self.runner);
            }
        }
    }
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
                submissions: Mutex::new(()),
                waits: std::sync::Mutex::new(std::collections::HashMap::new()),
                max_connections: std::sync::atomic::AtomicUsize::new(MAX_CONNECTIONS),
            }),
        }
    }

    /// Serves at most `n` connections at once (at least one): for a
    /// process whose descriptor limit is below what [`MAX_CONNECTIONS`]
    /// needs.
    pub fn set_max_connections(&self, n: usize) {
        self.inner.max_connections.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
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
        let server = accept_loop(listener, self.router(), self.max_connections(), self.inner.stopping.subscribe());
        tokio::spawn(graceful);
        let result = tokio::select! {
            r = server => r,
            () = async {
                let _ = stopped.wait_for(|s| *s).await;
                tokio::time::sleep(GRACE).await;
            } => Ok(()),
        };
        sweeper.abort();
        result
    }
}

/// Accepts connections while fewer than `max` are open and serves each
/// with HTTP/1.1: a client that does not send a request's head within
/// [`HEADER_TIMEOUT`] (a silent or half-sent request, or an idle
/// kept-alive connection) is disconnected. Once `stopping` is set, no new
/// connection is accepted and open ones finish their current request;
/// returns when all are closed.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: Router,
    max: usize,
    mut stopping: watch::Receiver<bool>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    let mut open = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
            _ = stopping.wait_for(|s| *s) => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before it was
                    // taken: log, pause a little, go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    drop(permit);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopping.wait_for(|s| *s) => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let mut stop = stopping.clone();
        open.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection closed");
                    }
                    return;
                }
                _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
        while open.try_join_next().is_some() {}
    }
    while open.join_next().await.is_some() {}
    Ok(())
}

impl Service {
    /// How many connections the service serves at once.
    pub fn max_connections(&self) -> usize {
        self.inner.max_connections.load(std::sync::atomic::Ordering::Relaxed)
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

/// `GET /api/requests[?state=...][&limit=N][&offset=M]`: one page.
async fn list(
    Shared(inner): Shared<Arc<Inner>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<RequestList>, Fail> {
    inner.reviewer(&headers)?;
    let mut state = None;
    let mut limit = DEFAULT_PAGE;
    let mut offset = 0;
    for (k, v) in query(raw, &["state", "limit", "offset"])? {
        if k == "state" {
            state = Some(State::parse(&v).ok_or_else(|| {
                Fail::new(StatusCode::BAD_REQUEST, "`state` must be pending, approved, rejected or expired")
            })?);
        } else if k == "limit" {
            limit = v.parse::<usize>().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
                Fail::new(StatusCode::BAD_REQUEST, format!("`limit` must be a whole number from 1 to {MAX_PAGE}"))
            })?;
        } else {
            offset = v
                .parse::<usize>()
                .map_err(|_| Fail::new(StatusCode::BAD_REQUEST, "`offset` must be a whole number"))?;
        }
    }
    inner.expire_due().await.map_err(Fail::internal)?;
    let (records, total) = inner
        .blocking(move |st| Ok((st.list(state, Some(limit), offset)?, st.count(state, None)?)))
        .await
        .map_err(Fail::internal)?;
    Ok(Json(RequestList { requests: records.iter().map(Record::view).collect(), total: total as u64 }))
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
    let bytes = read_body(body).await;
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
    let bytes = bytes?;
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
    let bytes = read_body(body).await?;
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
    let _one_at_a_time = inner.submissions.lock().await;
    let quota_runner = runner.clone();
    let pending =
        inner.blocking(move |st| st.count(Some(State::Pending), Some(&quota_runner))).await.map_err(Fail::internal)?;
    if pending >= MAX_PENDING_PER_RUNNER {
        tracing::warn!(runner = %runner, pending, "submission refused: quota");
        return Err(Fail::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "runner `{runner}` already has {pending} requests pending, the most one runner may have \
                 ({MAX_PENDING_PER_RUNNER}); try again once reviewers have decided some"
            ),
        ));
    }
    inner.blocking(move |st| st.insert(&record)).await.map_err(Fail::internal)?;
    inner.notify();
    tracing::info!(id = %id, runner = %runner, "request submitted");
    Ok((StatusCode::CREATED, Json(Submitted { id, state: State::Pending, expires: rfc3339(expires_ms) })))
}

/// Counts a wait against its runner: `429` past [`MAX_WAITS_PER_RUNNER`].
fn wait_slot(inner: &Arc<Inner>, runner: &str) -> Result<WaitSlot, Fail> {
    let mut waits = inner.waits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let n = waits.entry(runner.to_owned()).or_insert(0);
    if *n >= MAX_WAITS_PER_RUNNER {
        return Err(Fail::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("runner `{runner}` already has {MAX_WAITS_PER_RUNNER} waits in progress; try again shortly"),
        ));
    }
    *n += 1;
    Ok(WaitSlot { inner: inner.clone(), runner: runner.to_owned() })
}

/// A request's body: `413` past [`MAX_BODY`] bytes, `408` when it does not
/// arrive within [`BODY_TIMEOUT`], `400` when the connection fails.
async fn read_body(body: Body) -> Result<axum::body::Bytes, Fail> {
    let too_large = || Fail::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {MAX_BODY} bytes"));
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return Err(too_large());
                }
                source = err.source();
            }
            Err(Fail::new(StatusCode::BAD_REQUEST, "the body is unreadable"))
        }
        Err(_) => Err(Fail::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {} seconds", BODY_TIMEOUT.as_secs()),
        )),
    }
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
    let _slot = if wait > 0 { Some(wait_slot(&inner, &runner)?) } else { None };
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
