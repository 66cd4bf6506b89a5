//! Issue 6, crash safety: an append is complete or absent. Writers are
//! killed (SIGKILL) at many points, by the test or by themselves halfway
//! through a write; every event a writer acknowledged (its `sync` returned)
//! survives, the next writer cuts off the torn tail and records a finding,
//! and the log verifies. A full disk, an unwritable file and an fsync error
//! refuse the call and stop the task (exit 126) with nothing done unlogged.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use sandbox_audit::{AuditLog, Event, Kind};
use serde_json::Value;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
/// Selects [`crash_writer`] in a child process: the log it writes.
const WRITER_VAR: &str = "SANDBOX_TEST_CRASH_WRITER_LOG";
/// The writer seam in debug builds of `sandbox-audit` (see its `log.rs`).
const FAULT_VAR: &str = "SANDBOX_TEST_AUDIT_FAULT";

/// Writes to `grants` are auto-approved; the log rotates every 8 KiB.
const MANIFEST: &str = r#"
name = "crash-tests"

[fs]
read = ["src/**", "out/**"]
write = ["out/**"]
auto_approve = ["out/**"]

[audit]
path = "audit.jsonl"
rotate = "8 KiB"
"#;

// --- A writer killed at many points -------------------------------------------

/// The writer process: appends batches of varied size to the log named by
/// [`WRITER_VAR`] until it is killed, printing `ACK <pid> <n>` once events
/// `w<pid>/0` .. `w<pid>/<n-1>` are durable (their `sync` returned Ok).
#[test]
#[ignore = "the writer process of the crash tests, started by them"]
fn crash_writer() {
    let Ok(path) = std::env::var(WRITER_VAR) else { return };
    let mut log = AuditLog::open(Path::new(&path), WAIT).unwrap();
    log.set_rotate(Some(16 << 10));
    let pid = std::process::id();
    let mut out = std::io::stdout().lock();
    let mut acked = 0u64;
    for batch in 0u64.. {
        let n = 1 + (batch * 7 % 40);
        let names: Vec<String> = (acked..acked + n).map(|k| format!("w{pid}/{k}")).collect();
        for name in &names {
            log.record(&Event {
                kind: Kind::Call,
                task: "crash",
                user: "writer",
                agent: "crash-writer",
                capability: Some("fs.write"),
                target: Some(name),
                ..Event::default()
            });
        }
        log.sync().unwrap();
        acked += n;
        writeln!(out, "ACK {pid} {acked}").unwrap();
        out.flush().unwrap();
    }
}

