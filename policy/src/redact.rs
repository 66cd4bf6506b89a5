//! `[redact]`: the detectors that replace secrets and regulated data with
//! `[redacted:TYPE]` (see the `sandbox-redact` crate), and where they apply
//! beyond the audit log.

use crate::fs::GlobList;
use crate::path::RelPath;
use globset::Candidate;
use sandbox_redact::Redactor;
use unicode_normalization::UnicodeNormalization;

/// `always` when the manifest does not say: files that hold credentials by
/// convention. Their contents are returned to the tool redacted whatever
/// `outputs` says; `always = []` turns this off.
pub const DEFAULT_ALWAYS: &[&str] = &[
    "**/.env",
    "**/.env.*",
    "**/*.pem",
    "**/*.key",
    "**/id_rsa",
    "**/id_dsa",
    "**/id_ecdsa",
    "**/id_ed25519",
    "**/.netrc",
    "**/.npmrc",
    "**/.pypirc",
    "**/.git-credentials",
];

/// The compiled `[redact]` section.
#[derive(Debug, Clone)]
pub struct RedactSettings {
    /// `outputs`: also redact what is returned to the tool (file reads,
    /// HTTP response bodies and headers, command output). Default false.
    /// The audit log is redacted either way.
    pub outputs: bool,
    /// `detectors` (default `["default"]`) and `patterns`, compiled.
    pub redactor: Redactor,
    /// `always`: workspace paths whose contents are returned redacted even
    /// when `outputs` is false. Matched case-insensitively.
    pub(crate) always: GlobList,
}

impl Default for RedactSettings {
    fn default() -> RedactSettings {
        let always: Vec<String> = DEFAULT_ALWAYS.iter().map(|s| s.to_string()).collect();
        RedactSettings {
            outputs: false,
            redactor: Redactor::builtin(),
            // The default list is constant and tested; it always compiles.
            always: GlobList::compile("redact.always", &always, true)
                .unwrap_or_else(|e| panic!("the default redact.always {e:?} does not compile")),
        }
    }
}

impl RedactSettings {
    /// True when the contents of `path` are returned redacted whatever
    /// `outputs` says.
    pub fn always_redacted(&self, path: &RelPath) -> bool {
        let lower: String = path.as_str().nfc().collect::<String>().to_lowercase();
        self.always.find(&Candidate::new(&lower), false).is_some()
    }

    /// True when data read from `path` (the path asked, or where it led) is
    /// returned redacted.
    pub fn redacts_read(&self, paths: &[&RelPath]) -> bool {
        self.outputs || paths.iter().any(|p| self.always_redacted(p))
    }

    /// The `always` globs in force.
    pub fn always(&self) -> &[String] {
        &self.always.patterns
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn default_always_list_covers_credential_files() {
        let r = RedactSettings::default();
        let p = |s: &str| RelPath::normalise(s).unwrap();
        for path in [".env", "app/.env", ".env.production", "certs/server.PEM", "deploy/tls.key", ".ssh/id_ed25519"] {
            assert!(r.always_redacted(&p(path)), "{path}");
        }
        for path in ["src/env.rs", "README.md", "keys.txt", "environment/.envrc"] {
            assert!(!r.always_redacted(&p(path)), "{path}");
        }
        assert!(!r.outputs);
        assert!(r.redacts_read(&[&p("src/main.rs"), &p(".env")]));
        assert!(!r.redacts_read(&[&p("src/main.rs")]));
    }
}
