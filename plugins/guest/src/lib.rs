//! Guest-side glue shared by callpark's plugins: the WIT types of
//! `callpark:policy@0.1.0`, the `log` import, and conversions between the WIT
//! types and `callpark-core`'s, so that a plugin written over `callpark-core`
//! (as the default plugins are, over `callpark-builtin`) stays a thin wrapper.
//!
//! A plugin crate generates its own world and points the shared interfaces
//! here:
//!
//! ```ignore
//! wit_bindgen::generate!({
//!     path: "../../wit",
//!     world: "allocator-plugin",
//!     with: {
//!         "callpark:policy/types@0.1.0": callpark_guest::types,
//!         "callpark:policy/log@0.1.0": callpark_guest::log,
//!     },
//! });
//! ```

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
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

use callpark_core as core;
use types as wit;

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

pub fn park_request(r: wit::ParkRequest) -> core::ParkRequest {
    core::ParkRequest {
        parker: r.parker,
        parked_uri: r.parked_uri,
        parked_display: r.parked_display,
        target: match r.target {
            wit::ParkTarget::Orbit(o) => core::ParkTarget::Orbit(o),
            wit::ParkTarget::Group(g) => core::ParkTarget::Group(g),
            wit::ParkTarget::DefaultLot => core::ParkTarget::DefaultLot,
        },
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
