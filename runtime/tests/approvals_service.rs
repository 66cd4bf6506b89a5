//! `sandbox approvals serve` and `sandbox approvals token`: the real
//! service on a free loopback port, with a temporary reviewers file and
//! database, driven over HTTP (raw requests, so that `Host` and `Origin`
//! are exactly what the test says) and through the runner's own client.

#![allow(clippy::unwrap_used)]

mod common;
use common::approval_service::*;
use sandbox_approvals::client::Client;
use sandbox_approvals::protocol::{Require, State, Submission};
use serde_json::{Value, json};
use std::net::TcpListener;
use std::time::{Duration, Instant};

fn submission(user: &str, require: Require) -> Submission {
    Submission {
        task: "task-7".into(),
        user: user.into(),
        agent: "replace".into(),
        intent: Some("fix the typo in the greeting".into()),
        capability: "fs.write".into(),
        target: "src/greeting.txt".into(),
        dest: None,
        rule: "fs.write[0] `src/**`".into(),
        require,
        preview: Some("--- src/greeting.txt\n+++ src/greeting.txt\n-helo\n+hello\n".into()),
        content_sha256: Some(format!("sha256:{}", "c".repeat(64))),
        effect_sha256: format!("sha256:{}", "e".repeat(64)),
        size: Some(6),
        timeout_ms: 600_000,
    }
}

fn submit_ok(server: &Server, runner: &str, s: &Submission) -> String {
    let (status, body) = server.submit(runner, s);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["state"], "pending");
    body["id"].as_str().unwrap().to_owned()
}

fn ids(list: &[Value]) -> Vec<&str> {
    list.iter().map(|r| r["id"].as_str().unwrap()).collect()
}

fn assert_no_tokens(setup: &Setup, stderr: &str) {
    assert!(stderr.contains("request"), "the service logged nothing; the check would prove nothing:\n{stderr}");
    for t in setup.all_tokens() {
        assert!(!stderr.contains(t), "a token appears in the service's stderr:\n{stderr}");
    }
}

#[test]
fn token_prints_a_token_and_its_hash() {
    let out = service_command().args(["approvals", "token"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].len() >= 32 && lines[0].bytes().all(|b| b.is_ascii_hexdigit()), "{text}");
    assert_eq!(lines[1], sandbox_approvals::token_hash(lines[0]));
    let again = service_command().args(["approvals", "token"]).output().unwrap();
    assert_ne!(String::from_utf8(again.stdout).unwrap().lines().next(), Some(lines[0]));
}

