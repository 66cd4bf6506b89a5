//! `sandbox:host/task`: the task id and the tool's stated intent. These
//! calls produce no events of their own and do not count as host calls;
//! the intent appears on the events of later calls.

use crate::bindings::sandbox::host::task as wit;
use crate::corridor::HostCtx;

/// The longest intent kept, in bytes; longer text is cut at a character
/// boundary.
pub const MAX_INTENT_BYTES: usize = 1024;

impl wit::Host for HostCtx {
    fn id(&mut self) -> wasmtime::Result<String> {
        Ok(self.corridor.task_id().to_owned())
    }

    fn set_intent(&mut self, reason: String) -> wasmtime::Result<()> {
        let mut end = reason.len().min(MAX_INTENT_BYTES);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let text = &reason[..end];
        self.intent = if text.trim().is_empty() { None } else { Some(text.to_owned()) };
        Ok(())
    }
}
