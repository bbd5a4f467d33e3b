//! One plugin slot (allocator, recall or dialing): the generation serving
//! now, its warm instances, and how one decision is run with a deadline.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use callpark_core::Params;
use wasmtime::Store;

use crate::engine::{HostState, PluginEngine};
use crate::error::CallFailure;
use crate::stats::{Counter, SlotStats};
use crate::worlds::World;

/// An idle instance, ready for the next decision.
struct Warm<W: World> {
    store: Store<HostState>,
    bindings: W::Bindings,
}

/// What identifies a loaded plugin in logs and the admin view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The name it was loaded under (its file path, or `embedded:<name>`).
    pub label: String,
    /// Counts up by one with every swap into the slot.
    pub generation: u64,
    /// SHA-256 of the `.wasm`.
    pub digest: String,
    /// The params it was loaded with.
    pub params: Params,
    /// The version of `callpark:policy` it was built against ("0.1.0",
    /// "0.2.0"); empty until it passed the type check.
    pub wit_version: &'static str,
}

/// One loaded plugin in one slot. Decisions hold an `Arc` to the generation
/// they started on, so a swap never cuts one short.
pub(crate) struct Generation<W: World> {
    pub(crate) info: PluginInfo,
    label: Arc<str>,
    pre: W::Pre,
    engine: Arc<PluginEngine>,
    /// The slot's budget and cap, and the epoch ticks of that budget.
    limits: crate::engine::SlotLimits,
    deadline_ticks: u64,
    warm: Mutex<Vec<Warm<W>>>,
    /// This generation's circuit breaker; a new generation starts closed.
    breaker: Mutex<Breaker>,
    /// The slot's outbound HTTP grant (empty for a plugin checked, not
    /// loaded), open once this generation serves.
    http: crate::engine::HttpAccess,
}

/// Failures in a row that open the circuit.
pub(crate) const BREAKER_THRESHOLD: u32 = 5;
/// Decisions the failure policy answers, without asking the plugin, the
/// first time the circuit opens; each failed trial doubles it, up to
/// `BREAKER_MAX_SKIP`.
pub(crate) const BREAKER_FIRST_SKIP: u32 = 100;
pub(crate) const BREAKER_MAX_SKIP: u32 = 6_400;

/// A circuit breaker counted in decisions, not time, so that it needs no
/// clock and a test replays it exactly. A plugin that fails at every call
/// (a loop costing its full CPU budget each time) would otherwise cost the
/// SIP loop that budget on every park: after `BREAKER_THRESHOLD` failures
/// in a row the next `skip` decisions go straight to the failure policy,
/// then one decision tries the plugin again (half open): a success closes
/// the circuit, a failure opens it for twice as long.
#[derive(Debug, Default)]
struct Breaker {
    failures_in_a_row: u32,
    /// Decisions still to be answered without the plugin.
    skipping: u32,
    /// The length of the last opening (0: never opened).
    last_skip: u32,
}

/// What the breaker says about the next decision.
enum Gate {
    Ask,
    /// Answer with the failure policy; the plugin is not asked.
    Skip,
}

impl Breaker {
    fn gate(&mut self) -> Gate {
        if self.skipping > 0 {
            self.skipping -= 1;
            Gate::Skip
        } else {
            Gate::Ask
        }
    }

    /// Records a decision's outcome; returns `Some(skip)` when it opened
    /// the circuit for `skip` decisions, `None` otherwise, and whether it
    /// closed a circuit that had been open.
    fn record(&mut self, ok: bool) -> (Option<u32>, bool) {
        if ok {
            let closed = self.last_skip > 0;
            *self = Breaker::default();
            return (None, closed);
        }
        self.failures_in_a_row += 1;
        let half_open = self.last_skip > 0;
        if half_open || self.failures_in_a_row >= BREAKER_THRESHOLD {
            let skip = if half_open {
                (self.last_skip * 2).min(BREAKER_MAX_SKIP)
            } else {
                BREAKER_FIRST_SKIP
            };
            self.skipping = skip;
            self.last_skip = skip;
            return (Some(skip), false);
        }
        (None, false)
    }
}

impl<W: World> Generation<W> {
    pub(crate) fn new(
        engine: Arc<PluginEngine>,
        pre: W::Pre,
        mut info: PluginInfo,
        grant: crate::engine::HttpGrant,
    ) -> Self {
        info.wit_version = W::version(&pre);
        let limits = engine.limits().slot(W::DECISION);
        Generation {
            label: Arc::from(info.label.as_str()),
            info,
            pre,
            limits,
            deadline_ticks: crate::engine::deadline_ticks(limits.timeout),
            engine,
            warm: Mutex::new(Vec::new()),
            breaker: Mutex::new(Breaker::default()),
            http: crate::engine::HttpAccess {
                grant,
                serving: Default::default(),
            },
        }
    }

    fn instantiate(&self) -> Result<Warm<W>, CallFailure> {
        let mut store = self.engine.new_store(
            self.label.clone(),
            self.info.generation,
            self.limits,
            self.http.clone(),
        );
        let bindings = W::instantiate(&self.pre, &mut store)
            .map_err(|e| CallFailure::Instantiate(crate::error::one_line(&e)))?;
        Ok(Warm { store, bindings })
    }

