//! THREATS.md, Network: a hostile tool tries every way out through
//! `sandbox:host/http.send` and standard `wasi:http`. Each test runs the
//! real binary on a guest (`probe`, `fetch`, `wasi-fetch`) against the test
//! HTTP server of `common::http_server`, and checks the typed error, the
//! audit event with its decision and rule, and, in the server's own log of
//! every accepted connection, that no byte reached a refused place.

// `allow-unwrap-in-tests` covers #[test] functions only, not the helpers.
#![allow(clippy::unwrap_used)]

mod common;
use common::http_server::{HttpServer, JSON_BODY, Logged, Tripwire};
use common::*;

use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

// ---------------------------------------------------------------- helpers

/// A manifest: `[http]` with `http_keys`, one `[[http.allow]]` per rule
/// (its URL, then extra TOML lines), then `rest` (other tables).
fn manifest(http_keys: &str, rules: &[(&str, &str)], rest: &str) -> String {
    let mut m = format!("[http]\n{http_keys}\n");
    for (url, extra) in rules {
        m.push_str(&format!("\n[[http.allow]]\nurl = \"{url}\"\n{extra}\n"));
    }
    m.push('\n');
    m.push_str(rest);
    m
}

/// The `allow_private` line that lets the tests reach their own server.
const LOCAL: &str = r#"allow_private = ["127.0.0.1/32"]"#;

/// The words of one `probe http-req` op.
fn req(method: &str, url: &str, extra: &[&str]) -> Vec<String> {
    let mut w = vec!["http-req".to_owned(), method.to_owned(), url.to_owned()];
    w.extend(extra.iter().map(|s| s.to_string()));
    w
}

/// What `probe` does to an `esc:` argument.
fn unescape(arg: &str) -> String {
    let Some(rest) = arg.strip_prefix("esc:") else { return arg.to_owned() };
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('\0'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).map(char::from).unwrap_or('?'));
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// The label `probe` prints for an op (long words shown by size).
fn probe_label(words: &[String]) -> String {
    words
        .iter()
        .map(|w| unescape(w))
        .map(|w| if w.len() > 60 { format!("<{} bytes>", w.len()) } else { format!("{w:?}") })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One `http-req` op as the tool saw it and as the log recorded it.
#[derive(Debug)]
struct Done {
    label: String,
    /// What `probe` printed after the label: `ok status 200 bytes 5` or
    /// `denied: "..."`.
    detail: String,
    /// Its `call` event.
    call: Value,
    /// Its `result` event.
    result: Value,
}

impl Done {
    /// The detail after `ok `; fails when the op did not succeed.
    fn ok(&self) -> &str {
        self.detail.strip_prefix("ok ").unwrap_or_else(|| panic!("{}: expected ok, got {}", self.label, self.detail))
    }

    /// Asserts a refusal: the tool got the error `kind`, the `call` event
    /// has `decision`, and the `result` event the same error.
    fn refused(&self, kind: &str, decision: &str) -> &Done {
        assert!(self.detail.starts_with(&format!("{kind}: ")), "{}: expected {kind}, got {}", self.label, self.detail);
        assert_eq!(self.call["decision"], decision, "{}: {}", self.label, self.call);
        assert_eq!(self.result["outcome"], kind, "{}: {}", self.label, self.result);
        self
    }

    /// Asserts `denied` by the default rule (no rule matched the URL).
    fn denied_by_default(&self) -> &Done {
        self.refused("denied", "deny");
        assert_eq!(self.call["rule"], "default", "{}: {}", self.label, self.call);
        self
    }

    /// Asserts `denied` by rule `http.allow[i]`, named in the message too.
    fn denied_by_rule(&self, i: usize) -> &Done {
        self.refused("denied", "deny");
        let rule = format!("http.allow[{i}]");
        let recorded = self.call["rule"].as_str().unwrap_or("");
        assert!(recorded.starts_with(&format!("{rule}:")), "{}: want rule {rule}, got {}", self.label, self.call);
        assert!(self.detail.contains(&rule), "{}: the message does not name {rule}: {}", self.label, self.detail);
        self
    }

    /// Asserts `denied` after the URL matched a rule: an address check
    /// refused (so the rule recorded is not `default`).
    fn denied_by_address(&self) -> &Done {
        self.refused("denied", "deny");
        assert_ne!(self.call["rule"], "default", "{}: the URL matched a rule: {}", self.label, self.call);
        assert!(self.call["rule"].as_str().is_some_and(|r| !r.is_empty()), "{}: {}", self.label, self.call);
        self
    }

    /// Asserts `invalid` (a malformed request, decided before any rule).
    fn invalid(&self) -> &Done {
        self.refused("invalid", "invalid")
    }
}

/// Runs `probe` with one `http-req` op per entry of `ops` and returns each
/// op with its audit events. Every op must have exactly one `http.send`
/// call event, refused ones included.
fn probe(f: &Fixture, opts: &[&str], ops: &[Vec<String>]) -> Vec<Done> {
    let mut args: Vec<&str> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            args.push("+");
        }
        args.extend(op.iter().map(String::as_str));
    }
    let r = f.run_with("probe", opts, &args);
    assert_eq!(r.code, 0, "{r:?}");
    // This run's events: from its `task-start` on.
    let mut events = f.events();
    let start = events.iter().rposition(|e| e["kind"] == "task-start").unwrap();
    events.drain(..start);
    let calls: Vec<&Value> = events.iter().filter(|e| e["kind"] == "call" && e["capability"] == "http.send").collect();
    assert_eq!(calls.len(), ops.len(), "one http.send call event per op:\n{}\n{calls:#?}", r.stdout);
    // One line per op, in order (several ops may share a label).
    let mut lines = r.stdout.lines();
    ops.iter()
        .zip(calls)
        .map(|(op, call)| {
            let label = probe_label(op);
            let prefix = format!("{label}: ");
            let detail = lines
                .by_ref()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no line for {label} in stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr));
            Done { detail: detail.to_owned(), label, call: call.clone(), result: result_of(&events, call).clone() }
        })
        .collect()
}

/// The log's events about calls (`call`, `approval`, `result`), as JSON
/// text: what the host recorded from the requests. (`task-start` records
/// the tool's arguments as given, which these tests fill with secrets.)
fn call_events_text(f: &Fixture) -> String {
    f.events().iter().filter(|e| e["kind"] != "task-start").map(Value::to_string).collect::<Vec<_>>().join("\n")
}

/// A JSON field that holds a list of strings, or one string of
/// comma-separated items: the `resolved` addresses, the `headers` names.
fn list(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(|i| i.as_str().unwrap_or(&i.to_string()).to_owned()).collect(),
        Value::String(s) => s.split([',', ' ']).filter(|p| !p.is_empty()).map(str::to_owned).collect(),
        _ => vec![],
    }
}

