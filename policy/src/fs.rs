//! File grants compiled into glob sets, and the decisions made on them.
//!
//! Order of a decision, first match wins:
//! 1. protected paths: the manifest and the audit log when they lie in the
//!    workspace (every operation), then the built-in write protections
//!    ([`PROTECTED_WRITES`]: files that would run code later, such as
//!    `.git/hooks/*`) for every write;
//! 2. `fs.deny`: matched case-insensitively on the Unicode NFC form, so
//!    `.ENV` or a decomposed spelling cannot slip past `**/.env`;
//! 3. the grant for the operation: `fs.read` for reads, `fs.write` for
//!    writes (then `fs.auto_approve` decides whether a human is asked);
//! 4. otherwise denied (`default`).
//!
//! A glob `d/**` also covers the directory `d` itself for `stat`,
//! `list-dir` and `create-dir`. `stat` and `list-dir` are also allowed on
//! directories a read grant leads through (`src` for `src/app/**`), so a
//! tool can walk to what it may read; listings omit every entry the tool
//! could neither read nor walk through.

use crate::caller::{Caller, When};
use crate::path::RelPath;
use globset::{Candidate, Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use std::borrow::Cow;
use unicode_normalization::{UnicodeNormalization, is_nfc_quick};

/// Built-in write protections: writes here give code execution later (git
/// hooks and config, shell start-up files, editor task files, direnv).
/// They hold whatever the manifest says and are matched like `fs.deny`.
pub const PROTECTED_WRITES: &[&str] = &[
    "**/.git/**",
    "**/.gitmodules",
    "**/.husky/**",
    "**/.envrc",
    "**/.vscode/**",
    "**/.idea/**",
    "**/.bashrc",
    "**/.bash_profile",
    "**/.bash_login",
    "**/.profile",
    "**/.zshrc",
    "**/.zshenv",
    "**/.zprofile",
    "**/.zlogin",
    "**/.cshrc",
    "**/.tcshrc",
    "**/.login",
    "**/.config/fish/**",
];

/// What a tool asks to do with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsOp {
    /// `fs.read`
    Read,
    /// `fs.list-dir`
    ListDir,
    /// `fs.stat`
    Stat,
    /// `fs.write`
    Write,
    /// `fs.append`
    Append,
    /// `fs.create-dir`
    CreateDir,
    /// `fs.remove`
    Remove,
    /// `fs.rename`, either end
    Rename,
}

impl FsOp {
    /// Every operation, in WIT order.
    pub const ALL: [FsOp; 8] =
        [FsOp::Read, FsOp::ListDir, FsOp::Stat, FsOp::Write, FsOp::Append, FsOp::CreateDir, FsOp::Remove, FsOp::Rename];

    /// The capability name used in audit events and on the command line.
    pub fn capability(self) -> &'static str {
        match self {
            FsOp::Read => "fs.read",
            FsOp::ListDir => "fs.list-dir",
            FsOp::Stat => "fs.stat",
            FsOp::Write => "fs.write",
            FsOp::Append => "fs.append",
            FsOp::CreateDir => "fs.create-dir",
            FsOp::Remove => "fs.remove",
            FsOp::Rename => "fs.rename",
        }
    }

    /// Parses a capability name such as `fs.read`.
    pub fn from_capability(s: &str) -> Option<FsOp> {
        FsOp::ALL.into_iter().find(|op| op.capability() == s)
    }

    /// True for every operation that changes the workspace.
    pub fn is_write(self) -> bool {
        !matches!(self, FsOp::Read | FsOp::ListDir | FsOp::Stat)
    }

    fn dir_self(self) -> bool {
        matches!(self, FsOp::ListDir | FsOp::Stat | FsOp::CreateDir)
    }
}

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed without asking anyone.
    Allow,
    /// Allowed once a human approves it.
    Ask,
    /// Refused.
    Deny,
}

/// A decision and the rule that made it. `rule` names the manifest entry
/// (`fs.read:src/**`) or the built-in (`builtin:...`, `default`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'p> {
    /// Allow, ask or deny.
    pub verdict: Verdict,
    /// The rule that decided, as written in audit events.
    pub rule: &'p str,
}

impl Decision<'_> {
    /// True unless denied.
    pub fn permits(&self) -> bool {
        self.verdict != Verdict::Deny
    }
}

