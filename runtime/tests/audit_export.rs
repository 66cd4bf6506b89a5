//! `sandbox audit export`: the real `sandbox` binary exports the log of
//! real `probe` runs (allowed and denied reads and writes, a rename, HTTP
//! to a local server, a command, hostile text in paths, URLs, arguments,
//! the intent and the user) as jsonl, csv, ocsf and cef, and every format
//! is read back with a real parser: the lines as stored byte for byte; the
//! `csv` crate; the vendored OCSF 1.5.0 JSON Schemas with `jsonschema`; a
//! CEF parser written here from the specification. Filters apply; a line
//! that is not an event stops the export (exit 2) naming it; a log that
//! does not verify is exported whole and reported (exit 1); rotated
//! segments are exported in order.

#![allow(clippy::unwrap_used)]

mod common;
use common::http_server::HttpServer;
use common::*;
use sandbox_audit::export::{COLUMNS, OCSF_CLASSES, OCSF_VERSION, hidden, inert};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

/// Reads under `docs/` (but `docs/secret/`), auto-approved writes under
/// `out/`, GET under the server's `/api/`, and `echo` with any arguments.
fn manifest(server: &HttpServer, extra: &str) -> String {
    format!(
        r#"
name = "export-tests"

[fs]
read = ["docs/**", "out/**"]
write = ["out/**"]
auto_approve = ["out/**"]
deny = ["docs/secret/**"]

[http]
allow_private = ["127.0.0.1/32"]

[[http.allow]]
url = "{}/api/**"

[[process.allow]]
program = "echo"
path = "/usr/bin/echo"
args = ["*"]
approval = "never"
{extra}"#,
        server.base()
    )
}

const FORMULA: &str = "=cmd|' /C calc'!A0";
const BIDI: &str = "docs/report\u{202e}txt.exe";
const FORGE: &str = "docs/a b=c|d\\e act=allow\nCEF:0|forged|x|1|1|1|1|";
const INTENT: &str = "=HYPERLINK(\"http://evil.example/\")\r\nsuser=root cs1=forged";
const HOSTILE_USER: &str = "@SUM(1+1)*cmd|' /C calc'!A0";

/// A fixture and the log of two runs of `probe`: one with every kind of
/// call, one as a hostile user.
fn real_log(server: &HttpServer, extra: &str) -> Fixture {
    let f = Fixture::new(&manifest(server, extra));
    f.file("docs/a.txt", "hello\n").file("docs/secret/key.txt", "KEY\n").file("out/o.txt", "old\n");
    let ok = server.url("/api/json");
    let refused = server.url("/private/x");
    let hostile_url = server.url("/api/json?q==cmd|calc&x=1%0aCEF:0|x");
    #[rustfmt::skip]
    let ops: Vec<&str> = vec![
        "intent", INTENT,
        "+", "read", "docs/a.txt",
        "+", "read", "docs/secret/key.txt",
        "+", "read", FORMULA,
        "+", "read", BIDI,
        "+", "read", FORGE,
        "+", "write", "out/o.txt", "new",
        "+", "write", "docs/w.txt", "no",
        "+", "rename", "out/o.txt", "out/p.txt",
        "+", "mkdir", "out/d",
        "+", "list", "docs",
        "+", "http", &ok,
        "+", "http", &refused,
        "+", "http", &hostile_url,
        "+", "run", "echo", "a|b=c", "-x",
        "+", "run", "sh", "-c", "id",
    ];
    let r = f.run("probe", &ops);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.line(&label(&["read", "docs/a.txt"])).starts_with("ok"), "{r:?}");
    assert!(r.line(&label(&["read", "docs/secret/key.txt"])).starts_with("denied"), "{r:?}");
    assert!(r.line(&label(&["http", &ok])).starts_with("ok status 200"), "{r:?}");
    assert!(r.line(&label(&["run", "echo", "a|b=c", "-x"])).starts_with("ok"), "{r:?}");
    let mut c = sandbox();
    c.arg("run").arg(guest("probe")).arg("--manifest").arg(f.manifest()).args(["--user", HOSTILE_USER]);
    c.args(["--", "read", "docs/a.txt", "+", "read", "docs/secret/key.txt"]);
    let r = Run::from_output(c.stdin(Stdio::null()).output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(f.verify().code, 0);
    f
}

