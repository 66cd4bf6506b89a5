//! Issue 7, item 4: redaction, with the real binary and the `probe` guest.
//!
//! The audit log never holds a secret the tool sent (intent, targets, the
//! run's own arguments and intent) and counts what it replaced; data
//! returned to the tool is redacted with `[redact] outputs = true` (file
//! reads, command output, HTTP responses) and for `always` paths even
//! without it; with neither, the tool gets the real bytes.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use serde_json::Value;

const CARD: &str = "4111 1111 1111 1111";
const GH: &str = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
const AWS: &str = "AKIAZ7VQ3XK2LM4NP5RT";
const PASSWORD: &str = "hunter2-Correct-Horse";

/// A `.env` file with three secrets and one ordinary setting.
fn env_file() -> String {
    format!("DB_PASSWORD={PASSWORD}\nGITHUB_TOKEN={GH}\nAWS_ACCESS_KEY_ID={AWS}\nPORT=8080\n")
}

/// The `.env` file as a tool sees it redacted.
const ENV_REDACTED: &str = "DB_PASSWORD=[redacted:secret-assignment]\nGITHUB_TOKEN=[redacted:github-token]\nAWS_ACCESS_KEY_ID=[redacted:aws-access-key]\nPORT=8080\n";

/// Fails when any secret occurs anywhere in the audit log file.
fn assert_log_clean(f: &Fixture) {
    let log = std::fs::read_to_string(f.audit()).unwrap();
    assert!(!log.is_empty());
    for secret in [CARD, "4111111111111111", GH, AWS, PASSWORD] {
        assert!(!log.contains(secret), "the audit log holds `{secret}`:\n{log}");
    }
    let v = f.verify();
    assert_eq!(v.code, 0, "{v:?}");
}

