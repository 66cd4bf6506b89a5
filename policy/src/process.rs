//! Host programs a tool may run: `[[process.allow]]` rules, the argv
//! pattern language, and the built-in refusals that hold whatever a rule
//! says.
//!
//! # Patterns
//!
//! A pattern is words separated by spaces, matched against the arguments
//! after the program, one word per argument:
//! - a literal word, or a glob within one argument (`--format=*`, `-n`);
//! - `<arg>`: exactly one argument that does not start with `-`;
//! - `<path>`: exactly one argument that is a workspace-relative path in
//!   normal form (not absolute, not leaving the workspace, not starting
//!   with `-`);
//! - `*`, only as the last word: any remaining arguments, none included.
//!
//! A rule without `args` allows no arguments. An argv must match one of the
//! rule's patterns, and no argument may match the rule's `deny_args` or a
//! built-in refusal ([`builtin_refusal`]). `match` and `not_match` examples
//! are checked when the manifest is compiled.

use crate::path::RelPath;
use globset::{GlobBuilder, GlobMatcher};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `PATH` every program runs with.
pub const SAFE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Programs that run other programs or shell code: never allowed as a
/// rule's `path`, since sandbox never runs a shell.
pub const LAUNCHERS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "pdksh", "yash", "fish", "csh", "tcsh", "rc", "busybox", "toybox",
    "env", "xargs", "nohup", "setsid", "timeout", "nice", "ionice", "chroot", "unshare", "nsenter", "sudo", "su",
    "doas", "runuser", "pkexec", "strace", "ltrace", "gdb", "script", "watch", "flock", "parallel", "ssh",
];

/// Environment variables a rule can never let a tool set: they load code,
/// redirect programs or change how commands are parsed.
pub const FORBIDDEN_ENV: &[&str] = &[
    "PATH",
    "BASH_ENV",
    "ENV",
    "NODE_OPTIONS",
    "NODE_PATH",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "IFS",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "LESSOPEN",
    "LESSCLOSE",
    "GCONV_PATH",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "RES_OPTIONS",
    "SHELL",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "MANPAGER",
    "HOME",
];

/// Prefixes of environment variables a rule can never let a tool set.
pub const FORBIDDEN_ENV_PREFIXES: &[&str] =
    &["LD_", "DYLD_", "GIT_", "PYTHON", "PERL5", "PERLLIB", "SSH_", "BASH_FUNC_"];

/// Which built-in refusals apply to a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// git
    Git,
    /// find
    Find,
    /// GNU or BSD tar
    Tar,
    /// ripgrep
    Rg,
    /// sed
    Sed,
    /// anything else: only the rule's own patterns and `deny_args`
    Other,
}

impl Family {
    fn of(name: &str) -> Family {
        match name {
            "git" => Family::Git,
            "find" | "gfind" => Family::Find,
            "tar" | "gtar" | "bsdtar" => Family::Tar,
            "rg" | "ripgrep" => Family::Rg,
            "sed" | "gsed" => Family::Sed,
            _ => Family::Other,
        }
    }

    /// The family of a rule: from its program name, its path's file name,
    /// or the file name of what the path really is (a symlink).
    pub fn for_program(program: &str, path: &Path) -> Family {
        let mut names = vec![program.to_owned()];
        names.extend(path.file_name().map(|n| n.to_string_lossy().into_owned()));
        if let Ok(real) = std::fs::canonicalize(path) {
            names.extend(real.file_name().map(|n| n.to_string_lossy().into_owned()));
        }
        names.iter().map(|n| Family::of(n)).find(|f| *f != Family::Other).unwrap_or(Family::Other)
    }

