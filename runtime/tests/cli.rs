//! The command line (spec/cli.md): `policy check` and `policy explain` on
//! real manifests, `run` refusing to start with one clear line (and, once the
//! audit path is known, on record), usage errors, the labels every event
//! carries, the tool's exit code and `audit verify`.

// `allow-unwrap-in-tests` covers #[test] functions only, not the helpers
// here and in `common`.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const GRANTS: &str = r#"
name = "cli-test"
description = "grants for the command-line tests"

[fs]
read = ["src/**", "docs/*.md"]
write = ["src/app/**", "out/**"]
auto_approve = ["out/**"]
deny = ["**/.env", "src/secret/**"]

[approval]
via = "deny"
timeout = "5s"

[limits]
memory = "64 MiB"
time = "10s"
calls = 50
output = "4 KiB"
"#;

fn fixture() -> Fixture {
    let f = Fixture::new(GRANTS);
    f.file("src/main.rs", "fn main() {}\n");
    f
}

/// Runs a prepared command with no stdin.
fn output(mut c: Command) -> Run {
    let out = c.stdin(Stdio::null()).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `sandbox ARGS...`
fn sandbox_with(args: &[&str]) -> Run {
    let mut c = sandbox();
    c.args(args);
    output(c)
}

/// `sandbox policy check FILE`
fn check(file: &Path) -> Run {
    let mut c = sandbox();
    c.args(["policy", "check"]).arg(file);
    output(c)
}

/// `sandbox policy explain MANIFEST CAP TARGET`
fn explain(f: &Fixture, capability: &str, target: &str) -> Run {
    let mut c = sandbox();
    c.args(["policy", "explain"]).arg(f.manifest()).args([capability, target]);
    output(c)
}

/// `sandbox run COMPONENT --manifest M OPTS -- ARGS` (no `--user`, unlike
/// the harness, so the tests can set or omit it).
fn run_component(f: &Fixture, component: &Path, opts: &[&str], args: &[&str]) -> Run {
    let mut c = sandbox();
    c.arg("run").arg(component).arg("--manifest").arg(f.manifest()).args(opts).arg("--").args(args);
    output(c)
}

/// Asserts exit 2, nothing on stdout and exactly `sandbox: error: MESSAGE`
/// on stderr.
fn assert_one_line_error(r: &Run, message: &str) {
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(r.stderr, format!("sandbox: error: {message}\n"), "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");
}

/// The one stderr line without its `sandbox: error: ` prefix; asserts exit
/// 2, one line and no stdout.
fn error_line(r: &Run) -> &str {
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "not one line: {r:?}");
    r.stderr.trim_end_matches('\n').strip_prefix("sandbox: error: ").unwrap_or_else(|| panic!("{r:?}"))
}

/// A refused start is on record: `task-start` then `task-end` with status
/// `refused`, exit code 2 and `reason`, and the log verifies.
fn assert_refusal_recorded(f: &Fixture, reason: &str) {
    let ev = f.events();
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(ev[0]["kind"], "task-start");
    assert_eq!(ev[1]["kind"], "task-end");
    assert_eq!(ev[1]["status"], "refused");
    assert_eq!(ev[1]["exit_code"], 2);
    assert_eq!(ev[1]["reason"], reason);
    assert_eq!(ev[1]["calls"], 0);
    assert_eq!(ev[0]["task"], ev[1]["task"]);
    let v = f.verify();
    assert_eq!(v.code, 0, "{v:?}");
}

// ---------------------------------------------------------------- policy check

#[test]
fn every_example_policy_checks() {
    let dir = repo().join("policies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no example manifests (*.toml)", dir.display());
    for file in files {
        let r = check(&file);
        assert_eq!(r.code, 0, "{}: {r:?}", file.display());
        assert!(r.stdout.starts_with("ok:"), "{}: {r:?}", file.display());
        assert!(r.stderr.is_empty(), "{}: {r:?}", file.display());
    }
}

