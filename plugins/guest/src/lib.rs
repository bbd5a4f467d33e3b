//! Guest-side glue shared by callpark's plugins: the WIT types of
//! `callpark:policy` and the `log` import, at each version the host serves
//! (0.1.0 at the root, 0.2.0 in `v0_2`), and conversions between the WIT
//! types and `callpark-core`'s, so that a plugin written over
//! `callpark-core` (as the default plugins are, over `callpark-builtin`)
//! stays a thin wrapper.
//!
//! A plugin crate generates its own world and points the shared interfaces
//! here; for 0.2.0:
//!
//! ```ignore
//! wit_bindgen::generate!({
//!     path: "../../wit",
//!     world: "allocator-plugin",
//!     with: {
//!         "callpark:policy/types@0.2.0": callpark_guest::v0_2::types,
//!         "callpark:policy/log@0.2.0": callpark_guest::v0_2::log,
//!     },
//! });
//! ```
//!
//! For 0.1.0, `path: "../../wit/0.1.0"` and `callpark_guest::types`.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/0.1.0",
        inline: "
            package callpark:guest;
            world shared {
                import callpark:policy/types@0.1.0;
                import callpark:policy/log@0.1.0;
            }
        ",
        world: "callpark:guest/shared",
        type_section_suffix: "callpark-guest",
        generate_all,
    });
}

pub use bindings::callpark::policy::{log, types};

/// The conversions between one version's WIT types (`wit`) and
/// `callpark-core`'s; the shapes are the same in every version.
macro_rules! conversions {
    () => {
        /// Writes a line to the host's log.
        pub fn log_info(message: &str) {
            log::log(log::Level::Info, message);
        }

        fn orbit_state(o: wit::OrbitState) -> core::OrbitState {
            core::OrbitState {
                number: o.number,
                occupied: o.occupied,
                capacity: o.capacity,
                enabled: o.enabled,
            }
        }

        pub fn park_target(t: wit::ParkTarget) -> core::ParkTarget {
            match t {
                wit::ParkTarget::Orbit(o) => core::ParkTarget::Orbit(o),
                wit::ParkTarget::Group(g) => core::ParkTarget::Group(g),
                wit::ParkTarget::DefaultLot => core::ParkTarget::DefaultLot,
            }
        }

        pub fn park_request(r: wit::ParkRequest) -> core::ParkRequest {
            core::ParkRequest {
                parker: r.parker,
                parked_uri: r.parked_uri,
                parked_display: r.parked_display,
                target: park_target(r.target),
                candidates: r.candidates.into_iter().map(orbit_state).collect(),
                last_orbit: r.last_orbit,
                now_ms: r.now_ms,
                entropy: r.entropy,
                params: r.params,
            }
        }

        pub fn allocation(a: core::Allocation) -> wit::Allocation {
            match a {
                core::Allocation::Orbit(o) => wit::Allocation::Orbit(o),
                core::Allocation::Rejected(r) => wit::Allocation::Rejected(wit::Rejection {
                    code: match r.code {
                        core::RejectCode::Busy => wit::RejectCode::Busy,
                        core::RejectCode::Full => wit::RejectCode::Full,
                        core::RejectCode::NotFound => wit::RejectCode::NotFound,
                        core::RejectCode::Forbidden => wit::RejectCode::Forbidden,
                    },
                    reason: r.reason,
                }),
            }
        }

        pub fn dial_context(c: wit::DialContext) -> core::DialContext {
            core::DialContext {
                dialed: c.dialed,
                caller: c.caller,
                referred_by: c.referred_by,
                has_replaces: c.has_replaces,
                dialed_is_orbit: c.dialed_is_orbit,
                dialed_orbit: None,
                params: c.params,
            }
        }

        pub fn dial_action(a: core::DialAction) -> wit::DialAction {
            match a {
                core::DialAction::ParkOrbit(o) => wit::DialAction::ParkOrbit(o),
                core::DialAction::ParkGroup(g) => wit::DialAction::ParkGroup(g),
                core::DialAction::Retrieve(o) => wit::DialAction::Retrieve(o),
                core::DialAction::NotFeature => wit::DialAction::NotFeature,
            }
        }

        pub fn parked_call(c: wit::ParkedCall) -> core::ParkedCall {
            core::ParkedCall {
                orbit: c.orbit,
                group: c.group,
                parker: c.parker,
                parked_uri: c.parked_uri,
                parked_display: c.parked_display,
                parked_at_ms: c.parked_at_ms,
                now_ms: c.now_ms,
                recalls_done: c.recalls_done,
                reason: match c.reason {
                    wit::RecallReason::Timeout => core::RecallReason::Timeout,
                    wit::RecallReason::EscapeKey => core::RecallReason::EscapeKey,
                    wit::RecallReason::OrbitRemoved => core::RecallReason::OrbitRemoved,
                },
                params: c.params,
            }
        }

        pub fn recall_plan(p: core::RecallPlan) -> wit::RecallPlan {
            wit::RecallPlan {
                steps: p
                    .steps
                    .into_iter()
                    .map(|s| wit::RecallStep {
                        target: s.target,
                        ring_ms: s.ring_ms,
                        alert_info: s.alert_info,
                        display: s.display,
                    })
                    .collect(),
                end: match p.end {
                    core::EndAction::Disconnect => wit::EndAction::Disconnect,
                    core::EndAction::RePark(ms) => wit::EndAction::RePark(ms),
                    core::EndAction::Transfer(uri) => wit::EndAction::Transfer(uri),
                },
            }
        }
    };
}