/// Asserts that a result's `peer` is `addr` (with or without the port).
fn assert_peer(result: &Value, addr: SocketAddr) {
    let peer = result["peer"].as_str().unwrap_or_else(|| panic!("no peer on {result}"));
    assert!(peer == addr.to_string() || peer == addr.ip().to_string(), "peer {peer}, want {addr}: {result}");
}

/// Asserts that no logged request carries a header named `header`.
fn assert_never_sent(log: &[Logged], header: &str) {
    for e in log {
        assert!(e.header_values(header).is_empty(), "the server received a `{header}` header: {e:#?}");
    }
}

/// `sandbox run` options pinning each name to addresses.
fn resolve(pins: &[&str]) -> Vec<String> {
    pins.iter().flat_map(|p| ["--resolve".to_owned(), p.to_string()]).collect()
}

fn opts(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

// ------------------------------------------------------------ the harness

#[test]
fn the_server_log_sees_every_connection_even_a_silent_one() {
    use std::io::{Read, Write};
    let s = HttpServer::start();
    let t = Tripwire::start();
    s.assert_untouched("a fresh server");
    assert!(t.connections().is_empty());
    // A connection that sends nothing is on record at once.
    let silent = std::net::TcpStream::connect(s.addr()).unwrap();
    assert_eq!(s.log().len(), 1);
    assert!(s.requests().is_empty());
    drop(silent);
    // A request is on record with its parts once answered.
    let mut c = std::net::TcpStream::connect(s.addr()).unwrap();
    c.write_all(b"POST /api/echo?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi").unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains(r#""body":"hi""#), "{answer}");
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].request_line.as_deref(), Some("POST /api/echo?x=1 HTTP/1.1"));
    assert_eq!(reqs[0].header("host"), Some("h"));
    assert_eq!(reqs[0].body, b"hi");
    assert_eq!(s.log().len(), 2);
    let _ = std::net::TcpStream::connect(t.addr()).unwrap();
    assert_eq!(t.connections().len(), 1);
}

// ------------------------------------------------------------ allowed calls

#[test]
fn fetch_prints_a_json_field_and_the_server_gets_exactly_that_request() {
    let s = HttpServer::start();
    let rule = s.url("/api/**");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, "")], ""));
    let url = s.url("/api/json");
    let r = f.run("fetch", &[&url, "data.items.1.name"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "beta\n");
    // Exactly one connection, carrying exactly that request.
    let log = s.log();
    assert_eq!(log.len(), 1, "{log:#?}");
    let q = &log[0];
    assert_eq!(q.request_line.as_deref(), Some("GET /api/json HTTP/1.1"));
    assert_eq!(q.header("host"), Some(format!("127.0.0.1:{}", s.port()).as_str()));
    assert_eq!(q.header("accept"), Some("application/json"));
    assert_eq!(q.header("authorization"), None);
    assert!(q.body.is_empty());
    assert_eq!(q.local, Some(s.addr()));
    // The audit trail: call (allowed by the rule, the address checked),
    // then result (status, peer, bytes, duration).
    let ev = f.events();
    let calls = f.calls("http.send");
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(call["decision"], "allow");
    assert!(call["rule"].as_str().unwrap().starts_with("http.allow[0]:"), "{call}");
    assert_eq!(call["target"], format!("GET {url}"));
    assert_eq!(list(&call["resolved"]), ["127.0.0.1"], "{call}");
    let headers: Vec<String> = list(&call["headers"]).iter().map(|h| h.to_ascii_lowercase()).collect();
    assert_eq!(headers, ["accept"], "{call}");
    assert!(call.get("size").is_none() && call.get("content_sha256").is_none(), "no body, no size: {call}");
    assert_eq!(call["user"], "alice");
    let result = result_of(&ev, call);
    assert_eq!(result["outcome"], "ok");
    assert_eq!(result["status_code"], 200);
    assert_peer(result, s.addr());
    assert_eq!(result["bytes_in"], 0);
    assert_eq!(result["bytes_out"], JSON_BODY.len() as u64);
    assert!(result["duration_us"].is_u64(), "{result}");
    assert_eq!(f.verify().code, 0);
}

#[test]
fn fetch_prints_the_whole_body_and_fails_on_bad_statuses() {
    let s = HttpServer::start();
    let rule = s.url("/**");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, "")], ""));
    let r = f.run("fetch", &[&s.url("/api/json")]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, JSON_BODY);
    let r = f.run("fetch", &[&s.url("/nothing-here"), "data"]);
    assert_eq!((r.code, r.stdout.as_str()), (1, "status 404\n"), "{r:?}");
    let r = f.run("fetch", &[&s.url("/api/json"), "data.items.7.name"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("no field"), "{r:?}");
    // A refusal is printed with its kind.
    let r = f.run("fetch", &["https://example.com/"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("fetch: denied: "), "{r:?}");
    assert_eq!(s.requests().len(), 3);
}

#[test]
fn wasi_http_reaches_an_allowed_url_through_the_same_corridor() {
    let s = HttpServer::start();
    let rule = s.url("/api/**");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, "")], ""));
    let url = s.url("/api/json");
    let r = f.run("wasi-fetch", &[&url]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("status 200\n"), "{r:?}");
    assert!(r.stdout.ends_with(JSON_BODY), "{r:?}");
    let log = s.log();
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0].request_line.as_deref(), Some("GET /api/json HTTP/1.1"));
    assert_eq!(log[0].header("host"), Some(format!("127.0.0.1:{}", s.port()).as_str()));
    let ev = f.events();
    let calls = f.calls("http.send");
    assert_eq!(calls.len(), 1, "{ev:#?}");
    assert_eq!(calls[0]["decision"], "allow");
    assert!(calls[0]["rule"].as_str().unwrap().starts_with("http.allow[0]:"), "{}", calls[0]);
    assert_eq!(calls[0]["target"], format!("GET {url}"));
    assert_eq!(list(&calls[0]["resolved"]), ["127.0.0.1"]);
    let result = result_of(&ev, &calls[0]);
    assert_eq!(result["outcome"], "ok");
    assert_eq!(result["status_code"], 200);
    assert_peer(result, s.addr());
    assert_eq!(f.verify().code, 0);
}

// ------------------------------------------------------ places not granted

#[test]
fn other_ports_and_paths_are_denied_and_nothing_connects() {
    let s = HttpServer::start();
    let other = Tripwire::start();
    let rule = s.url("/api/**");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, "")], ""));
    let p = s.port();
    let done = probe(
        &f,
        &[],
        &[
            req("GET", &format!("http://127.0.0.1:{}/api/json", other.port()), &[]),
            req("GET", &s.url("/other/secret"), &[]),
            req("GET", &s.url("/apix/json"), &[]),
            req("GET", &s.url("/api/../other/secret"), &[]),
            req("GET", &s.url("/api/%2e%2e/other/secret"), &[]),
            req("GET", &s.url("/API/json"), &[]),
            req("GET", &format!("https://127.0.0.1:{p}/api/json"), &[]),
            req("GET", "http://127.0.0.1/api/json", &[]),
        ],
    );
    for d in &done {
        d.denied_by_default();
        assert!(d.call.get("resolved").is_none_or(Value::is_null), "resolved before a rule allowed: {}", d.call);
    }
    assert!(other.connections().is_empty(), "{:#?}", other.connections());
    s.assert_untouched("denied ports and paths");
    // The normal form is what was decided and recorded.
    assert_eq!(done[3].call["target"], format!("GET {}", s.url("/other/secret")));
}