    /// Arguments always placed first (sed runs with `--sandbox`, so its
    /// `e`, `w` and `r` commands fail).
    pub fn forced_args(self) -> &'static [&'static str] {
        match self {
            Family::Sed => &["--sandbox"],
            _ => &[],
        }
    }

    /// Environment always set. git: no system or global config, and the
    /// settings that would run commands forced off, so a repository's own
    /// config cannot run code through them.
    pub fn forced_env(self) -> Vec<(String, String)> {
        if self != Family::Git {
            return Vec::new();
        }
        let config = [
            ("core.fsmonitor", "false"),
            ("core.hooksPath", "/dev/null"),
            ("core.pager", "cat"),
            ("core.sshCommand", "false"),
            ("core.askPass", ""),
            ("core.editor", "false"),
            ("sequence.editor", "false"),
            ("credential.helper", ""),
            ("diff.external", ""),
            ("core.alternateRefsCommand", ""),
            ("log.showSignature", "false"),
            ("gpg.program", "false"),
            ("gpg.ssh.program", "false"),
            ("gpg.x509.program", "false"),
            ("protocol.ext.allow", "never"),
            ("protocol.fd.allow", "never"),
            ("protocol.allow", "user"),
        ];
        let mut env = vec![
            ("GIT_CONFIG_NOSYSTEM".to_owned(), "1".to_owned()),
            ("GIT_CONFIG_GLOBAL".to_owned(), "/dev/null".to_owned()),
            ("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned()),
            ("GIT_ASKPASS".to_owned(), "false".to_owned()),
            ("GIT_PAGER".to_owned(), "cat".to_owned()),
            ("GIT_CONFIG_COUNT".to_owned(), config.len().to_string()),
        ];
        for (i, (k, v)) in config.iter().enumerate() {
            env.push((format!("GIT_CONFIG_KEY_{i}"), (*k).to_owned()));
            env.push((format!("GIT_CONFIG_VALUE_{i}"), (*v).to_owned()));
        }
        env
    }

    /// The refusals of this family, for `policy explain`.
    pub fn refusals(self) -> &'static [&'static str] {
        match self {
            Family::Git => &[
                "before the subcommand: -c, -c<x>, --config-env, --exec-path, -C, --git-dir, --work-tree, --namespace",
                "anywhere: --upload-pack, --receive-pack, --exec, --template, --config (and abbreviations), ext:: and fd:: in any argument",
                "-u and -u<x> after clone, fetch, pull, ls-remote; -c after clone; -x after rebase",
                "a repository whose own config sets command-running drivers or aliases (filter.*.clean, diff.*.textconv, alias.x = !..., include, ...)",
                "subcommands config, difftool, mergetool, filter-branch, credential*, daemon, instaweb, shell, upload-pack, receive-pack; submodule foreach; bisect run",
                "runs with GIT_CONFIG_NOSYSTEM=1, GIT_CONFIG_GLOBAL=/dev/null and core.fsmonitor, core.hooksPath, core.pager, core.sshCommand, core.editor, credential.helper, diff.external, log.showSignature, gpg.program, protocol.ext.allow, protocol.fd.allow forced safe",
            ],
            Family::Find => &["-exec, -execdir, -ok, -okdir, -delete, -fprint, -fprint0, -fprintf, -fls"],
            Family::Tar => &[
                "--checkpoint-action, --to-command, --use-compress-program, -I, --info-script, -F, --new-volume-script, --rsh-command, --rmt-command (and abbreviations)",
                "short-option bundles (-xIf, or old-style xIf as the first argument) holding I or F",
            ],
            Family::Rg => &["--pre, --hostname-bin"],
            Family::Sed => &[
                "-i, --in-place, and bundles holding i (-ni)",
                "always runs with --sandbox (e, w and r commands fail)",
            ],
            Family::Other => &[],
        }
    }
}

/// True when `arg` is a long option that names one of `refused`, in full
/// or abbreviated (git and GNU getopt accept any unambiguous prefix), with
/// or without `=value`; `exact` are real options that merely look like
/// prefixes and are fine.
fn long_option_in(arg: &str, refused: &[&str], exact: &[&str]) -> bool {
    let name = arg.split('=').next().unwrap_or(arg);
    if !name.starts_with("--") || name.len() < 3 || exact.contains(&name) {
        return false;
    }
    refused.iter().any(|r| r.starts_with(name))
}

