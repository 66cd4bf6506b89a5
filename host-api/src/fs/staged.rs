//! The `fs` door under `[approval] writes = "end-of-task"` (see
//! `crate::staging`).
//!
//! Every function still walks the corridor with a `prepare` and an `act`,
//! and decides exactly as the direct door does (on the asked path and on
//! where it really leads). The differences: paths are found in the staged
//! view (the task's own changes first, then the workspace); a write-class
//! call's `act` records its effect in the staging area instead of changing
//! the workspace (the corridor neither asks for approval nor fsyncs for
//! it, and records `outcome: "staged"`); reads return staged content.

use super::{Gate, check_moved_paths, failed, kind_name, returned, sha256, visible_entries, wit_kind};
use crate::bindings::sandbox::host::fs::{Entry, Kind, Metadata};
use crate::bindings::sandbox::host::types::Error;
use crate::corridor::{Ctx, Done, HostCtx, Refusal};
use crate::staging::{self, Content, Found, Moved, Node, Op, StagedFile, Staging};
use crate::workspace::{FsError, MAX_RENAME_CHECK, ReadOutcome, Workspace};
use rustix::fs::FileType;
use sandbox_audit::Decision as AuditDecision;
use sandbox_policy::{FsOp, Policy, RelPath, Verdict};
use std::sync::Mutex;

/// Runs `f` on the run's staging area (an empty one if the run has none,
/// which the door never calls this module for).
fn with_staging<R>(staging: Option<&Mutex<Staging>>, f: impl FnOnce(&Staging) -> R) -> R {
    match staging {
        Some(m) => f(&staging::lock(m)),
        None => f(&Staging::new(0)),
    }
}

/// The corridor's `act` for every staged call: record the effect.
fn commit(staging: Option<&Mutex<Staging>>, staged: staging::Staged) -> Result<Done<()>, Error> {
    match staging {
        Some(m) => {
            staging::lock(m).commit(staged);
            Ok(Done::new((), 0))
        }
        None => Err(Error::Failed("this run has no staging area".into())),
    }
}

impl Gate<'_> {
    /// Finds the asked path in the staged view and decides again on where
    /// it really is, like [`Gate::locate`].
    fn find(&mut self, ws: &Workspace, st: &Staging, follow_last: bool) -> Result<Result<Found, Error>, Box<Refusal>> {
        match st.lookup(ws, &self.asked, follow_last) {
            Ok(found) => {
                self.also(found.real())?;
                self.not_private(ws, found.real())?;
                Ok(Ok(found))
            }
            Err(FsError::Outside(why)) => Err(self.refuse(
                AuditDecision::Deny,
                "builtin:outside-workspace",
                Error::Denied(format!("`{}`: {why}", self.asked.display())),
            )),
            Err(e) => {
                // Not there (or not reachable): a private directory on the
                // way still refuses it, so nothing inside is even probed.
                let asked = self.asked.clone();
                self.not_private(ws, &asked)?;
                Ok(Err(self.fs_error(e)))
            }
        }
    }

    /// [`Gate::check_target`] for what the staged view found.
    fn check_found(&self, found: &Found) -> Result<(), Box<Refusal>> {
        let p = self.asked.display();
        let content = matches!(self.op, FsOp::Read | FsOp::Write | FsOp::Append);
        match found {
            Found::Ws(at) => self.check_target(at),
            Found::Dir { .. } if content => {
                Err(self.refuse(AuditDecision::Invalid, "input", Error::Invalid(format!("`{p}` is a directory"))))
            }
            Found::File { .. } if self.op == FsOp::ListDir => {
                Err(self.refuse(AuditDecision::Invalid, "input", Error::Invalid(format!("`{p}` is not a directory"))))
            }
            _ => Ok(()),
        }
    }

    /// The staged call: its effect with the verdict and rule in force.
    fn staged(&self, op: Op) -> staging::Staged {
        staging::Staged { op, asked: self.decision.verdict == Verdict::Ask, rule: self.decision.rule.to_owned() }
    }

    /// Refuses an effect that would hold more staged bytes than allowed.
    fn within_budget(&self, st: &Staging, op: &Op) -> Result<(), Box<Refusal>> {
        let after = st.bytes_after(op);
        if after <= st.budget() {
            return Ok(());
        }
        Err(self.refuse(
            AuditDecision::Limit,
            "limits.memory",
            Error::LimitExceeded(format!(
                "staged changes are held in memory, at most {} bytes (limits.memory); this call would make them {after}",
                st.budget()
            )),
        ))
    }
}

