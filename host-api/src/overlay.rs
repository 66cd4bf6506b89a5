//! Applying what a program changed on its staged copy of the workspace.
//!
//! A program runs with an overlay mounted over the workspace in a private
//! mount namespace (see [`crate::exec`]): the workspace is the read-only
//! lower layer, and every change lands in an upper directory in the run's
//! private temporary directory. When the program and everything it started
//! are gone, [`collect`] turns that upper directory into a list of changes
//! and checks every path a change touches against [`ProgramWrites`] — a
//! deletion touches everything below the deleted path. One refusal and
//! nothing is applied. Otherwise [`apply`] makes the changes, parents
//! first.
//!
//! The upper directory, as overlayfs writes it:
//! - a regular file, symlink or directory: created or changed there (a
//!   directory may be only a container for changes below it);
//! - a character device 0/0: a whiteout, the path was deleted;
//! - a directory with the `overlay.opaque` attribute: it replaced a
//!   directory that was deleted (its old contents are gone);
//! - a socket: dropped (meaningless once its listener is gone);
//! - a hard link (more than one name for a file), a FIFO or any other
//!   device: refused, the program's changes are not applied.
//!
//! Files are written beside their target and renamed over it, with their
//! permission bits (set-user-ID, set-group-ID and sticky bits dropped) and
//! modification time; a replaced file keeps its owner where the host may
//! set it. The workspace is not supposed to change while a program runs
//! (the tool waits for the call): an apply that finds a symlink or a
//! missing directory where the program saw a directory stops there.

use sandbox_policy::program_writes::ProgramWrites;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a program's changes were not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The rule that refused (`builtin:program-writes`, `builtin:manifest`).
    pub rule: String,
    /// The workspace path (relative).
    pub path: String,
    /// What protects it, or what is wrong with the change.
    pub why: String,
}

/// One change to make to the workspace.
#[derive(Debug)]
pub enum Change {
    /// Remove the path (and everything below it).
    Remove(PathBuf),
    /// Create a directory with these permission bits.
    MakeDir(PathBuf, u32),
    /// Change a directory's permission bits.
    Chmod(PathBuf, u32),
    /// Write the file from the upper layer.
    File(PathBuf),
    /// Create a symlink with this target.
    Symlink(PathBuf, PathBuf),
}

impl Change {
    fn path(&self) -> &Path {
        match self {
            Change::Remove(p)
            | Change::MakeDir(p, _)
            | Change::Chmod(p, _)
            | Change::File(p)
            | Change::Symlink(p, _) => p,
        }
    }
}

/// The changes in `upper` for the workspace `ws`, every touched path
/// checked against `guard`; `Err` on the first refusal. Sockets are left
/// out.
pub fn collect(upper: &Path, ws: &Path, guard: &ProgramWrites) -> Result<Vec<Change>, Refused> {
    let mut out = Vec::new();
    walk(upper, ws, Path::new(""), guard, &mut out)?;
    Ok(out)
}

fn text(rel: &Path) -> String {
    rel.to_string_lossy().into_owned()
}

fn check(guard: &ProgramWrites, rel: &Path) -> Result<(), Refused> {
    match guard.refusal(&text(rel)) {
        None => Ok(()),
        Some((rule, protection)) => {
            Err(Refused { rule, path: text(rel), why: format!("programs may never change {protection}") })
        }
    }
}

fn refused(rel: &Path, why: &str) -> Refused {
    Refused { rule: sandbox_policy::program_writes::RULE.to_owned(), path: text(rel), why: why.to_owned() }
}

