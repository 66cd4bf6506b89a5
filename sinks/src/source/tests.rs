//! Tests of the log and checkpoint readers, on logs written by the real
//! writer (with rotation).

#![allow(clippy::unwrap_used)]

use super::*;
use crate::test_log::{append, append_targets};

fn seqs(lines: &[Line]) -> Vec<u64> {
    lines.iter().map(|l| l.seq).collect()
}

fn read_all(tail: &mut EventTail) -> Vec<Line> {
    let mut out = Vec::new();
    loop {
        let batch = tail.read(3, usize::MAX).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

#[test]
fn events_are_read_in_order_across_rotated_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    append(&log, 10, Some(600));
    assert!(!segments(&log).unwrap().is_empty(), "the writer should have rotated");
    let mut tail = EventTail::resume(&log, None).unwrap();
    let lines = read_all(&mut tail);
    assert_eq!(seqs(&lines), (0..10).collect::<Vec<_>>());
    // Each line is the exact bytes of the log, and its mark names its file.
    for l in &lines {
        let v: serde_json::Value = serde_json::from_slice(&l.bytes).unwrap();
        assert_eq!(v["seq"], l.seq);
        assert_eq!(v["hash"], format_hash(&l.hash));
        let segs = segments(&log).unwrap();
        let path = segs.iter().find(|(s, _)| *s == l.file).map_or(log.clone(), |(_, p)| p.clone());
        let mut f = File::open(path).unwrap();
        assert_eq!(line_at(&mut f, &log, l.offset).unwrap().unwrap(), l.bytes);
    }
    // More events, another rotation meanwhile: the same tail goes on.
    append(&log, 6, Some(600));
    assert_eq!(seqs(&read_all(&mut tail)), (10..16).collect::<Vec<_>>());
    assert!(tail.read(10, usize::MAX).unwrap().is_empty());
}

#[test]
fn resuming_at_a_mark_gives_exactly_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    append(&log, 12, Some(700));
    let all = read_all(&mut EventTail::resume(&log, None).unwrap());
    for at in [0usize, 4, 11] {
        let mark = all[at].mark();
        let rest = read_all(&mut EventTail::resume(&log, Some(&mark)).unwrap());
        assert_eq!(seqs(&rest), (at as u64 + 1..12).collect::<Vec<_>>(), "after {at}");
        // A wrong position hint is searched past.
        let bad = EventMark { offset: mark.offset + 1, file: 0, ..mark.clone() };
        let rest = read_all(&mut EventTail::resume(&log, Some(&bad)).unwrap());
        assert_eq!(seqs(&rest), (at as u64 + 1..12).collect::<Vec<_>>(), "after {at}, bad hint");
    }
    // The byte budget stops a batch early (but always after one line).
    let mut tail = EventTail::resume(&log, None).unwrap();
    assert_eq!(tail.read(100, 1).unwrap().len(), 1);
}

#[test]
fn a_replaced_or_shortened_log_is_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    append(&log, 5, None);
    let all = read_all(&mut EventTail::resume(&log, None).unwrap());
    let mark = all[3].mark();
    // Another log at the same path: the event at the cursor's seq differs.
    std::fs::remove_file(&log).unwrap();
    append_targets(&log, &["x", "y", "z", "w", "v"].map(String::from), None);
    let err = EventTail::resume(&log, Some(&mark)).unwrap_err();
    assert!(matches!(&err, SourceError::Mismatch(m) if m.contains("another event at seq 3")), "{err}");
    // A log that ends before the cursor.
    std::fs::remove_file(&log).unwrap();
    append(&log, 2, None);
    let err = EventTail::resume(&log, Some(&mark)).unwrap_err();
    assert!(matches!(&err, SourceError::Mismatch(m) if m.contains("ends before it")), "{err}");
    // No log at all, with a cursor: also a mismatch, never a silent restart.
    std::fs::remove_file(&log).unwrap();
    assert!(matches!(EventTail::resume(&log, Some(&mark)), Err(SourceError::Mismatch(_))));
}

#[test]
fn an_edited_event_stops_reading_there() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    append(&log, 6, None);
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replacen("src/3.rs", "src/X.rs", 1)).unwrap();
    let mut tail = EventTail::resume(&log, None).unwrap();
    let first = tail.read(3, usize::MAX).unwrap();
    assert_eq!(seqs(&first), vec![0, 1, 2]);
    let err = tail.read(3, usize::MAX).unwrap_err();
    assert!(matches!(&err, SourceError::Mismatch(m) if m.contains("not intact at seq 3")), "{err}");
}

#[test]
fn an_incomplete_last_line_waits() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    append(&log, 2, None);
    let mut tail = EventTail::resume(&log, None).unwrap();
    assert_eq!(read_all(&mut tail).len(), 2);
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, br#"{"v":1,"seq":2"#).unwrap();
    assert!(tail.read(10, usize::MAX).unwrap().is_empty());
}

fn checkpoint(size: u64) -> String {
    format!(r#"{{"log":"sha256:l","size":{size},"head":"sha256:h","ts":"2026-11-23T10:00:00Z","key":"k","sig":"s"}}"#)
}

#[test]
fn checkpoint_lines_follow_their_events_and_must_stay_put() {
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("audit.jsonl.checkpoints");
    let mut tail = CheckpointTail::resume(&cp, None).unwrap();
    assert!(tail.read(10, 0).unwrap().is_empty(), "no file yet: nothing to send");
    std::fs::write(&cp, format!("{}\n{}\n", checkpoint(2), checkpoint(5))).unwrap();
    // Only the checkpoints whose events were sent.
    let got = tail.read(10, 3).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].bytes, checkpoint(2).into_bytes());
    assert!(tail.read(10, 4).unwrap().is_empty());
    let got2 = tail.read(10, 5).unwrap();
    assert_eq!(got2.len(), 1);
    // Resuming after the first line gives the second.
    let mark = got[0].mark();
    let mut again = CheckpointTail::resume(&cp, Some(&mark)).unwrap();
    assert_eq!(again.read(10, 100).unwrap(), got2);
    // A rewritten file is refused.
    std::fs::write(&cp, format!("{}\n", checkpoint(3))).unwrap();
    let err = CheckpointTail::resume(&cp, Some(&mark)).unwrap_err();
    assert!(matches!(err, SourceError::Mismatch(_)), "{err}");
    std::fs::remove_file(&cp).unwrap();
    assert!(matches!(CheckpointTail::resume(&cp, Some(&mark)), Err(SourceError::Mismatch(_))));
}
