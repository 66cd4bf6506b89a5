//! The built-in detectors: what each one matches and the checks that keep
//! look-alikes out (Luhn and issuer ranges for card numbers, the SSA's
//! invalid ranges for SSNs, a JSON header with `alg` for JWTs).
//!
//! Every pattern runs on bytes in ASCII mode (`(?-u)`): `\b`, `\s` and
//! classes mean their ASCII selves, so the lazy DFA never falls back to a
//! slower engine on non-ASCII text. Matches are widened to character
//! boundaries before anything is replaced.

use base64::Engine as _;
use std::ops::Range;

/// A built-in detector as listed to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Builtin {
    /// The name used in `[redact] detectors` and in `[redacted:NAME]`.
    pub name: &'static str,
    /// What it catches, one line.
    pub about: &'static str,
    /// Part of `detectors = ["default"]`.
    pub default: bool,
}

/// Every built-in detector, in the order a tie between overlapping matches
/// is labelled (the more specific format first).
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "private-key",
        about: "PEM private key blocks (`-----BEGIN ... PRIVATE KEY-----` through END, also inside JSON strings)",
        default: true,
    },
    Builtin { name: "jwt", about: "JSON Web Tokens: base64url parts whose header is JSON with `alg`", default: true },
    Builtin {
        name: "aws-access-key",
        about: "AWS access key ids (AKIA, ASIA, ...) and secret keys assigned to an aws secret key name",
        default: true,
    },
    Builtin {
        name: "github-token",
        about: "GitHub tokens: ghp_, gho_, ghu_, ghs_, ghr_ and github_pat_",
        default: true,
    },
    Builtin { name: "gitlab-token", about: "GitLab tokens: glpat-, gldt-, glrt-, glptt- and kin", default: true },
    Builtin {
        name: "slack-token",
        about: "Slack tokens (xoxb-, xoxp-, xapp-, ...) and hooks.slack.com webhook URLs",
        default: true,
    },
    Builtin { name: "google-api-key", about: "Google API keys (AIza...)", default: true },
    Builtin {
        name: "stripe-key",
        about: "Stripe secret and restricted keys (sk_live_, rk_test_, ...) and webhook secrets",
        default: true,
    },
    Builtin {
        name: "openai-key",
        about: "OpenAI API keys (sk-..., sk-proj-... with the T3BlbkFJ marker)",
        default: true,
    },
    Builtin { name: "anthropic-key", about: "Anthropic API keys (sk-ant-api03-...)", default: true },
    Builtin { name: "npm-token", about: "npm access tokens (npm_...)", default: true },
    Builtin {
        name: "card-number",
        about: "payment card numbers: 13-19 digits, optionally grouped by spaces or dashes, Luhn-checked, known issuer ranges",
        default: true,
    },
    Builtin {
        name: "us-ssn",
        about: "US social security numbers AAA-GG-SSSS outside the ranges the SSA never issues",
        default: true,
    },
    Builtin {
        name: "url-password",
        about: "the password in a URL's userinfo (scheme://user:PASSWORD@host)",
        default: true,
    },
    Builtin { name: "bearer", about: "the credential after `Bearer ` and in `Authorization:` headers", default: true },
    Builtin {
        name: "secret-assignment",
        about: "values assigned to password, secret, token and API-key names in env files, shell, YAML, JSON, INI and code",
        default: true,
    },
];

/// A check on a candidate, given the whole text and the span that would be
/// replaced.
#[derive(Clone, Copy)]
pub(crate) enum Check {
    /// False: not a secret after all.
    Keep(fn(&str, Range<usize>) -> bool),
    /// Pushes the parts of the span that are secrets (a run of digit
    /// groups may hold card numbers among other numbers).
    Split(fn(&str, Range<usize>, &mut Vec<Range<usize>>)),
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Check::Keep(_) => "Keep",
            Check::Split(_) => "Split",
        })
    }
}

