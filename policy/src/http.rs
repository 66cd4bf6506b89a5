//! Outbound HTTP: URL rules, the normal form of a request's URL, decisions,
//! and which addresses may be reached.
//!
//! A request is decided in two steps. First its URL, parsed with a WHATWG
//! parser (so `http://2130706433/`, `http://0x7f.1/` and `http://127.1/` are
//! all `127.0.0.1`, and `..` is resolved), is matched against the
//! `[[http.allow]]` rules: scheme, host (exact, or a leading `*.` label
//! wildcard matched label-wise), port (default by scheme) and path glob,
//! then the method and the query. Then every address the host name resolves
//! to is checked ([`HttpPolicy::check_address`]): special-purpose addresses
//! (loopback, private, link-local, ...) only when `http.allow_private` covers
//! them, cloud metadata addresses only when listed exactly.

use crate::fs::Verdict;
use globset::{GlobBuilder, GlobMatcher};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;
use url::{Host, Url};

/// Default ceiling for one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest URL a tool may send.
pub const MAX_URL_BYTES: usize = 8192;

/// Cloud metadata endpoints: reachable only when `allow_private` lists the
/// exact address.
pub const METADATA_ADDRESSES: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
];

/// The special-purpose ranges refused unless `allow_private` covers them,
/// with the word used in refusals.
const SPECIAL: &[(&str, &str)] = &[
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (carrier-grade NAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "special-purpose"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved or broadcast"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible"),
    ("64:ff9b::/96", "NAT64"),
    ("64:ff9b:1::/48", "NAT64"),
    ("100::/64", "discard"),
    ("2001::/23", "special-purpose"),
    ("2001:db8::/32", "documentation"),
    ("2002::/16", "6to4"),
    ("fc00::/7", "unique local (private)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
];

/// Request headers a tool may never set: the host derives them, or they
/// would change how the connection itself behaves.
pub const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "expect",
];

/// The URL scheme of a rule or request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http`
    Http,
    /// `https`
    Https,
}

impl Scheme {
    fn parse(s: &str) -> Option<Scheme> {
        match s {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }

    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A host as compared: a domain in normal form (lower case, IDNA, no
/// trailing dot) or an address (IPv4-mapped IPv6 as IPv4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostName {
    /// A DNS name.
    Domain(String),
    /// An IP literal.
    Ip(IpAddr),
}

impl HostName {
    fn from_url<S: AsRef<str>>(host: Host<S>) -> HostName {
        match host {
            Host::Domain(d) => {
                let d = d.as_ref();
                HostName::Domain(d.strip_suffix('.').unwrap_or(d).to_owned())
            }
            Host::Ipv4(a) => HostName::Ip(IpAddr::V4(a)),
            Host::Ipv6(a) => HostName::Ip(IpAddr::V6(a).to_canonical()),
        }
    }
}

impl std::fmt::Display for HostName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostName::Domain(d) => f.write_str(d),
            HostName::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            HostName::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
        }
    }
}

/// A request's URL in normal form.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    /// The parsed URL (fragment removed).
    pub url: Url,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// The host, normalised.
    pub host: HostName,
    /// The port, defaulted by scheme.
    pub port: u16,
}

impl HttpTarget {
    /// Parses a URL sent by a tool. Refused (the reason is the `invalid`
    /// message): malformed URLs, schemes other than http and https,
    /// userinfo, encoded `/`, `\` or NUL in the path, URLs over 8 KiB.
    pub fn parse(input: &str) -> Result<HttpTarget, String> {
        if input.len() > MAX_URL_BYTES {
            return Err(format!("the URL is {} bytes long; the limit is {MAX_URL_BYTES}", input.len()));
        }
        let mut url = Url::parse(input).map_err(|e| format!("malformed URL: {e}"))?;
        let scheme = Scheme::parse(url.scheme())
            .ok_or_else(|| format!("scheme `{}:` is not allowed; use http or https", url.scheme()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("userinfo (`user@` or `user:password@`) is not allowed in URLs".into());
        }
        let host = url.host().map(HostName::from_url).ok_or("the URL has no host")?;
        let lower = url.path().to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00") {
            return Err("the path holds an encoded `/`, `\\` or NUL (`%2F`, `%5C`, `%00`)".into());
        }
        url.set_fragment(None);
        let port = url.port_or_known_default().unwrap_or(scheme.default_port());
        Ok(HttpTarget { url, scheme, host, port })
    }

