//! The approval seam: writes the manifest lets through only with a human's
//! approval. Without an approver they are rejected; with `--approve tty` a
//! real pseudo-terminal (the run's controlling terminal) answers the
//! prompt. Each test checks the typed error, the file on disk and the
//! `call`, `approval` and `result` events.

mod common;
use common::*;

use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const GRANTS: &str = r#"
[fs]
read = ["src/**"]
write = ["src/**"]
deny = ["src/secret/**"]

[approval]
timeout = "30s"
"#;

const OLD: &str = "pub fn f() {}\n";
const NEW: &str = "pub fn g() {}\n";
const PROMPT: &str = "approve? type y and Enter";
/// Bounds every wait on a run, so a broken approver fails a test instead
/// of hanging it.
const PATIENCE: Duration = Duration::from_secs(60);

fn fixture(extra: &str) -> Fixture {
    let f = Fixture::new(&format!("{GRANTS}{extra}"));
    f.file("src/app/lib.rs", OLD).file("src/app/old.rs", "old\n").file("src/app/gone.rs", "gone\n");
    f
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The `approval` and `result` events of the `call` event `call`, checked
/// to follow it directly: nothing happens between asking and answering.
#[allow(clippy::unwrap_used)] // a helper that cannot do its part fails the test
fn approval_and_result<'a>(ev: &'a [Value], call: &Value) -> (&'a Value, &'a Value) {
    let seq = call["seq"].as_u64().unwrap() as usize;
    let (approval, result) = (&ev[seq + 1], &ev[seq + 2]);
    assert_eq!(approval["kind"], "approval", "{approval}");
    assert_eq!(result["kind"], "result", "{result}");
    for field in ["capability", "target", "dest", "rule", "content_sha256"] {
        assert_eq!(approval[field], call[field], "{field} differs: {call} / {approval}");
    }
    assert_eq!(result["capability"], call["capability"]);
    (approval, result)
}

/// The single `fs.write` call of a run with its approval and result.
#[allow(clippy::unwrap_used)] // a helper that cannot do its part fails the test
fn the_write(f: &Fixture) -> (Value, Value, Value) {
    let ev = f.events();
    let calls: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "call" && e["capability"] == "fs.write").collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["decision"], "ask");
    let (approval, result) = approval_and_result(&ev, calls[0]);
    (calls[0].clone(), approval.clone(), result.clone())
}

