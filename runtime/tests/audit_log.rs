//! THREATS.md, Audit log: the real `sandbox` binary on real guests writes a
//! log that both verifiers (`sandbox audit verify` and the auditors' Python
//! script) accept, that names the first bad `seq` after any tampering, that
//! records every call before it happens, that hostile text cannot break,
//! that concurrent runs share safely, and that fails closed when it cannot
//! be written.

mod common;
use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// Reads granted under `src/` and `out/`; writes there are auto-approved,
/// writes under `notes/` need a human (and the runs here have none).
const MANIFEST: &str = r#"
name = "audit-tests"

[fs]
read = ["src/**", "out/**"]
write = ["src/**", "out/**", "notes/**"]
auto_approve = ["src/**", "out/**"]
deny = ["**/.env"]
"#;

/// The `,"hash":"sha256:<64 hex>"}` member every line ends with.
const HASH_MEMBER: &str = ",\"hash\":\"sha256:";
const HASH_MEMBER_LEN: usize = HASH_MEMBER.len() + 64 + 2;

fn fixture(body: &str) -> Fixture {
    let f = Fixture::new(body);
    f.file("src/a.txt", "hello\n")
        .file("src/b.txt", "hello world\nsecond hello\n")
        .file("src/.env", "TOKEN=abc\n")
        .file("out/o.txt", "old\n")
        .file("notes/n.txt", "note\n");
    f
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn to_run(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `scripts/verify-audit.py FILE`: the independent verifier for auditors.
fn python_verify(path: &Path) -> Run {
    let out = Command::new("python3")
        .arg(repo().join("scripts/verify-audit.py"))
        .arg(path)
        .output()
        .expect("python3 must be installed to run the auditors' verifier");
    to_run(out)
}

/// The lines of a log, each with its newline (the last may lack it).
fn lines_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
}

/// The complete lines' events (a line still being written is left out).
fn parse(bytes: &[u8]) -> Vec<Value> {
    lines_of(bytes)
        .iter()
        .filter(|l| l.ends_with(b"\n"))
        .map(|l| {
            serde_json::from_slice(l).unwrap_or_else(|e| panic!("bad audit line {:?}: {e}", String::from_utf8_lossy(l)))
        })
        .collect()
}

fn log_events(path: &Path) -> Vec<Value> {
    parse(&std::fs::read(path).unwrap_or_default())
}

/// The `seq` a verifier names after `not intact: seq `.
fn named_seq(text: &str) -> Option<u64> {
    let marker = "not intact: seq ";
    let rest = &text[text.find(marker)? + marker.len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// The `head` a verifier reports on an intact log.
fn head(text: &str) -> Option<String> {
    let rest = &text[text.find("head ")? + "head ".len()..];
    rest.split_whitespace().next().map(str::to_owned)
}

/// Both verifiers accept the log and agree on its length and head; returns
/// the number of events.
fn assert_intact(path: &Path) -> u64 {
    let r = verify(path);
    assert_eq!(r.code, 0, "sandbox audit verify rejected an intact log: {r:?}");
    let p = python_verify(path);
    assert_eq!(p.code, 0, "verify-audit.py rejected a log sandbox accepts: {p:?}");
    let n: u64 = r
        .stdout
        .strip_prefix("ok: ")
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no event count in {r:?}"));
    assert!(p.stdout.starts_with(&format!("ok: {n} events, ")), "the verifiers disagree: {r:?} {p:?}");
    assert_eq!(head(&r.stdout), head(&p.stdout), "the verifiers disagree on the head: {r:?} {p:?}");
    n
}

/// Both verifiers reject the log (exit 1) naming `seq` as the first bad
/// one; sandbox's reason mentions `why`.
fn assert_broken_at(path: &Path, seq: u64, why: &str) {
    let r = verify(path);
    assert_eq!(r.code, 1, "sandbox audit verify accepted a tampered log: {r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "one line: {r:?}");
    assert!(r.stderr.contains(&path.display().to_string()), "the message names the log: {r:?}");
    assert_eq!(named_seq(&r.stderr), Some(seq), "sandbox names the wrong seq: {r:?}");
    assert!(r.stderr.contains(why), "the reason should mention `{why}`: {r:?}");
    let p = python_verify(path);
    assert_eq!(p.code, 1, "verify-audit.py disagrees with sandbox (which exits 1): {p:?}");
    assert_eq!(named_seq(&p.stdout), Some(seq), "verify-audit.py names the wrong seq: {p:?}");
}

/// One log from several real runs of every guest, appended to one file;
/// built once, each tampering test edits its own copy.
fn pristine() -> &'static [u8] {
    static LOG: OnceLock<Vec<u8>> = OnceLock::new();
    LOG.get_or_init(|| {
        let f = fixture(MANIFEST);
        let runs: [(&str, &[&str], i32); 6] = [
            (
                "probe",
                &[
                    "read",
                    "src/a.txt",
                    "+",
                    "read",
                    "src/.env",
                    "+",
                    "write",
                    "out/o.txt",
                    "new",
                    "+",
                    "write",
                    "notes/n.txt",
                    "x",
                    "+",
                    "read",
                    "/etc/passwd",
                    "+",
                    "list",
                    "src",
                ],
                0,
            ),
            ("search", &["hello", "src"], 0),
            ("replace", &["src/b.txt", "hello", "goodbye"], 0),
            ("hog", &["calls", "5"], 0),
            // WASI preview 2 carries only success or failure: exit(3) is 1.
            ("hog", &["exit", "3"], 1),
            ("probe", &["stat", "src/a.txt", "+", "read", "src/b.txt", "+", "read", "src/.env"], 0),
        ];
        for (guest_name, args, code) in runs {
            let r = f.run(guest_name, args);
            assert_eq!(r.code, code, "{guest_name} {args:?}: {r:?}");
        }
        std::fs::read(f.audit()).expect("the runs wrote a log")
    })
}

/// A copy of the pristine log, edited, in a temporary directory.
fn tampered(edit: impl FnOnce(&mut Vec<Vec<u8>>)) -> (tempfile::TempDir, PathBuf) {
    let mut lines = lines_of(pristine());
    edit(&mut lines);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("tampered.jsonl");
    std::fs::write(&path, lines.concat()).expect("the tampered copy is written");
    (dir, path)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A line in the middle of the log (not the first or last) holding `needle`.
fn middle_line(lines: &[Vec<u8>], needle: &str) -> usize {
    (lines.len() / 3..lines.len() - 1)
        .find(|&i| find(&lines[i], needle.as_bytes()).is_some())
        .unwrap_or_else(|| panic!("no line with {needle} in the middle of the log"))
}

/// Index of the first byte after `needle` in `line`.
fn after(line: &[u8], needle: &str) -> usize {
    find(line, needle.as_bytes()).unwrap_or_else(|| panic!("{needle} not in {}", String::from_utf8_lossy(line)))
        + needle.len()
}

/// Recomputes a line's `hash` the documented way: SHA-256 of the line
/// without its final `hash` member, closed with `}`.
fn rehash(line: &[u8]) -> Vec<u8> {
    let body = line.strip_suffix(b"\n").expect("a complete line");
    let prefix = &body[..body.len() - HASH_MEMBER_LEN];
    let mut canonical = prefix.to_vec();
    canonical.push(b'}');
    let mut out = prefix.to_vec();
    out.extend_from_slice(HASH_MEMBER.as_bytes());
    out.extend_from_slice(hex::encode(Sha256::digest(&canonical)).as_bytes());
    out.extend_from_slice(b"\"}\n");
    out
}

#[test]
fn a_log_of_real_runs_verifies_in_both_verifiers() {
    let (_dir, path) = tampered(|_| {});
    let n = assert_intact(&path);
    let events = parse(pristine());
    assert_eq!(n, events.len() as u64);
    let r = verify(&path);
    assert!(r.stdout.contains(&format!("ok: {n} events, 6 tasks, head ")), "{r:?}");
    assert_eq!(head(&r.stdout).as_deref(), events.last().unwrap()["hash"].as_str());
    // Six runs appended to one file: each run's chain continues the last.
    let starts: Vec<&Value> = events.iter().filter(|e| e["kind"] == "task-start").collect();
    assert_eq!(starts.len(), 6);
    for s in &starts[1..] {
        let seq = s["seq"].as_u64().unwrap() as usize;
        assert_eq!(s["prev"], events[seq - 1]["hash"], "{s}");
    }
}

#[test]
fn a_flipped_byte_in_a_target_is_named_by_its_seq() {
    let mut k = 0;
    let (_dir, path) = tampered(|lines| {
        k = middle_line(lines, "\"target\":\"src/");
        let at = after(&lines[k], "\"target\":\"src/");
        lines[k][at] = if lines[k][at] == b'x' { b'y' } else { b'x' };
    });
    assert_broken_at(&path, k as u64, "does not match its hash");
}

#[test]
fn a_flipped_digit_in_a_number_is_named_by_its_seq() {
    let mut k = 0;
    let (_dir, path) = tampered(|lines| {
        k = middle_line(lines, "\"bytes_out\":");
        let at = after(&lines[k], "\"bytes_out\":");
        let d = lines[k][at];
        assert!(d.is_ascii_digit());
        // Still a valid JSON number, only a different one.
        lines[k][at] = if d == b'9' { b'8' } else { d + 1 };
    });
    assert_broken_at(&path, k as u64, "does not match its hash");
}

#[test]
fn a_flipped_byte_in_a_hash_is_named_by_its_seq() {
    let mut k = 0;
    let (_dir, path) = tampered(|lines| {
        k = lines.len() / 2;
        let at = after(&lines[k], HASH_MEMBER) + 10;
        lines[k][at] = if lines[k][at] == b'0' { b'1' } else { b'0' };
    });
    assert_broken_at(&path, k as u64, "does not match its hash");
}

#[test]
fn an_edit_with_a_recomputed_hash_breaks_the_next_link() {
    let mut k = 0;
    let mut edited = Vec::new();
    let (_dir, path) = tampered(|lines| {
        k = middle_line(lines, "\"decision\":\"deny\"");
        // Turn a recorded denial into an allow and make the line consistent.
        let line =
            String::from_utf8(lines[k].clone()).unwrap().replace("\"decision\":\"deny\"", "\"decision\":\"allow\"");
        lines[k] = rehash(line.as_bytes());
        edited = lines[..=k].concat();
    });
    // The edited line on its own is a valid event: only the chain shows it.
    let dir = tempfile::tempdir().unwrap();
    let head_part = dir.path().join("head.jsonl");
    std::fs::write(&head_part, &edited).unwrap();
    assert_eq!(assert_intact(&head_part), k as u64 + 1);
    assert_broken_at(&path, k as u64 + 1, "`prev` is");
}

#[test]
fn a_deleted_line_is_named_by_its_seq() {
    let mut k = 0;
    let (_dir, path) = tampered(|lines| {
        k = lines.len() / 2;
        lines.remove(k);
    });
    assert_broken_at(&path, k as u64, &format!("missing: the line holds seq {}", k + 1));
}

#[test]
fn an_inserted_copy_of_a_line_is_named_by_its_seq() {
    for from in [None, Some(1)] {
        let mut k = 0;
        let (_dir, path) = tampered(|lines| {
            k = lines.len() / 2;
            // A duplicate of the line before, or a line from elsewhere.
            let copy = lines[from.unwrap_or(k - 1)].clone();
            lines.insert(k, copy);
        });
        assert_broken_at(&path, k as u64, "out of order: the line holds seq");
    }
}

#[test]
fn swapped_lines_are_named_by_the_first_seq() {
    let mut k = 0;
    let (_dir, path) = tampered(|lines| {
        k = lines.len() / 2;
        lines.swap(k, k + 1);
    });
    assert_broken_at(&path, k as u64, &format!("the line holds seq {}", k + 1));
}

#[test]
fn a_line_truncated_midway_is_named_by_its_seq() {
    let mut k = 0;
    let (_dir, path) = tampered(|lines| {
        k = lines.len() / 2;
        lines.truncate(k + 1);
        let half = lines[k].len() / 2;
        lines[k].truncate(half);
    });
    assert_broken_at(&path, k as u64, "incomplete");
}

#[test]
fn appended_garbage_is_named_by_the_next_seq() {
    let n = lines_of(pristine()).len() as u64;
    let forged = format!(
        "{{\"v\":1,\"seq\":{n},\"ts\":\"2030-01-01T00:00:00.000000Z\",\"kind\":\"task-end\",\"task\":\"x\",\"prev\":\"sha256:{}\",\"hash\":\"sha256:{}\"}}\n",
        "0".repeat(64),
        "0".repeat(64)
    );
    for garbage in [&b"garbage\n"[..], b"\x00\xff not json", b"{}\n", forged.as_bytes()] {
        let (_dir, path) = tampered(|lines| lines.push(garbage.to_vec()));
        assert_broken_at(&path, n, "");
    }
}

#[test]
fn events_cut_from_the_end_verify_but_change_the_head() {
    // The documented limit of a plain chain: a log cut at a line boundary
    // still verifies; only the head, kept elsewhere, shows the cut.
    let (_dir, whole) = tampered(|_| {});
    let (_dir2, cut) = tampered(|lines| {
        let keep = lines.len() - 3;
        lines.truncate(keep);
    });
    let n = assert_intact(&cut);
    assert_eq!(n, lines_of(pristine()).len() as u64 - 3);
    assert_ne!(head(&verify(&cut).stdout), head(&verify(&whole).stdout));
}

// --- The events of a run --------------------------------------------------

fn limited_manifest() -> String {
    format!("{MANIFEST}\n[limits]\nmemory = \"64 MiB\"\ntime = \"30s\"\ncalls = 500\noutput = \"1 MiB\"\n")
}

const SEQUENCE_ARGS: [&str; 21] = [
    "read",
    "src/a.txt",
    "+",
    "id",
    "+",
    "intent",
    "fix the greeting",
    "+",
    "read",
    "src/.env",
    "+",
    "write",
    "out/o.txt",
    "new",
    "+",
    "write",
    "notes/n.txt",
    "x",
    "+",
    "list",
    "src",
];

#[test]
fn a_run_is_task_start_then_each_call_and_its_result_then_task_end() {
    let f = fixture(&limited_manifest());
    let r = f.run_with("probe", &["--task-id", "task-seq-1"], &SEQUENCE_ARGS);
    assert_eq!(r.code, 0, "{r:?}");
    // task.id and task.set-intent are no host calls and leave no events.
    assert_eq!(r.line(r#""id""#), "ok task-seq-1");
    let ev = f.events();
    let kinds: Vec<&str> = ev.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "task-start",
            "call",
            "result",
            "call",
            "result",
            "call",
            "result",
            "call",
            "approval",
            "result",
            "call",
            "result",
            "task-end"
        ]
    );
    for (i, e) in ev.iter().enumerate() {
        assert_eq!(e["seq"], i as u64, "seq without gaps: {e}");
        assert_eq!(e["v"], 1, "{e}");
    }
    let expected = [
        ("fs.read", "src/a.txt", "allow", "fs.read:src/**", "ok"),
        ("fs.read", "src/.env", "deny", "fs.deny:**/.env", "denied"),
        ("fs.write", "out/o.txt", "allow", "fs.auto_approve:out/**", "ok"),
        ("fs.write", "notes/n.txt", "ask", "fs.write:notes/**", "not-approved"),
        ("fs.list-dir", "src", "allow", "fs.read:src/**", "ok"),
    ];
    let calls: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "call").collect();
    assert_eq!(calls.len(), expected.len());
    for (call, (cap, target, decision, rule, outcome)) in calls.iter().zip(expected) {
        assert_eq!(call["capability"], cap, "{call}");
        assert_eq!(call["target"], target, "{call}");
        assert_eq!(call["decision"], decision, "{call}");
        assert_eq!(call["rule"], rule, "{call}");
        let seq = call["seq"].as_u64().unwrap() as usize;
        let mut next = seq + 1;
        if decision == "ask" {
            let approval = &ev[next];
            assert_eq!(approval["kind"], "approval", "{approval}");
            assert_eq!(approval["decision"], "rejected", "{approval}");
            assert_eq!(approval["target"], target, "{approval}");
            assert_eq!(approval["approval"]["via"], "deny", "{approval}");
            next += 1;
        }
        let result = &ev[next];
        assert_eq!(result["kind"], "result", "{result}");
        assert_eq!(result["capability"], cap, "{result}");
        assert_eq!(result["target"], target, "{result}");
        assert_eq!(result["outcome"], outcome, "{result}");
        for field in ["bytes_in", "bytes_out", "duration_us"] {
            assert!(result[field].is_u64(), "{field} on {result}");
        }
    }
    assert_eq!(ev[2]["bytes_out"], 6);
    assert_eq!(f.read("out/o.txt").unwrap(), "new");
    assert_eq!(f.read("notes/n.txt").unwrap(), "note\n");

    let start = &ev[0];
    assert_eq!(start["manifest"], "audit-tests");
    let root = std::fs::canonicalize(f.ws("")).unwrap();
    assert_eq!(start["workspace"], root.display().to_string());
    assert_eq!(start["args"], json!(SEQUENCE_ARGS));
    assert_eq!(start["limits"], json!({"memory": 64 << 20, "time_ms": 30_000, "calls": 500, "output": 1 << 20}));
    assert_eq!(start["prev"], format!("sha256:{}", "0".repeat(64)));
    let end = ev.last().unwrap();
    assert_eq!(end["status"], "exit");
    assert_eq!(end["exit_code"], 0);
    assert_eq!(end["calls"], 5);
    assert_intact(&f.audit());
}

fn assert_timestamp(ts: &str) {
    let b = ts.as_bytes();
    let shape = b.len() == 27
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            26 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(shape, "`{ts}` is not RFC 3339 UTC with microseconds");
    assert!(humantime::parse_rfc3339(ts).is_ok(), "`{ts}` is not a valid RFC 3339 time");
}

#[test]
fn every_event_names_its_task_user_agent_component_and_policy() {
    let f = fixture(MANIFEST);
    let r = f.run_with("probe", &["--task-id", "id-probe"], &SEQUENCE_ARGS);
    assert_eq!(r.code, 0, "{r:?}");
    let r = f.run_with("search", &["--task-id", "id-search", "--agent", "finder"], &["hello"]);
    assert_eq!(r.code, 0, "{r:?}");
    // Computed here from the files' bytes, independently of sandbox.
    let policy = sha256(&std::fs::read(f.manifest()).unwrap());
    let expected = [
        ("id-probe", "alice", "probe", sha256(&std::fs::read(guest("probe")).unwrap())),
        ("id-search", "alice", "finder", sha256(&std::fs::read(guest("search")).unwrap())),
    ];
    let ev = f.events();
    for (task, user, agent, component) in &expected {
        let mine: Vec<&Value> = ev.iter().filter(|e| e["task"] == *task).collect();
        assert!(mine.len() > 2, "{task}");
        assert_eq!(mine.first().unwrap()["kind"], "task-start");
        assert_eq!(mine.last().unwrap()["kind"], "task-end");
        for e in mine {
            assert_eq!(e["user"], *user, "{e}");
            assert_eq!(e["agent"], *agent, "{e}");
            assert_eq!(e["component"], component.as_str(), "{e}");
            assert_eq!(e["policy"], policy.as_str(), "{e}");
        }
    }
    assert_eq!(ev.iter().filter(|e| e["task"] != "id-probe" && e["task"] != "id-search").count(), 0);
    // Timestamps: RFC 3339 UTC with microseconds, never going back.
    for e in &ev {
        assert_timestamp(e["ts"].as_str().unwrap());
    }
    for pair in ev.windows(2) {
        assert!(pair[0]["ts"].as_str() <= pair[1]["ts"].as_str(), "{} then {}", pair[0], pair[1]);
    }
    assert_intact(&f.audit());
}

#[test]
fn the_tools_intent_appears_on_later_events_only() {
    let f = fixture(MANIFEST);
    let r = f.run("probe", &SEQUENCE_ARGS);
    assert_eq!(r.code, 0, "{r:?}");
    let ev = f.events();
    // seq 0-2: task-start and the first read, before `intent`.
    for e in &ev[..3] {
        assert!(e.get("intent").is_none(), "intent before it was set: {e}");
    }
    for e in &ev[3..] {
        assert_eq!(e["intent"], "fix the greeting", "{e}");
    }
}

#[test]
fn the_runs_intent_is_recorded_until_the_tool_states_its_own() {
    let f = fixture(MANIFEST);
    let r = f.run_with("replace", &["--intent", "TICKET-42: greet politely"], &["src/a.txt", "hello", "good day"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(f.read("src/a.txt").unwrap(), "good day\n");
    let ev = f.events();
    assert_eq!(ev[0]["kind"], "task-start");
    assert_eq!(ev[0]["intent"], "TICKET-42: greet politely");
    // replace states its intent before its first call.
    for e in &ev[1..] {
        assert_eq!(e["intent"], "replace `hello` with `good day` in src/a.txt", "{e}");
    }
    let write = f.calls("fs.write");
    assert_eq!(write.len(), 1);
    assert_eq!(write[0]["content_sha256"], sha256(b"good day\n"));
}

#[test]
fn task_end_records_how_each_run_ended() {
    let f = fixture(&format!("{MANIFEST}\n[limits]\ntime = \"1s\"\ncalls = 20\nmemory = \"32 MiB\"\n"));
    let cases = [
        // WASI preview 2 carries only success or failure: exit(3) is 1.
        ("t-exit", vec!["exit", "3"], 1, "exit"),
        ("t-spin", vec!["spin"], 124, "time-limit"),
        ("t-calls", vec!["calls", "1100"], 122, "call-limit"),
        ("t-alloc", vec!["alloc"], 125, "memory-limit"),
    ];
    for (task, args, code, _) in &cases {
        let r = f.run_with("hog", &["--task-id", task], args);
        assert_eq!(r.code, *code, "{task}: {r:?}");
    }
    let ev = f.events();
    for (task, _, code, status) in &cases {
        let mine: Vec<&Value> = ev.iter().filter(|e| e["task"] == *task).collect();
        assert_eq!(mine[0]["kind"], "task-start", "{task}");
        let end = mine.last().unwrap();
        assert_eq!(end["kind"], "task-end", "{task}: {end}");
        assert_eq!(end["status"], *status, "{end}");
        assert_eq!(end["exit_code"], *code, "{end}");
        assert!(!end["reason"].as_str().unwrap_or("").is_empty(), "{end}");
    }
    assert_intact(&f.audit());
}

// --- Guest-controlled text --------------------------------------------------

/// Encodes `s` as a probe `esc:` argument.
fn esc(s: &str) -> String {
    let mut out = String::from("esc:");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 && c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Runs probe: `intent first`, a read of each path, `intent second`, a
/// write of `write_path`; checks one event per line and exact round trips.
fn hostile_run(f: &Fixture, paths: &[&str], first: &str, second: &str, write_path: &str) -> Vec<Value> {
    let mut args = vec!["intent".to_owned(), esc(first)];
    for p in paths {
        args.extend(["+".to_owned(), "read".to_owned(), esc(p)]);
    }
    args.extend(["+", "intent"].map(str::to_owned));
    args.push(esc(second));
    args.extend(["+".to_owned(), "write".to_owned(), esc(write_path), "data".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = f.run("probe", &args);
    assert_eq!(r.code, 0, "{r:?}");

    let raw = std::fs::read(f.audit()).expect("the run wrote a log");
    assert!(raw.ends_with(b"\n"));
    let lines: Vec<&[u8]> = raw[..raw.len() - 1].split(|b| *b == b'\n').collect();
    for (i, line) in lines.iter().enumerate() {
        assert!(
            !line.iter().any(|b| *b < 0x20),
            "line {} holds a raw control byte: {:?}",
            i + 1,
            String::from_utf8_lossy(line)
        );
    }
    let ev = parse(&raw);
    assert_eq!(ev.len(), lines.len(), "one event per line");
    for (i, e) in ev.iter().enumerate() {
        assert_eq!(e["seq"], i as u64, "{e}");
        let kind = e["kind"].as_str().expect("a kind");
        assert!(["task-start", "call", "approval", "result", "task-end"].contains(&kind), "{e}");
    }
    // Exact round trips: targets and intents as the tool sent them.
    let reads: Vec<&Value> = ev.iter().filter(|e| e["capability"] == "fs.read").collect();
    assert_eq!(reads.len(), 2 * paths.len());
    for (pair, p) in reads.chunks(2).zip(paths) {
        assert_eq!(pair[0]["kind"], "call");
        assert_eq!(pair[0]["target"], *p, "{}", pair[0]);
        assert_eq!(pair[1]["kind"], "result");
        assert_eq!(pair[1]["target"], *p, "{}", pair[1]);
        assert_eq!(pair[0]["intent"], first, "{}", pair[0]);
        assert_eq!(pair[1]["intent"], first, "{}", pair[1]);
    }
    let write = ev.iter().find(|e| e["kind"] == "call" && e["capability"] == "fs.write").expect("a write call event");
    assert_eq!(write["target"], write_path, "{write}");
    assert_eq!(write["intent"], second, "{write}");
    assert_eq!(ev.last().expect("events")["intent"], second);
    assert_intact(&f.audit());
    ev
}

#[test]
fn hostile_guest_text_stays_on_one_line_and_round_trips() {
    let f = fixture(MANIFEST);
    let forged_line = format!(
        "{{\"v\":1,\"seq\":0,\"kind\":\"forged\",\"prev\":\"sha256:{z}\",\"hash\":\"sha256:{z}\"}}",
        z = "0".repeat(64)
    );
    let paths = [
        "src/line\nbreak.txt".to_owned(),
        "src/cr\rreturn\r\n.txt".to_owned(),
        "src/\u{1b}[31mred\u{1b}[0m\u{1b}]0;title\u{7}.txt".to_owned(),
        "src/\"quoted\".txt".to_owned(),
        "src/back\\slash\\\".txt".to_owned(),
        format!("src/x\n{forged_line}\n"),
        "src/{\"kind\":\"forged\"}.txt".to_owned(),
        "src/\u{202e}txt.exe".to_owned(),
        "src/tab\there\u{7f}\u{0}.txt".to_owned(),
    ];
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let first = format!("step 1\nstep 2\r\n{forged_line}\n{{\"kind\":\"forged\"}}");
    let second =
        "\u{1b}[2J\u{1b}]0;owned\u{7} \"quotes\" \\backslash\\ \u{202e}desrever\u{202c} \u{2066}isolate\u{2069}";
    let ev = hostile_run(&f, &paths, &first, second, "src/\"quoted\" \u{202e}name.txt");
    assert!(!ev.iter().any(|e| e["kind"] == "forged"));
    assert_eq!(std::fs::read_to_string(f.ws("src/\"quoted\" \u{202e}name.txt")).unwrap(), "data");
}

#[test]
fn unicode_line_separators_and_c1_controls_are_escaped_in_the_log() {
    // serde_json escapes only U+0000..U+001F, `"` and `\`. U+0085 (NEL),
    // U+2028 and U+2029 are line breaks to Python's str.splitlines(), to
    // JavaScript before ES2019 and to many SIEM line readers; U+009B is
    // CSI, a terminal escape. A tool must not be able to put them into the
    // log raw (THREATS.md: guest text must not break a SIEM's parser).
    let f = fixture(MANIFEST);
    let paths = ["src/nel\u{85}line.txt", "src/ls\u{2028}line.txt", "src/ps\u{2029}para.txt", "src/\u{9b}31mcsi.txt"];
    let first = "one\u{85}two\u{2028}three\u{2029}four\u{9b}2J";
    let ev = hostile_run(&f, &paths, first, "second \u{1c}\u{1d}\u{1e}\u{b}\u{c}", "src/ls\u{2028}w.txt");
    let text = std::fs::read_to_string(f.audit()).unwrap();
    for (i, line) in text.split_terminator('\n').enumerate() {
        let raw: Vec<String> = line
            .chars()
            .filter(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
            .map(|c| format!("U+{:04X}", c as u32))
            .collect();
        assert!(raw.is_empty(), "seq {i} holds raw {raw:?}: {line}");
    }
    // What a reader splitting on Unicode line boundaries sees.
    let pieces = text.split_terminator([
        '\n', '\r', '\u{b}', '\u{c}', '\u{1c}', '\u{1d}', '\u{1e}', '\u{85}', '\u{2028}', '\u{2029}',
    ]);
    assert_eq!(pieces.count(), ev.len());
}

// --- Concurrent runs --------------------------------------------------------

#[test]
fn concurrent_runs_append_to_one_log_without_breaking_it() {
    const RUNS: usize = 5;
    const REPEAT: usize = 12;
    let f = fixture(MANIFEST);
    let repeat = REPEAT.to_string();
    let children: Vec<_> = (0..RUNS)
        .map(|i| {
            let task = format!("conc-{i}");
            let out = format!("out/c{i}.txt");
            let n = repeat.as_str();
            let args = [
                "repeat",
                n,
                "read",
                "src/a.txt",
                "+",
                "repeat",
                n,
                "write",
                &out,
                "data",
                "+",
                "repeat",
                n,
                "stat",
                "src",
                "+",
                "repeat",
                n,
                "read",
                "src/.env",
            ];
            (task.clone(), f.command("probe", &["--task-id", &task], &args).spawn().unwrap())
        })
        .collect();
    for (task, child) in children {
        let r = to_run(child.wait_with_output().unwrap());
        assert_eq!(r.code, 0, "{task}: {r:?}");
        assert!(r.stdout.contains(&format!("ok={REPEAT}")), "{task}: {r:?}");
    }
    let calls = 4 * REPEAT;
    let n = assert_intact(&f.audit());
    let ev = f.events();
    assert_eq!(n as usize, ev.len());
    assert_eq!(ev.len(), RUNS * (2 * calls + 2));
    for (i, e) in ev.iter().enumerate() {
        assert_eq!(e["seq"], i as u64, "seq contiguous across runs");
    }
    let mut by_task: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for e in &ev {
        by_task.entry(e["task"].as_str().unwrap()).or_default().push(e);
    }
    assert_eq!(by_task.len(), RUNS);
    for (task, mine) in &by_task {
        assert_eq!(mine.len(), 2 * calls + 2, "{task}");
        assert_eq!(mine[0]["kind"], "task-start", "{task}");
        let end = mine.last().unwrap();
        assert_eq!(end["kind"], "task-end", "{task}");
        assert_eq!(end["status"], "exit", "{end}");
        assert_eq!(end["calls"], calls, "{end}");
        // Each call is followed by its own result, in this task's order.
        for pair in mine[1..mine.len() - 1].chunks(2) {
            assert_eq!(pair[0]["kind"], "call", "{task}: {}", pair[0]);
            assert_eq!(pair[1]["kind"], "result", "{task}: {}", pair[1]);
            assert_eq!(pair[0]["target"], pair[1]["target"]);
        }
        for pair in mine.windows(2) {
            assert!(pair[0]["ts"].as_str() <= pair[1]["ts"].as_str(), "{task}: time went back");
        }
    }
    let interleaved = ev.windows(2).filter(|w| w[0]["task"] != w[1]["task"]).count();
    eprintln!("{} switches between tasks in the log", interleaved);
}

// --- Fail-closed ------------------------------------------------------------

/// The run was refused before the tool ran: exit 126, one line naming the
/// log, no output, no write.
fn assert_refused_before_running(f: &Fixture, r: &Run, log_name: &str) {
    assert_eq!(r.code, 126, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "one line: {r:?}");
    assert!(r.stderr.contains("audit log") && r.stderr.contains(log_name), "names the log: {r:?}");
    assert_eq!(r.stdout, "", "the tool never ran: {r:?}");
    assert_eq!(f.read("out/o.txt").expect("out/o.txt is still there"), "old\n");
    assert_eq!(std::fs::read_dir(f.ws("out")).expect("out/ is readable").count(), 1, "nothing new in out/");
}

#[test]
fn an_audit_path_that_is_a_directory_refuses_the_run() {
    let f = fixture(&format!("{MANIFEST}\n[audit]\npath = \"logdir\"\n"));
    std::fs::create_dir(f.path("logdir")).unwrap();
    let r = f.run("probe", &["write", "out/o.txt", "pwned"]);
    assert_refused_before_running(&f, &r, &f.path("logdir").display().to_string());
    assert_eq!(std::fs::read_dir(f.path("logdir")).unwrap().count(), 0);
}

#[test]
fn an_audit_directory_that_cannot_be_created_refuses_the_run() {
    let f = fixture(&format!("{MANIFEST}\n[audit]\npath = \"blocker/audit.jsonl\"\n"));
    std::fs::write(f.path("blocker"), "a regular file\n").unwrap();
    let r = f.run("probe", &["write", "out/o.txt", "pwned"]);
    assert_refused_before_running(&f, &r, "blocker/audit.jsonl");
    assert_eq!(std::fs::read_to_string(f.path("blocker")).unwrap(), "a regular file\n");
}

#[test]
fn a_full_disk_mid_run_refuses_the_write_and_leaves_a_verifiable_log() {
    let f = fixture(MANIFEST);
    // Pre-fill the log well beyond anything else the run writes under the
    // same file-size limit: wasmtime puts the guest's memory image in a
    // memfd, and a limit below its size fails the run before the tool
    // starts (exit 134), which is not what this test is about.
    let component_size = std::fs::metadata(guest("probe")).unwrap().len();
    while std::fs::metadata(f.audit()).map_or(0, |m| m.len()) < 2 * component_size + (256 << 10) {
        let r = f.run("probe", &["repeat", "300", "stat", "src"]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    // A reference run with the same manifest, workspace and arguments gives
    // the sizes of the events.
    let args = ["stat", "src", "+", "write", "out/o.txt", "changed"];
    let before_ref = lines_of(&std::fs::read(f.audit()).unwrap()).len();
    let r = f.run_with("probe", &["--task-id", "ref-task", "--intent", "x"], &args);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(f.read("out/o.txt").unwrap(), "changed");
    std::fs::write(f.ws("out/o.txt"), "old\n").unwrap();
    let prefill = std::fs::read(f.audit()).unwrap();
    let lines = lines_of(&prefill);
    let kinds: Vec<String> =
        parse(&prefill)[before_ref..].iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["task-start", "call", "result", "call", "result", "task-end"]);
    let p = prefill.len() as u64;
    let next = lines.len() as u64;
    let digits = |n: u64| n.to_string().len() as u64;
    // Line i of the new run: the reference's line i with a longer intent
    // (plain ASCII: one byte a char; every event carries it), its own seq
    // and a task id of the same length. Its `duration_us` may differ by a
    // digit or two: the margin below absorbs that.
    let len = |i: usize, intent: u64| {
        lines[before_ref + i].len() as u64 + (intent - 1) + digits(next + i as u64) - digits((before_ref + i) as u64)
    };
    // task-start, and the stat's call and result (written before its line
    // reaches stdout) must fit; the write's call event must not.
    let fits = |intent: u64| (0..3).map(|i| len(i, intent)).sum::<u64>();
    let limit = (p + fits(1) + 400).div_ceil(1024) * 1024;
    let gap = limit - p - fits(1);
    let margin = 150 + (gap - 150) % 3;
    let intent_len = 1 + (gap - margin) / 3;
    assert!(intent_len <= 1024, "the run's intent is at most 1 KiB");
    assert_eq!(p + fits(intent_len), limit - margin);
    assert!(len(3, intent_len) > margin + 100, "the write's call event cannot fit");
    let intent = "p".repeat(intent_len as usize);
    let blocks = limit / common::ulimit_f_unit(f.dir.path());

    let cmd = f.command("probe", &["--task-id", "cut-task", "--intent", &intent], &args);
    let r = to_run(common::with_file_size_limit(&cmd, blocks).output().unwrap());
    assert_eq!(r.code, 126, "{r:?}");
    assert!(r.stderr.contains(&format!("audit log `{}`", f.audit().display())), "names the log: {r:?}");
    // The tool ran (its first call's output reached stdout) ...
    assert!(r.stdout.starts_with("\"stat\" \"src\": ok"), "{r:?}");
    // ... and its write did not happen.
    assert_eq!(f.read("out/o.txt").unwrap(), "old\n");
    assert_eq!(std::fs::read_dir(f.ws("out")).unwrap().count(), 1, "no temporary file left");
    // The failed append was cut back: the log ends with the stat's result.
    let after = std::fs::read(f.audit()).unwrap();
    assert!(after.starts_with(&prefill));
    assert!(after.len() as u64 <= limit);
    assert!(after.ends_with(b"\n"), "a torn event was left behind");
    let ev = parse(&after);
    let kinds: Vec<&str> = ev[next as usize..].iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["task-start", "call", "result"], "only what fitted, whole");
    assert_eq!(ev[next as usize]["task"], "cut-task");
    assert_eq!(ev[next as usize]["intent"], intent.as_str());
    assert_eq!(ev[next as usize + 1]["capability"], "fs.stat");
    assert_eq!(assert_intact(&f.audit()), next + 3);
}

// A torn last line is cut off by the next run and recorded: see
// audit_crash.rs.

#[test]
fn a_held_lock_makes_the_run_wait_then_fail_closed() {
    let f = fixture(MANIFEST);
    assert_eq!(f.run("probe", &["stat", "src"]).code, 0);
    let holder = std::fs::File::open(f.audit()).unwrap();

    // A lock released while the run waits for it: the run goes ahead.
    holder.lock().unwrap();
    let child = f.command("probe", &[], &["write", "out/o.txt", "first"]).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    holder.unlock().unwrap();
    let r = to_run(child.wait_with_output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(f.read("out/o.txt").unwrap(), "first");

    // A lock held past the runtime's bound (10 s): refused, fail-closed.
    let before = std::fs::read(f.audit()).unwrap();
    holder.lock().unwrap();
    let r = f.run("probe", &["write", "out/o.txt", "second"]);
    holder.unlock().unwrap();
    assert_eq!(r.code, 126, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "one line: {r:?}");
    assert!(r.stderr.contains(&format!("audit log `{}`", f.audit().display())), "{r:?}");
    assert!(r.stderr.contains("lock"), "names the lock: {r:?}");
    assert_eq!(r.stdout, "");
    assert_eq!(f.read("out/o.txt").unwrap(), "first");
    assert_eq!(std::fs::read(f.audit()).unwrap(), before);
    assert_intact(&f.audit());
}

// --- The write-ahead rule ---------------------------------------------------

fn find_event<'a>(ev: &'a [Value], kind: &str, target: &str) -> Option<&'a Value> {
    ev.iter().find(|e| e["kind"] == kind && e["capability"] == "fs.read" && e["target"] == target)
}

#[test]
fn data_a_tool_read_reaches_its_caller_only_after_the_read_is_on_record() {
    let f = fixture(MANIFEST);
    // Instead of `sleep` after the reads (which would make "mid-run" a
    // matter of timing), the tool cats 2 MiB: far more than a pipe holds,
    // so while this test does not drain stdout the tool is blocked mid-run
    // and cannot reach its end, however slow this machine is.
    let big: String = (0..131_072).map(|i| format!("big line {i:06}\n")).collect();
    f.file("src/big.txt", &big);
    let mut child = f
        .command("probe", &[], &["read", "src/a.txt", "+", "cat", "src/big.txt"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first, "\"read\" \"src/a.txt\": ok 6 bytes \"hello\\n\"\n");
    // The read's data has reached us: its events must be in the file.
    let snap = log_events(&f.audit());
    let call = find_event(&snap, "call", "src/a.txt").expect("the read's call event is in the log");
    assert_eq!(call["decision"], "allow");
    let result = find_event(&snap, "result", "src/a.txt").expect("the read's result event is in the log");
    assert_eq!(result["outcome"], "ok");
    assert_eq!(result["bytes_out"], 6);
    assert!(!snap.iter().any(|e| e["kind"] == "task-end"), "the snapshot was taken mid-run");

    // The first bytes of big.txt: its read is on record too.
    let mut chunk = vec![0; 4096];
    out.read_exact(&mut chunk).unwrap();
    assert!(chunk.starts_with(b"big line 000000\n"), "{}", String::from_utf8_lossy(&chunk[..64]));
    let snap = log_events(&f.audit());
    assert!(find_event(&snap, "call", "src/big.txt").is_some(), "big.txt's data arrived before its call event");
    let result = find_event(&snap, "result", "src/big.txt").expect("big.txt's data arrived before its result event");
    assert_eq!(result["bytes_out"], big.len());

    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    chunk.extend_from_slice(&rest);
    assert_eq!(String::from_utf8(chunk).unwrap(), format!("{big}\"cat\" \"src/big.txt\": ok {} bytes\n", big.len()));
    assert!(child.wait().unwrap().success());
    assert_intact(&f.audit());
}

#[test]
fn an_approved_write_is_on_record_before_the_file_changes() {
    let f = fixture(MANIFEST);
    // Ten auto-approved writes of distinct contents, then many more of one
    // content inside `repeat`, which prints nothing until the loop ends (so
    // no output flushes the log meanwhile: only the write-ahead rule does).
    let contents: Vec<String> = (1..=10).map(|i| format!("v{i}")).collect();
    let mut args = Vec::new();
    for c in &contents {
        args.extend(["write", "out/o.txt", c.as_str(), "+"]);
    }
    args.extend(["repeat", "400", "write", "out/o.txt", "final"]);
    let mut child = f.command("probe", &[], &args).spawn().unwrap();
    // Whenever the workspace shows new bytes, the log (read after the
    // workspace) must already hold the call event that announced exactly
    // those bytes. The fsync itself cannot be observed from here (that
    // would take a crash); this checks that the log is written first.
    let mut seen = BTreeSet::new();
    loop {
        let done = child.try_wait().unwrap().is_some();
        let content = std::fs::read(f.ws("out/o.txt")).unwrap();
        if content != b"old\n" {
            let sha = sha256(&content);
            let snap = log_events(&f.audit());
            assert!(
                snap.iter().any(|e| e["kind"] == "call" && e["target"] == "out/o.txt" && e["content_sha256"] == sha),
                "out/o.txt holds {:?} but no call event for those bytes is in the log",
                String::from_utf8_lossy(&content)
            );
            seen.insert(content);
        }
        if done {
            break;
        }
        std::thread::yield_now();
    }
    let r = to_run(child.wait_with_output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.line(r#""repeat" "400" "write" "out/o.txt" "final""#), "ok=400");
    eprintln!("observed {} distinct contents of out/o.txt while the run went on", seen.len());
    assert_eq!(f.read("out/o.txt").unwrap(), "final");

    // Every write: its call (with the exact bytes' size and hash) comes
    // before its result, and the results say what happened.
    let ev = f.events();
    let calls: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "call").collect();
    assert_eq!(calls.len(), contents.len() + 400);
    let expected = contents.iter().map(String::as_str).chain(std::iter::repeat_n("final", 400));
    for (call, c) in calls.iter().zip(expected) {
        assert_eq!(call["capability"], "fs.write", "{call}");
        assert_eq!(call["decision"], "allow", "{call}");
        assert_eq!(call["rule"], "fs.auto_approve:out/**", "{call}");
        assert_eq!(call["size"], c.len(), "{call}");
        assert_eq!(call["content_sha256"], sha256(c.as_bytes()), "{call}");
        let result = &ev[call["seq"].as_u64().unwrap() as usize + 1];
        assert_eq!(result["kind"], "result", "{result}");
        assert_eq!(result["outcome"], "ok", "{result}");
        assert_eq!(result["bytes_in"], c.len(), "{result}");
        assert!(call["ts"].as_str() <= result["ts"].as_str());
    }
    assert_intact(&f.audit());
}

// --- Refusals carry their rule ------------------------------------------------

#[test]
fn every_refused_call_records_its_decision_rule_and_reason() {
    let f = fixture(&format!("{MANIFEST}\n[limits]\ncalls = 9\n"));
    f.file("notes.txt", "not granted\n");
    let r = f.run(
        "probe",
        &[
            "read",
            "src/.env",
            "+",
            "read",
            "notes.txt",
            "+",
            "read",
            "../outside/secret.txt",
            "+",
            "read",
            "/etc/passwd",
            "+",
            "write",
            "docs/x.txt",
            "y",
            "+",
            "mkdir",
            "esc:src/a\\0b",
            "+",
            "http",
            "http://example.com/",
            "+",
            "run",
            "ls",
            "+",
            "write",
            "notes/n.txt",
            "x",
            "+",
            "repeat",
            "3",
            "stat",
            "src",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.line(r#""repeat" "3" "stat" "src""#), "limit-exceeded=3");
    let ev = f.events();
    let calls: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "call").collect();
    let decisions: Vec<&str> = calls.iter().map(|c| c["decision"].as_str().unwrap()).collect();
    assert_eq!(
        decisions,
        ["deny", "deny", "deny", "invalid", "deny", "invalid", "deny", "deny", "ask", "limit", "limit", "limit"]
    );
    let rules: Vec<&str> = calls.iter().map(|c| c["rule"].as_str().unwrap()).collect();
    assert_eq!(rules[0], "fs.deny:**/.env");
    assert_eq!(rules[2], "builtin:outside-workspace");
    assert_eq!(rules[9], "limits.calls");
    for call in &calls {
        assert!(!call["rule"].as_str().unwrap().is_empty(), "{call}");
        let seq = call["seq"].as_u64().unwrap() as usize;
        let mut next = seq + 1;
        let outcome = match call["decision"].as_str().unwrap() {
            "deny" => "denied",
            "invalid" => "invalid",
            "limit" => "limit-exceeded",
            "ask" => {
                let approval = &ev[next];
                assert_eq!(approval["kind"], "approval", "{approval}");
                assert_eq!(approval["decision"], "rejected", "{approval}");
                assert_eq!(approval["approval"]["via"], "deny", "{approval}");
                assert_eq!(approval["approval"]["by"], json!([]), "{approval}");
                assert!(!approval["reason"].as_str().unwrap_or("").is_empty(), "{approval}");
                next += 1;
                "not-approved"
            }
            other => panic!("unexpected decision {other}: {call}"),
        };
        let result = &ev[next];
        assert_eq!(result["kind"], "result", "{result}");
        assert_eq!(result["capability"], call["capability"], "{result}");
        assert_eq!(result["target"], call["target"], "{result}");
        assert_eq!(result["outcome"], outcome, "{result}");
        assert!(!result["reason"].as_str().unwrap_or("").is_empty(), "a reason: {result}");
        assert_eq!(result["bytes_out"], 0, "{result}");
    }
    let end = ev.last().unwrap();
    assert_eq!(end["kind"], "task-end");
    assert_eq!(end["calls"], 12);
    assert_intact(&f.audit());
}

// --- Rotation and prune -------------------------------------------------------

/// The log rotates at 1 KiB (the smallest size allowed) and records a
/// retention period.
fn rotating(retention: &str) -> String {
    format!("{MANIFEST}\n[audit]\npath = \"audit.jsonl\"\nrotate = \"1 KiB\"\nretention = \"{retention}\"\n")
}

/// `(first seq, lines)` of each file of a rotated log, segments first.
fn log_files(path: &Path) -> Vec<(PathBuf, Vec<Value>)> {
    let mut files: Vec<PathBuf> =
        sandbox_audit::read::segments(path).expect("segments are listed").into_iter().map(|(_, p)| p).collect();
    files.push(path.to_owned());
    files.into_iter().map(|p| (p.clone(), log_events(&p))).collect()
}

#[test]
fn concurrent_runs_rotating_one_log_keep_one_chain_across_its_segments() {
    const RUNS: usize = 3;
    let f = fixture(&rotating("6y"));
    let children: Vec<_> = (0..RUNS)
        .map(|i| {
            let task = format!("rot-{i}");
            let out = format!("out/r{i}.txt");
            let args = ["repeat", "15", "read", "src/a.txt", "+", "repeat", "15", "write", &out, "x"];
            (task.clone(), f.command("probe", &["--task-id", &task], &args).spawn().unwrap())
        })
        .collect();
    for (task, child) in children {
        let r = to_run(child.wait_with_output().unwrap());
        assert_eq!(r.code, 0, "{task}: {r:?}");
    }
    let v = f.verify();
    assert_eq!(v.code, 0, "{v:?}");
    let files = log_files(&f.audit());
    assert!(files.len() > 10, "the log rotated: {} files", files.len());
    let mut next = 0u64;
    let mut prev = format!("sha256:{}", "0".repeat(64));
    for (path, ev) in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        if path != &f.audit() {
            // Named for its first seq; never written to after its rotation.
            assert_eq!(name, format!("audit.jsonl.{next:012}"));
            assert!(!ev.is_empty(), "{name}");
        }
        for e in ev {
            assert_eq!(e["seq"], next, "{name}: seqs run on across the segments");
            assert_eq!(e["prev"], prev.as_str(), "{name}: the chain crosses the boundary");
            prev = e["hash"].as_str().unwrap().to_owned();
            next += 1;
        }
    }
    assert_eq!(next as usize, RUNS * (2 * 30 + 2));
    assert!(v.stdout.starts_with(&format!("ok: {next} events, {RUNS} tasks")), "{v:?}");
    let starts: Vec<&Value> = files.iter().flat_map(|(_, ev)| ev).filter(|e| e["kind"] == "task-start").collect();
    assert_eq!(starts.len(), RUNS);
    assert!(starts.iter().all(|e| e["retention"] == "6y"), "task-start records the retention");

    // A removed middle segment is reported, naming the gap.
    let middle = &files[files.len() / 2].0;
    let first_missing = files[files.len() / 2].1[0]["seq"].as_u64().unwrap();
    std::fs::remove_file(middle).unwrap();
    let r = f.verify();
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains(&format!("continues at seq {first_missing}")), "{r:?}");
}

fn prune(f: &Fixture, before: &str, extra: &[&str]) -> Run {
    to_run(
        sandbox()
            .args(["audit", "prune"])
            .arg(f.audit())
            .args(["--before", before])
            .args(extra)
            .output()
            .expect("sandbox runs"),
    )
}

fn rfc3339_ago(ago: Duration) -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now() - ago).to_string()
}

#[test]
fn audit_prune_deletes_old_segments_only_outside_the_retention_period() {
    let f = fixture(&rotating("1s"));
    for i in 0..4 {
        let r = f.run_with("probe", &["--task-id", &format!("old-{i}")], &["repeat", "6", "read", "src/a.txt"]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    std::thread::sleep(Duration::from_millis(1200));
    let segments = sandbox_audit::read::segments(&f.audit()).unwrap();
    assert!(segments.len() >= 4, "{segments:?}");
    let listing = |f: &Fixture| -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(f.dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    };
    let before = listing(&f);

    // Refusals: one line, exit 2, nothing changed.
    for (when, extra, why) in [
        (rfc3339_ago(Duration::ZERO), &[][..], "within the retention period of 1s (as recorded at seq"),
        ("2026-13-01".to_owned(), &[][..], "--before: `2026-13-01` is not a date"),
        (
            rfc3339_ago(Duration::from_secs(2)),
            &["--retention", "1h"][..],
            "within the retention period of 1h (as given)",
        ),
        (
            rfc3339_ago(Duration::from_secs(2)),
            &["--retention", "forever"][..],
            "--retention: `forever` is not a retention period",
        ),
    ] {
        let r = prune(&f, &when, extra);
        assert_eq!(r.code, 2, "{when} {extra:?}: {r:?}");
        assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
        assert!(r.stderr.contains(why), "{when} {extra:?}: {r:?}");
        assert_eq!(listing(&f), before);
    }

    let r = prune(&f, &rfc3339_ago(Duration::from_millis(1100)), &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("retention: 1s (as recorded by the task-start at seq"), "{r:?}");
    assert!(r.stdout.contains("pruned: seq 0..="), "{r:?}");
    let kept = sandbox_audit::read::segments(&f.audit()).unwrap();
    assert!(kept.len() < segments.len(), "{kept:?}");
    assert!(f.audit().exists(), "the live file is never deleted");
    assert!(f.path("audit.jsonl.pruned").exists());
    let first_kept = kept.first().map_or_else(|| log_events(&f.audit())[0]["seq"].as_u64().unwrap(), |(s, _)| *s);
    assert!(r.stdout.contains(&format!("the log now starts at seq {first_kept}")), "{r:?}");
    let v = f.verify();
    assert_eq!(v.code, 0, "a pruned log still verifies: {v:?}");
    let last = log_events(&f.audit()).pop().unwrap();
    assert_eq!((last["kind"].as_str(), last["rule"].as_str()), (Some("finding"), Some("audit.prune")), "{last}");
    assert_eq!(last["user"], "tester");

    // Runs go on; the log still verifies; without the record it does not.
    assert_eq!(f.run("probe", &["read", "src/a.txt"]).code, 0);
    assert_eq!(f.verify().code, 0);
    std::fs::rename(f.path("audit.jsonl.pruned"), f.path("elsewhere")).unwrap();
    let v = f.verify();
    assert_eq!(v.code, 1, "{v:?}");
    assert!(v.stderr.contains("no prune record"), "{v:?}");
}
