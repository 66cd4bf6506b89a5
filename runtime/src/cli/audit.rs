//! `sandbox audit verify`.

use crate::exit::{Code, Failure};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain of a log: exit 0 when intact, 1 naming the
    /// first bad `seq` otherwise.
    Verify {
        /// The audit log (JSON Lines).
        file: PathBuf,
    },
}

impl AuditCommand {
    pub fn execute(self) -> Result<i32, Failure> {
        match self {
            AuditCommand::Verify { file } => {
                let f = std::fs::File::open(&file).map_err(|e| {
                    Failure::usage(format!("audit log `{}`: {}", file.display(), sandbox_policy::io_reason(&e)))
                })?;
                match sandbox_audit::verify(f) {
                    Ok(r) => {
                        println!("ok: {} events, {} tasks, head {}", r.events, r.tasks, r.head);
                        if let (Some(a), Some(b)) = (r.first_ts, r.last_ts) {
                            println!("period: {a} .. {b}");
                        }
                        println!(
                            "note: a hash chain cannot show events cut from the end; compare the head with a copy kept elsewhere"
                        );
                        Ok(0)
                    }
                    Err(e) => {
                        Err(Failure::new(Code::Negative, format!("audit log `{}` is not intact: {e}", file.display())))
                    }
                }
            }
        }
    }
}
