//! Finds secrets and regulated data in text and replaces them with
//! `[redacted:TYPE]`.
//!
//! A [`Redactor`] is compiled once (per run) from the built-in detectors an
//! operator selects ([`BUILTINS`]; `"default"` is the usual set), custom
//! [`Pattern`]s, and exact literal values added at run time
//! ([`Redactor::add_literal`], for secrets the host injects). It is then
//! only consulted: [`Redactor::redact`] returns the text unchanged (borrowed)
//! when nothing matches, and adds what it replaced to a [`Counts`] by type.
//!
//! Cost: one Aho-Corasick pass finds the literals every built-in match must
//! hold (`AKIA`, `ghp_`, `-----BEGIN`, ...); only detectors whose literal
//! occurs run their regex, and the detectors without such a literal (card
//! numbers, SSNs, custom patterns) are screened together by one
//! [`regex::bytes::RegexSet`] pass. Every regex is the `regex` crate's:
//! linear time in the input, no backtracking.
//!
//! Overlapping matches (a JWT after `Bearer `) become one replacement,
//! labelled with the first type in priority order: literal values, custom
//! patterns, then the built-ins in [`BUILTINS`] order. Replacing is
//! idempotent: `[redacted:TYPE]` itself never matches.
//!
//! Data that is not UTF-8 ([`Redactor::redact_bytes`]) is redacted in its
//! UTF-8 stretches; every other byte is kept as it is. Input is redacted as
//! one complete buffer: a secret split across two calls is not seen. A
//! stream that has to be cut (a command's output at `limits.output`) is
//! redacted *before* it is cut, with [`Redactor::redact_cut`]: the cut moves
//! back to the start of any finding it would split, and the caller keeps
//! [`Redactor::window`] bytes of what follows the cut in view, so no prefix
//! of a secret is ever returned.
//!
//! Text a reviewer sees (approval targets, previews, the audit log's
//! targets) is redacted with [`Redactor::redact_shown`]: each marker
//! carries a keyed fingerprint of the hidden value (`[redacted:secret#
//! 1f2e3d4c]`, and for card numbers the last four digits:
//! `[redacted:card-number:…1111#1f2e3d4c]`), so two different values stay
//! distinguishable and equal ones look equal. The key is random, drawn
//! once per redactor (per run) and never stored, so a fingerprint cannot be
//! checked against guessed values later. In paths and URLs
//! ([`Context::Path`]) a card number is only one when it is written like
//! one (grouped by spaces or dashes): a bare digit run there is an id.
//!
//! Header names ([`Redactor::redact_name`]) are matched against the secret
//! values without regard to ASCII case (HTTP lowercases names).
//!
//! No I/O and no global state, apart from drawing the fingerprint key from
//! the operating system's random source when first needed.

mod detectors;

pub use detectors::{BUILTINS, Builtin, luhn, plausible_iin};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use detectors::{Check, SPECS, key_names_a_secret};
use hmac::{Hmac, Mac};
use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use sha2::Sha256;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::{Arc, OnceLock};

/// The name that selects the default built-in set in `detectors`.
pub const DEFAULT: &str = "default";
/// The type of literal values added with [`Redactor::add_secret`].
pub const SECRET: &str = "secret";
/// The most custom patterns one redactor takes.
pub const MAX_PATTERNS: usize = 64;
/// The longest custom regex, in bytes.
pub const MAX_REGEX_BYTES: usize = 4096;
/// The longest type name.
pub const MAX_NAME_BYTES: usize = 64;
/// The most memory one compiled custom regex may take.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// The most memory the prefilter set may take; beyond it every
/// unanchored pattern simply runs.
const SET_SIZE_LIMIT: usize = 16 << 20;

/// The text that replaces a match of `kind`.
pub fn marker(kind: &str) -> String {
    format!("[redacted:{kind}]")
}

/// The card-number detector's name.
const CARD: &str = "card-number";

