//! THREATS.md, Commands, "make the effect impossible below the program":
//! an allowed program (a helper script, or a real program such as `cp` or
//! `git`) tries to change files that run code later (`.git/hooks/*`,
//! `.git/config`, shell start-up files, editor task files), to send UDP,
//! to connect to a Unix socket outside the workspace, and to allocate far
//! beyond a memory bound. Argument rules allow all of it (`args =
//! ["*"]`): only the kernel confinement under the program stands in the
//! way.
//!
//! The program runs on a staged copy of the workspace (an overlay in a
//! private mount namespace); after it has exited its changes are applied
//! only when none touches a protected path, else none is, and the call is
//! `denied`. Each test runs the real binary on the `probe` guest and checks
//! the typed error, the audit events and the workspace on disk.

// `allow-unwrap-in-tests` covers #[test] functions only, not the helpers.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// The attacking program: does what its first argument says, after
/// appending that word to `ran.log` in its working directory (the
/// workspace root), so "none of its changes were applied" can be seen.
const ATTACKER: &str = r##"#!/usr/bin/python3 -IS
# Test helper of runtime/tests/process_confine.rs.
import errno, os, resource, shutil, socket, sys

def err(e):
    return errno.errorcode.get(e.errno, str(e.errno))

mode, args = sys.argv[1], sys.argv[2:]
with open("ran.log", "a") as f:
    f.write(mode + "\n")

if mode == "write":
    # write PATH...: each file made executable, its folders created.
    for p in args:
        d = os.path.dirname(p)
        if d:
            os.makedirs(d, exist_ok=True)
        with open(p, "w") as f:
            f.write("#!/bin/sh\necho pwned\n")
        os.chmod(p, 0o755)
    print("wrote", len(args))
elif mode == "remove":
    for p in args:
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.remove(p)
    print("removed", len(args))
elif mode == "replace-with-file":
    shutil.rmtree(args[0])
    with open(args[0], "w") as f:
        f.write("gitdir: /elsewhere\n")
    print("replaced")
elif mode == "link":
    os.link(args[0], args[1])
    print("linked")
elif mode == "fifo":
    os.mkfifo(args[0])
    print("fifo")
elif mode == "udp":
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"escaped", ("127.0.0.1", int(args[0])))
        print("udp-sent")
    except OSError as e:
        print("udp-error", err(e))
elif mode == "unix":
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(args[0])
        s.sendall(b"escaped")
        print("unix-connected")
    except OSError as e:
        print("unix-error", err(e))
elif mode == "pair":
    a, b = socket.socketpair()
    a.sendall(b"pair")
    print("pair-ok", b.recv(10).decode())
elif mode == "alloc":
    try:
        block = bytearray(int(args[0]) << 20)
        print("alloc-ok", len(block) >> 20)
    except MemoryError:
        print("alloc-error")
    print("maxrss-kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
elif mode == "fsops":
    os.makedirs("new/dir")
    with open("new/dir/f.txt", "w") as f:
        f.write("new\n")
    os.remove("gone.txt")
    shutil.rmtree("olddir")
    os.rename("a.txt", "b.txt")
    os.chmod("script.sh", 0o755)
    os.symlink("b.txt", "link")
    with open("kept.txt", "w") as f:
        f.write("kept\n")
    shutil.rmtree("d2")
    with open("d2", "w") as f:
        f.write("was a folder\n")
    os.remove("f3")
    os.mkdir("f3")
    with open("f3/inner.txt", "w") as f:
        f.write("inner\n")
    shutil.rmtree("opq")
    os.mkdir("opq")
    with open("opq/fresh.txt", "w") as f:
        f.write("fresh\n")
    srv = socket.socketpair()
    print("fsops-done")
else:
    print("unknown mode", mode)
    sys.exit(2)
"##;

/// A fixture with the attacker installed as `ws/.bin/attacker`, allowed
/// with any arguments and no approval, plus `more` in the manifest.
fn fixture(more: &str) -> Fixture {
    let f = Fixture::new("");
    let at = f.ws(".bin/attacker");
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::fs::write(&at, ATTACKER).unwrap();
    std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o755)).unwrap();
    let manifest = format!(
        "version = 1\n{more}\n[[process.allow]]\nprogram = \"attacker\"\npath = \"{}\"\napproval = \"never\"\nargs = [\"*\"]\n\n[workspace]\nroot = \"ws\"\n\n[audit]\npath = \"audit.jsonl\"\n",
        at.display()
    );
    std::fs::write(f.manifest(), manifest).unwrap();
    f
}

