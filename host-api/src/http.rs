//! `sandbox:host/http`: outbound requests to allow-listed destinations.
//!
//! [`Corridor::send_http`] is the one path for every request, from
//! `http.send` and from standard wasi:http alike (see `wasi_http`):
//! check the method, parse the URL, check the headers, decide on the
//! rules, resolve the name, check every address, record the `call` event,
//! ask for approval if the rule says so, make the log durable, then
//! exchange with a checked address only, and record the `result`.

use crate::bindings::sandbox::host::http::{self as wit, Request, Response};
use crate::bindings::sandbox::host::types::Error;
use crate::corridor::{Corridor, Ctx, Done, HostCtx, Plan, Refusal, effect_hash};
use crate::net::{Exchange, NetError, Reply};
use bytes::Bytes;
use sandbox_audit::Decision;
use sandbox_policy::http::{HostName, HttpTarget, check_header, check_method};
use sandbox_redact::Counts;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The most of a request body shown to a reviewer.
const PREVIEW_BYTES: usize = 4096;
/// The most lines of a request body shown to a reviewer.
const PREVIEW_LINES: usize = 40;

/// A request as a tool asked for it, from either route.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Shared, not copied, with the exchange that sends it.
    pub body: Bytes,
    /// The tool's own timeout, if it gave one.
    pub timeout: Option<Duration>,
}

/// The URL as recorded when it could not be parsed: userinfo dropped,
/// query values dropped (keys kept).
pub(crate) fn redacted_url(url: &str) -> String {
    let (before, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let before = match before.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => before.to_owned(),
    };
    match query {
        None => before,
        Some(q) => {
            let keys: Vec<&str> = q.split('&').map(|kv| kv.split('=').next().unwrap_or("")).collect();
            format!("{before}?{}", keys.join("&"))
        }
    }
}

fn refusal(decision: Decision, rule: &str, target: &str, resolved: Option<String>, error: Error) -> Box<Refusal> {
    Box::new(Refusal { decision, rule: rule.to_owned(), target: target.to_owned(), dest: None, resolved, error })
}

/// What a reviewer sees: the request line with the full URL, the header
/// names, and the start of the body.
fn preview(out: &Outgoing, sha: Option<&str>) -> String {
    let mut s = format!("{} {}\n", out.method, out.url);
    if !out.headers.is_empty() {
        let names: Vec<&str> = out.headers.iter().map(|(n, _)| n.as_str()).collect();
        s.push_str(&format!("headers: {}\n", names.join(", ")));
    }
    if out.body.is_empty() {
        s.push_str("(no body)\n");
        return s;
    }
    s.push_str(&format!("body: {} bytes, {}\n", out.body.len(), sha.unwrap_or("")));
    let head = &out.body[..out.body.len().min(PREVIEW_BYTES)];
    match std::str::from_utf8(head) {
        Ok(text) if !text.contains('\0') => {
            let lines: Vec<&str> = text.lines().collect();
            for line in lines.iter().take(PREVIEW_LINES) {
                s.push_str(line);
                s.push('\n');
            }
            if lines.len() > PREVIEW_LINES || out.body.len() > PREVIEW_BYTES {
                s.push_str("... (preview cut)\n");
            }
        }
        _ => s.push_str("(binary data)\n"),
    }
    s
}

fn prepare(cx: Ctx<'_>, out: &Outgoing, shown: &str) -> Result<Plan<Exchange>, Box<Refusal>> {
    let invalid = |target: &str, m: String| refusal(Decision::Invalid, "input", target, None, Error::Invalid(m));
    check_method(&out.method).map_err(|m| invalid(shown, m))?;
    let target = HttpTarget::parse(&out.url).map_err(|m| invalid(shown, m))?;
    let recorded = format!("{} {}", out.method, target.recorded());
    for (name, value) in &out.headers {
        check_header(name, value).map_err(|m| invalid(&recorded, m))?;
    }
    let (verdict, rule) = cx
        .policy
        .http
        .decide(&out.method, &target)
        .map_err(|d| refusal(Decision::Deny, d.rule, &recorded, None, Error::Denied(d.reason)))?;
    // The body's hash, when there is a body. Not the URL: a hash over the
    // query would let short values the log leaves out be guessed back.
    let sha = (!out.body.is_empty()).then(|| format!("sha256:{}", hex::encode(Sha256::digest(&out.body))));
    let mut plan = Plan {
        target: recorded.clone(),
        dest: None,
        resolved: None,
        verdict,
        rule: rule.name.clone(),
        effect: true,
        size: (!out.body.is_empty()).then_some(out.body.len() as u64),
        preview: (verdict == sandbox_policy::Verdict::Ask).then(|| preview(out, sha.as_deref())),
        content_sha256: sha,
        headers: Some(out.headers.iter().map(|(n, _)| n.clone()).collect()),
        env: None,
        cwd: None,
        effect_sha256: {
            let headers: Vec<String> = out.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
            let body = format!("sha256:{}", hex::encode(Sha256::digest(&out.body)));
            let mut parts = vec![out.method.as_str(), target.url.as_str()];
            parts.extend(headers.iter().map(String::as_str));
            parts.push(&body);
            effect_hash("http.send", &parts)
        },
        ready: Err(Error::Failed(String::new())),
    };
    let addrs = match cx.net.resolve_ambient(&target.host, target.port) {
        Ok(addrs) => addrs,
        Err(why) => {
            plan.ready = Err(Error::Failed(why));
            return Ok(plan);
        }
    };
    let resolved = addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    for ip in &addrs {
        if let Err(why) = cx.policy.http.check_address(*ip) {
            let msg = match &target.host {
                HostName::Ip(_) => format!("{ip} is {why}"),
                HostName::Domain(d) => format!("`{d}` resolves to {ip}, {why}"),
            };
            return Err(refusal(
                Decision::Deny,
                "builtin:special-address",
                &recorded,
                Some(resolved),
                Error::Denied(msg),
            ));
        }
    }
    plan.resolved = Some(resolved);
    // The rule's injected headers replace the tool's of the same name; the
    // values exist only here, host-side, and never in the record.
    let mut headers = out.headers.clone();
    for (name, value) in &rule.headers {
        let Some(value) = value.render(&cx.policy.secret_values) else {
            plan.ready = Err(Error::Failed(format!("the secret for header `{name}` is not available")));
            return Ok(plan);
        };
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        headers.push((name.clone(), value));
        if let Some(recorded) = plan.headers.as_mut() {
            recorded.push(format!("{name} (secret)"));
        }
    }
    plan.ready = Ok(Exchange { method: out.method.clone(), target, addrs, headers, body: out.body.clone() });
    Ok(plan)
}

