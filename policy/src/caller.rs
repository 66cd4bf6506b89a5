//! Who calls: the `[identity]` settings, the caller of a run (tier and
//! verified claims) and the `when` conditions that limit grants to some
//! callers.
//!
//! A manifest's conditional grants are resolved once, at the start of a
//! run, by [`crate::Policy::for_caller`]: grants whose conditions hold join
//! the ordinary lists, the others are kept only to name the rule that would
//! have allowed a denied call. So a condition costs nothing per call.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// How the run was started, as the runner says (`--tier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// A person at a terminal.
    Interactive,
    /// An agent started by another agent.
    Subagent,
    /// A scheduled or queued job nobody watches.
    Background,
    /// A program calling the runtime.
    Api,
}

impl Tier {
    /// Every tier, in the order they are documented.
    pub const ALL: [Tier; 4] = [Tier::Interactive, Tier::Subagent, Tier::Background, Tier::Api];

    /// The name used in manifests, on the command line and in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Interactive => "interactive",
            Tier::Subagent => "subagent",
            Tier::Background => "background",
            Tier::Api => "api",
        }
    }

    /// Parses a tier name.
    pub fn parse(s: &str) -> Result<Tier, String> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("`{}` is not a tier (interactive, subagent, background, api)", s.escape_debug()))
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a run acts for, as far as grants are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The caller tier.
    pub tier: Tier,
    /// Every claim of a verified identity token, as text (an array claim
    /// has one value per element); empty without a verified token, so a
    /// claim condition never holds for an unverified user.
    pub claims: BTreeMap<String, Vec<String>>,
}

impl Caller {
    /// A caller with no verified claims.
    pub fn unverified(tier: Tier) -> Caller {
        Caller { tier, claims: BTreeMap::new() }
    }
}

/// A grant's `when = { tier = [...], claims = { NAME = [...] } }`: every
/// condition must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct When {
    /// The tiers allowed; empty: any.
    pub tiers: Vec<Tier>,
    /// Claim name and accepted values: the claim must equal one of them
    /// (for an array claim: one of its elements must).
    pub claims: BTreeMap<String, Vec<String>>,
}

impl When {
    /// Whether `caller` meets every condition.
    pub fn holds(&self, caller: &Caller) -> bool {
        (self.tiers.is_empty() || self.tiers.contains(&caller.tier))
            && self.claims.iter().all(|(name, accepted)| {
                caller.claims.get(name).is_some_and(|have| have.iter().any(|v| accepted.contains(v)))
            })
    }
}

impl fmt::Display for When {
    /// `tier = interactive and role = clinician|nurse`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.tiers.is_empty() {
            let t: Vec<&str> = self.tiers.iter().map(|t| t.as_str()).collect();
            parts.push(format!("tier = {}", t.join("|")));
        }
        for (name, values) in &self.claims {
            parts.push(format!("{} = {}", name.escape_debug(), values.join("|").escape_debug()));
        }
        f.write_str(&parts.join(" and "))
    }
}

/// Where the identity provider's public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Jwks {
    /// `jwks = "FILE"`, resolved against the manifest's directory.
    File(PathBuf),
    /// `[[identity.keys]]`: the keys written in the manifest, as a JWKS
    /// JSON document.
    Inline(String),
}

