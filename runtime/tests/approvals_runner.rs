//! `sandbox run --approve http://...`: a tool's write waits for reviewers on
//! the real approval service, and happens only as they decide.

#![allow(clippy::unwrap_used)]

mod common;
use common::approval_service::{Server, Setup};
use common::*;
use serde_json::Value;
use std::process::{Child, Stdio};
use std::time::Duration;

const GRANTS: &str = "[fs]\nread = [\"out/**\"]\nwrite = [\"out/**\"]\n";

/// A run of the probe guest writing `out/report.txt`, waiting for the
/// service; killed on drop.
struct Waiting(Option<Child>);

impl Waiting {
    fn start(f: &Fixture, server: &Server, setup: &Setup, user: &str) -> Waiting {
        Waiting::start_with(f, server, setup, user, &["write", "out/report.txt", "final numbers\n"])
    }

    fn start_with(f: &Fixture, server: &Server, setup: &Setup, user: &str, tool: &[&str]) -> Waiting {
        let mut cmd = sandbox();
        cmd.arg("run")
            .arg(guest("probe"))
            .arg("--manifest")
            .arg(f.manifest())
            .args(["--user", user, "--approve", &server.url(), "--intent", "publish the report"])
            .arg("--")
            .args(tool)
            .env("SANDBOX_APPROVAL_TOKEN", &setup.runner)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Waiting(Some(cmd.spawn().unwrap()))
    }

    fn finish(mut self) -> Run {
        let child = self.0.take().unwrap();
        Run::from_output(child.wait_with_output().unwrap())
    }

