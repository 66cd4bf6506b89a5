//! `sandbox run`.

use crate::exit::Failure;
use crate::run::{RunRequest, run};
use clap::Args;
use sandbox_policy::{ApprovalVia, Tier};
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The tool: a wasm32-wasip2 command component.
    #[arg(value_name = "COMPONENT.wasm")]
    component: PathBuf,
    /// Capability manifest (required).
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    /// Workspace root; overrides `[workspace] root`.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// Audit log; overrides `[audit] path`.
    #[arg(long, value_name = "FILE")]
    audit: Option<PathBuf>,
    /// Who approves writes: `deny` or `tty`; overrides `[approval] via`.
    #[arg(long, value_name = "deny|tty", value_parser = parse_via)]
    approve: Option<ApprovalVia>,
    /// Task id recorded on every event; default: a fresh unique id.
    #[arg(long, value_name = "ID")]
    task_id: Option<String>,
    /// Who the run acts for (recorded on every event as unverified);
    /// default: the OS user. Not with an identity token.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// An identity token (JWT) verified against the manifest's
    /// `[identity]`; its subject becomes the user. Default: the
    /// SANDBOX_IDENTITY_TOKEN environment variable. Never echoed.
    #[arg(long, value_name = "JWT", hide_env_values = true, env = "SANDBOX_IDENTITY_TOKEN")]
    identity_token: Option<String>,
    /// How the run was started: interactive, subagent, background or api;
    /// default: interactive with a terminal, else api.
    #[arg(long, value_name = "TIER", value_parser = parse_tier)]
    tier: Option<Tier>,
    /// Who asked for this run, in order (user, primary agent, sub-agent);
    /// repeatable; recorded on every event.
    #[arg(long, value_name = "NAME")]
    on_behalf_of: Vec<String>,
    /// A task manifest that narrows the manifest for this run; one that
    /// would widen anything is refused (exit 77).
    #[arg(long, value_name = "FILE")]
    task_manifest: Option<PathBuf>,
    /// The tool's name; default: the component's file stem.
    #[arg(long, value_name = "NAME")]
    agent: Option<String>,
    /// Why the task runs (a ticket, a request).
    #[arg(long, value_name = "TEXT")]
    intent: Option<String>,
    /// Use these addresses for NAME instead of DNS (like curl's --resolve);
    /// repeatable. The addresses are checked like any others.
    #[arg(long, value_name = "NAME=ADDR[,ADDR...]", value_parser = parse_pin)]
    resolve: Vec<(String, Vec<IpAddr>)>,
    /// Arguments passed to the tool, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

fn parse_pin(s: &str) -> Result<(String, Vec<IpAddr>), String> {
    let (name, addrs) = s.split_once('=').ok_or("expected NAME=ADDR[,ADDR...]")?;
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
        return Err(format!("`{name}` is not a host name"));
    }
    let addrs = addrs
        .split(',')
        .map(|a| {
            a.trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .map_err(|_| format!("`{a}` is not an IP address"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name, addrs))
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    Tier::parse(s)
}

fn parse_via(s: &str) -> Result<ApprovalVia, String> {
    ApprovalVia::parse(s)
}

pub fn execute(a: RunArgs) -> Result<i32, Failure> {
    run(RunRequest {
        component: a.component,
        manifest: a.manifest,
        workspace: a.workspace,
        audit: a.audit,
        approve: a.approve,
        task_id: a.task_id,
        user: a.user,
        agent: a.agent,
        intent: a.intent,
        args: a.args,
        resolve: a.resolve,
        identity_token: a.identity_token.filter(|t| !t.is_empty()),
        tier: a.tier,
        on_behalf_of: a.on_behalf_of,
        task_manifest: a.task_manifest,
    })
}
