//! THREATS.md, Audit log: signed checkpoints. The real `sandbox` binary on
//! the `probe` guest, with a key from `sandbox audit keygen`, writes a
//! checkpoint at the end of every task and whenever a sync crosses a
//! multiple of `checkpoint_every` events; `sandbox audit verify
//! --public-key` then finds a log cut short, a log rewritten and re-chained
//! (which the plain chain accepts), checkpoints from another key and an
//! edited checkpoint line. A key that cannot be used refuses the run before
//! the tool runs; a checkpoint that cannot be written stops it (exit 126).

#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Reads and auto-approved writes under `out/`; checkpoints every 3 events,
/// signed with `audit.key` beside the manifest.
const MANIFEST: &str = r#"
name = "checkpoint-tests"

[fs]
read = ["out/**"]
write = ["out/**"]
auto_approve = ["out/**"]

[audit]
path = "audit.jsonl"
signing_key = "audit.key"
checkpoint_every = 3
"#;

/// `sandbox audit keygen --out PATH`.
fn keygen(path: &Path) -> Run {
    Run::from_output(sandbox().args(["audit", "keygen", "--out"]).arg(path).output().unwrap())
}

/// A fixture with `manifest` and a fresh key pair at `audit.key`.
fn fixture(manifest: &str) -> Fixture {
    let f = Fixture::new(manifest);
    f.file("out/o.txt", "old\n");
    let r = keygen(&f.path("audit.key"));
    assert_eq!(r.code, 0, "{r:?}");
    f
}

/// `sandbox audit verify LOG ARGS...`.
fn verify_with(log: &Path, args: &[&str]) -> Run {
    Run::from_output(sandbox().args(["audit", "verify"]).arg(log).args(args).output().unwrap())
}

/// `sandbox audit verify audit.jsonl --public-key audit.key.pub`.
fn verify_signed(f: &Fixture) -> Run {
    let key = f.path("audit.key.pub");
    verify_with(&f.audit(), &["--public-key", key.to_str().unwrap()])
}

fn checkpoint_file(f: &Fixture) -> PathBuf {
    f.path("audit.jsonl.checkpoints")
}

/// The checkpoint lines, parsed.
fn checkpoints(f: &Fixture) -> Vec<Value> {
    events(&checkpoint_file(f))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The key id of the public key file at `path`: the first 16 hex digits of
/// the SHA-256 of its 32 bytes.
fn key_id(path: &Path) -> String {
    let raw = hex::decode(std::fs::read_to_string(path).unwrap().trim()).unwrap();
    hex::encode(Sha256::digest(&raw))[..16].to_owned()
}

/// Four auto-approved writes: each is made durable (a sync) before it
/// happens, so syncs cross multiples of 3 events during the run.
const FOUR_WRITES: &[&str] =
    &["write", "out/a", "1", "+", "write", "out/b", "2", "+", "write", "out/c", "3", "+", "write", "out/d", "4"];

/// Rewrites a log from line `from` on with `edit` applied to that line, and
/// re-chains it as a writer would: per audit/src/lib.rs, each line is its
/// canonical form (the line without `,"hash":"sha256:…"}`, plus `}`)
/// followed by that member, `hash` is the SHA-256 of the canonical form and
/// `prev` the previous event's `hash`.
fn rewrite(log: &Path, from: usize, edit: impl Fn(&str) -> String) {
    let mut ls = lines(log);
    let mut prev: Option<String> = None;
    for (i, line) in ls.iter_mut().enumerate().skip(from) {
        let mut text = if i == from { edit(line) } else { line.clone() };
        if let Some(p) = &prev {
            let at = text.find(",\"prev\":\"sha256:").unwrap() + ",\"prev\":\"".len();
            text.replace_range(at..at + 71, p);
        }
        let cut = text.rfind(",\"hash\":\"sha256:").unwrap();
        let canonical = format!("{}}}", &text[..cut]);
        let hash = sha256(canonical.as_bytes());
        *line = format!("{},\"hash\":\"{hash}\"}}", &text[..cut]);
        prev = Some(hash);
    }
    write_lines(log, &ls);
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_may_read_and_never_overwrites_one() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit.key");
    let r = keygen(&key);
    assert_eq!(r.code, 0, "{r:?}");
    let public = dir.path().join("audit.key.pub");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&public) & 0o066, mode(&public) & 0o044, "the public key is not writable by others");
    let seed = std::fs::read_to_string(&key).unwrap();
    let pubhex = std::fs::read_to_string(&public).unwrap();
    for text in [&seed, &pubhex] {
        assert!(text.len() == 65 && text.ends_with('\n'), "{text:?}");
        assert!(text.trim().bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{text:?}");
    }
    assert_ne!(seed, pubhex);
    let id = key_id(&public);
    assert!(r.stdout.contains(&format!("key id {id}")), "{r:?}");
    assert!(r.stdout.contains("audit.key.pub"), "{r:?}");

    // Never overwritten: neither the private key nor the public one.
    let again = keygen(&key);
    assert_eq!(again.code, 2, "{again:?}");
    assert_eq!(again.stderr.lines().count(), 1, "{again:?}");
    assert!(again.stderr.contains("audit.key`: already exists; refusing to overwrite a key"), "{again:?}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), seed);
    let other = dir.path().join("other.key");
    std::fs::write(dir.path().join("other.key.pub"), "mine\n").unwrap();
    let r = keygen(&other);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("public key `") && r.stderr.contains("other.key.pub`: already exists"), "{r:?}");
    assert!(!other.exists(), "no private key without its public half");
    assert_eq!(std::fs::read_to_string(dir.path().join("other.key.pub")).unwrap(), "mine\n");
    let r = keygen(&dir.path().join("no/such/dir/k"));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("no such file or directory"), "{r:?}");
}