/// The write family: decide, find without following the final component,
/// check what is there.
fn prepare_write<'p>(
    policy: &'p Policy,
    ws: &Workspace,
    st: &Staging,
    op: FsOp,
    raw: &str,
) -> Result<(Gate<'p>, Result<Found, Error>), Box<Refusal>> {
    let mut gate = Gate::new(policy, op, raw)?;
    if gate.asked.is_root() {
        return Err(gate.refuse(
            AuditDecision::Invalid,
            "input",
            Error::Invalid("the workspace root itself cannot be changed".into()),
        ));
    }
    let found = gate.find(ws, st, false)?;
    if let Ok(f) = &found {
        gate.check_found(f)?;
    }
    Ok((gate, found))
}

pub(super) fn read(host: &mut HostCtx, path: String) -> wasmtime::Result<Result<Vec<u8>, Error>> {
    host.corridor.mediate(
        host.intent.as_deref(),
        "fs.read",
        (&path, None),
        0,
        |Ctx { policy, ws, staging, .. }| {
            with_staging(staging, |st| {
                let mut gate = Gate::new(policy, FsOp::Read, &path)?;
                let ready = match gate.find(ws, st, true)? {
                    Ok(f) if !f.exists() => Err(gate.fs_error(FsError::NotFound)),
                    Ok(f) => {
                        gate.check_found(&f)?;
                        if f.size() > policy.limits.output {
                            return Err(gate.refuse(
                                AuditDecision::Limit,
                                "limits.output",
                                Error::LimitExceeded(format!(
                                    "`{}` is {} bytes; reads are limited to {} bytes",
                                    gate.asked.display(),
                                    f.size(),
                                    policy.limits.output
                                )),
                            ));
                        }
                        Ok((f, gate.target(), gate.redacts_read()))
                    }
                    Err(e) => Err(e),
                };
                Ok(gate.plan(false, ready))
            })
        },
        |cx, (found, shown, redact)| {
            let limit = cx.policy.limits.output;
            let out = match &found {
                Found::Ws(at) => cx.ws.read(at, limit),
                Found::File { file, .. } => staging::read_file(cx.ws, file, limit),
                _ => Err(FsError::NotFound),
            };
            match out.map_err(failed(&shown))? {
                ReadOutcome::Data(d) => Ok(returned(cx, redact, d)),
                ReadOutcome::TooLarge => Err(Error::LimitExceeded(format!(
                    "`{shown}` is larger than the {limit} bytes reads are limited to"
                ))),
            }
        },
    )
}

pub(super) fn list_dir(host: &mut HostCtx, path: String) -> wasmtime::Result<Result<Vec<Entry>, Error>> {
    host.corridor.mediate(
        host.intent.as_deref(),
        "fs.list-dir",
        (&path, None),
        0,
        |Ctx { policy, ws, staging, .. }| {
            with_staging(staging, |st| {
                let mut gate = Gate::new(policy, FsOp::ListDir, &path)?;
                let ready = match gate.find(ws, st, true)? {
                    Ok(f) if !f.exists() => Err(gate.fs_error(FsError::NotFound)),
                    Ok(f) => {
                        gate.check_found(&f)?;
                        Ok((f.real().clone(), gate.asked.clone(), gate.target()))
                    }
                    Err(e) => Err(e),
                };
                Ok(gate.plan(false, ready))
            })
        },
        |Ctx { policy, ws, staging, .. }, (real, asked, shown)| {
            let raw = with_staging(staging, |st| st.list(ws, &real)).map_err(failed(&shown))?;
            visible_entries(policy, ws, raw, &asked, &real, &shown)
        },
    )
}