/// Checks `rel` and, when the workspace holds a directory there,
/// everything below it (a removal takes it all).
fn check_removal(guard: &ProgramWrites, ws: &Path, rel: &Path, real: &Metadata) -> Result<(), Refused> {
    check(guard, rel)?;
    if !real.is_dir() {
        return Ok(());
    }
    let entries = fs::read_dir(ws.join(rel)).map_err(|e| refused(rel, &format!("cannot read what it removes: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| refused(rel, &format!("cannot read what it removes: {e}")))?;
        let child = rel.join(entry.file_name());
        let meta = fs::symlink_metadata(ws.join(&child))
            .map_err(|e| refused(&child, &format!("cannot read what it removes: {e}")))?;
        check_removal(guard, ws, &child, &meta)?;
    }
    Ok(())
}

fn mode(meta: &Metadata) -> u32 {
    meta.permissions().mode() & 0o7777
}

fn same_content(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (Ok(mut x), Ok(mut y)) = (File::open(a), File::open(b)) else { return false };
    let (mut bx, mut by) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = match x.read(&mut bx) {
            Ok(n) => n,
            Err(_) => return false,
        };
        if y.read_exact(&mut by[..n]).is_err() {
            return false;
        }
        if bx[..n] != by[..n] {
            return false;
        }
        if n == 0 {
            // `b` must end here too.
            return matches!(y.read(&mut by[..1]), Ok(0));
        }
    }
}

fn opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"].iter().any(|name| {
        let mut buf = [0u8; 4];
        matches!(rustix::fs::lgetxattr(path, *name, &mut buf[..]), Ok(n) if buf[..n] == *b"y")
    })
}

fn walk(upper: &Path, ws: &Path, dir: &Path, guard: &ProgramWrites, out: &mut Vec<Change>) -> Result<(), Refused> {
    let unreadable = |e: io::Error| refused(dir, &format!("cannot read the program's changes: {e}"));
    let mut names: Vec<_> = fs::read_dir(upper.join(dir))
        .map_err(unreadable)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(unreadable)?;
    names.sort();
    for name in names {
        let rel = dir.join(&name);
        let staged = upper.join(&rel);
        let meta = fs::symlink_metadata(&staged).map_err(|e| refused(&rel, &format!("cannot read the change: {e}")))?;
        let real = fs::symlink_metadata(ws.join(&rel)).ok();
        let kind = meta.file_type();
        if kind.is_char_device() && meta.rdev() == 0 {
            // A whiteout: the program deleted the path.
            if let Some(real) = &real {
                check_removal(guard, ws, &rel, real)?;
                out.push(Change::Remove(rel));
            }
        } else if kind.is_dir() {
            match &real {
                Some(r) if r.is_dir() && opaque(&staged) => {
                    check_removal(guard, ws, &rel, r)?;
                    out.push(Change::Remove(rel.clone()));
                    out.push(Change::MakeDir(rel.clone(), mode(&meta)));
                }
                Some(r) if r.is_dir() => {
                    if mode(r) != mode(&meta) {
                        check(guard, &rel)?;
                        out.push(Change::Chmod(rel.clone(), mode(&meta)));
                    }
                }
                Some(r) => {
                    check_removal(guard, ws, &rel, r)?;
                    out.push(Change::Remove(rel.clone()));
                    out.push(Change::MakeDir(rel.clone(), mode(&meta)));
                }
                None => {
                    check(guard, &rel)?;
                    out.push(Change::MakeDir(rel.clone(), mode(&meta)));
                }
            }
            walk(upper, ws, &rel, guard, out)?;
        } else if kind.is_file() {
            if meta.nlink() > 1 {
                return Err(refused(&rel, "a hard link is never applied"));
            }
            let unchanged = real.as_ref().is_some_and(|r| {
                r.is_file() && mode(r) == mode(&meta) && r.len() == meta.len() && same_content(&staged, &ws.join(&rel))
            });
            if unchanged {
                continue;
            }
            check(guard, &rel)?;
            if let Some(r) = real.as_ref().filter(|r| r.is_dir()) {
                check_removal(guard, ws, &rel, r)?;
                out.push(Change::Remove(rel.clone()));
            }
            out.push(Change::File(rel));
        } else if kind.is_symlink() {
            let target = fs::read_link(&staged).map_err(|e| refused(&rel, &format!("cannot read the symlink: {e}")))?;
            let real_target = real.as_ref().filter(|r| r.is_symlink()).and_then(|_| fs::read_link(ws.join(&rel)).ok());
            if real_target.as_ref() == Some(&target) {
                continue;
            }
            check(guard, &rel)?;
            if let Some(r) = &real {
                check_removal(guard, ws, &rel, r)?;
                out.push(Change::Remove(rel.clone()));
            }
            out.push(Change::Symlink(rel, target));
        } else if kind.is_socket() {
            continue;
        } else {
            return Err(refused(&rel, "a device or a FIFO is never applied"));
        }
    }
    Ok(())
}

