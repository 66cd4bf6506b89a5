//! The `sandbox:host` WIT interfaces on the host side, and the corridor
//! every call walks.
//!
//! [`add_to_linker`] links the four interfaces (`fs`, `http`, `process`,
//! `task`) into a component linker; each store holds one [`HostCtx`]. Each
//! interface lives in its own module and supplies only the parts that
//! differ (how a target is normalised and decided, what the effect is); the
//! [`corridor`] does the counting, approval, audit and durability once.
//!
//! Two tiers of error: a refusal is the WIT `error` variant returned to the
//! guest; a failure to write the audit log (or a run limit) is a trap that
//! ends the task, with the reason in the run's [`StopCell`].

pub mod approval;
pub mod budget;
mod confine_sys;
pub mod corridor;
mod diff;
pub mod exec;
mod fs;
mod http;
pub mod net;
pub mod overlay;
mod process;
pub mod staging;
mod task;
mod wasi_http;
pub mod workspace;

pub use corridor::{Corridor, HostCtx, RunClock, RunParts, Settled, SharedAudit, Stop, StopCell, TaskInfo, lock_audit};

/// The generated bindings of the `tool` world (imports only).
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tool",
        imports: { default: trappable },
    });
}

use bindings::sandbox::host::types;

impl types::Host for HostCtx {}

/// Selects [`HostCtx`] as the data behind the generated host traits.
#[derive(Debug)]
pub struct HostData;

impl wasmtime::component::HasData for HostData {
    type Data<'a> = &'a mut HostCtx;
}

/// Links `sandbox:host` into `linker`; `get` finds the run's [`HostCtx`] in
/// the store's data.
pub fn add_to_linker<T: 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> &mut HostCtx,
) -> wasmtime::Result<()> {
    bindings::Tool::add_to_linker::<T, HostData>(linker, get)
}
