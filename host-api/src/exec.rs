//! Host programs: the runtime's only ambient authority to start processes.
//!
//! A program is never started directly. [`run_ambient`] starts the
//! `sandbox` binary itself as a trampoline (`sandbox __confine ...`), in a
//! new process group, with an empty environment apart from what the rule
//! allows and a private `TMPDIR`. The trampoline ([`confine_ambient`]):
//! 1. lowers its resource limits (processes, file size, CPU time, open
//!    files, core dumps, and the address space: `[process] memory`);
//! 2. stages the program's writes: in a private mount namespace (and a
//!    user namespace when not root) it mounts an overlay over the
//!    workspace, whose lower layer is the workspace and whose upper layer
//!    is a directory of the call's own, so every change the program makes
//!    lands there and not in the workspace; the same `unshare` gives it a
//!    network namespace of its own (no interfaces, no abstract sockets
//!    shared with the host);
//! 3. confines its file access with Landlock where the kernel has it
//!    (read: system directories; read and write: the workspace and the
//!    private temporary directory; no TCP);
//! 4. installs a seccomp filter that refuses `socket()` for every address
//!    family (`socketpair` still works) and `io_uring_setup`, so neither
//!    UDP nor a Unix socket outside the workspace can be reached;
//! 5. reports on a marker line what applied, changes to the working
//!    directory and `exec`s the program with the argv it was given: no
//!    shell at any point, so every character of every argument arrives as
//!    it was sent.
//!
//! Where the machine cannot give the namespaces, the trampoline refuses to
//! run the program unless the manifest opts in (`[process]
//! allow_unstaged_writes = true`); then the program writes the workspace
//! directly, and the audit event says so.
//!
//! The parent writes stdin, reads stdout and stderr up to a cap each,
//! and kills the whole process group at the timeout or when a stream
//! reaches its cap. A stream that passes its cap is read on for up to
//! [`LOOKAHEAD`] more bytes (what is already in the pipe): the caller
//! redacts before it cuts, so a secret lying across the cap is seen whole
//! and withheld, never returned in part (see `process::act`). Afterwards it kills the group again and, as the
//! process's child subreaper, kills every orphan that was reparented to it
//! (children that left the group with `setsid`), so nothing outlives the
//! call, and waits until no process is left in the program's mount
//! namespace. Only then does it read the upper layer and apply the
//! changes to the workspace, all of them or, when one touches a path
//! programs may never change ([`ProgramWrites`]), none
//! ([`crate::overlay`]).

use crate::overlay::{self, Refused};
use sandbox_policy::program_writes::ProgramWrites;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The hidden subcommand that runs the trampoline.
pub const TRAMPOLINE: &str = "__confine";

/// How the trampoline reports, as the first line on stderr.
const MARKER: &str = "\u{1e}sandbox-confine ";

/// Directories a confined program may read (and execute from).
const SYSTEM_READ: &[&str] = &["/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin"];
/// What of `/etc` a program may read: the loader, names, certificates,
/// time zones and locales; not `/etc/shadow`, SSH host keys and the like.
const ETC_READ: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/mime.types",
    "/etc/locale.alias",
    "/etc/os-release",
    "/etc/magic",
];
/// How far past its cap a stream is read, so that what lies across the
/// cap can be redacted whole before the cut.
pub const LOOKAHEAD: u64 = 64 * 1024;

/// Devices a confined program may read and write.
const DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"];

/// Resource limits of a child.
#[derive(Debug, Clone, Copy)]
pub struct ChildLimits {
    /// Processes (RLIMIT_NPROC; not enforced for root).
    pub processes: u64,
    /// Largest file it may write, in bytes.
    pub file_size: u64,
    /// CPU seconds.
    pub cpu_seconds: u64,
    /// Open files.
    pub open_files: u64,
}

