//! `PolicyRuntime`: the `callpark_core::Policy` the server uses, served by
//! WASM plugins with the built-in policy behind them.

use std::sync::Arc;
use std::time::Instant;

use callpark_builtin::BuiltinPolicy;
use callpark_core::{
    Allocation, Decision, DialAction, DialContext, Params, ParkRequest, ParkedCall, Policy,
    PolicyError, RecallPlan, check_allocation, check_dial_action, check_recall_plan,
};

use crate::conformance::{self, Case, CaseOutcome};
use crate::convert;
use crate::engine::{ArtifactStore, CompiledFrom, Limits, PluginEngine, digest};
use crate::error::{CallFailure, EngineError, LoadError};
use crate::slot::{
    AllocatorWorld, Decided, DialingWorld, Generation, OnFailure, PluginInfo, RecallWorld, Slot,
    World,
};
use crate::stats::{Counter, StatsSnapshot};

/// A plugin to load: its bytes and the name logs use for it.
#[derive(Debug, Clone)]
pub struct PluginSource {
    /// A file path, or `embedded:<name>` for a built-in default.
    pub label: String,
    pub wasm: Arc<[u8]>,
}

impl PluginSource {
    pub fn new(label: impl Into<String>, wasm: impl Into<Arc<[u8]>>) -> Self {
        PluginSource {
            label: label.into(),
            wasm: wasm.into(),
        }
    }
}

/// What a successful load did.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub info: PluginInfo,
    pub compiled_from: CompiledFrom,
    /// Compile (or cache) plus type-check, instantiation and canaries.
    pub took: std::time::Duration,
}

/// The result of `check`: which worlds a file implements and how each case went.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub label: String,
    pub digest: String,
    /// Why the file is not a usable component at all, if so.
    pub fatal: Option<String>,
    pub worlds: Vec<WorldCheck>,
}

/// One world of a `CheckReport`.
#[derive(Debug, Clone)]
pub struct WorldCheck {
    pub world: &'static str,
    /// `Err` when the file does not implement this world.
    pub implemented: Result<(), String>,
    /// `check-params` with the given params, when implemented.
    pub params: Option<Result<(), String>>,
    pub cases: Vec<CaseOutcome>,
}

impl CheckReport {
    /// The worlds the file implements, the combined `policy-plugin` included.
    pub fn implemented(&self) -> Vec<&'static str> {
        let mut worlds: Vec<_> = self
            .worlds
            .iter()
            .filter(|w| w.implemented.is_ok())
            .map(|w| w.world)
            .collect();
        if worlds.len() == 3 {
            worlds.push("policy-plugin");
        }
        worlds
    }

    /// True when the file implements at least one world and passes
    /// `check-params` and every case of each world it implements.
    pub fn passed(&self) -> bool {
        self.fatal.is_none()
            && self.worlds.iter().any(|w| w.implemented.is_ok())
            && self
                .worlds
                .iter()
                .filter(|w| w.implemented.is_ok())
                .all(|w| {
                    matches!(w.params, Some(Ok(())))
                        && !w.cases.is_empty()
                        && w.cases.iter().all(|c| c.result.is_ok())
                })
    }
}

/// The plugin host: one engine, three slots, the built-in policy behind them.
pub struct PolicyRuntime {
    engine: Arc<PluginEngine>,
    allocator: Slot<AllocatorWorld>,
    recall: Slot<RecallWorld>,
    dialing: Slot<DialingWorld>,
    builtin: BuiltinPolicy,
}

/// `base` with `extra` laid over it: keys of `extra` win.
fn merged(base: &Params, extra: &Params) -> Params {
    let mut out: Params = base
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .cloned()
        .collect();
    out.extend(extra.iter().cloned());
    out
}

fn allocate_on(
    g: &Generation<AllocatorWorld>,
    req: &ParkRequest,
    params: &Params,
) -> Result<Allocation, CallFailure> {
    let req = convert::park_request(req, params);
    g.call(|b, store| b.callpark_policy_allocator().call_allocate(store, &req))
        .map(convert::allocation)
}

fn parse_on(
    g: &Generation<DialingWorld>,
    ctx: &DialContext,
    params: &Params,
) -> Result<DialAction, CallFailure> {
    let ctx = convert::dial_context(ctx, params);
    g.call(|b, store| b.callpark_policy_dialing().call_parse(store, &ctx))
        .map(convert::dial_action)
}

