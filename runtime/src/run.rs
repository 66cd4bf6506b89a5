//! One run of a tool: from manifest and component to exit code, with a
//! `task-start` and a `task-end` event around everything the tool does.
//!
//! The tool gets wasi:cli (its arguments, stdout and stderr, an empty
//! environment, stdin only when it is not a terminal), wasi:clocks and
//! wasi:random; wasi:filesystem without any preopened directory; wasi:sockets
//! with TCP, UDP and name lookups off and every address refused. So the
//! `sandbox:host` interfaces are its only way out.

use crate::approver::{ServiceApprover, TtyApprover, has_terminal_ambient};
use crate::exit::{Code, Failure};
use crate::principal::Claimed;
use crate::stdio::{GuardedOutput, Stream};
use sandbox_audit::{AuditLog, Event, Kind, LimitsRecord, Origin};
use sandbox_host_api::approval::{Approver, DenyApprover};
use sandbox_host_api::budget::HostMemory;
use sandbox_host_api::exec::Launcher;
use sandbox_host_api::net::Net;
use sandbox_host_api::workspace::Workspace;
use sandbox_host_api::{HostCtx, RunClock, RunParts, Settled, SharedAudit, Stop, StopCell, TaskInfo, lock_audit};
use sandbox_policy::{ApprovalVia, Policy, RelPath, Tier};
use sandbox_redact::Counts;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasmtime::component::{Component, HasData, Linker, Resource, ResourceTable, ResourceTableError};
use wasmtime::{Config, Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::p2::bindings::sync::io::poll as wasi_poll;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// How often the epoch advances: the granularity of the time limit.
const TICK: Duration = Duration::from_millis(10);
/// The environment variable holding the runner's token for an approval
/// service.
pub const APPROVAL_TOKEN_VAR: &str = "SANDBOX_APPROVAL_TOKEN";

/// How long past its time limit a run blocked in a host call (a sleep, a
/// read of stdin) is given before the watchdog ends the process.
const WATCHDOG_GRACE: Duration = Duration::from_secs(1);
/// How long an append may wait for another writer's lock on the log.
const AUDIT_LOCK_WAIT: Duration = Duration::from_secs(10);

/// What one table element is counted as against `limits.memory`: the
/// largest element wasmtime stores (a continuation reference; a function
/// reference takes 8 bytes).
const TABLE_ELEMENT_BYTES: u64 = 16;
/// The most host resources (streams, pollables, HTTP requests, bodies and
/// fields...) a tool may hold at once; one more traps with `memory-limit`.
pub const MAX_RESOURCES: usize = 10_000;
/// The most wasmtime's own component handles (each a few bytes) a tool
/// may hold at once; one more traps with `memory-limit`.
const MAX_COMPONENT_HANDLES: usize = 100_000;
/// What the process may grow by, beyond the tool's `limits.memory`, the
/// host-held bodies' budget and staged changes, before the run is stopped
/// with `memory-limit`: wasmtime's own state for the instances, thread
/// stacks, the allocator's slack, the entries of the resource table.
pub const HOST_HEADROOM: u64 = 64 << 20;

/// What `sandbox run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The component file.
    pub component: PathBuf,
    /// The manifest file.
    pub manifest: PathBuf,
    /// Overrides `[workspace] root`.
    pub workspace: Option<PathBuf>,
    /// Overrides `[audit] path`.
    pub audit: Option<PathBuf>,
    /// Overrides `[approval] via`.
    pub approve: Option<ApprovalVia>,
    /// The task id; default: a fresh UUIDv7.
    pub task_id: Option<String>,
    /// Who the run acts for; default: the OS user.
    pub user: Option<String>,
    /// The tool's name; default: the component's file stem.
    pub agent: Option<String>,
    /// Why the task runs.
    pub intent: Option<String>,
    /// Arguments for the tool.
    pub args: Vec<String>,
    /// Host names pinned to addresses instead of DNS (`--resolve`).
    pub resolve: Vec<(String, Vec<std::net::IpAddr>)>,
    /// An identity token to verify against `[identity]`.
    pub identity_token: Option<String>,
    /// The caller tier; default: interactive with a terminal, else api.
    pub tier: Option<Tier>,
    /// The delegation chain (`--on-behalf-of`), in order.
    pub on_behalf_of: Vec<String>,
    /// A task manifest that narrows the standing one.
    pub task_manifest: Option<PathBuf>,
}

/// The store's data: WASI state, the host state and the run's limits.
struct RunState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    host: HostCtx,
    memory: MemoryLimiter,
    clock: Arc<RunClock>,
    timed_out: bool,
    /// Set by the ticker when the process outgrew its bound (see [`Growth`]).
    grown: Arc<Growth>,
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Standard wasi:http goes through the corridor: the host state is the
/// hook that sends every request.
impl WasiHttpView for RunState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { hooks: &mut self.host, table: &mut self.table, ctx: &mut self.http }
    }
}