impl Default for ChildLimits {
    /// 256 processes, 1 GiB files, 300 CPU seconds, 1024 open files.
    fn default() -> ChildLimits {
        ChildLimits { processes: 256, file_size: 1 << 30, cpu_seconds: 300, open_files: 1024 }
    }
}

/// What to run, decided and checked.
#[derive(Debug, Clone)]
pub struct Spawn {
    /// The program's absolute path.
    pub path: PathBuf,
    /// Arguments after the program (forced ones first).
    pub args: Vec<String>,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// The working directory, absolute, inside the workspace.
    pub cwd: PathBuf,
    /// The workspace root (absolute): where the program may write.
    pub workspace: PathBuf,
    /// Bytes for stdin.
    pub stdin: Vec<u8>,
    /// What the program may never change in the workspace.
    pub guard: ProgramWrites,
    /// Its address space in bytes (RLIMIT_AS).
    pub memory: u64,
    /// True: where the machine cannot stage its writes, run it anyway,
    /// writing the workspace directly (`[process] allow_unstaged_writes`).
    pub allow_unstaged: bool,
}

/// What became of a program's changes to the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writes {
    /// It wrote the workspace directly (not staged: the manifest allows
    /// that where the machine cannot stage).
    Direct,
    /// Staged, checked and applied: how many changes.
    Applied(usize),
    /// Staged and refused: nothing was applied.
    Refused(Refused),
}

/// What a run produced.
#[derive(Debug)]
pub struct Finished {
    /// `None` when the process was killed (timeout, cap, signal).
    pub exit_code: Option<i32>,
    /// Standard output, at most the cap plus [`LOOKAHEAD`] bytes: not yet
    /// cut, so that the caller can redact before cutting.
    pub stdout: Vec<u8>,
    /// Standard error, likewise.
    pub stderr: Vec<u8>,
    /// True when a stream reached the cap (the group was killed).
    pub truncated: bool,
    /// True when the timeout killed the group.
    pub timed_out: bool,
    /// What confined the program (`landlock; writes staged; ...`).
    pub confinement: String,
    /// Orphans killed after the call (children that left the group).
    pub orphans_killed: usize,
    /// What became of its changes to the workspace.
    pub writes: Writes,
}

/// Where to find the trampoline: the `sandbox` binary.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The `sandbox` executable.
    pub trampoline: PathBuf,
    /// Limits for every child.
    pub limits: ChildLimits,
}

impl Launcher {
    /// The launcher of the running `sandbox` binary. Makes this process a
    /// child subreaper, so orphans of the programs it starts come back to
    /// it (and can be killed) instead of going to init.
    ///
    /// # Ambient Authority
    ///
    /// Finds the current executable and changes a process attribute.
    pub fn current_ambient() -> std::io::Result<Launcher> {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
        Ok(Launcher { trampoline: std::env::current_exe()?, limits: ChildLimits::default() })
    }
}

/// Runs a program through the trampoline; the whole group is killed at
/// `timeout` or when an output stream passes `cap` bytes. Each stream is
/// returned with up to [`LOOKAHEAD`] bytes past the cap: the caller must
/// cut it (after redacting).
///
/// # Ambient Authority
///
/// Starts a process. The caller has decided every part of `spawn`.
pub fn run_ambient(launcher: &Launcher, spawn: &Spawn, timeout: Duration, cap: u64) -> Result<Finished, String> {
    let base = tempdir_ambient().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let result = Private::create(&base)
        .map_err(|e| format!("cannot create a temporary directory: {e}"))
        .and_then(|private| run_in(launcher, spawn, timeout, cap, &private));
    remove_private(&base);
    result
}

/// The call's private directories, inside one of mode 0700: the program's
/// `TMPDIR` (it may write there) and the overlay's upper and work
/// directories (it may not: the host reads its changes from there).
struct Private {
    tmp: PathBuf,
    stage: PathBuf,
}

