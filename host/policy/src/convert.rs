//! Conversions between `callpark-core`'s policy types and the component
//! model types generated from the WIT.

use crate::bindings::types as wit;
use callpark_core as core;

pub(crate) fn park_request(r: &core::ParkRequest, params: &core::Params) -> wit::ParkRequest {
    wit::ParkRequest {
        parker: r.parker.clone(),
        parked_uri: r.parked_uri.clone(),
        parked_display: r.parked_display.clone(),
        target: match &r.target {
            core::ParkTarget::Orbit(o) => wit::ParkTarget::Orbit(o.clone()),
            core::ParkTarget::Group(g) => wit::ParkTarget::Group(g.clone()),
            core::ParkTarget::DefaultLot => wit::ParkTarget::DefaultLot,
        },
        candidates: r
            .candidates
            .iter()
            .map(|o| wit::OrbitState {
                number: o.number.clone(),
                occupied: o.occupied,
                capacity: o.capacity,
                enabled: o.enabled,
            })
            .collect(),
        last_orbit: r.last_orbit.clone(),
        now_ms: r.now_ms,
        entropy: r.entropy,
        params: params.clone(),
    }
}

pub(crate) fn allocation(a: wit::Allocation) -> core::Allocation {
    match a {
        wit::Allocation::Orbit(o) => core::Allocation::Orbit(o),
        wit::Allocation::Rejected(r) => core::Allocation::Rejected(core::Rejection {
            code: match r.code {
                wit::RejectCode::Busy => core::RejectCode::Busy,
                wit::RejectCode::Full => core::RejectCode::Full,
                wit::RejectCode::NotFound => core::RejectCode::NotFound,
                wit::RejectCode::Forbidden => core::RejectCode::Forbidden,
            },
            reason: r.reason,
        }),
    }
}

pub(crate) fn dial_context(c: &core::DialContext, params: &core::Params) -> wit::DialContext {
    wit::DialContext {
        dialed: c.dialed.clone(),
        caller: c.caller.clone(),
        referred_by: c.referred_by.clone(),
        has_replaces: c.has_replaces,
        dialed_is_orbit: c.dialed_is_orbit,
        params: params.clone(),
    }
}

pub(crate) fn dial_action(a: wit::DialAction) -> core::DialAction {
    match a {
        wit::DialAction::ParkOrbit(o) => core::DialAction::ParkOrbit(o),
        wit::DialAction::ParkGroup(g) => core::DialAction::ParkGroup(g),
        wit::DialAction::Retrieve(o) => core::DialAction::Retrieve(o),
        wit::DialAction::NotFeature => core::DialAction::NotFeature,
    }
}

pub(crate) fn parked_call(c: &core::ParkedCall, params: &core::Params) -> wit::ParkedCall {
    wit::ParkedCall {
        orbit: c.orbit.clone(),
        group: c.group.clone(),
        parker: c.parker.clone(),
        parked_uri: c.parked_uri.clone(),
        parked_display: c.parked_display.clone(),
        parked_at_ms: c.parked_at_ms,
        now_ms: c.now_ms,
        recalls_done: c.recalls_done,
        reason: match c.reason {
            core::RecallReason::Timeout => wit::RecallReason::Timeout,
            core::RecallReason::EscapeKey => wit::RecallReason::EscapeKey,
            core::RecallReason::OrbitRemoved => wit::RecallReason::OrbitRemoved,
        },
        params: params.clone(),
    }
}

pub(crate) fn recall_plan(p: wit::RecallPlan) -> core::RecallPlan {
    core::RecallPlan {
        steps: p
            .steps
            .into_iter()
            .map(|s| core::RecallStep {
                target: s.target,
                ring_ms: s.ring_ms,
                alert_info: s.alert_info,
                display: s.display,
            })
            .collect(),
        end: match p.end {
            wit::EndAction::Disconnect => core::EndAction::Disconnect,
            wit::EndAction::RePark(ms) => core::EndAction::RePark(ms),
            wit::EndAction::Transfer(uri) => core::EndAction::Transfer(uri),
        },
    }
}