/// How many bytes after a cut a caller must have seen for every finding
/// that starts before the cut to be whole, when detectors run: longer than
/// every built-in token format.
pub const DETECTOR_WINDOW: usize = 1024;

/// Where text a reviewer sees comes from, for [`Redactor::redact_shown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Free text (a command line, a preview): card numbers by the usual
    /// standard, except a bare digit run right after a `/` (a path
    /// segment: an id, not a card).
    Text,
    /// A path or a URL (the target of a file or HTTP call): a number is a
    /// card only when grouped like one (by spaces or dashes); a bare digit
    /// run is an id, however Luhn-valid.
    Path,
}

impl Context {
    /// True when a card-number match at `range` is not one here.
    fn exempts(self, text: &str, range: &Range<usize>) -> bool {
        let bare = text.as_bytes()[range.clone()].iter().all(u8::is_ascii_digit);
        match self {
            Context::Path => bare,
            Context::Text => bare && range.start > 0 && text.as_bytes()[range.start - 1] == b'/',
        }
    }
}

/// How a search runs.
#[derive(Debug, Clone, Copy, Default)]
struct How {
    /// Literal values match without regard to ASCII case.
    any_case: bool,
    /// Reviewer-side text: card numbers judged by the context.
    context: Option<Context>,
}

/// A custom pattern: a type name and a regex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// `[a-z0-9-]+`, unique, not a built-in's name: the TYPE in
    /// `[redacted:TYPE]`.
    pub name: String,
    /// A `regex` crate regex (Unicode on); it must not match the empty
    /// string.
    pub regex: String,
}

/// Why a redactor could not be built. `index` is the position in the list
/// given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A name in `detectors` that is neither `default` nor a built-in.
    #[error("`{name}` is not a detector; use \"default\" or one of {}", builtin_names())]
    UnknownDetector {
        /// Position in `detectors`.
        index: usize,
        /// The name given.
        name: String,
    },
    /// A custom pattern's name is malformed, repeated or taken.
    #[error("{message}")]
    PatternName {
        /// Position in `patterns`.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A custom pattern's regex does not parse, is too large, or matches
    /// the empty string.
    #[error("{message}")]
    PatternRegex {
        /// Position in `patterns`.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// More than [`MAX_PATTERNS`] custom patterns.
    #[error("{count} patterns; at most {MAX_PATTERNS} are allowed")]
    TooManyPatterns {
        /// How many were given.
        count: usize,
    },
    /// A literal value that cannot be redacted (empty), or a bad type name.
    #[error("{0}")]
    Literal(String),
}

fn builtin_names() -> String {
    BUILTINS.iter().map(|b| format!("\"{}\"", b.name)).collect::<Vec<_>>().join(", ")
}

/// Checks a type name: `[a-z0-9-]+`, at most [`MAX_NAME_BYTES`].
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!("a pattern name must be 1 to {MAX_NAME_BYTES} characters"));
    }
    if !name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-') {
        return Err(format!("`{}` is not a pattern name; use a-z, 0-9 and -", name.escape_debug()));
    }
    Ok(())
}

/// Redactions made, by type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(BTreeMap<String, u64>);

impl Counts {
    /// No redactions yet.
    pub fn new() -> Counts {
        Counts::default()
    }

    /// Adds `n` redactions of `kind`.
    pub fn add(&mut self, kind: &str, n: u64) {
        if n > 0 {
            *self.0.entry(kind.to_owned()).or_default() += n;
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Counts) {
        for (k, n) in &other.0 {
            self.add(k, *n);
        }
    }

    /// True when nothing was redacted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Redactions of one type.
    pub fn get(&self, kind: &str) -> u64 {
        self.0.get(kind).copied().unwrap_or(0)
    }

    /// Redactions of every type together.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// The counts as a map from type to number (for an audit event).
    pub fn as_map(&self) -> &BTreeMap<String, u64> {
        &self.0
    }

    /// The counts for an audit event's `redactions`: `None` when empty.
    pub fn as_field(&self) -> Option<&BTreeMap<String, u64>> {
        (!self.0.is_empty()).then_some(&self.0)
    }
}

/// One thing found: its type and where it is (byte offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding<'r> {
    /// The type: a built-in's name, a pattern's name, or a literal's kind.
    pub kind: &'r str,
    /// Byte range in the text, on character boundaries.
    pub range: Range<usize>,
}

