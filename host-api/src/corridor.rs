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
//! Redaction (`[redact]`, see [`sandbox_redact`]): every text a call's
//! events store (target, dest, resolved, intent, reasons) and the preview
//! and target a reviewer sees are redacted, and each event counts its
//! replacements by type in `redactions`. Targets and previews carry a
//! keyed fingerprint of each hidden value
//! ([`Redactor::redact_shown`]), the same in the log and on the
//! reviewer's screen, so two different hidden values can always be told
//! apart; file and HTTP targets are judged as paths (a bare digit run there
//! is an id, not a card number). The effect hash an approval is
//! bound to is computed by `prepare` over the real bytes, not the redacted
//! text. Data returned to the tool is redacted by the doors' `act` when
//! [`Ctx::redacts_output`] says so; those replacements are counted on the
//! `result` event.
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
use sandbox_redact::{Context, Counts, Redactor};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

/// Refused calls tolerated after `limits.calls` is used up before the run
/// is stopped: a tool may notice and finish, but not loop forever.
pub const CALLS_GRACE: u64 = 1000;

/// Events held in memory (reads) before they are written out anyway.
const MAX_PENDING: usize = 512;

/// The capabilities staged under `[approval] writes = "end-of-task"`.
const STAGED: [&str; 5] = ["fs.write", "fs.append", "fs.create-dir", "fs.remove", "fs.rename"];

mod clock;
mod flights;
mod settle;
pub use clock::{RunClock, Waiting};
pub(crate) use flights::Flight;
pub use flights::SETTLE;
use flights::{Called, Flights};
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
    /// Verification, tier, delegation and task scope, on every event.
    pub principal: sandbox_audit::Principal,
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
    /// The run's detectors and secret values.
    pub redactor: &'a Redactor,
    /// The secret values alone, when there are any.
    pub literals: Option<&'a Redactor>,
    /// The run's `wasi:http` requests in flight: says when the task ends.
    pub flights: &'a Flights,
}

impl Ctx<'_> {
    /// True when data returned to the tool is redacted: `[redact] outputs`.
    pub fn redacts_output(&self) -> bool {
        self.policy.redact.outputs
    }

    /// Data returned to the tool: with `redact`, every detector applies;
    /// without, only the secret values the host added (those never reach
    /// the tool). Replacements are added to `counts`.
    pub fn returned(&self, redact: bool, data: Vec<u8>, counts: &mut Counts) -> Vec<u8> {
        match (redact, self.literals) {
            (true, _) => self.redactor.redact_vec(data, counts),
            (false, Some(literals)) => literals.redact_vec(data, counts),
            (false, None) => data,
        }
    }

    /// A stream returned to the tool that may go on past what was read
    /// (a command's output), at most `cap` bytes, redacted before it is
    /// cut. The cut leaves out any part of a secret: it moves back to the
    /// start of a finding it would split, and when the stream was `killed`
    /// (its end may be the middle of a secret) it leaves the last
    /// [`Redactor::window`] bytes read out of view too, so every secret
    /// that starts before the cut is seen whole.
    pub fn returned_stream(&self, redact: bool, data: Vec<u8>, cap: u64, killed: bool, counts: &mut Counts) -> Vec<u8> {
        let redactor = match (redact, self.literals) {
            (true, _) => Some(self.redactor),
            (false, literals) => literals,
        };
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        let keep = if killed {
            cap.min(data.len().saturating_sub(redactor.map_or(0, Redactor::window)))
        } else {
            cap.min(data.len())
        };
        match redactor {
            Some(r) => r.redact_cut(&data, keep, counts),
            None => {
                let mut data = data;
                data.truncate(keep);
                data
            }
        }
    }

    /// An HTTP header name returned to the tool: secret values matched
    /// without regard to case (names arrive lowercased); a name that held
    /// one stays a valid header name (`x-echo-redacted-secret`).
    pub fn returned_name(&self, redact: bool, name: String, counts: &mut Counts) -> String {
        let redactor = match (redact, self.literals) {
            (true, _) => self.redactor,
            (false, Some(literals)) => literals,
            (false, None) => return name,
        };
        match redactor.redact_name(&name, counts) {
            Cow::Borrowed(_) => name,
            Cow::Owned(red) => red
                .chars()
                .filter(|c| !matches!(c, '[' | ']'))
                .map(|c| if c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c) { c } else { '-' })
                .collect(),
        }
    }

    /// [`returned`](Self::returned) for text (HTTP header values).
    pub fn returned_text(&self, redact: bool, text: String, counts: &mut Counts) -> String {
        match (redact, self.literals) {
            (true, _) => self.redactor.redact_string(text, counts),
            (false, Some(literals)) => literals.redact_string(text, counts),
            (false, None) => text,
        }
    }
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
    /// The secret values of `policy.redact.redactor` alone (built once),
    /// for data returned to the tool when `[redact] outputs` is off.
    literals: Option<Arc<Redactor>>,
    /// The run's `wasi:http` requests in flight.
    flights: Arc<Flights>,
    /// The flight this clone of the corridor carries (a `wasi:http`
    /// request); `None`: a call the tool is blocked in.
    flight: Option<u64>,
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
        let redactor = &parts.policy.redact.redactor;
        let literals = redactor.has_literals().then(|| Arc::new(redactor.literals_only()));
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
            literals,
            flights: Arc::default(),
            flight: None,
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

    /// At the end of the task, before `task-end`: stops the `wasi:http`
    /// requests still in flight and waits until each has recorded its last
    /// event (see [`Corridor::end_requests`]).
    pub fn end_requests(&self) {
        self.corridor.end_requests();
    }

    /// A handle that can end the requests from another thread (the
    /// runtime's watchdog, while the tool is blocked).
    pub fn requests_ender(&self) -> Corridor {
        self.corridor.clone()
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
    /// Replacements made in the data returned to the tool.
    pub redactions: Counts,
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
            redactions: Counts::new(),
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
    resolved: Option<&'a str>,
    /// Replacements made in the fields above.
    redactions: &'a Counts,
}

