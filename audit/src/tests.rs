use super::*;
use crate::log::{Origin, TORN_TAIL_RULE};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(2);

pub(crate) fn event(target: &str) -> Event<'_> {
    Event {
        kind: Kind::Call,
        task: "t1",
        user: "alice",
        agent: "tool",
        component: "sha256:c",
        policy: "sha256:p",
        capability: Some("fs.read"),
        target: Some(target),
        decision: Some(Decision::Allow),
        rule: Some("fs.read:src/**"),
        ..Event::default()
    }
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

fn write_lines(path: &std::path::Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(path, s).unwrap();
}

fn check(path: &std::path::Path) -> Result<VerifyReport, VerifyError> {
    verify(std::fs::File::open(path).unwrap())
}

fn sample_log(n: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/audit.jsonl");
    let mut log = AuditLog::open(&path, WAIT).unwrap();
    for i in 0..n {
        log.record(&event(&format!("src/{i}.rs")));
    }
    log.sync().unwrap();
    (dir, path)
}

#[test]
fn a_written_log_verifies_and_has_the_documented_shape() {
    let (_d, path) = sample_log(5);
    let report = check(&path).unwrap();
    assert_eq!(report.events, 5);
    assert_eq!(report.tasks, 1);
    let ls = lines(&path);
    assert!(ls[0].starts_with("{\"v\":1,\"seq\":0,\"ts\":\""), "{}", ls[0]);
    assert!(ls[0].contains(&format!("\"prev\":\"sha256:{}\"", "0".repeat(64))));
    let v: serde_json::Value = serde_json::from_str(&ls[1]).unwrap();
    assert_eq!(v["seq"], 1);
    assert_eq!(v["target"], "src/1.rs");
    assert_eq!(v["kind"], "call");
    assert_eq!(v["decision"], "allow");
    // The chain: each prev is the previous hash.
    let v0: serde_json::Value = serde_json::from_str(&ls[0]).unwrap();
    assert_eq!(v["prev"], v0["hash"]);
    assert_eq!(report.head, serde_json::from_str::<serde_json::Value>(&ls[4]).unwrap()["hash"]);
}

#[test]
fn the_hash_is_sha256_of_the_line_without_its_hash_member() {
    use sha2::{Digest, Sha256};
    let (_d, path) = sample_log(1);
    let line = &lines(&path)[0];
    let cut = line.rfind(",\"hash\":").unwrap();
    let canonical = format!("{}}}", &line[..cut]);
    let expected = format!("sha256:{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["hash"], expected);
}

#[test]
fn appends_continue_the_chain_across_writers() {
    let (_d, path) = sample_log(3);
    let mut a = AuditLog::open(&path, WAIT).unwrap();
    let mut b = AuditLog::open(&path, WAIT).unwrap();
    a.record(&event("a1"));
    a.sync().unwrap();
    b.record(&event("b1"));
    b.record(&event("b2"));
    b.write().unwrap();
    a.record(&event("a2"));
    a.sync().unwrap();
    let report = check(&path).unwrap();
    assert_eq!(report.events, 7);
    let targets: Vec<String> = lines(&path)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["target"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(targets[3..], ["a1", "b1", "b2", "a2"]);
}

#[test]
fn hostile_text_stays_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let mut log = AuditLog::open(&path, WAIT).unwrap();
    let nasty = "a\nb\r\"c\\\u{1b}[2J\u{202e}{\"kind\":\"forged\"}\n";
    log.record(&Event { intent: Some(nasty), ..event(nasty) });
    log.sync().unwrap();
    let ls = lines(&path);
    assert_eq!(ls.len(), 1);
    let v: serde_json::Value = serde_json::from_str(&ls[0]).unwrap();
    assert_eq!(v["target"], nasty);
    assert_eq!(v["intent"], nasty);
    assert_eq!(v["kind"], "call");
    assert!(!ls[0].contains('\u{1b}'));
    check(&path).unwrap();
}

#[test]
fn line_separators_c1_and_bidi_controls_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let mut log = AuditLog::open(&path, WAIT).unwrap();
    let nasty = "a\u{2028}b\u{2029}c\u{85}d\u{9b}31me\u{202e}f\u{200b}g\u{feff}h";
    log.record(&event(nasty));
    log.sync().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1);
    for c in nasty.chars().filter(|c| !c.is_ascii_alphanumeric()) {
        assert!(!text.contains(c), "raw U+{:04X} in the log", c as u32);
    }
    assert!(text.contains("\\u2028") && text.contains("\\u009b") && text.contains("\\u202e"), "{text}");
    let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(v["target"], nasty);
    check(&path).unwrap();
}

