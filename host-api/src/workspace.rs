//! The workspace root and every file-system effect a tool can cause.
//!
//! This module holds the runtime's only ambient file-system authority:
//! [`Workspace::open_ambient`] opens the root directory once, as a
//! `cap_std::fs::Dir`. Everything else is relative to that handle.
//!
//! How a path is reached ([`Workspace::locate`]): the parent directory is
//! opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (or, where
//! the kernel lacks it, one `openat(O_NOFOLLOW)` per component), so no
//! symlink is followed anywhere and nothing above the root is reached. When
//! a symlink is in the way, `cap-std` says where it really leads (refusing
//! anything outside the root) and that real path is opened the same way;
//! the caller decides on both the asked and the real path. Operations then
//! act on the final name inside the opened parent (`*at` calls with
//! `O_NOFOLLOW`), so a link swapped during a call cannot redirect them.
//!
//! FIFOs and devices are never opened for reading or writing (their type is
//! checked first, and opens use `O_NONBLOCK | O_NOCTTY`), so they cannot
//! hang the host.

use cap_std::ambient_authority;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;
use sandbox_policy::RelPath;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The most entries a directory rename checks before refusing.
pub const MAX_RENAME_CHECK: usize = 10_000;

/// Why a file-system step failed, in the terms the guest sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsError {
    /// Leads outside the workspace (a symlink pointing out).
    Outside(String),
    /// The target (or a directory on the way) does not exist.
    NotFound,
    /// Something else failed; the reason is safe to show.
    Failed(String),
}

impl FsError {
    fn from_io(e: &io::Error) -> FsError {
        match e.kind() {
            io::ErrorKind::NotFound => FsError::NotFound,
            io::ErrorKind::PermissionDenied if e.raw_os_error().is_none() => {
                FsError::Outside("a symlink leads outside the workspace".into())
            }
            _ => FsError::Failed(sandbox_policy::io_reason(e)),
        }
    }

    fn from_errno(e: Errno) -> FsError {
        if e == Errno::NOENT {
            FsError::NotFound
        } else {
            FsError::Failed(sandbox_policy::io_reason(&io::Error::from(e)))
        }
    }
}

/// A path reached without following any symlink: its real parent directory
/// (opened) and its final name.
#[derive(Debug)]
pub struct Located {
    /// Where the path really is (equal to the asked path when no symlink
    /// was on the way).
    pub real: RelPath,
    /// The real parent directory, opened `O_PATH`.
    pub parent: OwnedFd,
    /// The final component; empty for the root.
    pub name: String,
    /// `lstat` of the final component; `None` when it does not exist.
    pub stat: Option<Stat>,
}

impl Located {
    /// The file type of the final component, if it exists.
    pub fn file_type(&self) -> Option<FileType> {
        self.stat.as_ref().map(|s| FileType::from_raw_mode(s.st_mode))
    }
}

/// The workspace root, opened once.
#[derive(Debug)]
pub struct Workspace {
    root: cap_std::fs::Dir,
    root_path: PathBuf,
    openat2: bool,
}

impl Workspace {
    /// Opens the workspace root.
    ///
    /// # Ambient Authority
    ///
    /// Opens `path` with the process's own authority; everything the tool
    /// does afterwards is relative to this handle.
    pub fn open_ambient(path: &Path) -> io::Result<Workspace> {
        let root = cap_std::fs::Dir::open_ambient_dir(path, ambient_authority())?;
        let root_path = std::fs::canonicalize(path)?;
        let openat2 = match rustix::fs::openat2(
            &root,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
        ) {
            Ok(_) => true,
            Err(e) if e == Errno::NOSYS || e == Errno::PERM || e == Errno::INVAL => false,
            Err(e) => return Err(e.into()),
        };
        Ok(Workspace { root, root_path, openat2 })
    }

    /// The root's absolute path on the host (for audit records).
    pub fn root_path(&self) -> &Path {
        &self.root_path
    }

