//! `sandbox audit report`: the compliance report of a real log, made by the
//! real binary from real runs of the probe guest (allowed reads, a denied
//! read, an auto-approved write, writes rejected with `--approve deny`, and
//! a write approved by a named reviewer on the approval service), with
//! hostile text in paths and intents. Checked: every approval and refused
//! call is listed, counts match the log, control sections per framework,
//! filters, a tampered log, signed checkpoints, inert hostile text, `--out`,
//! bad usage, capped lists; and the HTML in a real browser.

#![allow(clippy::unwrap_used)]

mod common;
use common::approval_service::Setup;
use common::browser::{browser_ready, browser_script, screenshot_dir};
use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

const MANIFEST: &str = r#"
name = "report-tests"

[fs]
read = ["src/**", "out/**"]
write = ["src/**", "out/**", "notes/**"]
auto_approve = ["src/**"]
deny = ["**/.env"]

[audit]
path = "audit.jsonl"
signing_key = "audit.key"
"#;

/// A file name that tries to be markup, a Markdown link, a table column
/// and a reversed extension.
const HOSTILE: &str = "notes/<img src=x onerror=alert(1)>](javascript:alert(1))|x\u{202e}gpj.txt";
/// An intent that tries the same, with a terminal escape and zero-width space.
const INTENT: &str = "<script>window.__pwned=1</script> [click](javascript:alert(2)) \u{1b}[2J|\u{200b}done";

/// The log every test reads: made once.
struct Shared {
    f: Fixture,
    /// The request id and effect of the approval by a named reviewer.
    request: String,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        // A static is never dropped: the log lives under target/, beside
        // the screenshots made from it, and the previous run's is removed.
        let parent = repo().join("target/test-artifacts/audit-report-log");
        let _ = std::fs::remove_dir_all(&parent);
        std::fs::create_dir_all(&parent).unwrap();
        let f = Fixture::new_in(tempfile::Builder::new().prefix("run-").tempdir_in(&parent).unwrap(), MANIFEST);
        f.file("src/a.txt", "hello\n").file("src/.env", "TOKEN=abc\n").file("notes/n.txt", "note\n");
        std::fs::create_dir_all(f.ws("out")).unwrap();
        let key =
            Run::from_output(sandbox().args(["audit", "keygen", "--out"]).arg(f.path("audit.key")).output().unwrap());
        assert_eq!(key.code, 0, "{key:?}");
        // alice: allowed reads, a denied read, an auto-approved write,
        // writes nobody approves (rejected), hostile text.
        let r = f.run_with(
            "probe",
            &["--approve", "deny", "--task-id", "task-alice"],
            &[
                "intent",
                INTENT,
                "+",
                "read",
                "src/a.txt",
                "+",
                "read",
                "src/.env",
                "+",
                "write",
                "src/new.txt",
                "x",
                "+",
                "write",
                "notes/n.txt",
                "y",
                "+",
                "read",
                HOSTILE,
                "+",
                "write",
                HOSTILE,
                "z",
            ],
        );
        assert!(r.stdout.contains("ok written"), "{r:?}");
        // dana: a write approved by reviewer alice on the approval service.
        let setup = Setup::new();
        let server = setup.start();
        let mut child = sandbox()
            .arg("run")
            .arg(guest("probe"))
            .arg("--manifest")
            .arg(f.manifest())
            .args(["--user", "dana", "--task-id", "task-dana", "--approve", &server.url(), "--intent", "publish"])
            .args(["--", "write", "out/report.txt", "numbers\n"])
            .env("SANDBOX_APPROVAL_TOKEN", &setup.runner)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pending = None;
        let found = wait_for(Duration::from_secs(60), || {
            pending = server.list(setup.token("alice"), "pending").into_iter().next();
            pending.is_some()
        });
        if !found {
            let _ = child.kill();
            panic!("the run submitted no request: {:?}", Run::from_output(child.wait_with_output().unwrap()));
        }
        let request = pending.unwrap()["id"].as_str().unwrap().to_owned();
        let (status, body) = server.vote(setup.token("alice"), &request, "approve", "ok");
        assert_eq!(status, 200, "{body}");
        let r = Run::from_output(child.wait_with_output().unwrap());
        assert!(r.stdout.contains("ok written"), "{r:?}");
        assert_eq!(f.verify().code, 0);
        Shared { f, request }
    })
}

