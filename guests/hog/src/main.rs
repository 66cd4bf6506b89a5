//! `hog`: abuses resources so tests can check each limit stops it.
//!
//! ```text
//! hog spin | alloc | recurse | flood | panic | exit N | sleep SECS
//!     | calls N | bigpath MIB
//!     | bodies N MIB    N wasi:http requests sent, then up to MIB MiB
//!                       written into each body in turn
//!     | unsent N        N request bodies filled as far as the host buffers
//!                       them, never sent, all kept
//!     | pollables N     N pollables kept
//!     | fields N KIB    N header maps of one KIB KiB value each, kept
//!     | responses N AUTHORITY PATH
//!                       N wasi:http GETs of http://AUTHORITY/PATH, one
//!                       after the other, every response kept unread
//! ```
//!
//! The last four print one line saying how far they got.

use sandbox_tool::fs;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::Write;

#[allow(unconditional_recursion)] // the point: exhaust the stack
fn recurse(n: u64) -> u64 {
    let pad = black_box([n; 64]);
    black_box(recurse(pad[3] + 1)) + pad[7]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(0) {
        "spin" => {
            let mut x = 0u64;
            loop {
                x = black_box(x.wrapping_add(1));
            }
        }
        "alloc" => {
            let mut hold = Vec::new();
            loop {
                hold.push(vec![1u8; 1 << 20]);
                black_box(&hold);
            }
        }
        "recurse" => println!("{}", recurse(0)),
        "flood" => {
            let line = [b'y'; 4095];
            let mut out = std::io::stdout();
            loop {
                let _ = out.write_all(&line);
                let _ = out.write_all(b"\n");
            }
        }
        "panic" => panic!("the tool panicked on purpose"),
        "exit" => std::process::exit(arg(1).parse().unwrap_or(9)),
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(arg(1).parse().unwrap_or(3600)));
            println!("woke up");
        }
        "calls" => {
            let n: u64 = arg(1).parse().unwrap_or(10);
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            for _ in 0..n {
                let k = match fs::stat(".") {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => sandbox_tool::describe(&e).split(':').next().unwrap_or("").to_owned(),
                };
                *counts.entry(k).or_default() += 1;
            }
            println!("{counts:?}");
        }
        "bigpath" => {
            let mib: usize = arg(1).parse().unwrap_or(16);
            let path = "a/".repeat(mib << 19);
            match fs::read(&path) {
                Ok(_) => println!("bigpath: read succeeded"),
                Err(e) => println!("bigpath: {}", sandbox_tool::describe(&e).split(':').next().unwrap_or("")),
            }
        }
        "bodies" => bodies(arg(1).parse().unwrap_or(8), arg(2).parse().unwrap_or(64)),
        "unsent" => unsent(arg(1).parse().unwrap_or(100)),
        "pollables" => {
            let n: usize = arg(1).parse().unwrap_or(1000);
            let kept: Vec<_> =
                (0..n).map(|_| wasip2::clocks::monotonic_clock::subscribe_duration(3_600_000_000_000)).collect();
            println!("pollables: {} kept", kept.len());
        }
        "fields" => {
            let (n, kib): (usize, usize) = (arg(1).parse().unwrap_or(100), arg(2).parse().unwrap_or(64));
            let value = vec![b'v'; kib << 10];
            let mut kept = Vec::new();
            for _ in 0..n {
                let f = wasip2::http::types::Fields::new();
                if f.append("x-big", &value).is_err() {
                    break;
                }
                kept.push(f);
            }
            println!("fields: {} kept", kept.len());
        }
        "responses" => responses(arg(1).parse().unwrap_or(10), arg(2), arg(3)),
        other => {
            eprintln!("hog: unknown mode `{other}`");
            std::process::exit(2);
        }
    }
}

/// An outgoing request to a closed loopback port (no manifest grants it)
/// and its body's stream.
fn request() -> (wasip2::http::types::OutgoingRequest, wasip2::http::types::OutgoingBody) {
    use wasip2::http::types::{Fields, OutgoingRequest, Scheme};
    let req = OutgoingRequest::new(Fields::new());
    let _ = req.set_scheme(Some(&Scheme::Http));
    let _ = req.set_authority(Some("127.0.0.1:9"));
    let _ = req.set_path_with_query(Some("/upload"));
    let body = req.body().expect("a new request has a body");
    (req, body)
}

/// Sends `n` requests at once, then streams into their bodies in turn,
/// 4 KiB at a time (the most one blocking write takes), until each has
/// `mib` MiB or its stream fails.
fn bodies(n: usize, mib: usize) {
    let chunk = [b'b'; 4096];
    let mut open = Vec::new();
    for _ in 0..n {
        let (req, body) = request();
        let stream = body.write().expect("the body's stream");
        let pending = wasip2::http::outgoing_handler::handle(req, None);
        open.push((stream, body, pending, 0usize));
    }
    let (mut written, mut failed) = (0usize, 0usize);
    let goal = mib << 20;
    loop {
        let mut busy = false;
        for slot in open.iter_mut().filter(|s| s.3 < goal) {
            busy = true;
            match slot.0.blocking_write_and_flush(&chunk) {
                Ok(()) => {
                    slot.3 += chunk.len();
                    written += chunk.len();
                }
                Err(_) => {
                    slot.3 = usize::MAX;
                    failed += 1;
                }
            }
        }
        if !busy {
            break;
        }
    }
    println!("bodies: {written} bytes written, {failed} of {n} streams failed");
}

/// Fills `n` request bodies as far as the host buffers them, never sends
/// them, and keeps them all.
fn unsent(n: usize) {
    let mut kept = Vec::new();
    let mut buffered = 0usize;
    for _ in 0..n {
        let (req, body) = request();
        let stream = body.write().expect("the body's stream");
        while let Ok(room) = stream.check_write() {
            if room == 0 {
                break;
            }
            let room = room.min(1 << 20) as usize;
            if stream.write(&vec![b'u'; room]).is_err() {
                break;
            }
            buffered += room;
        }
        kept.push((stream, body, req));
    }
    println!("unsent: {} bodies, {buffered} bytes buffered", kept.len());
}

/// Sends `n` GETs one after the other and keeps every response unread;
/// prints how many it kept and the errors it got, counted.
fn responses(n: usize, authority: &str, path: &str) {
    use wasip2::http::types::{Fields, OutgoingRequest, Scheme};
    let mut kept = Vec::new();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..n {
        let req = OutgoingRequest::new(Fields::new());
        let _ = req.set_scheme(Some(&Scheme::Http));
        let _ = req.set_authority(Some(authority));
        let _ = req.set_path_with_query(Some(path));
        let outcome = match wasip2::http::outgoing_handler::handle(req, None) {
            Err(e) => Err(format!("{e:?}")),
            Ok(pending) => {
                pending.subscribe().block();
                match pending.get() {
                    Some(Ok(Ok(response))) => Ok(response),
                    Some(Ok(Err(e))) => Err(format!("{e:?}")),
                    _ => Err("no response".to_owned()),
                }
            }
        };
        match outcome {
            Ok(response) => kept.push(response),
            Err(e) => *errors.entry(e).or_default() += 1,
        }
    }
    println!("responses: {} kept, errors {errors:?}", kept.len());
}
