//! THREATS.md, Files: a hostile tool tries every way out of its manifest's
//! files. Each test runs the real binary on the `probe` guest and checks
//! the typed error, the audit event with its rule, and that nothing outside
//! changed.

mod common;
use common::*;

const GRANTS: &str = r#"
[fs]
read = ["src/**", "docs/*.md", "out/**"]
write = ["src/app/**", "out/**"]
auto_approve = ["out/**"]
deny = ["**/.env", "**/*.pem", "src/secret/**"]
"#;

#[allow(clippy::unwrap_used)] // a fixture that cannot be set up fails the test
fn fixture() -> Fixture {
    let f = Fixture::new(GRANTS);
    f.file("src/main.rs", "fn main() {}\n")
        .file("src/app/lib.rs", "pub fn f() {}\n")
        .file("src/secret/key.txt", "SECRET-KEY\n")
        .file(".env", "TOKEN=abc\n")
        .file("src/.env", "TOKEN=abc\n")
        .file("docs/a.md", "# A\n")
        .file("notes.txt", "not granted\n");
    std::fs::create_dir_all(f.ws("out")).unwrap();
    f
}

#[test]
fn granted_reads_work_and_every_call_is_audited() {
    let f = fixture();
    let r = f.run("probe", &["read", "src/main.rs", "+", "read", "docs/a.md", "+", "list", "src"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.line(r#""read" "src/main.rs""#).starts_with("ok 13 bytes"));
    assert!(r.line(r#""read" "docs/a.md""#).starts_with("ok 4 bytes"));
    // The listing hides what the tool may not read.
    let listing = r.line(r#""list" "src""#);
    assert!(listing.contains("main.rs") && listing.contains("app"), "{listing}");
    assert!(!listing.contains(".env") && !listing.contains("secret"), "{listing}");
    let ev = f.events();
    assert_eq!(ev.first().unwrap()["kind"], "task-start");
    assert_eq!(ev.last().unwrap()["kind"], "task-end");
    let calls = f.calls("fs.read");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["decision"], "allow");
    assert_eq!(calls[0]["rule"], "fs.read:src/**");
    assert_eq!(calls[0]["user"], "alice");
    assert_eq!(result_of(&ev, &calls[0])["outcome"], "ok");
    assert_eq!(result_of(&ev, &calls[0])["bytes_out"], 13);
    assert_eq!(f.verify().code, 0);
}

#[test]
fn dot_dot_absolute_windows_and_nul_paths_are_refused() {
    let f = fixture();
    let before = f.outside_digest();
    let r = f.run(
        "probe",
        &[
            "read",
            "../outside/secret.txt",
            "+",
            "read",
            "src/../../outside/secret.txt",
            "+",
            "read",
            "/etc/passwd",
            "+",
            "read",
            "C:\\Windows\\win.ini",
            "+",
            "read",
            "\\\\?\\C:\\x",
            "+",
            "read",
            "src\\main.rs",
            "+",
            "read",
            "esc:src/main.rs\\0.txt",
            "+",
            "read",
            "esc:src/\\x1b[31m",
            "+",
            "write",
            "../outside/secret.txt",
            "pwned",
            "+",
            "write",
            "/tmp/pwned",
            "x",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.line(r#""read" "../outside/secret.txt""#).starts_with("denied:"));
    assert!(r.line(r#""read" "src/../../outside/secret.txt""#).starts_with("denied:"));
    assert!(r.line(r#""read" "/etc/passwd""#).starts_with("invalid:"));
    assert!(r.line(r#""read" "C:\\Windows\\win.ini""#).starts_with("invalid:"));
    assert!(r.line(r#""read" "\\\\?\\C:\\x""#).starts_with("invalid:"));
    assert!(r.line(r#""read" "src\\main.rs""#).starts_with("invalid:"));
    assert!(r.line(r#""read" "src/main.rs\0.txt""#).starts_with("invalid:"));
    assert!(r.line(r#""read" "src/\u{1b}[31m""#).starts_with("invalid:"));
    assert!(r.line(r#""write" "../outside/secret.txt" "pwned""#).starts_with("denied:"));
    assert!(r.line(r#""write" "/tmp/pwned" "x""#).starts_with("invalid:"));
    assert_eq!(f.outside_digest(), before);
    assert!(!Path::new("/tmp/pwned").exists());
    // Each refusal is on record with its rule; hostile text stays one line.
    let reads = f.calls("fs.read");
    assert_eq!(reads[0]["decision"], "deny");
    assert_eq!(reads[0]["rule"], "builtin:outside-workspace");
    assert_eq!(reads[2]["decision"], "invalid");
    assert_eq!(reads[6]["target"], "src/main.rs\u{0}.txt");
    assert_eq!(f.verify().code, 0);
}

#[test]
fn huge_paths_are_invalid_without_harm() {
    let f = fixture();
    let r = f.run("hog", &["bigpath", "8"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim(), "bigpath: invalid");
    let call = &f.calls("fs.read")[0];
    assert_eq!(call["decision"], "invalid");
    // The recorded target is cut at 4 KiB with the full value's hash.
    assert!(call["target"].as_str().unwrap().len() <= 4096);
    assert!(call["target_sha256"].as_str().unwrap().starts_with("sha256:"));
}

#[test]
fn deny_globs_hold_under_every_spelling() {
    let f = fixture();
    f.file(".ENV", "UPPER\n").file("src/KEY.PEM", "pem\n").file("src/Secret/x.txt", "case\n");
    let r = f.run(
        "probe",
        &[
            "read",
            ".env",
            "+",
            "read",
            "src//.env",
            "+",
            "read",
            "src/./.env",
            "+",
            "read",
            "./src/app/../.env",
            "+",
            "read",
            "src/.ENV",
            "+",
            "read",
            "src/KEY.PEM",
            "+",
            "read",
            "src//secret/./key.txt",
            "+",
            "read",
            "src/Secret/x.txt",
            "+",
            "list",
            "src/secret",
            "+",
            "stat",
            "src/secret",
        ],
    );
    for label in [
        r#""read" ".env""#,
        r#""read" "src//.env""#,
        r#""read" "src/./.env""#,
        r#""read" "./src/app/../.env""#,
        r#""read" "src/.ENV""#,
        r#""read" "src/KEY.PEM""#,
        r#""read" "src//secret/./key.txt""#,
        r#""read" "src/Secret/x.txt""#,
        r#""list" "src/secret""#,
        r#""stat" "src/secret""#,
    ] {
        assert!(r.line(label).starts_with("denied:"), "{label}: {}", r.line(label));
    }
    for call in f.calls("fs.read") {
        assert_eq!(call["decision"], "deny", "{call}");
        assert!(call["rule"].as_str().unwrap().starts_with("fs.deny:"), "{call}");
    }
    // The normalised path is what is recorded.
    assert_eq!(f.calls("fs.read")[3]["target"], "src/.env");
}

#[test]
fn unicode_spellings_of_a_denied_name_are_denied() {
    let f = Fixture::new("[fs]\nread = [\"**/*.txt\"]\ndeny = [\"caf\u{e9}/**\"]\n");
    f.file("caf\u{e9}/a.txt", "composed\n").file("cafe\u{301}/a.txt", "decomposed\n");
    let r =
        f.run("probe", &["read", "caf\u{e9}/a.txt", "+", "read", "cafe\u{301}/a.txt", "+", "read", "CAF\u{c9}/a.txt"]);
    for path in ["caf\u{e9}/a.txt", "cafe\u{301}/a.txt", "CAF\u{c9}/a.txt"] {
        assert!(r.line(&label(&["read", path])).starts_with("denied:"), "{}", r.stdout);
    }
}

#[test]
fn symlinks_pointing_out_are_denied() {
    let f = fixture();
    let outside = f.path("outside");
    f.symlink("src/out-dir", outside.to_str().unwrap())
        .symlink("src/out-file", outside.join("secret.txt").to_str().unwrap())
        .symlink("src/rel-out", "../../outside/secret.txt")
        .symlink("src/chain1", "chain2")
        .symlink("src/chain2", "../../outside/secret.txt")
        .symlink("src/loop1", "loop2")
        .symlink("src/loop2", "loop1")
        .symlink("src/dev", "/dev/zero");
    let before = f.outside_digest();
    let r = f.run(
        "probe",
        &[
            "read",
            "src/out-dir/secret.txt",
            "+",
            "list",
            "src/out-dir",
            "+",
            "list",
            "src/out-dir/",
            "+",
            "list",
            "src/out-dir/.",
            "+",
            "read",
            "src/out-file",
            "+",
            "read",
            "src/rel-out",
            "+",
            "read",
            "src/chain1",
            "+",
            "read",
            "src/loop1",
            "+",
            "read",
            "src/dev",
            "+",
            "write",
            "src/app/../out-dir/x",
            "y",
            "+",
            "append",
            "out/../src/out-file",
            "y",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    for label in [
        r#""read" "src/out-dir/secret.txt""#,
        r#""list" "src/out-dir""#,
        r#""list" "src/out-dir/""#,
        r#""list" "src/out-dir/.""#,
        r#""read" "src/out-file""#,
        r#""read" "src/rel-out""#,
        r#""read" "src/chain1""#,
        r#""read" "src/dev""#,
    ] {
        let line = r.line(label);
        assert!(line.starts_with("denied:"), "{label}: {line}");
    }
    // A loop fails cleanly, without hanging the host.
    let line = r.line(r#""read" "src/loop1""#);
    assert!(line.starts_with("failed:") || line.starts_with("denied:"), "{line}");
    assert!(!r.stdout.contains("OUTSIDE-SECRET"));
    assert_eq!(f.outside_digest(), before);
    let denied: Vec<_> = f.calls("fs.read").into_iter().filter(|c| c["rule"] == "builtin:outside-workspace").collect();
    assert!(denied.len() >= 5, "{denied:?}");
}

#[test]
fn a_symlink_is_decided_where_it_leads_too() {
    let f = fixture();
    f.symlink("src/env-link", "../.env")
        .symlink("src/secret-dir", "secret")
        .symlink("src/notes-link", "../notes.txt")
        .symlink("src/ok-link", "main.rs")
        .symlink("out/into-src", "../src/main.rs");
    let r = f.run(
        "probe",
        &[
            "read",
            "src/env-link",
            "+",
            "read",
            "src/secret-dir/key.txt",
            "+",
            "read",
            "src/notes-link",
            "+",
            "read",
            "src/ok-link",
            "+",
            "write",
            "out/into-src",
            "overwrite",
        ],
    );
    assert!(r.line(r#""read" "src/env-link""#).contains("fs.deny:**/.env"), "{}", r.stdout);
    assert!(r.line(r#""read" "src/secret-dir/key.txt""#).starts_with("denied:"));
    assert!(r.line(r#""read" "src/notes-link""#).starts_with("denied:"));
    assert!(r.line(r#""read" "src/ok-link""#).starts_with("ok 13 bytes"));
    // Writes never follow a final symlink.
    assert!(r.line(r#""write" "out/into-src" "overwrite""#).starts_with("denied:"));
    assert_eq!(f.read("src/main.rs").unwrap(), "fn main() {}\n");
    let calls = f.calls("fs.read");
    assert_eq!(calls[0]["resolved"], ".env");
    assert_eq!(calls[0]["rule"], "fs.deny:**/.env");
    assert_eq!(calls[3]["decision"], "allow");
    assert_eq!(calls[3]["resolved"], "src/main.rs");
}

#[test]
fn a_symlink_swapped_during_reads_never_leaks() {
    let f = fixture();
    f.file("src/public.txt", "public\n");
    let link = f.ws("src/swap");
    std::os::unix::fs::symlink("public.txt", &link).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, link) = (stop.clone(), link.clone());
        let targets = ["public.txt".to_string(), "../../outside/secret.txt".to_string(), "secret/key.txt".to_string()];
        std::thread::spawn(move || {
            let tmp = link.with_file_name("swap.tmp");
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(&targets[i % 3], &tmp).unwrap();
                std::fs::rename(&tmp, &link).unwrap();
                i += 1;
            }
            i
        })
    };
    let r = f.run("probe", &["repeat", "3000", "read-check", "src/swap", "SECRET"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 100, "the link was swapped only {swaps} times");
    let line = r.line(r#""repeat" "3000" "read-check" "src/swap" "SECRET""#);
    assert!(!line.contains("LEAK"), "{line}");
    assert!(line.contains("ok="), "{line}");
    assert!(line.contains("denied="), "{line}");
}

#[test]
fn hard_links_to_outside_files_are_refused() {
    let f = fixture();
    std::fs::hard_link(f.path("outside/secret.txt"), f.ws("src/linked.txt")).unwrap();
    std::fs::hard_link(f.path("outside/secret.txt"), f.ws("out/linked.txt")).unwrap();
    let before = f.outside_digest();
    let r = f.run(
        "probe",
        &["read", "src/linked.txt", "+", "write", "out/linked.txt", "pwned", "+", "append", "out/linked.txt", "pwned"],
    );
    for label in
        [r#""read" "src/linked.txt""#, r#""write" "out/linked.txt" "pwned""#, r#""append" "out/linked.txt" "pwned""#]
    {
        assert!(r.line(label).starts_with("denied:"), "{label}: {}", r.line(label));
    }
    assert_eq!(f.outside_digest(), before);
    assert!(f.events().iter().filter(|e| e["rule"] == "builtin:hard-link").count() >= 3);
}

#[test]
fn files_that_run_code_later_cannot_be_written() {
    let f = Fixture::new(
        r#"
[fs]
read = ["**"]
write = ["**"]
auto_approve = ["**"]
allow_broad = ["read", "write", "auto_approve"]

[workspace]
root = "."

[audit]
path = "logs/audit.jsonl"
"#,
    );
    std::fs::create_dir_all(f.path(".git/hooks")).unwrap();
    std::fs::write(f.path(".git/config"), "[core]\n").unwrap();
    let r = f.run(
        "probe",
        &[
            "write",
            ".git/hooks/pre-commit",
            "#!/bin/sh\nrm -rf /",
            "+",
            "write",
            ".git/config",
            "[core]\nfsmonitor = evil",
            "+",
            "append",
            ".bashrc",
            "evil",
            "+",
            "write",
            "sub/.zshrc",
            "evil",
            "+",
            "write",
            ".vscode/tasks.json",
            "{}",
            "+",
            "write",
            ".envrc",
            "evil",
            "+",
            "write",
            "manifest.toml",
            "version = 1",
            "+",
            "read",
            "manifest.toml",
            "+",
            "write",
            "logs/audit.jsonl",
            "",
            "+",
            "remove",
            "logs/audit.jsonl",
            "+",
            "rename",
            "logs",
            "elsewhere",
            "+",
            "rename",
            ".git",
            "git-moved",
            "+",
            "write",
            "ordinary.txt",
            "fine",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    for line in r.stdout.lines().filter(|l| !l.starts_with("\"write\" \"ordinary.txt\"")) {
        assert!(line.contains(": denied:"), "{line}");
    }
    assert!(r.line(r#""write" "ordinary.txt" "fine""#).starts_with("ok"));
    assert!(!f.path(".git/hooks/pre-commit").exists());
    assert_eq!(std::fs::read_to_string(f.path(".git/config")).unwrap(), "[core]\n");
    assert!(!f.path(".bashrc").exists());
    assert!(std::fs::read_to_string(f.manifest()).unwrap().contains("allow_broad"));
    let log = f.path("logs/audit.jsonl");
    let rules: Vec<String> = events(&log)
        .iter()
        .filter(|e| e["kind"] == "call" && e["decision"] == "deny")
        .map(|c| c["rule"].as_str().unwrap().to_owned())
        .collect();
    assert!(rules.contains(&"builtin:manifest".to_string()), "{rules:?}");
    assert!(rules.contains(&"builtin:audit-log".to_string()), "{rules:?}");
    assert!(rules.iter().any(|r| r.starts_with("builtin:protected:")), "{rules:?}");
    assert_eq!(verify(&log).code, 0);
}

#[test]
fn fifos_and_devices_do_not_hang_the_host() {
    let f = fixture();
    let fifo = f.ws("out/fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let r = f.run(
        "probe",
        &["read", "out/fifo", "+", "append", "out/fifo", "x", "+", "write", "out/fifo", "x", "+", "stat", "out/fifo"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.line(r#""read" "out/fifo""#).starts_with("invalid:"));
    assert!(r.line(r#""append" "out/fifo" "x""#).starts_with("invalid:"));
    assert!(r.line(r#""write" "out/fifo" "x""#).starts_with("invalid:"));
    assert!(r.line(r#""stat" "out/fifo""#).starts_with("ok Kind::Other"));
}

#[test]
fn writes_need_approval_and_none_comes_without_a_terminal() {
    let f = fixture();
    let r = f.run("probe", &["intent", "fix the bug", "+", "write", "src/app/lib.rs", "pub fn g() {}\n"]);
    assert!(r.line(r#""write" "src/app/lib.rs" "pub fn g() {}\n""#).starts_with("not-approved:"), "{}", r.stdout);
    assert_eq!(f.read("src/app/lib.rs").unwrap(), "pub fn f() {}\n");
    let ev = f.events();
    let call = ev.iter().find(|e| e["kind"] == "call" && e["capability"] == "fs.write").unwrap();
    assert_eq!(call["decision"], "ask");
    assert_eq!(call["rule"], "fs.write:src/app/**");
    assert_eq!(call["intent"], "fix the bug");
    assert_eq!(call["size"], 14);
    assert!(call["content_sha256"].as_str().unwrap().starts_with("sha256:"));
    let approval = ev.iter().find(|e| e["kind"] == "approval").unwrap();
    assert_eq!(approval["decision"], "rejected");
    assert_eq!(approval["approval"]["via"], "deny");
    assert_eq!(approval["approval"]["by"], serde_json::json!([]));
    assert_eq!(result_of(&ev, approval)["outcome"], "not-approved");
    assert!(approval["seq"].as_u64() > call["seq"].as_u64());
}

#[test]
fn pre_approved_writes_happen_and_record_their_content_hash() {
    let f = fixture();
    let r = f.run(
        "probe",
        &[
            "write",
            "out/report.txt",
            "hello",
            "+",
            "append",
            "out/report.txt",
            " world",
            "+",
            "mkdir",
            "out/sub",
            "+",
            "rename",
            "out/report.txt",
            "out/sub/final.txt",
            "+",
            "read",
            "out/sub/final.txt",
            "+",
            "remove",
            "out/sub/final.txt",
            "+",
            "remove",
            "out/sub",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.line(r#""read" "out/sub/final.txt""#).starts_with("ok 11 bytes \"hello world\""));
    assert!(!f.ws("out/sub").exists());
    let w = &f.calls("fs.write")[0];
    assert_eq!(w["decision"], "allow");
    assert_eq!(w["rule"], "fs.auto_approve:out/**");
    assert_eq!(w["content_sha256"], "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    let rename = &f.calls("fs.rename")[0];
    assert_eq!(rename["target"], "out/report.txt");
    assert_eq!(rename["dest"], "out/sub/final.txt");
}

#[test]
fn renaming_a_directory_cannot_carry_denied_files_out() {
    let f = Fixture::new(
        r#"
[fs]
read = ["proj/**"]
write = ["proj/**"]
auto_approve = ["proj/**"]
deny = ["proj/keys/**"]
"#,
    );
    f.file("proj/keys/id.txt", "KEY\n").file("proj/code/a.rs", "a\n");
    let r = f.run(
        "probe",
        &[
            "rename",
            "proj",
            "proj/moved",
            "+",
            "rename",
            "proj/keys",
            "proj/public",
            "+",
            "rename",
            "proj/code",
            "proj/code2",
        ],
    );
    assert!(r.line(r#""rename" "proj/keys" "proj/public""#).starts_with("denied:"), "{}", r.stdout);
    assert!(r.line(r#""rename" "proj/code" "proj/code2""#).starts_with("ok"), "{}", r.stdout);
    assert_eq!(f.read("proj/keys/id.txt").unwrap(), "KEY\n");
    // Moving a parent would move the denied directory inside it too.
    let f2 = Fixture::new(
        r#"
[fs]
read = ["w/**"]
write = ["w/**"]
auto_approve = ["w/**"]
deny = ["w/a/secret/**"]
"#,
    );
    f2.file("w/a/secret/k.txt", "K\n").file("w/a/x.txt", "x\n");
    let r = f2.run("probe", &["rename", "w/a", "w/b"]);
    let line = r.line(r#""rename" "w/a" "w/b""#);
    assert!(line.starts_with("denied:") && line.contains("w/a/secret"), "{line}");
    assert_eq!(f2.read("w/a/secret/k.txt").unwrap(), "K\n");
    let call = &f2.calls("fs.rename")[0];
    assert_eq!(call["rule"], "fs.deny:w/a/secret/**");
    assert_eq!(call["dest"], "w/b");
}

#[test]
fn reads_beyond_the_output_limit_are_refused() {
    let f = Fixture::new("[fs]\nread = [\"big/**\"]\n[limits]\noutput = \"1 KiB\"\n");
    f.file("big/large.bin", &"x".repeat(2048)).file("big/small.bin", &"x".repeat(1024));
    let r = f.run("probe", &["read-big", "big/large.bin", "+", "read-big", "big/small.bin"]);
    assert!(r.line(r#""read-big" "big/large.bin""#).starts_with("limit-exceeded:"), "{}", r.stdout);
    assert!(r.line(r#""read-big" "big/small.bin""#).starts_with("ok 1024 bytes"));
    let call = &f.calls("fs.read")[0];
    assert_eq!(call["decision"], "limit");
    assert_eq!(call["rule"], "limits.output");
}

#[test]
fn a_denied_path_does_not_reveal_whether_it_exists() {
    let f = fixture();
    let r = f.run(
        "probe",
        &["read", "notes.txt", "+", "read", "nothing-here.txt", "+", "stat", "notes.txt", "+", "stat", "nothing.txt"],
    );
    let a = r.line(r#""read" "notes.txt""#).replace("notes.txt", "X");
    let b = r.line(r#""read" "nothing-here.txt""#).replace("nothing-here.txt", "X");
    assert_eq!(a, b);
    assert!(a.starts_with("denied:"));
    // An allowed path that does not exist is allowed, then not found.
    let r = f.run("probe", &["read", "src/missing.rs"]);
    assert!(r.line(r#""read" "src/missing.rs""#).starts_with("not-found:"));
    let call = f.calls("fs.read").pop().unwrap();
    assert_eq!(call["decision"], "allow");
    assert_eq!(result_of(&f.events(), &call)["outcome"], "not-found");
}

#[test]
fn only_the_sandbox_host_interfaces_lead_out() {
    let f = fixture();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let r = f.run("escape", &[&port]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("escape: all doors shut"), "{}", r.stdout);
    assert!(listener.accept().is_err(), "the guest reached the test's TCP listener");
    assert!(!f.ws("escape-was-here").exists());
    assert!(!Path::new("/tmp/escape-was-here").exists());
}

#[test]
fn requests_without_a_rule_and_commands_are_refused_and_audited() {
    let f = fixture();
    let r = f.run(
        "probe",
        &[
            "http",
            "https://user@api.example.com/x?token=abc",
            "+",
            "http",
            "https://api.example.com/x?token=abc",
            "+",
            "run",
            "git",
            "status",
        ],
    );
    assert!(r.line(r#""http" "https://user@api.example.com/x?token=abc""#).starts_with("invalid:"), "{}", r.stdout);
    assert!(r.line(r#""http" "https://api.example.com/x?token=abc""#).starts_with("denied:"), "{}", r.stdout);
    assert!(r.line(r#""run" "git" "status""#).starts_with("denied:"), "{}", r.stdout);
    let http = f.calls("http.send");
    assert_eq!(http[0]["decision"], "invalid");
    assert_eq!(http[1]["decision"], "deny");
    assert_eq!(http[1]["rule"], "default");
    // Credentials and query values never reach the log.
    assert_eq!(http[0]["target"], "GET https://api.example.com/x?token");
    assert_eq!(http[1]["target"], "GET https://api.example.com/x?token");
    // (The tool's own arguments, on task-start, are recorded as given;
    // redacting secrets in them is the redaction issue's.)
    // (Not a bare "abc": hashes and task ids are hex and may hold it.)
    for e in f.events().iter().filter(|e| e["capability"] == "http.send") {
        assert!(!e.to_string().contains("=abc") && !e.to_string().contains("user@api"), "{e}");
    }
    assert_eq!(f.calls("process.run")[0]["target"], "git status");
    assert_eq!(f.calls("process.run")[0]["rule"], "default");
}

use std::path::Path;