/// One pattern of a built-in detector (a detector may have several).
pub(crate) struct Spec {
    pub name: &'static str,
    /// A regex in ASCII mode.
    pub pattern: &'static str,
    /// Literals (ASCII case-insensitive) of which every match holds one;
    /// empty: the pattern has none and goes through the set prefilter.
    pub anchors: &'static [&'static str],
    /// The capture groups that hold the secret, first participating one
    /// wins; empty: the whole match.
    pub groups: &'static [usize],
    /// Rejects look-alikes.
    pub check: Option<Check>,
    /// The capture group naming the key (secret-assignment), checked by
    /// [`key_names_a_secret`].
    pub key_group: Option<usize>,
}

/// A pattern with the secret-naming keywords between two parts.
macro_rules! kw {
    ($before:literal, $after:literal) => {
        concat!(
            $before,
            r"(?i:password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|secret[_-]?key|signing[_-]?key|encryption[_-]?key|master[_-]?key|auth[_-]?key|credentials?)",
            $after
        )
    };
}

pub(crate) const SPECS: &[Spec] = &[
    Spec {
        name: "private-key",
        // The body: `Name: value` header lines (tried first, or `Version`
        // would end the match as base64 at its colon), base64 lines, and
        // `\n` escapes (a key inside a JSON string); END when it is there,
        // else as far as the body goes.
        pattern: r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:[A-Za-z][A-Za-z-]{0,40}:[^\r\n\\]*|[A-Za-z0-9+/=\s]|\\[nr])*(?:-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)?",
        anchors: &["-----BEGIN"],
        groups: &[],
        check: None,
        key_group: None,
    },
    Spec {
        name: "jwt",
        pattern: r"\be[wy][A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)?",
        anchors: &["ey", "ew"],
        groups: &[],
        check: Some(Check::Keep(jwt_header)),
        key_group: None,
    },
    Spec {
        name: "aws-access-key",
        pattern: r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b",
        anchors: &["AKIA", "ASIA", "ABIA", "ACCA", "A3T"],
        groups: &[],
        check: None,
        key_group: None,
    },
    Spec {
        name: "aws-access-key",
        pattern: r#"(?i:aws_?secret_?access_?key|aws_?secret_?key|secret_?access_?key|aws_?secret)["']?\s*(?::=|=>|=|:)\s*["']?([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#,
        anchors: &["secret"],
        groups: &[1],
        check: None,
        key_group: None,
    },
    Spec {
        name: "github-token",
        pattern: r"\b(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{80,250})\b",
        anchors: &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
        groups: &[],
        check: None,
        key_group: None,
    },
    Spec {
        name: "gitlab-token",
        pattern: r"\bgl(?:pat|dt|rt|ptt|ft|soat|imt|cbt|agent)-[A-Za-z0-9_-]{20,250}",
        anchors: &["glpat-", "gldt-", "glrt-", "glptt-", "glft-", "glsoat-", "glimt-", "glcbt-", "glagent-"],
        groups: &[],
        check: None,
        key_group: None,
    },
    Spec {
        name: "slack-token",
        pattern: r"\b(?:(?:xoxe\.)?xox[abposer]-[0-9A-Za-z-]{10,250}|xapp-[0-9]-[0-9A-Za-z-]{10,250})",
        anchors: &["xox", "xapp-"],
        groups: &[],
        check: None,
        key_group: None,
    },
    Spec {
        name: "slack-token",
        pattern: r"https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_-]{16,}",
        anchors: &["hooks.slack.com"],
        groups: &[],
        check: None,
        key_group: None,
    },
    Spec {
        name: "google-api-key",
        pattern: r"\b(AIza[0-9A-Za-z_-]{35})(?:[^0-9A-Za-z_-]|$)",
        anchors: &["AIza"],
        groups: &[1],
        check: None,
        key_group: None,
    },
    Spec {
        name: "stripe-key",
        pattern: r"\b(?:(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,247}|whsec_[0-9A-Za-z]{32,128})\b",
        anchors: &["sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"],
        groups: &[],
        check: None,
        key_group: None,
    },
    Spec {
        name: "openai-key",
        pattern: r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{16,250}T3BlbkFJ[A-Za-z0-9_-]{16,250}",
        anchors: &["T3BlbkFJ"],
        groups: &[],
        check: None,
        key_group: None,
    },
    Spec {
        name: "anthropic-key",
        pattern: r"\bsk-ant-(?:api|admin|oat|ort)[0-9]{2}-[A-Za-z0-9_-]{80,250}",
        anchors: &["sk-ant-"],
        groups: &[],
        check: None,
        key_group: None,
    },
    Spec {
        name: "npm-token",
        pattern: r"\bnpm_[A-Za-z0-9]{36}\b",
        anchors: &["npm_"],
        groups: &[],
        check: None,
        key_group: None,
    },
    Spec {
        name: "card-number",
        // Any run of digits and single separators holding 13 or more
        // digits; the check finds the cards in it.
        pattern: r"\b[0-9](?:[ -]?[0-9]){12,}\b",
        anchors: &[],
        groups: &[],
        check: Some(Check::Split(card_numbers)),
        key_group: None,
    },
    Spec {
        name: "us-ssn",
        pattern: r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b",
        anchors: &[],
        groups: &[],
        check: Some(Check::Keep(us_ssn)),
        key_group: None,
    },
    Spec {
        name: "url-password",
        pattern: r#"\b[A-Za-z][A-Za-z0-9+.-]{0,20}://[^\s:@/?#"'<>\[\]]{1,128}:([^\s@/?#"'<>]{1,256})@"#,
        anchors: &["://"],
        groups: &[1],
        check: Some(Check::Keep(not_placeholder)),
        key_group: None,
    },
    Spec {
        name: "bearer",
        pattern: r"(?i:\bbearer)[ \t]+([A-Za-z0-9._~+/-]{16,}=*)",
        anchors: &["bearer"],
        groups: &[1],
        check: Some(Check::Keep(token_like)),
        key_group: None,
    },
    Spec {
        name: "bearer",
        pattern: r#"(?i:\bauthorization)["']?[ \t]*:[ \t]*["']?(?:(?i:basic|token|bearer|digest|apikey|sso-key|negotiate)[ \t]+)?([A-Za-z0-9._~+/:-]{8,}=*)"#,
        anchors: &["authorization"],
        groups: &[1],
        check: Some(Check::Keep(token_like)),
        key_group: None,
    },
    // Env files, shell and Dockerfiles: `NAME=value` at the start of a
    // line, the name holding a keyword anywhere.
    Spec {
        name: "secret-assignment",
        pattern: kw!(
            r#"(?m)^[ \t]*(?:export[ \t]+|ENV[ \t]+|set[ \t]+)?([A-Za-z0-9_.-]*"#,
            r#"[A-Za-z0-9_.-]*)=(?:"([^"\r\n]{1,500})"|'([^'\r\n]{1,500})'|([^\s"'#][^\s#]{0,499}))"#
        ),
        anchors: &["passw", "passphrase", "secret", "token", "key", "credential"],
        groups: &[2, 3, 4],
        check: Some(Check::Keep(assigned_value)),
        key_group: Some(1),
    },
    // Code, JSON, YAML, TOML: a quoted value assigned to a name ending in
    // a keyword.
    Spec {
        name: "secret-assignment",
        pattern: kw!(
            r#"([A-Za-z0-9_.-]*"#,
            r#")["']?[ \t]*(?::=|=>|=|:)[ \t]*(?:"([^"\r\n\\]{4,500})"|'([^'\r\n\\]{4,500})')"#
        ),
        anchors: &["passw", "passphrase", "secret", "token", "key", "credential"],
        groups: &[2, 3],
        check: Some(Check::Keep(assigned_value)),
        key_group: Some(1),
    },
    // YAML, INI, properties: an unquoted value that ends its line.
    Spec {
        name: "secret-assignment",
        pattern: kw!(
            r#"(?m)^[ \t]*(?:-[ \t]+)?["']?([A-Za-z0-9_.-]*"#,
            r#")["']?[ \t]*[:=][ \t]*([^\s"'#,;(){}\[\]<>][^\s#,;(){}\[\]<>]{3,499})[ \t]*(?:#[^\r\n]*)?\r?$"#
        ),
        anchors: &["passw", "passphrase", "secret", "token", "key", "credential"],
        groups: &[2],
        check: Some(Check::Keep(unquoted_value)),
        key_group: Some(1),
    },
];