#[test]
fn long_targets_are_cut_with_their_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let mut log = AuditLog::open(&path, WAIT).unwrap();
    let long = "é".repeat(3000);
    log.record(&event(&long));
    log.sync().unwrap();
    let v: serde_json::Value = serde_json::from_str(&lines(&path)[0]).unwrap();
    let t = v["target"].as_str().unwrap();
    assert!(t.len() <= event::MAX_TARGET_BYTES && t.len() > 4000);
    assert!(long.starts_with(t));
    use sha2::{Digest, Sha256};
    assert_eq!(v["target_sha256"], format!("sha256:{}", hex::encode(Sha256::digest(long.as_bytes()))));
}

#[test]
fn an_edited_byte_is_detected_at_its_seq() {
    let (_d, path) = sample_log(6);
    let mut ls = lines(&path);
    ls[3] = ls[3].replace("src/3.rs", "src/9.rs");
    write_lines(&path, &ls);
    let e = check(&path).unwrap_err();
    assert_eq!((e.seq, e.line), (3, 4));
    assert!(e.reason.contains("does not match its hash"), "{e}");
}

#[test]
fn a_removed_line_is_detected() {
    let (_d, path) = sample_log(6);
    let mut ls = lines(&path);
    ls.remove(2);
    write_lines(&path, &ls);
    let e = check(&path).unwrap_err();
    assert_eq!(e.seq, 2);
    assert!(e.reason.contains("missing"), "{e}");
}

#[test]
fn an_inserted_line_is_detected() {
    let (_d, path) = sample_log(6);
    let mut ls = lines(&path);
    let copy = ls[1].clone();
    ls.insert(3, copy);
    write_lines(&path, &ls);
    let e = check(&path).unwrap_err();
    assert_eq!(e.seq, 3);
}

#[test]
fn reordered_lines_are_detected() {
    let (_d, path) = sample_log(6);
    let mut ls = lines(&path);
    ls.swap(2, 4);
    write_lines(&path, &ls);
    let e = check(&path).unwrap_err();
    assert_eq!(e.seq, 2);
}

#[test]
fn a_rehashed_edit_breaks_the_next_link() {
    use sha2::{Digest, Sha256};
    let (_d, path) = sample_log(4);
    let mut ls = lines(&path);
    let edited = ls[1].replace("src/1.rs", "src/x.rs");
    let cut = edited.rfind(",\"hash\":").unwrap();
    let h = hex::encode(Sha256::digest(format!("{}}}", &edited[..cut]).as_bytes()));
    ls[1] = format!("{},\"hash\":\"sha256:{h}\"}}", &edited[..cut]);
    write_lines(&path, &ls);
    let e = check(&path).unwrap_err();
    assert_eq!(e.seq, 2);
    assert!(e.reason.contains("`prev`"), "{e}");
}

#[test]
fn garbage_and_torn_lines_are_detected() {
    let (_d, path) = sample_log(3);
    let mut s = std::fs::read_to_string(&path).unwrap();
    s.push_str("{\"v\":1,\"seq\":3");
    std::fs::write(&path, &s).unwrap();
    let e = check(&path).unwrap_err();
    assert_eq!(e.seq, 3);
    std::fs::write(&path, "not json\n").unwrap();
    assert_eq!(check(&path).unwrap_err().seq, 0);
}

#[test]
fn an_empty_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    std::fs::write(&path, "").unwrap();
    let r = check(&path).unwrap();
    assert_eq!(r.events, 0);
    assert_eq!(r.head, format_hash(&GENESIS));
}

#[test]
fn a_held_lock_times_out() {
    let (_d, path) = sample_log(1);
    let holder = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    holder.lock().unwrap();
    let mut log = AuditLog::open(&path, Duration::from_millis(50));
    assert!(matches!(log, Err(AuditError::Locked { .. })), "{log:?}");
    holder.unlock().unwrap();
    log = AuditLog::open(&path, Duration::from_millis(50));
    let mut log = log.unwrap();
    holder.lock().unwrap();
    log.record(&event("x"));
    assert!(matches!(log.write(), Err(AuditError::Locked { .. })));
}

// --- Torn tails ---------------------------------------------------------------

fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn value(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap()
}

/// Appends `piece` to the file as a crashed writer would have left it.
fn tear(path: &std::path::Path, piece: &[u8]) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let before = bytes.clone();
    bytes.extend_from_slice(piece);
    std::fs::write(path, &bytes).unwrap();
    before
}

