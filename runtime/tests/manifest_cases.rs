//! Manifests that must be refused (STYLE.md item 10): one runner over
//! `tests/cases/<name>/{manifest.toml,expected.txt}`.
//!
//! `expected.txt` is the one line `sandbox` prints after `sandbox: error: `,
//! with `{file}` standing for the manifest path as given on the command line.
//! It must name the file, the line and the key: `{file}:3: key `fs.read`: ...`.
//!
//! Each case is refused twice: by `sandbox policy check` and by `sandbox run`,
//! which must stop before the tool starts (no output) and before it opens the
//! audit log (nothing is created beside the manifest). To add a case, add a
//! folder; a regression test goes in with every security fix.

// `allow-unwrap-in-tests` covers #[test] functions only, not the helpers
// here and in `common`.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// One folder of `tests/cases`.
struct Case {
    name: String,
    dir: PathBuf,
    /// `expected.txt` without its final newline.
    expected: String,
}

impl Case {
    /// The error line for the manifest named `file` on the command line.
    fn line_for(&self, file: &str) -> String {
        format!("sandbox: error: {}", self.expected.replace("{file}", file))
    }
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases")
}

/// Every case under `root`, sorted by name. An empty folder, a case without
/// its two files, a stray file or an `expected.txt` that does not name file,
/// line and key is an error, so the runner can never pass vacuously.
fn cases_in(root: &Path) -> Result<Vec<Case>, String> {
    let entries = std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let mut cases = Vec::new();
    for entry in entries {
        let dir = entry.map_err(|e| e.to_string())?.path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if !dir.is_dir() {
            return Err(format!("{}: only case folders belong here", dir.display()));
        }
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        if files != ["expected.txt", "manifest.toml"] {
            return Err(format!("case `{name}` must hold exactly expected.txt and manifest.toml, not {files:?}"));
        }
        let text = std::fs::read_to_string(dir.join("expected.txt")).map_err(|e| format!("case `{name}`: {e}"))?;
        let expected = text.strip_suffix('\n').unwrap_or(&text).to_owned();
        check_expected_shape(&expected).map_err(|e| format!("case `{name}`: expected.txt {e}: {expected:?}"))?;
        cases.push(Case { name, dir, expected });
    }
    if cases.is_empty() {
        return Err(format!("{} holds no cases", root.display()));
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

fn cases() -> Vec<Case> {
    cases_in(&cases_dir()).unwrap_or_else(|e| panic!("{e}"))
}

/// `{file}:LINE: key `KEY`: MESSAGE`, on one line, without control
/// characters.
fn check_expected_shape(expected: &str) -> Result<(), String> {
    if expected.chars().any(char::is_control) {
        return Err("must be one line without control characters".into());
    }
    let rest = expected.strip_prefix("{file}:").ok_or("must start with `{file}:`")?;
    let (line, rest) = rest.split_once(": key `").ok_or("must name the key: `{file}:LINE: key `KEY`: ...`")?;
    if line.is_empty() || !line.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must name the line: `{file}:LINE: key `KEY`: ...`".into());
    }
    let (key, message) = rest.split_once("`: ").ok_or("must close the key with `: ")?;
    if key.is_empty() || message.trim().is_empty() {
        return Err("must name a key and say what is wrong".into());
    }
    Ok(())
}

/// `sandbox policy check tests/cases/NAME/manifest.toml`, run from the
/// crate directory so `{file}` is the same relative path on every machine.
fn policy_check(case: &Case) -> Result<(), String> {
    let file = format!("tests/cases/{}/manifest.toml", case.name);
    let out = sandbox()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["policy", "check", &file])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (code, stdout, stderr) =
        (out.status.code(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let want = format!("{}\n", case.line_for(&file));
    if code != Some(2) || stderr != want || !stdout.is_empty() {
        return Err(format!(
            "case `{}`: `sandbox policy check {file}`\n  exit:   {code:?} (want 2)\n  stderr: {stderr:?}\n  want:   {want:?}\n  stdout: {stdout:?}",
            case.name
        ));
    }
    Ok(())
}

/// `sandbox run probe --manifest COPY -- id`, on a copy of the manifest in
/// a temporary folder (so a manifest wrongly accepted cannot leave a log in
/// the source tree), then checks that only the copy is there.
fn run_refused(case: &Case) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = tmp.path().join("manifest.toml");
    std::fs::copy(case.dir.join("manifest.toml"), &manifest).unwrap();
    let file = manifest.display().to_string();
    let out = sandbox()
        .arg("run")
        .arg(guest("probe"))
        .arg("--manifest")
        .arg(&manifest)
        .args(["--", "id"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (code, stdout, stderr) =
        (out.status.code(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let want = format!("{}\n", case.line_for(&file));
    let mut left: Vec<String> =
        std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    if code != Some(2) || stderr != want || !stdout.is_empty() || left != ["manifest.toml"] {
        return Err(format!(
            "case `{}`: `sandbox run probe --manifest {file} -- id`\n  exit:   {code:?} (want 2)\n  stderr: {stderr:?}\n  want:   {want:?}\n  stdout: {stdout:?} (want none: the tool must not start)\n  files beside the manifest: {left:?} (want no audit log)",
            case.name
        ));
    }
    Ok(())
}

/// Runs `check` on every case and reports every failure at once.
fn each_case(check: fn(&Case) -> Result<(), String>) {
    let cases = cases();
    let failures: Vec<String> = cases.iter().filter_map(|c| check(c).err()).collect();
    assert!(failures.is_empty(), "{} of {} cases failed:\n\n{}", failures.len(), cases.len(), failures.join("\n\n"));
}

#[test]
fn policy_check_refuses_every_case_with_its_one_line() {
    each_case(policy_check);
}

#[test]
fn run_refuses_every_case_before_the_tool_or_the_audit_log() {
    each_case(run_refused);
}

#[test]
fn the_runner_refuses_an_empty_or_malformed_cases_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let err = cases_in(tmp.path()).err().expect("an empty folder must fail");
    assert!(err.contains("holds no cases"), "{err}");
    std::fs::create_dir(tmp.path().join("half")).unwrap();
    std::fs::write(tmp.path().join("half/manifest.toml"), "version = 1\n").unwrap();
    let err = cases_in(tmp.path()).err().expect("a case without expected.txt must fail");
    assert!(err.contains("exactly expected.txt and manifest.toml"), "{err}");
    std::fs::write(tmp.path().join("half/expected.txt"), "{file}: something is wrong\n").unwrap();
    let err = cases_in(tmp.path()).err().expect("an expected line without line and key must fail");
    assert!(err.contains("must name the key"), "{err}");
    std::fs::write(tmp.path().join("half/expected.txt"), "{file}:1: key `version`: must be 1\n").unwrap();
    assert_eq!(cases_in(tmp.path()).unwrap().len(), 1);
}

#[test]
fn the_cases_cover_every_table_of_the_manifest() {
    let names: Vec<String> = cases().into_iter().map(|c| c.name).collect();
    for required in [
        "unknown-key-top-level",
        "unknown-key-workspace",
        "unknown-key-fs",
        "unknown-key-approval",
        "unknown-key-limits",
        "unknown-key-audit",
        "unknown-key-http",
        "unknown-key-http-allow",
        "http-host-star",
        "http-allow-private-everything",
        "duplicate-key",
        "duplicate-table",
        "missing-version",
        "version-2",
        "broad-read-double-star",
        "broad-write-double-star-slash-star",
        "broad-auto-approve-needs-its-own-allow-broad",
        "toml-syntax-error",
        "unknown-key-identity",
        "identity-hmac-algorithm",
        "unknown-key-fs-grant",
        "grant-when-unknown-tier",
        "secret-env-and-file",
        "secret-unknown-in-header",
    ] {
        assert!(names.iter().any(|n| n == required), "case `{required}` is missing from {}", cases_dir().display());
    }
}