/// `sandbox audit report LOG ARGS...`.
fn report(log: &Path, args: &[&str]) -> Run {
    Run::from_output(sandbox().args(["audit", "report"]).arg(log).args(args).output().unwrap())
}

fn ok_report(args: &[&str]) -> String {
    let r = report(&shared().f.audit(), args);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.is_empty(), "{r:?}");
    r.stdout
}

/// The text of a Markdown section, from its `## ` heading to the next.
fn section<'a>(md: &'a str, title: &str) -> &'a str {
    let start = md.find(&format!("\n## {title}\n")).unwrap_or_else(|| panic!("no section {title} in\n{md}"));
    let rest = &md[start + 1..];
    let end = rest[3..].find("\n## ").map(|e| e + 4).unwrap_or(rest.len());
    &rest[..end]
}

fn approvals(ev: &[Value]) -> Vec<&Value> {
    ev.iter().filter(|e| e["kind"] == "approval").collect()
}

fn refused(ev: &[Value]) -> Vec<&Value> {
    ev.iter()
        .filter(|e| e["kind"] == "call" && ["deny", "invalid", "limit"].contains(&e["decision"].as_str().unwrap()))
        .collect()
}

fn count(ev: &[Value], kind: &str, decision: &str) -> usize {
    ev.iter().filter(|e| e["kind"] == kind && e["decision"] == decision).count()
}

#[test]
fn every_approval_and_refused_call_is_listed_and_counts_match_the_log() {
    let s = shared();
    let ev = s.f.events();
    let md = ok_report(&["--format", "md"]);
    let html = ok_report(&["--format", "html"]);
    let (a, d) = (approvals(&ev), refused(&ev));
    assert_eq!((a.len(), d.len()), (3, 2), "the runs did not make the log the test expects: {ev:?}");
    let listed = section(&md, "Approvals");
    for e in &a {
        let seq = e["seq"].as_u64().unwrap();
        let row = listed
            .lines()
            .find(|l| l.contains(&format!("(seq {seq})")))
            .unwrap_or_else(|| panic!("approval {seq} not in\n{listed}"));
        assert!(row.contains(&format!("**{}**", e["decision"].as_str().unwrap())), "{row}");
        assert!(html.contains(&format!("seq {seq}<")), "approval {seq} not in the HTML");
    }
    let named = a.iter().find(|e| e["approval"]["via"] == "service").unwrap();
    assert_eq!(named["approval"]["request"], s.request.as_str());
    let row = listed.lines().find(|l| l.contains(&s.request)).expect("the request id is listed");
    assert!(row.contains("**alice**") && row.contains("via service"), "{row}");
    let effect = named["effect_sha256"].as_str().unwrap();
    assert!(row.contains(effect), "{row}");
    assert!(html.contains(&s.request) && html.contains(effect) && html.contains(">alice</bdi>"));
    assert_eq!(listed.lines().filter(|l| l.contains("via deny")).count(), 2, "{listed}");
    let listed = section(&md, "Refused calls");
    for e in &d {
        let seq = e["seq"].as_u64().unwrap();
        let row = listed
            .lines()
            .find(|l| l.contains(&format!("(seq {seq})")))
            .unwrap_or_else(|| panic!("refusal {seq} not in\n{listed}"));
        assert!(row.contains(&text::markdown(e["rule"].as_str().unwrap())), "{row}");
        assert!(html.contains(&format!("seq {seq}<")));
    }
    assert!(listed.contains("is denied by fs.deny:\\*\\*/.env"), "the reason from the call's result: {listed}");
    // Counts by decision, user and capability are the log's.
    let counts = section(&md, "Counts");
    for (decision, kind) in
        [("allow", "call"), ("ask", "call"), ("deny", "call"), ("approved", "approval"), ("rejected", "approval")]
    {
        let n = count(&ev, kind, decision);
        let row = counts.lines().find(|l| l.starts_with(&format!("| {decision} |"))).unwrap();
        assert!(row.ends_with(&format!("| {n} |")), "{decision}: {n} in the log, report says {row}");
    }
    for user in ["alice", "dana"] {
        let calls = ev.iter().filter(|e| e["kind"] == "call" && e["user"] == user).count();
        let row = counts.lines().find(|l| l.starts_with(&format!("| {user} | 1 | {calls} |")));
        assert!(row.is_some(), "{user}: 1 run, {calls} calls in the log; the report says\n{counts}");
    }
    let reads = ev.iter().filter(|e| e["kind"] == "call" && e["capability"] == "fs.read").count();
    assert!(counts.contains(&format!("| fs.read | {reads} |")), "{counts}");
    let summary = section(&md, "Summary");
    let calls = ev.iter().filter(|e| e["kind"] == "call").count();
    assert!(summary.contains(&format!("| {} | 2 | {calls} | 2 | 1 | 2 | 0 | 2 | 1 |", ev.len())), "{summary}");
    // The file's SHA-256 is the one of its bytes.
    let digest = sha2_hex(&std::fs::read(s.f.audit()).unwrap());
    assert!(md.contains(&digest) && html.contains(&digest));
    assert!(section(&md, "Verification").contains(&format!("All {} events of the log were recomputed", ev.len())));
}