impl Private {
    fn create(base: &Path) -> std::io::Result<Private> {
        let (tmp, stage) = (base.join("tmp"), base.join("stage"));
        for dir in [&tmp, &stage, &stage.join("upper"), &stage.join("work")] {
            std::fs::create_dir(dir)?;
        }
        Ok(Private { tmp, stage })
    }
}

/// Removes the call's private directory. overlayfs leaves a directory of
/// mode 0 in its work directory: opened up first, so an account that is
/// not root can remove it too.
fn remove_private(base: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let inner = base.join("stage/work/work");
    if std::fs::symlink_metadata(&inner).is_ok_and(|m| m.is_dir()) {
        let _ = std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o700));
    }
    let _ = std::fs::remove_dir_all(base);
}

/// A private directory (random name, mode 0700) for the call.
fn tempdir_ambient() -> std::io::Result<PathBuf> {
    Ok(tempfile::Builder::new().prefix("sandbox-exec-").tempdir()?.keep())
}

fn run_in(
    launcher: &Launcher,
    spawn: &Spawn,
    timeout: Duration,
    cap: u64,
    private: &Private,
) -> Result<Finished, String> {
    let l = launcher.limits;
    let tmp = &private.tmp;
    let mut cmd = Command::new(&launcher.trampoline);
    cmd.arg(TRAMPOLINE)
        .arg("--cwd")
        .arg(&spawn.cwd)
        .arg("--workspace")
        .arg(&spawn.workspace)
        .arg("--write")
        .arg(&spawn.workspace)
        .arg("--write")
        .arg(tmp)
        .arg("--stage")
        .arg(&private.stage)
        .arg("--run")
        .arg(&spawn.path)
        .arg("--limits")
        .arg(format!(
            "{},{},{},{},{}",
            l.processes,
            l.file_size,
            l.cpu_seconds.min(timeout.as_secs() + 1),
            l.open_files,
            spawn.memory
        ));
    if spawn.allow_unstaged {
        cmd.arg("--unstaged-ok");
    }
    cmd.arg("--")
        .arg(&spawn.path)
        .args(&spawn.args)
        .env_clear()
        .envs(spawn.env.iter().map(|(k, v)| (k, v)))
        .env("TMPDIR", tmp)
        .current_dir("/")
        .process_group(0)
        .stdin(if spawn.stdin.is_empty() { Stdio::null() } else { Stdio::piped() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start the trampoline: {e}"))?;
    let pgid = rustix::process::Pid::from_child(&child);
    let kill_group = move || {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    };

    let (events, done) = mpsc::channel::<&'static str>();
    let capped = Arc::new(AtomicBool::new(false));
    let (collected, outputs) = mpsc::channel::<(usize, Vec<u8>)>();
    let reader = |which: usize, stream: Option<Box<dyn Read + Send>>| {
        let capped = capped.clone();
        let events = events.clone();
        let collected = collected.clone();
        std::thread::spawn(move || {
            let mut data = Vec::new();
            let Some(mut stream) = stream else {
                let _ = collected.send((which, data));
                return;
            };
            let mut buf = [0u8; 16 * 1024];
            let cap = usize::try_from(cap).unwrap_or(usize::MAX);
            let most = cap.saturating_add(LOOKAHEAD as usize);
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let room = most.saturating_sub(data.len());
                        data.extend_from_slice(&buf[..n.min(room)]);
                        // Past the cap: the group is killed, and what is
                        // already in the pipe is read on, up to the
                        // lookahead, for the caller's redaction.
                        if data.len() > cap && !capped.swap(true, Ordering::SeqCst) {
                            let _ = events.send("cap");
                        }
                        if n >= room {
                            break;
                        }
                    }
                }
            }
            let _ = collected.send((which, data));
        });
    };
    reader(0, child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    reader(1, child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    drop(collected);
    if let Some(mut stdin) = child.stdin.take() {
        let data = spawn.stdin.clone();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = events.send("exit");
        status
    });
    let mut timed_out = false;
    match done.recv_timeout(timeout) {
        Ok("exit") => {}
        Ok(_) => kill_group(),
        Err(_) => {
            timed_out = true;
            kill_group();
        }
    }
    let status = waiter.join().map_err(|_| "the waiting thread failed".to_owned())?.map_err(|e| e.to_string())?;
    // Whatever the program left behind goes too: its group, then every
    // orphan that came back to this subreaper. Only then can the output
    // pipes close (a descendant may hold them open).
    kill_group();
    let orphans_killed = sweep_orphans();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let until = Instant::now() + Duration::from_secs(2);
    for _ in 0..2 {
        match outputs.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok((0, data)) => stdout = data,
            Ok((_, data)) => stderr = data,
            // A pipe still held open by something that escaped: give up
            // on it rather than hang the run.
            Err(_) => break,
        }
    }
    let truncated = capped.load(Ordering::SeqCst);

    // The trampoline's report is the first line of stderr.
    let mut confinement = "unknown (the trampoline did not report)".to_owned();
    let mut staged = None;
    if let Some(rest) = stderr.strip_prefix(MARKER.as_bytes()) {
        let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let mut report = String::from_utf8_lossy(&rest[..end]).into_owned();
        stderr = rest.get(end + 1..).unwrap_or_default().to_vec();
        if let Some(why) = report.strip_prefix("error=") {
            return Err(why.to_owned());
        }
        if let Some((ns, after)) = report.strip_prefix("staged=").and_then(|r| r.split_once(' ')) {
            staged = Some(ns.parse::<u64>().map_err(|_| format!("the trampoline reported a bad namespace `{ns}`"))?);
            report = after.to_owned();
        }
        confinement = report.strip_prefix("confinement=").unwrap_or(&report).to_owned();
    }
    // The changes are read only when nothing can make more: every process
    // in the program's mount namespace is gone.
    let writes = match staged {
        None => Writes::Direct,
        Some(ns) => {
            if !namespace_emptied(ns) {
                return Err("a process of the program could not be stopped; none of its changes were applied".into());
            }
            let upper = private.stage.join("upper");
            match overlay::collect(&upper, &spawn.workspace, &spawn.guard) {
                Err(refused) => Writes::Refused(refused),
                Ok(changes) => Writes::Applied(overlay::apply(&upper, &spawn.workspace, &changes)?),
            }
        }
    };
    let killed = timed_out || truncated;
    Ok(Finished {
        exit_code: if killed { None } else { status.code() },
        stdout,
        stderr,
        truncated,
        timed_out,
        confinement,
        orphans_killed,
        writes,
    })
}

