//! `sandbox`: run WebAssembly tools under a capability manifest, with
//! approvals and a tamper-evident audit log. See the README.

mod approver;
mod cli;
mod exit;
mod run;
mod stdio;

use clap::Parser;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SANDBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    // A file-size limit (`ulimit -f`) must make appends to the audit log
    // fail with an error (and the run stop, fail-closed, with exit 126),
    // not kill the process before it can record why.
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGXFSZ, Arc::new(AtomicBool::new(false))) {
        eprintln!("sandbox: error: cannot handle SIGXFSZ: {e}");
        std::process::exit(exit::Code::Internal as i32);
    }
    let cli = cli::Cli::parse();
    let code = match cli.command.execute() {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("sandbox: error: {}", failure.message);
            failure.code as i32
        }
    };
    std::process::exit(code);
}