/// True when `digits` passes the Luhn check.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// True when the number's leading digits and length fit a card network
/// that issues such numbers: Visa, Mastercard, American Express, Discover,
/// Diners Club, JCB, UnionPay, Maestro, Mir, RuPay.
pub fn plausible_iin(digits: &[u8]) -> bool {
    let n = digits.len();
    let prefix = |k: usize| digits[..k].iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    match digits[0] {
        b'4' => matches!(n, 13 | 16 | 19),
        b'5' => match prefix(2) {
            51..=55 => n == 16,
            50 | 56..=59 => (13..=19).contains(&n),
            _ => false,
        },
        b'2' => (2221..=2720).contains(&prefix(4)) && n == 16 || (2200..=2204).contains(&prefix(4)) && n >= 16,
        b'3' => {
            matches!(prefix(2), 34 | 37) && n == 15
                || (300..=305).contains(&prefix(3)) && (14..=19).contains(&n)
                || matches!(prefix(2), 36 | 38 | 39) && (14..=19).contains(&n)
                || (3528..=3589).contains(&prefix(4)) && (16..=19).contains(&n)
        }
        b'6' => (13..=19).contains(&n),
        b'8' => matches!(prefix(2), 81 | 82) && (16..=19).contains(&n),
        _ => false,
    }
}