/// One compiled detector pattern.
#[derive(Debug, Clone)]
struct Rule {
    kind: Arc<str>,
    re: LazyRegex,
    /// Groups that hold the secret, first participating one wins; empty:
    /// the whole match.
    groups: &'static [usize],
    check: Option<Check>,
    key_group: Option<usize>,
}

/// A rule's regex. A built-in's is compiled when the rule first runs: most
/// run only when their anchor literal occurs, and compiling them all up
/// front was most of a run's start-up (BENCHMARKS.md). Clones share it.
#[derive(Clone)]
struct LazyRegex(Arc<(String, OnceLock<Regex>)>);

impl std::fmt::Debug for LazyRegex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LazyRegex").field(&self.0.0).finish()
    }
}

impl LazyRegex {
    /// A regex compiled already (custom patterns, checked when loaded).
    fn ready(pattern: &str, re: Regex) -> LazyRegex {
        LazyRegex(Arc::new((pattern.to_owned(), OnceLock::from(re))))
    }

    /// A built-in pattern: constant, and compiled by the tests.
    fn builtin(pattern: String) -> LazyRegex {
        LazyRegex(Arc::new((pattern, OnceLock::new())))
    }

    fn get(&self) -> &Regex {
        let (pattern, re) = &*self.0;
        re.get_or_init(|| {
            RegexBuilder::new(pattern)
                .build()
                .unwrap_or_else(|e| panic!("built-in pattern `{pattern}` does not compile: {e}"))
        })
    }
}

/// A span to replace and the priority of its type (lower wins).
#[derive(Debug, Clone)]
struct Span {
    range: Range<usize>,
    priority: usize,
}

/// Exact values redacted wherever they occur.
#[derive(Clone, Default)]
struct Literals {
    values: Vec<(Arc<str>, String)>,
    matcher: Option<AhoCorasick>,
    /// The same values, ASCII case-insensitively (header names).
    matcher_any_case: Option<AhoCorasick>,
}

/// The compiled detectors of a run. Cheap to clone (the automata are
/// shared). `Debug` never shows literal values.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Custom patterns first, then built-ins in priority order.
    rules: Vec<Rule>,
    /// Anchor literals of the anchored rules; pattern id -> rule.
    anchors: Option<AhoCorasick>,
    anchor_rule: Vec<usize>,
    /// Rules without anchors, screened together by `set` when it could be
    /// built.
    unanchored: Vec<usize>,
    set: Option<RegexSet>,
    literals: Literals,
    /// The detectors and patterns in force, by name.
    names: Vec<String>,
    /// No match is shorter than this many bytes.
    min_len: usize,
    /// The key of reviewer-side fingerprints: drawn when first used,
    /// shared by clones.
    fingerprint_key: Arc<OnceLock<[u8; 32]>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("detectors", &self.names)
            .field("literals", &self.literals.values.len())
            .finish_non_exhaustive()
    }
}

/// The fewest bytes a regex can match, from its syntax.
fn min_len(pattern: &str) -> Option<usize> {
    let hir = regex_syntax::ParserBuilder::new().utf8(false).build().parse(pattern).ok()?;
    hir.properties().minimum_len()
}

impl Redactor {
    /// The default built-in set, no custom patterns.
    pub fn builtin() -> Redactor {
        // The built-in patterns are constant and covered by tests.
        Redactor::new(&[DEFAULT], &[]).unwrap_or_else(|e| panic!("the built-in detectors do not compile: {e}"))
    }

