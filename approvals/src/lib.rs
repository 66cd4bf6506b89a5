//! The approval service for `sandbox`: reviewers decide on requests that
//! runners submit, under multi-party rules, with every vote bound to the
//! exact effect it approves.
//!
//! - [`protocol`]: the JSON the service, runners and reviewers exchange.
//! - [`client`]: the runner's side (submit, wait).
//! - [`config`]: the reviewers file (reviewers, runners, token hashes).
//! - [`rules`]: multi-party rules: who may vote, what the votes decide.
//! - [`store`]: where requests and votes are kept (SQLite, in memory).
//! - [`server`]: the service (`sandbox approvals serve`).

pub mod client;
pub mod config;
pub mod protocol;
pub mod rules;
pub mod server;
pub mod store;

use sha2::{Digest, Sha256};

/// A new random token (hex, 256 bits) and its `sha256:` hash, as
/// `sandbox approvals token` prints them. Only the hash is stored.
pub fn new_token() -> (String, String) {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    let token = format!("{}{}", a.simple(), b.simple());
    let hash = token_hash(&token);
    (token, hash)
}

/// `sha256:` of a token.
pub fn token_hash(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}