/// The finding a writer records for a cut tail, checked against what was cut.
fn assert_torn_finding(line: &str, seq: u64, removed: &[u8], task: &str) {
    let v = value(line);
    assert_eq!(v["seq"], seq, "{line}");
    assert_eq!(v["kind"], "finding", "{line}");
    assert_eq!(v["rule"], TORN_TAIL_RULE, "{line}");
    assert_eq!(v["size"], removed.len() as u64, "{line}");
    assert_eq!(v["content_sha256"], sha256(removed), "{line}");
    assert_eq!(v["task"], task, "{line}");
    assert!(v["reason"].as_str().unwrap().contains(&format!("{} bytes were cut off", removed.len())), "{line}");
}

#[test]
fn a_torn_last_line_is_cut_on_open_and_recorded_by_a_finding() {
    let (_d, path) = sample_log(3);
    let last = lines(&path)[2].clone();
    let piece = &last.as_bytes()[..last.len() / 2];
    let intact = tear(&path, piece);
    assert_eq!(check(&path).unwrap_err().seq, 3, "the torn line fails verification");

    let mut log = AuditLog::open(&path, WAIT).unwrap();
    // Cut at open, under the lock, and synced: the file is what it was.
    assert_eq!(std::fs::read(&path).unwrap(), intact);
    assert_eq!(log.repairs().len(), 1);
    let r = &log.repairs()[0];
    assert_eq!((r.offset, r.bytes, r.had_newline), (intact.len() as u64, piece.len() as u64, false));
    assert!(log.is_dirty(), "the finding is still to be written");
    log.set_origin(Origin { task: "t2".into(), user: "bob".into(), ..Origin::default() });
    log.record(&event("after"));
    log.sync().unwrap();
    let ls = lines(&path);
    assert_eq!(ls.len(), 5);
    assert_torn_finding(&ls[3], 3, piece, "t2");
    assert_eq!(value(&ls[3])["user"], "bob");
    assert_eq!(value(&ls[4])["target"], "after");
    assert_eq!(check(&path).unwrap().events, 5);
    // Recorded once.
    log.record(&event("later"));
    log.sync().unwrap();
    assert_eq!(lines(&path).iter().filter(|l| l.contains(TORN_TAIL_RULE)).count(), 1);
}

#[test]
fn a_complete_last_line_that_is_not_a_valid_event_is_cut_too() {
    for bad in ["{\"v\":1,\"seq\":3,\"garbage\n", "not json at all\n", "\n"] {
        let (_d, path) = sample_log(3);
        // A line with a newline whose hash does not match.
        let forged = lines(&path)[2].replace("src/2.rs", "src/X.rs").replace("\"seq\":2", "\"seq\":3") + "\n";
        for piece in [bad.as_bytes(), forged.as_bytes()] {
            let intact = tear(&path, piece);
            let mut log = AuditLog::open(&path, WAIT).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), intact, "{bad:?}");
            assert!(log.repairs()[0].had_newline);
            log.sync().unwrap();
            let ls = lines(&path);
            assert_torn_finding(ls.last().unwrap(), ls.len() as u64 - 1, piece, "");
            check(&path).unwrap();
        }
    }
}

#[test]
fn more_than_one_bad_line_or_an_overlong_piece_is_refused_and_left_alone() {
    let (_d, path) = sample_log(3);
    let mut ls = lines(&path);
    ls[2] = ls[2].replace("src/2.rs", "src/X.rs");
    write_lines(&path, &ls);
    let before = tear(&path, b"{\"v\":1,\"seq\":3");
    let mut changed = before.clone();
    changed.extend_from_slice(b"{\"v\":1,\"seq\":3");
    let e = AuditLog::open(&path, WAIT).unwrap_err();
    assert!(
        matches!(&e, AuditError::BadTail { reason, .. } if reason.contains("neither is the line before it")),
        "{e}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), changed, "nothing was cut");

    let (_d, path) = sample_log(2);
    let mut big = b"{\"v\":1,\"seq\":2,\"target\":\"".to_vec();
    big.resize(300 * 1024, b'a');
    let before = tear(&path, &big);
    let e = AuditLog::open(&path, WAIT).unwrap_err();
    assert!(e.to_string().contains("too long to be one torn append"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap().len(), before.len() + big.len());
}

#[test]
fn a_log_holding_only_a_torn_line_starts_again_at_seq_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    std::fs::write(&path, b"{\"v\":1,\"seq\":0,\"ts\":\"20").unwrap();
    let mut log = AuditLog::open(&path, WAIT).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"");
    log.record(&event("x"));
    log.sync().unwrap();
    let ls = lines(&path);
    assert_torn_finding(&ls[0], 0, b"{\"v\":1,\"seq\":0,\"ts\":\"20", "");
    assert_eq!(check(&path).unwrap().events, 2);
}

