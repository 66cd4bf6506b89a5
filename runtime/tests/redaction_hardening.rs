//! Issue 21, items 3, 6 and 7: redaction that an attacker cannot line up
//! against a cut, that covers header names, and that leaves reviewers able
//! to tell hidden values apart. Real binary, real guests (`probe`,
//! `wasi-fetch`), a local HTTP server that reflects what it is sent.
//!
//! The secret is a `[secrets.api]` value the host injects (into a
//! command's environment, into an `Authorization` header); the tool never
//! knows it, but it controls what comes before it in the answer, so it can
//! place it anywhere relative to `limits.output`.
#![allow(clippy::unwrap_used)]

mod common;
use common::approval_service::Setup;
use common::*;

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::time::Duration;

/// The injected secret: also a GitHub token to the detectors.
const TOKEN: &str = "ghp_s3cr3tValueTheToolMustNeverSee0123456789";
/// `limits.output` in these tests.
const CAP: usize = 32 * 1024;

/// A run of `probe` with the token in `TEST_API_TOKEN`.
fn run(f: &Fixture, args: &[&str]) -> Run {
    let mut c = f.command("probe", &[], args);
    c.env("TEST_API_TOKEN", TOKEN).env_remove("SANDBOX_IDENTITY_TOKEN");
    Run::from_output(c.output().unwrap())
}

/// Fails unless `shown` (what the tool got) is made only of the padding
/// the tool chose, newlines and whole markers: not one character of the
/// secret, not even its first.
fn assert_nothing_of_the_secret(shown: &str, what: &str) {
    let mut rest = shown.replace("\\n", "\n");
    for marker in ["[redacted:secret]", "[redacted:github-token]"] {
        rest = rest.replace(marker, "");
    }
    assert!(rest.chars().all(|c| c == 'x' || c == '\n'), "{what}: the tool got part of the secret: {shown:?}");
}

/// The Rust-escaped string after ` tail ` in a probe line.
fn tail_of(line: &str) -> &str {
    let at = line.find(" tail \"").unwrap_or_else(|| panic!("no tail in {line}"));
    line[at + 7..].trim_end().trim_end_matches('"')
}

// ------------------------------------------------ item 3: commands

fn command_fixture(outputs: bool) -> Fixture {
    Fixture::new(&format!(
        r#"
[secrets.api]
env = "TEST_API_TOKEN"

[limits]
output = {CAP}

[redact]
outputs = {outputs}

[[process.allow]]
program = "printenv"
path = "/usr/bin/printenv"
args = ["AAA_PAD API_TOKEN"]
env = ["AAA_PAD"]
approval = "never"
secret_env = {{ API_TOKEN = "{{secrets.api}}" }}
"#
    ))
}

/// `printenv AAA_PAD API_TOKEN` prints `x` * PAD, a newline, the secret
/// and a newline. With PAD = CAP - 1 - k the secret starts k bytes before
/// the cut: the old code cut first and redacted after, so the tool got the
/// secret's first k bytes (the literal no longer matched). Every offset
/// from "starts at the cut" to "ends past it" is tried, with only the
/// secret values redacted and with every detector.
#[test]
fn a_secret_lined_up_with_the_output_cap_never_reaches_the_tool_in_part() {
    for outputs in [false, true] {
        let f = command_fixture(outputs);
        let offsets: Vec<usize> = (0..=TOKEN.len() + 2).collect();
        let pads: Vec<String> = offsets.iter().map(|k| format!("AAA_PAD={}", CAP - 1 - k)).collect();
        let mut args: Vec<&str> = Vec::new();
        for pad in &pads {
            args.extend(["run-tail", "120", "--env-fill", pad, "printenv", "AAA_PAD", "API_TOKEN", "+"]);
        }
        let r = run(&f, &args);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(!r.stdout.contains(&TOKEN[..4]) && !r.stderr.contains(&TOKEN[..4]), "{r:?}");
        for (k, pad) in offsets.iter().zip(&pads) {
            let line =
                r.line(&label(&["run-tail", "120", "--env-fill", pad, "printenv", "AAA_PAD", "API_TOKEN"])).to_owned();
            assert!(line.starts_with("ok exit"), "offset {k}: {line}");
            let what = format!("outputs = {outputs}, secret {k} bytes before the cut");
            assert_nothing_of_the_secret(tail_of(&line), &what);
            // pad, newline, secret, newline: over the cap below this.
            if *k > TOKEN.len() {
                assert!(line.contains("truncated false"), "{what}: {line}");
                assert!(tail_of(&line).ends_with("[redacted:secret]\\n"), "{what}: {line}");
            } else {
                assert!(line.contains("truncated true"), "{what}: {line}");
            }
        }
        let log = std::fs::read_to_string(f.audit()).unwrap();
        assert!(!log.contains(&TOKEN[..8]), "the log holds the secret");
        assert_eq!(f.verify().code, 0);
    }
}