#[test]
fn schemes_other_than_http_and_https_are_invalid() {
    let s = HttpServer::start();
    let rule = s.url("/**");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, "")], ""));
    let p = s.port();
    let done = probe(
        &f,
        &[],
        &[
            req("GET", "file:///etc/passwd", &[]),
            req("GET", &format!("gopher://127.0.0.1:{p}/_GET%20/api/json"), &[]),
            req("GET", &format!("ftp://127.0.0.1:{p}/api/json"), &[]),
            req("GET", &format!("ws://127.0.0.1:{p}/api/json"), &[]),
            req("GET", "data:text/plain,hello", &[]),
            req("GET", "javascript:alert(1)", &[]),
            req("GET", &format!("127.0.0.1:{p}/api/json"), &[]),
            req("GET", "/api/json", &[]),
            req("GET", "http://", &[]),
            req("GET", "", &[]),
        ],
    );
    for d in &done {
        d.invalid();
    }
    s.assert_untouched("other schemes");
    assert!(!done[0].detail.contains("root:"), "{}", done[0].detail);
}

#[test]
fn userinfo_is_invalid_and_never_recorded() {
    let s = HttpServer::start();
    let rule = s.url("/api/**");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, "")], ""));
    let p = s.port();
    let done = probe(
        &f,
        &[],
        &[
            req("GET", &format!("http://user:hunter2@127.0.0.1:{p}/api/json"), &[]),
            req("GET", &format!("http://hunter2@127.0.0.1:{p}/api/json"), &[]),
            req("GET", &format!("http://:hunter2@127.0.0.1:{p}/api/json"), &[]),
            req("GET", &format!("http://127.0.0.1:{p}@evil.test/api/json"), &[]),
        ],
    );
    for d in &done {
        d.invalid();
    }
    s.assert_untouched("userinfo");
    let log = call_events_text(&f);
    assert!(!log.contains("hunter2"), "a password reached the audit log");
    // The same through the real tool.
    let r = f.run("fetch", &[&format!("http://user:hunter2@127.0.0.1:{p}/api/json")]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("fetch: invalid: "), "{r:?}");
    s.assert_untouched("userinfo through fetch");
}

#[test]
fn encoded_separators_and_nul_in_the_path_are_invalid() {
    let s = HttpServer::start();
    let rule = s.url("/api/**");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, "")], ""));
    let done = probe(
        &f,
        &[],
        &[
            req("GET", &s.url("/api/x%2f..%2f..%2fother"), &[]),
            req("GET", &s.url("/api/x%2F..%2Fother"), &[]),
            req("GET", &s.url("/api/x%5c..%5cother"), &[]),
            req("GET", &s.url("/api/x%5C..%5Cother"), &[]),
            req("GET", &s.url("/api/json%00.txt"), &[]),
            req("GET", &format!("esc:{}", s.url("/api/json\\0.txt")), &[]),
            req("GET", &s.url("/api\\..\\other"), &[]),
        ],
    );
    for d in &done[..6] {
        d.invalid();
    }
    // `\` is `/` to a WHATWG parser: `/api\..\other` is `/other`, denied.
    assert!(done[6].detail.starts_with("denied: ") || done[6].detail.starts_with("invalid: "), "{done:#?}");
    s.assert_untouched("encoded separators");
}

// --------------------------------------------------------------- addresses

/// Spellings of 127.0.0.1 that a WHATWG parser reads as that address.
fn spellings(port: u16) -> Vec<String> {
    [
        "2130706433",
        "0x7f000001",
        "0x7f.0.0.1",
        "0x7F.0x0.0x0.0x1",
        "017700000001",
        "0177.0.0.1",
        "0177.0000.0000.0001",
        "127.1",
        "127.0.1",
        "127.000.000.001",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
    ]
    .iter()
    .map(|h| format!("http://{h}:{port}/api/json"))
    .collect()
}

#[test]
fn ip_literal_spellings_do_not_match_a_rule_naming_a_name() {
    let s = HttpServer::start();
    let p = s.port();
    let f = Fixture::new(&manifest(
        r#"allow_private = ["127.0.0.0/8", "::1/128"]"#,
        &[(&format!("http://localhost:{p}/api/**"), ""), (&format!("http://api.test:{p}/api/**"), "")],
        "",
    ));
    let ops: Vec<Vec<String>> = spellings(p).iter().map(|u| req("GET", u, &[])).collect();
    let pins = resolve(&["api.test=127.0.0.1"]);
    for d in probe(&f, &opts(&pins), &ops) {
        d.denied_by_default();
    }
    s.assert_untouched("IP spellings against a rule naming a host name");
}

#[test]
fn ip_literal_spellings_match_a_rule_naming_the_canonical_address() {
    let s = HttpServer::start();
    let p = s.port();
    let rule = s.url("/api/**");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, "")], ""));
    let urls = spellings(p);
    let ops: Vec<Vec<String>> = urls.iter().map(|u| req("GET", u, &[])).collect();
    let done = probe(&f, &[], &ops);
    for d in &done {
        assert!(d.ok().starts_with("status 200"), "{d:#?}");
        assert_eq!(d.call["decision"], "allow");
    }
    // Decided, recorded and sent in the normal form.
    assert_eq!(done[0].call["target"], format!("GET http://127.0.0.1:{p}/api/json"));
    let reqs = s.requests();
    assert_eq!(reqs.len(), urls.len());
    for q in &reqs[..10] {
        assert_eq!(q.header("host"), Some(format!("127.0.0.1:{p}").as_str()), "{q:#?}");
    }
}

#[test]
fn loopback_and_unspecified_hosts_need_allow_private() {
    let s = HttpServer::start();
    let p = s.port();
    let rules = [
        format!("http://localhost:{p}/api/**"),
        format!("http://127.0.0.1:{p}/api/**"),
        format!("http://[::1]:{p}/api/**"),
        format!("http://0.0.0.0:{p}/api/**"),
        format!("http://[::]:{p}/api/**"),
        format!("http://127.0.0.2:{p}/api/**"),
    ];
    let rule_refs: Vec<(&str, &str)> = rules.iter().map(|r| (r.as_str(), "")).collect();
    let urls = [
        format!("http://localhost:{p}/api/json"),
        format!("http://127.0.0.1:{p}/api/json"),
        format!("http://[::1]:{p}/api/json"),
        format!("http://0.0.0.0:{p}/api/json"),
        format!("http://[::]:{p}/api/json"),
        format!("http://127.0.0.2:{p}/api/json"),
    ];
    let ops: Vec<Vec<String>> = urls.iter().map(|u| req("GET", u, &[])).collect();
    // Without allow_private: every one refused after its rule matched.
    let f = Fixture::new(&manifest("", &rule_refs, ""));
    for d in probe(&f, &[], &ops) {
        d.denied_by_address();
    }
    s.assert_untouched("loopback without allow_private");
    // allow_private lists 127.0.0.1 only: that one goes through; the
    // unspecified addresses (which Linux would route to this server) and
    // the rest of 127/8 do not.
    let f = Fixture::new(&manifest(LOCAL, &rule_refs, ""));
    let done = probe(&f, &[], &ops[1..]);
    assert!(done[0].ok().starts_with("status 200"), "{done:#?}");
    for d in &done[1..] {
        d.denied_by_address();
    }
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(reqs[0].header("host"), Some(format!("127.0.0.1:{p}").as_str()));
}

