//! OCSF: one JSON object per event, in the class that fits it.
//!
//! | events | class |
//! |---|---|
//! | `call` and `result` of `fs.*` (but `fs.changes`) | File System Activity (1001) |
//! | `call` and `result` of `http.send` | HTTP Activity (4002) |
//! | `call` and `result` of `process.run` | Process Activity (1007) |
//! | `finding` | Detection Finding (2004) |
//! | everything else: `task-start`, `task-end`, `approval`, `fs.changes` | API Activity (6003) |
//!
//! Every object has the class's required attributes, the `host` and
//! `security_control` profiles' attributes where they apply (named in
//! `metadata.profiles`), and the original line in `raw_data`, so nothing
//! of the event is lost and its hash can be rechecked. The README has the
//! field mapping.

use super::{
    Assessment, Disposition, PRODUCT_VERSION, Severity, Source, Status, assess, basename, event_uid, http_target,
    program, state, summary, text, time_ms,
};
use serde_json::{Map, Value, json};

/// The OCSF schema version the objects follow (`metadata.version`).
pub const OCSF_VERSION: &str = "1.5.0";

/// The OCSF profiles the objects use (`metadata.profiles`): `host` for
/// `actor` and `device` where the class does not have them itself,
/// `security_control` for `disposition_id`, `action_id` and `policy`.
pub const OCSF_PROFILES: [&str; 2] = ["host", "security_control"];

/// The classes the objects belong to: `class_uid` and the class's OCSF
/// name (`file_activity`; the schema server's and the vendored JSON
/// Schemas' file name).
pub const OCSF_CLASSES: [(u64, &str); 5] = [
    (FILE_SYSTEM.uid, "file_activity"),
    (PROCESS.uid, "process_activity"),
    (DETECTION.uid, "detection_finding"),
    (HTTP.uid, "http_activity"),
    (API.uid, "api_activity"),
];

/// An OCSF class.
#[derive(Debug, Clone, Copy)]
struct Class {
    uid: u64,
    name: &'static str,
    category_uid: u64,
    category_name: &'static str,
}

const FILE_SYSTEM: Class =
    Class { uid: 1001, name: "File System Activity", category_uid: 1, category_name: "System Activity" };
const PROCESS: Class = Class { uid: 1007, name: "Process Activity", category_uid: 1, category_name: "System Activity" };
const DETECTION: Class = Class { uid: 2004, name: "Detection Finding", category_uid: 2, category_name: "Findings" };
const HTTP: Class = Class { uid: 4002, name: "HTTP Activity", category_uid: 4, category_name: "Network Activity" };
const API: Class = Class { uid: 6003, name: "API Activity", category_uid: 6, category_name: "Application Activity" };

/// The event as an OCSF object. `line` is the event's line as stored
/// (without the newline), kept as `raw_data`.
pub fn to_ocsf(line: &str, ev: &Value, src: &Source) -> Value {
    let kind = text(ev, "kind").unwrap_or("");
    let capability = text(ev, "capability").unwrap_or("");
    let activity = matches!(kind, "call" | "result");
    let (class, (activity_id, activity_name), own) = match capability {
        _ if kind == "finding" => (DETECTION, (1, "Create".to_owned()), finding(ev)),
        c if activity && c.starts_with("fs.") && c != "fs.changes" => (FILE_SYSTEM, file_activity(c), file(ev, c)),
        "http.send" if activity => {
            let (method, _) = http_target(text(ev, "target").unwrap_or(""));
            (HTTP, http_activity(method), http(ev, src))
        }
        "process.run" if activity => (PROCESS, (1, "Launch".to_owned()), process(ev)),
        _ => (API, api_activity(ev), api(ev, src)),
    };
    let a = assess(ev);
    let mut o = Map::new();
    let mut put = |k: &str, v: Value| {
        o.insert(k.to_owned(), v);
    };
    put("class_uid", json!(class.uid));
    put("class_name", json!(class.name));
    put("category_uid", json!(class.category_uid));
    put("category_name", json!(class.category_name));
    put("activity_id", json!(activity_id));
    put("activity_name", json!(activity_name));
    put("type_uid", json!(class.uid * 100 + activity_id));
    put("type_name", json!(format!("{}: {activity_name}", class.name)));
    put("time", json!(time_ms(ev).unwrap_or(0)));
    put("timezone_offset", json!(0));
    let (severity_id, severity) = severity(a.severity);
    put("severity_id", json!(severity_id));
    put("severity", json!(severity));
    let (status_id, status) = if class.uid == DETECTION.uid { (1, "New") } else { status(a.status) };
    put("status_id", json!(status_id));
    put("status", json!(status));
    if let Some(s) = state(ev) {
        put("status_code", json!(s));
    }
    if let Some(r) = text(ev, "reason") {
        put("status_detail", json!(r));
    }
    put("message", json!(summary(ev)));
    put("metadata", metadata(ev));
    put("actor", actor(ev));
    put("device", json!({"hostname": src.host, "type_id": 0, "type": "Unknown"}));
    disposition(&mut put, &a);
    let policy = policy(ev);
    if !policy.is_empty() {
        put("policy", Value::Object(policy));
    }
    put("raw_data", json!(line));
    o.extend(own);
    Value::Object(o)
}