#[test]
fn a_tail_torn_by_another_writer_mid_run_is_cut_at_the_next_append() {
    let (_d, path) = sample_log(2);
    let mut a = AuditLog::open(&path, WAIT).unwrap();
    a.set_origin(Origin { task: "survivor".into(), ..Origin::default() });
    a.record(&event("a1"));
    a.sync().unwrap();
    // Another writer appends, then dies halfway through its next batch.
    let mut b = AuditLog::open(&path, WAIT).unwrap();
    b.record(&event("b1"));
    b.sync().unwrap();
    let b1 = lines(&path)[3].clone();
    let piece = b1[..40].replace("\"seq\":3", "\"seq\":4");
    let piece = piece.as_bytes();
    let intact = tear(&path, piece);
    a.record(&event("a2"));
    a.sync().unwrap();
    assert_eq!(a.repairs().len(), 1);
    assert_eq!(a.repairs()[0].offset, intact.len() as u64);
    let ls = lines(&path);
    assert_eq!(ls.len(), 6);
    assert_torn_finding(&ls[4], 4, piece, "survivor");
    assert_eq!(value(&ls[5])["target"], "a2");
    check(&path).unwrap();
}

#[test]
fn a_writer_refuses_a_log_that_lost_events_it_wrote() {
    let (_d, path) = sample_log(4);
    let mut log = AuditLog::open(&path, WAIT).unwrap();
    log.record(&event("mine"));
    log.sync().unwrap();
    let mut ls = lines(&path);
    ls.truncate(3);
    write_lines(&path, &ls);
    log.record(&event("next"));
    let e = log.sync().unwrap_err();
    assert!(e.to_string().contains("already wrote (events were removed)"), "{e}");
    assert_eq!(lines(&path).len(), 3, "nothing appended");
}

// --- Faults -----------------------------------------------------------------

#[cfg(debug_assertions)]
#[test]
fn a_failed_write_is_cut_back_and_its_events_stay_pending() {
    let (_d, path) = sample_log(2);
    let mut log = AuditLog::open(&path, WAIT).unwrap();
    log.inject_faults("write@1=enospc,sync@2=eio");
    let before = std::fs::read(&path).unwrap();
    for i in 0..20 {
        log.record(&event(&format!("batch/{i}")));
    }
    let e = log.sync().unwrap_err();
    assert!(e.to_string().contains("cannot write it: no space left on device"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the half-written batch was cut back");
    assert_eq!(log.pending(), 20);
    assert_eq!(log.known_head(), (2, before.len() as u64));
    // The disk has room again: the same events go in whole.
    log.sync().unwrap();
    assert_eq!(check(&path).unwrap().events, 22);
    // An fsync error fails the sync; the events are in the file but the
    // writer still owes a sync.
    log.record(&event("unsynced"));
    let e = log.sync().unwrap_err();
    assert!(e.to_string().contains("cannot sync it: input/output error"), "{e}");
    assert!(log.is_dirty());
    log.sync().unwrap();
    assert!(!log.is_dirty());
    assert_eq!(check(&path).unwrap().events, 23);
}

#[cfg(debug_assertions)]
#[test]
fn fault_plans_parse_strictly() {
    use crate::log::fault::{Fault, Op, Plan};
    let mut p = Plan::parse("write@2=enospc, sync@1+=eio").unwrap();
    assert_eq!(p.check(Op::Write), None);
    assert_eq!(p.check(Op::Write), Some(Fault::Errno(28)));
    assert_eq!(p.check(Op::Write), None);
    assert_eq!(p.check(Op::Sync), Some(Fault::Errno(5)));
    assert_eq!(p.check(Op::Sync), Some(Fault::Errno(5)));
    assert_eq!(p.check(Op::Rotate), None);
    for bad in ["write", "write@x=eio", "open@1=eio", "sync@1=crash", "write@1=boom"] {
        assert!(Plan::parse(bad).is_err(), "{bad}");
    }
}

// --- Rotation -----------------------------------------------------------------

/// A log of four events (just under 1 KiB) whose writer rotates at 1 KiB.
fn four_events_rotating_at_1k() -> (tempfile::TempDir, std::path::PathBuf, AuditLog) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path, WAIT).unwrap();
    log.set_rotate(Some(1024));
    for i in 0..4 {
        log.record(&event(&format!("{i}")));
    }
    log.sync().unwrap();
    (dir, path, log)
}

fn first_seq_of(path: &std::path::Path) -> u64 {
    value(&lines(path)[0])["seq"].as_u64().unwrap()
}

