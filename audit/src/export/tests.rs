#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::json;

fn src() -> Source {
    Source { host: "build-7".into() }
}

fn call(capability: &str, target: &str, decision: &str) -> Value {
    json!({"v": 1, "seq": 4, "ts": "2026-11-23T10:00:00.123456Z", "kind": "call", "task": "t1", "user": "dana",
           "agent": "probe", "component": "sha256:c", "policy": "sha256:p", "capability": capability,
           "target": target, "decision": decision, "rule": "r", "prev": "sha256:0", "hash": "sha256:h4"})
}

fn result(capability: &str, target: &str, outcome: &str) -> Value {
    json!({"v": 1, "seq": 5, "ts": "2026-11-23T10:00:00.200Z", "kind": "result", "task": "t1", "user": "dana",
           "agent": "probe", "capability": capability, "target": target, "outcome": outcome,
           "bytes_in": 0, "bytes_out": 6, "hash": "sha256:h5"})
}

#[test]
fn hidden_characters_are_controls_format_characters_and_separators() {
    for c in ['\0', '\n', '\r', '\t', '\x1b', '\x7f', '\u{85}', '\u{9b}', '\u{200b}', '\u{200d}', '\u{202e}'] {
        assert!(hidden(c), "{c:?}");
    }
    for c in ['\u{2028}', '\u{2029}', '\u{2066}', '\u{feff}', '\u{ad}', '\u{e0041}', '\u{061c}'] {
        assert!(hidden(c), "{c:?}");
    }
    for c in ['a', ' ', '\\', '|', '=', 'é', '日', '\u{1f600}'] {
        assert!(!hidden(c), "{c:?}");
    }
    assert_eq!(inert("a\nb\x1b[31m\u{202e}c\\d"), "a\\x0ab\\x1b[31m\\u{202e}c\\d");
}

#[test]
fn json_lines_escape_what_json_leaves_raw() {
    let mut out = Vec::new();
    write_json_line(&mut out, &json!({"t": "a\u{202e}b\u{2028}c\u{85}d\u{e0041}é\n"})).unwrap();
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(text, "{\"t\":\"a\\u202eb\\u2028c\\u0085d\\udb40\\udc41é\\n\"}\n");
    let back: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(back["t"], "a\u{202e}b\u{2028}c\u{85}d\u{e0041}é\n", "lossless");
}

#[test]
fn formats_parse_by_name() {
    for f in Format::ALL {
        assert_eq!(f.name().parse::<Format>().unwrap(), f);
    }
    let err = "xml\u{1b}".parse::<Format>().unwrap_err();
    assert_eq!(err, "`xml\\x1b` is not an export format; use one of jsonl, csv, ocsf, cef");
}