fn plan_on(
    g: &Generation<RecallWorld>,
    call: &ParkedCall,
    params: &Params,
) -> Result<RecallPlan, CallFailure> {
    let call = convert::parked_call(call, params);
    g.call(|b, store| b.callpark_policy_recall().call_plan(store, &call))
        .map(convert::recall_plan)
}

/// Runs cases with the given params; each twice, for purity.
fn run_cases<I: Clone + HasParams, O: PartialEq + std::fmt::Debug>(
    cases: Vec<Case<I>>,
    params: &Params,
    canary_only: bool,
    call: impl Fn(&I) -> Result<O, CallFailure>,
    validate: impl Fn(&I, &O) -> Result<(), String>,
) -> Vec<CaseOutcome> {
    cases
        .into_iter()
        .filter(|c| c.canary || !canary_only)
        .map(|case| {
            let mut input = case.input.clone();
            input.set_params(params.clone());
            let result = (|| {
                let first = call(&input).map_err(|e| e.to_string())?;
                validate(&input, &first).map_err(|e| format!("answer breaks the rules: {e}"))?;
                let second = call(&input).map_err(|e| format!("second run: {e}"))?;
                if first != second {
                    return Err(format!(
                        "not pure: answered {first:?}, then {second:?} for the same input"
                    ));
                }
                Ok(format!("{first:?}"))
            })();
            CaseOutcome {
                name: case.name.to_string(),
                result,
            }
        })
        .collect()
}

trait HasParams {
    fn params(&self) -> &Params;
    fn set_params(&mut self, params: Params);
}

macro_rules! has_params {
    ($($t:ty),*) => {$(
        impl HasParams for $t {
            fn params(&self) -> &Params {
                &self.params
            }
            fn set_params(&mut self, params: Params) {
                self.params = params;
            }
        }
    )*};
}

has_params!(ParkRequest, DialContext, ParkedCall);

/// Type-checks a compiled plugin against world `W` and instantiates it once.
fn prepare<W: World>(
    engine: &Arc<PluginEngine>,
    component: &wasmtime::component::Component,
    info: PluginInfo,
) -> Result<Generation<W>, LoadError> {
    let plugin = info.label.clone();
    let ip = engine
        .linker()
        .instantiate_pre(component)
        .map_err(|e| LoadError::Imports {
            plugin: plugin.clone(),
            reason: crate::error::one_line(&e),
        })?;
    let pre = W::pre(ip).map_err(|e| LoadError::World {
        plugin: plugin.clone(),
        world: W::WORLD,
        reason: crate::error::one_line(&e),
    })?;
    let generation = Generation::new(engine.clone(), pre, info);
    generation.prewarm().map_err(|e| LoadError::Instantiate {
        plugin,
        reason: e.to_string(),
    })?;
    Ok(generation)
}

/// `check-params` then the cases of one world.
fn exercise<W: World>(
    generation: &Generation<W>,
    canary_only: bool,
    cases: impl FnOnce(&Generation<W>, &Params, bool) -> Vec<CaseOutcome>,
) -> (Result<(), String>, Vec<CaseOutcome>) {
    let params = generation.info.params.clone();
    let checked = match generation.check_params(&params) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(why),
        Err(failure) => Err(format!("check-params {failure}")),
    };
    if checked.is_err() {
        return (checked, Vec::new());
    }
    (checked, cases(generation, &params, canary_only))
}

fn allocator_cases(g: &Generation<AllocatorWorld>, p: &Params, canary: bool) -> Vec<CaseOutcome> {
    run_cases(
        conformance::allocator_cases(),
        p,
        canary,
        |r| allocate_on(g, r, &r.params),
        check_allocation,
    )
}

fn dialing_cases(g: &Generation<DialingWorld>, p: &Params, canary: bool) -> Vec<CaseOutcome> {
    run_cases(
        conformance::dialing_cases(),
        p,
        canary,
        |c| parse_on(g, c, &c.params),
        |_, a| check_dial_action(a),
    )
}

