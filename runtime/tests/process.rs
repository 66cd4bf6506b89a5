//! THREATS.md, Commands: a hostile tool tries every way out through
//! `sandbox:host/process.run`: shell metacharacters, argument injection
//! (git, find, tar, rg, sed), options disguised as file names, the
//! environment, the working directory, process trees that outlive their
//! timeout, fork loops, endless output, and files outside the workspace.
//!
//! Each test runs the real binary on the `probe` guest (or `gitsum`) and
//! checks the typed error, the audit event with its rule, and what really
//! happened. Most programs are one helper script (Python 3, written into
//! each fixture from `HELPER` below) installed under several names
//! (`ws/.bin/helper`, `ws/.bin/git`, `ws/.bin/find`, ...): it appends what
//! it received (argv, environment, working directory, stdin) to
//! `ws/ran.log`, so "the refused command did not run" is a fact on disk,
//! not an assumption. The helpers live in the workspace because Landlock
//! lets a program run only from there and the system directories (see
//! `a_program_outside_the_system_directories_and_the_workspace_runs`).
//! The real `/usr/bin/git` and `/usr/bin/sed` are used where only the real
//! program can show the attack.
//!
//! Every process a helper starts writes its PID to `ws/pids.txt`; a
//! [`Reaper`] kills whatever is still running from there when a test ends,
//! passed or failed.

// `allow-unwrap-in-tests` covers #[test] functions only, not the helpers.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use rustix::process::{Pid, Signal, kill_process};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bounds every wait, so a broken implementation fails a test instead of
/// hanging it.
const PATIENCE: Duration = Duration::from_secs(120);

/// The only `PATH` a program gets.
const PATH_VALUE: &str = "/usr/local/bin:/usr/bin:/bin";

/// The names the helper is installed under in every fixture's `bin/`.
const FAKES: [&str; 6] = ["helper", "git", "find", "tar", "sed", "rg"];

/// The helper program. `@WS@` becomes the workspace's absolute path (as a
/// Python string literal).
const HELPER: &str = r#"#!/usr/bin/python3 -IS
# Test helper of runtime/tests/process.rs: appends what it received to
# ran.log in the workspace, then does what its first argument says when
# that is one of MODES.
import errno, json, os, signal, sys, time

WS = @WS@
LOG = os.path.join(WS, "ran.log")
PIDS = os.path.join(WS, "pids.txt")


def environment():
    """The environment the program was started with."""
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read().decode("utf-8", "surrogateescape")
        return dict(kv.partition("=")[::2] for kv in raw.split("\0") if kv), "proc"
    except OSError:
        env = dict(os.environ)
        # Python sets LC_CTYPE=C.UTF-8 itself when the locale is C (PEP 538).
        if env.get("LC_CTYPE") == "C.UTF-8" and not ({"LANG", "LC_ALL"} & env.keys()):
            del env["LC_CTYPE"]
        return env, "python"


def note_pid(tag):
    with open(PIDS, "a") as f:
        f.write("%d %s\n" % (os.getpid(), tag))


def count_pids():
    with open(PIDS) as f:
        return len(f.read().splitlines())


def linger(secs):
    time.sleep(secs)
    os._exit(0)


def sleep(secs="60"):
    note_pid("sleeper")
    print("sleeping", flush=True)
    linger(float(secs))


def tree(secs="60"):
    """A child, a grandchild in its own session (setsid), a daemon below it
    (double fork, own session, stdio closed) and a child that ignores
    SIGTERM, SIGHUP and SIGINT; all sleep."""
    secs = float(secs)
    note_pid("parent")
    if os.fork() == 0:
        note_pid("child")
        if os.fork() == 0:
            os.setsid()
            note_pid("grandchild-setsid")
            if os.fork() == 0:
                os.setsid()
                fd = os.open("/dev/null", os.O_RDWR)
                for n in (0, 1, 2):
                    os.dup2(fd, n)
                note_pid("daemon")
                linger(secs)
            linger(secs)
        linger(secs)
    if os.fork() == 0:
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        note_pid("stubborn")
        linger(secs)
    deadline = time.time() + 30
    while count_pids() < 5 and time.time() < deadline:
        time.sleep(0.01)
    print("tree", count_pids(), flush=True)
    linger(secs)


def spawn(depth):
    for _ in range(2):
        try:
            pid = os.fork()
        except OSError:
            return
        if pid == 0:
            if depth % 2 == 0:
                os.setsid()
            note_pid("fork")
            if depth > 1:
                spawn(depth - 1)
            linger(60)


def forkloop(depth="6"):
    """A binary tree of processes, every other level in its own session."""
    note_pid("fork")
    spawn(int(depth))
    linger(60)


def chain(depth="300"):
    """A line of processes, each the child of the one before and in a
    session of its own, so killing one reaches only that one."""
    note_pid("chain")
    for _ in range(1, int(depth)):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid != 0:
            linger(60)
        os.setsid()
        note_pid("chain")
    print("chain", count_pids(), flush=True)
    linger(60)


def flood(stream="out"):
    note_pid("flood")
    fds = {"out": [1], "err": [2], "both": [1, 2]}[stream]
    chunk = b"x" * 65536
    while True:
        for fd in fds:
            os.write(fd, chunk)


def try_read(path):
    try:
        with open(path, "rb") as f:
            data = f.read(300)
        print("read-ok", data.decode("utf-8", "replace").strip())
    except OSError as e:
        print("read-error", errno.errorcode.get(e.errno, str(e.errno)))


def try_list(path):
    try:
        print("list-ok", len(os.listdir(path)))
    except OSError as e:
        print("list-error", errno.errorcode.get(e.errno, str(e.errno)))


def try_write(path):
    try:
        with open(path, "wb") as f:
            f.write(b"written by the helper\n")
        print("write-ok")
    except OSError as e:
        print("write-error", errno.errorcode.get(e.errno, str(e.errno)))


def parent_environ():
    try_read("/proc/%d/environ" % os.getppid())


def send_signal(to="parent"):
    pid, sig = (os.getppid(), signal.SIGKILL) if to == "parent" else (int(to), signal.SIGTERM)
    try:
        os.kill(pid, sig)
        print("signal-ok")
    except OSError as e:
        print("signal-error", errno.errorcode.get(e.errno, str(e.errno)))


def exit_with(code="0"):
    sys.stdout.write("out-text\n")
    sys.stderr.write("err-text\n")
    return int(code)


MODES = {
    "@sleep": sleep,
    "@tree": tree,
    "@forkloop": forkloop,
    "@chain": chain,
    "@flood": flood,
    "@read": try_read,
    "@list": try_list,
    "@write": try_write,
    "@parent-environ": parent_environ,
    "@signal": send_signal,
    "@exit": exit_with,
}


def main():
    args = sys.argv[1:]
    env, source = environment()
    mode = args[0] if args and args[0] in MODES else None
    record = {
        "prog": os.path.basename(sys.argv[0]),
        "argv": args,
        "env": env,
        "env_source": source,
        "cwd": os.getcwd(),
    }
    if mode is None:
        record["stdin"] = sys.stdin.buffer.read().decode("utf-8", "replace")
    with open(LOG, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    if mode is None:
        print("recorded")
        return 0
    return MODES[mode](*args[1:2]) or 0


sys.exit(main())
"#;

// ---------------------------------------------------------------- fixture

/// A fixture with the helper installed as `ws/.bin/NAME` for every name
/// in [`FAKES`] and `body` as its manifest (`{bin}` stands for that
/// folder's absolute path), plus `[workspace] root = "ws"` and `[audit]`
/// unless `body` sets them.
fn fixture(body: &str) -> Fixture {
    let f = Fixture::new("");
    let bin = f.ws(".bin");
    for name in FAKES {
        install_helper(&f, &bin.join(name));
    }
    let body = body.replace("{bin}", &bin.display().to_string());
    let mut manifest = format!("version = 1\n{body}\n");
    if !body.contains("[workspace]") {
        manifest.push_str("\n[workspace]\nroot = \"ws\"\n");
    }
    if !body.contains("[audit]") {
        manifest.push_str("\n[audit]\npath = \"audit.jsonl\"\n");
    }
    std::fs::write(f.manifest(), manifest).unwrap();
    f
}

/// Writes the helper to `at` (creating its folder), executable.
fn install_helper(f: &Fixture, at: &Path) {
    let ws = serde_json::to_string(&f.path("ws").display().to_string()).unwrap();
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::fs::write(at, HELPER.replace("@WS@", &ws)).unwrap();
    std::fs::set_permissions(at, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A pre-approved `[[process.allow]]` rule for `ws/.bin/NAME` with more
/// lines.
fn rule(name: &str, extra: &str) -> String {
    format!("\n[[process.allow]]\nprogram = \"{name}\"\npath = \"{{bin}}/{name}\"\napproval = \"never\"\n{extra}\n")
}

/// What the helper recorded, one entry per time it ran, in order.
fn ran(f: &Fixture) -> Vec<Value> {
    std::fs::read_to_string(f.ws("ran.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad ran.log line {l:?}: {e}")))
        .collect()
}

/// The `argv` of each recorded run.
fn argvs(f: &Fixture) -> Vec<Vec<String>> {
    ran(f).iter().map(|r| serde_json::from_value(r["argv"].clone()).unwrap()).collect()
}

/// The environment a recorded run received, without the private `TMPDIR`
/// the host gives each call, which is checked here: a directory of that
/// call alone, removed when the call ended.
fn env_of(rec: &Value) -> Value {
    let mut env = rec["env"].clone();
    if let Some(tmp) = env.as_object_mut().unwrap().remove("TMPDIR") {
        let tmp = tmp.as_str().unwrap();
        assert!(tmp.contains("sandbox-exec-"), "TMPDIR {tmp} is not the call's own: {rec}");
        assert!(!Path::new(tmp).exists(), "the call's TMPDIR {tmp} outlived it");
    }
    env
}

/// The PIDs the helpers wrote to `ws/pids.txt`, with their tags.
fn pids(f: &Fixture) -> Vec<(i32, String)> {
    read_pids(&f.ws("pids.txt"))
}

fn read_pids(file: &Path) -> Vec<(i32, String)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (pid, tag) = l.split_once(' ')?;
            Some((pid.parse().ok()?, tag.to_owned()))
        })
        .collect()
}

