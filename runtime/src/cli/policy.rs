//! `sandbox policy check` and `sandbox policy explain`.

use crate::exit::{Code, Failure};
use clap::Subcommand;
use sandbox_policy::fs::PROTECTED_WRITES;
use sandbox_policy::{Caller, FsOp, PathError, Policy, RelPath, Tier, Verdict};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `writeln!` into a String (cannot fail).
macro_rules! o {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a manifest and print what it grants.
    Check {
        /// The manifest.
        file: PathBuf,
    },
    /// Say which rule decides a capability on a target: exit 0 when it is
    /// allowed (perhaps with approval), 1 when it is denied.
    Explain {
        /// The manifest.
        file: PathBuf,
        /// `fs.read`, `fs.list-dir`, `fs.stat`, `fs.write`, `fs.append`,
        /// `fs.create-dir`, `fs.remove`, `fs.rename`, `http.send`,
        /// `process.run`.
        capability: String,
        /// A workspace-relative path (or URL, argv).
        target: String,
        #[command(flatten)]
        who: WhoArgs,
    },
    /// Show what a manifest change widens or narrows: exit 0 when nothing
    /// widens, 1 when something does.
    Diff {
        /// The manifest before the change.
        old: PathBuf,
        /// The manifest after the change.
        new: PathBuf,
    },
}

/// Who asks, for `policy explain`: the grants of a run for this caller.
#[derive(Debug, clap::Args)]
pub struct WhoArgs {
    /// The caller tier (interactive, subagent, background, api); default
    /// interactive.
    #[arg(long, value_name = "TIER", value_parser = Tier::parse)]
    tier: Option<Tier>,
    /// A verified claim to assume, `NAME=VALUE` (repeatable; repeat a name
    /// for an array claim). Not with --identity-token.
    #[arg(long, value_name = "NAME=VALUE", conflicts_with = "identity_token")]
    claim: Vec<String>,
    /// An identity token to verify against the manifest's `[identity]`
    /// and take the claims from; default SANDBOX_IDENTITY_TOKEN.
    #[arg(long, value_name = "JWT", env = "SANDBOX_IDENTITY_TOKEN", hide_env_values = true)]
    identity_token: Option<String>,
    /// A task manifest narrowing the manifest.
    #[arg(long, value_name = "FILE")]
    task_manifest: Option<PathBuf>,
}

impl WhoArgs {
    /// Whether any caller option was given.
    fn given(&self) -> bool {
        self.tier.is_some()
            || !self.claim.is_empty()
            || self.identity_token.as_deref().is_some_and(|t| !t.is_empty())
            || self.task_manifest.is_some()
    }

    /// The effective policy for this caller, and one line saying who that is.
    fn apply(&self, standing: &Policy) -> Result<(Policy, String), Failure> {
        let tier = self.tier.unwrap_or(Tier::Interactive);
        let mut caller = Caller::unverified(tier);
        let mut who = format!("as: tier {tier}");
        if let Some(token) = self.identity_token.as_deref().filter(|t| !t.is_empty()) {
            let settings = standing.identity.as_ref().ok_or_else(|| {
                Failure::usage(format!("`{}` has no [identity] to verify the token with", standing.source.display()))
            })?;
            let verified = crate::principal::verifier(settings)
                .map_err(Failure::usage)?
                .verify(token)
                .map_err(|e| Failure::new(Code::Refused, e.to_string()))?;
            for k in verified.claims.keys() {
                caller.claims.insert(k.clone(), verified.values(k));
            }
            who.push_str(&format!(", verified user {}", crate::approver::inert(&verified.subject, false)));
        }
        for c in &self.claim {
            let (name, value) = c
                .split_once('=')
                .filter(|(n, _)| !n.is_empty())
                .ok_or_else(|| Failure::usage(format!("--claim `{}`: expected NAME=VALUE", c.escape_debug())))?;
            caller.claims.entry(name.to_owned()).or_default().push(value.to_owned());
        }
        for (name, values) in caller.claims.iter().filter(|_| !self.claim.is_empty()) {
            who.push_str(&format!(", claim {name} = {}", crate::approver::inert(&values.join("|"), false)));
        }
        let policy = match &self.task_manifest {
            None => standing.for_caller(&caller),
            Some(path) => {
                let task = sandbox_policy::narrow::load_task(path).map_err(|e| Failure::usage(e.to_string()))?;
                who.push_str(&format!(", task manifest {}", task.hash));
                sandbox_policy::narrow::apply(standing, &task, &caller)
                    .map_err(|w| Failure::new(Code::Refused, format!("task manifest `{}`: {w}", path.display())))?
            }
        };
        Ok((policy, who))
    }
}