#[test]
fn a_run_with_a_key_checkpoints_every_n_events_and_each_task_end_and_verifies() {
    let f = fixture(MANIFEST);
    let r = f.run("probe", FOUR_WRITES);
    assert_eq!(r.code, 0, "{r:?}");
    let evs = f.events();
    let cps = checkpoints(&f);
    let id = key_id(&f.path("audit.key.pub"));
    let sizes: Vec<u64> = cps.iter().map(|c| c["size"].as_u64().unwrap()).collect();
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "sizes grow: {sizes:?}");
    assert_eq!(*sizes.last().unwrap(), evs.len() as u64, "the task's end is checkpointed");
    assert!(sizes.len() >= 3, "checkpoints during the run, not only at its end: {sizes:?}");
    // Each one crossed a multiple of 3 since the one before (or is the end).
    for w in sizes[..sizes.len() - 1].windows(2) {
        assert!(w[1] / 3 > w[0] / 3, "{sizes:?}");
    }
    for c in &cps {
        let size = c["size"].as_u64().unwrap() as usize;
        assert_eq!(c["log"], evs[0]["hash"], "{c}");
        assert_eq!(c["head"], evs[size - 1]["hash"], "{c}");
        assert_eq!(c["key"], id.as_str());
        assert_eq!(c["sig"].as_str().unwrap().len(), 128);
        assert!(c["ts"].as_str().unwrap().ends_with('Z'));
        let members: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(members.len(), 6, "{c}");
    }
    let plain = f.verify();
    assert_eq!(plain.code, 0, "{plain:?}");
    assert!(plain.stdout.contains("note: a hash chain cannot show events cut from the end"), "{plain:?}");
    let v = verify_signed(&f);
    assert_eq!(v.code, 0, "{v:?}");
    assert!(
        v.stdout.starts_with(&format!(
            "ok: {} events, 1 tasks, head {}\n",
            evs.len(),
            evs.last().unwrap()["hash"].as_str().unwrap()
        )),
        "{v:?}"
    );
    assert!(v.stdout.contains(&format!("checkpoints: {} verified with key {id}", cps.len())), "{v:?}");
    assert!(
        v.stdout.contains(&format!(
            "the latest covers {} events, signed at {}",
            evs.len(),
            cps.last().unwrap()["ts"].as_str().unwrap()
        )),
        "{v:?}"
    );
    assert!(v.stdout.contains("covered: every event is covered by the latest checkpoint"), "{v:?}");
    assert!(!v.stdout.contains("cannot show events cut"), "{v:?}");

    // A second task on the same log: its end gets its own checkpoint, and
    // a refused start (a missing component) is a task too.
    let before = cps.len();
    let r = f.run("probe", &["read", "out/o.txt"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = f.run_with("probe", &["--workspace", f.path("missing").to_str().unwrap()], &["read", "out/o.txt"]);
    assert_eq!(r.code, 2, "{r:?}");
    let total = f.events().len() as u64;
    let cps = checkpoints(&f);
    assert_eq!(cps.len(), before + 2, "one per task end: {cps:?}");
    assert_eq!(cps.last().unwrap()["size"], total);
    let v = verify_signed(&f);
    assert_eq!(v.code, 0, "{v:?}");
    assert!(v.stdout.contains(&format!("the latest covers {total} events")), "{v:?}");

    // A run without the key on the same log: its events are counted as
    // not covered. The explicit --checkpoints form names the same file.
    let unsigned = f.path("unsigned.toml");
    std::fs::write(&unsigned, std::fs::read_to_string(f.manifest()).unwrap().replace("signing_key", "# signing_key"))
        .unwrap();
    let out = sandbox()
        .arg("run")
        .arg(guest("probe"))
        .arg("--manifest")
        .arg(&unsigned)
        .args(["--", "read", "out/o.txt"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(Run::from_output(out).code, 0);
    let added = f.events().len() as u64 - total;
    assert!(added >= 3);
    assert_eq!(checkpoints(&f).len(), cps.len(), "no key, no checkpoint");
    let cp = checkpoint_file(&f);
    let key = f.path("audit.key.pub");
    let v = verify_with(&f.audit(), &["--checkpoints", cp.to_str().unwrap(), "--public-key", key.to_str().unwrap()]);
    assert_eq!(v.code, 0, "{v:?}");
    assert!(v.stdout.contains(&format!("not yet covered: {added} event(s) after the latest checkpoint")), "{v:?}");
    // --checkpoints alone cannot verify anything.
    let v = verify_with(&f.audit(), &["--checkpoints", cp.to_str().unwrap()]);
    assert_eq!(v.code, 2, "{v:?}");
    assert!(v.stderr.contains("--public-key"), "{v:?}");
}

#[test]
fn cutting_the_last_lines_of_the_log_is_reported() {
    let f = fixture(MANIFEST);
    assert_eq!(f.run("probe", FOUR_WRITES).code, 0);
    let ls = lines(&f.audit());
    let n = ls.len();
    let last_line = checkpoints(&f).len();
    write_lines(&f.audit(), &ls[..n - 2]);
    let plain = f.verify();
    assert_eq!(plain.code, 0, "the chain alone cannot tell: {plain:?}");
    let v = verify_signed(&f);
    assert_eq!(v.code, 1, "{v:?}");
    assert_eq!(v.stderr.lines().count(), 1, "{v:?}");
    assert!(
        v.stderr
            .contains(&format!("log cut short: checkpoint at line {last_line} says {n} events, the log has {}", n - 2)),
        "{v:?}"
    );
    assert_eq!(v.stdout, "");
}

#[test]
fn a_rewritten_and_rechained_log_passes_the_chain_but_not_its_checkpoints() {
    let f = fixture(MANIFEST);
    assert_eq!(f.run("probe", FOUR_WRITES).code, 0);
    let evs = f.events();
    // Hide the third write: its call event names another file.
    let at = evs.iter().position(|e| e["kind"] == "call" && e["target"] == "out/c").unwrap();
    let original = evs[at]["hash"].as_str().unwrap().to_owned();
    rewrite(&f.audit(), at, |l| l.replace("\"target\":\"out/c\"", "\"target\":\"out/z\""));
    let forged = f.events();
    assert_eq!(forged[at]["target"], "out/z");
    assert_ne!(forged[at]["hash"], original.as_str());
    let plain = f.verify();
    assert_eq!(plain.code, 0, "a re-chained log is a valid chain: {plain:?}");
    let v = verify_signed(&f);
    assert_eq!(v.code, 1, "{v:?}");
    // The first checkpoint at or after the edit names the event it covers.
    let cps = checkpoints(&f);
    let line = cps.iter().position(|c| c["size"].as_u64().unwrap() as usize > at).unwrap();
    let seq = cps[line]["size"].as_u64().unwrap() - 1;
    let want = format!(
        "rewritten history: event {seq} has hash {}, checkpoint at line {} says {}",
        forged[seq as usize]["hash"].as_str().unwrap(),
        line + 1,
        cps[line]["head"].as_str().unwrap()
    );
    assert!(v.stderr.contains(&want), "want {want}\n{v:?}");

    // Rewriting event 0 changes the log's identity.
    let f = fixture(MANIFEST);
    assert_eq!(f.run("probe", FOUR_WRITES).code, 0);
    rewrite(&f.audit(), 0, |l| l.replace("\"user\":\"alice\"", "\"user\":\"mallory\""));
    assert_eq!(f.verify().code, 0);
    let v = verify_signed(&f);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(v.stderr.contains("another log: event 0 has hash sha256:"), "{v:?}");
    assert!(v.stderr.contains("checkpoint at line 1 says"), "{v:?}");
}

#[test]
fn checkpoints_from_another_key_are_refused() {
    let f = fixture(MANIFEST);
    assert_eq!(f.run("probe", &["read", "out/o.txt"]).code, 0);
    let other = f.path("other.key");
    assert_eq!(keygen(&other).code, 0);
    let other_pub = f.path("other.key.pub");
    let v = verify_with(&f.audit(), &["--public-key", other_pub.to_str().unwrap()]);
    assert_eq!(v.code, 1, "{v:?}");
    let want = format!(
        "signed by another key: checkpoint at line 1 names key {}, the public key given is {}",
        key_id(&f.path("audit.key.pub")),
        key_id(&other_pub)
    );
    assert!(v.stderr.contains(&want), "{v:?}");

    // A log re-signed by a writer holding another key (the manifest points
    // at it): refused as well, whatever the chain says.
    let body = std::fs::read_to_string(f.manifest()).unwrap().replace("audit.key", "other.key");
    std::fs::write(f.manifest(), body).unwrap();
    assert_eq!(f.run("probe", &["read", "out/o.txt"]).code, 0);
    let v = verify_signed(&f);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(v.stderr.contains("signed by another key: checkpoint at line 2"), "{v:?}");

    // The private key given by mistake: said so (a usage error), whether
    // or not its 32 bytes happen to be a valid public key.
    let private = f.path("audit.key");
    let v = verify_with(&f.audit(), &["--public-key", private.to_str().unwrap()]);
    assert_eq!(v.code, 2, "{v:?}");
    assert!(v.stderr.contains("audit.key` is the private signing key; give its public key, `"), "{v:?}");
    assert_eq!(v.stderr.lines().count(), 1, "{v:?}");
    // Without its `.pub` beside it, a seed that is a curve point shows up
    // as checkpoints signed by another key, with the same hint.
    std::fs::remove_file(f.path("audit.key.pub")).unwrap();
    let v = verify_with(&f.audit(), &["--public-key", private.to_str().unwrap()]);
    assert!(v.code == 1 || v.code == 2, "{v:?}");
    if v.code == 1 {
        assert!(v.stderr.contains("signed by another key") && v.stderr.contains("is the private signing key"), "{v:?}");
    } else {
        assert!(v.stderr.contains("not an Ed25519 public key"), "{v:?}");
    }
}

#[test]
fn an_edited_checkpoint_line_is_refused_and_a_torn_last_line_is_reported() {
    let f = fixture(MANIFEST);
    assert_eq!(f.run("probe", FOUR_WRITES).code, 0);
    let cp = checkpoint_file(&f);
    let good = lines(&cp);
    assert!(good.len() >= 2);
    let id = key_id(&f.path("audit.key.pub"));

    // A size or time changed: the signature no longer matches.
    for (from, to) in [(",\"size\":", ",\"size\":1"), ("\"ts\":\"20", "\"ts\":\"21")] {
        let mut ls = good.clone();
        ls[1] = ls[1].replacen(from, to, 1);
        write_lines(&cp, &ls);
        let v = verify_signed(&f);
        assert_eq!(v.code, 1, "{from}: {v:?}");
        assert!(
            v.stderr.contains(&format!(
                "checkpoint file edited (bad signature): checkpoint at line 2 is not signed by key {id}"
            )),
            "{v:?}"
        );
    }
    // Lines reordered: sizes go back.
    let mut ls = good.clone();
    ls.swap(0, 1);
    write_lines(&cp, &ls);
    let v = verify_signed(&f);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(v.stderr.contains("checkpoints out of order: checkpoint at line 2 says"), "{v:?}");
    // Re-spaced JSON: the same values, not the signed spelling.
    let mut ls = good.clone();
    ls[0] = ls[0].replace(",\"head\"", ", \"head\"");
    write_lines(&cp, &ls);
    let v = verify_signed(&f);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(v.stderr.contains("checkpoint at line 1 is malformed: not written in the canonical form"), "{v:?}");
    // All checkpoints removed: nothing vouches for the log.
    std::fs::write(&cp, "").unwrap();
    let v = verify_signed(&f);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(v.stderr.contains("holds no checkpoint"), "{v:?}");
    // The file missing: a usage error naming it.
    std::fs::remove_file(&cp).unwrap();
    let v = verify_signed(&f);
    assert_eq!(v.code, 2, "{v:?}");
    assert!(v.stderr.contains("audit.jsonl.checkpoints`: no such file or directory"), "{v:?}");

    // A crash while the last checkpoint was written: reported, not fatal.
    let mut text: String = good.iter().map(|l| format!("{l}\n")).collect();
    text.push_str(&good[0][..50]);
    std::fs::write(&cp, text).unwrap();
    let v = verify_signed(&f);
    assert_eq!(v.code, 0, "{v:?}");
    assert!(v.stdout.contains(&format!("checkpoints: {} verified", good.len())), "{v:?}");
    assert!(
        v.stdout.contains(&format!(
            "(line {}) is incomplete (a crash while it was written?) and was ignored",
            good.len() + 1
        )),
        "{v:?}"
    );
    // The next run cuts the torn line off before appending its own.
    assert_eq!(f.run("probe", &["read", "out/o.txt"]).code, 0);
    assert_eq!(lines(&cp).len(), good.len() + 1);
    let v = verify_signed(&f);
    assert_eq!(v.code, 0, "{v:?}");
    assert!(!v.stdout.contains("incomplete"), "{v:?}");
}

/// The run was refused before the tool ran: nothing written in the
/// workspace, a refused task on record, no checkpoint.
fn assert_refused(f: &Fixture, r: &Run, code: i32, message: &str) {
    assert_eq!(r.code, code, "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains(message), "want {message}: {r:?}");
    assert_eq!(r.stdout, "", "the tool never ran: {r:?}");
    assert!(!f.ws("out/a").exists());
    let evs = f.events();
    let end = evs.last().unwrap();
    assert_eq!((end["kind"].as_str(), end["status"].as_str()), (Some("task-end"), Some("refused")), "{evs:?}");
    assert_eq!(end["exit_code"], code);
}

#[test]
fn a_missing_or_unusable_key_refuses_the_run_before_the_tool_runs() {
    let f = fixture(MANIFEST);
    std::fs::remove_file(f.path("audit.key")).unwrap();
    let r = f.run("probe", FOUR_WRITES);
    assert_refused(&f, &r, 2, &format!("signing key `{}`: no such file or directory", f.path("audit.key").display()));
    assert!(checkpoints(&f).is_empty());

    let f = fixture(MANIFEST);
    std::fs::set_permissions(f.path("audit.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = f.run("probe", FOUR_WRITES);
    assert_refused(&f, &r, 2, "permissions 0644 are too open");

    let f = fixture(MANIFEST);
    std::fs::write(f.path("audit.key"), "0123\n").unwrap();
    let r = f.run("probe", FOUR_WRITES);
    assert_refused(&f, &r, 2, "wrong length: 4 hex digits, expected 64");

    // A key inside the workspace is within the tool's reach.
    let f = fixture(&MANIFEST.replace("signing_key = \"audit.key\"", "signing_key = \"ws/audit.key\""));
    assert_eq!(keygen(&f.ws("audit.key")).code, 0);
    let r = f.run("probe", FOUR_WRITES);
    assert_refused(&f, &r, 2, "lies inside the workspace, within the tool's reach");

    // A checkpoint file that cannot be opened is an audit failure.
    let f = fixture(MANIFEST);
    std::fs::create_dir(checkpoint_file(&f)).unwrap();
    let r = f.run("probe", FOUR_WRITES);
    assert_refused(&f, &r, 126, "audit.jsonl.checkpoints`: not a regular file");
}

#[test]
fn the_checkpoint_file_inside_the_workspace_is_untouchable() {
    let manifest = MANIFEST.replace("checkpoint_every = 3", "checkpoint_every = 3\ncheckpoints = \"ws/out/cp\"");
    let f = fixture(&manifest);
    let r = f.run("probe", &["write", "out/cp", "forged", "+", "read", "out/cp"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.line("\"write\" \"out/cp\" \"forged\"").starts_with("denied"), "{r:?}");
    assert!(r.line("\"read\" \"out/cp\"").starts_with("denied"), "{r:?}");
    let call = f.calls("fs.write").into_iter().find(|c| c["target"] == "out/cp").unwrap();
    assert_eq!(call["rule"], "builtin:audit-checkpoints");
    let cp = f.ws("out/cp");
    let key = f.path("audit.key.pub");
    let v = verify_with(&f.audit(), &["--checkpoints", cp.to_str().unwrap(), "--public-key", key.to_str().unwrap()]);
    assert_eq!(v.code, 0, "{v:?}");
}

#[test]
fn a_checkpoint_that_cannot_be_written_stops_the_run_with_126() {
    let f = fixture(MANIFEST);
    // A file-size limit that the log, the workspace and wasmtime's memory
    // image stay far below, while the checkpoint file sits just under it:
    // the first checkpoint cannot be appended (EFBIG).
    let unit = ulimit_f_unit(f.dir.path());
    let component = std::fs::metadata(guest("probe")).unwrap().len();
    let blocks = (2 * component + (512 << 10)).div_ceil(unit);
    let limit = blocks * unit;
    let filler = "not a checkpoint\n";
    let mut text = filler.repeat(((limit - 100) as usize) / filler.len());
    text.push_str(&"x".repeat((limit - 100) as usize - text.len() - 1));
    text.push('\n');
    std::fs::write(checkpoint_file(&f), &text).unwrap();

    let cmd = f.command("probe", &[], FOUR_WRITES);
    let r = Run::from_output(with_file_size_limit(&cmd, blocks).output().unwrap());
    assert_eq!(r.code, 126, "{r:?}");
    assert!(r.stderr.contains("checkpoint file `") && r.stderr.contains("cannot write it"), "{r:?}");
    // A checkpoint is due before the second write takes effect (the sync
    // that crosses 3 events): that write and the ones after never happen.
    assert_eq!(f.read("out/a").as_deref(), Some("1"), "{r:?}");
    assert!(!f.ws("out/b").exists() && !f.ws("out/c").exists(), "{r:?}");
    let evs = f.events();
    let end = evs.last().unwrap();
    assert_eq!((end["kind"].as_str(), end["status"].as_str()), (Some("task-end"), Some("audit-failure")), "{evs:?}");
    assert_eq!(f.verify().code, 0, "the log itself is intact");
    // The failed append left nothing behind in the checkpoint file.
    assert_eq!(std::fs::read_to_string(checkpoint_file(&f)).unwrap(), text);
}

#[test]
fn a_pruned_signed_log_goes_on_being_checkpointed_and_verified() {
    let manifest =
        MANIFEST.replace("checkpoint_every = 3", "checkpoint_every = 3\nrotate = \"1 KiB\"\nretention = \"1s\"");
    let f = fixture(&manifest);
    for i in 0..3 {
        let r = f.run_with("probe", &["--task-id", &format!("old-{i}")], &["repeat", "6", "read", "out/o.txt"]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    // The log's identity: the hash of event 0, in its first segment.
    let first_segment = &sandbox_audit::read::segments(&f.audit()).unwrap()[0].1;
    let identity = events(first_segment)[0]["hash"].clone();
    assert_eq!(checkpoints(&f)[0]["log"], identity);
    // Old enough for the retention of one second.
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let before =
        humantime::format_rfc3339_micros(std::time::SystemTime::now() - std::time::Duration::from_millis(1100));
    // Without the key the prune is refused: it could not prove itself.
    let out =
        sandbox().args(["audit", "prune"]).arg(f.audit()).args(["--before", &before.to_string()]).output().unwrap();
    let r = Run::from_output(out);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("has signed checkpoints") && r.stderr.contains("--signing-key"), "{r:?}");
    let out = sandbox()
        .args(["audit", "prune"])
        .arg(f.audit())
        .args(["--before", &before.to_string(), "--signing-key"])
        .arg(f.path("audit.key"))
        .output()
        .unwrap();
    let r = Run::from_output(out);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(&format!("signed with key {}", key_id(&f.path("audit.key.pub")))), "{r:?}");
    let first_kept = sandbox_audit::verify_log(&f.audit(), |_, _| {}).unwrap().first_seq;
    assert!(first_kept > 0, "event 0 was pruned: {r:?}");

    // The next signed run checkpoints the pruned log under its old identity.
    let r = f.run("probe", &["read", "out/o.txt"]);
    assert_eq!(r.code, 0, "{r:?}");
    let cps = checkpoints(&f);
    let last = cps.last().unwrap();
    assert_eq!(last["log"], identity, "{last}");
    let v = verify_signed(&f);
    assert_eq!(v.code, 0, "{v:?}");
    assert!(v.stdout.contains("covered: every event is covered by the latest checkpoint"), "{v:?}");
    assert!(v.stdout.contains(&format!("end in events pruned away (the log now starts at seq {first_kept})")), "{v:?}");

    // Cutting the pruned log short is still found.
    let live = lines(&f.audit());
    write_lines(&f.audit(), &live[..live.len() - 1]);
    let v = verify_signed(&f);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(v.stderr.contains("log cut short: checkpoint at line"), "{v:?}");
}

/// Prunes the first `n` rotated segments the way someone who can write the
/// log's directory but has no key would: deletes them, writes a prune
/// record that describes them, and appends a correctly chained
/// `audit.prune` finding that vouches for it. With `honest_times` the
/// record tells the segments' real times; without, it claims they are
/// from 2001.
fn forge_prune(log: &Path, n: usize, retention: &str, honest_times: bool) -> u64 {
    let segments = sandbox_audit::read::segments(log).unwrap();
    assert!(segments.len() > n, "{segments:?}");
    let first_segment = events(&segments[0].1);
    let identity = first_segment[0]["hash"].as_str().unwrap().to_owned();
    let mut removed = Vec::new();
    for (_, path) in &segments[..n] {
        let evs = events(path);
        let last = evs.last().unwrap();
        removed.push(sandbox_audit::prune::PrunedSegment {
            file: path.file_name().unwrap().to_str().unwrap().to_owned(),
            first: evs[0]["seq"].as_u64().unwrap(),
            last: last["seq"].as_u64().unwrap(),
            prev: evs[0]["prev"].as_str().unwrap().to_owned(),
            head: last["hash"].as_str().unwrap().to_owned(),
            newest: if honest_times { last["ts"].as_str().unwrap().to_owned() } else { "2001-01-01T00:00:00Z".into() },
        });
    }
    let last = removed.last().unwrap().clone();
    let now = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    let record = sandbox_audit::PruneRecord {
        v: 1,
        log: identity,
        at: now.clone(),
        before: if honest_times { now } else { "2002-01-01T00:00:00Z".into() },
        retention: retention.into(),
        first_kept: last.last + 1,
        prev: last.head.clone(),
        segments: removed,
        proof: None,
        key: None,
        sig: None,
    };
    let line = serde_json::to_string(&record).unwrap();
    let mut pruned = log.as_os_str().to_owned();
    pruned.push(".pruned");
    std::fs::write(&pruned, format!("{line}\n")).unwrap();
    for (_, path) in &segments[..n] {
        std::fs::remove_file(path).unwrap();
    }
    let origin = sandbox_audit::Origin { task: "prune-x".into(), user: "ops".into(), ..Default::default() };
    let sha = sha256(line.as_bytes());
    let mut w = sandbox_audit::AuditLog::open(log, std::time::Duration::from_secs(5)).unwrap();
    w.record(&sandbox_audit::Event {
        content_sha256: Some(&sha),
        ..origin.finding(sandbox_audit::prune::PRUNE_RULE, "audit log pruned")
    });
    w.sync().unwrap();
    record.first_kept
}

/// A six-year retention, small segments.
fn six_years(manifest: &str) -> String {
    manifest.replace("checkpoint_every = 3", "checkpoint_every = 3\nrotate = \"1 KiB\"\nretention = \"6y\"")
}

#[test]
fn a_forged_prune_of_a_signed_log_fails_verification_and_is_never_signed_over() {
    for honest in [true, false] {
        let f = fixture(&six_years(MANIFEST));
        for i in 0..3 {
            let r = f.run_with("probe", &["--task-id", &format!("t-{i}")], &["repeat", "6", "read", "out/o.txt"]);
            assert_eq!(r.code, 0, "{r:?}");
        }
        let first_kept = forge_prune(&f.audit(), 2, if honest { "6y" } else { "1s" }, honest);
        // The chain alone: a record that tells the truth about the times
        // shows events younger than the retention were removed.
        let v = verify_with(&f.audit(), &[]);
        if honest {
            assert_eq!(v.code, 1, "{v:?}");
            assert!(v.stderr.contains("younger than its own retention"), "{v:?}");
        }
        // The checkpoints: no signature on the prune, whatever it says.
        let v = verify_signed(&f);
        assert_eq!(v.code, 1, "honest={honest}: {v:?}");
        let why = if honest { "younger than its own retention" } else { "not proven by its checkpoints" };
        assert!(v.stderr.contains(why), "{v:?}");
        if !honest {
            assert!(v.stderr.contains("prune that is not signed"), "{v:?}");
        }
        assert_eq!(v.stderr.lines().count(), 1, "{v:?}");
        // The report says so too.
        let out = f.path("report.md");
        let rep = Run::from_output(
            sandbox()
                .args(["audit", "report"])
                .arg(f.audit())
                .args(["--format", "md", "--public-key"])
                .arg(f.path("audit.key.pub"))
                .arg("--out")
                .arg(&out)
                .output()
                .unwrap(),
        );
        assert_eq!(rep.code, 1, "{rep:?}");
        let text = std::fs::read_to_string(&out).unwrap();
        if honest {
            assert!(text.contains("NOT INTACT"), "{text}");
        } else {
            assert!(text.contains("Signed checkpoints did NOT verify") && text.contains("not signed"), "{text}");
        }
        // The next signed run refuses to sign over it, before the tool runs.
        let size = lines(&checkpoint_file(&f)).len();
        let r = f.run("probe", &["read", "out/o.txt"]);
        assert_eq!(r.code, 126, "{r:?}");
        assert!(r.stderr.contains("did not sign") && r.stderr.contains("--signing-key"), "{r:?}");
        assert_eq!(lines(&checkpoint_file(&f)).len(), size, "no checkpoint was signed over the forged prune");
        assert!(first_kept > 0);
    }
}

#[test]
fn a_forged_prune_of_an_unsigned_log_that_tells_its_times_fails_verification() {
    let manifest = six_years(MANIFEST).replace("signing_key = \"audit.key\"\n", "");
    let f = fixture(&manifest);
    for i in 0..3 {
        let r = f.run_with("probe", &["--task-id", &format!("t-{i}")], &["repeat", "6", "read", "out/o.txt"]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    assert!(!checkpoint_file(&f).exists());
    forge_prune(&f.audit(), 2, "6y", true);
    let v = verify_with(&f.audit(), &[]);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(v.stderr.contains("removed events younger than its own retention"), "{v:?}");
    assert_eq!(v.stderr.lines().count(), 1, "{v:?}");
}

#[test]
fn a_signed_prune_removes_only_what_a_checkpoint_older_than_the_retention_covers() {
    let manifest =
        MANIFEST.replace("checkpoint_every = 3", "checkpoint_every = 3\nrotate = \"1 KiB\"\nretention = \"2s\"");
    let f = fixture(&manifest);
    for i in 0..3 {
        let r = f.run_with("probe", &["--task-id", &format!("t-{i}")], &["repeat", "6", "read", "out/o.txt"]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    // Make the checkpoints younger than the retention while the segments'
    // own events look old enough: the tool-visible times are not proof.
    let cps = lines(&checkpoint_file(&f));
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let before =
        humantime::format_rfc3339_micros(std::time::SystemTime::now() - std::time::Duration::from_millis(2100));
    // Re-sign every checkpoint now, as if they were made just now.
    let key = sandbox_audit::SigningKey::load(&f.path("audit.key")).unwrap();
    let fresh: Vec<String> = cps
        .iter()
        .map(|l| {
            let cp = sandbox_audit::checkpoint::Checkpoint::parse(l.as_bytes()).unwrap();
            let log: [u8; 32] = hex::decode(&cp.log[7..]).unwrap().try_into().unwrap();
            let head: [u8; 32] = hex::decode(&cp.head[7..]).unwrap().try_into().unwrap();
            sandbox_audit::checkpoint::Checkpoint::sign(&key, &log, cp.size, &head, std::time::SystemTime::now())
                .to_line()
        })
        .collect();
    write_lines(&checkpoint_file(&f), &fresh);
    let segments = sandbox_audit::read::segments(&f.audit()).unwrap().len();
    let r = Run::from_output(
        sandbox()
            .args(["audit", "prune"])
            .arg(f.audit())
            .args(["--before", &before.to_string(), "--signing-key"])
            .arg(f.path("audit.key"))
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("nothing pruned") && r.stdout.contains("no checkpoint signed before"), "{r:?}");
    assert_eq!(sandbox_audit::read::segments(&f.audit()).unwrap().len(), segments);
}