#[test]
fn cloud_metadata_is_refused_even_when_link_local_is_allowed() {
    let s = HttpServer::start();
    let f = Fixture::new(&manifest(
        r#"allow_private = ["169.254.0.0/16", "100.64.0.0/10", "fc00::/7", "127.0.0.1/32"]"#,
        &[
            ("http://169.254.169.254/**", ""),
            ("http://169.254.170.2/**", ""),
            ("http://100.100.100.200/**", ""),
            ("http://[fd00:ec2::254]/**", ""),
            ("http://metadata.test/**", ""),
            ("http://meta6.test/**", ""),
            (&s.url("/api/**"), ""),
        ],
        "",
    ));
    let pins = resolve(&["metadata.test=169.254.169.254", "meta6.test=::ffff:169.254.169.254"]);
    let t = ["--timeout", "3000"];
    let done = probe(
        &f,
        &opts(&pins),
        &[
            req("GET", "http://169.254.169.254/latest/meta-data/iam/security-credentials/", &t),
            req("GET", "http://169.254.170.2/v2/credentials", &t),
            req("GET", "http://100.100.100.200/latest/meta-data/", &t),
            req("GET", "http://[fd00:ec2::254]/latest/meta-data/", &t),
            req("GET", "http://metadata.test/computeMetadata/v1/", &t),
            req("GET", "http://meta6.test/latest/meta-data/", &t),
            req("GET", &s.url("/api/json"), &[]),
        ],
    );
    for d in &done[..6] {
        d.denied_by_address();
    }
    assert_eq!(list(&done[4].call["resolved"]), ["169.254.169.254"], "{}", done[4].call);
    // The manifest itself works: its last rule reaches the test server.
    assert!(done[6].ok().starts_with("status 200"), "{done:#?}");
}

#[test]
fn names_pinned_to_private_addresses_are_denied_and_nothing_connects() {
    let s = HttpServer::start();
    let p = s.port();
    let f = Fixture::new(&manifest(
        "",
        &[
            (&format!("http://internal.test:{p}/api/**"), ""),
            (&format!("http://api.test:{p}/api/**"), ""),
            (&format!("http://mapped.test:{p}/api/**"), ""),
            (&format!("http://cgnat.test:{p}/api/**"), ""),
            (&format!("http://ula.test:{p}/api/**"), ""),
            (&format!("http://zero.test:{p}/api/**"), ""),
        ],
        "",
    ));
    let pins = resolve(&[
        "internal.test=10.0.0.1",
        "api.test=127.0.0.1",
        "mapped.test=::ffff:127.0.0.1",
        "cgnat.test=100.64.0.1",
        "ula.test=fd12:3456::1",
        "zero.test=0.0.0.0",
    ]);
    let t = ["--timeout", "3000"];
    let done = probe(
        &f,
        &opts(&pins),
        &[
            req("GET", &format!("http://internal.test:{p}/api/json"), &t),
            req("GET", &format!("http://api.test:{p}/api/json"), &t),
            req("GET", &format!("http://mapped.test:{p}/api/json"), &t),
            req("GET", &format!("http://cgnat.test:{p}/api/json"), &t),
            req("GET", &format!("http://ula.test:{p}/api/json"), &t),
            req("GET", &format!("http://zero.test:{p}/api/json"), &t),
        ],
    );
    for d in &done {
        d.denied_by_address();
    }
    assert_eq!(list(&done[0].call["resolved"]), ["10.0.0.1"], "{}", done[0].call);
    assert_eq!(list(&done[1].call["resolved"]), ["127.0.0.1"], "{}", done[1].call);
    assert!(done[1].call["rule"].as_str().unwrap() != "default");
    s.assert_untouched("names pinned to private addresses");
}

#[test]
fn one_private_address_among_several_denies_the_call() {
    let s = HttpServer::start();
    let p = s.port();
    let f = Fixture::new(&manifest(
        LOCAL,
        &[(&format!("http://multi.test:{p}/api/**"), ""), (&format!("http://multi2.test:{p}/api/**"), "")],
        "",
    ));
    // 127.0.0.1 is allowed and is the test server: a host that checked
    // only one of the addresses would connect to it.
    let pins = resolve(&["multi.test=127.0.0.1,10.0.0.1", "multi2.test=10.0.0.1,127.0.0.1"]);
    let t = ["--timeout", "3000"];
    let done = probe(
        &f,
        &opts(&pins),
        &[
            req("GET", &format!("http://multi.test:{p}/api/json"), &t),
            req("GET", &format!("http://multi2.test:{p}/api/json"), &t),
        ],
    );
    for d in &done {
        d.denied_by_address();
        let mut resolved = list(&d.call["resolved"]);
        resolved.sort();
        assert_eq!(resolved, ["10.0.0.1", "127.0.0.1"], "every address is checked and recorded: {}", d.call);
        assert!(d.detail.contains("10.0.0.1"), "the refusal names the address: {}", d.detail);
    }
    s.assert_untouched("a name with one private address among several");
}

#[test]
fn redirects_are_returned_to_the_tool_never_followed() {
    let s = HttpServer::start();
    let elsewhere = Tripwire::start();
    let rule = s.url("/api/**");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, "")], ""));
    let targets = [
        format!("http://127.0.0.1:{}/secret", elsewhere.port()),
        s.url("/other/secret"),
        "/other/secret".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ];
    let ops: Vec<Vec<String>> =
        targets.iter().map(|t| req("GET", &s.url(&format!("/api/redirect?to={t}")), &[])).collect();
    let done = probe(&f, &[], &ops);
    for (d, t) in done.iter().zip(&targets) {
        assert_eq!(d.ok(), format!("status 302 bytes 12 location {t}"), "{d:#?}");
        assert_eq!(d.call["decision"], "allow");
        assert_eq!(d.result["status_code"], 302);
    }
    // Only the redirecting requests reached the server, nothing else went
    // anywhere.
    let reqs = s.requests();
    assert_eq!(reqs.len(), targets.len(), "{reqs:#?}");
    for q in &reqs {
        assert!(q.target().unwrap().starts_with("/api/redirect?to="), "{q:#?}");
    }
    assert!(elsewhere.connections().is_empty(), "{:#?}", elsewhere.connections());
    assert_eq!(f.calls("http.send").len(), targets.len());
    // The real tool reports the redirect and fails.
    let r = f.run("fetch", &[&s.url(&format!("/api/redirect?to={}", targets[0])), "data"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stdout, format!("status 302\nlocation {}\n", targets[0]));
    assert!(elsewhere.connections().is_empty());
}