    /// The URL as recorded in audit events: query values removed (the keys
    /// stay), no fragment, no userinfo, the port only when not the default.
    pub fn recorded(&self) -> String {
        let mut s = format!("{}://{}", self.scheme.as_str(), self.authority());
        s.push_str(self.url.path());
        if let Some(q) = self.url.query() {
            let keys: Vec<&str> = q.split('&').map(|kv| kv.split('=').next().unwrap_or("")).collect();
            s.push('?');
            s.push_str(&keys.join("&"));
        }
        s
    }

    /// `host` or `host:port` (when not the default): the `Host` header.
    pub fn authority(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.host.to_string()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The request target sent on the wire: path and query.
    pub fn origin_form(&self) -> String {
        match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_owned(),
        }
    }
}

/// How a rule names hosts.
#[derive(Debug, Clone)]
enum HostPattern {
    Exact(HostName),
    /// `*.example.com`: the suffix `example.com`, matched label-wise.
    Wildcard(String),
}

impl HostPattern {
    fn matches(&self, host: &HostName) -> bool {
        match (self, host) {
            (HostPattern::Exact(h), host) => h == host,
            (HostPattern::Wildcard(suffix), HostName::Domain(d)) => {
                d.len() > suffix.len() + 1
                    && d.ends_with(suffix.as_str())
                    && d.as_bytes()[d.len() - suffix.len() - 1] == b'.'
            }
            (HostPattern::Wildcard(_), HostName::Ip(_)) => false,
        }
    }

    /// Whether every host `other` matches, this pattern matches too.
    fn covers(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (this, HostPattern::Exact(h)) => this.matches(h),
            (HostPattern::Wildcard(s), HostPattern::Wildcard(t)) => {
                t == s || t.strip_suffix(s.as_str()).is_some_and(|label| label.ends_with('.'))
            }
            (HostPattern::Exact(_), HostPattern::Wildcard(_)) => false,
        }
    }

    /// Whether some host could match both: false only when provably not.
    fn may_overlap(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Exact(h), o) | (o, HostPattern::Exact(h)) => o.matches(h),
            (a @ HostPattern::Wildcard(_), b @ HostPattern::Wildcard(_)) => a.covers(b) || b.covers(a),
        }
    }
}

/// Characters that make a path glob more than a literal.
const GLOB_META: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];

/// Whether a path some glob `a` matches could also match glob `b`: false
/// only when provably not (a literal the other does not match, or literal
/// beginnings or endings that differ).
fn paths_may_overlap(a: &HttpRule, b: &HttpRule) -> bool {
    let (pa, pb) = (a.path_text(), b.path_text());
    if !pa.contains(GLOB_META) {
        return b.path.is_match(pa);
    }
    if !pb.contains(GLOB_META) {
        return a.path.is_match(pb);
    }
    let prefix = |p: &str| p.find(GLOB_META).map_or(p.len(), |i| i);
    let suffix = |p: &str| p.rfind(GLOB_META).map_or(0, |i| i + 1);
    let (a0, b0) = (&pa[..prefix(pa)], &pb[..prefix(pb)]);
    let (a1, b1) = (&pa[suffix(pa)..], &pb[suffix(pb)..]);
    (a0.starts_with(b0) || b0.starts_with(a0)) && (a1.ends_with(b1) || b1.ends_with(a1))
}