pub(super) fn stat(host: &mut HostCtx, path: String) -> wasmtime::Result<Result<Metadata, Error>> {
    host.corridor.mediate(
        host.intent.as_deref(),
        "fs.stat",
        (&path, None),
        0,
        |Ctx { policy, ws, staging, .. }| {
            with_staging(staging, |st| {
                let mut gate = Gate::new(policy, FsOp::Stat, &path)?;
                let ready = match gate.find(ws, st, false)? {
                    Ok(Found::Ws(at)) => match at.stat {
                        Some(s) => Ok(Metadata {
                            kind: wit_kind(FileType::from_raw_mode(s.st_mode)),
                            size: s.st_size.max(0) as u64,
                            modified_ms: staging::modified_ms(&s),
                        }),
                        None => Err(gate.fs_error(FsError::NotFound)),
                    },
                    Ok(Found::File { file, .. }) => {
                        Ok(Metadata { kind: Kind::File, size: file.size(), modified_ms: file.modified_ms })
                    }
                    Ok(Found::Dir { .. }) => Ok(Metadata { kind: Kind::Dir, size: 0, modified_ms: None }),
                    Ok(Found::Absent { .. }) => Err(gate.fs_error(FsError::NotFound)),
                    Err(e) => Err(e),
                };
                Ok(gate.plan(false, ready))
            })
        },
        |_, meta| Ok(Done::new(meta, 24)),
    )
}

pub(super) fn write(host: &mut HostCtx, path: String, data: Vec<u8>) -> wasmtime::Result<Result<(), Error>> {
    let len = data.len() as u64;
    host.corridor.mediate(
        host.intent.as_deref(),
        "fs.write",
        (&path, None),
        len,
        |Ctx { policy, ws, staging, .. }| {
            with_staging(staging, |st| {
                let (gate, found) = prepare_write(policy, ws, st, FsOp::Write, &path)?;
                let ready = match found {
                    Ok(f) => {
                        let op = Op::Put(f.real().clone(), StagedFile::new(data.clone(), f.mode()));
                        gate.within_budget(st, &op)?;
                        Ok(gate.staged(op))
                    }
                    Err(e) => Err(e),
                };
                let mut plan = gate.plan(false, ready);
                plan.size = Some(len);
                plan.content_sha256 = Some(sha256(&data));
                Ok(plan)
            })
        },
        |Ctx { staging, .. }, staged| commit(staging, staged),
    )
}