#[test]
fn submit_list_approve_reject() {
    let setup = Setup::new();
    let server = setup.start();
    let first = submit_ok(&server, &setup.runner, &submission("dave", Require::Any(true)));
    let mut s = submission("dave", Require::Any(true));
    s.target = "src/other.txt".into();
    let second = submit_ok(&server, &setup.runner, &s);

    let pending = server.list(setup.token("alice"), "pending");
    assert_eq!(ids(&pending), [second.as_str(), first.as_str()]);
    let r = &pending[1];
    for (key, value) in [
        ("state", json!("pending")),
        ("task", json!("task-7")),
        ("user", json!("dave")),
        ("agent", json!("replace")),
        ("capability", json!("fs.write")),
        ("target", json!("src/greeting.txt")),
        ("intent", json!("fix the typo in the greeting")),
        ("rule", json!("fs.write[0] `src/**`")),
        ("require", json!({"any": true})),
        ("content_sha256", json!(format!("sha256:{}", "c".repeat(64)))),
        ("effect_sha256", json!(format!("sha256:{}", "e".repeat(64)))),
        ("votes", json!([])),
    ] {
        assert_eq!(r[key], value, "{key}: {r}");
    }
    assert!(r["preview"].as_str().unwrap().contains("+hello"));
    let created = humantime::parse_rfc3339(r["created"].as_str().unwrap()).unwrap();
    let expires = humantime::parse_rfc3339(r["expires"].as_str().unwrap()).unwrap();
    assert_eq!(expires.duration_since(created).unwrap(), Duration::from_millis(600_000));

    assert_eq!(
        server.vote(setup.token("alice"), &first, "approve", "looks right"),
        (200, json!({"state": "approved"}))
    );
    assert_eq!(server.vote(setup.token("bob"), &second, "reject", "wrong file"), (200, json!({"state": "rejected"})));

    assert!(server.list(setup.token("bob"), "pending").is_empty());
    let approved = server.list(setup.token("bob"), "approved");
    assert_eq!(ids(&approved), [first.as_str()]);
    let vote = &approved[0]["votes"][0];
    assert_eq!(
        (&vote["by"], &vote["decision"], &vote["comment"]),
        (&json!("alice"), &json!("approve"), &json!("looks right"))
    );
    assert_eq!(vote["effect_sha256"], json!(format!("sha256:{}", "e".repeat(64))));
    assert!(humantime::parse_rfc3339(vote["at"].as_str().unwrap()).is_ok());
    assert_eq!(ids(&server.list(setup.token("bob"), "rejected")), [second.as_str()]);
    assert!(server.list(setup.token("bob"), "expired").is_empty());
    let (_, all) = server.call("GET", "/api/requests", Some(setup.token("carol")), None);
    assert_eq!(all["requests"].as_array().unwrap().len(), 2);

    // The runner sees the outcome, through its own client too.
    let (status, view) = server.call("GET", &format!("/api/runner/requests/{second}"), Some(&setup.runner), None);
    assert_eq!((status, &view["state"]), (200, &json!("rejected")));
    assert_eq!(view["votes"][0]["comment"], "wrong file");
    let client = Client::new(&server.url(), &setup.runner);
    let view = client.wait(&first, Instant::now() + Duration::from_secs(10)).unwrap();
    assert_eq!(view.state, State::Approved);
    assert_eq!(view.votes[0].by, "alice");

    // `GET /api/me` and the page.
    assert_eq!(
        server.call("GET", "/api/me", Some(setup.token("carol")), None),
        (200, json!({"name": "carol", "roles": ["sre", "sec"]}))
    );
    let host = vec![("Host".to_owned(), server.addr.clone())];
    let (status, head, body) = raw(&server.addr, "GET", "/", &host, None);
    assert_eq!(status, 200);
    assert!(head.to_lowercase().contains("content-type: text/html; charset=utf-8"), "{head}");
    assert!(head.to_lowercase().contains("content-security-policy:"), "{head}");
    assert!(body.contains("<html"), "{body}");
    for (path, kind) in [("/page.js", "text/javascript"), ("/page.css", "text/css")] {
        let (status, head, _) = raw(&server.addr, "GET", path, &host, None);
        assert_eq!(status, 200, "{path}");
        assert!(head.to_lowercase().contains(&format!("content-type: {kind}")), "{head}");
    }

    let (code, stderr) = server.terminate();
    assert_eq!(code, 0, "{stderr}");
    assert_no_tokens(&setup, &stderr);
}