/// One compiled `[[http.allow]]` rule.
#[derive(Debug, Clone)]
pub struct HttpRule {
    /// `http.allow[0]:https://api.example.com/v1/**`
    pub name: String,
    scheme: Scheme,
    host: HostPattern,
    port: u16,
    path: GlobMatcher,
    methods: Vec<String>,
    /// `Some(true)`: always ask; `Some(false)`: never; `None`: by method.
    approval: Option<bool>,
    query: bool,
    /// Who the rule is for; `None`: everyone.
    pub when: Option<crate::caller::When>,
    /// `headers`: set by the host on every request this rule allows,
    /// replacing the tool's header of the same name.
    pub headers: Vec<(String, crate::secrets::Template)>,
}

impl HttpRule {
    /// The same rule under another name (a task manifest's rules are
    /// recorded as `task.…`).
    pub(crate) fn renamed(&self, name: String) -> HttpRule {
        HttpRule { name, ..self.clone() }
    }

    /// The methods the rule allows.
    pub fn methods(&self) -> &[String] {
        &self.methods
    }

    /// Whether `method` needs a human's approval under this rule.
    pub fn asks(&self, method: &str) -> bool {
        self.approval.unwrap_or(!matches!(method, "GET" | "HEAD"))
    }

    /// Whether the rule allows query strings.
    pub fn allows_query(&self) -> bool {
        self.query
    }

    /// The `url` pattern as written.
    pub fn url(&self) -> &str {
        self.name.split_once(':').map_or("", |(_, u)| u)
    }

    /// The path glob of the `url` pattern as written (`/v1/**`).
    fn path_text(&self) -> &str {
        let rest = self.url().split_once("://").map_or("", |(_, r)| r);
        rest.find('/').map_or("/", |i| &rest[i..])
    }

    /// Whether every location (scheme, host, port, path) this rule's
    /// pattern matches, `self` matches too. Decided on the patterns, so
    /// conservative: false when it cannot tell.
    pub(crate) fn location_covers(&self, other: &HttpRule) -> bool {
        self.scheme == other.scheme
            && self.port == other.port
            && self.host.covers(&other.host)
            && crate::narrow::covered(other.path_text(), &[self.path_text()])
    }

    /// Whether some location could match both rules' patterns: false only
    /// when provably not (another scheme, port or host, disjoint paths).
    pub(crate) fn location_may_overlap(&self, other: &HttpRule) -> bool {
        self.scheme == other.scheme
            && self.port == other.port
            && self.host.may_overlap(&other.host)
            && paths_may_overlap(self, other)
    }
}

/// A rule as written, before compiling.
#[derive(Debug, Clone)]
pub(crate) struct RuleSpec<'a> {
    pub url: &'a str,
    pub methods: Option<Vec<String>>,
    pub approval: Option<bool>,
    pub query: bool,
}