/// One `run` op as the tool saw it and as the log recorded it.
#[derive(Debug)]
struct Done {
    /// What `probe` printed after the label.
    detail: String,
    result: Value,
}

impl Done {
    /// The program's stdout; fails unless the call finished with exit 0.
    fn stdout(&self) -> String {
        let rest =
            self.detail.strip_prefix("ok exit 0 stdout ").unwrap_or_else(|| panic!("not a clean exit: {self:?}"));
        let end = rest.rfind(" stderr ").unwrap();
        serde_json::from_str::<String>(&rest[..end]).unwrap_or_else(|_| rest[..end].trim_matches('"').to_owned())
    }

    /// Asserts `denied`, naming `rule` and `path`, with the result event
    /// saying the same.
    fn denied_naming(&self, rule: &str, path: &str) {
        assert!(self.detail.starts_with("denied: "), "expected denied: {self:?}");
        for word in [rule, &format!("`{path}`"), "none of its changes were applied"] {
            assert!(self.detail.contains(word), "`{word}` missing: {self:?}");
        }
        assert_eq!(self.result["outcome"], "denied", "{self:?}");
        let reason = self.result["reason"].as_str().unwrap_or("");
        assert!(reason.contains(rule) && reason.contains(path), "{self:?}");
    }
}

/// Runs `probe` with one `run attacker ...` op per entry of `ops` and
/// pairs each with its line and its `result` event.
fn runs_with(f: &Fixture, cmd: Option<Command>, ops: &[Vec<&str>]) -> (Run, Vec<Done>) {
    let mut args = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            args.push("+");
        }
        args.extend(["run", "attacker"]);
        args.extend(op.iter().copied());
    }
    let r = match cmd {
        Some(mut c) => Run::from_output(c.output().unwrap()),
        None => f.run("probe", &args),
    };
    let mut ev = f.events();
    let start = ev.iter().rposition(|e| e["kind"] == "task-start").unwrap_or_else(|| panic!("no task-start\n{r:?}"));
    ev.drain(..start);
    let calls: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "call" && e["capability"] == "process.run").collect();
    assert_eq!(calls.len(), ops.len(), "one process.run call per op\n{r:?}");
    let done = ops
        .iter()
        .zip(calls)
        .map(|(op, call)| {
            let mut words = vec!["run", "attacker"];
            words.extend(op.iter().copied());
            Done { detail: r.line(&label(&words)).to_owned(), result: result_of(&ev, call).clone() }
        })
        .collect();
    (r, done)
}

fn runs(f: &Fixture, ops: &[Vec<&str>]) -> Vec<Done> {
    let (r, done) = runs_with(f, None, ops);
    assert_eq!(r.code, 0, "{r:?}");
    done
}

/// A git repository in the workspace, made by the test (not the tool).
fn git_repo(f: &Fixture) {
    let git = |args: &[&str]| {
        let out = Command::new("/usr/bin/git").args(args).current_dir(f.ws("")).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["config", "user.name", "Tester"]);
    git(&["config", "user.email", "tester@example.invalid"]);
}