#[test]
fn the_host_connects_only_to_the_address_it_checked() {
    // The server on 127.0.0.2:P is the pinned (checked) address; a decoy on
    // 127.0.0.1:P is what a second, system lookup of `localhost` gives.
    let (s, decoy) = (0..20)
        .find_map(|_| {
            let s = HttpServer::start_on(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 0)).unwrap();
            let decoy = Tripwire::start_on(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), s.port())).ok()?;
            Some((s, decoy))
        })
        .unwrap();
    let p = s.port();
    let f = Fixture::new(&manifest(
        r#"allow_private = ["127.0.0.2/32"]"#,
        &[(&format!("http://rebind.test:{p}/api/**"), ""), (&format!("http://localhost:{p}/api/**"), "")],
        "",
    ));
    let pins = resolve(&["rebind.test=127.0.0.2", "localhost=127.0.0.2"]);
    let done = probe(
        &f,
        &opts(&pins),
        &[
            req("GET", &format!("http://rebind.test:{p}/api/json"), &[]),
            req("GET", &format!("http://localhost:{p}/api/json"), &[]),
        ],
    );
    for d in &done {
        assert!(d.ok().starts_with("status 200"), "{d:#?}");
        assert_eq!(list(&d.call["resolved"]), ["127.0.0.2"], "{}", d.call);
        assert_peer(&d.result, s.addr());
    }
    let reqs = s.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert_eq!(reqs[0].header("host"), Some(format!("rebind.test:{p}").as_str()));
    assert_eq!(reqs[1].header("host"), Some(format!("localhost:{p}").as_str()));
    for q in &reqs {
        assert_eq!(q.local, Some(s.addr()), "{q:#?}");
    }
    assert!(
        decoy.connections().is_empty(),
        "connected to an address that was never checked: {:#?}",
        decoy.connections()
    );
}

// ------------------------------------------------------- request contents

#[test]
fn host_hop_by_hop_and_control_characters_in_headers_are_invalid() {
    let s = HttpServer::start();
    let rule = s.url("/api/**");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, "")], ""));
    let url = s.url("/api/echo");
    let bad_headers = [
        "Host:evil.test",
        "host:evil.test",
        "HOST:evil.test",
        "Connection:keep-alive",
        "Keep-Alive:timeout=5",
        "Proxy-Authorization:PROXY-SECRET-VALUE",
        "Proxy-Connection:keep-alive",
        "Transfer-Encoding:chunked",
        "TE:trailers",
        "Trailer:X-Injected",
        "Upgrade:websocket",
        "Content-Length:0",
        r"esc:X-A:1\r\nX-Injected: yes",
        r"esc:X-A:1\nX-Injected: yes",
        r"esc:X-A:1\rX-Injected: yes",
        r"esc:X-A:1\0",
        r"esc:X-B\r\nX-Injected:yes",
        r"esc:X-C\0:1",
        "Bad Name:1",
        ":1",
    ];
    let mut ops: Vec<Vec<String>> = bad_headers.iter().map(|h| req("GET", &url, &[h])).collect();
    let bad_methods =
        [r"esc:GET /api/json HTTP/1.1\r\nX-Injected: yes\r\n\r\nGET", "G ET", r"esc:GET\0", r"esc:GET\n", ""];
    ops.extend(bad_methods.iter().map(|m| req(m, &url, &[])));
    let done = probe(&f, &[], &ops);
    for d in &done {
        d.invalid();
    }
    s.assert_untouched("invalid headers and methods");
    // Header names are recorded, values never.
    let log = call_events_text(&f);
    assert!(!log.contains("PROXY-SECRET-VALUE"), "a header value reached the audit log");
    // A harmless header goes through; the host sets Host from the URL.
    let done = probe(&f, &[], &[req("GET", &url, &["X-Fine:1"])]);
    assert!(done[0].ok().starts_with("status 200"), "{done:#?}");
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(reqs[0].header("x-fine"), Some("1"));
    assert_eq!(reqs[0].header("host"), Some(format!("127.0.0.1:{}", s.port()).as_str()));
    assert_never_sent(&s.log(), "x-injected");
}

#[test]
fn line_breaks_in_the_url_cannot_inject_headers_or_requests() {
    let s = HttpServer::start();
    let rule = s.url("/api/**");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, "")], ""));
    let base = s.url("/api/echo");
    let urls = [
        format!(r"esc:{base}\r\nX-Injected: yes"),
        format!(r"esc:{base} HTTP/1.1\r\nX-Injected: yes\r\n\r\nGET /other/secret"),
        format!("{base}%0d%0aX-Injected:%20yes"),
        format!("{base}?q=%0d%0aX-Injected:%20yes"),
        format!(r"esc:{base}?q=\r\nX-Injected: yes"),
    ];
    let ops: Vec<Vec<String>> = urls.iter().map(|u| req("GET", u, &[])).collect();
    let done = probe(&f, &[], &ops);
    for d in &done {
        // Either refused as malformed or sent with the breaks removed or
        // percent-encoded: never as a header line.
        assert!(d.detail.starts_with("ok ") || d.detail.starts_with("invalid: "), "{d:#?}");
    }
    let log = s.log();
    assert!(log.len() <= urls.len(), "{log:#?}");
    assert_never_sent(&log, "x-injected");
    for q in &log {
        let line = q.request_line.as_deref().unwrap();
        let parts: Vec<&str> = line.split(' ').collect();
        assert!(
            parts.len() == 3 && parts[0] == "GET" && parts[1].starts_with("/api/") && parts[2] == "HTTP/1.1",
            "{q:#?}"
        );
    }
}

#[test]
fn the_host_header_follows_the_url_through_wasi_http_too() {
    let s = HttpServer::start();
    let rule = s.url("/api/**");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, "")], ""));
    let r = f.run("wasi-fetch", &["-H", "Host: evil.test", &s.url("/api/echo")]);
    // Refused, or sent with the URL's authority: never to `evil.test`.
    assert!(r.stdout.starts_with("error") || r.stdout.starts_with("status 200"), "{r:?}");
    for q in s.log() {
        assert_eq!(q.header("host"), Some(format!("127.0.0.1:{}", s.port()).as_str()), "{q:#?}");
    }
    assert!(!r.stdout.contains("evil.test\"]"), "{r:?}");
}