#[test]
fn policy_check_prints_the_compiled_grants() {
    let f = fixture();
    let r = check(&f.manifest());
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    let has = |want: &str| assert!(lines.contains(&want), "no line {want:?} in:\n{}", r.stdout);
    let hash = hex::encode(Sha256::digest(std::fs::read(f.manifest()).unwrap()));
    assert_eq!(lines[0], format!("ok: {} is a valid version 1 manifest", f.manifest().display()));
    has("name        cli-test");
    has("description grants for the command-line tests");
    has(&format!("policy      sha256:{hash}"));
    has(&format!("workspace   {}", f.path("ws").display()));
    has(&format!("audit       {}", f.audit().display()));
    has("approval    via deny; timeout 5s");
    has("limits      memory 64.0 MiB  time 10s  calls 50  output 4.0 KiB");
    has("fs.read         src/**  docs/*.md");
    has("fs.write        src/app/**  out/**");
    has("fs.auto_approve out/**");
    has("fs.deny         **/.env  src/secret/**");
    has("http.allow      (none: every request is denied)");
    has("process.allow   (none: every command is denied)");
    let builtin = lines.iter().find(|l| l.starts_with("built-in    writes are always refused on:")).unwrap();
    for protected in ["**/.git/**", "**/.husky/**", "**/.envrc", "**/.vscode/**", "**/.bashrc", "**/.zshrc"] {
        assert!(builtin.split_whitespace().any(|w| w == protected), "{protected} missing: {builtin}");
    }
    assert!(r.stdout.contains("the manifest, the audit log and every file it owns are untouchable"), "{}", r.stdout);
    assert!(r.stderr.is_empty(), "{r:?}");
}

#[test]
fn policy_check_shows_the_defaults_of_an_empty_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tool.toml");
    std::fs::write(&file, "version = 1\n").unwrap();
    let r = check(&file);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    let has = |want: &str| assert!(lines.contains(&want), "no line {want:?} in:\n{}", r.stdout);
    has("name        tool");
    has(&format!("workspace   {}", dir.path().display()));
    has(&format!("audit       {}", dir.path().join("audit.jsonl").display()));
    has("approval    via tty with a terminal, else deny (default); timeout 1m");
    has("limits      memory 256.0 MiB  time 1m  calls 100000  output 16.0 MiB");
    has("fs.read         (none)");
    has("fs.write        (none)");
    has("fs.auto_approve (none)");
    has("fs.deny         (none)");
}

#[test]
fn policy_check_never_prints_raw_control_characters() {
    // A manifest may come from the repository under review; its text must
    // not reach the reviewer's terminal as escape sequences. Refusing the
    // description (like `name`) or showing it inert are both fine.
    let f = Fixture::new("description = \"fix\\u001b[2J\\u001b]0;pwned\\u0007 the bug\"\n");
    let r = check(&f.manifest());
    match r.code {
        0 => assert!(!r.stdout.contains(['\u{1b}', '\u{7}']), "raw control characters in: {:?}", r.stdout),
        _ => assert!(error_line(&r).contains("key `description`"), "{r:?}"),
    }
}

#[test]
fn policy_check_on_a_missing_file_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nope.toml");
    let r = check(&file);
    assert_one_line_error(&r, &format!("{}: cannot read the manifest: no such file or directory", file.display()));
}

// -------------------------------------------------------------- policy explain

#[test]
fn explain_allows_a_granted_read_and_names_the_rule() {
    let f = fixture();
    let r = explain(&f, "fs.read", "src/main.rs");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.lines().next().unwrap(), "allow: fs.read `src/main.rs` (rule fs.read:src/**)");
    // A spelling of the same path is decided on its normal form.
    let r = explain(&f, "fs.read", "./src//app/../main.rs");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.lines().next().unwrap(), "allow: fs.read `src/main.rs` (rule fs.read:src/**)");
}

