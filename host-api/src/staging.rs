//! `[approval] writes = "end-of-task"`: a task's changes are staged, shown
//! to a reviewer as one diff at the end, and applied together or not at all.
//!
//! **Staging.** Every write-class `fs` call (write, append, create-dir,
//! remove, rename) that the manifest permits walks the corridor as usual (a
//! `call` event with the manifest's decision, `allow` or `ask`) but is not
//! put to the approver and does not touch the workspace: its effect goes to
//! an overlay held in memory ([`Staging`]) and its `result` event says
//! `outcome: "staged"`. The overlay maps real (symlink-free) workspace
//! paths to what the task made of them: a file (new bytes, or the bytes of
//! a workspace file it moved), a new directory, or a removal. The tool's
//! reads, stats and listings consult the overlay first ([`Staging::lookup`]),
//! so it sees its own changes; decisions are unchanged. Staged bytes are
//! held in memory and limited to `limits.memory` in all.
//!
//! **The end of the task** (`corridor::settle`). When the tool has exited
//! on its own, the overlay is compared with the workspace
//! ([`Staging::changes`]) into ordered steps: removals that make room for
//! an entry of another type, deepest first; directories to create,
//! shallowest first; files to write, by path; the other removals, deepest
//! first. They are rendered as one unified diff, whose SHA-256 is recorded
//! and put to the approver once, with the rules that asked.
//!
//! **The journal.** Before the first change, under an exclusive lock on
//! `<audit log>.staging/lock`, the new contents and then the plan are
//! written durably to `<audit log>.staging/<task>/` (`blob-N`, then `plan`,
//! renamed into place: the commit point; `<task>` is a hash of the task
//! id). Between the blobs and the commit every target is checked to be
//! still what it was when the diff was made. Each step is then one
//! write-then-rename, `mkdir`, `unlink` or `rmdir`, followed by an fsync of
//! its directory; after the last one the journal is removed.
//!
//! The staging directory is the host's own: created mode 0700, owned by
//! the account `sandbox` runs as, and marked private
//! (`sandbox_audit::owned::PRIVATE_MARKER`), so that the file-system door
//! of every run refuses it; it is also in the audit log's family of names
//! (`sandbox_audit::owned`). It holds `key`, 32 random bytes (mode 0600)
//! made by this host: the plan's last line is an HMAC-SHA256 of the rest
//! under that key, so only this host can commit a plan.
//!
//! **Recovery** ([`recover_ambient`]). A run stopped after the commit
//! leaves its journal behind; the next `sandbox run` with the same audit
//! log completes it before its own `task-start` (roll forward): a step
//! whose target is as it was before is done, one already as the changes
//! make it is left, anything else is a conflict left untouched and
//! recorded. A journal is applied only when every check holds: the
//! staging directory is the host's own (a real directory of this account,
//! closed to others); the plan's MAC verifies under the host key; the
//! audit log verifies and holds the task's `fs.changes` call for exactly
//! this diff, pre-approved (`allow`) or followed by its `approved`
//! approval, by the user, agent and component the plan names; the plan is
//! for the workspace of the manifest in force; and every step is still
//! permitted by that manifest and the built-in protections, outside any
//! private directory. The events are recorded under the interrupted
//! task's identity as the log recorded it and end with its `task-end`
//! (`changes-recovered`). A journal that fails a check is not applied:
//! it is moved to `<audit log>.staging/quarantine/` (a staging directory
//! that is not the host's own is moved aside whole, to
//! `<audit log>.staging.quarantined-<time>`) and a `finding` under the
//! recovering run's identity says why. A journal without a committed plan
//! (stopped before any change) is deleted.

use crate::corridor::{SharedAudit, lock_audit};
use crate::workspace::{FsError, Located, ReadOutcome, Workspace};
use rustix::fs::{FileType, Stat};
use sandbox_audit::{Event, Kind};
use sandbox_policy::RelPath;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Symbolic links followed in one lookup before giving up.
const MAX_LINKS: usize = 40;
/// Files up to this size (both versions) are shown as a line diff; larger
/// ones by size and SHA-256.
const DIFF_TEXT_MAX: usize = 1 << 20;
/// How long an apply or a recovery waits for another one beside the same
/// audit log.
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// The first line of a journal's plan.
const JOURNAL_MAGIC: &str = "sandbox-staging-journal 2";
/// The host key in the staging directory.
const KEY_FILE: &str = "key";
/// Where journals that failed a check are kept, in the staging directory.
const QUARANTINE: &str = "quarantine";
/// The rule of the finding recorded for a journal that is not applied.
pub const JOURNAL_RULE: &str = "builtin:staging-journal";

type HmacSha256 = hmac::Hmac<Sha256>;
/// Reads of whole files (their size was counted against the staging budget).
const WHOLE: u64 = i64::MAX as u64 - 1;

/// Why staged changes could not be made into a diff, checked, journalled,
/// applied or recovered.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// The workspace is not what the staged changes (or the diff) assumed.
    #[error("{0}")]
    Changed(String),
    /// A workspace path could not be read or changed.
    #[error("`{path}`: {reason}")]
    Workspace {
        /// The workspace-relative path.
        path: String,
        /// What failed.
        reason: String,
    },
    /// A host file of the journal could not be read or written.
    #[error("`{}`: cannot {what}: {reason}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The step that failed.
        what: &'static str,
        /// The operating system's reason.
        reason: String,
    },
    /// A journal is not what this version writes.
    #[error("journal `{}`: {reason}", path.display())]
    Journal {
        /// The journal's plan.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The audit log could not be written.
    #[error("audit log: {0}")]
    Audit(String),
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl Fn(std::io::Error) -> StagingError + 'a {
    move |e| StagingError::Io { path: path.to_path_buf(), what, reason: sandbox_policy::io_reason(&e) }
}

fn ws_err(path: &RelPath, e: FsError) -> StagingError {
    let reason = match e {
        FsError::NotFound => "does not exist".to_owned(),
        FsError::Outside(why) | FsError::Failed(why) => why,
    };
    StagingError::Workspace { path: path.display().to_owned(), reason }
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn not_a_directory() -> FsError {
    FsError::Failed("not a directory".into())
}

/// A file's modification time in milliseconds since the epoch.
pub(crate) fn modified_ms(st: &Stat) -> Option<u64> {
    u64::try_from(st.st_mtime).ok().map(|s| s * 1000 + st.st_mtime_nsec / 1_000_000)
}

/// The bytes of a staged file.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    /// Written by the tool.
    Bytes(Arc<Vec<u8>>),
    /// The workspace file the tool moved here (read when needed).
    Moved {
        /// Its real path in the workspace.
        from: RelPath,
        /// Its size when it was moved.
        size: u64,
    },
}

/// A file as the task left it.
#[derive(Debug, Clone)]
pub(crate) struct StagedFile {
    pub content: Content,
    /// Permission bits.
    pub mode: u32,
    /// When it was staged (or last modified, for a moved file).
    pub modified_ms: Option<u64>,
}

impl StagedFile {
    /// New bytes, staged now.
    pub(crate) fn new(data: Vec<u8>, mode: u32) -> StagedFile {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok();
        StagedFile { content: Content::Bytes(Arc::new(data)), mode, modified_ms: now.map(|d| d.as_millis() as u64) }
    }

    /// Its size in bytes.
    pub(crate) fn size(&self) -> u64 {
        match &self.content {
            Content::Bytes(b) => b.len() as u64,
            Content::Moved { size, .. } => *size,
        }
    }
}

/// What the task made of one path.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    File(StagedFile),
    Dir,
    Removed,
}

impl Node {
    fn size(&self) -> u64 {
        match self {
            Node::File(f) => f.size(),
            _ => 0,
        }
    }
}

/// One staged call's effect on the overlay, computed by `prepare` (so that
/// the corridor's `act` cannot fail).
#[derive(Debug)]
pub(crate) enum Op {
    /// A file's new content.
    Put(RelPath, StagedFile),
    /// A new directory.
    Mkdir(RelPath),
    /// A removal.
    Remove(RelPath),
    /// A rename: `removed` become removals, then `placed` are set.
    Move { removed: Vec<RelPath>, placed: Vec<(RelPath, Node)> },
    /// Nothing to do (a rename onto itself).
    Nothing,
}

/// A staged call: its effect, and the manifest's verdict and rule.
#[derive(Debug)]
pub(crate) struct Staged {
    pub op: Op,
    /// The manifest asked for approval.
    pub asked: bool,
    pub rule: String,
}

/// The rules that decided the staged calls on one path.
#[derive(Debug, Default)]
struct Rules {
    asked: BTreeSet<String>,
    allowed: BTreeSet<String>,
}

