//! Manifest format version 1: the raw TOML shape, parsed strictly, and its
//! compilation into a [`Policy`].
//!
//! Parsing refuses unknown keys, duplicate keys and wrong types; compiling
//! refuses values that parse but make no sense (a malformed glob, a grant of
//! the whole workspace without `fs.allow_broad`, a zero limit). Every error
//! is one line naming the file, the line and the key.

use crate::caller::{IdentitySettings, Jwks, Tier, When};
use crate::fs::{FsGrant, FsPolicy, GlobList, broad_globs};
use crate::http::{HttpPolicy, RuleSpec, compile_rule, parse_cidr};
use crate::process::{ProcessPolicy, ProcessRule, RuleSpec as ProcessSpec};
use crate::secrets::{SecretSource, SecretValues, Template};
use crate::{ApprovalVia, AuditSettings, Limits, Policy, RedactSettings, Require, Retention, Sink, SinkTarget, Writes};
use sandbox_redact::{ConfigError, MAX_PATTERNS, Pattern, Redactor};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The manifest format this version reads.
pub const MANIFEST_VERSION: i64 = 1;

/// Upper bounds that catch typos (`memory = "128 GiB"`) before they matter.
const MIN_MEMORY: u64 = 1 << 20;
const MAX_MEMORY: u64 = 4 << 30;
const MAX_OUTPUT: u64 = 1 << 30;
/// `[process] memory`: a program's address space (RLIMIT_AS).
const MIN_PROGRAM_MEMORY: u64 = 16 << 20;
const MAX_PROGRAM_MEMORY: u64 = 1 << 40;
const MAX_TIME: (Duration, &str) = (Duration::from_secs(24 * 3600), "24h");
const MAX_APPROVAL_TIMEOUT: (Duration, &str) = (Duration::from_secs(7 * 24 * 3600), "7 days");
const MAX_HTTP_TIMEOUT: (Duration, &str) = (Duration::from_secs(3600), "1h");
const MAX_RETENTION: Duration = Duration::from_secs(100 * 31_557_600);
const MAX_CHECKPOINT_EVERY: u64 = 10_000_000;
const MIN_ROTATE: u64 = 1 << 10;
const MAX_ROTATE: u64 = 1 << 40;

/// A manifest that could not be read, parsed or compiled. Displays as one
/// line: `FILE:LINE: key `KEY`: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The manifest file as the operator named it.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key, when known (`fs.read`, `limits.memory`).
    pub key: Option<String>,
    /// What is wrong, lowercase, no final period.
    pub message: String,
}

