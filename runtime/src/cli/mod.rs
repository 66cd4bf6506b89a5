//! The command line: one module per subcommand.

mod approvals;
mod audit;
mod audit_export;
mod audit_forward;
mod audit_keys;
mod audit_prune;
mod audit_report;
mod compile;
mod policy;
mod run;

use crate::exit::Failure;
use clap::{Parser, Subcommand};

/// Run WebAssembly tools under a capability manifest, with approvals and a
/// tamper-evident audit log.
#[derive(Debug, Parser)]
#[command(name = "sandbox", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a tool (a wasm32-wasip2 component) under a manifest.
    Run(run::RunArgs),
    /// Check and explain manifests.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Work with audit logs.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Run the approval service, or make a reviewer or runner token.
    #[command(subcommand)]
    Approvals(approvals::ApprovalsCommand),
    /// Compile components into the compile cache ahead of their runs.
    Compile(compile::CompileArgs),
}

impl Command {
    /// Runs the subcommand and returns the process exit code.
    pub fn execute(self) -> Result<i32, Failure> {
        match self {
            Command::Run(args) => run::execute(args),
            Command::Policy(cmd) => cmd.execute(),
            Command::Audit(cmd) => cmd.execute(),
            Command::Approvals(cmd) => cmd.execute(),
            Command::Compile(args) => compile::execute(args),
        }
    }
}

/// Writes a command's output to stdout. A reader that went away (`| head`)
/// ends the output quietly; it is not an error of the command.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
