//! What the service checks before it looks at a request's meaning: that the
//! request is addressed to this service (`Host`, `Origin`), who sent it (a
//! bearer token), and that a submission is well formed.

use crate::config::bad_name;
use crate::protocol::{MAX_PREVIEW, Submission};
use crate::rules;
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN};
use std::net::SocketAddr;

/// The longest request a reviewer is given to decide: 7 days.
const MAX_TIMEOUT_MS: u64 = 7 * 24 * 3600 * 1000;
/// The longest text field other than the preview.
const MAX_FIELD: usize = 16 * 1024;

/// Why `--public-url` or `--listen` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// `--public-url` is not an http(s) origin.
    #[error("--public-url `{url}`: {reason}")]
    PublicUrl {
        /// As given.
        url: String,
        /// Why.
        reason: String,
    },
    /// A wildcard listen address without a public URL.
    #[error(
        "--listen {0} accepts connections on every interface: give --public-url with the address reviewers use, \
         so that the service can check the `Host` of each request"
    )]
    NeedsPublicUrl(SocketAddr),
}

/// The service's own addresses: the `Host` values and the `Origin` it
/// answers to. Anything else is another site (DNS rebinding, CSRF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origins {
    hosts: Vec<String>,
    origins: Vec<String>,
    url: String,
}

impl Origins {
    /// The addresses of a service listening on `listen` (the bound
    /// address, with its real port) and reached at `public_url` when it
    /// sits behind a proxy.
    pub fn new(listen: SocketAddr, public_url: Option<&str>) -> Result<Origins, AddressError> {
        let mut hosts = vec![listen.to_string()];
        let mut origins = vec![format!("http://{listen}")];
        // On loopback, `localhost` names this machine too: a page an
        // attacker controls cannot be served from it (no rebinding).
        if listen.ip().is_loopback() {
            hosts.push(format!("localhost:{}", listen.port()));
            origins.push(format!("http://localhost:{}", listen.port()));
        }
        let mut url = format!("http://{listen}");
        match public_url {
            Some(public) => {
                let fail = |reason: &str| AddressError::PublicUrl { url: public.to_owned(), reason: reason.to_owned() };
                let u = url::Url::parse(public).map_err(|e| fail(&e.to_string()))?;
                if u.scheme() != "http" && u.scheme() != "https" {
                    return Err(fail("must start with http:// or https://"));
                }
                let Some(host) = u.host_str() else {
                    return Err(fail("has no host"));
                };
                if !u.username().is_empty() || u.password().is_some() {
                    return Err(fail("must not contain a user name or password"));
                }
                if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
                    return Err(fail("must be an origin only (scheme, host and port), without a path"));
                }
                match (u.port(), u.port_or_known_default()) {
                    (Some(p), _) => hosts.push(format!("{host}:{p}")),
                    (None, Some(default)) => {
                        hosts.push(host.to_owned());
                        hosts.push(format!("{host}:{default}"));
                    }
                    (None, None) => hosts.push(host.to_owned()),
                }
                let origin = u.origin().ascii_serialization();
                origins.push(origin.clone());
                url = origin;
            }
            None if listen.ip().is_unspecified() => return Err(AddressError::NeedsPublicUrl(listen)),
            None => {}
        }
        for h in &mut hosts {
            h.make_ascii_lowercase();
        }
        for o in &mut origins {
            o.make_ascii_lowercase();
        }
        Ok(Origins { hosts, origins, url })
    }

    /// The URL reviewers open (the public URL when there is one).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Checks `Host` (always; and the authority of an absolute-form
    /// request target, which HTTP/1.1 says takes precedence) and `Origin`
    /// (on state-changing requests): `Err((421 | 403, reason))` when the
    /// request is not for this service.
    pub fn check(
        &self,
        headers: &HeaderMap,
        target_authority: Option<&str>,
        state_changing: bool,
    ) -> Result<(), (u16, &'static str)> {
        let own = |h: &str| self.hosts.iter().any(|own| own.eq_ignore_ascii_case(h.trim()));
        let mut host = headers.get_all(HOST).iter();
        let ok = match (host.next(), host.next()) {
            (Some(h), None) => h.to_str().is_ok_and(own) && target_authority.is_none_or(own),
            _ => false,
        };
        if !ok {
            return Err((421, "the request's `Host` is not this service's address"));
        }
        if state_changing {
            let mut origin = headers.get_all(ORIGIN).iter();
            match (origin.next(), origin.next()) {
                (None, _) => {}
                (Some(o), None)
                    if o.to_str().is_ok_and(|o| self.origins.iter().any(|own| own.eq_ignore_ascii_case(o))) => {}
                _ => return Err((403, "the request comes from another site (`Origin`)")),
            }
        }
        Ok(())
    }
}