#[test]
fn rotation_renames_the_live_file_to_its_first_seq_and_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path, WAIT).unwrap();
    log.set_rotate(Some(1500));
    for i in 0..30 {
        log.record(&event(&format!("src/{i}.rs")));
        log.record(&event(&format!("src/{i}.rs")));
        log.sync().unwrap();
    }
    let segments = crate::read::segments(&path).unwrap();
    assert!(segments.len() >= 5, "{segments:?}");
    let mut expected = 0;
    let mut prev = format_hash(&GENESIS);
    for (seq, file) in &segments {
        assert_eq!(*seq, expected, "{}", file.display());
        assert_eq!(first_seq_of(file), *seq, "the name is the seq of the first event");
        let ls = lines(file);
        assert_eq!(value(&ls[0])["prev"], prev.as_str(), "the chain crosses the boundary");
        let size = std::fs::metadata(file).unwrap().len();
        // Rotated before the batch once the size was reached: at most one
        // batch beyond it.
        assert!((1500..1500 + 2 * 700).contains(&size), "{size}");
        expected += ls.len() as u64;
        prev = value(ls.last().unwrap())["hash"].as_str().unwrap().to_owned();
    }
    assert_eq!(first_seq_of(&path), expected);
    assert_eq!(value(&lines(&path)[0])["prev"], prev.as_str());
    let report = crate::verify_log(&path, |_, _| {}).unwrap();
    assert_eq!(report.events, 60);
}

#[test]
fn a_writer_whose_file_was_rotated_away_follows_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut a = AuditLog::open(&path, WAIT).unwrap();
    let mut b = AuditLog::open(&path, WAIT).unwrap();
    b.set_rotate(Some(1024));
    for round in 0..12 {
        // `a` never rotates, but shares the log with `b`, which does.
        a.record(&event(&format!("a/{round}")));
        a.sync().unwrap();
        b.record(&event(&format!("b/{round}")));
        b.record(&event(&format!("b/{round}")));
        b.sync().unwrap();
    }
    let segments = crate::read::segments(&path).unwrap();
    assert!(segments.len() >= 3, "{segments:?}");
    for (seq, file) in &segments {
        assert_eq!(first_seq_of(file), *seq);
        // `a` appended to no segment after it was rotated: every segment
        // is one run of seqs.
        let seqs: Vec<u64> = lines(file).iter().map(|l| value(l)["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    }
    assert_eq!(crate::verify_log(&path, |_, _| {}).unwrap().events, 36);
}

#[cfg(debug_assertions)]
#[test]
fn a_failed_rotation_fails_the_append_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path, WAIT).unwrap();
    log.set_rotate(Some(1024));
    log.inject_faults("rotate@1=eio");
    for i in 0..4 {
        log.record(&event(&format!("{i}")));
    }
    log.sync().unwrap();
    let before = std::fs::read(&path).unwrap();
    log.record(&event("next"));
    let e = log.sync().unwrap_err();
    assert!(e.to_string().contains("cannot rotate it"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(crate::read::segments(&path).unwrap().is_empty());
    log.sync().unwrap();
    assert_eq!(crate::read::segments(&path).unwrap().len(), 1);
    assert_eq!(crate::verify_log(&path, |_, _| {}).unwrap().events, 5);
}

#[test]
fn rotation_never_replaces_an_existing_segment() {
    let (_dir, path, mut log) = four_events_rotating_at_1k();
    let squatter = crate::read::segment_path(&path, 0);
    std::fs::write(&squatter, "placed here\n").unwrap();
    log.record(&event("next"));
    let e = log.sync().unwrap_err();
    assert!(e.to_string().contains("cannot rotate it: file exists"), "{e}");
    assert_eq!(std::fs::read_to_string(&squatter).unwrap(), "placed here\n");
    assert_eq!(check(&path).unwrap().events, 4);
}

#[test]
fn a_torn_tail_right_after_a_rotation_continues_from_the_segment() {
    let (_dir, path, mut log) = four_events_rotating_at_1k();
    log.record(&event("rotates"));
    log.sync().unwrap();
    assert_eq!(crate::read::segments(&path).unwrap().len(), 1);
    // A writer died during the first append to the fresh live file.
    std::fs::write(&path, b"{\"v\":1,\"seq\":4,").unwrap();
    let mut other = AuditLog::open(&path, WAIT).unwrap();
    assert_eq!(other.known_head().0, 4);
    other.record(&event("after"));
    other.sync().unwrap();
    let ls = lines(&path);
    assert_torn_finding(&ls[0], 4, b"{\"v\":1,\"seq\":4,", "");
    assert_eq!(crate::verify_log(&path, |_, _| {}).unwrap().events, 6);
}

// --- Segments and prune -------------------------------------------------------

fn task_start(retention: Option<&str>) -> Event<'_> {
    Event { kind: Kind::TaskStart, task: "t1", user: "alice", agent: "tool", retention, ..Event::default() }
}

/// A log rotated at 1 KiB: `batches` batches of a task-start recording
/// `retention` and four calls each.
fn rotated_log(batches: usize, retention: Option<&str>) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path, WAIT).unwrap();
    log.set_rotate(Some(1024));
    for b in 0..batches {
        append_batch(&mut log, b, retention);
    }
    (dir, path)
}