    /// Compiles the detectors named in `detectors` (`"default"` for the
    /// default set, or built-in names) and the custom `patterns`.
    pub fn new<S: AsRef<str>>(detectors: &[S], patterns: &[Pattern]) -> Result<Redactor, ConfigError> {
        let mut enabled: BTreeSet<&'static str> = BTreeSet::new();
        for (index, d) in detectors.iter().enumerate() {
            let d = d.as_ref();
            if d == DEFAULT {
                enabled.extend(BUILTINS.iter().filter(|b| b.default).map(|b| b.name));
            } else if let Some(b) = BUILTINS.iter().find(|b| b.name == d) {
                enabled.insert(b.name);
            } else {
                return Err(ConfigError::UnknownDetector { index, name: d.to_owned() });
            }
        }
        if patterns.len() > MAX_PATTERNS {
            return Err(ConfigError::TooManyPatterns { count: patterns.len() });
        }
        let mut r = Redactor::default();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut set_patterns: Vec<String> = Vec::new();
        let mut lens: Vec<usize> = Vec::new();
        for (index, p) in patterns.iter().enumerate() {
            let name_err = |message: String| ConfigError::PatternName { index, message };
            check_name(&p.name).map_err(name_err)?;
            if p.name == DEFAULT || p.name == SECRET || BUILTINS.iter().any(|b| b.name == p.name) {
                return Err(name_err(format!("`{}` is a built-in name; choose another", p.name)));
            }
            if !seen.insert(&p.name) {
                return Err(name_err(format!("two patterns are named `{}`", p.name)));
            }
            let re = compile_custom(&p.regex).map_err(|message| ConfigError::PatternRegex { index, message })?;
            lens.push(min_len(&p.regex).unwrap_or(1));
            r.unanchored.push(r.rules.len());
            set_patterns.push(p.regex.clone());
            let re = LazyRegex::ready(&p.regex, re);
            r.rules.push(Rule { kind: Arc::from(p.name.as_str()), re, groups: &[], check: None, key_group: None });
            r.names.push(p.name.clone());
        }
        let mut anchors: Vec<&str> = Vec::new();
        for b in BUILTINS.iter().filter(|b| enabled.contains(b.name)) {
            r.names.push(b.name.to_owned());
            let kind: Arc<str> = Arc::from(b.name);
            for spec in SPECS.iter().filter(|s| s.name == b.name) {
                let pattern = format!("(?-u){}", spec.pattern);
                lens.push(min_len(&pattern).unwrap_or(1));
                let i = r.rules.len();
                let re = LazyRegex::builtin(pattern.clone());
                if spec.anchors.is_empty() {
                    r.unanchored.push(i);
                    set_patterns.push(pattern);
                } else {
                    for a in spec.anchors {
                        anchors.push(a);
                        r.anchor_rule.push(i);
                    }
                }
                r.rules.push(Rule {
                    kind: kind.clone(),
                    re,
                    groups: spec.groups,
                    check: spec.check,
                    key_group: spec.key_group,
                });
            }
        }
        if !anchors.is_empty() {
            let ac = AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(&anchors)
                .unwrap_or_else(|e| panic!("built-in anchors do not compile: {e}"));
            r.anchors = Some(ac);
        }
        if !set_patterns.is_empty() {
            r.set = RegexSetBuilder::new(&set_patterns).size_limit(SET_SIZE_LIMIT).build().ok();
        }
        r.min_len = lens.into_iter().min().unwrap_or(usize::MAX).max(1);
        Ok(r)
    }

    /// Adds an exact value redacted wherever it occurs, as
    /// `[redacted:KIND]`. Literals win over every detector when matches
    /// overlap; the longest literal wins among literals.
    pub fn add_literal(&mut self, kind: &str, value: &str) -> Result<(), ConfigError> {
        check_name(kind).map_err(ConfigError::Literal)?;
        if value.is_empty() {
            return Err(ConfigError::Literal(format!("an empty value cannot be redacted (`{kind}`)")));
        }
        if self.literals.values.iter().any(|(_, v)| v == value) {
            return Ok(());
        }
        let mut values: Vec<&str> = self.literals.values.iter().map(|(_, v)| v.as_str()).collect();
        values.push(value);
        let build = |any_case: bool| {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .ascii_case_insensitive(any_case)
                .build(&values)
                .map_err(|e| ConfigError::Literal(format!("the literal values cannot be compiled: {e}")))
        };
        let (exact, any_case) = (build(false)?, build(true)?);
        self.literals.values.push((Arc::from(kind), value.to_owned()));
        self.literals.matcher = Some(exact);
        self.literals.matcher_any_case = Some(any_case);
        self.min_len = self.min_len.min(value.len());
        Ok(())
    }

