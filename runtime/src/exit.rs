//! The runtime's own exit codes. A tool's own exit code passes through
//! (a Rust tool built with `std` for wasm32-wasip2 can only report 0 or 1:
//! WASI 0.2's `exit` carries success or failure); the `task-end` event
//! tells the two apart.

/// Exit codes of `sandbox`, documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Code {
    /// `policy explain`: the call would be denied; `audit verify`: the log
    /// is broken.
    Negative = 1,
    /// Invalid usage, manifest, workspace or component.
    Usage = 2,
    /// `[approval] writes = "end-of-task"`: the task's changes were
    /// rejected or expired (or the workspace changed after the diff was
    /// made); nothing was changed.
    Rejected = 3,
    /// Internal error: a bug in sandbox, or the host could not set the
    /// tool up (for example a resource limit of the host process).
    Internal = 70,
    /// `audit forward`: a sink stayed unreachable (or busy); try again
    /// later (EX_TEMPFAIL).
    Unavailable = 75,
    /// The start was refused for who or what asked: an identity token
    /// that does not verify (or none where `[identity] required`), a task
    /// manifest that would widen the standing one, a secret that is not
    /// there. The refusal is on record (`task-start`, `task-end`).
    Refused = 77,
    /// The tool kept calling after `limits.calls` was used up.
    CallLimit = 122,
    /// The tool wrote more than `limits.output` to stdout or stderr.
    OutputLimit = 123,
    /// `limits.time` ran out.
    TimeLimit = 124,
    /// `limits.memory` was reached.
    MemoryLimit = 125,
    /// The audit log could not be opened, locked or written; the run
    /// stopped (fail-closed).
    Audit = 126,
    /// The tool trapped (a panic, `unreachable`, stack exhaustion).
    Trap = 134,
}

/// A failure of `sandbox` itself: an exit code and one line for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The exit code.
    pub code: Code,
    /// One line, naming the file and the cause.
    pub message: String,
}

impl Failure {
    /// A failure with `code`.
    pub fn new(code: Code, message: impl Into<String>) -> Failure {
        Failure { code, message: message.into() }
    }

    /// Invalid usage, manifest, workspace or component (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(Code::Usage, message)
    }

    /// A bug in sandbox (exit 70).
    pub fn internal(message: impl Into<String>) -> Failure {
        Failure::new(Code::Internal, message)
    }
}