/// Whether `pid` is a process that still runs (a zombie has ended).
fn running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X'))
}

/// The PIDs of `f`'s helpers that still run, with their tags.
fn survivors(f: &Fixture) -> Vec<(i32, String)> {
    pids(f).into_iter().filter(|(pid, _)| running(*pid)).collect()
}

/// Kills, when dropped (also when a test fails), the run it holds and
/// every process listed in the fixture's `pids.txt` that still runs a
/// program from the fixture, so no test leaves anything behind.
struct Reaper {
    dir: PathBuf,
    run: Option<Child>,
}

impl Reaper {
    fn new(f: &Fixture) -> Reaper {
        Reaper { dir: f.dir.path().to_path_buf(), run: None }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(child) = self.run.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let ours = self.dir.display().to_string();
        // Twice: a process may fork while the first round kills.
        for _ in 0..2 {
            for (pid, _) in read_pids(&self.dir.join("ws/pids.txt")) {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if running(pid)
                    && String::from_utf8_lossy(&cmdline).contains(&ours)
                    && let Some(p) = Pid::from_raw(pid)
                {
                    let _ = kill_process(p, Signal::KILL);
                }
            }
        }
    }
}

// ------------------------------------------------------------ probe runs

/// A word as `probe` receives it on its command line (`esc:` for bytes a
/// command line cannot carry).
fn arg(word: &str) -> String {
    if !word.contains(['\0', '\n', '\r']) && !word.starts_with("esc:") {
        return word.to_owned();
    }
    let mut out = String::from("esc:");
    for c in word.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out
}

/// The label `probe` prints for an op (long words shown by size).
fn probe_label(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| if w.len() > 60 { format!("<{} bytes>", w.len()) } else { format!("{w:?}") })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `probe`'s command line for `ops`, joined by `+`.
fn probe_args(ops: &[Vec<&str>]) -> Vec<String> {
    let mut args = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            args.push("+".to_owned());
        }
        args.extend(op.iter().map(|w| arg(w)));
    }
    args
}

/// A `run` op: `["run", opts..., program, args...]`.
fn run_op<'a>(words: &[&'a str]) -> Vec<&'a str> {
    let mut op = vec!["run"];
    op.extend_from_slice(words);
    op
}

/// What `probe` printed for a successful `process.run`.
#[derive(Debug)]
struct Out {
    exit: Option<i32>,
    stdout: String,
    stderr: String,
    truncated: bool,
}

/// Reads a Rust-`{:?}`-escaped string at the start of `s`; returns it and
/// what follows.
fn debug_str(s: &str) -> (String, &str) {
    let mut chars = s.char_indices();
    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "not a quoted string: {s}");
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (out, &s[i + 1..]),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('0') => out.push('\0'),
                Some('u') => {
                    let hex: String =
                        chars.by_ref().map(|(_, c)| c).skip(1).take_while(|c| *c != '}').collect::<String>();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
                }
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    panic!("unterminated string: {s}")
}

/// Parses `ok exit N stdout S stderr E truncated T`.
fn parse_out(detail: &str) -> Out {
    let rest = detail.strip_prefix("ok exit ").unwrap_or_else(|| panic!("expected a finished run, got {detail}"));
    let (exit, rest) = rest.split_once(" stdout ").unwrap_or_else(|| panic!("no stdout in {detail}"));
    let (stdout, rest) = debug_str(rest);
    let rest = rest.strip_prefix(" stderr ").unwrap_or_else(|| panic!("no stderr in {detail}"));
    let (stderr, rest) = debug_str(rest);
    let truncated = match rest {
        " truncated true" => true,
        " truncated false" => false,
        _ => panic!("no truncated flag in {detail}"),
    };
    let exit = if exit == "none" { None } else { Some(exit.parse().unwrap()) };
    Out { exit, stdout, stderr, truncated }
}

/// One `run` op as the tool saw it and as the log recorded it.
#[derive(Debug)]
struct Done {
    label: String,
    /// What `probe` printed after the label: `ok exit ...` or
    /// `denied: "..."`.
    detail: String,
    call: Value,
    result: Value,
}

impl Done {
    /// The finished run; fails when the call was refused.
    fn out(&self) -> Out {
        assert!(self.detail.starts_with("ok "), "{}: expected to run, got {}", self.label, self.detail);
        assert_eq!(self.call["decision"], "allow", "{}: {}", self.label, self.call);
        assert_eq!(self.result["outcome"], "ok", "{}: {}", self.label, self.result);
        parse_out(&self.detail)
    }

    /// Why this op is not a refusal of `kind` with `decision`, if it is not.
    fn not_refused(&self, kind: &str, decision: &str) -> Option<String> {
        if !self.detail.starts_with(&format!("{kind}: ")) {
            return Some(format!("{}: expected {kind}, got {}", self.label, self.detail));
        }
        if self.call["decision"] != decision {
            return Some(format!("{}: expected decision {decision}: {}", self.label, self.call));
        }
        if self.result["outcome"] != kind {
            return Some(format!("{}: expected outcome {kind}: {}", self.label, self.result));
        }
        None
    }

    /// Asserts a refusal: the tool got the error `kind`, the `call` event
    /// has `decision`, the `result` event the same error.
    fn refused(&self, kind: &str, decision: &str) -> &Done {
        if let Some(why) = self.not_refused(kind, decision) {
            panic!("{why}");
        }
        self
    }

    /// Why this op is not `denied` by a rule starting with `rule`, if not.
    fn not_denied_by(&self, rule: &str) -> Option<String> {
        if let Some(why) = self.not_refused("denied", "deny") {
            return Some(why);
        }
        let recorded = self.call["rule"].as_str().unwrap_or("");
        if !recorded.starts_with(rule) {
            return Some(format!("{}: expected rule {rule}..., got {}", self.label, self.call));
        }
        None
    }

    /// Asserts `denied` by a rule starting with `rule`.
    fn denied_by(&self, rule: &str) -> &Done {
        if let Some(why) = self.not_denied_by(rule) {
            panic!("{why}");
        }
        self
    }
}

/// Runs `probe` with `ops` (each a `run` op) and pairs every op with its
/// printed line and its `call` and `result` events.
fn probe_runs(f: &Fixture, opts: &[&str], ops: &[Vec<&str>]) -> (Run, Vec<Done>) {
    let args = probe_args(ops);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = f.run_with("probe", opts, &args);
    // This run's events only (a fixture may be run more than once).
    let mut ev = f.events();
    let start = ev.iter().rposition(|e| e["kind"] == "task-start").unwrap_or_else(|| panic!("no task-start\n{r:?}"));
    ev.drain(..start);
    let calls: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "call" && e["capability"] == "process.run").collect();
    assert_eq!(calls.len(), ops.len(), "one process.run call event per op\n{r:?}");
    let done = ops
        .iter()
        .zip(calls)
        .map(|(op, call)| {
            let label = probe_label(op);
            Done { detail: r.line(&label).to_owned(), label, call: call.clone(), result: result_of(&ev, call).clone() }
        })
        .collect();
    (r, done)
}

/// Like [`probe_runs`] without extra options.
fn runs(f: &Fixture, ops: &[Vec<&str>]) -> Vec<Done> {
    let (r, done) = probe_runs(f, &[], ops);
    assert_eq!(r.code, 0, "{r:?}");
    done
}

/// Runs each argv (after `program`) as its own op; every one must be
/// denied by a built-in refusal, and nothing may have run. Reports every
/// failure at once.
fn expect_builtin_refusals(f: &Fixture, program: &str, cases: &[&[&str]]) {
    let ops: Vec<Vec<&str>> = cases
        .iter()
        .map(|a| {
            let mut op = vec!["run", program];
            op.extend_from_slice(a);
            op
        })
        .collect();
    let done = runs(f, &ops);
    let mut failures: Vec<String> = done.iter().filter_map(|d| d.not_denied_by("builtin:")).collect();
    let ran = argvs(f);
    if !ran.is_empty() {
        failures.push(format!("these ran: {ran:?}"));
    }
    assert!(failures.is_empty(), "{} of {} not refused:\n{}", failures.len(), cases.len(), failures.join("\n"));
    assert_eq!(f.verify().code, 0);
}