#[test]
fn multi_party_rules() {
    let setup = Setup::new();
    let server = setup.start();
    let (alice, bob, carol) = (setup.token("alice"), setup.token("bob"), setup.token("carol"));
    let state = |r: (u16, Value)| (r.0, r.1["state"].as_str().map(str::to_owned).unwrap_or_default());
    let ok = |s: &str| (200, s.to_owned());

    // All of a named list: one approval is not enough; others may not vote.
    let id = submit_ok(&server, &setup.runner, &submission("dave", Require::All(vec!["alice".into(), "bob".into()])));
    assert_eq!(state(server.vote(alice, &id, "approve", "")), ok("pending"));
    assert_eq!(server.vote(carol, &id, "approve", "").0, 403);
    assert_eq!(state(server.vote(bob, &id, "approve", "")), ok("approved"));

    // At least two distinct reviewers: voting twice does not count twice.
    let id = submit_ok(&server, &setup.runner, &submission("dave", Require::Min(2)));
    assert_eq!(state(server.vote(alice, &id, "approve", "")), ok("pending"));
    assert_eq!(server.vote(alice, &id, "approve", "").0, 409);
    assert_eq!(server.list(bob, "pending").len(), 1);
    assert_eq!(state(server.vote(carol, &id, "approve", "")), ok("approved"));

    // A role: a reviewer without it may not vote; one with it decides.
    let id = submit_ok(&server, &setup.runner, &submission("dave", Require::Role("sre".into())));
    let (status, body) = server.vote(bob, &id, "approve", "");
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("sre"), "{body}");
    assert_eq!(state(server.vote(carol, &id, "approve", "")), ok("approved"));

    // Any one rejection rejects, even after approvals.
    let id = submit_ok(&server, &setup.runner, &submission("dave", Require::Min(3)));
    assert_eq!(state(server.vote(alice, &id, "approve", "")), ok("pending"));
    assert_eq!(state(server.vote(bob, &id, "reject", "no")), ok("rejected"));
    assert_eq!(server.vote(carol, &id, "approve", "").0, 409);

    // Self-approval: a reviewer is never a reviewer of their own task.
    let id = submit_ok(&server, &setup.runner, &submission("alice", Require::Any(true)));
    let (status, body) = server.vote(alice, &id, "approve", "mine");
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("alice"), "{body}");
    assert_eq!(server.vote(alice, &id, "reject", "").0, 403);
    assert_eq!(state(server.vote(bob, &id, "approve", "")), ok("approved"));
    let view = &server.list(bob, "approved")[0];
    assert_eq!(view["id"], json!(id));
    assert_eq!(view["votes"].as_array().unwrap().len(), 1);
}

