//! The system calls of the trampoline that no safe wrapper in our
//! dependencies offers: `unshare`, `mount`, `prctl(PR_SET_NO_NEW_PRIVS)`
//! and installing a seccomp filter. Each is one call with arguments that
//! live for its duration; nothing here keeps a pointer past a call.
//!
//! This module is the host API's only `unsafe` code (audited: plain FFI
//! calls on valid, NUL-terminated strings and a filter that outlives the
//! `prctl` call that copies it into the kernel).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;

/// `unshare(flags)`.
pub(crate) fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare takes no pointers. The trampoline is single-threaded
    // when it calls this (before any thread is started), so no other thread
    // observes the new namespaces half-way.
    let rc = unsafe { libc::unshare(flags) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// `mount(source, target, fstype, flags, data)`; `None` passes NULL.
pub(crate) fn mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let c =
        |s: &str| CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a mount argument"));
    let source = source.map(c).transpose()?;
    let target = c(target)?;
    let fstype = fstype.map(c).transpose()?;
    let data = data.map(c).transpose()?;
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is NULL or a NUL-terminated string that lives
    // until the call returns.
    let rc =
        unsafe { libc::mount(ptr(&source), target.as_ptr(), ptr(&fstype), flags, ptr(&data).cast::<libc::c_void>()) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`: required for a seccomp filter, and
/// no set-user-ID program can regain what the confinement took.
pub(crate) fn no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Installs a seccomp filter (classic BPF) on this thread and, through
/// `exec` and `fork`, on everything it starts.
pub(crate) fn seccomp(filter: &[libc::sock_filter]) -> io::Result<()> {
    let len =
        u16::try_from(filter.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "filter too long"))?;
    let prog = libc::sock_fprog { len, filter: filter.as_ptr().cast_mut() };
    // SAFETY: `prog` points at `filter`, which outlives the call; the
    // kernel copies the program before prctl returns.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog as libc::c_ulong,
            0,
            0,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}