/// A `sandbox run` whose stdin, stdout and stderr are a pseudo-terminal,
/// by default also its controlling terminal (so `/dev/tty` reaches it).
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
        Tty::spawn_with(f, opts, args, true)
    }

    fn spawn_with(f: &Fixture, opts: &[&str], args: &[&str], controlling: bool) -> Tty {
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
        cmd.set_controlling_tty(controlling);
        let child = pair.slave.spawn_command(cmd).unwrap();
        // Only the child holds the slave now: its exit ends the reader.
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

    /// Everything the terminal showed so far, raw.
    fn raw(&self) -> Vec<u8> {
        self.seen.lock().unwrap().clone()
    }

    /// Everything the terminal showed so far, with `\r\n` as `\n`.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw()).replace("\r\n", "\n")
    }

    /// Waits until the terminal shows the approval prompt.
    fn wait_for_prompt(&mut self) {
        let shown = wait_for(PATIENCE, || self.text().contains(PROMPT));
        if !shown {
            let _ = self.child.kill();
            panic!("no approval prompt at the terminal; it showed:\n{}", self.text());
        }
    }

    /// Types `keys` at the terminal.
    fn type_keys(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Waits for the run to end: its exit code and what the terminal showed.
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

/// The prompt's text: from its header to `[y/N]: `.
fn prompt_of(screen: &str) -> &str {
    let start = screen.find("sandbox: approval needed").unwrap_or_else(|| panic!("no prompt in:\n{screen}"));
    let end = screen[start..].find("[y/N]: ").unwrap_or_else(|| panic!("no prompt end in:\n{screen}"));
    &screen[start..start + end + "[y/N]: ".len()]
}

#[test]
fn a_deny_approver_rejects_every_kind_of_change_and_records_why() {
    // `--approve deny` overrides a manifest asking for the terminal; the
    // manifest's own `via = "deny"` gives the same.
    for (via, opts) in [("tty", &["--approve", "deny"][..]), ("deny", &[][..])] {
        let f = Fixture::new(&GRANTS.replace("[approval]\n", &format!("[approval]\nvia = \"{via}\"\n")));
        f.file("src/app/lib.rs", OLD).file("src/app/old.rs", "old\n").file("src/app/gone.rs", "gone\n");
        let before = tree_digest(&f.path("ws"));
        let r = f.run_with(
            "probe",
            opts,
            &[
                "write",
                "src/app/lib.rs",
                NEW,
                "+",
                "append",
                "src/app/lib.rs",
                "more",
                "+",
                "mkdir",
                "src/app/new",
                "+",
                "remove",
                "src/app/gone.rs",
                "+",
                "rename",
                "src/app/old.rs",
                "src/app/moved.rs",
            ],
        );
        assert_eq!(r.code, 0, "{r:?}");
        for line in r.stdout.lines() {
            assert!(line.contains(": not-approved: "), "{opts:?}: {line}");
        }
        assert_eq!(r.stdout.lines().count(), 5, "{}", r.stdout);
        assert_eq!(tree_digest(&f.path("ws")), before);
        let ev = f.events();
        assert_eq!(ev[0]["approver"], "deny", "{}", ev[0]);
        let asked: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "call").collect();
        assert_eq!(asked.len(), 5);
        for call in asked {
            assert_eq!(call["decision"], "ask", "{call}");
            let (approval, result) = approval_and_result(&ev, call);
            assert_eq!(approval["decision"], "rejected");
            assert_eq!(approval["approval"]["via"], "deny");
            assert_eq!(approval["approval"]["by"], json!([]));
            assert!(approval["approval"]["at"].as_str().unwrap().ends_with('Z'), "{approval}");
            assert!(approval["reason"].as_str().unwrap().contains("deny"), "{approval}");
            assert_eq!(result["outcome"], "not-approved");
            assert_eq!(result["reason"], approval["reason"]);
        }
        let rename = &f.calls("fs.rename")[0];
        assert_eq!(rename["dest"], "src/app/moved.rs");
        assert_eq!(f.calls("fs.write")[0]["content_sha256"], sha256(NEW.as_bytes()));
        assert_eq!(f.verify().code, 0);
    }
}