/// Why a built-in refusal applies, if one does: (rule, reason).
pub fn builtin_refusal(family: Family, args: &[String]) -> Option<(&'static str, String)> {
    let hit = |arg: &str, why: &str| Some((rule_of(family), format!("`{arg}` {why}")));
    match family {
        Family::Git => git_refusal(args).and_then(|(arg, why)| hit(&arg, why)),
        Family::Find => args
            .iter()
            .find(|a| {
                matches!(
                    a.as_str(),
                    "-exec" | "-execdir" | "-ok" | "-okdir" | "-delete" | "-fprint" | "-fprint0" | "-fprintf" | "-fls"
                )
            })
            .and_then(|a| hit(a, "runs commands, deletes or writes files")),
        Family::Tar => {
            const LONG: &[&str] = &[
                "--checkpoint-action",
                "--to-command",
                "--use-compress-program",
                "--info-script",
                "--new-volume-script",
                "--rsh-command",
                "--rmt-command",
            ];
            for (i, a) in args.iter().enumerate() {
                // `--checkpoint` itself (progress) is a real option, not an
                // abbreviation of `--checkpoint-action`.
                if long_option_in(a, LONG, &["--checkpoint"]) {
                    return hit(a, "makes tar run a command");
                }
                let bundle = if let Some(short) = a.strip_prefix('-').filter(|s| !s.starts_with('-')) {
                    Some(short)
                } else if i == 0 && !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphabetic()) {
                    Some(a.as_str())
                } else {
                    None
                };
                if bundle.is_some_and(|b| b.contains(['I', 'F'])) {
                    return hit(a, "holds -I or -F, which make tar run a command");
                }
            }
            None
        }
        Family::Rg => args
            .iter()
            .find(|a| long_option_in(a, &["--pre", "--hostname-bin"], &[]))
            .and_then(|a| hit(a, "makes rg run a command")),
        Family::Sed => args
            .iter()
            .find(|a| {
                long_option_in(a, &["--in-place"], &[])
                    || a.strip_prefix('-').is_some_and(|s| !s.starts_with('-') && !s.is_empty() && s.contains('i'))
            })
            .and_then(|a| hit(a, "edits files in place")),
        Family::Other => None,
    }
}

/// git's refusals: the argument and why.
fn git_refusal(args: &[String]) -> Option<(String, &'static str)> {
    const GLOBAL: &[&str] = &["--config-env", "--exec-path", "--git-dir", "--work-tree", "--namespace"];
    const ANYWHERE: &[&str] = &["--upload-pack", "--receive-pack", "--exec", "--template", "--config"];
    let sub_at = args.iter().position(|a| !a.starts_with('-'));
    for (i, arg) in args.iter().enumerate() {
        let a = arg.as_str();
        if a.contains("ext::") || a.contains("fd::") {
            return Some((arg.clone(), "names a transport that runs commands (ext:: or fd::)"));
        }
        let global = sub_at.is_none_or(|s| i < s);
        if global && ((a.starts_with("-c") && !a.starts_with("--")) || a == "-C" || long_option_in(a, GLOBAL, &[])) {
            return Some((arg.clone(), "changes git's configuration or repository before the subcommand"));
        }
        if long_option_in(a, ANYWHERE, &[]) {
            return Some((arg.clone(), "can make git run a command or load configuration"));
        }
    }
    let s = sub_at?;
    let sub = args[s].as_str();
    let rest = &args[s + 1..];
    const REFUSED: &[&str] = &[
        "config",
        "difftool",
        "mergetool",
        "filter-branch",
        "daemon",
        "instaweb",
        "shell",
        "upload-pack",
        "receive-pack",
        "upload-archive",
        "web--browse",
        "remote-ext",
        "remote-fd",
    ];
    if REFUSED.contains(&sub) || sub.starts_with("credential") {
        return Some((sub.to_owned(), "is a git subcommand that can change configuration or run commands"));
    }
    let short = |a: &String, opt: &str| a.starts_with(opt) && !a.starts_with("--");
    if matches!(sub, "clone" | "fetch" | "pull" | "ls-remote")
        && let Some(a) = rest.iter().find(|a| short(a, "-u"))
    {
        return Some((a.clone(), "sets the upload-pack command"));
    }
    if sub == "clone"
        && let Some(a) = rest.iter().find(|a| short(a, "-c"))
    {
        return Some((a.clone(), "sets configuration in the new repository"));
    }
    if sub == "rebase"
        && let Some(a) = rest.iter().find(|a| short(a, "-x"))
    {
        return Some((a.clone(), "runs a command after each commit"));
    }
    if (sub == "submodule" && rest.iter().any(|a| a == "foreach"))
        || (sub == "bisect" && rest.first().is_some_and(|a| a == "run"))
    {
        return Some((sub.to_owned(), "runs a command"));
    }
    None
}