/// Locks a run's staging area (a poisoned lock still holds a consistent
/// overlay: no code panics while holding it).
pub(crate) fn lock(m: &std::sync::Mutex<Staging>) -> std::sync::MutexGuard<'_, Staging> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The overlay of one task's staged changes.
#[derive(Debug)]
pub struct Staging {
    nodes: BTreeMap<String, Node>,
    rules: BTreeMap<String, Rules>,
    bytes: u64,
    budget: u64,
}

/// What a path is in the staged view.
#[derive(Debug)]
pub(crate) enum Found {
    /// Not shadowed by the overlay: what the workspace has there (`stat`
    /// `None` when nothing).
    Ws(Located),
    /// A staged file.
    File { real: RelPath, file: StagedFile },
    /// A directory the task created.
    Dir { real: RelPath },
    /// Nothing, because of the overlay (removed, or under a new directory).
    Absent { real: RelPath },
}

impl Found {
    /// Where the path really is.
    pub(crate) fn real(&self) -> &RelPath {
        match self {
            Found::Ws(at) => &at.real,
            Found::File { real, .. } | Found::Dir { real } | Found::Absent { real } => real,
        }
    }

    pub(crate) fn exists(&self) -> bool {
        match self {
            Found::Ws(at) => at.stat.is_some(),
            Found::File { .. } | Found::Dir { .. } => true,
            Found::Absent { .. } => false,
        }
    }

    pub(crate) fn is_dir(&self) -> bool {
        match self {
            Found::Ws(at) => at.file_type() == Some(FileType::Directory),
            Found::Dir { .. } => true,
            _ => false,
        }
    }

    /// Size in bytes (0 for a directory the task created).
    pub(crate) fn size(&self) -> u64 {
        match self {
            Found::Ws(at) => at.stat.as_ref().map_or(0, |s| s.st_size.max(0) as u64),
            Found::File { file, .. } => file.size(),
            _ => 0,
        }
    }

    /// The permission bits a new version keeps: the current ones, or 0644.
    pub(crate) fn mode(&self) -> u32 {
        match self {
            Found::Ws(at) => at.stat.as_ref().map_or(0o644, |s| s.st_mode & 0o777),
            Found::File { file, .. } => file.mode,
            _ => 0o644,
        }
    }
}

/// A moved directory's content, as [`Staging::tree`] finds it.
#[derive(Debug)]
pub(crate) enum Moved {
    Dir,
    File(StagedFile),
    /// A workspace file with more than one hard link (how many).
    HardLinked(String),
    /// A symbolic link or a special file.
    Other(&'static str),
}

/// The workspace directory at `path` itself (reached without a symlink).
fn ws_dir(ws: &Workspace, path: &RelPath) -> Option<Located> {
    let at = ws.locate(path, false).ok()?;
    (at.real == *path && at.file_type() == Some(FileType::Directory)).then_some(at)
}

/// True when `path` lies inside the directory `dir`.
pub(crate) fn is_under(path: &RelPath, dir: &RelPath) -> bool {
    dir.is_root() || path.as_str().strip_prefix(dir.as_str()).is_some_and(|rest| rest.starts_with('/'))
}

fn depth(path: &RelPath) -> usize {
    path.components().count()
}

impl Staging {
    /// An empty overlay holding at most `budget` staged bytes.
    pub fn new(budget: u64) -> Staging {
        Staging { nodes: BTreeMap::new(), rules: BTreeMap::new(), bytes: 0, budget }
    }

    /// Paths with staged state.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The most staged bytes.
    pub(crate) fn budget(&self) -> u64 {
        self.budget
    }

    /// Staged bytes after `op`.
    pub(crate) fn bytes_after(&self, op: &Op) -> u64 {
        let mut next: BTreeMap<&str, u64> = BTreeMap::new();
        match op {
            Op::Put(p, f) => {
                next.insert(p.as_str(), f.size());
            }
            Op::Mkdir(p) | Op::Remove(p) => {
                next.insert(p.as_str(), 0);
            }
            Op::Move { removed, placed } => {
                for p in removed {
                    next.insert(p.as_str(), 0);
                }
                for (p, n) in placed {
                    next.insert(p.as_str(), n.size());
                }
            }
            Op::Nothing => {}
        }
        next.into_iter().fold(self.bytes, |total, (p, size)| {
            total.saturating_sub(self.nodes.get(p).map_or(0, Node::size)).saturating_add(size)
        })
    }

    /// Records a staged call's effect.
    pub(crate) fn commit(&mut self, staged: Staged) {
        let Staged { op, asked, rule } = staged;
        let mut set = |path: RelPath, node: Node| {
            let rules = self.rules.entry(path.as_str().to_owned()).or_default();
            if asked {
                rules.asked.insert(rule.clone())
            } else {
                rules.allowed.insert(rule.clone())
            };
            let old = self.nodes.insert(path.as_str().to_owned(), node).map_or(0, |n| n.size());
            let new = self.nodes.get(path.as_str()).map_or(0, Node::size);
            self.bytes = self.bytes.saturating_sub(old).saturating_add(new);
        };
        match op {
            Op::Put(p, f) => set(p, Node::File(f)),
            Op::Mkdir(p) => set(p, Node::Dir),
            Op::Remove(p) => set(p, Node::Removed),
            Op::Move { removed, placed } => {
                for p in removed {
                    set(p, Node::Removed);
                }
                for (p, n) in placed {
                    set(p, n);
                }
            }
            Op::Nothing => {}
        }
    }

    /// Finds `path` in the staged view: the overlay first, then the
    /// workspace, following symlinks (in the workspace) on the way and,
    /// with `follow_last`, at the end. Without staged state this is exactly
    /// [`Workspace::locate`].
    pub(crate) fn lookup(&self, ws: &Workspace, path: &RelPath, follow_last: bool) -> Result<Found, FsError> {
        if self.nodes.is_empty() {
            return ws.locate(path, follow_last).map(Found::Ws);
        }
        self.walk(ws, path, follow_last, 0)
    }

    fn walk(&self, ws: &Workspace, path: &RelPath, follow_last: bool, links: usize) -> Result<Found, FsError> {
        if links > MAX_LINKS {
            return Err(FsError::Failed("too many levels of symbolic links".into()));
        }
        let names: Vec<&str> = path.components().collect();
        if names.is_empty() {
            return ws.locate(path, follow_last).map(Found::Ws);
        }
        let mut cur = RelPath::root();
        // Whether `cur` is a directory of the workspace (else only the
        // overlay can hold what is below it).
        let mut in_ws = true;
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            let here = cur.join_name(name).ok_or_else(|| FsError::Failed("bad file name".into()))?;
            match self.nodes.get(here.as_str()) {
                Some(Node::Removed) => {
                    return if last { Ok(Found::Absent { real: here }) } else { Err(FsError::NotFound) };
                }
                Some(Node::File(f)) => {
                    return if last { Ok(Found::File { real: here, file: f.clone() }) } else { Err(not_a_directory()) };
                }
                Some(Node::Dir) => {
                    if last {
                        return Ok(Found::Dir { real: here });
                    }
                    in_ws = ws_dir(ws, &here).is_some();
                    cur = here;
                    continue;
                }
                None => {}
            }
            if !in_ws {
                return if last { Ok(Found::Absent { real: here }) } else { Err(FsError::NotFound) };
            }
            let at = ws.locate(&here, false)?;
            if at.real != here {
                return Err(FsError::Failed("the path changed during the call".into()));
            }
            match at.file_type() {
                None if last => return Ok(Found::Ws(at)),
                None => return Err(FsError::NotFound),
                Some(FileType::Symlink) if !last || follow_last => {
                    let target = ws.canonical(&here)?;
                    let rest = names[i + 1..].join("/");
                    let next = match (target.is_root(), rest.is_empty()) {
                        (_, true) => target,
                        (true, false) => RelPath::from_normal(rest),
                        (false, false) => RelPath::from_normal(format!("{}/{rest}", target.as_str())),
                    };
                    return self.walk(ws, &next, follow_last, links + 1);
                }
                Some(FileType::Directory) if !last => cur = here,
                Some(_) if !last => return Err(not_a_directory()),
                Some(_) => return Ok(Found::Ws(at)),
            }
        }
        Err(FsError::NotFound)
    }