    fn running(&mut self) -> bool {
        self.0.as_mut().unwrap().try_wait().unwrap().is_none()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn fixture(extra: &str) -> Fixture {
    let f = Fixture::new(&format!("{GRANTS}{extra}"));
    std::fs::create_dir_all(f.ws("out")).unwrap();
    f
}

/// The one pending request, once the run has submitted it.
fn pending(server: &Server, token: &str) -> Value {
    let mut found = None;
    assert!(
        wait_for(Duration::from_secs(30), || {
            found = server.list(token, "pending").into_iter().next();
            found.is_some()
        }),
        "no request was submitted"
    );
    found.unwrap()
}

fn approval_event(f: &Fixture) -> Value {
    f.events().into_iter().find(|e| e["kind"] == "approval").expect("no approval event")
}

#[test]
fn a_write_waits_for_a_reviewer_and_happens_once_approved() {
    let setup = Setup::new();
    let server = setup.start();
    let f = fixture("");
    let mut run = Waiting::start(&f, &server, &setup, "dana");
    let req = pending(&server, setup.token("alice"));
    assert_eq!(req["capability"], "fs.write");
    assert_eq!(req["target"], "out/report.txt");
    assert_eq!(req["user"], "dana");
    assert_eq!(req["agent"], "probe");
    assert_eq!(req["intent"], "publish the report");
    assert_eq!(req["rule"], "fs.write:out/**");
    assert_eq!(req["require"], serde_json::json!({"any": true}));
    assert!(req["preview"].as_str().unwrap().contains("final numbers"), "{req}");
    // Nothing has happened while it waits.
    std::thread::sleep(Duration::from_millis(300));
    assert!(run.running());
    assert!(f.read("out/report.txt").is_none());
    let id = req["id"].as_str().unwrap();
    let (status, body) = server.vote(setup.token("alice"), id, "approve", "looks right");
    assert_eq!((status, body["state"].clone()), (200, Value::from("approved")), "{body}");
    let r = run.finish();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("ok written"), "{r:?}");
    assert_eq!(f.read("out/report.txt").unwrap(), "final numbers\n");
    // The audit trail names the reviewer, the request and the bound effect.
    let ev = approval_event(&f);
    assert_eq!(ev["decision"], "approved");
    assert_eq!(ev["approval"]["via"], "service");
    assert_eq!(ev["approval"]["by"], serde_json::json!(["alice"]));
    assert_eq!(ev["approval"]["request"], id);
    assert_eq!(ev["effect_sha256"], req["effect_sha256"]);
    let approved = server.list(setup.token("bob"), "approved");
    assert_eq!(approved[0]["votes"][0]["effect_sha256"], req["effect_sha256"]);
    assert_eq!(approved[0]["votes"][0]["comment"], "looks right");
    assert_eq!(f.verify().code, 0);
    let start = f.events().into_iter().next().unwrap();
    assert_eq!(start["approver"], format!("service {}", server.url()));
}

#[test]
fn a_rejection_changes_nothing_and_says_why() {
    let setup = Setup::new();
    let server = setup.start();
    let f = fixture("");
    let run = Waiting::start(&f, &server, &setup, "dana");
    let req = pending(&server, setup.token("bob"));
    let (status, _) = server.vote(setup.token("bob"), req["id"].as_str().unwrap(), "reject", "not before the audit");
    assert_eq!(status, 200);
    let r = run.finish();
    assert!(r.stdout.contains("not-approved"), "{r:?}");
    assert!(r.stdout.contains("not before the audit"), "{r:?}");
    assert!(f.read("out/report.txt").is_none());
    let ev = approval_event(&f);
    assert_eq!(ev["decision"], "rejected");
    assert_eq!(ev["approval"]["by"], serde_json::json!(["bob"]));
}

#[test]
fn two_reviewers_are_needed_when_the_rule_says_so_and_nobody_approves_their_own_task() {
    let setup = Setup::new();
    let server = setup.start();
    let f = fixture("[approval]\nrequire = { min = 2 }\n");
    // The run acts for alice: she may not vote on it.
    let mut run = Waiting::start(&f, &server, &setup, "alice");
    let req = pending(&server, setup.token("bob"));
    let id = req["id"].as_str().unwrap();
    assert_eq!(req["require"], serde_json::json!({"min": 2}));
    let (status, _) = server.vote(setup.token("alice"), id, "approve", "");
    assert_eq!(status, 403, "a reviewer approved her own task");
    let (status, body) = server.vote(setup.token("bob"), id, "approve", "");
    assert_eq!((status, body["state"].clone()), (200, Value::from("pending")));
    std::thread::sleep(Duration::from_millis(500));
    assert!(run.running(), "one approval was enough");
    assert!(f.read("out/report.txt").is_none());
    let (status, body) = server.vote(setup.token("carol"), id, "approve", "");
    assert_eq!((status, body["state"].clone()), (200, Value::from("approved")));
    let r = run.finish();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(f.read("out/report.txt").unwrap(), "final numbers\n");
    let mut by: Vec<String> = approval_event(&f)["approval"]["by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    by.sort();
    assert_eq!(by, ["bob", "carol"]);
}

#[test]
fn a_rule_that_can_never_be_met_is_refused_at_once() {
    let setup = Setup::new();
    let server = setup.start();
    let f = fixture("[approval]\nrequire = { all = [\"alice\", \"bob\"] }\n");
    let r = Waiting::start(&f, &server, &setup, "alice").finish();
    assert!(r.stdout.contains("not-approved"), "{r:?}");
    let ev = approval_event(&f);
    assert_eq!(ev["decision"], "rejected");
    assert!(ev["reason"].as_str().unwrap().contains("refused"), "{ev}");
    assert!(f.read("out/report.txt").is_none());
}

#[test]
fn no_decision_in_time_expires_as_a_rejection() {
    let setup = Setup::new();
    let server = setup.start();
    let f = fixture("[approval]\ntimeout = \"2s\"\n");
    let r = Waiting::start(&f, &server, &setup, "dana").finish();
    assert!(r.stdout.contains("not-approved"), "{r:?}");
    let ev = approval_event(&f);
    assert!(ev["reason"].as_str().unwrap().contains("expired"), "{ev}");
    assert!(f.read("out/report.txt").is_none());
    assert!(wait_for(Duration::from_secs(10), || server.list(setup.token("bob"), "expired").len() == 1));
}

#[test]
fn a_runner_rides_out_a_restart_of_the_service() {
    let setup = Setup::new();
    let port = common::approval_service::free_port();
    let server = setup.start_on(port);
    let f = fixture("");
    let mut run = Waiting::start(&f, &server, &setup, "dana");
    let req = pending(&server, setup.token("alice"));
    let (code, _) = server.terminate();
    assert_eq!(code, 0);
    std::thread::sleep(Duration::from_millis(800));
    assert!(run.running(), "the runner gave up while the service restarted");
    let server = setup.start_on(port);
    let (status, _) = server.vote(setup.token("alice"), req["id"].as_str().unwrap(), "approve", "after the restart");
    assert_eq!(status, 200);
    let r = run.finish();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(f.read("out/report.txt").unwrap(), "final numbers\n");
}

#[test]
fn the_runner_token_never_reaches_the_tool_or_the_log() {
    let setup = Setup::new();
    let server = setup.start();
    let f = fixture("");
    let run = Waiting::start(&f, &server, &setup, "dana");
    let req = pending(&server, setup.token("alice"));
    server.vote(setup.token("alice"), req["id"].as_str().unwrap(), "approve", "");
    let r = run.finish();
    assert_eq!(r.code, 0, "{r:?}");
    let log = std::fs::read_to_string(f.audit()).unwrap();
    assert!(!log.contains(&setup.runner), "the runner token is in the audit log");
    assert!(!r.stdout.contains(&setup.runner) && !r.stderr.contains(&setup.runner));
}

#[test]
fn end_of_task_changes_wait_for_one_approval_of_the_whole_diff_and_land_together() {
    let setup = Setup::new();
    let server = setup.start();
    let f = fixture("[approval]\nwrites = \"end-of-task\"\n");
    let tool = ["write", "out/a.txt", "alpha\n", "+", "write", "out/b.txt", "beta\n"];
    let mut run = Waiting::start_with(&f, &server, &setup, "dana", &tool);
    let req = pending(&server, setup.token("alice"));
    assert_eq!(req["capability"], "fs.changes");
    let preview = req["preview"].as_str().unwrap();
    for part in ["+++ proposed/out/a.txt", "+alpha", "+++ proposed/out/b.txt", "+beta"] {
        assert!(preview.contains(part), "the reviewer's diff lacks {part:?}: {preview}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(run.running());
    assert!(f.read("out/a.txt").is_none() && f.read("out/b.txt").is_none(), "a staged change landed early");
    let (status, _) = server.vote(setup.token("alice"), req["id"].as_str().unwrap(), "approve", "both");
    assert_eq!(status, 200);
    let r = run.finish();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(f.read("out/a.txt").as_deref(), Some("alpha\n"));
    assert_eq!(f.read("out/b.txt").as_deref(), Some("beta\n"));
    assert_eq!(server.list(setup.token("bob"), "approved").len(), 1, "more than one request for one task");
    assert_eq!(approval_event(&f)["effect_sha256"], req["effect_sha256"]);
    assert_eq!(f.verify().code, 0);
}
