//! `sandbox`: run WebAssembly tools under a capability manifest, with
//! approvals and a tamper-evident audit log. See the README.

mod approver;
mod cli;
mod exit;
mod run;
mod stdio;

use clap::Parser;

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SANDBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
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
