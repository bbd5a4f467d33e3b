//! Conversions between `callpark-core`'s policy types and the component
//! model types generated from the WIT.

use crate::bindings::types as wit;
use callpark_core as core;

/// The params as the WIT passes them: borrowed pairs.
pub(crate) fn params(p: &core::Params) -> Vec<(&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Calls `f` with the request as the WIT passes it. Nothing is cloned: the
/// strings are the request's own, and the only allocations are the two
/// slices the canonical ABI lowers from (candidates and params).
pub(crate) fn with_park_request<R>(
    r: &core::ParkRequest,
    params: &core::Params,
    f: impl FnOnce(wit::ParkRequest<'_>) -> R,
) -> R {
    let candidates: Vec<wit::OrbitState<'_>> = r
        .candidates
        .iter()
        .map(|o| wit::OrbitState {
            number: &o.number,
            occupied: o.occupied,
            capacity: o.capacity,
            enabled: o.enabled,
        })
        .collect();
    let params = self::params(params);
    f(wit::ParkRequest {
        parker: &r.parker,
        parked_uri: &r.parked_uri,
        parked_display: &r.parked_display,
        target: match &r.target {
            core::ParkTarget::Orbit(o) => wit::ParkTarget::Orbit(o),
            core::ParkTarget::Group(g) => wit::ParkTarget::Group(g),
            core::ParkTarget::DefaultLot => wit::ParkTarget::DefaultLot,
        },
        candidates: &candidates,
        last_orbit: r.last_orbit.as_deref(),
        now_ms: r.now_ms,
        entropy: r.entropy,
        params: &params,
    })
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

pub(crate) fn with_dial_context<R>(
    c: &core::DialContext,
    params: &core::Params,
    f: impl FnOnce(wit::DialContext<'_>) -> R,
) -> R {
    let params = self::params(params);
    f(wit::DialContext {
        dialed: &c.dialed,
        caller: &c.caller,
        referred_by: c.referred_by.as_deref(),
        has_replaces: c.has_replaces,
        dialed_is_orbit: c.dialed_is_orbit,
        params: &params,
    })
}

pub(crate) fn dial_action(a: wit::DialAction) -> core::DialAction {
    match a {
        wit::DialAction::ParkOrbit(o) => core::DialAction::ParkOrbit(o),
        wit::DialAction::ParkGroup(g) => core::DialAction::ParkGroup(g),
        wit::DialAction::Retrieve(o) => core::DialAction::Retrieve(o),
        wit::DialAction::NotFeature => core::DialAction::NotFeature,
    }
}

pub(crate) fn with_parked_call<R>(
    c: &core::ParkedCall,
    params: &core::Params,
    f: impl FnOnce(wit::ParkedCall<'_>) -> R,
) -> R {
    let params = self::params(params);
    f(wit::ParkedCall {
        orbit: &c.orbit,
        group: c.group.as_deref(),
        parker: &c.parker,
        parked_uri: &c.parked_uri,
        parked_display: &c.parked_display,
        parked_at_ms: c.parked_at_ms,
        now_ms: c.now_ms,
        recalls_done: c.recalls_done,
        reason: match c.reason {
            core::RecallReason::Timeout => wit::RecallReason::Timeout,
            core::RecallReason::EscapeKey => wit::RecallReason::EscapeKey,
            core::RecallReason::OrbitRemoved => wit::RecallReason::OrbitRemoved,
        },
        params: &params,
    })
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