/// One compiled list of globs, with a rule name per glob.
#[derive(Debug, Clone)]
pub(crate) struct GlobList {
    /// The globs as written (after validation), in manifest order.
    pub(crate) patterns: Vec<String>,
    rules: Vec<String>,
    set: GlobSet,
    /// For each glob `d/**`, the glob `d`: a grant of everything below a
    /// directory also covers the directory itself where that applies.
    dir_set: GlobSet,
    /// Index into `patterns` for each glob of `dir_set`.
    dir_index: Vec<usize>,
}

/// Why a glob was refused when the manifest was compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GlobError {
    pub(crate) index: usize,
    pub(crate) message: String,
}

impl GlobList {
    pub(crate) fn compile(list: &str, patterns: &[String], case_insensitive: bool) -> Result<GlobList, GlobError> {
        let named: Vec<(&str, &str)> = patterns.iter().map(|p| (list, p.as_str())).collect();
        GlobList::compile_named(&named, case_insensitive)
    }

    /// Compiles globs that come from different lists: (list name, glob).
    pub(crate) fn compile_named(entries: &[(&str, &str)], case_insensitive: bool) -> Result<GlobList, GlobError> {
        let mut set = GlobSetBuilder::new();
        let mut dir_set = GlobSetBuilder::new();
        let mut dir_index = Vec::new();
        let mut rules = Vec::with_capacity(entries.len());
        let mut normal = Vec::with_capacity(entries.len());
        for (index, (list, raw)) in entries.iter().enumerate() {
            let err = |message| GlobError { index, message };
            let pattern = validate_pattern(raw).map_err(err)?;
            set.add(build_glob(&pattern, case_insensitive).map_err(err)?);
            if let Some(dir) = pattern.strip_suffix("/**") {
                dir_set.add(build_glob(dir, case_insensitive).map_err(err)?);
                dir_index.push(index);
            }
            // A list name may carry a note for the rule: `fs.grant[0].read (when …)`.
            rules.push(match list.split_once(" (") {
                Some((list, note)) => format!("{list}:{pattern} ({note}"),
                None => format!("{list}:{pattern}"),
            });
            normal.push(pattern);
        }
        let built = |b: GlobSetBuilder| b.build().map_err(|e| GlobError { index: 0, message: e.to_string() });
        Ok(GlobList { patterns: normal, rules, set: built(set)?, dir_set: built(dir_set)?, dir_index })
    }

    /// The first glob (in manifest order) matching the path, and with
    /// `dir_self` also the first `d/**` whose `d` is the path.
    pub(crate) fn find(&self, candidate: &Candidate<'_>, dir_self: bool) -> Option<usize> {
        if self.set.is_match_candidate(candidate) {
            return self.set.matches_candidate(candidate).into_iter().min();
        }
        if dir_self && self.dir_set.is_match_candidate(candidate) {
            return self.dir_set.matches_candidate(candidate).into_iter().map(|i| self.dir_index[i]).min();
        }
        None
    }

    /// (list name, glob) for each glob, as [`GlobList::compile_named`] takes them.
    pub(crate) fn entries(&self) -> Vec<(&str, &str)> {
        self.rules.iter().zip(&self.patterns).map(|(r, p)| (rule_list(r), p.as_str())).collect()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub(crate) fn rule(&self, index: usize) -> &str {
        &self.rules[index]
    }
}

/// The list part of a rule name (`fs.read` of `fs.read:src/**`).
fn rule_list(rule: &str) -> &str {
    rule.split_once(':').map_or(rule, |(l, _)| l)
}

fn build_glob(pattern: &str, case_insensitive: bool) -> Result<Glob, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .case_insensitive(case_insensitive)
        .empty_alternates(true)
        .build()
        .map_err(|e| format!("glob `{pattern}` is malformed: {}", e.kind()))
}

