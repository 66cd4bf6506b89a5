//! Verified identity for `sandbox` runs: an identity token (a JWT from the
//! operator's identity provider) checked against the provider's public
//! keys (a JWKS document).
//!
//! What is checked, in order: the token's shape and size; its header's
//! `alg` is one the operator accepts (never `none`, never an HMAC
//! algorithm: a shared secret would let anyone holding it mint identities)
//! and fits the key's type; the key is picked by `kid` (a token without
//! `kid` is accepted only when the set holds exactly one usable key); the
//! signature; then the claims: `iss` and `aud` equal the configured values,
//! `exp` present and not past, `nbf` (when present) not in the future, with
//! at most [`LEEWAY_SECS`] of clock skew, and a non-empty `sub`.
//!
//! The token itself is a credential: no error message contains it, and
//! [`Verified`] keeps only its claims.

pub mod names;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};
use std::str::FromStr;

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;

/// The longest token accepted (real ones are a few KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The largest JWKS document accepted (real ones are a few KiB).
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The most keys a JWKS may hold (real ones hold a handful).
pub const MAX_JWKS_KEYS: usize = 1000;

/// The algorithms accepted when the manifest names none.
pub const DEFAULT_ALGORITHMS: &[&str] = &["RS256", "ES256", "EdDSA"];

/// Why an identity could not be established.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The operator's configuration (the JWKS, the algorithm list) is
    /// unusable.
    #[error("{0}")]
    Config(String),
    /// The token was refused; the text says why (never the token).
    #[error("identity token refused: {0}")]
    Refused(String),
}

fn refused(why: impl Into<String>) -> IdentityError {
    IdentityError::Refused(why.into())
}

/// A key from the JWKS, ready to verify.
struct Key {
    kid: Option<String>,
    /// The algorithms this key may verify: its type's, narrowed by its own
    /// `alg` when the JWKS names one.
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("kid", &self.kid).field("algorithms", &self.algorithms).finish_non_exhaustive()
    }
}

/// Checks identity tokens for one issuer and audience.
#[derive(Debug)]
pub struct Verifier {
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    keys: Vec<Key>,
}

/// A token that verified: its subject and all its claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// `sub`: who the run acts for.
    pub subject: String,
    /// Every claim of the token (including the registered ones).
    pub claims: Map<String, Value>,
}

impl Verified {
    /// The values of `claim` as strings: a string claim gives one, an array
    /// claim its string elements, a number or boolean its text; anything
    /// else none.
    pub fn values(&self, claim: &str) -> Vec<String> {
        match self.claims.get(claim) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(scalar).collect(),
            Some(v) => scalar(v).into_iter().collect(),
            None => Vec::new(),
        }
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses an algorithm name the operator wrote; `none` and HMAC are refused.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    let alg = Algorithm::from_str(name).map_err(|_| {
        format!("`{name}` is not a supported algorithm (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)")
    })?;
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return Err(format!(
            "`{name}` is a shared-secret algorithm; identity tokens must be signed with a private key only the identity provider holds"
        ));
    }
    Ok(alg)
}

fn key_algorithms(jwk: &Jwk) -> Result<Vec<Algorithm>, String> {
    use Algorithm::*;
    Ok(match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![ES256],
            EllipticCurve::P384 => vec![ES384],
            ref other => return Err(format!("an EC key on curve {other:?} is not supported")),
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => vec![EdDSA],
            ref other => return Err(format!("an OKP key on curve {other:?} is not supported")),
        },
        AlgorithmParameters::OctetKey(_) => {
            return Err("a shared-secret (`oct`) key cannot verify identity tokens".into());
        }
        _ => return Err("its key type is not supported".into()),
    })
}

