//! The corridor every `sandbox:host` call walks, written once.
//!
//! ```text
//! count the call      limits.calls; beyond it: limit-exceeded
//! prepare             the door normalises its target and asks the policy
//!                     (on the path asked and on the path it resolves to)
//! `call` event        decision and rule, recorded before anything happens
//! approval            when the policy says ask: the Approver, then an
//!                     `approval` event (the log is durable before asking)
//! durable             before an effect leaves the host, every event so far
//!                     is fsynced; reads are batched
//! act                 the effect itself
//! `result` event      outcome, bytes, duration
//! ```
//!
//! With `[approval] writes = "end-of-task"`, a write-class `fs` call that
//! the policy permits is *staged* (see [`crate::staging`]): no approval
//! and no fsync for it, its `act` records the effect in the staging area,
//! and its `result` says `outcome: "staged"`. The run settles the staged
//! changes at the end of the task ([`HostCtx::settle_staged`]): one diff,
//! one approval, one apply.
//!
//! A door supplies only `prepare` and `act`; it cannot skip a step. A
//! refusal is a typed error to the guest. An audit log that cannot be
//! written stops the task: the call is refused with a trap and the run
//! records why in its [`StopCell`].

use crate::approval::{ApprovalRequest, Approver};
use crate::bindings::sandbox::host::types::Error;
use crate::exec::Launcher;
use crate::net::Net;
use crate::staging::Staging;
use crate::workspace::Workspace;
use sandbox_audit::{ApprovalRecord, AuditLog, Decision, Event, Kind};
use sandbox_policy::{Policy, Verdict};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Refused calls tolerated after `limits.calls` is used up before the run
/// is stopped: a tool may notice and finish, but not loop forever.
pub const CALLS_GRACE: u64 = 1000;

/// Events held in memory (reads) before they are written out anyway.
const MAX_PENDING: usize = 512;

/// The capabilities staged under `[approval] writes = "end-of-task"`.
const STAGED: [&str; 5] = ["fs.write", "fs.append", "fs.create-dir", "fs.remove", "fs.rename"];

mod settle;
pub use settle::Settled;

/// The audit log, shared by the corridor and the guest's output streams.
pub type SharedAudit = Arc<Mutex<AuditLog>>;

/// Locks the shared log (a poisoned lock still holds a consistent log: no
/// code panics while holding it).
pub fn lock_audit(audit: &SharedAudit) -> MutexGuard<'_, AuditLog> {
    audit.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a run must stop early. The first reason recorded wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The audit log could not be written.
    Audit(String),
    /// The tool kept calling long after `limits.calls` was used up.
    Calls(u64),
    /// The tool wrote more than `limits.output` to stdout or stderr.
    Output {
        /// `stdout` or `stderr`.
        stream: &'static str,
        /// The limit in bytes.
        limit: u64,
    },
}

/// Shared between the corridor, the output streams and the runtime.
pub type StopCell = Arc<OnceLock<Stop>>;

/// The run's wall clock for `limits.time`: time since the start, minus time
/// spent waiting for approvals (including a wait in progress). Shared by the
/// corridor, the engine's epoch callback and the runtime's watchdog.
#[derive(Debug)]
pub struct RunClock {
    started: Instant,
    limit: Duration,
    paused_us: AtomicU64,
    /// Microseconds since `started` when the current wait began; 0: none.
    waiting_since_us: AtomicU64,
}

impl RunClock {
    /// A clock starting now with a budget of `limit`.
    pub fn new(limit: Duration) -> Arc<RunClock> {
        Arc::new(RunClock {
            started: Instant::now(),
            limit,
            paused_us: AtomicU64::new(0),
            waiting_since_us: AtomicU64::new(0),
        })
    }

    /// The budget.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Time used against the budget.
    pub fn used(&self) -> Duration {
        let now = self.started.elapsed();
        let mut paused = Duration::from_micros(self.paused_us.load(Ordering::Acquire));
        let since = self.waiting_since_us.load(Ordering::Acquire);
        if since != 0 {
            paused += now.saturating_sub(Duration::from_micros(since));
        }
        now.saturating_sub(paused)
    }

    /// Time spent waiting for approvals so far (finished waits).
    pub fn paused(&self) -> Duration {
        Duration::from_micros(self.paused_us.load(Ordering::Acquire))
    }

