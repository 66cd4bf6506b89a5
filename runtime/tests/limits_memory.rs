//! THREATS.md, "every byte the host holds on a tool's behalf counts against
//! its limits" and "unbounded host work driven by tool input runs against
//! the clock with a deadline". Each test runs the real binary on a real
//! component (the `hog` guest, or one built here from core wasm) and
//! measures the peak resident memory of that one `sandbox` process
//! (`wait4`), against a run of the same component that does nothing.
//!
//! Peak memory bounds are generous (the run's `limits.memory`, the host's
//! body budget, the runtime's headroom and [`SLACK`] more); the attacks
//! they guard against take the old runtime hundreds of MiB past them.

mod common;
use common::*;

use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
/// `limits.memory` and `limits.output` of these runs.
const LIMIT: u64 = 16 * MIB;
/// `HOST_HEADROOM` in run.rs: what the process may grow by beyond its
/// budgets before it is stopped.
const HEADROOM: u64 = 64 * MIB;
/// Growth between two looks of the ticker, and measuring noise.
const SLACK: u64 = 128 * MIB;

const MANIFEST: &str = r#"
[fs]
read = ["src/**"]

[limits]
time = "60s"
memory = "16 MiB"
output = "16 MiB"
calls = 1000
"#;

/// A run and the peak resident memory of its process, in bytes.
struct Measured {
    run: Run,
    peak: u64,
}

/// Runs `cmd` to its end (at most five minutes, then it is killed and the
/// test fails) and measures its peak resident memory: `wait4` gives the
/// `ru_maxrss` of that one child, where `/proc` loses it at the exit.
#[allow(clippy::unwrap_used)]
#[allow(unsafe_code)] // audited: two FFI calls on local values, see SAFETY
#[allow(clippy::zombie_processes)] // reaped by `wait4`, which `Child` cannot see
fn measure(mut cmd: Command) -> Measured {
    let mut child = cmd.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    // Not a timing assertion: a bound on a hang.
    let start = Instant::now();
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our child, not yet waited for; both pointers are
        // to live locals.
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(done >= 0, "wait4 failed");
        if done == pid {
            break;
        }
        if start.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("the run did not end within five minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    let run = Run { code, stdout: out.join().unwrap(), stderr: err.join().unwrap() };
    Measured { run, peak: usage.ru_maxrss as u64 * 1024 }
}

fn fixture() -> Fixture {
    let f = Fixture::new(MANIFEST);
    f.file("src/a.txt", "a\n");
    f
}

/// `sandbox run COMPONENT` with the fixture's manifest.
fn command(f: &Fixture, component: &Path, args: &[&str]) -> Command {
    let mut c = sandbox();
    c.arg("run").arg(component).arg("--manifest").arg(f.manifest()).arg("--user").arg("alice");
    c.arg("--").args(args).stdin(std::process::Stdio::null());
    c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    c
}

/// The peak of a run of `component` that does nothing much (`idle`), so
/// that what the runtime itself needs is not counted against the attack.
fn baseline(f: &Fixture, component: &Path, idle: &[&str]) -> u64 {
    // Twice: the first may compile the component (the cache keeps it).
    let _ = measure(command(f, component, idle));
    let m = measure(command(f, component, idle));
    assert_eq!(m.run.code, 0, "{:?}", m.run);
    m.peak
}

/// Checks that the attack's peak stays within the baseline plus the run's
/// memory limit, the host's body budget (the larger of `limits.memory`
/// and `limits.output`), the headroom and the slack.
fn assert_bounded(what: &str, base: u64, m: &Measured) {
    let bound = base + LIMIT + LIMIT + HEADROOM + SLACK;
    eprintln!("{what}: peak {} MiB, at rest {} MiB, bound {} MiB", m.peak / MIB, base / MIB, bound / MIB);
    assert!(
        m.peak <= bound,
        "{what}: the sandbox process peaked at {} MiB, more than {} MiB ({} MiB at rest)\n{:?}",
        m.peak / MIB,
        bound / MIB,
        base / MIB,
        m.run
    );
}

/// The last event, `task-end`, after checking the log verifies.
#[allow(clippy::unwrap_used)]
fn task_end(f: &Fixture) -> Value {
    assert_eq!(f.verify().code, 0, "{:?}", f.verify());
    let end = f.events().last().unwrap().clone();
    assert_eq!(end["kind"], "task-end", "{end}");
    end
}

/// A command component whose `run` grows each of `tables` function tables
/// by `elems` elements (each a reference to `run` itself, so every element
/// is written) and traps when a growth is refused.
fn table_hog(tables: u32, elems: u32) -> Vec<u8> {
    use std::borrow::Cow;
    use wasm_encoder::*;

    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]);
    module.section(&types);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    module.section(&funcs);
    let mut table_section = TableSection::new();
    for _ in 0..tables {
        table_section.table(TableType {
            element_type: RefType::FUNCREF,
            table64: false,
            minimum: 0,
            maximum: None,
            shared: false,
        });
    }
    module.section(&table_section);
    let mut exports = ExportSection::new();
    exports.export("run", ExportKind::Func, 0);
    module.section(&exports);
    let mut elements = ElementSection::new();
    elements.declared(Elements::Functions(Cow::Borrowed(&[0])));
    module.section(&elements);
    let mut body = Function::new([]);
    for t in 0..tables {
        body.instructions()
            .ref_func(0)
            .i32_const(elems as i32)
            .table_grow(t)
            .i32_const(-1)
            .i32_eq()
            .if_(BlockType::Empty)
            .unreachable()
            .end();
    }
    body.instructions().i32_const(0).end();
    let mut code = CodeSection::new();
    code.function(&body);
    module.section(&code);

    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    let mut instances = InstanceSection::new();
    instances.instantiate(0, Vec::<(&str, ModuleArg)>::new());
    component.section(&instances);
    let mut aliases = ComponentAliasSection::new();
    aliases.alias(Alias::CoreInstanceExport { instance: 0, kind: ExportKind::Func, name: "run" });
    component.section(&aliases);
    let mut ctypes = ComponentTypeSection::new();
    ctypes.defined_type().result(None, None);
    ctypes.function().params(Vec::<(&str, ComponentValType)>::new()).result(Some(ComponentValType::Type(0)));
    component.section(&ctypes);
    let mut canon = CanonicalFunctionSection::new();
    canon.lift(0, 1, Vec::<CanonicalOption>::new());
    component.section(&canon);
    let mut run = ComponentInstanceSection::new();
    run.export_items([("run", ComponentExportKind::Func, 0)]);
    component.section(&run);
    let mut export = ComponentExportSection::new();
    export.export("wasi:cli/run@0.2.0", ComponentExportKind::Instance, 0, None);
    component.section(&export);
    component.finish()
}

