//! The clock and the end of a task, for `wasi:http` requests (which a
//! background task carries while the tool may go on running or exit):
//!
//! - a request waiting for its approver stops `limits.time` only while the
//!   tool is blocked waiting for it, not while it computes;
//! - requests still in flight when the tool exits (or is stopped) end
//!   before `task-end`, each with its `call` and `result` events, and
//!   `task-end` is the last event with the exact number of calls.
//!
//! The real `sandbox` binary, the `wasi-fetch` guest, the approval
//! service and local servers on 127.0.0.1.

#![allow(clippy::unwrap_used)]

mod common;
use common::approval_service::{Server, Setup};
use common::http_server::HttpServer;
use common::*;
use serde_json::Value;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `sandbox run`'s variable for the runner's token.
const TOKEN_VAR: &str = "SANDBOX_APPROVAL_TOKEN";
/// `limits.time` of the runs that compute while a request waits.
const LIMIT: &str = "2s";
/// How long the spinning tool computes, by its own clock: far past the
/// limit, far short of the approval timeout.
const SPIN_SECS: &str = "8";

/// A server that accepts connections, reads what arrives and never
/// answers: a request to it stays in flight until the client gives up.
struct Hold {
    addr: SocketAddr,
    accepted: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Hold {
    fn start() -> Hold {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (held, stopping) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                held.lock().unwrap().push(conn.try_clone().unwrap());
                // Read (and drop) the request; never answer.
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                });
            }
        });
        Hold { addr, accepted, stop }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connections accepted so far: every one made before this call, as a
    /// marker connected now is accepted after them (first in, first out).
    fn connections(&self) -> usize {
        let marker = TcpStream::connect(self.addr).unwrap();
        let me = marker.local_addr().unwrap();
        let accepted = || self.accepted.lock().unwrap().iter().position(|c| c.peer_addr().ok() == Some(me));
        assert!(wait_for(Duration::from_secs(10), || accepted().is_some()), "the marker was not accepted");
        accepted().unwrap()
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn manifest(url: &str, extra: &str) -> String {
    format!(
        "[http]\nallow_private = [\"127.0.0.1/32\"]\n\n[[http.allow]]\nurl = \"{url}\"\nmethods = [\"GET\", \"POST\"]\n\n{extra}"
    )
}

/// Runs `wasi-fetch` approved through `service`, to the end.
fn run_approved(f: &Fixture, service: &Server, setup: &Setup, args: &[&str]) -> Run {
    let mut cmd = f.command("wasi-fetch", &["--approve", &service.url()], args);
    cmd.env(TOKEN_VAR, &setup.runner);
    Run::from_output(cmd.output().unwrap())
}

/// Checks what every run must leave: `task-end` last, after a `result` for
/// every `call`, counting exactly the calls recorded; a log that verifies.
/// Returns the `http.send` calls with their results.
fn ended_cleanly(f: &Fixture, status: &str) -> Vec<(Value, Value)> {
    let ev = f.events();
    let last = ev.last().unwrap();
    assert_eq!(last["kind"], "task-end", "task-end is not the last event: {ev:#?}");
    assert_eq!(last["status"], status, "{last}");
    let calls: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "call").collect();
    assert_eq!(last["calls"].as_u64(), Some(calls.len() as u64), "task-end's count: {ev:#?}");
    let mut pairs = Vec::new();
    for call in calls {
        let result = ev
            .iter()
            .find(|e| {
                e["kind"] == "result"
                    && e["seq"].as_u64() > call["seq"].as_u64()
                    && e["capability"] == call["capability"]
                    && e["target"] == call["target"]
            })
            .unwrap_or_else(|| panic!("no result for {call}: {ev:#?}"));
        if call["capability"] == "http.send" {
            pairs.push((call.clone(), result.clone()));
        }
    }
    assert_eq!(f.verify().code, 0);
    pairs
}

#[test]
fn a_tool_computing_while_its_request_waits_for_approval_is_stopped_by_the_time_limit() {
    let s = HttpServer::start();
    let setup = Setup::new();
    let service = setup.start();
    let url = s.url("/api/echo");
    let f = Fixture::new(&manifest(&url, &format!("[limits]\ntime = \"{LIMIT}\"\n\n[approval]\ntimeout = \"60s\"\n")));
    // The POST waits for a reviewer who never comes (60 s); the tool does
    // not wait for it and computes for 8 s by its own clock.
    let r = run_approved(&f, &service, &setup, &["--spin", SPIN_SECS, &url]);
    assert_eq!(r.code, 124, "the run was not stopped by its time limit: {r:?}");
    assert!(!r.stdout.contains("spun"), "the tool computed past its time limit: {r:?}");
    assert!(r.stderr.contains("time limit of 2s"), "{r:?}");
    let pairs = ended_cleanly(&f, "time-limit");
    assert_eq!(pairs.len(), 1, "{pairs:#?}");
    let (call, result) = &pairs[0];
    assert_eq!(call["decision"], "ask");
    assert_eq!(result["outcome"], "failed", "{result}");
    assert!(result["reason"].as_str().unwrap().starts_with("aborted: the task ended"), "{result}");
    s.assert_untouched("a POST nobody approved");
}

