//! Forwarding to a SIEM (`[[audit.sink]]`): the real `sandbox` binary on
//! the `probe` guest, with receivers the tests start on 127.0.0.1 — a TCP
//! syslog receiver that parses RFC 6587 octet-counted frames and the RFC
//! 5424 header and structured data strictly, and a Splunk HEC endpoint
//! (axum) that checks the `Authorization` header and parses each batch.
//!
//! Cases: events arrive in order with the documented fields; a receiver
//! that is down costs the run nothing and `sandbox audit forward` (and the
//! next run) deliver exactly the missing events; HEC 401 is one clear
//! line; hostile text cannot break a frame or the structured data; the HEC
//! token never shows in the log, stderr or the tool's output; checkpoint
//! lines go as MSGID `checkpoint` / sourcetype `sandbox:checkpoint`; a log
//! replaced under a cursor is refused until the cursor is reset.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::Value;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One syslog message as the receiver parsed it.
#[derive(Debug, Clone)]
struct Syslog {
    pri: u32,
    timestamp: String,
    hostname: String,
    app: String,
    procid: String,
    msgid: String,
    sd_id: String,
    params: Vec<(String, String)>,
    msg: String,
}

impl Syslog {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Parses one RFC 5424 SYSLOG-MSG with exactly one SD-ELEMENT (what
/// sandbox sends); any deviation is an error.
fn parse_5424(m: &[u8]) -> Result<Syslog, String> {
    let s = std::str::from_utf8(m).map_err(|e| format!("not UTF-8: {e}"))?;
    let rest = s.strip_prefix('<').ok_or("no PRI")?;
    let (pri, rest) = rest.split_once('>').ok_or("PRI not closed")?;
    if pri.is_empty() || pri.len() > 3 || !pri.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad PRI {pri:?}"));
    }
    let rest = rest.strip_prefix("1 ").ok_or("not VERSION 1")?;
    let mut fields = Vec::new();
    let mut rest = rest;
    for _ in 0..5 {
        let (f, r) = rest.split_once(' ').ok_or("header cut short")?;
        if f.is_empty() || !f.bytes().all(|b| (33..=126).contains(&b)) {
            return Err(format!("bad header field {f:?}"));
        }
        fields.push(f.to_owned());
        rest = r;
    }
    let mut chars = rest.char_indices().peekable();
    if chars.next().map(|(_, c)| c) != Some('[') {
        return Err("no SD-ELEMENT".into());
    }
    let mut sd_id = String::new();
    let mut params = Vec::new();
    let end: usize;
    // SD-ID, then ( SP name="value" )*, then `]`.
    for (_, c) in chars.by_ref() {
        if c == ' ' || c == ']' {
            if c == ']' {
                return Err("SD-ELEMENT without params".into());
            }
            break;
        }
        if matches!(c, '=' | '"') {
            return Err(format!("bad SD-ID char {c:?}"));
        }
        sd_id.push(c);
    }
    loop {
        let mut name = String::new();
        loop {
            let (_, c) = chars.next().ok_or("SD cut short")?;
            if c == '=' {
                break;
            }
            if matches!(c, ' ' | ']' | '"') || !(c as u32 >= 33 && c as u32 <= 126) {
                return Err(format!("bad PARAM-NAME char {c:?}"));
            }
            name.push(c);
        }
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err("PARAM-VALUE not quoted".into());
        }
        let mut value = String::new();
        loop {
            let (_, c) = chars.next().ok_or("PARAM-VALUE cut short")?;
            match c {
                '\\' => match chars.peek() {
                    Some((_, n @ ('"' | '\\' | ']'))) => {
                        value.push(*n);
                        chars.next();
                    }
                    _ => value.push('\\'),
                },
                '"' => break,
                ']' => return Err("unescaped `]` in a PARAM-VALUE".into()),
                c => value.push(c),
            }
        }
        params.push((name, value));
        match chars.next() {
            Some((_, ' ')) => continue,
            Some((i, ']')) => {
                end = i;
                break;
            }
            other => return Err(format!("after a param: {other:?}")),
        }
    }
    let msg = rest[end + 1..].strip_prefix(' ').ok_or("no SP before MSG")?;
    let [timestamp, hostname, app, procid, msgid] = <[String; 5]>::try_from(fields).unwrap();
    Ok(Syslog {
        pri: pri.parse().unwrap(),
        timestamp,
        hostname,
        app,
        procid,
        msgid,
        sd_id,
        params,
        msg: msg.to_owned(),
    })
}

