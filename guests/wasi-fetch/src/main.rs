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

#[wstd::main]
async fn main() -> ExitCode {
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