fn act(cx: Ctx<'_>, ex: Exchange, asked: Option<Duration>) -> Result<Done<Reply>, Error> {
    let left = cx.clock.limit().saturating_sub(cx.clock.used());
    let timeout = asked.map_or(cx.policy.http.timeout, |t| t.min(cx.policy.http.timeout)).min(left);
    if timeout.is_zero() {
        return Err(Error::LimitExceeded("the run has no time left for a request".into()));
    }
    match cx.net.exchange_ambient(&ex, timeout, cx.policy.limits.output, cx.flights.ended()) {
        Ok(mut reply) => {
            let mut counts = Counts::new();
            let redact = cx.redacts_output();
            reply.body = cx.returned(redact, std::mem::take(&mut reply.body), &mut counts);
            let body_changed = !counts.is_empty();
            for (name, value) in &mut reply.headers {
                if body_changed && name.eq_ignore_ascii_case("content-length") {
                    // The body the tool gets is the redacted one.
                    *value = reply.body.len().to_string();
                } else {
                    *value = cx.returned_text(redact, std::mem::take(value), &mut counts);
                }
                // A server can reflect a value in a name as well.
                *name = cx.returned_name(redact, std::mem::take(name), &mut counts);
            }
            let (status, peer, bytes) = (reply.status, reply.peer.to_string(), reply.body.len() as u64);
            let mut done = Done::new(reply, bytes);
            done.redactions = counts;
            done.status = Some(status);
            done.peer = Some(peer);
            Ok(done)
        }
        Err(NetError::Timeout(t)) => {
            Err(Error::Failed(format!("no complete response within {}", humantime::format_duration(t))))
        }
        Err(NetError::TooLarge(n)) => {
            Err(Error::LimitExceeded(format!("the response body is larger than {n} bytes (limits.output)")))
        }
        Err(NetError::OverBudget(n)) => Err(Error::LimitExceeded(format!(
            "holding the response would take the bodies the host holds for this run past {n} bytes (the larger of limits.memory and limits.output)"
        ))),
        Err(NetError::Failed(why)) => Err(Error::Failed(why)),
        Err(NetError::Aborted { started: false }) => {
            Err(Error::Failed("aborted: the task ended before the request was sent; nothing was sent".into()))
        }
        Err(NetError::Aborted { started: true }) => Err(Error::Failed(
            "aborted: the task ended before the response arrived; the request may have reached the server".into(),
        )),
    }
}

impl Corridor {
    /// Walks one outbound request through the corridor.
    pub(crate) fn send_http(&self, intent: Option<&str>, out: Outgoing) -> wasmtime::Result<Result<Reply, Error>> {
        let shown = format!("{} {}", out.method, redacted_url(&out.url));
        let timeout = out.timeout;
        self.mediate(
            intent,
            "http.send",
            (&shown, None),
            out.body.len() as u64,
            |cx| prepare(cx, &out, &shown),
            |cx, ex| act(cx, ex, timeout),
        )
    }

    /// Records a `wasi:http` request that never reached [`send_http`]
    /// (Self::send_http): its body was never finished, could not be read or
    /// was too large, the tool dropped it, or the task ended first. The
    /// `call` event carries the policy's decision on its method and URL;
    /// the `result` says why nothing was sent. No approval is asked.
    pub(crate) fn unsent_http(
        &self,
        intent: Option<&str>,
        method: &str,
        url: &str,
        why: Error,
    ) -> wasmtime::Result<Result<(), Error>> {
        let out = Outgoing {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: bytes::Bytes::new(),
            timeout: None,
        };
        let shown = format!("{} {}", out.method, redacted_url(&out.url));
        self.mediate(
            intent,
            "http.send",
            (&shown, None),
            0,
            |cx| {
                let mut plan = prepare(cx, &out, &shown)?;
                // No body was taken: none to describe.
                plan.size = None;
                plan.content_sha256 = None;
                plan.ready = Err(why);
                Ok(plan)
            },
            |_, _| Err::<Done<()>, _>(Error::Failed("not sent".into())),
        )
    }
}

impl wit::Host for HostCtx {
    fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, Error>> {
        let out = Outgoing {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body.map(Bytes::from).unwrap_or_default(),
            timeout: req.timeout_ms.map(|ms| Duration::from_millis(u64::from(ms))),
        };
        let reply = self.corridor.send_http(self.intent.as_deref(), out)?;
        Ok(reply.map(|r| Response { status: r.status, headers: r.headers, body: r.body }))
    }
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn secrets_in_unparsable_urls_are_not_recorded() {
        assert_eq!(redacted_url("https://u:pw@api.example.com/x?token=abc&q=1"), "https://api.example.com/x?token&q");
        assert_eq!(redacted_url("https://api.example.com"), "https://api.example.com");
        assert_eq!(redacted_url("not a url"), "not a url");
    }
}