    fn begin_wait(&self) {
        let at = self.started.elapsed().as_micros().max(1) as u64;
        self.waiting_since_us.store(at, Ordering::Release);
    }

    fn end_wait(&self) {
        let since = self.waiting_since_us.swap(0, Ordering::AcqRel);
        if since != 0 {
            let waited = (self.started.elapsed().as_micros() as u64).saturating_sub(since);
            self.paused_us.fetch_add(waited, Ordering::AcqRel);
        }
    }
}

/// Who and what a run is, as recorded on every event.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    /// Task id.
    pub id: String,
    /// Who the run acts for.
    pub user: String,
    /// The tool's name.
    pub agent: String,
    /// `sha256:` of the component's bytes.
    pub component: String,
    /// The run's `--intent`, until the tool sets its own.
    pub intent: Option<String>,
}

/// What a run's corridor is made of.
#[derive(Debug)]
pub struct RunParts {
    /// The compiled manifest.
    pub policy: Arc<Policy>,
    /// The workspace root.
    pub workspace: Workspace,
    /// Resolver and TLS for outbound requests.
    pub net: Net,
    /// The audit log.
    pub audit: SharedAudit,
    /// Answers `ask` decisions.
    pub approver: Box<dyn Approver>,
    /// Task identity.
    pub task: TaskInfo,
    /// The run's time budget; approval waits are taken off it.
    pub clock: Arc<RunClock>,
    /// Receives the reason if the run must stop.
    pub stop: StopCell,
    /// Starts programs; `None`: this run cannot start any.
    pub launcher: Option<Launcher>,
}

/// What a door's `prepare` and `act` may use.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub policy: &'a Policy,
    pub ws: &'a Workspace,
    pub net: &'a Net,
    pub clock: &'a RunClock,
    pub launcher: Option<&'a Launcher>,
    /// The staging area, with `[approval] writes = "end-of-task"`.
    pub staging: Option<&'a Mutex<Staging>>,
}

/// The state every call of a run shares, behind `Arc`s, so that a call
/// carried by a task (a wasi:http request) walks the same corridor as a
/// call made directly.
#[derive(Clone)]
pub struct Corridor {
    policy: Arc<Policy>,
    workspace: Arc<Workspace>,
    net: Arc<Net>,
    audit: SharedAudit,
    approver: Arc<Mutex<Box<dyn Approver>>>,
    task: Arc<TaskInfo>,
    calls: Arc<AtomicU64>,
    clock: Arc<RunClock>,
    stop: StopCell,
    launcher: Option<Arc<Launcher>>,
    /// With `[approval] writes = "end-of-task"`: the task's staged changes.
    staging: Option<Arc<Mutex<Staging>>>,
}

impl std::fmt::Debug for Corridor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Corridor").field("task", &self.task).field("calls", &self.calls).finish_non_exhaustive()
    }
}

/// The host state behind the `sandbox:host` interfaces, one per run: the
/// corridor, and the intent the tool last stated.
#[derive(Debug)]
pub struct HostCtx {
    pub(crate) corridor: Corridor,
    pub(crate) intent: Option<String>,
}

impl HostCtx {
    /// Builds the host state of one run.
    pub fn new(parts: RunParts) -> HostCtx {
        let intent = parts.task.intent.clone();
        let corridor = Corridor {
            policy: parts.policy,
            workspace: Arc::new(parts.workspace),
            net: Arc::new(parts.net),
            audit: parts.audit,
            approver: Arc::new(Mutex::new(parts.approver)),
            task: Arc::new(parts.task),
            calls: Arc::default(),
            clock: parts.clock,
            stop: parts.stop,
            launcher: parts.launcher.map(Arc::new),
            staging: None,
        };
        HostCtx { corridor, intent }.with_staging()
    }

    fn with_staging(mut self) -> HostCtx {
        if self.corridor.policy.approval_writes == sandbox_policy::Writes::EndOfTask {
            let budget = self.corridor.policy.limits.memory;
            self.corridor.staging = Some(Arc::new(Mutex::new(Staging::new(budget))));
        }
        self
    }

    /// Paths with staged changes (0 without `writes = "end-of-task"`).
    pub fn staged_paths(&self) -> usize {
        self.corridor.staging.as_deref().map_or(0, |s| crate::staging::lock(s).len())
    }