/// A TCP syslog receiver: frames are `MSG-LEN SP SYSLOG-MSG` (RFC 6587
/// octet counting); anything else is recorded as an error.
struct SyslogReceiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Result<Syslog, String>>>>,
}

impl SyslogReceiver {
    fn start() -> SyslogReceiver {
        SyslogReceiver::start_on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    fn start_on(listener: TcpListener) -> SyslogReceiver {
        let addr = listener.local_addr().unwrap();
        let got: Arc<Mutex<Vec<Result<Syslog, String>>>> = Arc::default();
        let sink = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        let n = match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        // Take every complete frame.
                        while let Some(sp) = buf.iter().position(|b| *b == b' ') {
                            let len = &buf[..sp];
                            if len.is_empty() || len[0] == b'0' || !len.iter().all(u8::is_ascii_digit) {
                                sink.lock()
                                    .unwrap()
                                    .push(Err(format!("bad MSG-LEN {:?}", String::from_utf8_lossy(len))));
                                return;
                            }
                            let len: usize = std::str::from_utf8(len).unwrap().parse().unwrap();
                            if buf.len() < sp + 1 + len {
                                break;
                            }
                            let frame: Vec<u8> = buf.drain(..sp + 1 + len).skip(sp + 1).collect();
                            sink.lock().unwrap().push(parse_5424(&frame));
                        }
                    }
                });
            }
        });
        SyslogReceiver { addr, got }
    }

    /// The messages received, once there are at least `n` (10 s at most).
    fn wait_for(&self, n: usize) -> Vec<Syslog> {
        let start = Instant::now();
        while self.got.lock().unwrap().len() < n && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.got.lock().unwrap().iter().map(|r| r.clone().unwrap_or_else(|e| panic!("bad frame: {e}"))).collect()
    }
}

/// One POST the HEC endpoint got: its Authorization header and body, and
/// the status it answered.
#[derive(Debug, Clone)]
struct Post {
    auth: Option<String>,
    body: Vec<u8>,
    status: u16,
}

/// A Splunk HEC endpoint at `/services/collector/event`: 200 for the
/// right token, 401 (as Splunk answers) otherwise.
struct HecReceiver {
    addr: SocketAddr,
    posts: Arc<Mutex<Vec<Post>>>,
    _rt: tokio::runtime::Runtime,
}

impl HecReceiver {
    fn start(token: &str) -> HecReceiver {
        HecReceiver::start_failing(token, &[])
    }

