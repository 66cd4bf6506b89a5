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

/// Variables always set for git (see [`Family::forced_env`]).
pub const GIT_FORCED_ENV: &[(&str, &str)] = &[
    // No system config, and a global config that is empty.
    ("GIT_CONFIG_NOSYSTEM", "1"),
    ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ("GIT_ATTR_NOSYSTEM", "1"),
    // Prompts, pagers, editors and ssh: never a program of the
    // repository's choosing (these outrank every config file).
    ("GIT_TERMINAL_PROMPT", "0"),
    ("GIT_ASKPASS", "false"),
    ("GIT_PAGER", "cat"),
    ("GIT_EDITOR", "false"),
    ("GIT_SEQUENCE_EDITOR", "false"),
    ("GIT_SSH_COMMAND", "false"),
    ("GIT_PROXY_COMMAND", ""),
    ("GIT_PROTOCOL_FROM_USER", "0"),
    ("GIT_NO_LAZY_FETCH", "1"),
];

/// Configuration always passed to git on its command line (through
/// `GIT_CONFIG_COUNT`), which outranks every config file. Each key makes
/// git run a program, or decides which repository or transport git uses.
pub const GIT_FORCED_CONFIG: &[(&str, &str)] = &[
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
    ("gpg.format", "openpgp"),
    ("gpg.program", "false"),
    ("gpg.openpgp.program", "false"),
    ("gpg.ssh.program", "false"),
    ("gpg.x509.program", "false"),
    // Only a repository found through a `.git` (never a directory that
    // merely looks like a bare repository).
    ("safe.bareRepository", "explicit"),
    // No transport at all. Network transports cannot connect anyway (the
    // program has no TCP); the local ones run upload-pack or receive-pack
    // in another repository, and git drops this forced configuration for
    // them, so that repository's hooks and config would run.
    ("protocol.allow", "never"),
    ("protocol.file.allow", "never"),
    ("protocol.ext.allow", "never"),
    ("protocol.fd.allow", "never"),
    ("protocol.git.allow", "never"),
    ("protocol.ssh.allow", "never"),
    ("protocol.http.allow", "never"),
    ("protocol.https.allow", "never"),
];

/// Which subsection a [`GIT_REPO_KEYS`] entry has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    /// `section.key`
    No,
    /// `section.<any>.key`
    Any,
}

/// The settings a repository's own config may hold (allow-list; section
/// and key lowercase as git lists them). Everything else refuses git in
/// that repository: aliases, drivers (filter, diff, merge), includes,
/// hooks and pager settings, editors, helpers, viewers, `url.*`, `http.*`
/// and every key added in a later git release. Each one is what `git init`,
/// `clone`, `remote`, `branch`, `submodule`, `sparse-checkout` or
/// `worktree` write for ordinary work, or identity and line endings; none
/// names a program, a file git would read as configuration, or a directory
/// outside the repository.
pub const GIT_REPO_KEYS: &[(&str, &[&str])] = &[
    (
        "core",
        &[
            "repositoryformatversion",
            "filemode",
            "bare",
            "logallrefupdates",
            "ignorecase",
            "precomposeunicode",
            "symlinks",
            "autocrlf",
            "eol",
            "safecrlf",
            "sparsecheckout",
            "sparsecheckoutcone",
        ],
    ),
    ("extensions", &["objectformat", "worktreeconfig", "refstorage", "partialclone", "preciousobjects"]),
    (
        "remote.*",
        &[
            "url",
            "pushurl",
            "fetch",
            "push",
            "mirror",
            "tagopt",
            "prune",
            "prunetags",
            "promisor",
            "partialclonefilter",
        ],
    ),
    ("branch.*", &["remote", "pushremote", "merge", "rebase"]),
    ("submodule.*", &["url", "active", "branch", "update"]),
    ("submodule", &["active"]),
    ("user", &["name", "email"]),
    ("init", &["defaultbranch"]),
];

/// Values `submodule.<name>.update` may have (`!command` runs a command).
const SUBMODULE_UPDATE: &[&str] = &["checkout", "rebase", "merge", "none"];

