//! Test harness: the real `sandbox` binary, real guests from `guests/`, a
//! temporary workspace with a manifest, and the audit log parsed back.
//!
//! Guests are built by `scripts/test` (or `scripts/build-guests`) before
//! `cargo test`; a missing guest fails the test with that instruction.

#![allow(dead_code)] // each test file uses its own part of the harness
#![allow(clippy::unwrap_used)] // a test helper that cannot set up fails the test

pub mod approval_service;
pub mod browser;
pub mod http_server;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `sandbox` binary under test.
pub fn sandbox() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sandbox"));
    c.env_remove("SANDBOX_LOG").env("USER", "tester");
    c
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A guest component built from `guests/<name>`.
pub fn guest(name: &str) -> PathBuf {
    let p = repo().join("guests/target/wasm32-wasip2/release").join(format!("{name}.wasm"));
    assert!(p.exists(), "guest `{}` is not built: run scripts/test (or scripts/build-guests) first", p.display());
    p
}

/// The outcome of one `sandbox` invocation.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The probe's result line for an op, e.g. `"read" "a.txt"`.
    pub fn line(&self, label: &str) -> &str {
        let prefix = format!("{label}: ");
        self.stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .map(|l| &l[prefix.len()..])
            .unwrap_or_else(|| panic!("no line for {label} in stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
}

/// The label `probe` prints for an op and its arguments.
pub fn label(words: &[&str]) -> String {
    words.iter().map(|w| format!("{w:?}")).collect::<Vec<_>>().join(" ")
}

/// A temporary directory holding `ws/` (the workspace), `outside/` (files
/// a tool must never reach), `manifest.toml` and `audit.jsonl`.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// A fixture whose manifest is `body` plus, unless `body` sets them,
    /// `[workspace] root = "ws"` and `[audit] path = "audit.jsonl"`.
    pub fn new(body: &str) -> Fixture {
        Fixture::new_in(tempfile::tempdir().unwrap(), body)
    }

    /// Like [`new`](Self::new), in `dir`.
    pub fn new_in(dir: tempfile::TempDir, body: &str) -> Fixture {
        std::fs::create_dir(dir.path().join("ws")).unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/secret.txt"), "OUTSIDE-SECRET\n").unwrap();
        let mut manifest = String::new();
        if !body.contains("version") {
            manifest.push_str("version = 1\n");
        }
        manifest.push_str(body);
        if !body.contains("[workspace]") {
            manifest.push_str("\n[workspace]\nroot = \"ws\"\n");
        }
        if !body.contains("[audit]") {
            manifest.push_str("\n[audit]\npath = \"audit.jsonl\"\n");
        }
        std::fs::write(dir.path().join("manifest.toml"), manifest).unwrap();
        Fixture { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn ws(&self, rel: &str) -> PathBuf {
        self.dir.path().join("ws").join(rel)
    }

    pub fn manifest(&self) -> PathBuf {
        self.path("manifest.toml")
    }

    pub fn audit(&self) -> PathBuf {
        self.path("audit.jsonl")
    }

    /// Writes a workspace file, creating its directories.
    pub fn file(&self, rel: &str, content: &str) -> &Fixture {
        let p = self.ws(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    /// Creates a symlink at `rel` (in the workspace) pointing to `target`.
    pub fn symlink(&self, rel: &str, target: &str) -> &Fixture {
        let p = self.ws(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
        self
    }

    pub fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.ws(rel)).ok()
    }

    /// `sandbox run GUEST --manifest M -- ARGS` with no terminal and empty
    /// stdin.
    pub fn run(&self, guest_name: &str, args: &[&str]) -> Run {
        self.run_with(guest_name, &[], args)
    }

    /// Like [`run`](Self::run) with extra `sandbox run` options.
    pub fn run_with(&self, guest_name: &str, opts: &[&str], args: &[&str]) -> Run {
        let out = self.command(guest_name, opts, args).output().unwrap();
        Run::from_output(out)
    }

    /// The command [`run_with`](Self::run_with) executes.
    pub fn command(&self, guest_name: &str, opts: &[&str], args: &[&str]) -> Command {
        let mut c = sandbox();
        c.arg("run").arg(guest(guest_name)).arg("--manifest").arg(self.manifest()).arg("--user").arg("alice");
        c.args(opts).arg("--").args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }

    /// The audit log's events.
    pub fn events(&self) -> Vec<Value> {
        events(&self.audit())
    }

    /// `call` events with this capability.
    pub fn calls(&self, capability: &str) -> Vec<Value> {
        self.events().into_iter().filter(|e| e["kind"] == "call" && e["capability"] == capability).collect()
    }

    /// `sandbox audit verify` on this fixture's log.
    pub fn verify(&self) -> Run {
        verify(&self.audit())
    }

    /// A digest of everything under `outside/` (names, contents, modes).
    pub fn outside_digest(&self) -> String {
        tree_digest(&self.path("outside"))
    }
}

/// Every event of a log.
pub fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad audit line {l:?}: {e}")))
        .collect()
}

/// `sandbox audit verify FILE`.
pub fn verify(path: &Path) -> Run {
    Run::from_output(sandbox().arg("audit").arg("verify").arg(path).output().unwrap())
}

/// A listing of a tree with file contents, for before/after comparisons.
pub fn tree_digest(root: &Path) -> String {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if meta.is_dir() {
                out.push(format!("d {rel}"));
                stack.push(p);
            } else if meta.file_type().is_symlink() {
                out.push(format!("l {rel} -> {}", std::fs::read_link(&p).unwrap().display()));
            } else {
                let content = std::fs::read(&p).unwrap_or_default();
                out.push(format!(
                    "f {rel} {:o} {}",
                    std::os::unix::fs::PermissionsExt::mode(&meta.permissions()),
                    String::from_utf8_lossy(&content)
                ));
            }
        }
    }
    out.join("\n")
}

/// Waits for `cond`, polling, for at most `limit`.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// The event that follows `call` for the same call (its `result`).
pub fn result_of<'a>(events: &'a [Value], call: &Value) -> &'a Value {
    let seq = call["seq"].as_u64().unwrap();
    events
        .iter()
        .find(|e| e["seq"].as_u64().unwrap() > seq && e["kind"] == "result")
        .unwrap_or_else(|| panic!("no result after {call}"))
}