    /// The staged entries directly inside `dir`.
    fn children<'a>(&'a self, dir: &RelPath) -> impl Iterator<Item = (&'a str, &'a Node)> + 'a {
        let prefix = if dir.is_root() { String::new() } else { format!("{}/", dir.as_str()) };
        let len = prefix.len();
        self.nodes
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .filter_map(move |(k, n)| Some((&k[len..], n)).filter(|(rest, _)| !rest.contains('/')))
    }

    /// The entries of the directory at the real path `dir` in the staged
    /// view: (name, type, size), sorted by name.
    pub(crate) fn list(&self, ws: &Workspace, dir: &RelPath) -> Result<Vec<(String, FileType, u64)>, FsError> {
        let mut out: BTreeMap<String, (FileType, u64)> = BTreeMap::new();
        if let Some(at) = ws_dir(ws, dir) {
            for (name, ft, size) in ws.list(&at)? {
                let shadowed = dir.join_name(&name).is_some_and(|c| self.nodes.contains_key(c.as_str()));
                if !shadowed {
                    out.insert(name, (ft, size));
                }
            }
        }
        for (name, node) in self.children(dir) {
            match node {
                Node::File(f) => out.insert(name.to_owned(), (FileType::RegularFile, f.size())),
                Node::Dir => out.insert(name.to_owned(), (FileType::Directory, 0)),
                Node::Removed => None,
            };
        }
        Ok(out.into_iter().map(|(n, (t, s))| (n, t, s)).collect())
    }

    /// Everything below the directory at the real path `dir` in the staged
    /// view, for moving it: at most `max` entries, `None` beyond.
    pub(crate) fn tree(
        &self,
        ws: &Workspace,
        dir: &RelPath,
        max: usize,
    ) -> Result<Option<Vec<(RelPath, Moved)>>, FsError> {
        let mut out = Vec::new();
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for (name, ft, _) in self.list(ws, &d)? {
                let child =
                    d.join_name(&name).ok_or_else(|| FsError::Failed("a name inside cannot be moved".into()))?;
                let moved = match self.nodes.get(child.as_str()) {
                    Some(Node::File(f)) => Moved::File(f.clone()),
                    Some(Node::Dir) => Moved::Dir,
                    Some(Node::Removed) => continue,
                    None => match ft {
                        FileType::Directory => Moved::Dir,
                        FileType::RegularFile => {
                            let at = ws.locate(&child, false)?;
                            match &at.stat {
                                Some(st) if at.real == child && st.st_nlink == 1 => Moved::File(StagedFile {
                                    content: Content::Moved { from: child.clone(), size: st.st_size.max(0) as u64 },
                                    mode: st.st_mode & 0o777,
                                    modified_ms: modified_ms(st),
                                }),
                                Some(st) if st.st_nlink > 1 => Moved::HardLinked(st.st_nlink.to_string()),
                                _ => return Err(FsError::Failed("the directory changed during the call".into())),
                            }
                        }
                        FileType::Symlink => Moved::Other("a symbolic link"),
                        _ => Moved::Other("a special file"),
                    },
                };
                if matches!(moved, Moved::Dir) {
                    stack.push(child.clone());
                }
                out.push((child, moved));
                if out.len() > max {
                    return Ok(None);
                }
            }
        }
        Ok(Some(out))
    }

    /// Compares the overlay with the workspace as it is now: the steps that
    /// make the workspace what the task left staged, in order, and the diff.
    pub(crate) fn changes(&self, ws: &Workspace, task: &str) -> Result<Changes, StagingError> {
        let (mut early, mut mkdirs, mut writes, mut late) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut olds: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        // Workspace directories the task replaced by a file: what they hold
        // must be gone before they are.
        let mut retyped: Vec<RelPath> = Vec::new();
        for (key, node) in &self.nodes {
            let path = RelPath::from_normal(key.clone());
            let (before, old) = state_of(ws, &path, DIFF_TEXT_MAX)?;
            if let Some(old) = old {
                olds.insert(key.clone(), old);
            }
            let step = |op: StepOp, before: &State, after: State, data: Option<Arc<Vec<u8>>>| Step {
                op,
                path: path.clone(),
                before: before.clone(),
                after,
                data,
            };
            match node {
                Node::Removed if before != State::Absent => {
                    late.push(step(StepOp::Remove, &before, State::Absent, None))
                }
                Node::Removed => {}
                Node::Dir => match &before {
                    State::Dir => {}
                    State::Absent => mkdirs.push(step(StepOp::CreateDir, &before, State::Dir, None)),
                    other => {
                        early.push(step(StepOp::Remove, other, State::Absent, None));
                        mkdirs.push(step(StepOp::CreateDir, &State::Absent, State::Dir, None));
                    }
                },
                Node::File(f) => {
                    let data = Arc::new(file_bytes(ws, f)?);
                    let after = State::File { sha256: sha256(&data), size: data.len() as u64, mode: f.mode & 0o777 };
                    if before == after {
                        continue;
                    }
                    let before = if before == State::Dir {
                        early.push(step(StepOp::Remove, &before, State::Absent, None));
                        retyped.push(path.clone());
                        State::Absent
                    } else {
                        before
                    };
                    writes.push(step(StepOp::Write, &before, after, Some(data)));
                }
            }
        }
        let (under, late): (Vec<Step>, Vec<Step>) =
            late.into_iter().partition(|s| retyped.iter().any(|d| is_under(&s.path, d)));
        early.extend(under);
        let deepest_first = |a: &Step, b: &Step| depth(&b.path).cmp(&depth(&a.path)).then(a.path.cmp(&b.path));
        early.sort_by(deepest_first);
        let mut late = late;
        late.sort_by(deepest_first);
        mkdirs.sort_by(|a, b| depth(&a.path).cmp(&depth(&b.path)).then(a.path.cmp(&b.path)));
        writes.sort_by(|a, b| a.path.cmp(&b.path));
        let steps: Vec<Step> = early.into_iter().chain(mkdirs).chain(writes).chain(late).collect();

        // What must still hold when the changes are applied: each target as
        // it is now, and the directories they are in.
        let mut checks: Vec<(RelPath, State)> = Vec::new();
        let targets: BTreeSet<&RelPath> = steps.iter().map(|s| &s.path).collect();
        for s in &steps {
            if !checks.iter().any(|(p, _)| *p == s.path) {
                checks.push((s.path.clone(), s.before.clone()));
            }
        }
        for s in &steps {
            let Some((parent, _)) = s.path.split_last() else { continue };
            if parent.is_root() || targets.contains(&parent) || checks.iter().any(|(p, _)| *p == parent) {
                continue;
            }
            let (now, _) = state_of(ws, &parent, 0)?;
            if now != State::Dir {
                return Err(StagingError::Changed(format!("`{}` is no longer a directory", parent.display())));
            }
            checks.push((parent, State::Dir));
        }
        check_emptied(ws, &steps)?;

        let mut asked = BTreeSet::new();
        let mut allowed = BTreeSet::new();
        for p in &targets {
            if let Some(r) = self.rules.get(p.as_str()) {
                asked.extend(r.asked.iter().cloned());
                allowed.extend(r.allowed.iter().cloned());
            }
        }
        let summary = summary(&steps);
        let diff = render(task, &summary, &steps, &olds);
        let diff_sha256 = sha256(diff.as_bytes());
        Ok(Changes {
            steps,
            checks,
            diff,
            diff_sha256,
            summary,
            asked: asked.into_iter().collect(),
            allowed: allowed.into_iter().collect(),
        })
    }
}

/// A staged file's bytes.
fn file_bytes(ws: &Workspace, f: &StagedFile) -> Result<Vec<u8>, StagingError> {
    match &f.content {
        Content::Bytes(b) => Ok(b.to_vec()),
        Content::Moved { from, .. } => match read_file(ws, f, WHOLE) {
            Ok(ReadOutcome::Data(d)) => Ok(d),
            Ok(ReadOutcome::TooLarge) => Err(ws_err(from, FsError::Failed("too large".into()))),
            Err(e) => Err(StagingError::Changed(format!("`{}`, which the task moved, changed: {e:?}", from.display()))),
        },
    }
}

/// Reads a staged file, refusing more than `max` bytes.
pub(crate) fn read_file(ws: &Workspace, file: &StagedFile, max: u64) -> Result<ReadOutcome, FsError> {
    match &file.content {
        Content::Bytes(b) if b.len() as u64 > max => Ok(ReadOutcome::TooLarge),
        Content::Bytes(b) => Ok(ReadOutcome::Data(b.to_vec())),
        Content::Moved { from, .. } => {
            let at = ws.locate(from, false)?;
            let intact = at.real == *from
                && at.file_type() == Some(FileType::RegularFile)
                && at.stat.as_ref().is_some_and(|s| s.st_nlink == 1);
            if !intact {
                return Err(FsError::Failed(format!(
                    "`{}`, the file moved here, changed in the workspace meanwhile",
                    from.display()
                )));
            }
            ws.read(&at, max)
        }
    }
}

/// What a workspace path holds, as far as applying changes cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    Absent,
    Dir,
    /// A regular file with one link.
    File {
        sha256: String,
        size: u64,
        mode: u32,
    },
    /// A symlink, a special file, or a file with several links: what it is
    /// and its identity (device, inode, size, modification time).
    Other(String),
}