/// Kills every process still in the mount namespace `ns` (by its inode)
/// until none is left; false when some still are at [`SWEEP_BOUND`]. A
/// process that has exited has left its namespaces, even as a zombie.
fn namespace_emptied(ns: u64) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let start = Instant::now();
    loop {
        // Only this process's descendants: every process of the program
        // is one (orphans come back to this subreaper), and an inode of a
        // namespace that has gone may be reused by another.
        let table = process_table();
        let mut mine = vec![me];
        let mut i = 0;
        while i < mine.len() {
            let parent = mine[i];
            mine.extend(table.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
            i += 1;
        }
        let inside: Vec<i32> = mine[1..]
            .iter()
            .copied()
            .filter(|pid| std::fs::metadata(format!("/proc/{pid}/ns/mnt")).is_ok_and(|m| m.ino() == ns))
            .collect();
        if inside.is_empty() {
            return true;
        }
        if start.elapsed() > SWEEP_BOUND {
            return false;
        }
        for pid in inside.iter().filter_map(|p| rustix::process::Pid::from_raw(*p)) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        sweep_orphans();
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How long the sweep may take at most.
const SWEEP_BOUND: Duration = Duration::from_secs(10);

/// Kills every process reparented to this one (orphans of the programs it
/// ran) together with all their descendants, and reaps the orphans, until
/// none is left (or the bound passes).
fn sweep_orphans() -> usize {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let start = Instant::now();
    let mut killed = 0;
    let mut quiet_rounds = 0;
    while start.elapsed() < SWEEP_BOUND {
        let table = process_table();
        let orphans: Vec<i32> = table.iter().filter(|(_, ppid)| *ppid == me).map(|(pid, _)| *pid).collect();
        if orphans.is_empty() {
            quiet_rounds += 1;
            if quiet_rounds >= 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        quiet_rounds = 0;
        // The whole tree below each orphan at once.
        let mut doomed = orphans.clone();
        let mut i = 0;
        while i < doomed.len() {
            let parent = doomed[i];
            doomed.extend(table.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
            i += 1;
        }
        for pid in doomed.iter().filter_map(|p| rustix::process::Pid::from_raw(*p)) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        for pid in orphans.iter().filter_map(|p| rustix::process::Pid::from_raw(*p)) {
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
        }
        killed += doomed.len();
    }
    killed
}

/// Every process and its parent, from `/proc`.
fn process_table() -> Vec<(i32, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The command name may hold spaces and parentheses: parse after the last `)`.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse::<i32>().ok()) {
            out.push((pid, ppid));
        }
    }
    out
}

/// The trampoline: `sandbox __confine --cwd DIR --workspace DIR --write
/// DIR... --stage DIR --run PROGRAM --limits N,N,N,N,N [--unstaged-ok] --
/// PROGRAM ARGS...`. Lowers limits, stages, confines, reports, changes
/// directory and execs. Returns only on failure (the exit code).
///
/// # Ambient Authority
///
/// Replaces the current process with the program.
pub fn confine_ambient(args: &[OsString]) -> i32 {
    let fail = |why: String| -> i32 {
        let _ = writeln!(std::io::stderr(), "{MARKER}error={why}");
        127
    };
    let mut cwd = None;
    let mut workspace = None;
    let mut stage = None;
    let mut unstaged_ok = false;
    let mut writable = Vec::new();
    let mut runnable = Vec::new();
    let mut limits = None;
    let mut it = args.iter();
    let mut program = None;
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--cwd") => cwd = it.next().map(PathBuf::from),
            Some("--workspace") => workspace = it.next().map(PathBuf::from),
            Some("--stage") => stage = it.next().map(PathBuf::from),
            Some("--unstaged-ok") => unstaged_ok = true,
            Some("--write") => writable.extend(it.next().map(PathBuf::from)),
            Some("--run") => runnable.extend(it.next().map(PathBuf::from)),
            Some("--limits") => limits = it.next().and_then(|v| v.to_str()).map(str::to_owned),
            Some("--") => {
                program = it.next().cloned();
                break;
            }
            _ => return fail(format!("bad trampoline argument {a:?}")),
        }
    }
    let rest: Vec<OsString> = it.cloned().collect();
    let (Some(cwd), Some(workspace), Some(program), Some(limits)) = (cwd, workspace, program, limits) else {
        return fail("incomplete trampoline arguments".into());
    };
    let numbers: Vec<u64> = limits.split(',').filter_map(|n| n.parse().ok()).collect();
    let [nproc, fsize, cpu, nofile, memory] = numbers[..] else {
        return fail("bad limits".into());
    };
    use rustix::process::{Resource, Rlimit, setrlimit};
    for (res, v) in [
        (Resource::Nproc, nproc),
        (Resource::Fsize, fsize),
        (Resource::Cpu, cpu),
        (Resource::Nofile, nofile),
        (Resource::Core, 0),
    ] {
        if let Err(e) = setrlimit(res, Rlimit { current: Some(v), maximum: Some(v) }) {
            return fail(format!("cannot set resource limit {res:?}: {e}"));
        }
    }
    let mut report = Vec::new();
    let mut staged = None;
    if let Some(stage) = &stage {
        match enter_stage(&workspace, stage) {
            Ok(ns) => staged = Some(ns),
            Err(why) if unstaged_ok => {
                report.push(format!("writes not staged ({why}; [process] allow_unstaged_writes)"));
            }
            Err(why) => {
                return fail(format!(
                    "cannot stage the program's writes: {why}; without a private mount namespace a program could change files that must never change (git hooks, shell start-up files), so it is not run (set `[process] allow_unstaged_writes = true` to let programs write the workspace directly on this machine)"
                ));
            }
        }
    }
    match landlock(&writable, &runnable) {
        Ok(c) => report.insert(0, c),
        Err(e) => return fail(format!("cannot confine file access: {e}")),
    };
    if staged.is_some() {
        report.push("writes staged (overlay in a private mount namespace)".into());
        report.push("network namespace".into());
    }
    if let Err(e) = crate::confine_sys::no_new_privs().and_then(|()| crate::confine_sys::seccomp(&socket_filter())) {
        return fail(format!("cannot install the seccomp filter: {e}"));
    }
    report.push("seccomp (no socket)".into());
    if let Err(e) = std::env::set_current_dir(&cwd) {
        return fail(format!("cannot enter `{}`: {e}", cwd.display()));
    }
    // Last: below it, the trampoline itself might not have room to work.
    if let Err(e) = setrlimit(Resource::As, Rlimit { current: Some(memory), maximum: Some(memory) }) {
        return fail(format!("cannot set resource limit As: {e}"));
    }
    report.push(format!("address space {memory} bytes"));
    let staged = staged.map(|ns| format!("staged={ns} ")).unwrap_or_default();
    let _ = writeln!(std::io::stderr(), "{MARKER}{staged}confinement={}", report.join("; "));
    let e = Command::new(&program).args(&rest).exec();
    let _ = writeln!(std::io::stderr(), "sandbox: cannot execute `{}`: {e}", Path::new(&program).display());
    127
}