impl Verifier {
    /// A verifier from a JWKS document (JSON text) and the accepted
    /// issuer, audience and algorithm names. `source` names the JWKS in
    /// errors (a file name).
    pub fn new(
        jwks_json: &str,
        source: &str,
        issuer: &str,
        audience: &str,
        algorithms: &[String],
    ) -> Result<Verifier, IdentityError> {
        let cfg = |m: String| IdentityError::Config(format!("{source}: {m}"));
        let algorithms = algorithms.iter().map(|a| parse_algorithm(a)).collect::<Result<Vec<_>, _>>().map_err(cfg)?;
        if algorithms.is_empty() {
            return Err(cfg("no algorithms are accepted".into()));
        }
        if jwks_json.len() > MAX_JWKS_BYTES {
            return Err(cfg(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes")));
        }
        if let Err(m) = no_duplicate_members(jwks_json.as_bytes()) {
            return Err(cfg(format!("not a JWKS document: {m}")));
        }
        let set: JwkSet =
            serde_json::from_str(jwks_json).map_err(|e| cfg(format!("not a JWKS document (a `keys` array): {e}")))?;
        if set.keys.len() > MAX_JWKS_KEYS {
            return Err(cfg(format!("the JWKS holds {} keys, more than the {MAX_JWKS_KEYS} accepted", set.keys.len())));
        }
        let mut kids = std::collections::HashSet::new();
        let mut keys = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            let name = match &jwk.common.key_id {
                Some(kid) => format!("key `{kid}`"),
                None => format!("key {}", i + 1),
            };
            if let Some(usage) = &jwk.common.public_key_use
                && *usage != PublicKeyUse::Signature
            {
                continue; // an encryption key: not for us
            }
            let mut algs = key_algorithms(jwk).map_err(|m| cfg(format!("{name}: {m}")))?;
            if let Some(ka) = jwk.common.key_algorithm {
                let alg = Algorithm::from_str(&ka.to_string())
                    .map_err(|_| cfg(format!("{name}: its `alg` is not a signing algorithm")))?;
                if !algs.contains(&alg) {
                    return Err(cfg(format!("{name}: its `alg` {alg:?} does not fit its key type")));
                }
                algs = vec![alg];
            }
            algs.retain(|a| algorithms.contains(a));
            if algs.is_empty() {
                continue; // no accepted algorithm can use it
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| cfg(format!("{name}: {e}")))?;
            if let Some(kid) = &jwk.common.key_id
                && !kids.insert(kid.as_str())
            {
                return Err(cfg(format!("two keys have the `kid` `{kid}`")));
            }
            keys.push(Key { kid: jwk.common.key_id.clone(), algorithms: algs, key });
        }
        if keys.is_empty() {
            return Err(cfg("no signing key usable with the accepted algorithms".into()));
        }
        Ok(Verifier { issuer: issuer.to_owned(), audience: audience.to_owned(), algorithms, keys })
    }

    /// Verifies `token`.
    pub fn verify(&self, token: &str) -> Result<Verified, IdentityError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(refused("it is empty"));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(refused(format!("it is longer than {MAX_TOKEN_BYTES} bytes")));
        }
        if token.split('.').count() != 3 {
            return Err(refused("it is not a signed JWT (three dot-separated parts)"));
        }
        // JSON lets a member repeat and most parsers keep the last value:
        // a token whose signer saw `"role":"nurse"` must not reach a grant
        // that sees `"role":"clinician"`. Refused anywhere, nested too.
        let mut parts = token.split('.');
        for (what, are) in [("header", "is"), ("claims", "are")] {
            let part = parts.next().unwrap_or_default();
            let Ok(json) = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, part) else {
                return Err(refused(format!("its {what} {are} not base64url")));
            };
            if let Err(m) = no_duplicate_members(&json) {
                return Err(refused(format!("its {what} {are} not acceptable JSON: {m}")));
            }
        }
        let header = decode_header(token).map_err(|e| refused(format!("its header is unreadable ({e})")))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(refused(format!("it is signed with {:?}, which is not accepted", header.alg)));
        }
        if header.crit.as_ref().is_some_and(|c| !c.is_empty()) {
            return Err(refused("its header has `crit` extensions, which are not understood"));
        }
        let key = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid.as_str()))
                .ok_or_else(|| refused(format!("it names key `{}`, which is not in the JWKS", inert(kid))))?,
            None if self.keys.len() == 1 => &self.keys[0],
            None => return Err(refused("it names no key (`kid`) and the JWKS has several")),
        };
        if !key.algorithms.contains(&header.alg) {
            return Err(refused(format!("its algorithm {:?} does not fit the key it names", header.alg)));
        }
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.leeway = LEEWAY_SECS;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = decode::<Map<String, Value>>(token, &key.key, &v).map_err(|e| refused(why(&e, self)))?;
        let claims = data.claims;
        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            _ => return Err(refused("its `sub` is empty or not a string")),
        };
        if subject.chars().any(char::is_control) || subject.len() > 256 {
            return Err(refused("its `sub` has control characters or is longer than 256 bytes"));
        }
        if let Err(m) = names::check(&subject) {
            return Err(refused(format!("its `sub` `{}` {m}", inert(&subject))));
        }
        Ok(Verified { subject, claims })
    }
}

fn why(e: &jsonwebtoken::errors::Error, v: &Verifier) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => {
            "its signature does not verify with the key it names (forged, or signed by another key)".into()
        }
        K::ExpiredSignature => "it has expired (`exp` is past)".into(),
        K::ImmatureSignature => "it is not valid yet (`nbf` is in the future)".into(),
        K::InvalidIssuer => format!("its issuer is not `{}`", v.issuer),
        K::InvalidAudience => format!("its audience is not `{}`", v.audience),
        K::MissingRequiredClaim(c) => format!("it has no `{c}` claim"),
        K::InvalidClaimFormat(c) => format!("its `{c}` claim is malformed"),
        K::InvalidAlgorithm => "its algorithm is not accepted".into(),
        K::Base64(_) | K::Json(_) | K::Utf8(_) | K::InvalidToken => "it is malformed".into(),
        other => format!("it could not be verified ({other:?})"),
    }
}

/// The `sub` a token claims, without verifying anything: only for the
/// record of a refused token (`user` with `user_verified: false`). `None`
/// when the token has no readable string `sub` fit for a log.
pub fn unverified_subject(token: &str) -> Option<String> {
    use base64::Engine as _;
    let token = token.trim();
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    match claims.get("sub") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 256 && !s.chars().any(char::is_control) => {
            Some(s.clone())
        }
        _ => None,
    }
}

/// Checks that `json` is one JSON value in which no object names a member
/// twice (at any depth). Linear in the input; the parser's recursion limit
/// bounds the depth.
pub fn no_duplicate_members(json: &[u8]) -> Result<(), String> {
    use serde::Deserializer as _;
    let mut de = serde_json::Deserializer::from_slice(json);
    de.deserialize_any(NoDuplicates).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

/// A visitor that reads any JSON value and fails on a repeated member.
struct NoDuplicates;

impl<'de> serde::de::DeserializeSeed<'de> for NoDuplicates {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(NoDuplicates)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicates {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(NoDuplicates)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the member `{}` appears twice in one object",
                    inert(&key)
                )));
            }
            map.next_value_seed(NoDuplicates)?;
            seen.insert(key);
        }
        Ok(())
    }
}

/// Token-supplied text for an error message: control characters escaped,
/// at most 64 characters.
fn inert(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_debug).collect();
    if s.chars().count() > 64 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