#[test]
fn query_strings_can_be_refused_and_their_values_are_never_recorded() {
    let s = HttpServer::start();
    let f = Fixture::new(&manifest(
        LOCAL,
        &[(&s.url("/api/json"), "query = false"), (&s.url("/api/echo"), "query = true")],
        "",
    ));
    let done = probe(
        &f,
        &[],
        &[
            req("GET", &s.url("/api/json?token=SECRET-ONE"), &[]),
            req("GET", &s.url("/api/json?"), &[]),
            req("GET", &s.url("/api/json?SECRET-TWO"), &[]),
            req("GET", &s.url("/api/json#SECRET-FRAGMENT"), &[]),
            req("GET", &s.url("/api/echo?token=SECRET-THREE&user=SECRET-BOB&flag"), &[]),
        ],
    );
    for d in &done[..3] {
        d.denied_by_rule(0);
    }
    assert!(done[3].ok().starts_with("status 200"), "a fragment is not a query: {done:#?}");
    assert!(done[4].ok().starts_with("status 200"), "{done:#?}");
    assert_eq!(done[4].call["target"], format!("GET {}", s.url("/api/echo?token&user&flag")));
    let log = call_events_text(&f);
    // A bare key stays, as every key does.
    assert_eq!(done[2].call["target"], format!("GET {}", s.url("/api/json?SECRET-TWO")));
    for secret in ["SECRET-ONE", "SECRET-THREE", "SECRET-BOB"] {
        assert!(!log.contains(secret), "`{secret}` reached the audit log");
    }
    let targets: Vec<String> = s.requests().iter().map(|q| q.target().unwrap().to_owned()).collect();
    // The fragment is not sent; the query is, to the rule that allows it.
    assert_eq!(targets, ["/api/json", "/api/echo?token=SECRET-THREE&user=SECRET-BOB&flag"]);
}

#[test]
fn wildcard_hosts_match_whole_labels_only() {
    let s = HttpServer::start();
    let p = s.port();
    let f = Fixture::new(&manifest(
        LOCAL,
        &[(&format!("http://*.hooks.test:{p}/api/**"), ""), (&format!("http://api.test:{p}/api/**"), "")],
        "",
    ));
    let names = [
        "a.hooks.test",
        "a.b.hooks.test",
        "A.HOOKS.TEST",
        "hooks.test",
        "hooks.test.evil.test",
        "evilhooks.test",
        "c2VjcmV0.api.test",
        "api.test.evil.test",
    ];
    let mut pins: Vec<String> = names.iter().map(|n| format!("{}=127.0.0.1", n.to_ascii_lowercase())).collect();
    pins.dedup();
    let pins = resolve(&pins.iter().map(String::as_str).collect::<Vec<_>>());
    let ops: Vec<Vec<String>> = names.iter().map(|n| req("GET", &format!("http://{n}:{p}/api/json"), &[])).collect();
    let done = probe(&f, &opts(&pins), &ops);
    for d in &done[..3] {
        assert!(d.ok().starts_with("status 200"), "{d:#?}");
        assert!(d.call["rule"].as_str().unwrap().starts_with("http.allow[0]:"), "{}", d.call);
    }
    // Not the bare domain, not a longer name that merely starts or ends
    // alike, not a subdomain smuggling data under an exact rule.
    for d in &done[3..] {
        d.denied_by_default();
    }
    let hosts: Vec<String> = s.requests().iter().map(|q| q.header("host").unwrap().to_owned()).collect();
    assert_eq!(hosts, [format!("a.hooks.test:{p}"), format!("a.b.hooks.test:{p}"), format!("a.hooks.test:{p}")]);
}

#[test]
fn rules_are_normalised_like_requests() {
    let s = HttpServer::start();
    let p = s.port();
    let f = Fixture::new(&manifest(
        LOCAL,
        &[
            (&format!("http://API.Example.TEST:{p}/api/**"), ""),
            (&format!("http://b\u{fc}cher.test:{p}/api/**"), ""),
            (&format!("http://2130706433:{p}/num/**"), ""),
        ],
        "",
    ));
    let pins = resolve(&["api.example.test=127.0.0.1", "xn--bcher-kva.test=127.0.0.1"]);
    let done = probe(
        &f,
        &opts(&pins),
        &[
            req("GET", &format!("http://api.example.test:{p}/api/json"), &[]),
            req("GET", &format!("http://xn--bcher-kva.test:{p}/api/json"), &[]),
            req("GET", &format!("http://B\u{dc}CHER.test:{p}/api/json"), &[]),
            req("GET", &format!("http://127.0.0.1:{p}/num/x"), &[]),
            req("GET", &format!("http://127.0.0.1:{p}/api/json"), &[]),
        ],
    );
    for d in &done[..4] {
        assert!(d.ok().starts_with("status "), "{d:#?}");
    }
    done[4].denied_by_default();
    let hosts: Vec<String> = s.requests().iter().map(|q| q.header("host").unwrap().to_owned()).collect();
    assert_eq!(
        hosts,
        [
            format!("api.example.test:{p}"),
            format!("xn--bcher-kva.test:{p}"),
            format!("xn--bcher-kva.test:{p}"),
            format!("127.0.0.1:{p}")
        ]
    );
}

// ---------------------------------------------------------------- responses

#[test]
fn responses_larger_than_the_output_limit_are_refused() {
    let s = HttpServer::start();
    let rule = s.url("/api/**");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, "")], "[limits]\noutput = \"64 KiB\"\n"));
    let done = probe(
        &f,
        &[],
        &[
            req("GET", &s.url("/api/huge?bytes=65536"), &[]),
            req("GET", &s.url("/api/huge?bytes=65537"), &[]),
            req("GET", &s.url("/api/huge?bytes=8388608"), &[]),
            req("GET", &s.url("/api/json"), &[]),
        ],
    );
    assert_eq!(done[0].ok(), "status 200 bytes 65536");
    assert_eq!(done[0].result["bytes_out"], 65536);
    for d in &done[1..3] {
        d.refused("limit-exceeded", "allow");
        assert_eq!(d.result["bytes_out"], 0, "{}", d.result);
    }
    // The run goes on.
    assert!(done[3].ok().starts_with("status 200"), "{done:#?}");
}

#[test]
fn slow_responses_fail_at_the_timeout_and_the_run_goes_on() {
    let s = HttpServer::start();
    let rule = s.url("/api/**");
    let f = Fixture::new(&manifest(&format!("{LOCAL}\ntimeout = \"500ms\""), &[(&rule, "")], ""));
    let done = probe(
        &f,
        &[],
        &[
            req("GET", &s.url("/api/slow?ms=5000"), &["--timeout", "200"]),
            req("GET", &s.url("/api/slow?ms=5000"), &[]),
            req("GET", &s.url("/api/slow?ms=5000"), &["--timeout", "60000"]),
            req("GET", &s.url("/api/slow?ms=10"), &["--timeout", "10000"]),
            req("GET", &s.url("/api/json"), &[]),
        ],
    );
    // The request's own timeout, the manifest's ceiling, and the manifest's
    // ceiling over a longer request timeout: the reason names the one that
    // applied.
    for (d, effective) in done[..3].iter().zip(["200ms", "500ms", "500ms"]) {
        d.refused("failed", "allow");
        assert!(d.detail.contains(effective), "the reason names the {effective} timeout: {}", d.detail);
    }
    assert!(done[3].ok().starts_with("status 200"), "{done:#?}");
    assert!(done[4].ok().starts_with("status 200"), "{done:#?}");
    let ev = f.events();
    assert_eq!(ev.last().unwrap()["status"], "exit", "{:#?}", ev.last());
}