fn append_batch(log: &mut AuditLog, b: usize, retention: Option<&str>) {
    log.record(&task_start(retention));
    for i in 0..4 {
        log.record(&event(&format!("src/{b}/{i}.rs")));
    }
    log.sync().unwrap();
}

fn verify_err(path: &std::path::Path) -> String {
    match crate::verify_log(path, |_, _| {}) {
        Ok(r) => panic!("verified: {r:?}"),
        Err(e @ LogVerifyError::Read(_)) => e.to_string(),
        Err(LogVerifyError::Broken { file, error }) => format!("{}: {error}", file.display()),
    }
}

#[test]
fn a_removed_renamed_or_edited_segment_is_reported() {
    let (_d, path) = rotated_log(6, None);
    let segs = crate::read::segments(&path).unwrap();
    assert!(segs.len() >= 4, "{segs:?}");
    crate::verify_log(&path, |_, _| {}).unwrap();

    // The first segment removed, without a prune record.
    let (_d2, p2) = copy_log(&path);
    std::fs::remove_file(crate::read::segment_path(&p2, 0)).unwrap();
    let e = verify_err(&p2);
    assert!(e.contains("no prune record") && e.contains(&format!("starts at seq {}", segs[1].0)), "{e}");

    // A middle segment removed: the next one is named for a later seq.
    let (_d3, p3) = copy_log(&path);
    std::fs::remove_file(crate::read::segment_path(&p3, segs[1].0)).unwrap();
    let e = verify_err(&p3);
    assert!(e.contains(&format!("named for seq {}", segs[2].0)), "{e}");
    assert!(e.contains(&format!("continues at seq {}", segs[1].0)), "{e}");

    // A segment renamed (its order kept).
    let (_d4, p4) = copy_log(&path);
    let from = crate::read::segment_path(&p4, segs[2].0);
    std::fs::rename(&from, crate::read::segment_path(&p4, segs[2].0 + 1)).unwrap();
    let e = verify_err(&p4);
    assert!(e.contains(&format!("named for seq {}", segs[2].0 + 1)), "{e}");

    // The last line of a segment moved to the start of the next one: both
    // files still chain, but the names no longer match the boundary.
    let (_d5, p5) = copy_log(&path);
    let a = crate::read::segment_path(&p5, segs[1].0);
    let b = crate::read::segment_path(&p5, segs[2].0);
    let mut la = lines(&a);
    let moved = la.pop().unwrap();
    let mut lb = lines(&b);
    lb.insert(0, moved);
    write_lines(&a, &la);
    write_lines(&b, &lb);
    let e = verify_err(&p5);
    assert!(e.contains(&format!("named for seq {}", segs[2].0)), "{e}");

    // An emptied segment.
    let (_d6, p6) = copy_log(&path);
    let last = crate::read::segment_path(&p6, segs[segs.len() - 1].0);
    std::fs::write(&last, "").unwrap();
    let e = verify_err(&p6);
    assert!(e.contains("named for seq") || e.contains("holds no events"), "{e}");
}

/// A copy of a log and its segments (and prune record) in a new directory.
fn copy_log(path: &std::path::Path) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(path.parent().unwrap()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let p = dir.path().join(path.file_name().unwrap());
    (dir, p)
}

fn request(before: std::time::SystemTime, retention: Option<&str>) -> PruneRequest {
    PruneRequest {
        before,
        retention: retention.map(|r| Retention::parse(r).unwrap()),
        origin: Origin { task: "prune-1".into(), user: "ops".into(), agent: "prune".into(), ..Origin::default() },
        lock_wait: WAIT,
        signing: None,
    }
}

