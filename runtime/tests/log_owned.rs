//! Everything the audit log owns is out of the tool's reach whatever the
//! grants say (docs/threats/audit-owned-files.md): with the log inside the
//! workspace and a broad grant, the tool can neither read, list, stat,
//! change, remove nor rename its rotated segments, prune records,
//! checkpoints, cursors or staging journals, nor plant a file under a name
//! the log would adopt later; `policy check` warns about the layout. And a
//! directory the host keeps for itself (a compile cache, a staging
//! directory) is out of reach of every run's tool, whichever run made it.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::path::Path;

/// Everything granted, auto-approved; the log in `ws/logs/`, rotating
/// every KiB.
const BROAD_LOG_INSIDE: &str = r#"
[fs]
read = ["**"]
write = ["**"]
auto_approve = ["**"]
allow_broad = ["read", "write", "auto_approve"]

[audit]
path = "ws/logs/audit.jsonl"
rotate = "1 KiB"
"#;

/// The label `probe` prints: long words shown by their length.
fn probe_label(words: &[&str]) -> String {
    let shown: Vec<String> =
        words.iter().map(|w| if w.len() > 60 { format!("<{} bytes>", w.len()) } else { format!("{w:?}") }).collect();
    shown.join(" ")
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// `probe` op words joined by `+`.
fn ops(list: &[&[&str]]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, words) in list.iter().enumerate() {
        if i > 0 {
            out.push("+".to_owned());
        }
        out.extend(words.iter().map(|w| w.to_string()));
    }
    out
}