#[test]
fn too_many_response_headers_fail() {
    let s = HttpServer::start();
    let rule = s.url("/api/**");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, "")], ""));
    let done = probe(
        &f,
        &[],
        &[
            req("GET", &s.url("/api/many-headers?n=90"), &[]),
            req("GET", &s.url("/api/many-headers?n=150"), &[]),
            req("GET", &s.url("/api/many-headers?n=5000"), &[]),
        ],
    );
    assert!(done[0].ok().starts_with("status 200"), "{done:#?}");
    for d in &done[1..] {
        d.refused("failed", "allow");
    }
}

// ------------------------------------------------ methods and approvals

#[test]
fn methods_outside_the_rule_are_denied_naming_it() {
    let s = HttpServer::start();
    let rule = s.url("/api/**");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, "")], ""));
    let url = s.url("/api/json");
    let refused = ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND"];
    let mut ops: Vec<Vec<String>> = refused.iter().map(|m| req(m, &url, &[])).collect();
    ops.push(req("HEAD", &url, &[]));
    ops.push(req("GET", &url, &[]));
    let done = probe(&f, &[], &ops);
    for d in &done[..refused.len()] {
        d.denied_by_rule(0);
    }
    assert_eq!(done[refused.len()].ok(), "status 200 bytes 0");
    assert!(done[refused.len() + 1].ok().starts_with("status 200"));
    let lines: Vec<String> = s.requests().iter().map(|q| q.request_line.clone().unwrap()).collect();
    assert_eq!(lines, ["HEAD /api/json HTTP/1.1", "GET /api/json HTTP/1.1"]);
}

#[test]
fn a_later_rule_can_grant_another_method_on_the_same_place() {
    let s = HttpServer::start();
    let f = Fixture::new(&manifest(
        LOCAL,
        &[(&s.url("/api/**"), ""), (&s.url("/api/echo"), "methods = [\"PUT\"]\napproval = \"never\"")],
        "",
    ));
    let done = probe(
        &f,
        &[],
        &[req("PUT", &s.url("/api/echo"), &["--body", "x"]), req("PUT", &s.url("/api/json"), &["--body", "x"])],
    );
    assert!(done[0].ok().starts_with("status 200"), "{done:#?}");
    assert!(done[0].call["rule"].as_str().unwrap().starts_with("http.allow[1]:"), "{}", done[0].call);
    // Where only the first rule matches, it names itself.
    done[1].denied_by_rule(0);
    let lines: Vec<String> = s.requests().iter().map(|q| q.request_line.clone().unwrap()).collect();
    assert_eq!(lines, ["PUT /api/echo HTTP/1.1"]);
}

#[test]
fn a_post_needs_approval_and_none_comes_without_a_terminal() {
    let s = HttpServer::start();
    let rule = s.url("/api/echo");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, r#"methods = ["POST"]"#)], ""));
    let done = probe(
        &f,
        &["--intent", "post the report"],
        &[req("POST", &s.url("/api/echo"), &["Content-Type:application/json", "--body", r#"{"a":1}"#])],
    );
    let d = &done[0];
    d.refused("not-approved", "ask");
    assert!(d.call["rule"].as_str().unwrap().starts_with("http.allow[0]:"), "{}", d.call);
    assert_eq!(d.call["size"], 7);
    assert_eq!(d.call["content_sha256"], "sha256:015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862");
    let headers: Vec<String> = list(&d.call["headers"]).iter().map(|h| h.to_ascii_lowercase()).collect();
    assert_eq!(headers, ["content-type"], "{}", d.call);
    assert_eq!(d.call["intent"], "post the report");
    let ev = f.events();
    let approval = ev.iter().find(|e| e["kind"] == "approval").unwrap();
    assert_eq!(approval["decision"], "rejected");
    assert_eq!(approval["approval"]["via"], "deny");
    assert!(approval["seq"].as_u64() > d.call["seq"].as_u64());
    s.assert_untouched("a POST nobody approved");
    assert_eq!(f.verify().code, 0);
}

#[test]
fn a_post_approved_at_the_terminal_is_sent_only_after_the_answer() {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let s = HttpServer::start();
    let rule = s.url("/api/echo");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, r#"methods = ["POST"]"#)], "[approval]\ntimeout = \"60s\"\n"));
    let url = s.url("/api/echo?ticket=T-1");
    let pair = native_pty_system().openpty(PtySize { rows: 60, cols: 200, ..PtySize::default() }).unwrap();
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_sandbox"));
    cmd.env_remove("SANDBOX_LOG");
    cmd.cwd(f.dir.path());
    cmd.arg("run");
    cmd.arg(guest("probe"));
    cmd.arg("--manifest");
    cmd.arg(f.manifest());
    cmd.args([
        "--approve",
        "tty",
        "--",
        "http-req",
        "POST",
        &url,
        "Content-Type:text/plain",
        "--body",
        "hello reviewer",
    ]);
    let mut child = pair.slave.spawn_command(cmd).unwrap();
    drop(pair.slave);
    let mut from_tty = pair.master.try_clone_reader().unwrap();
    let mut to_tty = pair.master.take_writer().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from_tty.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let screen = || String::from_utf8_lossy(&seen.lock().unwrap()).replace("\r\n", "\n");
    if !wait_for(Duration::from_secs(60), || screen().contains("[y/N]: ")) {
        let _ = child.kill();
        panic!("no approval prompt; the terminal showed:\n{}", screen());
    }
    // The reviewer sees the request; the server has seen nothing yet.
    let prompt = screen();
    assert!(prompt.contains(&format!("POST {url}")), "{prompt}");
    assert!(prompt.contains("hello reviewer"), "{prompt}");
    s.assert_untouched("a POST waiting for its approval");
    to_tty.write_all(b"y\n").unwrap();
    to_tty.flush().unwrap();
    assert!(wait_for(Duration::from_secs(60), || child.try_wait().unwrap().is_some()), "{}", screen());
    reader.join().unwrap();
    assert!(screen().contains("ok status 200"), "{}", screen());
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(reqs[0].body, b"hello reviewer");
    let ev = f.events();
    let call = f.calls("http.send").pop().unwrap();
    assert_eq!(call["decision"], "ask");
    let approval = ev.iter().find(|e| e["kind"] == "approval").unwrap();
    assert_eq!(approval["decision"], "approved");
    assert_eq!(approval["approval"]["via"], "tty");
    let result = result_of(&ev, &call);
    assert_eq!(result["outcome"], "ok");
    assert!(result["seq"].as_u64() > approval["seq"].as_u64());
}

#[test]
fn a_pre_approved_post_sends_its_body_and_records_its_hash() {
    let s = HttpServer::start();
    let rule = s.url("/api/echo");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, "methods = [\"POST\"]\napproval = \"never\"")], ""));
    let done = probe(
        &f,
        &[],
        &[req(
            "POST",
            &s.url("/api/echo"),
            &["Content-Type:application/json", "X-Request-Id:REQUEST-ID-VALUE", "--body", r#"{"a":1}"#],
        )],
    );
    let d = &done[0];
    assert!(d.ok().starts_with("status 200"), "{d:#?}");
    assert_eq!(d.call["decision"], "allow");
    assert_eq!(d.call["size"], 7);
    assert_eq!(d.call["content_sha256"], "sha256:015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862");
    let mut headers: Vec<String> = list(&d.call["headers"]).iter().map(|h| h.to_ascii_lowercase()).collect();
    headers.sort();
    assert_eq!(headers, ["content-type", "x-request-id"], "{}", d.call);
    assert_eq!(d.result["bytes_in"], 7);
    assert!(f.events().iter().all(|e| e["kind"] != "approval"));
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].request_line.as_deref(), Some("POST /api/echo HTTP/1.1"));
    assert_eq!(reqs[0].body, br#"{"a":1}"#);
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));
    // The header value is sent, never recorded.
    assert_eq!(reqs[0].header("x-request-id"), Some("REQUEST-ID-VALUE"));
    assert!(!call_events_text(&f).contains("REQUEST-ID-VALUE"));
}