#[test]
fn explain_says_ask_for_a_write_that_needs_approval() {
    let f = fixture();
    let r = explain(&f, "fs.write", "src/app/lib.rs");
    assert_eq!(r.code, 0, "{r:?}");
    let first = r.stdout.lines().next().unwrap();
    assert!(first.starts_with("ask"), "{first}");
    assert!(first.ends_with("fs.write `src/app/lib.rs` (rule fs.write:src/app/**)"), "{first}");
    // Pre-approved by auto_approve: allowed without asking.
    let r = explain(&f, "fs.write", "out/report.txt");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.lines().next().unwrap(), "allow: fs.write `out/report.txt` (rule fs.auto_approve:out/**)");
}

#[test]
fn explain_denies_with_the_deciding_rule() {
    let f = fixture();
    for (cap, target, line) in [
        ("fs.read", "src/.env", "deny: fs.read `src/.env` (rule fs.deny:**/.env)"),
        ("fs.read", "src/secret/key.txt", "deny: fs.read `src/secret/key.txt` (rule fs.deny:src/secret/**)"),
        ("fs.read", "notes.txt", "deny: fs.read `notes.txt` (rule default)"),
        // write does not imply read, read does not imply write
        ("fs.write", "src/main.rs", "deny: fs.write `src/main.rs` (rule default)"),
        ("fs.remove", "docs/a.md", "deny: fs.remove `docs/a.md` (rule default)"),
    ] {
        let r = explain(&f, cap, target);
        assert_eq!(r.code, 1, "{cap} {target}: {r:?}");
        assert_eq!(r.stdout.trim_end(), line, "{cap} {target}");
    }
}

#[test]
fn explain_shows_the_built_in_refusals() {
    let f = Fixture::new(
        "[fs]\nread = [\"**\"]\nwrite = [\"**\"]\nauto_approve = [\"**\"]\nallow_broad = [\"read\", \"write\", \"auto_approve\"]\n",
    );
    let r = explain(&f, "fs.write", ".git/hooks/x");
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stdout.trim_end(), "deny: fs.write `.git/hooks/x` (rule builtin:protected:**/.git/**)");
    let r = explain(&f, "fs.append", "sub/.bashrc");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.starts_with("deny:") && r.stdout.contains("(rule builtin:protected:**/.bashrc)"), "{r:?}");
    for target in ["..", "../outside/secret.txt", "src/../../x"] {
        let r = explain(&f, "fs.read", target);
        assert_eq!(r.code, 1, "{target}: {r:?}");
        assert!(r.stdout.starts_with("deny:"), "{target}: {r:?}");
        assert!(r.stdout.trim_end().ends_with("(rule builtin:outside-workspace)"), "{target}: {r:?}");
    }
    // A manifest without [[process.allow]] denies every command.
    let r = explain(&f, "process.run", "git status");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.starts_with("deny: process.run `git status`: no rule allows the program `git`"), "{r:?}");
    assert!(r.stdout.trim_end().ends_with("(rule default)"), "{r:?}");
    // A manifest without [http] denies every request.
    let r = explain(&f, "http.send", "https://example.com/");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.starts_with("deny: http.send `GET https://example.com/`"), "{r:?}");
    assert!(r.stdout.trim_end().ends_with("(rule default)"), "{r:?}");
}

