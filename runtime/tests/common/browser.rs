//! Running the scripts of `tests-browser/` (Debian's chromium driven by
//! playwright-core under `node`): whether they can run here, and running
//! one with a time bound.

use super::repo;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The whole browser script (it bounds its own waits at 60 s each).
pub const BROWSER_PATIENCE: Duration = Duration::from_secs(300);

/// Whether the browser tests can run here; `false` means skip (and was
/// said), a missing piece under `SANDBOX_REQUIRE_BROWSER` fails.
pub fn browser_ready(test: &str) -> bool {
    let chromium = Path::new(CHROMIUM).exists();
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !chromium || !node {
        let missing = match (chromium, node) {
            (false, false) => format!("{CHROMIUM} and node are"),
            (false, true) => format!("{CHROMIUM} is"),
            _ => "node is".to_owned(),
        };
        if std::env::var_os("SANDBOX_REQUIRE_BROWSER").is_some() {
            panic!("{test}: {missing} missing and SANDBOX_REQUIRE_BROWSER is set: run scripts/browser-deps");
        }
        // Straight to the process's stderr, past the test harness's
        // capture, so that a skip is seen even when the test passes.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: {missing} missing (run scripts/browser-deps; \
             set SANDBOX_REQUIRE_BROWSER=1 to make this a failure)"
        );
        return false;
    }
    let driver = repo().join("tests-browser/node_modules/playwright-core/package.json");
    assert!(driver.exists(), "{test}: playwright-core is not installed in tests-browser/: run scripts/browser-deps");
    true
}

/// Where screenshots go: `SANDBOX_SCREENSHOT_DIR`, else
/// `target/test-artifacts/` of the repository.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("SANDBOX_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/test-artifacts"))
}

/// Runs a script of `tests-browser/` with `env`: its exit code and output.
pub fn browser_script(script: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.txt");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(script).current_dir(repo().join("tests-browser"));
    cmd.stdin(Stdio::null()).stdout(out.try_clone().unwrap()).stderr(out);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if start.elapsed() > BROWSER_PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (code, std::fs::read_to_string(out_path).unwrap_or_default())
}