/// `sandbox policy explain MANIFEST process.run TARGET`.
fn explain(manifest: &Path, target: &str) -> Run {
    let out = sandbox().args(["policy", "explain"]).arg(manifest).args(["process.run", target]).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `c` with empty stdin and collects its result.
fn output(mut c: Command) -> Run {
    let out = c.stdin(Stdio::null()).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// ------------------------------------------------------------ execution

#[test]
fn shell_metacharacters_arrive_literally() {
    let f = fixture(&rule("helper", "args = [\"*\"]"));
    f.file("a.txt", "a\n").file("b.txt", "b\n");
    let outside = f.outside_digest();
    let words = [
        "; touch pwned-semicolon",
        "$(touch pwned-subst)",
        "`touch pwned-backtick`",
        "| touch pwned-pipe",
        "&& touch pwned-and",
        "> pwned-redirect",
        "<a.txt",
        "*",
        "*.txt",
        "~",
        "$HOME",
        "${PATH}",
        "a\nb; touch pwned-newline",
        "'single'",
        "\"double\"",
        "\\",
        " leading space",
        "",
        "--",
        "-rf",
    ];
    let mut op = vec!["run", "helper"];
    op.extend_from_slice(&words);
    let done = runs(&f, &[op]);
    let out = done[0].out();
    assert_eq!(out.exit, Some(0), "{out:?}");
    assert_eq!(out.stdout, "recorded\n");
    assert_eq!(argvs(&f), vec![words.iter().map(|w| w.to_string()).collect::<Vec<_>>()]);
    let mut names: Vec<String> =
        std::fs::read_dir(f.ws("")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, [".bin", "a.txt", "b.txt", "ran.log"], "a shell ran something");
    assert_eq!(f.outside_digest(), outside);
}

#[test]
fn only_listed_programs_run_and_never_through_path() {
    let f = fixture(&rule("helper", "args = [\"*\"]"));
    let bin_helper = f.ws(".bin/helper").display().to_string();
    let done = runs(
        &f,
        &[
            vec!["run", "sh", "-c", "touch pwned"],
            vec!["run", "/bin/sh", "-c", "touch pwned"],
            vec!["run", "bash"],
            vec!["run", "git", "status"],
            vec!["run", &bin_helper],
            vec!["run", ".bin/helper"],
            vec!["run", "HELPER"],
            vec!["run", "helper "],
            vec!["run", ""],
            vec!["run", "helper", "ok"],
        ],
    );
    for d in &done[..done.len() - 1] {
        assert!(
            d.not_denied_by("default").is_none() || d.not_refused("invalid", "invalid").is_none(),
            "{}: expected denied (rule default) or invalid, got {} / {}",
            d.label,
            d.detail,
            d.call
        );
    }
    assert_eq!(done.last().unwrap().out().exit, Some(0));
    assert_eq!(argvs(&f), vec![vec!["ok".to_owned()]]);
    assert!(!f.ws("pwned").exists());
}

#[test]
fn arguments_must_match_a_pattern_and_no_deny_glob() {
    let f = fixture(&rule(
        "helper",
        r#"args = ["status *", "log --oneline -n <arg>", "show <path>", "fmt --format=*", "none"]
deny_args = ["--output*"]"#,
    ));
    f.file("src/a.txt", "a\n");
    let allowed: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["status", "-s", "x y"],
        vec!["log", "--oneline", "-n", "5"],
        vec!["show", "src/a.txt"],
        vec!["fmt", "--format=short"],
        vec!["none"],
    ];
    let refused: Vec<Vec<&str>> = vec![
        vec![],
        vec!["push"],
        vec!["Status"],
        vec!["status", "--output=x"],
        vec!["status", "-s", "--output", "x"],
        vec!["log", "--oneline", "-n", "-5"],
        vec!["log", "--oneline", "-n", "--output=x"],
        vec!["log", "--oneline", "-n"],
        vec!["log", "--oneline", "-n", "5", "-p"],
        vec!["log", "--oneline"],
        vec!["show", "../outside/secret.txt"],
        vec!["show", "src/../../outside/secret.txt"],
        vec!["show", "/etc/passwd"],
        vec!["show", "-rf"],
        vec!["show", "--upload-pack=x"],
        vec!["show"],
        vec!["show", "src/a.txt", "src/a.txt"],
        vec!["fmt", "--format"],
        vec!["fmt", "--format=a", "b"],
        vec!["none", "x"],
    ];
    let mut ops: Vec<Vec<&str>> = Vec::new();
    for a in allowed.iter().chain(&refused) {
        let mut op = vec!["run", "helper"];
        op.extend_from_slice(a);
        ops.push(op);
    }
    let done = runs(&f, &ops);
    for d in &done[..allowed.len()] {
        assert_eq!(d.out().exit, Some(0), "{}", d.label);
        assert_eq!(d.call["rule"], "process.allow[0]:helper", "{}", d.label);
    }
    let failures: Vec<String> =
        done[allowed.len()..].iter().filter_map(|d| d.not_denied_by("process.allow[0]")).collect();
    assert!(failures.is_empty(), "not refused by the rule:\n{}", failures.join("\n"));
    let want: Vec<Vec<String>> = allowed.iter().map(|a| a.iter().map(|w| w.to_string()).collect()).collect();
    assert_eq!(argvs(&f), want, "exactly the allowed argvs ran");
    assert_eq!(f.verify().code, 0);
}

#[test]
fn options_disguised_as_file_names_are_refused() {
    // Files a hostile tool planted, named like options that run code.
    let f = fixture(&format!(
        "{}{}",
        rule("git", r#"args = ["diff --stat <path>", "log *"]"#),
        rule("helper", r#"args = ["cat <path>", "ls *"]"#)
    ));
    f.file("--upload-pack=touch pwned", "x\n").file("-rf", "x\n").file("--output=x", "x\n").file("ok.txt", "x\n");
    let done = runs(
        &f,
        &[
            vec!["run", "git", "diff", "--stat", "--upload-pack=touch pwned"],
            vec!["run", "git", "log", "--upload-pack=touch pwned"],
            vec!["run", "helper", "cat", "-rf"],
            vec!["run", "helper", "cat", "--output=x"],
            vec!["run", "helper", "cat", "ok.txt"],
        ],
    );
    // Refused by the pattern (`<path>` never starts with `-`) or the
    // built-in refusal of `--upload-pack`: either way, denied.
    assert!(done[0].not_denied_by("process.allow[0]").is_none() || done[0].not_denied_by("builtin:").is_none());
    done[1].denied_by("builtin:");
    done[2].denied_by("process.allow[1]");
    done[3].denied_by("process.allow[1]");
    assert_eq!(done[4].out().exit, Some(0));
    assert_eq!(argvs(&f), vec![vec!["cat".to_owned(), "ok.txt".to_owned()]]);
    assert!(!f.ws("pwned").exists());
}

#[test]
fn a_nul_in_an_argument_or_the_program_is_refused_and_nothing_runs() {
    let f = fixture(&rule("helper", "args = [\"*\"]\nenv = [\"LANG\"]"));
    let done = runs(
        &f,
        &[
            vec!["run", "helper", "a\0b"],
            vec!["run", "helper\0x"],
            vec!["run", "--env", "LANG=C\0x", "helper"],
            vec!["run", "--env", "LA\0NG=C", "helper"],
        ],
    );
    for d in &done {
        assert!(!d.detail.starts_with("ok"), "{}: {}", d.label, d.detail);
        assert!(
            d.not_refused("invalid", "invalid").is_none() || d.not_refused("denied", "deny").is_none(),
            "{}: {} / {}",
            d.label,
            d.detail,
            d.call
        );
    }
    assert!(ran(&f).is_empty(), "{:?}", ran(&f));
}

// ------------------------------------------------- built-in refusals

#[test]
fn git_options_that_run_code_are_refused_whatever_the_rule_says() {
    let f = fixture(&rule("git", "args = [\"*\"]"));
    expect_builtin_refusals(
        &f,
        "git",
        &[
            &["-c", "core.pager=touch pwned", "log"],
            &["-c", "core.sshCommand=touch pwned", "fetch", "origin"],
            &["-ccore.pager=touch pwned", "log"],
            &["--config-env=core.pager=X", "log"],
            &["--config-env", "core.pager=X", "log"],
            &["--exec-path=/tmp", "status"],
            &["--exec-path"],
            &["-C", "..", "status"],
            &["--git-dir=/tmp/x", "status"],
            &["--git-dir", "/tmp/x", "status"],
            &["--work-tree=/", "status"],
            &["--work-tree", "/", "status"],
            &["fetch", "--upload-pack=touch pwned", "origin"],
            &["fetch", "--upload-pack", "touch pwned", "origin"],
            &["clone", "--upload-pack=touch pwned", "x", "y"],
            &["push", "--receive-pack=touch pwned", "origin"],
            &["push", "--exec=touch pwned", "origin"],
            &["ls-remote", "--exec=touch pwned", "origin"],
            &["archive", "--remote=x", "--exec=touch pwned", "HEAD"],
            &["clone", "--template=/tmp/t", "x", "y"],
            &["init", "--template=/tmp/t"],
            &["clone", "ext::sh -c touch% pwned", "y"],
            &["fetch", "ext::sh -c touch% pwned"],
            &["remote", "add", "o", "ext::sh -c touch% pwned"],
            &["submodule", "add", "xext::y", "p"],
            &["fetch", "fd::3"],
            &["ls-remote", "fd::0,1"],
            &["config", "core.pager", "touch pwned"],
            &["config", "--list"],
            &["difftool"],
            &["mergetool"],
            &["filter-branch", "--tree-filter", "touch pwned"],
            &["credential", "fill"],
        ],
    );
}

#[test]
fn find_options_that_run_code_or_write_are_refused() {
    let f = fixture(&rule("find", "args = [\"*\"]"));
    expect_builtin_refusals(
        &f,
        "find",
        &[
            &[".", "-exec", "touch", "pwned", ";"],
            &[".", "-name", "*.txt", "-exec", "touch", "{}.pwned", ";"],
            &[".", "-execdir", "touch", "pwned", ";"],
            &[".", "-ok", "touch", "pwned", ";"],
            &[".", "-okdir", "touch", "pwned", ";"],
            &[".", "-name", "*.txt", "-delete"],
            &[".", "-fprint", "out.txt"],
            &[".", "-fprint0", "out.txt"],
            &[".", "-fprintf", "out.txt", "%p"],
            &[".", "-fls", "out.txt"],
        ],
    );
    // The same rule still lets harmless searches run.
    let done = runs(&f, &[vec!["run", "find", ".", "-name", "*.txt", "-print"]]);
    assert_eq!(done[0].out().exit, Some(0));
}

#[test]
fn tar_options_that_run_code_are_refused() {
    let f = fixture(&rule("tar", "args = [\"*\"]"));
    expect_builtin_refusals(
        &f,
        "tar",
        &[
            &["--checkpoint=1", "--checkpoint-action=exec=touch pwned", "-xf", "a.tar"],
            &["--checkpoint-action", "exec=touch pwned", "-xf", "a.tar"],
            &["-x", "--to-command=touch pwned", "-f", "a.tar"],
            &["-x", "--use-compress-program=touch pwned", "-f", "a.tar"],
            &["-x", "-I", "touch pwned", "-f", "a.tar"],
            &["-xI", "sh", "-f", "a.tar"],
            &["-xIf", "sh", "a.tar"],
            &["xIf", "sh", "a.tar"],
            &["-c", "--info-script=touch pwned", "-f", "a.tar", "."],
            &["-c", "-F", "touch pwned", "-f", "a.tar", "."],
            &["-cFf", "x", "a.tar", "."],
            &["cFf", "x", "a.tar", "."],
            &["-c", "--new-volume-script=touch pwned", "-f", "a.tar", "."],
            &["-x", "--rsh-command=/tmp/x", "-f", "h:a.tar"],
            &["-x", "--rmt-command=/tmp/x", "-f", "h:a.tar"],
        ],
    );
    let done = runs(&f, &[vec!["run", "tar", "-tf", "a.tar"], vec!["run", "tar", "tf", "a.tar"]]);
    assert_eq!(done[0].out().exit, Some(0));
    assert_eq!(done[1].out().exit, Some(0));
}

#[test]
fn rg_preprocessors_are_refused() {
    let f = fixture(&rule("rg", "args = [\"*\"]"));
    expect_builtin_refusals(
        &f,
        "rg",
        &[&["--pre=touch", "x", "."], &["--pre", "touch", "x", "."], &["--hostname-bin=touch", "x", "."]],
    );
    let done = runs(&f, &[vec!["run", "rg", "-n", "x", "."]]);
    assert_eq!(done[0].out().exit, Some(0));
}

#[test]
fn sed_in_place_is_refused_and_sed_always_runs_sandboxed() {
    let f = fixture(&rule("sed", "args = [\"*\"]"));
    expect_builtin_refusals(
        &f,
        "sed",
        &[
            &["-i", "s/a/b/", "a.txt"],
            &["-i.bak", "s/a/b/", "a.txt"],
            &["--in-place", "s/a/b/", "a.txt"],
            &["--in-place=.bak", "s/a/b/", "a.txt"],
        ],
    );
    let done = runs(&f, &[vec!["run", "sed", "-n", "p", "a.txt"], vec!["run", "sed", "-n", "--", "p", "a.txt"]]);
    assert_eq!(done[0].out().exit, Some(0));
    assert_eq!(done[1].out().exit, Some(0));
    let sent: [&[&str]; 2] = [&["-n", "p", "a.txt"], &["-n", "--", "p", "a.txt"]];
    let got = argvs(&f);
    assert_eq!(got.len(), 2, "{got:?}");
    for (argv, sent) in got.iter().zip(sent) {
        // `--sandbox` is added where sed reads it as an option: before
        // the tool's arguments (after a `--` it would be a file name).
        let at = argv.iter().position(|a| a == "--sandbox");
        let end = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
        assert!(at.is_some_and(|i| i < end), "sed ran without --sandbox as an option: {argv:?}");
        let rest: Vec<&str> = argv.iter().map(String::as_str).filter(|a| *a != "--sandbox").collect();
        assert_eq!(rest, sent, "the tool's arguments, in order");
    }
}

#[test]
fn the_real_sed_cannot_run_commands_or_write_files() {
    let f = fixture(
        "\n[[process.allow]]\nprogram = \"sed\"\npath = \"/usr/bin/sed\"\napproval = \"never\"\nargs = [\"*\"]\n",
    );
    f.file("a.txt", "hello\n");
    let before = tree_digest(&f.path("ws"));
    let done = runs(
        &f,
        &[
            vec!["run", "sed", "-n", "1e touch pwned-e", "a.txt"],
            vec!["run", "sed", "-n", "w pwned-w", "a.txt"],
            vec!["run", "sed", "1r /etc/passwd", "a.txt"],
            vec!["run", "sed", "-n", "s/hello/x/e", "a.txt"],
            vec!["run", "sed", "-n", "--", "1e touch pwned-dashdash", "a.txt"],
            vec!["run", "sed", "-n", "p", "a.txt"],
        ],
    );
    for d in &done[..5] {
        // Refused outright, or run with --sandbox, which makes sed fail.
        if d.detail.starts_with("ok ") {
            let out = d.out();
            assert_ne!(out.exit, Some(0), "{}: sed ran the command: {out:?}", d.label);
        } else {
            d.refused("denied", "deny");
        }
    }
    let out = done[5].out();
    assert_eq!((out.exit, out.stdout.as_str()), (Some(0), "hello\n"));
    assert_eq!(tree_digest(&f.path("ws")), before, "sed changed the workspace");
}

/// Forms the spec's lists do not spell out but the programs accept:
/// abbreviated long options (git's parse-options and GNU getopt accept any
/// unambiguous prefix), short aliases, bundles, and subcommands after
/// global options. Each runs code with the real program (checked by
/// hand: `git ls-remote --upload=CMD .`, `git clone -u CMD . d`, `tar
/// --checkpoint=1 --checkpoint-act=exec=CMD -xf a.tar`).
#[test]
fn abbreviated_aliased_and_bundled_forms_are_refused_too() {
    let f = fixture(&format!(
        "{}{}{}",
        rule("git", "args = [\"*\"]"),
        rule("tar", "args = [\"*\"]"),
        rule("sed", "args = [\"*\"]")
    ));
    let git: &[&[&str]] = &[
        &["ls-remote", "--upload=touch pwned", "."],
        &["fetch", "--upl=touch pwned", "."],
        &["clone", "-u", "touch pwned", ".", "d"],
        &["clone", "-utouch pwned", ".", "d"],
        &["push", "--receive-p=touch pwned", ".", "main"],
        &["clone", "--templ=/tmp/t", ".", "d"],
        &["--no-pager", "config", "--list"],
        &["-p", "config", "--list"],
        &["--bare", "config", "--list"],
        &["--no-pager", "difftool"],
    ];
    let tar: &[&[&str]] = &[
        &["--checkpoint=1", "--checkpoint-act=exec=touch pwned", "-xf", "a.tar"],
        &["-x", "--to-com=touch pwned", "-f", "a.tar"],
        &["-x", "--use-compress-prog=touch pwned", "-f", "a.tar"],
        &["-c", "--info-scr=touch pwned", "-f", "a.tar", "."],
        &["-c", "--new-volume=touch pwned", "-f", "a.tar", "."],
    ];
    let sed: &[&[&str]] = &[
        &["-ni", "p", "a.txt"],
        &["-Ei", "s/a/b/", "a.txt"],
        &["-si", "s/a/b/", "a.txt"],
        &["--in-pl", "s/a/b/", "a.txt"],
    ];
    let mut ops: Vec<Vec<&str>> = Vec::new();
    for (program, list) in [("git", git), ("tar", tar), ("sed", sed)] {
        for a in list {
            let mut op = vec!["run", program];
            op.extend_from_slice(a);
            ops.push(op);
        }
    }
    let done = runs(&f, &ops);
    let mut failures: Vec<String> = done.iter().filter_map(|d| d.not_denied_by("builtin:")).collect();
    let ran = argvs(&f);
    if !ran.is_empty() {
        failures.push(format!("these ran: {ran:?}"));
    }
    assert!(failures.is_empty(), "{} of {} not refused:\n{}", failures.len(), ops.len(), failures.join("\n"));
}

#[test]
fn git_always_runs_with_its_config_off_and_dangerous_keys_forced_safe() {
    let f = fixture(&rule("git", "args = [\"*\"]\nenv = [\"LANG\"]"));
    let args = probe_args(&[vec!["run", "--env", "LANG=C.UTF-8", "git", "status"]]);
    let mut c = f.command("probe", &[], &args.iter().map(String::as_str).collect::<Vec<_>>());
    // What the sandbox's own environment holds must not reach git.
    c.env("GIT_DIR", "/tmp/leak-git-dir").env("GIT_WORK_TREE", "/tmp/leak-tree").env("HOST_SECRET", "leak");
    let r = output(c);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(": ok exit 0 "), "{r:?}");
    let call = f.calls("process.run").remove(0);
    let rec = &ran(&f)[0];
    let env = env_of(rec);
    let env = env.as_object().unwrap();
    assert_eq!(env["GIT_CONFIG_NOSYSTEM"], "1", "{rec}");
    assert_eq!(env["GIT_CONFIG_GLOBAL"], "/dev/null", "{rec}");
    assert_eq!(env["PATH"], PATH_VALUE);
    assert_eq!(env["LANG"], "C.UTF-8");
    let count: usize = env["GIT_CONFIG_COUNT"].as_str().unwrap().parse().unwrap();
    let forced: BTreeSet<String> =
        (0..count).map(|i| env[&format!("GIT_CONFIG_KEY_{i}")].as_str().unwrap().to_ascii_lowercase()).collect();
    for key in [
        "core.fsmonitor",
        "core.hookspath",
        "core.pager",
        "core.sshcommand",
        "credential.helper",
        "protocol.ext.allow",
        "protocol.fd.allow",
    ] {
        assert!(forced.contains(key), "{key} is not forced: {forced:?}");
    }
    for i in 0..count {
        let value = env[&format!("GIT_CONFIG_VALUE_{i}")].as_str().unwrap();
        assert!(!value.contains("sh ") && !value.contains(';'), "a forced value runs code? {value}");
    }
    // Nothing else: no variable the sandbox's own environment holds.
    for (name, value) in env {
        assert!(name == "PATH" || name == "LANG" || name.starts_with("GIT_"), "{name} reached git: {rec}");
        assert!(!value.as_str().unwrap().contains("leak"), "{name} came from the sandbox's environment: {rec}");
    }
    assert!(!env.contains_key("GIT_DIR") && !env.contains_key("GIT_WORK_TREE"), "{rec}");
    assert_eq!(call["env"], json!(["LANG"]), "only the names the tool set are recorded");
}

// -------------------------------------------------------- environment

#[test]
fn the_environment_is_path_plus_what_the_rule_allows_and_nothing_else() {
    let f = fixture(&rule("helper", "args = [\"*\"]\nenv = [\"LANG\", \"HELPER_TOKEN\"]"));
    let args = probe_args(&[
        vec!["run", "--env", "LANG=C.UTF-8", "--env", "HELPER_TOKEN=tok-123", "helper", "with-env"],
        vec!["run", "helper", "without-env"],
    ]);
    let mut c = f.command("probe", &[], &args.iter().map(String::as_str).collect::<Vec<_>>());
    // The sandbox's own environment must not leak through.
    c.env("HOST_SECRET", "host-secret-value").env("LD_PRELOAD", "").env("GIT_DIR", "/tmp/x");
    let r = output(c);
    assert_eq!(r.code, 0, "{r:?}");
    let recs = ran(&f);
    assert_eq!(recs.len(), 2, "{r:?}");
    assert_eq!(
        env_of(&recs[0]),
        json!({"PATH": PATH_VALUE, "LANG": "C.UTF-8", "HELPER_TOKEN": "tok-123"}),
        "{}",
        recs[0]
    );
    assert_eq!(env_of(&recs[1]), json!({"PATH": PATH_VALUE}), "{}", recs[1]);
    assert!(!r.stdout.contains("host-secret-value"));
    let call = &f.calls("process.run")[0];
    let mut names: Vec<String> = serde_json::from_value(call["env"].clone()).unwrap();
    names.sort();
    assert_eq!(names, ["HELPER_TOKEN", "LANG"], "{call}");
    // Names on record, values never.
    for e in f.events().iter().filter(|e| e["capability"] == "process.run") {
        assert!(!e.to_string().contains("tok-123"), "{e}");
    }
}

#[test]
fn variables_the_rule_does_not_list_are_denied_and_nothing_runs() {
    let f = fixture(&rule("helper", "args = [\"*\"]\nenv = [\"LANG\"]"));
    let vars = [
        "FOO=1",
        "lang=C",
        "PATH=/tmp/evil",
        "LD_PRELOAD=/tmp/evil.so",
        "LD_LIBRARY_PATH=/tmp",
        "LD_AUDIT=/tmp/evil.so",
        "GIT_DIR=/tmp/x",
        "GIT_SSH_COMMAND=touch pwned",
        "GIT_CONFIG_PARAMETERS='core.pager'='touch pwned'",
        "NODE_OPTIONS=--require /tmp/evil.js",
        "BASH_ENV=/tmp/evil.sh",
        "ENV=/tmp/evil.sh",
        "PYTHONPATH=/tmp",
        "PYTHONSTARTUP=/tmp/x.py",
        "PERL5OPT=-Mevil",
        "RUBYOPT=-revil",
        "IFS=x",
        "=x",
    ];
    let mut ops: Vec<Vec<&str>> = vars.iter().map(|v| vec!["run", "--env", v, "helper"]).collect();
    // One bad variable among allowed ones refuses the whole call.
    ops.push(vec!["run", "--env", "LANG=C.UTF-8", "--env", "LD_PRELOAD=/tmp/evil.so", "helper"]);
    let done = runs(&f, &ops);
    let failures: Vec<String> = done
        .iter()
        .filter(|d| d.not_refused("denied", "deny").is_some() && d.not_refused("invalid", "invalid").is_some())
        .map(|d| format!("{}: {} / {}", d.label, d.detail, d.call))
        .collect();
    assert!(failures.is_empty(), "not refused:\n{}", failures.join("\n"));
    for d in &done[..3] {
        d.refused("denied", "deny");
    }
    assert!(ran(&f).is_empty(), "{:?}", ran(&f));
}

#[test]
fn stdin_comes_from_the_request_or_is_empty() {
    let f = fixture(&rule("helper", "args = [\"*\"]"));
    let done = runs(&f, &[vec!["run", "--stdin", "line one\nline two\n", "helper", "a"], vec!["run", "helper", "b"]]);
    assert_eq!(done[0].out().exit, Some(0));
    assert_eq!(done[1].out().exit, Some(0));
    let recs = ran(&f);
    assert_eq!(recs[0]["stdin"], "line one\nline two\n");
    assert_eq!(recs[1]["stdin"], "");
}

// -------------------------------------------------- working directory

#[test]
fn the_working_directory_stays_inside_the_workspace_and_the_rule() {
    let f = fixture(&format!(
        "{}{}",
        rule("helper", "args = [\"*\"]\ncwd = \"repos/**\""),
        // Same program, no `cwd`: only the workspace root.
        "\n[[process.allow]]\nprogram = \"rooted\"\npath = \"{bin}/helper\"\napproval = \"never\"\nargs = [\"*\"]\n"
    ));
    f.file("repos/a/x.txt", "x\n").file("other/y.txt", "y\n");
    f.symlink("repos/out", "../../outside").symlink("repos/to-other", "../other");
    let done = runs(
        &f,
        &[
            vec!["run", "--cwd", "repos/a", "helper", "in-repos-a"],
            vec!["run", "--cwd", "repos/a/../a/.", "helper", "in-repos-a-spelt"],
            vec!["run", "rooted", "in-root"],
            vec!["run", "--cwd", "other", "helper"],
            vec!["run", "--cwd", "repos/a/../../other", "helper"],
            vec!["run", "--cwd", "..", "helper"],
            vec!["run", "--cwd", "../outside", "helper"],
            vec!["run", "--cwd", "repos/../../outside", "helper"],
            vec!["run", "--cwd", "repos/out", "helper"],
            vec!["run", "--cwd", "repos/to-other", "helper"],
            vec!["run", "--cwd", "/tmp", "helper"],
            vec!["run", "--cwd", "/", "helper"],
            vec!["run", "--cwd", "repos/a", "rooted"],
        ],
    );
    let ws = f.path("ws").canonicalize().unwrap();
    assert_eq!(done[0].out().exit, Some(0));
    assert_eq!(done[0].call["cwd"], "repos/a");
    assert_eq!(done[1].out().exit, Some(0));
    assert_eq!(done[1].call["cwd"], "repos/a", "recorded in normal form");
    assert_eq!(done[2].out().exit, Some(0));
    let recs = ran(&f);
    assert_eq!(recs.len(), 3, "{recs:?}");
    assert_eq!(recs[0]["cwd"], ws.join("repos/a").display().to_string());
    assert_eq!(recs[1]["cwd"], ws.join("repos/a").display().to_string());
    assert_eq!(recs[2]["cwd"], ws.display().to_string());
    done[3].denied_by("process.allow[0]");
    done[4].denied_by("process.allow[0]");
    for d in &done[5..9] {
        d.denied_by("builtin:");
    }
    // A link to a directory the rule does not cover: denied like a path
    // that names it.
    done[9].refused("denied", "deny");
    for d in &done[10..12] {
        assert!(
            d.not_refused("invalid", "invalid").is_none() || d.not_refused("denied", "deny").is_none(),
            "{}: {}",
            d.label,
            d.detail
        );
    }
    done[12].denied_by("process.allow[1]");
}

// ----------------------------------------- timeouts, trees, fork loops

#[test]
fn a_process_is_killed_at_the_smallest_timeout_with_no_exit_code() {
    let f = fixture(&format!(
        "{}\n[[process.allow]]\nprogram = \"slow\"\npath = \"{{bin}}/helper\"\napproval = \"never\"\nargs = [\"*\"]\ntimeout = \"1s\"\n",
        rule("helper", "args = [\"*\"]")
    ));
    let _reaper = Reaper::new(&f);
    let done = runs(
        &f,
        &[
            // the request's timeout
            vec!["run", "--timeout", "500", "helper", "@sleep", "60"],
            // the rule's timeout, smaller than the request's
            vec!["run", "--timeout", "600000", "slow", "@sleep", "60"],
            vec!["run", "slow", "@sleep", "60"],
        ],
    );
    for d in &done {
        let out = d.out();
        assert_eq!(out.exit, None, "{}: {out:?}", d.label);
        assert!(!out.truncated, "{}", d.label);
        assert!(d.result.get("exit_code").is_none_or(Value::is_null), "{}", d.result);
    }
    assert_eq!(pids(&f).len(), 3, "every sleeper started: {:?}", pids(&f));
    assert_eq!(survivors(&f), vec![], "killed processes still run");
}

#[test]
fn the_run_time_left_bounds_a_process_and_nothing_outlives_the_run() {
    let f = fixture(&format!("{}\n[limits]\ntime = \"3s\"\n", rule("helper", "args = [\"*\"]")));
    let _reaper = Reaper::new(&f);
    let r = f.run("probe", &["run", "helper", "@sleep", "100"]);
    // The call ends at the run's time with `exit none`, or the run stops
    // at its limit (124); either way the sleeper is gone.
    assert!(r.code == 0 || r.code == 124, "{r:?}");
    assert_eq!(pids(&f).len(), 1, "{r:?}");
    assert_eq!(survivors(&f), vec![]);
    assert_eq!(f.verify().code, 0);
}

/// Starts `probe` with `args` and returns the run (held by the reaper)
/// and its stdout as it arrives.
fn spawn_probe(f: &Fixture, reaper: &mut Reaper, args: &[String]) -> Arc<Mutex<String>> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = f.command("probe", &[], &args).stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    reaper.run = Some(child);
    seen
}

/// Waits for the run `reaper` holds to end; its exit code.
fn finish(reaper: &mut Reaper) -> i32 {
    let child = reaper.run.as_mut().unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(start.elapsed() < PATIENCE, "the run did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn no_child_or_setsid_grandchild_survives_a_timeout() {
    let f = fixture(&rule("helper", "args = [\"*\"]"));
    let mut reaper = Reaper::new(&f);
    let label = probe_label(&["run", "--timeout", "3000", "helper", "@tree", "60"]);
    // After the call the tool sleeps, so the check below happens while the
    // run (and whatever it might keep around) is still there.
    let args = probe_args(&[run_op(&["--timeout", "3000", "helper", "@tree", "60"]), vec!["sleep", "4000"]]);
    let seen = spawn_probe(&f, &mut reaper, &args);
    let shown = wait_for(PATIENCE, || {
        seen.lock().unwrap().contains(&label) || reaper.run.as_mut().unwrap().try_wait().unwrap().is_some()
    });
    assert!(shown, "no line for the call");
    let still_running = reaper.run.as_mut().unwrap().try_wait().unwrap().is_none();
    let tree = pids(&f);
    let survivors = survivors(&f);
    let code = finish(&mut reaper);
    let stdout = seen.lock().unwrap().clone();
    assert_eq!(code, 0, "{stdout}");
    let line = stdout.lines().find(|l| l.starts_with(&label)).unwrap_or_else(|| panic!("{stdout}"));
    let out = parse_out(&line[label.len() + 2..]);
    assert_eq!(out.exit, None, "{out:?}");
    assert!(out.stdout.contains("tree 5"), "the whole tree was up before the timeout: {out:?}");
    let tags: BTreeSet<&str> = tree.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(tags, BTreeSet::from(["parent", "child", "grandchild-setsid", "daemon", "stubborn"]));
    assert_eq!(
        survivors,
        vec![],
        "still running after the call returned (the run {} still going)",
        if still_running { "was" } else { "was not" }
    );
}

#[test]
fn a_fork_loop_is_stopped_at_its_timeout_and_leaves_nothing_running() {
    let f = fixture(&rule("helper", "args = [\"*\"]"));
    let _reaper = Reaper::new(&f);
    let done = runs(&f, &[vec!["run", "--timeout", "3000", "helper", "@forkloop", "6"]]);
    let out = done[0].out();
    assert_eq!(out.exit, None, "{out:?}");
    let forked = pids(&f);
    assert!(forked.len() > 8, "the loop forked: {} processes", forked.len());
    assert_eq!(survivors(&f), vec![], "of {} forked", forked.len());
}

#[test]
fn a_deep_line_of_setsid_descendants_is_killed_to_the_last() {
    // Each process is the only child of the one before, in its own session:
    // neither the group kill nor one round of killing orphans reaches
    // beyond one generation.
    let f = fixture(&rule("helper", "args = [\"*\"]"));
    let _reaper = Reaper::new(&f);
    let done = runs(&f, &[vec!["run", "--timeout", "8000", "helper", "@chain", "300"]]);
    let out = done[0].out();
    assert_eq!(out.exit, None, "{out:?}");
    let line = pids(&f);
    assert_eq!(line.len(), 300, "the whole line was up before the timeout");
    let left = survivors(&f);
    assert_eq!(left.len(), 0, "{} of {} still running after the call", left.len(), line.len());
}

// ------------------------------------------------------------- output

#[test]
fn endless_output_is_cut_at_the_limit_and_the_process_killed() {
    let f = fixture(&format!("{}\n[limits]\noutput = \"64 KiB\"\n", rule("helper", "args = [\"*\"]")));
    let _reaper = Reaper::new(&f);
    let done = runs(
        &f,
        &[
            vec!["run", "helper", "@flood", "out"],
            vec!["run", "helper", "@flood", "err"],
            vec!["run", "helper", "@flood", "both"],
            vec!["run", "helper", "@exit", "0"],
        ],
    );
    for (d, stream) in done[..3].iter().zip(["out", "err", "both"]) {
        let out = d.out();
        assert!(out.truncated, "{}: {out:?}", d.label);
        assert_eq!(out.exit, None, "{}", d.label);
        let cut = if stream == "err" { &out.stderr } else { &out.stdout };
        assert!(cut.starts_with("xxxx"), "{}: {out:?}", d.label);
        assert_eq!(d.result["truncated"], true, "{}", d.result);
        assert!(d.result.get("exit_code").is_none_or(Value::is_null), "{}", d.result);
        let bytes = d.result["bytes_out"].as_u64().unwrap();
        assert!(bytes > 0 && bytes <= 2 * 65536, "{}: bytes_out {bytes}", d.label);
    }
    let small = done[3].out();
    assert!(!small.truncated);
    assert_eq!(done[3].result["truncated"], false);
    assert_eq!(survivors(&f), vec![]);
}

// ------------------------------------------------------------ Landlock

#[test]
fn a_program_outside_the_system_directories_and_the_workspace_runs() {
    // An operator's own tool, pinned by path like any other (the manifest
    // compiler accepts it: it exists and is executable).
    let f = fixture(
        "\n[[process.allow]]\nprogram = \"tool\"\npath = \"{tools}/tool\"\napproval = \"never\"\nargs = [\"*\"]\n",
    );
    install_helper(&f, &f.path("tools/tool"));
    let manifest = std::fs::read_to_string(f.manifest()).unwrap();
    std::fs::write(f.manifest(), manifest.replace("{tools}", &f.path("tools").display().to_string())).unwrap();
    let done = runs(&f, &[vec!["run", "tool", "x"]]);
    let out = done[0].out();
    assert_eq!(out.exit, Some(0), "{out:?}");
    assert_eq!(argvs(&f), vec![vec!["x".to_owned()]]);
    // Running it grants nothing else there.
    let done = runs(&f, &[vec!["run", "tool", "@write", &f.path("tools/planted").display().to_string()]]);
    assert!(done[0].out().stdout.starts_with("write-error"), "{:?}", done[0]);
}

#[test]
fn the_program_can_touch_only_the_workspace() {
    let f = fixture(&rule("helper", "args = [\"*\"]"));
    let _reaper = Reaper::new(&f);
    f.file("inside.txt", "INSIDE\n").symlink("link-out", "../outside/secret.txt");
    let secret = f.path("outside/secret.txt").display().to_string();
    let new_outside = f.path("outside/new.txt").display().to_string();
    let tmp_name = format!("/tmp/sandbox-process-test-{}", std::process::id());
    let before = f.outside_digest();
    let done = runs(
        &f,
        &[
            vec!["run", "helper", "@read", "inside.txt"],
            vec!["run", "helper", "@write", "made-inside.txt"],
            vec!["run", "helper", "@read", &secret],
            vec!["run", "helper", "@read", "link-out"],
            vec!["run", "helper", "@read", "../outside/secret.txt"],
            vec!["run", "helper", "@list", "/root"],
            vec!["run", "helper", "@list", &f.path("outside").display().to_string()],
            vec!["run", "helper", "@write", &new_outside],
            vec!["run", "helper", "@write", &tmp_name],
            vec!["run", "helper", "@parent-environ"],
            vec!["run", "helper", "@read", "/etc/passwd"],
        ],
    );
    let outs: Vec<Out> = done.iter().map(Done::out).collect();
    assert_eq!(outs[0].stdout, "read-ok INSIDE\n");
    assert_eq!(outs[1].stdout, "write-ok\n");
    assert_eq!(f.read("made-inside.txt").as_deref(), Some("written by the helper\n"));
    for (d, out) in done.iter().zip(&outs).skip(2).take(8) {
        assert!(
            out.stdout.starts_with("read-error")
                || out.stdout.starts_with("list-error")
                || out.stdout.starts_with("write-error"),
            "{}: reached outside the workspace: {out:?}",
            d.label
        );
        assert!(!out.stdout.contains("OUTSIDE-SECRET"), "{}", d.label);
    }
    // The system stays readable: the program could start, and can read /etc.
    assert!(outs[10].stdout.starts_with("read-ok"), "{:?}", outs[10]);
    let wrote_tmp = Path::new(&tmp_name).exists();
    let _ = std::fs::remove_file(&tmp_name);
    assert!(!wrote_tmp, "wrote {tmp_name}");
    assert_eq!(f.outside_digest(), before);
    for d in &done {
        let confinement = d.result["confinement"].as_str().unwrap_or("");
        assert!(confinement.starts_with("landlock"), "{}: confinement {:?}", d.label, d.result);
    }
}

#[test]
fn a_manifest_or_audit_log_inside_the_workspace_refuses_commands() {
    // The workspace is the manifest's folder, so the manifest and the log
    // lie inside it. `fs` calls may never write them, but a program may
    // write the whole workspace (Landlock cannot carve files out of it): a
    // manifest with command rules is refused such a layout before anything
    // runs, and the refusal is on record.
    let f = fixture(&format!("{}\n[workspace]\nroot = \".\"\n", rule("helper", "args = [\"*\"]")));
    let manifest = std::fs::read_to_string(f.manifest()).unwrap();
    let ops = [vec!["run", "helper", "@write", "audit.jsonl"], vec!["run", "helper", "@write", "manifest.toml"]];
    let args = probe_args(&ops);
    let r = f.run("probe", &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains("lies inside the workspace") && r.stderr.contains("manifest.toml"), "{r:?}");
    assert!(ran(&f).is_empty(), "a program ran");
    assert_eq!(std::fs::read_to_string(f.manifest()).unwrap(), manifest);
    let end = f.events().pop().unwrap();
    assert_eq!(end["status"], "refused");
    assert_eq!(f.verify().code, 0);
}

/// A process of the test's own, killed when dropped.
struct Victim(Child);

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_program_cannot_signal_the_runtime_or_processes_outside_its_tree() {
    let f = fixture(&rule("helper", "args = [\"*\"]"));
    let mut victim = Victim(Command::new("sleep").arg("600").spawn().unwrap());
    let pid = victim.0.id().to_string();
    let done = runs(&f, &[vec!["run", "helper", "@signal", &pid]]);
    assert!(done[0].out().stdout.starts_with("signal-error"), "{:?}", done[0]);
    assert!(victim.0.try_wait().unwrap().is_none(), "the program killed a process outside its tree");
    // Killing the runtime would end the run with the call on record and
    // neither its result nor the task's end.
    let r = f.run("probe", &["run", "helper", "@signal", "parent"]);
    // A killed runtime cannot remove the call's TMPDIR: the test does.
    if let Some(tmp) = ran(&f).last().and_then(|rec| rec["env"]["TMPDIR"].as_str().map(str::to_owned))
        && tmp.contains("sandbox-exec-")
    {
        let _ = std::fs::remove_dir_all(tmp);
    }
    assert_eq!(r.code, 0, "the program killed the runtime: {r:?}");
    assert!(r.stdout.contains("ok exit 0 stdout \"signal-error"), "{r:?}");
    assert_eq!(f.events().last().unwrap()["kind"], "task-end");
    assert_eq!(f.verify().code, 0);
}

// --------------------------------------------------------------- audit

#[test]
fn the_audit_events_carry_argv_program_cwd_env_names_and_the_result() {
    let f = fixture(&format!(
        "{}{}",
        rule("helper", "args = [\"*\"]\nenv = [\"LANG\", \"HELPER_TOKEN\"]\ncwd = \"sub/**\""),
        rule("plain", "args = [\"*\"]").replace("{bin}/plain", "{bin}/helper")
    ));
    f.file("sub/deeper/x.txt", "x\n");
    let done = runs(
        &f,
        &[
            vec![
                "run",
                "--cwd",
                "sub/deeper",
                "--env",
                "LANG=C.UTF-8",
                "--env",
                "HELPER_TOKEN=value-never-logged",
                "helper",
                "@exit",
                "3",
                "two words",
                "it's",
            ],
            vec!["run", "plain", "@exit", "0", "--output=x"],
        ],
    );
    let out = done[0].out();
    assert_eq!(out.exit, Some(3));
    assert_eq!(out.stdout, "out-text\n");
    assert_eq!(out.stderr, "err-text\n");
    let call = &done[0].call;
    assert_eq!(call["capability"], "process.run");
    assert_eq!(call["decision"], "allow");
    assert_eq!(call["rule"], "process.allow[0]:helper");
    assert_eq!(call["resolved"], f.ws(".bin/helper").display().to_string());
    assert_eq!(call["cwd"], "sub/deeper");
    let mut env: Vec<String> = serde_json::from_value(call["env"].clone()).unwrap();
    env.sort();
    assert_eq!(env, ["HELPER_TOKEN", "LANG"]);
    // The argv as one line: words with spaces or quotes quoted.
    let target = call["target"].as_str().unwrap();
    assert!(target.starts_with("helper @exit 3 "), "{target}");
    assert_ne!(target, "helper @exit 3 two words it's", "words must stay apart: {target}");
    assert!(target.contains("'two words'") || target.contains("\"two words\""), "{target}");
    assert!(!target.contains('\n'));
    let result = &done[0].result;
    assert_eq!(result["capability"], "process.run");
    assert_eq!(result["target"], call["target"]);
    assert_eq!(result["outcome"], "ok");
    assert_eq!(result["exit_code"], 3);
    assert_eq!(result["bytes_out"], 18, "stdout and stderr returned: {result}");
    assert_eq!(result["truncated"], false);
    assert!(result["confinement"].is_string(), "{result}");
    assert!(result["duration_us"].is_u64(), "{result}");
    assert_eq!(done[1].call["target"], "plain @exit 0 --output=x");
    assert_eq!(done[1].call["rule"], "process.allow[1]:plain");
    let root = done[1].call["cwd"].as_str().unwrap_or("?");
    assert!(root.is_empty() || root == ".", "the default cwd is the workspace root: {}", done[1].call);
    assert_eq!(done[1].call["env"], json!([]));
    assert_eq!(done[1].result["exit_code"], 0);
    for e in f.events().iter().filter(|e| e["capability"] == "process.run") {
        assert!(!e.to_string().contains("value-never-logged"), "{e}");
    }
    assert_eq!(f.verify().code, 0);
}

#[test]
fn secret_looking_arguments_are_redacted_in_the_log_but_passed_on() {
    let f = fixture(&rule("helper", "args = [\"*\"]"));
    let words = [
        "--password=pw-secret-1",
        "--token=tk-secret-2",
        "https://alice:pw-secret-3@example.com/repo.git",
        "--other=visible",
    ];
    let mut op = vec!["run", "helper"];
    op.extend_from_slice(&words);
    let done = runs(&f, &[op]);
    assert_eq!(done[0].out().exit, Some(0));
    assert_eq!(argvs(&f), vec![words.iter().map(|w| w.to_string()).collect::<Vec<_>>()]);
    let target = done[0].call["target"].as_str().unwrap();
    assert!(target.contains("--password") && target.contains("example.com") && target.contains("--other=visible"));
    for e in f.events().iter().filter(|e| e["capability"] == "process.run") {
        for secret in ["pw-secret-1", "tk-secret-2", "pw-secret-3"] {
            assert!(!e.to_string().contains(secret), "{secret} in {e}");
        }
    }
}

// ------------------------------------------------------------ approval

#[test]
fn a_rule_asks_by_default_and_without_approval_nothing_runs() {
    let f = fixture("\n[[process.allow]]\nprogram = \"helper\"\npath = \"{bin}/helper\"\nargs = [\"*\"]\n");
    let (r, done) = probe_runs(&f, &["--approve", "deny"], &[vec!["run", "helper", "make-a-mark"]]);
    assert_eq!(r.code, 0, "{r:?}");
    done[0].refused("not-approved", "ask");
    assert_eq!(done[0].call["rule"], "process.allow[0]:helper");
    let ev = f.events();
    let seq = done[0].call["seq"].as_u64().unwrap() as usize;
    assert_eq!(ev[seq + 1]["kind"], "approval");
    assert_eq!(ev[seq + 1]["decision"], "rejected");
    assert!(!f.ws("ran.log").exists(), "the program ran without approval");
    // `sandbox policy explain` says the same.
    let e = explain(&f.manifest(), "helper make-a-mark");
    assert!(e.stdout.starts_with("ask"), "{e:?}");
}

#[test]
fn the_approval_prompt_shows_the_exact_argv_cwd_and_env_and_yes_runs_it() {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    let f = fixture(
        "\n[[process.allow]]\nprogram = \"helper\"\npath = \"{bin}/helper\"\nargs = [\"*\"]\nenv = [\"LANG\"]\ncwd = \"sub\"\n\n[approval]\ntimeout = \"60s\"\n",
    );
    f.file("sub/x.txt", "x\n");
    let pair = native_pty_system().openpty(PtySize { rows: 60, cols: 200, ..PtySize::default() }).unwrap();
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_sandbox"));
    cmd.env_remove("SANDBOX_LOG");
    cmd.cwd(f.dir.path());
    cmd.arg("run");
    cmd.arg(guest("probe"));
    cmd.arg("--manifest");
    cmd.arg(f.manifest());
    cmd.args(["--approve", "tty", "--"]);
    cmd.args(["run", "--cwd", "sub", "--env", "LANG=C.UTF-8", "helper", "two words", ";touch pwned"]);
    let mut child = pair.slave.spawn_command(cmd).unwrap();
    drop(pair.slave);
    let mut from_master = pair.master.try_clone_reader().unwrap();
    let mut writer = pair.master.take_writer().unwrap();
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = seen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from_master.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let text = || String::from_utf8_lossy(&seen.lock().unwrap()).replace("\r\n", "\n");
    if !wait_for(PATIENCE, || text().contains("[y/N]: ")) {
        let _ = child.kill();
        panic!("no approval prompt; the terminal showed:\n{}", text());
    }
    let screen = text();
    let start = screen.find("sandbox: approval needed").unwrap_or(0);
    let prompt = screen[start..].to_owned();
    writer.write_all(b"y\n").unwrap();
    writer.flush().unwrap();
    let begun = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if begun.elapsed() > PATIENCE {
            let _ = child.kill();
            panic!("the run did not end:\n{}", text());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(pair.master);
    reader.join().unwrap();
    assert_eq!(status.exit_code(), 0, "{}", text());
    for shown in ["process.run", "helper", "two words", ";touch pwned", "sub", "LANG", "process.allow[0]"] {
        assert!(prompt.contains(shown), "the prompt does not show {shown:?}:\n{prompt}");
    }
    assert_eq!(argvs(&f), vec![vec!["two words".to_owned(), ";touch pwned".to_owned()]]);
    assert!(!f.ws("pwned").exists() && !f.ws("sub/pwned").exists());
    let approval = f.events().into_iter().find(|e| e["kind"] == "approval").unwrap();
    assert_eq!(approval["decision"], "approved", "{approval}");
}

// ------------------------------------------------------------- explain

#[test]
fn explain_shows_the_built_in_refusals_with_their_rule() {
    let f = fixture(&format!(
        "{}{}{}{}{}{}\n[[process.allow]]\nprogram = \"asker\"\npath = \"{{bin}}/helper\"\nargs = [\"*\"]\n",
        rule("git", "args = [\"*\"]"),
        rule("find", "args = [\"*\"]"),
        rule("tar", "args = [\"*\"]"),
        rule("sed", "args = [\"*\"]"),
        rule("rg", "args = [\"*\"]"),
        rule("helper", "args = [\"*\"]\ndeny_args = [\"--output*\"]"),
    ));
    let m = f.manifest();
    let r = explain(&m, "git status");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("allow") && r.stdout.contains("process.allow[0]"), "{r:?}");
    for target in [
        "git -c x=y status",
        "git -c core.sshCommand=x fetch origin",
        "git fetch --upload-pack=x origin",
        "git --exec-path=/tmp status",
        "git clone ext::sh y",
        "git config core.pager x",
        "find . -exec rm {} ;",
        "find . -delete",
        "tar --checkpoint-action=exec=x -xf a.tar",
        "tar xIf sh a.tar",
        "sed -i s/a/b/ f",
        "rg --pre x y .",
    ] {
        let r = explain(&m, target);
        assert_eq!(r.code, 1, "{target}: {r:?}");
        assert!(r.stdout.starts_with("deny"), "{target}: {r:?}");
        assert!(r.stdout.contains("(rule builtin:"), "{target}: {r:?}");
    }
    let r = explain(&m, "helper --output=x");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.starts_with("deny") && r.stdout.contains("process.allow[5]"), "{r:?}");
    let r = explain(&m, "nobody x");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.starts_with("deny") && r.stdout.trim_end().ends_with("(rule default)"), "{r:?}");
    let r = explain(&m, "asker x");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("ask") && r.stdout.contains("process.allow[6]"), "{r:?}");
}

