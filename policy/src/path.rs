//! Workspace-relative paths: the one normal form every decision is made on.
//!
//! A tool names files with `/`-separated paths relative to the workspace
//! root. [`RelPath::normalise`] turns what the tool sent into the normal form
//! or says why it cannot: empty and `.` components vanish, `..` removes the
//! previous component, and a `..` that would climb above the root is an
//! [`PathError::Escapes`] (a denial, not a malformed request).
//!
//! Refused as [`PathError::Invalid`], whatever the file system would do:
//! absolute paths (`/x`), Windows forms (`C:\`, `C:x`, `\\?\`, any `\`),
//! NUL and other control characters, components longer than 255 bytes and
//! paths longer than [`MAX_PATH_BYTES`].
//!
//! The normal form keeps the tool's spelling of each component (the file
//! system is asked for exactly that name); matching against globs uses the
//! Unicode NFC form on top, see `crate::fs`.

use std::fmt;

/// The longest path a tool may send, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// The longest single component, in bytes (the common file-system limit).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// A normalised, workspace-relative path. The root is the empty path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

/// Why a tool's path was refused before any decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is malformed (absolute, Windows form, control characters,
    /// too long). The call is `invalid`.
    #[error("{0}")]
    Invalid(String),
    /// `..` climbs above the workspace root. The call is `denied`.
    #[error("`..` leads outside the workspace")]
    Escapes,
}

impl RelPath {
    /// The workspace root.
    pub fn root() -> RelPath {
        RelPath(String::new())
    }

    /// Normalises a path sent by a tool. See the module documentation.
    pub fn normalise(input: &str) -> Result<RelPath, PathError> {
        if input.len() > MAX_PATH_BYTES {
            return Err(PathError::Invalid(format!(
                "path is {} bytes long; the limit is {MAX_PATH_BYTES}",
                input.len()
            )));
        }
        if let Some(c) = input.chars().find(|c| c.is_control()) {
            return Err(PathError::Invalid(format!("path contains the control character U+{:04X}", c as u32)));
        }
        if input.contains('\\') {
            return Err(PathError::Invalid("path contains `\\`; use `/` between components".into()));
        }
        if input.starts_with('/') {
            return Err(PathError::Invalid("absolute path; paths are relative to the workspace root".into()));
        }
        let bytes = input.as_bytes();
        if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
            return Err(PathError::Invalid("Windows drive path; paths are relative to the workspace root".into()));
        }
        // Fast path: already normal (the common case) costs one scan.
        if is_normal(input) {
            return Ok(RelPath(input.to_owned()));
        }
        let mut parts: Vec<&str> = Vec::new();
        for part in input.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(PathError::Escapes);
                    }
                }
                p => {
                    check_component(p)?;
                    parts.push(p);
                }
            }
        }
        Ok(RelPath(parts.join("/")))
    }

    /// Builds a path from one already trusted, such as a name the host read
    /// from a directory. Panics in debug builds if it is not normal.
    pub fn from_normal(path: String) -> RelPath {
        debug_assert!(is_normal(&path), "not a normal path: {path:?}");
        RelPath(path)
    }

    /// The path as `/`-separated text; the root is `""`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for the workspace root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path for display and audit: the root is shown as `.`.
    pub fn display(&self) -> &str {
        if self.0.is_empty() { "." } else { &self.0 }
    }

    /// The parent directory and the last component; `None` for the root.
    pub fn split_last(&self) -> Option<(RelPath, &str)> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(i) => (RelPath(self.0[..i].to_owned()), &self.0[i + 1..]),
            None => (RelPath::root(), self.0.as_str()),
        })
    }

    /// This path with one more component (a name read from a directory).
    /// `None` when the name is not a single normal component.
    pub fn join_name(&self, name: &str) -> Option<RelPath> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') || check_component(name).is_err() {
            return None;
        }
        Some(if self.0.is_empty() { RelPath(name.to_owned()) } else { RelPath(format!("{}/{}", self.0, name)) })
    }

    /// The components of the path.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelPath({:?})", self.0)
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display())
    }
}

fn check_component(p: &str) -> Result<(), PathError> {
    if p.len() > MAX_COMPONENT_BYTES {
        return Err(PathError::Invalid(format!(
            "path component is {} bytes long; the limit is {MAX_COMPONENT_BYTES}",
            p.len()
        )));
    }
    Ok(())
}

/// True when `s` is already in normal form: no empty, `.` or `..`
/// components, no leading or trailing `/`, components within bounds.
fn is_normal(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    s.split('/').all(|c| !c.is_empty() && c != "." && c != ".." && c.len() <= MAX_COMPONENT_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Result<String, PathError> {
        RelPath::normalise(s).map(|p| p.as_str().to_owned())
    }

    #[test]
    fn normal_paths_pass_unchanged() {
        assert_eq!(n("src/main.rs").unwrap(), "src/main.rs");
        assert_eq!(n("a").unwrap(), "a");
        assert_eq!(n("").unwrap(), "");
        assert_eq!(n("caf\u{e9}/x").unwrap(), "caf\u{e9}/x");
    }

    #[test]
    fn other_spellings_collapse_to_one_form() {
        for s in ["a//b", "a/./b", "./a/b", "a/b/", "a/b/.", "a/x/../b", "./a//./b//"] {
            assert_eq!(n(s).unwrap(), "a/b", "{s}");
        }
        assert_eq!(n(".").unwrap(), "");
        assert_eq!(n("./").unwrap(), "");
        assert_eq!(n("a/..").unwrap(), "");
    }

    #[test]
    fn climbing_out_escapes() {
        for s in ["..", "../x", "a/../..", "a/../../etc/passwd", "./../x", "a/b/../../../c"] {
            assert_eq!(n(s), Err(PathError::Escapes), "{s}");
        }
    }

    #[test]
    fn absolute_and_windows_forms_are_invalid() {
        for s in ["/etc/passwd", "//server/share", "C:\\x", "C:/x", "c:x", "\\\\?\\C:\\x", "a\\b", "\\x"] {
            assert!(matches!(n(s), Err(PathError::Invalid(_))), "{s}");
        }
    }

    #[test]
    fn control_characters_and_nul_are_invalid() {
        for s in ["a\0b", "a\nb", "a\rb", "\u{1b}[31m", "a\u{7f}"] {
            assert!(matches!(n(s), Err(PathError::Invalid(_))), "{s:?}");
        }
    }

    #[test]
    fn huge_paths_and_components_are_invalid() {
        let long = "a/".repeat(3000);
        assert!(matches!(n(&long), Err(PathError::Invalid(_))));
        let comp = "x".repeat(256);
        assert!(matches!(n(&comp), Err(PathError::Invalid(_))));
        assert!(matches!(n(&format!("./{comp}")), Err(PathError::Invalid(_))));
        assert!(n(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn split_and_join() {
        let p = RelPath::normalise("a/b/c").unwrap();
        let (parent, last) = p.split_last().unwrap();
        assert_eq!(parent.as_str(), "a/b");
        assert_eq!(last, "c");
        let top = RelPath::normalise("c").unwrap();
        let (parent, last) = top.split_last().unwrap();
        assert!(parent.is_root());
        assert_eq!(last, "c");
        assert!(RelPath::root().split_last().is_none());
        assert_eq!(RelPath::root().join_name("x").unwrap().as_str(), "x");
        assert_eq!(parent.join_name("..").map(|p| p.0), None);
        assert_eq!(parent.join_name("a/b").map(|p| p.0), None);
    }
}