/// The unit of `ulimit -f` in this system's `sh`, measured: POSIX (and
/// dash) count 512-byte blocks, bash 1024-byte ones.
pub fn ulimit_f_unit(dir: &Path) -> u64 {
    let probe = dir.join("ulimit-probe");
    // `head` is stopped by SIGXFSZ at the limit; its status does not matter.
    let _ = Command::new("sh").arg("-c").arg("ulimit -f 1 && head -c 4000 /dev/zero > \"$0\"").arg(&probe).status();
    let unit = std::fs::metadata(&probe).map(|m| m.len()).unwrap_or(0);
    assert!(unit == 512 || unit == 1024, "`ulimit -f 1` let {unit} bytes be written");
    std::fs::remove_file(&probe).expect("the probe file is removable");
    unit
}

/// `cmd` (a [`Fixture::command`]) run by `sh` under `ulimit -f blocks`: no
/// file it writes may grow past that many `ulimit -f` units.
pub fn with_file_size_limit(cmd: &Command, blocks: u64) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("ulimit -f {blocks} && exec \"$0\" \"$@\""))
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_remove("SANDBOX_LOG")
        .env("USER", "tester")
        .stdin(Stdio::null());
    sh
}

/// Plain git in `dir` with no system or global config: the test's own
/// tool, never under the sandbox.
pub fn plain_git(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("/usr/bin/git")
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .args(args)
        .output()
        .unwrap()
}

/// Like [`plain_git`]; fails the test when git fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = plain_git(dir, args);
    assert!(out.status.success(), "git {args:?} in {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
