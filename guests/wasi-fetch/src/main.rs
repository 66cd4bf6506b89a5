//! `wasi-fetch`: sends one HTTP request through standard `wasi:http` (the
//! `wstd` crate) instead of `sandbox:host/http`, to prove that the second
//! route out meets the same rules, approvals and audit events.
//!
//! ```text
//! wasi-fetch [-X METHOD] [-H NAME:VALUE]... [-d BODY] URL
//! ```
//!
//! Prints `status N`, then `location URL` when the answer has a `Location`
//! header, then the body. On an error prints `error: MESSAGE` and, when the
//! host returned a `wasi:http` error code, `error-code CODE` (for example
//! `HttpRequestDenied`). Exit status: 0 for any answer, 1 on an error, 2 on
//! bad usage.
//!
//! Modes that start requests and never wait for them (the raw `wasi:http`
//! bindings), for the tests of the clock and of the end of a task:
//!
//! ```text
//! wasi-fetch --fire N URL        N GETs of URL/1 .. URL/N, then exit 0:
//!                                `fired N`
//! wasi-fetch --unfinished URL    a POST whose body is never finished, then
//!                                exit 0: `fired 1`
//! wasi-fetch --spin SECS URL     a POST (`-d` body `spin`), then compute for
//!                                SECS seconds by the tool's own clock
//!                                without waiting for it: `spun SECS`
//! ```

use std::process::ExitCode;
use wstd::http::error::ErrorCode;
use wstd::http::{Body, Client, Method, Request};
use wstd::io::AsyncWrite;

struct Args {
    method: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    url: String,
}

fn parse() -> Option<Args> {
    let mut a = Args { method: "GET".into(), headers: Vec::new(), body: None, url: String::new() };
    let mut args = std::env::args().skip(1);
    while let Some(w) = args.next() {
        match w.as_str() {
            "-X" => a.method = args.next()?,
            "-H" => {
                let h = args.next()?;
                let (name, value) = h.split_once(':')?;
                a.headers.push((name.to_owned(), value.trim_start().to_owned()));
            }
            "-d" => a.body = Some(args.next()?),
            _ if a.url.is_empty() => a.url = w,
            _ => return None,
        }
    }
    if a.url.is_empty() { None } else { Some(a) }
}

async fn fetch(a: Args) -> wstd::http::Result<()> {
    let method = Method::from_bytes(a.method.as_bytes())?;
    let mut req = Request::builder().method(method).uri(a.url.as_str());
    for (name, value) in &a.headers {
        req = req.header(name.as_str(), value.as_str());
    }
    let body = match a.body {
        Some(b) => Body::from(b),
        None => Body::empty(),
    };
    let resp = Client::new().send(req.body(body)?).await?;
    println!("status {}", resp.status().as_u16());
    if let Some(location) = resp.headers().get("location") {
        println!("location {}", String::from_utf8_lossy(location.as_bytes()));
    }
    let mut body = resp.into_body();
    let bytes = body.contents().await?.to_vec();
    let mut out = wstd::io::stdout();
    out.write_all(&bytes).await?;
    out.flush().await?;
    Ok(())
}

/// Starts a request with the raw bindings and returns its pending response
/// (never awaited), and the body when it is left open.
fn start(method: Method, url: &str, body: Option<&[u8]>, finish: bool) -> Result<Started, String> {
    use wasip2::http::types::{Fields, OutgoingBody, OutgoingRequest, Scheme};
    let uri: wstd::http::Uri = url.parse().map_err(|e| format!("bad url: {e}"))?;
    let req = OutgoingRequest::new(Fields::new());
    let method = match method.as_str() {
        "GET" => wasip2::http::types::Method::Get,
        "POST" => wasip2::http::types::Method::Post,
        other => wasip2::http::types::Method::Other(other.to_owned()),
    };
    req.set_method(&method).map_err(|()| "bad method")?;
    let scheme = if uri.scheme_str() == Some("https") { Scheme::Https } else { Scheme::Http };
    req.set_scheme(Some(&scheme)).map_err(|()| "bad scheme")?;
    req.set_authority(uri.authority().map(|a| a.as_str())).map_err(|()| "bad authority")?;
    req.set_path_with_query(uri.path_and_query().map(|p| p.as_str())).map_err(|()| "bad path")?;
    let out = match body {
        None => None,
        Some(bytes) => {
            let out = req.body().map_err(|()| "no body")?;
            let stream = out.write().map_err(|()| "no body stream")?;
            stream.blocking_write_and_flush(bytes).map_err(|e| format!("body write: {e:?}"))?;
            Some((out, stream))
        }
    };
    let pending = wasip2::http::outgoing_handler::handle(req, None).map_err(|e| format!("handle: {e:?}"))?;
    let open = match out {
        Some((out, stream)) if finish => {
            drop(stream);
            OutgoingBody::finish(out, None).map_err(|e| format!("finish: {e:?}"))?;
            None
        }
        other => other,
    };
    Ok(Started { _pending: pending, _open: open })
}

struct Started {
    _pending: wasip2::http::types::FutureIncomingResponse,
    _open: Option<(wasip2::http::types::OutgoingBody, wasip2::io::streams::OutputStream)>,
}

/// The modes that do not wait (see the module's documentation); `None`
/// when the arguments are not one of them.
fn fire_and_forget() -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, count, url) = match args.as_slice() {
        [m, n, url] if m == "--fire" || m == "--spin" => (m.as_str(), n.parse::<u64>().ok()?, url.as_str()),
        [m, url] if m == "--unfinished" => (m.as_str(), 1, url.as_str()),
        _ => return None,
    };
    let mut kept = Vec::new();
    let started = match mode {
        "--fire" => (1..=count).try_for_each(|n| {
            kept.push(start(Method::GET, &format!("{url}/{n}"), None, true)?);
            Ok::<(), String>(())
        }),
        "--unfinished" => start(Method::POST, url, Some(b"partial"), false).map(|s| kept.push(s)),
        _ => start(Method::POST, url, Some(b"spin"), true).map(|s| kept.push(s)),
    };
    if let Err(e) = started {
        println!("error: {e}");
        return Some(ExitCode::from(1));
    }
    if mode == "--spin" {
        let end = wasip2::clocks::monotonic_clock::now() + count * 1_000_000_000;
        let mut x = 1u64;
        while wasip2::clocks::monotonic_clock::now() < end {
            for i in 0..100_000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
            }
        }
        println!("spun {count} ({})", x % 2);
    } else {
        println!("fired {}", kept.len());
    }
    // Exit with the requests (and an unfinished body) still open.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::process::exit(0)
}

#[wstd::main]
async fn main() -> ExitCode {
    if let Some(code) = fire_and_forget() {
        return code;
    }
    let Some(args) = parse() else {
        eprintln!("usage: wasi-fetch [-X METHOD] [-H NAME:VALUE]... [-d BODY] URL");
        return ExitCode::from(2);
    };
    match fetch(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error: {e:#}");
            if let Some(code) = e.chain().find_map(|c| c.downcast_ref::<ErrorCode>()) {
                println!("error-code {code:?}");
            }
            ExitCode::from(1)
        }
    }
}
