//! THREATS.md, Commands, "Lessons from attacking the built binary": git
//! run by a tool must never run a program of the repository's or the
//! tool's choosing. Each test runs the real binary on the `probe` guest
//! with the real `/usr/bin/git`, plants the attack in a real repository,
//! shows with plain git (system and global config off, as the sandbox
//! runs it) that the attack does run a command (the control), and then
//! checks that under the sandbox it is refused with
//! `builtin:process:git` or runs with no effect: the marker file the
//! attack would create never appears, nothing lands in `.git/hooks`.
//!
//! See docs/threats/commands-git.md.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// The git the rules name (Debian's, as in policies/git.toml).
const GIT: &str = "/usr/bin/git";
/// The only `PATH` a program gets.
const PATH_VALUE: &str = "/usr/local/bin:/usr/bin:/bin";

/// A fixture whose one rule runs the real git, unasked, with `args`, in
/// any folder of the workspace.
fn fixture(args: &[&str]) -> Fixture {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    Fixture::new(&format!(
        "\n[[process.allow]]\nprogram = \"git\"\npath = \"{GIT}\"\napproval = \"never\"\nargs = [{}]\ncwd = \"**\"\n",
        args.join(", ")
    ))
}

/// A repository with one commit of `a.txt` and `b.txt`, and its user
/// set in its own config (as a developer's clone has it).
fn make_repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.name", "Dev"]);
    git(dir, &["config", "user.email", "dev@example.com"]);
    std::fs::write(dir.join("a.txt"), "alpha\nneedle one\n").unwrap();
    std::fs::write(dir.join("b.txt"), "beta\n").unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "first commit"]);
}

