//! `sandbox-bench`: the whole-process comparisons and the memory
//! measurement of BENCHMARKS.md, side by side in one run, and the report
//! that puts them together with the criterion results (`benches/parts.rs`).
//!
//! Run by `scripts/bench`, which builds what it needs first. Each
//! comparison runs its cases interleaved, round by round, so that a change
//! in the machine's load hits all of them alike; figures are medians.
//! Per-call costs are differences: a run making N calls minus the same run
//! making none, divided by N, so process start and compilation cancel out.

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod memory;

#[derive(Debug, Parser)]
#[command(about = "Whole-process comparisons, memory per instance, and the benchmark report")]
struct Args {
    /// The `sandbox` binary (a release build).
    #[arg(long)]
    sandbox: PathBuf,
    /// The `wasmtime` CLI of the same wasmtime version.
    #[arg(long)]
    wasmtime: PathBuf,
    /// Where the guests were built (guests/target/wasm32-wasip2/release).
    #[arg(long)]
    guests: PathBuf,
    /// criterion's output directory (target/criterion), for the report.
    #[arg(long)]
    criterion: PathBuf,
    /// Rounds of each comparison.
    #[arg(long, default_value_t = 15)]
    rounds: usize,
    /// Reads (and no-op calls) per run in the per-call comparisons.
    #[arg(long, default_value_t = 20_000)]
    calls: u64,
    /// Size of the bulk-read file in MiB.
    #[arg(long, default_value_t = 100)]
    bulk_mib: usize,
    /// Instances kept alive at once for the memory measurement.
    #[arg(long, default_value_t = 400)]
    instances: usize,
    /// Writes the report here as well as to stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(skip)]
    load_at_start: String,
}

const SMALL: &[u8] =
    b"A small file, as a tool reads a config or a source file: one hundred bytes of text, give or take.\n";