/// The character before `at`, and the one before that.
fn before(text: &str, at: usize) -> (Option<u8>, Option<u8>) {
    let b = text.as_bytes();
    (at.checked_sub(1).map(|i| b[i]), at.checked_sub(2).map(|i| b[i]))
}

/// The character at `at`, and the one after it.
fn after(text: &str, at: usize) -> (Option<u8>, Option<u8>) {
    let b = text.as_bytes();
    (b.get(at).copied(), b.get(at + 1).copied())
}

/// Part of a longer number: `3.14159...`, `1,234...`, `12-4111...`,
/// `...1111.5`.
fn inside_longer_number(text: &str, span: &Range<usize>, joiners: &[u8]) -> bool {
    let digit = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_digit());
    let (p1, p2) = before(text, span.start);
    let (n1, n2) = after(text, span.end);
    p1.is_some_and(|c| joiners.contains(&c)) && digit(p2) || n1.is_some_and(|c| joiners.contains(&c)) && digit(n2)
}

/// The card numbers in a run of digit groups: windows of whole groups,
/// longest first from the left, each 13 to 19 digits with one kind of
/// separator, in groups of 3 to 7 digits (the last may be shorter: 4-4-4-4,
/// 4-6-5, 4-4-4-4-3), passing Luhn and an issuer range.
fn card_numbers(text: &str, span: Range<usize>, out: &mut Vec<Range<usize>>) {
    let b = text.as_bytes();
    let mut groups: Vec<Range<usize>> = Vec::new();
    let mut i = span.start;
    while i < span.end {
        let start = i;
        while i < span.end && b[i].is_ascii_digit() {
            i += 1;
        }
        groups.push(start..i);
        i += 1; // the separator
    }
    let mut first = 0;
    while first < groups.len() {
        let mut found = None;
        let mut digits = 0;
        let mut windows = Vec::new();
        for (last, group) in groups.iter().enumerate().skip(first) {
            digits += group.len();
            if digits > 19 {
                break;
            }
            windows.push(last);
        }
        for last in windows.into_iter().rev() {
            let window = groups[first].start..groups[last].end;
            if card_window(text, &groups[first..=last], window.clone()) {
                found = Some((last, window));
                break;
            }
        }
        match found {
            Some((last, window)) => {
                out.push(window);
                first = last + 1;
            }
            None => first += 1,
        }
    }
}

