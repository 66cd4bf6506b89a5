//! `sandbox:host/process`: allow-listed host programs, without a shell.
//!
//! `prepare` finds the rule for the program name, checks the arguments
//! (patterns, `deny_args`, built-in refusals), the environment names and
//! the working directory (normalised and resolved like `fs` paths, then
//! matched against the rule's `cwd`); `act` runs the program through the
//! trampoline in `exec`.

use crate::bindings::sandbox::host::process::{self as wit, Command, Output};
use crate::bindings::sandbox::host::types::Error;
use crate::corridor::{Ctx, Done, HostCtx, Plan, Refusal, effect_hash};
use crate::exec::{Finished, Launcher, Spawn, Writes, run_ambient};
use crate::workspace::{FsError, ReadOutcome, Workspace};
use sandbox_audit::Decision;
use sandbox_policy::process::{Family, SAFE_PATH, check_git_config};
use sandbox_policy::program_writes::ProgramWrites;
use sandbox_policy::{PathError, RelPath, Verdict};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The argv as one line: words separated by spaces, a word holding spaces,
/// quotes or backslashes (or nothing) quoted, so the record is unambiguous.
pub(crate) fn argv_line<'a>(argv: impl IntoIterator<Item = &'a str>) -> String {
    argv.into_iter()
        .map(|a| {
            if !a.is_empty() && !a.contains([' ', '"', '\'', '\\']) && !a.chars().any(char::is_control) {
                a.to_owned()
            } else {
                format!("{a:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Secret-looking argument values, replaced in the audit record: the value
/// of `--password=...`-style options and of the argument after such an
/// option, and the userinfo of URLs.
pub(crate) fn redact_args(args: &[String]) -> Vec<String> {
    const WORDS: &[&str] =
        &["password", "passwd", "token", "secret", "apikey", "api-key", "api_key", "credential", "auth"];
    let secret_option = |name: &str| {
        let n = name.trim_start_matches('-').to_ascii_lowercase();
        name.starts_with('-') && WORDS.iter().any(|w| n.contains(w))
    };
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for a in args {
        if hide_next {
            out.push("[redacted]".to_owned());
            hide_next = false;
            continue;
        }
        if let Some((name, _)) = a.split_once('=')
            && secret_option(name)
        {
            out.push(format!("{name}=[redacted]"));
        } else if secret_option(a) {
            out.push(a.clone());
            hide_next = true;
        } else if let Some((scheme, rest)) = a.split_once("://")
            && let Some(at) = rest.find('@').filter(|at| !rest[..*at].contains('/'))
        {
            out.push(format!("{scheme}://[redacted]@{}", &rest[at + 1..]));
        } else {
            out.push(a.clone());
        }
    }
    out
}

fn refusal(decision: Decision, rule: &str, target: &str, resolved: Option<String>, error: Error) -> Box<Refusal> {
    Box::new(Refusal { decision, rule: rule.to_owned(), target: target.to_owned(), dest: None, resolved, error })
}

/// What a reviewer sees: exactly what will run.
fn preview(path: &str, cmd: &Command, cwd: &RelPath, sha: Option<&str>) -> String {
    let mut s = format!("run:  {}\n", argv_line(std::iter::once(path).chain(cmd.args.iter().map(String::as_str))));
    s.push_str(&format!("cwd:  {}\n", cwd.display()));
    for (k, v) in &cmd.env {
        s.push_str(&format!("env:  {k}={v}\n"));
    }
    if let Some(stdin) = &cmd.stdin {
        s.push_str(&format!("stdin: {} bytes, {}\n", stdin.len(), sha.unwrap_or("")));
        let head = String::from_utf8_lossy(&stdin[..stdin.len().min(2048)]);
        for line in head.lines().take(20) {
            s.push_str(&format!("  | {line}\n"));
        }
    }
    s
}

/// What `act` gets: the run, the rule's timeout, and whether the
/// repository's configuration must be checked again first (a human was
/// asked in between).
struct Ready {
    spawn: Spawn,
    timeout: Option<Duration>,
    recheck_git: bool,
}

fn prepare(cx: Ctx<'_>, cmd: &Command, shown: &str) -> Result<Plan<Ready>, Box<Refusal>> {
    let invalid = |m: String| refusal(Decision::Invalid, "input", shown, None, Error::Invalid(m));
    if cmd.program.is_empty() {
        return Err(invalid("empty program name".into()));
    }
    for (name, value) in &cmd.env {
        let ok_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok_name || value.contains('\0') {
            return Err(invalid(format!("`{}` is not a valid environment variable", name.escape_debug())));
        }
    }
    if cmd.args.iter().any(|a| a.contains('\0')) {
        return Err(invalid("an argument holds a NUL byte".into()));
    }
    let Some(rule) = cx.policy.process.rule(&cmd.program) else {
        let msg = format!("no rule allows the program `{}`", cmd.program);
        return Err(refusal(Decision::Deny, "default", shown, None, Error::Denied(msg)));
    };
    let path = rule.path.display().to_string();
    let deny = |rule: &str, m: String| refusal(Decision::Deny, rule, shown, Some(path.clone()), Error::Denied(m));
    rule.check_args(&cmd.args).map_err(|(r, why)| deny(r, why))?;
    let names: Vec<&str> = cmd.env.iter().map(|(k, _)| k.as_str()).collect();
    rule.check_env(&names).map_err(|why| deny(&rule.name, why))?;
    let cwd = match RelPath::normalise(cmd.cwd.as_deref().unwrap_or("")) {
        Ok(c) => c,
        Err(PathError::Invalid(m)) => return Err(invalid(format!("cwd: {m}"))),
        Err(PathError::Escapes) => {
            return Err(deny("builtin:outside-workspace", "the cwd leads outside the workspace".into()));
        }
    };
    rule.check_cwd(&cwd).map_err(|why| deny(&rule.name, why))?;
    let real = match cx.ws.locate(&cwd, true) {
        Ok(at) if at.file_type() == Some(rustix::fs::FileType::Directory) => at.real,
        Ok(at) if at.stat.is_none() => {
            return Err(refusal(
                Decision::Deny,
                &rule.name,
                shown,
                Some(path),
                Error::NotFound(format!("cwd `{}` does not exist", cwd.display())),
            ));
        }
        Ok(_) => return Err(invalid(format!("cwd `{}` is not a directory", cwd.display()))),
        Err(FsError::Outside(why)) => {
            return Err(deny("builtin:outside-workspace", format!("cwd `{}`: {why}", cwd.display())));
        }
        Err(FsError::NotFound) => {
            return Err(refusal(
                Decision::Deny,
                &rule.name,
                shown,
                Some(path),
                Error::NotFound(format!("cwd `{}` does not exist", cwd.display())),
            ));
        }
        Err(FsError::Failed(why)) => return Err(invalid(format!("cwd `{}`: {why}", cwd.display()))),
    };
    if real != cwd {
        rule.check_cwd(&real).map_err(|why| deny(&rule.name, why))?;
    }
    let in_repo = rule.family == Family::Git && {
        let found = find_repository(cx.ws, &real).map_err(|why| deny("builtin:process:git", why))?;
        found.is_some()
    };
    let stdin = cmd.stdin.clone().unwrap_or_default();
    let sha = (!stdin.is_empty()).then(|| format!("sha256:{}", hex::encode(Sha256::digest(&stdin))));
    let size = (!stdin.is_empty()).then_some(stdin.len() as u64);
    let stdin_hash = format!("sha256:{}", hex::encode(Sha256::digest(&stdin)));
    let mut env = vec![("PATH".to_owned(), SAFE_PATH.to_owned())];
    env.extend(rule.family.forced_env());
    if rule.family == Family::Git {
        // git looks for a repository no higher than the workspace root.
        let parent = cx.ws.root_path().parent().unwrap_or(cx.ws.root_path());
        env.push(("GIT_CEILING_DIRECTORIES".to_owned(), parent.display().to_string()));
    }
    env.extend(cmd.env.iter().cloned());
    // The rule's secrets, set by the host for this program only.
    let mut recorded_env: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    for (name, value) in &rule.secret_env {
        let value = value.render(&cx.policy.secret_values).ok_or_else(|| {
            Box::new(Refusal {
                decision: Decision::Deny,
                rule: rule.name.clone(),
                target: shown.to_owned(),
                dest: None,
                resolved: None,
                error: Error::Denied(format!("the secret for `{name}` is not available")),
            })
        })?;
        env.retain(|(k, _)| k != name);
        env.push((name.clone(), value));
        recorded_env.push(format!("{name} (secret)"));
    }
    let mut args: Vec<String> = rule.family.forced_args().iter().map(|a| (*a).to_owned()).collect();
    args.extend(cmd.args.iter().cloned());
    let verdict = if rule.approval { Verdict::Ask } else { Verdict::Allow };
    let workspace = cx.ws.root_path().to_path_buf();
    let spawn = Spawn {
        path: rule.path.clone(),
        args,
        env,
        cwd: workspace.join(real.as_str()),
        workspace,
        stdin,
        guard: ProgramWrites::new(cx.policy.fs.protected_paths().to_vec()),
        memory: cx.policy.process.memory,
        allow_unstaged: cx.policy.process.allow_unstaged_writes,
    };
    if in_repo {
        git_config_check(cx, &spawn).map_err(|why| deny("builtin:process:git", why))?;
    }
    Ok(Plan {
        target: shown.to_owned(),
        dest: None,
        resolved: Some(path.clone()),
        verdict,
        rule: rule.name.clone(),
        effect: true,
        size,
        preview: (verdict == Verdict::Ask).then(|| preview(&path, cmd, &real, sha.as_deref())),
        content_sha256: sha,
        headers: None,
        env: Some(recorded_env),
        cwd: Some(real.display().to_owned()),
        effect_sha256: {
            let argv = argv_line(std::iter::once(path.as_str()).chain(cmd.args.iter().map(String::as_str)));
            let env: Vec<String> = cmd.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut parts = vec![argv.as_str(), real.display()];
            parts.extend(env.iter().map(String::as_str));
            parts.push(&stdin_hash);
            effect_hash("process.run", &parts)
        },
        ready: Ok(Ready { spawn, timeout: rule.timeout, recheck_git: in_repo && verdict == Verdict::Ask }),
    })
}

/// Finds the repository git would use from `cwd`: the nearest `.git` (of
/// any kind: git follows a symlink, and rejects what it cannot use) from
/// the working directory up to the workspace root, as git finds it with
/// `GIT_CEILING_DIRECTORIES` at the workspace's parent and implicit bare
/// repositories off. Refuses a `.git` file or common directory that points
/// outside the workspace.
fn find_repository(ws: &Workspace, cwd: &RelPath) -> Result<Option<RelPath>, String> {
    let read = |path: &RelPath| -> Option<String> {
        let at = ws.locate(path, true).ok()?;
        match ws.read(&at, 1 << 16).ok()? {
            ReadOutcome::Data(d) => Some(String::from_utf8_lossy(&d).into_owned()),
            ReadOutcome::TooLarge => None,
        }
    };
    let mut dir = Some(cwd.clone());
    while let Some(d) = dir {
        let Some(dotgit) = d.join_name(".git") else { break };
        let kind = match ws.locate(&dotgit, false) {
            Ok(at) => at.file_type(),
            Err(FsError::NotFound) => None,
            Err(FsError::Outside(why) | FsError::Failed(why)) => {
                return Err(format!("cannot look for a repository at `{}`: {why}", dotgit.display()));
            }
        };
        let gitdir = match kind {
            None => {
                dir = d.split_last().map(|(parent, _)| parent);
                continue;
            }
            Some(rustix::fs::FileType::RegularFile) => {
                let text = read(&dotgit).unwrap_or_default();
                let target = text.trim().strip_prefix("gitdir:").map(str::trim).unwrap_or("");
                let joined = if d.is_root() { target.to_owned() } else { format!("{}/{target}", d.as_str()) };
                match RelPath::normalise(&joined) {
                    Ok(p) if !target.starts_with('/') && !target.is_empty() => p,
                    _ => {
                        return Err(format!(
                            "the repository at `{}` keeps its git directory outside the workspace",
                            d.display()
                        ));
                    }
                }
            }
            Some(_) => dotgit,
        };
        if let Some(common) = gitdir.join_name("commondir").and_then(|p| read(&p)) {
            let joined = format!("{}/{}", gitdir.as_str(), common.trim());
            if common.trim().starts_with('/') || RelPath::normalise(&joined).is_err() {
                return Err("the repository's common git directory lies outside the workspace".into());
            }
        }
        return Ok(Some(gitdir));
    }
    Ok(None)
}

/// The longest a configuration listing may take.
const GIT_CONFIG_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest configuration listing accepted, in bytes.
const GIT_CONFIG_CAP: u64 = 1 << 20;

/// Asks git itself which configuration it will use for `spawn` (the same
/// program, environment and working directory, confined like every
/// command): `git config --list --includes --null --show-scope
/// --show-origin`. Refuses git in the repository unless every setting is
/// the repository's own and on the allow-list (`check_git_config`), and
/// when git cannot read its configuration (fail closed).
fn git_config_check(cx: Ctx<'_>, spawn: &Spawn) -> Result<(), String> {
    let refused = |why: String| format!("git is refused in this repository: {why}");
    let Some(launcher) = cx.launcher else {
        return Err(refused("its configuration cannot be checked (this run cannot start processes)".into()));
    };
    let left = cx.clock.limit().saturating_sub(cx.clock.used());
    let listing = Spawn {
        path: spawn.path.clone(),
        args: ["config", "--list", "--includes", "--null", "--show-scope", "--show-origin"].map(str::to_owned).to_vec(),
        env: spawn.env.clone(),
        cwd: spawn.cwd.clone(),
        workspace: spawn.workspace.clone(),
        stdin: Vec::new(),
        ..spawn.clone()
    };
    list_and_check(launcher, &listing, GIT_CONFIG_TIMEOUT.min(left)).map_err(refused)
}

fn list_and_check(launcher: &Launcher, listing: &Spawn, timeout: Duration) -> Result<(), String> {
    if timeout.is_zero() {
        return Err("the run has no time left to check its configuration".into());
    }
    let f = run_ambient(launcher, listing, timeout, GIT_CONFIG_CAP)
        .map_err(|e| format!("cannot list its configuration: {e}"))?;
    if f.timed_out || f.truncated {
        return Err("listing its configuration took too long or printed too much".into());
    }
    if f.exit_code != Some(0) {
        let stderr = String::from_utf8_lossy(&f.stderr);
        let line: String = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("").chars().take(200).collect();
        let code = f.exit_code.map_or("a signal".to_owned(), |c| format!("code {c}"));
        return Err(format!("git cannot read its configuration (exit {code}: {})", line.trim()));
    }
    check_git_config(&f.stdout, &listing.workspace)
}

fn act(cx: Ctx<'_>, ready: Ready, asked: Option<Duration>) -> Result<Done<Output>, Error> {
    let Ready { spawn, timeout: rule_timeout, recheck_git } = ready;
    let Some(launcher) = cx.launcher else {
        return Err(Error::Failed("this run cannot start processes".into()));
    };
    // The configuration may have changed while a human decided.
    if recheck_git {
        git_config_check(cx, &spawn).map_err(Error::Denied)?;
    }
    let left = cx.clock.limit().saturating_sub(cx.clock.used());
    let timeout = [rule_timeout, asked].into_iter().flatten().fold(left, Duration::min);
    if timeout.is_zero() {
        return Err(Error::LimitExceeded("the run has no time left for a command".into()));
    }
    let cap = cx.policy.limits.output;
    let f: Finished = run_ambient(launcher, &spawn, timeout, cap).map_err(Error::Failed)?;
    // A change to a path programs may never change: none of its changes
    // were applied, and its output is not returned either.
    if let Writes::Refused(r) = &f.writes {
        return Err(Error::Denied(format!(
            "{}: the program changed `{}`, and {}; none of its changes were applied",
            r.rule, r.path, r.why
        )));
    }
    let mut counts = sandbox_redact::Counts::new();
    let redact = cx.redacts_output();
    // Redacted first, cut after: a killed program's streams may end
    // anywhere, even inside a secret, so they are cut where what follows
    // is still in view.
    let killed = f.truncated || f.timed_out;
    let stdout = cx.returned_stream(redact, f.stdout, cap, killed, &mut counts);
    let stderr = cx.returned_stream(redact, f.stderr, cap, killed, &mut counts);
    let bytes = (stdout.len() + stderr.len()) as u64;
    let mut done = Done::new(Output { exit_code: f.exit_code, stdout, stderr, truncated: f.truncated }, bytes);
    done.redactions = counts;
    done.exit_code = f.exit_code;
    done.truncated = Some(f.truncated);
    done.confinement = Some(f.confinement);
    done.timed_out = f.timed_out;
    Ok(done)
}

impl wit::Host for HostCtx {
    fn run(&mut self, cmd: Command) -> wasmtime::Result<Result<Output, Error>> {
        let redacted = redact_args(&cmd.args);
        let shown = argv_line(std::iter::once(cmd.program.as_str()).chain(redacted.iter().map(String::as_str)));
        let asked = cmd.timeout_ms.map(|ms| Duration::from_millis(u64::from(ms)));
        let bytes_in = cmd.stdin.as_ref().map_or(0, |s| s.len() as u64);
        self.corridor.mediate(
            self.intent.as_deref(),
            "process.run",
            (&shown, None),
            bytes_in,
            |cx| prepare(cx, &cmd, &shown),
            |cx, ready| act(cx, ready, asked),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn argv_lines_are_unambiguous() {
        assert_eq!(argv_line(["git", "status"]), "git status");
        assert_eq!(argv_line(["echo", "a b", "", "x\"y", "$(id)"]), r#"echo "a b" "" "x\"y" $(id)"#);
        assert_eq!(argv_line(["x", "a\nb"]), r#"x "a\nb""#);
    }

    #[test]
    fn secrets_in_arguments_are_redacted() {
        assert_eq!(
            redact_args(&v(&[
                "--password=hunter2",
                "--api-key",
                "k123",
                "--name",
                "x",
                "https://u:p@host/x",
                "--token=t"
            ])),
            v(&[
                "--password=[redacted]",
                "--api-key",
                "[redacted]",
                "--name",
                "x",
                "https://[redacted]@host/x",
                "--token=[redacted]"
            ])
        );
        assert_eq!(redact_args(&v(&["status", "--short"])), v(&["status", "--short"]));
    }
}