/// Puts this process in a private mount namespace and a network namespace
/// of its own (and a user namespace first when it is not root), and
/// mounts an overlay over `workspace` whose upper and work directories are
/// `stage/upper` and `stage/work`. Returns the mount namespace's inode,
/// or why it could not.
fn enter_stage(workspace: &Path, stage: &Path) -> Result<u64, String> {
    use crate::confine_sys::{mount, unshare};
    use std::os::unix::fs::MetadataExt;
    let flags = libc::CLONE_NEWNS | libc::CLONE_NEWNET;
    let (uid, gid) = (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw());
    let userns = match unshare(flags) {
        Ok(()) => false,
        Err(e) if uid == 0 => return Err(format!("cannot create a mount namespace: {e}")),
        Err(_) => {
            unshare(flags | libc::CLONE_NEWUSER).map_err(|e| format!("cannot create a user namespace: {e}"))?;
            // The same account inside as outside.
            let write = |file: &str, text: String| {
                std::fs::write(format!("/proc/self/{file}"), text).map_err(|e| format!("cannot write {file}: {e}"))
            };
            write("setgroups", "deny".into())?;
            write("uid_map", format!("{uid} {uid} 1"))?;
            write("gid_map", format!("{gid} {gid} 1"))?;
            true
        }
    };
    // Nothing mounted from here on reaches the host's namespace.
    mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(|e| format!("cannot make the mounts private: {e}"))?;
    // Each directory by descriptor, so no character of its name needs
    // escaping in the options.
    let open = |p: &Path| std::fs::File::open(p).map_err(|e| format!("cannot open `{}`: {e}", p.display()));
    let (lower, upper, work) = (open(workspace)?, open(&stage.join("upper"))?, open(&stage.join("work"))?);
    use std::os::fd::AsRawFd;
    let options = format!(
        "lowerdir=/proc/self/fd/{},upperdir=/proc/self/fd/{},workdir=/proc/self/fd/{},redirect_dir=nofollow,metacopy=off,index=off,xino=off{}",
        lower.as_raw_fd(),
        upper.as_raw_fd(),
        work.as_raw_fd(),
        if userns { ",userxattr" } else { "" }
    );
    let target = workspace.to_str().ok_or_else(|| format!("the workspace `{}` is not UTF-8", workspace.display()))?;
    mount(Some("overlay"), target, Some("overlay"), libc::MS_NOSUID | libc::MS_NODEV, Some(&options))
        .map_err(|e| format!("cannot mount the staging overlay: {e}"))?;
    drop((lower, upper, work));
    std::fs::metadata("/proc/self/ns/mnt").map(|m| m.ino()).map_err(|e| format!("cannot read the mount namespace: {e}"))
}

