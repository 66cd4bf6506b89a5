//! Splunk HTTP Event Collector: batches of events POSTed to the collector
//! URL (`https://splunk:8088/services/collector/event`) with
//! `Authorization: Splunk <token>`.
//!
//! The body is one JSON object per record, newline-separated:
//!
//! ```text
//! {"time":1795428000.123456,"host":"HOST","source":"sandbox","sourcetype":"sandbox:audit","event":{…the log line…}}
//! ```
//!
//! `time` is the event's `ts` in seconds since the epoch with
//! microseconds; `event` is the log line itself, byte for byte (with its
//! `seq`, `task` and `hash`). Checkpoint lines go with sourcetype
//! `sandbox:checkpoint`.
//!
//! A 2xx answer means delivered. 429, 5xx and connection failures are
//! worth retrying; any other answer (401 bad token, 403 disabled token,
//! 400 bad request, a redirect) is a configuration error. Redirects are
//! never followed (the token would go with them), and proxy variables in
//! the environment are not used. https uses rustls with the Mozilla root
//! certificates (webpki-roots).

use crate::deliver::{SendError, Transport};
use crate::{Fields, Origin, Record, Stream};
use std::time::{Duration, UNIX_EPOCH};

/// `source` of every HEC event.
pub const SOURCE: &str = "sandbox";
/// `sourcetype` of audit events.
pub const SOURCETYPE_AUDIT: &str = "sandbox:audit";
/// `sourcetype` of checkpoint lines.
pub const SOURCETYPE_CHECKPOINT: &str = "sandbox:checkpoint";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an error answer read for its message.
const ANSWER_LIMIT: u64 = 4096;

/// The request body for a batch.
pub fn body(records: &[Record], origin: &Origin) -> Vec<u8> {
    let host = serde_json::to_string(&origin.hostname).unwrap_or_else(|_| "\"-\"".into());
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(b"{");
        if let Some(t) = Fields::parse(r).ok().and_then(|f| f.time())
            && let Ok(since) = t.duration_since(UNIX_EPOCH)
        {
            out.extend_from_slice(format!("\"time\":{}.{:06},", since.as_secs(), since.subsec_micros()).as_bytes());
        }
        let sourcetype = match r.stream {
            Stream::Event => SOURCETYPE_AUDIT,
            Stream::Checkpoint => SOURCETYPE_CHECKPOINT,
        };
        out.extend_from_slice(
            format!("\"host\":{host},\"source\":\"{SOURCE}\",\"sourcetype\":\"{sourcetype}\",\"event\":").as_bytes(),
        );
        out.extend_from_slice(&r.line);
        out.extend_from_slice(b"}\n");
    }
    out
}

/// The HEC token: never printed, not even by `Debug`.
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A client for one collector.
#[derive(Debug)]
pub(crate) struct Hec {
    url: url::Url,
    shown: String,
    token: Token,
    origin: Origin,
    agent: ureq::Agent,
}

/// The URL as shown in messages: without its query (where a token might
/// have been put).
pub(crate) fn shown(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

impl Hec {
    /// A client posting to `url` with `token`.
    pub(crate) fn new(url: &url::Url, token: String, origin: Origin) -> Hec {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            // Only the configured URL gets the token: no proxy from the
            // environment (HTTPS_PROXY, ALL_PROXY) is put in between.
            .proxy(None)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(concat!("sandbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Hec { url: url.clone(), shown: shown(url), token: Token(token), origin, agent }
    }

    /// What the collector said, in one printable line without the token.
    fn answer(&self, status: u16, body: &mut ureq::Body) -> String {
        #[derive(serde::Deserialize)]
        struct HecAnswer {
            text: String,
            code: Option<i64>,
        }
        let text = body.with_config().limit(ANSWER_LIMIT).read_to_string().unwrap_or_default();
        let said = match serde_json::from_str::<HecAnswer>(&text) {
            Ok(HecAnswer { text, code: Some(code) }) => format!("{text} (HEC code {code})"),
            Ok(HecAnswer { text, code: None }) => text,
            Err(_) => text.lines().next().unwrap_or("").to_owned(),
        };
        let said = if self.token.0.is_empty() { said } else { said.replace(&self.token.0, "<token>") };
        let said: String = said.chars().filter(|c| !c.is_control()).take(200).collect();
        if said.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {said}") }
    }
}

impl Transport for Hec {
    fn send(&mut self, records: &[Record]) -> Result<(), SendError> {
        let body = body(records, &self.origin);
        let answer = self
            .agent
            .post(self.url.as_str())
            .header("Authorization", &format!("Splunk {}", self.token.0))
            .header("Content-Type", "application/json")
            .send(&body[..]);
        let mut resp = match answer {
            Ok(r) => r,
            Err(e) => return Err(SendError::Unavailable(format!("{}: {e}", self.shown))),
        };
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            // Read the (small) answer so the connection can be reused.
            let _ = resp.body_mut().with_config().limit(ANSWER_LIMIT).read_to_vec();
            return Ok(());
        }
        let said = self.answer(status, resp.body_mut());
        if status == 429 || resp.status().is_server_error() {
            Err(SendError::Unavailable(format!("{} answered {said}", self.shown)))
        } else {
            Err(SendError::Refused(format!("{} answered {said}", self.shown)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_one_hec_object_per_line() {
        let origin = Origin { hostname: "host-1".into(), pid: 1 };
        let ev =
            r#"{"v":1,"seq":0,"ts":"2026-11-23T10:00:00.000042Z","kind":"task-start","task":"t","hash":"sha256:a"}"#;
        let cp = r#"{"log":"sha256:l","size":1,"ts":"2026-11-23T10:00:01Z"}"#;
        let records = [
            Record { stream: Stream::Event, line: ev.as_bytes().to_vec() },
            Record { stream: Stream::Checkpoint, line: cp.as_bytes().to_vec() },
            Record { stream: Stream::Event, line: br#"{"seq":1}"#.to_vec() },
        ];
        let text = String::from_utf8(body(&records, &origin)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                r#"{{"time":1795428000.000042,"host":"host-1","source":"sandbox","sourcetype":"sandbox:audit","event":{ev}}}"#
            )
        );
        assert_eq!(
            lines[1],
            format!(
                r#"{{"time":1795428001.000000,"host":"host-1","source":"sandbox","sourcetype":"sandbox:checkpoint","event":{cp}}}"#
            )
        );
        // Without a time, HEC stamps the event on receipt.
        assert_eq!(lines[2], r#"{"host":"host-1","source":"sandbox","sourcetype":"sandbox:audit","event":{"seq":1}}"#);
        for l in lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["event"].is_object());
        }
    }

    #[test]
    fn urls_are_shown_without_their_query_and_tokens_are_not_debugged() {
        let u = url::Url::parse("https://splunk.example:8088/services/collector/event?token=abc#x").unwrap();
        assert_eq!(shown(&u), "https://splunk.example:8088/services/collector/event");
        let h = Hec::new(&u, "SECRET-TOKEN".into(), Origin { hostname: "h".into(), pid: 1 });
        assert!(!format!("{h:?}").contains("SECRET-TOKEN"));
    }
}