/// `wasi:io/poll` as wasmtime-wasi implements it, telling the run's clock
/// while the tool is blocked in `poll` or `pollable.block`: the only time a
/// wait for a human on a `wasi:http` request (carried by a background
/// task) is taken off `limits.time`. A tool that computes meanwhile is
/// charged for it.
struct Polling;

impl HasData for Polling {
    type Data<'a> = PollView<'a>;
}

struct PollView<'a> {
    table: &'a mut ResourceTable,
    clock: &'a Arc<RunClock>,
}

impl wasi_poll::Host for PollView<'_> {
    fn poll(&mut self, pollables: Vec<Resource<wasi_poll::Pollable>>) -> wasmtime::Result<Vec<u32>> {
        let _blocked = self.clock.blocked();
        wasi_poll::Host::poll(self.table, pollables)
    }
}

impl wasi_poll::HostPollable for PollView<'_> {
    fn ready(&mut self, pollable: Resource<wasi_poll::Pollable>) -> wasmtime::Result<bool> {
        wasi_poll::HostPollable::ready(self.table, pollable)
    }

    fn block(&mut self, pollable: Resource<wasi_poll::Pollable>) -> wasmtime::Result<()> {
        let _blocked = self.clock.blocked();
        wasi_poll::HostPollable::block(self.table, pollable)
    }

    fn drop(&mut self, pollable: Resource<wasi_poll::Pollable>) -> wasmtime::Result<()> {
        wasi_poll::HostPollable::drop(self.table, pollable)
    }
}

/// Refuses growth of linear memories and tables beyond the limit (the
/// total over all of the component's memories and tables, a table element
/// counted as [`TABLE_ELEMENT_BYTES`]) and remembers that it did.
struct MemoryLimiter {
    limit: u64,
    total: u64,
    hit: bool,
}

impl MemoryLimiter {
    fn grow(&mut self, by: u64) -> bool {
        match self.total.checked_add(by).filter(|&t| t <= self.limit) {
            Some(total) => {
                self.total = total;
                true
            }
            None => {
                self.hit = true;
                false
            }
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(self.grow(desired.saturating_sub(current) as u64))
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(self.grow((desired.saturating_sub(current) as u64).saturating_mul(TABLE_ELEMENT_BYTES)))
    }
}

/// The backstop for every byte the host holds that no budget names: the
/// process's resident memory may grow, from just before the tool starts,
/// by its `limits.memory`, the host-held bodies' budget, the staged
/// changes' budget and [`HOST_HEADROOM`]; beyond that the ticker stops the
/// run with `memory-limit`.
struct Growth {
    /// The most resident bytes allowed.
    bound: u64,
    /// The resident bytes when the bound was passed (0: not passed).
    seen: AtomicU64,
}

/// The process's resident memory in bytes (Linux: `VmRSS` in
/// `/proc/self/status`).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib.saturating_mul(1024))
}

impl Growth {
    fn new(allowed: u64) -> Growth {
        let bound = resident_bytes().map_or(u64::MAX, |now| now.saturating_add(allowed));
        Growth { bound, seen: AtomicU64::new(0) }
    }

    /// Measures now; true once the bound has been passed.
    fn check(&self) -> bool {
        if self.passed() {
            return true;
        }
        match resident_bytes() {
            Some(now) if now > self.bound => {
                self.seen.store(now, Ordering::Release);
                true
            }
            _ => false,
        }
    }

    fn passed(&self) -> bool {
        self.seen.load(Ordering::Acquire) != 0
    }

    fn ending(&self, memory: u64) -> Ending {
        Ending {
            code: Code::MemoryLimit as i32,
            status: "memory-limit",
            reason: format!(
                "the host memory held for the tool grew past its bound ({} resident bytes, more than {} allowed with a memory limit of {memory} bytes)",
                self.seen.load(Ordering::Acquire),
                self.bound
            ),
        }
    }
}

/// How a run ended, as recorded on `task-end`.
struct Ending {
    code: i32,
    status: &'static str,
    reason: String,
}

fn validate_label(what: &str, value: &str, max: usize) -> Result<(), Failure> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(Failure::usage(format!(
            "{what} `{}` must be 1 to {max} bytes of text without control characters",
            value.escape_debug()
        )));
    }
    Ok(())
}

/// A person's name (`--user`, `--on-behalf-of`): a label that also names
/// one person unambiguously (one script, no invisible characters).
fn validate_person(what: &str, value: &str) -> Result<(), Failure> {
    validate_label(what, value, 256)?;
    sandbox_identity::names::check(value).map_err(|m| Failure::usage(format!("{what} `{}` {m}", value.escape_debug())))
}

/// The account `sandbox` runs as (`$USER`, else `uid:N`).
pub(crate) fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty() && !u.chars().any(char::is_control))
        .unwrap_or_else(|| format!("uid:{}", rustix::process::getuid().as_raw()))
}

