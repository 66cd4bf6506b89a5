//! The reviewer page of `sandbox approvals serve` in a real browser
//! (Debian's chromium, driven by playwright-core from `tests-browser/`).
//!
//! The whole story: the service runs, two `sandbox run`s each wait for
//! approval of a write, a reviewer logs in to the page, approves one and
//! rejects the other; the approved run continues and its write happens,
//! the rejected run's write does not. And tool text that tries to run
//! script or hide itself is rendered inert.
//!
//! Needs `/usr/bin/chromium`, `node` and `tests-browser/node_modules`
//! (`scripts/browser-deps` installs all three). Without chromium or node
//! these tests say so and pass, unless `SANDBOX_REQUIRE_BROWSER` is set
//! (as CI sets it), when they fail.

#![allow(clippy::unwrap_used)] // a test that cannot do its part fails

mod common;
use common::browser::{browser_ready, browser_script};
use common::*;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Bounds every wait, so that a broken piece fails a test instead of
/// hanging it.
const PATIENCE: Duration = Duration::from_secs(120);

const GRANTS: &str = r#"
[fs]
read = ["src/**"]
write = ["src/**"]

[approval]
timeout = "5m"
"#;

const OLD: &str = "// lib\npub fn f() {}\n// end\n";
const NEW: &str = "// lib\npub fn g() {}\n// end\n";

fn token() -> (String, String) {
    sandbox_approvals::new_token()
}

/// Reviewers and runners of one service, with their tokens: `rita`
/// (role `sre`), `sam` (no role), runner `ci-runner-1`.
struct People {
    reviewer: (String, String),
    second: (String, String),
    runner: (String, String),
}

impl People {
    fn new() -> People {
        People { reviewer: token(), second: token(), runner: token() }
    }

    fn toml(&self) -> String {
        format!(
            "[[reviewer]]\nname = \"rita\"\nroles = [\"sre\"]\ntoken_sha256 = \"{}\"\n\n\
             [[reviewer]]\nname = \"sam\"\nroles = []\ntoken_sha256 = \"{}\"\n\n\
             [[runner]]\nname = \"ci-runner-1\"\ntoken_sha256 = \"{}\"\n",
            self.reviewer.1, self.second.1, self.runner.1
        )
    }

    fn tokens(&self) -> [&str; 3] {
        [&self.reviewer.0, &self.second.0, &self.runner.0]
    }
}

