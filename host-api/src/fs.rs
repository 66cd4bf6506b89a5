//! `sandbox:host/fs`: files under the workspace.
//!
//! Each function hands the corridor a `prepare` (normalise the path, decide
//! on it, locate it without following symlinks, decide again on where it
//! really is, check what is there) and an `act` (the effect). Decisions are
//! made on the asked path before anything is touched, so a denied path
//! never reveals whether it exists.

use crate::bindings::sandbox::host::fs::{self as wit, Entry, Kind, Metadata};
use crate::bindings::sandbox::host::types::Error;
use crate::corridor::{Ctx, Done, HostCtx, Plan, Refusal, effect_hash};
use crate::workspace::{FsError, Located, MAX_RENAME_CHECK, ReadOutcome, Workspace};
use rustix::fs::FileType;
use sandbox_audit::Decision as AuditDecision;
use sandbox_policy::{Decision, FsOp, PathError, Policy, RelPath, Verdict};
use sha2::{Digest, Sha256};

mod staged;

/// The rule of a refusal in a directory holding the private marker.
const PRIVATE_RULE: &str = "builtin:sandbox-private";

/// The most of the current and new content compared for a preview.
const PREVIEW_INPUT: usize = 256 * 1024;
/// The most lines a preview shows.
const PREVIEW_LINES: usize = 60;

/// The decision so far on one path: the asked path, then where it leads.
struct Gate<'p> {
    op: FsOp,
    policy: &'p Policy,
    asked: RelPath,
    decision: Decision<'p>,
    resolved: Option<RelPath>,
}