/// Compiles one rule; the error names what is wrong with it.
pub(crate) fn compile_rule(index: usize, spec: RuleSpec<'_>) -> Result<HttpRule, (&'static str, String)> {
    let url = spec.url;
    let (scheme_text, rest) =
        url.split_once("://").ok_or(("url", format!("`{url}` is not a URL pattern (`https://host/path`)")))?;
    let scheme = Scheme::parse(scheme_text)
        .ok_or(("url", format!("scheme `{scheme_text}` is not allowed in `{url}`; use http or https")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err(("url", format!("`{url}` holds userinfo (`@`); name only the host")));
    }
    let (host_text, port) = split_port(authority).map_err(|m| ("url", format!("`{url}`: {m}")))?;
    let host = if host_text == "*" || host_text.is_empty() {
        return Err(("url", format!("`{url}` allows every host; name the hosts the tool needs")));
    } else if let Some(suffix) = host_text.strip_prefix("*.") {
        let parsed = Host::parse(suffix).map_err(|e| ("url", format!("bad host `{suffix}` in `{url}`: {e}")))?;
        match HostName::from_url(parsed) {
            HostName::Domain(d) if d.contains('.') && !d.contains('*') => HostPattern::Wildcard(d),
            HostName::Domain(_) => {
                return Err((
                    "url",
                    format!("`{url}`: a wildcard needs at least two labels after `*.` (`*.example.com`)"),
                ));
            }
            HostName::Ip(_) => return Err(("url", format!("`{url}`: a wildcard cannot stand before an IP address"))),
        }
    } else if host_text.contains('*') {
        return Err(("url", format!("`{url}`: `*` may only be the whole first label of a host (`*.example.com`)")));
    } else {
        let parsed = Host::parse(host_text).map_err(|e| ("url", format!("bad host `{host_text}` in `{url}`: {e}")))?;
        HostPattern::Exact(HostName::from_url(parsed))
    };
    if path.contains(['?', '#']) {
        return Err((
            "url",
            format!("`{url}`: `?` and `#` cannot appear in a rule's path (use `query = false` to refuse queries)"),
        ));
    }
    if path.chars().any(char::is_control) || path.contains(' ') {
        return Err(("url", format!("`{}`: the path holds spaces or control characters", url.escape_debug())));
    }
    let glob = GlobBuilder::new(path)
        .literal_separator(true)
        .build()
        .map_err(|e| ("url", format!("bad path glob `{path}` in `{url}`: {}", e.kind())))?;
    let methods = match spec.methods {
        None => vec!["GET".to_owned(), "HEAD".to_owned()],
        Some(ms) if ms.is_empty() => return Err(("methods", "must name at least one method".into())),
        Some(ms) => {
            for m in &ms {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(("methods", format!("`{m}` is not an HTTP method in upper case (`GET`, `POST`, ...)")));
                }
            }
            ms
        }
    };
    Ok(HttpRule {
        name: format!("http.allow[{index}]:{url}"),
        scheme,
        host,
        port: port.unwrap_or(scheme.default_port()),
        path: glob.compile_matcher(),
        methods,
        approval: spec.approval,
        query: spec.query,
        when: None,
        headers: Vec::new(),
    })
}

fn split_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').ok_or("unclosed `[` in the host")?;
        let after = &rest[end + 1..];
        (&authority[..end + 2], after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => {
            Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("`{p}` is not a port (1 to 65535)"))?)
        }
    };
    Ok((host, port))
}

