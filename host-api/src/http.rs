//! `sandbox:host/http`: not enabled in this version. Every call walks the
//! corridor and is refused (and audited) like any denied call.

use crate::bindings::sandbox::host::http::{self as wit, Request, Response};
use crate::bindings::sandbox::host::types::Error;
use crate::corridor::HostCtx;

/// The URL as recorded: userinfo dropped, query values dropped (keys kept).
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

impl wit::Host for HostCtx {
    fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, Error>> {
        let target = format!("{} {}", req.method, redacted_url(&req.url));
        let bytes_in = req.body.as_ref().map_or(0, |b| b.len() as u64);
        self.refuse_not_enabled("http.send", &target, bytes_in)
    }
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn secrets_in_urls_are_not_recorded() {
        assert_eq!(redacted_url("https://u:pw@api.example.com/x?token=abc&q=1"), "https://api.example.com/x?token&q");
        assert_eq!(redacted_url("https://api.example.com"), "https://api.example.com");
        assert_eq!(redacted_url("not a url"), "not a url");
    }
}