#[test]
fn a_tool_blocked_on_its_request_may_wait_for_the_reviewer_past_its_time_limit() {
    let s = HttpServer::start();
    let setup = Setup::new();
    let service = setup.start();
    let url = s.url("/api/echo");
    let f = Fixture::new(&manifest(&url, &format!("[limits]\ntime = \"{LIMIT}\"\n\n[approval]\ntimeout = \"60s\"\n")));
    let mut cmd = f.command("wasi-fetch", &["--approve", &service.url()], &["-X", "POST", "-d", "report", &url]);
    cmd.env(TOKEN_VAR, &setup.runner).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let mut pending = None;
    assert!(
        wait_for(Duration::from_secs(30), || {
            pending = service.list(setup.token("alice"), "pending").into_iter().next();
            pending.is_some()
        }),
        "no request was submitted"
    );
    // The reviewer takes longer than the whole time limit; the tool is
    // blocked in wasi:io/poll on its response all along.
    std::thread::sleep(Duration::from_secs(3));
    let id = pending.unwrap()["id"].as_str().unwrap().to_owned();
    let (status, _) = service.vote(setup.token("bob"), &id, "approve", "fine");
    assert_eq!(status, 200);
    let r = Run::from_output(child.wait_with_output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("status 200\n"), "{r:?}");
    let pairs = ended_cleanly(&f, "exit");
    assert_eq!(pairs[0].1["outcome"], "ok");
    assert_eq!(s.requests().len(), 1);
}

#[test]
fn requests_in_flight_when_the_tool_exits_end_before_task_end() {
    let hold = Hold::start();
    let url = hold.url("/slow");
    let f = Fixture::new(&manifest(&hold.url("/**"), "[limits]\ntime = \"60s\"\n"));
    let r = f.run("wasi-fetch", &["--fire", "4", &url]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "fired 4\n"), "{r:?}");
    let pairs = ended_cleanly(&f, "exit");
    let mut targets: Vec<String> = pairs.iter().map(|(c, _)| c["target"].as_str().unwrap().to_owned()).collect();
    targets.sort();
    let expected: Vec<String> = (1..=4).map(|n| format!("GET {url}/{n}")).collect();
    assert_eq!(targets, expected);
    let mut maybe_sent = 0;
    for (call, result) in &pairs {
        assert_eq!(call["decision"], "allow", "{call}");
        assert_eq!(result["outcome"], "failed", "{result}");
        let reason = result["reason"].as_str().unwrap();
        assert!(reason.starts_with("aborted: the task ended"), "{result}");
        if reason.contains("may have reached the server") {
            maybe_sent += 1;
        }
    }
    // The sandbox has exited: whatever reached the server did so while its
    // request was under way, before task-end, and its result says so.
    let seen = hold.connections();
    assert!(seen <= maybe_sent, "{seen} connection(s), {maybe_sent} request(s) on record as possibly sent: {pairs:#?}");
}

#[test]
fn a_request_whose_body_is_never_finished_is_on_record_and_never_sent() {
    let s = HttpServer::start();
    let url = s.url("/api/echo");
    let f = Fixture::new(&manifest(&url, ""));
    let r = f.run("wasi-fetch", &["--unfinished", &url]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "fired 1\n"), "{r:?}");
    let pairs = ended_cleanly(&f, "exit");
    assert_eq!(pairs.len(), 1, "{pairs:#?}");
    let (call, result) = &pairs[0];
    assert_eq!(call["target"], format!("POST {url}"));
    assert_eq!(call["decision"], "ask", "{call}");
    assert_eq!(result["outcome"], "failed", "{result}");
    assert!(result["reason"].as_str().unwrap().contains("nothing was sent"), "{result}");
    assert!(!f.events().iter().any(|e| e["kind"] == "approval"), "an unfinished request was put to a reviewer");
    s.assert_untouched("a request whose body was never finished");
}