/// Settings in a repository's own git config that make git run a command
/// and that the forced environment cannot switch off: the first one found,
/// as `section.key`. `text` is one config file.
pub fn git_config_hazard(text: &str) -> Option<String> {
    let mut section = String::new();
    let mut sub = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let head = rest.split(']').next().unwrap_or("").trim();
            let (name, subsection) = match head.split_once(char::is_whitespace) {
                Some((n, s)) => (n, s.trim().trim_matches('"')),
                None => head.split_once('.').unwrap_or((head, "")),
            };
            section = name.to_ascii_lowercase();
            sub = subsection.to_owned();
            if section == "include" || section == "includeif" {
                return Some(format!("{section} (it loads other configuration)"));
            }
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"')),
            None => (line.to_ascii_lowercase(), "true"),
        };
        let hazard = match section.as_str() {
            "filter" => matches!(key.as_str(), "clean" | "smudge" | "process"),
            "diff" => matches!(key.as_str(), "command" | "textconv" | "external"),
            "merge" => key == "driver",
            "alias" => value.starts_with('!'),
            "remote" => matches!(key.as_str(), "uploadpack" | "receivepack" | "vcs"),
            "submodule" => key == "update" && value.starts_with('!'),
            "core" => matches!(key.as_str(), "gitproxy" | "alternaterefscommand"),
            "uploadpack" => key == "packobjectshook",
            _ => false,
        };
        if hazard {
            return Some(if sub.is_empty() { format!("{section}.{key}") } else { format!("{section}.{sub}.{key}") });
        }
    }
    None
}

fn rule_of(family: Family) -> &'static str {
    match family {
        Family::Git => "builtin:process:git",
        Family::Find => "builtin:process:find",
        Family::Tar => "builtin:process:tar",
        Family::Rg => "builtin:process:rg",
        Family::Sed => "builtin:process:sed",
        Family::Other => "builtin:process",
    }
}

/// True when a tool may never set this variable, whatever a rule says.
pub fn env_forbidden(name: &str) -> bool {
    FORBIDDEN_ENV.contains(&name) || FORBIDDEN_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
}

#[derive(Debug, Clone)]
enum Word {
    Glob(GlobMatcher),
    Arg,
    Path,
    Rest,
}

/// One compiled argv pattern.
#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    words: Vec<Word>,
}

impl Pattern {
    fn compile(text: &str) -> Result<Pattern, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let mut words = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let word = match *part {
                "*" if i + 1 == parts.len() => Word::Rest,
                "*" => return Err(format!("in `{text}`, `*` may only be the last word")),
                "<arg>" => Word::Arg,
                "<path>" => Word::Path,
                p if p.starts_with('<') && p.ends_with('>') => {
                    return Err(format!("in `{text}`, `{p}` is not a placeholder (use <arg> or <path>)"));
                }
                p => Word::Glob(
                    GlobBuilder::new(p)
                        .literal_separator(false)
                        .backslash_escape(true)
                        .build()
                        .map_err(|e| format!("in `{text}`, `{p}` is not a valid word: {}", e.kind()))?
                        .compile_matcher(),
                ),
            };
            words.push(word);
        }
        Ok(Pattern { text: text.trim().to_owned(), words })
    }

    fn matches(&self, args: &[String]) -> bool {
        let mut i = 0;
        for word in &self.words {
            match word {
                Word::Rest => return true,
                _ if i >= args.len() => return false,
                Word::Glob(m) if !m.is_match(&args[i]) => return false,
                Word::Arg if args[i].is_empty() || args[i].starts_with('-') => return false,
                Word::Path if args[i].starts_with('-') || RelPath::normalise(&args[i]).is_err() => return false,
                _ => i += 1,
            }
        }
        i == args.len()
    }
}

/// One compiled `[[process.allow]]` rule.
#[derive(Debug, Clone)]
pub struct ProcessRule {
    /// `process.allow[0]:git`
    pub name: String,
    /// The name tools use.
    pub program: String,
    /// The absolute path the host runs.
    pub path: PathBuf,
    /// Which built-in refusals apply.
    pub family: Family,
    patterns: Vec<Pattern>,
    deny_args: Vec<(String, GlobMatcher)>,
    /// Variables the tool may set.
    pub env: Vec<String>,
    /// True: every run asks a human (the default).
    pub approval: bool,
    cwd: Option<(String, GlobMatcher)>,
    /// The rule's own timeout, if any.
    pub timeout: Option<Duration>,
    /// Who the rule is for; `None`: everyone.
    pub when: Option<crate::caller::When>,
    /// `secret_env`: variables the host sets for this program from
    /// secrets (the tool never sees them).
    pub secret_env: Vec<(String, crate::secrets::Template)>,
}

