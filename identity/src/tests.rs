#![allow(clippy::unwrap_used)]

use super::*;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

const ISS: &str = "https://idp.example";
const AUD: &str = "sandbox";

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}.pem", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn signing(name: &str) -> (EncodingKey, Algorithm) {
    let bytes = pem(name);
    match name {
        "rsa" => (EncodingKey::from_rsa_pem(&bytes).unwrap(), Algorithm::RS256),
        "ec" => (EncodingKey::from_ec_pem(&bytes).unwrap(), Algorithm::ES256),
        _ => (EncodingKey::from_ed_pem(&bytes).unwrap(), Algorithm::EdDSA),
    }
}

/// A JWKS holding the public halves of `keys`, each with `kid` = its name.
fn jwks(keys: &[&str]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|name| {
            let (k, alg) = signing(name);
            let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&k, alg).unwrap()).unwrap();
            jwk["kid"] = json!(name);
            jwk
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "dr.rivera", "exp": now() + 600, "role": "clinician", "groups": ["ward-3", "oncall"]})
}

/// A token signed with `key`, naming `kid` (None: no kid).
fn token(key: &str, kid: Option<&str>, claims: &Value) -> String {
    let (k, alg) = signing(key);
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    encode(&h, claims, &k).unwrap()
}

fn verifier(keys: &[&str]) -> Verifier {
    let algs: Vec<String> = DEFAULT_ALGORITHMS.iter().map(|s| s.to_string()).collect();
    Verifier::new(&jwks(keys), "jwks.json", ISS, AUD, &algs).unwrap()
}

