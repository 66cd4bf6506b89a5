//! The reviewers file: who may vote (reviewers, with roles) and who may
//! submit (runners), each with a token stored only as its `sha256:` hash.
//!
//! ```toml
//! [[reviewer]]
//! name = "alice"
//! roles = ["sre"]
//! token_sha256 = "sha256:..."
//!
//! [[runner]]
//! name = "ci-runner-1"
//! token_sha256 = "sha256:..."
//! ```
//!
//! Parsed strictly, like a manifest: unknown keys, duplicate keys, wrong
//! types, malformed hashes, duplicate names and a token shared by two
//! entries are refused with one line naming the file, the line and the key.
//! Tokens are matched by hashing the presented token and comparing the
//! digest with every stored one in constant time.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use subtle::ConstantTimeEq;
use toml::Spanned;

/// The longest reviewer or runner name accepted.
const MAX_NAME: usize = 64;

/// A reviewers file that could not be read, parsed or checked. Displays as
/// one line: `FILE:LINE: key `KEY`: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as the operator named it.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key, when known (`reviewer.token_sha256`).
    pub key: Option<String>,
    /// What is wrong, lowercase, no final period.
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// One line; control characters are shown escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", printable(&self.file))?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        f.write_str(": ")?;
        if let Some(k) = &self.key {
            write!(f, "key `{}`: ", printable(k))?;
        }
        f.write_str(&printable(&self.message))
    }
}

impl std::error::Error for ConfigError {}

/// Text with control characters escaped (`\u{1b}`).
pub(crate) fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    reviewer: Vec<Spanned<RawReviewer>>,
    #[serde(default)]
    runner: Vec<Spanned<RawRunner>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReviewer {
    name: Spanned<String>,
    #[serde(default)]
    roles: Vec<Spanned<String>>,
    token_sha256: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunner {
    name: Spanned<String>,
    token_sha256: Spanned<String>,
}

/// A reviewer: a name (shared with the namespace of task users), roles, and
/// the digest of their token.
#[derive(Clone, PartialEq, Eq)]
pub struct Reviewer {
    /// The name votes are recorded under.
    pub name: String,
    /// Roles, for `require = { role = ... }`.
    pub roles: Vec<String>,
    /// The name's canonical forms ([`sandbox_identity::names::forms`]).
    forms: [String; 2],
    digest: [u8; 32],
}

impl fmt::Debug for Reviewer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reviewer").field("name", &self.name).field("roles", &self.roles).finish_non_exhaustive()
    }
}

impl Reviewer {
    /// A reviewer whose token hashes to `token_sha256` (`sha256:` + 64 hex).
    pub fn new(name: &str, roles: &[&str], token_sha256: &str) -> Option<Reviewer> {
        Some(Reviewer {
            name: name.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            forms: sandbox_identity::names::forms(name),
            digest: parse_hash(token_sha256).ok()?,
        })
    }

    /// Whether `name` is this reviewer's name in another spelling (case,
    /// width, look-alike letters), or the name itself.
    pub fn is(&self, name: &str) -> bool {
        self.name == name || sandbox_identity::names::same_forms(&self.forms, name)
    }

    /// Whether this reviewer holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// A runner: a host that submits requests.
#[derive(Clone, PartialEq, Eq)]
pub struct Runner {
    /// The name requests are recorded under.
    pub name: String,
    digest: [u8; 32],
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Runner {
    /// A runner whose token hashes to `token_sha256`.
    pub fn new(name: &str, token_sha256: &str) -> Option<Runner> {
        Some(Runner { name: name.to_owned(), digest: parse_hash(token_sha256).ok()? })
    }
}

/// Everyone the service knows: reviewers and runners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    reviewers: Vec<Reviewer>,
    runners: Vec<Runner>,
}

impl Directory {
    /// A directory of these reviewers and runners (names are assumed unique;
    /// [`load`] checks it for a file).
    pub fn new(reviewers: Vec<Reviewer>, runners: Vec<Runner>) -> Directory {
        Directory { reviewers, runners }
    }