impl fmt::Display for ManifestError {
    /// One line; control characters (from a hostile file or key) are shown
    /// escaped, never sent to the terminal.
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

impl std::error::Error for ManifestError {}

/// Text with control characters escaped (`\u{1b}`).
fn printable(s: &str) -> String {
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
struct RawManifest {
    version: Spanned<i64>,
    name: Option<Spanned<String>>,
    description: Option<Spanned<String>>,
    workspace: Option<RawWorkspace>,
    fs: Option<RawFs>,
    approval: Option<RawApproval>,
    limits: Option<RawLimits>,
    audit: Option<RawAudit>,
    http: Option<RawHttp>,
    process: Option<RawProcess>,
    redact: Option<RawRedact>,
    identity: Option<RawIdentity>,
    secrets: Option<BTreeMap<String, Spanned<RawSecret>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    env: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    issuer: Spanned<String>,
    audience: Spanned<String>,
    jwks: Option<Spanned<String>>,
    #[serde(default)]
    keys: Vec<Spanned<toml::Table>>,
    algorithms: Option<Vec<Spanned<String>>>,
    required: Option<bool>,
    #[serde(default)]
    claims: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWhen {
    tier: Option<Vec<Spanned<String>>>,
    claims: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFsGrant {
    #[serde(default)]
    read: Vec<Spanned<String>>,
    #[serde(default)]
    write: Vec<Spanned<String>>,
    #[serde(default)]
    auto_approve: Vec<Spanned<String>>,
    when: Option<Spanned<RawWhen>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProcess {
    #[serde(default)]
    allow: Vec<RawProcessRule>,
    memory: Option<Spanned<Size>>,
    allow_unstaged_writes: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcessRule {
    program: Spanned<String>,
    path: Spanned<String>,
    #[serde(default)]
    args: Vec<Spanned<String>>,
    #[serde(default)]
    deny_args: Vec<Spanned<String>>,
    #[serde(default)]
    env: Vec<Spanned<String>>,
    approval: Option<Spanned<String>>,
    cwd: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    #[serde(default, rename = "match")]
    match_examples: Vec<Spanned<String>>,
    #[serde(default)]
    not_match: Vec<Spanned<String>>,
    when: Option<Spanned<RawWhen>>,
    secret_env: Option<BTreeMap<String, Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    allow: Vec<RawHttpRule>,
    #[serde(default)]
    allow_private: Vec<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    ca_certs: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpRule {
    url: Spanned<String>,
    methods: Option<Spanned<Vec<Spanned<String>>>>,
    approval: Option<Spanned<String>>,
    query: Option<bool>,
    when: Option<Spanned<RawWhen>>,
    headers: Option<BTreeMap<String, Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkspace {
    root: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFs {
    #[serde(default)]
    read: Vec<Spanned<String>>,
    #[serde(default)]
    write: Vec<Spanned<String>>,
    #[serde(default)]
    auto_approve: Vec<Spanned<String>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
    #[serde(default)]
    allow_broad: Vec<Spanned<String>>,
    #[serde(default)]
    grant: Vec<RawFsGrant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApproval {
    via: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    writes: Option<Spanned<String>>,
    require: Option<Spanned<RawRequire>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequire {
    any: Option<bool>,
    all: Option<Vec<String>>,
    min: Option<i64>,
    role: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory: Option<Spanned<Size>>,
    time: Option<Spanned<String>>,
    calls: Option<Spanned<i64>>,
    output: Option<Spanned<Size>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: Option<Spanned<String>>,
    signing_key: Option<Spanned<String>>,
    checkpoints: Option<Spanned<String>>,
    checkpoint_every: Option<Spanned<i64>>,
    retention: Option<Spanned<String>>,
    rotate: Option<Spanned<Size>>,
    #[serde(default)]
    sink: Vec<RawSink>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedact {
    outputs: Option<bool>,
    detectors: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    patterns: Vec<Spanned<RawPattern>>,
    always: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPattern {
    name: Spanned<String>,
    regex: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    name: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
}

/// A size: an integer number of bytes or a string with a unit (`"1 MiB"`),
/// with the text the operator wrote.
struct Size(u64, String);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: bytes as an integer or a string such as \"128 MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v).map(|n| Size(n, v.to_string())).map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v, v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse::<bytesize::ByteSize>()
                    .map(|b| Size(b.as_u64(), v.to_owned()))
                    .map_err(|_| E::custom(format!("`{v}` is not a size; write for example \"128 MiB\"")))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses and compiles a manifest. `file` names it in errors; `text` is
/// its content; `base` is the directory relative paths in it refer to.
pub fn parse(file: &str, text: &str, base: &Path) -> Result<Policy, ManifestError> {
    let raw: RawManifest = toml::from_str(text).map_err(|e| from_toml(file, text, &e))?;
    Compiler { file, text, base }.compile(raw, text.as_bytes())
}

/// Reads a manifest file and compiles it.
pub fn load(path: &Path) -> Result<Policy, ManifestError> {
    let (file, text, base) = read(path)?;
    parse(&file, &text, &base)
}

/// Reads a manifest file: its name as given, its text, and the directory
/// its relative paths start from.
pub(crate) fn read(path: &Path) -> Result<(String, String, PathBuf), ManifestError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ManifestError {
        file: file.clone(),
        line: None,
        key: None,
        message: format!("cannot read the manifest: {}", crate::io_reason(&e)),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| ManifestError {
        file: file.clone(),
        line: None,
        key: None,
        message: format!("not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()),
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
    Ok((file, text, base))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// The dotted key at a byte offset: the key on that line (`read = ...`)
/// under the nearest table header above it.
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
    let key_of = |l: &str| -> Option<String> {
        let (k, _) = l.split_once('=')?;
        let k = k.trim().trim_matches('"');
        (!k.is_empty()).then(|| k.to_owned())
    };
    // A line inside a multi-line array belongs to the key that opened it.
    let key = key_of(line).or_else(|| {
        text[..start]
            .lines()
            .rev()
            .map(str::trim)
            .take_while(|l| !l.starts_with('['))
            .find(|l| l.contains('='))
            .and_then(key_of)
    });
    let table =
        text[..start].lines().rev().find_map(|l| if l.trim_start().starts_with('[') { header(l) } else { None });
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}

/// Serde's words for types, in TOML's words.
const TYPE_WORDS: &[(&str, &str)] = &[
    ("expected i64", "expected an integer"),
    ("expected u64", "expected an integer"),
    ("expected a sequence", "expected an array"),
    ("expected a map", "expected a table"),
    ("invalid type: sequence", "invalid type: array"),
    ("invalid type: map", "invalid type: table"),
    (" as i128", ""),
];

fn from_toml(file: &str, text: &str, e: &toml::de::Error) -> ManifestError {
    let span = e.span();
    let mut message = e.message().trim().replace('\n', " ");
    for (from, to) in TYPE_WORDS {
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
        // The span of a missing key is its table; name the key itself.
        let name = rest.split('`').next().unwrap_or_default().to_owned();
        let is_table =
            |k: &String| text.lines().any(|l| l.trim() == format!("[{k}]") || l.trim() == format!("[[{k}]]"));
        key = Some(match key.filter(is_table) {
            Some(table) => format!("{table}.{name}"),
            None => name.clone(),
        });
        message = format!("missing key `{name}`");
    } else if message == "duplicate key"
        && let Some(s) = &span
        && text[s.start..].starts_with('[')
    {
        message = format!("duplicate table `[{}]`", key.clone().unwrap_or_default());
    }
    ManifestError { file: file.to_owned(), line: span.as_ref().map(|s| line_of(text, s.start)), key, message }
}

struct Compiler<'a> {
    file: &'a str,
    text: &'a str,
    base: &'a Path,
}

impl Compiler<'_> {
    fn err(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ManifestError {
        ManifestError {
            file: self.file.to_owned(),
            line: Some(line_of(self.text, span.start)),
            key: Some(key.to_owned()),
            message: message.into(),
        }
    }

    fn compile(&self, raw: RawManifest, bytes: &[u8]) -> Result<Policy, ManifestError> {
        if *raw.version.get_ref() != MANIFEST_VERSION {
            return Err(self.err(
                raw.version.span(),
                "version",
                format!(
                    "unsupported manifest version {}; this sandbox reads version {MANIFEST_VERSION}",
                    raw.version.get_ref()
                ),
            ));
        }
        let name = match raw.name {
            Some(n) if n.get_ref().trim().is_empty() || n.get_ref().chars().any(char::is_control) => {
                return Err(self.err(n.span(), "name", "must be non-empty text without control characters"));
            }
            Some(n) => n.into_inner(),
            None => Path::new(self.file).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        if let Some(d) = &raw.description
            && d.get_ref().chars().any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(self.err(
                d.span(),
                "description",
                "must be text without control characters (newlines and tabs are fine)",
            ));
        }
        let workspace_root = match raw.workspace.and_then(|w| w.root) {
            Some(r) => self.relative_path(&r, "workspace.root")?,
            None => self.base.to_path_buf(),
        };
        let (approval_via, approval_timeout, approval_require, approval_writes) =
            self.compile_approval(raw.approval)?;
        let secrets = self.compile_secrets(raw.secrets)?;
        let fs = self.compile_fs(raw.fs.unwrap_or_default())?;
        let http = self.compile_http(raw.http.unwrap_or_default(), &secrets)?;
        let process_span = raw.process.as_ref().and_then(|p| p.allow.first()).map(|r| r.program.span());
        let process = self.compile_process(raw.process.unwrap_or_default(), &secrets)?;
        // Programs write the workspace directly; staged changes could not
        // be rejected as a whole.
        if approval_writes == Writes::EndOfTask
            && let Some(span) = process_span
        {
            return Err(self.err(
                span,
                "process.allow",
                "`approval.writes = \"end-of-task\"` cannot be combined with command rules: programs change the workspace directly, outside the staged diff",
            ));
        }
        let limits = self.compile_limits(raw.limits)?;
        let (audit_path, audit) = self.compile_audit(raw.audit)?;
        let redact = self.compile_redact(raw.redact)?;
        let identity = raw.identity.map(|i| self.compile_identity(i)).transpose()?;
        Ok(Policy {
            name,
            description: raw.description.map(Spanned::into_inner),
            hash: format!("sha256:{}", hex::encode(Sha256::digest(bytes))),
            source: PathBuf::from(self.file),
            workspace_root,
            fs,
            http,
            process,
            approval_via,
            approval_timeout,
            approval_require,
            approval_writes,
            limits,
            audit_path,
            audit,
            redact,
            identity,
            secrets,
            secret_values: SecretValues::default(),
        })
    }

    fn relative_path(&self, value: &Spanned<String>, key: &str) -> Result<PathBuf, ManifestError> {
        let s = value.get_ref();
        if s.is_empty() || s.contains('\0') {
            return Err(self.err(value.span(), key, "must be a non-empty path"));
        }
        Ok(self.base.join(s))
    }

    fn globs(&self, list: &str, values: &[Spanned<String>], case_insensitive: bool) -> Result<GlobList, ManifestError> {
        let strings: Vec<String> = values.iter().map(|v| v.get_ref().clone()).collect();
        GlobList::compile(&format!("fs.{list}"), &strings, case_insensitive)
            .map_err(|e| self.err(values[e.index].span(), &format!("fs.{list}"), e.message))
    }

    fn compile_fs(&self, raw: RawFs) -> Result<FsPolicy, ManifestError> {
        let mut broad_ok = Vec::new();
        for v in &raw.allow_broad {
            match v.get_ref().as_str() {
                "read" | "write" | "auto_approve" => broad_ok.push(v.get_ref().clone()),
                other => {
                    return Err(self.err(
                        v.span(),
                        "fs.allow_broad",
                        format!("`{other}` is not one of `read`, `write`, `auto_approve`"),
                    ));
                }
            }
        }
        let mut lists =
            vec![("fs", "read", &raw.read), ("fs", "write", &raw.write), ("fs", "auto_approve", &raw.auto_approve)];
        for g in &raw.grant {
            lists.extend([
                ("fs.grant", "read", &g.read),
                ("fs.grant", "write", &g.write),
                ("fs.grant", "auto_approve", &g.auto_approve),
            ]);
        }
        for (section, list, values) in lists {
            if broad_ok.iter().any(|b| b == list) {
                continue;
            }
            let globs: Vec<&str> = values.iter().map(|v| v.get_ref().as_str()).collect();
            if let Some(culprits) = broad_globs(&globs) {
                let last = &values[*culprits.last().unwrap_or(&0)];
                let what = match culprits.as_slice() {
                    [one] => format!("glob `{}` grants", globs[*one]),
                    many => {
                        let names: Vec<String> = many.iter().map(|i| format!("`{}`", globs[*i])).collect();
                        let (init, tail) = names.split_at(names.len() - 1);
                        format!("globs {} and {} together grant", init.join(", "), tail[0])
                    }
                };
                return Err(self.err(
                    last.span(),
                    &format!("{section}.{list}"),
                    format!(
                        "{what} the whole workspace; list what the tool needs, or add \"{list}\" to `fs.allow_broad` to mean it"
                    ),
                ));
            }
        }
        let mut fs = FsPolicy::new(
            self.globs("read", &raw.read, false)?,
            self.globs("write", &raw.write, false)?,
            self.globs("auto_approve", &raw.auto_approve, false)?,
            self.globs("deny", &raw.deny, true)?,
        );
        for (index, g) in raw.grant.into_iter().enumerate() {
            let key = |list: &str| format!("fs.grant.{list}");
            let mut lists: [Vec<String>; 3] = Default::default();
            for (i, (list, values)) in
                [("read", &g.read), ("write", &g.write), ("auto_approve", &g.auto_approve)].into_iter().enumerate()
            {
                let strings: Vec<String> = values.iter().map(|v| v.get_ref().clone()).collect();
                let compiled = GlobList::compile(&key(list), &strings, false)
                    .map_err(|e| self.err(values[e.index].span(), &key(list), e.message))?;
                lists[i] = compiled.patterns;
            }
            if lists.iter().all(Vec::is_empty) {
                let span = g.when.as_ref().map_or(0..0, Spanned::span);
                return Err(self.err(span, "fs.grant", "grants nothing; give `read`, `write` or `auto_approve`"));
            }
            let when = self.compile_when(g.when, "fs.grant")?;
            fs.grants.push(FsGrant { index, when, lists });
        }
        Ok(fs)
    }

    fn compile_secrets(
        &self,
        raw: Option<BTreeMap<String, Spanned<RawSecret>>>,
    ) -> Result<BTreeMap<String, SecretSource>, ManifestError> {
        let mut out = BTreeMap::new();
        for (name, spec) in raw.unwrap_or_default() {
            let key = format!("secrets.{name}");
            let span = spec.span();
            if !crate::secrets::valid_name(&name) {
                return Err(self.err(span, &key, "a secret's name is 1 to 64 of a-z, 0-9, `_`, `-`"));
            }
            let source = match spec.into_inner() {
                RawSecret { env: Some(var), file: None } => {
                    let v = var.get_ref();
                    if v.is_empty() || v.contains(['=', '\0']) {
                        return Err(self.err(var.span(), &format!("{key}.env"), "must name an environment variable"));
                    }
                    SecretSource::Env(v.clone())
                }
                RawSecret { env: None, file: Some(file) } => {
                    SecretSource::File(self.relative_path(&file, &format!("{key}.file"))?)
                }
                _ => return Err(self.err(span, &key, "give exactly one of `env` or `file`")),
            };
            out.insert(name, source);
        }
        Ok(out)
    }

    /// `{ NAME = "text {secrets.x}" }`, each name checked by `check`.
    fn templates(
        &self,
        raw: Option<BTreeMap<String, Spanned<String>>>,
        key: &str,
        secrets: &BTreeMap<String, SecretSource>,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Result<Vec<(String, Template)>, ManifestError> {
        let mut out = Vec::new();
        for (name, value) in raw.unwrap_or_default() {
            check(&name).map_err(|m| self.err(value.span(), key, m))?;
            let t = Template::parse(value.get_ref(), secrets).map_err(|m| self.err(value.span(), key, m))?;
            out.push((name, t));
        }
        Ok(out)
    }

    fn compile_process(
        &self,
        raw: RawProcess,
        secrets: &BTreeMap<String, SecretSource>,
    ) -> Result<ProcessPolicy, ManifestError> {
        let mut rules: Vec<ProcessRule> = Vec::with_capacity(raw.allow.len());
        for (i, r) in raw.allow.into_iter().enumerate() {
            let key = |k: &str| format!("process.allow.{k}");
            if rules.iter().any(|x| x.program == *r.program.get_ref()) {
                return Err(self.err(
                    r.program.span(),
                    &key("program"),
                    format!("`{}` is allowed twice; one rule per program", r.program.get_ref()),
                ));
            }
            let approval = match &r.approval {
                None => true,
                Some(a) => match a.get_ref().as_str() {
                    "required" => true,
                    "never" => false,
                    other => {
                        return Err(self.err(
                            a.span(),
                            &key("approval"),
                            format!("`{other}` is not one of \"never\", \"required\""),
                        ));
                    }
                },
            };
            let timeout = match &r.timeout {
                None => None,
                Some(t) => Some(self.duration(t, &key("timeout"), MAX_TIME)?),
            };
            let strings = |v: &[Spanned<String>]| v.iter().map(|s| s.get_ref().clone()).collect::<Vec<_>>();
            let spec = ProcessSpec {
                program: r.program.get_ref().clone(),
                path: r.path.get_ref().clone(),
                args: strings(&r.args),
                deny_args: strings(&r.deny_args),
                env: strings(&r.env),
                approval,
                cwd: r.cwd.as_ref().map(|c| c.get_ref().clone()),
                timeout,
            };
            let mut rule = ProcessRule::compile(i, spec).map_err(|(k, message)| {
                let span = match k {
                    "program" => r.program.span(),
                    "args" => r.args.first().map_or(r.program.span(), Spanned::span),
                    "deny_args" => r.deny_args.first().map_or(r.program.span(), Spanned::span),
                    "env" => r.env.first().map_or(r.program.span(), Spanned::span),
                    "cwd" => r.cwd.as_ref().map_or(r.program.span(), Spanned::span),
                    _ => r.path.span(),
                };
                self.err(span, &key(k), message)
            })?;
            for ex in &r.match_examples {
                let args: Vec<String> = ex.get_ref().split_whitespace().map(str::to_owned).collect();
                if let Err((_, why)) = rule.check_args(&args) {
                    return Err(self.err(
                        ex.span(),
                        &key("match"),
                        format!("example `{}` should be allowed by {}, but is refused: {why}", ex.get_ref(), rule.name),
                    ));
                }
            }
            for ex in &r.not_match {
                let args: Vec<String> = ex.get_ref().split_whitespace().map(str::to_owned).collect();
                if rule.check_args(&args).is_ok() {
                    return Err(self.err(
                        ex.span(),
                        &key("not_match"),
                        format!("example `{}` should be refused by {}, but is allowed", ex.get_ref(), rule.name),
                    ));
                }
            }
            rule.when = self.compile_when(r.when, "process.allow")?;
            rule.secret_env = self.templates(r.secret_env, "process.allow.secret_env", secrets, |name| {
                if name.is_empty() || name.contains(['=', '\0']) || crate::process::env_forbidden(name) {
                    return Err(format!("`{name}` cannot be set for a program"));
                }
                Ok(())
            })?;
            rules.push(rule);
        }
        let mut policy = ProcessPolicy::new(rules);
        if let Some(m) = &raw.memory {
            policy.memory =
                self.size(m, "process.memory", (MIN_PROGRAM_MEMORY, "16 MiB"), (MAX_PROGRAM_MEMORY, "1 TiB"))?;
        }
        policy.allow_unstaged_writes = raw.allow_unstaged_writes.unwrap_or(false);
        Ok(policy)
    }

    fn compile_http(
        &self,
        raw: RawHttp,
        secrets: &BTreeMap<String, SecretSource>,
    ) -> Result<HttpPolicy, ManifestError> {
        let mut rules = Vec::with_capacity(raw.allow.len());
        for (i, r) in raw.allow.into_iter().enumerate() {
            let approval = match &r.approval {
                None => None,
                Some(a) => match a.get_ref().as_str() {
                    "never" => Some(false),
                    "required" => Some(true),
                    other => {
                        return Err(self.err(
                            a.span(),
                            "http.allow.approval",
                            format!("`{other}` is not one of \"never\", \"required\""),
                        ));
                    }
                },
            };
            let methods = r.methods.as_ref().map(|m| m.get_ref().iter().map(|s| s.get_ref().clone()).collect());
            let spec = RuleSpec { url: r.url.get_ref(), methods, approval, query: r.query.unwrap_or(true) };
            let mut rule = compile_rule(i, spec).map_err(|(key, message)| {
                let span = match (key, &r.methods) {
                    ("methods", Some(m)) => m.span(),
                    _ => r.url.span(),
                };
                self.err(span, &format!("http.allow.{key}"), message)
            })?;
            rule.when = self.compile_when(r.when, "http.allow")?;
            rule.headers = self.templates(r.headers, "http.allow.headers", secrets, |name| {
                crate::http::check_header(name, "x").map(|_| ())
            })?;
            rules.push(rule);
        }
        let mut private = Vec::with_capacity(raw.allow_private.len());
        for c in &raw.allow_private {
            private.push(parse_cidr(c.get_ref()).map_err(|m| self.err(c.span(), "http.allow_private", m))?);
        }
        let timeout = match &raw.timeout {
            None => crate::http::DEFAULT_TIMEOUT,
            Some(t) => self.duration(t, "http.timeout", MAX_HTTP_TIMEOUT)?,
        };
        let mut ca_certs = Vec::new();
        for c in &raw.ca_certs {
            ca_certs.push(self.relative_path(c, "http.ca_certs")?);
        }
        Ok(HttpPolicy::new(rules, private, timeout, ca_certs))
    }

    fn duration(
        &self,
        v: &Spanned<String>,
        key: &str,
        (max, max_text): (Duration, &str),
    ) -> Result<Duration, ManifestError> {
        let d = humantime::parse_duration(v.get_ref()).map_err(|e| {
            self.err(
                v.span(),
                key,
                format!("`{}` is not a duration ({e}); write for example \"30s\" or \"10m\"", v.get_ref()),
            )
        })?;
        if d.is_zero() {
            return Err(self.err(v.span(), key, "must be longer than zero"));
        }
        if d > max {
            return Err(self.err(v.span(), key, format!("`{}` is longer than the maximum of {max_text}", v.get_ref())));
        }
        Ok(d)
    }

    #[allow(clippy::type_complexity)]
    fn compile_approval(
        &self,
        raw: Option<RawApproval>,
    ) -> Result<(Option<ApprovalVia>, Duration, Require, Writes), ManifestError> {
        let Some(raw) = raw else {
            return Ok((None, crate::DEFAULT_APPROVAL_TIMEOUT, Require::Any, Writes::PerCall));
        };
        let via = match &raw.via {
            None => None,
            Some(v) => Some(ApprovalVia::parse(v.get_ref()).map_err(|m| self.err(v.span(), "approval.via", m))?),
        };
        let timeout = match &raw.timeout {
            None => crate::DEFAULT_APPROVAL_TIMEOUT,
            Some(t) => self.duration(t, "approval.timeout", MAX_APPROVAL_TIMEOUT)?,
        };
        let writes = match &raw.writes {
            None => Writes::PerCall,
            Some(w) => match w.get_ref().as_str() {
                "per-call" => Writes::PerCall,
                "end-of-task" => Writes::EndOfTask,
                other => {
                    return Err(self.err(
                        w.span(),
                        "approval.writes",
                        format!("`{other}` is not one of \"per-call\", \"end-of-task\""),
                    ));
                }
            },
        };
        let require = match &raw.require {
            None => Require::Any,
            Some(r) => {
                let err = |m: String| self.err(r.span(), "approval.require", m);
                let RawRequire { any, all, min, role } = r.get_ref();
                let given =
                    [any.is_some(), all.is_some(), min.is_some(), role.is_some()].iter().filter(|x| **x).count();
                if given != 1 {
                    return Err(err(
                        "give exactly one of `any = true`, `all = [...]`, `min = N`, `role = \"...\"`".into()
                    ));
                }
                match (any, all, min, role) {
                    (Some(true), ..) => Require::Any,
                    (Some(false), ..) => {
                        return Err(err("`any = false` is not a rule; use `all`, `min` or `role`".into()));
                    }
                    (_, Some(names), ..) => {
                        if names.is_empty()
                            || names.iter().any(|n| n.trim().is_empty() || n.chars().any(char::is_control))
                        {
                            return Err(err("`all` must name at least one reviewer".into()));
                        }
                        for n in names {
                            if let Err(m) = sandbox_identity::names::check(n) {
                                return Err(err(format!("`all` name `{}` {m}", n.escape_debug())));
                            }
                        }
                        // Twice in any spelling (`alice`, `Alice`, `aIice`).
                        let twice = names
                            .iter()
                            .enumerate()
                            .any(|(i, n)| names[..i].iter().any(|m| sandbox_identity::names::same(m, n)));
                        if twice {
                            return Err(err("`all` names a reviewer twice".into()));
                        }
                        Require::All(names.clone())
                    }
                    (_, _, Some(n), _) => {
                        if !(1..=100).contains(n) {
                            return Err(err(format!("`min = {n}` must be between 1 and 100")));
                        }
                        Require::Min(*n as u32)
                    }
                    (_, _, _, Some(role)) => {
                        if role.trim().is_empty() || role.chars().any(char::is_control) {
                            return Err(err("`role` must name a role".into()));
                        }
                        Require::Role(role.clone())
                    }
                    _ => Require::Any,
                }
            }
        };
        if via == Some(ApprovalVia::Tty) && require != Require::Any {
            let span = raw.require.as_ref().map_or(0..0, |r| r.span());
            return Err(self.err(
                span,
                "approval.require",
                "a terminal has one reviewer; multi-party rules need an approval service (`via = \"http://...\"`)",
            ));
        }
        Ok((via, timeout, require, writes))
    }

    fn size(&self, v: &Spanned<Size>, key: &str, min: (u64, &str), max: (u64, &str)) -> Result<u64, ManifestError> {
        let Size(n, text) = v.get_ref();
        if *n < min.0 {
            return Err(self.err(v.span(), key, format!("`{text}` is below the minimum of {}", min.1)));
        }
        if *n > max.0 {
            return Err(self.err(v.span(), key, format!("`{text}` is above the maximum of {}", max.1)));
        }
        Ok(*n)
    }

    fn compile_audit(&self, raw: Option<RawAudit>) -> Result<(PathBuf, AuditSettings), ManifestError> {
        let mut settings = AuditSettings::default();
        let Some(raw) = raw else { return Ok((self.base.join("audit.jsonl"), settings)) };
        let path = match &raw.path {
            Some(p) => self.relative_path(p, "audit.path")?,
            None => self.base.join("audit.jsonl"),
        };
        if let Some(k) = &raw.signing_key {
            settings.signing_key = Some(self.relative_path(k, "audit.signing_key")?);
        }
        if let Some(c) = &raw.checkpoints {
            settings.checkpoints = Some(self.relative_path(c, "audit.checkpoints")?);
        }
        if let Some(n) = &raw.checkpoint_every {
            let v = *n.get_ref();
            if !(1..=MAX_CHECKPOINT_EVERY as i64).contains(&v) {
                return Err(self.err(
                    n.span(),
                    "audit.checkpoint_every",
                    format!("must be a number of events from 1 to {MAX_CHECKPOINT_EVERY}"),
                ));
            }
            settings.checkpoint_every = v as u64;
        }
        if let Some(r) = &raw.retention {
            let period = self.duration(r, "audit.retention", (MAX_RETENTION, "100 years"))?;
            settings.retention = Some(Retention { period, text: r.get_ref().clone() });
        }
        if let Some(r) = &raw.rotate {
            settings.rotate = Some(self.size(r, "audit.rotate", (MIN_ROTATE, "1 KiB"), (MAX_ROTATE, "1 TiB"))?);
        }
        for sink in &raw.sink {
            let s = self.compile_sink(sink)?;
            if settings.sinks.iter().any(|o| o.name == s.name) {
                let span = sink.name.as_ref().map_or(sink.kind.span(), |n| n.span());
                return Err(self.err(
                    span,
                    "audit.sink",
                    format!("two sinks are named `{}`; give each a distinct `name`", s.name),
                ));
            }
            settings.sinks.push(s);
        }
        Ok((path, settings))
    }

    fn compile_sink(&self, raw: &RawSink) -> Result<Sink, ManifestError> {
        let kind = raw.kind.get_ref().as_str();
        let unused = |field: &Option<Spanned<String>>, key: &str| match field {
            Some(v) => Err(self.err(v.span(), &format!("audit.sink.{key}"), format!("is not used by a `{kind}` sink"))),
            None => Ok(()),
        };
        let required = |field: &Option<Spanned<String>>, key: &str| {
            field.clone().ok_or_else(|| {
                self.err(raw.kind.span(), &format!("audit.sink.{key}"), format!("a `{kind}` sink needs `{key}`"))
            })
        };
        let target = match kind {
            "syslog" => {
                unused(&raw.url, "url")?;
                unused(&raw.token_env, "token_env")?;
                let address = required(&raw.address, "address")?;
                let text = address.get_ref();
                let parsed = url::Url::parse(&format!("tcp://{text}")).ok().filter(|u| {
                    u.port().is_some()
                        && u.host_str().is_some_and(|h| !h.is_empty())
                        && u.path().is_empty()
                        && u.username().is_empty()
                        && u.password().is_none()
                        && u.query().is_none()
                        && u.fragment().is_none()
                });
                if parsed.is_none() {
                    return Err(self.err(
                        address.span(),
                        "audit.sink.address",
                        format!("`{}` is not a `host:port` address", printable(text)),
                    ));
                }
                SinkTarget::Syslog { address: text.clone() }
            }
            "splunk-hec" => {
                unused(&raw.address, "address")?;
                let url_text = required(&raw.url, "url")?;
                let bad = |why: &str| self.err(url_text.span(), "audit.sink.url", why.to_owned());
                let url = url::Url::parse(url_text.get_ref()).map_err(|e| bad(&format!("not a URL ({e})")))?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(bad("must be an http:// or https:// URL with a host"));
                }
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(bad("must not carry credentials; the token comes from `token_env`"));
                }
                let env = required(&raw.token_env, "token_env")?;
                let name = env.get_ref();
                let valid = name.chars().next().is_some_and(|c| c.is_ascii_uppercase() || c == '_')
                    && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if !valid {
                    return Err(self.err(
                        env.span(),
                        "audit.sink.token_env",
                        format!("`{}` is not an environment variable name (A-Z, 0-9, _)", printable(name)),
                    ));
                }
                SinkTarget::SplunkHec { url, token_env: name.clone() }
            }
            other => {
                return Err(self.err(
                    raw.kind.span(),
                    "audit.sink.type",
                    format!("`{}` is not a sink type; use \"syslog\" or \"splunk-hec\"", printable(other)),
                ));
            }
        };
        let name = match &raw.name {
            Some(n) => {
                let t = n.get_ref();
                if t.is_empty() || t.len() > 64 || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(self.err(n.span(), "audit.sink.name", "must be 1 to 64 of a-z, A-Z, 0-9, - and _"));
                }
                t.clone()
            }
            None => kind.to_owned(),
        };
        Ok(Sink { name, target })
    }

    fn compile_redact(&self, raw: Option<RawRedact>) -> Result<RedactSettings, ManifestError> {
        let mut settings = RedactSettings::default();
        let Some(raw) = raw else { return Ok(settings) };
        settings.outputs = raw.outputs.unwrap_or(false);
        if raw.detectors.is_some() || !raw.patterns.is_empty() {
            // Absent: the default set; `[]`: no built-in, patterns only.
            let detectors = raw.detectors.as_deref();
            let names: Vec<&str> = match detectors {
                None => vec![sandbox_redact::DEFAULT],
                Some(d) => d.iter().map(|d| d.get_ref().as_str()).collect(),
            };
            let span_of =
                |list: Option<&[Spanned<String>]>, i: usize| list.and_then(|l| l.get(i)).map_or(0..0, |v| v.span());
            let patterns: Vec<Pattern> = raw
                .patterns
                .iter()
                .map(|p| Pattern {
                    name: p.get_ref().name.get_ref().clone(),
                    regex: p.get_ref().regex.get_ref().clone(),
                })
                .collect();
            settings.redactor = Redactor::new(&names, &patterns).map_err(|e| match &e {
                ConfigError::UnknownDetector { index, .. } => {
                    self.err(span_of(detectors, *index), "redact.detectors", e.to_string())
                }
                ConfigError::PatternName { index, .. } => {
                    self.err(raw.patterns[*index].get_ref().name.span(), "redact.patterns", e.to_string())
                }
                ConfigError::PatternRegex { index, .. } => {
                    self.err(raw.patterns[*index].get_ref().regex.span(), "redact.patterns", e.to_string())
                }
                ConfigError::TooManyPatterns { .. } | ConfigError::Literal(_) => {
                    let span = raw.patterns.get(MAX_PATTERNS).map_or(0..0, |p| p.span());
                    self.err(span, "redact.patterns", e.to_string())
                }
            })?;
        }
        if let Some(always) = raw.always {
            let strings: Vec<String> = always.iter().map(|v| v.get_ref().clone()).collect();
            settings.always = GlobList::compile("redact.always", &strings, true)
                .map_err(|e| self.err(always[e.index].span(), "redact.always", e.message))?;
        }
        Ok(settings)
    }

    fn compile_identity(&self, raw: RawIdentity) -> Result<IdentitySettings, ManifestError> {
        for (v, key) in [(&raw.issuer, "identity.issuer"), (&raw.audience, "identity.audience")] {
            if v.get_ref().is_empty() || v.get_ref().chars().any(char::is_control) {
                return Err(self.err(v.span(), key, "must be non-empty text without control characters"));
            }
        }
        let jwks = match (&raw.jwks, raw.keys.first()) {
            (Some(file), None) => Jwks::File(self.relative_path(file, "identity.jwks")?),
            (None, Some(_)) => {
                let keys: Vec<&toml::Table> = raw.keys.iter().map(|k| k.get_ref()).collect();
                let json = serde_json::to_string(&serde_json::json!({ "keys": keys }))
                    .map_err(|e| self.err(raw.keys[0].span(), "identity.keys", e.to_string()))?;
                Jwks::Inline(json)
            }
            (Some(file), Some(_)) => {
                return Err(self.err(
                    file.span(),
                    "identity.jwks",
                    "give `jwks` (a file) or `[[identity.keys]]`, not both",
                ));
            }
            (None, None) => {
                return Err(self.err(
                    raw.issuer.span(),
                    "identity",
                    "needs the identity provider's public keys: `jwks = \"FILE\"` or `[[identity.keys]]`",
                ));
            }
        };
        let algorithms = match &raw.algorithms {
            None => sandbox_identity::DEFAULT_ALGORITHMS.iter().map(|a| a.to_string()).collect(),
            Some(list) => {
                if list.is_empty() {
                    return Err(self.err(raw.issuer.span(), "identity.algorithms", "must name at least one algorithm"));
                }
                for a in list {
                    sandbox_identity::parse_algorithm(a.get_ref())
                        .map_err(|e| self.err(a.span(), "identity.algorithms", e))?;
                }
                list.iter().map(|a| a.get_ref().clone()).collect()
            }
        };
        let mut claims = Vec::new();
        for c in &raw.claims {
            let name = c.get_ref();
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(self.err(c.span(), "identity.claims", "claim names must be non-empty text"));
            }
            claims.push(name.clone());
        }
        Ok(IdentitySettings {
            issuer: raw.issuer.into_inner(),
            audience: raw.audience.into_inner(),
            jwks,
            algorithms,
            required: raw.required.unwrap_or(false),
            claims,
        })
    }

    fn compile_when(&self, raw: Option<Spanned<RawWhen>>, key: &str) -> Result<Option<When>, ManifestError> {
        let Some(raw) = raw else { return Ok(None) };
        let span = raw.span();
        let raw = raw.into_inner();
        let mut tiers = Vec::new();
        for t in raw.tier.iter().flatten() {
            tiers.push(Tier::parse(t.get_ref()).map_err(|e| self.err(t.span(), &format!("{key}.when.tier"), e))?);
        }
        let claims = raw.claims.unwrap_or_default();
        if claims.iter().any(|(name, values)| name.is_empty() || values.is_empty()) {
            return Err(self.err(
                span,
                &format!("{key}.when.claims"),
                "each claim needs a name and at least one value",
            ));
        }
        if tiers.is_empty() && claims.is_empty() {
            return Err(self.err(
                span,
                &format!("{key}.when"),
                "names no condition; give `tier` or `claims`, or drop `when`",
            ));
        }
        Ok(Some(When { tiers, claims }))
    }

    fn compile_limits(&self, raw: Option<RawLimits>) -> Result<Limits, ManifestError> {
        let mut limits = Limits::default();
        let Some(raw) = raw else { return Ok(limits) };
        if let Some(m) = raw.memory {
            limits.memory = self.size(&m, "limits.memory", (MIN_MEMORY, "1 MiB"), (MAX_MEMORY, "4 GiB"))?;
        }
        if let Some(t) = raw.time {
            limits.time = self.duration(&t, "limits.time", MAX_TIME)?;
        }
        if let Some(c) = raw.calls {
            let v = *c.get_ref();
            if v < 1 {
                return Err(self.err(c.span(), "limits.calls", "must be at least 1"));
            }
            limits.calls = v as u64;
        }
        if let Some(o) = raw.output {
            limits.output = self.size(&o, "limits.output", (1, "1 byte"), (MAX_OUTPUT, "1 GiB"))?;
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse("m.toml", text, Path::new("/base")).unwrap_err().to_string()
    }

    #[test]
    fn a_full_manifest_compiles() {
        let p = parse(
            "m.toml",
            r#"
version = 1
name = "demo"
description = "d"
[workspace]
root = "ws"
[fs]
read = ["src/**"]
write = ["out/**"]
auto_approve = ["out/**"]
deny = ["**/.env"]
[approval]
via = "deny"
timeout = "5s"
[limits]
memory = "64 MiB"
time = "10s"
calls = 50
output = 4096
[audit]
path = "log/a.jsonl"
"#,
            Path::new("/base"),
        )
        .unwrap();
        assert_eq!(p.name, "demo");
        assert_eq!(p.workspace_root, Path::new("/base/ws"));
        assert_eq!(p.audit_path, Path::new("/base/log/a.jsonl"));
        assert_eq!(p.limits.memory, 64 << 20);
        assert_eq!(p.limits.time, Duration::from_secs(10));
        assert_eq!(p.limits.calls, 50);
        assert_eq!(p.limits.output, 4096);
        assert_eq!(p.approval_via, Some(ApprovalVia::Deny));
        assert_eq!(p.approval_timeout, Duration::from_secs(5));
        assert!(p.hash.starts_with("sha256:") && p.hash.len() == 71);
    }

    #[test]
    fn defaults_apply_when_keys_are_absent() {
        let p = parse("dir/tool.toml", "version = 1\n", Path::new("/base")).unwrap();
        assert_eq!(p.name, "tool");
        assert_eq!(p.workspace_root, Path::new("/base"));
        assert_eq!(p.audit_path, Path::new("/base/audit.jsonl"));
        assert_eq!(p.limits, Limits::default());
        assert_eq!(p.approval_via, None);
        assert_eq!(p.approval_timeout, Duration::from_secs(60));
        assert!(!p.fs.reads_anything());
    }

    #[test]
    fn errors_name_file_line_and_key() {
        assert_eq!(
            err("version = 1\n[fs]\nreed = [\"x\"]\n"),
            "m.toml:3: key `fs.reed`: unknown key `reed`, expected one of `read`, `write`, `auto_approve`, `deny`, `allow_broad`, `grant`"
        );
        let e = err("version = 1\n[fs]\nread = [\"a\"]\nread = [\"b\"]\n");
        assert!(e.starts_with("m.toml:4: key `fs.read`: duplicate key"), "{e}");
        let e = err("version = 1\n[limits]\ncalls = \"many\"\n");
        assert!(e.starts_with("m.toml:3: key `limits.calls`: invalid type"), "{e}");
        let e = err("version = 1\n[fs]\nread = \"src/**\"\n");
        assert!(e.starts_with("m.toml:3: key `fs.read`: invalid type"), "{e}");
        let e = err("version = 1\n[fs]\nread = [\"src/**\",\n  \"**\"]\n");
        assert!(e.starts_with("m.toml:4: key `fs.read`: glob `**` grants the whole workspace"), "{e}");
        let e = err("version = 1\n[limits]\nmemory = \"lots\"\n");
        assert!(e.starts_with("m.toml:3: key `limits.memory`: `lots` is not a size"), "{e}");
        let e = err("version = 1\n[limits]\ntime = \"0s\"\n");
        assert_eq!(e, "m.toml:3: key `limits.time`: must be longer than zero");
        let e = err("version = 2\n");
        assert_eq!(e, "m.toml:1: key `version`: unsupported manifest version 2; this sandbox reads version 1");
        let e = err("name = \"x\"\n");
        assert!(e.starts_with("m.toml") && e.contains("missing key `version`"), "{e}");
        let e = err("version = 1\n[approval]\nvia = \"email\"\n");
        assert!(e.starts_with("m.toml:3: key `approval.via`:"), "{e}");
        let e = err("version = 1\n[http]\nallowed = []\n");
        assert!(e.starts_with("m.toml:3: key `http.allowed`: unknown key `allowed`"), "{e}");
        let e = err("version = 1\n[[http.allow]]\nurl = \"https://*/x\"\n");
        assert!(e.starts_with("m.toml:3: key `http.allow.url`:"), "{e}");
        let e = err("version = 1\n[http]\nallow_private = [\"10.0.0.0/33\"]\n");
        assert!(e.starts_with("m.toml:3: key `http.allow_private`:"), "{e}");
        let e = err("version = 1\n[fs]\nwrite = [\"/etc/**\"]\n");
        assert!(e.starts_with("m.toml:3: key `fs.write`: glob `/etc/**` is absolute"), "{e}");
        let e = err("version = 1\n[fs]\nread = [\"a\"\n");
        assert!(e.starts_with("m.toml:"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn broad_grants_need_to_be_meant() {
        let e = err("version = 1\n[fs]\nwrite = [\"**/*\"]\nauto_approve = [\"**/*\"]\n");
        assert!(e.starts_with("m.toml:3: key `fs.write`: glob `**/*` grants the whole workspace"), "{e}");
        let ok =
            parse("m.toml", "version = 1\n[fs]\nread = [\"**\"]\nallow_broad = [\"read\"]\n", Path::new("/")).unwrap();
        assert!(ok.fs.reads_anything());
        // deny may be as broad as the operator likes.
        parse("m.toml", "version = 1\n[fs]\ndeny = [\"**\"]\n", Path::new("/")).unwrap();
    }

    #[test]
    fn audit_evidence_settings_compile() {
        let p = parse(
            "m.toml",
            r#"
version = 1
[audit]
path = "log/a.jsonl"
signing_key = "keys/audit.key"
checkpoint_every = 50
retention = "6y"
rotate = "64 MiB"
[[audit.sink]]
type = "syslog"
address = "siem.example:6514"
[[audit.sink]]
type = "splunk-hec"
name = "splunk"
url = "https://splunk.example:8088/services/collector/event"
token_env = "SANDBOX_HEC_TOKEN"
"#,
            Path::new("/base"),
        )
        .unwrap();
        let a = &p.audit;
        assert_eq!(a.signing_key.as_deref(), Some(Path::new("/base/keys/audit.key")));
        assert_eq!(a.checkpoints_for(&p.audit_path), Path::new("/base/log/a.jsonl.checkpoints"));
        assert_eq!(a.checkpoint_every, 50);
        let r = a.retention.as_ref().unwrap();
        assert_eq!((r.text.as_str(), r.period.as_secs() / 86_400), ("6y", 2191));
        assert_eq!(a.rotate, Some(64 << 20));
        assert_eq!(
            a.sinks[0],
            Sink { name: "syslog".into(), target: SinkTarget::Syslog { address: "siem.example:6514".into() } }
        );
        assert_eq!(a.sinks[1].name, "splunk");
        assert!(
            matches!(&a.sinks[1].target, SinkTarget::SplunkHec { token_env, .. } if token_env == "SANDBOX_HEC_TOKEN")
        );
        let d = parse("m.toml", "version = 1\n", Path::new("/base")).unwrap().audit;
        assert_eq!((d.checkpoint_every, d.signing_key, d.retention, d.rotate), (1000, None, None, None));
    }

    #[test]
    fn bad_audit_settings_are_named() {
        let cases = [
            ("checkpoint_every = 0", "audit.checkpoint_every"),
            ("retention = \"forever\"", "is not a duration"),
            ("rotate = 10", "below the minimum of 1 KiB"),
            ("[[audit.sink]]\ntype = \"kafka\"", "is not a sink type"),
            ("[[audit.sink]]\ntype = \"syslog\"", "needs `address`"),
            ("[[audit.sink]]\ntype = \"syslog\"\naddress = \"siem.example\"", "not a `host:port` address"),
            (
                "[[audit.sink]]\ntype = \"syslog\"\naddress = \"h:1\"\ntoken_env = \"T\"",
                "is not used by a `syslog` sink",
            ),
            ("[[audit.sink]]\ntype = \"splunk-hec\"\nurl = \"https://h/c\"", "needs `token_env`"),
            (
                "[[audit.sink]]\ntype = \"splunk-hec\"\nurl = \"https://u:p@h/c\"\ntoken_env = \"T\"",
                "must not carry credentials",
            ),
            ("[[audit.sink]]\ntype = \"splunk-hec\"\nurl = \"ftp://h/c\"\ntoken_env = \"T\"", "http:// or https://"),
            (
                "[[audit.sink]]\ntype = \"splunk-hec\"\nurl = \"https://h/c\"\ntoken_env = \"a b\"",
                "not an environment variable name",
            ),
            (
                "[[audit.sink]]\ntype = \"syslog\"\naddress = \"h:1\"\n[[audit.sink]]\ntype = \"syslog\"\naddress = \"g:2\"",
                "two sinks are named `syslog`",
            ),
        ];
        for (audit, want) in cases {
            let e = err(&format!("version = 1\n[audit]\n{audit}\n"));
            assert!(e.contains(want), "{audit:?}: {e}");
        }
    }
}
