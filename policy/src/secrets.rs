//! `[secrets.NAME]`: values the host injects into requests and commands
//! the manifest names, which the tool never sees.
//!
//! A secret comes from the operator's environment (`env = "VAR"`) or a
//! file (`file = "PATH"`, relative to the manifest). An `[[http.allow]]`
//! rule's `headers = { NAME = "Bearer {secrets.x}" }` sets those headers on
//! the requests that rule allows, replacing any the tool set of the same
//! name; a `[[process.allow]]` rule's `secret_env = { VAR = "{secrets.x}" }`
//! passes it to that program only. The values are read when a run starts
//! ([`SecretValues`]), are replaced by `[redacted:secret]` wherever they
//! would reach the tool or the log, and never appear in `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable of the process that runs sandbox.
    Env(String),
    /// A file (its contents, without one final newline).
    File(PathBuf),
}

/// One part of a header or variable value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text as written.
    Text(String),
    /// `{secrets.NAME}`.
    Secret(String),
}

/// A value with `{secrets.NAME}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; every placeholder must name one of `known`. A `{`
    /// that does not start `{secrets.` is text.
    pub fn parse(text: &str, known: &BTreeMap<String, SecretSource>) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find("{secrets.") {
            if i > 0 {
                parts.push(Part::Text(rest[..i].to_owned()));
            }
            let after = &rest[i + "{secrets.".len()..];
            let end = after.find('}').ok_or_else(|| format!("`{{secrets.` without a closing `}}` in `{text}`"))?;
            let name = &after[..end];
            if !known.contains_key(name) {
                return Err(format!("`{{secrets.{name}}}` names no [secrets.{name}] section"));
            }
            parts.push(Part::Secret(name.to_owned()));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if !parts.iter().any(|p| matches!(p, Part::Secret(_))) {
            return Err(format!("`{text}` uses no secret; write `{{secrets.NAME}}`"));
        }
        Ok(Template { parts })
    }

    /// The value with the secrets filled in; `None` when one is missing.
    pub fn render(&self, values: &SecretValues) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Secret(name) => out.push_str(values.get(name)?),
            }
        }
        Some(out)
    }

    /// The secrets it uses.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Secret(n) => Some(n.as_str()),
            Part::Text(_) => None,
        })
    }
}

impl fmt::Display for Template {
    /// As written: `Bearer {secrets.github}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.parts {
            match p {
                Part::Text(t) => f.write_str(t)?,
                Part::Secret(n) => write!(f, "{{secrets.{n}}}")?,
            }
        }
        Ok(())
    }
}

/// The values of a run's secrets, read at its start. `Debug` shows the
/// names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretValues(BTreeMap<String, String>);

impl SecretValues {
    /// Adds a value.
    pub fn insert(&mut self, name: &str, value: String) {
        self.0.insert(name.to_owned(), value);
    }

    /// A value by name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Every value.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.0.values().map(String::as_str)
    }
}

impl fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys().map(|k| format!("{k}: [redacted]"))).finish()
    }
}

/// Whether `name` may name a secret: 1 to 64 of `a-z 0-9 _ -`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
