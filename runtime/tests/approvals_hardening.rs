//! The approval service under abuse, through the real `sandbox` binary:
//! silent and half-sent connections, a runner flooding the queue, and a
//! user approving their own task under another spelling of their name.

#![allow(clippy::unwrap_used)]

mod common;
use common::approval_service::*;
use common::*;
use sandbox_approvals::protocol::{MAX_BODY, MAX_PAGE, MAX_PENDING_PER_RUNNER, Require, Submission};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn submission(user: &str, require: Require, n: usize) -> Submission {
    Submission {
        task: format!("task-{n}"),
        user: user.into(),
        agent: "replace".into(),
        intent: Some("fix the typo".into()),
        capability: "fs.write".into(),
        target: format!("src/file-{n}.txt"),
        dest: None,
        rule: "fs.write[0] `src/**`".into(),
        require,
        preview: Some("-helo\n+hello\n".into()),
        content_sha256: Some(format!("sha256:{}", "c".repeat(64))),
        effect_sha256: format!("sha256:{}", "e".repeat(64)),
        size: Some(6),
        timeout_ms: 600_000,
    }
}

fn submit_ok(server: &Server, runner: &str, s: &Submission) -> String {
    let (status, body) = server.submit(runner, s);
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// `sandbox approvals serve` started by `sh` with the soft limit on open
/// files lowered to `soft` (the hard limit untouched), as on a host whose
/// default soft limit is low.
fn start_with_soft_limit(setup: &Setup, soft: u32) -> Server {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -Sn {soft} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_sandbox"))
        .args(["approvals", "serve", "--listen", &listen, "--reviewers"])
        .arg(setup.reviewers())
        .arg("--db")
        .arg(setup.db())
        .env("SANDBOX_LOG", "warn");
    Server::spawn(cmd, &listen)
}

/// Whether the peer closed `s` within `limit` (end of file or a reset),
/// reading and discarding whatever it sent first.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn silent_and_half_sent_connections_do_not_lock_reviewers_out() {
    let setup = Setup::new();
    // A soft limit of 256 open files: without raising it, a few hundred
    // sockets exhaust the service.
    let server = start_with_soft_limit(&setup, 256);
    let id = submit_ok(&server, &setup.runner, &submission("dave", Require::Any(true), 1));

    // A vote whose body never comes: answered 408, recorded nowhere.
    let mut slow_body = TcpStream::connect(&server.addr).unwrap();
    let head = format!(
        "POST /api/requests/{id}/decision HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        server.addr,
        setup.token("bob")
    );
    slow_body.write_all(head.as_bytes()).unwrap();

    // Six hundred unauthenticated sockets: silent, or a request head that
    // never ends. More than the soft limit and the connection bound.
    let mut idle = Vec::new();
    for i in 0..600 {
        let Ok(mut s) = TcpStream::connect_timeout(&server.addr.parse().unwrap(), Duration::from_millis(200)) else {
            continue;
        };
        if i % 3 == 0 {
            let _ = s.write_all(format!("GET /api/me HTTP/1.1\r\nHost: {}\r\nX-Slow: ", server.addr).as_bytes());
        }
        idle.push(s);
    }
    assert!(idle.len() >= 300, "only {} sockets connected", idle.len());

    // Meanwhile a reviewer approves the pending request through the service.
    let (tx, rx) = mpsc::channel();
    {
        let addr = server.addr.clone();
        let token = setup.token("alice").to_owned();
        let id = id.clone();
        std::thread::spawn(move || {
            let headers =
                vec![("Host".to_owned(), addr.clone()), ("Authorization".to_owned(), format!("Bearer {token}"))];
            let body = json!({"decision": "approve", "comment": "ok"}).to_string();
            let out = raw(&addr, "POST", &format!("/api/requests/{id}/decision"), &headers, Some(&body));
            let _ = tx.send(out);
        });
    }
    let (status, _, body) = rx.recv_timeout(Duration::from_secs(90)).expect("the reviewer's vote got no answer");
    assert_eq!(status, 200, "{body}\n{}", server.stderr());
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["state"], "approved");

    // The service closed the silent and half-sent ones (after its header
    // timeout), and answered the body that never came with 408.
    for s in idle.iter_mut().take(6) {
        assert!(closed_within(s, Duration::from_secs(60)), "an idle socket was never closed");
    }
    slow_body.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut answer = Vec::new();
    let _ = slow_body.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let (_, request) = server.call("GET", "/api/requests?state=approved", Some(setup.token("bob")), None);
    let votes = &request["requests"][0]["votes"];
    assert_eq!(votes.as_array().unwrap().len(), 1, "{votes}");
    assert_eq!(votes[0]["by"], "alice");
}