/// `sandbox audit export LOG ARGS...`.
fn export(log: &Path, args: &[&str]) -> Run {
    Run::from_output(sandbox().args(["audit", "export"]).arg(log).args(args).output().unwrap())
}

/// `sandbox audit export LOG --format FORMAT ARGS...`, which must succeed.
fn export_ok(log: &Path, format: &str, args: &[&str]) -> String {
    let r = export(log, &[&["--format", format][..], args].concat());
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{format} {args:?}");
    r.stdout
}

fn text<'a>(ev: &'a Value, key: &str) -> &'a str {
    ev[key].as_str().unwrap_or("")
}

// ------------------------------------------------------------------ jsonl

#[test]
fn jsonl_is_the_log_byte_for_byte() {
    let s = HttpServer::start();
    let f = real_log(&s, "");
    let log = std::fs::read_to_string(f.audit()).unwrap();
    assert_eq!(export_ok(&f.audit(), "jsonl", &[]), log);
    // Every capability and kind is there, and the hostile text is in it
    // exactly (the log escapes it as JSON).
    let events = f.events();
    for c in ["fs.read", "fs.write", "fs.rename", "fs.create-dir", "fs.list-dir", "http.send", "process.run"] {
        assert!(events.iter().any(|e| e["capability"] == c), "{c}");
    }
    for t in [FORMULA, BIDI, FORGE] {
        assert!(events.iter().any(|e| e["target"] == t), "{t:?}");
    }
    assert!(events.iter().any(|e| e["intent"] == INTENT));
    assert!(events.iter().any(|e| e["user"] == HOSTILE_USER));
    assert!(!log.chars().any(|c| hidden(c) && c != '\n'), "the log itself has nothing hidden raw");
}

// -------------------------------------------------------------------- csv

#[test]
fn csv_reads_back_one_record_per_event_with_formulas_defused() {
    let s = HttpServer::start();
    let f = real_log(&s, "");
    let events = f.events();
    let out = export_ok(&f.audit(), "csv", &[]);
    assert_eq!(out.matches("\r\n").count(), events.len() + 1, "one line per record:\n{out}");
    let mut r = csv::ReaderBuilder::new().from_reader(out.as_bytes());
    assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), COLUMNS);
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), events.len());
    for (row, ev) in rows.iter().zip(&events) {
        assert_eq!(row.len(), COLUMNS.len(), "{row:?}");
        assert_eq!(&row[0], ev["seq"].to_string(), "{row:?}");
        for (cell, column) in row.iter().zip(COLUMNS) {
            assert!(!cell.chars().any(hidden), "{column}: {cell:?}");
            assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "{column}: {cell:?}");
        }
        // The cell is the field with hidden characters shown, and a `'`
        // before what a spreadsheet would evaluate.
        let shown = |k: &str| {
            let s = inert(text(ev, k));
            if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s }
        };
        assert_eq!(&row[4], shown("user"));
        assert_eq!(&row[7], shown("target"));
        assert_eq!(&row[8], text(ev, "decision"));
    }
    let cells: Vec<&str> = rows.iter().flat_map(|r| r.iter()).collect();
    assert!(cells.contains(&"'=cmd|' /C calc'!A0"), "{cells:?}");
    assert!(cells.contains(&"'@SUM(1+1)*cmd|' /C calc'!A0"));
    assert!(cells.contains(&"docs/report\\u{202e}txt.exe"));
    assert!(cells.contains(&"docs/a b=c|d\\e act=allow\\x0aCEF:0|forged|x|1|1|1|1|"));
}

// ------------------------------------------------------------------- ocsf