impl State {
    fn encode(&self) -> String {
        match self {
            State::Absent => "absent".into(),
            State::Dir => "dir".into(),
            State::File { sha256, size, mode } => {
                format!("file:{}:{size}:{mode:o}", sha256.trim_start_matches("sha256:"))
            }
            State::Other(id) => format!("other:{id}"),
        }
    }

    fn decode(s: &str) -> Option<State> {
        match s {
            "absent" => Some(State::Absent),
            "dir" => Some(State::Dir),
            s => {
                if let Some(id) = s.strip_prefix("other:") {
                    return Some(State::Other(id.to_owned()));
                }
                let mut parts = s.strip_prefix("file:")?.split(':');
                let hex = parts.next().filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))?;
                let size = parts.next()?.parse().ok()?;
                let mode = u32::from_str_radix(parts.next()?, 8).ok()?;
                parts.next().is_none().then(|| State::File { sha256: format!("sha256:{hex}"), size, mode })
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            State::Absent => "absent".into(),
            State::Dir => "a directory".into(),
            State::File { sha256, size, .. } => format!("{size} bytes, {sha256}"),
            State::Other(id) => id.split('-').next().unwrap_or("something else").replace('_', " "),
        }
    }
}

/// The state of `path` in the workspace now (reached without symlinks),
/// and its bytes when it is a file of at most `keep` bytes.
fn state_of(ws: &Workspace, path: &RelPath, keep: usize) -> Result<(State, Option<Vec<u8>>), StagingError> {
    if let Some((parent, _)) = path.split_last()
        && !parent.is_root()
        && ws_dir(ws, &parent).is_none()
    {
        // Under something that is not a directory of the workspace (a file
        // the changes replace by a directory, or nothing): nothing is here.
        // A directory on the way that changed is caught by its own check.
        return Ok((State::Absent, None));
    }
    let at = match ws.locate(path, false) {
        Ok(at) => at,
        Err(FsError::NotFound) => return Ok((State::Absent, None)),
        Err(e) => return Err(ws_err(path, e)),
    };
    if at.real != *path {
        return Err(StagingError::Changed(format!(
            "a directory on the way to `{}` is now a symbolic link",
            path.display()
        )));
    }
    let Some(st) = &at.stat else { return Ok((State::Absent, None)) };
    let ft = FileType::from_raw_mode(st.st_mode);
    if ft == FileType::Directory {
        return Ok((State::Dir, None));
    }
    if ft != FileType::RegularFile || st.st_nlink != 1 {
        let what = match ft {
            FileType::RegularFile => "hard_linked_file",
            FileType::Symlink => "symbolic_link",
            _ => "special_file",
        };
        let id = format!("{what}-{}-{}-{}-{}-{}", st.st_dev, st.st_ino, st.st_size, st.st_mtime, st.st_mtime_nsec);
        return Ok((State::Other(id), None));
    }
    let mut file = ws.open_file(&at).map_err(|e| ws_err(path, e))?;
    let mut h = Sha256::new();
    let mut size = 0u64;
    let mut kept = Some(Vec::new());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(|e| ws_err(path, FsError::Failed(sandbox_policy::io_reason(&e))))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
        if kept.as_ref().is_some_and(|k| k.len() + n > keep) {
            kept = None;
        }
        if let Some(k) = &mut kept {
            k.extend_from_slice(&buf[..n]);
        }
    }
    let state = State::File { sha256: format!("sha256:{}", hex::encode(h.finalize())), size, mode: st.st_mode & 0o777 };
    Ok((state, kept))
}

/// Fails unless every directory to be removed holds only what earlier
/// steps remove.
fn check_emptied(ws: &Workspace, steps: &[Step]) -> Result<(), StagingError> {
    let removed: BTreeSet<&RelPath> = steps.iter().filter(|s| s.op == StepOp::Remove).map(|s| &s.path).collect();
    for s in steps.iter().filter(|s| s.op == StepOp::Remove && s.before == State::Dir) {
        let Some(at) = ws_dir(ws, &s.path) else { continue };
        for (name, _, _) in ws.list(&at).map_err(|e| ws_err(&s.path, e))? {
            let gone = s.path.join_name(&name).is_some_and(|c| removed.contains(&c));
            if !gone {
                return Err(StagingError::Changed(format!(
                    "`{}` now holds `{name}`, which is not part of the changes",
                    s.path.display()
                )));
            }
        }
    }
    Ok(())
}

/// What one step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepOp {
    CreateDir,
    Write,
    Remove,
}

impl StepOp {
    /// The capability recorded on the step's event.
    pub(crate) fn capability(self) -> &'static str {
        match self {
            StepOp::CreateDir => "fs.create-dir",
            StepOp::Write => "fs.write",
            StepOp::Remove => "fs.remove",
        }
    }

    fn name(self) -> &'static str {
        match self {
            StepOp::CreateDir => "create-dir",
            StepOp::Write => "write",
            StepOp::Remove => "remove",
        }
    }

    fn parse(s: &str) -> Option<StepOp> {
        [StepOp::CreateDir, StepOp::Write, StepOp::Remove].into_iter().find(|o| o.name() == s)
    }
}

/// One change to the workspace.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub op: StepOp,
    pub path: RelPath,
    /// What the path holds before this step.
    pub before: State,
    /// What it holds after.
    pub after: State,
    /// The bytes of a write.
    pub data: Option<Arc<Vec<u8>>>,
}

/// A task's staged changes as steps, with the diff shown for approval.
#[derive(Debug)]
pub(crate) struct Changes {
    pub steps: Vec<Step>,
    /// Every target and the directories they are in, as they were when the
    /// diff was made.
    pub checks: Vec<(RelPath, State)>,
    pub diff: String,
    pub diff_sha256: String,
    /// `2 files, 1 directory`.
    pub summary: String,
    /// The rules that asked for approval on the paths changed.
    pub asked: Vec<String>,
    /// The rules that pre-approved the calls on them.
    pub allowed: Vec<String>,
}

fn summary(steps: &[Step]) -> String {
    let mut dirs = BTreeSet::new();
    let mut files = BTreeSet::new();
    for s in steps {
        if s.op == StepOp::CreateDir || (s.op == StepOp::Remove && s.before == State::Dir) {
            dirs.insert(&s.path);
        } else {
            files.insert(&s.path);
        }
    }
    files.retain(|f| !dirs.contains(f));
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut parts = Vec::new();
    if !files.is_empty() || dirs.is_empty() {
        parts.push(plural(files.len(), "file", "files"));
    }
    if !dirs.is_empty() {
        parts.push(plural(dirs.len(), "directory", "directories"));
    }
    parts.join(", ")
}

fn as_text(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b).ok().filter(|s| !s.contains('\0'))
}

/// The diff shown to the reviewer: the steps in order, then a unified diff
/// per file (`--- current/PATH`, `+++ proposed/PATH`; `/dev/null` for a
/// side that does not exist). Binary and large files, and files whose
/// line diff is not done within [`REVIEW_TIME`](crate::diff::REVIEW_TIME)
/// for all files together, are shown by size and SHA-256.
fn render(task: &str, summary: &str, steps: &[Step], olds: &BTreeMap<String, Vec<u8>>) -> String {
    let deadline = std::time::Instant::now() + crate::diff::REVIEW_TIME;
    let mut out = String::new();
    let _ = writeln!(out, "# sandbox: the changes of task {task} ({summary}), applied in this order:");
    for (i, s) in steps.iter().enumerate() {
        let note = match (s.op, &s.before, &s.after) {
            (StepOp::Write, State::Absent, State::File { size, .. }) => format!(" (new, {size} bytes)"),
            (StepOp::Write, State::File { .. }, State::File { size, .. }) => format!(" ({size} bytes)"),
            (StepOp::Write, before, State::File { size, .. }) => {
                format!(" ({size} bytes, replacing {})", before.describe())
            }
            (StepOp::Remove, before, _) => format!(" ({})", before.describe()),
            _ => String::new(),
        };
        let slash = if s.op == StepOp::CreateDir || s.before == State::Dir { "/" } else { "" };
        let _ = writeln!(out, "#   {:>3}. {:<10} {}{slash}{note}", i + 1, s.op.name(), s.path.display());
    }
    for s in steps {
        let p = s.path.display();
        let (old_label, new_label) = match (&s.before, s.op) {
            (State::File { .. }, StepOp::Remove) => (format!("current/{p}"), "/dev/null".to_owned()),
            (State::File { .. }, _) => (format!("current/{p}"), format!("proposed/{p}")),
            (_, StepOp::Write) => ("/dev/null".to_owned(), format!("proposed/{p}")),
            _ => continue,
        };
        // `None`: binary, or too large for a line diff.
        let old_text = match &s.before {
            State::File { .. } => olds.get(s.path.as_str()).and_then(|o| as_text(o)),
            _ => Some(""),
        };
        let new_text = match (s.op, &s.data) {
            (StepOp::Write, Some(d)) if d.len() <= DIFF_TEXT_MAX => as_text(d),
            (StepOp::Write, _) => None,
            _ => Some(""),
        };
        let _ = match (old_text, new_text) {
            (Some(o), Some(n)) if o != n => match crate::diff::unified(o, n, &old_label, &new_label, deadline) {
                Some(diff) => write!(out, "{diff}"),
                None => writeln!(
                    out,
                    "--- {old_label}\n+++ {new_label}\n# too large to show as a line diff: {} -> {}",
                    mode_of(&s.before),
                    mode_of(&s.after)
                ),
            },
            (Some(_), Some(_)) => writeln!(
                out,
                "--- {old_label}\n+++ {new_label}\n# {} -> {} (no line differs)",
                mode_of(&s.before),
                mode_of(&s.after)
            ),
            _ => writeln!(
                out,
                "--- {old_label}\n+++ {new_label}\n# binary or large: {} -> {}",
                mode_of(&s.before),
                mode_of(&s.after)
            ),
        };
    }
    out
}