mod text {
    /// The report's own Markdown escaping, restated for the test: a
    /// backslash before each metacharacter.
    pub fn markdown(s: &str) -> String {
        s.chars().flat_map(|c| if "\\`*_{}[]()<>&|!~$@^#\"'".contains(c) { vec!['\\', c] } else { vec![c] }).collect()
    }
}

fn sha2_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The control headings of a Markdown report.
fn controls_of(md: &str) -> Vec<String> {
    md.lines().filter_map(|l| l.strip_prefix("#### ")).map(|l| l.split(' ').next().unwrap().to_owned()).collect()
}

#[test]
fn every_framework_has_its_control_sections_and_framework_selects() {
    let soc2 = ["CC6.1", "CC6.3", "CC7.2", "CC8.1"];
    let hipaa = ["164.312(a)(1)", "164.312(b)", "164.312(c)(1)", "164.312(d)"];
    let pci = ["8.2", "10.2", "10.3"];
    let all: Vec<&str> = soc2.iter().chain(&hipaa).chain(&pci).copied().collect();
    assert_eq!(controls_of(&ok_report(&["--format", "md"])), all);
    assert_eq!(controls_of(&ok_report(&["--format", "md", "--framework", "hipaa"])), hipaa);
    assert_eq!(
        controls_of(&ok_report(&["--format", "md", "--framework", "pci", "--framework", "soc2"])),
        [&soc2[..], &pci].concat()
    );
    let html = ok_report(&["--format", "html", "--framework", "hipaa"]);
    for anchor in
        ["control-hipaa-164-312-a-1", "control-hipaa-164-312-b", "control-hipaa-164-312-c-1", "control-hipaa-164-312-d"]
    {
        assert!(html.contains(&format!("id=\"{anchor}\"")), "{anchor}");
    }
    assert!(!html.contains("control-soc2") && !html.contains("control-pci"));
    // The honest part: nothing here verified who the users are.
    let md = ok_report(&["--format", "md", "--framework", "hipaa"]);
    let d = &md[md.find("#### 164.312(d)").unwrap()..];
    assert!(d.contains("users are recorded as given (unverified): 2 of 2 runs carry no `user_verified`"), "{d}");
}

