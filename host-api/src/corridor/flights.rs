//! `wasi:http` requests in flight, and the end of a task.
//!
//! A `wasi:http` request is carried by a background task: the hook takes
//! it when the tool calls `outgoing-handler.handle`, its body is collected,
//! and then it walks the corridor on a blocking thread while the tool may
//! go on running or exit. Each request is a [`Flight`] from the hook to its
//! last event, and every flight ends with its `call` and `result` events:
//! sent, refused, or not sent at all (a body never finished, too large, a
//! request dropped by the tool, the task ending first).
//!
//! At the end of a task, before `task-end` is written,
//! [`Corridor::end_requests`]:
//!
//! 1. closes the gate: a request the tool makes from now on is refused
//!    without leaving the host (and without events: the task is over);
//! 2. tells every flight to stop: a body still being collected is given
//!    up, an exchange not begun is not begun, one under way is dropped (its
//!    connection closed), and each records its `result` (`failed`, the
//!    reason starting with `aborted:`);
//! 3. withdraws flights waiting for a human: their `result` is recorded
//!    for them now (`failed`, `aborted: ... waited for approval`), and
//!    whatever the approver answers later is ignored: nothing is sent;
//! 4. waits for the others to record their last event, at most
//!    [`SETTLE`]; one that has not by then is cut off: its `result` is
//!    recorded for it (if its `call` was) and nothing it does later is
//!    recorded.
//!
//! So `task-end` is the task's last event, and no request of the task
//! leaves the host after it.

use super::{Corridor, Record, lock_audit};
use crate::bindings::sandbox::host::types::Error;
use sandbox_audit::Event;
use sandbox_redact::Counts;
use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long the end of a task waits for its requests to record their last
/// event once told to stop (each stops at once unless its name lookup
/// hangs).
pub const SETTLE: Duration = Duration::from_secs(10);

/// The reason recorded for a request withdrawn while it waited for a human.
pub(crate) const WITHDRAWN: &str =
    "aborted: the task ended while the request waited for approval; it was withdrawn and nothing was sent";
/// The reason for a request that reached the approval step after the task
/// began to end.
pub(crate) const NOT_ASKED: &str = "aborted: the task ended before approval was asked; nothing was sent";
/// The reason recorded for a request cut off at the end of its task.
const CUT: &str = "aborted: the request did not stop in time at the end of the task; the task ended without it";

/// The run's flights. One per run, shared by every clone of its corridor.
#[derive(Debug)]
pub(crate) struct Flights {
    state: Mutex<State>,
    landed: Condvar,
    ended: watch::Sender<bool>,
}

impl Default for Flights {
    fn default() -> Flights {
        Flights { state: Mutex::default(), landed: Condvar::new(), ended: watch::Sender::new(false) }
    }
}

#[derive(Debug, Default)]
struct State {
    /// The task is ending: no new flight, no new approval asked.
    closed: bool,
    next: u64,
    open: BTreeMap<u64, Open>,
}

#[derive(Debug, Default)]
struct Open {
    /// The flight's `call` event, once recorded.
    called: Option<Box<Called>>,
    /// The flight waits for a human.
    asking: bool,
}

/// What a flight's `result` needs, kept from its `call`.
#[derive(Debug)]
pub(super) struct Called {
    pub capability: &'static str,
    pub target: String,
    pub dest: Option<String>,
    pub intent: Option<String>,
    pub resolved: Option<String>,
    pub counts: Counts,
    pub bytes_in: u64,
    pub start: Instant,
}

impl Called {
    pub(super) fn new(capability: &'static str, r: &Record<'_>, bytes_in: u64, start: Instant) -> Called {
        Called {
            capability,
            target: r.target.to_owned(),
            dest: r.dest.map(str::to_owned),
            intent: r.intent.map(str::to_owned),
            resolved: r.resolved.map(str::to_owned),
            counts: r.redactions.clone(),
            bytes_in,
            start,
        }
    }
}

impl Flights {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Turns true when the task begins to end.
    pub(crate) fn ended(&self) -> watch::Receiver<bool> {
        self.ended.subscribe()
    }

    /// A new flight, or `None` once the task is ending.
    fn take_off(&self) -> Option<u64> {
        let mut st = self.lock();
        if st.closed {
            return None;
        }
        st.next += 1;
        let id = st.next;
        st.open.insert(id, Open::default());
        Some(id)
    }

    fn land(&self, id: u64) {
        let mut st = self.lock();
        st.open.remove(&id);
        if st.open.is_empty() {
            self.landed.notify_all();
        }
    }

    /// Records an event of flight `id` unless it was withdrawn or cut off.
    pub(crate) fn record(&self, id: u64, record: impl FnOnce()) {
        let st = self.lock();
        if st.open.contains_key(&id) {
            record();
        }
    }