fn main() -> Result<()> {
    let a = Args::parse();
    let load_at_start =
        std::fs::read_to_string("/proc/loadavg")?.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    let a = Args { load_at_start, ..a };
    let dir = tempfile::tempdir()?;
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws)?;
    std::fs::write(ws.join("small.txt"), SMALL)?;
    let bulk: Vec<u8> = (0..a.bulk_mib << 20).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(ws.join("big.bin"), &bulk)?;
    drop(bulk);
    let manifest = dir.path().join("bench.toml");
    std::fs::write(
        &manifest,
        format!(
            "version = 1\nname = \"bench\"\n[workspace]\nroot = \"ws\"\n[fs]\nread = [\"small.txt\", \"big.bin\"]\n\
             [audit]\npath = \"audit.jsonl\"\n[limits]\ncalls = {}\noutput = \"{} MiB\"\nmemory = \"{} MiB\"\ntime = \"10m\"\n",
            a.calls * 2,
            a.bulk_mib + 16,
            a.bulk_mib * 3 + 64,
        ),
    )?;
    let audit = dir.path().join("audit.jsonl");
    let plain = a.guests.join("bench-plain.wasm");
    let read = a.guests.join("bench-read.wasm");
    for g in [&plain, &read] {
        ensure!(g.is_file(), "`{}` is missing: run scripts/build-guests", g.display());
    }
    let warm = dir.path().join("cache-warm");
    let cold = dir.path().join("cache-cold");
    let wasmtime_cache = dir.path().join("wasmtime-cache.toml");
    std::fs::write(
        &wasmtime_cache,
        format!("[cache]\ndirectory = \"{}\"\n", dir.path().join("wasmtime-cache").display()),
    )?;
    let precompiled = dir.path().join("bench-plain.cwasm");
    let ws_map = format!("{}::/", ws.display());

    let sandbox = |cache: &Path, guest: &Path, args: &[&str]| {
        let mut c = Command::new(&a.sandbox);
        c.env("SANDBOX_CACHE_DIR", cache).env_remove("SANDBOX_LOG").arg("run").arg(guest);
        c.arg("--manifest").arg(&manifest).arg("--user").arg("bench").arg("--").args(args);
        c
    };
    let wasmtime = |opts: &[&str], guest: &Path, args: &[&str]| {
        let mut c = Command::new(&a.wasmtime);
        c.arg("run").arg("-C").arg(format!("cache-config={}", wasmtime_cache.display()));
        c.args(opts).arg(guest).args(args);
        c
    };
    // Warm both caches (and check every case runs) before measuring.
    run(Command::new(&a.sandbox).env("SANDBOX_CACHE_DIR", &warm).arg("compile").arg(&plain).arg(&read))?;
    run(Command::new(&a.wasmtime).arg("compile").arg(&plain).arg("-o").arg(&precompiled))?;

    let calls = a.calls.to_string();
    let n = calls.as_str();
    let mut cases: Vec<Case> = vec![
        Case::new("sandbox run, cold (empty cache)", sandbox(&cold, &plain, &[])).fresh_dir(&cold),
        Case::new("sandbox run, warm cache", sandbox(&warm, &plain, &[])),
        Case::new("wasmtime run (its own cache, warm)", wasmtime(&[], &plain, &[])),
        Case::new("wasmtime run -C cache=n", wasmtime(&["-C", "cache=n"], &plain, &[])),
        Case::new("wasmtime run --allow-precompiled", wasmtime(&["--allow-precompiled"], &precompiled, &[])),
        Case::new("sandbox: 0 reads", sandbox(&warm, &read, &["read", "0", "small.txt"])).fresh_file(&audit),
        Case::new("sandbox: N fs.read", sandbox(&warm, &read, &["read", n, "small.txt"])).fresh_file(&audit),
        Case::new("sandbox: N task.id", sandbox(&warm, &read, &["id", n])).fresh_file(&audit),
        Case::new("sandbox: 1 bulk fs.read", sandbox(&warm, &read, &["read", "1", "big.bin"])).fresh_file(&audit),
        Case::new("wasmtime: 0 reads", wasmtime(&["--dir", &ws_map], &plain, &["read", "0", "/small.txt"])),
        Case::new("wasmtime: N std::fs::read", wasmtime(&["--dir", &ws_map], &plain, &["read", n, "/small.txt"])),
        Case::new("wasmtime: 1 bulk std::fs::read", wasmtime(&["--dir", &ws_map], &plain, &["read", "1", "/big.bin"])),
    ];
    let mut host_read = Vec::new();
    for case in &mut cases {
        case.once()?; // warm-up, and a check that it works
    }
    for round in 0..a.rounds {
        eprint!("\rround {}/{}", round + 1, a.rounds);
        for case in &mut cases {
            case.sample()?;
        }
        let start = Instant::now();
        let data = std::fs::read(ws.join("big.bin"))?;
        host_read.push(start.elapsed());
        std::hint::black_box(data);
    }
    eprintln!();
    let m: BTreeMap<&str, Duration> = cases.iter().map(|c| (c.name, median(&c.samples))).collect();
    let host_read = median(&host_read);

    eprintln!("memory: {} instances, on-demand and pooling allocators", a.instances);
    let mem_on_demand = memory::per_instance(&read, &ws, &manifest, a.instances, false)?;
    let mem_pooling = memory::per_instance(&read, &ws, &manifest, a.instances, true)?;

    let crit = Criterion(a.criterion.clone());
    let report = report(&a, &m, host_read, [mem_on_demand, mem_pooling], &crit)?;
    print!("{report}");
    if let Some(out) = &a.out {
        std::fs::write(out, &report).with_context(|| format!("cannot write `{}`", out.display()))?;
    }
    Ok(())
}

/// One command measured over the rounds.
struct Case {
    name: &'static str,
    cmd: Command,
    /// Removed (recursively) before each run: a cold cache.
    fresh_dir: Option<PathBuf>,
    /// Removed before each run: an audit log that would otherwise grow.
    fresh_file: Option<PathBuf>,
    samples: Vec<Duration>,
}

impl Case {
    fn new(name: &'static str, cmd: Command) -> Case {
        Case { name, cmd, fresh_dir: None, fresh_file: None, samples: Vec::new() }
    }

