//! What a manifest change widens or narrows.
//!
//! Pre-approval lists and grants are controls in themselves: a change to
//! them should be reviewed like code. [`diff`] compares two compiled
//! manifests and lists every difference with its direction: a grant added,
//! a deny removed, a limit raised or an approval dropped *widens*; the
//! opposite *narrows*; what cannot be ordered (another workspace, another
//! approval channel) simply *changes*. Globs are compared as written: a
//! glob replaced by another is one removed and one added.

use crate::narrow::{Callers, http_rule_within};
use crate::{ApprovalVia, Policy, Require, Writes};
use std::collections::BTreeSet;
use std::fmt;

/// The direction of one difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effect {
    /// Allows more than before.
    Widens,
    /// Allows less than before.
    Narrows,
    /// Different, not ordered.
    Changes,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Effect::Widens => "widens",
            Effect::Narrows => "narrows",
            Effect::Changes => "changes",
        })
    }
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its direction.
    pub effect: Effect,
    /// What differs, one line (`fs.write + src/**`).
    pub what: String,
}

struct Out(Vec<Change>);

impl Out {
    fn push(&mut self, effect: Effect, what: String) {
        self.0.push(Change { effect, what });
    }

    /// Items only in `old` and only in `new`: `added` is the direction of
    /// an addition.
    fn sets(&mut self, key: &str, old: &[&str], new: &[&str], added: Effect) {
        let removed = if added == Effect::Widens { Effect::Narrows } else { Effect::Widens };
        let (a, b): (BTreeSet<&str>, BTreeSet<&str>) = (old.iter().copied().collect(), new.iter().copied().collect());
        for x in b.difference(&a) {
            self.push(added, format!("{key} + {x}"));
        }
        for x in a.difference(&b) {
            self.push(removed, format!("{key} - {x}"));
        }
    }

    /// A number where more is wider.
    fn more<T: PartialOrd + fmt::Display>(&mut self, key: &str, old: T, new: T) {
        if new > old {
            self.push(Effect::Widens, format!("{key}: {old} -> {new}"));
        } else if new < old {
            self.push(Effect::Narrows, format!("{key}: {old} -> {new}"));
        }
    }

    /// A duration where longer is wider.
    fn longer(&mut self, key: &str, old: std::time::Duration, new: std::time::Duration) {
        let show = |d| humantime::format_duration(d).to_string();
        if new != old {
            let effect = if new > old { Effect::Widens } else { Effect::Narrows };
            self.push(effect, format!("{key}: {} -> {}", show(old), show(new)));
        }
    }

    /// A rule's `when`: dropping it widens, adding it narrows.
    fn when(&mut self, key: &str, old: Option<&crate::When>, new: Option<&crate::When>) {
        let show = |w: Option<&crate::When>| w.map_or("everyone".to_owned(), |w| w.to_string());
        let effect = match (old, new) {
            (a, b) if a == b => return,
            (Some(_), None) => Effect::Widens,
            (None, Some(_)) => Effect::Narrows,
            // Narrower only when every caller the new one admits, the old one did.
            (a, b) if Callers::Any.implies(b, a) => Effect::Narrows,
            _ => Effect::Widens,
        };
        self.push(effect, format!("{key} when: {} -> {}", show(old), show(new)));
    }

    /// Whether a widening was already found for a rule: a line starting
    /// with `prefix`.
    fn widens_on(&self, prefix: &str) -> bool {
        self.0.iter().any(|c| c.effect == Effect::Widens && c.what.starts_with(prefix))
    }

    fn flag(&mut self, key: &str, old: bool, new: bool, true_widens: bool) {
        if old != new {
            let effect = if new == true_widens { Effect::Widens } else { Effect::Narrows };
            self.push(effect, format!("{key}: {old} -> {new}"));
        }
    }
}