fn mode_of(s: &State) -> String {
    match s {
        State::File { mode, size, sha256 } => format!("{size} bytes, mode {mode:o}, {sha256}"),
        State::Absent => "absent".into(),
        other => other.describe(),
    }
}

/// The name of a step's temporary file: fixed, so that a recovery finds it.
pub(crate) fn temp_name(journal: &str, step: usize) -> String {
    format!(".sandbox-apply-{journal}-{step}.tmp")
}

fn locate_exact(ws: &Workspace, path: &RelPath) -> Result<Located, StagingError> {
    let at = ws.locate(path, false).map_err(|e| ws_err(path, e))?;
    if at.real != *path {
        return Err(StagingError::Changed(format!(
            "a directory on the way to `{}` is now a symbolic link",
            path.display()
        )));
    }
    Ok(at)
}

/// Performs one step and makes it durable.
pub(crate) fn apply_step(ws: &Workspace, step: &Step, tmp: &str) -> Result<(), StagingError> {
    let at = locate_exact(ws, &step.path)?;
    let done = match (step.op, &step.after, &step.data) {
        (StepOp::CreateDir, _, _) => ws.create_dir(&at),
        (StepOp::Write, State::File { mode, .. }, Some(data)) => ws.write_atomic_as(&at, data, *mode, tmp),
        (StepOp::Write, _, _) => Err(FsError::Failed("a write without content".into())),
        (StepOp::Remove, _, _) => ws.remove(&at),
    };
    done.and_then(|()| ws.sync_parent(&at)).map_err(|e| ws_err(&step.path, e))
}

/// Checks, just before the first change, that every target is still what
/// it was when the diff was made.
pub(crate) fn verify(ws: &Workspace, changes: &Changes) -> Result<(), StagingError> {
    for (path, then) in &changes.checks {
        let (now, _) = state_of(ws, path, 0)?;
        if now != *then {
            return Err(StagingError::Changed(format!(
                "`{}` is {} now; it was {} when the diff was made",
                path.display(),
                now.describe(),
                then.describe()
            )));
        }
    }
    check_emptied(ws, &changes.steps)
}

/// Who a task was, as recorded on its events (for a recovery, which runs
/// in another task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    /// The task id.
    pub task: String,
    /// Who it ran for.
    pub user: String,
    /// The tool's name.
    pub agent: String,
    /// `sha256:` of the component.
    pub component: String,
    /// `sha256:` of the policy in force.
    pub policy: String,
}

impl Who {
    fn event(&self, kind: Kind) -> Event<'_> {
        Event {
            kind,
            task: &self.task,
            user: &self.user,
            agent: &self.agent,
            component: &self.component,
            policy: &self.policy,
            ..Event::default()
        }
    }
}

/// Fills a step's `result` event: `outcome` (`applied`, `failed`), why,
/// the size and hash of what was written (also as `bytes_in`), and how long
/// the step took.
pub(crate) fn step_event<'a>(
    mut ev: Event<'a>,
    step: &'a Step,
    outcome: &'a str,
    reason: &'a str,
    took: Duration,
) -> Event<'a> {
    ev.outcome = Some(outcome);
    ev.reason = Some(reason);
    ev.bytes_in = Some(0);
    if let State::File { sha256, size, .. } = &step.after {
        ev.size = Some(*size);
        ev.content_sha256 = Some(sha256);
        ev.bytes_in = Some(*size);
    }
    ev.bytes_out = Some(0);
    ev.duration_us = Some(took.as_micros() as u64);
    ev
}

/// `<audit log>.staging`.
fn staging_root(audit_path: &Path) -> PathBuf {
    let mut s = audit_path.as_os_str().to_owned();
    s.push(".staging");
    PathBuf::from(s)
}

/// The name of a task's journal directory: a hash of its task id.
fn journal_id(task: &str) -> String {
    hex::encode(&Sha256::digest(task.as_bytes())[..8])
}

/// Why a directory is not the host's own: it must be a real directory
/// (not a symlink) owned by this account and closed to everyone else.
fn untrusted_dir(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return Some(sandbox_policy::io_reason(&e)),
    };
    let me = rustix::process::geteuid().as_raw();
    if !m.is_dir() {
        Some("not a directory (a symbolic link or a file)".into())
    } else if m.uid() != me {
        Some(format!("owned by uid {}, not by this account (uid {me})", m.uid()))
    } else if m.mode() & 0o077 != 0 {
        Some(format!("mode {:o} lets other accounts in; the host makes it 0700", m.mode() & 0o777))
    } else {
        None
    }
}

/// Creates the staging root (0700, marked private) or checks that the one
/// there is the host's own.
fn open_root(root: &Path) -> Result<(), StagingError> {
    match std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(root, "create")(e)),
    }
    if let Some(why) = untrusted_dir(root) {
        return Err(StagingError::Io { path: root.to_owned(), what: "use", reason: why });
    }
    sandbox_audit::owned::mark_private(root).map_err(io_err(root, "mark private"))
}

/// Reads a file that must be a regular file with one link (not a
/// symlink), owned by this account, closed to everyone else.
fn read_private(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)?;
    let m = file.metadata()?;
    let me = rustix::process::geteuid().as_raw();
    if !m.is_file() || m.nlink() != 1 || m.uid() != me || m.mode() & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "not a private file of this account (a regular file, one link, mode 0600)",
        ));
    }
    let mut out = Vec::new();
    (&mut file).take(4096).read_to_end(&mut out)?;
    Ok(out)
}

/// The host key in the staging root: read, or made (32 random bytes, mode
/// 0600) when missing. A key file that is not private is replaced: every
/// plan sealed with it then fails its check.
fn host_key(root: &Path) -> Result<[u8; 32], StagingError> {
    let path = root.join(KEY_FILE);
    for _ in 0..3 {
        match read_private(&path) {
            Ok(bytes) => match <[u8; 32]>::try_from(bytes.as_slice()) {
                Ok(key) => return Ok(key),
                Err(_) => std::fs::remove_file(&path).map_err(io_err(&path, "replace"))?,
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!("staging: replacing the key `{}` ({e})", path.display());
                std::fs::remove_file(&path).map_err(io_err(&path, "replace"))?;
            }
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| StagingError::Io {
            path: path.clone(),
            what: "make",
            reason: format!("no random numbers: {e}"),
        })?;
        let tmp = root.join(format!("{KEY_FILE}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let mut f =
            std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().write(true).create_new(true), 0o600)
                .open(&tmp)
                .map_err(io_err(&tmp, "create"))?;
        f.write_all(&key).and_then(|()| f.sync_all()).map_err(io_err(&tmp, "write"))?;
        // A hard link does not replace a key another process made first.
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(root)?;
                return Ok(key);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&path, "create")(e)),
        }
    }
    Err(StagingError::Io { path, what: "make", reason: "it keeps changing".into() })
}

fn mac(key: &[u8; 32], body: &[u8]) -> HmacSha256 {
    let mut m = <HmacSha256 as hmac::Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    hmac::Mac::update(&mut m, body);
    m
}

/// Takes the staging root's lock, waiting at most [`LOCK_WAIT`].
fn lock_root(root: &Path) -> Result<std::fs::File, StagingError> {
    let path = root.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path, "open"))?;
    let start = Instant::now();
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(file),
            Err(rustix::io::Errno::WOULDBLOCK | rustix::io::Errno::INTR) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(io_err(&path, "lock")(e.into())),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), StagingError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir, "sync"))
}