#[test]
fn http_calls_count_against_the_call_limit() {
    let s = HttpServer::start();
    let rule = s.url("/api/**");
    let f = Fixture::new(&manifest(LOCAL, &[(&rule, "")], "[limits]\ncalls = 2\n"));
    let url = s.url("/api/json");
    let done = probe(&f, &[], &[req("GET", &url, &[]), req("GET", &url, &[]), req("GET", &url, &[])]);
    assert!(done[0].ok().starts_with("status 200"));
    assert!(done[1].ok().starts_with("status 200"));
    done[2].refused("limit-exceeded", "limit");
    assert_eq!(s.requests().len(), 2);
}

// ------------------------------------------------------------- wasi:http

#[test]
fn wasi_http_meets_the_same_refusals() {
    let s = HttpServer::start();
    let elsewhere = Tripwire::start();
    let p = s.port();
    let f = Fixture::new(&manifest(
        LOCAL,
        &[
            (&s.url("/api/echo"), r#"methods = ["POST"]"#),
            (&s.url("/api/**"), ""),
            (&format!("http://internal.test:{p}/**"), ""),
        ],
        "",
    ));
    let pins = resolve(&["internal.test=10.0.0.1"]);
    let run = |args: &[&str]| {
        let r = f.run_with("wasi-fetch", &opts(&pins), args);
        let call = f.calls("http.send").pop();
        (r, call)
    };
    // A refused place.
    let other = format!("http://127.0.0.1:{}/secret", elsewhere.port());
    let (r, call) = run(&[&other]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.starts_with("error"), "{r:?}");
    let call = call.expect("the refusal is audited");
    assert_eq!((call["decision"].as_str(), call["rule"].as_str()), (Some("deny"), Some("default")), "{call}");
    assert_eq!(call["target"], format!("GET {other}"));
    // A refused method.
    let (r, call) = run(&["-X", "DELETE", &s.url("/api/json")]);
    assert_eq!(r.code, 1, "{r:?}");
    let call = call.expect("the refusal is audited");
    assert_eq!(call["decision"], "deny");
    assert!(call["rule"].as_str().unwrap().starts_with("http.allow[1]:"), "{call}");
    // A name that resolves to a private address.
    let (r, call) = run(&[&format!("http://internal.test:{p}/api/json")]);
    assert_eq!(r.code, 1, "{r:?}");
    let call = call.expect("the refusal is audited");
    assert_eq!(call["decision"], "deny");
    assert_ne!(call["rule"], "default");
    // A POST that needs approval gets none without a terminal.
    let (r, call) = run(&["-X", "POST", "-d", r#"{"a":1}"#, &s.url("/api/echo")]);
    assert_eq!(r.code, 1, "{r:?}");
    let call = call.expect("the request is audited");
    assert_eq!(call["decision"], "ask");
    let ev = f.events();
    assert_eq!(ev.iter().rfind(|e| e["kind"] == "approval").unwrap()["decision"], "rejected");
    assert_eq!(result_of(&ev, &call)["outcome"], "not-approved");
    // Nothing reached the server or the other port so far.
    s.assert_untouched("refusals through wasi:http");
    assert!(elsewhere.connections().is_empty());
    // A redirect is returned, not followed.
    let (r, call) = run(&[&s.url(&format!("/api/redirect?to={other}"))]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with(&format!("status 302\nlocation {other}\n")), "{r:?}");
    assert_eq!(call.unwrap()["decision"], "allow");
    assert_eq!(s.requests().len(), 1);
    assert!(elsewhere.connections().is_empty(), "{:#?}", elsewhere.connections());
    // Other schemes never leave.
    let (r, _) = run(&["file:///etc/passwd"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(!r.stdout.contains("root:"), "{r:?}");
    assert_eq!(f.verify().code, 0);
}

// ------------------------------------------------------------ TLS, options

#[test]
fn https_speaks_tls_and_fails_against_a_plain_server() {
    let s = HttpServer::start();
    let p = s.port();
    let f = Fixture::new(&manifest(LOCAL, &[(&format!("https://127.0.0.1:{p}/api/**"), "")], ""));
    let done = probe(&f, &[], &[req("GET", &format!("https://127.0.0.1:{p}/api/json"), &["--timeout", "3000"])]);
    done[0].refused("failed", "allow");
    // What arrived was a TLS handshake, not a request in the clear.
    assert!(
        wait_for(Duration::from_secs(10), || s.log().first().is_some_and(|e| !e.raw_head.is_empty())),
        "{:#?}",
        s.log()
    );
    let log = s.log();
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(log[0].raw_head[0], 0x16, "not a TLS record: {:?}", &log[0].raw_head[..8.min(log[0].raw_head.len())]);
    assert!(!String::from_utf8_lossy(&log[0].raw_head).contains("/api/json"));
}

#[test]
fn bad_resolve_options_are_refused_before_the_tool_starts() {
    let f = Fixture::new(&manifest(LOCAL, &[("http://api.test/**", "")], ""));
    for bad in ["api.test", "api.test=", "api.test=not-an-address", "=127.0.0.1"] {
        let r = f.run_with("probe", &["--resolve", bad], &["id"]);
        assert_eq!(r.code, 2, "--resolve {bad}: {r:?}");
        assert!(r.stdout.is_empty(), "--resolve {bad}: the tool ran: {r:?}");
        assert!(r.stderr.contains("resolve"), "--resolve {bad}: {r:?}");
    }
    assert!(!f.audit().exists(), "a usage error opened the audit log");
}