#[test]
fn filters_apply_and_are_shown() {
    let s = shared();
    let md = ok_report(&["--format", "md", "--user", "dana"]);
    assert!(md.contains("| Filters | `--user` dana (every filter must hold"), "{md}");
    let a = section(&md, "Approvals");
    assert!(a.starts_with("## Approvals\n\n1 in this report.") && a.contains(&s.request), "{a}");
    assert!(section(&md, "Refused calls").contains("*No refused calls in this report.*"));
    assert!(!section(&md, "Counts").contains("| alice |"));
    let md = ok_report(&["--format", "md", "--decision", "deny"]);
    let d = section(&md, "Refused calls");
    assert!(d.starts_with("## Refused calls\n\n2 in this report."), "{d}");
    assert!(d.contains("is denied by fs.deny"), "the reason pairs even when its result is filtered out: {d}");
    assert!(section(&md, "Approvals").contains("*No approvals in this report.*"));
    let md = ok_report(&["--format", "md", "--capability", "fs.write", "--task", "task-alice"]);
    assert!(section(&md, "Approvals").starts_with("## Approvals\n\n2 in this report."));
    let md = ok_report(&["--format", "md", "--since", "2999-01-01"]);
    assert!(md.contains("| Events | 0 in this report, of "), "{md}");
    assert!(md.contains("*No host calls in this report: nothing to chart.*"));
    // Verification covers the whole log whatever the filter.
    assert!(md.contains("INTACT: the log's hash chain verified"));
}

