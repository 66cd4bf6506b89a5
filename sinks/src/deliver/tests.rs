//! Tests of delivery to one sink, over a real TCP connection to a syslog
//! receiver on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::test_log;
use std::io::Read;
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

fn append(log: &Path, n: usize) {
    test_log::append(log, n, None);
}

/// A receiver that accepts connections and sends the `seq` of every
/// octet-counted frame it gets.
fn receiver(listener: TcpListener) -> mpsc::Receiver<u64> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = conn.read_to_end(&mut buf);
                let mut rest = &buf[..];
                while !rest.is_empty() {
                    let sp = rest.iter().position(|b| *b == b' ').unwrap();
                    let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
                    let msg = &rest[sp + 1..sp + 1 + len];
                    let json = &msg[msg.windows(2).position(|w| w == b"] ").unwrap() + 2..];
                    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
                    let _ = tx.send(v["seq"].as_u64().unwrap());
                    rest = &rest[sp + 1 + len..];
                }
            });
        }
    });
    rx
}

fn sink(address: String) -> Sink {
    Sink { name: "siem".into(), target: SinkTarget::Syslog { address } }
}

fn origin() -> Origin {
    Origin { hostname: "h".into(), pid: 1 }
}

fn drain(d: &mut Delivery) -> usize {
    let mut n = 0;
    loop {
        match d.step().unwrap() {
            Step::Sent { events, .. } => n += events,
            Step::Idle => return n,
        }
    }
}

#[test]
fn a_sink_that_was_down_gets_exactly_the_missing_events() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let cp = dir.path().join("audit.jsonl.checkpoints");
    append(&log, 3);
    // A port nobody listens on (bound, then released).
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let mut d = Delivery::open_ambient(&log, &cp, &sink(address.clone()), origin()).unwrap();
    let err = d.step().unwrap_err();
    assert_eq!(err.class, ErrorClass::Unavailable, "{err}");
    assert!(!d.cursor_path().exists(), "nothing delivered, no cursor");
    drop(d);
    // The receiver comes up; the next delivery sends 0..3, then only what is new.
    let listener = TcpListener::bind(&address).unwrap();
    let got = receiver(listener);
    let mut d = Delivery::open_ambient(&log, &cp, &sink(address.clone()), origin()).unwrap();
    assert_eq!(drain(&mut d), 3);
    assert_eq!(d.delivered_through(), Some(2));
    append(&log, 2);
    assert_eq!(drain(&mut d), 2);
    drop(d);
    // A new delivery resumes from the cursor file: nothing to send.
    let mut d = Delivery::open_ambient(&log, &cp, &sink(address), origin()).unwrap();
    assert_eq!(drain(&mut d), 0);
    assert_eq!(d.delivered_through(), Some(4));
    drop(d);
    let seqs: Vec<u64> = (0..5).map(|_| got.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    assert!(got.recv_timeout(Duration::from_millis(200)).is_err(), "no duplicates");
}

#[test]
fn a_cursor_that_does_not_match_refuses_until_reset() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let cp = dir.path().join("audit.jsonl.checkpoints");
    append(&log, 4);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let got = receiver(listener);
    let mut d = Delivery::open_ambient(&log, &cp, &sink(address.clone()), origin()).unwrap();
    assert_eq!(drain(&mut d), 4);
    drop(d);
    // The log is replaced by a shorter one.
    std::fs::remove_file(&log).unwrap();
    append(&log, 2);
    let mut d = Delivery::open_ambient(&log, &cp, &sink(address.clone()), origin()).unwrap();
    let err = d.step().unwrap_err();
    assert_eq!(err.class, ErrorClass::Mismatch, "{err}");
    assert!(err.to_string().contains("is reset"), "{err}");
    // Still refused on the next try: nothing is resent blindly.
    assert_eq!(d.step().unwrap_err().class, ErrorClass::Mismatch);
    // After a reset the new log goes from its start.
    d.reset().unwrap();
    assert_eq!(drain(&mut d), 2);
    drop(d);
    let seqs: Vec<u64> = (0..6).map(|_| got.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 0, 1]);
}

#[test]
fn one_forwarder_per_sink_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let cp = dir.path().join("audit.jsonl.checkpoints");
    append(&log, 1);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let _got = receiver(listener);
    let mut a = Delivery::open_ambient(&log, &cp, &sink(address.clone()), origin()).unwrap();
    assert_eq!(drain(&mut a), 1);
    let mut b = Delivery::open_ambient(&log, &cp, &sink(address), origin()).unwrap();
    assert_eq!(b.step().unwrap_err().class, ErrorClass::Busy);
    drop(a);
    assert_eq!(b.step().unwrap(), Step::Idle);
}

#[test]
fn a_missing_hec_token_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let s = Sink {
        name: "splunk".into(),
        target: SinkTarget::SplunkHec {
            url: url::Url::parse("http://127.0.0.1:9/services/collector/event").unwrap(),
            token_env: "SANDBOX_SINKS_TEST_TOKEN_THAT_IS_NOT_SET".into(),
        },
    };
    let err = Delivery::open_ambient(&log, &log, &s, origin()).unwrap_err();
    assert_eq!(err.class, ErrorClass::Refused);
    assert!(err.to_string().contains("`SANDBOX_SINKS_TEST_TOKEN_THAT_IS_NOT_SET` is not set"), "{err}");
}