/// A rule as written, before compiling.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleSpec {
    pub program: String,
    pub path: String,
    pub args: Vec<String>,
    pub deny_args: Vec<String>,
    pub env: Vec<String>,
    pub approval: bool,
    pub cwd: Option<String>,
    pub timeout: Option<Duration>,
}

/// Why a rule cannot be compiled: the key and the message.
pub(crate) type RuleError = (&'static str, String);

impl ProcessRule {
    /// The same rule under another name (a task manifest's rules are
    /// recorded as `task.…`).
    pub(crate) fn renamed(&self, name: String) -> ProcessRule {
        ProcessRule { name, ..self.clone() }
    }

    pub(crate) fn compile(index: usize, spec: RuleSpec) -> Result<ProcessRule, RuleError> {
        if spec.program.is_empty() || !spec.program.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b)) {
            return Err((
                "program",
                format!("`{}` is not a program name (letters, digits, - _ . +)", spec.program.escape_debug()),
            ));
        }
        let path = PathBuf::from(&spec.path);
        if !path.is_absolute() {
            return Err((
                "path",
                format!("`{}` is not an absolute path; the host never looks programs up in PATH", spec.path),
            ));
        }
        check_executable(&path).map_err(|m| ("path", m))?;
        let launcher = |p: &Path| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| LAUNCHERS.contains(&n));
        if launcher(&path) || std::fs::canonicalize(&path).is_ok_and(|real| launcher(&real)) {
            return Err((
                "path",
                format!(
                    "`{}` is a shell or runs other programs; sandbox never runs a shell (name the program itself)",
                    spec.path
                ),
            ));
        }
        let patterns =
            spec.args.iter().map(|a| Pattern::compile(a)).collect::<Result<Vec<_>, _>>().map_err(|m| ("args", m))?;
        let mut deny_args = Vec::new();
        for d in &spec.deny_args {
            let m = GlobBuilder::new(d)
                .literal_separator(false)
                .build()
                .map_err(|e| ("deny_args", format!("`{d}` is not a valid glob: {}", e.kind())))?;
            deny_args.push((d.clone(), m.compile_matcher()));
        }
        for name in &spec.env {
            let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(("env", format!("`{}` is not a variable name", name.escape_debug())));
            }
            if env_forbidden(name) {
                return Err((
                    "env",
                    format!("`{name}` can never be set by a tool (it loads code or redirects programs)"),
                ));
            }
        }
        let cwd = match spec.cwd {
            None => None,
            Some(c) => {
                let m = GlobBuilder::new(&c)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| ("cwd", format!("`{c}` is not a valid glob: {}", e.kind())))?;
                if c.starts_with('/') || c.split('/').any(|p| p == "..") {
                    return Err(("cwd", format!("`{c}` must be relative to the workspace")));
                }
                Some((c, m.compile_matcher()))
            }
        };
        let family = Family::for_program(&spec.program, &path);
        Ok(ProcessRule {
            name: format!("process.allow[{index}]:{}", spec.program),
            program: spec.program,
            path,
            family,
            patterns,
            deny_args,
            env: spec.env,
            approval: spec.approval,
            cwd,
            timeout: spec.timeout,
            when: None,
            secret_env: Vec::new(),
        })
    }

    /// The `deny_args` globs as written.
    pub fn deny_args(&self) -> Vec<&str> {
        self.deny_args.iter().map(|(g, _)| g.as_str()).collect()
    }

    /// The `cwd` glob as written; `None`: the workspace root only.
    pub fn cwd(&self) -> Option<&str> {
        self.cwd.as_ref().map(|(g, _)| g.as_str())
    }

    /// The patterns as written.
    pub fn patterns(&self) -> Vec<&str> {
        self.patterns.iter().map(|p| p.text.as_str()).collect()
    }

    /// Decides an argv: `Ok` when allowed, else the deciding rule and why.
    pub fn check_args(&self, args: &[String]) -> Result<(), (&str, String)> {
        if let Some((rule, why)) = builtin_refusal(self.family, args) {
            return Err((rule, why));
        }
        for arg in args {
            if let Some((glob, _)) = self.deny_args.iter().find(|(_, m)| m.is_match(arg)) {
                return Err((&self.name, format!("`{arg}` is refused by deny_args `{glob}` of {}", self.name)));
            }
        }
        let allowed =
            if self.patterns.is_empty() { args.is_empty() } else { self.patterns.iter().any(|p| p.matches(args)) };
        if allowed {
            return Ok(());
        }
        let allowed = if self.patterns.is_empty() { "no arguments".to_owned() } else { self.patterns().join(" | ") };
        Err((&self.name, format!("the arguments match no pattern of {} (it allows: {allowed})", self.name)))
    }

    /// Decides a working directory (already in normal form).
    pub fn check_cwd(&self, cwd: &RelPath) -> Result<(), String> {
        match &self.cwd {
            None if cwd.is_root() => Ok(()),
            None => Err(format!("{} runs only in the workspace root", self.name)),
            Some((_, m)) if m.is_match(cwd.as_str()) => Ok(()),
            Some((glob, _)) => Err(format!("`{}` is not covered by the cwd `{glob}` of {}", cwd.display(), self.name)),
        }
    }

    /// Decides the variables a tool sets.
    pub fn check_env(&self, names: &[&str]) -> Result<(), String> {
        for n in names {
            if env_forbidden(n) {
                return Err(format!("`{n}` can never be set by a tool"));
            }
            if !self.env.iter().any(|e| e == n) {
                return Err(format!("variable `{n}` is not allowed by {}", self.name));
            }
        }
        Ok(())
    }
}

