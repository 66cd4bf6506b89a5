//! `fetch`: GETs a URL and prints the JSON value at a field of the answer.
//!
//! ```text
//! fetch URL [FIELD]
//! ```
//!
//! Sends `GET URL` with `Accept: application/json` through
//! `sandbox:host/http.send`, so it reaches only what its manifest allows
//! (the host resolves, checks and connects; redirects are not followed).
//! Without FIELD it prints the body as it came. FIELD is a dotted path into
//! the JSON body, `data.items.0.name`, where a number indexes an array: a
//! string is printed as it is, anything else as JSON.
//!
//! Exit status: 0 when the value was printed; 1 when the request was
//! refused or failed (the error on stderr), the status was not 2xx (`status
//! N` on stdout, and the `Location` of a redirect), the body was not JSON or
//! the field was missing; 2 on bad usage.

use sandbox_tool::{describe, http, task};
use serde_json::Value;
use std::io::Write;
use std::process::ExitCode;

/// The value at a dotted path: `a.b.0.c`.
fn field<'a>(mut value: &'a Value, path: &str) -> Option<&'a Value> {
    for part in path.split('.') {
        value = match value {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, path) = match args.as_slice() {
        [url] => (url, None),
        [url, path] if !path.is_empty() => (url, Some(path)),
        _ => return usage(),
    };
    task::set_intent(&format!("fetch {url}"));
    let req = http::Request {
        method: "GET".into(),
        url: url.clone(),
        headers: vec![("Accept".into(), "application/json".into())],
        body: None,
        timeout_ms: None,
    };
    let resp = match http::send(&req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fetch: {}", describe(&e));
            return ExitCode::from(1);
        }
    };
    if !(200..300).contains(&resp.status) {
        println!("status {}", resp.status);
        for (name, value) in &resp.headers {
            if name.eq_ignore_ascii_case("location") {
                println!("location {value}");
            }
        }
        return ExitCode::from(1);
    }
    let Some(path) = path else {
        let mut out = std::io::stdout();
        return match out.write_all(&resp.body).and_then(|()| out.flush()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fetch: cannot write the body: {e}");
                ExitCode::from(1)
            }
        };
    };
    let json: Value = match serde_json::from_slice(&resp.body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("fetch: the body is not JSON: {e}");
            return ExitCode::from(1);
        }
    };
    match field(&json, path) {
        Some(Value::String(s)) => println!("{s}"),
        Some(v) => println!("{v}"),
        None => {
            eprintln!("fetch: no field `{path}` in the body");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("usage: fetch URL [FIELD]   (FIELD: a dotted path such as data.items.0.name)");
    ExitCode::from(2)
}
