//! The compile cache: each component is compiled once per engine
//! configuration and kept on disk as wasmtime's precompiled artifact.
//!
//! The directory is `$SANDBOX_CACHE_DIR`, else `$XDG_CACHE_HOME/sandbox`,
//! else `~/.cache/sandbox`: mode 0700 and owned by the account `sandbox`
//! runs as. It holds
//! - `.sandbox-private` (`sandbox_audit::owned::PRIVATE_MARKER`): the
//!   marker that makes the file-system door of *every* run refuse the
//!   directory and everything in it, whichever run's workspace it lies in
//!   (so a tool of another run cannot read the key and reseal an entry);
//! - `key`: 32 random bytes (mode 0600), the HMAC key entries are sealed with;
//! - `<KEY>.cwasm`: one entry per component and engine configuration:
//!   [`MAGIC`], HMAC-SHA256(key, KEY ‖ artifact), then the artifact.
//!
//! KEY is the SHA-256 of the cache format, the component's SHA-256 and the
//! engine's precompile compatibility hash (target, compiler flags and the
//! CPU features it compiles for, tunables, wasm features, wasmtime's
//! version): an entry made by another configuration has another name.
//!
//! Loading precompiled code is `unsafe` in wasmtime: bytes it did not make
//! could be any machine code. An entry is deserialized only from memory,
//! after its MAC checked out over those same bytes (no file is mapped, so
//! nothing can change them after the check). An entry that is not a
//! regular file owned by this account without group or other access, whose
//! MAC does not match, or that wasmtime refuses (another version or
//! configuration) is deleted and compiled anew: never trusted. A cache
//! directory found without its marker (made by an older version, or
//! reachable before it was marked) may have had its key read: its key is
//! replaced, so that every entry sealed with it is rebuilt.

use hmac::Mac;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::hash::Hasher;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The first bytes of every entry; a new layout gets a new magic.
const MAGIC: &[u8; 8] = b"sbxcwsm1";
/// Mixed into every KEY: a new layout or key scheme changes every name.
const FORMAT: &[u8] = b"sandbox compile cache v1";
const TAG_LEN: usize = 32;
const HEADER_LEN: usize = MAGIC.len() + TAG_LEN;
const KEY_FILE: &str = "key";

type HmacSha256 = hmac::Hmac<Sha256>;

/// Where a run's component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Loaded from a verified cache entry.
    Cached,
    /// Compiled now, and stored in the cache.
    Compiled,
    /// Compiled now; the cache could not be used (see the warning).
    Uncached,
}

/// An open, checked cache directory.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    key: [u8; 32],
}

/// The cache directory this process uses, from the environment.
pub fn default_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("SANDBOX_CACHE_DIR") {
        return Some(dir);
    }
    // The XDG spec ignores relative values.
    if let Some(xdg) = var("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Some(xdg.join("sandbox"));
    }
    var("HOME").map(|home| home.join(".cache").join("sandbox"))
}