#[test]
fn tables_count_against_the_memory_limit_in_total() {
    let f = fixture();
    let idle = f.path("tables-idle.wasm");
    std::fs::write(&idle, table_hog(64, 0)).unwrap();
    let hog = f.path("tables.wasm");
    // 64 tables of 2^20 elements: 512 MiB of function references, each
    // table within what a per-table cap allowed.
    std::fs::write(&hog, table_hog(64, 1 << 20)).unwrap();
    let base = baseline(&f, &idle, &[]);
    let m = measure(command(&f, &hog, &[]));
    assert_eq!(m.run.code, 125, "{:?}", m.run);
    let end = task_end(&f);
    assert_eq!(end["status"], "memory-limit", "{end}");
    assert_eq!(end["reason"], format!("the tool needed more than its memory limit of {LIMIT} bytes"));
    assert_bounded("tables", base, &m);
}

#[test]
fn request_bodies_being_sent_share_one_budget() {
    let f = fixture();
    let base = baseline(&f, &guest("hog"), &["exit", "0"]);
    // No http grant at all: 32 requests at once, then 24 MiB streamed into
    // each in turn (each one alone stays within limits.output up to 16 MiB).
    let m = measure(f.command("hog", &[], &["bodies", "32", "24"]));
    assert_eq!(m.run.code, 0, "{:?}", m.run);
    assert!(m.run.stdout.contains("32 of 32 streams failed"), "{:?}", m.run);
    assert_bounded("request bodies", base, &m);
    assert_eq!(task_end(&f)["status"], "exit");
}

