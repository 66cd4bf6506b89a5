//! `probe`: performs host calls given on the command line and prints one
//! line per call, so tests can attack the host with exact inputs.
//!
//! ```text
//! probe OP ARGS... [+ OP ARGS...]...
//! OP: read P | cat P | list P | stat P | write P DATA | append P DATA
//!     | mkdir P | remove P | rename A B | write-big P BYTES | read-big P
//!     | http URL | intent TEXT | id
//!     | run [--cwd DIR] [--env NAME=VALUE]... [--env-fill NAME=N]
//!         [--stdin TEXT] [--timeout MS]
//!         PROG ARGS...           (ok `exit N|none stdout S stderr E
//!                              truncated T`, S and E cut at 500 bytes)
//!     | run-tail N [run options] PROG ARGS...
//!                              (ok `exit N|none truncated T tail S`: the
//!                              last N bytes of stdout, Rust-escaped)
//!     | http-req METHOD URL [NAME:VALUE...] [--body TEXT] [--timeout MS]
//!         [--show]             (ok `status N bytes M` and `location URL`
//!                              when the answer has one; with --show also
//!                              `headers [...]` and `tail S`, the last 200
//!                              bytes of the body)
//!     | read-check P MARKER      (ok `LEAK` when the content holds MARKER)
//!     | sleep MS
//!     | repeat N OP ARGS...      (prints a count per outcome)
//! ```
//!
//! An argument starting `esc:` is unescaped first (`\0`, `\n`, `\xNN`,
//! `\\`), to send bytes a command line cannot carry.
//!
//! Output: `OP ARGS: ok DETAIL` or `OP ARGS: KIND: MESSAGE`. Arguments are
//! shown Rust-escaped so hostile paths stay on one line.

use sandbox_tool::types::Error;
use sandbox_tool::{fs, http, process, task};
use std::collections::BTreeMap;

fn kind(e: &Error) -> &'static str {
    match e {
        Error::Denied(_) => "denied",
        Error::NotApproved(_) => "not-approved",
        Error::LimitExceeded(_) => "limit-exceeded",
        Error::Invalid(_) => "invalid",
        Error::NotFound(_) => "not-found",
        Error::Failed(_) => "failed",
    }
}

fn show(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    format!("{s:?}")
}

/// Runs one op; `Ok(detail)` or `Err(error)`.
fn op(words: &[String]) -> Result<String, Error> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["read", p] => fs::read(p).map(|d| format!("{} bytes {}", d.len(), show(&d))),
        ["cat", p] => fs::read(p).map(|d| {
            use std::io::Write;
            let _ = std::io::stdout().write_all(&d);
            format!("{} bytes", d.len())
        }),
        ["read-check", p, marker] => fs::read(p).map(|d| {
            let leaked = String::from_utf8_lossy(&d).contains(marker);
            if leaked { "LEAK".into() } else { "clean".into() }
        }),
        ["sleep", ms] => {
            std::thread::sleep(std::time::Duration::from_millis(ms.parse().unwrap_or(0)));
            Ok("slept".into())
        }
        ["read-big", p] => fs::read(p).map(|d| format!("{} bytes", d.len())),
        ["list", p] => fs::list_dir(p).map(|es| {
            let names: Vec<String> = es.iter().map(|e| format!("{}:{:?}:{}", e.name, e.kind, e.size)).collect();
            format!("[{}]", names.join(", "))
        }),
        ["stat", p] => fs::stat(p).map(|m| format!("{:?} {} bytes", m.kind, m.size)),
        ["write", p, data] => fs::write(p, data.as_bytes()).map(|()| "written".into()),
        ["append", p, data] => fs::append(p, data.as_bytes()).map(|()| "appended".into()),
        ["write-big", p, n] => {
            let n: usize = n.parse().unwrap_or(0);
            fs::write(p, &vec![b'x'; n]).map(|()| format!("{n} bytes written"))
        }
        ["mkdir", p] => fs::create_dir(p).map(|()| "created".into()),
        ["remove", p] => fs::remove(p).map(|()| "removed".into()),
        ["rename", a, b] => fs::rename(a, b).map(|()| "renamed".into()),
        ["http", url] => http::send(&http::Request {
            method: "GET".into(),
            url: url.to_string(),
            headers: vec![],
            body: None,
            timeout_ms: None,
        })
        .map(|r| format!("status {}", r.status)),
        ["http-req", method, url, rest @ ..] => http_req(method, url, rest),
        ["run", rest @ ..] => run(rest).map(|o| {
            let exit = o.exit_code.map_or("none".to_owned(), |c| c.to_string());
            format!("exit {exit} stdout {} stderr {} truncated {}", cut(&o.stdout), cut(&o.stderr), o.truncated)
        }),
        ["run-tail", n, rest @ ..] => run(rest).map(|o| {
            let exit = o.exit_code.map_or("none".to_owned(), |c| c.to_string());
            format!("exit {exit} truncated {} tail {}", o.truncated, tail(&o.stdout, n.parse().unwrap_or(80)))
        }),
        ["intent", text] => {
            task::set_intent(text);
            Ok("set".into())
        }
        ["id"] => Ok(task::id()),
        _ => Ok(format!("unknown op {w:?}")),
    }
}

