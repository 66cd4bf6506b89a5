//! A real `sandbox approvals serve` for tests: a temporary reviewers file
//! and database, a free loopback port, raw HTTP calls (so that `Host` and
//! `Origin` are exactly what a test says), killed on drop.

use sandbox_approvals::protocol::Submission;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Reviewers (name, roles) of every test service, and one runner.
pub const REVIEWERS: &[(&str, &[&str])] = &[("alice", &["sre"]), ("bob", &[]), ("carol", &["sre", "sec"])];

/// Tokens and a reviewers file in a temporary directory.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub tokens: Vec<(String, String)>,
    pub runner: String,
}

impl Setup {
    pub fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let mut file = String::new();
        let mut tokens = Vec::new();
        for (name, roles) in REVIEWERS {
            let (token, hash) = sandbox_approvals::new_token();
            let roles = roles.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>().join(", ");
            file.push_str(&format!("[[reviewer]]\nname = {name:?}\nroles = [{roles}]\ntoken_sha256 = {hash:?}\n\n"));
            tokens.push(((*name).to_owned(), token));
        }
        let (runner, hash) = sandbox_approvals::new_token();
        file.push_str(&format!("[[runner]]\nname = \"ci\"\ntoken_sha256 = {hash:?}\n"));
        std::fs::write(dir.path().join("reviewers.toml"), file).unwrap();
        Setup { dir, tokens, runner }
    }

    pub fn token(&self, name: &str) -> &str {
        &self.tokens.iter().find(|(n, _)| n == name).unwrap().1
    }

    pub fn reviewers(&self) -> PathBuf {
        self.dir.path().join("reviewers.toml")
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("approvals.sqlite")
    }

    pub fn all_tokens(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.tokens.iter().map(|(_, t)| t.as_str()).collect();
        all.push(&self.runner);
        all
    }

    /// Starts the service on a free port.
    pub fn start(&self) -> Server {
        self.start_on(free_port())
    }

    pub fn start_on(&self, port: u16) -> Server {
        Server::start(&self.reviewers(), &self.db(), &format!("127.0.0.1:{port}"))
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn service_command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sandbox"));
    // Everything the service logs, so that a token in any of it shows.
    c.env("SANDBOX_LOG", "trace");
    c
}

/// A running `sandbox approvals serve`, killed when dropped (also when a
/// test fails).
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub stderr: Arc<Mutex<String>>,
    pub ready: String,
}

impl Server {
    pub fn start(reviewers: &Path, db: &Path, listen: &str) -> Server {
        Server::start_with(reviewers, db, listen, &[])
    }

    pub fn start_with(reviewers: &Path, db: &Path, listen: &str, extra: &[&str]) -> Server {
        let mut cmd = service_command();
        cmd.args(["approvals", "serve", "--listen", listen])
            .args(extra)
            .arg("--reviewers")
            .arg(reviewers)
            .arg("--db")
            .arg(db);
        Server::spawn(cmd, listen)
    }

    /// Starts `cmd`, a command that runs `sandbox approvals serve --listen
    /// LISTEN ...`, and waits until it says it listens there.
    pub fn spawn(mut cmd: Command, listen: &str) -> Server {
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut pipe = child.stderr.take().unwrap();
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    stderr.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = Server { child, addr: String::new(), stderr, ready: String::new() };
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let Some(url) = line.trim().strip_prefix("listening on http://").and_then(|l| l.split(' ').next()) else {
            let _ = server.child.kill();
            let _ = server.child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!("the service did not start: stdout {line:?}, stderr:\n{}", server.stderr());
        };
        assert_eq!(url, listen, "{line}");
        server.addr = url.to_owned();
        server.ready = line;
        server
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and returns the exit code; fails if it takes long.
    pub fn terminate(mut self) -> (i32, String) {
        use rustix::process::{Pid, Signal, kill_process};
        kill_process(Pid::from_child(&self.child), Signal::TERM).unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return (status.code().unwrap_or(-1), self.stderr());
            }
            assert!(start.elapsed() < Duration::from_secs(10), "the service did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A request with `Host` set to the service's address.
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
        let mut headers = vec![("Host".to_owned(), self.addr.clone())];
        if let Some(t) = token {
            headers.push(("Authorization".to_owned(), format!("Bearer {t}")));
        }
        let body = body.map(Value::to_string);
        let (status, _, text) = raw(&self.addr, method, path, &headers, body.as_deref());
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn submit(&self, runner: &str, s: &Submission) -> (u16, Value) {
        self.call("POST", "/api/runner/requests", Some(runner), Some(&serde_json::to_value(s).unwrap()))
    }

    pub fn vote(&self, token: &str, id: &str, decision: &str, comment: &str) -> (u16, Value) {
        let body = json!({"decision": decision, "comment": comment});
        self.call("POST", &format!("/api/requests/{id}/decision"), Some(token), Some(&body))
    }

    pub fn list(&self, token: &str, state: &str) -> Vec<Value> {
        let (status, body) = self.call("GET", &format!("/api/requests?state={state}"), Some(token), None);
        assert_eq!(status, 200, "{body}");
        body["requests"].as_array().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with exactly these headers (plus `Connection:
/// close` and `Content-Length`): status, head, body.
pub fn raw(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&str>,
) -> (u16, String, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}