fn severity(s: Severity) -> (u64, &'static str) {
    match s {
        Severity::Unknown => (0, "Unknown"),
        Severity::Informational => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
    }
}

fn status(s: Status) -> (u64, &'static str) {
    match s {
        Status::Unknown => (0, "Unknown"),
        Status::Success => (1, "Success"),
        Status::Failure => (2, "Failure"),
    }
}

/// `disposition_id` and `action_id` (profile `security_control`).
fn disposition(put: &mut impl FnMut(&str, Value), a: &Assessment) {
    let Some(d) = a.disposition else { return };
    let ((disposition_id, disposition), (action_id, action)) = match d {
        Disposition::Allowed => ((1, "Allowed"), (1, "Allowed")),
        Disposition::Blocked => ((2, "Blocked"), (2, "Denied")),
        // OCSF has no "waiting for approval": Other, named.
        Disposition::Pending => ((99, "Approval required"), (99, "Ask")),
    };
    put("disposition_id", json!(disposition_id));
    put("disposition", json!(disposition));
    put("action_id", json!(action_id));
    put("action", json!(action));
}

fn metadata(ev: &Value) -> Value {
    let mut m = json!({
        "version": OCSF_VERSION,
        "product": {"name": "sandbox", "vendor_name": "sandbox", "version": PRODUCT_VERSION},
        "profiles": OCSF_PROFILES,
        "uid": event_uid(ev),
        "log_provider": "sandbox",
    });
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m[k] = v;
        }
    };
    put("sequence", ev.get("seq").cloned());
    put("event_code", text(ev, "kind").map(|k| json!(k)));
    put("correlation_uid", text(ev, "task").map(|t| json!(t)));
    put("original_time", text(ev, "ts").map(|t| json!(t)));
    m
}

/// Who acted: the user the run acts for, and the tool (`app_name`).
fn actor(ev: &Value) -> Value {
    let mut a = json!({"user": {"name": text(ev, "user").unwrap_or("")}});
    if let Some(agent) = text(ev, "agent") {
        a["app_name"] = json!(agent);
    }
    a
}

/// `policy`: the rule that decided (`name`), the manifest's hash (`uid`).
fn policy(ev: &Value) -> Map<String, Value> {
    let mut p = Map::new();
    if let Some(rule) = text(ev, "rule") {
        p.insert("name".into(), json!(rule));
    }
    if let Some(manifest) = text(ev, "policy") {
        p.insert("uid".into(), json!(manifest));
    }
    p
}

// --------------------------------------------------------------- classes

fn file_activity(capability: &str) -> (u64, String) {
    let (id, name) = match capability {
        "fs.create-dir" => (1, "Create"),
        "fs.read" | "fs.list-dir" => (2, "Read"),
        // A write creates the file or replaces its content; the log does
        // not say which.
        "fs.write" | "fs.append" => (3, "Update"),
        "fs.remove" => (4, "Delete"),
        "fs.rename" => (5, "Rename"),
        "fs.stat" => (8, "Get Attributes"),
        _ => (99, "Other"),
    };
    (id, name.to_owned())
}

