//! THREATS.md, Resources: a hostile tool spins, grows memory, recurses,
//! floods stdout, calls the host without end or blocks in a host call.
//! Each test runs the real binary on the `hog` (or `probe`) guest and
//! checks the exit code, the `task-end` event with its reason, the single
//! `sandbox: run stopped` line and that the log still verifies.

mod common;
use common::*;

use serde_json::Value;
use std::time::{Duration, Instant};

const LIMITS: &str = r#"
[fs]
read = ["src/**"]

[limits]
time = "2s"
memory = "32 MiB"
output = "64 KiB"
calls = 10
"#;

fn fixture() -> Fixture {
    let f = Fixture::new(LIMITS);
    f.file("src/a.txt", "a\n");
    f
}

/// Checks what every stop by a limit leaves behind and returns the
/// `task-end` event: the exit code, the status, one `run stopped` line on
/// stderr naming the recorded reason, and a log that verifies.
#[allow(clippy::unwrap_used)] // a helper that cannot do its part fails the test
fn stopped(f: &Fixture, r: &Run, code: i32, status: &str) -> Value {
    assert_eq!(r.code, code, "{r:?}");
    let ev = f.events();
    let end = ev.last().unwrap().clone();
    assert_eq!(end["kind"], "task-end", "{end}");
    assert_eq!(end["status"], status, "{end}");
    assert_eq!(end["exit_code"], code, "{end}");
    assert_eq!(ev.iter().filter(|e| e["kind"] == "task-end").count(), 1);
    let reason = end["reason"].as_str().unwrap();
    let lines: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("sandbox: ")).collect();
    assert_eq!(lines, [format!("sandbox: run stopped: {reason}")], "{}", r.stderr);
    let v = f.verify();
    assert_eq!(v.code, 0, "{v:?}");
    end
}

#[test]
fn an_endless_loop_is_stopped_by_the_time_limit() {
    let f = fixture();
    let r = f.run("hog", &["spin"]);
    let end = stopped(&f, &r, 124, "time-limit");
    assert_eq!(end["reason"], "the run exceeded its time limit of 2s");
    assert_eq!(f.events()[0]["limits"]["time_ms"], 2000);
}

#[test]
fn memory_growth_is_stopped_by_the_memory_limit() {
    let f = fixture();
    let r = f.run("hog", &["alloc"]);
    let end = stopped(&f, &r, 125, "memory-limit");
    assert!(end["reason"].as_str().unwrap().contains(&(32u64 << 20).to_string()), "{end}");
}

#[test]
fn a_tool_that_needs_more_memory_to_start_never_starts() {
    let f = Fixture::new(&LIMITS.replace("32 MiB", "1 MiB"));
    let r = f.run("hog", &["exit", "0"]);
    let end = stopped(&f, &r, 125, "memory-limit");
    assert_eq!(end["reason"], "the tool needed more than its memory limit of 1048576 bytes");
    assert_eq!(end["calls"], 0);
}

#[test]
fn endless_output_is_stopped_by_the_output_limit() {
    let f = fixture();
    let r = f.run("hog", &["flood"]);
    let end = stopped(&f, &r, 123, "output-limit");
    assert_eq!(end["reason"], "the tool wrote more than 65536 bytes to stdout");
    // The host passed on no more than the limit.
    assert!(r.stdout.len() <= 64 << 10, "{} bytes reached stdout", r.stdout.len());
    assert!(r.stdout.starts_with("yyyy"), "{:?}", &r.stdout[..r.stdout.len().min(40)]);
}

#[test]
fn deep_recursion_and_a_panic_are_traps() {
    for mode in ["recurse", "panic"] {
        let f = fixture();
        let r = f.run("hog", &[mode]);
        let end = stopped(&f, &r, 134, "trap");
        assert!(end["reason"].as_str().unwrap().starts_with("the tool trapped: "), "{mode}: {end}");
    }
}

