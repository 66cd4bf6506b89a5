//! Reads the manifest's `[secrets.NAME]` when a run starts: from the
//! operator's environment or a file. A missing, empty or unusable secret
//! refuses the run (exit 77) before the tool starts. Each value is added
//! to the redactor, so it reads `[redacted:secret]` wherever it would reach
//! the tool or the audit log.

use crate::exit::{Code, Failure};
use sandbox_policy::Policy;
use sandbox_policy::secrets::SecretSource;

/// The largest secret value read.
const MAX_SECRET_BYTES: usize = 64 * 1024;

/// Reads every secret into `policy.secret_values`.
pub fn load(policy: &mut Policy) -> Result<(), Failure> {
    let refused = |name: &str, why: String| Failure::new(Code::Refused, format!("secret `{name}`: {why}"));
    for (name, source) in policy.secrets.clone() {
        let value = match &source {
            SecretSource::Env(var) => match std::env::var(var) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => {
                    return Err(refused(&name, format!("environment variable {var} is not set")));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(refused(&name, format!("environment variable {var} is not UTF-8 text")));
                }
            },
            SecretSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    refused(&name, format!("file `{}`: {}", path.display(), sandbox_policy::io_reason(&e)))
                })?;
                let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
                text.to_owned()
            }
        };
        if value.is_empty() {
            return Err(refused(&name, "its value is empty".into()));
        }
        if value.len() > MAX_SECRET_BYTES {
            return Err(refused(&name, format!("its value is longer than {MAX_SECRET_BYTES} bytes")));
        }
        // Header values and environment variables are one line of text.
        if value.chars().any(char::is_control) {
            return Err(refused(&name, "its value has control characters (a header or variable is one line)".into()));
        }
        policy.redact.redactor.add_secret(&value).map_err(|e| refused(&name, e.to_string()))?;
        policy.secret_values.insert(&name, value);
    }
    Ok(())
}