// ------------------------------------------- items 3 and 6: HTTP

/// A server that reflects the `Authorization` header it receives: in the
/// body after `pad` bytes of `x`, in a header value, in a header name
/// (`x-echo-<value>`), and (`chunked`) across two chunks of a chunked
/// body, the second sent a little later.
struct Reflector {
    port: u16,
}

impl Reflector {
    fn start() -> Reflector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = reflect(stream);
                });
            }
        });
        Reflector { port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn reflect(mut stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut secret = String::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            secret = v.trim().trim_start_matches("Bearer ").to_owned();
        }
    }
    let pad: usize = target.split("pad=").nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    if target.starts_with("/chunked") {
        let (a, b) = secret.split_at(secret.len() / 2);
        let first = format!("{}{a}", "x".repeat(pad));
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{first}\r\n",
            first.len()
        )?;
        stream.flush()?;
        std::thread::sleep(Duration::from_millis(100));
        let second = format!("{b}\n");
        return write!(stream, "{:x}\r\n{second}\r\n0\r\n\r\n", second.len());
    }
    let body = format!("{}{secret}", "x".repeat(pad));
    let name = if target.starts_with("/headers") { format!("X-Echo-{secret}: 1\r\n") } else { String::new() };
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Echo: {}{secret}\r\n{name}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        "x".repeat(pad.min(64)),
        body.len()
    )
}

fn http_fixture(s: &Reflector) -> Fixture {
    Fixture::new(&format!(
        r#"
[secrets.api]
env = "TEST_API_TOKEN"

[limits]
output = {CAP}

[http]
allow_private = ["127.0.0.1/32"]

[[http.allow]]
url = "{}"
methods = ["GET"]
approval = "never"
headers = {{ Authorization = "Bearer {{secrets.api}}" }}
"#,
        s.url("/**")
    ))
}

/// A response body is passed whole or not at all: a body over
/// `limits.output` is refused (`limit-exceeded`), one within it is
/// redacted whole. Lined up with the cap at every offset, the tool never
/// gets a prefix of the reflected secret, from the body or from the
/// header that repeats it.
#[test]
fn a_secret_lined_up_with_the_body_limit_never_reaches_the_tool_in_part() {
    let s = Reflector::start();
    let f = http_fixture(&s);
    let urls: Vec<String> =
        (0..=TOKEN.len() + 1).map(|k| s.url(&format!("/body?pad={}", CAP - TOKEN.len() + k))).collect();
    let mut args: Vec<&str> = Vec::new();
    for url in &urls {
        args.extend(["http-req", "GET", url, "--show", "+"]);
    }
    let r = run(&f, &args);
    assert_eq!(r.code, 0, "{r:?}");
    for (k, url) in urls.iter().enumerate() {
        let line = r.line(&label(&["http-req", "GET", url, "--show"]));
        if k == 0 {
            // Exactly the cap: passed, redacted whole.
            assert!(line.starts_with("ok status 200"), "{line}");
            assert!(tail_of(line).ends_with("x[redacted:secret]"), "{line}");
            assert_nothing_of_the_secret(tail_of(line), url);
        } else {
            assert!(line.starts_with("limit-exceeded:"), "{k}: {line}");
        }
        assert!(!line.to_ascii_lowercase().contains(&TOKEN[..6].to_ascii_lowercase()), "{line}");
    }
    assert!(!r.stdout.to_ascii_lowercase().contains(&TOKEN[..6].to_ascii_lowercase()), "{}", r.stdout);
}