/// Parses an `allow_private` entry: a CIDR, or one address.
pub(crate) fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let net = s
        .parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{s}` is not an address range (`127.0.0.1/32`, `10.0.0.0/8`, `fd00::/8`)"))?;
    if net.prefix_len() == 0 {
        return Err(format!("`{s}` covers every address; list the ranges the tool needs"));
    }
    Ok(net)
}

/// The compiled `[http]` section.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    rules: Vec<HttpRule>,
    allow_private: Vec<IpNet>,
    special: Vec<(IpNet, &'static str)>,
    /// `http.timeout`: ceiling for one request; default 30 s.
    pub timeout: Duration,
    /// `http.ca_certs`: extra trusted roots (PEM files), resolved against
    /// the manifest's directory.
    pub ca_certs: Vec<PathBuf>,
}

/// Why a request is refused before anything is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpDenial<'p> {
    /// The rule that decided (`default` when none matched).
    pub rule: &'p str,
    /// The message for the tool.
    pub reason: String,
}

impl HttpPolicy {
    pub(crate) fn new(
        rules: Vec<HttpRule>,
        allow_private: Vec<IpNet>,
        timeout: Duration,
        ca_certs: Vec<PathBuf>,
    ) -> HttpPolicy {
        // The table is constant and tested; every entry parses.
        let special = SPECIAL.iter().filter_map(|(net, what)| net.parse().ok().map(|n| (n, *what))).collect();
        HttpPolicy { rules, allow_private, special, timeout, ca_certs }
    }

    /// The policy of a manifest without `[http]`: no rule, so every request
    /// is denied.
    pub fn none() -> HttpPolicy {
        HttpPolicy::new(Vec::new(), Vec::new(), DEFAULT_TIMEOUT, Vec::new())
    }

    /// The policy for one caller: the rules whose `when` holds.
    pub fn for_caller(&self, caller: &crate::caller::Caller) -> HttpPolicy {
        let mut out = self.clone();
        out.rules.retain(|r| r.when.as_ref().is_none_or(|w| w.holds(caller)));
        out
    }

    /// The compiled rules.
    pub fn rules(&self) -> &[HttpRule] {
        &self.rules
    }

    /// The `allow_private` ranges.
    pub fn allow_private(&self) -> &[IpNet] {
        &self.allow_private
    }

    /// Decides a request by its method and URL: `Allow` or `Ask` with the
    /// rule, or a denial. The first rule whose location (scheme, host, port,
    /// path) matches and that allows the method and the query decides.
    pub fn decide(&self, method: &str, target: &HttpTarget) -> Result<(Verdict, &HttpRule), HttpDenial<'_>> {
        let mut refusal: Option<HttpDenial<'_>> = None;
        for rule in &self.rules {
            if rule.scheme != target.scheme
                || rule.port != target.port
                || !rule.host.matches(&target.host)
                || !rule.path.is_match(target.url.path())
            {
                continue;
            }
            if !rule.methods.iter().any(|m| m == method) {
                refusal.get_or_insert(HttpDenial {
                    rule: &rule.name,
                    reason: format!(
                        "method {method} is not allowed by {} (it allows {})",
                        rule.name,
                        rule.methods.join(", ")
                    ),
                });
                continue;
            }
            if !rule.query && target.url.query().is_some() {
                refusal.get_or_insert(HttpDenial {
                    rule: &rule.name,
                    reason: format!("{} refuses query strings", rule.name),
                });
                continue;
            }
            let ask = rule.approval.unwrap_or(!matches!(method, "GET" | "HEAD"));
            return Ok((if ask { Verdict::Ask } else { Verdict::Allow }, rule));
        }
        Err(refusal.unwrap_or_else(|| HttpDenial {
            rule: "default",
            reason: format!("no rule allows {method} {}", target.recorded()),
        }))
    }

    /// Whether the host may connect to `ip`; the error says what kind of
    /// address it is (`a loopback address not in ...`). Special-purpose addresses
    /// (loopback, private, link-local, ...; IPv4-mapped forms included)
    /// need an `allow_private` range covering them; cloud metadata
    /// addresses need one naming them exactly.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), String> {
        let ip = ip.to_canonical();
        if METADATA_ADDRESSES.contains(&ip) {
            let exact = self.allow_private.iter().any(|n| n.addr() == ip && n.prefix_len() == n.max_prefix_len());
            return if exact {
                Ok(())
            } else {
                Err("a cloud metadata address (only an `http.allow_private` entry naming it exactly allows it)".into())
            };
        }
        let Some((_, what)) = self.special.iter().find(|(net, _)| net.contains(&ip)) else {
            return Ok(());
        };
        if self.allow_private.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        Err(format!("a {what} address not in `http.allow_private`"))
    }
}

/// Checks a header a tool wants to send: a valid name and value, and not
/// one the host controls.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    let valid_name =
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid_name {
        return Err(format!("`{}` is not a valid header name", name.escape_debug()));
    }
    let lower = name.to_ascii_lowercase();
    if FORBIDDEN_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
        return Err(format!("the tool may not set the `{name}` header; the host sets it"));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0 || (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!("the value of `{name}` holds CR, LF, NUL or another control character"));
    }
    Ok(())
}

/// Checks a method a tool asks for: an HTTP token in upper case.
pub fn check_method(method: &str) -> Result<(), String> {
    if method.is_empty() || method.len() > 32 || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("`{}` is not an HTTP method in upper case (`GET`, `POST`, ...)", method.escape_debug()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(i: usize, url: &str, methods: Option<&[&str]>, query: bool) -> HttpRule {
        compile_rule(
            i,
            RuleSpec {
                url,
                methods: methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
                approval: None,
                query,
            },
        )
        .unwrap()
    }

    fn policy(rules: Vec<HttpRule>, private: &[&str]) -> HttpPolicy {
        HttpPolicy::new(rules, private.iter().map(|p| parse_cidr(p).unwrap()).collect(), DEFAULT_TIMEOUT, vec![])
    }

    fn t(url: &str) -> HttpTarget {
        HttpTarget::parse(url).unwrap()
    }

    #[test]
    fn urls_are_parsed_into_one_normal_form() {
        for (u, host) in [
            ("http://2130706433/", "127.0.0.1"),
            ("http://0x7f.0.0.1/", "127.0.0.1"),
            ("http://017700000001/", "127.0.0.1"),
            ("http://127.1/", "127.0.0.1"),
            ("http://[::ffff:127.0.0.1]/", "127.0.0.1"),
            ("HTTP://API.Example.COM./x", "api.example.com"),
            ("http://bücher.de/", "xn--bcher-kva.de"),
            ("http://[::1]:8080/", "[::1]"),
        ] {
            assert_eq!(t(u).host.to_string(), host, "{u}");
        }
        assert_eq!(t("http://x.com/a/../b").url.path(), "/b");
        assert_eq!(t("http://x.com/a/%2e%2e/b").url.path(), "/b");
        assert_eq!(t("https://x.com/p?token=s3cret&q=1#frag").recorded(), "https://x.com/p?token&q");
        assert_eq!(t("https://x.com/p?token=s3cret&q=1#frag").origin_form(), "/p?token=s3cret&q=1");
        assert_eq!(t("http://x.com:8080/").authority(), "x.com:8080");
        assert_eq!(t("https://x.com:443/").authority(), "x.com");
    }

    #[test]
    fn bad_urls_are_invalid() {
        for u in [
            "file:///etc/passwd",
            "gopher://x.com/",
            "ftp://x.com/",
            "http://user@x.com/",
            "http://user:pw@x.com/",
            "http://x.com/a%2fb",
            "http://x.com/a%5Cb",
            "http://x.com/a%00",
            "not a url",
            "http://",
            "//x.com/",
        ] {
            assert!(HttpTarget::parse(u).is_err(), "{u}");
        }
        assert!(HttpTarget::parse(&format!("http://x.com/{}", "a".repeat(9000))).is_err());
    }

    #[test]
    fn rules_match_scheme_host_port_path_method_and_query() {
        let p = policy(
            vec![
                rule(0, "https://api.example.com/v1/**", None, true),
                rule(1, "https://hooks.example.com/ci", Some(&["POST"]), false),
                rule(2, "http://127.0.0.1:8080/api/**", None, true),
            ],
            &[],
        );
        assert_eq!(
            p.decide("GET", &t("https://api.example.com/v1/repos/x")).map(|(v, r)| (v, r.name.as_str())),
            Ok((Verdict::Allow, "http.allow[0]:https://api.example.com/v1/**"))
        );
        assert_eq!(p.decide("GET", &t("https://API.example.com:443/v1/")).map(|d| d.0), Ok(Verdict::Allow));
        assert!(p.decide("GET", &t("https://api.example.com/v1")).is_err());
        assert!(p.decide("GET", &t("https://api.example.com/v2/x")).is_err());
        assert!(p.decide("GET", &t("http://api.example.com/v1/x")).is_err());
        assert!(p.decide("GET", &t("https://api.example.com:8443/v1/x")).is_err());
        assert!(p.decide("GET", &t("https://api.example.com/v1/../v2/x")).is_err());
        let denied = p.decide("DELETE", &t("https://api.example.com/v1/x")).unwrap_err();
        assert_eq!(denied.rule, "http.allow[0]:https://api.example.com/v1/**");
        assert!(denied.reason.contains("DELETE"), "{denied:?}");
        assert_eq!(p.decide("POST", &t("https://hooks.example.com/ci")).map(|d| d.0), Ok(Verdict::Ask));
        assert!(p.decide("POST", &t("https://hooks.example.com/ci?x=1")).unwrap_err().reason.contains("query"));
        assert_eq!(p.decide("GET", &t("http://127.1:8080/api/json")).map(|d| d.0), Ok(Verdict::Allow));
        assert_eq!(p.decide("GET", &t("http://2130706433:8080/api/json")).map(|d| d.0), Ok(Verdict::Allow));
        assert!(p.decide("GET", &t("http://localhost:8080/api/json")).is_err());
        assert!(p.decide("GET", &t("http://127.0.0.1:8081/api/json")).is_err());
        assert_eq!(p.decide("GET", &t("http://x.com/")).unwrap_err().rule, "default");
    }

    #[test]
    fn wildcards_match_label_wise() {
        let p = policy(vec![rule(0, "https://*.example.com/**", None, true)], &[]);
        for ok in ["https://a.example.com/x", "https://a.b.example.com/x", "https://A.EXAMPLE.com/"] {
            assert!(p.decide("GET", &t(ok)).is_ok(), "{ok}");
        }
        for no in [
            "https://example.com/x",
            "https://example.com.evil.net/x",
            "https://evilexample.com/x",
            "https://a.example.co/x",
        ] {
            assert!(p.decide("GET", &t(no)).is_err(), "{no}");
        }
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in [
            "https://*/x",
            "https://a.*.com/x",
            "https://*.com/x",
            "https://*.1.2.3.4/x",
            "ftp://x.com/",
            "https://u@x.com/",
            "https://x.com:0/",
            "https://x.com:99999/",
            "https://x.com:abc/",
            "x.com/path",
            "https://x.com/a?b",
            "https://x.com/[",
        ] {
            let r = compile_rule(0, RuleSpec { url: bad, methods: None, approval: None, query: true });
            assert!(r.is_err(), "{bad}");
        }
        let r = compile_rule(
            0,
            RuleSpec { url: "https://x.com/", methods: Some(vec!["get".into()]), approval: None, query: true },
        );
        assert_eq!(r.unwrap_err().0, "methods");
    }

    #[test]
    fn special_addresses_need_allow_private() {
        let p = policy(vec![], &["127.0.0.1/32", "10.1.0.0/16", "169.254.0.0/16"]);
        assert!(p.check_address("127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check_address("::ffff:127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check_address("10.1.2.3".parse().unwrap()).is_ok());
        assert!(p.check_address("93.184.216.34".parse().unwrap()).is_ok());
        assert!(p.check_address("2606:2800:220:1::1".parse().unwrap()).is_ok());
        for bad in [
            "127.0.0.2",
            "10.2.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:192.168.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "169.254.169.254",
            "169.254.170.2",
            "100.100.100.200",
            "fd00:ec2::254",
        ] {
            assert!(p.check_address(bad.parse().unwrap()).is_err(), "{bad}");
        }
        let exact = policy(vec![], &["169.254.169.254/32"]);
        assert!(exact.check_address("169.254.169.254".parse().unwrap()).is_ok());
        assert!(exact.check_address("::ffff:169.254.169.254".parse().unwrap()).is_ok());
        assert!(exact.check_address("169.254.1.1".parse().unwrap()).is_err());
    }

    #[test]
    fn headers_and_methods_are_checked() {
        for (n, v) in [
            ("Host", "x"),
            ("host", "x"),
            ("Connection", "close"),
            ("Transfer-Encoding", "chunked"),
            ("Proxy-Foo", "x"),
            ("X", "a\r\nEvil: 1"),
            ("X", "a\nb"),
            ("X", "a\0"),
            ("Bad Name", "x"),
            ("", "x"),
            ("Content-Length", "1"),
        ] {
            assert!(check_header(n, v).is_err(), "{n}: {v:?}");
        }
        assert!(check_header("Accept", "application/json").is_ok());
        assert!(check_header("Authorization", "Bearer x\ty").is_ok());
        for m in ["get", "GE T", "", "G\r\nET"] {
            assert!(check_method(m).is_err(), "{m:?}");
        }
        assert!(check_method("PATCH").is_ok());
    }
}