fn load(file: &Path) -> Result<Policy, Failure> {
    sandbox_policy::load(file).map_err(|e| Failure::usage(e.to_string()))
}

impl PolicyCommand {
    pub fn execute(self) -> Result<i32, Failure> {
        match self {
            PolicyCommand::Check { file } => {
                let p = load(&file)?;
                // The identity provider's keys must be usable now, not at the first run.
                if let Some(identity) = &p.identity {
                    crate::principal::verifier(identity).map_err(Failure::usage)?;
                }
                super::emit(&print_policy(&p));
                for warning in inside_warnings(&p, &file) {
                    eprintln!("sandbox: warning: {warning}");
                }
                Ok(0)
            }
            PolicyCommand::Diff { old, new } => {
                let (a, b) = (load(&old)?, load(&new)?);
                let changes = sandbox_policy::diff::diff(&a, &b);
                let mut out = String::new();
                if changes.is_empty() {
                    o!(out, "no difference in what the manifests allow");
                }
                for c in &changes {
                    o!(out, "{:<8} {}", c.effect.to_string(), crate::approver::inert(&c.what, false));
                }
                let widens = changes.iter().filter(|c| c.effect == sandbox_policy::diff::Effect::Widens).count();
                if widens > 0 {
                    o!(out, "{widens} change(s) widen what a tool may do");
                }
                super::emit(&out);
                Ok(if widens > 0 { Code::Negative as i32 } else { 0 })
            }
            PolicyCommand::Explain { file, capability, target, who } => {
                let given = who.given();
                let (mut p, who) = who.apply(&load(&file)?)?;
                // Decide as a run would: the manifest and the audit log are
                // untouchable when they lie inside the workspace.
                if let Ok(root) = std::fs::canonicalize(&p.workspace_root) {
                    let audit = p.audit_path.clone();
                    let _ = crate::run::protect_own_files(&mut p, &root, &file, &audit);
                }
                let code = explain(&p, &capability, &target)?;
                // For a given caller: who that is and the whole effective grant.
                if given {
                    super::emit(&format!("{who}\n{}", effective_grant(&p)));
                }
                Ok(code)
            }
        }
    }
}

/// What `policy check` warns about: the audit log (or its checkpoint file)
/// inside the workspace, where every file it owns is refused to the tool
/// but the layout invites mistakes (a command rule refuses the run; an
/// end-of-task manifest refuses it too).
fn inside_warnings(p: &Policy, manifest: &Path) -> Vec<String> {
    let Ok(root) = std::fs::canonicalize(&p.workspace_root) else { return Vec::new() };
    let mut probe = p.clone();
    let checkpoints = p.audit.checkpoints_for(&p.audit_path);
    crate::run::protect_own_files(&mut probe, &root, manifest, &p.audit_path)
        .into_iter()
        .filter(|f| *f == p.audit_path || *f == checkpoints)
        .map(|f| {
            format!(
                "`{}` lies inside the workspace `{}`: the tool is refused every file the audit log owns there (segments, prune records, checkpoints, cursors, staging journals), but keep the audit log outside the workspace",
                f.display(),
                root.display()
            )
        })
        .collect()
}

fn list(items: &[String]) -> String {
    if items.is_empty() { "(none)".into() } else { items.join("  ") }
}

