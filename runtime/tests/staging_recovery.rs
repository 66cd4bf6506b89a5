//! Recovery applies only what this host staged and a human approved
//! (docs/threats/audit-owned-files.md): a staging journal planted by a
//! tool, or found beside the log without this host's MAC, without the
//! task's approval in the chained log, or for another workspace, is never
//! applied: it is quarantined and a finding recorded. (A genuine
//! interrupted apply still completes: runtime/tests/staging.rs.)

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use hmac::Mac;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const HOOK: &str = "#!/bin/sh\necho pwned\n";

fn sha256_hex(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The journal directory name of a task.
fn journal_id(task: &str) -> String {
    hex(&Sha256::digest(task.as_bytes())[..8])
}

/// The body of a plan writing `path` (new, `content`) in `workspace`,
/// claimed by an invented task, in format `version`.
fn plan_body(version: u32, task: &str, workspace: &Path, path: &str, content: &str) -> String {
    let mut t = format!("sandbox-staging-journal {version}\n");
    for (k, v) in [
        ("task", task),
        ("user", "mallory"),
        ("agent", "probe"),
        ("component", "sha256:00"),
        ("policy", "sha256:00"),
        ("diff", &format!("sha256:{}", sha256_hex(b"diff"))),
        ("summary", "1 file"),
    ] {
        t.push_str(&format!("{k}\t{v}\n"));
    }
    t.push_str(&format!("workspace\t{}\n", hex(workspace.as_os_str().as_encoded_bytes())));
    t.push_str(&format!(
        "step\twrite\t{path}\tabsent\tfile:{}:{}:755\n",
        sha256_hex(content.as_bytes()),
        content.len()
    ));
    t
}

/// A plan sealed the old way: its last line a plain SHA-256 of the body.
fn hash_sealed(body: &str) -> String {
    format!("{body}end\tsha256:{}\n", sha256_hex(body.as_bytes()))
}

/// Writes a journal (plan and blob) into `staging/<id>/`.
fn plant(staging: &Path, task: &str, plan: &str, content: &str) -> std::path::PathBuf {
    let dir = staging.join(journal_id(task));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("blob-0"), content).unwrap();
    std::fs::write(dir.join("plan"), plan).unwrap();
    dir
}

