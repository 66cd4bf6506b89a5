//! The files an audit log owns, in one place, so that a tool can never
//! read, list, change, remove, rename or plant any of them.
//!
//! Everything the log, its maintenance and its consumers keep lies in the
//! log's directory under a name of the log's *family*: the log's own file
//! name, or that name followed by `.` and anything.
//!
//! | file                              | kept by                              |
//! |-----------------------------------|--------------------------------------|
//! | `<log>`                           | the live file                        |
//! | `<log>.<seq, 20 digits>`          | rotated segments ([`crate::read`])   |
//! | `<log>.pruned`                    | prune records ([`crate::prune`])     |
//! | `<log>.checkpoints`               | signed checkpoints (default place)   |
//! | `<log>.sink-<name>.cursor[.tmp]`  | a sink's cursor (`sandbox-sinks`)    |
//! | `<log>.sink-<name>.lock`          | a sink's lock                        |
//! | `<log>.staging/…`                 | end-of-task journals, their blobs, pre-images, key, lock and quarantine |
//! | `<log>.<anything else>`           | reserved: a name the log may adopt later |
//!
//! A name of the family that does not exist yet is just as untouchable: a
//! file planted under a name the log would adopt later (a segment, a
//! journal) could make it fail or lie. A checkpoint file configured
//! elsewhere (`[audit] checkpoints`) is a family of its own.
//!
//! Directories the host keeps for itself and that must stay out of every
//! tool's reach whichever run it belongs to (the staging directory, the
//! compile cache) carry the [`PRIVATE_MARKER`] file: the file-system door
//! of every run refuses any path in a directory that holds one.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The name of the file that marks a directory as the host's own: no tool
/// of any run may reach anything inside a directory holding it.
pub const PRIVATE_MARKER: &str = ".sandbox-private";

const MARKER_TEXT: &[u8] =
    b"This directory belongs to sandbox (the host): no tool may read, list, change or remove anything in it.\n";

/// One family of file names owned by the log: every file in `dir` named
/// `base` or `base.<anything>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// The directory (as given; the caller makes it canonical).
    pub dir: PathBuf,
    /// The base name.
    pub base: String,
    /// What the family is, for the rule name (`audit-log`).
    pub what: &'static str,
}

/// True when `name` (one file name) belongs to the family of `base`: the
/// name itself, or the name followed by `.` and anything.
pub fn is_owned_name(base: &str, name: &str) -> bool {
    owned_rule(base, name).is_some()
}

/// The rule that protects `name` when it belongs to the family of `base`:
/// `""` for `base` itself (the family's own rule applies), else the rule
/// for what the log keeps under that name (`builtin:audit-sink-cursor`,
/// `builtin:audit-staging`, ...; segments and names not used yet are
/// `builtin:audit-log`). `None`: not of the family.
pub fn owned_rule(base: &str, name: &str) -> Option<&'static str> {
    let rest = name.strip_prefix(base)?;
    if rest.is_empty() {
        return Some("");
    }
    let rest = rest.strip_prefix('.')?;
    let is = |what: &str| rest == what || rest.strip_prefix(what).is_some_and(|r| r.starts_with('.'));
    Some(if is("checkpoints") {
        "builtin:audit-checkpoints"
    } else if rest.starts_with("sink-") {
        "builtin:audit-sink-cursor"
    } else if is("staging") {
        "builtin:audit-staging"
    } else if is("pruned") {
        "builtin:audit-prune-records"
    } else {
        "builtin:audit-log"
    })
}

fn family(path: &Path, what: &'static str) -> Option<Family> {
    let base = path.file_name()?.to_str()?.to_owned();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    Some(Family { dir, base, what })
}

/// Every family of files the log at `log` owns: its own, and that of its
/// checkpoint file when that lies elsewhere (`checkpoints`). A path that
/// is not valid UTF-8 yields no family (the caller then cannot place it
/// in a workspace either).
pub fn families(log: &Path, checkpoints: Option<&Path>) -> Vec<Family> {
    let mut out: Vec<Family> = family(log, "audit-log").into_iter().collect();
    if let Some(cp) = checkpoints
        && !owns(&out, cp)
    {
        out.extend(family(cp, "audit-checkpoints"));
    }
    out
}

