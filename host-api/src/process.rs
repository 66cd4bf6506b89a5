//! `sandbox:host/process`: not enabled in this version. Every call walks
//! the corridor and is refused (and audited) like any denied call.

use crate::bindings::sandbox::host::process::{self as wit, Command, Output};
use crate::bindings::sandbox::host::types::Error;
use crate::corridor::HostCtx;

impl wit::Host for HostCtx {
    fn run(&mut self, cmd: Command) -> wasmtime::Result<Result<Output, Error>> {
        let mut argv = vec![cmd.program.clone()];
        argv.extend(cmd.args.iter().cloned());
        let target = argv_line(&argv);
        let bytes_in = cmd.stdin.as_ref().map_or(0, |b| b.len() as u64);
        self.corridor.refuse_not_enabled(self.intent.as_deref(), "process.run", &target, bytes_in)
    }
}

/// The argv as one line: words separated by spaces, a word holding spaces,
/// quotes or backslashes quoted (so the record is unambiguous).
fn argv_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && !a.contains([' ', '"', '\'', '\\']) {
                a.clone()
            } else {
                format!("\"{}\"", a.replace('\\', "\\\\").replace('"', "\\\""))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