#[test]
fn a_program_can_never_change_files_that_run_code_later() {
    let f = fixture("");
    git_repo(&f);
    f.file(".bashrc", "# the developer's own\n");
    let config = std::fs::read_to_string(f.ws(".git/config")).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["write", ".git/hooks/pre-commit"], ".git/hooks/pre-commit"),
        (&["write", ".git/config"], ".git/config"),
        (&["write", "notes.txt", ".git/info/attributes"], ".git/info/attributes"),
        (&["write", ".bashrc"], ".bashrc"),
        (&["write", "home/.zshrc"], "home/.zshrc"),
        (&["write", ".profile"], ".profile"),
        (&["write", ".vscode/tasks.json"], ".vscode"),
        (&["write", ".envrc"], ".envrc"),
        (&["write", ".gitmodules"], ".gitmodules"),
        (&["write", ".husky/pre-commit"], ".husky"),
        (&["write", ".config/fish/config.fish"], ".config/fish"),
        (&["write", "vendor/lib/.git/hooks/post-checkout"], "vendor/lib/.git"),
        (&["write", ".GIT/hooks/pre-push"], ".GIT"),
        (&["remove", ".git/hooks"], ".git/hooks"),
        (&["remove", ".git"], ".git"),
        (&["replace-with-file", ".git"], ".git"),
    ];
    let ops: Vec<Vec<&str>> = cases.iter().map(|(a, _)| a.to_vec()).collect();
    let done = runs(&f, &ops);
    for ((args, path), d) in cases.iter().zip(&done) {
        assert!(d.detail.starts_with("denied: "), "{args:?} was not refused: {d:?}");
        assert!(d.detail.contains(&format!("`{path}")), "{args:?}: the refusal names no `{path}`: {d:?}");
        assert!(d.detail.contains("builtin:program-writes"), "{args:?}: {d:?}");
    }
    done[0].denied_naming("builtin:program-writes", ".git/hooks/pre-commit");
    // Nothing of any of those runs reached the workspace, not even the
    // harmless files written beside (the log line, `notes.txt`).
    assert!(!f.ws("ran.log").exists(), "a refused run's changes were applied");
    assert!(!f.ws("notes.txt").exists());
    for gone in [".git/hooks/pre-commit", ".git/info/attributes", "home", ".vscode", ".envrc", ".husky", ".config"] {
        assert!(!f.ws(gone).exists(), "{gone} was written");
    }
    assert_eq!(f.read(".bashrc").as_deref(), Some("# the developer's own\n"));
    assert_eq!(std::fs::read_to_string(f.ws(".git/config")).unwrap(), config);
    assert!(f.ws(".git/hooks").is_dir() && f.ws(".git/HEAD").is_file());
    assert_eq!(f.verify().code, 0);
}

#[test]
fn a_real_program_cannot_plant_a_hook_either() {
    // `cp` with any arguments: the argv rules see nothing wrong in
    // `cp payload .git/hooks/pre-commit`.
    let f = Fixture::new(
        "\n[[process.allow]]\nprogram = \"cp\"\npath = \"/usr/bin/cp\"\napproval = \"never\"\nargs = [\"*\"]\n",
    );
    git_repo(&f);
    f.file("payload", "#!/bin/sh\ntouch /tmp/pwned\n");
    let ops = [
        vec!["run", "cp", "payload", ".git/hooks/pre-commit"],
        vec!["run", "cp", "payload", ".git/config"],
        vec!["run", "cp", "payload", ".bashrc"],
        vec!["run", "cp", "payload", "copy.txt"],
    ];
    let mut args = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            args.push("+");
        }
        args.extend(op.iter().copied());
    }
    let r = f.run("probe", &args);
    assert_eq!(r.code, 0, "{r:?}");
    for (op, path) in ops.iter().zip([".git/hooks/pre-commit", ".git/config", ".bashrc"]) {
        let line = r.line(&label(op));
        assert!(line.starts_with("denied: ") && line.contains(&format!("`{path}`")), "{op:?}: {line}");
    }
    assert!(!f.ws(".git/hooks/pre-commit").exists());
    assert!(!f.ws(".bashrc").exists());
    assert!(!std::fs::read_to_string(f.ws(".git/config")).unwrap().contains("pwned"));
    // An ordinary copy still lands.
    assert!(r.line(&label(&ops[3])).starts_with("ok exit 0"), "{r:?}");
    assert_eq!(f.read("copy.txt").as_deref(), Some("#!/bin/sh\ntouch /tmp/pwned\n"));
    // The audit event says what confined it.
    let results: Vec<Value> = f.events().into_iter().filter(|e| e["kind"] == "result").collect();
    let ok = results.iter().find(|e| e["outcome"] == "ok").unwrap();
    let confinement = ok["confinement"].as_str().unwrap();
    for part in ["landlock", "writes staged", "network namespace", "seccomp", "address space"] {
        assert!(confinement.contains(part), "{part} missing from {confinement:?}");
    }
}