    /// Runs one call on a warm instance (or a fresh one) with the deadline
    /// armed. An instance whose call failed is dropped, never re-entered.
    pub(crate) fn call<R>(
        &self,
        f: impl FnOnce(&W::Bindings, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        crate::engine::outside_async_runtime(|| self.call_here(f))
    }

    fn call_here<R>(
        &self,
        f: impl FnOnce(&W::Bindings, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        let idle = self.warm.lock().ok().and_then(|mut w| w.pop());
        let mut warm = match idle {
            Some(w) => w,
            None => self.instantiate()?,
        };
        warm.store.data_mut().cpu_at_deadline = None;
        warm.store.set_epoch_deadline(self.deadline_ticks);
        match f(&warm.bindings, &mut warm.store) {
            Ok(r) => {
                if let Ok(mut pool) = self.warm.lock()
                    && pool.len() < self.engine.limits().warm_per_plugin
                {
                    pool.push(warm);
                }
                Ok(r)
            }
            Err(e) => Err(classify(e)),
        }
    }

    /// Runs `check-params` on a fresh instance.
    pub(crate) fn check_params(&self, params: &Params) -> Result<Result<(), String>, CallFailure> {
        self.call(|b, store| W::check_params(b, store, params))
    }

    /// Instantiates once, so that a plugin whose start-up traps is refused
    /// at load and the first decision finds a warm instance.
    pub(crate) fn prewarm(&self) -> Result<(), CallFailure> {
        let warm = crate::engine::outside_async_runtime(|| self.instantiate())?;
        if let Ok(mut pool) = self.warm.lock() {
            pool.push(warm);
        }
        Ok(())
    }

    /// Opens the slot's HTTP grant to this generation: it serves now.
    pub(crate) fn serving(&self) {
        self.http
            .serving
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Idle instances kept now.
    pub(crate) fn warm_count(&self) -> usize {
        self.warm.lock().map(|w| w.len()).unwrap_or(0)
    }
}

fn classify(e: wasmtime::Error) -> CallFailure {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => CallFailure::Timeout,
        _ => CallFailure::Trap(crate::error::one_line(&e)),
    }
}

/// What the host does when a plugin fails a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// The built-in policy answers (default).
    #[default]
    Fallback,
    /// The call gets an error response.
    Reject,
}

/// A decision's outcome and the generation that made it.
pub(crate) type Decided<W, R> = (Arc<Generation<W>>, Result<R, CallFailure>);

/// A slot: the generation serving now (none: the built-in policy) and the
/// slot's counters, which outlive generations.
pub(crate) struct Slot<W: World> {
    pub(crate) current: ArcSwapOption<Generation<W>>,
    pub(crate) stats: SlotStats,
    pub(crate) on_failure: Mutex<OnFailure>,
    /// Loads into one slot run one at a time, so generations count up
    /// without gaps and the last load wins.
    pub(crate) load_lock: Mutex<u64>,
    /// The hosts this slot's plugins may reach over HTTP.
    pub(crate) grant: crate::engine::HttpGrant,
}

impl<W: World> Default for Slot<W> {
    fn default() -> Self {
        Slot {
            current: ArcSwapOption::empty(),
            stats: SlotStats::default(),
            on_failure: Mutex::new(OnFailure::Fallback),
            load_lock: Mutex::new(0),
            grant: Default::default(),
        }
    }
}

impl<W: World> Slot<W> {
    /// Runs a decision on the current generation, validates the answer and
    /// keeps the counters. `None` means no plugin is loaded.
    pub(crate) fn decide<R>(
        &self,
        run: impl FnOnce(&Generation<W>) -> Result<R, CallFailure>,
        validate: impl FnOnce(&R) -> Result<(), String>,
    ) -> Option<Decided<W, R>> {
        let generation = self.current.load_full()?;
        let gate = generation
            .breaker
            .lock()
            .map(|mut b| b.gate())
            .unwrap_or(Gate::Ask);
        if let Gate::Skip = gate {
            self.stats.count(Counter::ShortCircuit);
            return Some((generation, Err(CallFailure::CircuitOpen)));
        }
        self.stats.count(Counter::Call);
        let started = Instant::now();
        let outcome = run(&generation).and_then(|answer| match validate(&answer) {
            Ok(()) => Ok(answer),
            Err(why) => Err(CallFailure::Invalid(why)),
        });
        self.stats.record_latency(started.elapsed());
        if let Err(failure) = &outcome {
            self.stats.count(match failure {
                CallFailure::Timeout => Counter::Timeout,
                CallFailure::Trap(_) => Counter::Trap,
                CallFailure::Instantiate(_) => Counter::Instantiate,
                CallFailure::Invalid(_) => Counter::Invalid,
                CallFailure::CircuitOpen => Counter::ShortCircuit,
            });
        }
        let (opened, closed) = generation
            .breaker
            .lock()
            .map(|mut b| b.record(outcome.is_ok()))
            .unwrap_or((None, false));
        if let Some(skip) = opened {
            self.stats.count(Counter::CircuitOpened);
            tracing::warn!(
                plugin = %generation.info.label,
                generation = generation.info.generation,
                decision = %W::DECISION,
                skip,
                "plugin keeps failing: circuit open, the failure policy answers the next decisions without asking it, then it is tried again"
            );
        }
        if closed {
            tracing::info!(
                plugin = %generation.info.label,
                generation = generation.info.generation,
                decision = %W::DECISION,
                "plugin answered again: circuit closed"
            );
        }
        Some((generation, outcome))
    }

    pub(crate) fn on_failure(&self) -> OnFailure {
        self.on_failure.lock().map(|g| *g).unwrap_or_default()
    }
}