    /// [`add_literal`](Self::add_literal) with the type `secret`: a value
    /// the host injected that must never be shown.
    pub fn add_secret(&mut self, value: &str) -> Result<(), ConfigError> {
        self.add_literal(SECRET, value)
    }

    /// True when literal values were added.
    pub fn has_literals(&self) -> bool {
        !self.literals.values.is_empty()
    }

    /// A redactor with this one's literal values and no detector: for data
    /// that is not redacted in general but must never hold a secret the
    /// host added.
    pub fn literals_only(&self) -> Redactor {
        let min_len = self.literals.values.iter().map(|(_, v)| v.len()).min().unwrap_or(usize::MAX);
        Redactor {
            literals: self.literals.clone(),
            min_len,
            fingerprint_key: self.fingerprint_key.clone(),
            ..Redactor::default()
        }
    }

    /// The longest literal value, in bytes (0 without literals).
    pub fn longest_literal(&self) -> usize {
        self.literals.values.iter().map(|(_, v)| v.len()).max().unwrap_or(0)
    }

    /// How many bytes after a cut a caller must keep in view (and pass to
    /// [`redact_cut`](Self::redact_cut)) for every finding that starts
    /// before the cut to be seen whole: the longest literal value, and
    /// [`DETECTOR_WINDOW`] when detectors run.
    pub fn window(&self) -> usize {
        let detectors = if self.rules.is_empty() { 0 } else { DETECTOR_WINDOW };
        self.longest_literal().max(detectors)
    }

    /// Sets the fingerprint key instead of a random one (tests, and
    /// callers that want fingerprints comparable across runs).
    pub fn set_fingerprint_key(&mut self, key: [u8; 32]) {
        self.fingerprint_key = Arc::new(OnceLock::from(key));
    }

    /// The detectors and custom patterns in force, by name (custom first).
    pub fn detectors(&self) -> &[String] {
        &self.names
    }