fn recall_cases(g: &Generation<RecallWorld>, p: &Params, canary: bool) -> Vec<CaseOutcome> {
    run_cases(
        conformance::recall_cases(),
        p,
        canary,
        |c| plan_on(g, c, &c.params),
        |_, plan| check_recall_plan(plan),
    )
}

impl PolicyRuntime {
    /// A runtime with no plugin loaded: the built-in policy answers
    /// everything until `load` swaps plugins in.
    pub fn new(
        limits: Limits,
        artifacts: Option<Arc<dyn ArtifactStore>>,
    ) -> Result<PolicyRuntime, EngineError> {
        Ok(PolicyRuntime {
            engine: Arc::new(PluginEngine::new(limits, artifacts)?),
            allocator: Slot::default(),
            recall: Slot::default(),
            dialing: Slot::default(),
            builtin: BuiltinPolicy,
        })
    }

    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// Loads a plugin into a slot: compile (or take from the cache),
    /// type-check against the slot's world, `check-params`, canary cases,
    /// then an atomic swap. On any error the slot keeps what it had.
    /// Call it off the decision path: it may take milliseconds.
    pub fn load(
        &self,
        decision: Decision,
        source: &PluginSource,
        params: Params,
    ) -> Result<LoadReport, LoadError> {
        match decision {
            Decision::Allocator => self.load_into(&self.allocator, source, params, allocator_cases),
            Decision::Recall => self.load_into(&self.recall, source, params, recall_cases),
            Decision::Dialing => self.load_into(&self.dialing, source, params, dialing_cases),
        }
    }

    fn load_into<W: World>(
        &self,
        slot: &Slot<W>,
        source: &PluginSource,
        params: Params,
        cases: fn(&Generation<W>, &Params, bool) -> Vec<CaseOutcome>,
    ) -> Result<LoadReport, LoadError> {
        let started = Instant::now();
        let mut last_generation = slot.load_lock.lock().unwrap_or_else(|p| p.into_inner());
        let result = (|| {
            let (component, compiled_from) =
                self.engine
                    .compile(&source.wasm)
                    .map_err(|reason| LoadError::Compile {
                        plugin: source.label.clone(),
                        reason,
                    })?;
            let info = PluginInfo {
                label: source.label.clone(),
                generation: *last_generation + 1,
                digest: digest(&source.wasm),
                params,
            };
            let generation = prepare::<W>(&self.engine, &component, info)?;
            let (checked, outcomes) = exercise(&generation, true, cases);
            checked.map_err(|reason| LoadError::Params {
                plugin: source.label.clone(),
                reason,
            })?;
            if let Some(bad) = outcomes.into_iter().find(|o| o.result.is_err()) {
                return Err(LoadError::Canary {
                    plugin: source.label.clone(),
                    case: bad.name,
                    reason: bad.result.unwrap_err(),
                });
            }
            Ok((generation, compiled_from))
        })();
        match result {
            Ok((generation, compiled_from)) => {
                let info = generation.info.clone();
                *last_generation = info.generation;
                let old = slot.current.swap(Some(Arc::new(generation)));
                slot.stats.count(Counter::Load);
                tracing::info!(
                    plugin = %info.label,
                    generation = info.generation,
                    decision = %W::DECISION,
                    digest = %info.digest,
                    replaced = ?old.as_ref().map(|g| g.info.generation),
                    ?compiled_from,
                    "plugin swapped in"
                );
                Ok(LoadReport {
                    info,
                    compiled_from,
                    took: started.elapsed(),
                })
            }
            Err(e) => {
                slot.stats.count(Counter::RefusedLoad);
                let serving = slot.current.load();
                tracing::warn!(
                    plugin = %source.label,
                    decision = %W::DECISION,
                    serving = serving.as_ref().map_or("built-in", |g| g.info.label.as_str()),
                    serving_generation = serving.as_ref().map(|g| g.info.generation),
                    error = %e,
                    "plugin refused"
                );
                Err(e)
            }
        }
    }

    /// Takes the plugin out of a slot: the built-in policy answers again.
    pub fn unload(&self, decision: Decision) {
        let old = match decision {
            Decision::Allocator => self.allocator.current.swap(None).map(|g| g.info.clone()),
            Decision::Recall => self.recall.current.swap(None).map(|g| g.info.clone()),
            Decision::Dialing => self.dialing.current.swap(None).map(|g| g.info.clone()),
        };
        if let Some(info) = old {
            tracing::info!(plugin = %info.label, generation = info.generation, %decision, "plugin unloaded; the built-in policy answers");
        }
    }