/// How a capability's target reads: a path or URL (`fs.*`, `http.*`), or
/// free text (a command line).
fn target_context(capability: &str) -> Context {
    if capability.starts_with("fs.") || capability.starts_with("http.") { Context::Path } else { Context::Text }
}

/// A call's text fields as the log stores them and a reviewer sees them:
/// redacted with fingerprints, with the replacements counted (those in the
/// intent included).
struct Shown<'t> {
    target: Cow<'t, str>,
    dest: Option<Cow<'t, str>>,
    resolved: Option<Cow<'t, str>>,
    counts: Counts,
}

impl<'t> Shown<'t> {
    fn new(
        redactor: &Redactor,
        mut counts: Counts,
        capability: &str,
        target: &'t str,
        dest: Option<&'t str>,
        resolved: Option<&'t str>,
    ) -> Shown<'t> {
        let target = redactor.redact_shown(target, target_context(capability), &mut counts);
        // A destination path, a resolved path or program, addresses.
        let dest = dest.map(|d| redactor.redact_shown(d, Context::Path, &mut counts));
        let resolved = resolved.map(|r| redactor.redact_shown(r, Context::Path, &mut counts));
        Shown { target, dest, resolved, counts }
    }

    fn record<'a>(&'a self, capability: &'a str, intent: Option<&'a str>) -> Record<'a> {
        Record {
            capability,
            target: &self.target,
            dest: self.dest.as_deref(),
            intent,
            resolved: self.resolved.as_deref(),
            redactions: &self.counts,
        }
    }
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

    /// The run's detectors and secret values (the runtime adds the
    /// secrets to the policy's redactor before the run starts).
    pub(crate) fn redactor(&self) -> &Redactor {
        &self.policy.redact.redactor
    }

    /// The task id.
    pub fn task_id(&self) -> &str {
        &self.task.id
    }

    /// `limits.output`: the largest body or read passed either way.
    pub fn output_limit(&self) -> u64 {
        self.policy.limits.output
    }

    /// The run's budget of bytes the host holds for the tool.
    pub fn memory(&self) -> &crate::budget::HostMemory {
        self.net.memory()
    }

    fn event<'a>(&'a self, kind: Kind, r: &Record<'a>) -> Event<'a> {
        Event {
            kind,
            task: &self.task.id,
            user: &self.task.user,
            agent: &self.task.agent,
            component: &self.task.component,
            policy: &self.policy.hash,
            principal: Some(&self.task.principal),
            intent: r.intent,
            capability: Some(r.capability),
            target: Some(r.target),
            dest: r.dest,
            resolved: r.resolved,
            redactions: r.redactions.as_field(),
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
        let redactor = self.redactor();
        let mut intent_counts = Counts::new();
        let intent = intent.map(|i| redactor.redact(i, &mut intent_counts));
        let intent = intent.as_deref();
        let cx = Ctx {
            policy: &self.policy,
            ws: &self.workspace,
            net: &self.net,
            clock: &self.clock,
            launcher: self.launcher.as_deref(),
            staging: self.staging.as_deref(),
            redactor,
            literals: self.literals.as_deref(),
            flights: &self.flights,
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
                let shown = Shown::new(
                    redactor,
                    intent_counts,
                    capability,
                    &r.target,
                    r.dest.as_deref(),
                    r.resolved.as_deref(),
                );
                let rec = shown.record(capability, intent);
                let mut ev = self.event(Kind::Call, &rec);
                ev.decision = Some(r.decision);
                ev.rule = Some(&r.rule);
                self.log(&ev);
                self.record_result::<T>(redactor, &rec, Err(&r.error), bytes_in, None, start);
                self.recorded()?;
                if calls > cx.policy.limits.calls + CALLS_GRACE {
                    // Recorded like every refused call; then the run ends.
                    return Err(self.stop(Stop::Calls(cx.policy.limits.calls)));
                }
                return Ok(Err(r.error));
            }
        };
        let mut shown = Shown::new(
            redactor,
            intent_counts,
            capability,
            &plan.target,
            plan.dest.as_deref(),
            plan.resolved.as_deref(),
        );
        let cwd = plan.cwd.as_deref().map(|d| redactor.redact_shown(d, Context::Path, &mut shown.counts));
        let rec = shown.record(capability, intent);
        let mut ev = self.event(Kind::Call, &rec);
        ev.headers = plan.headers.as_deref();
        ev.env = plan.env.as_deref();
        ev.cwd = cwd.as_deref();
        ev.decision = Some(if plan.verdict == Verdict::Ask { Decision::Ask } else { Decision::Allow });
        ev.rule = Some(&plan.rule);
        ev.size = plan.size;
        ev.content_sha256 = plan.content_sha256.as_deref();
        self.log(&ev);
        if let Some(id) = self.flight {
            self.flights.called(id, Called::new(capability, &rec, bytes_in, start));
        }
        let prepared = match plan.ready {
            Ok(p) => p,
            Err(e) => {
                self.record_result::<T>(redactor, &rec, Err(&e), bytes_in, None, start);
                self.recorded()?;
                return Ok(Err(e));
            }
        };
        if plan.verdict == Verdict::Ask && !staged {
            // Everything so far is on disk before a human sees anything.
            self.durable()?;
            // The reviewer sees what the log stores: redacted text. The
            // effect hash was made by `prepare` over the real bytes.
            let mut seen = shown.counts.clone();
            let preview = plan.preview.as_deref().map(|p| redactor.redact_shown(p, Context::Text, &mut seen));
            // A request carried by a task (wasi:http) asks only while its
            // task is not ending.
            if let Some(id) = self.flight
                && !self.flights.asking(id)
            {
                let error = Error::Failed(flights::NOT_ASKED.into());
                self.record_result::<T>(redactor, &rec, Err(&error), bytes_in, None, start);
                self.recorded()?;
                return Ok(Err(error));
            }
            // The wait is the tool's own only while it is blocked on it.
            let waiting = self.clock.wait(self.flight.is_some());
            let answer = self.approver.lock().unwrap_or_else(PoisonError::into_inner).ask(&ApprovalRequest {
                task: &self.task.id,
                user: &self.task.user,
                agent: &self.task.agent,
                intent,
                capability,
                target: rec.target,
                dest: rec.dest,
                rule: &plan.rule,
                size: plan.size,
                content_sha256: plan.content_sha256.as_deref(),
                effect_sha256: &plan.effect_sha256,
                require: &cx.policy.approval_require,
                preview: preview.as_deref(),
                timeout: cx.policy.approval_timeout,
            });
            drop(waiting);
            if let Some(id) = self.flight
                && !self.flights.answered(id)
            {
                // Withdrawn at the end of the task: its result is on record.
                return Ok(Err(Error::Failed(flights::WITHDRAWN.into())));
            }
            let reason = redactor.redact(&answer.reason, &mut seen);
            let mut ev = self.event(Kind::Approval, &Record { redactions: &seen, ..rec });
            ev.rule = Some(&plan.rule);
            ev.content_sha256 = plan.content_sha256.as_deref();
            ev.effect_sha256 = Some(&plan.effect_sha256);
            ev.decision = Some(if answer.approved { Decision::Approved } else { Decision::Rejected });
            ev.reason = Some(&reason);
            ev.approval = Some(ApprovalRecord {
                via: answer.via,
                by: answer.by.clone(),
                at: humantime::format_rfc3339_micros(answer.at).to_string(),
                request: answer.request.clone(),
            });
            self.log(&ev);
            if !answer.approved {
                let error = Error::NotApproved(answer.reason.clone());
                self.record_result::<T>(redactor, &rec, Err(&error), bytes_in, None, start);
                self.recorded()?;
                return Ok(Err(error));
            }
        }
        if plan.effect && !staged {
            // The write-ahead rule: nothing changes before it is on record.
            self.durable()?;
        }
        let outcome = act(cx, prepared);
        self.record_result(redactor, &rec, outcome.as_ref().map(|_| ()), bytes_in, outcome.as_ref().ok(), start);
        self.recorded()?;
        Ok(outcome.map(|done| done.value))
    }

    fn record_result<T>(
        &self,
        redactor: &Redactor,
        r: &Record<'_>,
        outcome: Result<(), &Error>,
        bytes_in: u64,
        done: Option<&Done<T>>,
        start: Instant,
    ) {
        let mut counts = r.redactions.clone();
        let mut reason: Option<Cow<'_, str>> = None;
        let mut name = "ok";
        match outcome {
            // A staged capability's `act` only ever stages.
            Ok(()) if self.stages_writes() && STAGED.contains(&r.capability) => name = "staged",
            Ok(()) => {}
            Err(e) => {
                let (n, msg) = error_parts(e);
                name = n;
                reason = Some(redactor.redact(msg, &mut counts));
            }
        }
        if let Some(d) = done {
            counts.merge(&d.redactions);
        }
        let mut ev = self.event(Kind::Result, &Record { redactions: &counts, ..*r });
        ev.outcome = Some(name);
        ev.reason = reason.as_deref();
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
        self.log(&ev);
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