/// Checks one glob as the operator wrote it and returns its normal form.
fn validate_pattern(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("empty glob".into());
    }
    if raw.starts_with('/') {
        return Err(format!("glob `{raw}` is absolute; globs are relative to the workspace root"));
    }
    if raw.ends_with('/') {
        return Err(format!("glob `{raw}` ends with `/`; write `{}**` for everything below it", raw));
    }
    if raw.chars().any(|c| c.is_control()) {
        return Err(format!("glob `{}` contains a control character", raw.escape_debug()));
    }
    for comp in raw.split('/') {
        match comp {
            "" => return Err(format!("glob `{raw}` has an empty component (`//`)")),
            "." | ".." => {
                return Err(format!("glob `{raw}` has a `{comp}` component; write the path it means"));
            }
            _ => {}
        }
    }
    Ok(raw.nfc().collect())
}

/// Paths that a glob granting the whole workspace matches: one at the top,
/// hidden files, version control internals and deep paths. A glob matching
/// all of them is "broad" and needs `fs.allow_broad`.
const BROAD_PROBES: &[&str] = &[".env", ".git/config", "src/main.rs", "a/b/c/d/e.txt", "x"];

/// True when one glob alone matches every probe.
#[cfg(test)]
pub(crate) fn is_broad(pattern: &str) -> bool {
    broad_globs(&[pattern]).is_some()
}

/// When a list of globs together matches every probe (grants the whole
/// workspace), the globs that make it so: one glob if one alone does, else
/// those left after dropping every glob the others make unnecessary.
pub(crate) fn broad_globs(patterns: &[&str]) -> Option<Vec<usize>> {
    let matchers: Vec<Option<GlobMatcher>> =
        patterns.iter().map(|p| build_glob(p, false).ok().map(|g| g.compile_matcher())).collect();
    let covers = |set: &[usize]| {
        BROAD_PROBES.iter().all(|p| set.iter().any(|i| matchers[*i].as_ref().is_some_and(|m| m.is_match(p))))
    };
    if let Some(one) = (0..patterns.len()).find(|i| covers(&[*i])) {
        return Some(vec![one]);
    }
    let mut set: Vec<usize> = (0..patterns.len()).collect();
    if !covers(&set) {
        return None;
    }
    let mut i = 0;
    while i < set.len() {
        let without: Vec<usize> = set.iter().copied().filter(|j| *j != set[i]).collect();
        if covers(&without) { set = without } else { i += 1 }
    }
    Some(set)
}

/// One glob split into components, to decide whether a directory leads to
/// something the glob could match.
#[derive(Debug, Clone)]
enum Step {
    Any,
    One(GlobMatcher),
    Opaque,
}

#[derive(Debug, Clone)]
pub(crate) struct Walk {
    steps: Vec<Vec<Step>>,
}

impl Walk {
    fn compile(patterns: &[String]) -> Walk {
        let steps = patterns
            .iter()
            .map(|p| {
                p.split('/')
                    .map(|c| {
                        if c.contains("**") {
                            Step::Any
                        } else {
                            match build_glob(c, false) {
                                Ok(g) => Step::One(g.compile_matcher()),
                                Err(_) => Step::Opaque,
                            }
                        }
                    })
                    .collect()
            })
            .collect();
        Walk { steps }
    }

    /// The index of a glob that could match something strictly below `dir`.
    fn leads_through(&self, dir: &str) -> Option<usize> {
        let comps: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
        self.steps.iter().position(|steps| leads(steps, &comps))
    }
}

fn leads(steps: &[Step], dir: &[&str]) -> bool {
    match (steps.first(), dir.first()) {
        (Some(Step::Any), _) => true,
        // The directory is used up and the glob goes on below it.
        (Some(_), None) => true,
        (Some(Step::One(m)), Some(name)) => m.is_match(name) && leads(&steps[1..], &dir[1..]),
        (Some(Step::Opaque), Some(_)) => false,
        (None, _) => false,
    }
}

/// The compiled `[fs]` section plus the built-in protections.
#[derive(Debug, Clone)]
pub struct FsPolicy {
    pub(crate) read: GlobList,
    pub(crate) write: GlobList,
    pub(crate) auto_approve: GlobList,
    pub(crate) deny: GlobList,
    protected_writes: GlobList,
    walk: Walk,
    /// Exact workspace paths no operation may touch (manifest, secrets).
    protected_paths: Vec<(String, String)>,
    /// Families of names no operation may touch, nor anything inside them
    /// (the audit log and every file it owns).
    protected_families: Vec<Family>,
    /// `[[fs.grant]]` tables, as written; they join the lists above once
    /// [`FsPolicy::for_caller`] finds their conditions met.
    pub(crate) grants: Vec<FsGrant>,
    /// The read and write globs of grants whose conditions were not met,
    /// named after them: consulted only to name the rule of a denial.
    unmet: Option<Box<[GlobList; 2]>>,
}

