//! `replace`: a find-and-replace edit of one workspace file.
//!
//! ```text
//! replace [--all] [--dry-run] PATH FIND REPLACEMENT
//! ```
//!
//! Reads PATH, replaces the first (or every) occurrence of FIND, and writes
//! the file back with `fs.write`, which the manifest usually makes subject
//! to a human's approval. Exit status: 0 on success, 1 when FIND does not
//! occur or the host refused, 2 on bad usage.
//!
//! This tool is also the template of the README's guide: it generates its
//! bindings itself, with nothing but `wit-bindgen`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "tool",
    generate_all,
});

use sandbox::host::{fs, task, types::Error};
use std::process::ExitCode;

fn describe(e: &Error) -> String {
    match e {
        Error::Denied(m) => format!("denied: {m}"),
        Error::NotApproved(m) => format!("not approved: {m}"),
        Error::LimitExceeded(m) => format!("limit exceeded: {m}"),
        Error::Invalid(m) => format!("invalid: {m}"),
        Error::NotFound(m) => format!("not found: {m}"),
        Error::Failed(m) => format!("failed: {m}"),
    }
}

fn main() -> ExitCode {
    let mut all = false;
    let mut dry_run = false;
    let mut rest = Vec::new();
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--all" => all = true,
            "--dry-run" => dry_run = true,
            _ => rest.push(a),
        }
    }
    let [path, find, replacement] = rest.as_slice() else {
        eprintln!("usage: replace [--all] [--dry-run] PATH FIND REPLACEMENT");
        return ExitCode::from(2);
    };
    if find.is_empty() {
        eprintln!("replace: FIND must not be empty");
        return ExitCode::from(2);
    }
    task::set_intent(&format!("replace `{find}` with `{replacement}` in {path}"));
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("replace: cannot read {path}: {}", describe(&e));
            return ExitCode::from(1);
        }
    };
    let Ok(text) = String::from_utf8(bytes) else {
        eprintln!("replace: {path} is not UTF-8 text");
        return ExitCode::from(1);
    };
    let found = text.matches(find.as_str()).count();
    if found == 0 {
        eprintln!("replace: `{find}` does not occur in {path}");
        return ExitCode::from(1);
    }
    let (new, n) = if all {
        (text.replace(find.as_str(), replacement), found)
    } else {
        (text.replacen(find.as_str(), replacement, 1), 1)
    };
    if dry_run {
        println!("would replace {n} of {found} occurrence(s) in {path}");
        return ExitCode::SUCCESS;
    }
    match fs::write(path, new.as_bytes()) {
        Ok(()) => {
            println!("replaced {n} of {found} occurrence(s) in {path}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("replace: cannot write {path}: {}", describe(&e));
            ExitCode::from(1)
        }
    }
}
