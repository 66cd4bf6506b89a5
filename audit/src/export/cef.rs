//! ArcSight Common Event Format, one event per line:
//!
//! ```text
//! CEF:0|sandbox|sandbox|<version>|<signature id>|<name>|<severity>|<extension>
//! ```
//!
//! The signature id is `<kind>` or `<kind>:<capability>` (`call:fs.read`),
//! the name says what happened (`call fs.read: deny`), the severity is
//! 0 (unknown), 1 (informational), 3 (low), 5 (medium) or 7 (high). The
//! extension uses standard keys where CEF has one and labelled custom
//! strings (`cs1`..`cs6`, `cn1`, `cn2`, `flexString1`, `flexString2`)
//! otherwise; the README has the table.
//!
//! Escaping follows the CEF specification: in the header `\` and `|`
//! become `\\` and `\|`; in extension values `\`, `=`, LF and CR become
//! `\\`, `\=`, `\n` and `\r`. CEF has no escape for other control or
//! invisible characters, so they are first shown as the text `\xNN` or
//! `\u{XXXX}` ([`super::inert`]), whose backslash is then escaped like
//! any other. So a value can neither end its line nor forge a key or a
//! header field, and a decoded value holds no control character but
//! the newlines CEF itself allows.

use super::{
    Assessment, PRODUCT_VERSION, Severity, Source, Status, assess, basename, field, hidden, http_target, program,
    push_inert, state, text, time_ms,
};
use serde_json::Value;

/// The event as one CEF line (without the newline).
pub fn to_cef(ev: &Value, src: &Source) -> String {
    let a: Assessment = assess(ev);
    let kind = text(ev, "kind").unwrap_or("event");
    let capability = text(ev, "capability");
    let signature = match capability {
        Some(c) => format!("{kind}:{c}"),
        None => kind.to_owned(),
    };
    let mut name = kind.to_owned();
    if let Some(c) = capability {
        name = format!("{name} {c}");
    }
    if let Some(s) = state(ev) {
        name = format!("{name}: {s}");
    }
    let mut line = String::from("CEF:0|sandbox|sandbox|");
    for h in [PRODUCT_VERSION, &signature, &name] {
        header(&mut line, h);
        line.push('|');
    }
    line.push_str(severity(a.severity));
    line.push('|');

    let mut x = Ext { line, first: true };
    x.put("rt", time_ms(ev).map(|t| t.to_string()));
    x.put("externalId", field(ev, "seq"));
    x.put("cat", capability);
    x.put("act", state(ev));
    x.put(
        "outcome",
        match a.status {
            Status::Success => Some("success"),
            Status::Failure => Some("failure"),
            Status::Unknown => None,
        },
    );
    x.put("suser", text(ev, "user"));
    x.put("dvchost", Some(&src.host));
    x.put("reason", text(ev, "reason"));
    let target = text(ev, "target");
    match (capability.unwrap_or(""), target) {
        ("fs.changes", _) | (_, None) => {}
        (c, Some(t)) if c.starts_with("fs.") => {
            let (from, to) = match text(ev, "dest") {
                Some(d) => (Some(t), d),
                None => (None, t),
            };
            x.put("oldFileName", from.map(basename));
            x.put("oldFilePath", from);
            x.put("fname", Some(basename(to)));
            x.put("filePath", Some(to));
            if matches!(c, "fs.write" | "fs.append") {
                x.put("fsize", field(ev, "size"));
            }
            x.put("fileHash", text(ev, "content_sha256"));
        }
        ("http.send", Some(t)) => {
            let (method, url) = http_target(t);
            x.put("requestMethod", method);
            x.put("request", Some(url));
            if let Some(peer) = text(ev, "peer").and_then(|p| p.parse::<std::net::SocketAddr>().ok()) {
                x.put("dst", peer.is_ipv4().then(|| peer.ip().to_string()));
                x.put("dpt", Some(peer.port().to_string()));
            }
        }
        ("process.run", Some(t)) => x.put("dproc", Some(program(t))),
        _ => {}
    }
    x.put("in", field(ev, "bytes_in"));
    x.put("out", field(ev, "bytes_out"));
    x.labelled("cn1", "exit_code", field(ev, "exit_code"));
    x.labelled("cn2", "http_status", field(ev, "status_code"));
    x.labelled("cs1", "task", text(ev, "task"));
    x.labelled("cs2", "agent", text(ev, "agent"));
    x.labelled("cs3", "rule", text(ev, "rule"));
    x.labelled("cs4", "intent", text(ev, "intent"));
    let approval = ev.get("approval");
    let by = approval.and_then(|a| a.get("by")).and_then(Value::as_array).map(|by| {
        let names: Vec<&str> = by.iter().filter_map(Value::as_str).collect();
        names.join(", ")
    });
    x.labelled("cs5", "reviewers", by.filter(|b| !b.is_empty()));
    x.labelled("cs6", "hash", text(ev, "hash"));
    x.labelled("flexString1", "approval_via", approval.and_then(|a| a.get("via")).and_then(Value::as_str));
    x.labelled("flexString2", "target", target);
    x.line
}

/// The CEF severity (0-10) of a [`Severity`].
fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Unknown => "0",
        Severity::Informational => "1",
        Severity::Low => "3",
        Severity::Medium => "5",
        Severity::High => "7",
    }
}

/// Appends a header field: `\` and `|` escaped, hidden characters shown.
pub fn header(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            c if hidden(c) => escape_shown(out, c),
            c => out.push(c),
        }
    }
}

/// Appends an extension value: `\`, `=`, LF, CR escaped, other hidden
/// characters shown.
pub fn value(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if hidden(c) => escape_shown(out, c),
            c => out.push(c),
        }
    }
}

/// A hidden character as the text `\xNN` or `\u{XXXX}`, its backslash
/// escaped for CEF.
fn escape_shown(out: &mut String, c: char) {
    let mut shown = String::new();
    push_inert(&mut shown, c);
    out.push_str(&shown.replace('\\', "\\\\"));
}

/// The extension being written: `key=value` pairs separated by spaces.
struct Ext {
    line: String,
    first: bool,
}

impl Ext {
    fn put(&mut self, key: &str, v: Option<impl AsRef<str>>) {
        let Some(v) = v else { return };
        let v = v.as_ref();
        if v.is_empty() {
            return;
        }
        if !self.first {
            self.line.push(' ');
        }
        self.first = false;
        self.line.push_str(key);
        self.line.push('=');
        value(&mut self.line, v);
    }

    /// A custom key with its label (`cs1=... cs1Label=task`).
    fn labelled(&mut self, key: &str, label: &str, v: Option<impl AsRef<str>>) {
        if v.as_ref().is_some_and(|v| !v.as_ref().is_empty()) {
            self.put(key, v);
            self.put(&format!("{key}Label"), Some(label));
        }
    }
}
