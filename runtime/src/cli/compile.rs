//! `sandbox compile`: fills the compile cache ahead of time.

use crate::cache::{Cache, Source};
use crate::exit::Failure;
use clap::Args;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// Components (wasm32-wasip2) to compile into the cache; prints one
    /// cache key per component, in order.
    #[arg(value_name = "COMPONENT.wasm", required = true)]
    components: Vec<PathBuf>,
}

pub fn execute(a: CompileArgs) -> Result<i32, Failure> {
    let dir = crate::cache::default_dir()
        .ok_or_else(|| Failure::usage("no compile cache directory: set SANDBOX_CACHE_DIR (or HOME)"))?;
    let cache = Cache::open(&dir)
        .map_err(|e| Failure::usage(format!("compile cache `{}`: {}", dir.display(), sandbox_policy::io_reason(&e))))?;
    let engine = crate::run::engine().map_err(|e| Failure::internal(format!("cannot configure the engine: {e}")))?;
    let mut out = String::new();
    for path in &a.components {
        let bytes = std::fs::read(path).map_err(|e| {
            Failure::usage(format!("component `{}`: {}", path.display(), sandbox_policy::io_reason(&e)))
        })?;
        let digest = Sha256::digest(&bytes);
        let (_, source) = cache.component(&engine, &bytes, &digest).map_err(|e| {
            Failure::usage(format!("component `{}`: {}", path.display(), crate::run::component_error(&bytes, &e)))
        })?;
        if source == Source::Uncached {
            return Err(Failure::internal(format!(
                "component `{}`: compiled, but the entry could not be written to `{}`",
                path.display(),
                cache.dir().display()
            )));
        }
        out.push_str(&crate::cache::entry_key(&engine, &digest));
        out.push('\n');
    }
    super::emit(&out);
    Ok(0)
}
