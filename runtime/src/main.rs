//! `sandbox`: run WebAssembly tools under a capability manifest, with
//! approvals and a tamper-evident audit log. See the README.

mod approver;
mod cache;
mod cli;
mod exit;
mod forward;
mod principal;
mod run;
mod secrets;
mod stdio;

use clap::Parser;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn main() {
    // The trampoline that confines and starts a command (see
    // sandbox_host_api::exec): not a user-facing subcommand.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == sandbox_host_api::exec::TRAMPOLINE) {
        std::process::exit(sandbox_host_api::exec::confine_ambient(&args[2..]));
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("SANDBOX_LOG").unwrap_or_else(|_| {
        // The approval service logs each request (never tokens or bodies).
        let serving = std::env::args().nth(2).is_some_and(|a| a == "serve");
        tracing_subscriber::EnvFilter::new(if serving { "warn,sandbox_approvals=info" } else { "warn" })
    });
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    // A file-size limit (`ulimit -f`) must make appends to the audit log
    // fail with an error (and the run stop, fail-closed, with exit 126),
    // not kill the process before it can record why.
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGXFSZ, Arc::new(AtomicBool::new(false))) {
        eprintln!("sandbox: error: cannot handle SIGXFSZ: {e}");
        std::process::exit(exit::Code::Internal as i32);
    }
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print to stdout and exit 0.
        Err(e) if !e.use_stderr() => e.exit(),
        // A bare `sandbox` shows the help (on stderr, exit 2).
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            // One line, like every other error; `--help` has the details.
            // clap's first paragraph says what is wrong (and which argument).
            let text = e.to_string();
            let first = text.split("\n\n").next().unwrap_or("invalid usage");
            let first = first.trim_start_matches("error: ").split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("sandbox: error: {first} (see `sandbox --help`)");
            std::process::exit(exit::Code::Usage as i32);
        }
    };
    let code = match cli.command.execute() {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("sandbox: error: {}", failure.message);
            failure.code as i32
        }
    };
    std::process::exit(code);
}