#[test]
fn explain_denies_writes_to_the_manifest_and_the_audit_log_like_a_run_does() {
    // The workspace is the manifest's folder, so `sandbox run` refuses these
    // writes (`builtin:manifest`, `builtin:audit-log`); explain must agree.
    let f = Fixture::new(
        "[fs]\nread = [\"*\"]\nwrite = [\"*\"]\nauto_approve = [\"*\"]\n[workspace]\nroot = \".\"\n[audit]\npath = \"audit.jsonl\"\n",
    );
    let r = explain(&f, "fs.write", "manifest.toml");
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stdout.trim_end(), "deny: fs.write `manifest.toml` (rule builtin:manifest)");
    let r = explain(&f, "fs.remove", "audit.jsonl");
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stdout.trim_end(), "deny: fs.remove `audit.jsonl` (rule builtin:audit-log)");
    // What a run actually does with the same manifest.
    let run = f.run("probe", &["write", "manifest.toml", "x", "+", "remove", "audit.jsonl"]);
    assert!(run.line(r#""write" "manifest.toml" "x""#).starts_with("denied:"), "{run:?}");
    assert_eq!(f.calls("fs.write")[0]["rule"], "builtin:manifest");
}

#[test]
fn explain_refuses_an_unknown_capability() {
    let f = fixture();
    let r = explain(&f, "fs.delete", "src/main.rs");
    let line = error_line(&r);
    assert!(line.starts_with("unknown capability `fs.delete`"), "{line}");
    assert!(line.contains("fs.read") && line.contains("fs.rename"), "{line}");
}

// ------------------------------------------------------------ run refusals

#[test]
fn run_refuses_a_missing_component_and_records_it() {
    let f = fixture();
    let component = f.path("nowhere/tool.wasm");
    let r = run_component(&f, &component, &[], &["id"]);
    let message = format!("component `{}`: no such file or directory", component.display());
    assert_one_line_error(&r, &message);
    assert_refusal_recorded(&f, &message);
    assert_eq!(f.events()[0]["component"], "sha256:unreadable");
}

#[test]
fn run_refuses_a_file_that_is_not_webassembly() {
    let f = fixture();
    let component = f.path("tool.wasm");
    std::fs::write(&component, "#!/bin/sh\necho hello\n").unwrap();
    let r = run_component(&f, &component, &[], &["id"]);
    let line = error_line(&r);
    assert!(line.starts_with(&format!("component `{}`: ", component.display())), "{line}");
    assert!(line.contains("WebAssembly"), "{line}");
    // The reason must be whole, not cut at the first line of a longer one.
    assert_eq!(line.matches('[').count(), line.matches(']').count(), "cut short: {line}");
    assert_refusal_recorded(&f, line);
}

#[test]
fn run_refuses_a_core_module_that_is_not_a_component() {
    let f = fixture();
    let component = f.path("core.wasm");
    std::fs::write(&component, b"\0asm\x01\0\0\0").unwrap();
    let r = run_component(&f, &component, &[], &["id"]);
    let line = error_line(&r);
    assert!(line.starts_with(&format!("component `{}`: ", component.display())), "{line}");
    // Say what is wrong in the operator's words: a core module (wasm32-wasip1
    // or wasm32-unknown-unknown) where a component is needed.
    assert!(line.contains("not a component"), "{line}");
    assert_refusal_recorded(&f, line);
}

#[test]
fn run_refuses_a_missing_workspace_and_records_it() {
    let f = Fixture::new("[workspace]\nroot = \"missing\"\n");
    let r = f.run("probe", &["id"]);
    let message = format!("workspace `{}`: no such file or directory", f.path("missing").display());
    assert_one_line_error(&r, &message);
    assert_refusal_recorded(&f, &message);
    // `--workspace` naming a file.
    let f = fixture();
    let r = f.run_with("probe", &["--workspace", f.manifest().to_str().unwrap()], &["id"]);
    let message = format!("workspace `{}`: not a directory", f.manifest().display());
    assert_one_line_error(&r, &message);
    assert_refusal_recorded(&f, &message);
}

// ------------------------------------------------------------- usage errors

#[test]
fn usage_errors_exit_2_and_start_nothing() {
    let f = fixture();
    let probe = guest("probe");
    let probe = probe.to_str().unwrap();
    let manifest = f.manifest();
    let manifest = manifest.to_str().unwrap();
    for (args, mentions) in [
        (vec!["run", probe, "--", "id"], "--manifest"),
        (vec!["run", probe, "--manifest", manifest, "--bogus", "--", "id"], "--bogus"),
        (vec!["run", probe, "--manifest", manifest, "--approve", "maybe", "--", "id"], "maybe"),
        (
            vec!["run", probe, "--manifest", manifest, "--approve", "https://u:p@approvals.example.com/", "--", "id"],
            "holds userinfo",
        ),
        (vec!["run", "--manifest", manifest], "COMPONENT"),
        (vec!["policy", "check"], "FILE"),
        (vec!["policy", "explain", manifest, "fs.read"], "TARGET"),
        (vec!["audit", "verify"], "FILE"),
        (vec!["frobnicate"], "frobnicate"),
    ] {
        let r = sandbox_with(&args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stdout.is_empty(), "{args:?}: {r:?}");
        assert!(r.stderr.contains(mentions), "{args:?} should mention {mentions:?}: {r:?}");
    }
    assert!(!f.audit().exists(), "a usage error opened the audit log");
}

// ------------------------------------------------------------------- labels

#[test]
fn task_labels_appear_on_every_event_and_task_id_returns_the_id() {
    let f = fixture();
    let opts = ["--task-id", "TICKET-42/run-1", "--user", "bob", "--agent", "fixer", "--intent", "fix the bug in #42"];
    let r = run_component(&f, &guest("probe"), &opts, &["id", "+", "read", "src/main.rs", "+", "read", ".env"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.line(r#""id""#), "ok TICKET-42/run-1");
    let ev = f.events();
    assert!(ev.len() >= 6, "{ev:?}");
    for e in &ev {
        assert_eq!(e["task"], "TICKET-42/run-1", "{e}");
        assert_eq!(e["user"], "bob", "{e}");
        assert_eq!(e["agent"], "fixer", "{e}");
        assert_eq!(e["intent"], "fix the bug in #42", "{e}");
    }
    assert_eq!(f.verify().code, 0);
}

#[test]
fn default_labels_are_a_fresh_uuid_the_os_user_and_the_file_stem() {
    let f = fixture();
    let a = run_component(&f, &guest("probe"), &[], &["id"]);
    let b = run_component(&f, &guest("probe"), &[], &["id"]);
    assert_eq!((a.code, b.code), (0, 0), "{a:?} {b:?}");
    let id_a = a.line(r#""id""#).strip_prefix("ok ").unwrap().to_owned();
    let id_b = b.line(r#""id""#).strip_prefix("ok ").unwrap().to_owned();
    assert_ne!(id_a, id_b, "two runs got the same task id");
    for id in [&id_a, &id_b] {
        let u = uuid::Uuid::parse_str(id).unwrap_or_else(|e| panic!("task id {id:?} is not a UUID: {e}"));
        assert_eq!(u.hyphenated().to_string(), *id, "not in canonical form");
    }
    let ev = f.events();
    for (id, run) in [(&id_a, &a), (&id_b, &b)] {
        let mine: Vec<_> = ev.iter().filter(|e| e["task"] == id.as_str()).collect();
        assert!(mine.len() >= 2, "no events for task {id}: {run:?}");
        assert_eq!(mine[0]["kind"], "task-start");
        assert_eq!(mine.last().unwrap()["kind"], "task-end");
        for e in mine {
            assert_eq!(e["user"], "tester", "{e}"); // the harness sets USER=tester
            assert_eq!(e["agent"], "probe", "{e}");
        }
    }
    assert!(ev.iter().all(|e| e["task"] == id_a.as_str() || e["task"] == id_b.as_str()));
}

#[test]
fn invalid_labels_exit_2_before_anything_is_recorded() {
    let f = fixture();
    for (flag, value, what) in [
        ("--task-id", "", "task id"),
        ("--task-id", "a\nb", "task id"),
        ("--user", "", "user"),
        ("--user", "alice\u{7}", "user"),
        ("--agent", "\u{1b}[31mfixer", "agent"),
        ("--agent", "", "agent"),
        ("--intent", "", "intent"),
        ("--intent", "fix\r\nforged: line", "intent"),
    ] {
        let r = run_component(&f, &guest("probe"), &[flag, value], &["id"]);
        let line = error_line(&r);
        assert!(line.starts_with(&format!("{what} `")), "{flag} {value:?}: {line}");
        assert!(!line.contains(['\u{1b}', '\u{7}', '\r']), "{flag} {value:?}: raw control character in {line:?}");
        assert!(line.contains("without control characters"), "{line}");
    }
    let r = run_component(&f, &guest("probe"), &["--task-id", &"x".repeat(129)], &["id"]);
    assert!(error_line(&r).starts_with("task id `"), "{r:?}");
    assert!(!f.audit().exists(), "an invalid label opened the audit log");
}

// ---------------------------------------------------------------- exit codes

#[test]
fn the_tools_exit_code_passes_through_and_is_recorded() {
    let f = fixture();
    let r = f.run("hog", &["exit", "0"]);
    assert_eq!(r.code, 0, "{r:?}");
    let end = f.events().pop().unwrap();
    assert_eq!(end["kind"], "task-end");
    assert_eq!(end["status"], "exit");
    assert_eq!(end["exit_code"], 0);
    // Rust's std on wasm32-wasip2 ends `process::exit(n)` with
    // `wasi:cli/exit.exit(err)` for every n != 0 (the exit-with-code call is
    // not stable), so the host only learns "failure": the run exits 1, and
    // `task-end` says `exit` (the tool's own code, not a sandbox outcome).
    for n in ["5", "124"] {
        let r = f.run("hog", &["exit", n]);
        assert_eq!(r.code, 1, "hog exit {n}: {r:?}");
        assert!(r.stderr.is_empty(), "hog exit {n}: {r:?}");
        let end = f.events().pop().unwrap();
        assert_eq!(end["kind"], "task-end");
        assert_eq!(end["status"], "exit", "{end}");
        assert_eq!(end["exit_code"], 1, "{end}");
        assert_eq!(end["reason"], "the tool exited with code 1", "{end}");
    }
    assert_eq!(f.verify().code, 0);
}

// -------------------------------------------------------------- audit verify

#[test]
fn audit_verify_on_a_missing_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let r = verify(&file);
    assert_one_line_error(&r, &format!("audit log `{}`: no such file or directory", file.display()));
}

#[test]
fn audit_verify_counts_events_and_tasks_of_an_intact_log() {
    let f = fixture();
    assert_eq!(f.run("probe", &["read", "src/main.rs"]).code, 0);
    assert_eq!(f.run("probe", &["id"]).code, 0);
    let ev = f.events();
    let r = f.verify();
    assert_eq!(r.code, 0, "{r:?}");
    let head = ev.last().unwrap()["hash"].as_str().unwrap();
    assert_eq!(r.stdout.lines().next().unwrap(), format!("ok: {} events, 2 tasks, head {head}", ev.len()));
    assert!(r.stderr.is_empty(), "{r:?}");
    // One changed byte and it is no longer intact.
    let text = std::fs::read_to_string(f.audit()).unwrap();
    std::fs::write(f.audit(), text.replacen("src/main.rs", "src/main.rz", 1)).unwrap();
    let r = f.verify();
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("is not intact"), "{r:?}");
}

#[test]
fn audit_show_filters_and_names_bad_filters() {
    let f = fixture();
    let r = f.run_with("probe", &["--task-id", "t-one"], &["read", "src/main.rs"]);
    assert_eq!(r.code, 0, "{r:?}");
    f.run_with("probe", &["--task-id", "t-two"], &["read", "/etc/passwd", "+", "read", "src/main.rs"]);
    let show = |args: &[&str]| {
        let mut c = sandbox();
        c.args(["audit", "show"]).arg(f.audit()).args(args);
        output(c)
    };
    let all = show(&[]);
    assert_eq!(all.code, 0, "{all:?}");
    assert_eq!(all.stdout.lines().count(), f.events().len());
    let r = show(&["--task", "t-two", "--user", "alice", "--capability", "fs", "--decision", "allow"]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{r:?}");
    assert!(lines[0].contains("fs.read `src/main.rs`: allow"), "{r:?}");
    for empty in [&["--task", "t-one", "--until", "2000-01-01"][..], &["--user", "bob"]] {
        let r = show(empty);
        assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{empty:?}: {r:?}");
    }
    assert!(error_line(&show(&["--since", "last week"])).starts_with("--since: `last week` is not a date"));
    assert!(error_line(&show(&["--decision", "maybe"])).starts_with("--decision: `maybe` is not a decision"));
    assert_one_line_error(&show(&["--since", "2026-02-01", "--until", "2026-01-01"]), "--since must be before --until");
}

#[test]
fn a_service_approver_needs_the_runner_token() {
    let f = fixture();
    let r = Run::from_output(
        sandbox()
            .args(["run"])
            .arg(guest("probe"))
            .arg("--manifest")
            .arg(f.manifest())
            .args(["--approve", "http://127.0.0.1:9", "--", "id"])
            .env_remove("SANDBOX_APPROVAL_TOKEN")
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("SANDBOX_APPROVAL_TOKEN"), "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");
    assert_eq!(f.events().last().unwrap()["status"], "refused");
}

#[test]
fn policy_diff_shows_what_widens_and_narrows() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.toml");
    let new = dir.path().join("new.toml");
    std::fs::write(&old, "version = 1\n[fs]\nread = [\"src/**\"]\nwrite = [\"out/**\"]\ndeny = [\"**/.env\"]\n")
        .unwrap();
    std::fs::write(
        &new,
        "version = 1\n[fs]\nread = [\"src/**\"]\nwrite = [\"out/**\"]\nauto_approve = [\"out/**\"]\n[limits]\ncalls = 10\n",
    )
    .unwrap();
    let diff = |a: &std::path::Path, b: &std::path::Path| {
        Run::from_output(sandbox().args(["policy", "diff"]).arg(a).arg(b).output().unwrap())
    };
    let r = diff(&old, &new);
    assert_eq!(r.code, 1, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines.contains(&"widens   fs.auto_approve + out/**"), "{r:?}");
    assert!(lines.contains(&"widens   fs.deny - **/.env"), "{r:?}");
    assert!(lines.contains(&"narrows  limits.calls: 100000 -> 10"), "{r:?}");
    assert_eq!(lines.last(), Some(&"2 change(s) widen what a tool may do"), "{r:?}");
    let back = diff(&new, &old);
    assert_eq!(back.code, 1, "{back:?}");
    let back_lines: Vec<&str> = back.stdout.lines().collect();
    assert!(back_lines.contains(&"narrows  fs.auto_approve - out/**"), "{back:?}");
    assert!(back_lines.contains(&"narrows  fs.deny + **/.env"), "{back:?}");
    assert!(back_lines.contains(&"widens   limits.calls: 10 -> 100000"), "{back:?}");
    let narrower = dir.path().join("narrower.toml");
    std::fs::write(&narrower, "version = 1\n[fs]\nread = [\"src/**\"]\ndeny = [\"**/.env\", \"**/*.pem\"]\n").unwrap();
    let only_narrows = diff(&old, &narrower);
    assert_eq!(only_narrows.code, 0, "narrowing only: {only_narrows:?}");
    assert!(only_narrows.stdout.lines().all(|l| l.starts_with("narrows")), "{only_narrows:?}");
    let same = diff(&old, &old);
    assert_eq!((same.code, same.stdout.trim()), (0, "no difference in what the manifests allow"));
    let bad = diff(&old, &dir.path().join("missing.toml"));
    assert_eq!(bad.code, 2, "{bad:?}");
}