    /// Keeps what the flight's `result` needs once its `call` is recorded.
    pub(super) fn called(&self, id: u64, called: Called) {
        if let Some(open) = self.lock().open.get_mut(&id) {
            open.called = Some(Box::new(called));
        }
    }

    /// The flight is about to ask a human. False: the task is ending, do
    /// not ask.
    pub(crate) fn asking(&self, id: u64) -> bool {
        let mut st = self.lock();
        if st.closed {
            return false;
        }
        st.open.get_mut(&id).map(|o| o.asking = true).is_some()
    }

    /// The human answered. False: the flight was withdrawn meanwhile (its
    /// `result` is on record); it must do nothing more.
    pub(crate) fn answered(&self, id: u64) -> bool {
        self.lock().open.get_mut(&id).map(|o| o.asking = false).is_some()
    }
}

/// One `wasi:http` request from the hook to its last event.
#[derive(Debug)]
pub(crate) struct Flight {
    /// The run's corridor, for this flight.
    corridor: Corridor,
    id: u64,
    intent: Option<String>,
    method: String,
    url: String,
    landed: bool,
}

impl Corridor {
    /// A flight for a request the tool just made, or `None` when the task
    /// is ending (nothing new leaves).
    pub(crate) fn take_off(&self, intent: Option<String>, method: &str, url: &str) -> Option<Flight> {
        let id = self.flights.take_off()?;
        let mut corridor = self.clone();
        corridor.flight = Some(id);
        Some(Flight { corridor, id, intent, method: method.to_owned(), url: url.to_owned(), landed: false })
    }

    /// Records an event: for a flight, only while it is still in the air.
    pub(super) fn log(&self, ev: &Event<'_>) {
        match self.flight {
            None => lock_audit(&self.audit).record(ev),
            Some(id) => self.flights.record(id, || lock_audit(&self.audit).record(ev)),
        }
    }

    /// Ends the task's requests before `task-end` (see the module's
    /// documentation). Idempotent; returns once every flight has landed,
    /// been withdrawn or been cut off.
    pub fn end_requests(&self) {
        let flights = &self.flights;
        let mut st = flights.lock();
        st.closed = true;
        flights.ended.send_replace(true);
        let asking: Vec<u64> = st.open.iter().filter(|(_, o)| o.asking).map(|(id, _)| *id).collect();
        for id in asking {
            if let Some(open) = st.open.remove(&id) {
                self.record_for(open, WITHDRAWN);
            }
        }
        let deadline = Instant::now() + SETTLE;
        while !st.open.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                for (_, open) in std::mem::take(&mut st.open) {
                    self.record_for(open, CUT);
                }
                break;
            }
            st = flights.landed.wait_timeout(st, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// Records the `result` of a flight that will not record it itself.
    fn record_for(&self, open: Open, reason: &str) {
        let Some(c) = open.called else { return };
        let rec = Record {
            capability: c.capability,
            target: &c.target,
            dest: c.dest.as_deref(),
            intent: c.intent.as_deref(),
            resolved: c.resolved.as_deref(),
            redactions: &c.counts,
        };
        let error = Error::Failed(reason.to_owned());
        // The main corridor (no flight): recorded directly.
        let main = Corridor { flight: None, ..self.clone() };
        main.record_result::<()>(self.redactor(), &rec, Err(&error), c.bytes_in, None, c.start);
    }
}

impl Flight {
    /// Turns true when the task begins to end.
    pub(crate) fn ended(&self) -> watch::Receiver<bool> {
        self.corridor.flights.ended()
    }

    /// The largest request body passed (`limits.output`).
    pub(crate) fn body_limit(&self) -> u64 {
        self.corridor.output_limit()
    }

    /// Walks the request through the corridor (on a blocking thread).
    pub(crate) fn send(mut self, out: crate::http::Outgoing) -> wasmtime::Result<Result<crate::net::Reply, Error>> {
        let reply = self.corridor.send_http(self.intent.as_deref(), out);
        self.land();
        reply
    }

    /// Records the request as not sent, for `why` (on a blocking thread).
    pub(crate) fn unsent(mut self, why: Error) {
        self.record_unsent(why);
        self.land();
    }

    fn record_unsent(&self, why: Error) {
        // A trap here means the run is stopping (its log failed); the
        // request was not sent either way.
        let _ = self.corridor.unsent_http(self.intent.as_deref(), &self.method, &self.url, why);
    }

    fn land(&mut self) {
        if !self.landed {
            self.landed = true;
            self.corridor.flights.land(self.id);
        }
    }
}

impl Drop for Flight {
    /// The tool dropped the request (or its task was aborted) before it
    /// reached the corridor: it is on record as not sent.
    fn drop(&mut self) {
        if !self.landed {
            self.record_unsent(Error::Failed(
                "aborted: the request was dropped before its body was finished; nothing was sent".into(),
            ));
            self.land();
        }
    }
}