    fn fresh_dir(mut self, dir: &Path) -> Case {
        self.fresh_dir = Some(dir.to_owned());
        self
    }

    fn fresh_file(mut self, file: &Path) -> Case {
        self.fresh_file = Some(file.to_owned());
        self
    }

    fn once(&mut self) -> Result<Duration> {
        if let Some(d) = &self.fresh_dir {
            let _ = std::fs::remove_dir_all(d);
        }
        if let Some(f) = &self.fresh_file {
            let _ = std::fs::remove_file(f);
        }
        let start = Instant::now();
        run(&mut self.cmd).with_context(|| self.name)?;
        Ok(start.elapsed())
    }

    fn sample(&mut self) -> Result<()> {
        let t = self.once()?;
        self.samples.push(t);
        Ok(())
    }
}

/// Runs a command to success, its output discarded.
fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s.get(s.len() / 2).copied().unwrap_or_default()
}

/// criterion's results: the mean of a benchmark, in nanoseconds.
struct Criterion(PathBuf);

impl Criterion {
    fn ns(&self, id: &str) -> Result<f64> {
        let file = self.0.join(id).join("new/estimates.json");
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("`{}`: run `cargo bench -p sandbox-bench` first", file.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        v["mean"]["point_estimate"].as_f64().with_context(|| format!("`{}` has no mean", file.display()))
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

fn report(
    a: &Args,
    m: &BTreeMap<&str, Duration>,
    host_read: Duration,
    mem: [memory::Measured; 2],
    crit: &Criterion,
) -> Result<String> {
    let mut r = String::new();
    let sh = |cmd: &str| {
        Command::new("sh").arg("-c").arg(cmd).output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    writeln!(r, "## Run of {}\n", sh("date -u '+%Y-%m-%d %H:%M UTC'")?)?;
    writeln!(r, "- machine: {} cores, {}", sh("nproc")?, sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")?)?;
    writeln!(r, "- kernel: {}", sh("uname -sr")?)?;
    // After criterion's part of the run (scripts/bench prints the load
    // before it starts).
    writeln!(r, "- load average as the whole-process part began: {}", a.load_at_start)?;
    writeln!(r, "- wasmtime CLI: {}", sh(&format!("'{}' --version", a.wasmtime.display()))?)?;
    writeln!(r, "- rounds: {}, calls per run: {}, bulk file: {} MiB\n", a.rounds, a.calls, a.bulk_mib)?;

    writeln!(r, "### Whole process (median wall time of {} rounds)\n", a.rounds)?;
    writeln!(r, "| case | ms |\n|---|---:|")?;
    for (name, d) in m {
        writeln!(r, "| {name} | {:.2} |", ms(*d))?;
    }

    let per = |with: &str, without: &str| us(m[with].saturating_sub(m[without])) / a.calls as f64;
    let mediated = per("sandbox: N fs.read", "sandbox: 0 reads");
    let noop = per("sandbox: N task.id", "sandbox: 0 reads");
    let plain = per("wasmtime: N std::fs::read", "wasmtime: 0 reads");
    let warm = ms(m["sandbox run, warm cache"]);
    let wt = ms(m["wasmtime run (its own cache, warm)"]);
    let wt_pre = ms(m["wasmtime run --allow-precompiled"]);
    let bulk_mib = a.bulk_mib as f64;
    let mbps = |d: Duration| bulk_mib / d.as_secs_f64();
    let bulk_sandbox = m["sandbox: 1 bulk fs.read"].saturating_sub(m["sandbox: 0 reads"]);
    let bulk_wasi = m["wasmtime: 1 bulk std::fs::read"].saturating_sub(m["wasmtime: 0 reads"]);
    writeln!(r, "\n### Targets (ratios from this run)\n")?;
    writeln!(r, "| target | measured | ratio | goal | verdict |\n|---|---|---:|---|---|")?;
    let small = mediated / plain;
    writeln!(
        r,
        "| mediated small read vs wasi:filesystem | {mediated:.2} µs vs {plain:.2} µs per read (no-op host call {noop:.3} µs) | {small:.2} | <= 1.0 | {} |",
        verdict(small <= 1.0)
    )?;
    let wr = warm / wt;
    writeln!(
        r,
        "| `sandbox run` warm vs `wasmtime run` | {warm:.2} ms vs {wt:.2} ms (precompiled: {wt_pre:.2} ms) | {wr:.2} | <= 1.2 | {} |",
        verdict(wr <= 1.2)
    )?;
    let br = mbps(bulk_sandbox) / mbps(host_read);
    writeln!(
        r,
        "| {bulk_mib} MiB fs.read vs the host's read | {:.0} MiB/s vs {:.0} MiB/s (wasi:filesystem: {:.0} MiB/s) | {br:.2} | >= 0.5 | {} |",
        mbps(bulk_sandbox),
        mbps(host_read),
        mbps(bulk_wasi),
        verdict(br >= 0.5)
    )?;
    for (what, mm) in [("on-demand allocator", &mem[0]), ("pooling allocator", &mem[1])] {
        let kib = mm.per_instance_bytes / 1024.0;
        writeln!(
            r,
            "| host memory per idle instance ({what}) | {kib:.0} KiB ({} instances; each guest declares {:.0} KiB of linear memory) | | < 1024 KiB | {} |",
            mm.instances,
            mm.guest_memory_bytes / 1024.0,
            verdict(kib < 1024.0)
        )?;
    }
    if let Err(e) = criterion_rows(&mut r, crit) {
        writeln!(r, "\ncriterion results missing: {e:#}")?;
    }
    Ok(r)
}

/// The targets measured by criterion, and its table of the parts.
fn criterion_rows(r: &mut String, crit: &Criterion) -> Result<()> {
    // Measured first, so that a missing result leaves no half a table.
    let parts = [
        "sha256/100",
        "sha256/1024",
        "event/serialise",
        "audit/record",
        "audit/append-buffered",
        "audit/append-durable",
        "decide/granted/10",
        "decide/granted/100",
        "decide/granted/1000",
        "decide/granted/10000",
        "decide/refused/10",
        "decide/refused/10000",
        "decide/normalise-and-decide/10",
        "decide/normalise-and-decide/10000",
        "event/policy-parse-minimal",
        "event/policy-parse-1000",
    ]
    .map(|id| crit.ns(id).map(|ns| (id, ns)))
    .into_iter()
    .collect::<Result<Vec<_>>>()?;
    let buffered = crit.ns("audit/append-buffered")?;
    let durable = crit.ns("audit/append-durable")?;
    let d10 = crit.ns("decide/granted/10")?;
    let d10k = crit.ns("decide/granted/10000")?;
    let r10 = crit.ns("decide/refused/10")?;
    let r10k = crit.ns("decide/refused/10000")?;
    let n10 = crit.ns("decide/normalise-and-decide/10")?;
    let n10k = crit.ns("decide/normalise-and-decide/10000")?;
    let eps = 1e9 / buffered;
    writeln!(
        r,
        "| buffered audit appends | {eps:.0} events/s (durable: {:.0} events/s) | | >= 500,000/s | {} |",
        1e9 / durable,
        verdict(eps >= 500_000.0)
    )?;
    let dr = d10k / d10;
    writeln!(
        r,
        "| decision at 10,000 rules vs 10 | granted {d10:.0} ns → {d10k:.0} ns; refused {r10:.0} → {r10k:.0} ns; with normalising {n10:.0} → {n10k:.0} ns | {dr:.2} (refused {:.2}) | <= 2 | {} |",
        r10k / r10,
        verdict(dr <= 2.0 && r10k / r10 <= 2.0)
    )?;
    writeln!(r, "\n### Parts (criterion means)\n")?;
    writeln!(r, "| part | ns |\n|---|---:|")?;
    for (id, ns) in parts {
        writeln!(r, "| {id} | {ns:.0} |")?;
    }
    Ok(())
}
