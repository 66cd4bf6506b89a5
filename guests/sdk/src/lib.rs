//! Bindings to the `sandbox:host` WIT package (generated once here) and a
//! few helpers shared by the example tools.
//!
//! A tool of your own can depend on this crate, or call
//! `wit_bindgen::generate!` itself as `guests/replace` does.

wit_bindgen::generate!({
    path: "../../wit",
    world: "tool",
    generate_all,
});

pub use sandbox::host::{fs, http, process, task, types};

/// The error's WIT variant name and message: `denied: no rule grants ...`.
pub fn describe(e: &types::Error) -> String {
    let (kind, msg) = match e {
        types::Error::Denied(m) => ("denied", m),
        types::Error::NotApproved(m) => ("not-approved", m),
        types::Error::LimitExceeded(m) => ("limit-exceeded", m),
        types::Error::Invalid(m) => ("invalid", m),
        types::Error::NotFound(m) => ("not-found", m),
        types::Error::Failed(m) => ("failed", m),
    };
    format!("{kind}: {msg}")
}

/// Joins a directory and a name the way the host expects (`""` is the root).
pub fn join(dir: &str, name: &str) -> String {
    match dir {
        "" | "." => name.to_owned(),
        d => format!("{}/{name}", d.trim_end_matches('/')),
    }
}
