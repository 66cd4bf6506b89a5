//! Verified identity, caller tiers, conditional grants and task manifests,
//! through the real binary: tokens are signed here with test keys standing
//! in for an identity provider (identity/tests/keys).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Fixture, Run, guest, label, sandbox};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

const ISS: &str = "https://idp.example";
const AUD: &str = "sandbox";

fn key(name: &str) -> EncodingKey {
    let pem = std::fs::read(common::repo().join(format!("identity/tests/keys/{name}.pem"))).unwrap();
    EncodingKey::from_ed_pem(&pem).unwrap()
}

/// The JWKS of the identity provider: the public half of `ed25519.pem`.
fn jwks() -> String {
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key("ed25519"), Algorithm::EdDSA).unwrap()).unwrap();
    jwk["kid"] = json!("idp-1");
    json!({ "keys": [jwk] }).to_string()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims(sub: &str, role: &str) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": sub, "exp": now() + 600, "role": role, "groups": ["ward-3"]})
}

/// A token signed by `signer` (`ed25519` is the provider, `other-ed25519`
/// a forger) naming the provider's key.
fn token(signer: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some("idp-1".into());
    encode(&h, claims, &key(signer)).unwrap()
}

const IDENTITY: &str = r#"
[identity]
issuer = "https://idp.example"
audience = "sandbox"
jwks = "jwks.json"
required = true
claims = ["role"]
"#;

/// A fixture whose manifest verifies tokens, reads `public/**` for
/// everyone and `records/**` only for clinicians, and lets interactive
/// callers write `notes/**` without approval.
fn clinic(extra: &str) -> Fixture {
    let fx = Fixture::new(&format!(
        r#"{IDENTITY}
[fs]
read = ["public/**"]

[[fs.grant]]
read = ["records/**"]
when = {{ claims = {{ role = ["clinician"] }} }}

[[fs.grant]]
write = ["notes/**"]
auto_approve = ["notes/**"]
when = {{ tier = ["interactive"] }}
{extra}"#
    ));
    std::fs::write(fx.path("jwks.json"), jwks()).unwrap();
    fx.file("public/a.txt", "public\n").file("records/p1.txt", "chart of patient 1\n").file("notes/old.txt", "");
    fx
}

/// `sandbox run probe` without `--user`, with the token in the
/// environment (the way a launcher passes it: never on a command line).
fn run(fx: &Fixture, token: Option<&str>, opts: &[&str], args: &[&str]) -> Run {
    let mut c = sandbox();
    c.arg("run").arg(guest("probe")).arg("--manifest").arg(fx.manifest()).args(opts).arg("--").args(args);
    c.env_remove("SANDBOX_IDENTITY_TOKEN");
    if let Some(t) = token {
        c.env("SANDBOX_IDENTITY_TOKEN", t);
    }
    Run::from_output(c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).output().unwrap())
}

fn log_text(fx: &Fixture) -> String {
    std::fs::read_to_string(fx.audit()).unwrap_or_default()
}