/// Makes the manifest, the secrets' files, the signing key and every file
/// the audit log owns (see `sandbox_audit::owned`: its segments, prune
/// records, checkpoints, sink cursors and locks, the staging journals,
/// and any name the log may adopt later) untouchable for the tool when
/// they lie inside the workspace `root` (an absolute, canonical path), and
/// returns the ones that do (for the log's families: the log, or the
/// checkpoint file).
pub fn protect_own_files(policy: &mut Policy, root: &Path, manifest: &Path, audit: &Path) -> Vec<PathBuf> {
    let mut inside = Vec::new();
    let mut files = vec![(manifest.to_owned(), "manifest")];
    if let Some(key) = &policy.audit.signing_key {
        files.push((key.clone(), "audit-signing-key"));
        files.push((sandbox_audit::checkpoint::public_key_path(key), "audit-signing-key"));
    }
    for source in policy.secrets.values() {
        if let sandbox_policy::secrets::SecretSource::File(file) = source {
            files.push((file.clone(), "secret"));
        }
    }
    let relative = |file: &Path| {
        lenient_real(file)
            .and_then(|f| f.strip_prefix(root).ok().and_then(|r| r.to_str().map(str::to_owned)))
            .and_then(|r| RelPath::normalise(&r).ok())
    };
    for (file, what) in files {
        if let Some(rel) = relative(&file) {
            policy.fs.protect_path(&rel, what);
            inside.push(file);
        }
    }
    let checkpoints = policy.audit.checkpoints_for(audit);
    for family in sandbox_audit::owned::families(audit, Some(&checkpoints)) {
        let what = family.what;
        let shown = if what == "audit-log" { audit.to_owned() } else { checkpoints.clone() };
        // Every file of the family is made in the directory as given, under
        // the name as given; a log that is a symlink is also protected where
        // it leads.
        let dir_rel = Some(crate::cache::lenient_canonical(&family.dir)).and_then(|d| {
            let r = d.strip_prefix(root).ok()?.to_str()?.to_owned();
            if r.is_empty() { Some(RelPath::root()) } else { RelPath::normalise(&r).ok() }
        });
        let mut found = false;
        if let Some(dir) = dir_rel {
            policy.fs.protect_family(&dir, &family.base, sandbox_audit::owned::owned_rule, what);
            found = true;
        }
        if let Some(real) = std::fs::canonicalize(family.dir.join(&family.base)).ok().and_then(|f| relative(&f)) {
            policy.fs.protect_path(&real, what);
            found = true;
        }
        if found {
            inside.push(shown);
        }
    }
    inside
}

/// `file` made absolute and real: canonical when it exists, else its
/// directory made canonical joined with its name (a log before the first
/// run).
fn lenient_real(file: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(file).ok().or_else(|| {
        let parent = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Some(std::fs::canonicalize(parent).ok()?.join(file.file_name()?))
    })
}