#[test]
fn responses_the_tool_keeps_share_the_body_budget() {
    let s = http_server::HttpServer::start();
    let f = Fixture::new(&format!(
        "[http]\nallow_private = [\"127.0.0.1/32\"]\n\n[[http.allow]]\nurl = \"{}\"\n{MANIFEST}",
        s.url("/api/**")
    ));
    let authority = s.url("").trim_start_matches("http://").to_owned();
    // 24 responses of 1 MiB, each within limits.output, all kept unread:
    // the budget of 16 MiB holds fewer.
    let r = f.run("hog", &["responses", "24", &authority, "/api/huge?bytes=1048576"]);
    assert_eq!(r.code, 0, "{r:?}");
    let line = r.stdout.lines().find(|l| l.starts_with("responses: ")).unwrap_or_else(|| panic!("{r:?}"));
    let kept: u64 = line["responses: ".len()..].split(' ').next().unwrap().parse().unwrap();
    assert!((8..16).contains(&kept), "{line}");
    assert!(line.contains("limit-exceeded: holding the response would take the bodies"), "{line}");
    // Each refusal is on record like any other.
    let results: Vec<Value> = f.events().into_iter().filter(|e| e["kind"] == "result").collect();
    assert_eq!(results.iter().filter(|e| e["outcome"] == "limit-exceeded").count() as u64, 24 - kept, "{results:#?}");
}

#[test]
fn bodies_written_but_never_sent_are_buffered_little() {
    let f = fixture();
    let base = baseline(&f, &guest("hog"), &["exit", "0"]);
    let m = measure(f.command("hog", &[], &["unsent", "256"]));
    assert_eq!(m.run.code, 0, "{:?}", m.run);
    assert!(m.run.stdout.contains("unsent: 256 bodies"), "{:?}", m.run);
    assert_bounded("unsent bodies", base, &m);
}

#[test]
fn host_resources_are_capped_and_the_run_ends_with_memory_limit() {
    let f = fixture();
    let r = f.run("hog", &["pollables", "20000"]);
    assert_eq!(r.code, 125, "{r:?}");
    assert!(!r.stdout.contains("kept"), "{r:?}");
    let end = task_end(&f);
    assert_eq!(end["status"], "memory-limit", "{end}");
    assert_eq!(end["reason"], "the tool held more than 10000 host resources at once");
    let lines: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("sandbox: ")).collect();
    assert_eq!(lines, [format!("sandbox: run stopped: {}", end["reason"].as_str().unwrap())], "{}", r.stderr);
}

#[test]
fn host_memory_no_budget_names_is_bounded_by_the_process_growth() {
    let f = fixture();
    let base = baseline(&f, &guest("hog"), &["exit", "0"]);
    // 5000 header maps of 120 KiB each (within wasi:http's 128 KiB per
    // map, and within the resource cap): 600 MiB held by the host.
    let m = measure(f.command("hog", &[], &["fields", "5000", "120"]));
    assert_eq!(m.run.code, 125, "{:?}", m.run);
    let end = task_end(&f);
    assert_eq!(end["status"], "memory-limit", "{end}");
    let reason = end["reason"].as_str().unwrap();
    assert!(reason.starts_with("the host memory held for the tool grew past its bound"), "{reason}");
    assert_bounded("header maps", base, &m);
}

#[test]
fn a_rewritten_file_too_costly_to_diff_is_shown_by_sizes_and_hashes() {
    let f = Fixture::new(
        r#"
[fs]
read = ["src/**"]
write = ["src/**"]

[approval]
writes = "end-of-task"

[limits]
time = "5s"
"#,
    );
    // 2 x 256 Ki short lines, no line in common: a line diff of these
    // takes hours.
    f.file("src/a.txt", &"a\n".repeat(1 << 18));
    f.file("src/b.txt", &"b\n".repeat(1 << 18));
    let m = measure(f.command("probe", &["--approve", "deny"], &["rename", "src/b.txt", "src/a.txt"]));
    assert_eq!(m.run.code, 3, "{:?}", m.run);
    let ev = f.events();
    let call = ev
        .iter()
        .find(|e| e["kind"] == "call" && e["capability"] == "fs.changes")
        .unwrap_or_else(|| panic!("no fs.changes call in {ev:#?}"));
    // The diff put to the approver: a few lines, not the 1 MiB line diff.
    let size = call["size"].as_u64().unwrap();
    assert!(size < 4096, "the diff shown was {size} bytes: {call}");
    let end = task_end(&f);
    assert_eq!(end["status"], "changes-rejected", "{end}");
}
