#![allow(clippy::unwrap_used)]

use super::*;
use base64::Engine as _;

fn r() -> Redactor {
    Redactor::builtin()
}

fn red(text: &str) -> String {
    r().redact(text, &mut Counts::new()).into_owned()
}

fn b64(json: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn jwt() -> String {
    format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#),
        b64(r#"{"sub":"alice","exp":1900000000}"#),
        "c2lnbmF0dXJlLWJ5dGVzLWhlcmUtdGhhdC1hcmUtbm90LXJlYWw"
    )
}

#[test]
fn clean_text_is_borrowed_and_uncounted() {
    let mut c = Counts::new();
    let text = "fn main() { println!(\"hello, world\"); } // 2024-05-01 build 1234";
    assert!(matches!(r().redact(text, &mut c), Cow::Borrowed(_)));
    assert!(c.is_empty());
    assert!(matches!(r().redact_bytes(b"\xff\xfeplain \x00 bytes", &mut c), Cow::Borrowed(_)));
    assert!(c.is_empty());
}

#[test]
fn each_builtin_type_is_replaced_by_its_marker() {
    let cases = [
        ("key AKIAIOSFODNN7EXAMPLE here", "key [redacted:aws-access-key] here"),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
            "aws_secret_access_key = [redacted:aws-access-key]\n",
        ),
        ("t=ghp_16C7e42F292c6912E7710c838347Ae178B4a;", "t=[redacted:github-token];"),
        ("pay 4111 1111 1111 1111 now", "pay [redacted:card-number] now"),
        ("ssn 123-45-6789.", "ssn [redacted:us-ssn]."),
        ("Authorization: Bearer abcdef0123456789ABCDEF", "Authorization: Bearer [redacted:bearer]"),
        ("postgres://app:s3cr3t-pw@db.internal/app", "postgres://app:[redacted:url-password]@db.internal/app"),
        ("DB_PASSWORD=hunter2\n", "DB_PASSWORD=[redacted:secret-assignment]\n"),
        ("key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY&x", "key=[redacted:google-api-key]&x"),
    ];
    for (input, want) in cases {
        assert_eq!(red(input), want, "{input}");
    }
}

