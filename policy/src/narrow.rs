//! Task manifests: a per-task scope on top of the operator's standing
//! manifest that can only narrow it.
//!
//! A task manifest has the format of a manifest, without `[workspace]`,
//! `[identity]`, `[audit]`, `[secrets]`, `[redact]` or `approval.via`
//! (those are the operator's). [`apply`] checks that every grant it makes
//! is covered by the standing manifest and returns the effective policy:
//! the task's grants, the deny lists of both, limits and approval settings
//! the task sets (no higher, no weaker) or else the standing ones. The
//! first grant that would widen anything refuses the task, named.
//!
//! Coverage is decided on the rules as written, so it is conservative: a
//! task glob is covered by an equal standing glob, by `**`, or by a
//! standing `DIR/**` whose `DIR` has no wildcard when the task glob starts
//! with `DIR/`; a URL pattern likewise by an equal one or a standing
//! `PREFIX/**` (on the same scheme and port, and a host the standing one
//! names or whose `*.` it falls under). A task rule that is narrower in a
//! way these rules cannot see (`docs/*.md` under a standing `**/*.md`) is
//! refused: write the task manifest in the standing manifest's terms.
//!
//! Covered is not enough where rules are first-match (`[[http.allow]]`):
//! a request gets what the *first* matching rule says, so a task rule
//! `/v1/**` covered by a standing `/v1/**` would also take the requests a
//! standing `/v1/admin/**` before it decides with approval or other
//! injected headers. [`http_rule_within`] compares what each request would
//! get: every standing rule up to the covering one that could share a
//! request with the task rule (not provably disjoint: another scheme,
//! port, host, or path) must decide it no more loosely, unless an earlier
//! task rule takes those requests first. File grants are sets (any
//! matching glob decides the same way; denies always win) and there is
//! one `[[process.allow]]` rule per program, so neither depends on order.

use crate::caller::When;
use crate::fs::{FsPolicy, GlobList};
use crate::http::{HttpPolicy, HttpRule};
use crate::manifest::{ManifestError, parse, read};
use crate::process::ProcessPolicy;
use crate::process::ProcessRule;
use crate::secrets::Template;
use crate::{Caller, Policy, Require, Writes};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Top-level keys a task manifest may have.
const TASK_KEYS: &[&str] = &["version", "name", "description", "fs", "http", "process", "limits", "approval"];

/// A task manifest, read and compiled.
#[derive(Debug, Clone)]
pub struct TaskManifest {
    /// The compiled manifest (its own grants only).
    pub policy: Policy,
    /// `sha256:` of its bytes: `task_policy` on every event.
    pub hash: String,
    /// The dotted keys it sets (`limits.memory`, `approval.require`):
    /// limits and settings it leaves out are the standing manifest's.
    set: BTreeSet<String>,
}

/// Why a task manifest cannot apply: the rule that would widen the
/// standing manifest, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Widening {
    /// The task manifest's rule (`fs.read:secrets/**`, `limits.time`).
    pub rule: String,
    /// What it would widen, lowercase, one line.
    pub message: String,
}