/// One `[[fs.grant]]` table.
#[derive(Debug, Clone)]
pub(crate) struct FsGrant {
    /// Its position among the `[[fs.grant]]` tables.
    pub(crate) index: usize,
    /// Who it is for; `None`: everyone.
    pub(crate) when: Option<When>,
    /// Its `read`, `write` and `auto_approve` globs, validated.
    pub(crate) lists: [Vec<String>; 3],
}

/// One `[[fs.grant]]` for display: its index, its condition, and
/// (list name, globs) for `read`, `write`, `auto_approve`.
pub type GrantView<'a> = (usize, Option<&'a When>, [(&'static str, &'a [String]); 3]);

/// The list names of [`FsGrant::lists`].
const GRANT_LISTS: [&str; 3] = ["read", "write", "auto_approve"];

impl FsPolicy {
    pub(crate) fn new(read: GlobList, write: GlobList, auto_approve: GlobList, deny: GlobList) -> FsPolicy {
        let builtin: Vec<String> = PROTECTED_WRITES.iter().map(|s| s.to_string()).collect();
        // The built-in list is constant and tested; it always compiles.
        let protected_writes = GlobList::compile("builtin:protected", &builtin, true)
            .unwrap_or_else(|e| panic!("built-in protection {e:?} does not compile"));
        let walk = Walk::compile(&read.patterns);
        FsPolicy {
            read,
            write,
            auto_approve,
            deny,
            protected_writes,
            walk,
            protected_paths: Vec::new(),
            protected_families: Vec::new(),
            grants: Vec::new(),
            unmet: None,
        }
    }

    /// The policy for one caller: the `[[fs.grant]]` tables whose `when`
    /// holds join the read, write and auto-approve lists (after the plain
    /// `[fs]` globs, so those decide first); the others are kept only to
    /// name the rule of a denial they would have allowed.
    pub fn for_caller(&self, caller: &Caller) -> FsPolicy {
        if self.grants.is_empty() {
            return self.clone();
        }
        let base = [&self.read, &self.write, &self.auto_approve];
        let mut lists: [Vec<(String, String)>; 3] = Default::default();
        let mut unmet: [Vec<(String, String)>; 2] = Default::default();
        for (i, list) in base.iter().enumerate() {
            lists[i] = list.entries().into_iter().map(|(l, p)| (l.to_owned(), p.to_owned())).collect();
        }
        for g in &self.grants {
            let met = g.when.as_ref().is_none_or(|w| w.holds(caller));
            for (i, globs) in g.lists.iter().enumerate() {
                let name = format!("fs.grant[{}].{}", g.index, GRANT_LISTS[i]);
                for glob in globs {
                    if met {
                        lists[i].push((name.clone(), glob.clone()));
                    } else if i < 2 {
                        let when = g.when.as_ref().map(ToString::to_string).unwrap_or_default();
                        unmet[i].push((format!("{name} (when {when}: not met)"), glob.clone()));
                    }
                }
            }
        }
        // Every glob compiled once already when the manifest was read.
        let compile = |entries: &[(String, String)]| {
            let named: Vec<(&str, &str)> = entries.iter().map(|(l, p)| (l.as_str(), p.as_str())).collect();
            GlobList::compile_named(&named, false).unwrap_or_else(|e| panic!("a validated glob failed: {e:?}"))
        };
        let [read, write, auto_approve] = &lists;
        let mut out = FsPolicy::new(compile(read), compile(write), compile(auto_approve), self.deny.clone());
        out.protected_paths = self.protected_paths.clone();
        out.protected_families = self.protected_families.clone();
        out.grants = self.grants.clone();
        if unmet.iter().any(|u| !u.is_empty()) {
            out.unmet = Some(Box::new([compile(&unmet[0]), compile(&unmet[1])]));
        }
        out
    }