#[test]
fn one_runner_cannot_flood_the_queue_or_the_reviewers_list() {
    let setup = Setup::new();
    let server = setup.start();
    for n in 0..MAX_PENDING_PER_RUNNER {
        submit_ok(&server, &setup.runner, &submission("dave", Require::Any(true), n));
    }
    // One more: 429, one line naming the runner and the quota.
    let (status, body) = server.submit(&setup.runner, &submission("dave", Require::Any(true), 999));
    assert_eq!(status, 429, "{body}");
    let e = body["error"].as_str().unwrap();
    assert!(e.contains(&format!("runner `ci` already has {MAX_PENDING_PER_RUNNER} requests pending")), "{e}");

    // A body over the size bound: 413, whatever it holds.
    let mut big = serde_json::to_value(submission("dave", Require::Any(true), 1000)).unwrap();
    big["intent"] = Value::from("x".repeat(MAX_BODY));
    let (status, body) = server.call("POST", "/api/runner/requests", Some(&setup.runner), Some(&big));
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], format!("the body is larger than {MAX_BODY} bytes"));

    // The reviewers' list comes in pages: 50 by default, never more than
    // the bound, with the total.
    let bob = setup.token("bob");
    let (status, page) = server.call("GET", "/api/requests?state=pending", Some(bob), None);
    assert_eq!(status, 200);
    assert_eq!(page["requests"].as_array().unwrap().len(), 50);
    assert_eq!(page["total"], MAX_PENDING_PER_RUNNER);
    let (_, rest) = server.call("GET", "/api/requests?state=pending&limit=50&offset=50", Some(bob), None);
    assert_eq!(rest["requests"].as_array().unwrap().len(), MAX_PENDING_PER_RUNNER - 50);
    let first: Vec<&Value> = page["requests"].as_array().unwrap().iter().map(|r| &r["id"]).collect();
    assert!(rest["requests"].as_array().unwrap().iter().all(|r| !first.contains(&&r["id"])), "pages overlap");
    let (status, body) = server.call("GET", &format!("/api/requests?limit={}", MAX_PAGE + 1), Some(bob), None);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], format!("`limit` must be a whole number from 1 to {MAX_PAGE}"));

    // A real run behind that full queue: its write is not approved, and
    // the reason on record is the service's one line.
    let f = Fixture::new("[fs]\nread = [\"out/**\"]\nwrite = [\"out/**\"]\n");
    std::fs::create_dir_all(f.ws("out")).unwrap();
    let out = sandbox()
        .arg("run")
        .arg(guest("probe"))
        .arg("--manifest")
        .arg(f.manifest())
        .args(["--user", "dave", "--approve", &server.url(), "--", "write", "out/report.txt", "numbers\n"])
        .env("SANDBOX_APPROVAL_TOKEN", &setup.runner)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let r = Run::from_output(out);
    assert!(r.stdout.contains("not-approved"), "{}\n{}", r.stdout, r.stderr);
    assert!(f.read("out/report.txt").is_none());
    let ev = f.events().into_iter().find(|e| e["kind"] == "approval").unwrap();
    let reason = ev["reason"].as_str().unwrap();
    assert!(reason.contains("(429)") && reason.contains("requests pending"), "{reason}");
    assert!(!reason.contains('\n'), "{reason}");
}

#[test]
fn nobody_approves_their_own_task_under_another_spelling() {
    let setup = Setup::new();
    let server = setup.start();
    // The task of `Alice` (or `ALICE`, or full-width `ａｌｉｃｅ`) is alice's.
    for user in ["Alice", "ALICE", "ａｌｉｃｅ"] {
        let id = submit_ok(&server, &setup.runner, &submission(user, Require::Any(true), 1));
        let (status, body) = server.vote(setup.token("alice"), &id, "approve", "mine");
        assert_eq!(status, 403, "{user}: {body}");
        assert_eq!(body["error"], "`alice` is the task's user and may not vote on it", "{user}");
        let (status, body) = server.vote(setup.token("bob"), &id, "approve", "");
        assert_eq!((status, body["state"].as_str()), (200, Some("approved")), "{user}: {body}");
    }
    // `min = 3` needs three reviewers other than the user: with `Alice`
    // as the user there are two.
    let (status, body) = server.submit(&setup.runner, &submission("Alice", Require::Min(3), 2));
    assert_eq!(status, 422, "{body}");
    // A name that mixes scripts (Cyrillic `а` + `lice`) is refused at the door.
    let (status, body) = server.submit(&setup.runner, &submission("\u{430}lice", Require::Any(true), 3));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("must not mix scripts"), "{body}");
    let rule = Require::All(vec!["bob".into(), "b\u{43e}b".into()]);
    let (status, body) = server.submit(&setup.runner, &submission("dave", rule, 4));
    assert_eq!(status, 400, "{body}");
    let rule = Require::All(vec!["bob".into(), "Bob".into()]);
    let (status, body) = server.submit(&setup.runner, &submission("dave", rule, 5));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("names a reviewer twice"), "{body}");

    // `--user` with mixed scripts: a usage error, one line, nothing runs.
    let f = Fixture::new("[fs]\nread = [\"out/**\"]\n");
    let out = sandbox()
        .arg("run")
        .arg(guest("probe"))
        .arg("--manifest")
        .arg(f.manifest())
        .args(["--user", "\u{430}lice", "--", "read", "out/x"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let r = Run::from_output(out);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("user `\u{430}lice` mixes letters of different scripts"), "{}", r.stderr);
    // So does a rule in the manifest naming one person twice.
    let f = Fixture::new("[fs]\nread = [\"out/**\"]\n[approval]\nrequire = { all = [\"bob\", \"BOB\"] }\n");
    let r = f.run("probe", &["read", "out/x"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("`all` names a reviewer twice"), "{}", r.stderr);

    // A reviewers file with two spellings of one name does not start.
    let bad = setup.dir.path().join("twice.toml");
    let (_, h1) = sandbox_approvals::new_token();
    let (_, h2) = sandbox_approvals::new_token();
    let (_, h3) = sandbox_approvals::new_token();
    std::fs::write(
        &bad,
        format!(
            "[[reviewer]]\nname = \"alice\"\ntoken_sha256 = \"{h1}\"\n[[reviewer]]\nname = \"Alice\"\n\
             token_sha256 = \"{h2}\"\n[[runner]]\nname = \"ci\"\ntoken_sha256 = \"{h3}\"\n"
        ),
    )
    .unwrap();
    let out = service_command()
        .env("SANDBOX_LOG", "warn")
        .args(["approvals", "serve", "--reviewers"])
        .arg(&bad)
        .arg("--db")
        .arg(setup.dir.path().join("x.sqlite"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("twice.toml:5: key `reviewer.name`: reviewer `Alice` is another spelling of reviewer `alice`"),
        "{stderr}"
    );
}
