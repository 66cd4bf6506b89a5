//! Identity inputs under abuse, through the real binary: a token that
//! repeats a claim, a subject disguised with look-alike letters, and a
//! JWKS too large to load.
#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine as _;
use common::{Fixture, Run, guest, label, sandbox};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

const ISS: &str = "https://idp.example";
const AUD: &str = "sandbox";

fn key() -> EncodingKey {
    let pem = std::fs::read(common::repo().join("identity/tests/keys/ed25519.pem")).unwrap();
    EncodingKey::from_ed_pem(&pem).unwrap()
}

fn jwk() -> Value {
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key(), Algorithm::EdDSA).unwrap()).unwrap();
    jwk["kid"] = json!("idp-1");
    jwk
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A token the provider signed over exactly this claims text (so that it
/// can say what a serializer never would: a member twice).
fn token_over(claims: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let message = format!("{}.{}", b64(r#"{"alg":"EdDSA","typ":"JWT","kid":"idp-1"}"#), b64(claims));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key(), Algorithm::EdDSA).unwrap();
    format!("{message}.{sig}")
}

fn claims(sub: &str, extra: &str) -> String {
    format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"{sub}","exp":{}{extra}}}"#, now() + 600)
}

/// `records/**` only for clinicians.
fn clinic(jwks: &str) -> Fixture {
    let fx = Fixture::new(
        r#"
[identity]
issuer = "https://idp.example"
audience = "sandbox"
jwks = "jwks.json"
required = true
claims = ["role"]

[fs]
read = ["public/**"]

[[fs.grant]]
read = ["records/**"]
when = { claims = { role = ["clinician"] } }
"#,
    );
    std::fs::write(fx.path("jwks.json"), jwks).unwrap();
    fx.file("public/a.txt", "public\n").file("records/p1.txt", "chart of patient 1\n");
    fx
}

fn one_key() -> String {
    json!({ "keys": [jwk()] }).to_string()
}

fn run(fx: &Fixture, token: &str) -> Run {
    let mut c = sandbox();
    c.arg("run").arg(guest("probe")).arg("--manifest").arg(fx.manifest()).args(["--", "read", "records/p1.txt"]);
    c.env("SANDBOX_IDENTITY_TOKEN", token);
    Run::from_output(c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).output().unwrap())
}

#[test]
fn a_token_that_repeats_a_claim_is_refused() {
    let fx = clinic(&one_key());
    // The control: the same construction, said once, reads the chart.
    let r = run(&fx, &token_over(&claims("dr.rivera", r#","role":"clinician""#)));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.line(&label(&["read", "records/p1.txt"])).starts_with("ok"), "{}", r.stdout);

    // A nurse's token whose role is said twice, the last time as clinician;
    // nested repeats and repeats in other spellings are refused the same way.
    for (what, extra) in [
        ("custom claim", r#","role":"nurse","role":"clinician""#),
        ("escaped spelling", r#","role":"nurse","r\u006fle":"clinician""#),
        ("nested", r#","role":"clinician","ext":{"ward":{"id":1,"id":2}}"#),
    ] {
        let fx = clinic(&one_key());
        let r = run(&fx, &token_over(&claims("nurse.jo", extra)));
        assert_eq!(r.code, 77, "{what}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{what}: the tool must not run: {}", r.stdout);
        assert_eq!(r.stderr.lines().count(), 1, "{what}: {}", r.stderr);
        assert!(
            r.stderr.contains("identity token refused: its claims are not acceptable JSON")
                && r.stderr.contains("appears twice"),
            "{what}: {}",
            r.stderr
        );
        let end = fx.events().pop().unwrap();
        assert_eq!((end["status"].as_str(), end["user_verified"].as_bool()), (Some("refused"), Some(false)));
    }
}

#[test]
fn a_subject_that_mixes_scripts_is_refused() {
    let fx = clinic(&one_key());
    // `dr.rivera` with a Cyrillic `е`: signed, valid, and a disguise.
    let r = run(&fx, &token_over(&claims("dr.riv\u{435}ra", r#","role":"clinician""#)));
    assert_eq!(r.code, 77, "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(r.stderr.contains("its `sub` `dr.riv\u{435}ra` mixes letters of different scripts"), "{}", r.stderr);
}

#[test]
fn an_oversized_jwks_is_refused_with_one_line() {
    let token = token_over(&claims("dr.rivera", r#","role":"clinician""#));
    // More keys than the bound (each one usable, each with its own kid).
    let keys: Vec<Value> = (0..=sandbox_identity::MAX_JWKS_KEYS)
        .map(|i| {
            let mut k = jwk();
            k["kid"] = json!(if i == 0 { "idp-1".to_owned() } else { format!("k{i}") });
            k
        })
        .collect();
    let fx = clinic(&json!({ "keys": keys }).to_string());
    let r = run(&fx, &token);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    let want = format!(
        "holds {} keys, more than the {} accepted",
        sandbox_identity::MAX_JWKS_KEYS + 1,
        sandbox_identity::MAX_JWKS_KEYS
    );
    assert!(r.stderr.contains("jwks.json") && r.stderr.contains(&want), "{}", r.stderr);

    // More bytes than the bound: refused before it is parsed.
    let padded = format!("{}{}", one_key(), " ".repeat(sandbox_identity::MAX_JWKS_BYTES));
    let fx = clinic(&padded);
    let r = run(&fx, &token);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("jwks.json") && r.stderr.contains("larger than 1048576 bytes"), "{}", r.stderr);

    // A JWKS that names `keys` twice is not one.
    let fx = clinic(&format!(r#"{{"keys":[],"keys":[{}]}}"#, jwk()));
    let r = run(&fx, &token);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("`keys` appears twice"), "{}", r.stderr);
}