/// Runs a tool to its end and returns the exit code.
pub fn run(req: RunRequest) -> Result<i32, Failure> {
    let mut policy = sandbox_policy::load(&req.manifest).map_err(|e| Failure::usage(e.to_string()))?;
    if req.identity_token.is_some() && req.user.is_some() {
        return Err(Failure::usage(
            "--user cannot be combined with an identity token: the token's subject is the user",
        ));
    }
    for name in &req.on_behalf_of {
        validate_person("--on-behalf-of", name)?;
    }
    let task_manifest = match &req.task_manifest {
        Some(path) => Some(sandbox_policy::narrow::load_task(path).map_err(|e| Failure::usage(e.to_string()))?),
        None => None,
    };
    let task_id = req.task_id.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    validate_label("task id", &task_id, 128)?;
    let user = req.user.clone().unwrap_or_else(os_user);
    validate_person("user", &user)?;
    let agent = match &req.agent {
        Some(a) => a.clone(),
        None => req.component.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "tool".into()),
    };
    validate_label("agent", &agent, 256)?;
    if let Some(i) = &req.intent {
        validate_label("intent", i, 1024)?;
    }

    let audit_path = req.audit.clone().unwrap_or_else(|| policy.audit_path.clone());
    let mut log = AuditLog::open(&audit_path, AUDIT_LOCK_WAIT).map_err(|e| Failure::new(Code::Audit, e.to_string()))?;
    log.set_rotate(policy.audit.rotate);
    let audit: SharedAudit = Arc::new(Mutex::new(log));
    // The `[[audit.sink]]`s are fed from the file in the background; when
    // this returns (by any path), they get `forward::DRAIN` to catch up.
    let _forwarder = crate::forward::Forwarder::start_ambient(
        &audit_path,
        &policy.audit.checkpoints_for(&audit_path),
        &policy.audit.sinks,
    );

    // From here on a refused start is on record.
    let component_bytes = std::fs::read(&req.component);
    let component_digest = component_bytes.as_ref().map(Sha256::digest).unwrap_or_default();
    let component_hash = match &component_bytes {
        Ok(_) => format!("sha256:{}", hex::encode(component_digest)),
        Err(_) => "sha256:unreadable".into(),
    };
    let tier = req.tier.unwrap_or_else(|| if has_terminal_ambient() { Tier::Interactive } else { Tier::Api });
    let claimed = Claimed { token: req.identity_token.as_deref(), user, tier, delegation: req.on_behalf_of.clone() };
    let (who, refusal) = match crate::principal::establish(&policy, claimed) {
        Ok(who) => (who, None),
        Err(refused) => (refused.0, Some(refused.1)),
    };
    let mut principal = who.principal;
    principal.task_policy = task_manifest.as_ref().map(|t| t.hash.clone());
    let task = TaskInfo {
        id: task_id,
        user: who.user,
        agent,
        component: component_hash,
        intent: req.intent.clone(),
        principal,
    };
    // A torn last line the open cut off is recorded as this run's `finding`,
    // at the start of its first append (before `task-start`).
    lock_audit(&audit).set_origin(Origin {
        task: task.id.clone(),
        user: task.user.clone(),
        agent: task.agent.clone(),
        component: task.component.clone(),
        policy: policy.hash.clone(),
    });
    // With a signing key, every sync that crosses `checkpoint_every` events
    // and the end of the task write a signed checkpoint; a missing or bad
    // key refuses the run before the tool runs.
    if let Err(f) = sign_checkpoints(&audit, &policy, &audit_path) {
        return refused_start(&audit, &policy, &task, &req, f);
    }
    // Who asks and for what scope: a token that does not verify, or a task
    // manifest that would widen the standing one, refuses the run (exit 77).
    if let Some(f) = refusal {
        return refused_start(&audit, &policy, &task, &req, f);
    }
    policy = match &task_manifest {
        None => policy.for_caller(&who.caller),
        Some(t) => match sandbox_policy::narrow::apply(&policy, t, &who.caller) {
            Ok(effective) => effective,
            Err(w) => {
                let path = req.task_manifest.as_deref().unwrap_or(Path::new("")).display().to_string();
                let f = Failure::new(Code::Refused, format!("task manifest `{path}`: {w}"));
                return refused_start(&audit, &policy, &task, &req, f);
            }
        },
    };
    // The secrets the manifest injects, read now; the tool never sees them.
    if let Err(f) = crate::secrets::load(&mut policy) {
        return refused_start(&audit, &policy, &task, &req, f);
    }
    let root = req.workspace.clone().unwrap_or_else(|| policy.workspace_root.clone());
    let workspace = match Workspace::open_ambient(&root) {
        Ok(ws) => ws,
        Err(e) => {
            let f = Failure::usage(format!("workspace `{}`: {}", root.display(), sandbox_policy::io_reason(&e)));
            return refused_start(&audit, &policy, &task, &req, f);
        }
    };
    let inside = protect_own_files(&mut policy, workspace.root_path(), &req.manifest, &audit_path);
    if let Some(key) = policy.audit.signing_key.as_ref().filter(|k| inside.contains(k)) {
        let f = Failure::usage(format!(
            "signing key `{}` lies inside the workspace, within the tool's reach; keep it outside, readable only by the account sandbox runs as",
            key.display()
        ));
        return refused_start(&audit, &policy, &task, &req, f);
    }
    // Staged changes are journalled beside the audit log, out of the tool's reach.
    if policy.approval_writes == sandbox_policy::Writes::EndOfTask && inside.contains(&audit_path) {
        let f = Failure::usage(format!(
            "`{}` lies inside the workspace; with [approval] writes = \"end-of-task\" the staged changes are journalled beside it, so keep the audit log outside the workspace",
            audit_path.display()
        ));
        return refused_start(&audit, &policy, &task, &req, f);
    }
    // Programs may write the whole workspace (Landlock cannot carve files out
    // of it), so with command rules these must live outside.
    if !policy.process.rules().is_empty()
        && let Some(file) = inside.first()
    {
        let f = Failure::usage(format!(
            "`{}` lies inside the workspace, where the commands this manifest allows could change it; keep the manifest and the audit log outside the workspace",
            file.display()
        ));
        return refused_start(&audit, &policy, &task, &req, f);
    }
    // Bodies the host holds for the tool: as much as the tool may hold
    // itself, and always room for one body of `limits.output`.
    let host_memory = HostMemory::new(policy.limits.memory.max(policy.limits.output));
    // Approved changes that an interrupted run was applying are completed
    // (and recorded) before anything else, once checked against this host's
    // key, the audit log, this workspace and this manifest (see staging.rs).
    let recovering = sandbox_host_api::staging::Who {
        task: task.id.clone(),
        user: task.user.clone(),
        agent: task.agent.clone(),
        component: task.component.clone(),
        policy: policy.hash.clone(),
    };
    let recovery = sandbox_host_api::staging::Recovery {
        audit: &audit,
        audit_path: &audit_path,
        by: &recovering,
        policy: &policy,
        workspace: &workspace,
    };
    if let Err(e) = sandbox_host_api::staging::recover_ambient(&recovery) {
        let f = Failure::internal(format!("the staged changes an interrupted run was applying: {e}"));
        return refused_start(&audit, &policy, &task, &req, f);
    }
    let net = match Net::new_ambient(&policy.http.ca_certs, req.resolve.clone()) {
        Ok(net) => net.with_memory(host_memory.clone()),
        Err(e) => return refused_start(&audit, &policy, &task, &req, Failure::usage(e)),
    };
    let bytes = match component_bytes {
        Ok(b) => b,
        Err(e) => {
            let f =
                Failure::usage(format!("component `{}`: {}", req.component.display(), sandbox_policy::io_reason(&e)));
            return refused_start(&audit, &policy, &task, &req, f);
        }
    };
    // The compile cache (see cache.rs); one inside the workspace is refused.
    let cache = match crate::cache::for_run(workspace.root_path()) {
        Ok(cache) => cache,
        Err(e) => return refused_start(&audit, &policy, &task, &req, Failure::usage(e)),
    };
    let engine = engine().map_err(|e| Failure::internal(format!("cannot configure the engine: {e}")))?;
    let pre = match prepare(&engine, &bytes, &component_digest, cache.as_ref()) {
        Ok(pre) => pre,
        Err(e) => {
            let f = Failure::usage(format!("component `{}`: {}", req.component.display(), component_error(&bytes, &e)));
            return refused_start(&audit, &policy, &task, &req, f);
        }
    };

    let policy = Arc::new(policy);
    let via = req
        .approve
        .clone()
        .or_else(|| policy.approval_via.clone())
        .unwrap_or_else(|| if has_terminal_ambient() { ApprovalVia::Tty } else { ApprovalVia::Deny });
    let approver: Box<dyn Approver> = match &via {
        ApprovalVia::Deny => Box::new(DenyApprover),
        ApprovalVia::Tty => Box::new(TtyApprover::open_ambient(&os_user())),
        ApprovalVia::Service(url) => {
            // The runner's token never reaches the tool: its environment is
            // empty, and programs get only what their rule lists.
            let token = std::env::var(APPROVAL_TOKEN_VAR).unwrap_or_default();
            if token.is_empty() {
                let f = Failure::usage(format!("approval via `{url}` needs the runner token in {APPROVAL_TOKEN_VAR}"));
                return refused_start(&audit, &policy, &task, &req, f);
            }
            Box::new(ServiceApprover::new(url, &token))
        }
    };

    let approver_name = match &via {
        ApprovalVia::Service(url) => format!("service {url}"),
        other => other.name().to_owned(),
    };
    let start_event = |log: &mut AuditLog| {
        let root_text = workspace.root_path().display().to_string();
        let limits = policy.limits;
        let mut redactions = Counts::new();
        let args = policy.redact.redactor.redact_each(&req.args, &mut redactions);
        let intent = task.intent.as_deref().map(|i| policy.redact.redactor.redact(i, &mut redactions));
        log.record(&Event {
            kind: Kind::TaskStart,
            manifest: Some(&policy.name),
            workspace: Some(&root_text),
            args: Some(&args),
            intent: intent.as_deref(),
            redactions: redactions.as_field(),
            approver: Some(&approver_name),
            retention: policy.audit.retention.as_ref().map(|r| r.text.as_str()),
            limits: Some(LimitsRecord {
                memory: limits.memory,
                time_ms: limits.time.as_millis() as u64,
                calls: limits.calls,
                output: limits.output,
            }),
            ..base(&task, &policy)
        });
        log.sync()
    };
    start_event(&mut lock_audit(&audit)).map_err(|e| Failure::new(Code::Audit, e.to_string()))?;

    let stop: StopCell = Arc::new(OnceLock::new());
    let mut wasi = WasiCtx::builder();
    let mut argv = vec![task.agent.clone()];
    argv.extend(req.args.iter().cloned());
    wasi.args(&argv)
        .stdout(GuardedOutput::new(Stream::Stdout, policy.limits.output, audit.clone(), stop.clone()))
        .stderr(GuardedOutput::new(Stream::Stderr, policy.limits.output, audit.clone(), stop.clone()))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        wasi.inherit_stdin();
    }
    let clock = RunClock::new(policy.limits.time);
    // Only runs that may start programs become a subreaper and need the
    // trampoline.
    let launcher = if policy.process.rules().is_empty() {
        None
    } else {
        Some(
            Launcher::current_ambient()
                .map_err(|e| Failure::internal(format!("cannot prepare to start programs: {e}")))?,
        )
    };
    let host = HostCtx::new(RunParts {
        policy: policy.clone(),
        workspace,
        net,
        audit: audit.clone(),
        approver,
        task: task.clone(),
        clock: clock.clone(),
        stop: stop.clone(),
        launcher,
    });
    let calls = host.calls_counter();
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_RESOURCES);
    // Staged changes are held in memory up to `limits.memory` (see staging).
    let staged = if policy.approval_writes == sandbox_policy::Writes::EndOfTask { policy.limits.memory } else { 0 };
    let grown = Arc::new(Growth::new(policy.limits.memory + host_memory.limit() + staged + HOST_HEADROOM));
    let requests = host.requests_ender();
    let state = RunState {
        wasi: wasi.build(),
        http: WasiHttpCtx::new(),
        table,
        host,
        memory: MemoryLimiter { limit: policy.limits.memory, total: 0, hit: false },
        clock: clock.clone(),
        timed_out: false,
        grown: grown.clone(),
    };
    let mut store = Store::new(&engine, state);
    store.limiter(|s| &mut s.memory);
    store.set_max_component_handles(MAX_COMPONENT_HANDLES);
    store.set_epoch_deadline(1);
    // Checked every tick: the time limit, and the ticker's measure of the
    // process's growth.
    store.epoch_deadline_callback(|mut ctx| {
        let s = ctx.data_mut();
        if s.grown.passed() {
            return Ok(UpdateDeadline::Interrupt);
        }
        if s.clock.used() >= s.clock.limit() {
            s.timed_out = true;
            return Ok(UpdateDeadline::Interrupt);
        }
        Ok(UpdateDeadline::Continue(1))
    });

    // Epochs drive the time limit while wasm runs; the watchdog ends a run
    // that is stuck in a blocking host call past its limit.
    let ended = Arc::new(AtomicBool::new(false));
    let ticker = {
        let engine = engine.clone();
        let (ended, clock, audit, task, policy) =
            (ended.clone(), clock.clone(), audit.clone(), task.clone(), policy.clone());
        let (calls, grown) = (calls.clone(), grown.clone());
        std::thread::spawn(move || {
            let mut grown_at: Option<std::time::Instant> = None;
            while !ended.load(Ordering::Acquire) {
                // Parked, not asleep: the run's end unparks it, so joining
                // it does not wait out the rest of a tick.
                std::thread::park_timeout(TICK);
                if grown_at.is_none() && grown.check() {
                    grown_at = Some(std::time::Instant::now());
                }
                engine.increment_epoch();
                let ending = if clock.used() > clock.limit() + WATCHDOG_GRACE {
                    Ending {
                        code: Code::TimeLimit as i32,
                        status: "time-limit",
                        reason: format!(
                            "the run exceeded its time limit of {} while blocked in a host call",
                            humantime::format_duration(clock.limit())
                        ),
                    }
                } else if grown_at.is_some_and(|at| at.elapsed() > WATCHDOG_GRACE) {
                    // Grown past its bound and still in a host call.
                    grown.ending(policy.limits.memory)
                } else {
                    continue;
                };
                // The tool's wasi:http requests end before task-end does.
                requests.end_requests();
                // The intent lives in the blocked store; the calls are shared.
                let counted = Some(calls.load(Ordering::Relaxed));
                let code = match finish(&ended, &audit, &task, &policy, &ending, counted, None) {
                    None => return, // the run ended on its own meanwhile
                    Some(Ok(code)) => code,
                    Some(Err(f)) => {
                        eprintln!("sandbox: error: {}", f.message);
                        f.code as i32
                    }
                };
                std::process::exit(code);
            }
        })
    };
    let (started, result) = match pre.instantiate(&mut store) {
        Ok(cmd) => (true, cmd.wasi_cli_run().call_run(&mut store)),
        Err(e) => (false, Err(e)),
    };
    let state = store.data();
    let ending = classify(result, state, &stop, started);
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // The tool's wasi:http requests still in flight are stopped and on
    // record before anything else ends the task: task-end is its last event.
    state.host.end_requests();
    let ending = settle_staged(state, &stop, ending);
    let Some(code) = finish(&ended, &audit, &task, &policy, &ending, Some(state.host.calls()), state.host.intent())
    else {
        // The watchdog is ending the run and exits the process.
        loop {
            std::thread::park();
        }
    };
    ticker.thread().unpark();
    let _ = ticker.join();
    code
}