/// `http-req METHOD URL [NAME:VALUE...] [--body TEXT] [--timeout MS]`: one
/// `http.send` with exactly these parts (header names and values are sent
/// as given, so hostile ones reach the host).
fn http_req(method: &str, url: &str, rest: &[&str]) -> Result<String, Error> {
    let mut req =
        http::Request { method: method.to_owned(), url: url.to_owned(), headers: vec![], body: None, timeout_ms: None };
    let mut words = rest.iter();
    let mut show = false;
    while let Some(w) = words.next() {
        match *w {
            "--show" => show = true,
            "--body" => req.body = Some(words.next().unwrap_or(&"").as_bytes().to_vec()),
            "--timeout" => req.timeout_ms = words.next().and_then(|ms| ms.parse().ok()),
            h => {
                let (name, value) = h.split_once(':').unwrap_or((h, ""));
                req.headers.push((name.to_owned(), value.to_owned()));
            }
        }
    }
    http::send(&req).map(|r| {
        let mut detail = format!("status {} bytes {}", r.status, r.body.len());
        for (name, value) in &r.headers {
            if name.eq_ignore_ascii_case("location") {
                detail.push_str(&format!(" location {value}"));
            }
        }
        if show {
            detail.push_str(&format!(" headers {:?} tail {}", r.headers, tail(&r.body, 200)));
        }
        detail
    })
}

/// The last `n` bytes of `bytes`, Rust-escaped.
fn tail(bytes: &[u8], n: usize) -> String {
    let s = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(n)..]);
    format!("{s:?}")
}

/// `run [--cwd DIR] [--env NAME=VALUE]... [--stdin TEXT] [--timeout MS]
/// PROG ARGS...`: one `process.run` with exactly these parts. Options are
/// read only before PROG; everything after it is an argument.
fn run(words: &[&str]) -> Result<process::Output, Error> {
    let mut cmd = process::Command {
        program: String::new(),
        args: vec![],
        env: vec![],
        cwd: None,
        stdin: None,
        timeout_ms: None,
    };
    let mut words = words.iter();
    while let Some(w) = words.next() {
        match *w {
            "--cwd" => cmd.cwd = words.next().map(|d| d.to_string()),
            "--env" => {
                let pair = words.next().unwrap_or(&"");
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                cmd.env.push((name.to_owned(), value.to_owned()));
            }
            "--env-fill" => {
                // NAME=N: N bytes of `x`, without putting them on the label.
                let pair = words.next().unwrap_or(&"");
                let (name, n) = pair.split_once('=').unwrap_or((pair, "0"));
                cmd.env.push((name.to_owned(), "x".repeat(n.parse().unwrap_or(0))));
            }
            "--stdin" => cmd.stdin = Some(words.next().unwrap_or(&"").as_bytes().to_vec()),
            "--timeout" => cmd.timeout_ms = words.next().and_then(|ms| ms.parse().ok()),
            prog => {
                cmd.program = prog.to_owned();
                break;
            }
        }
    }
    cmd.args = words.map(|a| a.to_string()).collect();
    process::run(&cmd)
}

/// Up to 500 bytes of process output, Rust-escaped.
fn cut(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(500)]);
    format!("{s:?}")
}

/// Decodes an `esc:` argument.
fn unescape(arg: String) -> String {
    let Some(rest) = arg.strip_prefix("esc:") else { return arg };
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).map(unescape).collect();
    for words in args.split(|a| a == "+") {
        if words.is_empty() {
            continue;
        }
        let label: Vec<String> = words
            .iter()
            .map(|w| if w.len() > 60 { format!("<{} bytes>", w.len()) } else { format!("{w:?}") })
            .collect();
        let label = label.join(" ");
        if words[0] == "repeat" && words.len() > 2 {
            let n: u64 = words[1].parse().unwrap_or(0);
            let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
            for _ in 0..n {
                let k = match op(&words[2..]) {
                    Ok(detail) if detail == "LEAK" => "LEAK",
                    Ok(_) => "ok",
                    Err(e) => kind(&e),
                };
                *counts.entry(k).or_default() += 1;
            }
            let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("{label}: {}", summary.join(" "));
            continue;
        }
        match op(words) {
            Ok(detail) => println!("{label}: ok {detail}"),
            Err(e) => {
                let msg = match &e {
                    Error::Denied(m)
                    | Error::NotApproved(m)
                    | Error::LimitExceeded(m)
                    | Error::Invalid(m)
                    | Error::NotFound(m)
                    | Error::Failed(m) => m,
                };
                println!("{label}: {}: {msg:?}", kind(&e));
            }
        }
    }
}