fn write_durably(path: &Path, data: &[u8]) -> Result<(), StagingError> {
    let mut f = std::fs::OpenOptions::new().create_new(true).write(true).open(path).map_err(io_err(path, "create"))?;
    f.write_all(data).and_then(|()| f.sync_all()).map_err(io_err(path, "write"))
}

/// `%`, tab, CR and LF escaped, so that a value is one field of one line.
fn escape(s: &str) -> String {
    s.replace('%', "%25").replace('\t', "%09").replace('\n', "%0A").replace('\r', "%0D")
}

fn unescape(s: &str) -> String {
    s.replace("%0D", "\r").replace("%0A", "\n").replace("%09", "\t").replace("%25", "%")
}

/// The journal of one apply: `<audit log>.staging/<task>/`, locked.
#[derive(Debug)]
pub(crate) struct Journal {
    root: PathBuf,
    dir: PathBuf,
    id: String,
    key: [u8; 32],
    _lock: std::fs::File,
}

impl Journal {
    /// Locks the staging root beside the audit log (creating it) and
    /// creates the task's journal directory.
    ///
    /// # Ambient Authority
    ///
    /// Creates and writes files beside the audit log, outside the workspace.
    pub(crate) fn begin_ambient(audit_path: &Path, task: &str) -> Result<Journal, StagingError> {
        let root = staging_root(audit_path);
        open_root(&root)?;
        let lock = lock_root(&root)?;
        let key = host_key(&root)?;
        let id = journal_id(task);
        let dir = root.join(&id);
        if dir.exists() {
            // Left by an earlier run of the same task id that had not
            // committed (a committed one was recovered when this run began).
            std::fs::remove_dir_all(&dir).map_err(io_err(&dir, "remove"))?;
        }
        std::fs::create_dir(&dir).map_err(io_err(&dir, "create"))?;
        Ok(Journal { root, dir, id, key, _lock: lock })
    }

    /// The journal's id: names the temporary files of the apply.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The journal's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the new contents, durably.
    pub(crate) fn write_blobs(&self, steps: &[Step]) -> Result<(), StagingError> {
        for (i, s) in steps.iter().enumerate() {
            if let Some(data) = &s.data {
                write_durably(&self.dir.join(format!("blob-{i}")), data)?;
            }
        }
        sync_dir(&self.dir)
    }

    /// Writes the plan and renames it into place: from here on a recovery
    /// completes the changes.
    pub(crate) fn commit(&self, who: &Who, workspace: &Path, changes: &Changes) -> Result<(), StagingError> {
        let mut text = String::new();
        let _ = writeln!(text, "{JOURNAL_MAGIC}");
        for (k, v) in [
            ("task", &who.task),
            ("user", &who.user),
            ("agent", &who.agent),
            ("component", &who.component),
            ("policy", &who.policy),
            ("diff", &changes.diff_sha256),
            ("summary", &changes.summary),
        ] {
            let _ = writeln!(text, "{k}\t{}", escape(v));
        }
        let _ = writeln!(text, "workspace\t{}", hex::encode(workspace.as_os_str().as_bytes()));
        for s in &changes.steps {
            let _ = writeln!(
                text,
                "step\t{}\t{}\t{}\t{}",
                s.op.name(),
                escape(s.path.as_str()),
                s.before.encode(),
                s.after.encode()
            );
        }
        let tag = hmac::Mac::finalize(mac(&self.key, text.as_bytes())).into_bytes();
        let _ = writeln!(text, "mac\t{}", hex::encode(tag));
        let tmp = self.dir.join("plan.tmp");
        write_durably(&tmp, text.as_bytes())?;
        let plan = self.dir.join("plan");
        std::fs::rename(&tmp, &plan).map_err(io_err(&plan, "commit"))?;
        sync_dir(&self.dir)
    }

    /// Removes the journal (after the last step, or when nothing was
    /// changed).
    pub(crate) fn finish(self) -> Result<(), StagingError> {
        std::fs::remove_dir_all(&self.dir).map_err(io_err(&self.dir, "remove"))?;
        sync_dir(&self.root)
    }
}

/// A committed plan read back.
#[derive(Debug)]
struct Plan {
    who: Who,
    workspace: PathBuf,
    diff_sha256: String,
    summary: String,
    steps: Vec<Step>,
}

/// Reads a journal's plan: `None` when it was never committed. A plan
/// whose MAC does not verify under `key` is refused.
fn read_plan(dir: &Path, key: &[u8; 32]) -> Result<Option<Plan>, StagingError> {
    let path = dir.join("plan");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path, "read")(e)),
    };
    let bad = |reason: &str| StagingError::Journal { path: path.clone(), reason: reason.to_owned() };
    let body_len = text.trim_end_matches('\n').rfind('\n').map_or(0, |i| i + 1);
    let (body, end) = text.split_at(body_len);
    if !body.starts_with(&format!("{JOURNAL_MAGIC}\n")) {
        return Err(bad("not a journal of this version"));
    }
    let tag = end.trim_end().strip_prefix("mac\t").and_then(|h| hex::decode(h).ok());
    if tag.is_none_or(|t| hmac::Mac::verify_slice(mac(key, body.as_bytes()), &t).is_err()) {
        return Err(bad("its MAC does not verify under this host's key: not staged by this host, or altered"));
    }
    let mut fields: BTreeMap<&str, String> = BTreeMap::new();
    let mut steps = Vec::new();
    let mut workspace = None;
    for line in body.lines().skip(1) {
        let parts: Vec<&str> = line.split('\t').collect();
        match parts.as_slice() {
            ["step", op, path, before, after] => {
                let op = StepOp::parse(op).ok_or_else(|| bad("unknown step"))?;
                let path = RelPath::normalise(&unescape(path)).map_err(|_| bad("bad path"))?;
                let before = State::decode(before).ok_or_else(|| bad("bad state"))?;
                let after = State::decode(after).ok_or_else(|| bad("bad state"))?;
                steps.push(Step { op, path, before, after, data: None });
            }
            ["workspace", hex] => {
                let bytes = hex::decode(hex).map_err(|_| bad("bad workspace"))?;
                workspace = Some(PathBuf::from(std::ffi::OsStr::from_bytes(&bytes)));
            }
            [k, v] => {
                fields.insert(k, unescape(v));
            }
            _ => return Err(bad("bad line")),
        }
    }
    let mut get = |k: &str| fields.remove(k).ok_or_else(|| bad("a field is missing"));
    let who = Who {
        task: get("task")?,
        user: get("user")?,
        agent: get("agent")?,
        component: get("component")?,
        policy: get("policy")?,
    };
    let (diff_sha256, summary) = (get("diff")?, get("summary")?);
    let workspace = workspace.ok_or_else(|| bad("the workspace is missing"))?;
    for (i, s) in steps.iter_mut().enumerate() {
        if s.op != StepOp::Write {
            continue;
        }
        let blob = dir.join(format!("blob-{i}"));
        let data = std::fs::read(&blob).map_err(io_err(&blob, "read"))?;
        let State::File { sha256: want, size, .. } = &s.after else { return Err(bad("a write without a file")) };
        if sha256(&data) != *want || data.len() as u64 != *size {
            return Err(StagingError::Journal { path: blob, reason: "does not match the plan".into() });
        }
        s.data = Some(Arc::new(data));
    }
    Ok(Some(Plan { who, workspace, diff_sha256, summary, steps }))
}

/// What a recovery checks the journals it finds against: the run that
/// found them.
#[derive(Debug)]
pub struct Recovery<'a> {
    /// The audit log, open.
    pub audit: &'a SharedAudit,
    /// Its path (the journals are beside it).
    pub audit_path: &'a Path,
    /// The recovering run, as its own events name it (the findings about
    /// journals not applied are its).
    pub by: &'a Who,
    /// The manifest in force, with its run-time protections.
    pub policy: &'a sandbox_policy::Policy,
    /// The workspace of the manifest in force, open.
    pub workspace: &'a Workspace,
}