    /// Opens `path` without following any symlink (`ELOOP` when one is in
    /// the way) and never leaving the root.
    fn open_nofollow(&self, path: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
        let path = if path.is_empty() { "." } else { path };
        // openat2 refuses O_PATH with anything but these flags.
        let extra = if flags.contains(OFlags::PATH) { OFlags::empty() } else { OFlags::NOCTTY };
        let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW | extra;
        if self.openat2 {
            return rustix::fs::openat2(
                &self.root,
                path,
                flags,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            );
        }
        // One component at a time: each must be a real directory.
        let mut comps = path.split('/').filter(|c| !c.is_empty() && *c != ".").peekable();
        let mut cur =
            rustix::fs::openat(&self.root, ".", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        while let Some(comp) = comps.next() {
            let last = comps.peek().is_none();
            let st = rustix::fs::statat(&cur, comp, AtFlags::SYMLINK_NOFOLLOW)?;
            let ft = FileType::from_raw_mode(st.st_mode);
            if ft == FileType::Symlink {
                return Err(Errno::LOOP);
            }
            let fd = if last {
                rustix::fs::openat(&cur, comp, flags, Mode::empty())?
            } else {
                if ft != FileType::Directory {
                    return Err(Errno::NOTDIR);
                }
                rustix::fs::openat(
                    &cur,
                    comp,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                    Mode::empty(),
                )?
            };
            let now = rustix::fs::fstat(&fd)?;
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
                return Err(Errno::AGAIN);
            }
            cur = fd;
        }
        Ok(cur)
    }

    /// True when `path` (a real, symlink-free path) is, or lies inside, a
    /// directory holding the host's private marker
    /// (`sandbox_audit::owned::PRIVATE_MARKER`): a compile cache, a staging
    /// directory, whichever run made it. Anything unexpected on the way
    /// (a symlink swapped in) counts as marked: fail closed.
    pub fn in_private_dir(&self, path: &RelPath) -> bool {
        let mut prefix = String::new();
        let mut comps = path.components();
        loop {
            match self.holds_marker(&prefix) {
                Some(false) => {}
                Some(true) => return true,
                // Not a directory, or not there: nothing deeper is either.
                None => return false,
            }
            let Some(next) = comps.next() else { return false };
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(next);
        }
    }

    /// Whether the directory `dir` (real, relative; empty: the root) holds
    /// the private marker; `None` when `dir` is not a directory there.
    pub fn holds_marker(&self, dir: &str) -> Option<bool> {
        let fd = match self.open_nofollow(dir, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => return None,
            Err(_) => return Some(true),
        };
        match rustix::fs::statat(&fd, sandbox_audit::owned::PRIVATE_MARKER, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Some(false),
            _ => Some(true),
        }
    }

    /// Where `path` really leads, following symlinks inside the root.
    pub fn canonical(&self, path: &RelPath) -> Result<RelPath, FsError> {
        let p = if path.is_root() { "." } else { path.as_str() };
        let real = self.root.canonicalize(p).map_err(|e| FsError::from_io(&e))?;
        let s = real.to_str().ok_or_else(|| FsError::Failed("the real path is not UTF-8".into()))?;
        RelPath::normalise(s).map_err(|_| FsError::Outside("a symlink leads outside the workspace".into()))
    }

    /// Opens the real parent of `path` and looks at its final component
    /// without following it. With `follow_last`, a final symlink is
    /// resolved too and the result describes its target.
    pub fn locate(&self, path: &RelPath, follow_last: bool) -> Result<Located, FsError> {
        let located = self.locate_parent(path)?;
        if follow_last && located.file_type() == Some(FileType::Symlink) {
            let real = self.canonical(path)?;
            let again = self.locate_parent(&real)?;
            if again.file_type() == Some(FileType::Symlink) {
                return Err(FsError::Failed("the path changed during the call".into()));
            }
            return Ok(again);
        }
        Ok(located)
    }