    /// At the end of a task whose tool exited on its own: puts the staged
    /// changes to the approver as one diff and applies them if approved
    /// (see [`Settled`]). Waiting and applying do not count against
    /// `limits.time`.
    pub fn settle_staged(&self) -> Settled {
        self.corridor.settle(self.intent.as_deref())
    }

    /// Host calls counted so far.
    pub fn calls(&self) -> u64 {
        self.corridor.calls.load(Ordering::Relaxed)
    }

    /// The call counter, for a thread that must report it while the run is
    /// blocked (the runtime's watchdog).
    pub fn calls_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.corridor.calls)
    }

    /// The intent in force (the tool's last, or the run's).
    pub fn intent(&self) -> Option<&str> {
        self.intent.as_deref()
    }
}

/// What an effect produced, for the `result` event.
#[derive(Debug)]
pub(crate) struct Done<T> {
    pub value: T,
    pub bytes_out: u64,
    pub status: Option<u16>,
    pub peer: Option<String>,
    pub exit_code: Option<i32>,
    pub truncated: Option<bool>,
    pub confinement: Option<String>,
    pub timed_out: bool,
}

impl<T> Done<T> {
    pub fn new(value: T, bytes_out: u64) -> Done<T> {
        Done {
            value,
            bytes_out,
            status: None,
            peer: None,
            exit_code: None,
            truncated: None,
            confinement: None,
            timed_out: false,
        }
    }
}

/// The fields a call's events share.
struct Record<'a> {
    capability: &'a str,
    target: &'a str,
    dest: Option<&'a str>,
    intent: Option<&'a str>,
}

impl Corridor {
    /// True when write-class `fs` calls are staged (`[approval] writes =
    /// "end-of-task"`).
    pub(crate) fn stages_writes(&self) -> bool {
        self.staging.is_some()
    }

    /// True when something is staged: reads must consult the staging area.
    pub(crate) fn sees_staged(&self) -> bool {
        self.staging.as_deref().is_some_and(|s| !crate::staging::lock(s).is_empty())
    }

    /// The task id.
    pub fn task_id(&self) -> &str {
        &self.task.id
    }

    /// `limits.output`: the largest body or read passed either way.
    pub fn output_limit(&self) -> u64 {
        self.policy.limits.output
    }

    fn event<'a>(&'a self, kind: Kind, r: &Record<'a>) -> Event<'a> {
        Event {
            kind,
            task: &self.task.id,
            user: &self.task.user,
            agent: &self.task.agent,
            component: &self.task.component,
            policy: &self.policy.hash,
            intent: r.intent,
            capability: Some(r.capability),
            target: Some(r.target),
            dest: r.dest,
            ..Event::default()
        }
    }

    /// Records the reason and returns the trap that ends the run.
    fn stop(&self, stop: Stop) -> wasmtime::Error {
        let msg = match &stop {
            Stop::Audit(e) => format!("audit log failed: {e}"),
            Stop::Calls(n) => format!("host call limit of {n} exceeded repeatedly"),
            Stop::Output { stream, limit } => format!("{stream} exceeded {limit} bytes"),
        };
        let _ = self.stop.set(stop);
        wasmtime::Error::msg(msg)
    }

    fn durable(&self) -> wasmtime::Result<()> {
        lock_audit(&self.audit).sync().map_err(|e| self.stop(Stop::Audit(e.to_string())))
    }

    fn recorded(&self) -> wasmtime::Result<()> {
        let mut log = lock_audit(&self.audit);
        if log.pending() >= MAX_PENDING {
            log.write().map_err(|e| self.stop(Stop::Audit(e.to_string())))?;
        }
        Ok(())
    }

