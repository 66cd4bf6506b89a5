//! The forwarder: feeds the `[[audit.sink]]`s of a manifest from the audit
//! log file, one background thread per sink, so a slow or unreachable sink
//! never holds up a run or its log.
//!
//! A run starts a [`Forwarder`] once its log is open; each thread follows
//! the file and sends what was committed (see `sandbox_sinks::Delivery`).
//! When the run ends (the forwarder is dropped), the threads get
//! [`DRAIN`] to send what is left; whatever is still undelivered then stays
//! in the file for the next run or for `sandbox audit forward`. A sink that
//! cannot be reached is retried with backoff; one that refuses (bad token)
//! or whose cursor does not match the log stops, and the run says so in
//! one line on stderr. Neither changes the run's exit code: the local log is
//! the source of truth.
//!
//! The threads run in the host process with the host's network; the tool
//! has no way to reach them or the sinks (its own network rules are
//! separate), and the HEC token is read from the host's environment, which
//! the tool never gets.

use sandbox_policy::Sink;
use sandbox_sinks::{Delivery, ErrorClass, Origin, SinkError, Step};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a run waits at its end for its sinks to catch up.
pub const DRAIN: Duration = Duration::from_secs(2);
/// How often a following thread looks for new events when idle.
const POLL: Duration = Duration::from_millis(200);
/// The first wait after a sink could not be reached ...
const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// ... doubling up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// How delivery to one sink ended.
#[derive(Debug)]
pub enum Outcome {
    /// Everything committed was delivered.
    CaughtUp {
        /// Events sent by this forwarder.
        events: u64,
        /// Checkpoint lines sent by this forwarder.
        checkpoints: u64,
        /// The `seq` of the last event the sink has.
        through: Option<u64>,
    },
    /// Time ran out with events left (the sink unreachable, busy, or slow).
    Behind {
        /// The last failure, if the sink was failing.
        error: Option<SinkError>,
        /// The `seq` of the last event the sink has.
        through: Option<u64>,
    },
    /// The sink refused, or its cursor does not match the log: retrying
    /// will not help until someone fixes it.
    Failed(SinkError),
}

/// What the threads are asked to do.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Follow the log until told otherwise.
    Follow,
    /// Send what is there and stop once idle, or at this time.
    Drain(Instant),
}

#[derive(Debug)]
struct Control {
    phase: Mutex<Phase>,
    wake: Condvar,
}

impl Control {
    fn new(phase: Phase) -> Control {
        Control { phase: Mutex::new(phase), wake: Condvar::new() }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = phase;
        self.wake.notify_all();
    }

    fn expired(&self) -> bool {
        matches!(self.phase(), Phase::Drain(until) if Instant::now() >= until)
    }

    /// Waits `pause` (less when a deadline comes first, or when woken);
    /// false once the deadline has passed.
    fn wait(&self, pause: Duration) -> bool {
        let guard = self.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let pause = match *guard {
            Phase::Follow => pause,
            Phase::Drain(until) => pause.min(until.saturating_duration_since(Instant::now())),
        };
        let guard = match self.wake.wait_timeout(guard, pause) {
            Ok((g, _)) => g,
            Err(poisoned) => poisoned.into_inner().0,
        };
        !matches!(*guard, Phase::Drain(until) if Instant::now() >= until)
    }
}

/// Sends to one sink until it is caught up and the phase is `Drain`, the
/// drain's time runs out, or the sink fails for good. With `patience`,
/// every batch sent pushes the deadline to that long from now (catch-up
/// gives up only after that long without progress).
fn drive(delivery: &mut Delivery, control: &Control, patience: Option<Duration>) -> Outcome {
    let (mut events, mut checkpoints) = (0u64, 0u64);
    let mut backoff = BACKOFF_MIN;
    loop {
        let (pause, last) = match delivery.step() {
            Ok(Step::Sent { events: e, checkpoints: c }) => {
                events += e as u64;
                checkpoints += c as u64;
                backoff = BACKOFF_MIN;
                if let Some(p) = patience {
                    control.set(Phase::Drain(Instant::now() + p));
                }
                if control.expired() {
                    return Outcome::Behind { error: None, through: delivery.delivered_through() };
                }
                continue;
            }
            Ok(Step::Idle) => {
                if matches!(control.phase(), Phase::Drain(_)) {
                    return Outcome::CaughtUp { events, checkpoints, through: delivery.delivered_through() };
                }
                (POLL, None)
            }
            Err(e) if matches!(e.class, ErrorClass::Unavailable | ErrorClass::Busy) => {
                // A run's last look: a sink failing now is left for
                // catch-up rather than holding the run for the whole drain.
                if patience.is_none() && matches!(control.phase(), Phase::Drain(_)) {
                    return Outcome::Behind { error: Some(e), through: delivery.delivered_through() };
                }
                let pause = backoff;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                (pause, Some(e))
            }
            Err(e) => return Outcome::Failed(e),
        };
        if !control.wait(pause) {
            return Outcome::Behind { error: last, through: delivery.delivered_through() };
        }
    }
}

/// Prepares delivery to every sink; a sink that cannot be set up (its
/// token variable unset) comes back as its error.
fn deliveries(log: &Path, checkpoints: &Path, sinks: &[Sink]) -> Vec<Result<Delivery, SinkError>> {
    let origin = Origin::of_this_process_ambient();
    sinks.iter().map(|s| Delivery::open_ambient(log, checkpoints, s, origin.clone())).collect()
}

/// The sinks of a run, fed in the background.
#[derive(Debug)]
pub struct Forwarder {
    control: Arc<Control>,
    running: usize,
    done: mpsc::Receiver<(String, String, Outcome)>,
    /// Sinks that could not even start, reported at the end.
    unstarted: Vec<SinkError>,
}