fn check_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("`{}`: {}", path.display(), crate::io_reason(&e)))?;
    if !meta.is_file() {
        return Err(format!("`{}` is not a regular file", path.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("`{}` is not executable", path.display()));
    }
    Ok(())
}

/// The address space a program may use unless `[process] memory` says
/// otherwise (RLIMIT_AS, per process): 4 GiB.
pub const DEFAULT_PROGRAM_MEMORY: u64 = 4 << 30;

/// The compiled `[process]` table: the `[[process.allow]]` rules and the
/// settings for every program.
#[derive(Debug, Clone)]
pub struct ProcessPolicy {
    rules: Vec<ProcessRule>,
    /// `[process] memory`: each program's address-space limit in bytes.
    pub memory: u64,
    /// `[process] allow_unstaged_writes`: where this machine cannot give a
    /// program a private mount namespace (so its writes cannot be staged
    /// and checked), let it write the workspace directly instead of
    /// refusing to run it. Default false.
    pub allow_unstaged_writes: bool,
}

impl Default for ProcessPolicy {
    fn default() -> ProcessPolicy {
        ProcessPolicy::new(Vec::new())
    }
}

impl ProcessPolicy {
    pub(crate) fn new(rules: Vec<ProcessRule>) -> ProcessPolicy {
        ProcessPolicy { rules, memory: DEFAULT_PROGRAM_MEMORY, allow_unstaged_writes: false }
    }

    /// The same settings with other rules.
    pub(crate) fn with_rules(&self, rules: Vec<ProcessRule>) -> ProcessPolicy {
        ProcessPolicy { rules, ..self.clone() }
    }

    /// The policy for one caller: the rules whose `when` holds.
    pub fn for_caller(&self, caller: &crate::caller::Caller) -> ProcessPolicy {
        let rules = self.rules.iter().filter(|r| r.when.as_ref().is_none_or(|w| w.holds(caller))).cloned().collect();
        self.with_rules(rules)
    }

    /// The rules.
    pub fn rules(&self) -> &[ProcessRule] {
        &self.rules
    }

