//! The one wasmtime `Engine` of a process, its limits, the epoch ticker, and
//! the cache of compiled plugins.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{v0_1, v0_2};
use crate::error::EngineError;

/// Resource limits for every plugin instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time budget of one decision. The epoch deadline fires after this much
    /// wall-clock time; from then on the thread's CPU clock is read every
    /// tick, and the plugin is interrupted once it has used the budget again
    /// in CPU. So a plugin that was preempted (two cores, media and SIP busy)
    /// always gets its full budget of CPU, and one that spins is stopped
    /// within twice the budget.
    pub timeout: Duration,
    /// Linear memory cap per instance.
    pub memory_bytes: usize,
    /// Bound on the wasm stack of a call.
    pub stack_bytes: usize,
    /// How many plugin instances may exist at once (the pooling allocator
    /// reserves their memory up front).
    pub max_instances: u32,
    /// How many idle warm instances each plugin generation keeps.
    pub warm_per_plugin: usize,
    /// Slots with a budget and cap of their own (a Python or JavaScript
    /// plugin carries its language's runtime and needs more than a Rust
    /// one); the others take `timeout` and `memory_bytes`.
    pub per_slot: Vec<(callpark_core::Decision, SlotLimits)>,
}

/// A slot's own time budget and memory cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLimits {
    pub timeout: Duration,
    pub memory_bytes: usize,
}

impl Limits {
    /// The budget and cap of `decision`'s slot.
    pub fn slot(&self, decision: callpark_core::Decision) -> SlotLimits {
        self.per_slot.iter().find(|(d, _)| *d == decision).map_or(
            SlotLimits {
                timeout: self.timeout,
                memory_bytes: self.memory_bytes,
            },
            |(_, l)| *l,
        )
    }

    /// The largest memory cap of any slot: what the instance pool reserves.
    fn largest_memory(&self) -> usize {
        self.per_slot
            .iter()
            .map(|(_, l)| l.memory_bytes)
            .fold(self.memory_bytes, usize::max)
    }
}

/// Epoch ticks for a budget: one tick past it, so a deadline never fires
/// early.
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64).max(1) + 1
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_millis(10),
            memory_bytes: 16 << 20,
            stack_bytes: 512 << 10,
            max_instances: 512,
            warm_per_plugin: 64,
            per_slot: Vec::new(),
        }
    }
}

/// The period of the epoch ticker: deadlines are accurate to about this.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Somewhere compiled plugins persist across restarts, keyed by the wasm
/// digest and the engine's compatibility hash. The server implements it with
/// a directory; the runtime does no file IO itself.
pub trait ArtifactStore: Send + Sync {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    fn put(&self, key: &str, artifact: &[u8]);
}

/// An `ArtifactStore` in memory, for tests and benchmarks.
#[derive(Default)]
pub struct MemoryArtifactStore {
    artifacts: Mutex<HashMap<String, Vec<u8>>>,
}

impl ArtifactStore for MemoryArtifactStore {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.artifacts.lock().ok()?.get(key).cloned()
    }
    fn put(&self, key: &str, artifact: &[u8]) {
        if let Ok(mut map) = self.artifacts.lock() {
            map.insert(key.to_string(), artifact.to_vec());
        }
    }
}

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompiledFrom {
    /// Compiled from the `.wasm` now.
    Wasm,
    /// Loaded from the artifact store, no compilation.
    Artifact,
    /// Already compiled earlier in this process.
    Memory,
}

/// The outbound HTTP a slot is granted (`wasi:http`): the authorities
/// (`host:port`) its plugin may send requests to, and how long a request
/// may take. Shared by the slot and every instance of its plugins, so a
/// change applies to the next request. Empty: every request is denied,
/// which is what every slot but the events slot has.
#[derive(Clone, Default)]
pub struct HttpGrant {
    hosts: Arc<arc_swap::ArcSwap<Vec<String>>>,
    /// Requests refused because their host was not granted, all time.
    denied: Arc<std::sync::atomic::AtomicU64>,
}

/// How long a granted request may take to connect, to its first byte, and
/// between bytes: the events plugin waits on it in a host call, where its
/// CPU budget does not run.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

impl HttpGrant {
    /// Grants `hosts`: `host:port`, or a bare host for its scheme's
    /// default port. Compared without case.
    pub fn set(&self, hosts: &[String]) {
        self.hosts.store(Arc::new(
            hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
        ));
    }

