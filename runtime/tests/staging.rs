//! `[approval] writes = "end-of-task"`: the tool's writes are staged (the
//! workspace does not change while it runs, but the tool reads its own
//! changes back), the whole task's changes are put to the approver once as
//! one diff, and applied together when approved or not at all. A run
//! killed in the middle of an apply is completed by the next run with the
//! same audit log. Each test drives the real binary on the `probe` guest
//! and checks the workspace (byte for byte) and the audit events.

mod common;
use common::*;

use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const GRANTS: &str = r#"
[fs]
read = ["src/**", "docs/**"]
write = ["src/**", "docs/**", "out/**"]
auto_approve = ["docs/**"]
deny = ["src/secret/**"]

[approval]
writes = "end-of-task"
timeout = "30s"
"#;

const OLD: &str = "pub fn f() {}\n";
const NEW: &str = "pub fn g() {}\n";
const PROMPT: &str = "approve? type y and Enter";
/// Bounds every wait on a run, so that a hang fails a test.
const PATIENCE: Duration = Duration::from_secs(60);

fn fixture(extra: &str) -> Fixture {
    let f = Fixture::new(&format!("{GRANTS}{extra}"));
    f.file("src/lib.rs", OLD)
        .file("src/old.rs", "old\n")
        .file("src/gone.rs", "gone\n")
        .file("src/secret/key.txt", "KEY\n")
        .file("docs/guide.md", "# Guide\n");
    f
}

/// The task every approval test runs: one change of each kind, on paths
/// that need approval.
fn the_task() -> Vec<&'static str> {
    vec![
        "write",
        "src/lib.rs",
        NEW,
        "+",
        "mkdir",
        "src/new",
        "+",
        "write",
        "src/new/mod.rs",
        "pub mod x;\n",
        "+",
        "remove",
        "src/gone.rs",
        "+",
        "rename",
        "src/old.rs",
        "src/moved.rs",
        "+",
        "append",
        "src/lib.rs",
        "// end\n",
    ]
}