// ------------------------------------------------ git and `gitsum`

/// The shipped manifest for `gitsum`.
fn git_policy() -> PathBuf {
    repo().join("policies/git.toml")
}

/// A repository with two commits and, in the work tree, one modified, one
/// deleted, one added (staged) and one untracked file.
fn make_repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    for (name, text) in [("a.txt", "alpha\n"), ("b.txt", "beta\n"), ("c.txt", "gamma\n")] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "first commit"]);
    std::fs::write(dir.join("c.txt"), "gamma\ngamma two\n").unwrap();
    git(dir, &["commit", "-q", "-a", "-m", "second commit"]);
    std::fs::write(dir.join("a.txt"), "alpha changed\n").unwrap();
    std::fs::remove_file(dir.join("b.txt")).unwrap();
    std::fs::write(dir.join("d.txt"), "delta\n").unwrap();
    git(dir, &["add", "d.txt"]);
    std::fs::write(dir.join("e.txt"), "epsilon\n").unwrap();
}

/// `sandbox run gitsum --manifest policies/git.toml --workspace WS
/// --audit AUDIT`.
fn gitsum(ws: &Path, audit: &Path) -> Run {
    let mut c = sandbox();
    c.arg("run").arg(guest("gitsum")).arg("--manifest").arg(git_policy());
    c.arg("--workspace").arg(ws).arg("--audit").arg(audit).arg("--user").arg("alice");
    output(c)
}