/// The compiled `[identity]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySettings {
    /// The `iss` a token must carry.
    pub issuer: String,
    /// The `aud` a token must carry.
    pub audience: String,
    /// The keys tokens are verified with.
    pub jwks: Jwks,
    /// Accepted signature algorithms (never `none` or HMAC).
    pub algorithms: Vec<String>,
    /// True: a run without a valid token is refused.
    pub required: bool,
    /// Claims copied onto every event.
    pub claims: Vec<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{FsOp, RelPath, Verdict};
    use std::path::Path;

    fn parse(body: &str) -> Result<crate::Policy, String> {
        crate::parse("m.toml", &format!("version = 1\n{body}"), Path::new("/base")).map_err(|e| e.to_string())
    }

    const IDENTITY: &str = "[identity]\nissuer = \"https://idp\"\naudience = \"sandbox\"\n";

    #[test]
    fn identity_settings_compile_and_bad_ones_are_named() {
        let p = parse(&format!("{IDENTITY}jwks = \"keys/jwks.json\"\nrequired = true\nclaims = [\"role\"]\n")).unwrap();
        let i = p.identity.unwrap();
        assert_eq!(i.jwks, Jwks::File(PathBuf::from("/base/keys/jwks.json")));
        assert_eq!(i.algorithms, ["RS256", "ES256", "EdDSA"]);
        assert!(i.required);
        let p =
            parse(&format!("{IDENTITY}[[identity.keys]]\nkty = \"OKP\"\ncrv = \"Ed25519\"\nx = \"abc\"\n")).unwrap();
        let Jwks::Inline(json) = p.identity.unwrap().jwks else { panic!("inline keys") };
        assert_eq!(json, r#"{"keys":[{"crv":"Ed25519","kty":"OKP","x":"abc"}]}"#);
        for (body, want) in [
            ("", "key `identity`: needs the identity provider's public keys"),
            (
                "jwks = \"j\"\nalgorithms = [\"HS256\"]\n",
                "key `identity.algorithms`: `HS256` is a shared-secret algorithm",
            ),
            ("jwks = \"j\"\nalgorithms = [\"none\"]\n", "`none` is not a supported algorithm"),
            ("jwks = \"j\"\nalgorithms = []\n", "must name at least one algorithm"),
            (
                "jwks = \"j\"\n[[identity.keys]]\nkty = \"OKP\"\n",
                "give `jwks` (a file) or `[[identity.keys]]`, not both",
            ),
        ] {
            let err = parse(&format!("{IDENTITY}{body}")).unwrap_err();
            assert!(err.contains(want), "{body}: {err}");
        }
        assert!(
            parse("[identity]\nissuer = \"\"\naudience = \"a\"\njwks = \"j\"\n")
                .unwrap_err()
                .contains("identity.issuer")
        );
    }

    #[test]
    fn when_limits_grants_to_tiers_and_claims() {
        let p = parse(
            "[fs]\nread = [\"public/**\"]\n[[fs.grant]]\nread = [\"records/**\"]\nwhen = { tier = [\"interactive\", \"subagent\"], claims = { role = [\"clinician\", \"nurse\"] } }\n",
        )
        .unwrap();
        let mut clinician = Caller::unverified(Tier::Interactive);
        clinician.claims.insert("role".into(), vec!["admin".into(), "clinician".into()]);
        let path = RelPath::normalise("records/a").unwrap();
        let d = p.for_caller(&clinician);
        assert_eq!(d.fs.decide(FsOp::Read, &path).rule, "fs.grant[0].read:records/**");
        let mut background = clinician.clone();
        background.tier = Tier::Background;
        for other in [Caller::unverified(Tier::Interactive), background] {
            let p = p.for_caller(&other);
            let d = p.fs.decide(FsOp::Read, &path);
            assert_eq!(d.verdict, Verdict::Deny);
            assert_eq!(
                d.rule,
                "fs.grant[0].read:records/** (when tier = interactive|subagent and role = clinician|nurse: not met)"
            );
        }
        for (body, want) in [
            ("[[fs.grant]]\nread = [\"a/**\"]\nwhen = { tier = [\"root\"] }\n", "`root` is not a tier"),
            ("[[fs.grant]]\nread = [\"a/**\"]\nwhen = {}\n", "names no condition"),
            ("[[fs.grant]]\nread = [\"a/**\"]\nwhen = { claims = { role = [] } }\n", "at least one value"),
            ("[[fs.grant]]\nwhen = { tier = [\"api\"] }\n", "grants nothing"),
            ("[[fs.grant]]\nread = [\"**\"]\n", "key `fs.grant.read`: glob `**` grants the whole workspace"),
            ("[[fs.grant]]\nread = [\"/etc/**\"]\n", "is absolute"),
            ("[[http.allow]]\nurl = \"https://a/**\"\nwhen = { tier = [\"x\"] }\n", "key `http.allow.when.tier`"),
        ] {
            let err = parse(body).unwrap_err();
            assert!(err.contains(want), "{body}: {err}");
        }
        let p = parse("[[http.allow]]\nurl = \"https://a.example/**\"\nwhen = { tier = [\"interactive\"] }\n").unwrap();
        assert_eq!(p.for_caller(&Caller::unverified(Tier::Interactive)).http.rules().len(), 1);
        assert!(p.for_caller(&Caller::unverified(Tier::Api)).http.rules().is_empty());
    }
}