/// An executable `/bin/sh` script at `at`.
fn script(at: &Path, body: &str) {
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::fs::write(at, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(at, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The names in `dir` (sorted), none when it does not exist.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// One `run` op: what the tool saw and the `call` and `result` events.
#[derive(Debug)]
struct Done {
    label: String,
    detail: String,
    call: Value,
    result: Value,
}

impl Done {
    /// Why this is not a denial by `builtin:process:git`, if it is not.
    fn not_refused(&self) -> Option<String> {
        let ok = self.detail.starts_with("denied: ")
            && self.call["decision"] == "deny"
            && self.call["rule"] == "builtin:process:git"
            && self.result["outcome"] == "denied";
        (!ok).then(|| {
            format!("{}: expected a builtin:process:git denial, got {} / {}", self.label, self.detail, self.call)
        })
    }

    /// Asserts the run finished with exit code 0; returns its stdout.
    fn ok(&self) -> String {
        let rest = self.detail.strip_prefix("ok exit 0 stdout ");
        assert!(rest.is_some() && self.call["decision"] == "allow", "{}: {} / {}", self.label, self.detail, self.call);
        rest.unwrap().to_owned()
    }
}

/// The label `probe` prints for an op.
fn probe_label(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| if w.len() > 60 { format!("<{} bytes>", w.len()) } else { format!("{w:?}") })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `probe` with one `run git ...` op per entry of `ops` (each
/// `[cwd, args...]`) and pairs every op with its line and events.
fn run_git(f: &Fixture, ops: &[Vec<&str>]) -> Vec<Done> {
    let words: Vec<Vec<&str>> = ops
        .iter()
        .map(|op| {
            let mut w = vec!["run", "--cwd", op[0], "git"];
            w.extend_from_slice(&op[1..]);
            w
        })
        .collect();
    let mut args: Vec<&str> = Vec::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            args.push("+");
        }
        args.extend_from_slice(w);
    }
    let r = f.run("probe", &args);
    assert_eq!(r.code, 0, "{r:?}");
    let mut ev = f.events();
    let start = ev.iter().rposition(|e| e["kind"] == "task-start").unwrap();
    ev.drain(..start);
    let calls: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "call" && e["capability"] == "process.run").collect();
    assert_eq!(calls.len(), ops.len(), "one call event per op\n{r:?}");
    let done = words
        .iter()
        .zip(calls)
        .map(|(w, call)| {
            let label = probe_label(w);
            Done { detail: r.line(&label).to_owned(), label, call: call.clone(), result: result_of(&ev, call).clone() }
        })
        .collect();
    assert_eq!(f.verify().code, 0);
    done
}

/// Asserts every op was refused by `builtin:process:git`, reporting all
/// failures at once.
fn all_refused(done: &[Done]) {
    let failures: Vec<String> = done.iter().filter_map(Done::not_refused).collect();
    assert!(failures.is_empty(), "{} of {} not refused:\n{}", failures.len(), done.len(), failures.join("\n"));
}

// ----------------------------------------------------- options of git

/// The shell of the original attack: `git grep -O<cmd>` opens the
/// matching files in a "pager" that git runs through /bin/sh, whatever the
/// pager settings say. Under a rule as narrow as `grep *` it wrote an
/// executable into `.git/hooks/`.
#[test]
fn grep_open_files_in_pager_cannot_run_a_command_or_write_hooks() {
    let f = fixture(&["grep *"]);
    let payload = "touch ran-pager; cp /bin/true .git/hooks/pre-commit; true";
    // Control: plain git runs the payload.
    let control = f.path("control");
    make_repo(&control);
    plain_git(&control, &["grep", &format!("-O{payload}"), "needle"]);
    assert!(control.join("ran-pager").exists(), "control: grep -O did not run the pager command");
    assert!(control.join(".git/hooks/pre-commit").exists(), "control: the pager did not write the hook");

    let repo = f.ws("repo");
    make_repo(&repo);
    let hooks = names(&repo.join(".git/hooks"));
    let o = format!("-O{payload}");
    let long = format!("--open-files-in-pager={payload}");
    let abbreviated = format!("--open-files={payload}");
    let bundled = format!("-inO{payload}");
    let done = run_git(
        &f,
        &[
            vec!["repo", "grep", &o, "needle"],
            vec!["repo", "grep", &long, "needle"],
            vec!["repo", "grep", &abbreviated, "needle"],
            vec!["repo", "grep", &bundled, "needle"],
            vec!["repo", "grep", "-O", "needle"],
        ],
    );
    all_refused(&done);
    assert!(!repo.join("ran-pager").exists(), "the pager command ran under the sandbox");
    assert_eq!(names(&repo.join(".git/hooks")), hooks, "something was written to .git/hooks");
    // The rule still does its job.
    let found = run_git(&f, &[vec!["repo", "grep", "-n", "needle"]]);
    assert!(found[0].ok().contains("a.txt:2:needle one"), "{:?}", found[0]);
}

/// Viewers: `git help TOPIC` and `git CMD --help` start man (or a browser
/// with -w, info with -i); `--bare` and `--attr-source` before the
/// subcommand are not options sandbox knows, so they are refused too.
#[test]
fn help_viewers_and_unknown_global_options_are_refused() {
    let f = fixture(&["*"]);
    make_repo(&f.ws("repo"));
    let done = run_git(
        &f,
        &[
            vec!["repo", "help", "grep"],
            vec!["repo", "help", "-w", "grep"],
            vec!["repo", "help", "-i", "grep"],
            vec!["repo", "grep", "--help"],
            vec!["repo", "--help"],
            vec!["repo", "--bare", "status"],
            vec!["repo", "--attr-source", "HEAD", "grep", "-Otouch ran-x", "needle"],
            vec!["repo", "web--browse", "http://127.0.0.1/"],
            vec!["repo", "send-email", "x"],
            vec!["repo", "for-each-repo", "--config=x", "status"],
            vec!["repo", "hook", "run", "pre-commit"],
            vec!["repo", "maintenance", "start"],
        ],
    );
    all_refused(&done);
    assert!(!f.ws("repo/ran-x").exists());
    let listed = run_git(&f, &[vec!["repo", "help", "-a"]]);
    assert!(listed[0].ok().contains("Main Porcelain Commands"), "{:?}", listed[0]);
}

// -------------------------------------------- the repository's config

/// A repository config that names a command in a form git reads and a
/// hand-written parser easily misreads. Each sets the alias `st` to a
/// shell command that creates `ran-<name>`.
fn tricky_configs() -> Vec<(&'static str, String)> {
    let base = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n";
    vec![
        // The BOM makes the first header look like a key to a line parser.
        ("bom", format!("\u{feff}[alias]\n\tst = !touch ran-bom\n{base}")),
        ("header-line", format!("{base}[alias] st = !touch ran-header-line\n")),
        ("continuation", format!("{base}[alias]\n\tst = \\\n!touch ran-continuation\n")),
        ("case", format!("{base}[ALIAS]\n\tSt = \"!touch ran-case\"\n")),
        ("include-if", format!("{base}[includeIf \"gitdir:/\"]\n\tpath = extra\n")),
        ("include", format!("{base}[include]\n\tpath = extra\n")),
    ]
}

#[test]
fn configs_git_reads_differently_from_a_simple_parser_are_refused() {
    let f = fixture(&["*"]);
    let mut ops = Vec::new();
    let mut names_ = Vec::new();
    for (name, config) in tricky_configs() {
        let extra = format!("[alias]\n\tst = !touch ran-{name}\n");
        // Control: plain git reads it and runs the alias.
        let control = f.path(&format!("control-{name}"));
        make_repo(&control);
        std::fs::write(control.join(".git/config"), &config).unwrap();
        std::fs::write(control.join(".git/extra"), &extra).unwrap();
        plain_git(&control, &["st"]);
        assert!(control.join(format!("ran-{name}")).exists(), "control: git did not run the `{name}` alias");

        let repo = f.ws(name);
        make_repo(&repo);
        std::fs::write(repo.join(".git/config"), &config).unwrap();
        std::fs::write(repo.join(".git/extra"), &extra).unwrap();
        names_.push(name);
    }
    for name in &names_ {
        ops.push(vec![*name, "st"]);
        ops.push(vec![*name, "status"]);
    }
    let done = run_git(&f, &ops);
    all_refused(&done);
    let ran: Vec<&str> = names_.iter().copied().filter(|n| f.ws(&format!("{n}/ran-{n}")).exists()).collect();
    assert!(ran.is_empty(), "these ran under the sandbox: {ran:?}");
    let why = done[0].detail.as_str();
    assert!(why.contains("alias.st"), "the refusal names the key: {why}");
}

/// Keys that name a program (and which the old deny-list did not know),
/// and a config git itself cannot parse: git is refused in the repository.
#[test]
fn a_repository_that_names_a_program_or_cannot_be_read_is_refused() {
    let f = fixture(&["*"]);
    let keys: &[(&str, &str)] = &[
        ("help.browser", "touch ran"),
        ("man.viewer", "evil"),
        ("man.evil.cmd", "touch ran"),
        ("web.browser", "evil"),
        ("browser.evil.cmd", "touch ran"),
        ("core.editor", "touch ran"),
        ("sequence.editor", "touch ran"),
        ("core.pager", "touch ran; cat"),
        ("pager.status", "touch ran; cat"),
        ("core.hooksPath", ".git/evil-hooks"),
        ("core.fsmonitor", "touch ran; echo"),
        ("core.sshCommand", "touch ran"),
        ("credential.helper", "!touch ran"),
        ("gpg.program", "touch-ran"),
        ("diff.external", "touch-ran"),
        ("sendemail.toCmd", "touch ran"),
        ("trailer.x.cmd", "touch ran"),
        ("url./tmp/.insteadOf", "x"),
        ("core.worktree", "/"),
    ];
    let mut ops = Vec::new();
    let dirs: Vec<String> = (0..keys.len()).map(|i| format!("k{i}")).collect();
    for ((key, value), dir) in keys.iter().zip(&dirs) {
        let repo = f.ws(dir);
        make_repo(&repo);
        git(&repo, &["config", key, value]);
        ops.push(vec![dir.as_str(), "status"]);
    }
    let broken = f.ws("broken");
    make_repo(&broken);
    std::fs::write(broken.join(".git/config"), "[core\n\tbare = false\n").unwrap();
    assert!(!plain_git(&broken, &["status"]).status.success(), "control: git accepts the broken config");
    ops.push(vec!["broken", "status"]);
    let done = run_git(&f, &ops);
    all_refused(&done);
    for ((key, _), d) in keys.iter().zip(&done) {
        assert!(d.detail.to_ascii_lowercase().contains(&key.to_ascii_lowercase()), "{key}: {}", d.detail);
    }
    assert!(done.last().unwrap().detail.contains("cannot read its configuration"), "{:?}", done.last());
}

/// What git finds must be what was checked: a directory that merely looks
/// like a bare repository, and a `.git` that is a symlink, each holding a
/// config with a command alias.
#[test]
fn a_bare_looking_directory_or_a_symlinked_git_dir_cannot_smuggle_a_config() {
    let f = fixture(&["*"]);
    // A bare repository made by plain git, with the alias in its config.
    let bare = f.ws("bare");
    git(f.dir.path(), &["init", "-q", "--bare", bare.to_str().unwrap()]);
    git(&bare, &["config", "alias.st", "!touch ran-bare"]);
    let out = plain_git(&bare, &["st"]);
    assert!(out.status.success() && bare.join("ran-bare").exists(), "control: the bare repository's alias did not run");
    std::fs::remove_file(bare.join("ran-bare")).unwrap();
    // A work tree whose `.git` is a symlink to a git directory elsewhere in
    // the workspace.
    let linked = f.ws("linked");
    make_repo(&linked);
    std::fs::rename(linked.join(".git"), f.ws("gitdir")).unwrap();
    std::os::unix::fs::symlink("../gitdir", linked.join(".git")).unwrap();
    git(&linked, &["config", "alias.st", "!touch ran-linked"]);
    plain_git(&linked, &["st"]);
    assert!(linked.join("ran-linked").exists(), "control: git did not follow the .git symlink");
    std::fs::remove_file(linked.join("ran-linked")).unwrap();

    let done = run_git(&f, &[vec!["bare", "st"], vec!["bare", "status"], vec!["linked", "st"]]);
    assert!(!bare.join("ran-bare").exists(), "the bare-looking directory's alias ran: {:?}", done[0]);
    assert!(!linked.join("ran-linked").exists(), "the symlinked git directory's alias ran: {:?}", done[2]);
    // git does not take the bare-looking directory for a repository.
    assert!(done[0].detail.starts_with("ok exit 1 "), "{:?}", done[0]);
    assert!(done[1].detail.contains("cannot use bare repository"), "{:?}", done[1]);
    assert!(done[2].not_refused().is_none(), "{:?}", done[2]);
}

// ----------------------------------------------- hooks and transports

/// Pushing to (or fetching from) a repository on disk runs git in that
/// repository (receive-pack, upload-pack), and git drops the forced
/// configuration for it, so that repository's hooks and config would run.
/// Every transport is off.
#[test]
fn git_cannot_reach_another_repository_and_run_its_hooks() {
    let f = fixture(&["*"]);
    let repo = f.ws("repo");
    make_repo(&repo);
    let target = f.ws("target.git");
    git(f.dir.path(), &["init", "-q", "--bare", target.to_str().unwrap()]);
    let marker = f.ws("ran-receive-hook");
    script(&target.join("hooks/pre-receive"), &format!("touch {}", marker.display()));
    // Control: plain git, even with core.hooksPath forced off on its
    // command line as the old code did, runs the target's hook.
    let out = Command::new(GIT)
        .current_dir(&repo)
        .env_clear()
        .env("PATH", PATH_VALUE)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "core.hooksPath")
        .env("GIT_CONFIG_VALUE_0", "/dev/null")
        .args(["push", "-q", "../target.git", "main:control"])
        .output()
        .unwrap();
    assert!(out.status.success() && marker.exists(), "control: the receiving repository's hook did not run");
    std::fs::remove_file(&marker).unwrap();

    let done = run_git(
        &f,
        &[
            vec!["repo", "push", "../target.git", "main"],
            vec!["repo", "fetch", "../target.git"],
            vec!["repo", "ls-remote", "../target.git"],
            vec!["repo", "clone", "../target.git", "copy"],
        ],
    );
    for d in &done {
        assert!(d.detail.starts_with("ok exit 128 ") && d.detail.contains("not allowed"), "{d:?}");
    }
    assert!(!marker.exists(), "the receiving repository's hook ran under the sandbox");
    assert!(!repo.join("copy/.git").exists());
}

