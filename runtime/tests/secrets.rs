//! `[secrets.NAME]`: the host injects a secret into the requests and
//! commands its rule names; the tool, the audit log and a reviewer never
//! see it, and an echo of it comes back `[redacted:secret]`.
#![allow(clippy::unwrap_used)]

mod common;

use common::http_server::HttpServer;
use common::{Fixture, Run, guest, label, sandbox};
use std::process::Stdio;

const TOKEN: &str = "ghp_s3cr3tValueTheToolMustNeverSee0123456789";

fn manifest(s: &HttpServer, secret: &str) -> String {
    format!(
        r#"
[secrets.api]
{secret}

[http]
allow_private = ["127.0.0.1/32"]

[[http.allow]]
url = "{}"
methods = ["GET"]
headers = {{ Authorization = "Bearer {{secrets.api}}" }}

[[http.allow]]
url = "{}"
methods = ["GET"]

[[process.allow]]
program = "printenv"
path = "/usr/bin/printenv"
args = ["API_TOKEN", "HOME"]
approval = "never"
secret_env = {{ API_TOKEN = "{{secrets.api}}" }}
"#,
        s.url("/api/echo"),
        s.url("/api/json"),
    )
}

fn run(fx: &Fixture, guest_name: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut c = sandbox();
    c.arg("run").arg(guest(guest_name)).arg("--manifest").arg(fx.manifest()).args(["--user", "alice", "--"]);
    c.args(args).envs(env.iter().copied()).env_remove("SANDBOX_IDENTITY_TOKEN");
    Run::from_output(c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).output().unwrap())
}

#[test]
fn an_injected_token_reaches_its_destination_only_and_the_tool_never_sees_it() {
    let s = HttpServer::start();
    let fx = Fixture::new(&manifest(&s, "env = \"TEST_API_TOKEN\""));
    let echo = s.url("/api/echo");
    let json = s.url("/api/json");
    // The tool sends its own Authorization; the host's replaces it. The echo
    // of the request comes back with the value redacted.
    let r = run(
        &fx,
        "probe",
        &[("TEST_API_TOKEN", TOKEN)],
        &[
            "http-req",
            "GET",
            &echo,
            "Authorization:Bearer forged",
            "+",
            "http-req",
            "GET",
            &json,
            "+",
            "run",
            "printenv",
            "API_TOKEN",
            "+",
            "run",
            "printenv",
            "HOME",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.line(&label(&["http-req", "GET", &echo, "Authorization:Bearer forged"])).starts_with("ok status 200"));
    let printed = r.line(&label(&["run", "printenv", "API_TOKEN"]));
    assert!(printed.contains("[redacted:secret]"), "{printed}");
    let home = r.line(&label(&["run", "printenv", "HOME"]));
    assert!(!home.contains(TOKEN), "{home}");
    // What the destination received: exactly one Authorization, the host's.
    let reqs = s.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let to_echo = reqs.iter().find(|q| q.target() == Some("/api/echo")).unwrap();
    assert_eq!(to_echo.header_values("authorization"), [format!("Bearer {TOKEN}").as_str()]);
    // Another rule's destination gets no secret.
    let to_json = reqs.iter().find(|q| q.target() == Some("/api/json")).unwrap();
    assert_eq!(to_json.header("authorization"), None);
    // Nothing the tool printed, and nothing on record, holds the value.
    assert!(!r.stdout.contains(TOKEN) && !r.stderr.contains(TOKEN));
    let log = std::fs::read_to_string(fx.audit()).unwrap();
    assert!(!log.contains(TOKEN), "the audit log holds the secret");
    let call = fx.calls("http.send").into_iter().find(|c| c["target"] == format!("GET {echo}")).unwrap();
    let headers: Vec<&str> = call["headers"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    assert_eq!(headers, ["Authorization", "Authorization (secret)"], "{call}");
    let ran = fx.calls("process.run");
    assert!(ran[0]["env"].as_array().unwrap().iter().any(|e| e == "API_TOKEN (secret)"), "{}", ran[0]);
    assert!(log.contains("\"secret\":"), "the echo's redaction is counted: {log}");
    assert_eq!(fx.verify().code, 0);
}

#[test]
fn a_secret_from_a_file_works_and_a_missing_one_refuses_the_run() {
    let s = HttpServer::start();
    let fx = Fixture::new(&manifest(&s, "file = \"api.token\""));
    std::fs::write(fx.path("api.token"), format!("{TOKEN}\n")).unwrap();
    let echo = s.url("/api/echo");
    let r = run(&fx, "fetch", &[], &[&echo]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Bearer [redacted:secret]"), "{}", r.stdout);
    assert!(!r.stdout.contains(TOKEN));
    assert_eq!(s.requests()[0].header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));

    std::fs::remove_file(fx.path("api.token")).unwrap();
    let r = run(&fx, "fetch", &[], &[&echo]);
    assert_eq!(r.code, 77, "{}", r.stderr);
    assert!(r.stderr.contains("secret `api`: file `") && r.stderr.contains("api.token`: no such file"), "{}", r.stderr);
    assert!(r.stdout.is_empty());
    assert_eq!(s.requests().len(), 1, "the refused run sent nothing");
    let end = fx.events().pop().unwrap();
    assert_eq!(end["status"], "refused");

    let envd = Fixture::new(&manifest(&s, "env = \"TEST_API_TOKEN_UNSET\""));
    let r = run(&envd, "fetch", &[], &[&echo]);
    assert_eq!(r.code, 77, "{}", r.stderr);
    assert!(r.stderr.contains("environment variable TEST_API_TOKEN_UNSET is not set"), "{}", r.stderr);
}

#[test]
fn secret_rules_that_cannot_work_are_refused_when_the_manifest_is_read() {
    for (body, want) in [
        ("[secrets.api]\nenv = \"X\"\nfile = \"y\"\n", "give exactly one of `env` or `file`"),
        ("[secrets.API]\nenv = \"X\"\n", "a secret's name is 1 to 64 of a-z"),
        (
            "[[http.allow]]\nurl = \"https://a.example/**\"\nheaders = { Authorization = \"Bearer {secrets.nope}\" }\n",
            "`{secrets.nope}` names no [secrets.nope] section",
        ),
        (
            "[secrets.api]\nenv = \"X\"\n[[http.allow]]\nurl = \"https://a.example/**\"\nheaders = { Authorization = \"static\" }\n",
            "uses no secret",
        ),
        (
            "[secrets.api]\nenv = \"X\"\n[[process.allow]]\nprogram = \"printenv\"\npath = \"/usr/bin/printenv\"\nsecret_env = { LD_PRELOAD = \"{secrets.api}\" }\n",
            "`LD_PRELOAD` cannot be set for a program",
        ),
    ] {
        let fx = Fixture::new(body);
        let mut c = sandbox();
        let out = c.args(["policy", "check"]).arg(fx.manifest()).output().unwrap();
        let r = Run::from_output(out);
        assert_eq!(r.code, 2, "{body}: {}", r.stdout);
        assert!(r.stderr.contains(want), "{body}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1);
    }
}
