//! `PolicyRuntime`: the `callpark_core::Policy` the server uses, served by
//! WASM plugins with the built-in policy behind them.

use std::sync::Arc;
use std::time::Instant;

use callpark_builtin::BuiltinPolicy;
use callpark_core::{
    Allocation, Decision, DialAction, DialContext, EventAction, Params, ParkEvent, ParkRequest,
    ParkedCall, Policy, PolicyError, RecallPlan, check_event_actions,
};

use crate::cases::{Case, CaseFailure, CaseFile, Expect, Pattern};
use crate::conformance::CaseOutcome;
use crate::engine::{ArtifactStore, CompiledFrom, Limits, PluginEngine, digest};
use crate::error::{CallFailure, EngineError, LoadError};
use crate::slot::{Decided, Generation, OnFailure, PluginInfo, Slot};
use crate::stats::{Counter, StatsSnapshot};
use crate::worlds::{HasParams, Slots, World};

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
    /// The `callpark:policy` version it implements the world at ("0.1.0",
    /// "0.2.0"); `Err` when the file does not implement this world.
    pub implemented: Result<&'static str, String>,
    /// `check-params` with the given params, when implemented.
    pub params: Option<Result<(), String>>,
    pub cases: Vec<CaseOutcome>,
}

impl CheckReport {
    /// The worlds the file implements, with their version, the combined
    /// `policy-plugin` included.
    pub fn implemented(&self) -> Vec<String> {
        let mut worlds: Vec<String> = self
            .worlds
            .iter()
            .filter_map(|w| {
                w.implemented
                    .as_ref()
                    .ok()
                    .map(|v| format!("{}@{v}", w.world))
            })
            .collect();
        let decisions: Vec<&'static str> = self
            .worlds
            .iter()
            .filter(|w| w.world != "events-plugin")
            .filter_map(|w| w.implemented.as_ref().ok().copied())
            .collect();
        if decisions.len() == Decision::ALL.len() && decisions.iter().all(|v| *v == decisions[0]) {
            worlds.push(format!("policy-plugin@{}", decisions[0]));
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

/// The plugin host: one engine, a slot per world, the built-in policy
/// behind them.
pub struct PolicyRuntime {
    engine: Arc<PluginEngine>,
    slots: Slots,
    builtin: BuiltinPolicy,
}

/// `base` with `extra` laid over it, borrowed when `extra` is empty (the
/// usual decision: the slot's params alone), so that a decision copies no
/// params.
fn merged_cow<'a>(base: &'a Params, extra: &Params) -> std::borrow::Cow<'a, Params> {
    if extra.is_empty() {
        std::borrow::Cow::Borrowed(base)
    } else {
        std::borrow::Cow::Owned(merged(base, extra))
    }
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

/// One decision of world `W` on generation `g`, with `params` in place of
/// the input's.
fn decide_on<W: World>(
    g: &Generation<W>,
    input: &W::Input,
    params: &Params,
) -> Result<W::Answer, CallFailure> {
    g.call(|b, store| W::decide(b, store, input, params))
}

/// Runs cases; each twice, for purity. The built-in cases run with `params`
/// in place of theirs; a case file's run with its own laid over `params`.
fn run_cases<W: World>(
    cases: &[Case<W::Input, W::Pattern>],
    params: &Params,
    from_file: bool,
    canary_only: bool,
    call: impl Fn(&W::Input) -> Result<W::Answer, CallFailure>,
) -> Vec<CaseOutcome> {
    cases
        .iter()
        .filter(|c| c.canary || !canary_only)
        .map(|case| {
            let mut input = case.input.clone();
            if from_file {
                input.set_params(merged(params, case.input.params()));
            } else {
                input.set_params(params.clone());
            }
            let answered = call(&input).map_err(CaseFailure::Call).and_then(|a| {
                W::validate(&input, &a)
                    .map(|()| a)
                    .map_err(CaseFailure::Invalid)
            });
            let result = match (&case.expect, answered) {
                (Some(Expect::Failure(kind)), Err(failure)) if kind.matches(&failure) => {
                    Ok(format!("failed as expected: {failure}"))
                }
                (Some(Expect::Failure(kind)), Err(failure)) => {
                    Err(format!("expected a {kind}, got: {failure}"))
                }
                (Some(Expect::Failure(kind)), Ok(answer)) => {
                    Err(format!("expected a {kind}, answered {answer:?}"))
                }
                (_, Err(failure)) => Err(failure.to_string()),
                (expect, Ok(first)) => (|| {
                    let second = call(&input).map_err(|e| format!("second run: {e}"))?;
                    if first != second {
                        return Err(format!(
                            "not pure: answered {first:?}, then {second:?} for the same input"
                        ));
                    }
                    if let Some(Expect::Answer(pattern)) = expect {
                        pattern.check(&first)?;
                    }
                    Ok(format!("{first:?}"))
                })(),
            };
            CaseOutcome {
                name: case.name.clone(),
                result,
            }
        })
        .collect()
}

/// Type-checks a compiled plugin against world `W` and instantiates it once.
fn prepare<W: World>(
    engine: &Arc<PluginEngine>,
    component: &wasmtime::component::Component,
    info: PluginInfo,
    grant: crate::engine::HttpGrant,
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
    // The linker has `wasi:http` for events plugins; a decision runs on the
    // SIP loop and may not wait on the network, so a decision plugin that
    // imports it is refused here rather than denied at every call.
    if W::DECISION != Decision::Events
        && let Some((name, _)) = component
            .component_type()
            .imports(engine.wasmtime())
            .find(|(name, _)| name.starts_with("wasi:http/"))
    {
        return Err(LoadError::Imports {
            plugin,
            reason: format!(
                "imports {name}: only an events plugin may make HTTP requests (a decision may not wait on the network)"
            ),
        });
    }
    let generation = Generation::new(engine.clone(), pre, info, grant);
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
    (checked, world_cases(generation, &params, canary_only))
}

/// World `W`'s conformance cases (the canaries only, when asked) with
/// params `p`.
fn world_cases<W: World>(g: &Generation<W>, p: &Params, canary: bool) -> Vec<CaseOutcome> {
    run_cases::<W>(&W::cases(), p, false, canary, |input| {
        decide_on(g, input, input.params())
    })
}

/// A slot whatever its world, so that the runtime finds a slot by its
/// `Decision` (`Slots::get`) instead of matching on the decision.
pub(crate) trait AnySlot: Send + Sync {
    fn load(
        &self,
        engine: &Arc<PluginEngine>,
        source: &PluginSource,
        params: Params,
    ) -> Result<LoadReport, LoadError>;
    fn unload(&self) -> Option<PluginInfo>;
    fn set_on_failure(&self, on_failure: OnFailure);
    fn current(&self) -> Option<PluginInfo>;
    fn serves(&self) -> bool;
    fn warm_instances(&self) -> usize;
    fn stats(&self) -> StatsSnapshot;
    fn grant(&self) -> &crate::engine::HttpGrant;
    /// Whether `component` implements this slot's world, and how it does.
    fn check(
        &self,
        engine: &Arc<PluginEngine>,
        component: &wasmtime::component::Component,
        info: &PluginInfo,
        file: Option<&CaseFile>,
    ) -> WorldCheck;
}

impl<W: World> AnySlot for Slot<W> {
    fn load(
        &self,
        engine: &Arc<PluginEngine>,
        source: &PluginSource,
        params: Params,
    ) -> Result<LoadReport, LoadError> {
        load_into(engine, self, source, params)
    }

    fn unload(&self) -> Option<PluginInfo> {
        self.current.swap(None).map(|g| g.info.clone())
    }

    fn set_on_failure(&self, on_failure: OnFailure) {
        *self.on_failure.lock().unwrap_or_else(|p| p.into_inner()) = on_failure;
    }

    fn current(&self) -> Option<PluginInfo> {
        self.current.load().as_ref().map(|g| g.info.clone())
    }

    fn serves(&self) -> bool {
        self.current.load().is_some()
    }

    fn warm_instances(&self) -> usize {
        self.current.load().as_ref().map_or(0, |g| g.warm_count())
    }

    fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    fn grant(&self) -> &crate::engine::HttpGrant {
        &self.grant
    }

    fn check(
        &self,
        engine: &Arc<PluginEngine>,
        component: &wasmtime::component::Component,
        info: &PluginInfo,
        file: Option<&CaseFile>,
    ) -> WorldCheck {
        check_world::<W>(engine, component, info, file)
    }
}

/// Loads a plugin into a slot of world `W` (see `PolicyRuntime::load`).
fn load_into<W: World>(
    engine: &Arc<PluginEngine>,
    slot: &Slot<W>,
    source: &PluginSource,
    params: Params,
) -> Result<LoadReport, LoadError> {
    let started = Instant::now();
    let mut last_generation = slot.load_lock.lock().unwrap_or_else(|p| p.into_inner());
    let result = (|| {
        let (component, compiled_from) =
            engine
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
            wit_version: "",
        };
        let generation = prepare::<W>(engine, &component, info, slot.grant.clone())?;
        let (checked, outcomes) = exercise(&generation, true);
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
            generation.serving();
            let old = slot.current.swap(Some(Arc::new(generation)));
            slot.stats.count(Counter::Load);
            tracing::info!(
                plugin = %info.label,
                generation = info.generation,
                decision = %W::DECISION,
                digest = %info.digest,
                wit = info.wit_version,
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

impl PolicyRuntime {
    /// A runtime with no plugin loaded: the built-in policy answers
    /// everything until `load` swaps plugins in.
    pub fn new(
        limits: Limits,
        artifacts: Option<Arc<dyn ArtifactStore>>,
    ) -> Result<PolicyRuntime, EngineError> {
        Ok(PolicyRuntime {
            engine: Arc::new(PluginEngine::new(limits, artifacts)?),
            slots: Slots::default(),
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
        self.slots.get(decision).load(&self.engine, source, params)
    }

    /// Takes the plugin out of a slot: the built-in policy answers again.
    pub fn unload(&self, decision: Decision) {
        if let Some(info) = self.slots.get(decision).unload() {
            tracing::info!(plugin = %info.label, generation = info.generation, %decision, "plugin unloaded; the built-in policy answers");
        }
    }

    /// What the slot does when its plugin fails a decision.
    pub fn set_on_failure(&self, decision: Decision, on_failure: OnFailure) {
        self.slots.get(decision).set_on_failure(on_failure);
    }

    /// The plugin serving a slot now; `None` is the built-in policy.
    pub fn current(&self, decision: Decision) -> Option<PluginInfo> {
        self.slots.get(decision).current()
    }

    /// Whether a plugin serves the slot (cheaper than `current`: nothing
    /// is cloned).
    pub fn serves(&self, decision: Decision) -> bool {
        self.slots.get(decision).serves()
    }

    /// Idle warm instances of the plugin serving a slot.
    pub fn warm_instances(&self, decision: Decision) -> usize {
        self.slots.get(decision).warm_instances()
    }

    pub fn stats(&self, decision: Decision) -> StatsSnapshot {
        self.slots.get(decision).stats()
    }

    /// Grants a slot's plugins outbound HTTP to `hosts` (`host:port`, or a
    /// bare host for its scheme's default port), and nowhere else; empty
    /// takes every grant away. Applies to the next request.
    pub fn grant_http(&self, decision: Decision, hosts: &[String]) {
        self.slots.get(decision).grant().set(hosts);
    }

    /// The hosts a slot may reach, and how many requests elsewhere were
    /// refused.
    pub fn http_grant(&self, decision: Decision) -> (Vec<String>, u64) {
        let grant = self.slots.get(decision).grant();
        (grant.hosts(), grant.denied())
    }

    /// Tells the events plugin of one park event and returns the actions it
    /// asks for, validated; none when no events plugin is loaded or it
    /// failed (the failure is counted in its slot and logged). Blocking for
    /// up to the events slot's budget: call it off the decision path.
    pub fn observe(&self, event: &ParkEvent) -> Vec<EventAction> {
        let slot = &self.slots.events;
        let outcome = slot.decide(
            |g| {
                let params = merged_cow(&g.info.params, &event.params);
                decide_on(g, event, &params)
            },
            |actions| check_event_actions(actions),
        );
        match outcome {
            None => Vec::new(),
            Some((_, Ok(actions))) => actions,
            Some((generation, Err(failure))) => {
                if !matches!(failure, CallFailure::CircuitOpen) {
                    tracing::warn!(
                        plugin = %generation.info.label,
                        generation = generation.info.generation,
                        decision = %Decision::Events,
                        event = event.kind.name(),
                        call = event.call,
                        %failure,
                        "events plugin failed; the call goes on untouched"
                    );
                }
                Vec::new()
            }
        }
    }

    /// Checks a plugin without loading it: which worlds it implements, and
    /// for each, `check-params` and every conformance case.
    pub fn check(&self, source: &PluginSource, params: &Params) -> CheckReport {
        self.check_with(source, params, None)
    }

    /// Runs a case file on a plugin without loading it (`callpark plugin
    /// test`): for each world the file has cases for, `check-params` with
    /// the file's params laid over `params`, then each case, which passes
    /// when the plugin answers by the rules, the same twice, and as the case
    /// expects. A world without cases in the file is left out.
    pub fn test(&self, source: &PluginSource, params: &Params, file: &CaseFile) -> CheckReport {
        let mut report = self.check_with(source, params, Some(file));
        report
            .worlds
            .retain(|w| !w.cases.is_empty() || w.params.as_ref().is_some_and(|p| p.is_err()));
        report
    }

    fn check_with(
        &self,
        source: &PluginSource,
        params: &Params,
        file: Option<&CaseFile>,
    ) -> CheckReport {
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
            wit_version: "",
        };
        report.worlds = Decision::SLOTS
            .iter()
            .map(|&d| {
                self.slots
                    .get(d)
                    .check(&self.engine, &component, &info, file)
            })
            .collect();
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
    file: Option<&CaseFile>,
) -> WorldCheck {
    let generation = prepare::<W>(engine, component, info.clone(), Default::default());
    let Some(file) = file else {
        return match generation {
            Err(e) => WorldCheck {
                world: W::WORLD,
                implemented: Err(e.to_string()),
                params: None,
                cases: Vec::new(),
            },
            Ok(generation) => {
                let (params, cases) = exercise(&generation, false);
                WorldCheck {
                    world: W::WORLD,
                    implemented: Ok(generation.info.wit_version),
                    params: Some(params),
                    cases,
                }
            }
        };
    };
    // A case file: its cases of this world, each failing when the plugin
    // does not implement the world they are for.
    let cases = W::file_cases(file);
    match generation {
        Err(e) => WorldCheck {
            world: W::WORLD,
            implemented: Err(e.to_string()),
            params: None,
            cases: cases
                .iter()
                .map(|c| CaseOutcome {
                    name: c.name.clone(),
                    result: Err(format!("the plugin does not implement {}", W::WORLD)),
                })
                .collect(),
        },
        Ok(generation) if cases.is_empty() => WorldCheck {
            world: W::WORLD,
            implemented: Ok(generation.info.wit_version),
            params: None,
            cases: Vec::new(),
        },
        Ok(generation) => {
            let params = merged(&info.params, &file.params);
            let checked = match generation.check_params(&params) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(why)) => Err(why),
                Err(failure) => Err(format!("check-params {failure}")),
            };
            let cases = if checked.is_ok() {
                run_cases::<W>(cases, &info.params, true, false, |input| {
                    decide_on(&generation, input, input.params())
                })
            } else {
                Vec::new()
            };
            WorldCheck {
                world: W::WORLD,
                implemented: Ok(generation.info.wit_version),
                params: Some(checked),
                cases,
            }
        }
    }
}

impl Policy for PolicyRuntime {
    fn allocate(&self, req: &ParkRequest) -> Result<Allocation, PolicyError> {
        decide(&self.slots.allocator, req, |r| self.builtin.allocate(r))
    }

    fn parse_dial(&self, ctx: &DialContext) -> Result<DialAction, PolicyError> {
        decide(&self.slots.dialing, ctx, |c| self.builtin.parse_dial(c))
    }

    fn plan_recall(&self, call: &ParkedCall) -> Result<RecallPlan, PolicyError> {
        decide(&self.slots.recall, call, |c| self.builtin.plan_recall(c))
    }
}

/// One decision through a slot: the slot's params laid under the input's,
/// the plugin's answer validated, and on failure the built-in policy (with
/// the same effective params) or a refusal, per the slot's `on_failure`.
fn decide<W: World>(
    slot: &Slot<W>,
    input: &W::Input,
    builtin: impl FnOnce(&W::Input) -> Result<W::Answer, PolicyError>,
) -> Result<W::Answer, PolicyError> {
    let outcome = slot.decide(
        |g| decide_on(g, input, &merged_cow(&g.info.params, input.params())),
        |answer| W::validate(input, answer),
    );
    // The input is cloned only on the failure path.
    // The params the plugin ran with, for the built-in policy: built on
    // the failure path only.
    let effective = match &outcome {
        Some((g, Err(_))) => Some(merged(&g.info.params, input.params())),
        _ => None,
    };
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