impl<'p> Gate<'p> {
    /// Normalises the tool's path and decides on it.
    fn new(policy: &'p Policy, op: FsOp, raw: &str) -> Result<Gate<'p>, Box<Refusal>> {
        let asked = match RelPath::normalise(raw) {
            Ok(p) => p,
            Err(PathError::Invalid(msg)) => {
                return Err(refusal(AuditDecision::Invalid, "input", raw.to_owned(), Error::Invalid(msg)));
            }
            Err(PathError::Escapes) => {
                return Err(refusal(
                    AuditDecision::Deny,
                    "builtin:outside-workspace",
                    raw.to_owned(),
                    Error::Denied(format!("`{raw}` leads outside the workspace")),
                ));
            }
        };
        let decision = policy.fs.decide(op, &asked);
        let gate = Gate { op, policy, asked, decision, resolved: None };
        if !decision.permits() {
            return Err(gate.denied(&gate.asked, decision.rule));
        }
        Ok(gate)
    }

    /// Decides again on the real path when it differs from the asked one;
    /// the stricter decision stands.
    fn also(&mut self, real: &RelPath) -> Result<(), Box<Refusal>> {
        if *real == self.asked {
            return Ok(());
        }
        self.resolved = Some(real.clone());
        let d = self.policy.fs.decide(self.op, real);
        match d.verdict {
            Verdict::Deny => Err(self.denied(real, d.rule)),
            Verdict::Ask if self.decision.verdict == Verdict::Allow => {
                self.decision = d;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn target(&self) -> String {
        self.asked.display().to_owned()
    }

    /// True when what is read here is returned redacted: `[redact]
    /// outputs`, or the path asked or where it led is an `always` path.
    fn redacts_read(&self) -> bool {
        let mut paths = vec![&self.asked];
        paths.extend(self.resolved.as_ref());
        self.policy.redact.redacts_read(&paths)
    }

    fn refuse(&self, decision: AuditDecision, rule: &str, error: Error) -> Box<Refusal> {
        Box::new(Refusal {
            decision,
            rule: rule.to_owned(),
            target: self.target(),
            dest: None,
            resolved: self.resolved.as_ref().map(|p| p.display().to_owned()),
            error,
        })
    }

    fn denied(&self, path: &RelPath, rule: &str) -> Box<Refusal> {
        let cap = self.op.capability();
        let how =
            if path == &self.asked { String::new() } else { format!(" (where `{}` leads)", self.asked.display()) };
        let msg = if rule == "default" {
            format!("no rule grants {cap} on `{}`{how}", path.display())
        } else {
            format!("{cap} on `{}`{how} is denied by {rule}", path.display())
        };
        self.refuse(AuditDecision::Deny, rule, Error::Denied(msg))
    }

    /// Locates the path (following a final symlink if asked) and decides on
    /// where it really is. A missing path is not a refusal: the call is
    /// allowed and fails with `not-found`.
    fn locate(&mut self, ws: &Workspace, follow_last: bool) -> Result<Result<Located, Error>, Box<Refusal>> {
        match ws.locate(&self.asked, follow_last) {
            Ok(at) => {
                self.also(&at.real)?;
                self.not_private(ws, &at.real)?;
                Ok(Ok(at))
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

    /// Refuses a path in a directory the host keeps for itself (holding
    /// the private marker: a compile cache, a staging directory), whatever
    /// the manifest grants and whichever run made it.
    fn not_private(&self, ws: &Workspace, real: &RelPath) -> Result<(), Box<Refusal>> {
        if !ws.in_private_dir(real) {
            return Ok(());
        }
        let cap = self.op.capability();
        Err(self.refuse(
            AuditDecision::Deny,
            PRIVATE_RULE,
            Error::Denied(format!(
                "{cap} on `{}` is denied by {PRIVATE_RULE}: it lies in a directory sandbox keeps for itself",
                self.asked.display()
            )),
        ))
    }

    fn fs_error(&self, e: FsError) -> Error {
        let p = self.asked.display();
        match e {
            FsError::NotFound => Error::NotFound(format!("`{p}` does not exist")),
            FsError::Outside(why) => Error::Denied(format!("`{p}`: {why}")),
            FsError::Failed(why) => Error::Failed(format!("`{p}`: {why}")),
        }
    }

    /// Refuses what is at a located path when the operation cannot apply
    /// to it: hard links, symlinks for writes, devices and FIFOs.
    fn check_target(&self, at: &Located) -> Result<(), Box<Refusal>> {
        let Some(st) = &at.stat else { return Ok(()) };
        let ft = FileType::from_raw_mode(st.st_mode);
        let p = self.asked.display();
        let content = matches!(self.op, FsOp::Read | FsOp::Write | FsOp::Append);
        if content && ft == FileType::RegularFile && st.st_nlink > 1 {
            return Err(self.refuse(
                AuditDecision::Deny,
                "builtin:hard-link",
                Error::Denied(format!("`{p}` has {} hard links; files with more than one are refused", st.st_nlink)),
            ));
        }
        if matches!(self.op, FsOp::Write | FsOp::Append) && ft == FileType::Symlink {
            return Err(self.refuse(
                AuditDecision::Deny,
                "builtin:symlink",
                Error::Denied(format!("`{p}` is a symbolic link; writes do not follow symlinks")),
            ));
        }
        if content && ft == FileType::Directory {
            return Err(self.refuse(AuditDecision::Invalid, "input", Error::Invalid(format!("`{p}` is a directory"))));
        }
        if content && ft != FileType::RegularFile {
            return Err(self.refuse(
                AuditDecision::Invalid,
                "input",
                Error::Invalid(format!("`{p}` is not a regular file ({})", kind_name(ft))),
            ));
        }
        if self.op == FsOp::ListDir && ft != FileType::Directory {
            return Err(self.refuse(
                AuditDecision::Invalid,
                "input",
                Error::Invalid(format!("`{p}` is not a directory")),
            ));
        }
        Ok(())
    }

    fn plan<P>(self, effect: bool, ready: Result<P, Error>) -> Plan<P> {
        Plan {
            target: self.target(),
            dest: None,
            resolved: self.resolved.as_ref().map(|p| p.display().to_owned()),
            verdict: self.decision.verdict,
            rule: self.decision.rule.to_owned(),
            effect,
            size: None,
            content_sha256: None,
            preview: None,
            headers: None,
            env: None,
            cwd: None,
            effect_sha256: effect_hash(self.op.capability(), &[&self.target()]),
            ready,
        }
    }
}

/// Data read, as returned to the tool: redacted when `redact`, counted.
fn returned(cx: Ctx<'_>, redact: bool, data: Vec<u8>) -> Done<Vec<u8>> {
    let mut counts = sandbox_redact::Counts::new();
    let data = cx.returned(redact, data, &mut counts);
    let mut done = Done::new(data, 0);
    done.bytes_out = done.value.len() as u64;
    done.redactions = counts;
    done
}

fn refusal(decision: AuditDecision, rule: &str, target: String, error: Error) -> Box<Refusal> {
    Box::new(Refusal { decision, rule: rule.to_owned(), target, dest: None, resolved: None, error })
}

/// The entries of a listing the manifest lets the tool see: visible both
/// where the tool asked (`asked`) and where the directory really is
/// (`real`), within the output limit.
fn visible_entries(
    policy: &Policy,
    ws: &Workspace,
    raw: Vec<(String, FileType, u64)>,
    asked: &RelPath,
    real: &RelPath,
    shown: &str,
) -> Result<Done<Vec<Entry>>, Error> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = 0u64;
    for (name, ft, size) in raw {
        let is_dir = ft == FileType::Directory;
        let visible = |dir: &RelPath| dir.join_name(&name).is_some_and(|p| policy.fs.visible(&p, is_dir));
        if !visible(asked) || !visible(real) {
            continue;
        }
        // A directory the host keeps for itself is not shown at all.
        if is_dir && real.join_name(&name).is_some_and(|p| ws.holds_marker(p.as_str()) == Some(true)) {
            continue;
        }
        bytes += name.len() as u64 + 16;
        if bytes > policy.limits.output {
            return Err(Error::LimitExceeded(format!(
                "listing `{shown}` exceeds the {} byte output limit",
                policy.limits.output
            )));
        }
        out.push(Entry { name, kind: wit_kind(ft), size });
    }
    Ok(Done::new(out, bytes))
}

fn kind_name(ft: FileType) -> &'static str {
    match ft {
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Socket => "a socket",
        FileType::Symlink => "a symbolic link",
        FileType::Directory => "a directory",
        FileType::RegularFile => "a regular file",
        _ => "an unknown kind of file",
    }
}

fn wit_kind(ft: FileType) -> Kind {
    match ft {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    }
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A text view of a change for the approver: a unified diff against the
/// current content when both are text (sizes and hashes instead when the
/// diff is not done within [`PREVIEW_TIME`](crate::diff::PREVIEW_TIME)),
/// else the start of the new text, or a line saying the data is binary.
fn preview(old: Option<&[u8]>, new: &[u8], appended: bool) -> String {
    let text = |b: &[u8]| std::str::from_utf8(b).ok().filter(|s| !s.contains('\0')).map(str::to_owned);
    let Some(new_text) = text(&new[..new.len().min(PREVIEW_INPUT)]) else {
        return format!("(binary data, {} bytes, {})", new.len(), sha256(new));
    };
    let old_text = old.filter(|o| o.len() <= PREVIEW_INPUT && new.len() <= PREVIEW_INPUT).and_then(text);
    let body = match (&old_text, appended) {
        (Some(o), false) => {
            let deadline = std::time::Instant::now() + crate::diff::PREVIEW_TIME;
            match crate::diff::unified(o, &new_text, "current", "proposed", deadline) {
                Some(diff) => diff,
                None => {
                    return format!(
                        "(too large to show as a line diff: current {} bytes, {}; proposed {} bytes, {})",
                        o.len(),
                        sha256(o.as_bytes()),
                        new.len(),
                        sha256(new)
                    );
                }
            }
        }
        (_, true) => new_text.lines().map(|l| format!("+{l}\n")).collect(),
        (None, false) => new_text,
    };
    let lines: Vec<&str> = body.lines().collect();
    if lines.len() <= PREVIEW_LINES && new.len() <= PREVIEW_INPUT {
        return body;
    }
    let mut out: String = lines.iter().take(PREVIEW_LINES).map(|l| format!("{l}\n")).collect();
    out.push_str(&format!(
        "... (preview cut: {} lines shown of {}; {} bytes in all)\n",
        PREVIEW_LINES.min(lines.len()),
        lines.len(),
        new.len()
    ));
    out
}

/// The write family shares its shape: decide, locate without following the
/// final component, check what is there.
fn prepare_write<'p>(
    policy: &'p Policy,
    ws: &Workspace,
    op: FsOp,
    raw: &str,
) -> Result<(Gate<'p>, Result<Located, Error>), Box<Refusal>> {
    let mut gate = Gate::new(policy, op, raw)?;
    if gate.asked.is_root() {
        return Err(gate.refuse(
            AuditDecision::Invalid,
            "input",
            Error::Invalid("the workspace root itself cannot be changed".into()),
        ));
    }
    let at = gate.locate(ws, false)?;
    if let Ok(at) = &at {
        gate.check_target(at)?;
    }
    Ok((gate, at))
}

fn failed(gate_path: &str) -> impl Fn(FsError) -> Error + '_ {
    move |e| match e {
        FsError::NotFound => Error::NotFound(format!("`{gate_path}` does not exist")),
        FsError::Outside(why) => Error::Denied(format!("`{gate_path}`: {why}")),
        FsError::Failed(why) => Error::Failed(format!("`{gate_path}`: {why}")),
    }
}

impl wit::Host for HostCtx {
    fn read(&mut self, path: String) -> wasmtime::Result<Result<Vec<u8>, Error>> {
        if self.corridor.sees_staged() {
            return staged::read(self, path);
        }
        self.corridor.mediate(
            self.intent.as_deref(),
            "fs.read",
            (&path, None),
            0,
            |Ctx { policy, ws, .. }| {
                let mut gate = Gate::new(policy, FsOp::Read, &path)?;
                let at = gate.locate(ws, true)?;
                let ready = match at {
                    Ok(at) if at.stat.is_none() => Err(gate.fs_error(FsError::NotFound)),
                    Ok(at) => {
                        gate.check_target(&at)?;
                        let size = at.stat.as_ref().map_or(0, |s| s.st_size.max(0) as u64);
                        if size > policy.limits.output {
                            return Err(gate.refuse(
                                AuditDecision::Limit,
                                "limits.output",
                                Error::LimitExceeded(format!(
                                    "`{}` is {size} bytes; reads are limited to {} bytes",
                                    gate.asked.display(),
                                    policy.limits.output
                                )),
                            ));
                        }
                        Ok((at, gate.target(), gate.redacts_read()))
                    }
                    Err(e) => Err(e),
                };
                Ok(gate.plan(false, ready))
            },
            |cx, (at, shown, redact)| match cx.ws.read(&at, cx.policy.limits.output).map_err(failed(&shown))? {
                ReadOutcome::Data(d) => Ok(returned(cx, redact, d)),
                ReadOutcome::TooLarge => Err(Error::LimitExceeded(format!(
                    "`{shown}` is larger than the {} bytes reads are limited to",
                    cx.policy.limits.output
                ))),
            },
        )
    }

    fn list_dir(&mut self, path: String) -> wasmtime::Result<Result<Vec<Entry>, Error>> {
        if self.corridor.sees_staged() {
            return staged::list_dir(self, path);
        }
        self.corridor.mediate(
            self.intent.as_deref(),
            "fs.list-dir",
            (&path, None),
            0,
            |Ctx { policy, ws, .. }| {
                let mut gate = Gate::new(policy, FsOp::ListDir, &path)?;
                let at = gate.locate(ws, true)?;
                let ready = match at {
                    Ok(at) if at.stat.is_none() => Err(gate.fs_error(FsError::NotFound)),
                    Ok(at) => {
                        gate.check_target(&at)?;
                        Ok((at, gate.asked.clone(), gate.target()))
                    }
                    Err(e) => Err(e),
                };
                Ok(gate.plan(false, ready))
            },
            |Ctx { policy, ws, .. }, (at, asked, shown)| {
                let raw = ws.list(&at).map_err(failed(&shown))?;
                visible_entries(policy, ws, raw, &asked, &at.real, &shown)
            },
        )
    }

    fn stat(&mut self, path: String) -> wasmtime::Result<Result<Metadata, Error>> {
        if self.corridor.sees_staged() {
            return staged::stat(self, path);
        }
        self.corridor.mediate(
            self.intent.as_deref(),
            "fs.stat",
            (&path, None),
            0,
            |Ctx { policy, ws, .. }| {
                let mut gate = Gate::new(policy, FsOp::Stat, &path)?;
                let at = gate.locate(ws, false)?;
                let ready = match at {
                    Ok(at) => match at.stat {
                        Some(st) => Ok(st),
                        None => Err(gate.fs_error(FsError::NotFound)),
                    },
                    Err(e) => Err(e),
                };
                Ok(gate.plan(false, ready))
            },
            |_, st| {
                let ft = FileType::from_raw_mode(st.st_mode);
                let modified_ms = u64::try_from(st.st_mtime).ok().map(|s| s * 1000 + st.st_mtime_nsec / 1_000_000);
                Ok(Done::new(Metadata { kind: wit_kind(ft), size: st.st_size.max(0) as u64, modified_ms }, 24))
            },
        )
    }

    fn write(&mut self, path: String, data: Vec<u8>) -> wasmtime::Result<Result<(), Error>> {
        if self.corridor.stages_writes() {
            return staged::write(self, path, data);
        }
        let len = data.len() as u64;
        self.corridor.mediate(
            self.intent.as_deref(),
            "fs.write",
            (&path, None),
            len,
            |Ctx { policy, ws, .. }| {
                let (gate, at) = prepare_write(policy, ws, FsOp::Write, &path)?;
                let shown = gate.target();
                let old = match (&at, gate.decision.verdict) {
                    (Ok(at), Verdict::Ask) if at.stat.is_some() => match ws.read(at, PREVIEW_INPUT as u64) {
                        Ok(ReadOutcome::Data(d)) => Some(d),
                        _ => None,
                    },
                    _ => None,
                };
                let ask = gate.decision.verdict == Verdict::Ask;
                let mut plan = gate.plan(true, at.map(|at| (at, shown)));
                plan.size = Some(len);
                plan.content_sha256 = Some(sha256(&data));
                plan.effect_sha256 = effect_hash("fs.write", &[&plan.target, &sha256(&data)]);
                if ask {
                    plan.preview = Some(preview(old.as_deref(), &data, false));
                }
                Ok(plan)
            },
            |Ctx { ws, .. }, (at, shown)| {
                ws.write_atomic(&at, &data).map(|()| Done::new((), 0)).map_err(failed(&shown))
            },
        )
    }

    fn append(&mut self, path: String, data: Vec<u8>) -> wasmtime::Result<Result<(), Error>> {
        if self.corridor.stages_writes() {
            return staged::append(self, path, data);
        }
        let len = data.len() as u64;
        self.corridor.mediate(
            self.intent.as_deref(),
            "fs.append",
            (&path, None),
            len,
            |Ctx { policy, ws, .. }| {
                let (gate, at) = prepare_write(policy, ws, FsOp::Append, &path)?;
                let shown = gate.target();
                let ask = gate.decision.verdict == Verdict::Ask;
                let mut plan = gate.plan(true, at.map(|at| (at, shown)));
                plan.size = Some(len);
                plan.content_sha256 = Some(sha256(&data));
                plan.effect_sha256 = effect_hash("fs.append", &[&plan.target, &sha256(&data)]);
                if ask {
                    plan.preview = Some(preview(None, &data, true));
                }
                Ok(plan)
            },
            |Ctx { ws, .. }, (at, shown)| ws.append(&at, &data).map(|()| Done::new((), 0)).map_err(failed(&shown)),
        )
    }

    fn create_dir(&mut self, path: String) -> wasmtime::Result<Result<(), Error>> {
        if self.corridor.stages_writes() {
            return staged::create_dir(self, path);
        }
        self.corridor.mediate(
            self.intent.as_deref(),
            "fs.create-dir",
            (&path, None),
            0,
            |Ctx { policy, ws, .. }| {
                let (gate, at) = prepare_write(policy, ws, FsOp::CreateDir, &path)?;
                let shown = gate.target();
                let ready = match at {
                    Ok(at) if at.stat.is_some() => Err(Error::Failed(format!("`{shown}` already exists"))),
                    other => other.map(|at| (at, shown)),
                };
                let mut plan = gate.plan(true, ready);
                plan.preview = Some("create an empty directory\n".into());
                Ok(plan)
            },
            |Ctx { ws, .. }, (at, shown)| ws.create_dir(&at).map(|()| Done::new((), 0)).map_err(failed(&shown)),
        )
    }

    fn remove(&mut self, path: String) -> wasmtime::Result<Result<(), Error>> {
        if self.corridor.stages_writes() {
            return staged::remove(self, path);
        }
        self.corridor.mediate(
            self.intent.as_deref(),
            "fs.remove",
            (&path, None),
            0,
            |Ctx { policy, ws, .. }| {
                let (gate, at) = prepare_write(policy, ws, FsOp::Remove, &path)?;
                let shown = gate.target();
                let (ready, what) = match at {
                    Ok(at) => match at.file_type() {
                        None => (Err(gate.fs_error(FsError::NotFound)), String::new()),
                        Some(ft) => {
                            let size = at.stat.as_ref().map_or(0, |s| s.st_size.max(0));
                            (Ok((at, shown)), format!("remove {} ({size} bytes)\n", kind_name(ft)))
                        }
                    },
                    Err(e) => (Err(e), String::new()),
                };
                let mut plan = gate.plan(true, ready);
                plan.preview = Some(what);
                Ok(plan)
            },
            |Ctx { ws, .. }, (at, shown)| ws.remove(&at).map(|()| Done::new((), 0)).map_err(failed(&shown)),
        )
    }

    fn rename(&mut self, src: String, dst: String) -> wasmtime::Result<Result<(), Error>> {
        if self.corridor.stages_writes() {
            return staged::rename(self, src, dst);
        }
        self.corridor.mediate(
            self.intent.as_deref(),
            "fs.rename",
            (&src, Some(&dst)),
            0,
            |Ctx { policy, ws, .. }| {
                let with_dest = |mut r: Box<Refusal>| {
                    r.dest = Some(dst.clone());
                    r
                };
                let (from, from_at) = prepare_write(policy, ws, FsOp::Rename, &src).map_err(with_dest)?;
                let (to, to_at) = prepare_write(policy, ws, FsOp::Rename, &dst).map_err(|mut r: Box<Refusal>| {
                    r.dest = Some(r.target.clone());
                    r.target = from.target();
                    r
                })?;
                let as_pair = |mut r: Box<Refusal>| {
                    r.dest = Some(to.target());
                    r
                };
                let ready = match (from_at, to_at) {
                    (Ok(a), Ok(b)) if a.stat.is_none() => {
                        drop(b);
                        Err(from.fs_error(FsError::NotFound))
                    }
                    (Ok(a), Ok(b)) => {
                        if a.file_type() == Some(FileType::Directory) {
                            check_moved_tree(policy, ws, &from, &to, &a.real, &b.real).map_err(as_pair)?;
                        }
                        Ok((a, b, from.target()))
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                };
                // The stricter of the two ends decides.
                let (verdict, rule) = if to.decision.verdict == Verdict::Ask && from.decision.verdict == Verdict::Allow
                {
                    (Verdict::Ask, to.decision.rule)
                } else {
                    (from.decision.verdict, from.decision.rule)
                };
                let resolved = match (&from.resolved, &to.resolved) {
                    (None, None) => None,
                    (a, b) => Some(format!(
                        "{} -> {}",
                        a.as_ref().unwrap_or(&from.asked).display(),
                        b.as_ref().unwrap_or(&to.asked).display()
                    )),
                };
                let preview = format!("move `{}`\n  to `{}`\n", from.target(), to.target());
                let mut plan = from.plan(true, ready);
                plan.effect_sha256 = effect_hash("fs.rename", &[&plan.target, &to.target()]);
                plan.dest = Some(to.target());
                plan.resolved = resolved;
                plan.verdict = verdict;
                plan.rule = rule.to_owned();
                plan.preview = Some(preview);
                Ok(plan)
            },
            |Ctx { ws, .. }, (a, b, shown)| ws.rename(&a, &b).map(|()| Done::new((), 0)).map_err(failed(&shown)),
        )
    }
}

/// Moving a directory moves everything in it: each path inside must be
/// movable (a rename permitted at its old and its new place), so that a
/// rename can never carry a denied or protected file to where it is not.
fn check_moved_tree(
    policy: &Policy,
    ws: &Workspace,
    from: &Gate<'_>,
    to: &Gate<'_>,
    real_from: &RelPath,
    real_to: &RelPath,
) -> Result<(), Box<Refusal>> {
    let tree = ws
        .tree(real_from, MAX_RENAME_CHECK)
        .map_err(|e| {
            from.refuse(
                AuditDecision::Deny,
                "builtin:rename-tree",
                Error::Denied(format!("`{}` cannot be checked before moving it: {e:?}", from.asked.display())),
            )
        })?
        .ok_or_else(|| {
            from.refuse(
                AuditDecision::Deny,
                "builtin:rename-tree",
                Error::Denied(format!(
                    "`{}` holds more than {MAX_RENAME_CHECK} entries; too many to check before moving it",
                    from.asked.display()
                )),
            )
        })?;
    check_moved_paths(policy, from, to, real_from, real_to, &tree)
}

/// The check of [`check_moved_tree`] on a given list of the real paths
/// below `real_from` (the staged door lists them in the staged view).
fn check_moved_paths(
    policy: &Policy,
    from: &Gate<'_>,
    to: &Gate<'_>,
    real_from: &RelPath,
    real_to: &RelPath,
    tree: &[RelPath],
) -> Result<(), Box<Refusal>> {
    let prefix = real_from.as_str().len() + 1;
    for inner in tree {
        if inner.components().last() == Some(sandbox_audit::owned::PRIVATE_MARKER) {
            return Err(from.refuse(
                AuditDecision::Deny,
                PRIVATE_RULE,
                Error::Denied(format!(
                    "moving `{}` would move `{}`, a directory sandbox keeps for itself ({PRIVATE_RULE})",
                    from.asked.display(),
                    inner.split_last().map_or_else(RelPath::root, |(d, _)| d).display()
                )),
            ));
        }
        let rest = &inner.as_str()[prefix..];
        for base in [&from.asked, real_from, &to.asked, real_to] {
            let moved = RelPath::from_normal(format!("{}/{rest}", base.as_str()).trim_start_matches('/').to_owned());
            let d = policy.fs.decide(FsOp::Rename, &moved);
            if !d.permits() {
                return Err(from.refuse(
                    AuditDecision::Deny,
                    d.rule,
                    Error::Denied(format!(
                        "moving `{}` would move `{}`, which {} on `{}` denies",
                        from.asked.display(),
                        inner.display(),
                        d.rule,
                        moved.display()
                    )),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{PREVIEW_INPUT, preview, sha256};

    #[test]
    fn a_preview_too_costly_to_diff_is_shown_by_sizes_and_hashes() {
        // No line in common: minutes of work for a line diff without a
        // deadline.
        let old = "a\n".repeat(PREVIEW_INPUT / 2);
        let new = "b\n".repeat(PREVIEW_INPUT / 2);
        let shown = preview(Some(old.as_bytes()), new.as_bytes(), false);
        assert_eq!(
            shown,
            format!(
                "(too large to show as a line diff: current {} bytes, {}; proposed {} bytes, {})",
                old.len(),
                sha256(old.as_bytes()),
                new.len(),
                sha256(new.as_bytes())
            )
        );
    }

    #[test]
    fn a_small_change_is_previewed_as_a_diff() {
        let shown = preview(Some(b"a\nb\n"), b"a\nc\n", false);
        assert_eq!(shown, "--- current\n+++ proposed\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n");
    }
}