    /// All reviewers, in file order.
    pub fn reviewers(&self) -> &[Reviewer] {
        &self.reviewers
    }

    /// All runners, in file order.
    pub fn runners(&self) -> &[Runner] {
        &self.runners
    }

    /// The reviewer named `name`, in any spelling of the name (see
    /// [`Reviewer::is`]).
    pub fn reviewer(&self, name: &str) -> Option<&Reviewer> {
        self.reviewers.iter().find(|r| r.name == name).or_else(|| self.reviewers.iter().find(|r| r.is(name)))
    }

    /// The reviewer whose token this is. Every stored digest is compared,
    /// in constant time, whether or not one matched before.
    pub fn reviewer_by_token(&self, token: &str) -> Option<&Reviewer> {
        let digest = digest(token);
        let mut found = None;
        for r in &self.reviewers {
            if bool::from(r.digest.ct_eq(&digest)) {
                found = Some(r);
            }
        }
        found
    }

    /// The runner whose token this is (constant time, as for reviewers).
    pub fn runner_by_token(&self, token: &str) -> Option<&Runner> {
        let digest = digest(token);
        let mut found = None;
        for r in &self.runners {
            if bool::from(r.digest.ct_eq(&digest)) {
                found = Some(r);
            }
        }
        found
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Parses `sha256:` + 64 lowercase or uppercase hex digits.
fn parse_hash(s: &str) -> Result<[u8; 32], &'static str> {
    let Some(hex_part) = s.strip_prefix("sha256:") else {
        return Err("must be `sha256:` followed by 64 hex digits (see `sandbox approvals token`)");
    };
    let mut out = [0u8; 32];
    match hex::decode_to_slice(hex_part, &mut out) {
        Ok(()) => Ok(out),
        Err(_) => Err("must be `sha256:` followed by 64 hex digits (see `sandbox approvals token`)"),
    }
}

/// Why a name is not acceptable, if it is not.
pub(crate) fn bad_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if name.chars().count() > MAX_NAME {
        Some("must be at most 64 characters")
    } else if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Some("must not contain spaces or control characters")
    } else if sandbox_identity::names::check(name).is_err() {
        Some("must not mix scripts (such as Latin and Cyrillic letters) or contain invisible characters")
    } else {
        None
    }
}

/// Reads and checks a reviewers file.
pub fn load(path: &Path) -> Result<Directory, ConfigError> {
    let file = path.display().to_string();
    let fail = |message: String| ConfigError { file: file.clone(), line: None, key: None, message };
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read the reviewers file: {}", io_reason(&e))))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| fail(format!("not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to())))?;
    parse(&file, &text)
}

/// An I/O error's reason without the OS error number.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s.to_lowercase(),
    }
}