/// An ordinary repository still works: status, log, grep, diff, add and
/// commit; hooks in `.git/hooks` do not run.
#[test]
fn an_ordinary_repository_works_and_its_hooks_never_run() {
    let f = fixture(&["*"]);
    let repo = f.ws("repo");
    make_repo(&repo);
    for hook in ["pre-commit", "commit-msg", "post-commit", "post-index-change", "reference-transaction"] {
        script(&repo.join(".git/hooks").join(hook), &format!("touch {}/ran-{hook}", repo.display()));
    }
    // Control: plain git runs them.
    let control = f.path("control");
    make_repo(&control);
    script(&control.join(".git/hooks/pre-commit"), &format!("touch {}/ran-pre-commit", control.display()));
    std::fs::write(control.join("c.txt"), "c\n").unwrap();
    git(&control, &["add", "c.txt"]);
    git(&control, &["commit", "-q", "-m", "c"]);
    assert!(control.join("ran-pre-commit").exists(), "control: the pre-commit hook did not run");

    std::fs::write(repo.join("a.txt"), "alpha changed\nneedle one\n").unwrap();
    std::fs::write(repo.join("c.txt"), "gamma\n").unwrap();
    let done = run_git(
        &f,
        &[
            vec!["repo", "status", "--short"],
            vec!["repo", "diff", "--stat"],
            vec!["repo", "grep", "-n", "needle"],
            vec!["repo", "add", "a.txt", "c.txt"],
            vec!["repo", "commit", "-q", "-m", "second commit"],
            vec!["repo", "log", "--oneline", "--format=%s %an"],
            vec!["repo", "-p", "log", "-n", "1", "--stat", "--format=%s"],
        ],
    );
    assert!(done[0].ok().contains(" M a.txt") && done[0].ok().contains("?? c.txt"), "{:?}", done[0]);
    assert!(done[1].ok().contains("1 file changed"), "{:?}", done[1]);
    assert!(done[2].ok().contains("a.txt:2:needle one"), "{:?}", done[2]);
    done[3].ok();
    done[4].ok();
    let log = done[5].ok();
    // The commit made under the sandbox has the repository's own user.
    assert!(log.contains("second commit Dev") && log.contains("first commit Test"), "{log}");
    assert!(done[6].ok().contains("c.txt"), "{:?}", done[6]);
    let ran: Vec<String> = names(&repo).into_iter().filter(|n| n.starts_with("ran-")).collect();
    assert!(ran.is_empty(), "hooks ran under the sandbox: {ran:?}");
    assert_eq!(git(&repo, &["log", "-n", "1", "--format=%s"]).trim(), "second commit");
}