/// A server can reflect a secret in a header *name* (names arrive
/// lowercased, so the value no longer matches as it was injected): the
/// name is redacted, still a valid header name, on `http.send` and on
/// standard wasi:http; a secret split across two chunks of a chunked body
/// is redacted whole on both routes too.
#[test]
fn a_secret_reflected_in_a_header_name_or_split_across_chunks_is_redacted() {
    let s = Reflector::start();
    let f = http_fixture(&s);
    let plain = s.url("/headers?pad=16");
    let chunked = s.url("/chunked?pad=100");
    let r = run(&f, &["http-req", "GET", &plain, "--show", "+", "http-req", "GET", &chunked, "--show"]);
    assert_eq!(r.code, 0, "{r:?}");
    let line = r.line(&label(&["http-req", "GET", &plain, "--show"]));
    assert!(line.contains("(\"x-echo-redacted-secret\", \"1\")"), "{line}");
    assert!(line.contains("(\"x-echo\", \"xxxxxxxxxxxxxxxx[redacted:secret]\")"), "{line}");
    let line = r.line(&label(&["http-req", "GET", &chunked, "--show"]));
    assert!(tail_of(line).ends_with("x[redacted:secret]\\n"), "{line}");
    let lower = TOKEN.to_ascii_lowercase();
    assert!(!r.stdout.to_ascii_lowercase().contains(&lower[..8]), "{}", r.stdout);
    let result = f
        .events()
        .into_iter()
        .find(|e| e["kind"] == "result" && e["capability"] == "http.send" && e["outcome"] == "ok")
        .unwrap();
    assert_eq!(result["redactions"]["secret"], 3, "body, header value, header name: {result}");

    // Standard wasi:http: the response is built from the redacted names
    // (an unredacted one would be refused as a header by nothing: it is
    // valid, which is the danger), and the chunked body is read whole.
    let mut c = f.command("wasi-fetch", &[], &[&chunked]);
    c.env("TEST_API_TOKEN", TOKEN).env_remove("SANDBOX_IDENTITY_TOKEN");
    let w = Run::from_output(c.output().unwrap());
    assert_eq!(w.code, 0, "{w:?}");
    assert!(w.stdout.contains("x[redacted:secret]\n"), "{}", w.stdout);
    assert!(!w.stdout.to_ascii_lowercase().contains(&lower[..8]), "{}", w.stdout);
    let mut c = f.command("wasi-fetch", &[], &[&plain]);
    c.env("TEST_API_TOKEN", TOKEN).env_remove("SANDBOX_IDENTITY_TOKEN");
    let w = Run::from_output(c.output().unwrap());
    assert_eq!(w.code, 0, "{w:?}");
    assert!(!w.stdout.to_ascii_lowercase().contains(&lower[..8]), "{}", w.stdout);
    let log = std::fs::read_to_string(f.audit()).unwrap();
    assert!(!log.to_ascii_lowercase().contains(&lower[..8]), "the log holds the secret");
}

// ------------------------------------- item 7: what reviewers see

/// The fingerprinted marker of a card number in `shown`: `[redacted:
/// card-number:…LAST4#8 hex]`.
fn card_marker(shown: &str) -> &str {
    let at = shown.find("[redacted:card-number:…").unwrap_or_else(|| panic!("no card marker in {shown}"));
    let end = shown[at..].find(']').unwrap() + at + 1;
    let marker = &shown[at..end];
    let fp = marker.rsplit('#').next().unwrap().trim_end_matches(']');
    assert!(fp.len() == 8 && fp.bytes().all(|b| b.is_ascii_hexdigit()), "{marker}");
    marker
}