/// `[approval] writes = "end-of-task"`: when the tool exited on its own,
/// its staged changes are put to the approver as one diff and applied if
/// approved; not approved, the run exits 3 (`changes-rejected`). Any other
/// ending (a limit, a trap) discards them.
fn settle_staged(state: &RunState, stop: &StopCell, ending: Ending) -> Ending {
    let staged = state.host.staged_paths();
    if staged == 0 {
        return ending;
    }
    if ending.status != "exit" {
        let reason = format!("{}; the changes staged on {staged} path(s) were discarded", ending.reason);
        return Ending { reason, ..ending };
    }
    match state.host.settle_staged() {
        Settled::Nothing | Settled::Applied(_) => ending,
        Settled::Rejected(why) => Ending {
            code: Code::Rejected as i32,
            status: "changes-rejected",
            reason: format!("{}; its changes were not applied: {why}", ending.reason),
        },
        Settled::Failed(why) => Ending {
            code: Code::Internal as i32,
            status: "changes-failed",
            reason: format!("{}; its changes could not be applied: {why}", ending.reason),
        },
        Settled::Stopped => {
            let why = match stop.get() {
                Some(Stop::Audit(msg)) => msg.clone(),
                _ => "it could not be written".into(),
            };
            Ending { code: Code::Audit as i32, status: "audit-failure", reason: format!("audit log failed: {why}") }
        }
    }
}