    /// The denial when no grant allows the call: named after a grant for
    /// other callers that would have, else `default`.
    fn denied(&self, write: bool, path: &Candidate<'_>, dir_self: bool) -> Decision<'_> {
        if let Some(unmet) = &self.unmet {
            let list = &unmet[usize::from(write)];
            if let Some(i) = list.find(path, dir_self) {
                return deny(list.rule(i));
            }
        }
        deny("default")
    }

    /// The `[[fs.grant]]` tables for display: index, condition, and
    /// (list name, globs).
    pub fn grants(&self) -> impl Iterator<Item = GrantView<'_>> {
        self.grants.iter().map(|g| {
            let lists = [
                (GRANT_LISTS[0], &g.lists[0][..]),
                (GRANT_LISTS[1], &g.lists[1][..]),
                (GRANT_LISTS[2], &g.lists[2][..]),
            ];
            (g.index, g.when.as_ref(), lists)
        })
    }

    /// Refuses every operation on one exact workspace path, such as the
    /// manifest or the audit log when they lie inside the workspace.
    /// `what` names it in the rule (`builtin:audit-log`).
    pub fn protect_path(&mut self, path: &RelPath, what: &str) {
        self.protected_paths.push((path.as_str().to_owned(), format!("builtin:{what}")));
    }

    /// Refuses every operation on every name of a family in the workspace
    /// directory `dir` and on everything below such a name: the names for
    /// which `owns(base, name)` gives a rule (the audit log's own files,
    /// whose list the audit crate owns: `sandbox_audit::owned::owned_rule`),
    /// whether they exist yet or not. The rule given names the refusal; for
    /// `""` (the family's own file) `what` does (`builtin:audit-log`).
    pub fn protect_family(&mut self, dir: &RelPath, base: &str, owns: NameRule, what: &str) {
        self.protected_families.push(Family {
            dir: dir.as_str().to_owned(),
            base: base.to_owned(),
            owns,
            rule: format!("builtin:{what}"),
        });
    }

    /// The family protection that covers `path`, if one does.
    fn protected_family(&self, path: &RelPath) -> Option<&str> {
        self.protected_families.iter().find_map(|f| match f.covers(path.as_str())? {
            "" => Some(f.rule.as_str()),
            rule => Some(rule),
        })
    }

    /// Decides `op` on `path`. The caller decides again on the path the
    /// file system resolves it to when that differs (a symlink): both must
    /// permit the call.
    pub fn decide(&self, op: FsOp, path: &RelPath) -> Decision<'_> {
        if let Some((_, rule)) = self.protected_paths.iter().find(|(p, _)| *p == path.as_str()) {
            return deny(rule);
        }
        if let Some(rule) = self.protected_family(path) {
            return deny(rule);
        }
        let nfc = nfc(path.as_str());
        let lower = nfc.to_lowercase();
        let folded = Candidate::new(&lower);
        if op.is_write()
            && let Some(i) = self.protected_writes.find(&folded, true)
        {
            return deny(self.protected_writes.rule(i));
        }
        // A denied `d/**` denies `d` itself for every operation: listing,
        // renaming or removing it would expose or move what it holds.
        if let Some(i) = self.deny.find(&folded, true) {
            return deny(self.deny.rule(i));
        }
        let exact = Candidate::new(nfc.as_ref());
        if op.is_write() {
            let Some(grant) = self.write.find(&exact, op.dir_self()) else {
                return self.denied(true, &exact, op.dir_self());
            };
            return match self.auto_approve.find(&exact, op.dir_self()) {
                Some(i) => allow(self.auto_approve.rule(i)),
                None => Decision { verdict: Verdict::Ask, rule: self.write.rule(grant) },
            };
        }
        if let Some(i) = self.read.find(&exact, op.dir_self()) {
            return allow(self.read.rule(i));
        }
        if op.dir_self()
            && let Some(i) = self.walk.leads_through(&nfc)
        {
            return allow(self.read.rule(i));
        }
        self.denied(false, &exact, op.dir_self())
    }

    /// True when a listing may show `entry` (a child of a listed directory):
    /// the tool could read it, or walk through it towards something it could.
    pub fn visible(&self, entry: &RelPath, is_dir: bool) -> bool {
        let op = if is_dir { FsOp::ListDir } else { FsOp::Read };
        self.decide(op, entry).permits()
    }

    /// Whether the manifest grants any read at all.
    pub fn reads_anything(&self) -> bool {
        !self.read.is_empty()
    }

    /// The compiled lists for display: (list name, globs).
    pub fn lists(&self) -> [(&'static str, &[String]); 4] {
        [
            ("read", &self.read.patterns),
            ("write", &self.write.patterns),
            ("auto_approve", &self.auto_approve.patterns),
            ("deny", &self.deny.patterns),
        ]
    }

    /// The exact paths protected at run time, with their rule names.
    pub fn protected_paths(&self) -> &[(String, String)] {
        &self.protected_paths
    }

    /// The families of names protected at run time: (directory, base name,
    /// rule name).
    pub fn protected_families(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.protected_families.iter().map(|f| (f.dir.as_str(), f.base.as_str(), f.rule.as_str()))
    }
}