    /// Walks one host call through the corridor. `prepare` normalises and
    /// decides (no effect); `act` performs the effect. `intent` is the
    /// tool's stated intent at the time of the call.
    pub(crate) fn mediate<P, T>(
        &self,
        intent: Option<&str>,
        capability: &'static str,
        raw: (&str, Option<&str>),
        bytes_in: u64,
        prepare: impl FnOnce(Ctx<'_>) -> Result<Plan<P>, Box<Refusal>>,
        act: impl FnOnce(Ctx<'_>, P) -> Result<Done<T>, Error>,
    ) -> wasmtime::Result<Result<T, Error>> {
        if let Some(stop) = self.stop.get() {
            // A call carried by a task hit a stop; the next one ends the run.
            return Err(wasmtime::Error::msg(format!("the run is stopping: {stop:?}")));
        }
        let start = Instant::now();
        let cx = Ctx {
            policy: &self.policy,
            ws: &self.workspace,
            net: &self.net,
            clock: &self.clock,
            launcher: self.launcher.as_deref(),
            staging: self.staging.as_deref(),
        };
        // Staged: recorded and kept for the end of the task, not approved
        // or applied now.
        let staged = self.stages_writes() && STAGED.contains(&capability);
        let calls = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let plan = if calls > cx.policy.limits.calls {
            Err(Box::new(Refusal {
                decision: Decision::Limit,
                rule: "limits.calls".into(),
                target: raw.0.to_owned(),
                dest: raw.1.map(str::to_owned),
                resolved: None,
                error: Error::LimitExceeded(format!(
                    "the run's limit of {} host calls is used up",
                    cx.policy.limits.calls
                )),
            }))
        } else {
            prepare(cx)
        };
        let plan = match plan {
            Ok(plan) => plan,
            Err(r) => {
                let rec = Record { capability, target: &r.target, dest: r.dest.as_deref(), intent };
                let mut ev = self.event(Kind::Call, &rec);
                ev.resolved = r.resolved.as_deref();
                ev.decision = Some(r.decision);
                ev.rule = Some(&r.rule);
                lock_audit(&self.audit).record(&ev);
                self.record_result::<T>(&rec, Err(&r.error), bytes_in, None, start);
                self.recorded()?;
                if calls > cx.policy.limits.calls + CALLS_GRACE {
                    // Recorded like every refused call; then the run ends.
                    return Err(self.stop(Stop::Calls(cx.policy.limits.calls)));
                }
                return Ok(Err(r.error));
            }
        };
        let rec = Record { capability, target: &plan.target, dest: plan.dest.as_deref(), intent };
        let mut ev = self.event(Kind::Call, &rec);
        ev.resolved = plan.resolved.as_deref();
        ev.headers = plan.headers.as_deref();
        ev.env = plan.env.as_deref();
        ev.cwd = plan.cwd.as_deref();
        ev.decision = Some(if plan.verdict == Verdict::Ask { Decision::Ask } else { Decision::Allow });
        ev.rule = Some(&plan.rule);
        ev.size = plan.size;
        ev.content_sha256 = plan.content_sha256.as_deref();
        lock_audit(&self.audit).record(&ev);
        let prepared = match plan.ready {
            Ok(p) => p,
            Err(e) => {
                self.record_result::<T>(&rec, Err(&e), bytes_in, None, start);
                self.recorded()?;
                return Ok(Err(e));
            }
        };
        if plan.verdict == Verdict::Ask && !staged {
            // Everything so far is on disk before a human sees anything.
            self.durable()?;
            self.clock.begin_wait();
            let answer = self.approver.lock().unwrap_or_else(PoisonError::into_inner).ask(&ApprovalRequest {
                task: &self.task.id,
                user: &self.task.user,
                agent: &self.task.agent,
                intent,
                capability,
                target: &plan.target,
                dest: plan.dest.as_deref(),
                rule: &plan.rule,
                size: plan.size,
                content_sha256: plan.content_sha256.as_deref(),
                effect_sha256: &plan.effect_sha256,
                require: &cx.policy.approval_require,
                preview: plan.preview.as_deref(),
                timeout: cx.policy.approval_timeout,
            });
            self.clock.end_wait();
            let mut ev = self.event(Kind::Approval, &rec);
            ev.rule = Some(&plan.rule);
            ev.content_sha256 = plan.content_sha256.as_deref();
            ev.effect_sha256 = Some(&plan.effect_sha256);
            ev.decision = Some(if answer.approved { Decision::Approved } else { Decision::Rejected });
            ev.reason = Some(&answer.reason);
            ev.approval = Some(ApprovalRecord {
                via: answer.via,
                by: answer.by.clone(),
                at: humantime::format_rfc3339_micros(answer.at).to_string(),
                request: answer.request.clone(),
            });
            lock_audit(&self.audit).record(&ev);
            if !answer.approved {
                let error = Error::NotApproved(answer.reason.clone());
                self.record_result::<T>(&rec, Err(&error), bytes_in, None, start);
                self.recorded()?;
                return Ok(Err(error));
            }
        }
        if plan.effect && !staged {
            // The write-ahead rule: nothing changes before it is on record.
            self.durable()?;
        }
        let outcome = act(cx, prepared);
        self.record_result(&rec, outcome.as_ref().map(|_| ()), bytes_in, outcome.as_ref().ok(), start);
        self.recorded()?;
        Ok(outcome.map(|done| done.value))
    }

    fn record_result<T>(
        &self,
        r: &Record<'_>,
        outcome: Result<(), &Error>,
        bytes_in: u64,
        done: Option<&Done<T>>,
        start: Instant,
    ) {
        let mut ev = self.event(Kind::Result, r);
        let reason;
        match outcome {
            // A staged capability's `act` only ever stages.
            Ok(()) if self.stages_writes() && STAGED.contains(&r.capability) => ev.outcome = Some("staged"),
            Ok(()) => ev.outcome = Some("ok"),
            Err(e) => {
                let (name, msg) = error_parts(e);
                ev.outcome = Some(name);
                reason = msg;
                ev.reason = Some(reason);
            }
        }
        ev.bytes_in = Some(bytes_in);
        ev.bytes_out = Some(done.map_or(0, |d| d.bytes_out));
        ev.status_code = done.and_then(|d| d.status);
        ev.peer = done.and_then(|d| d.peer.as_deref());
        ev.exit_code = done.and_then(|d| d.exit_code);
        ev.truncated = done.and_then(|d| d.truncated);
        ev.confinement = done.and_then(|d| d.confinement.as_deref());
        if done.is_some_and(|d| d.timed_out) {
            ev.reason = Some("killed at the timeout");
        }
        ev.duration_us = Some(start.elapsed().as_micros() as u64);
        lock_audit(&self.audit).record(&ev);
    }
}

/// `sha256:` of a canonical description of an effect: the capability, then
/// each part on its own line (targets, a content hash, ...).
pub(crate) fn effect_hash(capability: &str, parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(capability.as_bytes());
    for p in parts {
        h.update(b"\n");
        h.update(p.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// The WIT variant name and message of an error.
pub fn error_parts(e: &Error) -> (&'static str, &str) {
    match e {
        Error::Denied(m) => ("denied", m),
        Error::NotApproved(m) => ("not-approved", m),
        Error::LimitExceeded(m) => ("limit-exceeded", m),
        Error::Invalid(m) => ("invalid", m),
        Error::NotFound(m) => ("not-found", m),
        Error::Failed(m) => ("failed", m),
    }
}

/// What a door's `prepare` produced for an admitted call.
#[derive(Debug)]
pub(crate) struct Plan<P> {
    /// The normalised target, as recorded.
    pub target: String,
    /// A second target (rename destination).
    pub dest: Option<String>,
    /// Where a symlink led, when the call was also decided there.
    pub resolved: Option<String>,
    /// `Allow` or `Ask`.
    pub verdict: Verdict,
    /// The deciding rule.
    pub rule: String,
    /// True when `act` changes something outside the host's memory.
    pub effect: bool,
    /// Bytes to be written.
    pub size: Option<u64>,
    /// `sha256:` of the bytes to be written.
    pub content_sha256: Option<String>,
    /// Shown to the approver.
    pub preview: Option<String>,
    /// Header names the tool sent (HTTP).
    pub headers: Option<Vec<String>>,
    /// `sha256:` of a canonical description of the effect (capability,
    /// targets, content): an approval is bound to it.
    pub effect_sha256: String,
    /// Variable names the tool set (commands).
    pub env: Option<Vec<String>>,
    /// Working directory (commands).
    pub cwd: Option<String>,
    /// What `act` needs, or why the call fails without an effect (a
    /// missing file): then no approval is asked.
    pub ready: Result<P, Error>,
}

/// Why `prepare` refused a call.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// `Deny`, `Invalid` or `Limit`.
    pub decision: Decision,
    /// The deciding rule.
    pub rule: String,
    /// The target as recorded (normalised if it could be).
    pub target: String,
    /// A second target.
    pub dest: Option<String>,
    /// Where a symlink led.
    pub resolved: Option<String>,
    /// What the guest receives.
    pub error: Error,
}