/// A log whose first segments are older than the returned time, and whose
/// later events (after a pause) are newer.
fn aged_log(retention: Option<&str>) -> (tempfile::TempDir, std::path::PathBuf, std::time::SystemTime) {
    let (d, path) = rotated_log(4, retention);
    std::thread::sleep(Duration::from_millis(200));
    let mark = std::time::SystemTime::now();
    std::thread::sleep(Duration::from_millis(200));
    let mut log = AuditLog::open(&path, WAIT).unwrap();
    log.set_rotate(Some(1024));
    for b in 4..6 {
        append_batch(&mut log, b, retention);
    }
    // Old enough for a retention of one second.
    std::thread::sleep(Duration::from_millis(1300));
    (d, path, mark)
}

fn dir_listing(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn prune_deletes_only_old_segments_records_itself_and_the_log_still_verifies() {
    let (_d, path, mark) = aged_log(Some("1s"));
    let before_segs = crate::read::segments(&path).unwrap();
    let report_before = crate::verify_log(&path, |_, _| {}).unwrap();
    let identity = value(&lines(&before_segs[0].1)[0])["hash"].clone();
    let done = prune(&path, &request(mark, None)).unwrap();
    assert_eq!(done.retention.text, "1s");
    assert_eq!(done.retention_seq, Some(report_before.events - 5), "the newest task-start's retention");
    let record = done.record.clone().unwrap();
    // Only segments whose every event is older than the mark: a prefix.
    let kept = crate::read::segments(&path).unwrap();
    assert!(!record.segments.is_empty() && !kept.is_empty(), "{record:?} {kept:?}");
    assert_eq!(before_segs.len(), record.segments.len() + kept.len());
    assert_eq!(kept[0].0, record.first_kept);
    for (s, (seq, file)) in record.segments.iter().zip(&before_segs) {
        assert_eq!(s.first, *seq);
        assert!(!file.exists(), "{} was deleted", file.display());
        assert!(humantime::parse_rfc3339(&s.newest).unwrap() < mark);
    }
    let first_kept_line = value(&lines(&kept[0].1)[0]);
    assert_eq!(first_kept_line["prev"], record.prev.as_str());
    assert_eq!(record.segments[0].prev, format_hash(&GENESIS));
    // The live file was kept, and ends with the finding that vouches for
    // the record.
    let live = lines(&path);
    let finding = value(live.last().unwrap());
    assert_eq!(finding["kind"], "finding");
    assert_eq!(finding["rule"], crate::prune::PRUNE_RULE);
    assert_eq!(finding["seq"], done.finding_seq.unwrap());
    assert_eq!(finding["user"], "ops");
    let record_line = std::fs::read_to_string(crate::prune::record_path(&path)).unwrap();
    assert_eq!(record_line.lines().count(), 1);
    assert_eq!(finding["content_sha256"], sha256(record_line.trim_end().as_bytes()));
    assert!(finding["reason"].as_str().unwrap().contains(&format!("now starts at seq {}", record.first_kept)));
    // The log verifies from the first kept seq, and keeps its identity.
    let report = crate::verify_log(&path, |_, _| {}).unwrap();
    assert_eq!(report.first_seq, record.first_kept);
    assert_eq!(report.events, report_before.events + 1 - record.first_kept);
    assert_eq!(record.log, identity.as_str().unwrap());

    // Writers continue; a second prune later takes the rest of the old
    // segments and the log still verifies.
    let mut log = AuditLog::open(&path, WAIT).unwrap();
    log.set_rotate(Some(1024));
    append_batch(&mut log, 9, Some("1s"));
    std::thread::sleep(Duration::from_millis(1100));
    let again = prune(&path, &request(std::time::SystemTime::now() - Duration::from_millis(1050), None)).unwrap();
    let second = again.record.unwrap();
    assert_eq!(second.log, record.log, "the identity is carried over");
    assert_eq!(second.segments[0].first, record.first_kept);
    assert_eq!(std::fs::read_to_string(crate::prune::record_path(&path)).unwrap().lines().count(), 2);
    assert_eq!(crate::verify_log(&path, |_, _| {}).unwrap().first_seq, second.first_kept);
    assert!(path.exists(), "never the live file");
}

#[test]
fn prune_refuses_within_the_retention_period_or_without_one_and_changes_nothing() {
    let (_d, path, mark) = aged_log(Some("1h"));
    let before = dir_listing(&path);
    let refused = |req: PruneRequest| match prune(&path, &req) {
        Err(PruneError::Refused(why)) => why,
        other => panic!("{other:?}"),
    };
    let why = refused(request(mark, None));
    assert!(why.contains("within the retention period of 1h (as recorded at seq"), "{why}");
    let why = refused(request(mark, Some("1s")));
    assert!(why.contains("--retention 1s is shorter than the retention 1h"), "{why}");
    assert_eq!(dir_listing(&path), before, "nothing changed");

    // A log that records no retention needs --retention.
    let (_d, path, mark) = aged_log(None);
    let before = dir_listing(&path);
    let refused = |req: PruneRequest| match prune(&path, &req) {
        Err(PruneError::Refused(why)) => why,
        other => panic!("{other:?}"),
    };
    assert!(refused(request(mark, None)).contains("records no retention"));
    assert!(refused(request(mark, Some("1d"))).contains("within the retention period of 1d (as given)"));
    assert_eq!(dir_listing(&path), before);
    let done = prune(&path, &request(mark, Some("1s"))).unwrap();
    assert_eq!((done.retention.text.as_str(), done.retention_seq), ("1s", None));
    assert!(done.record.is_some());
    crate::verify_log(&path, |_, _| {}).unwrap();
}

#[test]
fn nothing_old_enough_prunes_nothing_and_a_broken_log_is_not_pruned() {
    let (_d, path, _mark) = aged_log(Some("1s"));
    let before = dir_listing(&path);
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let done = prune(&path, &request(long_ago, None)).unwrap();
    assert_eq!((done.record, done.finding_seq), (None, None));
    assert_eq!(dir_listing(&path), before);

    let seg = crate::read::segment_path(&path, 0);
    let mut ls = lines(&seg);
    ls[1] = ls[1].replace("src/0/0.rs", "src/0/X.rs");
    write_lines(&seg, &ls);
    let before = dir_listing(&path);
    let now = std::time::SystemTime::now() - Duration::from_millis(1050);
    assert!(matches!(prune(&path, &request(now, None)), Err(PruneError::NotIntact(_))));
    assert_eq!(dir_listing(&path), before, "a tampered segment is not laundered away");
}

#[test]
fn a_forged_or_edited_prune_record_is_reported() {
    let (_d, path, mark) = aged_log(Some("1s"));
    // Segments deleted and a record written by hand: no finding vouches.
    let (_d2, p2) = copy_log(&path);
    let segs = crate::read::segments(&p2).unwrap();
    let first = value(&lines(&segs[1].1)[0]);
    let forged = PruneRecord {
        v: 1,
        log: "sha256:x".into(),
        at: "2026-01-01T00:00:00Z".into(),
        before: "2026-01-01T00:00:00Z".into(),
        retention: "1s".into(),
        first_kept: segs[1].0,
        prev: first["prev"].as_str().unwrap().to_owned(),
        segments: Vec::new(),
        proof: None,
        key: None,
        sig: None,
    };
    std::fs::write(crate::prune::record_path(&p2), serde_json::to_string(&forged).unwrap() + "\n").unwrap();
    std::fs::remove_file(&segs[0].1).unwrap();
    let e = verify_err(&p2);
    assert!(e.contains("no `audit.prune` finding in the chain vouches"), "{e}");

    // A real prune, then its record edited to let the log start later.
    prune(&path, &request(mark, None)).unwrap();
    let mut log = AuditLog::open(&path, WAIT).unwrap();
    log.set_rotate(Some(1024));
    append_batch(&mut log, 7, Some("1s"));
    append_batch(&mut log, 8, Some("1s"));
    crate::verify_log(&path, |_, _| {}).unwrap();
    let kept = crate::read::segments(&path).unwrap();
    assert!(kept.len() >= 2, "{kept:?}");
    let (_d3, p3) = copy_log(&path);
    let rec_path = crate::prune::record_path(&p3);
    let mut rec: PruneRecord = serde_json::from_str(std::fs::read_to_string(&rec_path).unwrap().trim_end()).unwrap();
    rec.first_kept = kept[1].0;
    rec.prev = value(&lines(&kept[1].1)[0])["prev"].as_str().unwrap().to_owned();
    std::fs::write(&rec_path, serde_json::to_string(&rec).unwrap() + "\n").unwrap();
    std::fs::remove_file(crate::read::segment_path(&p3, kept[0].0)).unwrap();
    let e = verify_err(&p3);
    assert!(e.contains("vouches"), "{e}");

    // A kept segment removed after a real prune: not where the record
    // lets the log start.
    let (_d4, p4) = copy_log(&path);
    std::fs::remove_file(crate::read::segment_path(&p4, kept[0].0)).unwrap();
    let e = verify_err(&p4);
    assert!(e.contains(&format!("starts at seq {}", kept[1].0)) && e.contains("does not name"), "{e}");

    // The record file removed after a real prune.
    let (_d5, p5) = copy_log(&path);
    std::fs::remove_file(crate::prune::record_path(&p5)).unwrap();
    assert!(verify_err(&p5).contains("no prune record"));
}