/// The workspace after `the_task` is applied.
fn after_the_task(f: &Fixture) {
    assert_eq!(f.read("src/lib.rs").as_deref(), Some("pub fn g() {}\n// end\n"));
    assert_eq!(f.read("src/new/mod.rs").as_deref(), Some("pub mod x;\n"));
    assert_eq!(f.read("src/moved.rs").as_deref(), Some("old\n"));
    assert!(!f.ws("src/gone.rs").exists());
    assert!(!f.ws("src/old.rs").exists());
    assert_eq!(f.read("docs/guide.md").as_deref(), Some("# Guide\n"));
    assert_eq!(f.read("src/secret/key.txt").as_deref(), Some("KEY\n"));
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `args` with `+` between the ops given as slices.
fn ops(list: &[&[&str]]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, op) in list.iter().enumerate() {
        if i > 0 {
            out.push("+".to_owned());
        }
        out.extend(op.iter().map(|s| s.to_string()));
    }
    out
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The events of one task.
fn of_task(events: &[Value], task: &str) -> Vec<Value> {
    events.iter().filter(|e| e["task"] == task).cloned().collect()
}

/// The `fs.changes` events and the apply's step results of a task, in order.
#[allow(clippy::unwrap_used)] // a helper that cannot do its part fails the test
fn settle_events(events: &[Value]) -> Vec<Value> {
    let start = events
        .iter()
        .position(|e| e["kind"] == "call" && e["capability"] == "fs.changes")
        .unwrap_or_else(|| panic!("no fs.changes call in {events:#?}"));
    events[start..].iter().filter(|e| e["kind"] != "task-end").cloned().collect()
}

/// (capability, target, outcome, reason) of the applied steps.
fn steps(settle: &[Value]) -> Vec<(String, String, String)> {
    settle
        .iter()
        .filter(|e| e["kind"] == "result" && e["capability"] != "fs.changes")
        .map(|e| {
            (
                e["capability"].as_str().unwrap_or("").to_owned(),
                e["target"].as_str().unwrap_or("").to_owned(),
                e["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn step(cap: &str, target: &str, outcome: &str) -> (String, String, String) {
    (cap.to_owned(), target.to_owned(), outcome.to_owned())
}

/// The order `the_task` is applied in: directories first, files by path,
/// removals last.
fn the_task_steps() -> Vec<(String, String, String)> {
    vec![
        step("fs.create-dir", "src/new", "applied"),
        step("fs.write", "src/lib.rs", "applied"),
        step("fs.write", "src/moved.rs", "applied"),
        step("fs.write", "src/new/mod.rs", "applied"),
        step("fs.remove", "src/gone.rs", "applied"),
        step("fs.remove", "src/old.rs", "applied"),
    ]
}

/// The staging directory beside the fixture's audit log.
fn staging_dir(f: &Fixture) -> std::path::PathBuf {
    f.path("audit.jsonl.staging")
}

/// Journals (task directories) left in the staging directory.
fn journals(f: &Fixture) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(staging_dir(f)) else { return Vec::new() };
    dir.filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn staged_writes_stay_out_of_the_workspace_while_the_tool_reads_them_back() {
    let f = fixture("");
    let before = tree_digest(&f.path("ws"));
    let mut args = the_task();
    args.extend([
        "+",
        "read",
        "src/lib.rs",
        "+",
        "read",
        "src/moved.rs",
        "+",
        "read",
        "src/old.rs",
        "+",
        "read",
        "src/gone.rs",
        "+",
        "list",
        "src",
        "+",
        "list",
        "src/new",
        "+",
        "read",
        "src/new/mod.rs",
        "+",
        "stat",
        "src/new",
        "+",
        "stat",
        "src/moved.rs",
        "+",
        "sleep",
        "2500",
    ]);
    let mut child = f.command("probe", &["--approve", "deny"], &args).spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let mut s = seen.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        })
    };
    // The tool has staged everything and is asleep: the workspace is as
    // it was, byte for byte.
    let marker = format!("{}: ok", label(&["stat", "src/moved.rs"]));
    let asleep = wait_for(PATIENCE, || seen.lock().unwrap().contains(&marker));
    assert!(asleep, "the tool did not reach its sleep:\n{}", seen.lock().unwrap());
    assert_eq!(tree_digest(&f.path("ws")), before, "a staged change reached the workspace during the run");
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let stdout = seen.lock().unwrap().clone();
    let run = Run { code: status.code().unwrap_or(-1), stdout, stderr: String::new() };

    // Every change returned ok to the tool.
    assert_eq!(run.line(&label(&["write", "src/lib.rs", NEW])), "ok written");
    assert_eq!(run.line(&label(&["mkdir", "src/new"])), "ok created");
    assert_eq!(run.line(&label(&["remove", "src/gone.rs"])), "ok removed");
    assert_eq!(run.line(&label(&["rename", "src/old.rs", "src/moved.rs"])), "ok renamed");
    assert_eq!(run.line(&label(&["append", "src/lib.rs", "// end\n"])), "ok appended");
    // The tool saw its own changes.
    assert_eq!(run.line(&label(&["read", "src/lib.rs"])), r#"ok 21 bytes "pub fn g() {}\n// end\n""#);
    assert_eq!(run.line(&label(&["read", "src/moved.rs"])), r#"ok 4 bytes "old\n""#);
    assert!(run.line(&label(&["read", "src/old.rs"])).starts_with("not-found: "), "{}", run.stdout);
    assert!(run.line(&label(&["read", "src/gone.rs"])).starts_with("not-found: "), "{}", run.stdout);
    assert_eq!(
        run.line(&label(&["list", "src"])),
        "ok [lib.rs:Kind::File:21, moved.rs:Kind::File:4, new:Kind::Dir:0]",
        "removed files gone, new ones listed, the denied directory hidden"
    );
    assert_eq!(run.line(&label(&["list", "src/new"])), "ok [mod.rs:Kind::File:11]");
    assert_eq!(run.line(&label(&["read", "src/new/mod.rs"])), r#"ok 11 bytes "pub mod x;\n""#);
    assert_eq!(run.line(&label(&["stat", "src/new"])), "ok Kind::Dir 0 bytes");
    assert_eq!(run.line(&label(&["stat", "src/moved.rs"])), "ok Kind::File 4 bytes");

    // No approver: nothing changed, exit 3.
    assert_eq!(run.code, 3, "{}", run.stdout);
    assert_eq!(tree_digest(&f.path("ws")), before);
    assert!(journals(&f).is_empty());
    assert_eq!(f.verify().code, 0);
}

#[test]
fn each_staged_call_is_recorded_with_the_manifests_decision_and_no_approval() {
    let f = fixture("");
    let r = f.run_with("probe", &["--approve", "deny"], &the_task());
    assert_eq!(r.code, 3, "{r:?}");
    let ev = f.events();
    let calls: Vec<&Value> = ev
        .iter()
        .filter(|e| {
            e["kind"] == "call"
                && e["capability"].as_str().unwrap().starts_with("fs.")
                && e["capability"] != "fs.changes"
        })
        .collect();
    assert_eq!(calls.len(), 6, "{calls:#?}");
    for call in &calls {
        assert_eq!(call["decision"], "ask", "{call}");
        assert_eq!(call["rule"], "fs.write:src/**", "{call}");
        let seq = call["seq"].as_u64().unwrap() as usize;
        // No approval between the call and its result: it is staged.
        let result = &ev[seq + 1];
        assert_eq!(result["kind"], "result", "{result}");
        assert_eq!(result["capability"], call["capability"]);
        assert_eq!(result["outcome"], "staged", "{result}");
    }
    let write = calls.iter().find(|c| c["capability"] == "fs.write").unwrap();
    assert_eq!(write["content_sha256"], sha256(NEW.as_bytes()));
    assert_eq!(write["size"], NEW.len());
    // The only approval of the run is the one for the whole task.
    let approvals: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "approval").collect();
    assert_eq!(approvals.len(), 1, "{approvals:#?}");
    assert_eq!(approvals[0]["capability"], "fs.changes");
}

#[test]
fn a_rejected_diff_leaves_the_workspace_exactly_as_it_was() {
    let f = fixture("");
    let before = tree_digest(&f.path("ws"));
    let r = f.run_with("probe", &["--approve", "deny", "--task-id", "task-rej"], &the_task());
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(tree_digest(&f.path("ws")), before);
    assert!(journals(&f).is_empty(), "{:?}", journals(&f));
    let ev = of_task(&f.events(), "task-rej");
    let settle = settle_events(&ev);
    let kinds: Vec<&str> = settle.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["call", "approval", "result"], "{settle:#?}");
    let (call, approval, result) = (&settle[0], &settle[1], &settle[2]);
    assert_eq!(call["decision"], "ask");
    assert_eq!(call["rule"], "fs.write:src/**");
    assert_eq!(call["target"], "5 files, 1 directory");
    assert!(call["content_sha256"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(approval["content_sha256"], call["content_sha256"]);
    assert_eq!(approval["decision"], "rejected");
    assert_eq!(approval["approval"]["via"], "deny");
    assert_eq!(result["outcome"], "not-approved");
    assert!(result["reason"].as_str().unwrap().contains("not approved"), "{result}");
    let end = ev.last().unwrap();
    assert_eq!(end["kind"], "task-end");
    assert_eq!(end["status"], "changes-rejected");
    assert_eq!(end["exit_code"], 3);
    assert_eq!(f.verify().code, 0);
}

#[test]
fn refusals_are_not_staged_and_staged_paths_are_decided_like_any_other() {
    let f = fixture("");
    std::fs::create_dir(f.ws("out")).unwrap();
    let before = tree_digest(&f.path("ws"));
    let args = ops(&[
        &["write", "src/secret/key.txt", "stolen"],
        &["write", "../outside/x", "x"],
        &["write", "esc:src/\\x01", "x"],
        &["write", "out/report.txt", "written where it cannot be read"],
        &["read", "out/report.txt"],
        &["rename", "src/lib.rs", "src/secret/lib.rs"],
    ]);
    let r = f.run_with("probe", &["--approve", "deny"], &strs(&args));
    assert!(r.line(&label(&["write", "src/secret/key.txt", "stolen"])).starts_with("denied: "), "{r:?}");
    assert!(r.line(&label(&["write", "../outside/x", "x"])).starts_with("denied: "), "{r:?}");
    assert!(r.stdout.contains(": invalid: "), "{r:?}");
    assert_eq!(r.line(&label(&["write", "out/report.txt", "written where it cannot be read"])), "ok written");
    // Staged, but reading it back needs a read grant like any read.
    assert!(r.line(&label(&["read", "out/report.txt"])).starts_with("denied: "), "{r:?}");
    assert!(r.line(&label(&["rename", "src/lib.rs", "src/secret/lib.rs"])).starts_with("denied: "), "{r:?}");
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(tree_digest(&f.path("ws")), before);
    let ev = f.events();
    for (cap, decision, outcome) in [("fs.write", "deny", "denied"), ("fs.rename", "deny", "denied")] {
        let call = ev.iter().find(|e| e["kind"] == "call" && e["capability"] == cap).unwrap();
        assert_eq!(call["decision"], decision, "{call}");
        assert_eq!(result_of(&ev, call)["outcome"], outcome);
    }
    let invalid = ev.iter().find(|e| e["kind"] == "call" && e["decision"] == "invalid").unwrap();
    assert_eq!(result_of(&ev, invalid)["outcome"], "invalid");
    // Only the one permitted write is in the diff.
    let changes = ev.iter().find(|e| e["kind"] == "call" && e["capability"] == "fs.changes").unwrap();
    assert_eq!(changes["target"], "1 file");
}

#[test]
fn approved_at_the_terminal_every_change_is_applied_together() {
    let f = fixture("");
    let mut tty = Tty::spawn(&f, &["--approve", "tty", "--task-id", "task-ok"], &the_task());
    tty.wait_for_prompt();
    // While the reviewer looks at the diff, nothing has changed yet.
    assert_eq!(f.read("src/lib.rs").as_deref(), Some(OLD));
    assert!(f.ws("src/old.rs").exists());
    tty.type_keys("y\n");
    let (code, screen) = tty.finish();
    assert_eq!(code, 0, "{screen}");
    assert_eq!(screen.matches("sandbox: approval needed").count(), 1, "one approval for the task:\n{screen}");
    after_the_task(&f);
    assert!(journals(&f).is_empty(), "{:?}", journals(&f));

    // The reviewer saw one diff of the whole task.
    let diff = shown_diff(&screen);
    for part in [
        "--- current/src/lib.rs\n+++ proposed/src/lib.rs\n",
        "-pub fn f() {}\n+pub fn g() {}\n+// end\n",
        "--- /dev/null\n+++ proposed/src/new/mod.rs\n",
        "+pub mod x;\n",
        "--- /dev/null\n+++ proposed/src/moved.rs\n",
        "--- current/src/gone.rs\n+++ /dev/null\n",
        "-gone\n",
        "create-dir src/new/\n",
    ] {
        assert!(diff.contains(part), "the diff lacks {part:?}:\n{diff}");
    }
    let prompt = &screen[screen.find("sandbox: approval needed").unwrap()..];
    assert!(prompt.contains("| capability  fs.changes\n"), "{prompt}");
    assert!(prompt.contains("| target      5 files, 1 directory\n"), "{prompt}");
    assert!(prompt.contains("| rule        fs.write:src/**\n"), "{prompt}");

    // The log binds the approval to exactly that diff, then records each
    // step in order.
    let ev = of_task(&f.events(), "task-ok");
    let settle = settle_events(&ev);
    let (call, approval) = (&settle[0], &settle[1]);
    assert_eq!(call["decision"], "ask");
    assert_eq!(call["content_sha256"], sha256(diff.as_bytes()), "the recorded hash is not the diff shown");
    assert_eq!(call["size"], diff.len());
    assert_eq!(approval["kind"], "approval");
    assert_eq!(approval["decision"], "approved");
    assert_eq!(approval["content_sha256"], call["content_sha256"]);
    assert_eq!(approval["approval"]["by"], serde_json::json!(["tester"]));
    assert_eq!(steps(&settle), the_task_steps());
    let lib = settle.iter().find(|e| e["target"] == "src/lib.rs" && e["kind"] == "result").unwrap();
    assert_eq!(lib["content_sha256"], sha256(b"pub fn g() {}\n// end\n"));
    let last = settle.last().unwrap();
    assert_eq!((last["capability"].as_str(), last["outcome"].as_str()), (Some("fs.changes"), Some("ok")));
    let end = ev.last().unwrap();
    assert_eq!((end["status"].as_str(), end["exit_code"].as_i64()), (Some("exit"), Some(0)));
    assert_eq!(f.verify().code, 0);
}

#[test]
fn no_at_the_terminal_changes_nothing() {
    let f = fixture("");
    let before = tree_digest(&f.path("ws"));
    let mut tty = Tty::spawn(&f, &["--approve", "tty"], &the_task());
    tty.wait_for_prompt();
    tty.type_keys("n\n");
    let (code, screen) = tty.finish();
    assert_eq!(code, 3, "{screen}");
    assert_eq!(tree_digest(&f.path("ws")), before);
    let ev = f.events();
    let end = ev.last().unwrap();
    assert_eq!(end["status"], "changes-rejected");
    assert!(!ev.iter().any(|e| e["outcome"] == "applied"), "something was applied");
}

#[test]
fn a_target_changed_after_the_diff_was_made_refuses_the_whole_apply() {
    let f = fixture("");
    let mut tty = Tty::spawn(&f, &["--approve", "tty", "--task-id", "task-raced"], &the_task());
    tty.wait_for_prompt();
    // Someone edits a file the diff covers while the reviewer reads it.
    std::fs::write(f.ws("src/gone.rs"), "edited meanwhile\n").unwrap();
    let before = tree_digest(&f.path("ws"));
    tty.type_keys("y\n");
    let (code, screen) = tty.finish();
    assert_eq!(code, 3, "{screen}");
    assert_eq!(tree_digest(&f.path("ws")), before, "part of the changes was applied");
    assert!(journals(&f).is_empty(), "{:?}", journals(&f));
    let ev = of_task(&f.events(), "task-raced");
    let settle = settle_events(&ev);
    assert_eq!(settle[1]["decision"], "approved");
    assert!(steps(&settle).is_empty(), "{settle:#?}");
    let result = settle.last().unwrap();
    assert_eq!(result["outcome"], "not-approved");
    let reason = result["reason"].as_str().unwrap();
    assert!(reason.contains("the workspace changed after the diff was made"), "{reason}");
    assert!(reason.contains("src/gone.rs"), "{reason}");
    assert_eq!(ev.last().unwrap()["status"], "changes-rejected");
    assert_eq!(f.verify().code, 0);
}

#[test]
fn pre_approved_changes_are_applied_at_the_end_without_asking() {
    let f = fixture("");
    f.file("docs/old/a.md", "a\n").file("docs/old/deep/b.md", "b\n").file("docs/x", "x was a file\n");
    let args = ops(&[
        &["write", "docs/guide.md", "# Guide v2\n"],
        &["rename", "docs/old", "docs/new"],
        &["read", "docs/new/deep/b.md"],
        &["list", "docs/new"],
        &["remove", "docs/x"],
        &["mkdir", "docs/x"],
        &["write", "docs/x/inside.md", "now a directory\n"],
        &["write", "docs/tmp.md", "short-lived"],
        &["remove", "docs/tmp.md"],
    ]);
    let r = f.run_with("probe", &["--approve", "deny", "--task-id", "task-pre"], &strs(&args));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.line(&label(&["read", "docs/new/deep/b.md"])), r#"ok 2 bytes "b\n""#);
    assert_eq!(r.line(&label(&["list", "docs/new"])), "ok [a.md:Kind::File:2, deep:Kind::Dir:0]");
    assert_eq!(f.read("docs/guide.md").as_deref(), Some("# Guide v2\n"));
    assert_eq!(f.read("docs/new/a.md").as_deref(), Some("a\n"));
    assert_eq!(f.read("docs/new/deep/b.md").as_deref(), Some("b\n"));
    assert!(!f.path("ws/docs/old").exists());
    assert_eq!(f.read("docs/x/inside.md").as_deref(), Some("now a directory\n"));
    assert!(!f.ws("docs/tmp.md").exists());
    assert_eq!(f.read("src/lib.rs").as_deref(), Some(OLD));
    let ev = of_task(&f.events(), "task-pre");
    assert!(!ev.iter().any(|e| e["kind"] == "approval"), "nothing needed approval");
    let settle = settle_events(&ev);
    assert_eq!(settle[0]["decision"], "allow");
    assert_eq!(settle[0]["rule"], "fs.auto_approve:docs/**");
    assert_eq!(
        steps(&settle),
        vec![
            // The file in the way of the new directory goes first.
            step("fs.remove", "docs/x", "applied"),
            step("fs.create-dir", "docs/new", "applied"),
            step("fs.create-dir", "docs/x", "applied"),
            step("fs.create-dir", "docs/new/deep", "applied"),
            step("fs.write", "docs/guide.md", "applied"),
            step("fs.write", "docs/new/a.md", "applied"),
            step("fs.write", "docs/new/deep/b.md", "applied"),
            step("fs.write", "docs/x/inside.md", "applied"),
            step("fs.remove", "docs/old/deep/b.md", "applied"),
            step("fs.remove", "docs/old/a.md", "applied"),
            step("fs.remove", "docs/old/deep", "applied"),
            step("fs.remove", "docs/old", "applied"),
        ]
    );
    assert_eq!(f.verify().code, 0);
}

#[test]
fn staged_calls_that_cancel_out_ask_nothing_and_change_nothing() {
    let f = fixture("");
    let before = tree_digest(&f.path("ws"));
    let args = ops(&[&["write", "src/tmp.rs", "x"], &["remove", "src/tmp.rs"], &["write", "src/lib.rs", OLD]]);
    let r = f.run_with("probe", &["--approve", "deny"], &strs(&args));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(tree_digest(&f.path("ws")), before);
    assert!(!f.events().iter().any(|e| e["capability"] == "fs.changes"));
}

#[test]
fn a_run_stopped_by_a_limit_discards_its_staged_changes() {
    let f = fixture("\n[limits]\ncalls = 3\n");
    let before = tree_digest(&f.path("ws"));
    let args = ops(&[&["write", "docs/guide.md", "lost\n"], &["repeat", "1100", "stat", "docs"]]);
    let r = f.run_with("probe", &["--approve", "deny"], &strs(&args));
    assert_eq!(r.code, 122, "{r:?}");
    assert_eq!(tree_digest(&f.path("ws")), before);
    let ev = f.events();
    assert!(!ev.iter().any(|e| e["capability"] == "fs.changes"));
    let end = ev.last().unwrap();
    assert_eq!(end["status"], "call-limit");
    assert!(end["reason"].as_str().unwrap().contains("discarded"), "{end}");
}

#[test]
fn staged_bytes_are_limited_by_the_memory_limit() {
    let f = fixture("\n[limits]\nmemory = \"24 MiB\"\n");
    let args = ops(&[
        &["write-big", "docs/a.bin", "9000000"],
        &["write-big", "docs/b.bin", "9000000"],
        &["write-big", "docs/c.bin", "9000000"],
    ]);
    let r = f.run_with("probe", &["--approve", "deny"], &strs(&args));
    assert_eq!(r.line(&label(&["write-big", "docs/a.bin", "9000000"])), "ok 9000000 bytes written");
    assert_eq!(r.line(&label(&["write-big", "docs/b.bin", "9000000"])), "ok 9000000 bytes written");
    assert!(r.line(&label(&["write-big", "docs/c.bin", "9000000"])).starts_with("limit-exceeded: "), "{r:?}");
    assert_eq!(r.code, 0, "{r:?}");
    let ev = f.events();
    let refused = ev.iter().find(|e| e["kind"] == "call" && e["target"] == "docs/c.bin").unwrap();
    assert_eq!((refused["decision"].as_str(), refused["rule"].as_str()), (Some("limit"), Some("limits.memory")));
    // The two that fit were applied, shown by size and hash.
    assert_eq!(std::fs::metadata(f.ws("docs/a.bin")).unwrap().len(), 9_000_000);
    assert!(!f.ws("docs/c.bin").exists());
}

#[test]
fn an_audit_log_inside_the_workspace_is_refused_with_end_of_task() {
    let f = Fixture::new(&format!("{GRANTS}\n[audit]\npath = \"ws/audit.jsonl\"\n"));
    let r = f.run_with("probe", &["--approve", "deny"], &["id"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("end-of-task"), "{r:?}");
}

#[test]
fn a_run_killed_during_the_apply_is_completed_by_the_next_run() {
    let f = fixture("");
    f.file("docs/old.md", "old doc\n").file("docs/keep.md", "keep\n");
    let marker = f.path("paused");
    let args = ops(&[
        &["mkdir", "docs/new"],
        &["write", "docs/new/a.md", "A\n"],
        &["write", "docs/guide.md", "# Guide v2\n"],
        &["remove", "docs/old.md"],
        &["rename", "docs/keep.md", "docs/kept.md"],
    ]);
    let mut cmd = f.command("probe", &["--approve", "deny", "--task-id", "task-crash"], &strs(&args));
    cmd.env("SANDBOX_TEST_PAUSE_AFTER_APPLY", format!("2:{}", marker.display()));
    let mut child = cmd.spawn().unwrap();
    let paused = wait_for(PATIENCE, || marker.exists());
    if !paused {
        let _ = child.kill();
        panic!("the apply never paused: {:?}", child.wait_with_output().unwrap());
    }
    // Half applied: the directory and the first write, nothing else.
    assert!(f.ws("docs/new").is_dir());
    assert_eq!(f.read("docs/guide.md").as_deref(), Some("# Guide v2\n"));
    assert!(!f.ws("docs/new/a.md").exists());
    assert!(f.ws("docs/old.md").exists());
    assert!(!f.ws("docs/kept.md").exists());
    let pending = journals(&f);
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(staging_dir(&f).join(&pending[0]).join("plan").exists());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // The next run with the same audit log completes the changes first.
    let r = f.run_with("probe", &["--approve", "deny", "--task-id", "task-next"], &["id"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(f.read("docs/new/a.md").as_deref(), Some("A\n"));
    assert_eq!(f.read("docs/guide.md").as_deref(), Some("# Guide v2\n"));
    assert!(!f.ws("docs/old.md").exists());
    assert!(!f.ws("docs/keep.md").exists());
    assert_eq!(f.read("docs/kept.md").as_deref(), Some("keep\n"));
    assert!(journals(&f).is_empty(), "{:?}", journals(&f));
    let names: Vec<String> = std::fs::read_dir(f.path("ws/docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp")), "a temporary file was left: {names:?}");

    let ev = f.events();
    let crashed = of_task(&ev, "task-crash");
    let finding = crashed.iter().position(|e| e["kind"] == "finding").expect("no finding for the interrupted apply");
    assert!(crashed[finding]["reason"].as_str().unwrap().contains("task-next"), "{}", crashed[finding]);
    let recovered = &crashed[finding + 1..];
    let outcomes: Vec<(String, String, String)> = recovered
        .iter()
        .filter(|e| e["kind"] == "result" && e["capability"] != "fs.changes")
        .map(|e| {
            let how = if e["reason"].as_str().unwrap().contains("found done") { "found" } else { "completed" };
            (e["capability"].as_str().unwrap().to_owned(), e["target"].as_str().unwrap().to_owned(), how.to_owned())
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            step("fs.create-dir", "docs/new", "found"),
            step("fs.write", "docs/guide.md", "found"),
            step("fs.write", "docs/kept.md", "completed"),
            step("fs.write", "docs/new/a.md", "completed"),
            step("fs.remove", "docs/keep.md", "completed"),
            step("fs.remove", "docs/old.md", "completed"),
        ]
    );
    let done = recovered.iter().find(|e| e["capability"] == "fs.changes" && e["kind"] == "result").unwrap();
    assert_eq!(done["outcome"], "ok");
    let end = crashed.last().unwrap();
    assert_eq!((end["kind"].as_str(), end["status"].as_str()), (Some("task-end"), Some("changes-recovered")));
    // All of it comes before the next run's own task.
    let next_start = ev.iter().position(|e| e["task"] == "task-next" && e["kind"] == "task-start").unwrap();
    assert!(end["seq"].as_u64().unwrap() < ev[next_start]["seq"].as_u64().unwrap());
    assert_eq!(f.verify().code, 0);
}

/// The diff as shown at the terminal: the `| change:` block, unprefixed.
fn shown_diff(screen: &str) -> String {
    let start =
        screen.find("| change:\n").unwrap_or_else(|| panic!("no change block:\n{screen}")) + "| change:\n".len();
    let end = screen[start..].find("+-- approve?").unwrap_or_else(|| panic!("no prompt end:\n{screen}")) + start;
    screen[start..end]
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("|   ").unwrap_or_else(|| panic!("unexpected line {l:?}"))))
        .collect()
}

/// A `sandbox run` of `probe` whose controlling terminal is a
/// pseudo-terminal (as in `approvals.rs`).
struct Tty {
    child: Box<dyn Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    seen: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
    _master: Box<dyn MasterPty + Send>,
}

#[allow(clippy::unwrap_used)] // a helper that cannot do its part fails the test
impl Tty {
    fn spawn(f: &Fixture, opts: &[&str], args: &[&str]) -> Tty {
        let pair = native_pty_system().openpty(PtySize { rows: 60, cols: 200, ..PtySize::default() }).unwrap();
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_sandbox"));
        cmd.env_remove("SANDBOX_LOG");
        cmd.env("USER", "tester");
        cmd.cwd(f.dir.path());
        cmd.arg("run");
        cmd.arg(guest("probe"));
        cmd.arg("--manifest");
        cmd.arg(f.manifest());
        cmd.args(["--user", "alice"]);
        cmd.args(opts);
        cmd.arg("--");
        cmd.args(args);
        cmd.set_controlling_tty(true);
        let child = pair.slave.spawn_command(cmd).unwrap();
        drop(pair.slave);
        let mut from_master = pair.master.try_clone_reader().unwrap();
        let writer = pair.master.take_writer().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = from_master.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        Tty { child, writer, seen, reader: Some(reader), _master: pair.master }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).replace("\r\n", "\n")
    }

    fn wait_for_prompt(&mut self) {
        if !wait_for(PATIENCE, || self.text().contains(PROMPT)) {
            let _ = self.child.kill();
            panic!("no approval prompt at the terminal; it showed:\n{}", self.text());
        }
    }

    fn type_keys(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    fn finish(mut self) -> (i32, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > PATIENCE {
                let _ = self.child.kill();
                panic!("the run did not end; the terminal showed:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.reader.take().unwrap().join().unwrap();
        (status.exit_code() as i32, self.text())
    }
}