    fn locate_parent(&self, path: &RelPath) -> Result<Located, FsError> {
        let Some((parent, name)) = path.split_last() else {
            let fd = self.open_nofollow("", OFlags::PATH | OFlags::DIRECTORY).map_err(FsError::from_errno)?;
            let stat = rustix::fs::fstat(&fd).map_err(FsError::from_errno)?;
            return Ok(Located { real: RelPath::root(), parent: fd, name: String::new(), stat: Some(stat) });
        };
        let (real_parent, fd) = match self.open_nofollow(parent.as_str(), OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => (parent, fd),
            Err(e) if e == Errno::LOOP || e == Errno::NOTDIR || e == Errno::AGAIN => {
                let real = self.canonical(&parent)?;
                let fd = self.open_nofollow(real.as_str(), OFlags::PATH | OFlags::DIRECTORY).map_err(|e| {
                    if e == Errno::LOOP {
                        FsError::Failed("the path changed during the call".into())
                    } else {
                        FsError::from_errno(e)
                    }
                })?;
                (real, fd)
            }
            Err(e) => return Err(FsError::from_errno(e)),
        };
        let stat = match rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(s) => Some(s),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(FsError::from_errno(e)),
        };
        let real = real_parent.join_name(name).ok_or_else(|| FsError::Failed("bad file name".into()))?;
        Ok(Located { real, parent: fd, name: name.to_owned(), stat })
    }

    /// Reads a regular file located with [`locate`](Self::locate), refusing
    /// more than `max` bytes.
    pub fn read(&self, at: &Located, max: u64) -> Result<ReadOutcome, FsError> {
        let expected = at.stat.as_ref().ok_or(FsError::NotFound)?;
        let fd = rustix::fs::openat(
            &at.parent,
            name_or_dot(at),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(FsError::from_errno)?;
        same_file(&fd, expected)?;
        let mut file = std::fs::File::from(fd);
        let mut data = Vec::with_capacity(expected.st_size.clamp(0, max as i64) as usize);
        (&mut file).take(max + 1).read_to_end(&mut data).map_err(|e| FsError::from_io(&e))?;
        if data.len() as u64 > max {
            return Ok(ReadOutcome::TooLarge);
        }
        Ok(ReadOutcome::Data(data))
    }

    /// The entries of a directory located with `follow_last`: (name, type,
    /// size). Names that are not UTF-8 are left out.
    pub fn list(&self, at: &Located) -> Result<Vec<(String, FileType, u64)>, FsError> {
        let fd = rustix::fs::openat(
            &at.parent,
            name_or_dot(at),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(FsError::from_errno)?;
        if let Some(expected) = &at.stat {
            same_file(&fd, expected)?;
        }
        let dir = rustix::fs::Dir::read_from(&fd).map_err(FsError::from_errno)?;
        let mut out = Vec::new();
        for entry in dir {
            let entry = entry.map_err(FsError::from_errno)?;
            let Ok(name) = entry.file_name().to_str() else { continue };
            if name == "." || name == ".." {
                continue;
            }
            let (ft, size) = match rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => (FileType::from_raw_mode(st.st_mode), st.st_size.max(0) as u64),
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(FsError::from_errno(e)),
            };
            out.push((name.to_owned(), ft, size));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Fails unless the final component is still what [`locate`](Self::locate)
    /// saw (the same file, size and modification time, or still absent):
    /// time passes between a decision (and an approval) and the effect, and
    /// a target that changed meanwhile must be decided (and approved) anew.
    pub fn still_same(&self, at: &Located) -> Result<(), FsError> {
        let now = match rustix::fs::statat(&at.parent, name_or_dot(at), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(st),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(FsError::from_errno(e)),
        };
        let key = |s: &Stat| (s.st_dev, s.st_ino, s.st_size, s.st_mtime, s.st_mtime_nsec, s.st_mode);
        if now.as_ref().map(key) != at.stat.as_ref().map(key) {
            return Err(FsError::Failed(
                "it changed after it was checked (and approved); nothing was done: call again to decide anew".into(),
            ));
        }
        Ok(())
    }

    /// Replaces (or creates) a file atomically: the data goes to a temporary
    /// file in the same directory, is synced, and is renamed over the name.
    /// An existing file keeps its permission bits.
    pub fn write_atomic(&self, at: &Located, data: &[u8]) -> Result<(), FsError> {
        self.still_same(at)?;
        let mode = at.stat.as_ref().map_or(Mode::from_raw_mode(0o644), |s| Mode::from_raw_mode(s.st_mode & 0o777));
        let tmp = temp_name(&at.name);
        let fd = rustix::fs::openat(
            &at.parent,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            mode,
        )
        .map_err(FsError::from_errno)?;
        let result = (|| {
            if at.stat.is_some() {
                rustix::fs::fchmod(&fd, mode).map_err(FsError::from_errno)?;
            }
            let mut file = std::fs::File::from(fd);
            file.write_all(data).map_err(|e| FsError::from_io(&e))?;
            file.sync_data().map_err(|e| FsError::from_io(&e))?;
            rustix::fs::renameat(&at.parent, tmp.as_str(), &at.parent, at.name.as_str()).map_err(FsError::from_errno)
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&at.parent, tmp.as_str(), AtFlags::empty());
        }
        result
    }

    /// Appends to a regular file with one link, creating it if needed.
    pub fn append(&self, at: &Located, data: &[u8]) -> Result<(), FsError> {
        self.still_same(at)?;
        let fd = rustix::fs::openat(
            &at.parent,
            at.name.as_str(),
            OFlags::WRONLY
                | OFlags::APPEND
                | OFlags::CREATE
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::NOCTTY
                | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(FsError::from_errno)?;
        let st = rustix::fs::fstat(&fd).map_err(FsError::from_errno)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_nlink > 1 {
            return Err(FsError::Failed("the file changed during the call".into()));
        }
        if let Some(expected) = &at.stat {
            same_file(&fd, expected)?;
        }
        std::fs::File::from(fd).write_all(data).map_err(|e| FsError::from_io(&e))
    }

    /// Creates one directory.
    pub fn create_dir(&self, at: &Located) -> Result<(), FsError> {
        self.still_same(at)?;
        rustix::fs::mkdirat(&at.parent, at.name.as_str(), Mode::from_raw_mode(0o755)).map_err(|e| match e {
            Errno::EXIST => FsError::Failed("already exists".into()),
            e => FsError::from_errno(e),
        })
    }

    /// Removes a file, a symlink or an empty directory.
    pub fn remove(&self, at: &Located) -> Result<(), FsError> {
        self.still_same(at)?;
        let flags = if at.file_type() == Some(FileType::Directory) { AtFlags::REMOVEDIR } else { AtFlags::empty() };
        rustix::fs::unlinkat(&at.parent, at.name.as_str(), flags).map_err(|e| match e {
            Errno::NOTEMPTY | Errno::EXIST => FsError::Failed("the directory is not empty".into()),
            e => FsError::from_errno(e),
        })
    }

    /// Moves `src` to `dst`, replacing what `dst` names.
    pub fn rename(&self, src: &Located, dst: &Located) -> Result<(), FsError> {
        self.still_same(src)?;
        self.still_same(dst)?;
        rustix::fs::renameat(&src.parent, src.name.as_str(), &dst.parent, dst.name.as_str())
            .map_err(FsError::from_errno)
    }

    /// Every path below the directory `dir` (a real path), without
    /// following symlinks: at most `max` entries, `None` beyond.
    pub fn tree(&self, dir: &RelPath, max: usize) -> Result<Option<Vec<RelPath>>, FsError> {
        let mut out = Vec::new();
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            let fd = self.open_nofollow(d.as_str(), OFlags::RDONLY | OFlags::DIRECTORY).map_err(FsError::from_errno)?;
            for entry in rustix::fs::Dir::read_from(&fd).map_err(FsError::from_errno)? {
                let entry = entry.map_err(FsError::from_errno)?;
                let name = entry.file_name().to_string_lossy();
                if name == "." || name == ".." {
                    continue;
                }
                let Some(child) = d.join_name(&name) else {
                    return Err(FsError::Failed("a name inside cannot be checked".into()));
                };
                let st =
                    rustix::fs::statat(&fd, name.as_ref(), AtFlags::SYMLINK_NOFOLLOW).map_err(FsError::from_errno)?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    stack.push(child.clone());
                }
                out.push(child);
                if out.len() > max {
                    return Ok(None);
                }
            }
        }
        Ok(Some(out))
    }

    /// Opens a regular file located with [`locate`](Self::locate) for
    /// reading (a stream, for hashing large files), checking that it is
    /// still the file that was located.
    pub fn open_file(&self, at: &Located) -> Result<std::fs::File, FsError> {
        let expected = at.stat.as_ref().ok_or(FsError::NotFound)?;
        let fd = rustix::fs::openat(
            &at.parent,
            name_or_dot(at),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(FsError::from_errno)?;
        same_file(&fd, expected)?;
        Ok(std::fs::File::from(fd))
    }

    /// Replaces (or creates) a file atomically like
    /// [`write_atomic`](Self::write_atomic), with the permission bits given,
    /// through a temporary file of the given name in the same directory. An
    /// apply of staged changes names its temporary files so that a recovery
    /// after a crash finds them ([`remove_temp`](Self::remove_temp)).
    pub fn write_atomic_as(&self, at: &Located, data: &[u8], mode: u32, tmp: &str) -> Result<(), FsError> {
        self.still_same(at)?;
        let mode = Mode::from_raw_mode(mode & 0o777);
        let fd = rustix::fs::openat(
            &at.parent,
            tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            mode,
        )
        .map_err(FsError::from_errno)?;
        let result = (|| {
            rustix::fs::fchmod(&fd, mode).map_err(FsError::from_errno)?;
            let mut file = std::fs::File::from(fd);
            file.write_all(data).map_err(|e| FsError::from_io(&e))?;
            file.sync_data().map_err(|e| FsError::from_io(&e))?;
            rustix::fs::renameat(&at.parent, tmp, &at.parent, at.name.as_str()).map_err(FsError::from_errno)
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&at.parent, tmp, AtFlags::empty());
        }
        result
    }

    /// Removes the temporary file `tmp` from the directory of `at`, if it
    /// is there.
    pub fn remove_temp(&self, at: &Located, tmp: &str) -> Result<(), FsError> {
        match rustix::fs::unlinkat(&at.parent, tmp, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(FsError::from_errno(e)),
        }
    }

    /// Makes the entries of the directory holding `at` durable (a name
    /// created, replaced or removed there).
    pub fn sync_parent(&self, at: &Located) -> Result<(), FsError> {
        let fd =
            rustix::fs::openat(&at.parent, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(FsError::from_errno)?;
        rustix::fs::fsync(&fd).map_err(FsError::from_errno)
    }
}

/// What [`Workspace::read`] found.
#[derive(Debug)]
pub enum ReadOutcome {
    /// The whole file.
    Data(Vec<u8>),
    /// The file is larger than allowed.
    TooLarge,
}

fn name_or_dot(at: &Located) -> &str {
    if at.name.is_empty() { "." } else { at.name.as_str() }
}

fn same_file(fd: &impl AsFd, expected: &Stat) -> Result<(), FsError> {
    let now = rustix::fs::fstat(fd).map_err(FsError::from_errno)?;
    if (now.st_dev, now.st_ino) != (expected.st_dev, expected.st_ino) {
        return Err(FsError::Failed("the file changed during the call".into()));
    }
    Ok(())
}

fn temp_name(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let short: String = name.chars().take(40).collect();
    format!(".{short}.sandbox-{}-{n}.tmp", std::process::id())
}