#[test]
fn checks_come_in_order() {
    let setup = Setup::new();
    let server = setup.start();
    let (alice, bob) = (setup.token("alice"), setup.token("bob"));
    let addr = server.addr.clone();
    let h = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<Vec<_>>();
    let auth = |t: &str| format!("Bearer {t}");
    let id = submit_ok(&server, &setup.runner, &submission("dave", Require::All(vec!["alice".into()])));
    let good = json!({"decision": "approve", "comment": ""}).to_string();
    let decision = format!("/api/requests/{id}/decision");

    // Host: wrong or missing is refused before anything else, even with a
    // valid token and body (DNS rebinding).
    let (status, _, body) =
        raw(&addr, "POST", &decision, &h(&[("Host", "evil.example"), ("Authorization", &auth(alice))]), Some(&good));
    assert_eq!(status, 421, "{body}");
    let (status, _, _) = raw(&addr, "GET", "/api/requests", &h(&[("Authorization", &auth(alice))]), None);
    assert_eq!(status, 421);
    // On loopback `localhost:PORT` names the service too; look-alikes do not.
    let port = addr.rsplit(':').next().unwrap();
    let (status, _, _) = raw(&addr, "GET", "/", &h(&[("Host", &format!("localhost:{port}"))]), None);
    assert_eq!(status, 200);
    for host in [format!("localhost.evil.example:{port}"), format!("127.0.0.2:{port}"), "localhost".to_owned()] {
        let (status, _, _) = raw(&addr, "GET", "/", &h(&[("Host", &host)]), None);
        assert_eq!(status, 421, "{host}");
    }
    let (status, _, _) =
        raw(&addr, "GET", "/api/me", &h(&[("Host", &addr), ("Host", "evil"), ("Authorization", &auth(alice))]), None);
    assert!(status == 421 || status == 400, "{status}");

    // Origin: a foreign or `null` origin on a state-changing call (CSRF).
    for origin in ["http://evil.example", "null", &format!("http://{addr}.evil.example")] {
        let (status, _, body) = raw(
            &addr,
            "POST",
            &decision,
            &h(&[("Host", &addr), ("Origin", origin), ("Authorization", &auth(alice))]),
            Some(&good),
        );
        assert_eq!(status, 403, "{origin}: {body}");
    }
    let (status, _, _) = raw(
        &addr,
        "POST",
        "/api/runner/requests",
        &h(&[("Host", &addr), ("Origin", "null"), ("Authorization", &auth(&setup.runner))]),
        Some(&serde_json::to_string(&submission("dave", Require::Any(true))).unwrap()),
    );
    assert_eq!(status, 403);
    assert_eq!(server.list(alice, "pending").len(), 1, "a refused call changed nothing");

    // Token: before the id is looked at.
    let post = |token: Option<&str>, path: &str, body: &str| {
        let mut hs = h(&[("Host", &addr), ("Origin", &format!("http://{addr}"))]);
        if let Some(t) = token {
            hs.push(("Authorization".into(), auth(t)));
        }
        raw(&addr, "POST", path, &hs, Some(body))
    };
    let (status, head, _) = post(None, "/api/requests/nope/decision", "{");
    assert_eq!(status, 401);
    assert!(head.to_lowercase().contains("www-authenticate: bearer"), "{head}");
    assert_eq!(post(Some("not-a-token"), "/api/requests/nope/decision", "{").0, 401);
    assert_eq!(post(Some(&setup.runner), &decision, &good).0, 401, "a runner token is not a reviewer token");
    assert_eq!(server.call("GET", "/api/requests", Some("wrong"), None).0, 401);
    assert_eq!(server.call("GET", "/api/me", None, None).0, 401);

    // Id: before the body.
    assert_eq!(post(Some(alice), "/api/requests/nope/decision", "{").0, 404);
    // Right to vote (bob is not in the `all` list): before the body.
    assert_eq!(post(Some(bob), &decision, "{").0, 403);
    // Body.
    let (status, _, body) = post(Some(alice), &decision, "{");
    assert_eq!(status, 400, "{body}");
    assert_eq!(post(Some(alice), &decision, r#"{"decision": "maybe"}"#).0, 400);
    assert_eq!(post(Some(alice), &decision, r#"{"decision": "approve", "extra": 1}"#).0, 400);
    assert!(server.list(alice, "pending")[0]["votes"].as_array().unwrap().is_empty(), "a refused vote is not recorded");
    // With our own origin and a good body, the vote counts.
    let (status, _, body) = post(Some(alice), &decision, &good);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("approved"), "{body}");
    // State: a decided request, before the right to vote and the body.
    assert_eq!(post(Some(alice), &decision, "{").0, 409);
    assert_eq!(post(Some(bob), &decision, "{").0, 409);

    // Runner side: token, body, then a rule that can never be met.
    let submit = |token: Option<&str>, body: &str| post(token, "/api/runner/requests", body).0;
    let s = |user: &str, require: Require| serde_json::to_string(&submission(user, require)).unwrap();
    assert_eq!(submit(None, "{"), 401);
    assert_eq!(submit(Some(alice), &s("dave", Require::Any(true))), 401, "a reviewer token is not a runner token");
    assert_eq!(submit(Some(&setup.runner), "{"), 400);
    assert_eq!(submit(Some(&setup.runner), &s("dave", Require::Min(0))), 400);
    let mut bad_hash = submission("dave", Require::Any(true));
    bad_hash.effect_sha256 = "sha256:nothex".into();
    assert_eq!(submit(Some(&setup.runner), &serde_json::to_string(&bad_hash).unwrap()), 400);
    for (user, require) in [
        ("alice", Require::All(vec!["alice".into(), "bob".into()])),
        ("dave", Require::All(vec!["alice".into(), "mallory".into()])),
        ("dave", Require::Min(4)),
        ("alice", Require::Min(3)),
        ("dave", Require::Role("dba".into())),
        ("carol", Require::Role("sec".into())),
    ] {
        let (status, _, body) = post(Some(&setup.runner), "/api/runner/requests", &s(user, require.clone()));
        assert_eq!(status, 422, "{user} {require:?}: {body}");
        assert!(body.contains("never be met"), "{body}");
    }
    assert_eq!(submit(Some(&setup.runner), &s("dave", Require::Min(3))), 201);

    // Reading is not state-changing: a foreign Origin on GET gets the
    // answer (without CORS headers a browser does not show it to the page).
    let (status, head, _) = raw(
        &addr,
        "GET",
        "/api/me",
        &h(&[("Host", &addr), ("Origin", "http://evil.example"), ("Authorization", &auth(alice))]),
        None,
    );
    assert_eq!(status, 200);
    assert!(!head.to_lowercase().contains("access-control-allow-origin"), "{head}");
}

#[test]
fn unanswered_requests_expire() {
    let setup = Setup::new();
    let server = setup.start();
    let mut s = submission("dave", Require::Any(true));
    s.timeout_ms = 1_000;
    let id = submit_ok(&server, &setup.runner, &s);
    let start = Instant::now();
    let (status, view) = server.call("GET", &format!("/api/runner/requests/{id}?wait=20"), Some(&setup.runner), None);
    assert_eq!((status, view["state"].as_str()), (200, Some("expired")), "{view}");
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    assert_eq!(view["decided"], view["expires"]);
    assert_eq!(ids(&server.list(setup.token("bob"), "expired")), [id.as_str()]);
    assert!(server.list(setup.token("bob"), "pending").is_empty());
    assert_eq!(server.vote(setup.token("bob"), &id, "approve", "too late").0, 409);

    // The periodic sweep expires requests nobody reads.
    s.timeout_ms = 500;
    let id = submit_ok(&server, &setup.runner, &s);
    std::thread::sleep(Duration::from_millis(2_500));
    let (code, stderr) = server.terminate();
    assert_eq!(code, 0);
    assert!(stderr.lines().any(|l| l.contains("request expired") && l.contains(&id)), "{stderr}");
}

#[test]
fn a_restart_keeps_requests_votes_and_waits() {
    let setup = Setup::new();
    let port = free_port();
    let server = setup.start_on(port);
    let partly = submit_ok(&server, &setup.runner, &submission("dave", Require::Min(2)));
    assert_eq!(server.vote(setup.token("alice"), &partly, "approve", "first").1["state"], "pending");
    let waiting = submit_ok(&server, &setup.runner, &submission("dave", Require::Any(true)));
    let rejected = submit_ok(&server, &setup.runner, &submission("dave", Require::Any(true)));
    assert_eq!(server.vote(setup.token("carol"), &rejected, "reject", "no").1["state"], "rejected");

    // A runner waits with the real client; the service goes away meanwhile.
    let url = server.url();
    let runner = setup.runner.clone();
    let id = waiting.clone();
    let waiter = std::thread::spawn(move || {
        let client = Client::new(&url, &runner);
        client.wait(&id, Instant::now() + Duration::from_secs(90))
    });
    std::thread::sleep(Duration::from_millis(500));
    let stop = Instant::now();
    let (code, first_stderr) = server.terminate();
    assert_eq!(code, 0, "{first_stderr}");
    assert!(stop.elapsed() < Duration::from_secs(8), "a long wait held up the stop: {:?}", stop.elapsed());
    assert!(!waiter.is_finished(), "the runner gave up when the service stopped");
    std::thread::sleep(Duration::from_millis(700));

    let server = setup.start_on(port);
    let pending = server.list(setup.token("bob"), "pending");
    let mut pending_ids = ids(&pending);
    pending_ids.sort_unstable();
    let mut expected = vec![partly.as_str(), waiting.as_str()];
    expected.sort_unstable();
    assert_eq!(pending_ids, expected);
    let kept = pending.iter().find(|r| r["id"] == json!(partly)).unwrap();
    assert_eq!(kept["votes"][0]["by"], "alice");
    assert_eq!(kept["votes"][0]["comment"], "first");
    assert_eq!(ids(&server.list(setup.token("bob"), "rejected")), [rejected.as_str()]);

    // The vote cast before the restart still counts.
    assert_eq!(server.vote(setup.token("alice"), &partly, "approve", "").0, 409);
    assert_eq!(server.vote(setup.token("bob"), &partly, "approve", "second").1["state"], "approved");

    // The runner's wait, begun before the restart, ends with the decision.
    assert_eq!(server.vote(setup.token("bob"), &waiting, "approve", "go").1["state"], "approved");
    let view = waiter.join().unwrap().unwrap();
    assert_eq!(view.state, State::Approved);
    assert_eq!(view.votes[0].by, "bob");

    let (code, second_stderr) = server.terminate();
    assert_eq!(code, 0, "{second_stderr}");
    assert_no_tokens(&setup, &first_stderr);
    assert_no_tokens(&setup, &second_stderr);
}

/// Runs `serve` expecting it to refuse to start: exit 2, one line.
fn refused(args: &[&str]) -> String {
    let out = service_command().env("SANDBOX_LOG", "warn").args(["approvals", "serve"]).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(out.stdout.is_empty(), "{args:?}");
    stderr
}

#[test]
fn bad_startup_exits_2_with_one_line() {
    let setup = Setup::new();
    let dir = setup.dir.path();
    let reviewers = setup.reviewers().display().to_string();
    let db = setup.db().display().to_string();

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[reviewer]]\nname = \"alice\"\ntoken = \"x\"\n").unwrap();
    let e = refused(&["--reviewers", bad.to_str().unwrap(), "--db", &db]);
    assert!(e.contains("bad.toml:3: key `reviewer.token`: unknown key `token`"), "{e}");

    std::fs::write(&bad, format!("[[reviewer]]\nname = \"alice\"\ntoken_sha256 = \"sha256:{}\"\n", "0".repeat(63)))
        .unwrap();
    let e = refused(&["--reviewers", bad.to_str().unwrap(), "--db", &db]);
    assert!(e.contains("bad.toml:3: key `reviewer.token_sha256`"), "{e}");

    let e = refused(&["--reviewers", &reviewers, "--db", dir.join("no/such/dir/x.sqlite").to_str().unwrap()]);
    assert!(e.contains("x.sqlite"), "{e}");
    let not_db = dir.join("not.sqlite");
    std::fs::write(&not_db, "just some text, certainly not an SQLite database header at all").unwrap();
    let e = refused(&["--reviewers", &reviewers, "--db", not_db.to_str().unwrap()]);
    assert!(e.contains("not.sqlite") && e.contains("not a database"), "{e}");

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let e = refused(&["--listen", &addr, "--reviewers", &reviewers, "--db", &db]);
    assert!(e.contains(&addr) && e.to_lowercase().contains("in use"), "{e}");

    let e = refused(&["--listen", "0.0.0.0:0", "--reviewers", &reviewers, "--db", &db]);
    assert!(e.contains("--public-url"), "{e}");
    let e = refused(&["--public-url", "https://example.com/path", "--reviewers", &reviewers, "--db", &db]);
    assert!(e.contains("--public-url"), "{e}");
    // Nothing above created the database.
    assert!(!setup.db().exists());
}

#[test]
fn public_url_is_an_own_address() {
    let setup = Setup::new();
    let listen = format!("127.0.0.1:{}", free_port());
    let server = Server::start_with(
        &setup.reviewers(),
        &setup.db(),
        &listen,
        &["--public-url", "https://approvals.example.com"],
    );
    assert!(server.ready.contains("https://approvals.example.com"), "{}", server.ready);
    let call = |host: &str, origin: Option<&str>, method: &str| {
        let mut hs = vec![
            ("Host".to_owned(), host.to_owned()),
            ("Authorization".to_owned(), format!("Bearer {}", setup.token("bob"))),
        ];
        if let Some(o) = origin {
            hs.push(("Origin".to_owned(), o.to_owned()));
        }
        let body = (method == "POST").then_some(r#"{"decision": "approve"}"#);
        let path = if method == "POST" { "/api/requests/nope/decision" } else { "/api/me" };
        raw(&server.addr, method, path, &hs, body).0
    };
    assert_eq!(call("approvals.example.com", None, "GET"), 200);
    assert_eq!(call("approvals.example.com:443", None, "GET"), 200);
    assert_eq!(call(&listen, None, "GET"), 200);
    assert_eq!(call("approvals.example.com:8443", None, "GET"), 421);
    assert_eq!(call("approvals.example.com", Some("https://approvals.example.com"), "POST"), 404);
    assert_eq!(call("approvals.example.com", Some("http://approvals.example.com"), "POST"), 403);
}