    /// The rule for a program name the tool passed.
    pub fn rule(&self, program: &str) -> Option<&ProcessRule> {
        self.rules.iter().find(|r| r.program == program)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn rule(args: &[&str]) -> ProcessRule {
        ProcessRule::compile(
            0,
            RuleSpec {
                program: "git".into(),
                path: "/bin/ls".into(),
                args: args.iter().map(|s| s.to_string()).collect(),
                ..RuleSpec::default()
            },
        )
        .map(|mut r| {
            r.family = Family::Git;
            r
        })
        .unwrap()
    }

    #[test]
    fn patterns_match_word_by_word() {
        let r = rule(&["status *", "log --oneline -n <arg>", "diff --stat=* <path>", "show"]);
        assert!(r.check_args(&v("status")).is_ok());
        assert!(r.check_args(&v("status --short -b")).is_ok());
        assert!(r.check_args(&v("log --oneline -n 5")).is_ok());
        assert!(r.check_args(&v("log --oneline -n -5")).is_err());
        assert!(r.check_args(&v("log --oneline -n 5 extra")).is_err());
        assert!(r.check_args(&v("diff --stat=80 src/main.rs")).is_ok());
        assert!(r.check_args(&v("diff --stat=80 ../etc/passwd")).is_err());
        assert!(r.check_args(&v("diff --stat=80 /etc/passwd")).is_err());
        assert!(r.check_args(&v("diff --stat=80 --output=x")).is_err());
        assert!(r.check_args(&v("show")).is_ok());
        assert!(r.check_args(&v("show HEAD")).is_err());
        assert!(r.check_args(&v("push")).is_err());
        assert!(r.check_args(&[]).is_err());
        let none = rule(&[]);
        assert!(none.check_args(&[]).is_ok());
        assert!(none.check_args(&v("x")).is_err());
    }

    #[test]
    fn star_is_only_last() {
        assert!(Pattern::compile("* status").is_err());
        assert!(Pattern::compile("status <file>").is_err());
        assert!(Pattern::compile("status *").is_ok());
    }

    #[test]
    fn git_refusals_hold_whatever_the_pattern() {
        let r = rule(&["*"]);
        for bad in [
            "-c core.pager=evil status",
            "-ccore.pager=evil status",
            "--config-env=core.pager=X status",
            "-C /etc status",
            "--git-dir=/x status",
            "--work-tree=/ status",
            "--exec-path=/tmp status",
            "fetch --upload-pack=evil origin",
            "push --receive-pack=evil origin",
            "clone -u evil x",
            "clone -c core.hooksPath=x x",
            "clone ext::sh -c x",
            "fetch fd::3",
            "archive --exec=evil --remote=x",
            "rebase -x evil",
            "config core.pager evil",
            "difftool",
            "credential-store get",
            "submodule foreach evil",
            "bisect run evil",
            "clone --template=/x src dst",
            "clone --config core.fsmonitor=x src dst",
            "ls-remote --upload=evil .",
            "fetch --upl=evil origin",
            "clone -uevil x",
            "push --receive-p=evil origin",
            "clone --templ=/x src dst",
            "--git-d=/x status",
        ] {
            let e = r.check_args(&v(bad));
            assert!(e.as_ref().is_err_and(|(rule, _)| *rule == "builtin:process:git"), "{bad}: {e:?}");
        }
        for ok in ["status --short", "log -c", "diff --cached", "add -u", "status -uno", "log --color=never"] {
            assert!(r.check_args(&v(ok)).is_ok(), "{ok}");
        }
    }

    #[test]
    fn find_tar_rg_sed_refusals() {
        let find = |a: &str| builtin_refusal(Family::Find, &v(a));
        assert!(find(". -name x -exec rm {} ;").is_some());
        assert!(find(". -delete").is_some());
        assert!(find(". -fprintf out %p").is_some());
        assert!(find(". -name *.rs -print").is_none());
        let tar = |a: &str| builtin_refusal(Family::Tar, &v(a));
        for bad in [
            "--checkpoint-action=exec=evil -cf x",
            "-xIevil -f x",
            "xIf evil x",
            "-cf x --to-command=evil",
            "-F evil -cf x",
            "--use-compress-program=evil -cf x",
        ] {
            assert!(tar(bad).is_some(), "{bad}");
        }
        assert!(tar("--checkpoint-act=exec=evil -cf x").is_some());
        assert!(tar("--to-com=evil -xf x").is_some());
        assert!(tar("--use-compress-prog=evil -cf x").is_some());
        assert!(tar("--checkpoint=100 -cf x .").is_none());
        assert!(tar("-tvf archive.tar").is_none());
        assert!(tar("tvf archive.tar").is_none());
        let rg = |a: &str| builtin_refusal(Family::Rg, &v(a));
        assert!(rg("--pre=evil x").is_some());
        assert!(rg("--pre evil x").is_some());
        assert!(rg("--hostname-bin=evil x").is_some());
        assert!(rg("--pre-glob=*.gz x").is_none());
        let sed = |a: &str| builtin_refusal(Family::Sed, &v(a));
        assert!(sed("-i s/a/b/ f").is_some());
        assert!(sed("-ni s/a/b/ f").is_some());
        assert!(sed("--in-place=.bak s/a/b/ f").is_some());
        assert!(sed("--in-pl s/a/b/ f").is_some());
        assert!(sed("-n s/a/b/p f").is_none());
        assert_eq!(Family::Sed.forced_args(), ["--sandbox"]);
    }

    #[test]
    fn repository_config_hazards_are_found() {
        for bad in [
            "[filter \"lfs\"]\n\tclean = evil %f\n",
            "[diff \"x\"]\ntextconv = evil\n",
            "[alias]\n  st = !rm -rf /\n",
            "[remote \"origin\"]\n\turl = x\n\tuploadpack = evil\n",
            "[include]\n\tpath = ../other\n",
            "[includeIf \"gitdir:/x\"]\n\tpath = y\n",
            "[merge \"m\"]\ndriver = evil\n",
            "[core]\n\tgitProxy = evil\n",
        ] {
            assert!(git_config_hazard(bad).is_some(), "{bad}");
        }
        let fine = "[core]\n\trepositoryformatversion = 0\n\tbare = false\n[remote \"origin\"]\n\turl = https://x/y.git\n[alias]\n\tst = status\n[branch \"main\"]\n\tremote = origin\n";
        assert_eq!(git_config_hazard(fine), None);
        assert_eq!(git_config_hazard("[filter \"lfs\"]\nclean = x\n").as_deref(), Some("filter.lfs.clean"));
    }

    #[test]
    fn env_names_are_screened() {
        for bad in [
            "PATH",
            "LD_PRELOAD",
            "DYLD_INSERT_LIBRARIES",
            "GIT_SSH_COMMAND",
            "NODE_OPTIONS",
            "BASH_ENV",
            "PYTHONSTARTUP",
            "HOME",
        ] {
            assert!(env_forbidden(bad), "{bad}");
        }
        assert!(!env_forbidden("LANG"));
        let mut r = rule(&[]);
        r.env = vec!["LANG".into()];
        assert!(r.check_env(&["LANG"]).is_ok());
        assert!(r.check_env(&["LC_ALL"]).is_err());
        assert!(r.check_env(&["LD_PRELOAD"]).is_err());
        let forced = Family::Git.forced_env();
        assert!(forced.contains(&("GIT_CONFIG_NOSYSTEM".into(), "1".into())));
        assert!(forced.iter().any(|(k, v)| k.starts_with("GIT_CONFIG_KEY_") && v == "core.fsmonitor"));
    }

    #[test]
    fn cwd_is_the_root_unless_a_glob_says_otherwise() {
        let r = rule(&[]);
        assert!(r.check_cwd(&RelPath::root()).is_ok());
        assert!(r.check_cwd(&RelPath::normalise("sub").unwrap()).is_err());
        let with = ProcessRule::compile(
            0,
            RuleSpec {
                program: "ls".into(),
                path: "/bin/ls".into(),
                cwd: Some("repos/**".into()),
                ..RuleSpec::default()
            },
        )
        .unwrap();
        assert!(with.check_cwd(&RelPath::normalise("repos/a").unwrap()).is_ok());
        assert!(with.check_cwd(&RelPath::normalise("other").unwrap()).is_err());
    }

    #[test]
    fn bad_rules_are_refused() {
        let spec = |path: &str| RuleSpec { program: "x".into(), path: path.into(), ..RuleSpec::default() };
        assert_eq!(ProcessRule::compile(0, spec("ls")).unwrap_err().0, "path");
        assert_eq!(ProcessRule::compile(0, spec("/nonexistent/prog")).unwrap_err().0, "path");
        let dir = std::env::temp_dir().join(format!("sandbox-policy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("plain");
        std::fs::write(&plain, "x").unwrap();
        assert!(ProcessRule::compile(0, spec(plain.to_str().unwrap())).unwrap_err().1.contains("not executable"));
        assert!(ProcessRule::compile(0, spec(dir.to_str().unwrap())).unwrap_err().1.contains("not a regular file"));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(ProcessRule::compile(0, spec("/bin/sh")).unwrap_err().1.contains("shell"));
        assert!(ProcessRule::compile(0, spec("/usr/bin/env")).is_err());
        let env = RuleSpec { env: vec!["LD_PRELOAD".into()], ..spec("/bin/ls") };
        assert_eq!(ProcessRule::compile(0, env).unwrap_err().0, "env");
    }
}