    /// What the slot does when its plugin fails a decision.
    pub fn set_on_failure(&self, decision: Decision, on_failure: OnFailure) {
        let lock = match decision {
            Decision::Allocator => &self.allocator.on_failure,
            Decision::Recall => &self.recall.on_failure,
            Decision::Dialing => &self.dialing.on_failure,
        };
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = on_failure;
    }

    /// The plugin serving a slot now; `None` is the built-in policy.
    pub fn current(&self, decision: Decision) -> Option<PluginInfo> {
        match decision {
            Decision::Allocator => self
                .allocator
                .current
                .load()
                .as_ref()
                .map(|g| g.info.clone()),
            Decision::Recall => self.recall.current.load().as_ref().map(|g| g.info.clone()),
            Decision::Dialing => self.dialing.current.load().as_ref().map(|g| g.info.clone()),
        }
    }

    /// Idle warm instances of the plugin serving a slot.
    pub fn warm_instances(&self, decision: Decision) -> usize {
        match decision {
            Decision::Allocator => self
                .allocator
                .current
                .load()
                .as_ref()
                .map_or(0, |g| g.warm_count()),
            Decision::Recall => self
                .recall
                .current
                .load()
                .as_ref()
                .map_or(0, |g| g.warm_count()),
            Decision::Dialing => self
                .dialing
                .current
                .load()
                .as_ref()
                .map_or(0, |g| g.warm_count()),
        }
    }

    pub fn stats(&self, decision: Decision) -> StatsSnapshot {
        match decision {
            Decision::Allocator => self.allocator.stats.snapshot(),
            Decision::Recall => self.recall.stats.snapshot(),
            Decision::Dialing => self.dialing.stats.snapshot(),
        }
    }

    /// Checks a plugin without loading it: which worlds it implements, and
    /// for each, `check-params` and every conformance case.
    pub fn check(&self, source: &PluginSource, params: &Params) -> CheckReport {
        let mut report = CheckReport {
            label: source.label.clone(),
            digest: digest(&source.wasm),
            fatal: None,
            worlds: Vec::new(),
        };
        let component = match self.engine.compile(&source.wasm) {
            Ok((c, _)) => c,
            Err(reason) => {
                report.fatal = Some(
                    LoadError::Compile {
                        plugin: source.label.clone(),
                        reason,
                    }
                    .to_string(),
                );
                return report;
            }
        };
        if let Err(e) = self.engine.linker().instantiate_pre(&component) {
            report.fatal = Some(
                LoadError::Imports {
                    plugin: source.label.clone(),
                    reason: crate::error::one_line(&e),
                }
                .to_string(),
            );
            return report;
        }
        let info = PluginInfo {
            label: source.label.clone(),
            generation: 0,
            digest: report.digest.clone(),
            params: params.clone(),
        };
        report.worlds.push(check_world::<AllocatorWorld>(
            &self.engine,
            &component,
            &info,
            allocator_cases,
        ));
        report.worlds.push(check_world::<RecallWorld>(
            &self.engine,
            &component,
            &info,
            recall_cases,
        ));
        report.worlds.push(check_world::<DialingWorld>(
            &self.engine,
            &component,
            &info,
            dialing_cases,
        ));
        report
    }