/// Writes `task-end` once (the run or the watchdog, whichever comes first)
/// and makes the log durable. `None` when the other side already did.
fn finish(
    ended: &AtomicBool,
    audit: &SharedAudit,
    task: &TaskInfo,
    policy: &Policy,
    ending: &Ending,
    calls: Option<u64>,
    intent: Option<&str>,
) -> Option<Result<i32, Failure>> {
    let mut log = lock_audit(audit);
    if ended.swap(true, Ordering::AcqRel) {
        return None;
    }
    let mut redactions = Counts::new();
    let reason = policy.redact.redactor.redact(&ending.reason, &mut redactions);
    let intent = intent.map(|i| policy.redact.redactor.redact(i, &mut redactions));
    let record_end = |log: &mut AuditLog, reason: &str| {
        log.record(&Event {
            kind: Kind::TaskEnd,
            status: Some(ending.status),
            exit_code: Some(ending.code),
            reason: Some(reason),
            calls,
            intent: intent.as_deref(),
            redactions: redactions.as_field(),
            ..base(task, policy)
        })
    };
    record_end(&mut log, &reason);
    // The task's end is checkpointed, unless the run failed to write its
    // log (or a checkpoint): then no checkpoint is written at all.
    let synced = if ending.status == "audit-failure" {
        log.clear_sync_hook();
        log.sync()
    } else {
        log.sync_milestone()
    };
    if let Err(e) = synced {
        // What the run recorded could not be written (a full disk): the
        // task-end alone may still fit, saying how much was lost.
        let unwritten = if ending.status == "audit-failure" { log.discard_pending() } else { 0 };
        if unwritten > 1 {
            record_end(&mut log, &format!("{reason}; {} recorded event(s) could not be written", unwritten - 1));
            if log.sync().is_ok() {
                eprintln!("sandbox: run stopped: {}", ending.reason);
                return Some(Ok(ending.code));
            }
        }
        return Some(Err(Failure::new(Code::Audit, e.to_string())));
    }
    if ending.status != "exit" {
        eprintln!("sandbox: run stopped: {}", ending.reason);
    }
    Some(Ok(ending.code))
}