fn print_policy(p: &Policy) -> String {
    let mut out = String::new();
    let l = &p.limits;
    o!(out, "ok: {} is a valid version 1 manifest", p.source.display());
    o!(out, "name        {}", p.name);
    if let Some(d) = &p.description {
        o!(out, "description {}", crate::approver::inert(d, true).replace('\n', "\n            "));
    }
    o!(out, "policy      {}", p.hash);
    o!(out, "workspace   {}", p.workspace_root.display());
    o!(out, "audit       {}", p.audit_path.display());
    let via = p.approval_via.as_ref().map_or("tty with a terminal, else deny (default)", |v| v.name());
    o!(out, "approval    via {via}; timeout {}", humantime::format_duration(p.approval_timeout));
    o!(
        out,
        "limits      memory {}  time {}  calls {}  output {}",
        bytesize(l.memory),
        humantime::format_duration(l.time),
        l.calls,
        bytesize(l.output)
    );
    if let Some(i) = &p.identity {
        let required = if i.required { "required" } else { "optional (--user is recorded unverified)" };
        o!(out, "identity    issuer {}  audience {}  {required}", i.issuer, i.audience);
        o!(out, "            algorithms {}  claims recorded: {}", i.algorithms.join(","), list(&i.claims));
    }
    for (name, source) in &p.secrets {
        let from = match source {
            sandbox_policy::secrets::SecretSource::Env(v) => format!("environment variable {v}"),
            sandbox_policy::secrets::SecretSource::File(f) => format!("file {}", f.display()),
        };
        o!(out, "secret      {name}: from {from} (injected by the host; never shown to the tool)");
    }
    for (name, globs) in p.fs.lists() {
        o!(out, "fs.{name:<13}{}", list(globs));
    }
    for (index, when, lists) in p.fs.grants() {
        let when = when.map_or("everyone".to_owned(), |w| format!("when {w}"));
        for (name, globs) in lists.into_iter().filter(|(_, g)| !g.is_empty()) {
            o!(out, "fs.grant[{index}].{name}  {}  ({when})", list(globs));
        }
    }
    if p.http.rules().is_empty() {
        o!(out, "http.allow      (none: every request is denied)");
    }
    for rule in p.http.rules() {
        let when = rule.when.as_ref().map(|w| format!("  (when {w})")).unwrap_or_default();
        o!(out, "http.allow      {}  methods {}{when}", rule.name, rule.methods().join(","));
        for (name, value) in &rule.headers {
            o!(out, "                header {name}: {value}  (set by the host)");
        }
    }
    if !p.http.allow_private().is_empty() {
        let nets: Vec<String> = p.http.allow_private().iter().map(ToString::to_string).collect();
        o!(out, "http.private    {}", nets.join("  "));
    }
    o!(out, "http.timeout    {}", humantime::format_duration(p.http.timeout));
    for ca in &p.http.ca_certs {
        o!(out, "http.ca_certs   {}", ca.display());
    }
    if p.process.rules().is_empty() {
        o!(out, "process.allow   (none: every command is denied)");
    }
    for rule in p.process.rules() {
        let approval = if rule.approval { "approval required" } else { "no approval" };
        let when = rule.when.as_ref().map(|w| format!(" (when {w})")).unwrap_or_default();
        o!(out, "process.allow   {} -> {} ({approval}){when}", rule.name, rule.path.display());
        let patterns = rule.patterns();
        o!(
            out,
            "                args: {}",
            if patterns.is_empty() { "(none)".to_owned() } else { patterns.join(" | ") }
        );
        if !rule.env.is_empty() {
            o!(out, "                env: {}", rule.env.join(" "));
        }
        for (name, value) in &rule.secret_env {
            o!(out, "                env {name}={value}  (set by the host)");
        }
        for refusal in rule.family.refusals() {
            o!(out, "                built-in: {refusal}");
        }
    }
    o!(out, "built-in    writes are always refused on: {}", PROTECTED_WRITES.join("  "));
    o!(
        out,
        "built-in    the manifest, the audit log and every file it owns are untouchable when inside the workspace;"
    );
    o!(
        out,
        "            so is every directory holding a `{}` marker (compile caches, staging journals);",
        sandbox_audit::owned::PRIVATE_MARKER
    );
    o!(out, "            paths leading outside (`..`, symlinks) and files with several hard links are refused");
    out
}

/// The grants of an effective policy, one line per list or rule.
fn effective_grant(p: &Policy) -> String {
    let mut out = String::from("effective grant:\n");
    for (name, globs) in p.fs.lists() {
        o!(out, "  fs.{name:<13}{}", list(globs));
    }
    for rule in p.http.rules() {
        o!(out, "  http.allow      {}  methods {}", rule.name, rule.methods().join(","));
    }
    for rule in p.process.rules() {
        o!(out, "  process.allow   {} -> {}  args {}", rule.name, rule.path.display(), rule.patterns().join(" | "));
    }
    let l = &p.limits;
    o!(
        out,
        "  limits          memory {}  time {}  calls {}  output {}",
        bytesize(l.memory),
        humantime::format_duration(l.time),
        l.calls,
        bytesize(l.output)
    );
    out
}