/// Completes the applies of staged changes that runs with this audit log
/// left unfinished (stopped after committing their journal), recording
/// each under the interrupted task; deletes journals that were never
/// committed; quarantines (and records a `finding` for) every journal
/// that fails a check (see the module's documentation). Returns how many
/// applies it completed. Called when a run begins, before its
/// `task-start`.
///
/// # Ambient Authority
///
/// Reads, moves and removes the journals beside the audit log.
pub fn recover_ambient(r: &Recovery<'_>) -> Result<usize, StagingError> {
    let root = staging_root(r.audit_path);
    match std::fs::symlink_metadata(&root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(&root, "read")(e)),
        Ok(_) => {}
    }
    if let Some(why) = untrusted_dir(&root) {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let mut aside = root.as_os_str().to_owned();
        aside.push(format!(".quarantined-{nanos}"));
        let aside = PathBuf::from(aside);
        std::fs::rename(&root, &aside).map_err(io_err(&root, "quarantine"))?;
        let why = format!(
            "the staging directory `{}` is not the host's own ({why}); nothing in it was applied; it was moved to `{}`",
            root.display(),
            aside.display()
        );
        return finding(r, &root, &why).map(|()| 0);
    }
    sandbox_audit::owned::mark_private(&root).map_err(io_err(&root, "mark private"))?;
    let _lock = lock_root(&root)?;
    let key = host_key(&root)?;
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(&root).map_err(io_err(&root, "read"))? {
        let entry = entry.map_err(io_err(&root, "read"))?;
        if entry.file_name() != QUARANTINE && entry.file_type().map_err(io_err(&root, "read"))?.is_dir() {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    let mut approvals: Option<Result<Vec<Approved>, String>> = None;
    let mut completed = 0;
    for dir in dirs {
        let checked = match read_plan(&dir, &key) {
            Ok(None) => None,
            Ok(Some(plan)) => {
                let found = approvals.get_or_insert_with(|| approved_changes(r.audit_path));
                Some(check_plan(r, &dir, &plan, found).map(|who| (plan, who)))
            }
            Err(e) => Some(Err(e.to_string())),
        };
        match checked {
            None => std::fs::remove_dir_all(&dir).map_err(io_err(&dir, "remove"))?,
            Some(Ok((plan, who))) => {
                roll_forward(r, &plan, &who)?;
                completed += 1;
                std::fs::remove_dir_all(&dir).map_err(io_err(&dir, "remove"))?;
            }
            Some(Err(why)) => quarantine(r, &root, &dir, &why)?,
        }
        sync_dir(&root)?;
    }
    Ok(completed)
}

/// A task's `fs.changes` call as the chained audit log holds it.
#[derive(Debug)]
struct Approved {
    who: Who,
    diff: String,
    /// `allow` (pre-approved) or `ask`.
    decision: String,
    /// An `approved` approval of the same diff followed it.
    approved: bool,
}

/// Every `fs.changes` call in the audit log, after verifying its chain.
fn approved_changes(log: &Path) -> Result<Vec<Approved>, String> {
    let mut out: Vec<Approved> = Vec::new();
    let str_of = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_owned();
    sandbox_audit::verify_log(log, |_, line| {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else { return };
        if v.get("capability").and_then(|c| c.as_str()) != Some("fs.changes") {
            return;
        }
        let (kind, task, diff) = (str_of(&v, "kind"), str_of(&v, "task"), str_of(&v, "content_sha256"));
        match kind.as_str() {
            "call" => out.push(Approved {
                who: Who {
                    task,
                    user: str_of(&v, "user"),
                    agent: str_of(&v, "agent"),
                    component: str_of(&v, "component"),
                    policy: str_of(&v, "policy"),
                },
                diff,
                decision: str_of(&v, "decision"),
                approved: false,
            }),
            "approval" if str_of(&v, "decision") == "approved" => {
                if let Some(call) = out.iter_mut().rev().find(|c| c.who.task == task && c.diff == diff) {
                    call.approved = true;
                }
            }
            _ => {}
        }
    })
    .map_err(|e| format!("the audit log does not verify ({e})"))?;
    Ok(out)
}

/// Checks a committed plan (whose MAC verified) against the audit log,
/// the workspace and the manifest in force; the task as the log recorded
/// it, or why the plan must not be applied.
fn check_plan(
    r: &Recovery<'_>,
    dir: &Path,
    plan: &Plan,
    approvals: &Result<Vec<Approved>, String>,
) -> Result<Who, String> {
    let id = journal_id(&plan.who.task);
    if dir.file_name().and_then(|n| n.to_str()) != Some(id.as_str()) {
        return Err(format!("it is filed under another name than its task's journal `{id}`"));
    }
    if plan.workspace != r.workspace.root_path() {
        return Err(format!(
            "it is for the workspace `{}`, not `{}`, the workspace of the manifest in force",
            plan.workspace.display(),
            r.workspace.root_path().display()
        ));
    }
    let approvals = approvals.as_ref().map_err(Clone::clone)?;
    let task = &plan.who.task;
    let call = approvals.iter().rev().find(|a| a.who.task == *task && a.diff == plan.diff_sha256).ok_or_else(|| {
        format!("the audit log holds no `fs.changes` call of task `{task}` for its diff {}", plan.diff_sha256)
    })?;
    match call.decision.as_str() {
        "allow" => {}
        "ask" if call.approved => {}
        _ => return Err(format!("the audit log holds no approval of task `{task}` for its diff {}", plan.diff_sha256)),
    }
    if call.who != plan.who {
        return Err(format!(
            "it names user `{}`, agent `{}`, component {} and policy {}, but the audit log records task `{task}` as user `{}`, agent `{}`, component {} and policy {}",
            plan.who.user,
            plan.who.agent,
            plan.who.component,
            plan.who.policy,
            call.who.user,
            call.who.agent,
            call.who.component,
            call.who.policy
        ));
    }
    for step in &plan.steps {
        let op = match step.op {
            StepOp::CreateDir => sandbox_policy::FsOp::CreateDir,
            StepOp::Write => sandbox_policy::FsOp::Write,
            StepOp::Remove => sandbox_policy::FsOp::Remove,
        };
        let d = r.policy.fs.decide(op, &step.path);
        if !d.permits() {
            return Err(format!("{} on `{}` is denied by {} now", op.capability(), step.path.display(), d.rule));
        }
        if r.workspace.in_private_dir(&step.path) {
            return Err(format!("`{}` lies in a directory sandbox keeps for itself", step.path.display()));
        }
    }
    Ok(call.who.clone())
}

/// Moves a journal that failed a check to the quarantine and records why.
fn quarantine(r: &Recovery<'_>, root: &Path, dir: &Path, why: &str) -> Result<(), StagingError> {
    let qdir = root.join(QUARANTINE);
    match std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(&qdir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(&qdir, "create")(e)),
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let to = qdir.join(format!("{name}-{nanos}"));
    std::fs::rename(dir, &to).map_err(io_err(dir, "quarantine"))?;
    let why = format!(
        "the staging journal `{}` was not applied: {why}; it was quarantined at `{}`",
        dir.display(),
        to.display()
    );
    finding(r, dir, &why)
}

/// Records (durably) a finding of the recovering run about `path`.
fn finding(r: &Recovery<'_>, path: &Path, why: &str) -> Result<(), StagingError> {
    let target = path.display().to_string();
    let mut ev = r.by.event(Kind::Finding);
    ev.capability = Some("fs.changes");
    ev.rule = Some(JOURNAL_RULE);
    ev.target = Some(&target);
    ev.reason = Some(why);
    let mut log = lock_audit(r.audit);
    log.record(&ev);
    log.sync().map_err(|e| StagingError::Audit(e.to_string()))
}

/// How a step fared in a recovery.
enum Recovered {
    /// Done now.
    Done,
    /// Already done before the run stopped.
    Found,
    /// Neither as before nor as after: left as it is.
    Conflict(String),
}

fn recover_step(ws: &Workspace, step: &Step, last: &State, tmp: &str) -> Result<Recovered, StagingError> {
    if step.op == StepOp::Write
        && let Ok(at) = ws.locate(&step.path, false)
        && at.real == step.path
    {
        ws.remove_temp(&at, tmp).map_err(|e| ws_err(&step.path, e))?;
    }
    let now = match state_of(ws, &step.path, 0) {
        Ok((now, _)) => now,
        Err(StagingError::Changed(why)) => return Ok(Recovered::Conflict(why)),
        Err(e) => return Err(e),
    };
    if now == step.after || now == *last {
        return Ok(Recovered::Found);
    }
    if now != step.before {
        return Ok(Recovered::Conflict(format!(
            "`{}` is {}, neither what it was ({}) nor what the changes make it ({}); left as it is",
            step.path.display(),
            now.describe(),
            step.before.describe(),
            step.after.describe()
        )));
    }
    match apply_step(ws, step, tmp) {
        Ok(()) => Ok(Recovered::Done),
        Err(StagingError::Changed(why)) => Ok(Recovered::Conflict(why)),
        Err(StagingError::Workspace { path, reason }) => Ok(Recovered::Conflict(format!("`{path}`: {reason}"))),
        Err(e) => Err(e),
    }
}

fn roll_forward(r: &Recovery<'_>, plan: &Plan, who: &Who) -> Result<(), StagingError> {
    let started = Instant::now();
    let (audit, ws, by_task) = (r.audit, r.workspace, r.by.task.as_str());
    let journal = journal_id(&who.task);
    let why = format!(
        "the run stopped while applying its approved changes; task {by_task} completes them from the journal (roll forward)"
    );
    let mut ev = who.event(Kind::Finding);
    ev.capability = Some("fs.changes");
    ev.target = Some(&plan.summary);
    ev.content_sha256 = Some(&plan.diff_sha256);
    ev.reason = Some(&why);
    lock_audit(audit).record(&ev);
    // What each path holds at the end: a step already overtaken by a later
    // one on the same path (a file removed to make room for a directory)
    // counts as done.
    let mut last: BTreeMap<&RelPath, &State> = BTreeMap::new();
    for s in &plan.steps {
        last.insert(&s.path, &s.after);
    }
    let (mut conflicts, mut bytes) = (Vec::new(), 0u64);
    for (i, step) in plan.steps.iter().enumerate() {
        let end = last.get(&step.path).copied().unwrap_or(&step.after);
        let step_start = Instant::now();
        let outcome = recover_step(ws, step, end, &temp_name(&journal, i))?;
        let (outcome, reason) = match outcome {
            Recovered::Done => {
                bytes += step.data.as_ref().map_or(0, |d| d.len() as u64);
                ("applied", format!("step {} of {}, completed after the interruption", i + 1, plan.steps.len()))
            }
            Recovered::Found => {
                ("applied", format!("step {} of {}, found done after the interruption", i + 1, plan.steps.len()))
            }
            Recovered::Conflict(why) => {
                conflicts.push(why.clone());
                ("failed", format!("step {} of {}: {why}", i + 1, plan.steps.len()))
            }
        };
        let mut ev = who.event(Kind::Result);
        ev.capability = Some(step.op.capability());
        ev.target = Some(step.path.display());
        lock_audit(audit).record(&step_event(ev, step, outcome, &reason, step_start.elapsed()));
    }
    let (outcome, reason) = if conflicts.is_empty() {
        ("ok", format!("the approved changes were completed by task {by_task}"))
    } else {
        ("failed", format!("completed by task {by_task} except: {}", conflicts.join("; ")))
    };
    let mut ev = who.event(Kind::Result);
    ev.capability = Some("fs.changes");
    ev.target = Some(&plan.summary);
    ev.outcome = Some(outcome);
    ev.reason = Some(&reason);
    ev.bytes_in = Some(bytes);
    ev.bytes_out = Some(0);
    ev.duration_us = Some(started.elapsed().as_micros() as u64);
    let end_reason = format!("the run stopped while applying its approved changes; {reason}");
    let mut log = lock_audit(audit);
    log.record(&ev);
    log.record(&Event { status: Some("changes-recovered"), reason: Some(&end_reason), ..who.event(Kind::TaskEnd) });
    log.sync().map_err(|e| StagingError::Audit(e.to_string()))
}

/// Test hook, honoured only in debug builds:
/// `SANDBOX_TEST_PAUSE_AFTER_APPLY=N:MARKER` stops an apply right after its
/// N-th step (before that step's event), creates MARKER and waits to be
/// killed, so that tests can interrupt an apply at a known point.
#[cfg(debug_assertions)]
pub(crate) fn test_pause(applied: usize) {
    let Ok(spec) = std::env::var("SANDBOX_TEST_PAUSE_AFTER_APPLY") else { return };
    let Some((n, marker)) = spec.split_once(':') else { return };
    if n.parse::<usize>().ok() != Some(applied) {
        return;
    }
    let _ = std::fs::write(marker, b"paused\n");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Release builds have no test hook.
#[cfg(not(debug_assertions))]
pub(crate) fn test_pause(_applied: usize) {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn states_survive_the_journal() {
        let file = State::File { sha256: sha256(b"x"), size: 1, mode: 0o640 };
        for s in [State::Absent, State::Dir, file, State::Other("symbolic_link-1-2-3-4-5".into())] {
            assert_eq!(State::decode(&s.encode()), Some(s.clone()), "{s:?}");
        }
        assert_eq!(State::decode("file:abc:1:644"), None);
        assert_eq!(State::decode("nothing"), None);
    }

    #[test]
    fn escaped_values_stay_on_one_field() {
        let v = "a\tb\nc\r%09d%";
        assert!(!escape(v).contains(['\t', '\n', '\r']));
        assert_eq!(unescape(&escape(v)), v);
    }

    #[test]
    fn the_summary_counts_files_and_directories() {
        let p = |s: &str| RelPath::normalise(s).unwrap();
        let step = |op, path: &str, before| Step { op, path: p(path), before, after: State::Absent, data: None };
        let steps = [
            step(StepOp::CreateDir, "d", State::Absent),
            step(StepOp::Write, "d/a", State::Absent),
            step(StepOp::Remove, "b", State::Dir),
            step(StepOp::Remove, "c", State::Absent),
        ];
        assert_eq!(summary(&steps), "2 files, 2 directories");
        assert_eq!(summary(&steps[1..2]), "1 file");
        assert_eq!(summary(&steps[..1]), "1 directory");
    }

    #[test]
    fn a_diff_too_costly_to_make_is_shown_by_sizes_and_hashes() {
        // 256 Ki short lines on each side and none in common: hours of work
        // for a line diff without a deadline.
        let old = "a\n".repeat(1 << 18).into_bytes();
        let new = Arc::new("b\n".repeat(1 << 18).into_bytes());
        let before = State::File { sha256: sha256(&old), size: old.len() as u64, mode: 0o644 };
        let after = State::File { sha256: sha256(&new), size: new.len() as u64, mode: 0o644 };
        let path = RelPath::normalise("src/a.txt").unwrap();
        let steps = [Step { op: StepOp::Write, path, before: before.clone(), after: after.clone(), data: Some(new) }];
        let olds = BTreeMap::from([("src/a.txt".to_owned(), old)]);
        let diff = render("t", "1 file", &steps, &olds);
        let shown = format!(
            "--- current/src/a.txt\n+++ proposed/src/a.txt\n# too large to show as a line diff: {} -> {}\n",
            mode_of(&before),
            mode_of(&after)
        );
        assert!(diff.ends_with(&shown), "{diff}");
        assert!(shown.contains("524288 bytes, mode 644, sha256:"), "{shown}");
    }

    #[test]
    fn a_journal_is_committed_only_by_its_plan() {
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("audit.jsonl");
        let who = Who {
            task: "t\t1".into(),
            user: "u".into(),
            agent: "a".into(),
            component: "sha256:c".into(),
            policy: "sha256:p".into(),
        };
        let data = Arc::new(b"new\n".to_vec());
        let step = Step {
            op: StepOp::Write,
            path: RelPath::normalise("src/a b.rs").unwrap(),
            before: State::Absent,
            after: State::File { sha256: sha256(&data), size: 4, mode: 0o644 },
            data: Some(data),
        };
        let changes = Changes {
            steps: vec![step],
            checks: Vec::new(),
            diff: String::new(),
            diff_sha256: sha256(b""),
            summary: "1 file".into(),
            asked: Vec::new(),
            allowed: Vec::new(),
        };
        let journal = Journal::begin_ambient(&audit, &who.task).unwrap();
        journal.write_blobs(&changes.steps).unwrap();
        assert!(read_plan(journal.dir(), &journal.key).unwrap().is_none(), "blobs alone are not a commit");
        journal.commit(&who, Path::new("/some/ws\ttab"), &changes).unwrap();
        let plan = read_plan(journal.dir(), &journal.key).unwrap().unwrap();
        assert_eq!(plan.who.task, "t\t1");
        assert_eq!(plan.workspace, Path::new("/some/ws\ttab"));
        assert_eq!(plan.steps.len(), 1);
        assert_eq!(plan.steps[0].path.as_str(), "src/a b.rs");
        assert_eq!(plan.steps[0].data.as_deref().map(Vec::as_slice), Some(&b"new\n"[..]));
        // A changed byte in the plan or a blob is refused, not applied.
        let plan_file = journal.dir().join("plan");
        let text = std::fs::read_to_string(&plan_file).unwrap();
        std::fs::write(&plan_file, text.replace("1 file", "2 file")).unwrap();
        assert!(matches!(read_plan(journal.dir(), &journal.key), Err(StagingError::Journal { .. })));
        std::fs::write(&plan_file, text).unwrap();
        std::fs::write(journal.dir().join("blob-0"), b"old\n").unwrap();
        assert!(matches!(read_plan(journal.dir(), &journal.key), Err(StagingError::Journal { .. })));
        let journal_dir = journal.dir().to_path_buf();
        journal.finish().unwrap();
        assert!(!journal_dir.exists());
    }
}