impl Cache {
    /// Opens (creating it when missing) the cache in `dir`, after checking
    /// it is a directory owned by this account; a looser mode is tightened
    /// to 0700.
    pub fn open(dir: &Path) -> io::Result<Cache> {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let dir = fs::canonicalize(dir)?;
        let meta = fs::symlink_metadata(&dir)?;
        if !meta.is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a directory"));
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("owned by uid {}, not by this account (uid {me})", meta.uid()),
            ));
        }
        if meta.mode() & 0o077 != 0 {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        }
        let marker = dir.join(sandbox_audit::owned::PRIVATE_MARKER);
        if !fs::symlink_metadata(&marker).is_ok_and(|m| m.is_file()) {
            // Unmarked, any run's tool could have reached the key.
            match fs::symlink_metadata(dir.join(KEY_FILE)) {
                Ok(_) => remove_bad_key(&dir.join(KEY_FILE), "the directory was not marked private")?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            sandbox_audit::owned::mark_private(&dir)?;
        }
        let key = load_key(&dir)?;
        Ok(Cache { dir, key })
    }

    /// The directory (canonical).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry file for `key`.
    pub fn entry_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    /// The component for `bytes` (whose SHA-256 is `digest`): from a
    /// verified entry, else compiled and stored. A compile error (not a
    /// valid component) is returned as is; a cache that cannot be written
    /// is warned about and the compiled component used.
    pub fn component(&self, engine: &Engine, bytes: &[u8], digest: &[u8]) -> wasmtime::Result<(Component, Source)> {
        let key = entry_key(engine, digest);
        if let Some(component) = self.load(engine, &key) {
            tracing::debug!(key = %key, "compile cache: hit");
            return Ok((component, Source::Cached));
        }
        let component = Component::from_binary(engine, bytes)?;
        let stored = component.serialize().map_err(io::Error::other).and_then(|artifact| self.store(&key, &artifact));
        match stored {
            Ok(()) => {
                tracing::debug!(key = %key, "compile cache: compiled and stored");
                Ok((component, Source::Compiled))
            }
            Err(e) => {
                tracing::warn!("compile cache `{}`: cannot store an entry: {e}", self.dir.display());
                Ok((component, Source::Uncached))
            }
        }
    }

    /// The verified entry for `key`, if there is one. A bad entry is
    /// deleted (and logged), and the caller compiles anew.
    fn load(&self, engine: &Engine, key: &str) -> Option<Component> {
        let path = self.entry_path(key);
        let sealed = match read_private(&path) {
            Ok(sealed) => sealed,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => return self.discard(&path, &e.to_string()),
        };
        let verified = match self.open_sealed(key, &sealed) {
            Ok(verified) => verified,
            Err(why) => return self.discard(&path, why),
        };
        match deserialize_verified(engine, verified) {
            Ok(component) => Some(component),
            Err(e) => self.discard(&path, &format!("refused by wasmtime: {}", crate::run::one_line(&e))),
        }
    }

    fn discard(&self, path: &Path, why: &str) -> Option<Component> {
        tracing::warn!("compile cache: discarding `{}` ({why}); compiling anew", path.display());
        if let Err(e) = fs::remove_file(path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("compile cache: cannot delete `{}`: {e}", path.display());
        }
        None
    }

    /// Writes the entry for `key` atomically (a 0600 temporary file in the
    /// directory, renamed over the name). Not fsynced: an entry torn by a
    /// crash fails its MAC and is rebuilt.
    fn store(&self, key: &str, artifact: &[u8]) -> io::Result<()> {
        let mut tmp = tempfile::Builder::new().prefix(".entry-").tempfile_in(&self.dir)?;
        tmp.write_all(MAGIC)?;
        tmp.write_all(&self.tag(key, artifact))?;
        tmp.write_all(artifact)?;
        tmp.persist(self.entry_path(key)).map_err(|e| e.error)?;
        Ok(())
    }

    fn tag(&self, key: &str, artifact: &[u8]) -> [u8; TAG_LEN] {
        self.mac(key, artifact).finalize().into_bytes().into()
    }

    fn mac(&self, key: &str, artifact: &[u8]) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(key.as_bytes());
        mac.update(artifact);
        mac
    }

    /// Checks an entry's magic and MAC (binding it to its name `key`).
    fn open_sealed<'a>(&self, key: &str, sealed: &'a [u8]) -> Result<Verified<'a>, &'static str> {
        if sealed.len() < HEADER_LEN || &sealed[..MAGIC.len()] != MAGIC {
            return Err("not an entry of this cache format");
        }
        let (tag, artifact) = sealed[MAGIC.len()..].split_at(TAG_LEN);
        self.mac(key, artifact).verify_slice(tag).map_err(|_| "its MAC does not match: corrupt or not made here")?;
        Ok(Verified(artifact))
    }
}

/// Artifact bytes whose MAC checked out under this cache's key: bytes this
/// process's own [`Cache::store`] wrote from wasmtime's `serialize`.
struct Verified<'a>(&'a [u8]);

