//! Conversions between `callpark-core`'s policy types and the component
//! model types generated from the WIT, at each version the host serves.
//! The types every version has are converted by the same code
//! (`conversions!`), expanded once per version's generated types.

use callpark_core as core;

/// The params as the WIT passes them: borrowed pairs (the same Rust type at
/// every version).
pub(crate) fn params(p: &core::Params) -> Vec<(&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

macro_rules! conversions {
    () => {
        pub(crate) fn park_target(t: &core::ParkTarget) -> wit::ParkTarget<'_> {
            match t {
                core::ParkTarget::Orbit(o) => wit::ParkTarget::Orbit(o),
                core::ParkTarget::Group(g) => wit::ParkTarget::Group(g),
                core::ParkTarget::DefaultLot => wit::ParkTarget::DefaultLot,
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

        pub(crate) fn with_dial_context<R>(
            c: &core::DialContext,
            params: &core::Params,
            f: impl FnOnce(wit::DialContext<'_>) -> R,
        ) -> R {
            let params = super::params(params);
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
            let params = super::params(params);
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
    };
}

/// `callpark:policy@0.1.0`, frozen.
pub(crate) mod v0_1 {
    use super::core;
    use crate::bindings::v0_1::types as wit;
    conversions!();

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
        let params = super::params(params);
        f(wit::ParkRequest {
            parker: &r.parker,
            parked_uri: &r.parked_uri,
            parked_display: &r.parked_display,
            target: park_target(&r.target),
            candidates: &candidates,
            last_orbit: r.last_orbit.as_deref(),
            now_ms: r.now_ms,
            entropy: r.entropy,
            params: &params,
        })
    }

    /// A 0.1.0 dialing answer as the host has always carried it out: a 0.1.0
    /// plugin cannot see whether the dialed orbit holds a call, and was
    /// written for a host that parks the caller when a bare orbit it was
    /// told to retrieve from is empty. So "retrieve from the orbit dialed"
    /// on an empty orbit means "park there" (0.2.0 plugins decide that
    /// themselves, and the host does what they say).
    pub(crate) fn bare_orbit_as_in_0_1(
        ctx: &core::DialContext,
        a: wit::DialAction,
    ) -> core::DialAction {
        match dial_action(a) {
            core::DialAction::Retrieve(Some(orbit))
                if ctx.dialed_is_orbit
                    && orbit == ctx.dialed.trim()
                    && ctx.dialed_orbit.as_ref().is_some_and(|o| o.occupied == 0) =>
            {
                core::DialAction::ParkOrbit(orbit)
            }
            other => other,
        }
    }
}

/// `callpark:policy@0.2.0`: 0.1.0's conversions, and what 0.2.0 adds.
pub(crate) mod v0_2 {
    use super::core;
    use crate::bindings::v0_2::types as wit;
    conversions!();

    /// Calls `f` with the dial context and the state of the dialed orbit
    /// (`dialing.parse-dialed`).
    pub(crate) fn with_dial_context_and_orbit<R>(
        c: &core::DialContext,
        params: &core::Params,
        f: impl FnOnce(wit::DialContext<'_>, Option<wit::OrbitState<'_>>) -> R,
    ) -> R {
        let orbit = c.dialed_orbit.as_ref().map(|o| wit::OrbitState {
            number: &o.number,
            occupied: o.occupied,
            capacity: o.capacity,
            enabled: o.enabled,
        });
        with_dial_context(c, params, |ctx| f(ctx, orbit))
    }

    /// Calls `f` with the request as `allocator.pick` takes it: the
    /// candidates as columns of numbers, which the canonical ABI copies in
    /// one piece each (0.1.0 lowers a string per orbit), with a string only
    /// for an orbit whose number is not written as one.
    pub(crate) fn with_pick_request<R>(
        r: &core::ParkRequest,
        params: &core::Params,
        f: impl FnOnce(wit::PickRequest<'_>) -> R,
    ) -> R {
        let n = r.candidates.len();
        let (mut numbers, mut occupied, mut capacity) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut labels: Vec<(u32, &str)> = Vec::new();
        for (i, o) in r.candidates.iter().enumerate() {
            let number = core::numeric_orbit(&o.number);
            if number.is_none() {
                labels.push((i as u32, &o.number));
            }
            numbers.push(number.unwrap_or(0));
            occupied.push(o.occupied);
            capacity.push(if o.enabled { o.capacity } else { 0 });
        }
        let last = r.last_orbit.as_deref().and_then(|last| {
            r.candidates
                .iter()
                .position(|c| c.number == last)
                .map(|i| i as u32)
        });
        let params = super::params(params);
        f(wit::PickRequest {
            parker: &r.parker,
            parked_uri: &r.parked_uri,
            parked_display: &r.parked_display,
            target: park_target(&r.target),
            candidates: wit::Candidates {
                numbers: &numbers,
                labels: &labels,
                occupied: &occupied,
                capacity: &capacity,
            },
            last,
            now_ms: r.now_ms,
            entropy: r.entropy,
            params: &params,
        })
    }

    /// A `pick` answer as an allocation. An index past the candidates
    /// becomes an orbit no candidate has, which the rules refuse.
    pub(crate) fn picked(r: &core::ParkRequest, p: wit::Picked) -> core::Allocation {
        match p {
            wit::Picked::Candidate(i) => {
                core::Allocation::Orbit(r.candidates.get(i as usize).map_or_else(
                    || format!("candidate #{i} of {}", r.candidates.len()),
                    |c| c.number.clone(),
                ))
            }
            wit::Picked::Rejected(rejection) => allocation(wit::Allocation::Rejected(rejection)),
        }
    }

    pub(crate) fn with_park_event<R>(
        e: &core::ParkEvent,
        params: &core::Params,
        f: impl FnOnce(wit::ParkEvent<'_>) -> R,
    ) -> R {
        use core::ParkEventKind as K;
        use wit::ParkEventKind as W;
        let params = super::params(params);
        f(wit::ParkEvent {
            kind: match e.kind {
                K::Parked => W::Parked,
                K::Retrieved => W::Retrieved,
                K::Abandoned => W::Abandoned,
                K::RecallStarted => W::RecallStarted,
                K::RecallStep => W::RecallStep,
                K::RecallAnswered => W::RecallAnswered,
                K::RecallExhausted => W::RecallExhausted,
                K::EscapeKey => W::EscapeKey,
                K::GiveUp => W::Giveup,
                K::Moved => W::Moved,
            },
            call: e.call,
            orbit: &e.orbit,
            parker: &e.parker,
            parked_uri: &e.parked_uri,
            call_id: &e.call_id,
            by: &e.by,
            detail: &e.detail,
            step: e.step,
            at_ms: e.at_ms,
            params: &params,
        })
    }

    pub(crate) fn event_actions(actions: Vec<wit::EventAction>) -> Vec<core::EventAction> {
        actions
            .into_iter()
            .map(|a| match a {
                wit::EventAction::SendMessage(m) => core::EventAction::SendMessage {
                    to: m.to,
                    text: m.text,
                },
            })
            .collect()
    }
}