fn card_window(text: &str, groups: &[Range<usize>], window: Range<usize>) -> bool {
    let b = text.as_bytes();
    let digits: Vec<u8> = groups.iter().flat_map(|g| b[g.clone()].iter().copied()).collect();
    if !(13..=19).contains(&digits.len()) || !luhn(&digits) || !plausible_iin(&digits) {
        return false;
    }
    if let Some((last, init)) = groups.split_last()
        && !init.is_empty()
    {
        let sep = b[init[0].end];
        let one_kind = init.iter().all(|g| b[g.end] == sep);
        if !one_kind || init.iter().any(|g| !(3..=7).contains(&g.len())) || !(1..=7).contains(&last.len()) {
            return false;
        }
    }
    // All one digit (0000 0000 0000 0000 passes Luhn) is a placeholder.
    if digits.iter().all(|d| *d == digits[0]) {
        return false;
    }
    !inside_longer_number(text, &window, b".,-/")
}

fn us_ssn(text: &str, span: Range<usize>) -> bool {
    let s = &text[span.clone()];
    let (area, group, serial) = (&s[0..3], &s[4..6], &s[7..11]);
    if area == "000" || area == "666" || area.starts_with('9') || group == "00" || serial == "0000" {
        return false;
    }
    !inside_longer_number(text, &span, b".,-/:")
}

/// A base64url part decoded, whatever its padding.
fn b64url(part: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    ENGINE.decode(part).ok()
}

fn jwt_header(text: &str, span: Range<usize>) -> bool {
    let header = text[span].split('.').next().unwrap_or("");
    if header.len() > 4096 {
        return false;
    }
    let Some(json) = b64url(header) else { return false };
    matches!(
        serde_json::from_slice::<serde_json::Value>(&json),
        Ok(serde_json::Value::Object(o)) if o.get("alg").is_some_and(serde_json::Value::is_string)
    )
}

/// Not a reference or a placeholder: `$VAR`, `${VAR}`, `{{ var }}`,
/// `%(var)s`, `<token>`, `****`, `xxxx`, `...`.
fn not_placeholder(text: &str, span: Range<usize>) -> bool {
    let v = text[span].trim();
    if v.is_empty() || v.starts_with(['$', '{', '<', '%']) || v.starts_with("[redacted") {
        return false;
    }
    let first = v.as_bytes()[0];
    let same = v.bytes().all(|c| c == first);
    !(same && matches!(first, b'*' | b'x' | b'X' | b'.' | b'#' | b'-' | b'0'))
}

/// A credential rather than a word: it has a digit or a symbol, or mixes
/// upper and lower case; and it is not an upper-case variable name.
fn token_like(text: &str, span: Range<usize>) -> bool {
    if !not_placeholder(text, span.clone()) {
        return false;
    }
    let v = &text[span];
    let digit = v.bytes().any(|c| c.is_ascii_digit());
    let symbol = v.bytes().any(|c| !c.is_ascii_alphanumeric());
    let upper = v.bytes().any(|c| c.is_ascii_uppercase());
    let lower = v.bytes().any(|c| c.is_ascii_lowercase());
    let variable = v.bytes().all(|c| c.is_ascii_uppercase() || c == b'_' || c.is_ascii_digit());
    (digit || symbol || upper && lower) && !variable
}