    /// True when nothing can ever be redacted.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.literals.values.is_empty()
    }

    fn spans(&self, text: &str, how: How) -> Vec<Span> {
        let mut spans = Vec::new();
        if text.len() < self.min_len || self.is_empty() {
            return spans;
        }
        let bytes = text.as_bytes();
        let literals = if how.any_case { &self.literals.matcher_any_case } else { &self.literals.matcher };
        if let Some(ac) = literals {
            for m in ac.find_iter(bytes) {
                spans.push(Span { range: m.range(), priority: 0 });
            }
        }
        let mut run = vec![false; self.rules.len()];
        if let Some(ac) = &self.anchors {
            for m in ac.find_overlapping_iter(bytes) {
                run[self.anchor_rule[m.pattern().as_usize()]] = true;
            }
        }
        match &self.set {
            Some(set) => {
                for i in set.matches(bytes).iter() {
                    run[self.unanchored[i]] = true;
                }
            }
            None => {
                for i in &self.unanchored {
                    run[*i] = true;
                }
            }
        }
        let mut parts = Vec::new();
        for (i, rule) in self.rules.iter().enumerate().filter(|(i, _)| run[*i]) {
            let priority = i + 1;
            let mut consider = |range: Range<usize>| {
                let range = char_bounds(text, range);
                if range.is_empty() || text[range.clone()].starts_with("[redacted:") {
                    return;
                }
                match rule.check {
                    None => spans.push(Span { range, priority }),
                    Some(Check::Keep(keep)) => {
                        if keep(text, range.clone()) {
                            spans.push(Span { range, priority });
                        }
                    }
                    Some(Check::Split(split)) => {
                        parts.clear();
                        split(text, range, &mut parts);
                        spans.extend(parts.drain(..).map(|range| Span { range, priority }));
                    }
                }
            };
            if rule.groups.is_empty() && rule.key_group.is_none() {
                for m in rule.re.get().find_iter(bytes) {
                    consider(m.range());
                }
                continue;
            }
            for caps in rule.re.get().captures_iter(bytes) {
                if let Some(k) = rule.key_group.and_then(|g| caps.get(g))
                    && !key_names_a_secret(&String::from_utf8_lossy(k.as_bytes()))
                {
                    continue;
                }
                let m =
                    if rule.groups.is_empty() { caps.get(0) } else { rule.groups.iter().find_map(|g| caps.get(*g)) };
                if let Some(m) = m {
                    consider(m.range());
                }
            }
        }
        if let Some(context) = how.context {
            spans.retain(|s| {
                s.priority == 0 || &*self.rules[s.priority - 1].kind != CARD || !context.exempts(text, &s.range)
            });
        }
        spans
    }

    /// The type of a span's priority.
    fn kind_of(&self, span: &Span, text: &str) -> &str {
        if span.priority == 0 {
            let value = &text[span.range.clone()];
            let values = &self.literals.values;
            return values
                .iter()
                .find(|(_, v)| v == value)
                .or_else(|| values.iter().find(|(_, v)| v.eq_ignore_ascii_case(value)))
                .map_or(SECRET, |(k, _)| &**k);
        }
        &self.rules[span.priority - 1].kind
    }

    /// Everything to be replaced in `text`, overlaps merged, in order.
    pub fn find(&self, text: &str) -> Vec<Finding<'_>> {
        self.find_with(text, How::default())
    }

    fn find_with(&self, text: &str, how: How) -> Vec<Finding<'_>> {
        let mut spans = self.spans(text, how);
        if spans.is_empty() {
            return Vec::new();
        }
        spans.sort_by(|a, b| a.range.start.cmp(&b.range.start).then(a.priority.cmp(&b.priority)));
        let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
        // The literal that labels a merged span: the first one taken.
        let mut labels: Vec<Span> = Vec::with_capacity(spans.len());
        for s in spans {
            match merged.last_mut() {
                Some(last) if s.range.start < last.range.end => {
                    last.range.end = last.range.end.max(s.range.end);
                    if s.priority < last.priority {
                        last.priority = s.priority;
                        if let Some(l) = labels.last_mut() {
                            *l = s;
                        }
                    }
                }
                _ => {
                    labels.push(s.clone());
                    merged.push(s);
                }
            }
        }
        merged
            .into_iter()
            .zip(labels)
            .map(|(m, label)| Finding { kind: self.kind_of(&label, text), range: m.range })
            .collect()
    }

    /// `text` with every finding replaced by `[redacted:TYPE]`; borrowed
    /// when nothing was found. Adds the replacements to `counts`.
    pub fn redact<'t>(&self, text: &'t str, counts: &mut Counts) -> Cow<'t, str> {
        let found = self.find(text);
        replace(text, &found, counts, |f| marker(f.kind))
    }

    /// Text a reviewer sees (a call's target, a preview), as the audit log
    /// stores it: each finding replaced by a marker with a keyed
    /// fingerprint of the hidden value ([`fingerprinted`](Self::fingerprinted)),
    /// card numbers judged by `context`.
    pub fn redact_shown<'t>(&self, text: &'t str, context: Context, counts: &mut Counts) -> Cow<'t, str> {
        let found = self.find_with(text, How { any_case: false, context: Some(context) });
        replace(text, &found, counts, |f| self.fingerprinted(f.kind, &text[f.range.clone()]))
    }

    /// An HTTP header name: like [`redact`](Self::redact), with the literal
    /// values matched without regard to ASCII case (names arrive
    /// lowercased).
    pub fn redact_name<'t>(&self, text: &'t str, counts: &mut Counts) -> Cow<'t, str> {
        let found = self.find_with(text, How { any_case: true, context: None });
        replace(text, &found, counts, |f| marker(f.kind))
    }

    /// The marker a reviewer sees for `value` of type `kind`:
    /// `[redacted:KIND#FP]`, and `[redacted:card-number:…LAST4#FP]` for a
    /// card number, where FP is the first 4 bytes (8 hex digits) of
    /// HMAC-SHA256 of the value under this redactor's key.
    pub fn fingerprinted(&self, kind: &str, value: &str) -> String {
        let key = self.fingerprint_key.get_or_init(|| {
            let mut key = [0u8; 32];
            // Without a random source the fingerprints would be guessable;
            // there is no safe fallback.
            getrandom::fill(&mut key).unwrap_or_else(|e| panic!("no random source for the fingerprint key: {e}"));
            key
        });
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|e| panic!("HMAC takes a key of any length: {e}"));
        mac.update(value.as_bytes());
        let tag = mac.finalize().into_bytes();
        let fp: String = tag[..4].iter().map(|b| format!("{b:02x}")).collect();
        if kind == CARD {
            let digits: Vec<u8> = value.bytes().filter(u8::is_ascii_digit).collect();
            let last = String::from_utf8_lossy(&digits[digits.len().saturating_sub(4)..]).into_owned();
            format!("[redacted:{kind}:…{last}#{fp}]")
        } else {
            format!("[redacted:{kind}#{fp}]")
        }
    }

    /// The first `keep` bytes of a stream that goes on (a command's output
    /// cut at its cap), redacted: `data` is searched whole, then only what
    /// comes before the cut is returned, and the cut moves back to the
    /// start of any finding that crosses it, so no part of a finding is
    /// returned. `data` should hold [`window`](Self::window) bytes past
    /// `keep` wherever the stream had them. Non-UTF-8 bytes are kept as
    /// they are, like [`redact_bytes`](Self::redact_bytes).
    pub fn redact_cut(&self, data: &[u8], keep: usize, counts: &mut Counts) -> Vec<u8> {
        let keep = keep.min(data.len());
        let mut found: Vec<(Range<usize>, &str)> = Vec::new();
        for chunk in data.utf8_chunks() {
            let valid = chunk.valid();
            let start = valid.as_ptr() as usize - data.as_ptr() as usize;
            if start >= keep {
                break;
            }
            found.extend(self.find(valid).into_iter().map(|f| (start + f.range.start..start + f.range.end, f.kind)));
        }
        let mut cut = keep;
        for (range, _) in &found {
            if range.start < cut && range.end > cut {
                cut = range.start;
            }
        }
        let mut out = Vec::with_capacity(cut);
        let mut at = 0;
        for (range, kind) in found.iter().take_while(|(r, _)| r.end <= cut) {
            out.extend_from_slice(&data[at..range.start]);
            out.extend_from_slice(marker(kind).as_bytes());
            counts.add(kind, 1);
            at = range.end;
        }
        out.extend_from_slice(&data[at..cut]);
        out
    }

    /// Each item redacted (a command line's arguments).
    pub fn redact_each(&self, items: &[String], counts: &mut Counts) -> Vec<String> {
        items.iter().map(|i| self.redact(i, counts).into_owned()).collect()
    }

    /// Like [`redact`](Self::redact), for an owned string.
    pub fn redact_string(&self, text: String, counts: &mut Counts) -> String {
        match self.redact(&text, counts) {
            Cow::Borrowed(_) => text,
            Cow::Owned(o) => o,
        }
    }

    /// `data` with its UTF-8 stretches redacted; bytes that are not UTF-8
    /// are kept as they are. Borrowed when nothing was found.
    pub fn redact_bytes<'d>(&self, data: &'d [u8], counts: &mut Counts) -> Cow<'d, [u8]> {
        if let Ok(text) = std::str::from_utf8(data) {
            return match self.redact(text, counts) {
                Cow::Borrowed(_) => Cow::Borrowed(data),
                Cow::Owned(o) => Cow::Owned(o.into_bytes()),
            };
        }
        let mut out: Option<Vec<u8>> = None;
        let mut done = 0;
        for chunk in data.utf8_chunks() {
            let valid = chunk.valid();
            let start = valid.as_ptr() as usize - data.as_ptr() as usize;
            if let Cow::Owned(red) = self.redact(valid, counts) {
                let buf = out.get_or_insert_with(|| Vec::with_capacity(data.len()));
                buf.extend_from_slice(&data[done..start]);
                buf.extend_from_slice(red.as_bytes());
                done = start + valid.len();
            }
        }
        match out {
            None => Cow::Borrowed(data),
            Some(mut buf) => {
                buf.extend_from_slice(&data[done..]);
                Cow::Owned(buf)
            }
        }
    }

    /// Like [`redact_bytes`](Self::redact_bytes), for an owned buffer.
    pub fn redact_vec(&self, data: Vec<u8>, counts: &mut Counts) -> Vec<u8> {
        match self.redact_bytes(&data, counts) {
            Cow::Borrowed(_) => data,
            Cow::Owned(o) => o,
        }
    }
}