fn refusal(v: &Verifier, token: &str) -> String {
    match v.verify(token) {
        Err(IdentityError::Refused(why)) => why,
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn a_valid_token_of_each_key_type_verifies() {
    let v = verifier(&["rsa", "ec", "ed25519"]);
    for key in ["rsa", "ec", "ed25519"] {
        let got = v.verify(&token(key, Some(key), &claims())).unwrap();
        assert_eq!(got.subject, "dr.rivera");
        assert_eq!(got.values("role"), ["clinician"]);
        assert_eq!(got.values("groups"), ["ward-3", "oncall"]);
        assert!(got.values("missing").is_empty());
    }
}

#[test]
fn expiry_not_before_issuer_and_audience_are_enforced() {
    let v = verifier(&["ed25519"]);
    let with = |k: &str, val: Value| {
        let mut c = claims();
        c[k] = val;
        token("ed25519", Some("ed25519"), &c)
    };
    assert!(refusal(&v, &with("exp", json!(now() - 120))).contains("expired"));
    // Within the 30 s of skew it is still good.
    assert!(v.verify(&with("exp", json!(now() - 10))).is_ok());
    assert!(refusal(&v, &with("nbf", json!(now() + 300))).contains("not valid yet"));
    assert!(v.verify(&with("nbf", json!(now() + 10))).is_ok());
    assert!(refusal(&v, &with("iss", json!("https://evil.example"))).contains("issuer is not `https://idp.example`"));
    assert!(refusal(&v, &with("aud", json!("other-app"))).contains("audience is not `sandbox`"));
    assert!(refusal(&v, &with("sub", json!(""))).contains("`sub` is empty"));
    assert!(refusal(&v, &with("sub", json!("a\u{1b}[31m"))).contains("control characters"));
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert!(refusal(&v, &token("ed25519", Some("ed25519"), &c)).contains("no `exp` claim"));
}

#[test]
fn forged_and_confused_tokens_are_refused() {
    let v = verifier(&["ed25519", "rsa"]);
    // Signed by a key the IdP never published, claiming a published kid.
    assert!(refusal(&v, &token("other-ed25519", Some("ed25519"), &claims())).contains("signature does not verify"));
    // An unknown kid, and no kid with several keys.
    assert!(refusal(&v, &token("ed25519", Some("nope\u{7}"), &claims())).contains("key `nope\\u{7}`, which is not in"));
    assert!(refusal(&v, &token("ed25519", None, &claims())).contains("names no key"));
    // An EdDSA token naming the RSA key: algorithm and key type disagree.
    assert!(refusal(&v, &token("ed25519", Some("rsa"), &claims())).contains("does not fit the key"));
    // alg none, and HS256 with the public key as the secret (the classic
    // key-confusion attack): refused before any signature check.
    let body = token("ed25519", Some("ed25519"), &claims());
    let payload = body.split('.').nth(1).unwrap();
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIiwia2lkIjoiZWQyNTUxOSJ9"; // {"alg":"none","typ":"JWT","kid":"ed25519"}
    assert!(refusal(&v, &format!("{none_header}.{payload}.")).contains("header is unreadable"));
    let hs = encode(
        &Header { kid: Some("rsa".into()), ..Header::new(Algorithm::HS256) },
        &claims(),
        &EncodingKey::from_secret(jwks(&["rsa"]).as_bytes()),
    )
    .unwrap();
    assert!(refusal(&v, &hs).contains("HS256, which is not accepted"));
    // A tampered payload.
    let mut parts: Vec<String> = body.split('.').map(str::to_owned).collect();
    let mut c = claims();
    c["sub"] = json!("admin");
    parts[1] = token("other-ed25519", None, &c).split('.').nth(1).unwrap().to_owned();
    assert!(refusal(&v, &parts.join(".")).contains("signature does not verify"));
    for junk in ["", "abc", "a.b", "a.b.c.d", &"x".repeat(MAX_TOKEN_BYTES + 1)] {
        assert!(v.verify(junk).is_err(), "{junk:?}");
    }
}

#[test]
fn a_single_key_needs_no_kid_and_error_text_never_holds_the_token() {
    let v = verifier(&["ec"]);
    assert!(v.verify(&token("ec", None, &claims())).is_ok());
    let mut c = claims();
    c["exp"] = json!(now() - 3600);
    let t = token("ec", None, &c);
    let e = v.verify(&t).unwrap_err().to_string();
    assert!(!e.contains(&t) && !e.contains(t.split('.').nth(1).unwrap()), "{e}");
}

#[test]
fn bad_configuration_is_named() {
    let algs = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let err = |jwks: &str, a: &[&str]| Verifier::new(jwks, "idp.jwks", ISS, AUD, &algs(a)).unwrap_err().to_string();
    assert!(err(&jwks(&["rsa"]), &["HS256"]).contains("shared-secret algorithm"));
    assert!(err(&jwks(&["rsa"]), &["none"]).contains("`none` is not a supported algorithm"));
    assert!(err(&jwks(&["rsa"]), &[]).contains("no algorithms"));
    assert!(err("{}", &["RS256"]).starts_with("idp.jwks: not a JWKS document"));
    assert!(err(&jwks(&["rsa"]), &["EdDSA"]).contains("no signing key usable"));
    assert!(
        err(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}"#, &["RS256"]).contains("shared-secret (`oct`) key")
    );
    let twice = jwks(&["ed25519", "ed25519"]);
    assert!(err(&twice, &["EdDSA"]).contains("two keys have the `kid` `ed25519`"));
    // A key whose own alg restricts it: an ES256-only set refuses RS256 tokens.
    let v = Verifier::new(&jwks(&["ec", "rsa"]), "j", ISS, AUD, &algs(&["ES256"])).unwrap();
    assert!(refusal(&v, &token("rsa", Some("rsa"), &claims())).contains("RS256, which is not accepted"));
}

/// A token over exactly this header and payload text, signed with `key`.
fn raw_token(key: &str, header: &str, payload: &str) -> String {
    use base64::Engine as _;
    let (k, alg) = signing(key);
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let message = format!("{}.{}", b64(header), b64(payload));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &k, alg).unwrap();
    format!("{message}.{sig}")
}

#[test]
fn a_repeated_member_anywhere_is_refused() {
    let v = verifier(&["ed25519"]);
    let exp = now() + 600;
    let header = r#"{"alg":"EdDSA","typ":"JWT","kid":"ed25519"}"#;
    let body = |extra: &str| format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"dr.rivera","exp":{exp}{extra}}}"#);
    // The control: the same construction without a repeat verifies.
    let ok = raw_token("ed25519", header, &body(r#","role":"clinician""#));
    assert_eq!(v.verify(&ok).unwrap().values("role"), ["clinician"]);
    for (what, h, p) in [
        ("custom claim", header.to_owned(), body(r#","role":"nurse","role":"clinician""#)),
        ("escaped spelling", header.to_owned(), body(r#","role":"nurse","r\u006fle":"clinician""#)),
        ("nested", header.to_owned(), body(r#","ext":{"a":[{"x":1,"x":2}]}"#)),
        ("registered", header.to_owned(), body(r#","sub":"someone.else""#)),
        ("header", r#"{"alg":"EdDSA","kid":"other","kid":"ed25519"}"#.to_owned(), body("")),
    ] {
        let why = refusal(&v, &raw_token("ed25519", &h, &p));
        assert!(why.contains("appears twice"), "{what}: {why}");
    }
}

#[test]
fn the_jwks_is_bounded_and_loads_in_linear_time() {
    let algs: Vec<String> = DEFAULT_ALGORITHMS.iter().map(|s| s.to_string()).collect();
    let one: Value = serde_json::from_str(&jwks(&["ed25519"])).unwrap();
    let key = one["keys"][0].clone();
    let many = |n: usize| {
        let keys: Vec<Value> = (0..n)
            .map(|i| {
                let mut k = key.clone();
                k["kid"] = json!(format!("k{i}"));
                k
            })
            .collect();
        json!({ "keys": keys }).to_string()
    };
    assert!(Verifier::new(&many(MAX_JWKS_KEYS), "jwks.json", ISS, AUD, &algs).is_ok());
    let e = Verifier::new(&many(MAX_JWKS_KEYS + 1), "jwks.json", ISS, AUD, &algs).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("jwks.json: the JWKS holds {} keys, more than the {MAX_JWKS_KEYS} accepted", MAX_JWKS_KEYS + 1)
    );
    let padded = format!("{}{}", jwks(&["ed25519"]), " ".repeat(MAX_JWKS_BYTES));
    let e = Verifier::new(&padded, "jwks.json", ISS, AUD, &algs).unwrap_err().to_string();
    assert_eq!(e, format!("jwks.json: the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
    let twice = r#"{"keys":[],"keys":[]}"#;
    let e = Verifier::new(twice, "jwks.json", ISS, AUD, &algs).unwrap_err().to_string();
    assert!(e.contains("`keys` appears twice"), "{e}");
}