#[test]
fn a_refused_call_is_never_put_to_the_approver() {
    let f = fixture("");
    let r =
        f.run_with("probe", &["--approve", "deny"], &["write", "src/secret/k.txt", "x", "+", "write", "x.txt", "x"]);
    assert!(r.line(r#""write" "src/secret/k.txt" "x""#).starts_with("denied:"), "{}", r.stdout);
    assert!(r.line(r#""write" "x.txt" "x""#).starts_with("denied:"), "{}", r.stdout);
    assert!(f.events().iter().all(|e| e["kind"] != "approval"));
}

#[test]
fn the_tty_approver_without_a_controlling_terminal_rejects() {
    let f = fixture("");
    // A terminal for stdio, but not the run's controlling terminal.
    let tty = Tty::spawn_with(&f, &["--approve", "tty"], &["write", "src/app/lib.rs", NEW], false);
    let (code, screen) = tty.finish();
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains(": not-approved: "), "{screen}");
    assert!(!screen.contains(PROMPT), "{screen}");
    assert_eq!(f.read("src/app/lib.rs").unwrap(), OLD);
    let (_, approval, result) = the_write(&f);
    assert_eq!(approval["decision"], "rejected");
    assert_eq!(approval["approval"]["via"], "tty");
    assert_eq!(approval["approval"]["by"], json!([]));
    assert!(approval["reason"].as_str().unwrap().contains("no controlling terminal"), "{approval}");
    assert_eq!(result["outcome"], "not-approved");
}

#[test]
fn y_at_the_terminal_approves_and_the_write_happens() {
    let f = fixture("");
    let mut tty = Tty::spawn(&f, &["--approve", "tty"], &["write", "src/app/lib.rs", NEW]);
    tty.wait_for_prompt();
    tty.type_keys("y\n");
    let (code, screen) = tty.finish();
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("(approved)"), "{screen}");
    assert!(screen.contains(r#""write" "src/app/lib.rs" "pub fn g() {}\n": ok written"#), "{screen}");
    assert_eq!(f.read("src/app/lib.rs").unwrap(), NEW);
    let (call, approval, result) = the_write(&f);
    assert_eq!(call["rule"], "fs.write:src/**");
    assert_eq!(approval["decision"], "approved");
    assert_eq!(approval["approval"]["via"], "tty");
    assert_eq!(approval["approval"]["by"], json!(["tester"]));
    assert_eq!(result["outcome"], "ok");
    assert_eq!(f.events()[0]["approver"], "tty");
    assert_eq!(f.verify().code, 0);
}

#[test]
fn n_at_the_terminal_rejects_and_nothing_changes() {
    let f = fixture("");
    let mut tty = Tty::spawn(&f, &["--approve", "tty"], &["write", "src/app/lib.rs", NEW]);
    tty.wait_for_prompt();
    tty.type_keys("n\n");
    let (code, screen) = tty.finish();
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("(rejected)"), "{screen}");
    assert!(screen.contains(r#""write" "src/app/lib.rs" "pub fn g() {}\n": not-approved: "#), "{screen}");
    assert_eq!(f.read("src/app/lib.rs").unwrap(), OLD);
    let (_, approval, result) = the_write(&f);
    assert_eq!(approval["decision"], "rejected");
    assert_eq!(approval["approval"]["via"], "tty");
    assert_eq!(approval["approval"]["by"], json!(["tester"]));
    assert_eq!(result["outcome"], "not-approved");
}

#[test]
fn no_answer_in_time_is_a_rejection() {
    let f = fixture("");
    std::fs::write(f.manifest(), std::fs::read_to_string(f.manifest()).unwrap().replace("\"30s\"", "\"2s\"")).unwrap();
    let mut tty = Tty::spawn(&f, &["--approve", "tty"], &["write", "src/app/lib.rs", NEW]);
    tty.wait_for_prompt();
    // Say nothing; the writer stays open (dropping it would type EOF).
    let (code, screen) = tty.finish();
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains(": not-approved: "), "{screen}");
    assert_eq!(f.read("src/app/lib.rs").unwrap(), OLD);
    let (_, approval, result) = the_write(&f);
    assert_eq!(approval["decision"], "rejected");
    assert_eq!(approval["approval"]["via"], "tty");
    assert_eq!(approval["approval"]["by"], json!([]));
    let reason = approval["reason"].as_str().unwrap();
    assert!(reason.contains("no answer") && reason.contains("2s"), "{reason}");
    assert_eq!(result["outcome"], "not-approved");
    assert_eq!(result["reason"], reason);
}

#[test]
fn keys_typed_before_the_prompt_do_not_answer_it() {
    let f = fixture("");
    std::fs::write(f.manifest(), std::fs::read_to_string(f.manifest()).unwrap().replace("\"30s\"", "\"2s\"")).unwrap();
    let mut tty = Tty::spawn(&f, &["--approve", "tty"], &["write", "src/app/lib.rs", NEW]);
    tty.type_keys("y\n");
    tty.wait_for_prompt();
    let (code, screen) = tty.finish();
    assert_eq!(code, 0, "{screen}");
    // The terminal echoed the keys before it showed the question.
    let typed = screen.find("y\n").unwrap_or_else(|| panic!("no echo of the typed keys:\n{screen}"));
    assert!(typed < screen.find("approval needed").unwrap(), "the keys came after the prompt:\n{screen}");
    assert!(!screen.contains("(approved)"), "{screen}");
    assert_eq!(f.read("src/app/lib.rs").unwrap(), OLD);
    let (_, approval, result) = the_write(&f);
    assert_eq!(approval["decision"], "rejected");
    assert!(approval["reason"].as_str().unwrap().contains("no answer"), "{approval}");
    assert_eq!(result["outcome"], "not-approved");
}

#[test]
fn tool_text_in_the_prompt_is_inert() {
    let f = fixture("");
    let mut tty = Tty::spawn(
        &f,
        &["--approve", "tty"],
        &["intent", "esc:\\x1b[2J\\x9b31mevil\u{202e}txt.exe\\nline two", "+", "write", "src/app/lib.rs", NEW],
    );
    tty.wait_for_prompt();
    let raw = tty.raw();
    tty.type_keys("n\n");
    let (code, screen) = tty.finish();
    assert_eq!(code, 0, "{screen}");
    let prompt = prompt_of(&screen);
    assert!(
        prompt.contains("| intent      \\x1b[2J\\x9b31mevil\\u{202e}txt.exe\\x0aline two\n"),
        "the intent is not shown escaped:\n{prompt}"
    );
    assert!(!prompt.contains(['\u{1b}', '\u{9b}', '\u{202e}']), "{prompt:?}");
    // Byte for byte, from the header to the question, no ESC reached the
    // terminal.
    let find = |what: &str| raw.windows(what.len()).position(|w| w == what.as_bytes()).unwrap();
    let shown = &raw[find("sandbox: approval needed")..find(PROMPT)];
    assert!(!shown.contains(&0x1b), "{:?}", String::from_utf8_lossy(shown));
    // The log keeps the text as it was, JSON-escaped on one line.
    let (call, ..) = the_write(&f);
    assert_eq!(call["intent"], "\u{1b}[2J\u{9b}31mevil\u{202e}txt.exe\nline two");
    assert_eq!(f.verify().code, 0);
}

#[test]
fn the_prompt_shows_what_will_change() {
    let f = fixture("");
    f.file("src/app/lib.rs", "// lib\npub fn f() {}\n// end\n");
    let proposed = "// lib\npub fn g() {}\n// end\n";
    let mut tty = Tty::spawn(
        &f,
        &["--approve", "tty", "--task-id", "task-42"],
        &["intent", "rename f to g", "+", "write", "src/app/lib.rs", proposed],
    );
    tty.wait_for_prompt();
    tty.type_keys("n\n");
    let (_, screen) = tty.finish();
    let prompt = prompt_of(&screen);
    for row in [
        "| tool        probe\n",
        "| task        task-42\n",
        "| user        alice\n",
        "| intent      rename f to g\n",
        "| capability  fs.write\n",
        "| target      src/app/lib.rs\n",
        "| rule        fs.write:src/**\n",
        &format!("| size        {} bytes, {}\n", proposed.len(), sha256(proposed.as_bytes())),
        "| change:\n",
        "|   --- current\n",
        "|   +++ proposed\n",
        "|    // lib\n",
        "|   -pub fn f() {}\n",
        "|   +pub fn g() {}\n",
        "|    // end\n",
        "(30s to answer)",
    ] {
        assert!(prompt.contains(row), "no {row:?} in the prompt:\n{prompt}");
    }
}

/// `[redact]`: the reviewer sees the redacted preview and intent, the log
/// holds neither secret, and the approval binds the real bytes, which are
/// what is written.
#[test]
fn the_prompt_shows_redacted_text_and_the_approval_binds_the_real_bytes() {
    let f = fixture("");
    let key = "AKIAZ7VQ3XK2LM4NP5RT";
    let proposed = format!("// lib\nconst KEY: &str = \"{key}\";\n");
    let mut tty = Tty::spawn(
        &f,
        &["--approve", "tty"],
        &["intent", "charge card 4111 1111 1111 1111", "+", "write", "src/app/lib.rs", &proposed],
    );
    tty.wait_for_prompt();
    tty.type_keys("y\n");
    let (code, screen) = tty.finish();
    assert_eq!(code, 0, "{screen}");
    let prompt = prompt_of(&screen);
    assert!(prompt.contains("| intent      charge card [redacted:card-number]\n"), "{prompt}");
    // The preview's marker carries the reviewer-side fingerprint.
    assert!(prompt.contains("|   +const KEY: &str = \"[redacted:aws-access-key#"), "{prompt}");
    assert!(!prompt.contains(key) && !prompt.contains("4111 1111"), "{prompt}");
    assert_eq!(f.read("src/app/lib.rs").as_deref(), Some(proposed.as_str()));
    let (call, approval, result) = the_write(&f);
    assert_eq!(call["content_sha256"], sha256(proposed.as_bytes()));
    assert_eq!(approval["decision"], "approved");
    assert_eq!(approval["redactions"], json!({"aws-access-key": 1, "card-number": 1}), "{approval}");
    assert_eq!(call["redactions"], json!({"card-number": 1}), "{call}");
    assert_eq!(result["outcome"], "ok");
    let log = std::fs::read_to_string(f.audit()).unwrap();
    assert!(!log.contains(key) && !log.contains("4111 1111"), "{log}");
}

#[test]
fn waiting_for_approval_does_not_count_against_the_time_limit() {
    let f = fixture("\n[limits]\ntime = \"2s\"\n");
    let mut tty =
        Tty::spawn(&f, &["--approve", "tty"], &["write", "src/app/lib.rs", NEW, "+", "read", "src/app/lib.rs"]);
    tty.wait_for_prompt();
    // On purpose: the human takes longer than the run's whole time limit.
    std::thread::sleep(Duration::from_secs(3));
    tty.type_keys("y\n");
    let (code, screen) = tty.finish();
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains(r#""read" "src/app/lib.rs": ok 14 bytes"#), "{screen}");
    assert_eq!(f.read("src/app/lib.rs").unwrap(), NEW);
    let end = f.events().pop().unwrap();
    assert_eq!(end["kind"], "task-end");
    assert_eq!(end["status"], "exit", "{end}");
    assert_eq!(end["exit_code"], 0);
}

#[test]
fn an_approval_covers_exactly_the_approved_content_once() {
    let f = fixture("");
    let second = "pub fn h() {}\n";
    let mut tty = Tty::spawn(
        &f,
        &["--approve", "tty"],
        &["write", "src/app/lib.rs", NEW, "+", "write", "src/app/lib.rs", second],
    );
    tty.wait_for_prompt();
    tty.type_keys("y\n");
    // The same file again, other bytes: a new question, answered no.
    let asked_twice = wait_for(PATIENCE, || tty.text().matches(PROMPT).count() == 2);
    assert!(asked_twice, "{}", tty.text());
    tty.type_keys("n\n");
    let (code, screen) = tty.finish();
    assert_eq!(code, 0, "{screen}");
    let on_disk = std::fs::read(f.ws("src/app/lib.rs")).unwrap();
    assert_eq!(on_disk, NEW.as_bytes());
    let ev = f.events();
    let writes: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "call" && e["capability"] == "fs.write").collect();
    assert_eq!(writes.len(), 2);
    let (first, _) = approval_and_result(&ev, writes[0]);
    assert_eq!(first["decision"], "approved");
    assert_eq!(first["content_sha256"], writes[0]["content_sha256"]);
    assert_eq!(first["content_sha256"], sha256(&on_disk));
    let (again, result) = approval_and_result(&ev, writes[1]);
    assert_eq!(again["decision"], "rejected");
    assert_eq!(again["content_sha256"], sha256(second.as_bytes()));
    assert_eq!(result["outcome"], "not-approved");
    assert_eq!(ev.iter().filter(|e| e["kind"] == "approval").count(), 2);
}