/// A running `sandbox approvals serve`, stopped when dropped.
struct Service {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts the service on a free loopback port and waits for its
    /// `listening on URL` line and for it to answer.
    fn start(people: &People) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let reviewers = dir.path().join("reviewers.toml");
        std::fs::write(&reviewers, people.toml()).unwrap();
        let log = dir.path().join("service.log");
        let mut child = sandbox()
            // Everything it logs, so that the check for tokens in its log has teeth.
            .env("SANDBOX_LOG", "debug")
            .args(["approvals", "serve", "--listen", "127.0.0.1:0", "--reviewers"])
            .arg(&reviewers)
            .arg("--db")
            .arg(dir.path().join("approvals.sqlite"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("listening on ") {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
            }
        });
        let url = rx.recv_timeout(PATIENCE).ok();
        let mut s = Service { child, url: url.clone().unwrap_or_default(), log, _dir: dir };
        let up = url.is_some()
            && wait_for(PATIENCE, || {
                s.child.try_wait().unwrap().is_none()
                    && http(&s.url, "GET", "/api/me", None, None).is_ok_and(|(status, _)| status == 401)
            });
        if !up {
            let _ = s.child.kill();
            panic!("the approval service did not come up (url {:?}); its log:\n{}", s.url, s.log());
        }
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/requests?state=...` as a reviewer.
    fn requests(&self, token: &str, state: &str) -> Vec<Value> {
        let (status, body) =
            http(&self.url, "GET", &format!("/api/requests?state={state}"), Some(token), None).unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["requests"].as_array().unwrap().clone()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 client for the test's own calls to the service:
/// `(status, body)`.
fn http(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let host = base.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other("no HTTP head"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status"))?;
    let chunked =
        head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    Ok((status, if chunked { dechunk(rest) } else { rest.to_owned() }))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A `sandbox run` in the background, killed if dropped unfinished (a
/// failed test leaves no run waiting for approval).
struct Running {
    child: Option<Child>,
}

impl Running {
    fn exited(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_some()
    }

    /// Waits for the run to end (at most [`PATIENCE`], then kills it).
    fn finish(mut self) -> Run {
        let start = Instant::now();
        while !self.exited() && start.elapsed() < PATIENCE {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop()
    }

    /// Ends the run now: what it printed.
    fn stop(mut self) -> Run {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `probe` writing `rel` in a fixture of its own, asking the service.
fn start_write(f: &Fixture, service: &Service, people: &People, rel: &str, intent: &str) -> Running {
    let mut c = f.command(
        "probe",
        &["--approve", &service.url, "--task-id", &format!("task-{}", rel.replace('/', "-"))],
        &["intent", intent, "+", "write", rel, NEW],
    );
    c.env("SANDBOX_APPROVAL_TOKEN", &people.runner.0);
    Running { child: Some(c.spawn().unwrap()) }
}

/// The `approval` event of a run's single `fs.write`.
fn approval_event(f: &Fixture) -> Value {
    let ev = f.events();
    let call = ev.iter().find(|e| e["kind"] == "call" && e["capability"] == "fs.write").unwrap();
    let seq = call["seq"].as_u64().unwrap() as usize;
    let approval = ev[seq + 1].clone();
    assert_eq!(approval["kind"], "approval", "{approval}");
    approval
}

#[test]
fn a_reviewer_approves_one_run_and_rejects_another_in_a_real_browser() {
    if !browser_ready("a_reviewer_approves_one_run_and_rejects_another_in_a_real_browser") {
        return;
    }
    let people = People::new();
    let service = Service::start(&people);
    let (yes, no) = ("src/app/approve_me.rs", "src/app/reject_me.rs");
    let fy = Fixture::new(GRANTS);
    fy.file(yes, OLD);
    let fno = Fixture::new(GRANTS);
    fno.file(no, OLD);
    let mut runs = vec![
        start_write(&fy, &service, &people, yes, "rename f to g"),
        start_write(&fno, &service, &people, no, "rename f to g, elsewhere"),
    ];

    // Both requests are pending before the reviewer opens the page.
    let pending = wait_for(PATIENCE, || {
        runs.iter_mut().all(|r| !r.exited()) && service.requests(&people.reviewer.0, "pending").len() == 2
    });
    if !pending {
        let outs: Vec<Run> = runs.into_iter().map(Running::stop).collect();
        panic!("two requests did not become pending; runs: {outs:#?}\nservice log:\n{}", service.log());
    }

    let (code, out) = browser_script(
        "approvals.spec.mjs",
        &[
            ("SANDBOX_APPROVALS_URL", &service.url),
            ("SANDBOX_REVIEWER_TOKEN", &people.reviewer.0),
            ("SANDBOX_REVIEWER_NAME", "rita"),
            ("SANDBOX_APPROVE_TARGET", yes),
            ("SANDBOX_REJECT_TARGET", no),
            ("SANDBOX_EXPECT_DIFF", "1"),
        ],
    );
    if code != 0 {
        let outs: Vec<Run> = runs.into_iter().map(Running::stop).collect();
        panic!("the browser test failed:\n{out}\nruns: {outs:#?}\nservice log:\n{}", service.log());
    }
    let rn = runs.pop().unwrap().finish();
    let ry = runs.pop().unwrap().finish();
    let result: Value = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or_else(|| panic!("no RESULT line:\n{out}"));

    // The approved run continued and wrote; the rejected one did not.
    assert_eq!(ry.code, 0, "{ry:?}");
    assert_eq!(ry.line(&label(&["write", yes, NEW])), "ok written", "{ry:?}");
    assert_eq!(fy.read(yes).unwrap(), NEW);
    assert_eq!(rn.code, 0, "{rn:?}");
    assert!(rn.line(&label(&["write", no, NEW])).starts_with("not-approved"), "{rn:?}");
    assert_eq!(fno.read(no).unwrap(), OLD);

    // The runs' audit logs name the reviewer.
    let ay = approval_event(&fy);
    assert_eq!(ay["decision"], "approved", "{ay}");
    assert_eq!(ay["approval"]["by"], serde_json::json!(["rita"]), "{ay}");
    let an = approval_event(&fno);
    assert_eq!(an["decision"], "rejected", "{an}");
    assert_eq!(an["approval"]["by"], serde_json::json!(["rita"]), "{an}");
    assert_eq!(fy.verify().code, 0);
    assert_eq!(fno.verify().code, 0);

    // The service recorded the votes the page cast, with their comments.
    let approved = service.requests(&people.reviewer.0, "approved");
    assert_eq!(approved.len(), 1, "{approved:?}");
    assert_eq!(approved[0]["id"], result["approved"]);
    assert_eq!(approved[0]["target"], yes);
    assert_eq!(approved[0]["votes"][0]["by"], "rita");
    assert_eq!(approved[0]["votes"][0]["comment"], "checked the diff: fine");
    let rejected = service.requests(&people.reviewer.0, "rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["id"], result["rejected"]);
    assert_eq!(rejected[0]["target"], no);
    assert_eq!(rejected[0]["votes"][0]["comment"], "not this file, please");
    assert!(service.requests(&people.reviewer.0, "pending").is_empty());

    // No token reached the service's log.
    let log = service.log();
    assert!(people.tokens().iter().all(|t| !log.contains(t)), "a token is in the service's log:\n{log}");
}

#[test]
fn tool_text_that_tries_to_run_or_hide_is_inert_in_the_page() {
    if !browser_ready("tool_text_that_tries_to_run_or_hide_is_inert_in_the_page") {
        return;
    }
    let people = People::new();
    let service = Service::start(&people);
    let (code, out) = browser_script(
        "hostile.spec.mjs",
        &[
            ("SANDBOX_APPROVALS_URL", &service.url),
            ("SANDBOX_REVIEWER_TOKEN", &people.reviewer.0),
            ("SANDBOX_RUNNER_TOKEN", &people.runner.0),
        ],
    );
    assert_eq!(code, 0, "the browser test failed:\n{out}\nservice log:\n{}", service.log());
    let rejected = service.requests(&people.reviewer.0, "rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["votes"][0]["by"], "rita");
}

#[test]
fn two_reviewers_in_two_browsers_decide_a_two_reviewer_rule() {
    if !browser_ready("two_reviewers_in_two_browsers_decide_a_two_reviewer_rule") {
        return;
    }
    let people = People::new();
    let service = Service::start(&people);
    let (code, out) = browser_script(
        "multiparty.spec.mjs",
        &[
            ("SANDBOX_APPROVALS_URL", &service.url),
            ("SANDBOX_REVIEWER_TOKEN", &people.reviewer.0),
            ("SANDBOX_SECOND_REVIEWER_TOKEN", &people.second.0),
            ("SANDBOX_SECOND_REVIEWER_NAME", "sam"),
            ("SANDBOX_RUNNER_TOKEN", &people.runner.0),
        ],
    );
    assert_eq!(code, 0, "the browser test failed:\n{out}\nservice log:\n{}", service.log());
    let ids: Value = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or_else(|| panic!("no RESULT line:\n{out}"));
    let by = |r: &Value| {
        r["votes"].as_array().unwrap().iter().map(|v| v["by"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let approved = service.requests(&people.reviewer.0, "approved");
    let two = approved.iter().find(|r| r["id"] == ids["two"]).unwrap_or_else(|| panic!("{approved:?}"));
    assert_eq!(by(two), ["rita", "sam"]);
    let own = approved.iter().find(|r| r["id"] == ids["own"]).unwrap_or_else(|| panic!("{approved:?}"));
    assert_eq!(by(own), ["rita"]);
    // sam's refused vote on the role rule was not recorded.
    let rejected = service.requests(&people.reviewer.0, "rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["id"], ids["role"]);
    assert_eq!(by(&rejected[0]), ["rita"]);
}
