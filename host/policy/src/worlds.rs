//! The plugin worlds, each keyed by the `Decision` it makes: its bindings,
//! the decision's input and answer, the rules an answer must keep, and its
//! conformance cases. The runtime and the slots are generic over `World`,
//! and the runtime finds a slot by its `Decision` (`Slots::get`).
//!
//! Every world is served at each WIT version that has it: a plugin's
//! bindings are `Versioned`, by the version of the interface it exports,
//! and a decision is converted to that version's types.
//!
//! Adding a world: its WIT (and a `bindgen!` in `bindings.rs`), the method
//! on `callpark_core::Policy` and its `Decision`, the built-in answer, the
//! conversions, the conformance cases, and one entry in `worlds!` below.
//! The macro exists because bindgen gives every world its own types.

use callpark_core::{
    Allocation, Decision, DialAction, DialContext, EventAction, Params, ParkEvent, ParkRequest,
    ParkedCall, RecallPlan, check_allocation, check_dial_action, check_event_actions,
    check_recall_plan,
};
use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::bindings::{v0_1, v0_2};
use crate::cases::{
    AllocationPattern, Case, CaseFile, DialPattern, EventsPattern, Pattern, RecallPattern,
};
use crate::conformance;
use crate::convert;
use crate::engine::HostState;
use crate::slot::Slot;

/// An input that carries the params a decision runs with.
pub(crate) trait HasParams {
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

has_params!(ParkRequest, DialContext, ParkedCall, ParkEvent);

/// A plugin's pre-instance or bindings, by the WIT version it was built
/// against.
pub(crate) enum Versioned<A, B> {
    V0_1(A),
    V0_2(B),
}

impl<A: Clone, B: Clone> Clone for Versioned<A, B> {
    fn clone(&self) -> Self {
        match self {
            Versioned::V0_1(a) => Versioned::V0_1(a.clone()),
            Versioned::V0_2(b) => Versioned::V0_2(b.clone()),
        }
    }
}

impl<A, B> Versioned<A, B> {
    pub(crate) fn version(&self) -> &'static str {
        match self {
            Versioned::V0_1(_) => "0.1.0",
            Versioned::V0_2(_) => "0.2.0",
        }
    }
}

/// The pre-instance of the newest version `ip` implements: 0.2.0 first,
/// then 0.1.0. The error names both when it implements neither.
fn newest<A, B>(
    ip: InstancePre<HostState>,
    v0_1: impl FnOnce(InstancePre<HostState>) -> wasmtime::Result<A>,
    v0_2: impl FnOnce(InstancePre<HostState>) -> wasmtime::Result<B>,
) -> wasmtime::Result<Versioned<A, B>> {
    let newer = match v0_2(ip.clone()) {
        Ok(b) => return Ok(Versioned::V0_2(b)),
        Err(e) => e,
    };
    v0_1(ip).map(Versioned::V0_1).map_err(|older| {
        wasmtime::format_err!(
            "{} (as 0.2.0); {} (as 0.1.0)",
            crate::error::one_line(&newer),
            crate::error::one_line(&older)
        )
    })
}

/// One of the plugin worlds, as the host drives it.
pub(crate) trait World: 'static {
    const DECISION: Decision;
    const WORLD: &'static str;
    type Pre: Clone + Send + Sync + 'static;
    type Bindings: Send + 'static;
    /// What the decision is asked about, params included.
    type Input: Clone + HasParams + 'static;
    type Answer: PartialEq + std::fmt::Debug;
    /// What a test case may expect of an answer.
    type Pattern: Pattern<Self::Answer> + Clone + 'static;

    fn pre(ip: InstancePre<HostState>) -> wasmtime::Result<Self::Pre>;
    /// The WIT version of a plugin's pre-instance.
    fn version(pre: &Self::Pre) -> &'static str;
    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Self::Bindings>;
    fn check_params(
        bindings: &Self::Bindings,
        store: &mut Store<HostState>,
        params: &Params,
    ) -> wasmtime::Result<Result<(), String>>;
    /// The decision on an instance, with `params` in place of the input's.
    fn decide(
        bindings: &Self::Bindings,
        store: &mut Store<HostState>,
        input: &Self::Input,
        params: &Params,
    ) -> wasmtime::Result<Self::Answer>;
    /// The rules every answer keeps, whoever gave it.
    fn validate(input: &Self::Input, answer: &Self::Answer) -> Result<(), String>;
    /// Every conformance case; the canaries among them run at each load.
    fn cases() -> Vec<Case<Self::Input, Self::Pattern>>;
    /// This world's cases in a case file.
    fn file_cases(file: &CaseFile) -> &[Case<Self::Input, Self::Pattern>];
}