/// The bearer token of a request, if it carries exactly one
/// `Authorization: Bearer ...` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut all = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (all.next(), all.next()) else {
        return None;
    };
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn is_hash(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// Why a submission is malformed, if it is (`400`). Whether its `require`
/// can be met is checked afterwards (`422`).
pub fn malformed(s: &Submission) -> Option<String> {
    for (key, value) in [
        ("task", &s.task),
        ("agent", &s.agent),
        ("capability", &s.capability),
        ("target", &s.target),
        ("rule", &s.rule),
    ] {
        if value.is_empty() {
            return Some(format!("`{key}` must not be empty"));
        }
        if value.len() > MAX_FIELD {
            return Some(format!("`{key}` is longer than {MAX_FIELD} bytes"));
        }
    }
    if let Some(m) = bad_name(&s.user) {
        return Some(format!("`user` {m}"));
    }
    if let crate::protocol::Require::All(names) = &s.require {
        for n in names {
            if let Some(m) = bad_name(n) {
                return Some(format!("`require.all` name `{}` {m}", crate::config::printable(n)));
            }
        }
    }
    for (key, value) in [("dest", &s.dest), ("intent", &s.intent)] {
        if value.as_ref().is_some_and(|v| v.len() > MAX_FIELD) {
            return Some(format!("`{key}` is longer than {MAX_FIELD} bytes"));
        }
    }
    if s.preview.as_ref().is_some_and(|p| p.len() > MAX_PREVIEW) {
        return Some(format!("`preview` is longer than {MAX_PREVIEW} bytes (cut it visibly before submitting)"));
    }
    if !is_hash(&s.effect_sha256) {
        return Some("`effect_sha256` must be `sha256:` followed by 64 lowercase hex digits".into());
    }
    if s.content_sha256.as_deref().is_some_and(|h| !is_hash(h)) {
        return Some("`content_sha256` must be `sha256:` followed by 64 lowercase hex digits".into());
    }
    if s.timeout_ms == 0 || s.timeout_ms > MAX_TIMEOUT_MS {
        return Some(format!("`timeout_ms` must be between 1 and {MAX_TIMEOUT_MS} (7 days)"));
    }
    rules::malformed(&s.require).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn host_and_origin() {
        let o = Origins::new("127.0.0.1:8700".parse().unwrap(), None).unwrap();
        assert_eq!(o.url(), "http://127.0.0.1:8700");
        assert_eq!(o.check(&headers(&[("host", "127.0.0.1:8700")]), None, true), Ok(()));
        assert_eq!(o.check(&headers(&[]), None, false).unwrap_err().0, 421);
        assert_eq!(o.check(&headers(&[("host", "evil.example:8700")]), None, false).unwrap_err().0, 421);
        // On loopback, `localhost` with the port names the service too.
        assert_eq!(o.check(&headers(&[("host", "localhost:8700")]), None, false), Ok(()));
        assert_eq!(o.check(&headers(&[("host", "localhost:8701")]), None, false).unwrap_err().0, 421);
        assert_eq!(o.check(&headers(&[("host", "localhost")]), None, false).unwrap_err().0, 421);
        let local = [("host", "localhost:8700"), ("origin", "http://localhost:8700")];
        assert_eq!(o.check(&headers(&local), None, true), Ok(()));
        assert_eq!(o.check(&headers(&[("host", "127.0.0.1")]), None, false).unwrap_err().0, 421);
        assert_eq!(o.check(&headers(&[("host", "127.0.0.1:8700"), ("host", "evil")]), None, false).unwrap_err().0, 421);
        let own = [("host", "127.0.0.1:8700"), ("origin", "http://127.0.0.1:8700")];
        assert_eq!(o.check(&headers(&own), None, true), Ok(()));
        let foreign = [("host", "127.0.0.1:8700"), ("origin", "http://evil.example")];
        assert_eq!(o.check(&headers(&foreign), None, true).unwrap_err().0, 403);
        assert_eq!(o.check(&headers(&foreign), None, false), Ok(()));
        let h = headers(&[("host", "127.0.0.1:8700")]);
        assert_eq!(o.check(&h, Some("127.0.0.1:8700"), false), Ok(()));
        assert_eq!(o.check(&h, Some("evil.example"), false).unwrap_err().0, 421);
        let null = [("host", "127.0.0.1:8700"), ("origin", "null")];
        assert_eq!(o.check(&headers(&null), None, true).unwrap_err().0, 403);
    }

    #[test]
    fn public_url() {
        let o = Origins::new("127.0.0.1:8700".parse().unwrap(), Some("https://Approvals.example.com/")).unwrap();
        assert_eq!(o.url(), "https://approvals.example.com");
        for h in ["approvals.example.com", "approvals.example.com:443", "127.0.0.1:8700"] {
            assert_eq!(o.check(&headers(&[("host", h)]), None, false), Ok(()), "{h}");
        }
        let own = [("host", "approvals.example.com"), ("origin", "https://approvals.example.com")];
        assert_eq!(o.check(&headers(&own), None, true), Ok(()));
        let http = [("host", "approvals.example.com"), ("origin", "http://approvals.example.com")];
        assert_eq!(o.check(&headers(&http), None, true).unwrap_err().0, 403);

        let o = Origins::new("0.0.0.0:80".parse().unwrap(), Some("http://10.0.0.5:8080")).unwrap();
        assert_eq!(o.check(&headers(&[("host", "10.0.0.5:8080")]), None, false), Ok(()));
        assert!(Origins::new("0.0.0.0:80".parse().unwrap(), None).is_err());
        for bad in ["ftp://x", "https://x/path", "https://u:p@x", "https://x/?q", "not a url"] {
            assert!(Origins::new("127.0.0.1:1".parse().unwrap(), Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer(&headers(&[("authorization", "Bearer abc")])), Some("abc"));
        assert_eq!(bearer(&headers(&[("authorization", "bearer abc")])), Some("abc"));
        assert_eq!(bearer(&headers(&[("authorization", "Basic abc")])), None);
        assert_eq!(bearer(&headers(&[("authorization", "Bearer ")])), None);
        assert_eq!(bearer(&headers(&[])), None);
        assert_eq!(bearer(&headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")])), None);
    }
}