/// The seccomp filter of every program: `socket()` (any address family)
/// and `io_uring_setup` fail with EACCES; system calls of another
/// architecture's ABI (x32, i386) kill the process; everything else is
/// allowed. Without `socket()` a program can neither send UDP nor connect
/// to a Unix socket anywhere; `socketpair()` still gives it the connected
/// pairs that programs use among their own processes.
fn socket_filter() -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
    let op = |code: u16, k: u32, jt: u8, jf: u8| libc::sock_filter { code, jt, jf, k };
    let deny = libc::SECCOMP_RET_ERRNO | libc::EACCES as u32;
    let refused = [libc::SYS_socket as u32, libc::SYS_io_uring_setup as u32];
    // seccomp_data: `nr` at offset 0, `arch` at 4.
    let mut f = vec![op(LD_W_ABS, 4, 0, 0), op(JEQ_K, ARCH, 1, 0), op(RET_K, libc::SECCOMP_RET_KILL_PROCESS, 0, 0)];
    f.push(op(LD_W_ABS, 0, 0, 0));
    // x32 system calls (numbers with bit 30 set) on x86_64.
    let x32 = cfg!(target_arch = "x86_64");
    if x32 {
        f.push(op(JGE_K, 0x4000_0000, 1 + refused.len() as u8, 0));
    }
    for (i, nr) in refused.iter().enumerate() {
        f.push(op(JEQ_K, *nr, (refused.len() - i) as u8, 0));
    }
    f.push(op(RET_K, libc::SECCOMP_RET_ALLOW, 0, 0));
    f.push(op(RET_K, deny, 0, 0));
    f
}