    pub fn hosts(&self) -> Vec<String> {
        self.hosts.load().as_ref().clone()
    }

    /// Requests refused so far.
    pub fn denied(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }

    fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else { return false };
        let default_port = if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        let port = uri.port_u16().unwrap_or(default_port);
        let host = host.to_ascii_lowercase();
        let with_port = format!("{host}:{port}");
        self.hosts
            .load()
            .iter()
            .any(|h| *h == with_port || (*h == host && port == default_port))
    }
}

/// What one generation of a plugin may do over HTTP: its slot's grant,
/// once it serves. Until then (its load-time canaries, `plugin check`)
/// every request is denied, so that checking an events plugin never makes
/// it call a CRM.
#[derive(Clone, Default)]
pub(crate) struct HttpAccess {
    pub(crate) grant: HttpGrant,
    pub(crate) serving: Arc<AtomicBool>,
}

/// The `wasi:http` hooks of a plugin instance: a request goes out only to
/// a granted host, from a generation that serves, with timeouts no longer
/// than `HTTP_TIMEOUT`.
struct HttpHooks {
    access: HttpAccess,
    plugin: Arc<str>,
}

impl wasmtime_wasi_http::WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        use http_body_util::BodyExt;
        drop(fut);
        if !self.access.serving.load(Ordering::Acquire) {
            tracing::debug!(plugin = %self.plugin, uri = %request.uri(), "plugin HTTP request denied: the plugin is being checked, not serving");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let grant = &self.access.grant;
        if !grant.allows(request.uri()) {
            grant.denied.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                plugin = %self.plugin,
                uri = %request.uri(),
                "plugin HTTP request denied: the host is not granted"
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let cap = |t: Option<Duration>| Some(t.map_or(HTTP_TIMEOUT, |t| t.min(HTTP_TIMEOUT)));
        let options = options.unwrap_or_default();
        let options = wasmtime_wasi_http::RequestOptions {
            connect_timeout: cap(options.connect_timeout),
            first_byte_timeout: cap(options.first_byte_timeout),
            between_bytes_timeout: cap(options.between_bytes_timeout),
        };
        Box::new(async move {
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// The store data of one plugin instance.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: wasmtime_wasi_http::WasiHttpCtx,
    http_hooks: HttpHooks,
    plugin: Arc<str>,
    generation: u64,
    /// The calling thread's CPU clock when the current call passed its
    /// wall-clock deadline; `None` until then. Read lazily because reading
    /// a thread CPU clock is a system call (~0.4 µs here), which would cost
    /// more than a typical decision's conversion.
    pub(crate) cpu_at_deadline: Option<Duration>,
    cpu_budget: Duration,
    /// The slot's memory cap, per store (the pool reserves the largest).
    memory: wasmtime::StoreLimits,
}

impl wasmtime_wasi_http::WasiHttpView for HostState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The longest log line a plugin may write.
const MAX_LOG_LINE: usize = 1024;

/// A plugin's log level, whichever WIT version it came in.
#[derive(Clone, Copy)]
enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl HostState {
    fn write_log(&self, level: LogLevel, message: &str) {
        let mut end = message.len().min(MAX_LOG_LINE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let message = &message[..end];
        let (plugin, generation) = (&*self.plugin, self.generation);
        match level {
            LogLevel::Trace => tracing::trace!(plugin, generation, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, generation, "{message}"),
            LogLevel::Info => tracing::info!(plugin, generation, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, generation, "{message}"),
            LogLevel::Error => tracing::error!(plugin, generation, "{message}"),
        }
    }
}

/// `log` at each WIT version: the same interface, the same host function.
macro_rules! log_host {
    ($($version:ident),*) => {$(
        impl $version::log::Host for HostState {
            fn log(&mut self, level: $version::log::Level, message: String) {
                use $version::log::Level as L;
                let level = match level {
                    L::Trace => LogLevel::Trace,
                    L::Debug => LogLevel::Debug,
                    L::Info => LogLevel::Info,
                    L::Warn => LogLevel::Warn,
                    L::Error => LogLevel::Error,
                };
                self.write_log(level, &message);
            }
        }
    )*};
}

log_host!(v0_1, v0_2);

/// The WASI version whose clock interface `forbid_waiting` replaces: the
/// one wasmtime-wasi defines (guests built for older 0.2 minors link to it
/// by semver).
const WASI_CLOCKS: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// A decision may not wait: a timer (`std::thread::sleep`, a timeout on a
/// poll) traps instead of blocking the thread that asked, which is the
/// server's SIP loop. The epoch deadline only interrupts wasm code, not a
/// host call that sleeps, so without this a plugin that sleeps 10 s would
/// stall every call for 10 s.
fn forbid_waiting(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::DynPollable;
    linker.allow_shadowing(true);
    let mut clocks = linker.instance(WASI_CLOCKS)?;
    // Both take a u64 (a duration or an instant) and return a pollable.
    for name in ["subscribe-duration", "subscribe-instant"] {
        clocks.func_wrap(
            name,
            move |_store, (_at,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
                Err(wasmtime::format_err!(
                    "a plugin may not wait (monotonic-clock.{name})"
                ))
            },
        )?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// Runs plugin code (which may call WASI host functions) so that it works
/// on any thread. wasmtime-wasi's synchronous bindings drive each host call
/// with `block_on` on the current tokio runtime, which panics on a thread
/// that is running that runtime ("Cannot start a runtime from within a
/// runtime"): `callpark serve` asks its plugins from inside its runtime.
/// `block_in_place` steps out of the runtime's context first; on the thread
/// of `Runtime::block_on` (where serve's SIP loop runs) that is a
/// thread-local flag, on a worker it hands the worker's queue to another
/// thread. Outside any runtime the call runs as it is.
pub(crate) fn outside_async_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        // A current-thread runtime cannot step aside; callpark never
        // calls plugins from one.
        _ => f(),
    }
}

/// Clocks frozen at zero: plugins get time as a parameter, so that their
/// decisions replay; a standard library that reads the clock sees 0.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The wasmtime engine shared by every plugin, with its linker and caches.
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Limits,
    engine_hash: String,
    compiled: Mutex<HashMap<String, Component>>,
    artifacts: Option<Arc<dyn ArtifactStore>>,
    stop_ticker: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl PluginEngine {
    pub fn new(
        limits: Limits,
        artifacts: Option<Arc<dyn ArtifactStore>>,
    ) -> Result<PluginEngine, EngineError> {
        let slots = std::iter::once(SlotLimits {
            timeout: limits.timeout,
            memory_bytes: limits.memory_bytes,
        })
        .chain(limits.per_slot.iter().map(|(_, l)| *l));
        for slot in slots {
            if slot.timeout.is_zero() {
                return Err(EngineError::Config(
                    "the plugin timeout must be above zero".into(),
                ));
            }
            if slot.memory_bytes < (1 << 20) {
                return Err(EngineError::Config(
                    "plugin memory must be at least 1MiB".into(),
                ));
            }
        }
        let largest = limits.largest_memory();
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(limits.max_instances)
            .total_core_instances(limits.max_instances.saturating_mul(4))
            .total_memories(limits.max_instances)
            .total_tables(limits.max_instances.saturating_mul(2))
            .max_memories_per_component(2)
            .max_memory_size(largest);

        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .concurrency_support(false)
            .epoch_interruption(true)
            .max_wasm_stack(limits.stack_bytes)
            // Reserve only what the cap allows: thousands of instances must
            // fit in the address space, and bounds checks are cheap next to a
            // component call.
            .memory_reservation(largest as u64)
            .memory_guard_size(64 << 10)
            .memory_reservation_for_growth(0);
        let engine =
            Engine::new(&config).map_err(|e| EngineError::Config(crate::error::one_line(&e)))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| EngineError::Config(crate::error::one_line(&e)))?;
        // `wasi:http` for every plugin, so that one built with an HTTP
        // client links; only a granted slot's requests leave the host.
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)
            .map_err(|e| EngineError::Config(crate::error::one_line(&e)))?;
        forbid_waiting(&mut linker).map_err(|e| EngineError::Config(crate::error::one_line(&e)))?;
        // Both versions of `log`: to wasmtime's semver matching 0.1 and 0.2
        // are incompatible, so each is its own import.
        v0_1::log::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )
        .map_err(|e| EngineError::Config(crate::error::one_line(&e)))?;
        v0_2::log::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )
        .map_err(|e| EngineError::Config(crate::error::one_line(&e)))?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = format!("{:016x}", hasher.finish());

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            std::thread::Builder::new()
                .name("callpark-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| EngineError::Config(format!("epoch ticker: {e}")))?
        };

        Ok(PluginEngine {
            engine,
            linker,
            limits,
            engine_hash,
            compiled: Mutex::new(HashMap::new()),
            artifacts,
            stop_ticker,
            ticker: Some(ticker),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn wasmtime(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    /// The cache key of a plugin: its SHA-256 and the engine's compatibility
    /// hash (wasmtime version, target, settings).
    pub fn cache_key(&self, wasm: &[u8]) -> String {
        format!("{}-{}", digest(wasm), self.engine_hash)
    }

    /// Compiles a plugin, or takes it from a cache.
    pub fn compile(&self, wasm: &[u8]) -> Result<(Component, CompiledFrom), String> {
        let key = self.cache_key(wasm);
        if let Some(c) = self.compiled.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok((c, CompiledFrom::Memory));
        }
        if let Some(store) = &self.artifacts
            && let Some(artifact) = store.get(&key)
        {
            // SAFETY: artifacts are written only by `compile` below, through
            // the store the administrator configured, and are keyed by the
            // engine's compatibility hash; wasmtime still checks the header.
            match unsafe { Component::deserialize(&self.engine, &artifact) } {
                Ok(c) => {
                    self.remember(key, &c);
                    return Ok((c, CompiledFrom::Artifact));
                }
                Err(e) => {
                    tracing::warn!(key, error = %crate::error::one_line(&e), "ignoring unusable compiled plugin")
                }
            }
        }
        let component =
            Component::new(&self.engine, wasm).map_err(|e| crate::error::one_line(&e))?;
        if let Some(store) = &self.artifacts {
            match component.serialize() {
                Ok(bytes) => store.put(&key, &bytes),
                Err(e) => {
                    tracing::warn!(key, error = %crate::error::one_line(&e), "could not serialize compiled plugin")
                }
            }
        }
        self.remember(key, &component);
        Ok((component, CompiledFrom::Wasm))
    }

    /// Forgets compiled plugins held in memory (the artifact store is kept).
    pub fn clear_memory_cache(&self) {
        if let Ok(mut m) = self.compiled.lock() {
            m.clear();
        }
    }

    fn remember(&self, key: String, component: &Component) {
        if let Ok(mut m) = self.compiled.lock() {
            // Bounded: every distinct plugin ever loaded would otherwise stay.
            if m.len() >= 64 {
                m.clear();
            }
            m.insert(key, component.clone());
        }
    }

    /// A fresh store for one instance of a plugin: an empty WASI context
    /// (no args, env, files, sockets; stdio discarded; frozen clocks;
    /// deterministic random bytes) and the epoch deadline armed.
    pub(crate) fn new_store(
        &self,
        plugin: Arc<str>,
        generation: u64,
        slot: SlotLimits,
        http: HttpAccess,
    ) -> Store<HostState> {
        let wasi = WasiCtx::builder()
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0))
            .insecure_random(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1))
            .insecure_random_seed(0)
            .build();
        let mut store = Store::new(
            &self.engine,
            HostState {
                wasi,
                table: ResourceTable::new(),
                http: wasmtime_wasi_http::WasiHttpCtx::new(),
                http_hooks: HttpHooks {
                    access: http,
                    plugin: plugin.clone(),
                },
                plugin,
                generation,
                cpu_at_deadline: None,
                cpu_budget: slot.timeout,
                memory: wasmtime::StoreLimitsBuilder::new()
                    .memory_size(slot.memory_bytes)
                    .build(),
            },
        );
        store.limiter(|state| &mut state.memory);
        // See `Limits::timeout` for the budget's rule.
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            // No thread clock: the wall-clock deadline decides alone.
            let Some(now) = thread_cpu_time() else {
                return Ok(UpdateDeadline::Interrupt);
            };
            Ok(match state.cpu_at_deadline {
                None => {
                    state.cpu_at_deadline = Some(now);
                    UpdateDeadline::Continue(1)
                }
                Some(at) if now.saturating_sub(at) >= state.cpu_budget => UpdateDeadline::Interrupt,
                Some(_) => UpdateDeadline::Continue(1),
            })
        });
        store.set_epoch_deadline(deadline_ticks(slot.timeout));
        store
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// Hex SHA-256 of a plugin.
pub fn digest(wasm: &[u8]) -> String {
    Sha256::digest(wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// CPU time consumed by the calling thread. The standard library has no
/// per-thread CPU clock; POSIX `clock_gettime(CLOCK_THREAD_CPUTIME_ID)` is
/// the one the kernel keeps.
pub(crate) fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}