#[test]
fn every_file_the_log_owns_is_untouchable_with_a_broad_grant() {
    let f = Fixture::new(BROAD_LOG_INSIDE);
    std::fs::create_dir_all(f.ws("logs")).unwrap();
    f.file("notes.txt", "mine\n");
    // Enough events to rotate the log a few times.
    for i in 0..3 {
        let r = f.run("probe", &["write", &format!("n{i}.txt"), "x", "+", "read", "notes.txt"]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    let log = f.ws("logs/audit.jsonl");
    let segments: Vec<String> = names(&f.ws("logs"))
        .into_iter()
        .filter(|n| n.len() == "audit.jsonl.".len() + 12 && n[12..].bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert!(!segments.is_empty(), "the log rotated: {:?}", names(&f.ws("logs")));
    let seg = format!("logs/{}", segments[0]);
    let seg_bytes = std::fs::read(f.ws(&seg)).unwrap();
    let before = names(&f.ws("logs"));

    let attempts: Vec<Vec<&str>> = vec![
        vec!["read", &seg],
        vec!["stat", &seg],
        vec!["write", &seg, "forged"],
        vec!["append", &seg, "forged"],
        vec!["remove", &seg],
        vec!["rename", &seg, "stolen.jsonl"],
        vec!["rename", "notes.txt", &seg],
        vec!["read", "logs/audit.jsonl"],
        // Names the log would adopt later: planting them would make a
        // later run fail, or lie.
        vec!["write", "logs/audit.jsonl.000000099999", "{}"],
        vec!["write", "logs/audit.jsonl.pruned", "{}"],
        vec!["write", "logs/audit.jsonl.checkpoints", "{}"],
        vec!["write", "logs/audit.jsonl.sink-siem.cursor", "{}"],
        vec!["mkdir", "logs/audit.jsonl.staging"],
        vec!["write", "logs/audit.jsonl.staging/0123456789abcdef/plan", "forged"],
        vec!["rename", "notes.txt", "logs/audit.jsonl.pruned"],
        // Moving the directory would move the log's files with it.
        vec!["rename", "logs", "elsewhere"],
    ];
    let list: Vec<&[&str]> = attempts.iter().map(|a| a.as_slice()).chain([&["list", "logs"][..]]).collect();
    let args = ops(&list);
    let r = f.run("probe", &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 0, "{r:?}");
    for a in &attempts {
        let line = r.line(&probe_label(a));
        assert!(line.starts_with("denied:") && line.contains("builtin:audit-"), "{a:?}: {line}");
    }
    // The listing shows the other files of the directory only.
    let listing = r.line(&label(&["list", "logs"]));
    assert_eq!(listing, "ok []", "{listing}");

    // Nothing of the log changed, nothing was planted, and it verifies.
    assert_eq!(std::fs::read(f.ws(&seg)).unwrap(), seg_bytes);
    let after: Vec<String> = names(&f.ws("logs")).into_iter().filter(|n| before.contains(n)).collect();
    assert_eq!(after, before, "a file of the log went missing");
    for planted in ["audit.jsonl.000000099999", "audit.jsonl.pruned", "audit.jsonl.staging"] {
        assert!(!f.ws("logs").join(planted).exists(), "{planted} was planted");
    }
    assert_eq!(f.read("notes.txt").as_deref(), Some("mine\n"));
    assert_eq!(verify(&log).code, 0, "{:?}", verify(&log));
    // Each refusal is on record with its rule (in whichever segment).
    let denied: usize = names(&f.ws("logs"))
        .into_iter()
        .filter(|n| n.starts_with("audit.jsonl") && !n.contains(".lock"))
        .map(|n| {
            events(&f.ws("logs").join(n))
                .into_iter()
                .filter(|e| e["rule"].as_str().is_some_and(|r| r.starts_with("builtin:audit-")))
                .count()
        })
        .sum();
    assert!(denied >= attempts.len(), "{denied} refusals recorded");
}

#[test]
fn policy_check_warns_when_the_log_lies_inside_the_workspace() {
    let f = Fixture::new(BROAD_LOG_INSIDE);
    std::fs::create_dir_all(f.ws("logs")).unwrap();
    let mut c = sandbox();
    c.args(["policy", "check"]).arg(f.manifest());
    let r = Run::from_output(c.output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    let warning = r.stderr.lines().find(|l| l.starts_with("sandbox: warning:")).expect("no warning");
    assert!(warning.contains("audit.jsonl") && warning.contains("inside the workspace"), "{warning}");

    // With the log outside, no warning.
    let g = Fixture::new("[fs]\nread = [\"src/**\"]\n");
    let mut c = sandbox();
    c.args(["policy", "check"]).arg(g.manifest());
    let r = Run::from_output(c.output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stderr.contains("warning"), "{r:?}");
}

/// A compile cache that lies in another run's workspace: that run's tool,
/// with a broad grant, can neither read its key nor reseal, plant, remove
/// or move anything in it, and does not even see it listed.
#[test]
fn a_compile_cache_in_another_runs_workspace_is_out_of_its_tools_reach() {
    let f = Fixture::new(BROAD_LOG_INSIDE.replace("ws/logs/audit.jsonl", "audit.jsonl").as_str());
    f.file("other/readme.txt", "hello\n");
    // Run A's cache, filled by `sandbox compile`, in B's workspace.
    let cache = f.ws("other/cache");
    let mut c = sandbox();
    c.arg("compile").arg(guest("probe")).env("SANDBOX_CACHE_DIR", &cache);
    let r = Run::from_output(c.output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    let entry = names(&cache).into_iter().find(|n| n.ends_with(".cwasm")).unwrap();
    let key = std::fs::read(cache.join("key")).unwrap();
    let sealed = std::fs::read(cache.join(&entry)).unwrap();

    let entry_path = format!("other/cache/{entry}");
    let attempts: Vec<Vec<&str>> = vec![
        vec!["read", "other/cache/key"],
        vec!["stat", "other/cache/key"],
        vec!["list", "other/cache"],
        vec!["stat", "other/cache"],
        vec!["write", &entry_path, "resealed"],
        vec!["write", "other/cache/planted.cwasm", "x"],
        vec!["remove", "other/cache/.sandbox-private"],
        vec!["remove", "other/cache/key"],
        vec!["rename", "other/cache", "other/moved"],
        vec!["rename", "other", "moved"],
    ];
    let list: Vec<&[&str]> = attempts.iter().map(|a| a.as_slice()).chain([&["list", "other"][..]]).collect();
    let args = ops(&list);
    let mut cmd = f.command("probe", &[], &args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.env("SANDBOX_CACHE_DIR", f.path("cache-b"));
    let r = Run::from_output(cmd.output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    for a in &attempts {
        let line = r.line(&probe_label(a));
        assert!(line.starts_with("denied:") && line.contains("builtin:sandbox-private"), "{a:?}: {line}");
    }
    let listing = r.line(&label(&["list", "other"]));
    assert!(listing.contains("readme.txt") && !listing.contains("cache"), "{listing}");
    assert_eq!(std::fs::read(cache.join("key")).unwrap(), key);
    assert_eq!(std::fs::read(cache.join(&entry)).unwrap(), sealed);
    assert!(!cache.join("planted.cwasm").exists());
}

/// A cache directory found without its marker (an older version made it,
/// or a tool could reach it before it was marked) gets a new key: every
/// entry sealed with the old one is rebuilt, never trusted.
#[test]
fn an_unmarked_cache_gets_a_new_key() {
    let f = Fixture::new("[fs]\nread = [\"src/**\"]\n");
    let cache = f.path("cache");
    let compile = || {
        let mut c = sandbox();
        c.arg("compile").arg(guest("probe")).env("SANDBOX_CACHE_DIR", &cache).env("SANDBOX_LOG", "sandbox=debug");
        let r = Run::from_output(c.output().unwrap());
        assert_eq!(r.code, 0, "{r:?}");
        r
    };
    compile();
    assert!(cache.join(".sandbox-private").is_file());
    let key = std::fs::read(cache.join("key")).unwrap();
    std::fs::remove_file(cache.join(".sandbox-private")).unwrap();
    let r = compile();
    assert!(r.stderr.contains("not marked private"), "{r:?}");
    assert_ne!(std::fs::read(cache.join("key")).unwrap(), key);
    assert!(cache.join(".sandbox-private").is_file());
}
