use super::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(2);

fn event(target: &str) -> Event<'_> {
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
    // A writer refuses to append after a torn tail.
    assert!(matches!(AuditLog::open(&path, WAIT), Err(AuditError::BadTail { .. })));
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
