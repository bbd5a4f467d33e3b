//! The inputs every plugin is tried on: a few small canary cases run at every
//! load before a swap, and a wider conformance set that
//! `callpark plugin check` runs. A plugin passes a case when it answers
//! within the deadline, without trapping, by the rules of
//! `callpark_core::check_*`, and the same way twice (plugins are pure).

use callpark_core::{DialContext, OrbitState, ParkRequest, ParkTarget, ParkedCall, RecallReason};

/// One input, named for the report.
#[derive(Debug, Clone)]
pub struct Case<T> {
    pub name: &'static str,
    /// Run at every load, before the swap.
    pub canary: bool,
    pub input: T,
}

/// What happened to one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOutcome {
    pub name: String,
    /// The answer, described, or why the case failed.
    pub result: Result<String, String>,
}

/// A fixed time for the cases: 2026-01-01T00:00:00Z.
const NOW_MS: u64 = 1_767_225_600_000;

fn orbits(first: u32, count: u32, occupied_every: u32) -> Vec<OrbitState> {
    (0..count)
        .map(|i| OrbitState {
            number: (first + i).to_string(),
            occupied: u32::from(occupied_every > 0 && i % occupied_every == 0),
            capacity: 1,
            enabled: true,
        })
        .collect()
}

fn request(target: ParkTarget, candidates: Vec<OrbitState>) -> ParkRequest {
    ParkRequest {
        parker: "sip:alice@example.com".into(),
        parked_uri: "sip:+15551230000@carrier.example.net".into(),
        parked_display: "Bob Caller".into(),
        target,
        candidates,
        last_orbit: None,
        now_ms: NOW_MS,
        entropy: 0x9e37_79b9_7f4a_7c15,
        params: vec![],
    }
}

pub fn allocator_cases() -> Vec<Case<ParkRequest>> {
    let busy = OrbitState {
        number: "701".into(),
        occupied: 1,
        capacity: 1,
        enabled: true,
    };
    let mut queue = orbits(799, 1, 0);
    queue[0].capacity = 5;
    queue[0].occupied = 3;
    let mut with_disabled = orbits(701, 3, 0);
    with_disabled[0].enabled = false;
    let mut next = request(ParkTarget::DefaultLot, orbits(701, 5, 2));
    next.last_orbit = Some("702".into());
    let mut unknown = request(ParkTarget::DefaultLot, orbits(701, 3, 0));
    unknown.parker = String::new();
    unknown.parked_display = "Zoë Ünicode 😀".into();
    unknown.parked_uri = "tel:+4930123456".into();
    vec![
        Case {
            name: "default lot, three free orbits",
            canary: true,
            input: request(ParkTarget::DefaultLot, orbits(701, 3, 0)),
        },
        Case {
            name: "group with its first destination taken",
            canary: true,
            input: request(ParkTarget::Group("front-desk".into()), orbits(701, 3, 3)),
        },
        Case {
            name: "directed park on a free orbit",
            canary: true,
            input: request(ParkTarget::Orbit("705".into()), orbits(705, 1, 0)),
        },
        Case {
            name: "directed park on a busy orbit",
            canary: false,
            input: request(ParkTarget::Orbit("701".into()), vec![busy]),
        },
        Case {
            name: "every orbit taken",
            canary: false,
            input: request(ParkTarget::DefaultLot, orbits(701, 4, 1)),
        },
        Case {
            name: "group with no destinations",
            canary: false,
            input: request(ParkTarget::Group("empty".into()), vec![]),
        },
        Case {
            name: "FIFO orbit with room",
            canary: false,
            input: request(ParkTarget::Orbit("799".into()), queue),
        },
        Case {
            name: "a disabled orbit first",
            canary: false,
            input: request(ParkTarget::DefaultLot, with_disabled),
        },
        Case {
            name: "after the orbit handed out last",
            canary: false,
            input: next,
        },
        Case {
            name: "unknown parker, non-ASCII caller, tel: URI",
            canary: false,
            input: unknown,
        },
        Case {
            name: "default lot of 50 orbits, every third taken",
            canary: false,
            input: request(ParkTarget::DefaultLot, orbits(701, 50, 3)),
        },
    ]
}

fn dial(dialed: &str, referred_by: Option<&str>, replaces: bool, is_orbit: bool) -> DialContext {
    DialContext {
        dialed: dialed.into(),
        caller: "sip:bob@example.com".into(),
        referred_by: referred_by.map(String::from),
        has_replaces: replaces,
        dialed_is_orbit: is_orbit,
        params: vec![],
    }
}

pub fn dialing_cases() -> Vec<Case<DialContext>> {
    let alice = Some("sip:alice@example.com");
    let long = "7".repeat(200);
    vec![
        Case {
            name: "directed park code *68701",
            canary: true,
            input: dial("*68701", alice, false, false),
        },
        Case {
            name: "bare orbit 701 with Referred-By",
            canary: true,
            input: dial("701", alice, false, true),
        },
        Case {
            name: "retrieve code *88701",
            canary: true,
            input: dial("*88701", None, false, false),
        },
        Case {
            name: "group park code #58",
            canary: false,
            input: dial("#58", alice, false, false),
        },
        Case {
            name: "retrieve code *4701",
            canary: false,
            input: dial("*4701", None, false, false),
        },
        Case {
            name: "bare orbit 701 with Replaces",
            canary: false,
            input: dial("701", None, true, true),
        },
        Case {
            name: "bare orbit 701, no transfer headers",
            canary: false,
            input: dial("701", None, false, true),
        },
        Case {
            name: "a user name",
            canary: false,
            input: dial("alice", None, false, false),
        },
        Case {
            name: "an empty user part",
            canary: false,
            input: dial("", None, false, false),
        },
        Case {
            name: "200 digits",
            canary: false,
            input: dial(&long, None, false, false),
        },
    ]
}

fn parked(parker: &str, reason: RecallReason, recalls_done: u32) -> ParkedCall {
    ParkedCall {
        orbit: "701".into(),
        group: Some("front-desk".into()),
        parker: parker.into(),
        parked_uri: "sip:+15551230000@carrier.example.net".into(),
        parked_display: "Bob Caller".into(),
        parked_at_ms: NOW_MS - 45_000,
        now_ms: NOW_MS,
        recalls_done,
        reason,
        params: vec![],
    }
}

pub fn recall_cases() -> Vec<Case<ParkedCall>> {
    let alice = "sip:alice@example.com";
    vec![
        Case {
            name: "timeout, parker known",
            canary: true,
            input: parked(alice, RecallReason::Timeout, 0),
        },
        Case {
            name: "timeout, parker unknown",
            canary: true,
            input: parked("", RecallReason::Timeout, 0),
        },
        Case {
            name: "escape key",
            canary: false,
            input: parked(alice, RecallReason::EscapeKey, 0),
        },
        Case {
            name: "orbit removed",
            canary: false,
            input: parked(alice, RecallReason::OrbitRemoved, 0),
        },
        Case {
            name: "fifth recall of a re-parked call",
            canary: false,
            input: parked(alice, RecallReason::Timeout, 5),
        },
    ]
}