    fn settle<W: World, R>(
        slot: &Slot<W>,
        outcome: Option<Decided<W, R>>,
        builtin: impl FnOnce() -> Result<R, PolicyError>,
    ) -> Result<R, PolicyError> {
        let (generation, failure) = match outcome {
            None => return builtin(),
            Some((_, Ok(answer))) => return Ok(answer),
            Some((generation, Err(failure))) => (generation, failure),
        };
        // With the circuit open, the opening was logged once: the
        // decisions it answers are not each a warning.
        let quiet = matches!(failure, CallFailure::CircuitOpen);
        match slot.on_failure() {
            OnFailure::Fallback if quiet => {
                slot.stats.count(Counter::Fallback);
                tracing::debug!(plugin = %generation.info.label, decision = %W::DECISION, "circuit open; the built-in policy answers");
                builtin()
            }
            OnFailure::Reject if quiet => {
                slot.stats.count(Counter::Reject);
                tracing::debug!(plugin = %generation.info.label, decision = %W::DECISION, "circuit open; the call is refused");
                Err(PolicyError {
                    decision: W::DECISION,
                    reason: format!("plugin {} {failure}", generation.info.label),
                })
            }
            OnFailure::Fallback => {
                slot.stats.count(Counter::Fallback);
                tracing::warn!(
                    plugin = %generation.info.label,
                    generation = generation.info.generation,
                    decision = %W::DECISION,
                    %failure,
                    "plugin failed; the built-in policy answers"
                );
                builtin()
            }
            OnFailure::Reject => {
                slot.stats.count(Counter::Reject);
                tracing::warn!(
                    plugin = %generation.info.label,
                    generation = generation.info.generation,
                    decision = %W::DECISION,
                    %failure,
                    "plugin failed; the call is refused (on_failure = reject)"
                );
                Err(PolicyError {
                    decision: W::DECISION,
                    reason: format!("plugin {} {failure}", generation.info.label),
                })
            }
        }
    }
}

fn check_world<W: World>(
    engine: &Arc<PluginEngine>,
    component: &wasmtime::component::Component,
    info: &PluginInfo,
    cases: fn(&Generation<W>, &Params, bool) -> Vec<CaseOutcome>,
) -> WorldCheck {
    match prepare::<W>(engine, component, info.clone()) {
        Err(e) => WorldCheck {
            world: W::WORLD,
            implemented: Err(e.to_string()),
            params: None,
            cases: Vec::new(),
        },
        Ok(generation) => {
            let (params, cases) = exercise(&generation, false, cases);
            WorldCheck {
                world: W::WORLD,
                implemented: Ok(()),
                params: Some(params),
                cases,
            }
        }
    }
}

impl Policy for PolicyRuntime {
    fn allocate(&self, req: &ParkRequest) -> Result<Allocation, PolicyError> {
        decide(
            &self.allocator,
            req,
            allocate_on,
            |a| check_allocation(req, a),
            |r| self.builtin.allocate(r),
        )
    }

    fn parse_dial(&self, ctx: &DialContext) -> Result<DialAction, PolicyError> {
        decide(&self.dialing, ctx, parse_on, check_dial_action, |c| {
            self.builtin.parse_dial(c)
        })
    }

    fn plan_recall(&self, call: &ParkedCall) -> Result<RecallPlan, PolicyError> {
        decide(&self.recall, call, plan_on, check_recall_plan, |c| {
            self.builtin.plan_recall(c)
        })
    }
}

/// One decision through a slot: the slot's params laid under the input's,
/// the plugin's answer validated, and on failure the built-in policy (with
/// the same effective params) or a refusal, per the slot's `on_failure`.
fn decide<W: World, I: Clone + HasParams, R>(
    slot: &Slot<W>,
    input: &I,
    call_on: fn(&Generation<W>, &I, &Params) -> Result<R, CallFailure>,
    validate: impl FnOnce(&R) -> Result<(), String>,
    builtin: impl FnOnce(&I) -> Result<R, PolicyError>,
) -> Result<R, PolicyError> {
    let mut effective: Option<Params> = None;
    let outcome = slot.decide(
        |g| {
            let params = merged(&g.info.params, input.params());
            let answer = call_on(g, input, &params);
            effective = Some(params);
            answer
        },
        validate,
    );
    // The input is cloned only on the failure path.
    PolicyRuntime::settle(slot, outcome, || match effective {
        Some(params) => {
            let mut with_params = input.clone();
            with_params.set_params(params);
            builtin(&with_params)
        }
        None => builtin(input),
    })
}

#[cfg(test)]
mod tests {
    use super::merged;

    #[test]
    fn request_params_override_plugin_params() {
        let base = vec![("a".into(), "1".into()), ("b".into(), "2".into())];
        let extra = vec![("b".into(), "3".into()), ("c".into(), "4".into())];
        let m = merged(&base, &extra);
        assert_eq!(
            m,
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "3".to_string()),
                ("c".to_string(), "4".to_string())
            ]
        );
    }
}