/// `text` with each finding replaced by what `marker` makes of it;
/// borrowed when nothing was found.
fn replace<'t>(
    text: &'t str,
    found: &[Finding<'_>],
    counts: &mut Counts,
    marker: impl Fn(&Finding<'_>) -> String,
) -> Cow<'t, str> {
    if found.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in found {
        out.push_str(&text[at..f.range.start]);
        out.push_str(&marker(f));
        at = f.range.end;
        counts.add(f.kind, 1);
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// Widens a byte range to character boundaries.
fn char_bounds(text: &str, range: Range<usize>) -> Range<usize> {
    let (mut s, mut e) = (range.start.min(text.len()), range.end.min(text.len()));
    while !text.is_char_boundary(s) {
        s -= 1;
    }
    while !text.is_char_boundary(e) {
        e += 1;
    }
    s..e
}

/// Compiles a custom regex: parsed first for a one-line error, refused if
/// it can match the empty string, bounded in compiled size.
fn compile_custom(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_REGEX_BYTES {
        return Err(format!("the regex is {} bytes; at most {MAX_REGEX_BYTES} are allowed", pattern.len()));
    }
    let hir = regex_syntax::ParserBuilder::new().utf8(false).build().parse(pattern).map_err(|e| {
        let why = match &e {
            regex_syntax::Error::Parse(p) => p.kind().to_string(),
            regex_syntax::Error::Translate(t) => t.kind().to_string(),
            other => other.to_string().lines().last().unwrap_or_default().to_owned(),
        };
        format!("regex `{}` does not parse: {why}", pattern.escape_debug())
    })?;
    match hir.properties().minimum_len() {
        Some(0) => {
            return Err(format!(
                "regex `{}` can match the empty string; it must match at least one character",
                pattern.escape_debug()
            ));
        }
        None => return Err(format!("regex `{}` can never match", pattern.escape_debug())),
        Some(_) => {}
    }
    RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).build().map_err(|e| match e {
        regex::Error::CompiledTooBig(limit) => {
            format!("regex `{}` is too large once compiled (over {limit} bytes)", pattern.escape_debug())
        }
        other => format!("regex `{}`: {}", pattern.escape_debug(), other.to_string().replace('\n', " ")),
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod lazy_regex_tests {
    use super::*;

    /// Built-in regexes are compiled when first used, so this compiles
    /// every one of them: none may fail at run time.
    #[test]
    fn every_builtin_pattern_compiles() {
        let all: Vec<&str> = BUILTINS.iter().map(|b| b.name).collect();
        let r = Redactor::new(&all, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.rules.len(), SPECS.len());
        for rule in &r.rules {
            assert!(rule.re.get().captures_len() >= 1);
        }
    }
}