#[test]
fn a_verified_token_names_the_user_on_every_event() {
    let fx = clinic("");
    let t = token("ed25519", &claims("dr.rivera", "clinician"));
    let r = run(
        &fx,
        Some(&t),
        &["--tier", "interactive", "--on-behalf-of", "dr.rivera", "--on-behalf-of", "triage-agent"],
        &["read", "records/p1.txt", "+", "write", "notes/n1.txt", "seen"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.line(&label(&["read", "records/p1.txt"])).starts_with("ok"), "{}", r.stdout);
    assert_eq!(r.line(&label(&["write", "notes/n1.txt", "seen"])), "ok written");
    let events = fx.events();
    assert!(events.len() >= 6, "{events:?}");
    for e in &events {
        assert_eq!(e["user"], "dr.rivera", "{e}");
        assert_eq!(e["user_verified"], true, "{e}");
        assert_eq!(e["claims"], json!({"role": "clinician"}), "only the claims [identity] names: {e}");
        assert_eq!(e["tier"], "interactive", "{e}");
        assert_eq!(e["delegation"], json!(["dr.rivera", "triage-agent"]), "{e}");
    }
    assert!(!log_text(&fx).contains(&t) && !r.stderr.contains(&t) && !r.stdout.contains(&t));
    assert_eq!(fx.verify().code, 0);
}

#[test]
fn a_grant_for_one_role_is_denied_to_another_with_both_on_record() {
    let fx = clinic("");
    let t = token("ed25519", &claims("pat.billing", "billing"));
    let r =
        run(&fx, Some(&t), &["--tier", "background"], &["read", "records/p1.txt", "+", "write", "notes/n.txt", "x"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.line(&label(&["read", "records/p1.txt"])).starts_with("denied"), "{}", r.stdout);
    assert!(r.line(&label(&["write", "notes/n.txt", "x"])).starts_with("denied"), "{}", r.stdout);
    let read = &fx.calls("fs.read")[0];
    assert_eq!(read["decision"], "deny");
    assert_eq!(read["user"], "pat.billing");
    assert_eq!(read["user_verified"], true);
    assert_eq!(read["claims"]["role"], "billing");
    assert_eq!(read["rule"], "fs.grant[0].read:records/** (when role = clinician: not met)", "{read}");
    let write = &fx.calls("fs.write")[0];
    assert_eq!(write["tier"], "background");
    assert_eq!(write["rule"], "fs.grant[1].write:notes/** (when tier = interactive: not met)", "{write}");
    assert!(!fx.ws("notes/n.txt").exists());
}

#[test]
fn expired_forged_and_misaddressed_tokens_are_refused_on_record() {
    let mut expired = claims("dr.rivera", "clinician");
    expired["exp"] = json!(now() - 3600);
    let mut elsewhere = claims("dr.rivera", "clinician");
    elsewhere["aud"] = json!("another-service");
    let cases = [
        ("expired", token("ed25519", &expired), "it has expired"),
        ("forged", token("other-ed25519", &claims("dr.rivera", "clinician")), "signature does not verify"),
        ("wrong audience", token("ed25519", &elsewhere), "audience is not `sandbox`"),
        ("garbage", "not.a.token".to_owned(), "identity token refused"),
    ];
    for (what, t, why) in cases {
        let fx = clinic("");
        let r = run(&fx, Some(&t), &[], &["read", "public/a.txt"]);
        assert_eq!(r.code, 77, "{what}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{what}: the tool must not run: {}", r.stdout);
        assert_eq!(r.stderr.lines().count(), 1, "{what}: {}", r.stderr);
        assert!(r.stderr.contains("identity token refused") && r.stderr.contains(why), "{what}: {}", r.stderr);
        let events = fx.events();
        let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["task-start", "task-end"], "{what}");
        let end = &events[1];
        assert_eq!(end["status"], "refused", "{what}");
        assert_eq!(end["exit_code"], 77, "{what}");
        assert!(end["reason"].as_str().unwrap().contains(why), "{what}: {end}");
        assert_eq!(end["user_verified"], false, "{what}");
        let who = if what == "garbage" { "(unreadable token)" } else { "dr.rivera" };
        assert_eq!(end["user"], who, "{what}: the identity claimed is on record, unverified");
        assert!(!log_text(&fx).contains(&t) && !r.stderr.contains(&t), "{what}: the token is never echoed");
    }
}

#[test]
fn without_a_token_a_required_identity_refuses_and_user_conflicts_with_a_token() {
    let fx = clinic("");
    let r = run(&fx, None, &["--user", "mallory"], &["read", "public/a.txt"]);
    assert_eq!(r.code, 77, "{}", r.stderr);
    assert!(r.stderr.contains("required = true"), "{}", r.stderr);
    let end = fx.events().pop().unwrap();
    assert_eq!((end["user"].as_str(), end["user_verified"].as_bool()), (Some("mallory"), Some(false)));

    let t = token("ed25519", &claims("dr.rivera", "clinician"));
    let before = log_text(&fx);
    let r = run(&fx, Some(&t), &["--user", "mallory"], &["read", "public/a.txt"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--user cannot be combined with an identity token"), "{}", r.stderr);
    assert_eq!(log_text(&fx), before, "a usage error writes nothing");

    // Not required: --user is accepted and recorded as unverified; claim
    // conditions never hold for it.
    let open = Fixture::new(
        "[fs]\nread = [\"public/**\"]\n[[fs.grant]]\nread = [\"records/**\"]\nwhen = { claims = { role = [\"clinician\"] } }\n",
    );
    open.file("public/a.txt", "p\n").file("records/p1.txt", "chart\n");
    let r = run(&open, None, &["--user", "dr.rivera", "--tier", "api"], &["read", "records/p1.txt"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.line(&label(&["read", "records/p1.txt"])).starts_with("denied"), "{}", r.stdout);
    for e in open.events() {
        assert_eq!((e["user"].as_str(), e["user_verified"].as_bool()), (Some("dr.rivera"), Some(false)), "{e}");
        assert_eq!(e["tier"], "api");
    }
}

#[test]
fn a_task_manifest_narrows_and_a_widening_one_is_refused_naming_the_rule() {
    let fx =
        Fixture::new("[fs]\nread = [\"docs/**\", \"records/**\"]\nwrite = [\"out/**\"]\n[limits]\ntime = \"30s\"\n");
    fx.file("docs/a.md", "doc\n").file("records/p1.txt", "chart\n").file("records/p2.txt", "chart 2\n");
    let task = fx.path("task.toml");
    std::fs::write(&task, "version = 1\n[fs]\nread = [\"docs/**\", \"records/p1.txt\"]\n[limits]\ntime = \"10s\"\n")
        .unwrap();
    let task_arg = task.to_str().unwrap();
    let r = fx.run_with(
        "probe",
        &["--task-manifest", task_arg],
        &[
            "read",
            "docs/a.md",
            "+",
            "read",
            "records/p1.txt",
            "+",
            "read",
            "records/p2.txt",
            "+",
            "write",
            "out/x",
            "y",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.line(&label(&["read", "docs/a.md"])).starts_with("ok"));
    assert!(r.line(&label(&["read", "records/p1.txt"])).starts_with("ok"));
    assert!(r.line(&label(&["read", "records/p2.txt"])).starts_with("denied"), "{}", r.stdout);
    assert!(r.line(&label(&["write", "out/x", "y"])).starts_with("denied"), "{}", r.stdout);
    let events = fx.events();
    let hash = events[0]["task_policy"].as_str().unwrap().to_owned();
    assert!(hash.starts_with("sha256:") && hash.len() == 71);
    assert!(events.iter().all(|e| e["task_policy"] == hash.as_str()), "task_policy on every event");
    assert_eq!(events[0]["limits"]["time_ms"], 10_000, "the task's lower limit applies");
    let p1 = fx.calls("fs.read").into_iter().find(|e| e["target"] == "records/p1.txt").unwrap();
    assert_eq!(p1["rule"], "task.fs.read:records/p1.txt");

    for (body, rule) in [
        ("[fs]\nread = [\"secrets/**\"]\n", "`fs.read:secrets/**` would widen the standing manifest"),
        ("[fs]\nwrite = [\"docs/**\"]\n", "`fs.write:docs/**` would widen"),
        (
            "[limits]\ntime = \"1h\"\n",
            "`limits.time` would widen the standing manifest: 1h is longer than the standing 30s",
        ),
        (
            "[[http.allow]]\nurl = \"https://api.example.com/**\"\n",
            "`http.allow:https://api.example.com/**` would widen",
        ),
    ] {
        std::fs::write(&task, format!("version = 1\n{body}")).unwrap();
        let before = fx.events().len();
        let r = fx.run_with("probe", &["--task-manifest", task_arg], &["read", "docs/a.md"]);
        assert_eq!(r.code, 77, "{body}: {}", r.stderr);
        assert!(r.stderr.contains(rule), "{body}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{body}");
        let events = fx.events();
        assert_eq!(events.len(), before + 2, "{body}: task-start and task-end");
        assert_eq!(events.last().unwrap()["status"], "refused");
        assert!(events.last().unwrap()["reason"].as_str().unwrap().contains(rule));
    }

    std::fs::write(&task, "version = 1\n[audit]\npath = \"elsewhere.jsonl\"\n").unwrap();
    let before = fx.events().len();
    let r = fx.run_with("probe", &["--task-manifest", task_arg], &["read", "docs/a.md"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("key `audit`: not allowed in a task manifest"), "{}", r.stderr);
    assert_eq!(fx.events().len(), before);
    assert_eq!(fx.verify().code, 0);
}

#[test]
fn policy_explain_shows_the_effective_grant_for_a_caller_and_task() {
    let fx = clinic("");
    let explain = |opts: &[&str], cap: &str, target: &str| {
        let mut c = sandbox();
        c.args(["policy", "explain"]).arg(fx.manifest()).args([cap, target]).args(opts);
        c.env_remove("SANDBOX_IDENTITY_TOKEN");
        Run::from_output(c.output().unwrap())
    };
    let r = explain(&["--claim", "role=clinician", "--tier", "api"], "fs.read", "records/p1.txt");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "allow: fs.read `records/p1.txt` (rule fs.grant[0].read:records/**)");
    assert!(lines.contains(&"as: tier api, claim role = clinician"), "{}", r.stdout);
    assert!(r.stdout.contains("fs.read         public/**  records/**"), "{}", r.stdout);
    assert!(
        r.stdout.contains("fs.write        (none)"),
        "interactive-only writes are not granted to api: {}",
        r.stdout
    );

    let r = explain(&["--claim", "role=billing"], "fs.read", "records/p1.txt");
    assert_eq!(r.code, 1);
    assert!(r.stdout.starts_with(
        "deny: fs.read `records/p1.txt` (rule fs.grant[0].read:records/** (when role = clinician: not met))"
    ));

    // With a real token: its claims decide.
    let t = token("ed25519", &claims("dr.rivera", "clinician"));
    let r = explain(&["--identity-token", &t], "fs.write", "notes/x.txt");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("as: tier interactive, verified user dr.rivera"), "{}", r.stdout);
    assert!(!r.stdout.contains(&t));
    let forged = token("other-ed25519", &claims("dr.rivera", "clinician"));
    let r = explain(&["--identity-token", &forged], "fs.read", "records/p1.txt");
    assert_eq!(r.code, 77, "{}", r.stderr);

    // A task manifest narrows what explain shows, and a widening one is refused.
    std::fs::write(fx.path("task.toml"), "version = 1\n[fs]\nread = [\"public/**\"]\n").unwrap();
    let task = fx.path("task.toml");
    let r =
        explain(&["--claim", "role=clinician", "--task-manifest", task.to_str().unwrap()], "fs.read", "records/p1.txt");
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("task manifest sha256:"), "{}", r.stdout);
    std::fs::write(&task, "version = 1\n[fs]\nread = [\"records/**\"]\n").unwrap();
    let r = explain(&["--task-manifest", task.to_str().unwrap()], "fs.read", "public/a.txt");
    assert_eq!(r.code, 77, "records/** is not granted to a caller without the clinician role: {}", r.stderr);
    assert!(r.stderr.contains("`fs.read:records/**` would widen"), "{}", r.stderr);
}

#[test]
fn policy_check_shows_identity_and_conditional_grants_and_checks_the_keys() {
    let check = |manifest: &std::path::Path| {
        Run::from_output(sandbox().args(["policy", "check"]).arg(manifest).output().unwrap())
    };
    let r = check(&common::repo().join("policies/clinic-records.toml"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("identity    issuer https://idp.clinic.example  audience sandbox  required"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("fs.grant[0].read  records/**  (when role = clinician|nurse)"), "{}", r.stdout);
    assert!(r.stdout.contains("fs.grant[1].write  records/notes/**  (when tier = interactive and role = clinician)"));
    // A JWKS that cannot be read or used is found by `policy check`.
    let fx = clinic("");
    std::fs::write(fx.path("jwks.json"), r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).unwrap();
    let r = check(&fx.manifest());
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stderr.contains("JWKS `") && r.stderr.contains("shared-secret (`oct`) key"), "{}", r.stderr);
    std::fs::remove_file(fx.path("jwks.json")).unwrap();
    let r = check(&fx.manifest());
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("jwks.json`: no such file or directory"), "{}", r.stderr);
}