/// A copy of the log with one byte of event `seq` changed.
fn tampered(dir: &Path, seq: u64) -> PathBuf {
    let text = std::fs::read_to_string(shared().f.audit()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let line = &mut lines[seq as usize];
    assert!(line.contains("src/a.txt"), "{line}");
    *line = line.replace("src/a.txt", "src/b.txt");
    let out = dir.join("tampered.jsonl");
    std::fs::write(&out, lines.join("\n") + "\n").unwrap();
    out
}

fn first_read_seq() -> u64 {
    let ev = shared().f.events();
    ev.iter().find(|e| e["kind"] == "call" && e["target"] == "src/a.txt").unwrap()["seq"].as_u64().unwrap()
}

#[test]
fn a_tampered_log_says_not_intact_at_the_top_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let seq = first_read_seq();
    let log = tampered(dir.path(), seq);
    let r = report(&log, &["--format", "md"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains(&format!("is not intact (the chain breaks at seq {seq})")), "{r:?}");
    let v = section(&r.stdout, "Verification");
    assert!(
        v.contains(&format!(
            "**⚠ NOT INTACT: this log has been altered or damaged.** The hash chain breaks at seq {seq}"
        )),
        "{v}"
    );
    assert!(r.stdout.find("NOT INTACT").unwrap() < r.stdout.find("## Summary").unwrap());
    assert!(!r.stdout.contains("INTACT: the log's hash chain verified"));
    let r = report(&log, &["--format", "html"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("<section class=\"banner bad\" id=\"verification\" role=\"alert\""), "{}", r.stdout);
    assert!(r.stdout.contains("NOT INTACT") && r.stdout.contains(&format!("The hash chain breaks at seq {seq}")));
    // With checkpoints too: still the chain's failure, and they are not vouched for.
    let key = shared().f.path("audit.key.pub");
    let cp = shared().f.path("audit.jsonl.checkpoints");
    let r =
        report(&log, &["--format", "md", "--public-key", key.to_str().unwrap(), "--checkpoints", cp.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("Signed checkpoints did NOT verify") && r.stdout.contains("NOT INTACT"), "{}", r.stdout);
}

#[test]
fn signed_checkpoints_are_verified_when_a_key_is_given() {
    let f = &shared().f;
    let key = f.path("audit.key.pub");
    let md = ok_report(&["--format", "md", "--public-key", key.to_str().unwrap()]);
    let v = section(&md, "Verification");
    let n = f.events().len();
    assert!(v.contains("**Signed checkpoints verified:**"), "{v}");
    assert!(v.contains(&format!("covers the first {n} events")) && v.contains("Every event is covered."), "{v}");
    assert!(
        md.contains("signed checkpoints verified under the given public key; they cover the first"),
        "controls cite them"
    );
    // Another key: the report is made, says so, exit 1.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.key");
    assert_eq!(Run::from_output(sandbox().args(["audit", "keygen", "--out"]).arg(&other).output().unwrap()).code, 0);
    let r =
        report(&f.audit(), &["--format", "html", "--public-key", other.with_extension("key.pub").to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("fails its signed checkpoints"), "{r:?}");
    assert!(r.stdout.contains("Signed checkpoints did NOT verify"), "{}", r.stdout);
}

#[test]
fn hostile_log_text_is_inert_in_markdown_and_html() {
    let md = ok_report(&["--format", "md"]);
    // Every `<` and `]` of log text comes with its backslash.
    let unescaped = md.replace("\\<", "").replace("\\]", "");
    for bad in ["<img", "<script", "](javascript", "\u{202e}", "\u{200b}", "\u{1b}"] {
        assert!(!unescaped.contains(bad), "{bad:?} reached the Markdown");
    }
    let target = "notes/\\<img src=x onerror=alert\\(1\\)\\>\\]\\(javascript:alert\\(1\\)\\)\\|x`\\u{202e}`gpj.txt";
    assert!(md.contains(target), "{md}");
    assert!(md.contains("\\<script\\>window.\\_\\_pwned=1\\</script\\> \\[click\\]\\(javascript:alert\\(2\\)\\) `\\x1b`\\[2J\\|`\\u{200b}`done"));
    // The table keeps its columns: no unescaped `|` inside a cell.
    for l in
        section(&md, "Refused calls").lines().chain(section(&md, "Approvals").lines()).filter(|l| l.starts_with("| "))
    {
        let cells = l.replace("\\|", "").matches('|').count();
        assert_eq!(cells, 7, "a row with other than 6 cells: {l}");
    }
    let html = ok_report(&["--format", "html"]);
    for bad in ["<img", "<script", "\u{202e}", "\u{200b}", "\u{1b}", "href=\"javascript"] {
        assert!(!html.contains(bad), "{bad:?} reached the HTML");
    }
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;](javascript:alert(1))|x<span class=\"esc\""));
    assert!(
        html.contains("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'sha256-")
    );
}

#[test]
fn out_writes_the_whole_report_and_never_over_the_log() {
    let f = &shared().f;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.html");
    std::fs::write(&out, "old").unwrap();
    let r = report(&f.audit(), &["--format", "html", "--out", out.to_str().unwrap()]);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""), "{r:?}");
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>"), "{html}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, [std::ffi::OsString::from("report.html")], "a temporary file was left");
    let before = std::fs::read(f.audit()).unwrap();
    for target in [f.audit(), f.path("audit.jsonl.checkpoints")] {
        let r = report(
            &f.audit(),
            &[
                "--format",
                "md",
                "--public-key",
                f.path("audit.key.pub").to_str().unwrap(),
                "--out",
                target.to_str().unwrap(),
            ],
        );
        assert_eq!(r.code, 2, "{r:?}");
        assert!(r.stderr.contains("is the audit log or its checkpoints"), "{r:?}");
    }
    assert_eq!(std::fs::read(f.audit()).unwrap(), before, "the log was touched");
    let r = report(&f.audit(), &["--format", "md", "--out", dir.path().join("no/such/dir/r.md").to_str().unwrap()]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("its directory does not exist"), "{r:?}");
}

