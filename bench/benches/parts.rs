//! The corridor's parts, in process (criterion): policy decisions at 10 to
//! 10,000 rules, audit appends buffered and durable, and the pieces an
//! audited call is made of (serialising an event, hashing it). The
//! whole-process comparisons are `sandbox-bench` (src/main.rs); both are
//! run by `scripts/bench` and summarised in BENCHMARKS.md.

#![allow(clippy::unwrap_used)] // a benchmark that cannot set up stops

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sandbox_audit::{AuditLog, Decision, Event, Kind};
use sandbox_policy::{FsOp, RelPath};
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Events recorded before the corridor writes them out anyway (its
/// `MAX_PENDING`): the buffered case writes in batches of this size.
const BATCH: usize = 512;

/// A manifest granting reads through `n` rules, one per directory, each a
/// different shape of glob, plus a few denies.
fn manifest(n: usize) -> String {
    let mut read = Vec::with_capacity(n);
    for i in 0..n {
        read.push(match i % 4 {
            0 => format!("\"src/mod{i}/**/*.rs\""),
            1 => format!("\"docs/part{i}/*.md\""),
            2 => format!("\"data/set{i}/**\""),
            _ => format!("\"files/file{i}.txt\""),
        });
    }
    format!(
        "version = 1\n[fs]\nread = [{}]\ndeny = [\"**/.env\", \"**/*.pem\", \"**/secrets/**\"]\n[audit]\npath = \"/nonexistent/audit.jsonl\"\n",
        read.join(", ")
    )
}

fn decisions(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    for n in [10usize, 100, 1_000, 10_000] {
        let policy = sandbox_policy::parse("bench.toml", &manifest(n), std::path::Path::new("/")).unwrap();
        // Granted by the last rule of its shape, and refused by none.
        let last = (0..n).rev().find(|i| i % 4 == 2).unwrap();
        let granted = RelPath::normalise(&format!("data/set{last}/deep/er/file.bin")).unwrap();
        let refused = RelPath::normalise("elsewhere/x/y.txt").unwrap();
        assert!(policy.fs.decide(FsOp::Read, &granted).permits());
        assert!(!policy.fs.decide(FsOp::Read, &refused).permits());
        g.bench_with_input(BenchmarkId::new("granted", n), &granted, |b, p| {
            b.iter(|| black_box(policy.fs.decide(FsOp::Read, black_box(p)).permits()))
        });
        g.bench_with_input(BenchmarkId::new("refused", n), &refused, |b, p| {
            b.iter(|| black_box(policy.fs.decide(FsOp::Read, black_box(p)).permits()))
        });
        // Normalising the path the tool asked for is part of every decision.
        g.bench_with_input(BenchmarkId::new("normalise-and-decide", n), &granted, |b, p| {
            let asked = format!("./{}", p.as_str());
            b.iter(|| {
                let p = RelPath::normalise(black_box(&asked)).unwrap();
                black_box(policy.fs.decide(FsOp::Read, &p).permits())
            })
        });
    }
    g.finish();
}

/// A `call` event as the corridor records it for a small read.
fn call_event() -> Event<'static> {
    Event {
        kind: Kind::Call,
        task: "01a20966-2196-72c9-bec8-1cabdd9c609b",
        user: "alice",
        agent: "bench-read",
        component: "sha256:e202b7f527706eaac7b185d10b9f71c6b7b61c9943659ba03026cb56ba9a9e68",
        policy: "sha256:16c4208985256198a41e400030fa6ee8d3e934ae4db06ae1538617d0c6bd8cab",
        capability: Some("fs.read"),
        target: Some("src/small.txt"),
        decision: Some(Decision::Allow),
        rule: Some("fs.read[0]"),
        ..Event::default()
    }
}

/// Records `event` `iters` times, calling `flush` after each [`BATCH`] and
/// at the end; the time it all took.
fn batches(log: &mut AuditLog, event: &Event<'_>, iters: u64, mut flush: impl FnMut(&mut AuditLog)) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        log.record(black_box(event));
        if (i + 1).is_multiple_of(BATCH as u64) {
            flush(log);
        }
    }
    flush(log);
    start.elapsed()
}

fn audit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let event = call_event();
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(1));
    // Recording alone: stamping and serialising into memory (and freeing
    // each batch of 512 again).
    g.bench_function("record", |b| {
        let mut log = AuditLog::open(&dir.path().join("record.jsonl"), Duration::from_secs(1)).unwrap();
        b.iter_custom(|iters| {
            batches(&mut log, &event, iters, |log| {
                log.discard_pending();
            })
        })
    });
    // Buffered: recorded, chained (hashed) and written in batches, no fsync.
    g.bench_function("append-buffered", |b| {
        let mut log = AuditLog::open(&dir.path().join("buffered.jsonl"), Duration::from_secs(1)).unwrap();
        b.iter_custom(|iters| batches(&mut log, &event, iters, |log| log.write().unwrap()))
    });
    // Durable: each event written and fsynced before the next.
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("append-durable", |b| {
        let mut log = AuditLog::open(&dir.path().join("durable.jsonl"), Duration::from_secs(1)).unwrap();
        b.iter(|| {
            log.record(black_box(&event));
            log.sync().unwrap();
        })
    });
    g.finish();
}

fn hashing(c: &mut Criterion) {
    let mut g = c.benchmark_group("sha256");
    for size in [100usize, 1024] {
        let data = vec![b'x'; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, d| {
            b.iter(|| black_box(Sha256::digest(black_box(d))))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("event");
    let event = call_event();
    g.bench_function("serialise", |b| b.iter(|| black_box(serde_json::to_vec(black_box(&event)).unwrap())));
    // What every run pays before the tool starts: a one-rule manifest
    // (its built-in tables, globs and redaction detectors).
    g.bench_function("policy-parse-minimal", |b| {
        let text = "version = 1\n[fs]\nread = [\"small.txt\"]\n";
        b.iter(|| black_box(sandbox_policy::parse("bench.toml", text, std::path::Path::new("/")).unwrap()))
    });
    g.bench_function("policy-parse-1000", |b| {
        let text = manifest(1_000);
        b.iter_batched(
            || text.clone(),
            |t| black_box(sandbox_policy::parse("bench.toml", &t, std::path::Path::new("/")).unwrap()),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = parts;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = decisions, audit, hashing
}
criterion_main!(parts);