/// `file` (and for a rename `file_result`, the destination).
fn file(ev: &Value, capability: &str) -> Map<String, Value> {
    let (type_id, type_name) = match capability {
        "fs.read" | "fs.write" | "fs.append" => (1, "Regular File"),
        "fs.list-dir" | "fs.create-dir" => (2, "Folder"),
        _ => (0, "Unknown"),
    };
    let object = |path: &str| json!({"name": basename(path), "path": path, "type_id": type_id, "type": type_name});
    let target = text(ev, "target").unwrap_or("");
    let mut f = object(target);
    if capability == "fs.write" {
        if let Some(size) = ev.get("size").filter(|s| s.is_u64()) {
            f["size"] = size.clone();
        }
        if let Some(hex) = text(ev, "content_sha256").and_then(|h| h.strip_prefix("sha256:")) {
            f["hashes"] = json!([{"algorithm_id": 3, "algorithm": "SHA-256", "value": hex}]);
        }
    }
    let mut own = Map::new();
    own.insert("file".into(), f);
    if let Some(dest) = text(ev, "dest") {
        own.insert("file_result".into(), object(dest));
    }
    own
}

fn http_activity(method: Option<&str>) -> (u64, String) {
    const METHODS: [(&str, u64, &str); 8] = [
        ("CONNECT", 1, "Connect"),
        ("DELETE", 2, "Delete"),
        ("GET", 3, "Get"),
        ("HEAD", 4, "Head"),
        ("OPTIONS", 5, "Options"),
        ("POST", 6, "Post"),
        ("PUT", 7, "Put"),
        ("TRACE", 8, "Trace"),
    ];
    match METHODS.iter().find(|(m, _, _)| Some(*m) == method) {
        Some((_, id, name)) => (*id, (*name).to_owned()),
        None => (99, method.unwrap_or("Other").to_owned()),
    }
}

/// `http_request` (method, URL), `http_response` (status), `src_endpoint`
/// (the host that sent it), `dst_endpoint` (the address it went to, else
/// the URL's host and port).
fn http(ev: &Value, src: &Source) -> Map<String, Value> {
    let (method, url) = http_target(text(ev, "target").unwrap_or(""));
    let mut own = Map::new();
    let mut request = json!({"url": url_object(url)});
    if let Some(m) = method.filter(|m| http_activity(Some(m)).0 != 99) {
        request["http_method"] = json!(m);
    }
    own.insert("http_request".into(), request);
    own.insert("src_endpoint".into(), json!({"hostname": src.host}));
    if let Some(code) = ev.get("status_code").filter(|c| c.is_u64()) {
        own.insert("http_response".into(), json!({"code": code}));
    }
    let peer = text(ev, "peer").and_then(|p| p.parse::<std::net::SocketAddr>().ok());
    let endpoint = match (peer, url::Url::parse(url).ok()) {
        (Some(p), _) => Some(json!({"ip": p.ip().to_string(), "port": p.port()})),
        (None, Some(u)) => u.host_str().map(|h| {
            let mut e = json!({"hostname": h});
            if let Some(port) = u.port_or_known_default() {
                e["port"] = json!(port);
            }
            e
        }),
        (None, None) => None,
    };
    if let Some(e) = endpoint {
        own.insert("dst_endpoint".into(), e);
    }
    own
}

/// An OCSF `url`: the text as recorded, and its parts when it parses.
fn url_object(text: &str) -> Value {
    let mut u = json!({"url_string": text});
    if let Ok(parsed) = url::Url::parse(text) {
        u["scheme"] = json!(parsed.scheme());
        if let Some(h) = parsed.host_str() {
            u["hostname"] = json!(h);
        }
        if let Some(p) = parsed.port_or_known_default() {
            u["port"] = json!(p);
        }
        u["path"] = json!(parsed.path());
        if let Some(q) = parsed.query() {
            u["query_string"] = json!(q);
        }
    }
    u
}