/// Two DELETEs of card-like account ids, written like cards (grouped), and
/// one of a bare Luhn-valid id. The approval service's reviewers see each
/// grouped id hidden but distinguishable (last four digits and a keyed
/// fingerprint), the bare id as it is (a path segment is an id, not a card
/// number); the audit log records exactly the forms the reviewers saw; and
/// each approval is bound to its real effect.
#[test]
fn reviewers_can_tell_hidden_ids_apart_and_a_plain_numeric_path_id_is_shown() {
    let setup = Setup::new();
    let server = setup.start();
    let base = "http://127.0.0.1:9";
    let f = Fixture::new(&format!(
        "[http]\nallow_private = [\"127.0.0.1/32\"]\n\n[[http.allow]]\nurl = \"{base}/accounts/*\"\nmethods = [\"DELETE\"]\napproval = \"required\"\n"
    ));
    let ids = ["4111-1111-1111-1111", "5500-0000-0000-0004", "4111111111111111"];
    let urls: Vec<String> = ids.iter().map(|id| format!("{base}/accounts/{id}")).collect();
    let mut args: Vec<&str> = Vec::new();
    for u in &urls {
        args.extend(["http-req", "DELETE", u, "+"]);
    }
    let child = f
        .command("probe", &["--approve", &server.url()], &args)
        .env("SANDBOX_APPROVAL_TOKEN", &setup.runner)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // The task runs for alice, who may not vote on it.
    let token = setup.token("bob");
    let mut seen: Vec<Value> = Vec::new();
    for _ in &ids {
        let mut found = None;
        assert!(
            wait_for(Duration::from_secs(60), || {
                found = server.list(token, "pending").into_iter().next();
                found.is_some()
            }),
            "no request was submitted"
        );
        let req = found.unwrap();
        let (status, _) = server.vote(token, req["id"].as_str().unwrap(), "reject", "checking");
        assert_eq!(status, 200);
        seen.push(req);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let targets: Vec<&str> = seen.iter().map(|r| r["target"].as_str().unwrap()).collect();
    let (a, b) = (card_marker(targets[0]), card_marker(targets[1]));
    assert!(a.starts_with("[redacted:card-number:…1111#") && b.starts_with("[redacted:card-number:…0004#"), "{a} {b}");
    assert_ne!(a.rsplit('#').next(), b.rsplit('#').next(), "different values, different fingerprints");
    assert_eq!(targets[0], format!("DELETE {base}/accounts/{a}"));
    assert!(!targets[0].contains("4111-1111") && !targets[1].contains("5500-0000"), "{targets:?}");
    assert_eq!(targets[2], format!("DELETE {}", urls[2]), "a bare numeric path id is an id");
    // Each request is bound to its own real effect.
    let effects: Vec<&str> = seen.iter().map(|r| r["effect_sha256"].as_str().unwrap()).collect();
    assert!(effects[0] != effects[1] && effects[1] != effects[2], "{effects:?}");
    // The log shows what the reviewers saw, and the same hashes.
    let approvals: Vec<Value> = f.events().into_iter().filter(|e| e["kind"] == "approval").collect();
    assert_eq!(approvals.len(), 3);
    for (ev, req) in approvals.iter().zip(&seen) {
        assert_eq!(ev["target"], req["target"], "{ev}");
        assert_eq!(ev["effect_sha256"], req["effect_sha256"], "{ev}");
    }
    let calls = f.calls("http.send");
    assert_eq!(calls[0]["redactions"]["card-number"], 1, "{}", calls[0]);
    assert!(calls[2].get("redactions").is_none(), "{}", calls[2]);
    let log = std::fs::read_to_string(f.audit()).unwrap();
    assert!(!log.contains("4111-1111-1111-1111") && !log.contains("5500-0000-0000-0004"));
    assert_eq!(f.verify().code, 0);
}

/// A command line is free text: a Luhn-valid argument is a card number
/// there, fingerprinted so that two of them differ and the same one looks
/// the same, and a path segment in it is an id. What the log records for
/// a call, the approval event repeats.
#[test]
fn card_numbers_in_a_command_line_are_fingerprinted_consistently() {
    let f = Fixture::new(
        "[[process.allow]]\nprogram = \"echo\"\npath = \"/usr/bin/echo\"\nargs = [\"*\"]\napproval = \"required\"\n",
    );
    let r = f.run(
        "probe",
        &[
            "run",
            "echo",
            "4111111111111111",
            "+",
            "run",
            "echo",
            "4012888888881881",
            "+",
            "run",
            "echo",
            "4111111111111111",
            "+",
            "run",
            "echo",
            "/accounts/4012888888881881",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let calls = f.calls("process.run");
    let targets: Vec<&str> = calls.iter().map(|c| c["target"].as_str().unwrap()).collect();
    let marks: Vec<&str> = targets[..3].iter().map(|t| card_marker(t)).collect();
    assert!(marks[0].contains(":…1111#") && marks[1].contains(":…1881#"), "{marks:?}");
    assert_ne!(marks[0], marks[1]);
    assert_eq!(marks[0], marks[2], "the same value, the same fingerprint");
    assert_eq!(targets[3], "echo /accounts/4012888888881881");
    let approvals: Vec<Value> = f.events().into_iter().filter(|e| e["kind"] == "approval").collect();
    for (ev, call) in approvals.iter().zip(&calls) {
        assert_eq!(ev["target"], call["target"]);
    }
    let log = std::fs::read_to_string(f.audit()).unwrap();
    assert!(!log.contains("4111111111111111"), "{log}");
}