#[test]
fn a_jwt_needs_a_json_header_with_alg() {
    let t = jwt();
    assert_eq!(red(&format!("token: {t} end")), "token: [redacted:jwt] end");
    let no_alg = format!("{}.{}.sig", b64(r#"{"typ":"JWT"}"#), b64(r#"{"sub":"x"}"#));
    assert!(r().find(&no_alg).is_empty(), "{no_alg}");
    let not_json = format!("{}.{}.sig", b64("every day is a good day"), b64("x"));
    assert!(r().find(&not_json).is_empty());
}

#[test]
fn overlaps_become_one_replacement_labelled_by_priority() {
    let t = jwt();
    let mut c = Counts::new();
    let out = r().redact(&format!("Authorization: Bearer {t}"), &mut c).into_owned();
    assert_eq!(out, "Authorization: Bearer [redacted:jwt]");
    assert_eq!((c.get("jwt"), c.get("bearer"), c.total()), (1, 0, 1));
}

#[test]
fn redaction_is_idempotent() {
    let text =
        format!("DB_PASSWORD=hunter2\nAKIAIOSFODNN7EXAMPLE 4111111111111111 {}\npassword: \"abc12345\"\n", jwt());
    let once = red(&text);
    let mut c = Counts::new();
    assert_eq!(r().redact(&once, &mut c), once);
    assert!(c.is_empty(), "{c:?}");
}

#[test]
fn literals_win_and_are_counted_as_their_kind() {
    let mut red = r();
    red.add_secret("ghp_16C7e42F292c6912E7710c838347Ae178B4a").unwrap();
    red.add_literal("db-pass", "correct horse").unwrap();
    let mut c = Counts::new();
    let out = red.redact("a ghp_16C7e42F292c6912E7710c838347Ae178B4a b correct horse c", &mut c);
    assert_eq!(out, "a [redacted:secret] b [redacted:db-pass] c");
    assert_eq!((c.get("secret"), c.get("db-pass"), c.get("github-token")), (1, 1, 0));
    assert!(red.add_literal("x", "").is_err());
    assert!(red.add_literal("Bad Name", "v").is_err());
    // Debug never shows a literal.
    assert!(!format!("{red:?}").contains("correct horse"));
}

#[test]
fn bytes_outside_utf8_are_kept() {
    let mut data = b"\xff\x00head AKIAIOSFODNN7EXAMPLE \xc3\x28 tail 4111111111111111\xfe".to_vec();
    data.extend_from_slice(&[0x80, 0x81]);
    let mut c = Counts::new();
    let out = r().redact_bytes(&data, &mut c).into_owned();
    let mut want = b"\xff\x00head [redacted:aws-access-key] \xc3\x28 tail [redacted:card-number]\xfe".to_vec();
    want.extend_from_slice(&[0x80, 0x81]);
    assert_eq!(out, want);
    assert_eq!(c.total(), 2);
}

#[test]
fn cards_are_found_among_other_numbers() {
    assert_eq!(red("4111111111111111 12/25 123"), "[redacted:card-number] 12/25 123");
    assert_eq!(red("ids 1234 4111 1111 1111 1111 999"), "ids 1234 [redacted:card-number] 999");
    assert_eq!(red("4111 1111 1111 1111 5555 5555 5555 4444"), "[redacted:card-number] [redacted:card-number]");
    assert_eq!(red("amex 3782-822463-10005"), "amex [redacted:card-number]");
    // Luhn fails, mixed separators, decimals, timestamps, one digit.
    for near in [
        "4111 1111 1111 1112",
        "4111-1111 1111-1111",
        "3.4111111111111111",
        "1700000000000",
        "4444 4444 4444 4444 4444",
        "0000 0000 0000 0000",
    ] {
        assert!(r().find(near).is_empty(), "{near}");
    }
}

#[test]
fn ssns_outside_issued_ranges_are_left() {
    for near in ["000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567", "123-45-0000", "1-123-45-6789"] {
        assert!(r().find(near).is_empty(), "{near}");
    }
    assert_eq!(red("SSN: 078-05-1120"), "SSN: [redacted:us-ssn]");
}

#[test]
fn private_key_blocks_are_removed_whole() {
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onL\n-----END RSA PRIVATE KEY-----";
    assert_eq!(red(&format!("x\n{pem}\ny")), "x\n[redacted:private-key]\ny");
    let json = r#"{"private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n", "x": 1}"#;
    assert_eq!(red(json), r#"{"private_key": "[redacted:private-key]\n", "x": 1}"#);
    // A block cut short: redacted as far as its body goes.
    assert_eq!(
        red("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY\n"),
        "[redacted:private-key]"
    );
}

#[test]
fn custom_patterns_compile_and_are_checked() {
    let p = |name: &str, regex: &str| Pattern { name: name.into(), regex: regex.into() };
    let red = Redactor::new(&["default"], &[p("mrn", "MRN-[0-9]{8}")]).unwrap();
    let mut c = Counts::new();
    assert_eq!(red.redact("patient MRN-12345678 seen", &mut c), "patient [redacted:mrn] seen");
    assert_eq!(c.get("mrn"), 1);
    assert_eq!(red.detectors()[0], "mrn");
    let err = |d: &[&str], ps: &[Pattern]| Redactor::new(d, ps).unwrap_err().to_string();
    assert!(err(&["default", "aws"], &[]).starts_with("`aws` is not a detector; use \"default\" or one of"));
    assert!(err(&[], &[p("a*", "x")]).contains("is not a pattern name"));
    assert!(err(&[], &[p("jwt", "x")]).contains("is a built-in name"));
    assert!(err(&[], &[p("secret", "x")]).contains("is a built-in name"));
    assert!(err(&[], &[p("a", "x"), p("a", "y")]).contains("two patterns are named `a`"));
    assert!(err(&[], &[p("a", "x*")]).contains("can match the empty string"));
    assert!(err(&[], &[p("a", "(?:)|b")]).contains("can match the empty string"));
    assert!(err(&[], &[p("a", "^")]).contains("can match the empty string"));
    assert!(err(&[], &[p("a", "[b")]).contains("does not parse: unclosed character class"));
    assert!(err(&[], &[p("a", "(a")]).contains("does not parse"));
    assert!(err(&[], &[p("a", r"\w{1000}{1000}")]).contains("too large"));
    assert!(err(&[], &[p("a", &"x".repeat(MAX_REGEX_BYTES + 1))]).contains("at most"));
    assert!(!err(&[], &[p("a", "[b")]).contains('\n'));
}

#[test]
fn detectors_select_a_subset() {
    let only = Redactor::new(&["card-number"], &[]).unwrap();
    assert_eq!(only.detectors(), ["card-number"]);
    assert_eq!(
        only.redact("4111111111111111 AKIAIOSFODNN7EXAMPLE", &mut Counts::new()),
        "[redacted:card-number] AKIAIOSFODNN7EXAMPLE"
    );
    let none = Redactor::new::<&str>(&[], &[]).unwrap();
    assert!(none.is_empty());
    assert_eq!(none.redact("4111111111111111", &mut Counts::new()), "4111111111111111");
    let all: Vec<&str> = BUILTINS.iter().filter(|b| b.default).map(|b| b.name).collect();
    assert_eq!(r().detectors(), all);
}

#[test]
fn matches_are_widened_to_character_boundaries() {
    // A byte-level pattern may stop inside a character; the replacement
    // takes the whole character.
    let red = Redactor::new::<&str>(&[], &[Pattern { name: "x".into(), regex: r"(?-u:é\xc3)".into() }]);
    // `é` is \xc3\xa9: `é\xc3` cannot match valid UTF-8 text past é's end
    // unless followed by another 2-byte char starting \xc3.
    let red = red.unwrap();
    let mut c = Counts::new();
    assert_eq!(red.redact("aééb", &mut c), "a[redacted:x]b");
}

#[test]
fn secret_assignments_take_the_value_only() {
    let cases = [
        ("export GITHUB_TOKEN=abc123def456\n", "export GITHUB_TOKEN=[redacted:secret-assignment]\n"),
        ("\"password\": \"s3cret-pw\",", "\"password\": \"[redacted:secret-assignment]\","),
        ("  client_secret: 9f8e7d6c5b4a\n", "  client_secret: [redacted:secret-assignment]\n"),
        ("api_key = 'k-1234567890'", "api_key = '[redacted:secret-assignment]'"),
    ];
    for (input, want) in cases {
        assert_eq!(red(input), want, "{input}");
    }
    for near in [
        "token_env = \"SANDBOX_HEC_TOKEN\"",
        "TOKEN=${GITHUB_TOKEN}",
        "password: String,",
        "let token = compute_token(user);",
        "if password == \"hunter22\" {",
        "max_tokens=4096",
        "TOKENIZERS_PARALLELISM=false",
        "AWS_SECRET_ACCESS_KEY_FILE=/run/secrets/aws",
        "secret: required",
    ] {
        assert!(r().find(near).is_empty(), "{near}: {:?}", r().find(near));
    }
}

#[test]
fn literals_only_redacts_the_added_values_and_nothing_else() {
    let mut red = r();
    assert!(!red.has_literals());
    assert!(red.literals_only().is_empty());
    red.add_secret("s3cr3t-injected-value").unwrap();
    red.add_secret("s3cr3t-injected-value").unwrap(); // a repeat is one value
    assert!(red.has_literals());
    let only = red.literals_only();
    let mut c = Counts::new();
    let text = "echo: s3cr3t-injected-value, card 4111111111111111";
    assert_eq!(only.redact(text, &mut c), "echo: [redacted:secret], card 4111111111111111");
    assert_eq!((c.get("secret"), c.total()), (1, 1));
    let mut c = Counts::new();
    assert_eq!(red.redact(text, &mut c), "echo: [redacted:secret], card [redacted:card-number]");
    assert_eq!(c.as_field().map(|m| m.len()), Some(2));
    assert_eq!(Counts::new().as_field(), None);
    // In bytes that are not UTF-8 as well.
    let data = b"\xff s3cr3t-injected-value \xfe";
    assert_eq!(only.redact_bytes(data, &mut Counts::new()).as_ref(), b"\xff [redacted:secret] \xfe");
}

#[test]
fn each_argument_is_redacted_on_its_own() {
    let mut c = Counts::new();
    let args = vec!["--card".to_owned(), "4111 1111 1111 1111".to_owned(), "plain".to_owned()];
    assert_eq!(r().redact_each(&args, &mut c), ["--card", "[redacted:card-number]", "plain"]);
    assert_eq!(c.get("card-number"), 1);
}

fn with_secret(secret: &str) -> Redactor {
    let mut r = Redactor::builtin();
    r.add_secret(secret).unwrap();
    r.set_fingerprint_key([7; 32]);
    r
}

/// Issue 21 item 3: whatever is put before a secret, cutting after the
/// redaction never returns any part of it.
#[test]
fn a_cut_never_returns_part_of_a_finding() {
    let secret = "Zq9secretValue-42";
    let r = with_secret(secret);
    let lits = r.literals_only();
    for red in [&r, &lits] {
        for k in 0..=secret.len() + 1 {
            let data = format!("{}{secret} and more", "x".repeat(100 - k));
            let mut c = Counts::new();
            let out = String::from_utf8(red.redact_cut(data.as_bytes(), 100, &mut c)).unwrap();
            assert!(out.len() <= 100, "{k}: {out}");
            let plain = out.replace("[redacted:secret]", "");
            assert!(plain.bytes().all(|b| b == b'x' || b == b' '), "{k}: {out:?}");
            // Wholly before the cut: redacted and counted.
            if k == 0 {
                assert_eq!(out, "x".repeat(100));
            }
        }
        let mut c = Counts::new();
        let data = format!("ab {secret} cd");
        assert_eq!(red.redact_cut(data.as_bytes(), data.len(), &mut c), b"ab [redacted:secret] cd");
        assert_eq!(c.get("secret"), 1);
    }
    assert_eq!(r.window(), DETECTOR_WINDOW);
    assert_eq!(lits.window(), secret.len());
    assert_eq!(Redactor::default().window(), 0);
}

/// Issue 21 item 6: header names arrive lowercased.
#[test]
fn header_names_match_secret_values_in_any_case() {
    let r = with_secret("AbCdEfSecret123");
    let mut c = Counts::new();
    assert_eq!(r.redact_name("x-echo-abcdefsecret123", &mut c), "x-echo-[redacted:secret]");
    assert_eq!(c.get("secret"), 1);
    // Values keep exact matching.
    assert_eq!(r.redact("abcdefsecret123", &mut c), "abcdefsecret123");
}

/// Issue 21 item 7: reviewer-side markers tell values apart, keep equal
/// ones equal, and a bare digit run in a path is an id.
#[test]
fn shown_markers_are_fingerprinted_and_paths_are_judged_as_paths() {
    let r = with_secret("hunter2-Correct-Horse");
    let mut c = Counts::new();
    let a = r.redact_shown("DELETE /a/4111-1111-1111-1111", Context::Path, &mut c).into_owned();
    let b = r.redact_shown("DELETE /a/5500-0000-0000-0004", Context::Path, &mut c).into_owned();
    let a2 = r.redact_shown("DELETE /a/4111-1111-1111-1111", Context::Path, &mut c).into_owned();
    assert!(a.starts_with("DELETE /a/[redacted:card-number:…1111#") && a.ends_with(']'), "{a}");
    assert!(b.starts_with("DELETE /a/[redacted:card-number:…0004#"), "{b}");
    assert_eq!(a, a2);
    assert_ne!(a, b);
    assert_eq!(c.get("card-number"), 3);
    // A bare Luhn-valid run: an id in a path, and after a `/` in text.
    let id = "accounts/4111111111111111/x";
    assert_eq!(r.redact_shown(id, Context::Path, &mut c), id);
    assert_eq!(
        r.redact_shown("echo /accounts/4111111111111111", Context::Text, &mut c),
        "echo /accounts/4111111111111111"
    );
    let t = r.redact_shown("echo 4111111111111111", Context::Text, &mut c).into_owned();
    assert!(t.starts_with("echo [redacted:card-number:…1111#"), "{t}");
    // The general redactor is unchanged.
    assert_eq!(r.redact(id, &mut c), "accounts/[redacted:card-number]/x");
    // Secrets are fingerprinted too, and the key decides the fingerprint.
    let s = r.redact_shown("p/hunter2-Correct-Horse", Context::Path, &mut c).into_owned();
    assert!(s.starts_with("p/[redacted:secret#") && s.len() == "p/[redacted:secret#12345678]".len(), "{s}");
    let mut other = with_secret("hunter2-Correct-Horse");
    other.set_fingerprint_key([8; 32]);
    assert_ne!(other.redact_shown("p/hunter2-Correct-Horse", Context::Path, &mut c), s);
    // Idempotent: a shown marker is not redacted again.
    assert_eq!(r.redact_shown(&a, Context::Text, &mut c), a);
}