/// Starts the writer; its stdout lines arrive on the receiver.
fn start_writer(log: &Path, fault: Option<&str>) -> (Child, mpsc::Receiver<String>) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["crash_writer", "--exact", "--ignored", "--nocapture", "--test-threads=1", "--quiet"])
        .env(WRITER_VAR, log)
        .env_remove(FAULT_VAR)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(f) = fault {
        cmd.env(FAULT_VAR, f);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// `(pid, n)` of the writer's last `ACK` line.
fn last_ack(lines: &[String]) -> Option<(u32, u64)> {
    lines.iter().rev().find_map(|l| {
        let mut w = l.strip_prefix("ACK ")?.split(' ');
        Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
    })
}

/// Every `target` in the log, which must verify (segments included).
fn verified_targets(log: &Path) -> BTreeSet<String> {
    let mut targets = BTreeSet::new();
    sandbox_audit::verify_log(log, |_, line| {
        let v: Value = serde_json::from_slice(line).unwrap();
        if let Some(t) = v["target"].as_str() {
            targets.insert(t.to_owned());
        }
    })
    .unwrap_or_else(|e| panic!("the log does not verify: {e:?}"));
    targets
}

#[test]
fn a_writer_killed_at_many_points_loses_no_acknowledged_event() {
    const ITERATIONS: u64 = 48;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let (mut torn, mut self_killed, mut acked_total) = (0, 0, 0);
    for it in 0..ITERATIONS {
        // Every third writer kills itself halfway through its N-th write;
        // the others are killed by the test after a stepped delay.
        let fault = (it % 3 == 2).then(|| format!("write@{}=crash", 2 + it % 13));
        let (mut child, rx) = start_writer(&log, fault.as_deref());
        let mut lines = Vec::new();
        // The first acknowledgement: the writer is appending.
        lines.extend(rx.recv_timeout(Duration::from_secs(60)).ok());
        if fault.is_none() {
            std::thread::sleep(Duration::from_micros(it * 7919 % 40_000));
            child.kill().unwrap();
        }
        let status = child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "killed: {status:?}");
        lines.extend(rx.iter());
        let (pid, acked) = last_ack(&lines).unwrap_or((child.id(), 0));
        assert_eq!(pid, child.id());
        acked_total += acked;

        // The next writer cuts a torn tail off, and records it first.
        let mut next = AuditLog::open(&log, WAIT).unwrap();
        let repairs = next.repairs().to_vec();
        assert!(repairs.len() <= 1, "{repairs:?}");
        if fault.is_some() {
            self_killed += 1;
            assert_eq!(repairs.len(), 1, "iteration {it}: a write killed halfway leaves a torn line");
        }
        let before = next.head().0;
        next.sync().unwrap();
        if let Some(r) = repairs.first() {
            torn += 1;
            assert_eq!(next.head().0, before + 1, "one finding for the cut tail");
            let last: Value = sandbox_audit::events(&log).unwrap().last().unwrap().unwrap();
            assert_eq!(last["kind"], "finding");
            assert_eq!(last["rule"], "audit.torn-tail");
            assert_eq!(last["size"], r.bytes);
            assert_eq!(last["content_sha256"], r.sha256.as_str());
        }
        drop(next);
        let targets = verified_targets(&log);
        for k in 0..acked {
            assert!(targets.contains(&format!("w{pid}/{k}")), "iteration {it}: acknowledged w{pid}/{k} was lost");
        }
    }
    let segments = sandbox_audit::read::segments(&log).unwrap().len();
    eprintln!(
        "{ITERATIONS} writers killed ({self_killed} by themselves mid-write); {acked_total} events acknowledged, all present; {torn} torn tails cut; {segments} segments"
    );
    assert!(segments > 1, "the writers rotated the log");
}

// --- A real run killed at many points -----------------------------------------