/// Restricts the process: files (read the system, read and write
/// `writable`, run `runnable`), no TCP at all (so commands cannot go around
/// the `[http]` allow-list), and no signals or abstract sockets to
/// processes outside its own domain. Returns what applied.
fn landlock(writable: &[PathBuf], runnable: &[PathBuf]) -> Result<String, String> {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
        RulesetStatus, Scope, path_beneath_rules,
    };
    let abi = ABI::V6;
    let existing =
        |paths: &[&str]| paths.iter().copied().filter(|p| Path::new(p).exists()).map(str::to_owned).collect::<Vec<_>>();
    // The program itself, and what it really is when it is a symlink.
    let mut programs: Vec<PathBuf> = runnable.to_vec();
    programs.extend(runnable.iter().filter_map(|p| std::fs::canonicalize(p).ok()));
    let read = AccessFs::from_read(abi);
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(existing(SYSTEM_READ), read)))
        .and_then(|r| r.add_rules(path_beneath_rules(existing(ETC_READ), read)))
        .and_then(|r| r.add_rules(path_beneath_rules(existing(DEVICES), read | AccessFs::WriteFile)))
        .and_then(|r| r.add_rules(path_beneath_rules(&programs, AccessFs::ReadFile | AccessFs::Execute)))
        .and_then(|r| r.add_rules(path_beneath_rules(writable, AccessFs::from_all(abi))))
        .and_then(|r| r.restrict_self())
        .map_err(|e| e.to_string())?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => "landlock".to_owned(),
        RulesetStatus::PartiallyEnforced => "landlock (partial: an older kernel)".to_owned(),
        RulesetStatus::NotEnforced => "none (the kernel has no Landlock)".to_owned(),
    })
}