#[test]
fn the_git_policy_compiles_and_allows_only_its_three_commands() {
    let r = output({
        let mut c = sandbox();
        c.args(["policy", "check"]).arg(git_policy());
        c
    });
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("/usr/bin/git"), "{r:?}");
    for allowed in ["git status --porcelain=v1 --branch", "git diff --stat", "git log --oneline -n 5"] {
        let e = explain(&git_policy(), allowed);
        assert_eq!(e.code, 0, "{allowed}: {e:?}");
        assert!(e.stdout.starts_with("allow"), "{allowed}: {e:?}");
    }
    for refused in ["git push", "git status", "git log --oneline -n 5 -p", "git -c core.pager=x diff --stat"] {
        let e = explain(&git_policy(), refused);
        assert_eq!(e.code, 1, "{refused}: {e:?}");
    }
}

#[test]
fn gitsum_summarises_a_real_repository() {
    let f = Fixture::new("");
    let ws = f.path("ws");
    make_repo(&ws);
    let diffstat = git(&ws, &["diff", "--stat"]);
    let log = git(&ws, &["log", "--oneline", "-n", "5"]);
    let r = gitsum(&ws, &f.audit());
    assert_eq!(r.code, 0, "{r:?}");
    let mut want = String::from("branch: main\nchanges: 1 modified, 1 added, 1 deleted, 1 untracked\n");
    want.push_str(&format!("diff: {}\n", diffstat.lines().last().unwrap().trim()));
    want.push_str("recent commits:\n");
    for line in log.lines() {
        want.push_str(&format!("  {line}\n"));
    }
    assert_eq!(r.stdout, want);
    assert!(want.contains("2 files changed") && want.contains("second commit") && want.contains("first commit"));
    let ev = events(&f.audit());
    let calls: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "call").collect();
    let targets: Vec<&str> = calls.iter().map(|c| c["target"].as_str().unwrap()).collect();
    assert_eq!(targets, ["git status --porcelain=v1 --branch", "git diff --stat", "git log --oneline -n 5"]);
    for c in &calls {
        assert_eq!(c["capability"], "process.run");
        assert_eq!(c["decision"], "allow");
        assert_eq!(c["rule"], "process.allow[0]:git");
        assert_eq!(c["resolved"], "/usr/bin/git");
        let result = result_of(&ev, c);
        assert_eq!(result["outcome"], "ok");
        assert_eq!(result["exit_code"], 0);
    }
    assert_eq!(verify(&f.audit()).code, 0);
}