/// Whether a repository's own config may set `key` (as `git config
/// --list` prints it) to `value`.
pub fn git_repo_key_allowed(key: &str, value: Option<&str>) -> bool {
    let Some((section, rest)) = key.split_once('.') else { return false };
    let (sub, name) = match rest.rsplit_once('.') {
        Some((_, name)) => (Sub::Any, name),
        None => (Sub::No, rest),
    };
    let section = section.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    let allowed = GIT_REPO_KEYS.iter().any(|(s, names)| {
        let (s, want) = match s.strip_suffix(".*") {
            Some(s) => (s, Sub::Any),
            None => (*s, Sub::No),
        };
        s == section && want == sub && names.contains(&name.as_str())
    });
    if !allowed {
        return false;
    }
    if section == "submodule" && name == "update" {
        return value.is_some_and(|v| SUBMODULE_UPDATE.contains(&v));
    }
    true
}

/// One setting of `git config --list --null --show-scope --show-origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSetting {
    /// `local`, `worktree`, `command`, ...
    pub scope: String,
    /// `file:.git/config`, `command line:`, ...
    pub origin: String,
    /// `section[.subsection].key`
    pub key: String,
    /// `None` for a key written without `=`.
    pub value: Option<String>,
}

/// Parses the output of `git config --list --null --show-scope
/// --show-origin`: entries `scope NUL origin NUL key [LF value] NUL`.
pub fn parse_git_config_list(out: &[u8]) -> Result<Vec<GitSetting>, String> {
    let Some(body) = out.strip_suffix(b"\0") else {
        return if out.is_empty() { Ok(Vec::new()) } else { Err("the listing does not end with NUL".into()) };
    };
    let fields: Vec<&[u8]> = body.split(|b| *b == 0).collect();
    if !fields.len().is_multiple_of(3) {
        return Err("the listing is not made of scope, origin and setting".into());
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(fields
        .chunks(3)
        .map(|f| {
            let (key, value) = match f[2].iter().position(|b| *b == b'\n') {
                Some(i) => (text(&f[2][..i]), Some(text(&f[2][i + 1..]))),
                None => (text(f[2]), None),
            };
            GitSetting { scope: text(f[0]), origin: text(f[1]), key, value }
        })
        .collect())
}

/// Decides the configuration git will use in a repository, as git itself
/// listed it (see [`parse_git_config_list`]): every setting must come from
/// the repository (`local` or `worktree` scope, a file inside the
/// workspace, `workspace` being its real absolute path) and be one of
/// [`GIT_REPO_KEYS`]; settings of the `command` scope are the host's own
/// ([`GIT_FORCED_CONFIG`]). The error names the first setting refused.
pub fn check_git_config(out: &[u8], workspace: &Path) -> Result<(), String> {
    for s in parse_git_config_list(out)? {
        if s.scope == "command" && s.origin == "command line:" {
            continue;
        }
        let file = s.origin.strip_prefix("file:").filter(|_| s.scope == "local" || s.scope == "worktree");
        let Some(file) = file else {
            return Err(format!("`{}` comes from `{}` ({} scope), not the repository", s.key, s.origin, s.scope));
        };
        let path = Path::new(file);
        let inside = if path.is_absolute() {
            path.starts_with(workspace) && !path.components().any(|c| c == std::path::Component::ParentDir)
        } else {
            !path.components().any(|c| c == std::path::Component::ParentDir)
        };
        let shown = path.strip_prefix(workspace).unwrap_or(path).display().to_string();
        if !inside {
            return Err(format!("`{}` comes from `{shown}`, outside the workspace", s.key));
        }
        if !git_repo_key_allowed(&s.key, s.value.as_deref()) {
            return Err(format!(
                "`{}` (in `{shown}`) is not a setting a repository may hold here (it may name a program or load other configuration)",
                s.key
            ));
        }
    }
    Ok(())
}

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

    /// Environment always set. git: no system or global config, the
    /// settings that would run a command forced off (command-line config
    /// outranks a repository's own), editors and ssh set to `false`, no
    /// transport at all, and no implicit bare repository, so the repository
    /// git uses is always one with a `.git` that [`GIT_REPO_KEYS`] was
    /// checked against. The host adds `GIT_CEILING_DIRECTORIES` (the
    /// workspace's parent), which only it knows.
    pub fn forced_env(self) -> Vec<(String, String)> {
        if self != Family::Git {
            return Vec::new();
        }
        let mut env: Vec<(String, String)> =
            GIT_FORCED_ENV.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        env.push(("GIT_CONFIG_COUNT".to_owned(), GIT_FORCED_CONFIG.len().to_string()));
        for (i, (k, v)) in GIT_FORCED_CONFIG.iter().enumerate() {
            env.push((format!("GIT_CONFIG_KEY_{i}"), (*k).to_owned()));
            env.push((format!("GIT_CONFIG_VALUE_{i}"), (*v).to_owned()));
        }
        env
    }

    /// The refusals of this family, for `policy explain`.
    pub fn refusals(self) -> &'static [&'static str] {
        match self {
            Family::Git => &[
                "before the subcommand: only -p, --paginate, -P, --no-pager, --no-replace-objects, --no-lazy-fetch, --no-optional-locks, --no-advice, the --*-pathspecs options, --version, -v, -h and the --*-path queries (so no -c, --config-env, -C, --git-dir, --work-tree, --bare, --exec-path, --attr-source)",
                "anywhere: --upload-pack, --receive-pack, --exec, --template, --config, --help, --open-files-in-pager (and abbreviations), ext:: and fd:: in any argument",
                "grep -O (also in bundles such as -nO); -u after clone, fetch, pull, ls-remote; -c after clone; -x after rebase (also in bundles)",
                "subcommands config, difftool, mergetool, filter-branch, filter-repo, daemon, instaweb, shell, upload-pack, receive-pack, upload-archive, http-*, imap-send, send-email, request-pull, p4, svn, cvs*, archimport, for-each-repo, hook, gui, citool, credential*, remote-*, internal ones (x--y); help with a topic or viewer; maintenance other than run; submodule foreach; bisect run",
                "a repository whose configuration, as git itself lists it, holds any setting not on the allow-list (core basics, extensions, remote.*.url/fetch/..., branch.*, submodule.*.url/active/branch/update, user.name/email, init.defaultbranch), comes from outside the workspace, or cannot be read",
                "runs with GIT_CONFIG_NOSYSTEM=1, GIT_CONFIG_GLOBAL=/dev/null, GIT_PAGER=cat, GIT_EDITOR=false, GIT_SSH_COMMAND=false, hooks, fsmonitor, pager, editors, credential helpers, external diff and gpg forced off, no transport (protocol.allow=never) and no implicit bare repository",
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

/// The options git may get before its subcommand. None takes a value, so
/// the subcommand is the first argument that is not an option. Everything
/// else there is refused: `-c`, `--config-env`, `-C`, `--git-dir`,
/// `--work-tree`, `--bare`, `--namespace`, `--exec-path`, `--attr-source`,
/// `--help` and every option added later.
const GIT_GLOBAL_OPTIONS: &[&str] = &[
    "-p",
    "--paginate",
    "-P",
    "--no-pager",
    "--no-replace-objects",
    "--no-lazy-fetch",
    "--no-optional-locks",
    "--no-advice",
    "--literal-pathspecs",
    "--glob-pathspecs",
    "--noglob-pathspecs",
    "--icase-pathspecs",
    "--version",
    "-v",
    "-h",
    "--html-path",
    "--man-path",
    "--info-path",
];

/// Subcommands refused outright: they change configuration, serve or
/// reach other repositories, or exist to run programs (tools, browsers,
/// mailers, filters, foreign version-control systems, hooks).
const GIT_REFUSED_SUBCOMMANDS: &[&str] = &[
    "config",
    "difftool",
    "mergetool",
    "filter-branch",
    "filter-repo",
    "daemon",
    "instaweb",
    "shell",
    "upload-pack",
    "receive-pack",
    "upload-archive",
    "http-backend",
    "http-fetch",
    "http-push",
    "imap-send",
    "send-email",
    "request-pull",
    "p4",
    "svn",
    "cvsimport",
    "cvsexportcommit",
    "cvsserver",
    "archimport",
    "for-each-repo",
    "hook",
    "gui",
    "citool",
];

/// `git help` may only list (commands, guides, config keys); with a
/// topic or `-w`, `-m`, `-i` it starts a man page viewer or a browser.
const GIT_HELP_LISTS: &[&str] = &[
    "-a",
    "--all",
    "-g",
    "--guides",
    "-c",
    "--config",
    "--no-external-commands",
    "--no-aliases",
    "--verbose",
    "--no-verbose",
    "--user-interfaces",
    "--developer-interfaces",
];

/// True when `arg` is a bundle of short options (`-nO...`) in which
/// `target` appears before any option in `values` (whose value is the
/// rest of the bundle, as git's parse-options reads it).
fn short_bundle_has(arg: &str, target: char, values: &str) -> bool {
    let Some(bundle) = arg.strip_prefix('-').filter(|b| !b.starts_with('-')) else { return false };
    for c in bundle.chars() {
        if c == target {
            return true;
        }
        if values.contains(c) {
            return false;
        }
    }
    false
}

/// git's refusals: the argument and why.
fn git_refusal(args: &[String]) -> Option<(String, &'static str)> {
    const ANYWHERE: &[&str] =
        &["--upload-pack", "--receive-pack", "--exec", "--template", "--config", "--help", "--open-files-in-pager"];
    let sub_at = args.iter().position(|a| !a.starts_with('-'));
    for (i, arg) in args.iter().enumerate() {
        let a = arg.as_str();
        if a.contains("ext::") || a.contains("fd::") {
            return Some((arg.clone(), "names a transport that runs commands (ext:: or fd::)"));
        }
        if sub_at.is_none_or(|s| i < s) && !GIT_GLOBAL_OPTIONS.contains(&a) {
            return Some((arg.clone(), "is not an option sandbox lets git take before the subcommand"));
        }
        if long_option_in(a, ANYWHERE, &[]) {
            return Some((arg.clone(), "can make git run a command, start a viewer or load configuration"));
        }
    }
    let s = sub_at?;
    let sub = args[s].as_str();
    let rest = &args[s + 1..];
    if GIT_REFUSED_SUBCOMMANDS.contains(&sub)
        || sub.starts_with("credential")
        || sub.starts_with("remote-")
        || sub.contains("--")
    {
        return Some((sub.to_owned(), "is a git subcommand that can change configuration or run commands"));
    }
    if sub == "help" && rest.iter().any(|a| !GIT_HELP_LISTS.contains(&a.as_str())) {
        return Some((sub.to_owned(), "with a topic or a viewer option starts a man page viewer or a browser"));
    }
    if sub == "maintenance" && rest.first().is_none_or(|a| a != "run") {
        return Some((sub.to_owned(), "other than `maintenance run` changes the global config or the scheduler"));
    }
    if sub == "grep"
        && let Some(a) = rest.iter().find(|a| short_bundle_has(a, 'O', "efABCm"))
    {
        return Some((a.clone(), "opens the matching files in a pager command run through a shell"));
    }
    if matches!(sub, "fetch" | "pull")
        && let Some(a) = rest.iter().find(|a| a.starts_with("-u"))
    {
        return Some((a.clone(), "sets the upload-pack command"));
    }
    if sub == "clone"
        && let Some(a) = rest.iter().find(|a| short_bundle_has(a, 'u', "objc"))
    {
        return Some((a.clone(), "sets the upload-pack command"));
    }
    if sub == "ls-remote"
        && let Some(a) = rest.iter().find(|a| short_bundle_has(a, 'u', "o"))
    {
        return Some((a.clone(), "sets the upload-pack command"));
    }
    if sub == "clone"
        && let Some(a) = rest.iter().find(|a| short_bundle_has(a, 'c', "obju"))
    {
        return Some((a.clone(), "sets configuration in the new repository"));
    }
    if sub == "rebase"
        && let Some(a) = rest.iter().find(|a| short_bundle_has(a, 'x', "sXCS"))
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
            "grep -Otouch pwned",
            "grep -O",
            "grep -nO vim x",
            "grep -inOvim x",
            "grep --open-files-in-pager=vim x",
            "grep --open-files=vim x",
            "grep --op x",
            "--attr-source HEAD grep -Ovim x",
            "--bare status",
            "--help",
            "grep --help",
            "status --he",
            "help grep",
            "help -w grep",
            "help -m",
            "help -i grep",
            "help --web",
            "web--browse x",
            "submodule--helper foreach x",
            "send-email x",
            "imap-send",
            "for-each-repo --config=x status",
            "hook run pre-commit",
            "maintenance start",
            "maintenance register",
            "remote-ext x y",
            "credential-store get",
            "rebase -ix evil",
            "rebase -ixevil",
            "clone -qu evil src dst",
            "clone -qc core.hooksPath=x src dst",
            "ls-remote -qu evil .",
        ] {
            let e = r.check_args(&v(bad));
            assert!(e.as_ref().is_err_and(|(rule, _)| *rule == "builtin:process:git"), "{bad}: {e:?}");
        }
        for ok in [
            "status --short",
            "log -c",
            "diff --cached",
            "add -u",
            "status -uno",
            "log --color=never",
            "--no-pager log",
            "-P log",
            "grep -e pattern -n x",
            "grep -eOops",
            "grep -A3 x",
            "log -O order.txt",
            "help",
            "help -a",
            "maintenance run",
            "rebase -i main",
            "rebase -sours main",
            "clone -bux src dst",
            "log --exclude=x --all",
            "rebase --continue",
        ] {
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

    /// A listing as `git config --list --null --show-scope --show-origin`
    /// prints it: `(scope, origin, key, value)`.
    fn listing(entries: &[(&str, &str, &str, Option<&str>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (scope, origin, key, value) in entries {
            out.extend_from_slice(format!("{scope}\0{origin}\0{key}").as_bytes());
            if let Some(v) = value {
                out.extend_from_slice(format!("\n{v}").as_bytes());
            }
            out.push(0);
        }
        out
    }

    #[test]
    fn the_repository_config_allow_list() {
        for ok in [
            "core.repositoryformatversion",
            "core.filemode",
            "core.bare",
            "core.logallrefupdates",
            "core.ignorecase",
            "core.symlinks",
            "core.autocrlf",
            "extensions.objectformat",
            "extensions.worktreeconfig",
            "remote.origin.url",
            "remote.Or.ig.fetch",
            "remote..url",
            "branch.main.remote",
            "branch.feature/x.merge",
            "submodule.lib.url",
            "submodule.lib.active",
            "submodule.active",
            "user.name",
            "user.email",
            "init.defaultbranch",
            "CORE.BARE",
        ] {
            assert!(git_repo_key_allowed(ok, Some("x")), "{ok}");
        }
        for (key, value) in [("submodule.lib.update", "rebase"), ("submodule.lib.update", "none")] {
            assert!(git_repo_key_allowed(key, Some(value)), "{key}={value}");
        }
        // Every key that names a program, loads configuration or changes
        // where git looks, and anything unknown.
        for bad in [
            "core.pager",
            "pager.log",
            "pager.status",
            "core.editor",
            "sequence.editor",
            "core.hookspath",
            "core.fsmonitor",
            "core.sshcommand",
            "core.gitproxy",
            "core.askpass",
            "core.alternaterefscommand",
            "core.worktree",
            "core.attributesfile",
            "core.excludesfile",
            "alias.st",
            "filter.lfs.clean",
            "filter.lfs.smudge",
            "filter.lfs.process",
            "diff.x.textconv",
            "diff.x.command",
            "diff.external",
            "merge.x.driver",
            "include.path",
            "includeif.gitdir:/x.path",
            "help.browser",
            "help.format",
            "man.viewer",
            "man.x.cmd",
            "man.x.path",
            "web.browser",
            "browser.x.cmd",
            "browser.x.path",
            "gpg.program",
            "gpg.ssh.program",
            "gpg.ssh.defaultkeycommand",
            "credential.helper",
            "credential.https://x.helper",
            "remote.origin.uploadpack",
            "remote.origin.receivepack",
            "remote.origin.vcs",
            "remote.origin.proxy",
            "url.x.insteadof",
            "http.proxy",
            "difftool.x.cmd",
            "mergetool.x.cmd",
            "sendemail.smtpserver",
            "sendemail.tocmd",
            "imap.tunnel",
            "trailer.x.cmd",
            "uploadpack.packobjectshook",
            "log.showsignature",
            "protocol.allow",
            "safe.bareRepository",
            "remote.url",
            "core.x.bare",
            "user.x.name",
            "nosection",
        ] {
            assert!(!git_repo_key_allowed(bad, Some("x")), "{bad}");
        }
        assert!(!git_repo_key_allowed("submodule.lib.update", Some("!touch pwned")));
        assert!(!git_repo_key_allowed("submodule.lib.update", None));
    }

    #[test]
    fn the_config_listing_is_parsed_as_git_prints_it() {
        let out = listing(&[
            ("local", "file:.git/config", "core.bare", Some("false")),
            ("local", "file:.git/config", "core.filemode", None),
            ("local", "file:.git/config", "alias.x", Some("a\nb")),
            ("command", "command line:", "core.pager", Some("cat")),
        ]);
        let parsed = parse_git_config_list(&out).unwrap();
        assert_eq!(parsed.len(), 4);
        assert_eq!(parsed[0].key, "core.bare");
        assert_eq!(parsed[1].value, None);
        assert_eq!(parsed[2].value.as_deref(), Some("a\nb"));
        assert_eq!(parsed[3].scope, "command");
        assert_eq!(parse_git_config_list(b"").unwrap(), vec![]);
        assert!(parse_git_config_list(b"local\0file:x\0core.bare\nfalse").is_err());
        assert!(parse_git_config_list(b"local\0core.bare\nfalse\0").is_err());
    }

    #[test]
    fn a_config_is_refused_unless_every_setting_is_the_repositorys_and_allowed() {
        let ws = Path::new("/work/ws");
        let plain = listing(&[
            ("local", "file:.git/config", "core.repositoryformatversion", Some("0")),
            ("local", "file:/work/ws/sub/.git/config", "remote.origin.url", Some("https://x/y.git")),
            ("worktree", "file:.git/worktrees/w/config.worktree", "core.sparsecheckout", Some("true")),
            ("command", "command line:", "core.pager", Some("cat")),
        ]);
        assert_eq!(check_git_config(&plain, ws), Ok(()));
        for (entries, why) in [
            (vec![("local", "file:.git/config", "alias.st", Some("!touch pwned"))], "`alias.st` (in `.git/config`)"),
            (vec![("local", "file:.git/config", "include.path", Some("x"))], "`include.path`"),
            (vec![("local", "file:.git/config", "core.editor", Some("vi"))], "`core.editor`"),
            (vec![("local", "file:/elsewhere/config", "core.bare", Some("false"))], "outside the workspace"),
            (vec![("local", "file:../../x/config", "core.bare", Some("false"))], "outside the workspace"),
            (vec![("local", "file:/work/ws/../x/config", "core.bare", Some("false"))], "outside the workspace"),
            (vec![("global", "file:/root/.gitconfig", "user.name", Some("x"))], "not the repository"),
            (vec![("command", "file:x", "user.name", Some("x"))], "not the repository"),
        ] {
            let e = check_git_config(&listing(&entries), ws).unwrap_err();
            assert!(e.contains(why), "{entries:?}: {e}");
        }
        assert!(check_git_config(b"garbage", ws).is_err());
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