#[test]
fn a_run_killed_at_many_points_leaves_a_log_that_verifies_with_every_write_on_record() {
    const ITERATIONS: u64 = 16;
    const FILES: usize = 120;
    let f = Fixture::new(MANIFEST);
    f.file("src/a.txt", "a\n");
    std::fs::create_dir_all(f.ws("out")).unwrap();
    for it in 0..ITERATIONS {
        let mut args: Vec<String> = Vec::new();
        for k in 0..FILES {
            if k > 0 {
                args.push("+".into());
            }
            args.extend(["write".into(), format!("out/{it}-{k}"), format!("data {k}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = f.command("probe", &["--task-id", &format!("killed-{it}")], &args).spawn().unwrap();
        // Once the tool is writing, kill the runtime after a stepped delay.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        assert!(first.contains("written"), "{first:?}");
        std::thread::sleep(Duration::from_micros(it * 6151 % 50_000));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // The next run repairs whatever tail the last kill left, and runs.
    let r = f.run_with("probe", &["--task-id", "after"], &["read", "src/a.txt"]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = f.verify();
    assert_eq!(v.code, 0, "{v:?}");

    let mut events = Vec::new();
    sandbox_audit::verify_log(&f.audit(), |_, line| events.push(serde_json::from_slice::<Value>(line).unwrap()))
        .unwrap();
    let called: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["kind"] == "call" && e["capability"] == "fs.write")
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    let (mut written, mut temporary) = (0, 0);
    for entry in std::fs::read_dir(f.ws("out")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        // A write killed between its temporary file and the rename leaves
        // `.NAME.sandbox-PID-N.tmp` behind; its call is on record too.
        let target = match name.strip_prefix('.').and_then(|n| n.split_once(".sandbox-")) {
            Some((target, _)) if name.ends_with(".tmp") => {
                temporary += 1;
                target.to_owned()
            }
            _ => {
                written += 1;
                name
            }
        };
        assert!(
            called.contains(format!("out/{target}").as_str()),
            "out/{target} was written without its call on record"
        );
    }
    let torn = events.iter().filter(|e| e["rule"] == "audit.torn-tail").count();
    for (i, e) in events.iter().enumerate() {
        if e["rule"] == "audit.torn-tail" {
            // Recorded by the run that found it, before its task-start.
            assert_eq!(events[i + 1]["kind"], "task-start", "{e}");
            assert_eq!(events[i + 1]["task"], e["task"]);
        }
    }
    let segments = sandbox_audit::read::segments(&f.audit()).unwrap().len();
    eprintln!(
        "{ITERATIONS} runs killed: {written} files written ({temporary} temporary files left), each with its call on record; {} events; {torn} torn tails cut; {segments} segments",
        events.len()
    );
    assert!(written > 0 && written < ITERATIONS as usize * FILES, "the runs were stopped midway: {written}");
    assert!(segments > 0, "the log rotated");
}

#[test]
fn a_torn_tail_is_cut_by_the_next_run_and_recorded_before_its_task_start() {
    let f = Fixture::new(MANIFEST);
    f.file("src/a.txt", "a\n");
    std::fs::create_dir_all(f.ws("out")).unwrap();
    assert_eq!(f.run("probe", &["read", "src/a.txt"]).code, 0);
    let intact = std::fs::read(f.audit()).unwrap();
    let n = intact.iter().filter(|b| **b == b'\n').count() as u64;
    let mut torn = intact.clone();
    torn.extend_from_slice(b"{\"v\":1,\"seq\":");
    torn.extend_from_slice(n.to_string().as_bytes());
    torn.extend_from_slice(b",\"ts\":\"2026-");
    std::fs::write(f.audit(), &torn).unwrap();
    assert_ne!(f.verify().code, 0, "a torn tail does not verify");

    let r = f.run_with("probe", &["--task-id", "next"], &["write", "out/o.txt", "x"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(f.read("out/o.txt").unwrap(), "x");
    let after = std::fs::read(f.audit()).unwrap();
    assert!(after.starts_with(&intact), "only the torn piece was removed");
    let ev = f.events();
    let finding = &ev[n as usize];
    let piece = &torn[intact.len()..];
    assert_eq!(finding["kind"], "finding");
    assert_eq!(finding["rule"], "audit.torn-tail");
    assert_eq!(finding["task"], "next");
    assert_eq!(finding["user"], "alice");
    assert_eq!(finding["size"], piece.len());
    assert_eq!(finding["content_sha256"], format!("sha256:{}", sha256_hex(piece)));
    assert!(finding["reason"].as_str().unwrap().contains("incomplete"), "{finding}");
    assert_eq!(ev[n as usize + 1]["kind"], "task-start");
    assert_eq!(f.verify().code, 0);

    // Two bad lines are not a torn append: refused, left alone.
    let mut bad = std::fs::read(f.audit()).unwrap();
    bad.extend_from_slice(b"not an event\n{\"v\":1,");
    std::fs::write(f.audit(), &bad).unwrap();
    let r = f.run("probe", &["write", "out/o.txt", "y"]);
    assert_eq!(r.code, 126, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains("neither is the line before it"), "{r:?}");
    assert_eq!(std::fs::read(f.audit()).unwrap(), bad, "nothing was cut");
    assert_eq!(f.read("out/o.txt").unwrap(), "x");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

// --- Faults -----------------------------------------------------------------

/// Three writes; the run is to be stopped after the first.
const THREE_WRITES: [&str; 11] = ["write", "out/a", "1", "+", "write", "out/b", "2", "+", "write", "out/c", "3"];

/// Every file under `out/` has its `call` and `ok` result on record.
fn assert_nothing_unlogged(f: &Fixture, ev: &[Value]) {
    for entry in std::fs::read_dir(f.ws("out")).unwrap() {
        let target = format!("out/{}", entry.unwrap().file_name().into_string().unwrap());
        let call = ev.iter().find(|e| e["kind"] == "call" && e["target"] == target.as_str());
        let call = call.unwrap_or_else(|| panic!("{target} was written without its call on record"));
        assert_eq!(result_of(ev, call)["outcome"], "ok", "{target}");
    }
}

fn faulty_run(f: &Fixture, fault: &str) -> Run {
    let mut cmd = f.command("probe", &["--task-id", "faulty"], &THREE_WRITES);
    cmd.env(FAULT_VAR, fault);
    Run::from_output(cmd.output().unwrap())
}

#[test]
fn a_failed_write_or_fsync_refuses_the_call_and_stops_the_task() {
    // The run's writes to the log: 1 task-start; 2 the first call (synced
    // before its effect); 3 its result (written before the tool's output
    // line leaves); 4 the second call. Syncs: 1 task-start, 2 and 3 before
    // each effect.
    for (fault, what) in [
        ("write@4=enospc", "cannot write it: no space left on device"),
        ("write@4=edquot", "cannot write it: disk quota exceeded"),
        ("sync@3=eio", "cannot sync it: input/output error"),
        ("write@4=erofs", "cannot write it: read-only file system"),
    ] {
        let f = Fixture::new(MANIFEST);
        std::fs::create_dir_all(f.ws("out")).unwrap();
        let r = faulty_run(&f, fault);
        assert_eq!(r.code, 126, "{fault}: {r:?}");
        assert!(r.stderr.contains(what), "{fault}: {r:?}");
        assert_eq!(f.read("out/a").as_deref(), Some("1"), "{fault}: the first write happened");
        assert_eq!((f.read("out/b"), f.read("out/c")), (None, None), "{fault}: the task stopped");
        assert_eq!(f.verify().code, 0, "{fault}");
        let ev = f.events();
        assert_nothing_unlogged(&f, &ev);
        // The fault passed: task-end could still be written, and says why.
        let end = ev.last().unwrap();
        assert_eq!(end["kind"], "task-end", "{fault}: {end}");
        assert_eq!(end["status"], "audit-failure", "{end}");
        assert_eq!(end["exit_code"], 126);
        assert!(end["reason"].as_str().unwrap().contains(what), "{end}");
    }
}

#[test]
fn a_log_that_stays_unwritable_stops_the_task_and_keeps_what_was_written_whole() {
    for fault in ["write@4+=enospc", "write@4+=eio", "sync@3+=eio"] {
        let f = Fixture::new(MANIFEST);
        std::fs::create_dir_all(f.ws("out")).unwrap();
        let r = faulty_run(&f, fault);
        assert_eq!(r.code, 126, "{fault}: {r:?}");
        assert!(r.stderr.contains("audit log"), "{fault}: {r:?}");
        assert_eq!((f.read("out/b"), f.read("out/c")), (None, None), "{fault}: the task stopped");
        let log = std::fs::read(f.audit()).unwrap();
        assert!(log.ends_with(b"\n"), "{fault}: no torn line");
        assert_eq!(f.verify().code, 0, "{fault}");
        let ev = f.events();
        assert_nothing_unlogged(&f, &ev);
        if fault.starts_with("write") {
            assert!(ev.iter().all(|e| e["kind"] != "task-end"), "{fault}: task-end could not be written");
        }
    }
}

/// A guard that makes a file immutable (`chattr +i`) and mutable again
/// when dropped.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Option<Immutable> {
        let ok = Command::new("chattr").arg("+i").arg(path).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
        ok.then(|| Immutable(path.to_owned()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn a_log_file_made_unwritable_mid_run_stops_the_task() {
    let f = Fixture::new(MANIFEST);
    std::fs::create_dir_all(f.ws("out")).unwrap();
    assert_eq!(f.run("probe", &["write", "out/first", "0"]).code, 0);
    let args = ["write", "out/a", "1", "+", "sleep", "1500", "+", "write", "out/b", "2"];
    let child = f.command("probe", &["--task-id", "frozen"], &args).spawn().unwrap();
    assert!(wait_for(Duration::from_secs(60), || f.read("out/a").is_some()), "the first write happened");
    let Some(guard) = Immutable::set(&f.audit()) else {
        let _ = child.wait_with_output();
        eprintln!("skipped: `chattr +i` is not available on this file system");
        return;
    };
    let r = Run::from_output(child.wait_with_output().unwrap());
    // A new run cannot even open it.
    let refused = f.run("probe", &["write", "out/c", "3"]);
    drop(guard);
    assert_eq!(r.code, 126, "{r:?}");
    assert!(r.stderr.contains("operation not permitted"), "{r:?}");
    assert_eq!(f.read("out/b"), None, "the task stopped");
    assert_eq!(refused.code, 126, "{refused:?}");
    assert!(refused.stderr.contains("cannot open it"), "{refused:?}");
    assert_eq!(refused.stdout, "", "the tool never ran");
    assert_eq!(f.read("out/c"), None);
    assert_eq!(f.verify().code, 0);
    assert_nothing_unlogged(&f, &f.events());
}

/// Runs `script` (sh, with `args` as `$1`...) in a private mount namespace,
/// where it may mount; `None` when this machine cannot make one.
fn in_mount_namespace(script: &str, args: &[&OsStr]) -> Option<std::process::Output> {
    let probe = Command::new("unshare").args(["-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return None;
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", script, "sh"]).args(args).env_remove("SANDBOX_LOG").env("USER", "tester");
    Some(cmd.stdin(Stdio::null()).output().unwrap())
}

#[test]
fn a_full_file_system_refuses_the_call_and_leaves_a_log_that_verifies() {
    let f = Fixture::new(&MANIFEST.replace("path = \"audit.jsonl\"", "path = \"disk/audit.jsonl\""));
    f.file("src/a.txt", "a\n");
    std::fs::create_dir_all(f.ws("out")).unwrap();
    let disk = f.path("disk");
    std::fs::create_dir(&disk).unwrap();
    // Writes (each on record before it happens) fill a 64 KiB tmpfs
    // holding the log; the last write never runs.
    let args = ["repeat", "2000", "write", "out/fill", "x", "+", "write", "out/o.txt", "pwned"];
    let cmd = f.command("probe", &["--task-id", "full"], &args);
    // The tmpfs lives only in the namespace: copy what is on it out.
    let script = r#"
        disk="$1"; copy="$2"; shift 2
        mount -t tmpfs -o size=64k tmpfs "$disk" || exit 99
        "$@" > "$copy.stdout" 2> "$copy.stderr"
        code=$?
        ls "$disk" > "$copy.files"
        cat "$disk"/audit.jsonl.* "$disk/audit.jsonl" > "$copy" 2>/dev/null
        exit $code
    "#;
    let copy = f.path("copy.jsonl");
    let mut all: Vec<&OsStr> = vec![disk.as_os_str(), copy.as_os_str(), cmd.get_program()];
    all.extend(cmd.get_args());
    let Some(out) = in_mount_namespace(script, &all) else {
        eprintln!("skipped: cannot mount a tmpfs in a private mount namespace here (needs root and unshare)");
        return;
    };
    let stderr = std::fs::read_to_string(f.path("copy.jsonl.stderr")).unwrap();
    assert_eq!(out.status.code(), Some(126), "{out:?} {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no space left on device"), "{stderr}");
    assert_eq!(f.read("out/o.txt"), None, "the write never happened");
    // The segments and the live file, joined in order, are the whole chain.
    let files = std::fs::read_to_string(f.path("copy.jsonl.files")).unwrap();
    let log = std::fs::read(&copy).unwrap();
    assert!(log.ends_with(b"\n"), "no torn line left: {files}");
    assert_eq!(verify(&copy).code, 0, "{files}");
    let ev = events(&copy);
    assert!(ev.len() > 50, "the writes filled the disk: {} events", ev.len());
    assert!(ev.iter().all(|e| e["target"] != "out/o.txt"), "the last write was never decided");
    assert_eq!(f.read("out/fill").as_deref(), Some("x"));
    assert_nothing_unlogged(&f, &ev);
    eprintln!(
        "{} events fitted on the 64 KiB disk (the last: {}), in: {}",
        ev.len(),
        ev.last().unwrap()["kind"],
        files.split_whitespace().collect::<Vec<_>>().join(" ")
    );
}