/// The worlds served at 0.1.0 and 0.2.0, and `Slots`, one slot per world.
/// `decide` names, per version, the bindings' call, the conversion of the
/// input (`with_*`, a continuation that borrows) and of the answer (given
/// the input too).
macro_rules! worlds {
    ($(
        $slot:ident: $world:ident {
            decision: $decision:ident,
            wit: $wit:literal,
            bindings: $module:ident::$plugin:ident / $pre:ident . $interface:ident,
            v0_1: $call1:ident($to1:ident; $($arg1:ident),+) -> $from1:expr,
            v0_2: $call2:ident($to2:ident; $($arg2:ident),+) -> $from2:expr,
            input: $input:ty, answer: $answer:ty,
            validate: $validate:expr,
            pattern: $pattern:ty,
            cases: $cases:path, file: $file:ident $(,)?
        }
    )*) => {
        $(
            pub(crate) struct $world;

            impl World for $world {
                const DECISION: Decision = Decision::$decision;
                const WORLD: &'static str = $wit;
                type Pre = Versioned<v0_1::$module::$pre<HostState>, v0_2::$module::$pre<HostState>>;
                type Bindings = Versioned<v0_1::$module::$plugin, v0_2::$module::$plugin>;
                type Input = $input;
                type Answer = $answer;
                type Pattern = $pattern;

                fn pre(ip: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
                    newest(ip, v0_1::$module::$pre::new, v0_2::$module::$pre::new)
                }
                fn version(pre: &Self::Pre) -> &'static str {
                    pre.version()
                }
                fn instantiate(
                    pre: &Self::Pre,
                    store: &mut Store<HostState>,
                ) -> wasmtime::Result<Self::Bindings> {
                    Ok(match pre {
                        Versioned::V0_1(p) => Versioned::V0_1(p.instantiate(store)?),
                        Versioned::V0_2(p) => Versioned::V0_2(p.instantiate(store)?),
                    })
                }
                fn check_params(
                    bindings: &Self::Bindings,
                    store: &mut Store<HostState>,
                    params: &Params,
                ) -> wasmtime::Result<Result<(), String>> {
                    let params = convert::params(params);
                    match bindings {
                        Versioned::V0_1(b) => b.$interface().call_check_params(store, &params),
                        Versioned::V0_2(b) => b.$interface().call_check_params(store, &params),
                    }
                }
                fn decide(
                    bindings: &Self::Bindings,
                    store: &mut Store<HostState>,
                    input: &Self::Input,
                    params: &Params,
                ) -> wasmtime::Result<Self::Answer> {
                    let from1: fn(&Self::Input, _) -> Self::Answer = $from1;
                    let from2: fn(&Self::Input, _) -> Self::Answer = $from2;
                    match bindings {
                        Versioned::V0_1(b) => convert::v0_1::$to1(input, params, |$($arg1),+| {
                            b.$interface().$call1(store, $($arg1),+)
                        })
                        .map(|a| from1(input, a)),
                        Versioned::V0_2(b) => convert::v0_2::$to2(input, params, |$($arg2),+| {
                            b.$interface().$call2(store, $($arg2),+)
                        })
                        .map(|a| from2(input, a)),
                    }
                }
                fn validate(input: &Self::Input, answer: &Self::Answer) -> Result<(), String> {
                    let rules: fn(&Self::Input, &Self::Answer) -> Result<(), String> = $validate;
                    rules(input, answer)
                }
                fn cases() -> Vec<Case<Self::Input, Self::Pattern>> {
                    $cases()
                }
                fn file_cases(file: &CaseFile) -> &[Case<Self::Input, Self::Pattern>] {
                    &file.$file
                }
            }
        )*

        /// One slot per world.
        #[derive(Default)]
        pub(crate) struct Slots {
            $(pub(crate) $slot: Slot<$world>,)*
            pub(crate) events: Slot<EventsWorld>,
        }

        impl Slots {
            /// The slot of `decision`.
            pub(crate) fn get(&self, decision: Decision) -> &dyn crate::runtime::AnySlot {
                match decision {
                    $(Decision::$decision => &self.$slot,)*
                    Decision::Events => &self.events,
                }
            }
        }
    };
}