/// Parses and checks the text of a reviewers file named `file`.
pub fn parse(file: &str, text: &str) -> Result<Directory, ConfigError> {
    let err = |span: Range<usize>, key: &str, message: &str| ConfigError {
        file: file.to_owned(),
        line: Some(line_of(text, span.start)),
        key: Some(key.to_owned()),
        message: message.to_owned(),
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| from_toml(file, text, &e))?;
    let mut digests: Vec<[u8; 32]> = Vec::new();
    let mut check_digest = |h: &Spanned<String>, key: &str| -> Result<[u8; 32], ConfigError> {
        let d = parse_hash(h.get_ref()).map_err(|m| err(h.span(), key, m))?;
        if digests.contains(&d) {
            return Err(err(h.span(), key, "the same token is used twice; give each reviewer and runner its own"));
        }
        digests.push(d);
        Ok(d)
    };
    let mut reviewers: Vec<Reviewer> = Vec::new();
    for r in raw.reviewer {
        let r = r.into_inner();
        let name = r.name.get_ref();
        if let Some(m) = bad_name(name) {
            return Err(err(r.name.span(), "reviewer.name", m));
        }
        if reviewers.iter().any(|x| &x.name == name) {
            return Err(err(r.name.span(), "reviewer.name", &format!("duplicate reviewer `{name}`")));
        }
        let forms = sandbox_identity::names::forms(name);
        if let Some(x) = reviewers.iter().find(|x| x.is(name)) {
            return Err(err(
                r.name.span(),
                "reviewer.name",
                &format!(
                    "reviewer `{name}` is another spelling of reviewer `{}`: names must differ in more than case or look-alike letters",
                    x.name
                ),
            ));
        }
        let mut roles: Vec<String> = Vec::new();
        for role in &r.roles {
            if let Some(m) = bad_name(role.get_ref()) {
                return Err(err(role.span(), "reviewer.roles", m));
            }
            if roles.contains(role.get_ref()) {
                return Err(err(role.span(), "reviewer.roles", &format!("duplicate role `{}`", role.get_ref())));
            }
            roles.push(role.get_ref().clone());
        }
        let digest = check_digest(&r.token_sha256, "reviewer.token_sha256")?;
        reviewers.push(Reviewer { name: name.clone(), roles, forms, digest });
    }
    let mut runners: Vec<Runner> = Vec::new();
    for r in raw.runner {
        let r = r.into_inner();
        let name = r.name.get_ref();
        if let Some(m) = bad_name(name) {
            return Err(err(r.name.span(), "runner.name", m));
        }
        if runners.iter().any(|x| &x.name == name) {
            return Err(err(r.name.span(), "runner.name", &format!("duplicate runner `{name}`")));
        }
        let digest = check_digest(&r.token_sha256, "runner.token_sha256")?;
        runners.push(Runner { name: name.clone(), digest });
    }
    if reviewers.is_empty() {
        return Err(ConfigError {
            file: file.to_owned(),
            line: None,
            key: Some("reviewer".into()),
            message: "no `[[reviewer]]`: the service needs at least one reviewer".into(),
        });
    }
    if runners.is_empty() {
        return Err(ConfigError {
            file: file.to_owned(),
            line: None,
            key: Some("runner".into()),
            message: "no `[[runner]]`: the service needs at least one runner to submit requests".into(),
        });
    }
    Ok(Directory { reviewers, runners })
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// The dotted key at a byte offset: the key on that line under the nearest
/// table header above it.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[start..end].trim();
    let header = |l: &str| -> Option<String> {
        let l = l.trim();
        let inner = l
            .strip_prefix("[[")
            .and_then(|x| x.split("]]").next())
            .or_else(|| l.strip_prefix('[').and_then(|x| x.split(']').next()))?;
        Some(inner.trim().to_owned())
    };
    if line.starts_with('[') {
        return header(line);
    }
    let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_owned()).filter(|k| !k.is_empty());
    let table =
        text[..start].lines().rev().find_map(|l| if l.trim_start().starts_with('[') { header(l) } else { None });
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}

