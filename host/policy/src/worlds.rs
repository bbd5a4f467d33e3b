//! The plugin worlds, each keyed by the `Decision` it makes: its bindings,
//! the decision's input and answer, the rules an answer must keep, and its
//! conformance cases. The runtime and the slots are generic over `World`,
//! and the runtime finds a slot by its `Decision` (`Slots::get`).
//!
//! Adding a world: its WIT (and a `bindgen!` in `bindings.rs`), the method
//! on `callpark_core::Policy` and its `Decision`, the built-in answer, the
//! conversions, the conformance cases, and one entry in `worlds!` below.
//! The macro exists because bindgen gives every world its own types.

use callpark_core::{
    Allocation, Decision, DialAction, DialContext, Params, ParkRequest, ParkedCall, RecallPlan,
    check_allocation, check_dial_action, check_recall_plan,
};
use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::bindings::{allocator, dialing, recall};
use crate::cases::{AllocationPattern, Case, CaseFile, DialPattern, Pattern, RecallPattern};
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

has_params!(ParkRequest, DialContext, ParkedCall);

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

/// The worlds, and `Slots`, one slot per world.
macro_rules! worlds {
    ($(
        $slot:ident: $world:ident {
            decision: $decision:ident,
            wit: $wit:literal,
            bindings: $module:ident::$plugin:ident / $pre:ident . $interface:ident,
            decide: $call:ident($input:ty => $to_wit:path) -> $answer:ty => $from_wit:path,
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
                type Pre = $module::$pre<HostState>;
                type Bindings = $module::$plugin;
                type Input = $input;
                type Answer = $answer;
                type Pattern = $pattern;

                fn pre(ip: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
                    $module::$pre::new(ip)
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
                        .$interface()
                        .call_check_params(store, &convert::params(params))
                }
                fn decide(
                    bindings: &Self::Bindings,
                    store: &mut Store<HostState>,
                    input: &Self::Input,
                    params: &Params,
                ) -> wasmtime::Result<Self::Answer> {
                    $to_wit(input, params, |input| bindings.$interface().$call(store, input))
                        .map($from_wit)
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
        }

        impl Slots {
            /// The slot that makes `decision`.
            pub(crate) fn get(&self, decision: Decision) -> &dyn crate::runtime::AnySlot {
                match decision {
                    $(Decision::$decision => &self.$slot,)*
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
        decide: call_allocate(ParkRequest => convert::with_park_request) -> Allocation => convert::allocation,
        validate: check_allocation,
        pattern: AllocationPattern,
        cases: conformance::allocator_cases, file: allocator,
    }
    recall: RecallWorld {
        decision: Recall,
        wit: "recall-plugin",
        bindings: recall::RecallPlugin / RecallPluginPre.callpark_policy_recall,
        decide: call_plan(ParkedCall => convert::with_parked_call) -> RecallPlan => convert::recall_plan,
        validate: |_, plan| check_recall_plan(plan),
        pattern: RecallPattern,
        cases: conformance::recall_cases, file: recall,
    }
    dialing: DialingWorld {
        decision: Dialing,
        wit: "dialing-plugin",
        bindings: dialing::DialingPlugin / DialingPluginPre.callpark_policy_dialing,
        decide: call_parse(DialContext => convert::with_dial_context) -> DialAction => convert::dial_action,
        validate: |_, action| check_dial_action(action),
        pattern: DialPattern,
        cases: conformance::dialing_cases, file: dialing,
    }
}
