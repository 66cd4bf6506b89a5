//! Who a run acts for: the identity token verified against the manifest's
//! `[identity]`, or an unverified `--user`; the caller tier and the
//! delegation chain. Decided once, before the tool starts.

use crate::exit::{Code, Failure};
use sandbox_audit::Principal;
use sandbox_identity::{IdentityError, Verifier};
use sandbox_policy::{Caller, IdentitySettings, Jwks, Policy, Tier};
use std::collections::BTreeMap;

/// The outcome: who, as recorded, and as grants see it.
#[derive(Debug, Clone)]
pub struct Established {
    /// `user` on every event.
    pub user: String,
    /// The rest of the identity on every event.
    pub principal: Principal,
    /// Tier and verified claims, for `when` conditions.
    pub caller: Caller,
}

/// What the runner said about who is calling.
#[derive(Debug, Clone)]
pub struct Claimed<'a> {
    /// `--identity-token` or `SANDBOX_IDENTITY_TOKEN`.
    pub token: Option<&'a str>,
    /// `--user`, else the OS user.
    pub user: String,
    /// `--tier`, else interactive with a terminal, api without.
    pub tier: Tier,
    /// `--on-behalf-of`, in order.
    pub delegation: Vec<String>,
}

/// Verifies the token (if any) under `policy`'s `[identity]`. On a refusal
/// the error carries what to record: the token's claimed subject (never
/// verified) or the `--user`/OS user, with `user_verified: false`.
pub fn establish(policy: &Policy, claimed: Claimed<'_>) -> Result<Established, Box<(Established, Failure)>> {
    let unverified = |user: String| Established {
        user,
        principal: Principal {
            user_verified: false,
            claims: BTreeMap::new(),
            tier: claimed.tier.as_str().to_owned(),
            delegation: claimed.delegation.clone(),
            task_policy: None,
        },
        caller: Caller::unverified(claimed.tier),
    };
    let Some(token) = claimed.token else {
        if policy.identity.as_ref().is_some_and(|i| i.required) {
            let f = Failure::new(
                Code::Refused,
                "[identity] required = true: this run needs a valid identity token (--identity-token or SANDBOX_IDENTITY_TOKEN)",
            );
            return Err(Box::new((unverified(claimed.user), f)));
        }
        return Ok(unverified(claimed.user));
    };
    let claimed_user = sandbox_identity::unverified_subject(token).unwrap_or_else(|| "(unreadable token)".into());
    let refuse = |code: Code, why: String| Box::new((unverified(claimed_user.clone()), Failure::new(code, why)));
    let Some(settings) = &policy.identity else {
        return Err(refuse(
            Code::Refused,
            format!(
                "an identity token was given, but manifest `{}` has no [identity] to verify it with",
                policy.source.display()
            ),
        ));
    };
    let verifier = verifier(settings).map_err(|e| refuse(Code::Usage, e))?;
    let verified = match verifier.verify(token) {
        Ok(v) => v,
        Err(IdentityError::Refused(why) | IdentityError::Config(why)) => {
            return Err(refuse(Code::Refused, format!("identity token refused: {why}")));
        }
    };
    let claims = settings
        .claims
        .iter()
        .filter_map(|name| verified.claims.get(name).map(|v| (name.clone(), v.clone())))
        .collect();
    let all: BTreeMap<String, Vec<String>> = verified.claims.keys().map(|k| (k.clone(), verified.values(k))).collect();
    Ok(Established {
        user: verified.subject,
        principal: Principal {
            user_verified: true,
            claims,
            tier: claimed.tier.as_str().to_owned(),
            delegation: claimed.delegation,
            task_policy: None,
        },
        caller: Caller { tier: claimed.tier, claims: all },
    })
}

/// The verifier for `[identity]`: a JWKS file that cannot be read or keys
/// that cannot be used are a usage error naming the file.
pub fn verifier(settings: &IdentitySettings) -> Result<Verifier, String> {
    let (json, source) = match &settings.jwks {
        Jwks::File(path) => {
            let text = read_bounded(path, sandbox_identity::MAX_JWKS_BYTES)
                .map_err(|e| format!("JWKS `{}`: {e}", path.display()))?;
            (text, format!("JWKS `{}`", path.display()))
        }
        Jwks::Inline(json) => (json.clone(), "[[identity.keys]]".to_owned()),
    };
    Verifier::new(&json, &source, &settings.issuer, &settings.audience, &settings.algorithms).map_err(|e| match e {
        IdentityError::Config(m) | IdentityError::Refused(m) => m,
    })
}

/// Reads a text file of at most `max` bytes; never more than `max + 1`
/// bytes are read, whatever the file's size.
fn read_bounded(path: &std::path::Path, max: usize) -> Result<String, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| sandbox_policy::io_reason(&e))?;
    let mut bytes = Vec::new();
    file.take(max as u64 + 1).read_to_end(&mut bytes).map_err(|e| sandbox_policy::io_reason(&e))?;
    if bytes.len() > max {
        return Err(format!("the JWKS is larger than {max} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())
}
