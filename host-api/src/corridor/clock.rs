//! The run's clock for `limits.time`: wall time since the start, minus the
//! time the tool spent blocked waiting for a human.
//!
//! A wait for an approver is taken off the limit only while the tool is
//! itself blocked on it:
//!
//! - a `sandbox:host` call runs on the tool's own thread, so the tool is
//!   blocked for the whole of its approval wait ([`RunClock::wait`] with
//!   `carried = false`), and so is the end-of-task approval of staged
//!   changes;
//! - a `wasi:http` request is carried by a background task: the tool keeps
//!   running wasm while the request waits for its approver. That wait
//!   (`carried = true`) pauses the clock only while the tool is blocked in
//!   `wasi:io/poll` (`poll`, `pollable.block`; [`RunClock::blocked`]), the
//!   only way it can wait for the response. A tool that computes (or calls
//!   anything else) while its request waits for a human is charged for
//!   that time.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The run's wall clock for `limits.time`. Shared by the corridor, the
/// engine's epoch callback, the `wasi:io/poll` wrapper and the runtime's
/// watchdog.
#[derive(Debug)]
pub struct RunClock {
    started: Instant,
    limit: Duration,
    pause: Mutex<Pause>,
}

/// What is waiting right now, and the time taken off so far.
#[derive(Debug, Default)]
struct Pause {
    /// Finished pauses.
    paused: Duration,
    /// When the current pause began (time since `started`).
    since: Option<Duration>,
    /// Approval waits of calls the tool is blocked in (`sandbox:host`).
    waits: u32,
    /// Approval waits of requests carried by background tasks (`wasi:http`).
    carried: u32,
    /// The tool is blocked in `wasi:io/poll`.
    blocked: u32,
}

impl Pause {
    fn pausing(&self) -> bool {
        self.waits > 0 || (self.carried > 0 && self.blocked > 0)
    }
}

/// Which counter a guard holds.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Wait,
    Carried,
    Blocked,
}

/// Held while something that may pause the clock lasts; dropping it ends it.
#[derive(Debug)]
#[must_use = "the wait ends when the guard is dropped"]
pub struct Waiting {
    clock: Arc<RunClock>,
    kind: Kind,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let kind = self.kind;
        self.clock.change(|p| {
            let n = match kind {
                Kind::Wait => &mut p.waits,
                Kind::Carried => &mut p.carried,
                Kind::Blocked => &mut p.blocked,
            };
            *n = n.saturating_sub(1);
        });
    }
}

impl RunClock {
    /// A clock starting now with a budget of `limit`.
    pub fn new(limit: Duration) -> Arc<RunClock> {
        Arc::new(RunClock { started: Instant::now(), limit, pause: Mutex::new(Pause::default()) })
    }

    /// The budget.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    fn lock(&self) -> MutexGuard<'_, Pause> {
        self.pause.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Time used against the budget.
    pub fn used(&self) -> Duration {
        let p = self.lock();
        let now = self.started.elapsed();
        let current = p.since.map_or(Duration::ZERO, |s| now.saturating_sub(s));
        now.saturating_sub(p.paused + current)
    }

    /// Time taken off the budget so far (finished pauses).
    pub fn paused(&self) -> Duration {
        self.lock().paused
    }

    fn change(&self, f: impl FnOnce(&mut Pause)) {
        let mut p = self.lock();
        let now = self.started.elapsed();
        let before = p.pausing();
        f(&mut p);
        match (before, p.pausing()) {
            (false, true) => p.since = Some(now),
            (true, false) => {
                if let Some(since) = p.since.take() {
                    p.paused += now.saturating_sub(since);
                }
            }
            _ => {}
        }
    }

    fn hold(self: &Arc<Self>, kind: Kind) -> Waiting {
        self.change(|p| match kind {
            Kind::Wait => p.waits += 1,
            Kind::Carried => p.carried += 1,
            Kind::Blocked => p.blocked += 1,
        });
        Waiting { clock: Arc::clone(self), kind }
    }

    /// A wait for a human. `carried`: the call is carried by a background
    /// task (a `wasi:http` request) while the tool may keep running; then
    /// the wait pauses the clock only while the tool is [`blocked`]
    /// (Self::blocked). Otherwise the tool is blocked in the call itself and
    /// the whole wait is taken off.
    pub fn wait(self: &Arc<Self>, carried: bool) -> Waiting {
        self.hold(if carried { Kind::Carried } else { Kind::Wait })
    }

    /// The tool is blocked in `wasi:io/poll` until the guard is dropped.
    pub fn blocked(self: &Arc<Self>) -> Waiting {
        self.hold(Kind::Blocked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_call_the_tool_is_blocked_in_pauses_the_clock() {
        let clock = RunClock::new(Duration::from_secs(60));
        let w = clock.wait(false);
        spin(Duration::from_millis(50));
        drop(w);
        assert!(clock.paused() >= Duration::from_millis(50));
        let used = clock.used();
        assert!(used + Duration::from_millis(50) <= clock.started.elapsed(), "{used:?}");
    }

    #[test]
    fn a_carried_wait_pauses_only_while_the_tool_is_blocked() {
        let clock = RunClock::new(Duration::from_secs(60));
        let carried = clock.wait(true);
        spin(Duration::from_millis(30));
        // The tool computes: nothing is taken off.
        assert_eq!(clock.paused(), Duration::ZERO);
        let blocked = clock.blocked();
        spin(Duration::from_millis(30));
        drop(blocked);
        let after_block = clock.paused();
        assert!(after_block >= Duration::from_millis(30), "{after_block:?}");
        spin(Duration::from_millis(30));
        assert_eq!(clock.paused(), after_block);
        drop(carried);
        // Blocked without a carried wait: nothing is taken off.
        let blocked = clock.blocked();
        spin(Duration::from_millis(30));
        drop(blocked);
        assert_eq!(clock.paused(), after_block);
    }
}