/// True when `path` (absolute, canonical, like the family's `dir`) is a
/// file of one of `families`, or lies inside one (the staging directory).
pub fn owns(families: &[Family], path: &Path) -> bool {
    families.iter().any(|f| {
        path.strip_prefix(&f.dir)
            .ok()
            .and_then(|rest| rest.components().next())
            .and_then(|c| c.as_os_str().to_str())
            .is_some_and(|first| is_owned_name(&f.base, first))
    })
}

/// Marks `dir` as the host's own by creating [`PRIVATE_MARKER`] in it
/// (mode 0600), unless it is there already.
pub fn mark_private(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(PRIVATE_MARKER);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => return Ok(()),
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("`{}` is not a regular file", path.display()),
            ));
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let mut f =
        match std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().write(true).create_new(true), 0o600)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(e),
        };
    f.write_all(MARKER_TEXT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_family_is_the_name_and_every_dotted_extension() {
        for name in [
            "audit.jsonl",
            "audit.jsonl.000000000042",
            "audit.jsonl.pruned",
            "audit.jsonl.checkpoints",
            "audit.jsonl.sink-siem.cursor",
            "audit.jsonl.sink-siem.cursor.tmp",
            "audit.jsonl.sink-siem.lock",
            "audit.jsonl.staging",
            "audit.jsonl.anything-later",
        ] {
            assert!(is_owned_name("audit.jsonl", name), "{name}");
        }
        for name in ["audit.json", "audit.jsonlx", "xaudit.jsonl", "audit", ".audit.jsonl"] {
            assert!(!is_owned_name("audit.jsonl", name), "{name}");
        }
    }

    #[test]
    fn each_kind_of_file_has_its_rule() {
        let r = |n: &str| owned_rule("a.jsonl", n);
        assert_eq!(r("a.jsonl"), Some(""));
        assert_eq!(r("a.jsonl.000000000001"), Some("builtin:audit-log"));
        assert_eq!(r("a.jsonl.checkpoints"), Some("builtin:audit-checkpoints"));
        assert_eq!(r("a.jsonl.sink-x.lock"), Some("builtin:audit-sink-cursor"));
        assert_eq!(r("a.jsonl.staging"), Some("builtin:audit-staging"));
        assert_eq!(r("a.jsonl.staging.quarantined-1"), Some("builtin:audit-staging"));
        assert_eq!(r("a.jsonl.stagingx"), Some("builtin:audit-log"));
        assert_eq!(r("a.jsonl.pruned"), Some("builtin:audit-prune-records"));
        assert_eq!(r("a.jsonlx"), None);
    }

    #[test]
    fn every_file_the_crates_name_is_in_the_family() {
        let log = Path::new("/l/audit.jsonl");
        let fams = families(log, Some(Path::new("/l/audit.jsonl.checkpoints")));
        assert_eq!(fams.len(), 1, "the default checkpoint file is in the log's family");
        for p in [
            log.to_path_buf(),
            crate::read::segment_path(log, 7),
            crate::prune::record_path(log),
            PathBuf::from("/l/audit.jsonl.staging/0123456789abcdef/plan"),
            PathBuf::from("/l/audit.jsonl.staging/key"),
        ] {
            assert!(owns(&fams, &p), "{}", p.display());
        }
        assert!(!owns(&fams, Path::new("/l/other.txt")));
        assert!(!owns(&fams, Path::new("/l/sub/audit.jsonl")));
        let fams = families(log, Some(Path::new("/c/cp.jsonl")));
        assert_eq!(fams.len(), 2);
        assert!(owns(&fams, Path::new("/c/cp.jsonl")));
        assert!(owns(&fams, Path::new("/c/cp.jsonl.lock")));
    }

    #[test]
    fn a_marker_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        mark_private(dir.path()).unwrap();
        mark_private(dir.path()).unwrap();
        let m = std::fs::metadata(dir.path().join(PRIVATE_MARKER)).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777, 0o600);
    }
}
