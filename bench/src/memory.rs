//! Host memory per idle sandbox: many instances of `bench-read`, each with
//! its own store, WASI context and `sandbox:host` corridor (workspace
//! handle, network context, audit log writer, clock), kept alive at once in
//! one process; the growth of the resident set divided by their number.

use anyhow::{Context, Result};
use sandbox_audit::{AuditLog, Principal};
use sandbox_host_api::approval::DenyApprover;
use sandbox_host_api::net::Net;
use sandbox_host_api::workspace::Workspace;
use sandbox_host_api::{HostCtx, RunClock, RunParts, TaskInfo};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// What one measurement found.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub instances: usize,
    /// Resident-set growth per instance.
    pub per_instance_bytes: f64,
    /// The linear memory each guest declares (its initial size: reserved,
    /// resident only where touched).
    pub guest_memory_bytes: f64,
}

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    host: HostCtx,
    /// Linear memory the guest asked for, in bytes.
    memory: usize,
}

impl ResourceLimiter for State {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.memory += desired.saturating_sub(current);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, _desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

fn resident_bytes() -> Result<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: f64 = statm.split_whitespace().nth(1).context("statm")?.parse()?;
    Ok(pages * rustix::param::page_size() as f64)
}

/// Instantiates `guest` `count` times under `manifest` (in workspace `ws`)
/// and measures the memory they hold.
pub fn per_instance(guest: &Path, ws: &Path, manifest: &Path, count: usize, pooling: bool) -> Result<Measured> {
    // The engine `sandbox run` uses (runtime/src/run.rs `engine`).
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        // A component instance here holds several core instances, each
        // with its tables; one first instance is made before the others.
        let n = count as u32 + 1;
        pool.total_component_instances(n);
        pool.total_core_instances(n * 8);
        pool.total_memories(n * 2);
        pool.total_tables(n * 8);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    let engine = Engine::new(&config)?;
    let component = Component::from_file(&engine, guest)?;
    let mut linker: Linker<State> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    sandbox_host_api::add_to_linker(&mut linker, |s: &mut State| &mut s.host)?;
    let pre = linker.instantiate_pre(&component)?;
    let policy = Arc::new(sandbox_policy::load(manifest)?);
    let log_dir = tempfile::tempdir()?;
    let make = || -> Result<(Store<State>, wasmtime::component::Instance)> {
        let audit = AuditLog::open(&log_dir.path().join("audit.jsonl"), Duration::from_secs(10))?;
        let host = HostCtx::new(RunParts {
            policy: policy.clone(),
            workspace: Workspace::open_ambient(ws)?,
            net: Net::new_ambient(&[], Vec::new()).map_err(anyhow::Error::msg)?,
            audit: Arc::new(Mutex::new(audit)),
            approver: Box::new(DenyApprover),
            task: TaskInfo {
                id: "bench".into(),
                user: "bench".into(),
                agent: "bench-read".into(),
                component: "sha256:bench".into(),
                intent: None,
                principal: Principal { tier: "api".into(), ..Principal::default() },
            },
            clock: RunClock::new(Duration::from_secs(600)),
            stop: Arc::new(OnceLock::new()),
            launcher: None,
        });
        let wasi = WasiCtx::builder().args(&["bench-read"]).build();
        let mut store = Store::new(&engine, State { wasi, table: ResourceTable::new(), host, memory: 0 });
        store.limiter(|s| s);
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = pre.instantiate(&mut store)?;
        Ok((store, instance))
    };
    // One first, so that what every instance shares (code, the linker's
    // tables, allocator set-up) is not counted.
    let first = make()?;
    let guest_memory = first.0.data().memory;
    let before = resident_bytes()?;
    let mut alive = Vec::with_capacity(count);
    for _ in 0..count {
        alive.push(make()?);
    }
    let after = resident_bytes()?;
    let measured = Measured {
        instances: count,
        per_instance_bytes: (after - before) / count as f64,
        guest_memory_bytes: guest_memory as f64,
    };
    drop((alive, first));
    Ok(measured)
}