/// Makes `changes` (from [`collect`]) in the workspace `ws`, reading files
/// from `upper`. Returns how many were made, or where it stopped.
pub fn apply(upper: &Path, ws: &Path, changes: &[Change]) -> Result<usize, String> {
    let is_root = rustix::process::geteuid().is_root();
    for (done, change) in changes.iter().enumerate() {
        let rel = change.path();
        let stopped = |e: io::Error| {
            format!(
                "applying the program's changes stopped at `{}`: {e} ({done} of {} applied)",
                rel.display(),
                changes.len()
            )
        };
        real_parents(ws, rel).map_err(stopped)?;
        let at = ws.join(rel);
        match change {
            Change::Remove(_) => match fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&at).map_err(stopped)?,
                Ok(_) => fs::remove_file(&at).map_err(stopped)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(stopped(e)),
            },
            Change::MakeDir(_, mode) => {
                match fs::create_dir(&at) {
                    Ok(()) => {}
                    Err(e)
                        if e.kind() == io::ErrorKind::AlreadyExists
                            && fs::symlink_metadata(&at).is_ok_and(|m| m.is_dir()) => {}
                    Err(e) => return Err(stopped(e)),
                }
                fs::set_permissions(&at, fs::Permissions::from_mode(mode & 0o777)).map_err(stopped)?;
            }
            Change::Chmod(_, mode) => {
                if !fs::symlink_metadata(&at).map_err(stopped)?.is_dir() {
                    return Err(stopped(io::Error::other("no longer a directory")));
                }
                fs::set_permissions(&at, fs::Permissions::from_mode(mode & 0o777)).map_err(stopped)?;
            }
            Change::File(_) => write_file(&upper.join(rel), &at, is_root).map_err(stopped)?,
            Change::Symlink(_, target) => {
                if let Ok(m) = fs::symlink_metadata(&at) {
                    if m.is_dir() {
                        fs::remove_dir_all(&at).map_err(stopped)?;
                    } else {
                        fs::remove_file(&at).map_err(stopped)?;
                    }
                }
                std::os::unix::fs::symlink(target, &at).map_err(stopped)?;
            }
        }
    }
    Ok(changes.len())
}

/// Every parent of `rel` in `ws` must be a real directory (no symlink):
/// the program saw directories there.
fn real_parents(ws: &Path, rel: &Path) -> io::Result<()> {
    let mut at = ws.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        at.push(part);
        let meta = fs::symlink_metadata(&at)?;
        if !meta.is_dir() {
            return Err(io::Error::other(format!("`{}` is no longer a directory", at.display())));
        }
    }
    Ok(())
}

/// Copies `from` beside `to` and renames it over `to`.
fn write_file(from: &Path, to: &Path, is_root: bool) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    let old = fs::symlink_metadata(to).ok();
    let dir = to.parent().ok_or_else(|| io::Error::other("no parent directory"))?;
    let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.sandbox-apply-{}.tmp", std::process::id()));
    let result = (|| {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&tmp)?;
        io::copy(&mut File::open(from)?, &mut out)?;
        out.set_permissions(fs::Permissions::from_mode(meta.permissions().mode() & 0o777))?;
        if let Ok(modified) = meta.modified() {
            out.set_times(fs::FileTimes::new().set_modified(modified))?;
        }
        if is_root && let Some(old) = old.as_ref().filter(|o| o.is_file()) {
            std::os::unix::fs::fchown(&out, Some(old.uid()), Some(old.gid()))?;
        }
        fs::rename(&tmp, to)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