use callpark_core as core;

mod v0_1 {
    use super::{core, log, types as wit};
    conversions!();
}
pub use v0_1::*;

/// `callpark:policy@0.2.0`: the types and `log` at 0.2.0, the same
/// conversions, and what 0.2.0 adds.
pub mod v0_2 {
    mod bindings {
        wit_bindgen::generate!({
            path: "../../wit",
            inline: "
                package callpark:guest2;
                world shared {
                    import callpark:policy/types@0.2.0;
                    import callpark:policy/log@0.2.0;
                }
            ",
            world: "callpark:guest2/shared",
            type_section_suffix: "callpark-guest-0-2",
            generate_all,
        });
    }

    pub use bindings::callpark::policy::{log, types};

    use callpark_core as core;
    use types as wit;

    conversions!();

    /// The dial context with the state of the dialed orbit (`parse-dialed`).
    pub fn dial_context_with(
        c: wit::DialContext,
        orbit: Option<wit::OrbitState>,
    ) -> core::DialContext {
        core::DialContext {
            dialed_orbit: orbit.map(orbit_state),
            ..dial_context(c)
        }
    }

    /// One candidate of a pick request, read from its columns.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Candidate<'a> {
        pub number: u32,
        /// The orbit number when `number` cannot say it.
        pub label: Option<&'a str>,
        pub occupied: u32,
        /// 0: disabled.
        pub capacity: u32,
    }

    /// The candidates of a pick request, one per orbit, without a string
    /// but for the few orbits whose number is not written as a number.
    pub fn candidates(c: &wit::Candidates) -> Vec<Candidate<'_>> {
        let mut labels = c.labels.iter().peekable();
        (0..c.numbers.len())
            .map(|i| {
                let label = labels
                    .next_if(|(at, _)| *at as usize == i)
                    .map(|(_, l)| l.as_str());
                Candidate {
                    number: c.numbers[i],
                    label,
                    occupied: c.occupied.get(i).copied().unwrap_or(0),
                    capacity: c.capacity.get(i).copied().unwrap_or(0),
                }
            })
            .collect()
    }

    impl core::CandidateOrbit for Candidate<'_> {
        fn enabled(&self) -> bool {
            self.capacity > 0
        }
        fn full(&self) -> bool {
            self.occupied >= self.capacity
        }
        fn is_number(&self, number: &str) -> bool {
            match self.label {
                Some(label) => label == number,
                None => core::numeric_orbit(number) == Some(self.number),
            }
        }
    }

    /// A rejection in WIT form.
    pub fn rejection(r: core::Rejection) -> wit::Rejection {
        wit::Rejection {
            code: match r.code {
                core::RejectCode::Busy => wit::RejectCode::Busy,
                core::RejectCode::Full => wit::RejectCode::Full,
                core::RejectCode::NotFound => wit::RejectCode::NotFound,
                core::RejectCode::Forbidden => wit::RejectCode::Forbidden,
            },
            reason: r.reason,
        }
    }
}