#[test]
fn bad_usage_is_one_line_and_exit_2() {
    let log = shared().f.audit();
    let log = log.to_str().unwrap();
    let missing = shared().f.path("missing.jsonl");
    for (args, says) in [
        (vec![log, "--format", "pdf"], "invalid value 'pdf'"),
        (vec![log], "--format"),
        (vec![log, "--format", "md", "--framework", "iso27001"], "invalid value 'iso27001'"),
        (vec![log, "--format", "md", "--since", "yesterday"], "--since"),
        (vec![log, "--format", "md", "--decision", "maybe"], "--decision"),
        (vec![log, "--format", "md", "--checkpoints", "x"], "--public-key"),
        (vec![log, "--format", "md", "--public-key", "/nonexistent/k.pub"], "k.pub"),
        (vec![log, "--format", "md", "--max-rows", "0"], "--max-rows"),
        (vec![missing.to_str().unwrap(), "--format", "md"], "missing.jsonl"),
    ] {
        let r = Run::from_output(sandbox().args(["audit", "report"]).args(&args).output().unwrap());
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stdout.is_empty(), "{args:?}: {r:?}");
        assert!(r.stderr.contains(says), "{args:?}: {r:?}");
    }
}

#[test]
fn long_lists_are_capped_and_say_how_many_more() {
    let md = ok_report(&["--format", "md", "--max-rows", "1"]);
    let a = section(&md, "Approvals");
    assert_eq!(a.lines().filter(|l| l.contains("(seq ")).count(), 1, "{a}");
    assert!(a.contains("**… and 2 more approvals not listed.** The counts include them."), "{a}");
    assert!(section(&md, "Refused calls").contains("**… and 1 more refused calls not listed.**"));
    let html = ok_report(&["--format", "html", "--max-rows", "1"]);
    assert!(html.contains("… and 2 more approvals not listed."));
}

#[test]
fn the_html_report_renders_in_chromium() {
    if !browser_ready("the_html_report_renders_in_chromium") {
        return;
    }
    let s = shared();
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let r = report(&s.f.audit(), &["--format", "html", "--out", html.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let seq = first_read_seq();
    let bad = dir.path().join("tampered.html");
    let r = report(&tampered(dir.path(), seq), &["--format", "html", "--out", bad.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    let ev = s.f.events();
    let expect = json!({
        "approvals": approvals(&ev).iter().map(|e| json!({
            "seq": e["seq"],
            "by": e["approval"]["by"],
            "request": e["approval"]["request"],
            "effect": e["effect_sha256"],
        })).collect::<Vec<_>>(),
        "denials": refused(&ev).iter().map(|e| json!({"seq": e["seq"], "rule": e["rule"]})).collect::<Vec<_>>(),
        "hostile": ["<img src=x onerror=alert(1)>](javascript:alert(1))|x", "<script>window.__pwned=1</script> [click](javascript:alert(2))"],
        "controls": [
            "control-soc2-cc6-1", "control-soc2-cc6-3", "control-soc2-cc7-2", "control-soc2-cc8-1",
            "control-hipaa-164-312-a-1", "control-hipaa-164-312-b", "control-hipaa-164-312-c-1", "control-hipaa-164-312-d",
            "control-pci-8-2", "control-pci-10-2", "control-pci-10-3",
        ],
        "bad_seq": seq,
    });
    let expect_path = dir.path().join("expect.json");
    std::fs::write(&expect_path, expect.to_string()).unwrap();
    let shots = screenshot_dir();
    let (code, out) = browser_script(
        "report.spec.mjs",
        &[
            ("SANDBOX_REPORT_HTML", html.to_str().unwrap()),
            ("SANDBOX_REPORT_TAMPERED", bad.to_str().unwrap()),
            ("SANDBOX_REPORT_EXPECT", expect_path.to_str().unwrap()),
            ("SANDBOX_SCREENSHOT_DIR", shots.to_str().unwrap()),
        ],
    );
    assert_eq!(code, 0, "the browser test failed:\n{out}");
    assert!(out.contains("browser test passed"), "{out}");
    assert!(shots.join("audit-report.png").exists() && shots.join("audit-report-tampered.png").exists());
}