impl Forwarder {
    /// Starts one thread per sink following `log` (and its checkpoint file
    /// `checkpoints`).
    ///
    /// # Ambient Authority
    ///
    /// Reads the environment (HEC tokens); the threads read and write files
    /// beside the log and connect to the sinks.
    pub fn start_ambient(log: &Path, checkpoints: &Path, sinks: &[Sink]) -> Forwarder {
        let control = Arc::new(Control::new(Phase::Follow));
        let (tx, done) = mpsc::channel();
        let mut running = 0;
        let mut unstarted = Vec::new();
        for d in deliveries(log, checkpoints, sinks) {
            let mut d = match d {
                Ok(d) => d,
                Err(e) => {
                    unstarted.push(e);
                    continue;
                }
            };
            let (control, tx) = (control.clone(), tx.clone());
            let spawned = std::thread::Builder::new().name(format!("sink-{}", d.name())).spawn(move || {
                let outcome = drive(&mut d, &control, None);
                let _ = tx.send((d.name().to_owned(), d.target().to_owned(), outcome));
            });
            match spawned {
                Ok(_) => running += 1,
                Err(e) => tracing::warn!("cannot start a thread for an audit sink: {e}"),
            }
        }
        Forwarder { control, running, done, unstarted }
    }

    /// Gives the threads up to `within` to deliver what is committed, then
    /// leaves the rest for catch-up, and says in one line per sink on
    /// stderr what was not delivered. Threads still blocked in a
    /// connection are left behind (the process is about to exit).
    fn finish(&mut self, within: Duration) {
        for e in self.unstarted.drain(..) {
            eprintln!("sandbox: warning: audit {e}; nothing was forwarded to it");
        }
        if self.running == 0 {
            return;
        }
        let until = Instant::now() + within;
        self.control.set(Phase::Drain(until));
        // A thread stuck in a connect or request past the deadline gets a
        // little longer to report, then is left behind.
        let give_up = until + Duration::from_millis(500);
        while self.running > 0 {
            let left = give_up.saturating_duration_since(Instant::now());
            match self.done.recv_timeout(left) {
                Ok((name, target, outcome)) => {
                    self.running -= 1;
                    if let Some(line) = describe_unfinished(&name, &target, &outcome) {
                        eprintln!("sandbox: {line} (`sandbox audit forward` catches up)");
                    }
                }
                Err(_) => {
                    eprintln!(
                        "sandbox: warning: {} audit sink(s) did not catch up within {}; the rest is left for `sandbox audit forward`",
                        self.running,
                        humantime::format_duration(within)
                    );
                    self.running = 0;
                }
            }
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.finish(DRAIN);
    }
}

/// One line for a sink that did not catch up, `None` when it did.
pub fn describe_unfinished(name: &str, target: &str, outcome: &Outcome) -> Option<String> {
    let after = |through: &Option<u64>| match through {
        Some(seq) => format!("the events after seq {seq} are not delivered yet"),
        None => "no event is delivered yet".to_owned(),
    };
    match outcome {
        Outcome::CaughtUp { .. } => None,
        Outcome::Behind { error: Some(e), through } => Some(format!("warning: audit {e}; {}", after(through))),
        Outcome::Behind { error: None, through } => {
            Some(format!("warning: audit sink `{name}` ({target}) is still catching up; {}", after(through)))
        }
        Outcome::Failed(e) if e.class == ErrorClass::Mismatch => Some(format!("finding: audit {e}")),
        Outcome::Failed(e) => Some(format!("error: audit {e}")),
    }
}

/// The result of [`catch_up`] for one sink.
#[derive(Debug)]
pub struct CatchUp {
    /// The sink's name.
    pub name: String,
    /// Its type and address.
    pub target: String,
    /// How it ended.
    pub outcome: Outcome,
}

/// Delivers to each sink everything it has not been sent, all sinks at
/// once; a sink is given up on after `patience` without progress. With
/// `reset`, the cursors of those sinks are removed first (they get the
/// log again from its first event).
///
/// # Ambient Authority
///
/// Reads the environment (HEC tokens), files beside the log; connects to
/// the sinks.
pub fn catch_up_ambient(
    log: &Path,
    checkpoints: &Path,
    sinks: &[Sink],
    patience: Duration,
    reset: bool,
) -> Vec<CatchUp> {
    let mut out = Vec::new();
    std::thread::scope(|scope| {
        let mut threads = Vec::new();
        for (sink, d) in sinks.iter().zip(deliveries(log, checkpoints, sinks)) {
            threads.push((
                sink,
                scope.spawn(move || {
                    let mut d = d.map_err(Box::new)?;
                    if reset {
                        d.reset().map_err(Box::new)?;
                    }
                    let control = Control::new(Phase::Drain(Instant::now() + patience));
                    let outcome = drive(&mut d, &control, Some(patience));
                    Ok::<_, Box<SinkError>>(CatchUp {
                        name: d.name().to_owned(),
                        target: d.target().to_owned(),
                        outcome,
                    })
                }),
            ));
        }
        for (sink, t) in threads {
            let c = match t.join() {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => CatchUp { name: e.sink.clone(), target: e.target.clone(), outcome: Outcome::Failed(*e) },
                Err(_) => CatchUp {
                    name: sink.name.clone(),
                    target: String::new(),
                    outcome: Outcome::Failed(SinkError {
                        class: ErrorClass::Refused,
                        sink: sink.name.clone(),
                        target: String::new(),
                        message: "the forwarding thread panicked".into(),
                    }),
                },
            };
            out.push(c);
        }
    });
    out
}