#[test]
fn helpers_split_targets() {
    assert_eq!(basename("src/a.txt"), "a.txt");
    assert_eq!(basename("a.txt"), "a.txt");
    assert_eq!(basename("dir/"), "dir");
    assert_eq!(basename(""), ".");
    assert_eq!(http_target("GET http://h/p"), (Some("GET"), "http://h/p"));
    assert_eq!(http_target("http://h/p"), (None, "http://h/p"));
    assert_eq!(http_target("G=T x"), (None, "G=T x"));
    assert_eq!(program("git status --short"), "git");
    assert_eq!(program(r#""my tool" -x"#), "my tool");
    assert_eq!(program(r#""a\"b" c"#), r#"a\"b"#);
    assert_eq!(program(r#""open"#), "open");
}

#[test]
fn assessments_follow_the_decision() {
    let a = |ev: &Value| {
        let a = assess(ev);
        (a.severity, a.status, a.disposition)
    };
    use {Disposition as D, Severity as S, Status as T};
    assert_eq!(a(&call("fs.read", "a", "allow")), (S::Informational, T::Unknown, Some(D::Allowed)));
    assert_eq!(a(&call("fs.write", "a", "ask")), (S::Informational, T::Unknown, Some(D::Pending)));
    for d in ["deny", "invalid", "limit"] {
        assert_eq!(a(&call("fs.read", "a", d)), (S::Medium, T::Failure, Some(D::Blocked)), "{d}");
    }
    assert_eq!(a(&result("fs.read", "a", "ok")), (S::Informational, T::Success, Some(D::Allowed)));
    assert_eq!(a(&result("fs.read", "a", "denied")), (S::Medium, T::Failure, Some(D::Blocked)));
    assert_eq!(a(&result("fs.write", "a", "not-approved")), (S::Low, T::Failure, Some(D::Blocked)));
    assert_eq!(a(&result("fs.read", "a", "not-found")), (S::Low, T::Failure, Some(D::Allowed)));
    let end = |status: &str, code: i64| json!({"kind": "task-end", "status": status, "exit_code": code});
    assert_eq!(a(&end("exit", 0)), (S::Informational, T::Success, None));
    assert_eq!(a(&end("exit", 1)), (S::Low, T::Failure, None));
    assert_eq!(a(&end("audit-failure", 126)), (S::High, T::Failure, None));
    assert_eq!(a(&end("time-limit", 124)), (S::Medium, T::Failure, None));
    assert_eq!(a(&json!({"kind": "finding", "rule": "audit.torn-tail"})).0, S::High);
    assert_eq!(a(&json!({"kind": "finding"})).0, S::Medium);
    assert_eq!(a(&json!({"kind": "approval", "decision": "rejected"})), (S::Low, T::Failure, Some(D::Blocked)));
}

// ------------------------------------------------------------------- csv

#[test]
fn csv_cells_defuse_formulas_and_show_controls() {
    assert_eq!(csv::cell("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
    for lead in ["+1", "-rf", "@SUM(A1)"] {
        assert_eq!(csv::cell(lead), format!("'{lead}"));
    }
    assert_eq!(csv::cell("\tx"), "\\x09x", "a tab is shown, so the cell no longer starts with it");
    assert_eq!(csv::cell("a\r\nb"), "a\\x0d\\x0ab");
    assert_eq!(csv::cell("src/a.txt"), "src/a.txt");
    assert_eq!(csv::cell("x=1"), "x=1");
}

#[test]
fn csv_records_have_the_fixed_columns_and_read_back() {
    let mut ev = call("fs.read", "a,\"b\"\n=c", "deny");
    ev["user"] = json!("-dana");
    let end = json!({"seq": 9, "ts": "2026-11-23T10:00:01Z", "kind": "task-end", "task": "t1", "status": "exit"});
    let mut out = Vec::new();
    let mut ex = Exporter::new(Format::Csv, src(), &mut out).unwrap();
    ex.write(b"", &ev).unwrap();
    ex.write(b"", &end).unwrap();
    ex.flush().unwrap();
    drop(ex);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches("\r\n").count(), 3, "RFC 4180 line ends, one record per line:\n{text}");
    let mut r = ::csv::Reader::from_reader(text.as_bytes());
    assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), COLUMNS);
    let rows: Vec<Vec<String>> = r.records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect();
    assert_eq!(
        rows[0],
        [
            "4",
            "2026-11-23T10:00:00.123456Z",
            "call",
            "t1",
            "'-dana",
            "probe",
            "fs.read",
            "a,\"b\"\\x0a=c",
            "deny",
            "r",
            ""
        ]
    );
    assert_eq!(rows[1][10], "exit", "a task-end's status is its outcome");
}

// ------------------------------------------------------------------- cef

#[test]
fn cef_lines_escape_header_and_extension() {
    let mut ev = call("fs.read", "a|b=c\\d\ne\x1b\u{202e}", "deny");
    ev["reason"] = json!("no\r\nway");
    let line = to_cef(&ev, &src());
    assert!(!line.contains('\n') && !line.contains('\r') && !line.chars().any(hidden), "{line}");
    assert!(line.starts_with("CEF:0|sandbox|sandbox|"), "{line}");
    assert!(
        line.contains("|call:fs.read|call fs.read: deny|5|rt=1795428000123 externalId=4 cat=fs.read act=deny"),
        "{line}"
    );
    assert!(line.contains(" outcome=failure suser=dana dvchost=build-7 reason=no\\r\\nway "), "{line}");
    assert!(line.contains(r" fname=a|b\=c\\d\ne\\x1b\\u{202e} filePath=a|b\=c\\d\ne\\x1b\\u{202e} "), "{line}");
    assert!(line.contains(" cs1=t1 cs1Label=task cs2=probe cs2Label=agent cs3=r cs3Label=rule "), "{line}");
    assert!(line.ends_with(r" flexString2=a|b\=c\\d\ne\\x1b\\u{202e} flexString2Label=target"), "{line}");

    let mut header = String::new();
    cef::header(&mut header, "a|b\\c\nd");
    assert_eq!(header, r"a\|b\\c\\x0ad");
}

#[test]
fn cef_maps_renames_http_and_commands() {
    let mut ren = call("fs.rename", "old/a.txt", "allow");
    ren["dest"] = json!("new/b.txt");
    let line = to_cef(&ren, &src());
    assert!(line.contains("oldFileName=a.txt oldFilePath=old/a.txt fname=b.txt filePath=new/b.txt"), "{line}");
    let mut http = result("http.send", "GET http://127.0.0.1:8080/api?q=", "ok");
    http["status_code"] = json!(200);
    http["peer"] = json!("127.0.0.1:8080");
    let line = to_cef(&http, &src());
    assert!(line.contains("requestMethod=GET request=http://127.0.0.1:8080/api?q\\= dst=127.0.0.1 dpt=8080"), "{line}");
    assert!(line.contains("in=0 out=6 cn2=200 cn2Label=http_status"), "{line}");
    let mut cmd = result("process.run", "git status", "ok");
    cmd["exit_code"] = json!(0);
    let line = to_cef(&cmd, &src());
    assert!(line.contains("dproc=git "), "{line}");
    assert!(line.contains("cn1=0 cn1Label=exit_code"), "{line}");
    let approval = json!({"seq": 6, "ts": "2026-11-23T10:00:00Z", "kind": "approval", "capability": "fs.write",
                          "target": "a", "decision": "approved", "approval": {"via": "tty", "by": ["ann", "bo"]}});
    let line = to_cef(&approval, &src());
    assert!(line.contains("|approval:fs.write|approval fs.write: approved|1|"), "{line}");
    assert!(line.contains("cs5=ann, bo cs5Label=reviewers flexString1=tty flexString1Label=approval_via"), "{line}");
}

// ------------------------------------------------------------------ ocsf

#[test]
fn ocsf_classes_and_activities() {
    let cases = [
        (call("fs.read", "src/a.txt", "allow"), 1001, 2),
        (call("fs.list-dir", "src", "allow"), 1001, 2),
        (call("fs.write", "a", "ask"), 1001, 3),
        (call("fs.append", "a", "allow"), 1001, 3),
        (call("fs.create-dir", "d", "allow"), 1001, 1),
        (call("fs.remove", "a", "allow"), 1001, 4),
        (call("fs.rename", "a", "allow"), 1001, 5),
        (call("fs.stat", "a", "allow"), 1001, 8),
        (call("http.send", "GET http://h/", "allow"), 4002, 3),
        (call("http.send", "POST http://h/", "allow"), 4002, 6),
        (call("http.send", "PATCH http://h/", "allow"), 4002, 99),
        (call("process.run", "git status", "allow"), 1007, 1),
        (call("fs.changes", "2 files", "ask"), 6003, 99),
        (json!({"seq": 0, "ts": "2026-11-23T10:00:00Z", "kind": "task-start"}), 6003, 1),
        (json!({"seq": 0, "ts": "2026-11-23T10:00:00Z", "kind": "task-end", "status": "exit"}), 6003, 99),
        (json!({"seq": 0, "ts": "2026-11-23T10:00:00Z", "kind": "approval", "decision": "approved"}), 6003, 99),
        (json!({"seq": 0, "ts": "2026-11-23T10:00:00Z", "kind": "finding", "reason": "x"}), 2004, 1),
        (json!({"seq": 0, "ts": "2026-11-23T10:00:00Z", "kind": "something-new"}), 6003, 99),
    ];
    for (ev, class, activity) in cases {
        let o = to_ocsf("{}", &ev, &src());
        assert_eq!((o["class_uid"].as_u64(), o["activity_id"].as_u64()), (Some(class), Some(activity)), "{ev}");
        assert_eq!(o["type_uid"].as_u64(), Some(class * 100 + activity), "{ev}");
        assert_eq!(o["category_uid"].as_u64(), Some(class / 1000), "{ev}");
        assert_eq!(o["metadata"]["version"], OCSF_VERSION);
        assert_eq!(o["raw_data"], "{}");
    }
}

#[test]
fn ocsf_file_activity_fields() {
    let mut ev = call("fs.rename", "src/a.txt", "deny");
    ev["dest"] = json!("out/b.txt");
    let o = to_ocsf("LINE", &ev, &src());
    assert_eq!(o["time"], 1_795_428_000_123u64, "milliseconds since the epoch");
    assert_eq!(o["file"], json!({"name": "a.txt", "path": "src/a.txt", "type_id": 0, "type": "Unknown"}));
    assert_eq!(o["file_result"]["path"], "out/b.txt");
    assert_eq!((o["disposition_id"].as_u64(), o["action_id"].as_u64()), (Some(2), Some(2)));
    assert_eq!((o["status_id"].as_u64(), o["severity_id"].as_u64()), (Some(2), Some(3)));
    assert_eq!(o["actor"], json!({"user": {"name": "dana"}, "app_name": "probe"}));
    assert_eq!(o["device"]["hostname"], "build-7");
    assert_eq!(o["policy"], json!({"name": "r", "uid": "sha256:p"}));
    assert_eq!(o["metadata"]["uid"], "sha256:h4");
    assert_eq!(o["metadata"]["sequence"], 4);
    assert_eq!(o["metadata"]["correlation_uid"], "t1");
    let mut w = call("fs.write", "a.txt", "allow");
    w["size"] = json!(6);
    w["content_sha256"] = json!("sha256:abcd");
    let o = to_ocsf("", &w, &src());
    assert_eq!(o["file"]["size"], 6);
    assert_eq!(o["file"]["hashes"], json!([{"algorithm_id": 3, "algorithm": "SHA-256", "value": "abcd"}]));
    assert_eq!((o["disposition_id"].as_u64(), o["status_id"].as_u64()), (Some(1), Some(0)));
}

#[test]
fn ocsf_http_process_api_and_finding_fields() {
    let mut ev = result("http.send", "GET http://127.0.0.1:8080/api/json?q=", "ok");
    ev["status_code"] = json!(200);
    ev["peer"] = json!("127.0.0.1:8080");
    let o = to_ocsf("", &ev, &src());
    assert_eq!(o["http_request"]["http_method"], "GET");
    let url = &o["http_request"]["url"];
    assert_eq!(url["url_string"], "http://127.0.0.1:8080/api/json?q=");
    assert_eq!(
        (url["hostname"].as_str(), url["port"].as_u64(), url["path"].as_str()),
        (Some("127.0.0.1"), Some(8080), Some("/api/json"))
    );
    assert_eq!(o["http_response"], json!({"code": 200}));
    assert_eq!(o["dst_endpoint"], json!({"ip": "127.0.0.1", "port": 8080}));
    assert_eq!(o["status_id"], 1);

    let mut ev = call("process.run", "echo \"a b\"", "allow");
    ev["resolved"] = json!("/usr/bin/echo");
    ev["cwd"] = json!("sub");
    let o = to_ocsf("", &ev, &src());
    assert_eq!(o["process"]["name"], "echo");
    assert_eq!(o["process"]["cmd_line"], "echo \"a b\"");
    assert_eq!(o["process"]["uid"], "t1:4");
    assert_eq!(o["process"]["file"]["path"], "/usr/bin/echo");
    assert_eq!(o["process"]["working_directory"], "sub");

    let ap = json!({"seq": 7, "ts": "2026-11-23T10:00:00Z", "kind": "approval", "capability": "fs.write",
                    "target": "notes/n.txt", "decision": "rejected", "reason": "no",
                    "approval": {"via": "http://127.0.0.1:8700", "by": ["ann"], "at": "x", "request": "req-1"}});
    let o = to_ocsf("", &ap, &src());
    assert_eq!(o["api"]["operation"], "approval");
    assert_eq!(o["api"]["request"]["uid"], "req-1");
    assert_eq!(o["activity_name"], "Reject");
    assert_eq!(o["resources"], json!([{"name": "notes/n.txt", "type": "fs.write"}]));
    assert_eq!(o["src_endpoint"]["hostname"], "build-7");
    assert_eq!((o["disposition_id"].as_u64(), o["status_id"].as_u64()), (Some(2), Some(2)));

    let f = json!({"seq": 0, "ts": "2026-11-23T10:00:00Z", "kind": "finding", "rule": "audit.torn-tail",
                   "reason": "cut 12 bytes", "hash": "sha256:f"});
    let o = to_ocsf("", &f, &src());
    assert_eq!(o["finding_info"]["uid"], "sha256:f");
    assert_eq!(o["finding_info"]["title"], "cut 12 bytes");
    assert_eq!(o["finding_info"]["analytic"]["name"], "audit.torn-tail");
    assert_eq!((o["status_id"].as_u64(), o["severity_id"].as_u64()), (Some(1), Some(4)));
    assert!(o.get("disposition_id").is_none());
}

// ---------------------------------------------------------------- export

fn log_with(lines: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    std::fs::write(&log, lines.concat()).unwrap();
    (dir, log)
}

const A: &str = "{\"v\":1,\"seq\":0,\"ts\":\"2026-11-23T10:00:00.000000Z\",\"kind\":\"call\",\"task\":\"t1\",\"user\":\"ann\",\"capability\":\"fs.read\",\"target\":\"a\",\"decision\":\"deny\"}\n";
const B: &str = "{\"v\":1,\"seq\":1,\"ts\":\"2026-11-23T10:00:01.000000Z\", \"kind\":\"call\",\"task\":\"t2\",\"user\":\"bo\",\"capability\":\"fs.read\",\"target\":\"b\",\"decision\":\"allow\"}\n";

#[test]
fn jsonl_copies_lines_byte_for_byte_and_filters_apply() {
    let (_d, log) = log_with(&[A, B]);
    let run = |filter: Filter| {
        let mut out = Vec::new();
        let mut ex = Exporter::new(Format::Jsonl, src(), &mut out).unwrap();
        let counts = export(&log, &filter, &mut ex).unwrap();
        drop(ex);
        (String::from_utf8(out).unwrap(), counts)
    };
    assert_eq!(run(Filter::default()), (format!("{A}{B}"), Counts { read: 2, exported: 2 }));
    let only_bo = Filter { user: Some("bo".into()), ..Filter::default() };
    assert_eq!(run(only_bo), (B.to_owned(), Counts { read: 2, exported: 1 }));
}

#[test]
fn a_line_that_is_not_an_event_stops_the_export_naming_it() {
    for (bad, why) in [
        ("not json\n", "not an audit event (expected ident"),
        ("[1]\n", "not an audit event (not an object)"),
        ("{\"seq\":2,\"kind\":\"call\"}\n", "not an audit event (no RFC 3339 `ts`)"),
        ("{\"seq\":-1,\"ts\":\"2026-11-23T10:00:00Z\",\"kind\":\"call\"}\n", "not an audit event (no `seq`)"),
        ("{\"seq\":2,\"ts\":\"2026-11-23T10:00:00Z\"}\n", "not an audit event (no `kind`)"),
        ("{\"seq\":2,\"ts\":\"2026-11-23T10:00:00Z\",\"kind\":\"call\"}", "the line is incomplete (no newline)"),
    ] {
        // An incomplete line can only be the last.
        let after = if bad.ends_with('\n') { B } else { "" };
        let (_d, log) = log_with(&[A, bad, after]);
        let mut out = Vec::new();
        let mut ex = Exporter::new(Format::Ocsf, src(), &mut out).unwrap();
        let err = export(&log, &Filter::default(), &mut ex).unwrap_err().to_string();
        drop(ex);
        assert!(err.contains("audit.jsonl` line 2: ") && err.contains(why), "{bad:?}: {err}");
        let written = String::from_utf8(out).unwrap();
        assert_eq!(written.lines().count(), 1, "the event before it stays written, flushed: {written}");
    }
}

#[test]
fn a_failing_output_is_an_error_of_its_kind_in_every_format() {
    struct Failing(io::ErrorKind);
    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(self.0))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let (_d, log) = log_with(&[A]);
    for format in Format::ALL {
        for kind in [io::ErrorKind::StorageFull, io::ErrorKind::BrokenPipe] {
            let mut ex = Exporter::new(format, src(), Failing(kind)).unwrap();
            let err = export(&log, &Filter::default(), &mut ex).unwrap_err();
            // The kind survives the csv and serde_json writers, so that the
            // command can end quietly on a closed pipe.
            assert!(matches!(&err, ExportError::Write(e) if e.kind() == kind), "{format:?}: {err:?}");
        }
        let mut ex = Exporter::new(format, src(), Failing(io::ErrorKind::StorageFull)).unwrap();
        let err = export(&log, &Filter::default(), &mut ex).unwrap_err();
        assert_eq!(err.to_string(), "cannot write the export: no storage space");
    }
}

// ------------------------------------------------------- the OCSF schema

/// The vendored JSON Schema of an OCSF class (see tests/ocsf/SOURCE.md).
fn class_schema(class_uid: u64) -> Value {
    let (_, name) = OCSF_CLASSES.iter().find(|(uid, _)| *uid == class_uid).unwrap();
    let path = format!("{}/tests/ocsf/{OCSF_VERSION}/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Validates `o` against its class's schema; the errors, if any.
fn schema_errors(o: &Value) -> Vec<String> {
    schema_errors_as(o["class_uid"].as_u64().unwrap(), o)
}

/// Validates `o` against the schema of `class_uid`.
fn schema_errors_as(class_uid: u64, o: &Value) -> Vec<String> {
    let schema = class_schema(class_uid);
    let validator = jsonschema::validator_for(&schema).unwrap();
    validator.iter_errors(o).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

/// One event of every kind and capability the runtime writes, with the
/// fields it gives them.
fn every_kind_of_event() -> Vec<Value> {
    let mut evs = Vec::new();
    let start = json!({"v": 1, "seq": 0, "ts": "2026-11-23T10:00:00Z", "kind": "task-start", "task": "t1",
                       "user": "dana", "agent": "probe", "component": "sha256:c", "policy": "sha256:p",
                       "manifest": "policies/probe.toml", "intent": "TICKET-1", "hash": "sha256:h0"});
    evs.push(start);
    for c in ["fs.read", "fs.list-dir", "fs.stat", "fs.write", "fs.append", "fs.create-dir", "fs.remove", "fs.rename"] {
        for d in ["allow", "deny", "invalid", "limit", "ask"] {
            let mut ev = call(c, "src/a.txt", d);
            if c == "fs.rename" {
                ev["dest"] = json!("src/b.txt");
            }
            if c == "fs.write" {
                ev["size"] = json!(6);
                ev["content_sha256"] = json!("sha256:ab12");
            }
            evs.push(ev);
        }
        for o in ["ok", "denied", "not-found", "not-approved", "io"] {
            evs.push(result(c, "src/a.txt", o));
        }
    }
    for t in ["GET http://127.0.0.1:8080/api?q=1", "PATCH https://h.example/x", "GET not a url", ""] {
        evs.push(call("http.send", t, "allow"));
        let mut r = result("http.send", t, "ok");
        r["status_code"] = json!(404);
        r["peer"] = json!("127.0.0.1:8080");
        evs.push(r);
    }
    for t in ["git status --short", "\"my tool\" -x", ""] {
        let mut ev = call("process.run", t, "deny");
        ev["cwd"] = json!("sub");
        ev["resolved"] = json!("/usr/bin/git");
        evs.push(ev);
        let mut r = result("process.run", t, "ok");
        r["exit_code"] = json!(1);
        evs.push(r);
    }
    evs.push(call("fs.changes", "2 files", "ask"));
    for d in ["approved", "rejected"] {
        evs.push(json!({"seq": 6, "ts": "2026-11-23T10:00:00Z", "kind": "approval", "task": "t1", "user": "dana",
                        "capability": "fs.write", "target": "a", "decision": d, "reason": "ok",
                        "approval": {"via": "http://127.0.0.1:8700", "by": ["ann"], "at": "x", "request": "r1"}}));
    }
    for (status, code) in [("exit", 0), ("exit", 1), ("time-limit", 124), ("audit-failure", 126)] {
        evs.push(json!({"seq": 9, "ts": "2026-11-23T10:00:01Z", "kind": "task-end", "task": "t1", "user": "dana",
                        "status": status, "exit_code": code, "calls": 3, "reason": "why"}));
    }
    evs.push(json!({"seq": 0, "ts": "2026-11-23T10:00:00Z", "kind": "finding", "task": "t1", "user": "dana",
                    "rule": "audit.torn-tail", "reason": "cut 12 bytes", "size": 12, "content_sha256": "ab",
                    "hash": "sha256:f"}));
    evs.push(json!({"seq": 0, "ts": "2026-11-23T10:00:00Z", "kind": "finding", "task": "t1", "user": "dana",
                    "target": "audit.jsonl.pruned", "rule": "audit.prune"}));
    evs.push(json!({"seq": 0, "ts": "2026-11-23T10:00:00Z", "kind": "something-new", "task": "t1"}));
    evs
}

#[test]
fn ocsf_objects_of_every_kind_validate_against_the_class_schemas() {
    let mut classes = std::collections::BTreeSet::new();
    for ev in every_kind_of_event() {
        let o = to_ocsf(&ev.to_string(), &ev, &src());
        let errors = schema_errors(&o);
        assert!(errors.is_empty(), "{ev}\n{o}\n{errors:#?}");
        let (class, activity) = (o["class_uid"].as_u64().unwrap(), o["activity_id"].as_u64().unwrap());
        assert_eq!(o["type_uid"].as_u64(), Some(class * 100 + activity), "{o}");
        assert_eq!(o["raw_data"], ev.to_string(), "the original event is kept");
        classes.insert(class);
    }
    assert_eq!(classes.into_iter().collect::<Vec<_>>(), [1001, 1007, 2004, 4002, 6003]);
}

#[test]
fn the_schemas_refuse_a_missing_required_attribute_or_an_invented_one() {
    let cases = [
        (call("fs.read", "a", "allow"), &["file", "actor", "device"][..], &["file/name", "file/type_id"][..]),
        (call("process.run", "git status", "allow"), &["process", "actor"], &["process/uid"]),
        (call("http.send", "GET http://h/", "allow"), &[], &["http_request/url/port"]),
        (
            json!({"seq": 0, "ts": "2026-11-23T10:00:00Z", "kind": "task-start", "user": "u"}),
            &["api", "src_endpoint"],
            &["api/operation", "actor/user"],
        ),
        (
            json!({"seq": 0, "ts": "2026-11-23T10:00:00Z", "kind": "finding", "rule": "x"}),
            &["finding_info"],
            &["finding_info/uid", "finding_info/analytic/type_id"],
        ),
    ];
    let base = ["class_uid", "category_uid", "activity_id", "type_uid", "time", "severity_id", "metadata"];
    for (ev, own, nested) in cases {
        let o = to_ocsf("", &ev, &src());
        let class = o["class_uid"].as_u64().unwrap();
        let errors = |o: &Value| schema_errors_as(class, o);
        assert!(errors(&o).is_empty(), "{o}");
        for key in base.iter().chain(own) {
            let mut broken = o.clone();
            assert!(broken.as_object_mut().unwrap().remove(*key).is_some(), "{key} in {o}");
            assert!(!errors(&broken).is_empty(), "without {key} it must fail: {broken}");
        }
        for path in nested.iter().chain(&["metadata/product", "metadata/version"]) {
            let mut broken = o.clone();
            let (parent, key) = path.rsplit_once('/').unwrap();
            let removed = broken.pointer_mut(&format!("/{parent}")).unwrap().as_object_mut().unwrap().remove(key);
            assert!(removed.is_some(), "{path} in {o}");
            // A process or user without its only identifier, an endpoint
            // without its port (still valid: port is recommended) ...
            if *path == "http_request/url/port" {
                assert!(errors(&broken).is_empty(), "{broken}");
            } else {
                assert!(!errors(&broken).is_empty(), "without {path} it must fail: {broken}");
            }
        }
        let mut invented = o.clone();
        invented["disposition_idd"] = json!(1);
        assert!(!errors(&invented).is_empty(), "an attribute outside the class fails");
        let mut wrong = o.clone();
        wrong["time"] = json!("2026-11-23T10:00:00Z");
        assert!(!errors(&wrong).is_empty(), "time must be milliseconds");
        let mut wrong = o.clone();
        wrong["class_uid"] = json!(1002);
        assert!(!errors(&wrong).is_empty(), "a class_uid of another class fails");
    }
}