fn from_toml(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let span = e.span();
    let mut message = e.message().trim().replace('\n', " ");
    for (from, to) in [
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected a table"),
        ("invalid type: sequence", "invalid type: array"),
        ("invalid type: map", "invalid type: table"),
    ] {
        message = message.replace(from, to);
    }
    if let Some(i) = message.find("expected struct Raw") {
        message.truncate(i);
        message.push_str("expected a table");
    }
    let mut key = span.clone().and_then(|s| key_at(text, s.start));
    if let Some(rest) = message.strip_prefix("unknown field") {
        message = format!("unknown key{rest}");
    } else if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default().to_owned();
        key = Some(match key {
            Some(table) if table == "reviewer" || table == "runner" => format!("{table}.{name}"),
            _ => name.clone(),
        });
        message = format!("missing key `{name}`");
    }
    ConfigError { file: file.to_owned(), line: span.as_ref().map(|s| line_of(text, s.start)), key, message }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hash(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn file(body: &str) -> Result<Directory, ConfigError> {
        parse("r.toml", body)
    }

    fn ok_file() -> String {
        format!(
            "[[reviewer]]\nname = \"alice\"\nroles = [\"sre\"]\ntoken_sha256 = \"{}\"\n\n\
             [[runner]]\nname = \"ci\"\ntoken_sha256 = \"{}\"\n",
            crate::token_hash("alice-token"),
            crate::token_hash("runner-token")
        )
    }

    #[test]
    fn parses_and_finds_tokens() {
        let d = file(&ok_file()).unwrap();
        assert_eq!(d.reviewers().len(), 1);
        assert_eq!(d.reviewer_by_token("alice-token").unwrap().name, "alice");
        assert!(d.reviewer_by_token("runner-token").is_none());
        assert_eq!(d.runner_by_token("runner-token").unwrap().name, "ci");
        assert!(d.runner_by_token("alice-token").is_none());
        assert!(d.reviewer_by_token("").is_none());
        assert!(d.reviewer("alice").unwrap().has_role("sre"));
    }

    #[test]
    fn debug_hides_digests() {
        let d = file(&ok_file()).unwrap();
        let text = format!("{d:?}");
        assert!(!text.contains(&crate::token_hash("alice-token")[7..]), "{text}");
        assert!(!text.contains("digest"), "{text}");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = file(&format!("{}\n[[runner]]\nname = \"x\"\ntoken = \"y\"\n", ok_file())).unwrap_err();
        assert_eq!(e.line, Some(12), "{e}");
        assert_eq!(e.key.as_deref(), Some("runner.token"), "{e}");
        assert!(e.to_string().starts_with("r.toml:12: key `runner.token`: unknown key `token`"), "{e}");
    }

    #[test]
    fn malformed_hash() {
        let e = file("[[reviewer]]\nname = \"a\"\ntoken_sha256 = \"sha256:abc\"\n").unwrap_err();
        assert_eq!(e.to_string().split(": must").next().unwrap(), "r.toml:3: key `reviewer.token_sha256`");
        let e = file(&format!("[[reviewer]]\nname = \"a\"\ntoken_sha256 = \"{}\"\n", &hash('a')[7..])).unwrap_err();
        assert_eq!(e.line, Some(3));
        let e = file(&format!("[[reviewer]]\nname = \"a\"\ntoken_sha256 = \"{}\"\n", hash('g'))).unwrap_err();
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn duplicates_refused() {
        let body = format!(
            "[[reviewer]]\nname = \"a\"\ntoken_sha256 = \"{}\"\n[[reviewer]]\nname = \"a\"\ntoken_sha256 = \"{}\"\n",
            hash('a'),
            hash('b')
        );
        let e = file(&body).unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(5), Some("reviewer.name")), "{e}");
        assert!(e.message.contains("duplicate reviewer `a`"), "{e}");

        let body = format!(
            "[[reviewer]]\nname = \"a\"\ntoken_sha256 = \"{}\"\n[[runner]]\nname = \"r\"\ntoken_sha256 = \"{}\"\n",
            hash('a'),
            hash('a')
        );
        let e = file(&body).unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(6), Some("runner.token_sha256")), "{e}");

        let e = file("[[reviewer]]\nname = \"a\"\nname = \"b\"\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("duplicate key"), "{e}");

        let body = format!("[[reviewer]]\nname = \"a\"\nroles = [\"x\", \"x\"]\ntoken_sha256 = \"{}\"\n", hash('a'));
        let e = file(&body).unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("reviewer.roles")), "{e}");
    }

    #[test]
    fn missing_parts() {
        let e = file("[[reviewer]]\nname = \"a\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("reviewer.token_sha256"), "{e}");
        assert_eq!(e.message, "missing key `token_sha256`");
        let e = file("").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("reviewer"), "{e}");
        let e = file(&format!("[[reviewer]]\nname = \"a\"\ntoken_sha256 = \"{}\"\n", hash('a'))).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("runner"), "{e}");
        let e = file(&format!("[[reviewer]]\nname = \"a b\"\ntoken_sha256 = \"{}\"\n", hash('a'))).unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("reviewer.name")), "{e}");
    }

    #[test]
    fn control_characters_escaped() {
        let e = file("[[reviewer]]\n\"na\\u001bme\" = 1\n").unwrap_err();
        assert!(!e.to_string().contains('\u{1b}'), "{e}");
    }
}
