//! `gitsum`: a short summary of the git repository that is the workspace.
//!
//! ```text
//! gitsum
//! ```
//!
//! Runs three read-only commands through `sandbox:host/process.run`
//! (program `git`, which the manifest pins to a path; see
//! `policies/git.toml`): `git status --porcelain=v1 --branch`,
//! `git diff --stat` and `git log --oneline -n 5`, and prints:
//!
//! ```text
//! branch: main
//! changes: 1 modified, 1 added, 1 deleted, 1 untracked
//! diff: 2 files changed, 1 insertion(+), 2 deletions(-)
//! recent commits:
//!   1a2b3c4 second
//!   5d6e7f8 first
//! ```
//!
//! A refused call, a git that fails or one killed at its timeout is
//! reported on stderr (`describe`d for refusals) with exit status 1.

use sandbox_tool::{describe, process};
use std::process::ExitCode;

/// Runs `git ARGS` and returns its stdout; the error says what went wrong.
fn git(args: &[&str]) -> Result<String, String> {
    let cmd = process::Command {
        program: "git".into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec![],
        cwd: None,
        stdin: None,
        timeout_ms: None,
    };
    let line = format!("git {}", args.join(" "));
    let out = process::run(&cmd).map_err(|e| format!("{line}: {}", describe(&e)))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.exit_code {
        Some(0) if !out.truncated => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Some(0) => Err(format!("{line}: output cut at the manifest's limit")),
        Some(code) => Err(format!("{line}: exit {code}: {}", stderr.trim())),
        None => Err(format!("{line}: killed (timeout or output limit)")),
    }
}

/// What `git status --porcelain=v1 --branch` says.
#[derive(Debug, Default, PartialEq)]
struct Status {
    branch: String,
    modified: usize,
    added: usize,
    deleted: usize,
    untracked: usize,
}

fn parse_status(text: &str) -> Status {
    let mut s = Status::default();
    for line in text.lines() {
        if let Some(head) = line.strip_prefix("## ") {
            // `main...origin/main [ahead 1]`, `No commits yet on main`,
            // `HEAD (no branch)`.
            let head = head.strip_prefix("No commits yet on ").unwrap_or(head);
            let name = head.split("...").next().unwrap_or(head);
            let name = name.split(" [").next().unwrap_or(name);
            s.branch = name.to_owned();
            continue;
        }
        let code = line.get(..2).unwrap_or("");
        let (x, y) = (code.chars().next().unwrap_or(' '), code.chars().nth(1).unwrap_or(' '));
        if code == "??" {
            s.untracked += 1;
        } else if code == "!!" {
            // ignored files are not shown without --ignored
        } else if x == 'A' {
            s.added += 1;
        } else if x == 'D' || y == 'D' {
            s.deleted += 1;
        } else if !code.trim().is_empty() {
            s.modified += 1;
        }
    }
    s
}

fn summary() -> Result<(), String> {
    let status = parse_status(&git(&["status", "--porcelain=v1", "--branch"])?);
    let diff = git(&["diff", "--stat"])?;
    let log = git(&["log", "--oneline", "-n", "5"])?;
    println!("branch: {}", if status.branch.is_empty() { "(unknown)" } else { &status.branch });
    println!(
        "changes: {} modified, {} added, {} deleted, {} untracked",
        status.modified, status.added, status.deleted, status.untracked
    );
    match diff.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(last) => println!("diff: {}", last.trim()),
        None => println!("diff: no unstaged changes"),
    }
    println!("recent commits:");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        println!("  {line}");
    }
    Ok(())
}

fn main() -> ExitCode {
    if std::env::args().len() > 1 {
        eprintln!("usage: gitsum (takes no arguments; the workspace is the repository)");
        return ExitCode::from(2);
    }
    match summary() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gitsum: {e}");
            ExitCode::FAILURE
        }
    }
}
