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
//! A door supplies only `prepare` and `act`; it cannot skip a step. A
//! refusal is a typed error to the guest. An audit log that cannot be
//! written stops the task: the call is refused with a trap and the run
//! records why in its [`StopCell`].

use crate::approval::{ApprovalRequest, Approver};
use crate::bindings::sandbox::host::types::Error;
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

/// The host state behind the `sandbox:host` interfaces, one per run.
pub struct HostCtx {
    pub(crate) policy: Arc<Policy>,
    pub(crate) workspace: Workspace,
    audit: SharedAudit,
    approver: Box<dyn Approver>,
    pub(crate) task: TaskInfo,
    pub(crate) intent: Option<String>,
    calls: Arc<AtomicU64>,
    clock: Arc<RunClock>,
    stop: StopCell,
}

impl std::fmt::Debug for HostCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCtx").field("task", &self.task).field("calls", &self.calls()).finish_non_exhaustive()
    }
}

impl HostCtx {
    /// Builds the host state of one run. The approver answers every `ask`
    /// decision; approval waits are taken off `clock`; the stop cell
    /// receives the reason if the run must stop.
    pub fn new(
        policy: Arc<Policy>,
        workspace: Workspace,
        audit: SharedAudit,
        approver: Box<dyn Approver>,
        task: TaskInfo,
        clock: Arc<RunClock>,
        stop: StopCell,
    ) -> HostCtx {
        let intent = task.intent.clone();
        HostCtx { policy, workspace, audit, approver, task, intent, calls: Arc::default(), clock, stop }
    }