impl fmt::Display for Widening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` would widen the standing manifest: {}", self.rule.escape_debug(), self.message.escape_debug())
    }
}

/// Reads a task manifest: a manifest without the operator's sections.
pub fn load_task(path: &Path) -> Result<TaskManifest, ManifestError> {
    let (file, text, base) = read(path)?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ManifestError {
        file: file.clone(),
        line: None,
        key: None,
        message: format!("not a manifest: {}", e.message()),
    })?;
    let refuse = |key: &str, why: &str| ManifestError {
        file: file.clone(),
        line: text.lines().position(|l| mentions(l, key)).map(|i| i + 1),
        key: Some(key.to_owned()),
        message: format!("not allowed in a task manifest: {why}"),
    };
    for key in table.keys() {
        if !TASK_KEYS.contains(&key.as_str()) {
            return Err(refuse(key, "it is the operator's, set in the standing manifest"));
        }
    }
    if table.get("approval").and_then(|a| a.get("via")).is_some() {
        return Err(refuse("approval.via", "the approval channel is the operator's"));
    }
    let policy = parse(&file, &text, &base)?;
    let mut set = BTreeSet::new();
    for (section, value) in &table {
        if let Some(t) = value.as_table() {
            set.extend(t.keys().map(|k| format!("{section}.{k}")));
        }
    }
    let hash = format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())));
    Ok(TaskManifest { policy, hash, set })
}

/// Whether a line of TOML sets the table or key `key` (dotted): `[key`,
/// `[[key`, `key =`, `key.`, or for `a.b` also `b =`.
fn mentions(line: &str, key: &str) -> bool {
    let l = line.trim_start().trim_start_matches('[');
    let last = key.rsplit('.').next().unwrap_or(key);
    [key, last].iter().any(|k| l.strip_prefix(k).is_some_and(|after| after.starts_with([']', '.', ' ', '='])))
}

impl TaskManifest {
    fn sets(&self, key: &str) -> bool {
        self.set.contains(key)
    }
}

/// The effective policy of a run under `task`: both resolved for `caller`
/// first. Refused, naming the rule, when the task would widen `standing`.
pub fn apply(standing: &Policy, task: &TaskManifest, caller: &Caller) -> Result<Policy, Widening> {
    let s = standing.for_caller(caller);
    let t = task.policy.for_caller(caller);
    let mut out = s.clone();
    out.fs = narrow_fs(&s.fs, &t.fs)?;
    out.http = narrow_http(&s.http, &t.http, task)?;
    out.process = narrow_process(&s.process, &t.process)?;

    let limit = |key: &str, have: u64, want: u64| -> Result<u64, Widening> {
        if !task.sets(key) {
            return Ok(have);
        }
        if want > have {
            return Err(widens(key, format!("{want} is above the standing {have}")));
        }
        Ok(want)
    };
    out.limits.memory = limit("limits.memory", s.limits.memory, t.limits.memory)?;
    out.process.memory = limit("process.memory", s.process.memory, t.process.memory)?;
    if task.sets("process.allow_unstaged_writes") && t.process.allow_unstaged_writes && !s.process.allow_unstaged_writes
    {
        return Err(widens(
            "process.allow_unstaged_writes",
            "lets programs write the workspace unstaged, where the standing manifest does not".into(),
        ));
    }
    out.limits.calls = limit("limits.calls", s.limits.calls, t.limits.calls)?;
    out.limits.output = limit("limits.output", s.limits.output, t.limits.output)?;
    out.limits.time = shorter("limits.time", task, s.limits.time, t.limits.time)?;
    out.approval_timeout = shorter("approval.timeout", task, s.approval_timeout, t.approval_timeout)?;
    if task.sets("approval.require") {
        let (a, b) = (&s.approval_require, &t.approval_require);
        let weaker = match (a, b) {
            (Require::Role(x), Require::Role(y)) => x != y,
            (Require::Role(_), _) | (_, Require::Role(_)) => a != b,
            (Require::All(x), Require::All(y)) => !x.iter().all(|n| y.contains(n)),
            _ => crate::diff::require_strength(b) < crate::diff::require_strength(a),
        };
        if weaker {
            return Err(widens("approval.require", format!("`{b}` is weaker than the standing `{a}`")));
        }
        out.approval_require = b.clone();
    }
    if task.sets("approval.writes") && t.approval_writes != s.approval_writes {
        let name = |w: Writes| if w == Writes::EndOfTask { "end-of-task" } else { "per-call" };
        return Err(widens(
            "approval.writes",
            format!("`{}` differs from the standing `{}`", name(t.approval_writes), name(s.approval_writes)),
        ));
    }
    Ok(out)
}

fn widens(rule: &str, message: String) -> Widening {
    Widening { rule: rule.to_owned(), message }
}

fn shorter(key: &str, task: &TaskManifest, have: Duration, want: Duration) -> Result<Duration, Widening> {
    if !task.sets(key) {
        return Ok(have);
    }
    if want > have {
        let show = |d| humantime::format_duration(d).to_string();
        return Err(widens(key, format!("{} is longer than the standing {}", show(want), show(have))));
    }
    Ok(want)
}

/// Whether `pattern` is covered by one of `standing`: equal, `**`, or
/// under a wildcard-free `PREFIX/**`.
pub(crate) fn covered(pattern: &str, standing: &[&str]) -> bool {
    standing.iter().any(|s| {
        *s == pattern
            || *s == "**"
            || s.strip_suffix("/**").is_some_and(|prefix| {
                !prefix.contains(['*', '?', '[', ']', '{', '}', '\\'])
                    && pattern.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
            })
    })
}

fn narrow_fs(s: &FsPolicy, t: &FsPolicy) -> Result<FsPolicy, Widening> {
    let standing = s.lists();
    let mut lists: Vec<GlobList> = Vec::new();
    for ((name, globs), (_, have)) in t.lists().into_iter().zip(standing).take(3) {
        let have: Vec<&str> = have.iter().map(String::as_str).collect();
        if let Some(g) = globs.iter().find(|g| !covered(g, &have)) {
            let message = if have.is_empty() {
                format!("the standing manifest grants no `fs.{name}`")
            } else {
                format!("not covered by the standing `fs.{name}` ({})", have.join(", "))
            };
            return Err(widens(&format!("fs.{name}:{g}"), message));
        }
        let entries: Vec<(String, &str)> = globs.iter().map(|g| (format!("task.fs.{name}"), g.as_str())).collect();
        lists.push(compile(&entries, false));
    }
    let mut deny: Vec<(String, &str)> = s.deny.entries().into_iter().map(|(l, p)| (l.to_owned(), p)).collect();
    deny.extend(t.deny.entries().into_iter().map(|(_, p)| ("task.fs.deny".to_owned(), p)));
    let [read, write, auto_approve]: [GlobList; 3] =
        lists.try_into().unwrap_or_else(|_| unreachable!("three lists were compiled"));
    Ok(FsPolicy::new(read, write, auto_approve, compile(&deny, true)))
}

fn compile(entries: &[(String, &str)], case_insensitive: bool) -> GlobList {
    let named: Vec<(&str, &str)> = entries.iter().map(|(l, p)| (l.as_str(), *p)).collect();
    // Every glob was validated when its manifest was read.
    GlobList::compile_named(&named, case_insensitive).unwrap_or_else(|e| panic!("a validated glob failed: {e:?}"))
}

fn narrow_http(s: &HttpPolicy, t: &HttpPolicy, task: &TaskManifest) -> Result<HttpPolicy, Widening> {
    let mut rules = Vec::new();
    for (j, r) in t.rules().iter().enumerate() {
        let cover = http_rule_within(s.rules(), t.rules(), j, None, Callers::Resolved, "standing")
            .map_err(|what| widens(&format!("http.allow:{}", r.url()), what))?;
        // The standing rule's injected headers go with the requests it
        // covers: every standing rule deciding some of them injects the same.
        let mut rule = r.renamed(format!("task.{}", r.name));
        rule.headers = cover.headers.clone();
        rules.push(rule);
    }
    for net in t.allow_private() {
        if !s.allow_private().iter().any(|o| o.contains(net)) {
            return Err(widens(&format!("http.allow_private:{net}"), "not within the standing `allow_private`".into()));
        }
    }
    let ca_certs = if task.sets("http.ca_certs") {
        if let Some(c) = t.ca_certs.iter().find(|c| !s.ca_certs.contains(c)) {
            return Err(widens(&format!("http.ca_certs:{}", c.display()), "not a standing trusted root".into()));
        }
        t.ca_certs.clone()
    } else {
        s.ca_certs.clone()
    };
    let timeout = shorter("http.timeout", task, s.timeout, t.timeout)?;
    Ok(HttpPolicy::new(rules, t.allow_private().to_vec(), timeout, ca_certs))
}

fn narrow_process(s: &ProcessPolicy, t: &ProcessPolicy) -> Result<ProcessPolicy, Widening> {
    let mut rules = Vec::new();
    for r in t.rules() {
        // One rule per program: the standing rule for it decides every run.
        let Some(o) = s.rule(&r.program) else {
            return Err(widens(
                &format!("process.allow:{}", r.program),
                "the standing manifest allows no such program".into(),
            ));
        };
        process_within(o, r, "standing").map_err(|what| widens(&format!("process.allow:{}", r.program), what))?;
        let mut rule = r.renamed(format!("task.{}", r.name));
        rule.secret_env = o.secret_env.clone();
        rules.push(rule);
    }
    Ok(s.with_rules(rules))
}

/// How rules' `when` conditions are taken when comparing two rule lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Callers {
    /// Resolved for one caller (a run): every rule left holds.
    Resolved,
    /// Any caller (`policy diff`): a rule is there only for the callers
    /// its `when` admits.
    Any,
}

impl Callers {
    /// Whether every caller `a` admits, `b` admits too.
    pub(crate) fn implies(self, a: Option<&When>, b: Option<&When>) -> bool {
        let Some(b) = b.filter(|_| self == Callers::Any) else { return true };
        let Some(a) = a else { return b.tiers.is_empty() && b.claims.is_empty() };
        let tiers = b.tiers.is_empty() || (!a.tiers.is_empty() && a.tiers.iter().all(|t| b.tiers.contains(t)));
        tiers
            && b.claims.iter().all(|(name, accepted)| {
                a.claims.get(name).is_some_and(|have| have.iter().all(|v| accepted.contains(v)))
            })
    }

    /// Whether some caller could meet both: false only when their tiers
    /// differ (a caller may hold several values of an array claim).
    fn compatible(self, a: Option<&When>, b: Option<&When>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) if self == Callers::Any => {
                a.tiers.is_empty() || b.tiers.is_empty() || a.tiers.iter().any(|t| b.tiers.contains(t))
            }
            _ => true,
        }
    }
}

/// Whether every request `new[j]` would decide (the requests no earlier
/// rule of `new` takes) is decided by `old` at least as strictly: allowed
/// there, approval asked wherever `old` asks it, no injected header `old`
/// does not inject there (`headers`; `None`: those of the covering rule)
/// and for the same callers. Returns the first `old` rule covering all of `new[j]`, whose
/// headers its requests get; else why not, one line (`side` names `old`:
/// "standing").
///
/// Rules are first-match, so the `old` rule deciding a request is not
/// always the one that covers it: an earlier one (`/v1/admin/**` before
/// `/v1/**`) decides the requests they share. Every earlier `old` rule
/// that could share a request with `new[j]` must agree with it, unless an
/// earlier `new` rule (or an earlier `old` one) takes all of those
/// requests first. Overlap is decided on the patterns, so conservatively:
/// rules not provably disjoint are taken to overlap.
pub(crate) fn http_rule_within<'o>(
    old: &'o [HttpRule],
    new: &[HttpRule],
    j: usize,
    headers: Option<&[(String, Template)]>,
    callers: Callers,
    side: &str,
) -> Result<&'o HttpRule, String> {
    let r = &new[j];
    let present = |o: &HttpRule| callers.implies(r.when.as_ref(), o.when.as_ref());
    let methods_within = |o: &HttpRule| r.methods().iter().all(|m| o.methods().contains(m));
    let Some(c) = old.iter().position(|o| {
        present(o) && o.location_covers(r) && methods_within(o) && (!r.allows_query() || o.allows_query())
    }) else {
        let Some(o) = old.iter().find(|o| o.location_covers(r)) else {
            return Err(format!("no {side} `http.allow` rule covers this URL"));
        };
        if let Some(m) = r.methods().iter().find(|m| !o.methods().contains(m)) {
            return Err(format!("method {m} is not allowed by {}", o.name));
        }
        if r.allows_query() && !o.allows_query() {
            return Err(format!("query strings, which {} refuses", o.name));
        }
        return Err(format!(
            "it is for callers {} is not for ({} -> {})",
            o.name,
            show_when(o.when.as_ref()),
            show_when(r.when.as_ref())
        ));
    };
    let cover = &old[c];
    let headers = headers.unwrap_or(&cover.headers);
    for (h, o) in old[..=c].iter().enumerate() {
        if !callers.compatible(r.when.as_ref(), o.when.as_ref()) || !o.location_may_overlap(r) {
            continue;
        }
        // Requests with a query reach `o` from `new[j]` only when both allow them.
        let queries = r.allows_query() && o.allows_query();
        let takes = |k: &HttpRule, covers: bool, m: &String| {
            present(k) && covers && k.methods().contains(m) && (k.allows_query() || !queries)
        };
        // The methods of requests `o` would decide and `new[j]` would too:
        // not those an earlier rule of either list takes first.
        let shared: Vec<&String> = r
            .methods()
            .iter()
            .filter(|m| o.methods().contains(m))
            .filter(|m| !new[..j].iter().any(|k| takes(k, k.location_covers(o) || k.location_covers(r), m)))
            .filter(|m| !old[..h].iter().any(|g| takes(g, g.location_covers(o), m)))
            .collect();
        if shared.is_empty() {
            continue;
        }
        let advice = if h < c {
            format!(
                " (rules are first-match: repeat the {side} `{}` rule before it, or leave those requests out)",
                o.url()
            )
        } else {
            String::new()
        };
        if let Some(m) = shared.iter().find(|m| o.asks(m) && !r.asks(m)) {
            return Err(format!("{m} without approval on requests where the {side} {} asks for it{advice}", o.name));
        }
        // Fewer injected headers is narrower; another value or name is not.
        if !headers.iter().all(|h| o.headers.contains(h)) {
            return Err(format!(
                "injects {} on requests where the {side} {} injects {}{advice}",
                show_headers(headers),
                o.name,
                show_headers(&o.headers)
            ));
        }
    }
    Ok(cover)
}

fn show_headers(h: &[(String, Template)]) -> String {
    if h.is_empty() {
        return "no header".to_owned();
    }
    let names: Vec<String> = h.iter().map(|(n, t)| format!("`{n}: {t}`")).collect();
    names.join(", ")
}

fn show_when(w: Option<&When>) -> String {
    w.map_or("everyone".to_owned(), |w| w.to_string())
}

/// Whether process rule `r` runs its program no more loosely than `o`:
/// the same path, args among `o`'s patterns, `o`'s deny_args, env,
/// approval, cwd and timeout (its `secret_env` is `o`'s). Else why not.
fn process_within(o: &ProcessRule, r: &ProcessRule, side: &str) -> Result<(), String> {
    let name = &o.name;
    if o.path != r.path {
        return Err(format!("path {} differs from the {side} {}", r.path.display(), o.path.display()));
    }
    if let Some(p) = r.patterns().into_iter().find(|p| !o.patterns().contains(p)) {
        return Err(format!("args `{p}` is not one of the {side} {name}'s"));
    }
    if let Some(d) = o.deny_args().into_iter().find(|d| !r.deny_args().contains(d)) {
        return Err(format!("drops the {side} deny_args `{d}` of {name}"));
    }
    if let Some(e) = r.env.iter().find(|e| !o.env.contains(e)) {
        return Err(format!("env `{e}` is not passed by the {side} {name}"));
    }
    if o.approval && !r.approval {
        return Err(format!("runs without approval, where the {side} {name} asks for it"));
    }
    match (o.cwd(), r.cwd()) {
        (_, None) => {}
        (Some(a), Some(b)) if covered(b, &[a]) => {}
        (a, Some(b)) => {
            return Err(format!(
                "cwd `{b}` is outside the {side} `{}` of {name}",
                a.unwrap_or("(workspace root only)")
            ));
        }
    }
    match (o.timeout, r.timeout) {
        (Some(a), Some(b)) if b > a => {
            return Err(format!("timeout {} is longer than that of the {side} {name}", humantime::format_duration(b)));
        }
        (Some(_), None) => return Err(format!("drops the timeout of the {side} {name}")),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{FsOp, RelPath, Verdict};
    use std::path::Path;

    const STANDING: &str = r#"version = 1
[fs]
read = ["docs/**", "records/**"]
write = ["out/**"]
deny = ["**/.env"]
[[http.allow]]
url = "https://api.example.com/v1/**"
methods = ["GET", "POST"]
[approval]
require = { min = 2 }
[limits]
time = "30s"
calls = 100
"#;

    fn task(text: &str) -> Result<Policy, Widening> {
        task_over(STANDING, text, crate::Tier::Api)
    }

    fn task_over(standing: &str, text: &str, tier: crate::Tier) -> Result<Policy, Widening> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("task.toml");
        std::fs::write(&path, text).unwrap();
        let t = load_task(&path).unwrap();
        let standing = crate::parse("m.toml", standing, Path::new("/base")).unwrap();
        apply(&standing, &t, &Caller::unverified(tier))
    }

    /// `/v1/admin/**` asks for every method; `/v1/**` after it never asks
    /// and injects the API token.
    const SHADOWED: &str = r#"version = 1
[secrets.api]
env = "API_TOKEN"
[[http.allow]]
url = "https://api.example.com/v1/admin/**"
methods = ["GET", "DELETE"]
approval = "required"
[[http.allow]]
url = "https://api.example.com/v1/**"
methods = ["GET", "DELETE"]
approval = "never"
headers = { Authorization = "Bearer {secrets.api}" }
"#;

    fn ask(p: &Policy, method: &str, url: &str) -> Result<(Verdict, String), String> {
        let target = crate::HttpTarget::parse(url).unwrap();
        p.http.decide(method, &target).map(|(v, r)| (v, r.name.clone())).map_err(|d| d.reason)
    }

    #[test]
    fn a_task_rule_cannot_take_requests_an_earlier_standing_rule_decides_more_strictly() {
        let rule = "[[http.allow]]\nurl = \"https://api.example.com/v1/**\"\nmethods = [\"GET\", \"DELETE\"]\napproval = \"never\"\n";
        let err = task_over(SHADOWED, &format!("version = 1\n{rule}"), crate::Tier::Api).unwrap_err();
        assert_eq!(err.rule, "http.allow:https://api.example.com/v1/**");
        assert!(err.message.starts_with("GET without approval on requests where the standing http.allow[0]:https://api.example.com/v1/admin/** asks for it"), "{err}");
        assert!(
            err.message.contains("repeat the standing `https://api.example.com/v1/admin/**` rule before it"),
            "{err}"
        );

        // Repeating the standing rule first, as the message says, is narrowing.
        let admin = "[[http.allow]]\nurl = \"https://api.example.com/v1/admin/**\"\nmethods = [\"GET\", \"DELETE\"]\napproval = \"required\"\n";
        let p = task_over(SHADOWED, &format!("version = 1\n{admin}{rule}"), crate::Tier::Api).unwrap();
        let url = "https://api.example.com/v1/admin/all";
        assert_eq!(
            ask(&p, "DELETE", url),
            Ok((Verdict::Ask, "task.http.allow[0]:https://api.example.com/v1/admin/**".into()))
        );
        assert_eq!(p.http.rules()[0].headers, vec![], "the admin requests get the admin rule's headers: none");
        assert_eq!(ask(&p, "GET", "https://api.example.com/v1/items").unwrap().0, Verdict::Allow);
        assert_eq!(p.http.rules()[1].headers.len(), 1);

        // Repeating it with fewer methods leaves DELETE to fall to `/v1/**`.
        let get_only = admin.replace("[\"GET\", \"DELETE\"]", "[\"GET\"]");
        let err = task_over(SHADOWED, &format!("version = 1\n{get_only}{rule}"), crate::Tier::Api).unwrap_err();
        assert!(err.message.starts_with("DELETE without approval"), "{err}");

        // A rule disjoint from the admin one is narrowing as it was.
        let items = "version = 1\n[[http.allow]]\nurl = \"https://api.example.com/v1/items/**\"\nmethods = [\"GET\"]\napproval = \"never\"\n";
        let p = task_over(SHADOWED, items, crate::Tier::Api).unwrap();
        assert_eq!(ask(&p, "GET", "https://api.example.com/v1/items/1").unwrap().0, Verdict::Allow);
        assert!(ask(&p, "GET", url).is_err());
    }

    #[test]
    fn a_task_rule_cannot_move_injected_headers_onto_requests_an_earlier_rule_decides() {
        // `/v1/admin/**` injects nothing (the tool's own credentials, or none);
        // `/v1/**` injects the API token.
        let standing = SHADOWED.replace("methods = [\"GET\", \"DELETE\"]\napproval = \"required\"\n", "");
        let task = "version = 1\n[[http.allow]]\nurl = \"https://api.example.com/v1/**\"\nmethods = [\"GET\"]\n";
        let err = task_over(&standing, task, crate::Tier::Api).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`http.allow:https://api.example.com/v1/**` would widen the standing manifest: injects `Authorization: Bearer {secrets.api}` on requests where the standing http.allow[0]:https://api.example.com/v1/admin/** injects no header (rules are first-match: repeat the standing `https://api.example.com/v1/admin/**` rule before it, or leave those requests out)"
        );
    }

    #[test]
    fn conditional_standing_rules_are_decided_for_the_caller_of_the_run() {
        // The admin rule asks only of API callers; interactive ones get `/v1/**`.
        let standing =
            SHADOWED.replace("approval = \"required\"\n", "approval = \"required\"\nwhen = { tier = [\"api\"] }\n");
        let task = "version = 1\n[[http.allow]]\nurl = \"https://api.example.com/v1/**\"\nmethods = [\"GET\"]\napproval = \"never\"\n";
        let err = task_over(&standing, task, crate::Tier::Api).unwrap_err();
        assert!(err.message.starts_with("GET without approval on requests where the standing http.allow[0]"), "{err}");
        let p = task_over(&standing, task, crate::Tier::Interactive).unwrap();
        assert_eq!(ask(&p, "GET", "https://api.example.com/v1/admin/x").unwrap().0, Verdict::Allow);
    }

    #[test]
    fn overlap_is_decided_on_scheme_host_port_and_path() {
        // Each task rule is within `/v1/**` and shares nothing with the admin rule.
        for url in [
            "https://api.example.com/v1/items/**",
            "https://api.example.com/v1/admin",
            "https://api.example.com/v1/**/*.json",
        ] {
            let body =
                format!("version = 1\n[[http.allow]]\nurl = \"{url}\"\nmethods = [\"GET\"]\napproval = \"never\"\n");
            let standing = SHADOWED.replace("v1/admin/**", "v1/admin/**/*.xml");
            assert!(task_over(&standing, &body, crate::Tier::Api).is_ok(), "{url}");
        }
        // These might reach an admin URL: refused.
        for url in ["https://api.example.com/v1/*/**", "https://api.example.com/v1/ad*/x"] {
            let body =
                format!("version = 1\n[[http.allow]]\nurl = \"{url}\"\nmethods = [\"GET\"]\napproval = \"never\"\n");
            assert!(task_over(SHADOWED, &body, crate::Tier::Api).is_err(), "{url}");
        }
        // Another host, port or scheme never shares a request.
        let standing = format!("{SHADOWED}[[http.allow]]\nurl = \"https://*.example.com/**\"\napproval = \"never\"\n");
        for url in ["https://files.example.com/v1/admin/x", "https://*.cdn.example.com/**"] {
            let body =
                format!("version = 1\n[[http.allow]]\nurl = \"{url}\"\nmethods = [\"GET\"]\napproval = \"never\"\n");
            assert!(task_over(&standing, &body, crate::Tier::Api).is_ok(), "{url}");
        }
        let body = "version = 1\n[[http.allow]]\nurl = \"https://*.example.com/v1/**\"\napproval = \"never\"\n";
        let err = task_over(&standing, body, crate::Tier::Api).unwrap_err();
        assert!(err.message.contains("http.allow[0]"), "`*.example.com` includes `api.example.com`: {err}");
    }

    fn decide(p: &Policy, op: FsOp, path: &str) -> (Verdict, String) {
        let d = p.fs.decide(op, &RelPath::normalise(path).unwrap());
        (d.verdict, d.rule.to_owned())
    }

    #[test]
    fn a_covered_task_is_the_effective_grant_and_keeps_the_standing_denies() {
        let p = task("version = 1\n[fs]\nread = [\"records/p1/**\", \"docs/**\"]\ndeny = [\"docs/draft/**\"]\n[limits]\ncalls = 10\n[[http.allow]]\nurl = \"https://api.example.com/v1/items/**\"\nmethods = [\"GET\"]\n").unwrap();
        assert_eq!(decide(&p, FsOp::Read, "records/p1/a.txt"), (Verdict::Allow, "task.fs.read:records/p1/**".into()));
        assert_eq!(decide(&p, FsOp::Read, "records/p2/a.txt").0, Verdict::Deny);
        assert_eq!(decide(&p, FsOp::Read, "docs/draft/x.md"), (Verdict::Deny, "task.fs.deny:docs/draft/**".into()));
        assert_eq!(decide(&p, FsOp::Read, "docs/.env"), (Verdict::Deny, "fs.deny:**/.env".into()));
        assert_eq!(decide(&p, FsOp::Write, "out/x").0, Verdict::Deny, "no write in the task: none");
        assert_eq!(p.limits.calls, 10);
        assert_eq!(p.limits.time, Duration::from_secs(30), "unset limits stay the standing ones");
        assert_eq!(p.approval_require, Require::Min(2), "unset approval stays the standing one");
        assert_eq!(p.http.rules().len(), 1);
        assert!(p.http.rules()[0].name.starts_with("task.http.allow[0]:"));
    }

    #[test]
    fn each_kind_of_widening_is_refused_naming_the_rule() {
        for (body, rule) in [
            ("[fs]\nread = [\"secrets/**\"]", "fs.read:secrets/**"),
            ("[fs]\nread = [\"**/*.md\"]", "fs.read:**/*.md"),
            ("[fs]\nauto_approve = [\"out/**\"]", "fs.auto_approve:out/**"),
            ("[limits]\ncalls = 1000", "limits.calls"),
            ("[limits]\ntime = \"1m\"", "limits.time"),
            ("[approval]\nrequire = { any = true }", "approval.require"),
            ("[approval]\nwrites = \"end-of-task\"", "approval.writes"),
            ("[[http.allow]]\nurl = \"https://api.example.com/**\"", "http.allow:https://api.example.com/**"),
            (
                "[[http.allow]]\nurl = \"https://api.example.com/v1/x\"\nmethods = [\"DELETE\"]",
                "http.allow:https://api.example.com/v1/x",
            ),
            (
                "[[http.allow]]\nurl = \"https://api.example.com/v1/x\"\nmethods = [\"POST\"]\napproval = \"never\"",
                "http.allow:https://api.example.com/v1/x",
            ),
            ("[http]\nallow_private = [\"10.0.0.0/8\"]", "http.allow_private:10.0.0.0/8"),
            ("[process]\nmemory = \"8 GiB\"", "process.memory"),
            ("[process]\nallow_unstaged_writes = true", "process.allow_unstaged_writes"),
        ] {
            let err = task(&format!("version = 1\n{body}\n")).unwrap_err();
            assert_eq!(err.rule, rule, "{body}: {err}");
        }
    }

    #[test]
    fn operator_sections_are_not_allowed_in_a_task_manifest() {
        let dir = tempfile::tempdir().unwrap();
        for (body, key, line) in [
            ("[workspace]\nroot = \"/\"", "workspace", 2),
            ("[audit]\npath = \"x\"", "audit", 2),
            ("[identity]\nissuer = \"x\"", "identity", 2),
            ("[approval]\nvia = \"tty\"", "approval.via", 3),
            ("[secrets.x]\nenv = \"X\"", "secrets", 2),
        ] {
            let path = dir.path().join("t.toml");
            std::fs::write(&path, format!("version = 1\n{body}\n")).unwrap();
            let e = load_task(&path).unwrap_err();
            assert_eq!((e.key.as_deref(), e.line), (Some(key), Some(line)), "{body}: {e}");
            assert!(e.message.starts_with("not allowed in a task manifest"), "{e}");
        }
    }
}