/// Whether a file name belongs to a family, and the rule that protects it:
/// `owns(base, name)`; `Some("")` for the family's own rule.
pub type NameRule = fn(&str, &str) -> Option<&'static str>;

/// A protected family of names in one workspace directory.
#[derive(Debug, Clone)]
struct Family {
    /// The directory, workspace-relative (empty: the root).
    dir: String,
    base: String,
    owns: NameRule,
    rule: String,
}

impl Family {
    /// The rule when `path` is a name of the family or lies below one.
    fn covers(&self, path: &str) -> Option<&'static str> {
        let rest = if self.dir.is_empty() {
            path
        } else {
            path.strip_prefix(self.dir.as_str()).and_then(|r| r.strip_prefix('/'))?
        };
        let first = rest.split('/').next().filter(|f| !f.is_empty())?;
        (self.owns)(&self.base, first)
    }
}

fn allow(rule: &str) -> Decision<'_> {
    Decision { verdict: Verdict::Allow, rule }
}

fn deny(rule: &str) -> Decision<'_> {
    Decision { verdict: Verdict::Deny, rule }
}

fn nfc(s: &str) -> Cow<'_, str> {
    if s.is_ascii() || is_nfc_quick(s.chars()) == unicode_normalization::IsNormalized::Yes {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.nfc().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(name: &str, globs: &[&str], ci: bool) -> GlobList {
        let v: Vec<String> = globs.iter().map(|s| s.to_string()).collect();
        GlobList::compile(name, &v, ci).unwrap()
    }

    fn policy(read: &[&str], write: &[&str], auto: &[&str], deny: &[&str]) -> FsPolicy {
        FsPolicy::new(
            list("fs.read", read, false),
            list("fs.write", write, false),
            list("fs.auto_approve", auto, false),
            list("fs.deny", deny, true),
        )
    }

    fn p(s: &str) -> RelPath {
        RelPath::normalise(s).unwrap()
    }

    fn sample() -> FsPolicy {
        policy(
            &["src/**", "docs/*.md", "Cargo.toml", "**/*.txt"],
            &["src/app/**", "out/**"],
            &["out/**"],
            &["**/.env", "**/*.pem", "src/secret/**"],
        )
    }

    #[test]
    fn reads_follow_the_grants() {
        let f = sample();
        assert_eq!(f.decide(FsOp::Read, &p("src/main.rs")), allow("fs.read:src/**"));
        assert_eq!(f.decide(FsOp::Read, &p("src/a/b/c.rs")).verdict, Verdict::Allow);
        assert_eq!(f.decide(FsOp::Read, &p("docs/x.md")).verdict, Verdict::Allow);
        assert_eq!(f.decide(FsOp::Read, &p("docs/sub/x.md")), deny("default"));
        assert_eq!(f.decide(FsOp::Read, &p("Cargo.toml")).verdict, Verdict::Allow);
        assert_eq!(f.decide(FsOp::Read, &p("Cargo.lock")), deny("default"));
        assert_eq!(f.decide(FsOp::Read, &p("deep/a/notes.txt")).verdict, Verdict::Allow);
    }

    #[test]
    fn deny_wins_and_ignores_case_and_normalisation() {
        let f = sample();
        assert_eq!(f.decide(FsOp::Read, &p("src/.env")), deny("fs.deny:**/.env"));
        assert_eq!(f.decide(FsOp::Read, &p(".env")), deny("fs.deny:**/.env"));
        assert_eq!(f.decide(FsOp::Read, &p("src/.ENV")), deny("fs.deny:**/.env"));
        assert_eq!(f.decide(FsOp::Read, &p("src/KEY.PEM")), deny("fs.deny:**/*.pem"));
        assert_eq!(f.decide(FsOp::Read, &p("src/Secret/x")), deny("fs.deny:src/secret/**"));
        // Other spellings normalise first.
        assert_eq!(f.decide(FsOp::Read, &p("src//./secret/x")), deny("fs.deny:src/secret/**"));
        // Unicode: a deny glob written composed catches the decomposed form.
        let g = policy(&["**/*.md"], &[], &[], &["caf\u{e9}/**"]);
        assert_eq!(g.decide(FsOp::Read, &p("cafe\u{301}/x.md")).verdict, Verdict::Deny);
        assert_eq!(g.decide(FsOp::Read, &p("CAF\u{c9}/x.md")).verdict, Verdict::Deny);
        let h = policy(&["**/*.md"], &[], &[], &["cafe\u{301}/**"]);
        assert_eq!(h.decide(FsOp::Read, &p("caf\u{e9}/x.md")).verdict, Verdict::Deny);
    }

    #[test]
    fn writes_ask_unless_auto_approved() {
        let f = sample();
        assert_eq!(
            f.decide(FsOp::Write, &p("src/app/x.rs")),
            Decision { verdict: Verdict::Ask, rule: "fs.write:src/app/**" }
        );
        assert_eq!(
            f.decide(FsOp::Append, &p("out/log.txt")),
            Decision { verdict: Verdict::Allow, rule: "fs.auto_approve:out/**" }
        );
        assert_eq!(f.decide(FsOp::Write, &p("src/main.rs")), deny("default"));
        // Read grants never imply write.
        assert_eq!(f.decide(FsOp::Remove, &p("Cargo.toml")), deny("default"));
        // auto_approve grants nothing by itself.
        let g = policy(&[], &[], &["out/**"], &[]);
        assert_eq!(g.decide(FsOp::Write, &p("out/x")), deny("default"));
        // write does not imply read.
        assert_eq!(f.decide(FsOp::Read, &p("out/x")), deny("default"));
    }

    #[test]
    fn protected_writes_hold_whatever_the_grants() {
        let f = policy(&[], &["**"], &["**"], &[]);
        for path in [
            ".git/config",
            ".git/hooks/pre-commit",
            "sub/.git/HEAD",
            ".GIT/config",
            ".bashrc",
            "a/.envrc",
            ".vscode/tasks.json",
            ".git",
        ] {
            let d = f.decide(FsOp::Write, &p(path));
            assert_eq!(d.verdict, Verdict::Deny, "{path}");
            assert!(d.rule.starts_with("builtin:protected:"), "{path}: {}", d.rule);
        }
        assert_eq!(f.decide(FsOp::Write, &p("src/x")).verdict, Verdict::Allow);
        let mut g = f.clone();
        g.protect_path(&p("sandbox.toml"), "manifest");
        assert_eq!(g.decide(FsOp::Write, &p("sandbox.toml")), deny("builtin:manifest"));
        assert_eq!(g.decide(FsOp::Read, &p("sandbox.toml")), deny("builtin:manifest"));
    }

    #[test]
    fn protected_families_hold_for_every_operation_and_below() {
        fn owns(base: &str, name: &str) -> Option<&'static str> {
            let rest = name.strip_prefix(base)?;
            match rest {
                "" => Some(""),
                ".staging" => Some("builtin:audit-staging"),
                r if r.starts_with('.') => Some("builtin:audit-log"),
                _ => None,
            }
        }
        let mut f = policy(&["**"], &["**"], &["**"], &[]);
        f.protect_family(&p("logs"), "audit.jsonl", owns, "audit-log");
        for path in ["logs/audit.jsonl", "logs/audit.jsonl.00000000000000000001", "logs/audit.jsonl.later"] {
            for op in FsOp::ALL {
                assert_eq!(f.decide(op, &p(path)), deny("builtin:audit-log"), "{op:?} {path}");
            }
        }
        for path in ["logs/audit.jsonl.staging", "logs/audit.jsonl.staging/0123/plan"] {
            assert_eq!(f.decide(FsOp::Read, &p(path)), deny("builtin:audit-staging"), "{path}");
        }
        for path in ["logs", "logs/other", "audit.jsonl", "logs/sub/audit.jsonl", "logs/audit.jsonx"] {
            assert_eq!(f.decide(FsOp::Write, &p(path)).verdict, Verdict::Allow, "{path}");
        }
        assert!(!f.visible(&p("logs/audit.jsonl.pruned"), false));
        let mut g = policy(&["**"], &[], &[], &[]);
        g.protect_family(&RelPath::root(), "a.log", owns, "audit-log");
        assert_eq!(g.decide(FsOp::Read, &p("a.log.pruned")).verdict, Verdict::Deny);
        assert_eq!(g.clone().decide(FsOp::Read, &p("a.log")).verdict, Verdict::Deny);
        assert_eq!(g.decide(FsOp::Read, &p("b.log")).verdict, Verdict::Allow);
    }

    #[test]
    fn directories_are_covered_by_their_globs_and_walkable() {
        let f = sample();
        assert_eq!(f.decide(FsOp::ListDir, &p("src")).verdict, Verdict::Allow);
        assert_eq!(f.decide(FsOp::Stat, &p("src")).verdict, Verdict::Allow);
        assert_eq!(f.decide(FsOp::Read, &p("src")).verdict, Verdict::Deny);
        assert_eq!(f.decide(FsOp::CreateDir, &p("out")).verdict, Verdict::Allow);
        assert_eq!(f.decide(FsOp::Remove, &p("out")).verdict, Verdict::Deny);
        // The root and `docs` lead to grants; `other` leads only to `**/*.txt`.
        assert_eq!(f.decide(FsOp::ListDir, &RelPath::root()).verdict, Verdict::Allow);
        assert_eq!(f.decide(FsOp::ListDir, &p("docs")).verdict, Verdict::Allow);
        assert_eq!(f.decide(FsOp::ListDir, &p("other/deep")).verdict, Verdict::Allow);
        let g = policy(&["src/app/*.rs"], &[], &[], &["src/app/private/**"]);
        assert_eq!(g.decide(FsOp::ListDir, &RelPath::root()).verdict, Verdict::Allow);
        assert_eq!(g.decide(FsOp::ListDir, &p("src")).verdict, Verdict::Allow);
        assert_eq!(g.decide(FsOp::ListDir, &p("src/app")).verdict, Verdict::Allow);
        assert_eq!(g.decide(FsOp::ListDir, &p("src/app/sub")).verdict, Verdict::Deny);
        assert_eq!(g.decide(FsOp::ListDir, &p("lib")).verdict, Verdict::Deny);
        assert_eq!(g.decide(FsOp::ListDir, &p("src/app/private")).verdict, Verdict::Deny);
        assert!(g.visible(&p("src"), true));
        assert!(!g.visible(&p("lib"), true));
        assert!(g.visible(&p("src/app/x.rs"), false));
        assert!(!g.visible(&p("src/app/x.txt"), false));
        let none = policy(&[], &[], &[], &[]);
        assert_eq!(none.decide(FsOp::ListDir, &RelPath::root()).verdict, Verdict::Deny);
    }

    #[test]
    fn broad_globs_are_recognised() {
        for g in ["**", "**/*", "**/**", "**/{*,.*}", "{**/*,x}"] {
            assert!(is_broad(g), "{g}");
        }
        for g in ["src/**", "**/*.rs", "*", "**/.env", "[a-z]*/**", "{**,x}"] {
            assert!(!is_broad(g), "{g}");
        }
        // Several globs may grant everything together.
        assert_eq!(broad_globs(&["src/**", "*", "*/**"]), Some(vec![1, 2]));
        assert_eq!(broad_globs(&[".*", "*", ".*/**", "*/**"]), Some(vec![1, 3]));
        assert_eq!(broad_globs(&["src/**", "*"]), None);
    }

    #[test]
    fn bad_globs_are_refused() {
        for g in ["/etc/**", "a/../b", "./a", "a//b", "out/", "", "a[", "x\ny"] {
            let v = vec![g.to_string()];
            assert!(GlobList::compile("fs.read", &v, false).is_err(), "{g:?}");
        }
    }
}