/// Plants `attack` in the repository `repo`: a config key or hook that
/// makes git run `touch MARKER` during status, diff --stat or log.
/// Returns the marker.
fn plant(repo: &Path, attack: &str) -> PathBuf {
    let marker = repo.join(format!("ran-{attack}"));
    let touch = format!("touch {}", marker.display());
    let hook = |dir: &Path| {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join("post-index-change");
        std::fs::write(&p, format!("#!/bin/sh\n{touch}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    match attack {
        "fsmonitor" => {
            git(repo, &["config", "core.fsmonitor", &format!("{touch}; echo")]);
        }
        "hooks-path" => {
            let dir = repo.join(".git/evil-hooks");
            hook(&dir);
            git(repo, &["config", "core.hooksPath", &dir.display().to_string()]);
        }
        "default-hooks" => hook(&repo.join(".git/hooks")),
        "filter" => {
            git(repo, &["config", "filter.evil.clean", &format!("{touch}; cat")]);
            std::fs::write(repo.join(".git/info/attributes"), "* filter=evil\n").unwrap();
        }
        "gpg" => {
            // A commit carrying a signature, and a gpg.program to check it.
            let tree = git(repo, &["rev-parse", "HEAD^{tree}"]);
            let parent = git(repo, &["rev-parse", "HEAD"]);
            let commit = format!(
                "tree {}\nparent {}\nauthor T <t@e> 1700000000 +0000\ncommitter T <t@e> 1700000000 +0000\ngpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----\n\nsigned commit\n",
                tree.trim(),
                parent.trim()
            );
            std::fs::write(repo.join(".git/signed"), commit).unwrap();
            let id = git(repo, &["hash-object", "-t", "commit", "-w", ".git/signed"]);
            git(repo, &["update-ref", "refs/heads/main", id.trim()]);
            let program = repo.join(".git/gpg-evil");
            std::fs::write(&program, format!("#!/bin/sh\n{touch}\nexit 1\n")).unwrap();
            std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
            git(repo, &["config", "log.showSignature", "true"]);
            git(repo, &["config", "gpg.program", &program.display().to_string()]);
        }
        "pager" => {
            git(repo, &["config", "core.pager", &format!("{touch}; cat")]);
            git(repo, &["config", "pager.log", &format!("{touch}; cat")]);
            git(repo, &["config", "pager.status", &format!("{touch}; cat")]);
        }
        _ => unreachable!("{attack}"),
    }
    // Stale stat data, so status refreshes and writes the index.
    std::fs::write(repo.join("c.txt"), "gamma\ngamma two\n").unwrap();
    marker
}

#[test]
fn a_repositorys_own_config_and_hooks_cannot_run_code() {
    let f = Fixture::new("");
    let mut failures = Vec::new();
    for attack in ["fsmonitor", "hooks-path", "default-hooks", "filter", "gpg", "pager"] {
        // Control: with plain git (system and global config off, as the
        // sandbox runs it) the planted command does run. The pager runs
        // only on a terminal, so it has no control.
        if attack != "pager" {
            let control = f.path(&format!("control-{attack}"));
            make_repo(&control);
            let marker = plant(&control, attack);
            git(&control, &["status", "--porcelain=v1", "--branch"]);
            git(&control, &["diff", "--stat"]);
            git(&control, &["log", "--oneline", "-n", "5"]);
            assert!(marker.exists(), "control: `{attack}` did not run code with plain git; the test is broken");
        }
        let repo = f.path(&format!("repo-{attack}"));
        make_repo(&repo);
        let marker = plant(&repo, attack);
        let r = gitsum(&repo, &f.path(&format!("audit-{attack}.jsonl")));
        if marker.exists() {
            failures.push(format!("`{attack}` ran code under the sandbox; gitsum: {r:?}"));
        }
        assert_eq!(verify(&f.path(&format!("audit-{attack}.jsonl"))).code, 0);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn repository_config_cannot_make_a_broadly_allowed_git_run_code() {
    // `args = ["*"]`: the operator trusts the built-in refusals and the
    // forced settings to keep git from running commands.
    let f = fixture(
        "\n[[process.allow]]\nprogram = \"git\"\npath = \"/usr/bin/git\"\napproval = \"never\"\nargs = [\"*\"]\ncwd = \"*\"\n",
    );
    let attacks: [(&str, &[&str]); 4] = [
        ("alias", &["st"]),
        ("diff-command", &["diff"]),
        ("textconv", &["log", "-p", "-n", "1"]),
        ("uploadpack", &["fetch", "origin"]),
    ];
    let plant = |repo: &Path, attack: &str| -> PathBuf {
        make_repo(repo);
        let marker = repo.join(format!("ran-{attack}"));
        let touch = format!("touch {}", marker.display());
        match attack {
            "alias" => {
                git(repo, &["config", "alias.st", &format!("!{touch}")]);
            }
            "diff-command" => {
                git(repo, &["config", "diff.evil.command", &format!("{touch}; true")]);
                std::fs::write(repo.join(".git/info/attributes"), "* diff=evil\n").unwrap();
            }
            "textconv" => {
                git(repo, &["config", "diff.evil.textconv", &format!("{touch}; cat")]);
                std::fs::write(repo.join(".git/info/attributes"), "*.txt diff=evil\n").unwrap();
            }
            "uploadpack" => {
                git(repo, &["config", "remote.origin.url", &repo.display().to_string()]);
                git(repo, &["config", "remote.origin.uploadpack", &format!("{touch}; false")]);
            }
            _ => unreachable!(),
        }
        marker
    };
    let mut ops = Vec::new();
    let mut markers = Vec::new();
    for (attack, args) in attacks {
        // Control: plain git (system and global config off) runs it.
        let control = f.path(&format!("control-{attack}"));
        let marker = plant(&control, attack);
        let _ = Command::new("/usr/bin/git")
            .current_dir(&control)
            .env_clear()
            .env("PATH", PATH_VALUE)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .args(args)
            .output()
            .unwrap();
        assert!(marker.exists(), "control: `{attack}` did not run code with plain git; the test is broken");
        markers.push((attack, plant(&f.ws(attack), attack)));
        let mut op = vec!["run", "--cwd", attack, "git"];
        op.extend_from_slice(args);
        ops.push(op);
    }
    let done = runs(&f, &ops);
    let ran: Vec<String> = markers
        .iter()
        .zip(&done)
        .filter(|((_, marker), _)| marker.exists())
        .map(|((attack, _), d)| format!("`{attack}` ran code under the sandbox: {} -> {}", d.label, d.detail))
        .collect();
    assert!(ran.is_empty(), "{}", ran.join("\n"));
}

#[test]
fn git_never_finds_a_repository_above_the_workspace() {
    let f = Fixture::new("");
    // The fixture folder is a repository; the workspace inside it is not.
    git(f.dir.path(), &["init", "-q", "-b", "main"]);
    git(f.dir.path(), &["add", "outside/secret.txt"]);
    git(f.dir.path(), &["commit", "-q", "-m", "OUTSIDE-COMMIT"]);
    std::fs::write(f.ws("file.txt"), "not a repository\n").unwrap();
    let r = gitsum(&f.path("ws"), &f.path("audit-git.jsonl"));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(!r.stdout.contains("OUTSIDE") && !r.stderr.contains("OUTSIDE"), "{r:?}");
    assert!(r.stderr.starts_with("gitsum: git status"), "{r:?}");
}
