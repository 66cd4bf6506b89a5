//! The compile cache (runtime/src/cache.rs) on the real binary: a second
//! run loads the component from the cache; a corrupt, foreign or
//! misplaced entry is detected, deleted and rebuilt, and the run is still
//! correct; the directory and files are private to the account.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use hmac::Mac;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const MANIFEST: &str = r#"
[fs]
read = ["src/**"]
"#;

/// A fixture with `src/a.txt` and its own cache directory (not created).
struct Cached {
    f: Fixture,
    cache: PathBuf,
}

impl Cached {
    fn new() -> Cached {
        let f = Fixture::new(MANIFEST);
        f.file("src/a.txt", "alpha\n");
        let cache = f.path("cache");
        Cached { f, cache }
    }

    fn with_cache(&self, mut c: Command) -> Command {
        c.env("SANDBOX_CACHE_DIR", &self.cache).env("SANDBOX_LOG", "sandbox=debug");
        c
    }

    /// `probe read src/a.txt`; checks the run is correct and returns it.
    fn run(&self) -> Run {
        let mut cmd = self.with_cache(self.f.command("probe", &[], &["read", "src/a.txt"]));
        let r = Run::from_output(cmd.output().unwrap());
        assert_eq!(r.code, 0, "{r:?}");
        assert_eq!(r.line(&label(&["read", "src/a.txt"])), r#"ok 6 bytes "alpha\n""#, "{r:?}");
        r
    }

    /// `sandbox compile GUEST`: the cache key it prints.
    fn compile(&self, guest_name: &str) -> String {
        let mut c = sandbox();
        c.arg("compile").arg(guest(guest_name));
        let r = Run::from_output(self.with_cache(c).output().unwrap());
        assert_eq!(r.code, 0, "{r:?}");
        let key = r.stdout.trim().to_owned();
        assert_eq!(key.len(), 64, "{r:?}");
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{r:?}");
        key
    }

    fn entry(&self, key: &str) -> PathBuf {
        self.cache.join(format!("{key}.cwasm"))
    }
}

fn hit(r: &Run) -> bool {
    r.stderr.contains("compile cache: hit")
}

fn compiled(r: &Run) -> bool {
    r.stderr.contains("compile cache: compiled and stored")
}

fn inode(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

/// The HMAC an entry named `key` holding `artifact` must carry under the
/// cache's key file (the layout documented in cache.rs).
fn seal(cache: &Path, key: &str, artifact: &[u8]) -> Vec<u8> {
    let secret = std::fs::read(cache.join("key")).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
    mac.update(key.as_bytes());
    mac.update(artifact);
    let mut out = b"sbxcwsm1".to_vec();
    out.extend_from_slice(&mac.finalize().into_bytes());
    out.extend_from_slice(artifact);
    out
}

#[test]
fn second_run_hits_the_cache() {
    let c = Cached::new();
    let first = c.run();
    assert!(compiled(&first) && !hit(&first), "{first:?}");
    // `sandbox compile` names the entry the run stored (and finds it there).
    let key = c.compile("probe");
    let entry = c.entry(&key);
    assert!(entry.is_file());
    let before = inode(&entry);
    let second = c.run();
    assert!(hit(&second) && !compiled(&second), "{second:?}");
    // Loaded, not rewritten.
    assert_eq!(inode(&entry), before);
    // Both runs are on record alike, and the log verifies.
    let starts = c.f.events().into_iter().filter(|e| e["kind"] == "task-start").count();
    assert_eq!(starts, 2);
    assert_eq!(c.f.verify().code, 0);
}

#[test]
fn compile_fills_the_cache_ahead_of_the_run() {
    let c = Cached::new();
    let key = c.compile("probe");
    assert!(c.entry(&key).is_file());
    // Compiling again finds the entry.
    assert_eq!(c.compile("probe"), key);
    assert!(hit(&c.run()));
    // Another component has another key; several at once print one each.
    let mut cmd = sandbox();
    cmd.arg("compile").arg(guest("probe")).arg(guest("hog"));
    let r = Run::from_output(c.with_cache(cmd).output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    let keys: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(keys.len(), 2, "{r:?}");
    assert_eq!(keys[0], key);
    assert_ne!(keys[1], key);
}

#[test]
fn corrupted_entries_are_detected_and_rebuilt() {
    let c = Cached::new();
    let key = c.compile("probe");
    let entry = c.entry(&key);
    let good = std::fs::read(&entry).unwrap();
    let corruptions: Vec<(&str, Vec<u8>)> = vec![
        ("a flipped byte in the code", {
            let mut b = good.clone();
            let i = b.len() / 2;
            b[i] ^= 0x5a;
            b
        }),
        ("a flipped byte in the MAC", {
            let mut b = good.clone();
            b[12] ^= 1;
            b
        }),
        ("a truncated entry", good[..good.len() / 3].to_vec()),
        ("an empty file", Vec::new()),
        ("a bare artifact without header", good[40..].to_vec()),
    ];
    for (what, bytes) in corruptions {
        std::fs::write(&entry, &bytes).unwrap();
        let r = c.run();
        assert!(!hit(&r) && compiled(&r), "{what}: {r:?}");
        assert!(r.stderr.contains("compile cache: discarding"), "{what}: {r:?}");
        // Rebuilt: the entry is whole again, and the next run uses it.
        assert_eq!(std::fs::read(&entry).unwrap(), good, "{what}");
        assert!(hit(&c.run()), "{what}");
    }
    assert_eq!(c.f.verify().code, 0);
}

#[test]
fn entries_from_another_engine_or_component_are_not_used() {
    let c = Cached::new();
    let key = c.compile("probe");
    let entry = c.entry(&key);
    let good = std::fs::read(&entry).unwrap();

    // Precompiled by an engine configured differently (no epoch
    // interruption, so no time limit), sealed correctly under the right
    // name: wasmtime itself refuses it, and the run compiles anew.
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    let other = wasmtime::Engine::new(&config).unwrap();
    let foreign = other.precompile_component(&std::fs::read(guest("probe")).unwrap()).unwrap();
    std::fs::write(&entry, seal(&c.cache, &key, &foreign)).unwrap();
    let r = c.run();
    assert!(r.stderr.contains("refused by wasmtime"), "{r:?}");
    assert!(compiled(&r), "{r:?}");
    assert_eq!(std::fs::read(&entry).unwrap(), good);

    // A valid entry of another component, copied under this one's name:
    // the MAC binds an entry to its name.
    let hog_key = c.compile("hog");
    std::fs::copy(c.entry(&hog_key), &entry).unwrap();
    let r = c.run();
    assert!(r.stderr.contains("MAC does not match"), "{r:?}");
    assert!(compiled(&r), "{r:?}");

    // Sealed with another cache's key: not made here.
    let elsewhere = Cached::new();
    elsewhere.compile("probe");
    std::fs::copy(elsewhere.entry(&key), &entry).unwrap();
    let r = c.run();
    assert!(r.stderr.contains("MAC does not match"), "{r:?}");
    assert!(compiled(&r), "{r:?}");
    assert!(hit(&c.run()));
}

#[test]
fn cache_files_are_private() {
    let c = Cached::new();
    let key = c.compile("probe");
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&c.cache), 0o700);
    assert_eq!(mode(&c.cache.join("key")), 0o600);
    assert_eq!(mode(&c.entry(&key)), 0o600);

    // A directory others can enter is closed to them.
    std::fs::set_permissions(&c.cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(hit(&c.run()));
    assert_eq!(mode(&c.cache), 0o700);

    // An entry others may read or write is not trusted.
    std::fs::set_permissions(c.entry(&key), std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = c.run();
    assert!(r.stderr.contains("gives others access") && compiled(&r), "{r:?}");
    assert_eq!(mode(&c.entry(&key)), 0o600);

    // A symlink in place of an entry is not followed.
    let target = c.f.path("elsewhere.cwasm");
    std::fs::rename(c.entry(&key), &target).unwrap();
    std::os::unix::fs::symlink(&target, c.entry(&key)).unwrap();
    let r = c.run();
    assert!(r.stderr.contains("a symbolic link") && compiled(&r), "{r:?}");
    assert!(!std::fs::symlink_metadata(c.entry(&key)).unwrap().file_type().is_symlink());

    // A key file others can read is replaced: every entry sealed with it
    // is rebuilt.
    std::fs::set_permissions(c.cache.join("key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let old_key = std::fs::read(c.cache.join("key")).unwrap();
    let r = c.run();
    assert!(r.stderr.contains("replacing the key") && compiled(&r), "{r:?}");
    assert_ne!(std::fs::read(c.cache.join("key")).unwrap(), old_key);
    assert_eq!(mode(&c.cache.join("key")), 0o600);
}

#[test]
fn files_owned_by_another_account_are_not_trusted() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: changing a file's owner needs root");
        return;
    }
    let c = Cached::new();
    let key = c.compile("probe");
    let stranger = Some(rustix::process::Uid::from_raw(4321));
    rustix::fs::chown(c.entry(&key), stranger, None).unwrap();
    let r = c.run();
    assert!(r.stderr.contains("owned by uid 4321") && compiled(&r), "{r:?}");
    assert_eq!(std::fs::metadata(c.entry(&key)).unwrap().uid(), 0);

    // A directory owned by someone else is not used at all: the run
    // compiles without it, and `sandbox compile` refuses.
    rustix::fs::chown(&c.cache, stranger, None).unwrap();
    let r = c.run();
    assert!(r.stderr.contains("cannot be used") && !hit(&r) && !compiled(&r), "{r:?}");
    let mut cmd = sandbox();
    cmd.arg("compile").arg(guest("probe"));
    let r = Run::from_output(c.with_cache(cmd).output().unwrap());
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("owned by uid 4321"), "{r:?}");
}

#[test]
fn a_cache_inside_the_workspace_is_refused() {
    let c = Cached::new();
    let mut cmd = c.f.command("probe", &[], &["read", "src/a.txt"]);
    cmd.env("SANDBOX_CACHE_DIR", c.f.ws(".cache/sandbox"));
    let r = Run::from_output(cmd.output().unwrap());
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains("lies inside the workspace"), "{r:?}");
    // Nothing was created there, and the refusal is on record.
    assert!(!c.f.ws(".cache").exists());
    let end = c.f.events().pop().unwrap();
    assert_eq!(end["status"], "refused", "{end}");
}

#[test]
fn compile_rejects_bad_input_with_one_line() {
    let c = Cached::new();
    let text = c.f.path("not.wasm");
    std::fs::write(&text, "hello").unwrap();
    // A core module (version 1, layer 0), not a component.
    let core = c.f.path("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let dir_as_cache = c.f.path("a-file");
    std::fs::write(&dir_as_cache, "").unwrap();
    let cases: Vec<(Vec<PathBuf>, &Path, &str)> = vec![
        (vec![], &c.cache, "required"),
        (vec![c.f.path("missing.wasm")], &c.cache, "no such file"),
        (vec![text.clone()], &c.cache, "not a WebAssembly file"),
        (vec![core.clone()], &c.cache, "a core WebAssembly module"),
        (vec![guest("probe")], &dir_as_cache, "compile cache"),
    ];
    for (args, cache, expect) in cases {
        let mut cmd = sandbox();
        cmd.arg("compile").args(&args).env("SANDBOX_CACHE_DIR", cache);
        let r = Run::from_output(cmd.output().unwrap());
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {r:?}");
        assert!(r.stderr.contains(expect), "{args:?}: {r:?}");
        assert!(r.stdout.is_empty(), "{args:?}: {r:?}");
    }
}
