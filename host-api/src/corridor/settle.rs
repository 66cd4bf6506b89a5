//! The end of a task under `[approval] writes = "end-of-task"`: the staged
//! changes become one diff, one approval and one apply.
//!
//! Events, all with capability `fs.changes` unless said otherwise:
//!
//! ```text
//! call       target "2 files, 1 directory"; decision ask (a rule asked for
//!            approval on a path changed) or allow (all pre-approved); rule:
//!            those rules; size and content_sha256: of the diff
//! approval   when asked: the answer, bound to the diff's hash
//! result     per step, in order: capability fs.create-dir / fs.write /
//!            fs.remove, target the path, outcome "applied" (size and
//!            content_sha256 of what was written), reason "step i of n"
//! result     outcome ok; or not-approved (rejected, expired, or the
//!            workspace changed after the diff was made: nothing changed);
//!            or failed (the reason says how far the apply got)
//! ```

use super::{Corridor, Record, Stop, effect_hash, lock_audit};
use crate::approval::ApprovalRequest;
use crate::staging::{self, Changes, Journal, Staging, StagingError, Who};
use sandbox_audit::{ApprovalRecord, Decision, Kind};
use sandbox_redact::Counts;
use std::sync::PoisonError;
use std::time::Instant;

/// How a task's staged changes were settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Nothing was staged, or the staged calls cancel out.
    Nothing,
    /// Approved (or pre-approved) and applied: this many steps.
    Applied(usize),
    /// Rejected, expired, or the workspace changed after the diff was made:
    /// nothing changed.
    Rejected(String),
    /// The changes could not be applied; the reason says how far it got.
    Failed(String),
    /// The audit log could not be written (the run's stop cell says why).
    Stopped,
}

impl Corridor {
    pub(super) fn settle(&self, intent: Option<&str>) -> Settled {
        let Some(staging) = &self.staging else { return Settled::Nothing };
        let staging = staging::lock(staging);
        if staging.is_empty() {
            return Settled::Nothing;
        }
        // Like an approval wait, the end of the task is not the tool's time.
        let _waiting = self.clock.wait(false);
        self.settle_staged(&staging, intent)
    }

    fn settle_staged(&self, staging: &Staging, intent: Option<&str>) -> Settled {
        let start = Instant::now();
        let redactor = self.redactor();
        let mut fields = Counts::new();
        let intent = intent.map(|i| redactor.redact(i, &mut fields));
        let intent = intent.as_deref();
        let changes = match staging.changes(&self.workspace, &self.task.id) {
            Ok(c) => c,
            Err(e) => {
                let rec = Record {
                    capability: "fs.changes",
                    target: "staged changes",
                    dest: None,
                    intent,
                    resolved: None,
                    redactions: &fields,
                };
                let mut ev = self.event(Kind::Call, &rec);
                ev.decision = Some(Decision::Ask);
                ev.rule = Some("approval.writes");
                lock_audit(&self.audit).record(&ev);
                return self.conclude(&rec, &e, start, "no diff could be made");
            }
        };
        if changes.steps.is_empty() {
            return Settled::Nothing;
        }
        let ask = !changes.asked.is_empty();
        let rule = if ask { changes.asked.join(", ") } else { changes.allowed.join(", ") };
        let effect = effect_hash("fs.changes", &[&changes.summary, &changes.diff_sha256]);
        // The summary names the changed paths: shown like any target.
        let summary = redactor.redact_shown(&changes.summary, sandbox_redact::Context::Text, &mut fields);
        let rec = Record {
            capability: "fs.changes",
            target: &summary,
            dest: None,
            intent,
            resolved: None,
            redactions: &fields,
        };
        let mut ev = self.event(Kind::Call, &rec);
        ev.decision = Some(if ask { Decision::Ask } else { Decision::Allow });
        ev.rule = Some(&rule);
        ev.size = Some(changes.diff.len() as u64);
        ev.content_sha256 = Some(&changes.diff_sha256);
        lock_audit(&self.audit).record(&ev);
        if ask {
            if self.durable().is_err() {
                return Settled::Stopped;
            }
            // The reviewer sees the diff redacted; its hash is of the real
            // diff.
            let mut shown = fields.clone();
            let preview = redactor.redact_shown(&changes.diff, sandbox_redact::Context::Text, &mut shown);
            let answer = self.approver.lock().unwrap_or_else(PoisonError::into_inner).ask(&ApprovalRequest {
                task: &self.task.id,
                user: &self.task.user,
                agent: &self.task.agent,
                intent,
                capability: "fs.changes",
                target: &summary,
                dest: None,
                rule: &rule,
                size: Some(changes.diff.len() as u64),
                content_sha256: Some(&changes.diff_sha256),
                effect_sha256: &effect,
                require: &self.policy.approval_require,
                preview: Some(&preview),
                timeout: self.policy.approval_timeout,
            });
            let reason = redactor.redact(&answer.reason, &mut shown);
            let mut ev = self.event(Kind::Approval, &Record { redactions: &shown, ..rec });
            ev.rule = Some(&rule);
            ev.content_sha256 = Some(&changes.diff_sha256);
            ev.effect_sha256 = Some(&effect);
            ev.decision = Some(if answer.approved { Decision::Approved } else { Decision::Rejected });
            ev.reason = Some(&reason);
            ev.approval = Some(ApprovalRecord {
                via: answer.via,
                by: answer.by.clone(),
                at: humantime::format_rfc3339_micros(answer.at).to_string(),
                request: answer.request.clone(),
            });
            lock_audit(&self.audit).record(&ev);
            if !answer.approved {
                let why = format!("the changes were not approved: {}", answer.reason);
                return self.conclude(&rec, &StagingError::Changed(why), start, "");
            }
        }
        // The decision is on disk before the journal can make it happen.
        if self.durable().is_err() {
            return Settled::Stopped;
        }
        self.apply(&rec, &changes, start)
    }