fn bytesize(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

fn explain(p: &Policy, capability: &str, raw_target: &str) -> Result<i32, Failure> {
    let target = &crate::approver::inert(raw_target, false);
    if capability == "process.run" {
        return explain_process(p, raw_target);
    }
    if capability == "http.send" {
        return explain_http(p, raw_target);
    }
    let Some(op) = FsOp::from_capability(capability) else {
        return Err(Failure::usage(format!(
            "unknown capability `{}`; one of {}, http.send, process.run",
            crate::approver::inert(capability, false),
            FsOp::ALL.map(FsOp::capability).join(", ")
        )));
    };
    let path = match RelPath::normalise(raw_target) {
        Ok(p) => p,
        Err(PathError::Invalid(m)) => {
            super::emit(&format!("invalid: `{target}`: {m}\n"));
            return Ok(Code::Negative as i32);
        }
        Err(PathError::Escapes) => {
            super::emit(&format!(
                "deny: {capability} `{target}` leads outside the workspace (rule builtin:outside-workspace)\n"
            ));
            return Ok(Code::Negative as i32);
        }
    };
    let d = p.fs.decide(op, &path);
    let (word, code) = match d.verdict {
        Verdict::Allow => ("allow", 0),
        Verdict::Ask => ("ask (allowed once a human approves)", 0),
        Verdict::Deny => ("deny", Code::Negative as i32),
    };
    let mut out = format!("{word}: {capability} `{}` (rule {})\n", path.display(), d.rule);
    if d.verdict != Verdict::Deny {
        out.push_str("note: at run time a symlink is followed and its target decided too; ");
        out.push_str("files with several hard links are refused\n");
    }
    super::emit(&out);
    Ok(code)
}

/// `http.send` targets are `METHOD URL`, or a URL (then GET).
fn explain_http(p: &Policy, raw: &str) -> Result<i32, Failure> {
    let (method, url) = raw.split_once(' ').unwrap_or(("GET", raw));
    let shown = crate::approver::inert(raw, false);
    if let Err(m) = sandbox_policy::http::check_method(method) {
        super::emit(&format!("invalid: `{shown}`: {m}\n"));
        return Ok(Code::Negative as i32);
    }
    let target = match sandbox_policy::HttpTarget::parse(url.trim()) {
        Ok(t) => t,
        Err(m) => {
            super::emit(&format!("invalid: `{shown}`: {m}\n"));
            return Ok(Code::Negative as i32);
        }
    };
    let line = format!("{method} {}", target.recorded());
    match p.http.decide(method, &target) {
        Ok((verdict, rule)) => {
            let word = if verdict == Verdict::Ask { "ask (allowed once a human approves)" } else { "allow" };
            let mut out = format!("{word}: http.send `{line}` (rule {})\n", rule.name);
            if let sandbox_policy::http::HostName::Ip(ip) = target.host
                && let Err(why) = p.http.check_address(ip)
            {
                out = format!("deny: http.send `{line}`: {ip} is {why} (rule builtin:special-address)\n");
                super::emit(&out);
                return Ok(Code::Negative as i32);
            }
            out.push_str(
                "note: at run time the name is resolved and every address checked against http.allow_private\n",
            );
            super::emit(&out);
            Ok(0)
        }
        Err(denial) => {
            super::emit(&format!("deny: http.send `{line}`: {} (rule {})\n", denial.reason, denial.rule));
            Ok(Code::Negative as i32)
        }
    }
}

/// `process.run` targets are an argv: `PROGRAM ARGS...`, split on spaces.
fn explain_process(p: &Policy, raw: &str) -> Result<i32, Failure> {
    let words: Vec<String> = raw.split_whitespace().map(str::to_owned).collect();
    let shown = crate::approver::inert(raw, false);
    let Some((program, args)) = words.split_first() else {
        super::emit("invalid: empty command\n");
        return Ok(Code::Negative as i32);
    };
    let Some(rule) = p.process.rule(program) else {
        super::emit(&format!("deny: process.run `{shown}`: no rule allows the program `{program}` (rule default)\n"));
        return Ok(Code::Negative as i32);
    };
    match rule.check_args(args) {
        Err((r, why)) => {
            super::emit(&format!("deny: process.run `{shown}`: {why} (rule {r})\n"));
            Ok(Code::Negative as i32)
        }
        Ok(()) => {
            let word = if rule.approval { "ask (allowed once a human approves)" } else { "allow" };
            let mut out = format!("{word}: process.run `{shown}` runs {} (rule {})\n", rule.path.display(), rule.name);
            out.push_str("note: at run time the environment names and the working directory are checked too\n");
            super::emit(&out);
            Ok(0)
        }
    }
}