    /// Like [`start`](Self::start), but the first posts are answered with
    /// `first` (429, 503: "try again later").
    fn start_failing(token: &str, first: &[u16]) -> HecReceiver {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode};
        type Shared = (Arc<Mutex<Vec<Post>>>, String, Vec<u16>);
        async fn collect(
            State((posts, want, first)): State<Shared>,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> (StatusCode, &'static str) {
            let auth = headers.get("authorization").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let mut posts = posts.lock().unwrap();
            let (status, text) = match first.get(posts.len()) {
                Some(s) => (StatusCode::from_u16(*s).unwrap(), r#"{"text":"Server is busy","code":9}"#),
                None if auth.as_deref() == Some(want.as_str()) => (StatusCode::OK, r#"{"text":"Success","code":0}"#),
                None => (StatusCode::UNAUTHORIZED, r#"{"text":"Invalid token","code":4}"#),
            };
            posts.push(Post { auth, body: body.to_vec(), status: status.as_u16() });
            (status, text)
        }
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let posts: Arc<Mutex<Vec<Post>>> = Arc::default();
        let app = axum::Router::new().route("/services/collector/event", axum::routing::post(collect)).with_state((
            posts.clone(),
            format!("Splunk {token}"),
            first.to_vec(),
        ));
        rt.spawn(async move { axum::serve(listener, app).await });
        HecReceiver { addr, posts, _rt: rt }
    }

    fn url(&self) -> String {
        format!("http://{}/services/collector/event", self.addr)
    }

    fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap().clone()
    }
}

/// A manifest: reads under `src/`, a signing key, `audit` (more `[audit]`
/// settings) and `sinks` (TOML).
fn manifest(audit: &str, sinks: &str) -> String {
    format!(
        r#"
name = "sink-tests"

[fs]
read = ["src/**"]

[audit]
path = "audit.jsonl"
signing_key = "audit.key"
{audit}
{sinks}
"#
    )
}

fn fixture(sinks: &str) -> Fixture {
    fixture_with("", sinks)
}

fn fixture_with(audit: &str, sinks: &str) -> Fixture {
    let f = Fixture::new(&manifest(audit, sinks));
    f.file("src/a.txt", "hello\n");
    let r = Run::from_output(sandbox().args(["audit", "keygen", "--out"]).arg(f.path("audit.key")).output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    f
}

fn hec_sink(hec: &HecReceiver) -> String {
    format!(
        "[[audit.sink]]\ntype = \"splunk-hec\"\nname = \"splunk\"\nurl = \"{}\"\ntoken_env = \"SANDBOX_TEST_HEC_TOKEN\"\n",
        hec.url()
    )
}

fn syslog_sink(addr: SocketAddr) -> String {
    format!("[[audit.sink]]\ntype = \"syslog\"\nname = \"siem\"\naddress = \"{addr}\"\n")
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// The lines of a log's rotated segments (`<log>.<12 digits>`, in order),
/// then of its live file.
fn log_lines(log: &Path) -> Vec<String> {
    let name = log.file_name().unwrap().to_str().unwrap();
    let mut segments: Vec<_> = std::fs::read_dir(log.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.strip_prefix(name)
                .and_then(|r| r.strip_prefix('.'))
                .is_some_and(|d| d.len() == 12 && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    segments.sort();
    segments.push(log.to_owned());
    segments.iter().flat_map(|p| lines(p)).collect()
}

/// `sandbox audit forward audit.jsonl --manifest M ARGS...`.
fn forward(f: &Fixture, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = sandbox();
    c.args(["audit", "forward"]).arg(f.audit()).arg("--manifest").arg(f.manifest()).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    Run::from_output(c.output().unwrap())
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// The raw JSON text of a top-level string member of a log line (between
/// its quotes, escapes kept).
fn json_text(line: &str, name: &str) -> String {
    let map: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
    let v = &map[name];
    serde_json::to_string(v).unwrap().trim_matches('"').to_owned()
}

#[test]
fn events_reach_syslog_in_order_with_rfc5424_fields() {
    let rx = SyslogReceiver::start();
    let f = fixture(&syslog_sink(rx.addr));
    // An allowed read, a denied one, and a path full of syslog syntax.
    let hostile = r#"esc:x"] [evil@1 a="b"]\\\n<13>1 - - - - - injected"#;
    let r = f.run("probe", &["read", "src/a.txt", "+", "read", "secret.txt", "+", "read", hostile]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stderr.contains("sink"), "{}", r.stderr);
    let log = lines(&f.audit());
    let cps = lines(&f.path("audit.jsonl.checkpoints"));
    assert!(!cps.is_empty(), "the run writes a checkpoint at its end");
    let got = rx.wait_for(log.len() + cps.len());
    assert_eq!(got.len(), log.len() + cps.len(), "{got:#?}");
    let (events, checkpoints) = got.split_at(log.len());
    for (m, line) in events.iter().zip(&log) {
        let ev: Value = serde_json::from_str(line).unwrap();
        assert_eq!(&m.msg, line, "MSG is the log line, exactly");
        assert_eq!(m.app, "sandbox");
        assert_eq!(m.sd_id, "sandbox@32473");
        assert_eq!(m.msgid, ev["kind"].as_str().unwrap());
        assert_eq!(m.param("seq"), Some(ev["seq"].to_string().as_str()));
        assert_eq!(m.param("task"), ev["task"].as_str());
        assert_eq!(m.param("hash"), ev["hash"].as_str());
        assert!(m.procid.parse::<u32>().is_ok(), "{m:?}");
        assert!(!m.hostname.is_empty());
        let ts = humantime::parse_rfc3339(ev["ts"].as_str().unwrap()).unwrap();
        assert_eq!(humantime::parse_rfc3339(&m.timestamp).unwrap(), ts);
        // authpriv (10); warning for refusals, info for the rest.
        assert_eq!(m.pri / 8, 10);
        let severity = match (ev["kind"].as_str(), ev["decision"].as_str()) {
            (Some("call"), Some("deny" | "invalid")) => 4,
            (Some("finding"), _) => 3,
            _ => 6,
        };
        assert_eq!(m.pri % 8, severity, "{line}");
        if let Some(target) = ev["target"].as_str() {
            assert_eq!(m.param("target").unwrap(), json_text(line, "target"), "{target:?}");
        }
    }
    // The hostile target stayed inside its param; no other SD-ID appeared.
    let evil = events.iter().find(|m| m.param("target").is_some_and(|t| t.contains("evil@1"))).unwrap();
    assert!(evil.param("target").unwrap().contains(r#"\"] [evil@1 a=\"b\"]\\\n<13>1"#), "{evil:?}");
    assert!(got.iter().all(|m| m.sd_id == "sandbox@32473" && m.params.iter().all(|(n, _)| n != "a")));
    assert!(events.iter().any(|m| m.param("decision") == Some("deny") && m.pri % 8 == 4));
    // Checkpoint lines follow, as MSGID `checkpoint`.
    for (m, line) in checkpoints.iter().zip(&cps) {
        assert_eq!(m.msgid, "checkpoint");
        assert_eq!(&m.msg, line);
        let cp: Value = serde_json::from_str(line).unwrap();
        assert_eq!(m.param("size"), Some(cp["size"].to_string().as_str()));
    }
    // The cursor records the last event delivered.
    let cursor: Value =
        serde_json::from_str(&std::fs::read_to_string(f.path("audit.jsonl.sink-siem.cursor")).unwrap()).unwrap();
    let last: Value = serde_json::from_str(log.last().unwrap()).unwrap();
    assert_eq!(cursor["event"]["seq"], last["seq"]);
    assert_eq!(cursor["event"]["hash"], last["hash"]);
}

#[test]
fn a_sink_that_is_down_catches_up_later_without_gaps_or_repeats() {
    let addr = free_port();
    // A small rotation size: the catch-up reads across rotated segments.
    let f = fixture_with("rotate = \"1 KiB\"", &syslog_sink(addr));
    let r = f.run("probe", &["read", "src/a.txt", "+", "read", "src/a.txt", "+", "read", "src/a.txt"]);
    assert_eq!(r.code, 0, "the run is not held up: {r:?}");
    assert!(r.stderr.contains("sink `siem`") && r.stderr.contains("audit forward"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert_eq!(f.verify().code, 0, "the local log is complete");
    let first = log_lines(&f.audit());
    assert!(first.len() > lines(&f.audit()).len(), "the log rotated");
    assert!(!f.path("audit.jsonl.sink-siem.cursor").exists());
    // Still down: `audit forward` gives up after --wait with exit 75.
    let down = forward(&f, &["--wait", "1s"], &[]);
    assert_eq!(down.code, 75, "{down:?}");
    assert_eq!(down.stderr.lines().count(), 1, "{}", down.stderr);
    assert!(down.stderr.contains("sink `siem`"), "{}", down.stderr);
    // Up again: `audit forward` sends exactly what is missing.
    let rx = SyslogReceiver::start_on(TcpListener::bind(addr).unwrap());
    let up = forward(&f, &[], &[]);
    assert_eq!(up.code, 0, "{up:?}");
    assert!(up.stdout.contains(&format!("sent {} event(s)", first.len())), "{}", up.stdout);
    let cps = lines(&f.path("audit.jsonl.checkpoints"));
    let got = rx.wait_for(first.len() + cps.len());
    let msgs: Vec<&str> = got.iter().filter(|m| m.msgid != "checkpoint").map(|m| m.msg.as_str()).collect();
    assert_eq!(msgs, first.iter().map(String::as_str).collect::<Vec<_>>());
    // Nothing new: nothing sent.
    let again = forward(&f, &[], &[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("sent 0 event(s), 0 checkpoint line(s)"), "{}", again.stdout);
    // The next run delivers only its own events.
    let r = f.run("probe", &["read", "src/a.txt"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    let all = log_lines(&f.audit());
    let cps = lines(&f.path("audit.jsonl.checkpoints"));
    let got = rx.wait_for(all.len() + cps.len());
    let msgs: Vec<&str> = got.iter().filter(|m| m.msgid != "checkpoint").map(|m| m.msg.as_str()).collect();
    assert_eq!(msgs, all.iter().map(String::as_str).collect::<Vec<_>>(), "each event exactly once, in order");
    let cp_msgs: Vec<&str> = got.iter().filter(|m| m.msgid == "checkpoint").map(|m| m.msg.as_str()).collect();
    assert_eq!(cp_msgs, cps.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn hec_gets_every_event_with_the_token_which_shows_nowhere_else() {
    const TOKEN: &str = "hec-token-8c1f0e2a-SECRET";
    let hec = HecReceiver::start(TOKEN);
    let f = fixture(&hec_sink(&hec));
    let mut c = f.command("probe", &[], &["read", "src/a.txt", "+", "read", "secret.txt"]);
    c.env("SANDBOX_TEST_HEC_TOKEN", TOKEN);
    let r = Run::from_output(c.output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    let log = lines(&f.audit());
    let cps = lines(&f.path("audit.jsonl.checkpoints"));
    let mut objects = Vec::new();
    for p in hec.posts() {
        assert_eq!(p.auth.as_deref(), Some(format!("Splunk {TOKEN}").as_str()));
        for l in String::from_utf8(p.body).unwrap().lines() {
            objects.push((l.to_owned(), serde_json::from_str::<Value>(l).unwrap()));
        }
    }
    assert_eq!(objects.len(), log.len() + cps.len(), "{objects:#?}");
    let (events, checkpoints) = objects.split_at(log.len());
    for ((raw, o), line) in events.iter().zip(&log) {
        let ev: Value = serde_json::from_str(line).unwrap();
        assert_eq!(o["event"], ev, "the event is the log line's object");
        assert!(raw.ends_with(&format!(r#""event":{line}}}"#)), "the line, byte for byte: {raw}");
        assert_eq!(o["source"], "sandbox");
        assert_eq!(o["sourcetype"], "sandbox:audit");
        assert!(o["host"].as_str().is_some_and(|h| !h.is_empty()));
        let ts = humantime::parse_rfc3339(ev["ts"].as_str().unwrap()).unwrap();
        let micros = ts.duration_since(std::time::UNIX_EPOCH).unwrap().as_micros();
        let time = format!(r#"{{"time":{}.{:06},"#, micros / 1_000_000, micros % 1_000_000);
        assert!(raw.starts_with(&time), "{raw} should start with {time}");
    }
    for ((_, o), line) in checkpoints.iter().zip(&cps) {
        assert_eq!(o["sourcetype"], "sandbox:checkpoint");
        assert_eq!(o["event"], serde_json::from_str::<Value>(line).unwrap());
    }
    // The token is in none of the files beside the log, nor in any output.
    for entry in std::fs::read_dir(f.dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            assert!(!String::from_utf8_lossy(&bytes).contains(TOKEN), "{}", p.display());
        }
    }
    assert!(!r.stdout.contains(TOKEN) && !r.stderr.contains(TOKEN));
}

#[test]
fn hec_busy_answers_are_retried_and_nothing_is_lost_or_repeated() {
    const TOKEN: &str = "busy-token-77a1-SECRET";
    let hec = HecReceiver::start_failing(TOKEN, &[429, 503, 503]);
    let f = fixture(&hec_sink(&hec));
    let mut c = f.command("probe", &[], &["read", "src/a.txt", "+", "read", "src/a.txt"]);
    c.env("SANDBOX_TEST_HEC_TOKEN", TOKEN);
    let r = Run::from_output(c.output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    // Whatever the run could not deliver, `audit forward` does.
    let fwd = forward(&f, &[], &[("SANDBOX_TEST_HEC_TOKEN", TOKEN)]);
    assert_eq!(fwd.code, 0, "{fwd:?}");
    let posts = hec.posts();
    assert_eq!(posts.iter().filter(|p| p.status != 200).count(), 3, "{posts:?}");
    let delivered: Vec<Value> = posts
        .iter()
        .filter(|p| p.status == 200)
        .flat_map(|p| String::from_utf8(p.body.clone()).unwrap().lines().map(str::to_owned).collect::<Vec<_>>())
        .map(|l| serde_json::from_str::<Value>(&l).unwrap())
        .filter(|o| o["sourcetype"] == "sandbox:audit")
        .map(|o| o["event"].clone())
        .collect();
    assert_eq!(delivered, events(&f.audit()), "every event once, in order");
}

#[test]
fn a_refused_hec_token_is_one_clear_line_and_the_run_goes_on() {
    const TOKEN: &str = "wrong-token-4d2b-SECRET";
    let hec = HecReceiver::start("the-right-token");
    let f = fixture(&hec_sink(&hec));
    let mut c = f.command("probe", &[], &["read", "src/a.txt"]);
    c.env("SANDBOX_TEST_HEC_TOKEN", TOKEN);
    let r = Run::from_output(c.output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("sink `splunk`") && r.stderr.contains("HTTP 401: Invalid token"), "{}", r.stderr);
    assert!(!r.stderr.contains(TOKEN));
    assert_eq!(f.verify().code, 0);
    let fwd = forward(&f, &[], &[("SANDBOX_TEST_HEC_TOKEN", TOKEN)]);
    assert_eq!(fwd.code, 2, "{fwd:?}");
    assert_eq!(fwd.stderr.lines().count(), 1, "{}", fwd.stderr);
    assert!(fwd.stderr.contains("HTTP 401") && !fwd.stderr.contains(TOKEN), "{}", fwd.stderr);
    // An unset token variable is named.
    let unset = forward(&f, &[], &[]);
    assert_eq!(unset.code, 2, "{unset:?}");
    assert!(unset.stderr.contains("`SANDBOX_TEST_HEC_TOKEN` is not set"), "{}", unset.stderr);
}

#[test]
fn a_replaced_log_is_refused_until_the_cursor_is_reset() {
    let rx = SyslogReceiver::start();
    let f = fixture(&syslog_sink(rx.addr));
    assert_eq!(f.run("probe", &["read", "src/a.txt", "+", "read", "src/a.txt"]).code, 0);
    let first = lines(&f.audit());
    // The log (and its checkpoints) are replaced by a new, shorter one.
    std::fs::remove_file(f.audit()).unwrap();
    std::fs::remove_file(f.path("audit.jsonl.checkpoints")).unwrap();
    let r = f.run("probe", &["read", "src/a.txt"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("finding: audit sink `siem`") && r.stderr.contains("cursor"), "{}", r.stderr);
    let fwd = forward(&f, &[], &[]);
    assert_eq!(fwd.code, 1, "{fwd:?}");
    assert_eq!(fwd.stderr.lines().count(), 1, "{}", fwd.stderr);
    let before = rx.wait_for(0).len();
    // --reset needs --sink.
    assert_eq!(forward(&f, &["--reset"], &[]).code, 2);
    let reset = forward(&f, &["--sink", "siem", "--reset"], &[]);
    assert_eq!(reset.code, 0, "{reset:?}");
    let second = lines(&f.audit());
    let cps = lines(&f.path("audit.jsonl.checkpoints"));
    let got = rx.wait_for(before + second.len() + cps.len());
    let resent: Vec<&str> = got[before..].iter().filter(|m| m.msgid != "checkpoint").map(|m| m.msg.as_str()).collect();
    assert_eq!(resent, second.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(first.len() > second.len());
}

#[test]
fn a_tool_cannot_touch_the_cursor_files_beside_a_log_in_its_workspace() {
    let rx = SyslogReceiver::start();
    let f = Fixture::new(&format!(
        r#"
name = "sink-cursor-tests"

[fs]
read = ["audit.jsonl*"]
write = ["audit.jsonl*"]
auto_approve = ["audit.jsonl*"]

[audit]
path = "ws/audit.jsonl"

{}"#,
        syslog_sink(rx.addr)
    ));
    let r = f.run("probe", &["read", "audit.jsonl"]);
    assert_eq!(r.code, 0, "{r:?}");
    let cursor = f.ws("audit.jsonl.sink-siem.cursor");
    assert!(cursor.exists());
    let before = std::fs::read(&cursor).unwrap();
    let names = ["audit.jsonl.sink-siem.cursor", "audit.jsonl.sink-siem.cursor.tmp", "audit.jsonl.sink-siem.lock"];
    let mut args = Vec::new();
    for n in names {
        args.extend(["write", n, "{}", "+", "read", n, "+"]);
    }
    args.pop();
    let r = f.run("probe", &args);
    assert_eq!(r.code, 0, "{r:?}");
    for n in names {
        for op in [label(&["write", n, "{}"]), label(&["read", n])] {
            assert!(r.line(&op).starts_with("denied"), "{op}: {}", r.line(&op));
        }
    }
    // The cursor is the forwarder's own, moved on to this run's last event.
    assert_ne!(std::fs::read(&cursor).unwrap(), before);
    let c: Value = serde_json::from_slice(&std::fs::read(&cursor).unwrap()).unwrap();
    let log = events(&f.ws("audit.jsonl"));
    assert_eq!(c["event"]["seq"], log.last().unwrap()["seq"]);
    assert!(log.iter().any(|e| e["rule"] == "builtin:audit-sink-cursor"));
}