    /// Journals the changes, checks the workspace, applies them in order.
    fn apply(&self, rec: &Record<'_>, changes: &Changes, start: Instant) -> Settled {
        let audit_path = lock_audit(&self.audit).path().to_path_buf();
        let journal = match Journal::begin_ambient(&audit_path, &self.task.id) {
            Ok(j) => j,
            Err(e) => return self.conclude(rec, &e, start, "nothing was changed"),
        };
        let who = Who {
            task: self.task.id.clone(),
            user: self.task.user.clone(),
            agent: self.task.agent.clone(),
            component: self.task.component.clone(),
            policy: self.policy.hash.clone(),
        };
        let prepared = journal
            .write_blobs(&changes.steps)
            .and_then(|()| staging::verify(&self.workspace, changes))
            .and_then(|()| journal.commit(&who, self.workspace.root_path(), changes));
        if let Err(e) = prepared {
            let e = match e {
                StagingError::Changed(why) => {
                    StagingError::Changed(format!("the workspace changed after the diff was made: {why}"))
                }
                e => e,
            };
            let _ = journal.finish();
            return self.conclude(rec, &e, start, "nothing was changed");
        }
        let n = changes.steps.len();
        let mut bytes = 0u64;
        for (i, step) in changes.steps.iter().enumerate() {
            let step_start = Instant::now();
            if let Err(e) = staging::apply_step(&self.workspace, step, &staging::temp_name(journal.id(), i)) {
                let why = e.to_string();
                let reason = format!("step {} of {n}: {why}", i + 1);
                let step_rec = Record { capability: step.op.capability(), target: step.path.display(), ..*rec };
                let ev = staging::step_event(
                    self.event(Kind::Result, &step_rec),
                    step,
                    "failed",
                    &reason,
                    step_start.elapsed(),
                );
                lock_audit(&self.audit).record(&ev);
                let kept = format!(
                    "the apply stopped at step {} of {n} ({why}); the steps before it are done; the journal `{}` is kept and the next `sandbox run` with this audit log completes the rest",
                    i + 1,
                    journal.dir().display()
                );
                // Dropping the journal releases its lock and keeps its files.
                return self.conclude(
                    rec,
                    &StagingError::Io { path: journal.dir().to_path_buf(), what: "apply", reason: kept },
                    start,
                    "",
                );
            }
            staging::test_pause(i + 1);
            bytes += step.data.as_ref().map_or(0, |d| d.len() as u64);
            let reason = format!("step {} of {n}", i + 1);
            let step_rec = Record { capability: step.op.capability(), target: step.path.display(), ..*rec };
            let ev = staging::step_event(
                self.event(Kind::Result, &step_rec),
                step,
                "applied",
                &reason,
                step_start.elapsed(),
            );
            lock_audit(&self.audit).record(&ev);
            if self.durable().is_err() {
                // The journal stays: a later run completes and records it.
                return Settled::Stopped;
            }
        }
        let mut ev = self.event(Kind::Result, rec);
        ev.outcome = Some("ok");
        ev.bytes_in = Some(bytes);
        ev.bytes_out = Some(0);
        ev.duration_us = Some(start.elapsed().as_micros() as u64);
        lock_audit(&self.audit).record(&ev);
        if self.durable().is_err() {
            // The journal stays: a later run finds every step done and
            // records that.
            return Settled::Stopped;
        }
        // Everything is applied and on record; a journal left behind would
        // only be found done by the next run.
        let _ = journal.finish();
        Settled::Applied(n)
    }

    /// Records the final `result` of changes that were not (all) applied.
    fn conclude(&self, rec: &Record<'_>, e: &StagingError, start: Instant, note: &str) -> Settled {
        let (outcome, settled) = match e {
            StagingError::Changed(why) => ("not-approved", Settled::Rejected(why.clone())),
            e => {
                let why = if note.is_empty() { e.to_string() } else { format!("{e}; {note}") };
                ("failed", Settled::Failed(why))
            }
        };
        let reason = match &settled {
            Settled::Rejected(why) | Settled::Failed(why) => why.as_str(),
            _ => "",
        };
        let mut ev = self.event(Kind::Result, rec);
        ev.outcome = Some(outcome);
        ev.reason = Some(reason);
        ev.bytes_in = Some(0);
        ev.bytes_out = Some(0);
        ev.duration_us = Some(start.elapsed().as_micros() as u64);
        lock_audit(&self.audit).record(&ev);
        if let Err(e) = lock_audit(&self.audit).sync() {
            let _ = self.stop.set(Stop::Audit(e.to_string()));
            return Settled::Stopped;
        }
        settled
    }
}