fn strings(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

pub(crate) fn require_strength(r: &Require) -> u32 {
    match r {
        Require::Any => 1,
        Require::Role(_) => 1,
        Require::Min(n) => *n,
        Require::All(names) => names.len() as u32,
    }
}

/// `[identity]` and `[secrets]`: a token no longer required widens; other
/// changes to who is trusted are changes.
fn identity(out: &mut Out, old: &Policy, new: &Policy) {
    let required = |p: &Policy| p.identity.as_ref().is_some_and(|i| i.required);
    out.flag("identity.required", required(old), required(new), false);
    if let (Some(a), Some(b)) = (&old.identity, &new.identity) {
        for (key, x, y) in [("issuer", &a.issuer, &b.issuer), ("audience", &a.audience, &b.audience)] {
            if x != y {
                out.push(Effect::Changes, format!("identity.{key}: {x} -> {y}"));
            }
        }
        if a.jwks != b.jwks {
            out.push(Effect::Changes, "identity keys (jwks) changed".to_owned());
        }
        out.sets("identity.algorithms", &strings(&a.algorithms), &strings(&b.algorithms), Effect::Widens);
    } else if old.identity.is_some() != new.identity.is_some() {
        let effect = if new.identity.is_some() { Effect::Changes } else { Effect::Widens };
        out.push(effect, format!("[identity] {}", if new.identity.is_some() { "added" } else { "removed" }));
    }
    let names = |p: &Policy| p.secrets.keys().cloned().collect::<Vec<_>>();
    out.sets("secrets", &strings(&names(old)), &strings(&names(new)), Effect::Widens);
}

/// Every difference from `old` to `new`, widenings first.
pub fn diff(old: &Policy, new: &Policy) -> Vec<Change> {
    let mut out = Out(Vec::new());
    for ((name, a), (_, b)) in old.fs.lists().into_iter().zip(new.fs.lists()) {
        let added = if name == "deny" { Effect::Narrows } else { Effect::Widens };
        out.sets(&format!("fs.{name}"), &strings(a), &strings(b), added);
    }

    let grants = |p: &Policy| {
        let mut out = Vec::new();
        for (_, when, lists) in p.fs.grants() {
            let when = when.map(|w| format!(" (when {w})")).unwrap_or_default();
            for (list, globs) in lists {
                out.extend(globs.iter().map(|g| format!("{list} {g}{when}")));
            }
        }
        out
    };
    out.sets("fs.grant", &strings(&grants(old)), &strings(&grants(new)), Effect::Widens);
    identity(&mut out, old, new);

    let (oh, nh) = (&old.http, &new.http);
    let urls = |p: &crate::HttpPolicy| p.rules().iter().map(|r| r.url().to_owned()).collect::<Vec<_>>();
    let (ou, nu) = (urls(oh), urls(nh));
    // Rules are first-match: what a new rule decides is compared with what
    // the old rules decided for those requests (an earlier old rule, its
    // approval, its headers, its callers), not with one rule of that URL.
    let within: Vec<Result<(), String>> = (0..nh.rules().len())
        .map(|j| http_rule_within(oh.rules(), nh.rules(), j, Some(&nh.rules()[j].headers), Callers::Any, "old"))
        .map(|r| r.map(|_| ()))
        .collect();
    for (j, x) in nu.iter().enumerate().filter(|(_, x)| !ou.contains(x)) {
        if nu[..j].contains(x) {
            continue;
        }
        // An added rule narrows when every request it decides the old rules
        // decided at least as loosely.
        match nu.iter().zip(&within).filter(|(u, _)| *u == x).find_map(|(_, w)| w.as_ref().err()) {
            None => out.push(Effect::Narrows, format!("http.allow + {x}")),
            Some(why) => out.push(Effect::Widens, format!("http.allow + {x}: {why}")),
        }
    }
    for x in ou.iter().collect::<BTreeSet<_>>().into_iter().filter(|x| !nu.contains(x)) {
        out.push(Effect::Narrows, format!("http.allow - {x}"));
    }
    for r in nh.rules() {
        let Some(o) = oh.rules().iter().find(|o| o.url() == r.url()) else { continue };
        let key = format!("http.allow {}", r.url());
        out.sets(&format!("{key} methods"), &strings(o.methods()), &strings(r.methods()), Effect::Widens);
        for m in r.methods().iter().filter(|m| o.methods().contains(m)) {
            out.flag(&format!("{key} {m} asks for approval"), o.asks(m), r.asks(m), false);
        }
        out.flag(&format!("{key} query"), o.allows_query(), r.allows_query(), true);
        out.when(&key, o.when.as_ref(), r.when.as_ref());
        let show = |h: &[(String, crate::secrets::Template)]| h.iter().map(|(n, t)| format!("{n}: {t}")).collect();
        let (a, b): (Vec<String>, Vec<String>) = (show(&o.headers), show(&r.headers));
        out.sets(&format!("{key} headers"), &strings(&a), &strings(&b), Effect::Widens);
    }
    for (r, w) in nh.rules().iter().zip(&within) {
        let key = format!("http.allow {}", r.url());
        if let Err(why) = w
            && ou.contains(&r.url().to_owned())
            && !out.widens_on(&format!("{key} "))
        {
            out.push(Effect::Widens, format!("{key}: {why}"));
        }
    }
    let nets = |p: &crate::HttpPolicy| p.allow_private().iter().map(ToString::to_string).collect::<Vec<_>>();
    out.sets("http.allow_private", &strings(&nets(oh)), &strings(&nets(nh)), Effect::Widens);
    let cas = |p: &crate::HttpPolicy| p.ca_certs.iter().map(|c| c.display().to_string()).collect::<Vec<_>>();
    out.sets("http.ca_certs", &strings(&cas(oh)), &strings(&cas(nh)), Effect::Widens);
    out.longer("http.timeout", oh.timeout, nh.timeout);

    let (op, np) = (&old.process, &new.process);
    let programs = |p: &crate::ProcessPolicy| p.rules().iter().map(|r| r.program.clone()).collect::<Vec<_>>();
    out.sets("process.allow", &strings(&programs(op)), &strings(&programs(np)), Effect::Widens);
    out.more("process.memory", op.memory, np.memory);
    out.flag("process.allow_unstaged_writes", op.allow_unstaged_writes, np.allow_unstaged_writes, true);
    for r in np.rules() {
        let Some(o) = op.rule(&r.program) else { continue };
        let key = format!("process.allow {}", r.program);
        if o.path != r.path {
            out.push(Effect::Changes, format!("{key} path: {} -> {}", o.path.display(), r.path.display()));
        }
        out.sets(&format!("{key} args"), &o.patterns(), &r.patterns(), Effect::Widens);
        out.sets(&format!("{key} deny_args"), &o.deny_args(), &r.deny_args(), Effect::Narrows);
        out.sets(&format!("{key} env"), &strings(&o.env), &strings(&r.env), Effect::Widens);
        out.flag(&format!("{key} asks for approval"), o.approval, r.approval, false);
        out.when(&key, o.when.as_ref(), r.when.as_ref());
        let show = |h: &[(String, crate::secrets::Template)]| h.iter().map(|(n, t)| format!("{n}={t}")).collect();
        let (a, b): (Vec<String>, Vec<String>) = (show(&o.secret_env), show(&r.secret_env));
        out.sets(&format!("{key} secret_env"), &strings(&a), &strings(&b), Effect::Widens);
        if o.cwd() != r.cwd() {
            let show = |c: Option<&str>| c.unwrap_or("(root only)").to_owned();
            out.push(Effect::Changes, format!("{key} cwd: {} -> {}", show(o.cwd()), show(r.cwd())));
        }
        match (o.timeout, r.timeout) {
            (Some(a), Some(b)) => out.longer(&format!("{key} timeout"), a, b),
            (None, Some(b)) => {
                out.push(Effect::Narrows, format!("{key} timeout: (run's) -> {}", humantime::format_duration(b)))
            }
            (Some(a), None) => {
                out.push(Effect::Widens, format!("{key} timeout: {} -> (run's)", humantime::format_duration(a)))
            }
            (None, None) => {}
        }
    }

    let via = |v: &Option<ApprovalVia>| match v {
        None => "default (tty with a terminal, else deny)".to_owned(),
        Some(ApprovalVia::Service(url)) => format!("service {url}"),
        Some(v) => v.name().to_owned(),
    };
    if old.approval_via != new.approval_via {
        out.push(Effect::Changes, format!("approval.via: {} -> {}", via(&old.approval_via), via(&new.approval_via)));
    }
    if old.approval_require != new.approval_require {
        let (a, b) = (require_strength(&old.approval_require), require_strength(&new.approval_require));
        let effect = if b < a {
            Effect::Widens
        } else if b > a {
            Effect::Narrows
        } else {
            Effect::Changes
        };
        out.push(effect, format!("approval.require: {} -> {}", old.approval_require, new.approval_require));
    }
    if old.approval_writes != new.approval_writes {
        let name = |w: Writes| if w == Writes::EndOfTask { "end-of-task" } else { "per-call" };
        out.push(
            Effect::Changes,
            format!("approval.writes: {} -> {}", name(old.approval_writes), name(new.approval_writes)),
        );
    }
    out.longer("approval.timeout", old.approval_timeout, new.approval_timeout);

    let (ol, nl) = (&old.limits, &new.limits);
    out.more("limits.memory", ol.memory, nl.memory);
    out.longer("limits.time", ol.time, nl.time);
    out.more("limits.calls", ol.calls, nl.calls);
    out.more("limits.output", ol.output, nl.output);
    if old.workspace_root != new.workspace_root {
        out.push(
            Effect::Changes,
            format!("workspace.root: {} -> {}", old.workspace_root.display(), new.workspace_root.display()),
        );
    }
    if old.audit_path != new.audit_path {
        out.push(Effect::Changes, format!("audit.path: {} -> {}", old.audit_path.display(), new.audit_path.display()));
    }
    let mut changes = out.0;
    changes.sort_by_key(|c| c.effect);
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn p(text: &str) -> Policy {
        crate::parse("m.toml", text, Path::new("/base")).unwrap()
    }

    fn lines(old: &str, new: &str) -> Vec<String> {
        diff(&p(old), &p(new)).into_iter().map(|c| format!("{}: {}", c.effect, c.what)).collect()
    }

    #[test]
    fn identical_manifests_differ_in_nothing() {
        let m = "version = 1\n[fs]\nread = [\"src/**\"]\n";
        assert!(lines(m, m).is_empty());
    }

    #[test]
    fn grants_and_denies_are_ordered() {
        let old = "version = 1\n[fs]\nread = [\"src/**\"]\nwrite = [\"out/**\"]\ndeny = [\"**/.env\"]\n";
        let new =
            "version = 1\n[fs]\nread = [\"src/**\", \"docs/**\"]\nwrite = [\"out/**\"]\nauto_approve = [\"out/**\"]\n";
        let l = lines(old, new);
        assert!(l.contains(&"widens: fs.read + docs/**".to_owned()), "{l:?}");
        assert!(l.contains(&"widens: fs.auto_approve + out/**".to_owned()), "{l:?}");
        assert!(l.contains(&"widens: fs.deny - **/.env".to_owned()), "{l:?}");
        let back = lines(new, old);
        assert!(back.iter().all(|x| x.starts_with("narrows:")), "{back:?}");
    }

    #[test]
    fn http_rules_limits_and_approvals_are_compared() {
        let old = "version = 1\n[limits]\ntime = \"30s\"\n[[http.allow]]\nurl = \"https://api.x.com/**\"\n";
        let new = "version = 1\n[limits]\ntime = \"60s\"\n[http]\nallow_private = [\"10.0.0.0/8\"]\n[[http.allow]]\nurl = \"https://api.x.com/**\"\nmethods = [\"GET\", \"POST\"]\napproval = \"never\"\n[[http.allow]]\nurl = \"https://hooks.x.com/ci\"\n";
        let l = lines(old, new);
        for want in [
            "widens: http.allow + https://hooks.x.com/ci: no old `http.allow` rule covers this URL",
            "widens: http.allow https://api.x.com/** methods + POST",
            "widens: http.allow_private + 10.0.0.0/8",
            "widens: limits.time: 30s -> 1m",
        ] {
            assert!(l.iter().any(|x| x == want), "{want} not in {l:?}");
        }
        let req = "version = 1\n[approval]\nvia = \"http://a:1\"\nrequire = { min = 2 }\n";
        let any = "version = 1\n[approval]\nvia = \"http://a:1\"\nrequire = { any = true }\n";
        assert_eq!(lines(req, any), vec!["widens: approval.require: at least 2 reviewers -> any one reviewer"]);
    }

    #[test]
    fn conditional_grants_identity_and_secrets_are_compared() {
        let old = "version = 1
[identity]
issuer = \"i\"
audience = \"a\"
jwks = \"j\"
required = true
[[fs.grant]]
read = [\"records/**\"]
when = { claims = { role = [\"clinician\"] } }
[[http.allow]]
url = \"https://x.example/**\"
when = { tier = [\"interactive\"] }
";
        let new = "version = 1
[identity]
issuer = \"i\"
audience = \"a\"
jwks = \"j\"
[secrets.k]
env = \"K\"
[[fs.grant]]
read = [\"records/**\"]
[[http.allow]]
url = \"https://x.example/**\"
headers = { Authorization = \"Bearer {secrets.k}\" }
";
        let l = lines(old, new);
        for want in [
            "widens: fs.grant + read records/**",
            "narrows: fs.grant - read records/** (when role = clinician)",
            "widens: identity.required: true -> false",
            "widens: secrets + k",
            "widens: http.allow https://x.example/** when: tier = interactive -> everyone",
            "widens: http.allow https://x.example/** headers + Authorization: Bearer {secrets.k}",
        ] {
            assert!(l.iter().any(|x| x == want), "{want} not in {l:?}");
        }
    }
    const ADMIN_FIRST: &str = "version = 1
[[http.allow]]
url = \"https://api.x.com/v1/admin/**\"
methods = [\"GET\", \"DELETE\"]
approval = \"required\"
[[http.allow]]
url = \"https://api.x.com/v1/**\"
methods = [\"GET\", \"DELETE\"]
approval = \"never\"
";

    #[test]
    fn dropping_an_earlier_stricter_rule_widens_and_says_why() {
        let only_v1 = "version = 1\n[[http.allow]]\nurl = \"https://api.x.com/v1/**\"\nmethods = [\"GET\", \"DELETE\"]\napproval = \"never\"\n";
        let l = lines(ADMIN_FIRST, only_v1);
        assert_eq!(
            l[0],
            "widens: http.allow https://api.x.com/v1/**: GET without approval on requests where the old http.allow[0]:https://api.x.com/v1/admin/** asks for it (rules are first-match: repeat the old `https://api.x.com/v1/admin/**` rule before it, or leave those requests out)"
        );
        // Putting it back, first, narrows.
        let back = lines(only_v1, ADMIN_FIRST);
        assert_eq!(back, vec!["narrows: http.allow + https://api.x.com/v1/admin/**"]);
        // After `/v1/**` it decides nothing: no difference that widens.
        let reordered = "version = 1\n[[http.allow]]\nurl = \"https://api.x.com/v1/**\"\nmethods = [\"GET\", \"DELETE\"]\napproval = \"never\"\n[[http.allow]]\nurl = \"https://api.x.com/v1/admin/**\"\nmethods = [\"GET\", \"DELETE\"]\napproval = \"required\"\n";
        let l = lines(ADMIN_FIRST, reordered);
        assert!(
            l.iter().any(|x| x.starts_with("widens: http.allow https://api.x.com/v1/**: GET without approval")),
            "{l:?}"
        );
    }

    #[test]
    fn a_when_that_admits_other_callers_widens() {
        let rule = "[[http.allow]]\nurl = \"https://x.example/**\"\n";
        let old = format!("version = 1\n{rule}when = {{ tier = [\"interactive\"] }}\n");
        let new = format!("version = 1\n{rule}when = {{ tier = [\"api\"] }}\n");
        assert_eq!(
            lines(&old, &new),
            vec!["widens: http.allow https://x.example/** when: tier = interactive -> tier = api"]
        );
        let both = format!("version = 1\n{rule}when = {{ tier = [\"interactive\", \"api\"] }}\n");
        assert_eq!(
            lines(&both, &old),
            vec!["narrows: http.allow https://x.example/** when: tier = interactive|api -> tier = interactive"]
        );

        // A conditional stricter rule first: dropping its condition from the
        // later rule's view still leaves it deciding for API callers.
        let old =
            ADMIN_FIRST.replace("approval = \"required\"\n", "approval = \"required\"\nwhen = { tier = [\"api\"] }\n");
        let new = "version = 1\n[[http.allow]]\nurl = \"https://api.x.com/v1/**\"\nmethods = [\"GET\"]\napproval = \"never\"\n";
        assert!(lines(&old, new)[0].starts_with("widens: http.allow https://api.x.com/v1/**: GET without approval"));
        // For interactive callers only, the admin rule never applied.
        let new = format!("{new}when = {{ tier = [\"interactive\"] }}\n");
        assert!(lines(&old, &new).iter().all(|x| !x.starts_with("widens")), "{:?}", lines(&old, &new));

        let git = "[[process.allow]]\nprogram = \"ls\"\npath = \"/bin/ls\"\n";
        let old = format!("version = 1\n{git}when = {{ claims = {{ role = [\"admin\"] }} }}\n");
        let new = format!("version = 1\n{git}when = {{ claims = {{ role = [\"admin\", \"guest\"] }} }}\n");
        assert_eq!(lines(&old, &new), vec!["widens: process.allow ls when: role = admin -> role = admin|guest"]);
    }
}