/// The one place `sandbox` runs `unsafe` code.
#[allow(unsafe_code)]
fn deserialize_verified(engine: &Engine, artifact: Verified<'_>) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` requires bytes produced by wasmtime's
    // own `serialize`/`precompile_component`; given anything else it could
    // run arbitrary code. `Verified` bytes are exactly such output:
    // `Cache::store` sealed them with HMAC-SHA256 under a 32-byte random
    // key that lives only in the cache directory, which is owned by this
    // account and closed to everyone else (0700, key 0600; checked on
    // open), which the run refuses to place inside its tool's workspace,
    // and which carries the private marker that the file-system door of
    // every run refuses (a key found in an unmarked directory is replaced).
    // The MAC was checked over these very bytes, held in memory, so they
    // cannot change between the check and this call (unlike a mapped
    // file). Output of another wasmtime version or engine configuration is
    // refused by wasmtime itself with an error, which is safe.
    unsafe { Component::deserialize(engine, artifact.0) }
}

/// The cache KEY for a component (its SHA-256 `digest`) on `engine`.
pub fn entry_key(engine: &Engine, digest: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(FORMAT);
    h.update(digest);
    h.update(engine_hash(engine));
    hex::encode(h.finalize())
}

/// SHA-256 over wasmtime's precompile compatibility hash (a few hundred
/// bytes of settings: microseconds).
fn engine_hash(engine: &Engine) -> [u8; 32] {
    let mut hasher = ShaHasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hasher.0.finalize().into()
}

/// A `Hasher` that feeds SHA-256: stable across processes and Rust
/// versions, unlike `DefaultHasher`.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes(d[..8].try_into().unwrap_or_default())
    }
}

/// Reads a file that must be a regular file (not a symlink), owned by
/// this account, with no group or other access.
fn read_private(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = File::options()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32 | rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                io::Error::new(io::ErrorKind::InvalidData, "a symbolic link")
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a regular file"));
    }
    if meta.uid() != me {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("owned by uid {}", meta.uid())));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("mode {:o} gives others access", meta.mode() & 0o777),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The cache's HMAC key: read, or made (random) when missing or unusable.
fn load_key(dir: &Path) -> io::Result<[u8; 32]> {
    let path = dir.join(KEY_FILE);
    for _ in 0..3 {
        match read_private(&path) {
            Ok(bytes) => match <[u8; 32]>::try_from(bytes.as_slice()) {
                Ok(key) => return Ok(key),
                Err(_) => remove_bad_key(&path, "not 32 bytes")?,
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => remove_bad_key(&path, &e.to_string())?,
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(io::Error::other)?;
        let mut tmp = tempfile::Builder::new().prefix(".key-").tempfile_in(dir)?;
        tmp.write_all(&key)?;
        tmp.as_file().sync_all()?;
        match tmp.persist_noclobber(&path) {
            Ok(_) => return Ok(key),
            // Another process made it first: use theirs.
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.error),
        }
    }
    Err(io::Error::other(format!("`{}` keeps changing", path.display())))
}

/// A key file that cannot be trusted is replaced; every entry sealed with
/// it fails its MAC from then on and is rebuilt.
fn remove_bad_key(path: &Path, why: &str) -> io::Result<()> {
    tracing::warn!("compile cache: replacing the key `{}` ({why})", path.display());
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The cache a run in the workspace `root` (canonical) uses; `None` (with
/// a warning) when it cannot be used, and the run compiles without it. A
/// cache inside the workspace is refused: a tool that could write there
/// could plant code for later runs.
pub fn for_run(root: &Path) -> Result<Option<Cache>, String> {
    let Some(dir) = default_dir() else {
        tracing::warn!("compile cache: no directory (set SANDBOX_CACHE_DIR or HOME); compiling without it");
        return Ok(None);
    };
    if lenient_canonical(&dir).starts_with(root) {
        return Err(format!(
            "the compile cache `{}` lies inside the workspace `{}`, within the tool's reach; set SANDBOX_CACHE_DIR to a directory outside it",
            dir.display(),
            root.display()
        ));
    }
    match Cache::open(&dir) {
        Ok(cache) => Ok(Some(cache)),
        Err(e) => {
            tracing::warn!("compile cache `{}` cannot be used ({e}); compiling without it", dir.display());
            Ok(None)
        }
    }
}

/// `path` made absolute with symlinks resolved as far as it exists.
pub(crate) fn lenient_canonical(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut cur = path;
    loop {
        if let Ok(real) = fs::canonicalize(cur) {
            return rest.iter().rev().fold(real, |p, name| p.join(name));
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                cur = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            }
            _ => return path.to_owned(),
        }
    }
}