worlds! {
    allocator: AllocatorWorld {
        decision: Allocator,
        wit: "allocator-plugin",
        bindings: allocator::AllocatorPlugin / AllocatorPluginPre.callpark_policy_allocator,
        v0_1: call_allocate(with_park_request; req) -> |_, a| convert::v0_1::allocation(a),
        v0_2: call_pick(with_pick_request; req) -> convert::v0_2::picked,
        input: ParkRequest, answer: Allocation,
        validate: check_allocation,
        pattern: AllocationPattern,
        cases: conformance::allocator_cases, file: allocator,
    }
    recall: RecallWorld {
        decision: Recall,
        wit: "recall-plugin",
        bindings: recall::RecallPlugin / RecallPluginPre.callpark_policy_recall,
        v0_1: call_plan(with_parked_call; call) -> |_, p| convert::v0_1::recall_plan(p),
        v0_2: call_plan(with_parked_call; call) -> |_, p| convert::v0_2::recall_plan(p),
        input: ParkedCall, answer: RecallPlan,
        validate: |_, plan| check_recall_plan(plan),
        pattern: RecallPattern,
        cases: conformance::recall_cases, file: recall,
    }
    dialing: DialingWorld {
        decision: Dialing,
        wit: "dialing-plugin",
        bindings: dialing::DialingPlugin / DialingPluginPre.callpark_policy_dialing,
        v0_1: call_parse(with_dial_context; ctx) -> convert::v0_1::bare_orbit_as_in_0_1,
        v0_2: call_parse_dialed(with_dial_context_and_orbit; ctx, orbit) -> |_, a| convert::v0_2::dial_action(a),
        input: DialContext, answer: DialAction,
        validate: |_, action| check_dial_action(action),
        pattern: DialPattern,
        cases: conformance::dialing_cases, file: dialing,
    }
}

/// The events world: 0.2.0 only, told of park events off the decision path.
pub(crate) struct EventsWorld;

impl World for EventsWorld {
    const DECISION: Decision = Decision::Events;
    const WORLD: &'static str = "events-plugin";
    type Pre = v0_2::events::EventsPluginPre<HostState>;
    type Bindings = v0_2::events::EventsPlugin;
    type Input = ParkEvent;
    type Answer = Vec<EventAction>;
    type Pattern = EventsPattern;

    fn pre(ip: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
        v0_2::events::EventsPluginPre::new(ip)
    }
    fn version(_: &Self::Pre) -> &'static str {
        "0.2.0"
    }
    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Self::Bindings> {
        pre.instantiate(store)
    }
    fn check_params(
        bindings: &Self::Bindings,
        store: &mut Store<HostState>,
        params: &Params,
    ) -> wasmtime::Result<Result<(), String>> {
        bindings
            .callpark_policy_events()
            .call_check_params(store, &convert::params(params))
    }
    fn decide(
        bindings: &Self::Bindings,
        store: &mut Store<HostState>,
        input: &Self::Input,
        params: &Params,
    ) -> wasmtime::Result<Self::Answer> {
        convert::v0_2::with_park_event(input, params, |event| {
            bindings.callpark_policy_events().call_observe(store, event)
        })
        .map(convert::v0_2::event_actions)
    }
    fn validate(_: &Self::Input, answer: &Self::Answer) -> Result<(), String> {
        check_event_actions(answer)
    }
    fn cases() -> Vec<Case<Self::Input, Self::Pattern>> {
        conformance::events_cases()
    }
    fn file_cases(file: &CaseFile) -> &[Case<Self::Input, Self::Pattern>] {
        &file.events
    }
}