/// `process` (the program, its command line, its path on the host, the
/// working directory) and a result's `exit_code`. The log records no pid:
/// `process.uid` is `<task>:<seq>` of the event.
fn process(ev: &Value) -> Map<String, Value> {
    let target = text(ev, "target").unwrap_or("");
    let mut p = json!({
        "name": program(target),
        "cmd_line": target,
        "uid": format!("{}:{}", text(ev, "task").unwrap_or(""), ev["seq"]),
    });
    if let Some(path) = text(ev, "resolved") {
        p["file"] = json!({"name": basename(path), "path": path, "type_id": 1, "type": "Regular File"});
    }
    if let Some(cwd) = text(ev, "cwd") {
        p["working_directory"] = json!(cwd);
    }
    let mut own = Map::new();
    own.insert("process".into(), p);
    if let Some(code) = ev.get("exit_code").filter(|c| c.is_i64()) {
        own.insert("exit_code".into(), code.clone());
    }
    own
}

fn api_activity(ev: &Value) -> (u64, String) {
    match (text(ev, "kind").unwrap_or(""), text(ev, "decision")) {
        ("task-start", _) => (1, "Create".to_owned()),
        ("task-end", _) => (99, "Task End".to_owned()),
        ("approval", Some("approved")) => (99, "Approve".to_owned()),
        ("approval", Some("rejected")) => (99, "Reject".to_owned()),
        (kind, _) => (99, text(ev, "capability").unwrap_or(kind).to_owned()),
    }
}

/// `api` (the operation: the event's kind, or its capability for calls
/// and results), `src_endpoint` (the host) and `resources` (the target;
/// on task-start the manifest and component).
fn api(ev: &Value, src: &Source) -> Map<String, Value> {
    let kind = text(ev, "kind").unwrap_or("event");
    let operation = match kind {
        "call" | "result" => text(ev, "capability").unwrap_or(kind),
        _ => kind,
    };
    let mut api = json!({"operation": operation, "service": {"name": "sandbox"}});
    if let Some(request) = ev.get("approval").and_then(|a| a.get("request")).and_then(Value::as_str) {
        api["request"] = json!({"uid": request});
    }
    let mut own = Map::new();
    own.insert("api".into(), api);
    own.insert("src_endpoint".into(), json!({"hostname": src.host}));
    let mut resources = Vec::new();
    if let Some(t) = text(ev, "target") {
        resources.push(json!({"name": t, "type": text(ev, "capability").unwrap_or(kind)}));
    }
    if kind == "task-start" {
        if let Some(m) = text(ev, "manifest").or(text(ev, "policy")) {
            let mut r = json!({"name": m, "type": "manifest"});
            if let Some(h) = text(ev, "policy") {
                r["uid"] = json!(h);
            }
            resources.push(r);
        }
        if let Some(c) = text(ev, "component") {
            resources.push(json!({"name": text(ev, "agent").unwrap_or(c), "type": "component", "uid": c}));
        }
    }
    if !resources.is_empty() {
        own.insert("resources".into(), Value::Array(resources));
    }
    own
}

/// `finding_info`: the event's hash as its id, what was found (`title`:
/// the reason), the rule as its analytic; `resources`: the target.
fn finding(ev: &Value) -> Map<String, Value> {
    let title = text(ev, "reason").or(text(ev, "rule")).unwrap_or("finding");
    let mut info = json!({"uid": event_uid(ev), "title": title});
    if let Some(reason) = text(ev, "reason") {
        info["desc"] = json!(reason);
    }
    if let Some(rule) = text(ev, "rule") {
        info["analytic"] = json!({"name": rule, "type_id": 1, "type": "Rule"});
    }
    if let Some(c) = text(ev, "capability") {
        info["types"] = json!([c]);
    }
    let mut own = Map::new();
    own.insert("finding_info".into(), info);
    if let Some(t) = text(ev, "target") {
        own.insert("resources".into(), json!([{"name": t, "type": text(ev, "capability").unwrap_or("finding")}]));
    }
    own
}