#[test]
fn git_itself_still_commits_through_the_staged_copy() {
    let f = Fixture::new(
        "\n[[process.allow]]\nprogram = \"git\"\npath = \"/usr/bin/git\"\napproval = \"never\"\nargs = [\"add <path>\", \"commit -q -m <arg>\"]\n",
    );
    git_repo(&f);
    f.file("hello.txt", "hello\n");
    let r = f.run("probe", &["run", "git", "add", "hello.txt", "+", "run", "git", "commit", "-q", "-m", "first"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.line(&label(&["run", "git", "commit", "-q", "-m", "first"])).starts_with("ok exit 0"), "{r:?}");
    let log = Command::new("/usr/bin/git")
        .args(["log", "--format=%s", "--name-only"])
        .current_dir(f.ws(""))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&log.stdout), "first\n\nhello.txt\n");
}

#[test]
fn every_kind_of_change_is_applied_faithfully() {
    let f = fixture("");
    f.file("gone.txt", "gone\n")
        .file("olddir/x/y.txt", "y\n")
        .file("a.txt", "a\n")
        .file("script.sh", "#!/bin/sh\n")
        .file("kept.txt", "kept\n")
        .file("d2/inside.txt", "inside\n")
        .file("f3", "was a file\n")
        .file("opq/old.txt", "old\n");
    let done = runs(&f, &[vec!["fsops"]]);
    assert_eq!(done[0].stdout(), "fsops-done\n");
    assert_eq!(f.read("new/dir/f.txt").as_deref(), Some("new\n"));
    assert!(!f.ws("gone.txt").exists() && !f.ws("olddir").exists() && !f.ws("a.txt").exists());
    assert_eq!(f.read("b.txt").as_deref(), Some("a\n"));
    let mode = std::fs::metadata(f.ws("script.sh")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(std::fs::read_link(f.ws("link")).unwrap(), Path::new("b.txt"));
    assert_eq!(f.read("kept.txt").as_deref(), Some("kept\n"));
    assert_eq!(f.read("d2").as_deref(), Some("was a folder\n"));
    assert_eq!(f.read("f3/inner.txt").as_deref(), Some("inner\n"));
    assert_eq!(f.read("opq/fresh.txt").as_deref(), Some("fresh\n"));
    assert!(!f.ws("opq/old.txt").exists(), "a folder removed and made again kept its old contents");
    assert_eq!(f.read("ran.log").as_deref(), Some("fsops\n"));
}

#[test]
fn hard_links_and_fifos_are_never_applied() {
    let f = fixture("");
    f.file("target.txt", "t\n");
    let done = runs(&f, &[vec!["link", "target.txt", "alias.txt"], vec!["fifo", "pipe"]]);
    done[0].denied_naming("builtin:program-writes", "alias.txt");
    assert!(done[0].detail.contains("hard link"), "{:?}", done[0]);
    done[1].denied_naming("builtin:program-writes", "pipe");
    assert!(!f.ws("alias.txt").exists() && !f.ws("pipe").exists() && !f.ws("ran.log").exists());
}

#[test]
fn a_program_cannot_send_udp_or_reach_a_unix_socket_outside_the_workspace() {
    let f = fixture("");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let port = udp.local_addr().unwrap().port().to_string();
    let sock = f.path("outside/agent.sock");
    let unix = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    unix.set_nonblocking(true).unwrap();
    let sock = sock.display().to_string();
    let done = runs(&f, &[vec!["udp", &port], vec!["unix", &sock], vec!["pair"]]);
    assert_eq!(done[0].stdout(), "udp-error EACCES\n");
    assert_eq!(done[1].stdout(), "unix-error EACCES\n");
    // Connected pairs among its own processes still work.
    assert_eq!(done[2].stdout(), "pair-ok pair\n");
    // The run is over: anything sent would be waiting here.
    let mut buf = [0u8; 64];
    let got = udp.recv_from(&mut buf);
    assert!(got.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock), "a datagram arrived: {got:?}");
    let conn = unix.accept();
    assert!(conn.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock), "a connection arrived: {conn:?}");
}