/// A target or preview with the reviewer-side fingerprints taken out:
/// `[redacted:TYPE#1f2e3d4c]` becomes `[redacted:TYPE]` (issue 21 item 7;
/// runtime/tests/redaction_hardening.rs checks the fingerprints).
fn plain(shown: &str) -> String {
    let mut out = String::new();
    let mut rest = shown;
    while let Some(at) = rest.find("[redacted:") {
        let end = rest[at..].find(']').map_or(rest.len(), |e| at + e);
        let marker = &rest[at..end];
        out.push_str(&rest[..at]);
        out.push_str(marker.split('#').next().unwrap());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The `result` event of the call with this capability and target.
fn result(f: &Fixture, capability: &str, target: &str) -> Value {
    f.events()
        .into_iter()
        .find(|e| e["kind"] == "result" && e["capability"] == capability && e["target"] == target)
        .unwrap_or_else(|| panic!("no result for {capability} {target}: {:#?}", f.events()))
}

fn reads(extra: &str) -> Fixture {
    let f = Fixture::new(&format!("[fs]\nread = [\".env\", \"notes.txt\", \"config/**\"]\n{extra}"));
    f.file(".env", &env_file());
    f.file("notes.txt", &env_file());
    f.file("config/app.ini", &env_file());
    f
}

#[test]
fn an_env_read_is_redacted_when_outputs_is_on() {
    let f = reads("[redact]\noutputs = true\nalways = []\n");
    let r = f.run("probe", &["cat", ".env", "+", "cat", "notes.txt"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.matches(ENV_REDACTED).count(), 2, "{}", r.stdout);
    let ev = result(&f, "fs.read", ".env");
    assert_eq!(ev["outcome"], "ok");
    assert_eq!(ev["bytes_out"], ENV_REDACTED.len() as u64, "{ev}");
    assert_eq!(
        ev["redactions"],
        serde_json::json!({"secret-assignment": 1, "github-token": 1, "aws-access-key": 1}),
        "{ev}"
    );
    // The call event stored nothing secret, so it counts nothing.
    assert!(f.calls("fs.read").iter().all(|c| c.get("redactions").is_none()));
    assert_log_clean(&f);
}

#[test]
fn outputs_off_returns_the_real_bytes_except_for_always_paths() {
    // Off, and no `always` path: the tool gets the file as it is.
    let f = reads("[redact]\nalways = []\n");
    let r = f.run("probe", &["cat", ".env"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(&env_file()), "{}", r.stdout);
    assert!(result(&f, "fs.read", ".env").get("redactions").is_none());
    assert_log_clean(&f);

    // No `[redact]` at all: `.env` is on the default `always` list,
    // `notes.txt` is not.
    let f = reads("");
    let r = f.run("probe", &["cat", ".env", "+", "cat", "notes.txt"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.matches(ENV_REDACTED).count(), 1, "{}", r.stdout);
    assert_eq!(r.stdout.matches(&env_file()).count(), 1, "{}", r.stdout);
    assert_eq!(result(&f, "fs.read", ".env")["redactions"]["github-token"], 1);
    assert!(result(&f, "fs.read", "notes.txt").get("redactions").is_none());

    // An operator's own list replaces the default.
    let f = reads("[redact]\nalways = [\"config/*.ini\"]\n");
    let r = f.run("probe", &["cat", "config/app.ini", "+", "cat", ".env"]);
    assert_eq!(r.code, 0, "{r:?}");
    // `cat` prints the content, then its result line.
    let (ini, env) = r.stdout.split_once("\"cat\" \"config/app.ini\": ok").unwrap();
    assert!(ini.contains(ENV_REDACTED) && !ini.contains(GH), "{ini}");
    assert!(env.contains(&env_file()), "{env}");
}

#[test]
fn a_symlink_to_an_always_path_is_redacted_too() {
    let f = Fixture::new("[fs]\nread = [\"**\"]\nallow_broad = [\"read\"]\n");
    f.file("secrets/.env", &env_file());
    f.symlink("innocent.txt", "secrets/.env");
    let r = f.run("probe", &["cat", "innocent.txt"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(ENV_REDACTED), "{}", r.stdout);
}

#[test]
fn the_audit_log_never_holds_what_the_tool_sent() {
    let f = Fixture::new("[fs]\nread = [\"**\"]\nallow_broad = [\"read\"]\n");
    let intent = format!("refund card {CARD} for the customer");
    let missing = format!("tokens/{GH}.txt");
    let denied_write = format!("keys/{AWS}");
    let r = f.run_with(
        "probe",
        &["--intent", &format!("deploy with password=\"{PASSWORD}\"")],
        &[
            "intent",
            &intent,
            "+",
            "read",
            &missing,
            "+",
            "write",
            &denied_write,
            "x",
            "+",
            "http",
            &format!("https://example.com/u/{GH}"),
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("not-found"), "{}", r.stdout);
    assert_log_clean(&f);
    let events = f.events();
    // The tool's intent is on every later event, redacted and counted.
    let read = events.iter().find(|e| e["kind"] == "call" && e["capability"] == "fs.read").unwrap();
    assert_eq!(read["intent"], "refund card [redacted:card-number] for the customer");
    assert_eq!(plain(read["target"].as_str().unwrap()), "tokens/[redacted:github-token].txt");
    assert!(read["target"].as_str().unwrap().starts_with("tokens/[redacted:github-token#"), "{read}");
    assert_eq!(read["redactions"], serde_json::json!({"card-number": 1, "github-token": 1}), "{read}");
    // The refusal's reason repeats the target; redacted as well.
    let failed = events.iter().find(|e| e["kind"] == "result" && e["capability"] == "fs.read").unwrap();
    assert_eq!(failed["outcome"], "not-found");
    assert!(failed["redactions"]["github-token"].as_u64().unwrap() >= 2, "{failed}");
    let write = events.iter().find(|e| e["kind"] == "call" && e["capability"] == "fs.write").unwrap();
    assert_eq!(write["decision"], "deny");
    assert_eq!(plain(write["target"].as_str().unwrap()), "keys/[redacted:aws-access-key]");
    let http = events.iter().find(|e| e["kind"] == "call" && e["capability"] == "http.send").unwrap();
    assert_eq!(plain(http["target"].as_str().unwrap()), "GET https://example.com/u/[redacted:github-token]", "{http}");
    // The run's own arguments and intent, on task-start.
    let start = &events[0];
    assert_eq!(start["kind"], "task-start");
    assert!(start["intent"].as_str().unwrap().contains("password=\"[redacted:secret-assignment]\""), "{start}");
    let args: Vec<&str> = start["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.contains(&"refund card [redacted:card-number] for the customer"), "{args:?}");
    assert_eq!(
        start["redactions"],
        serde_json::json!({"aws-access-key": 1, "card-number": 1, "github-token": 2, "secret-assignment": 1}),
        "{start}"
    );
    let end = events.last().unwrap();
    assert_eq!(end["kind"], "task-end");
    assert_eq!(end["intent"], "refund card [redacted:card-number] for the customer");
}

#[test]
fn custom_patterns_apply_to_the_log_and_outputs() {
    let f = Fixture::new(
        "[fs]\nread = [\"chart.txt\"]\n[redact]\noutputs = true\ndetectors = [\"card-number\"]\npatterns = [{ name = \"mrn\", regex = \"MRN-[0-9]{8}\" }]\n",
    );
    f.file("chart.txt", &format!("patient MRN-12345678, card {CARD}, key {GH}\n"));
    let r = f.run("probe", &["intent", "review MRN-87654321", "+", "cat", "chart.txt"]);
    assert_eq!(r.code, 0, "{r:?}");
    // Only the detectors named: the GitHub token is not one of them.
    assert!(
        r.stdout.contains(&format!("patient [redacted:mrn], card [redacted:card-number], key {GH}\n")),
        "{}",
        r.stdout
    );
    let log = std::fs::read_to_string(f.audit()).unwrap();
    assert!(!log.contains("MRN-87654321") && log.contains("review [redacted:mrn]"), "{log}");
    assert_eq!(result(&f, "fs.read", "chart.txt")["redactions"], serde_json::json!({"mrn": 2, "card-number": 1}));
}

/// `[[process.allow]]` for `/usr/bin/cat` with any arguments.
const CAT: &str =
    "\n[[process.allow]]\nprogram = \"cat\"\npath = \"/usr/bin/cat\"\napproval = \"never\"\nargs = [\"*\"]\n";

#[test]
fn command_output_is_redacted_with_outputs_on() {
    let on = Fixture::new(&format!("[fs]\nread = [\"notes.txt\"]\n[redact]\noutputs = true\n{CAT}"));
    let off = Fixture::new(&format!("[fs]\nread = [\"notes.txt\"]\n{CAT}"));
    for f in [&on, &off] {
        f.file("notes.txt", &format!("card {CARD}\n"));
    }
    let r = on.run("probe", &["run", "cat", "notes.txt"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("card [redacted:card-number]") && !r.stdout.contains(CARD), "{}", r.stdout);
    assert_eq!(result(&on, "process.run", "cat notes.txt")["redactions"]["card-number"], 1);
    assert_log_clean(&on);
    let r = off.run("probe", &["run", "cat", "notes.txt"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(CARD), "{}", r.stdout);
}

#[test]
fn http_response_bodies_and_headers_are_redacted_with_outputs_on() {
    let server = http_server::HttpServer::start();
    let url = server.url("/api/echo");
    let body = format!("card={CARD}");
    let header = format!("X-Note:{GH}");
    let rules = |extra: &str| {
        format!(
            "[http]\nallow_private = [\"127.0.0.1/32\"]\n\n[[http.allow]]\nurl = \"{}/api/**\"\nmethods = [\"POST\"]\napproval = \"never\"\n{extra}",
            server.base()
        )
    };
    let on = Fixture::new(&rules("\n[redact]\noutputs = true\n"));
    let off = Fixture::new(&rules(""));
    let words = ["http-req", "POST", &url, &header, "--body", &body];
    let r = on.run("probe", &words);
    assert_eq!(r.code, 0, "{r:?}");
    let sent = on.events().into_iter().find(|e| e["kind"] == "result" && e["capability"] == "http.send").unwrap();
    assert_eq!(sent["outcome"], "ok", "{sent}");
    // The echo repeats the header value and the body.
    assert_eq!(sent["redactions"], serde_json::json!({"card-number": 1, "github-token": 1}), "{sent}");
    assert_log_clean(&on);
    let r2 = off.run("probe", &words);
    assert_eq!(r2.code, 0, "{r2:?}");
    let plain = off.events().into_iter().find(|e| e["kind"] == "result" && e["capability"] == "http.send").unwrap();
    assert!(plain.get("redactions").is_none(), "{plain}");
    // The redacted body differs in length by exactly the replacements.
    let n = |e: &Value| e["bytes_out"].as_u64().unwrap() as i64;
    let delta = ("[redacted:card-number]".len() as i64 - CARD.len() as i64)
        + ("[redacted:github-token]".len() as i64 - GH.len() as i64);
    assert_eq!(n(&sent) - n(&plain), delta, "{sent} {plain}");

    // The standard wasi:http route: the tool reads the whole redacted body
    // (its Content-Length is the redacted one).
    let r = on.run("wasi-fetch", &["-X", "POST", "-H", &header, "-d", &body, &url]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("card=[redacted:card-number]"), "{}", r.stdout);
    assert!(r.stdout.contains("[redacted:github-token]") && !r.stdout.contains(GH), "{}", r.stdout);
    assert!(r.stdout.trim_end().ends_with('}'), "the body was cut: {}", r.stdout);
    let r = off.run("wasi-fetch", &["-X", "POST", "-H", &header, "-d", &body, &url]);
    assert!(r.stdout.contains(&body) && r.stdout.contains(GH), "{}", r.stdout);
}