/// `esc:` form of a probe argument.
fn esc(s: &str) -> String {
    format!("esc:{}", s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n"))
}

fn findings(events: &[Value]) -> Vec<Value> {
    events.iter().filter(|e| e["kind"] == "finding" && e["rule"] == "builtin:staging-journal").cloned().collect()
}

/// An outside directory with a git repository's hooks directory: where
/// the forged plans try to plant an executable hook.
fn hooks(f: &Fixture) -> std::path::PathBuf {
    let hooks = f.path("outside/.git/hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    hooks
}

#[test]
fn a_journal_planted_by_a_tool_with_the_log_inside_the_workspace_is_never_applied() {
    let f = Fixture::new(
        r#"
[fs]
read = ["**"]
write = ["**"]
auto_approve = ["**"]
allow_broad = ["read", "write", "auto_approve"]

[audit]
path = "ws/logs/audit.jsonl"
"#,
    );
    std::fs::create_dir_all(f.ws("logs")).unwrap();
    let hooks = hooks(&f);
    let task = "invented-task";
    let id = journal_id(task);
    let plan = hash_sealed(&plan_body(1, task, &f.path("outside"), ".git/hooks/pre-commit", HOOK));
    let root = "logs/audit.jsonl.staging";
    let dir = format!("{root}/{id}");
    let (blob, plan_path) = (format!("{dir}/blob-0"), format!("{dir}/plan"));
    let (hook_arg, plan_arg) = (esc(HOOK), esc(&plan));
    let args: Vec<&str> =
        vec!["mkdir", root, "+", "mkdir", &dir, "+", "write", &blob, &hook_arg, "+", "write", &plan_path, &plan_arg];
    let r = f.run("probe", &args);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{r:?}");
    for line in &lines {
        assert!(line.contains(": denied:") && line.contains("builtin:audit-"), "{line}");
    }
    assert!(!f.ws(root).exists());

    // The next run applies nothing.
    let r = f.run("probe", &["id"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!hooks.join("pre-commit").exists(), "the forged plan was applied");
    assert_eq!(verify(&f.ws("logs/audit.jsonl")).code, 0);
}

#[test]
fn a_hash_sealed_journal_beside_the_log_is_quarantined_and_recorded() {
    let f = Fixture::new("[fs]\nread = [\"src/**\"]\nwrite = [\"src/**\"]\n");
    let hooks = hooks(&f);
    let staging = f.path("audit.jsonl.staging");
    // A private-looking staging directory (a tool could have renamed one
    // of the account's 0700 directories there) holding an old-style plan.
    std::fs::create_dir(&staging).unwrap();
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700)).unwrap();
    let task = "invented-task";
    let plan = hash_sealed(&plan_body(1, task, &f.path("outside"), ".git/hooks/pre-commit", HOOK));
    let dir = plant(&staging, task, &plan, HOOK);

    let r = f.run_with("probe", &["--task-id", "next-run"], &["id"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!hooks.join("pre-commit").exists(), "the forged plan was applied");
    // Kept aside, not deleted, and on record under the run that found it.
    assert!(!dir.exists());
    let kept = std::fs::read_dir(staging.join("quarantine")).unwrap().next().unwrap().unwrap().path();
    assert_eq!(std::fs::read_to_string(kept.join("plan")).unwrap(), plan);
    let ev = f.events();
    let found = findings(&ev);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["task"], "next-run");
    assert_eq!(found[0]["user"], "alice");
    let why = found[0]["reason"].as_str().unwrap();
    assert!(why.contains("not applied") && why.contains("quarantined"), "{why}");
    assert!(!ev.iter().any(|e| e["task"] == task), "the invented task is on record");
    assert_eq!(f.verify().code, 0);

    // A later run finds nothing more to do.
    let r = f.run("probe", &["id"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(findings(&f.events()).len(), 1);
}

#[test]
fn a_staging_directory_that_is_not_the_hosts_own_is_moved_aside() {
    let f = Fixture::new("[fs]\nread = [\"src/**\"]\nwrite = [\"src/**\"]\n");
    let hooks = hooks(&f);
    // Made by someone else's grant: mode 0755, as the fs door creates it.
    let staging = f.path("audit.jsonl.staging");
    std::fs::create_dir(&staging).unwrap();
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755)).unwrap();
    let task = "invented-task";
    let plan = hash_sealed(&plan_body(1, task, &f.path("outside"), ".git/hooks/pre-commit", HOOK));
    plant(&staging, task, &plan, HOOK);

    let r = f.run("probe", &["id"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!hooks.join("pre-commit").exists(), "the forged plan was applied");
    assert!(!staging.exists());
    let aside: Vec<String> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("audit.jsonl.staging.quarantined-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let found = findings(&f.events());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0]["reason"].as_str().unwrap().contains("not the host's own"), "{}", found[0]);
    assert_eq!(f.verify().code, 0);
}

/// Even sealed with this host's key (which no tool can reach), a plan is
/// applied only for a task whose changes the chained log shows approved,
/// in the workspace of the manifest in force.
#[test]
fn a_sealed_journal_without_its_approval_in_the_log_is_quarantined() {
    let f = Fixture::new("[fs]\nread = [\"src/**\"]\nwrite = [\"src/**\"]\n");
    f.file("src/lib.rs", "lib\n");
    let staging = f.path("audit.jsonl.staging");
    std::fs::create_dir(&staging).unwrap();
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A recovery makes the host key when it finds none.
    let r = f.run("probe", &["id"]);
    assert_eq!(r.code, 0, "{r:?}");
    let key = std::fs::read(staging.join("key")).unwrap();
    assert_eq!(key.len(), 32);
    assert!(staging.join(".sandbox-private").is_file());
    let seal = |body: &str| {
        let mut m = hmac::Hmac::<Sha256>::new_from_slice(&key).unwrap();
        m.update(body.as_bytes());
        format!("{body}mac\t{}\n", hex(&m.finalize().into_bytes()))
    };
    let ws = std::fs::canonicalize(f.path("ws")).unwrap();
    // No approval of this task in the log.
    let a = seal(&plan_body(2, "task-a", &ws, "src/evil.rs", "evil\n"));
    plant(&staging, "task-a", &a, "evil\n");
    // Another workspace.
    let b = seal(&plan_body(2, "task-b", &f.path("outside"), "evil.rs", "evil\n"));
    plant(&staging, "task-b", &b, "evil\n");

    let r = f.run("probe", &["id"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!f.ws("src/evil.rs").exists() && !f.path("outside/evil.rs").exists());
    let found = findings(&f.events());
    assert_eq!(found.len(), 2, "{found:?}");
    let reasons: Vec<&str> = found.iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert!(reasons.iter().any(|r| r.contains("holds no `fs.changes` call of task `task-a`")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("not `") && r.contains("the workspace of the manifest in force")),
        "{reasons:?}"
    );
    assert_eq!(std::fs::read_dir(staging.join("quarantine")).unwrap().count(), 2);
    assert_eq!(f.verify().code, 0);
}

/// The log outside this workspace, but its directory inside another run's
/// workspace: that run's tool cannot reach the staging directory (it is
/// marked private) to read the key or plant a journal.
#[test]
fn another_runs_tool_cannot_reach_the_staging_directory() {
    let f = Fixture::new("[fs]\nread = [\"src/**\"]\nwrite = [\"src/**\"]\n");
    let staging = f.path("audit.jsonl.staging");
    std::fs::create_dir(&staging).unwrap();
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700)).unwrap();
    let r = f.run("probe", &["id"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(staging.join("key").exists());

    // Run B: its workspace is the fixture's directory, which holds the log
    // of run A; its own log is elsewhere.
    let other = tempfile::tempdir().unwrap();
    let manifest = other.path().join("b.toml");
    std::fs::write(
        &manifest,
        format!(
            "version = 1\n[fs]\nread = [\"**\"]\nwrite = [\"**\"]\nauto_approve = [\"**\"]\nallow_broad = [\"read\", \"write\", \"auto_approve\"]\n[workspace]\nroot = \"{}\"\n[audit]\npath = \"{}\"\n",
            f.dir.path().display(),
            other.path().join("b.jsonl").display()
        ),
    )
    .unwrap();
    let task = "invented-task";
    let id = journal_id(task);
    let dir = format!("audit.jsonl.staging/{id}");
    let plan = format!("{dir}/plan");
    let attempts: Vec<Vec<&str>> = vec![
        vec!["read", "audit.jsonl.staging/key"],
        vec!["list", "audit.jsonl.staging"],
        vec!["mkdir", &dir],
        vec!["write", &plan, "forged"],
        vec!["remove", "audit.jsonl.staging/.sandbox-private"],
        vec!["rename", "audit.jsonl.staging", "moved"],
    ];
    let mut args = Vec::new();
    for (i, a) in attempts.iter().enumerate() {
        if i > 0 {
            args.push("+");
        }
        args.extend(a.iter().copied());
    }
    let mut c = sandbox();
    c.arg("run").arg(guest("probe")).arg("--manifest").arg(&manifest).arg("--user").arg("bob").arg("--").args(&args);
    let r = Run::from_output(c.output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    for a in &attempts {
        let line = r.line(&label(a));
        assert!(line.starts_with("denied:") && line.contains("builtin:sandbox-private"), "{a:?}: {line}");
    }
    assert!(!staging.join(&id).exists());
    assert!(staging.join(".sandbox-private").exists());
}
