//! `sandbox policy check` and `sandbox policy explain`.

use crate::exit::{Code, Failure};
use clap::Subcommand;
use sandbox_policy::fs::PROTECTED_WRITES;
use sandbox_policy::{FsOp, PathError, Policy, RelPath, Verdict};
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a manifest and print what it grants.
    Check {
        /// The manifest.
        file: PathBuf,
    },
    /// Say which rule decides a capability on a target: exit 0 when it is
    /// allowed (perhaps with approval), 1 when it is denied.
    Explain {
        /// The manifest.
        file: PathBuf,
        /// `fs.read`, `fs.list-dir`, `fs.stat`, `fs.write`, `fs.append`,
        /// `fs.create-dir`, `fs.remove`, `fs.rename`, `http.send`,
        /// `process.run`.
        capability: String,
        /// A workspace-relative path (or URL, argv).
        target: String,
    },
}

fn load(file: &Path) -> Result<Policy, Failure> {
    sandbox_policy::load(file).map_err(|e| Failure::usage(e.to_string()))
}

impl PolicyCommand {
    pub fn execute(self) -> Result<i32, Failure> {
        match self {
            PolicyCommand::Check { file } => {
                let p = load(&file)?;
                print_policy(&p);
                Ok(0)
            }
            PolicyCommand::Explain { file, capability, target } => {
                let p = load(&file)?;
                explain(&p, &capability, &target)
            }
        }
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() { "(none)".into() } else { items.join("  ") }
}

fn print_policy(p: &Policy) {
    let l = &p.limits;
    println!("ok: {} is a valid version 1 manifest", p.source.display());
    println!("name        {}", p.name);
    if let Some(d) = &p.description {
        println!("description {d}");
    }
    println!("policy      {}", p.hash);
    println!("workspace   {}", p.workspace_root.display());
    println!("audit       {}", p.audit_path.display());
    let via = p.approval_via.as_ref().map_or("tty with a terminal, else deny (default)", |v| v.name());
    println!("approval    via {via}; timeout {}", humantime::format_duration(p.approval_timeout));
    println!(
        "limits      memory {}  time {}  calls {}  output {}",
        bytesize(l.memory),
        humantime::format_duration(l.time),
        l.calls,
        bytesize(l.output)
    );
    for (name, globs) in p.fs.lists() {
        println!("fs.{name:<13}{}", list(globs));
    }
    println!("http.send   not enabled in this version");
    println!("process.run not enabled in this version");
    println!("built-in    writes are always refused on: {}", PROTECTED_WRITES.join("  "));
    println!("built-in    the manifest and the audit log are untouchable when inside the workspace;");
    println!("            paths leading outside (`..`, symlinks) and files with several hard links are refused");
}

fn bytesize(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

fn explain(p: &Policy, capability: &str, target: &str) -> Result<i32, Failure> {
    if matches!(capability, "http.send" | "process.run") {
        println!("deny: {capability} is not enabled in this version (rule builtin:not-enabled)");
        return Ok(Code::Negative as i32);
    }
    let Some(op) = FsOp::from_capability(capability) else {
        return Err(Failure::usage(format!(
            "unknown capability `{capability}`; one of {}",
            FsOp::ALL.map(FsOp::capability).join(", ")
        )));
    };
    let path = match RelPath::normalise(target) {
        Ok(p) => p,
        Err(PathError::Invalid(m)) => {
            println!("invalid: `{target}`: {m}");
            return Ok(Code::Negative as i32);
        }
        Err(PathError::Escapes) => {
            println!("deny: `{target}` leads outside the workspace (rule builtin:outside-workspace)");
            return Ok(Code::Negative as i32);
        }
    };
    let d = p.fs.decide(op, &path);
    let (word, code) = match d.verdict {
        Verdict::Allow => ("allow", 0),
        Verdict::Ask => ("ask (allowed once a human approves)", 0),
        Verdict::Deny => ("deny", Code::Negative as i32),
    };
    println!("{word}: {capability} `{}` (rule {})", path.display(), d.rule);
    if d.verdict != Verdict::Deny {
        println!(
            "note: at run time a symlink is followed and its target decided too; files with several hard links are refused"
        );
    }
    Ok(code)
}