fn base<'a>(task: &'a TaskInfo, policy: &'a Policy) -> Event<'a> {
    Event {
        kind: Kind::TaskStart,
        task: &task.id,
        user: &task.user,
        agent: &task.agent,
        component: &task.component,
        policy: &policy.hash,
        principal: Some(&task.principal),
        ..Event::default()
    }
}

/// Hooks the checkpoint writer into the log when `[audit] signing_key` is
/// set. A key that cannot be loaded is a usage error (exit 2), a checkpoint
/// file that cannot be opened an audit failure (exit 126).
fn sign_checkpoints(audit: &SharedAudit, policy: &Policy, audit_path: &Path) -> Result<(), Failure> {
    let Some(key_path) = &policy.audit.signing_key else { return Ok(()) };
    let key = sandbox_audit::SigningKey::load(key_path).map_err(|e| Failure::usage(e.to_string()))?;
    let mut log = lock_audit(audit);
    let (size, _) = log.head();
    let path = policy.audit.checkpoints_for(audit_path);
    let every = policy.audit.checkpoint_every;
    let writer = sandbox_audit::Checkpointer::open(key, audit_path, &path, every, size, AUDIT_LOCK_WAIT)
        .map_err(|e| Failure::new(Code::Audit, e.to_string()))?;
    log.set_sync_hook(writer.into_hook());
    Ok(())
}

/// Records a start that was refused after the log was opened.
fn refused_start(
    audit: &SharedAudit,
    policy: &Policy,
    task: &TaskInfo,
    req: &RunRequest,
    failure: Failure,
) -> Result<i32, Failure> {
    let mut log = lock_audit(audit);
    let mut redactions = Counts::new();
    let args = policy.redact.redactor.redact_each(&req.args, &mut redactions);
    let intent = task.intent.as_deref().map(|i| policy.redact.redactor.redact(i, &mut redactions));
    log.record(&Event {
        kind: Kind::TaskStart,
        manifest: Some(&policy.name),
        args: Some(&args),
        intent: intent.as_deref(),
        redactions: redactions.as_field(),
        retention: policy.audit.retention.as_ref().map(|r| r.text.as_str()),
        ..base(task, policy)
    });
    log.record(&Event {
        kind: Kind::TaskEnd,
        status: Some("refused"),
        exit_code: Some(failure.code as i32),
        reason: Some(&failure.message),
        calls: Some(0),
        ..base(task, policy)
    });
    log.sync_milestone().map_err(|e| Failure::new(Code::Audit, e.to_string()))?;
    Err(failure)
}