#[test]
fn calls_beyond_the_limit_are_refused_and_the_tool_may_finish() {
    let f = fixture();
    let r = f.run("hog", &["calls", "15"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stderr.contains("sandbox: run stopped"), "{}", r.stderr);
    // `stat .` (the root leads to the `src/**` grant): ten are allowed,
    // the last five are refused by the limit.
    assert_eq!(r.stdout.trim(), r#"{"limit-exceeded": 5, "ok": 10}"#, "{r:?}");
    let ev = f.events();
    let calls: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "call").collect();
    assert_eq!(calls.len(), 15);
    for call in &calls[..10] {
        assert_eq!(call["decision"], "allow", "{call}");
    }
    for call in &calls[10..] {
        assert_eq!(call["decision"], "limit", "{call}");
        assert_eq!(call["rule"], "limits.calls", "{call}");
        let result = result_of(&ev, call);
        assert_eq!(result["outcome"], "limit-exceeded", "{result}");
        assert!(result["reason"].as_str().unwrap().contains("10 host calls"), "{result}");
    }
    let end = ev.last().unwrap();
    assert_eq!(end["status"], "exit");
    assert_eq!(end["exit_code"], 0);
    assert_eq!(end["calls"], 15);
    assert_eq!(f.verify().code, 0);
}

#[test]
fn calling_on_and_on_stops_the_run() {
    let f = fixture();
    let r = f.run("hog", &["calls", "5000"]);
    let end = stopped(&f, &r, 122, "call-limit");
    assert_eq!(end["reason"], "the tool kept calling after its limit of 10 host calls");
    // The limit, then 1000 refused calls of grace; the next one is refused,
    // recorded like the others, and ends the run. Every counted call is on
    // record.
    let ev = f.events();
    let refused = ev.iter().filter(|e| e["kind"] == "call" && e["decision"] == "limit").count();
    assert_eq!(refused, 1001);
    assert_eq!(end["calls"], 1011);
    assert_eq!(ev.iter().filter(|e| e["kind"] == "call").count(), 1011);
    assert_eq!(ev.iter().filter(|e| e["kind"] == "result").count(), 1011);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}

#[test]
fn a_tool_blocked_in_a_host_call_is_stopped_by_the_watchdog() {
    let f = fixture();
    let start = Instant::now();
    let mut child = f.command("hog", &[], &["sleep", "3600"]).spawn().unwrap();
    let ended = wait_for(Duration::from_secs(60), || child.try_wait().unwrap().is_some());
    if !ended {
        child.kill().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(ended, "the run was still blocked a minute later");
    // Not before its limit: the watchdog gives a blocked run its time.
    assert!(start.elapsed() >= Duration::from_secs(2), "stopped after {:?}", start.elapsed());
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let end = stopped(&f, &r, 124, "time-limit");
    assert_eq!(end["reason"], "the run exceeded its time limit of 2s while blocked in a host call");
    // The watchdog reports the calls counted so far (sleeping is not one).
    assert_eq!(end["calls"], 0);
    assert!(!r.stdout.contains("woke up"), "{}", r.stdout);
}

#[test]
fn task_id_and_intent_are_not_host_calls() {
    let f = fixture();
    let mut args = Vec::new();
    for i in 0..12 {
        args.extend(["id".to_owned(), "+".to_owned(), "intent".to_owned(), format!("step {i}"), "+".to_owned()]);
    }
    for _ in 0..11 {
        args.extend(["read".to_owned(), "src/a.txt".to_owned(), "+".to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = f.run("probe", &args);
    assert_eq!(r.code, 0, "{r:?}");
    // 24 id and intent calls first, yet the ten reads the limit allows work.
    let reads: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with(r#""read""#)).collect();
    assert_eq!(reads.len(), 11, "{}", r.stdout);
    for line in &reads[..10] {
        assert!(line.contains(": ok 2 bytes"), "{line}");
    }
    assert!(reads[10].contains(": limit-exceeded: "), "{}", reads[10]);
    let ev = f.events();
    assert_eq!(ev.iter().filter(|e| e["kind"] == "call").count(), 11);
    let end = ev.last().unwrap();
    assert_eq!(end["calls"], 11);
    assert_eq!(end["intent"], "step 11");
}

#[test]
fn a_tool_exiting_with_a_limit_code_is_not_a_limit_stop() {
    let f = fixture();
    let r = f.run("hog", &["exit", "124"]);
    // wasi:cli/exit carries only success or failure: any failure is 1.
    assert_eq!(r.code, 1, "{r:?}");
    assert!(!r.stderr.contains("sandbox: run stopped"), "{}", r.stderr);
    let end = f.events().pop().unwrap();
    assert_eq!(end["status"], "exit");
    assert_eq!(end["exit_code"], 1);
}