    /// Host calls counted so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The call counter, for a thread that must report it while the run is
    /// blocked (the runtime's watchdog).
    pub fn calls_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.calls)
    }

    /// The intent in force (the tool's last, or the run's).
    pub fn intent(&self) -> Option<&str> {
        self.intent.as_deref()
    }

    fn event(&self, kind: Kind) -> Event<'_> {
        Event {
            kind,
            task: &self.task.id,
            user: &self.task.user,
            agent: &self.task.agent,
            component: &self.task.component,
            policy: &self.policy.hash,
            intent: self.intent.as_deref(),
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
    /// decides (no effect); `act` performs the effect and returns the value
    /// and the bytes returned to the guest.
    pub(crate) fn mediate<P, T>(
        &mut self,
        capability: &'static str,
        raw: (&str, Option<&str>),
        bytes_in: u64,
        prepare: impl FnOnce(&Policy, &Workspace) -> Result<Plan<P>, Box<Refusal>>,
        act: impl FnOnce(&Policy, &Workspace, P) -> Result<(T, u64), Error>,
    ) -> wasmtime::Result<Result<T, Error>> {
        let start = Instant::now();
        let policy = Arc::clone(&self.policy);
        let calls = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let plan = if calls > policy.limits.calls {
            Err(Box::new(Refusal {
                decision: Decision::Limit,
                rule: "limits.calls".into(),
                target: raw.0.to_owned(),
                dest: raw.1.map(str::to_owned),
                resolved: None,
                error: Error::LimitExceeded(format!(
                    "the run's limit of {} host calls is used up",
                    policy.limits.calls
                )),
            }))
        } else {
            prepare(&policy, &self.workspace)
        };
        let plan = match plan {
            Ok(plan) => plan,
            Err(r) => {
                self.record_call(
                    capability,
                    r.decision,
                    &r.rule,
                    &r.target,
                    r.dest.as_deref(),
                    r.resolved.as_deref(),
                    None,
                    None,
                );
                self.record_result(capability, &r.target, r.dest.as_deref(), Err(&r.error), bytes_in, 0, start);
                self.recorded()?;
                if calls > policy.limits.calls + CALLS_GRACE {
                    // Recorded like every refused call; then the run ends.
                    return Err(self.stop(Stop::Calls(policy.limits.calls)));
                }
                return Ok(Err(r.error));
            }
        };
        let decision = if plan.verdict == Verdict::Ask { Decision::Ask } else { Decision::Allow };
        self.record_call(
            capability,
            decision,
            &plan.rule,
            &plan.target,
            plan.dest.as_deref(),
            plan.resolved.as_deref(),
            plan.size,
            plan.content_sha256.as_deref(),
        );
        let prepared = match plan.ready {
            Ok(p) => p,
            Err(e) => {
                self.record_result(capability, &plan.target, plan.dest.as_deref(), Err(&e), bytes_in, 0, start);
                self.recorded()?;
                return Ok(Err(e));
            }
        };
        if plan.verdict == Verdict::Ask {
            // Everything so far is on disk before a human sees anything.
            self.durable()?;
            self.clock.begin_wait();
            let answer = self.approver.ask(&ApprovalRequest {
                task: &self.task.id,
                user: &self.task.user,
                agent: &self.task.agent,
                intent: self.intent.as_deref(),
                capability,
                target: &plan.target,
                dest: plan.dest.as_deref(),
                rule: &plan.rule,
                size: plan.size,
                content_sha256: plan.content_sha256.as_deref(),
                preview: plan.preview.as_deref(),
                timeout: policy.approval_timeout,
            });
            self.clock.end_wait();
            let mut ev = self.event(Kind::Approval);
            ev.capability = Some(capability);
            ev.target = Some(&plan.target);
            ev.dest = plan.dest.as_deref();
            ev.rule = Some(&plan.rule);
            ev.content_sha256 = plan.content_sha256.as_deref();
            ev.decision = Some(if answer.approved { Decision::Approved } else { Decision::Rejected });
            ev.reason = Some(&answer.reason);
            ev.approval = Some(ApprovalRecord {
                via: answer.via,
                by: answer.by.clone(),
                at: humantime::format_rfc3339_micros(answer.at).to_string(),
            });
            lock_audit(&self.audit).record(&ev);
            if !answer.approved {
                let error = Error::NotApproved(answer.reason.clone());
                self.record_result(capability, &plan.target, plan.dest.as_deref(), Err(&error), bytes_in, 0, start);
                self.recorded()?;
                return Ok(Err(error));
            }
        }
        if plan.effect {
            // The write-ahead rule: nothing changes before it is on record.
            self.durable()?;
        }
        let outcome = act(&policy, &self.workspace, prepared);
        let (value, bytes_out) = match outcome {
            Ok((v, n)) => (Ok(v), n),
            Err(e) => (Err(e), 0),
        };
        self.record_result(
            capability,
            &plan.target,
            plan.dest.as_deref(),
            value.as_ref().map(|_| ()),
            bytes_in,
            bytes_out,
            start,
        );
        self.recorded()?;
        Ok(value)
    }

    /// Walks a call of an interface this version does not enable through
    /// the corridor: counted, refused with `denied`, audited.
    pub(crate) fn refuse_not_enabled<T>(
        &mut self,
        capability: &'static str,
        target: &str,
        bytes_in: u64,
    ) -> wasmtime::Result<Result<T, Error>> {
        self.mediate(
            capability,
            (target, None),
            bytes_in,
            |_, _| -> Result<Plan<()>, Box<Refusal>> {
                Err(Box::new(Refusal {
                    decision: Decision::Deny,
                    rule: "builtin:not-enabled".into(),
                    target: target.to_owned(),
                    dest: None,
                    resolved: None,
                    error: Error::Denied(format!("{capability} is not enabled in this version of sandbox")),
                }))
            },
            |_, _, ()| Err(Error::Failed("internal: a refused call reached its effect".into())),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn record_call(
        &self,
        capability: &str,
        decision: Decision,
        rule: &str,
        target: &str,
        dest: Option<&str>,
        resolved: Option<&str>,
        size: Option<u64>,
        content_sha256: Option<&str>,
    ) {
        let mut ev = self.event(Kind::Call);
        ev.capability = Some(capability);
        ev.target = Some(target);
        ev.dest = dest;
        ev.resolved = resolved;
        ev.decision = Some(decision);
        ev.rule = Some(rule);
        ev.size = size;
        ev.content_sha256 = content_sha256;
        lock_audit(&self.audit).record(&ev);
    }

    #[allow(clippy::too_many_arguments)]
    fn record_result(
        &self,
        capability: &str,
        target: &str,
        dest: Option<&str>,
        outcome: Result<(), &Error>,
        bytes_in: u64,
        bytes_out: u64,
        start: Instant,
    ) {
        let mut ev = self.event(Kind::Result);
        ev.capability = Some(capability);
        ev.target = Some(target);
        ev.dest = dest;
        let reason;
        match outcome {
            Ok(()) => ev.outcome = Some("ok"),
            Err(e) => {
                let (name, msg) = error_parts(e);
                ev.outcome = Some(name);
                reason = msg;
                ev.reason = Some(reason);
            }
        }
        ev.bytes_in = Some(bytes_in);
        ev.bytes_out = Some(bytes_out);
        ev.duration_us = Some(start.elapsed().as_micros() as u64);
        lock_audit(&self.audit).record(&ev);
    }
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