/// The engine every run uses: component model, epoch interruption.
pub fn engine() -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    Engine::new(&config)
}

/// Compiles the component (or loads it from the compile cache) and links
/// WASI and `sandbox:host` for it.
fn prepare(
    engine: &Engine,
    bytes: &[u8],
    digest: &[u8],
    cache: Option<&crate::cache::Cache>,
) -> wasmtime::Result<CommandPre<RunState>> {
    let component = match cache {
        Some(cache) => cache.component(engine, bytes, digest)?.0,
        None => Component::from_binary(engine, bytes)?,
    };
    let mut linker: Linker<RunState> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    // wasi:io/poll again, the same, except that the run's clock learns when
    // the tool is blocked in it (see `Polling`).
    linker.allow_shadowing(true);
    wasi_poll::add_to_linker::<RunState, Polling>(&mut linker, |s| PollView { table: &mut s.table, clock: &s.clock })?;
    linker.allow_shadowing(false);
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)?;
    sandbox_host_api::add_to_linker(&mut linker, |s: &mut RunState| &mut s.host)?;
    CommandPre::new(linker.instantiate_pre(&component)?)
}

/// An error as one line: its causes joined, whitespace folded.
pub(crate) fn one_line(e: &wasmtime::Error) -> String {
    format!("{e:#}").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Why a component could not be loaded or linked, in one line.
pub(crate) fn component_error(bytes: &[u8], e: &wasmtime::Error) -> String {
    const MAGIC: &[u8] = b"\0asm";
    if !bytes.starts_with(MAGIC) {
        return "not a WebAssembly file (no `\\0asm` header)".into();
    }
    // Core modules are version 1, layer 0; components use another layer.
    if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
        return "a core WebAssembly module, not a component; build the tool for wasm32-wasip2".into();
    }
    one_line(e)
}

fn classify(result: wasmtime::Result<Result<(), ()>>, state: &RunState, stop: &StopCell, started: bool) -> Ending {
    let exit = |code: i32| Ending { code, status: "exit", reason: format!("the tool exited with code {code}") };
    let err = match result {
        Ok(Ok(())) => return exit(0),
        Ok(Err(())) => return exit(1),
        Err(e) => e,
    };
    if let Some(stop) = stop.get() {
        return match stop {
            Stop::Audit(msg) => {
                Ending { code: Code::Audit as i32, status: "audit-failure", reason: format!("audit log failed: {msg}") }
            }
            Stop::Calls(n) => Ending {
                code: Code::CallLimit as i32,
                status: "call-limit",
                reason: format!("the tool kept calling after its limit of {n} host calls"),
            },
            Stop::Output { stream, limit } => Ending {
                code: Code::OutputLimit as i32,
                status: "output-limit",
                reason: format!("the tool wrote more than {limit} bytes to {stream}"),
            },
        };
    }
    if let Some(exit_err) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return exit(exit_err.0);
    }
    if state.grown.passed() {
        return state.grown.ending(state.memory.limit);
    }
    if state.timed_out {
        return Ending {
            code: Code::TimeLimit as i32,
            status: "time-limit",
            reason: format!("the run exceeded its time limit of {}", humantime::format_duration(state.clock.limit())),
        };
    }
    if state.memory.hit {
        return Ending {
            code: Code::MemoryLimit as i32,
            status: "memory-limit",
            reason: format!("the tool needed more than its memory limit of {} bytes", state.memory.limit),
        };
    }
    if resources_exhausted(&err) {
        return Ending {
            code: Code::MemoryLimit as i32,
            status: "memory-limit",
            reason: format!("the tool held more than {MAX_RESOURCES} host resources at once"),
        };
    }
    if !started {
        // Not the tool's doing: the host could not set it up (resources).
        return Ending {
            code: Code::Internal as i32,
            status: "start-failed",
            reason: format!("the tool could not be started: {}", one_line(&err)),
        };
    }
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        return Ending { code: Code::Trap as i32, status: "trap", reason: format!("the tool trapped: {trap}") };
    }
    Ending { code: Code::Trap as i32, status: "trap", reason: format!("the tool failed: {}", one_line(&err)) }
}

/// Whether the run trapped because its resource table (or wasmtime's
/// store-wide count of component handles) was full.
fn resources_exhausted(err: &wasmtime::Error) -> bool {
    err.chain().any(|cause| {
        matches!(cause.downcast_ref::<ResourceTableError>(), Some(ResourceTableError::Full))
            || cause.to_string().contains("store handle limit exceeded")
    })
}