/// Key names that hold a keyword but name something else: `token_env`,
/// `password_file`, `max_tokens`, `secret_name`, `api_key_id`.
const NOT_SECRET_SUFFIXES: &[&str] = &[
    "env", "file", "path", "dir", "var", "name", "url", "uri", "endpoint", "type", "len", "length", "count", "limit",
    "ttl", "expiry", "expires", "header", "id", "field", "prefix", "kind", "format", "size", "max", "min", "timeout",
    "hash", "sha256", "policy", "mode", "enabled", "required", "rotation", "version", "location", "store", "ref",
];

/// True when a key name that holds a keyword names a secret value.
pub(crate) fn key_names_a_secret(key: &str) -> bool {
    let key = key.trim_matches(|c| c == '"' || c == '\'').to_ascii_lowercase().replace(['-', '.'], "_");
    let last = key.rsplit('_').next().unwrap_or("");
    !(NOT_SECRET_SUFFIXES.contains(&last) || last.ends_with("tokens") || last.starts_with("tokeni"))
}

/// An assigned value that is a literal secret: not a reference, not a
/// boolean or null, not the name of another variable.
fn assigned_value(text: &str, span: Range<usize>) -> bool {
    if !not_placeholder(text, span.clone()) {
        return false;
    }
    let v = text[span].trim();
    let lower = v.to_ascii_lowercase();
    const WORDS: &[&str] = &[
        "true",
        "false",
        "null",
        "none",
        "nil",
        "undefined",
        "yes",
        "no",
        "on",
        "off",
        "omit",
        "include",
        "same-origin",
    ];
    if WORDS.contains(&lower.as_str()) {
        return false;
    }
    // `os.environ["X"]`, `process.env.X`, `env:X`: a reference; `::X`: a
    // path in code; a file path: where a secret is, not the secret.
    let reference = lower.starts_with("env:") || lower.starts_with("process.env") || lower.starts_with("os.environ");
    !(reference || v.starts_with(':') || file_path(&lower))
}

/// A file path: absolute, relative to here or home, or ending in a file
/// extension that credentials are stored under (base64 has no `.`).
fn file_path(v: &str) -> bool {
    const EXTENSIONS: &[&str] =
        &[".key", ".pem", ".crt", ".der", ".p12", ".pfx", ".jks", ".json", ".txt", ".toml", ".yaml", ".yml", ".env"];
    v.starts_with(['/', '~'])
        || v.starts_with("./")
        || v.starts_with("../")
        || EXTENSIONS.iter().any(|e| v.ends_with(e))
}

/// An unquoted value ending its line (YAML, INI): a literal secret that
/// looks like one (a digit or symbol, or long), not a type or a word.
fn unquoted_value(text: &str, span: Range<usize>) -> bool {
    if !assigned_value(text, span.clone()) {
        return false;
    }
    let v = &text[span];
    // `UPPER_CASE`: the name of a constant or another variable.
    let constant = v.contains('_') && v.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
    let digit_or_symbol = v.bytes().any(|c| !c.is_ascii_alphabetic());
    (digit_or_symbol || v.len() >= 16) && !constant
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_and_issuers() {
        assert!(luhn(b"4111111111111111"));
        assert!(!luhn(b"4111111111111112"));
        assert!(luhn(b"378282246310005"));
        assert!(plausible_iin(b"378282246310005"));
        assert!(plausible_iin(b"5555555555554444"));
        assert!(plausible_iin(b"2223003122003222"));
        assert!(!plausible_iin(b"1234567812345670"));
        assert!(!plausible_iin(b"41111111111111")); // Visa is 13, 16 or 19 digits
        assert!(!plausible_iin(b"1700000000000")); // a millisecond timestamp
    }

    #[test]
    fn key_names() {
        for k in ["password", "DB_PASSWORD", "client_secret", "GITHUB_TOKEN", "api-key", "\"apiKey\"", "SECRET_KEY"] {
            assert!(key_names_a_secret(k), "{k}");
        }
        for k in ["token_env", "PASSWORD_FILE", "max_tokens", "secret_name", "api_key_id", "tokenizer", "token_url"] {
            assert!(!key_names_a_secret(k), "{k}");
        }
    }
}