pub(super) fn append(host: &mut HostCtx, path: String, data: Vec<u8>) -> wasmtime::Result<Result<(), Error>> {
    let len = data.len() as u64;
    host.corridor.mediate(
        host.intent.as_deref(),
        "fs.append",
        (&path, None),
        len,
        |Ctx { policy, ws, staging, .. }| {
            with_staging(staging, |st| {
                let (gate, found) = prepare_write(policy, ws, st, FsOp::Append, &path)?;
                let shown = gate.target();
                let ready = match found {
                    Ok(f) => {
                        let current = match &f {
                            Found::Ws(at) if at.stat.is_some() => ws.read(at, st.budget()),
                            Found::File { file, .. } => staging::read_file(ws, file, st.budget()),
                            _ => Ok(ReadOutcome::Data(Vec::new())),
                        };
                        match current.map_err(failed(&shown)) {
                            Ok(ReadOutcome::Data(mut content)) => {
                                content.extend_from_slice(&data);
                                let op = Op::Put(f.real().clone(), StagedFile::new(content, f.mode()));
                                gate.within_budget(st, &op)?;
                                Ok(gate.staged(op))
                            }
                            Ok(ReadOutcome::TooLarge) => {
                                return Err(gate.refuse(
                                    AuditDecision::Limit,
                                    "limits.memory",
                                    Error::LimitExceeded(format!(
                                        "`{shown}` is larger than the {} bytes staged changes may hold (limits.memory)",
                                        st.budget()
                                    )),
                                ));
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                };
                let mut plan = gate.plan(false, ready);
                plan.size = Some(len);
                plan.content_sha256 = Some(sha256(&data));
                Ok(plan)
            })
        },
        |Ctx { staging, .. }, staged| commit(staging, staged),
    )
}

pub(super) fn create_dir(host: &mut HostCtx, path: String) -> wasmtime::Result<Result<(), Error>> {
    host.corridor.mediate(
        host.intent.as_deref(),
        "fs.create-dir",
        (&path, None),
        0,
        |Ctx { policy, ws, staging, .. }| {
            with_staging(staging, |st| {
                let (gate, found) = prepare_write(policy, ws, st, FsOp::CreateDir, &path)?;
                let ready = match found {
                    Ok(f) if f.exists() => Err(Error::Failed(format!("`{}` already exists", gate.target()))),
                    Ok(f) => Ok(gate.staged(Op::Mkdir(f.real().clone()))),
                    Err(e) => Err(e),
                };
                Ok(gate.plan(false, ready))
            })
        },
        |Ctx { staging, .. }, staged| commit(staging, staged),
    )
}

pub(super) fn remove(host: &mut HostCtx, path: String) -> wasmtime::Result<Result<(), Error>> {
    host.corridor.mediate(
        host.intent.as_deref(),
        "fs.remove",
        (&path, None),
        0,
        |Ctx { policy, ws, staging, .. }| {
            with_staging(staging, |st| {
                let (gate, found) = prepare_write(policy, ws, st, FsOp::Remove, &path)?;
                let shown = gate.target();
                let ready = match found {
                    Ok(f) if !f.exists() => Err(gate.fs_error(FsError::NotFound)),
                    Ok(f) if f.is_dir() => match st.list(ws, f.real()) {
                        Ok(entries) if !entries.is_empty() => {
                            Err(Error::Failed(format!("`{shown}`: the directory is not empty")))
                        }
                        Ok(_) => Ok(gate.staged(Op::Remove(f.real().clone()))),
                        Err(e) => Err(failed(&shown)(e)),
                    },
                    Ok(f) => Ok(gate.staged(Op::Remove(f.real().clone()))),
                    Err(e) => Err(e),
                };
                Ok(gate.plan(false, ready))
            })
        },
        |Ctx { staging, .. }, staged| commit(staging, staged),
    )
}

pub(super) fn rename(host: &mut HostCtx, src: String, dst: String) -> wasmtime::Result<Result<(), Error>> {
    host.corridor.mediate(
        host.intent.as_deref(),
        "fs.rename",
        (&src, Some(&dst)),
        0,
        |Ctx { policy, ws, staging, .. }| {
            with_staging(staging, |st| {
                let with_dest = |mut r: Box<Refusal>| {
                    r.dest = Some(dst.clone());
                    r
                };
                let (from, from_found) = prepare_write(policy, ws, st, FsOp::Rename, &src).map_err(with_dest)?;
                let (to, to_found) =
                    prepare_write(policy, ws, st, FsOp::Rename, &dst).map_err(|mut r: Box<Refusal>| {
                        r.dest = Some(r.target.clone());
                        r.target = from.target();
                        r
                    })?;
                let as_pair = |mut r: Box<Refusal>| {
                    r.dest = Some(to.target());
                    r
                };
                // The stricter of the two ends decides.
                let (verdict, rule) = if to.decision.verdict == Verdict::Ask && from.decision.verdict == Verdict::Allow
                {
                    (Verdict::Ask, to.decision.rule)
                } else {
                    (from.decision.verdict, from.decision.rule)
                };
                let ready = match (from_found, to_found) {
                    (Ok(a), Ok(_)) if !a.exists() => Err(from.fs_error(FsError::NotFound)),
                    (Ok(a), Ok(b)) => match plan_move(policy, ws, st, &from, &to, &a, &b).map_err(as_pair)? {
                        Ok(op) => {
                            from.within_budget(st, &op).map_err(as_pair)?;
                            Ok(staging::Staged { op, asked: verdict == Verdict::Ask, rule: rule.to_owned() })
                        }
                        Err(e) => Err(e),
                    },
                    (Err(e), _) | (_, Err(e)) => Err(e),
                };
                let resolved = match (&from.resolved, &to.resolved) {
                    (None, None) => None,
                    (a, b) => Some(format!(
                        "{} -> {}",
                        a.as_ref().unwrap_or(&from.asked).display(),
                        b.as_ref().unwrap_or(&to.asked).display()
                    )),
                };
                let dest = to.target();
                let mut plan = from.plan(false, ready);
                plan.dest = Some(dest);
                plan.resolved = resolved;
                plan.verdict = verdict;
                plan.rule = rule.to_owned();
                Ok(plan)
            })
        },
        |Ctx { staging, .. }, staged| commit(staging, staged),
    )
}

/// A move is refused for a file with several hard links, like reads and
/// writes are: its bytes would be copied into the workspace.
fn refusal_hard_link(gate: &Gate<'_>, links: &str) -> Box<Refusal> {
    gate.refuse(
        AuditDecision::Deny,
        "builtin:hard-link",
        Error::Denied(format!(
            "`{}` holds a file with {links} hard links; files with more than one are refused",
            gate.asked.display()
        )),
    )
}

/// What a rename does to the staged view, with rename(2)'s rules: a file
/// replaces a file, a directory replaces an empty directory, a directory
/// cannot move into itself. A moved workspace file is referenced, not
/// copied, until the end of the task; files with several hard links,
/// symlinks and special files are not moved while changes are staged.
fn plan_move(
    policy: &Policy,
    ws: &Workspace,
    st: &Staging,
    from: &Gate<'_>,
    to: &Gate<'_>,
    a: &Found,
    b: &Found,
) -> Result<Result<Op, Error>, Box<Refusal>> {
    let (ra, rb) = (a.real(), b.real());
    let (pa, pb) = (from.asked.display(), to.asked.display());
    if ra == rb {
        return Ok(Ok(Op::Nothing));
    }
    let cannot = |what: &str, p: &str| {
        Error::Failed(format!(
            "`{p}` is {what}, which cannot be moved while changes are staged (approval.writes = \"end-of-task\")"
        ))
    };
    if !a.is_dir() {
        if b.is_dir() {
            return Ok(Err(Error::Failed(format!("`{pb}` is a directory"))));
        }
        let node = match a {
            Found::File { file, .. } => Node::File(file.clone()),
            Found::Ws(at) => match (at.file_type(), &at.stat) {
                (Some(FileType::RegularFile), Some(s)) if s.st_nlink == 1 => Node::File(StagedFile {
                    content: Content::Moved { from: ra.clone(), size: s.st_size.max(0) as u64 },
                    mode: s.st_mode & 0o777,
                    modified_ms: staging::modified_ms(s),
                }),
                (Some(FileType::RegularFile), Some(s)) => return Err(refusal_hard_link(from, &s.st_nlink.to_string())),
                (Some(ft), _) => return Ok(Err(cannot(kind_name(ft), pa))),
                (None, _) => return Ok(Err(from.fs_error(FsError::NotFound))),
            },
            _ => return Ok(Err(from.fs_error(FsError::NotFound))),
        };
        return Ok(Ok(Op::Move { removed: vec![ra.clone()], placed: vec![(rb.clone(), node)] }));
    }
    if staging::is_under(rb, ra) {
        return Ok(Err(Error::Failed(format!("`{pb}` is inside `{pa}`; a directory cannot be moved into itself"))));
    }
    if b.exists() && !b.is_dir() {
        return Ok(Err(Error::Failed(format!("`{pb}`: not a directory"))));
    }
    if b.is_dir() {
        match st.list(ws, rb) {
            Ok(entries) if !entries.is_empty() => {
                return Ok(Err(Error::Failed(format!("`{pb}`: the directory is not empty"))));
            }
            Ok(_) => {}
            Err(e) => return Ok(Err(failed(pb)(e))),
        }
    }
    let tree = st
        .tree(ws, ra, MAX_RENAME_CHECK)
        .map_err(|e| {
            from.refuse(
                AuditDecision::Deny,
                "builtin:rename-tree",
                Error::Denied(format!("`{pa}` cannot be checked before moving it: {e:?}")),
            )
        })?
        .ok_or_else(|| {
            from.refuse(
                AuditDecision::Deny,
                "builtin:rename-tree",
                Error::Denied(format!(
                    "`{pa}` holds more than {MAX_RENAME_CHECK} entries; too many to check before moving it"
                )),
            )
        })?;
    let inner: Vec<RelPath> = tree.iter().map(|(p, _)| p.clone()).collect();
    check_moved_paths(policy, from, to, ra, rb, &inner)?;
    let mut removed = vec![ra.clone()];
    let mut placed = vec![(rb.clone(), Node::Dir)];
    let prefix = ra.as_str().len() + 1;
    for (p, moved) in tree {
        let node = match moved {
            Moved::Dir => Node::Dir,
            Moved::File(f) => Node::File(f),
            Moved::HardLinked(n) => return Err(refusal_hard_link(from, &n)),
            Moved::Other(what) => return Ok(Err(cannot(what, p.display()))),
        };
        let rest = p.as_str().get(prefix..).unwrap_or_default();
        placed.push((RelPath::from_normal(format!("{}/{rest}", rb.as_str())), node));
        removed.push(p);
    }
    Ok(Ok(Op::Move { removed, placed }))
}