#[test]
fn a_program_cannot_allocate_beyond_its_memory_bound() {
    // 128 MiB of address space; the program asks for 2 GiB and touches it.
    let f = fixture("[process]\nmemory = \"128 MiB\"\n");
    let done = runs(&f, &[vec!["alloc", "2048"], vec!["alloc", "16"]]);
    let out = done[0].stdout();
    assert!(out.starts_with("alloc-error\n"), "{out}");
    let rss_kib: u64 = out.lines().nth(1).and_then(|l| l.strip_prefix("maxrss-kib ")).unwrap().parse().unwrap();
    // Peak RSS stays within the bound (RSS can never exceed the address
    // space): the measurement, for the record.
    eprintln!("peak RSS under a 2 GiB allocation with memory = 128 MiB: {rss_kib} KiB");
    assert!(rss_kib * 1024 <= 128 << 20, "peak RSS {rss_kib} KiB above the 128 MiB bound");
    // Within the bound it works.
    assert!(done[1].stdout().starts_with("alloc-ok 16\n"), "{:?}", done[1]);
    let result = &done[0].result;
    assert!(result["confinement"].as_str().unwrap().contains(&format!("address space {}", 128u64 << 20)), "{result}");
}

/// A wrapper that starts `sandbox` with `unshare` refused (EPERM) by a
/// seccomp filter: a machine where programs cannot get a mount namespace.
const NO_NAMESPACES: &str = r#"
import ctypes, os, platform, struct, sys
SYS_UNSHARE = {"x86_64": 272, "aarch64": 97}[platform.machine()]
code = [
    (0x20, 0, 0, 0),                     # load the syscall number
    (0x15, 0, 1, SYS_UNSHARE),           # unshare?
    (0x06, 0, 0, 0x00050000 | 1),        #   fail with EPERM
    (0x06, 0, 0, 0x7FFF0000),            # allow the rest
]
raw = b"".join(struct.pack("HBBI", *c) for c in code)
buf = ctypes.create_string_buffer(raw)
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
prog = Prog(len(code), ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0   # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0, ctypes.get_errno()   # PR_SET_SECCOMP, FILTER
os.execv(sys.argv[1], sys.argv[1:])
"#;

fn without_namespaces(f: &Fixture, args: &[&str]) -> Command {
    let inner = f.command("probe", &[], args);
    let wrapper = f.path("no-namespaces.py");
    std::fs::write(&wrapper, NO_NAMESPACES).unwrap();
    let mut c = Command::new("/usr/bin/python3");
    c.arg(&wrapper).arg(inner.get_program()).args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

#[test]
fn without_namespaces_programs_are_refused_unless_the_manifest_opts_in() {
    let f = fixture("");
    let (r, done) =
        runs_with(&f, Some(without_namespaces(&f, &["run", "attacker", "write", "x.txt"])), &[vec!["write", "x.txt"]]);
    assert_eq!(r.code, 0, "{r:?}");
    let d = &done[0];
    assert!(d.detail.starts_with("failed: "), "{d:?}");
    for word in ["cannot create a mount namespace", "allow_unstaged_writes = true"] {
        assert!(d.detail.contains(word), "`{word}` missing: {d:?}");
    }
    assert_eq!(d.result["outcome"], "failed");
    assert!(!f.ws("ran.log").exists() && !f.ws("x.txt").exists(), "the program ran");

    // Opted in: it runs, writing the workspace directly, and says so.
    let f = fixture("[process]\nallow_unstaged_writes = true\n");
    let (r, done) =
        runs_with(&f, Some(without_namespaces(&f, &["run", "attacker", "write", "x.txt"])), &[vec!["write", "x.txt"]]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(done[0].stdout(), "wrote 1\n");
    assert!(f.ws("x.txt").exists());
    let confinement = done[0].result["confinement"].as_str().unwrap();
    assert!(confinement.contains("writes not staged"), "{confinement}");
    assert!(!confinement.contains("network namespace"), "{confinement}");
    assert!(confinement.contains("seccomp"), "{confinement}");
}
