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
use crate::exec::{Finished, Spawn, Writes, run_ambient};
use crate::workspace::{FsError, ReadOutcome, Workspace};
use sandbox_audit::Decision;
use sandbox_policy::process::{Family, SAFE_PATH, git_config_hazard};
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

fn prepare(cx: Ctx<'_>, cmd: &Command, shown: &str) -> Result<Plan<(Spawn, Option<Duration>)>, Box<Refusal>> {
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
    if rule.family == Family::Git {
        repo_config_hazard(cx.ws, &real).map_err(|why| deny("builtin:process:git", why))?;
    }
    let stdin = cmd.stdin.clone().unwrap_or_default();
    let sha = (!stdin.is_empty()).then(|| format!("sha256:{}", hex::encode(Sha256::digest(&stdin))));
    let mut env = vec![("PATH".to_owned(), SAFE_PATH.to_owned())];
    env.extend(rule.family.forced_env());
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
    let timeout = rule.timeout;
    Ok(Plan {
        target: shown.to_owned(),
        dest: None,
        resolved: Some(path.clone()),
        verdict,
        rule: rule.name.clone(),
        effect: true,
        size: (!stdin.is_empty()).then_some(stdin.len() as u64),
        preview: (verdict == Verdict::Ask).then(|| preview(&path, cmd, &real, sha.as_deref())),
        content_sha256: sha,
        headers: None,
        env: Some(recorded_env),
        cwd: Some(real.display().to_owned()),
        effect_sha256: {
            let argv = argv_line(std::iter::once(path.as_str()).chain(cmd.args.iter().map(String::as_str)));
            let env: Vec<String> = cmd.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let stdin_hash = format!("sha256:{}", hex::encode(Sha256::digest(&stdin)));
            let mut parts = vec![argv.as_str(), real.display()];
            parts.extend(env.iter().map(String::as_str));
            parts.push(&stdin_hash);
            effect_hash("process.run", &parts)
        },
        ready: Ok((
            Spawn {
                path: rule.path.clone(),
                args,
                env,
                cwd: workspace.join(real.as_str()),
                workspace,
                stdin,
                guard: ProgramWrites::new(cx.policy.fs.protected_paths().to_vec()),
                memory: cx.policy.process.memory,
                allow_unstaged: cx.policy.process.allow_unstaged_writes,
            },
            timeout,
        )),
    })
}

/// Refuses git in a repository whose own configuration would make it run a
/// command (see `git_config_hazard`), or whose git directory lies outside
/// the workspace. The repository is found as git finds it: the nearest
/// `.git` from the working directory up to the workspace root.
fn repo_config_hazard(ws: &Workspace, cwd: &RelPath) -> Result<(), String> {
    let read = |path: &RelPath| -> Option<String> {
        let at = ws.locate(path, true).ok()?;
        match ws.read(&at, 1 << 20).ok()? {
            ReadOutcome::Data(d) => Some(String::from_utf8_lossy(&d).into_owned()),
            // Too large to check: treat it as hazardous.
            ReadOutcome::TooLarge => Some(String::from("[include]\n")),
        }
    };
    let mut dir = Some(cwd.clone());
    while let Some(d) = dir {
        let Some(dotgit) = d.join_name(".git") else { break };
        let kind = ws.locate(&dotgit, false).ok().and_then(|at| at.file_type());
        let gitdir = match kind {
            Some(rustix::fs::FileType::Directory) => dotgit,
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
            _ => {
                dir = d.split_last().map(|(parent, _)| parent);
                continue;
            }
        };
        let mut dirs = vec![gitdir.clone()];
        if let Some(common) = gitdir.join_name("commondir").and_then(|p| read(&p)) {
            let joined = format!("{}/{}", gitdir.as_str(), common.trim());
            match RelPath::normalise(&joined) {
                Ok(p) if !common.trim().starts_with('/') => dirs.push(p),
                _ => return Err("the repository's common git directory lies outside the workspace".into()),
            }
        }
        for g in dirs {
            for name in ["config", "config.worktree"] {
                let Some(file) = g.join_name(name) else { continue };
                if let Some(hazard) = read(&file).as_deref().and_then(git_config_hazard) {
                    return Err(format!(
                        "the repository's `{}` sets `{hazard}`, which makes git run a command; git is refused in this repository",
                        file.display()
                    ));
                }
            }
        }
        return Ok(());
    }
    Ok(())
}

fn act(
    cx: Ctx<'_>,
    spawn: Spawn,
    rule_timeout: Option<Duration>,
    asked: Option<Duration>,
) -> Result<Done<Output>, Error> {
    let Some(launcher) = cx.launcher else {
        return Err(Error::Failed("this run cannot start processes".into()));
    };
    let left = cx.clock.limit().saturating_sub(cx.clock.used());
    let timeout = [rule_timeout, asked].into_iter().flatten().fold(left, Duration::min);
    if timeout.is_zero() {
        return Err(Error::LimitExceeded("the run has no time left for a command".into()));
    }
    let f: Finished = run_ambient(launcher, &spawn, timeout, cx.policy.limits.output).map_err(Error::Failed)?;
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
    let stdout = cx.returned(redact, f.stdout, &mut counts);
    let stderr = cx.returned(redact, f.stderr, &mut counts);
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
            |cx, (spawn, rule_timeout)| act(cx, spawn, rule_timeout, asked),
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