/// The vendored OCSF JSON Schema of a class (audit/tests/ocsf/SOURCE.md).
fn validator(class_uid: u64) -> jsonschema::Validator {
    let (_, name) = OCSF_CLASSES.iter().find(|(uid, _)| *uid == class_uid).unwrap();
    let path = repo().join("audit/tests/ocsf").join(OCSF_VERSION).join(format!("{name}.json"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

#[test]
fn ocsf_validates_against_the_schema_and_keeps_every_event() {
    let s = HttpServer::start();
    let f = real_log(&s, "");
    let log = std::fs::read_to_string(f.audit()).unwrap();
    let out = export_ok(&f.audit(), "ocsf", &[]);
    assert!(!out.chars().any(|c| hidden(c) && c != '\n'), "nothing hidden raw in the output");
    let validators: BTreeMap<u64, jsonschema::Validator> =
        OCSF_CLASSES.iter().map(|(c, _)| (*c, validator(*c))).collect();
    let mut classes = BTreeMap::new();
    assert_eq!(out.lines().count(), log.lines().count());
    for (line, stored) in out.lines().zip(log.lines()) {
        let o: Value = serde_json::from_str(line).unwrap();
        let ev: Value = serde_json::from_str(stored).unwrap();
        let class = o["class_uid"].as_u64().unwrap();
        let errors: Vec<String> = validators[&class].iter_errors(&o).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{o}\n{errors:#?}");
        assert_eq!(o["type_uid"].as_u64(), Some(class * 100 + o["activity_id"].as_u64().unwrap()));
        assert_eq!(o["raw_data"], stored, "the event as stored, so its hash can be rechecked");
        assert_eq!(o["metadata"]["version"], "1.5.0");
        assert_eq!(o["metadata"]["sequence"], ev["seq"]);
        assert_eq!(o["actor"]["user"]["name"], ev["user"]);
        let want = match (text(&ev, "kind"), text(&ev, "capability")) {
            ("call" | "result", "http.send") => 4002,
            ("call" | "result", "process.run") => 1007,
            ("call" | "result", c) if c.starts_with("fs.") => 1001,
            _ => 6003,
        };
        assert_eq!(class, want, "{ev}");
        *classes.entry(class).or_insert(0) += 1;
        match text(&ev, "decision") {
            "deny" | "invalid" => {
                assert_eq!((o["disposition_id"].as_u64(), o["status_id"].as_u64()), (Some(2), Some(2)))
            }
            "allow" => assert_eq!(o["disposition_id"], 1),
            _ => {}
        }
        // The hostile text is data in its attribute, nothing more.
        if text(&ev, "target") == FORGE && ev["kind"] == "call" {
            assert_eq!(o["file"]["path"], FORGE);
        }
    }
    assert_eq!(classes.keys().copied().collect::<Vec<_>>(), [1001, 1007, 4002, 6003], "{classes:?}");
    let http: Vec<Value> =
        out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|o| o["class_uid"] == 4002).collect();
    let ok = http.iter().find(|o| o["http_response"]["code"] == 200).unwrap();
    assert_eq!(ok["http_request"]["http_method"], "GET");
    assert_eq!(ok["http_request"]["url"]["port"], s.port());
    assert_eq!(ok["dst_endpoint"]["ip"], "127.0.0.1");
}

// -------------------------------------------------------------------- cef

/// One CEF line parsed by the specification: seven `|`-separated header
/// fields (`\|` and `\\` escaped) and `key=value` extension pairs (`\=`,
/// `\\`, `\n`, `\r` escaped in values; a key is the word before an
/// unescaped `=`).
#[derive(Debug)]
struct Cef {
    header: Vec<String>,
    ext: Vec<(String, String)>,
}

fn parse_cef(line: &str) -> Cef {
    assert!(!line.contains(['\n', '\r']), "{line:?}");
    let mut header = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars();
    while header.len() < 7 {
        match chars.next().unwrap_or_else(|| panic!("short header: {line}")) {
            '\\' => match chars.next() {
                Some(c @ ('\\' | '|')) => field.push(c),
                other => panic!("bad header escape \\{other:?} in {line}"),
            },
            '|' => header.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    // The extension: split at unescaped `=`; the key is the last word
    // before it, the value everything up to the space before the next key.
    let rest: Vec<char> = chars.collect();
    let mut pieces: Vec<String> = vec![String::new()]; // raw text between unescaped `=`
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            '\\' => {
                let next = *rest.get(i + 1).unwrap_or_else(|| panic!("trailing \\ in {line}"));
                assert!(matches!(next, '\\' | '=' | 'n' | 'r'), "bad extension escape \\{next} in {line}");
                pieces.last_mut().unwrap().extend(['\\', next]);
                i += 2;
                continue;
            }
            '=' => pieces.push(String::new()),
            c => pieces.last_mut().unwrap().push(c),
        }
        i += 1;
    }
    let decode = |raw: &str| {
        let mut out = String::new();
        let mut it = raw.chars();
        while let Some(c) = it.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match it.next().unwrap() {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                c => out.push(c),
            }
        }
        out
    };
    let mut ext = Vec::new();
    let mut key = pieces[0].clone();
    assert!(!key.contains(' '), "text before the first key: {line}");
    for (n, piece) in pieces.iter().enumerate().skip(1) {
        let (value, next_key) = if n + 1 == pieces.len() {
            (piece.as_str(), "")
        } else {
            let (v, k) = piece.rsplit_once(' ').unwrap_or_else(|| panic!("no key before `=` in {line}"));
            (v, k)
        };
        assert!(!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric()), "bad key {key:?} in {line}");
        ext.push((key, decode(value)));
        key = next_key.to_owned();
    }
    Cef { header, ext }
}

/// The keys sandbox writes; nothing else may appear.
const CEF_KEYS: &[&str] = &[
    "rt",
    "externalId",
    "cat",
    "act",
    "outcome",
    "suser",
    "dvchost",
    "reason",
    "oldFileName",
    "oldFilePath",
    "fname",
    "filePath",
    "fsize",
    "fileHash",
    "requestMethod",
    "request",
    "dst",
    "dpt",
    "dproc",
    "in",
    "out",
    "cn1",
    "cn1Label",
    "cn2",
    "cn2Label",
    "cs1",
    "cs1Label",
    "cs2",
    "cs2Label",
    "cs3",
    "cs3Label",
    "cs4",
    "cs4Label",
    "cs5",
    "cs5Label",
    "cs6",
    "cs6Label",
    "flexString1",
    "flexString1Label",
    "flexString2",
    "flexString2Label",
];

/// What a CEF value must decode to: the text, with hidden characters
/// other than the newlines CEF escapes itself shown as `\xNN`/`\u{..}`.
fn cef_shown(s: &str) -> String {
    s.chars().map(|c| if matches!(c, '\n' | '\r') { c.to_string() } else { inert(&c.to_string()) }).collect()
}

#[test]
fn cef_parses_back_and_hostile_text_forges_nothing() {
    let s = HttpServer::start();
    let f = real_log(&s, "");
    let events = f.events();
    let out = export_ok(&f.audit(), "cef", &[]);
    assert_eq!(out.lines().count(), events.len());
    assert!(!out.chars().any(|c| hidden(c) && c != '\n'));
    for (line, ev) in out.lines().zip(&events) {
        let cef = parse_cef(line);
        let kind = text(ev, "kind");
        let signature = match ev["capability"].as_str() {
            Some(c) => format!("{kind}:{c}"),
            None => kind.to_owned(),
        };
        assert_eq!(cef.header[..3], ["CEF:0", "sandbox", "sandbox"], "{line}");
        assert_eq!(cef.header[4], signature, "{line}");
        assert!(["0", "1", "3", "5", "7"].contains(&cef.header[6].as_str()), "{line}");
        let mut seen = BTreeMap::new();
        for (k, v) in &cef.ext {
            assert!(CEF_KEYS.contains(&k.as_str()), "unknown key {k} in {line}");
            assert!(seen.insert(k.clone(), v.clone()).is_none(), "key {k} twice in {line}");
            assert!(!v.chars().any(|c| hidden(c) && !matches!(c, '\n' | '\r')), "{k}={v:?}");
        }
        assert_eq!(seen["externalId"], ev["seq"].to_string());
        assert_eq!(seen["suser"], cef_shown(text(ev, "user")), "{line}");
        assert_eq!(seen["cs1"], text(ev, "task"));
        assert_eq!(seen["cs1Label"], "task");
        let ts = humantime::parse_rfc3339(text(ev, "ts")).unwrap();
        let ms = ts.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
        assert_eq!(seen["rt"], ms.to_string());
        if let Some(t) = ev["target"].as_str().filter(|t| !t.is_empty()) {
            assert_eq!(seen["flexString2"], cef_shown(t), "{line}");
            assert_eq!(seen["flexString2Label"], "target");
        }
        if let Some(i) = ev["intent"].as_str() {
            assert_eq!(seen["cs4"], cef_shown(i), "{line}");
        }
        match text(ev, "decision") {
            "" => {}
            d => assert_eq!(seen["act"], d),
        }
    }
    let forged: Vec<&str> = out.lines().filter(|l| l.contains("flexString2=docs/a b")).collect();
    assert!(!forged.is_empty());
    for l in forged {
        assert!(l.contains(r"flexString2=docs/a b\=c|d\\e act\=allow\nCEF:0|forged|x|1|1|1|1|"), "{l}");
    }
}

// ---------------------------------------------------------------- filters

#[test]
fn filters_apply_in_every_format() {
    let s = HttpServer::start();
    let f = real_log(&s, "");
    let events = f.events();
    let log = std::fs::read_to_string(f.audit()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let first_task = text(&events[0], "task").to_owned();
    type Keep<'a> = Box<dyn Fn(&Value) -> bool + 'a>;
    let cases: Vec<(Vec<&str>, Keep)> = vec![
        (
            vec!["--capability", "fs", "--decision", "deny"],
            Box::new(|e: &Value| e["decision"] == "deny" && text(e, "capability").starts_with("fs.")),
        ),
        (vec!["--capability", "http.send"], Box::new(|e: &Value| e["capability"] == "http.send")),
        (vec!["--user", HOSTILE_USER], Box::new(|e: &Value| e["user"] == HOSTILE_USER)),
        (vec!["--task", &first_task], Box::new(|e: &Value| e["task"] == first_task.as_str())),
        (vec!["--since", "2999-01-01"], Box::new(|_: &Value| false)),
        (vec!["--until", "2999-01-01", "--decision", "allow"], Box::new(|e: &Value| e["decision"] == "allow")),
    ];
    for (args, keep) in cases {
        let want: Vec<&str> = lines.iter().zip(&events).filter(|(_, e)| keep(e)).map(|(l, _)| *l).collect();
        let jsonl = export_ok(&f.audit(), "jsonl", &args);
        assert_eq!(jsonl.lines().collect::<Vec<_>>(), want, "{args:?}");
        let ocsf = export_ok(&f.audit(), "ocsf", &args);
        let raw: Vec<String> = ocsf
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["raw_data"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(raw, want, "{args:?}");
        assert_eq!(export_ok(&f.audit(), "cef", &args).lines().count(), want.len(), "{args:?}");
        let csv = export_ok(&f.audit(), "csv", &args);
        assert_eq!(csv::Reader::from_reader(csv.as_bytes()).records().count(), want.len(), "{args:?}");
    }
    assert!(events.iter().any(|e| e["decision"] == "deny" && text(e, "capability").starts_with("fs.")));
}

// ----------------------------------------------------------------- errors

#[test]
fn a_line_that_is_not_an_event_stops_the_export_naming_it() {
    let s = HttpServer::start();
    let f = real_log(&s, "");
    let log = std::fs::read_to_string(f.audit()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let copy = f.path("bad.jsonl");
    std::fs::write(&copy, format!("{}\n{}\nnot an event\n{}\n", lines[0], lines[1], lines[2])).unwrap();
    for format in ["jsonl", "csv", "ocsf", "cef"] {
        let r = export(&copy, &["--format", format]);
        assert_eq!(r.code, 2, "{format}: {r:?}");
        assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
        assert!(r.stderr.contains("bad.jsonl` line 3: not an audit event"), "{r:?}");
        assert!(r.stderr.contains("the export stopped there"), "{r:?}");
        let records = if format == "csv" { r.stdout.lines().count() - 1 } else { r.stdout.lines().count() };
        assert_eq!(records, 2, "{format}: what came before is written: {}", r.stdout);
    }
    // A torn (unterminated) last line is not exported either.
    std::fs::write(&copy, format!("{}\n{}", lines[0], lines[1])).unwrap();
    let r = export(&copy, &["--format", "jsonl"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("line 2: not an audit event (the line is incomplete"), "{r:?}");
    assert_eq!(r.stdout, format!("{}\n", lines[0]));
}

#[test]
fn a_log_that_does_not_verify_is_exported_whole_and_reported() {
    let s = HttpServer::start();
    let f = real_log(&s, "");
    let log = std::fs::read_to_string(f.audit()).unwrap();
    let edited = log.replacen("\"docs/a.txt\"", "\"docs/b.txt\"", 1);
    assert_ne!(edited, log);
    let copy = f.path("edited.jsonl");
    std::fs::write(&copy, &edited).unwrap();
    let r = export(&copy, &["--format", "jsonl"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stdout, edited, "the export is whole");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains("edited.jsonl` does not verify: ") && r.stderr.contains("seq "), "{r:?}");
    assert!(r.stderr.contains("(edited?)"), "{r:?}");
}

#[test]
fn bad_usage_is_one_line_and_exit_2() {
    let s = HttpServer::start();
    let f = real_log(&s, "");
    let log = f.audit();
    for (args, says) in [
        (vec!["--format", "xml"], "--format: `xml` is not an export format; use one of jsonl, csv, ocsf, cef"),
        (vec!["--format", "csv", "--since", "yesterday"], "--since: `yesterday` is not a date"),
        (vec!["--format", "csv", "--decision", "maybe"], "--decision: `maybe` is not a decision"),
        (vec!["--format", "csv", "--since", "2026-02-01", "--until", "2026-01-01"], "--since must be before --until"),
    ] {
        let r = export(&log, &args);
        assert_eq!((r.code, r.stdout.as_str(), r.stderr.lines().count()), (2, "", 1), "{args:?}: {r:?}");
        assert!(r.stderr.contains(says), "{args:?}: {r:?}");
    }
    let r = export(&f.path("missing.jsonl"), &["--format", "csv"]);
    assert_eq!((r.code, r.stdout.as_str()), (2, ""), "{r:?}");
    assert!(r.stderr.contains("missing.jsonl`: no such file or directory"), "{r:?}");
    let r = Run::from_output(sandbox().args(["audit", "export"]).arg(&log).output().unwrap());
    assert_eq!(r.code, 2, "--format is required: {r:?}");
}

// --------------------------------------------------------------- rotation

#[test]
fn rotated_segments_are_exported_in_order() {
    let s = HttpServer::start();
    let f = Fixture::new(&manifest(&s, "\n[audit]\npath = \"audit.jsonl\"\nrotate = \"1 KiB\"\n"));
    f.file("docs/a.txt", "hello\n");
    let mut ops = vec!["read", "docs/a.txt"];
    for _ in 0..15 {
        ops.extend(["+", "read", "docs/a.txt"]);
    }
    let r = f.run("probe", &ops);
    assert_eq!(r.code, 0, "{r:?}");
    let files = sandbox_audit::read::files(&f.audit()).unwrap();
    assert!(files.len() > 2, "the log rotated: {files:?}");
    let all: String = files.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    assert_eq!(export_ok(&f.audit(), "jsonl", &[]), all);
    let seqs: Vec<u64> = export_ok(&f.audit(), "ocsf", &[])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["metadata"]["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
}

#[test]
fn a_reader_that_goes_away_ends_the_export_quietly_and_a_full_disk_does_not() {
    let s = HttpServer::start();
    let f = Fixture::new(&manifest(&s, ""));
    f.file("docs/a.txt", "hello\n");
    let r = f.run("probe", &["repeat", "300", "read", "docs/a.txt"]);
    assert_eq!(r.code, 0, "{r:?}");
    for format in ["jsonl", "csv", "ocsf", "cef"] {
        // Far more than a pipe holds; the reader takes one byte and leaves.
        let mut child = sandbox()
            .args(["audit", "export"])
            .arg(f.audit())
            .args(["--format", format])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut byte = [0u8; 1];
        std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut byte).unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!((out.status.code(), String::from_utf8_lossy(&out.stderr).as_ref()), (Some(0), ""), "{format}");
        // A full disk is an error: the export is not whole.
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let mut c = sandbox();
        c.args(["audit", "export"]).arg(f.audit()).args(["--format", format]).stdout(full);
        let r = Run::from_output(c.output().unwrap());
        assert_eq!(r.code, 70, "{format}: {r:?}");
        assert_eq!(r.stderr.trim(), "sandbox: error: cannot write the export: no space left on device", "{r:?}");
    }
}
