//! Plugin test cases as TOML: the built-in conformance set
//! (`cases/conformance.toml`) and the cases an integrator writes for
//! `callpark plugin test`. Both are the same format, so the built-in file is
//! also the example of it.
//!
//! A file has an optional `[params]` table, laid over the plugin's params
//! for every case, and arrays of cases per world: `[[allocator]]`,
//! `[[dialing]]`, `[[recall]]`. A case names its input's fields as the WIT
//! does (snake_case keys, kebab-case values); fields left out take the
//! defaults below, so a case says only what it is about. `expect` is
//! optional: without it a case checks the rules every answer keeps and that
//! the plugin answers the same twice; with it the answer must also match.
//!
//! ```toml
//! [params]
//! vip_domains = "bigcustomer.com"
//!
//! [[allocator]]
//! name = "a VIP lands in the reserved block"
//! parked_uri = "sip:ceo@bigcustomer.com"
//! target = "default-lot"                      # or { orbit = "701" }, { group = "sales" }
//! candidates = { first = 701, count = 10 }    # or [{ number = "701", occupied = 1 }, ...]
//! expect = { orbit = "790" }                  # or { rejected = "full" }, { failure = "timeout" }
//! ```
//!
//! Parsing reads no file and no clock: the caller hands over the text.

use std::collections::BTreeMap;

use callpark_core::{
    Allocation, DialAction, DialContext, EndAction, EventAction, OrbitState, Params, ParkEvent,
    ParkEventKind, ParkRequest, ParkTarget, ParkedCall, RecallPlan, RecallReason, RejectCode,
};
use serde::Deserialize;
use toml::Spanned;

use crate::error::CallFailure;

/// A fixed time for the cases: 2026-01-01T00:00:00Z.
pub const NOW_MS: u64 = 1_767_225_600_000;
const ENTROPY: u64 = 0x9e37_79b9_7f4a_7c15;
const PARKER: &str = "sip:alice@example.com";
const PARKED_URI: &str = "sip:+15551230000@carrier.example.net";
const PARKED_DISPLAY: &str = "Bob Caller";
const DIAL_CALLER: &str = "sip:bob@example.com";

/// One case: its input, and what the answer must be when it says.
#[derive(Debug, Clone)]
pub struct Case<T, P> {
    pub name: String,
    /// Run at every load, before the swap (the built-in set uses this).
    pub canary: bool,
    pub input: T,
    pub expect: Option<Expect<P>>,
    /// The line of the file where the case starts.
    pub line: usize,
}

/// What a case expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect<P> {
    /// An answer that keeps the rules and matches the pattern.
    Answer(P),
    /// The plugin fails this way (the host would fall back or refuse).
    Failure(FailureKind),
}

/// How a plugin can fail a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// Past its deadline.
    Timeout,
    /// A trap: a panic, an exception, memory over its cap.
    Trap,
    /// An answer that breaks the rules (an orbit that is not a candidate...).
    Invalid,
    /// Any of these.
    Any,
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Trap => "trap",
            FailureKind::Invalid => "invalid answer",
            FailureKind::Any => "failure of any kind",
        })
    }
}

impl FailureKind {
    pub(crate) fn matches(self, failure: &CaseFailure) -> bool {
        matches!(
            (self, failure),
            (FailureKind::Any, _)
                | (
                    FailureKind::Timeout,
                    CaseFailure::Call(CallFailure::Timeout)
                )
                | (
                    FailureKind::Trap,
                    CaseFailure::Call(CallFailure::Trap(_) | CallFailure::Instantiate(_))
                )
                | (FailureKind::Invalid, CaseFailure::Invalid(_))
        )
    }
}

/// Why a plugin did not answer a case well.
#[derive(Debug, Clone)]
pub(crate) enum CaseFailure {
    Call(CallFailure),
    Invalid(String),
}

impl std::fmt::Display for CaseFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaseFailure::Call(c) => write!(f, "{c}"),
            CaseFailure::Invalid(why) => write!(f, "answer breaks the rules: {why}"),
        }
    }
}

/// A pattern an answer of one world is compared with.
pub trait Pattern<A> {
    /// `Err` says how the answer differs.
    fn check(&self, answer: &A) -> Result<(), String>;
}

/// What an allocation must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocationPattern {
    Orbit(String),
    /// Refused with this code, and this reason when given.
    Rejected(RejectCode, Option<String>),
}

impl Pattern<Allocation> for AllocationPattern {
    fn check(&self, answer: &Allocation) -> Result<(), String> {
        match (self, answer) {
            (AllocationPattern::Orbit(want), Allocation::Orbit(got)) if want == got => Ok(()),
            (AllocationPattern::Rejected(code, reason), Allocation::Rejected(r))
                if *code == r.code && reason.as_ref().is_none_or(|want| *want == r.reason) =>
            {
                Ok(())
            }
            _ => Err(format!("expected {self:?}, got {answer:?}")),
        }
    }
}

/// What a dial action must be: exactly this action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialPattern(pub DialAction);

impl Pattern<DialAction> for DialPattern {
    fn check(&self, answer: &DialAction) -> Result<(), String> {
        if self.0 == *answer {
            Ok(())
        } else {
            Err(format!("expected {:?}, got {answer:?}", self.0))
        }
    }
}

/// What a recall plan must be; fields left out are not compared.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecallPattern {
    pub steps: Option<Vec<StepPattern>>,
    pub end: Option<EndAction>,
}

/// One expected step: its target, and the other fields when given.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepPattern {
    pub target: String,
    pub ring_ms: Option<u32>,
    pub alert_info: Option<String>,
    pub display: Option<String>,
}

impl Pattern<RecallPlan> for RecallPattern {
    fn check(&self, plan: &RecallPlan) -> Result<(), String> {
        if let Some(steps) = &self.steps {
            if steps.len() != plan.steps.len() {
                let targets: Vec<&str> = plan.steps.iter().map(|s| s.target.as_str()).collect();
                return Err(format!(
                    "expected {} steps, got {}: {targets:?}",
                    steps.len(),
                    plan.steps.len()
                ));
            }
            for (i, (want, got)) in steps.iter().zip(&plan.steps).enumerate() {
                let same = want.target == got.target
                    && want.ring_ms.is_none_or(|ms| ms == got.ring_ms)
                    && (want.alert_info.is_none() || want.alert_info == got.alert_info)
                    && (want.display.is_none() || want.display == got.display);
                if !same {
                    return Err(format!("step {}: expected {want:?}, got {got:?}", i + 1));
                }
            }
        }
        match &self.end {
            Some(end) if *end != plan.end => {
                Err(format!("expected end {end:?}, got {:?}", plan.end))
            }
            _ => Ok(()),
        }
    }
}

/// What an events plugin's actions must be: how many, and the MESSAGE
/// targets in order when given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventsPattern {
    pub count: Option<usize>,
    pub messages_to: Option<Vec<String>>,
}

impl Pattern<Vec<EventAction>> for EventsPattern {
    fn check(&self, actions: &Vec<EventAction>) -> Result<(), String> {
        if let Some(n) = self.count
            && n != actions.len()
        {
            return Err(format!("expected {n} actions, got {actions:?}"));
        }
        if let Some(want) = &self.messages_to {
            let got: Vec<&str> = actions
                .iter()
                .map(|a| match a {
                    EventAction::SendMessage { to, .. } => to.as_str(),
                })
                .collect();
            if *want != got {
                return Err(format!("expected messages to {want:?}, got {got:?}"));
            }
        }
        Ok(())
    }
}

/// The cases of one file, per world.
#[derive(Debug, Clone, Default)]
pub struct CaseFile {
    /// The file's `[params]`, already laid under each case's own.
    pub params: Params,
    pub allocator: Vec<Case<ParkRequest, AllocationPattern>>,
    pub dialing: Vec<Case<DialContext, DialPattern>>,
    pub recall: Vec<Case<ParkedCall, RecallPattern>>,
    pub events: Vec<Case<ParkEvent, EventsPattern>>,
}

impl CaseFile {
    pub fn len(&self) -> usize {
        self.allocator.len() + self.dialing.len() + self.recall.len() + self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A case file that cannot be used, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct CaseFileError {
    pub line: usize,
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default)]
    allocator: Vec<Spanned<RawAllocatorCase>>,
    #[serde(default)]
    dialing: Vec<Spanned<RawDialCase>>,
    #[serde(default)]
    recall: Vec<Spanned<RawRecallCase>>,
    #[serde(default)]
    events: Vec<Spanned<RawEventCase>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEventCase {
    name: String,
    #[serde(default)]
    canary: bool,
    #[serde(default)]
    params: BTreeMap<String, String>,
    /// `parked`, `retrieved`, `recall-step`, ... (as the WIT names them).
    kind: String,
    #[serde(default = "one_u64")]
    call: u64,
    orbit: Option<String>,
    parker: Option<String>,
    parked_uri: Option<String>,
    call_id: Option<String>,
    #[serde(default)]
    by: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    step: u32,
    at_ms: Option<u64>,
    expect: Option<RawEventsExpect>,
}

fn one_u64() -> u64 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEventsExpect {
    /// How many actions.
    actions: Option<usize>,
    /// The targets of the MESSAGE actions, in order.
    messages_to: Option<Vec<String>>,
    failure: Option<FailureKind>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllocatorCase {
    name: String,
    #[serde(default)]
    canary: bool,
    #[serde(default)]
    params: BTreeMap<String, String>,
    parker: Option<String>,
    parked_uri: Option<String>,
    parked_display: Option<String>,
    target: RawTarget,
    candidates: Option<RawCandidates>,
    last_orbit: Option<String>,
    now_ms: Option<u64>,
    entropy: Option<u64>,
    expect: Option<RawAllocationExpect>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawTarget {
    /// `"default-lot"`.
    Named(String),
    Table {
        orbit: Option<String>,
        group: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCandidates {
    List(Vec<RawOrbit>),
    Range(RawRange),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrbit {
    number: String,
    #[serde(default)]
    occupied: u32,
    #[serde(default = "one")]
    capacity: u32,
    #[serde(default = "yes")]
    enabled: bool,
}

/// `count` orbits numbered from `first`, each with `capacity`; every
/// `occupied_every`-th one (the first included) holds a call.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    first: u32,
    count: u32,
    #[serde(default)]
    occupied_every: u32,
    #[serde(default = "one")]
    capacity: u32,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllocationExpect {
    orbit: Option<String>,
    rejected: Option<RawRejectCode>,
    reason: Option<String>,
    failure: Option<FailureKind>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum RawRejectCode {
    Busy,
    Full,
    NotFound,
    Forbidden,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDialCase {
    name: String,
    #[serde(default)]
    canary: bool,
    #[serde(default)]
    params: BTreeMap<String, String>,
    dialed: String,
    caller: Option<String>,
    referred_by: Option<String>,
    #[serde(default)]
    has_replaces: bool,
    #[serde(default)]
    dialed_is_orbit: bool,
    /// The state of the orbit `dialed` names (0.2.0 `parse-dialed`); left
    /// out, it names none.
    orbit: Option<RawDialedOrbit>,
    expect: Option<RawDialExpect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDialedOrbit {
    /// Left out: `dialed`.
    number: Option<String>,
    #[serde(default)]
    occupied: u32,
    #[serde(default = "one")]
    capacity: u32,
    #[serde(default = "yes")]
    enabled: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDialExpect {
    action: Option<RawDialKind>,
    orbit: Option<String>,
    group: Option<String>,
    failure: Option<FailureKind>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum RawDialKind {
    ParkOrbit,
    ParkGroup,
    Retrieve,
    NotFeature,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecallCase {
    name: String,
    #[serde(default)]
    canary: bool,
    #[serde(default)]
    params: BTreeMap<String, String>,
    orbit: Option<String>,
    group: Option<String>,
    parker: Option<String>,
    parked_uri: Option<String>,
    parked_display: Option<String>,
    parked_at_ms: Option<u64>,
    now_ms: Option<u64>,
    #[serde(default)]
    recalls_done: u32,
    reason: Option<RawRecallReason>,
    expect: Option<RawRecallExpect>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum RawRecallReason {
    Timeout,
    EscapeKey,
    OrbitRemoved,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecallExpect {
    steps: Option<Vec<StepPattern>>,
    /// `disconnect`, `re-park` or `transfer`.
    end: Option<String>,
    /// With `end = "re-park"`: after how long; left out, the orbit's own.
    re_park_ms: Option<u32>,
    /// With `end = "transfer"`: to whom.
    transfer_to: Option<String>,
    failure: Option<FailureKind>,
}

/// Reads a case file. Errors name the line.
pub fn parse(text: &str) -> Result<CaseFile, CaseFileError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| CaseFileError {
        line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
        reason: e.message().to_string(),
    })?;
    let file_params = to_params(&raw.params);
    let mut out = CaseFile {
        params: file_params.clone(),
        ..CaseFile::default()
    };
    for case in raw.allocator {
        let line = line_of(text, case.span().start);
        let at = |reason: String| CaseFileError { line, reason };
        let c = case.into_inner();
        let params = layered(&file_params, &c.params);
        let target = match c.target {
            RawTarget::Named(n) if n == "default-lot" => ParkTarget::DefaultLot,
            RawTarget::Named(n) => {
                return Err(at(format!(
                    "target `{n}` is not \"default-lot\", {{ orbit = \"..\" }} or {{ group = \"..\" }}"
                )));
            }
            RawTarget::Table {
                orbit: Some(o),
                group: None,
            } => ParkTarget::Orbit(o),
            RawTarget::Table {
                orbit: None,
                group: Some(g),
            } => ParkTarget::Group(g),
            RawTarget::Table { .. } => {
                return Err(at("target names exactly one of orbit and group".into()));
            }
        };
        let candidates = match (c.candidates, &target) {
            (Some(RawCandidates::List(list)), _) => list
                .into_iter()
                .map(|o| OrbitState {
                    number: o.number,
                    occupied: o.occupied,
                    capacity: o.capacity,
                    enabled: o.enabled,
                })
                .collect(),
            (Some(RawCandidates::Range(r)), _) => {
                if r.count > 10_000 {
                    return Err(at(format!("{} candidates (at most 10000)", r.count)));
                }
                (0..r.count)
                    .map(|i| OrbitState {
                        number: (u64::from(r.first) + u64::from(i)).to_string(),
                        occupied: u32::from(r.occupied_every > 0 && i % r.occupied_every == 0),
                        capacity: r.capacity,
                        enabled: true,
                    })
                    .collect()
            }
            // A directed park: the host passes just that orbit.
            (None, ParkTarget::Orbit(o)) => vec![OrbitState {
                number: o.clone(),
                occupied: 0,
                capacity: 1,
                enabled: true,
            }],
            (None, _) => {
                return Err(at("a park in a group or the lot needs `candidates`".into()));
            }
        };
        let expect = match c.expect {
            None => None,
            Some(e) => Some(match (e.orbit, e.rejected, e.failure) {
                (Some(o), None, None) if e.reason.is_none() => {
                    Expect::Answer(AllocationPattern::Orbit(o))
                }
                (None, Some(code), None) => {
                    Expect::Answer(AllocationPattern::Rejected(reject_code(code), e.reason))
                }
                (None, None, Some(f)) if e.reason.is_none() => Expect::Failure(f),
                _ => {
                    return Err(at(
                        "expect names one of orbit, rejected (with an optional reason) and failure"
                            .into(),
                    ));
                }
            }),
        };
        out.allocator.push(Case {
            name: c.name,
            canary: c.canary,
            input: ParkRequest {
                parker: c.parker.unwrap_or_else(|| PARKER.into()),
                parked_uri: c.parked_uri.unwrap_or_else(|| PARKED_URI.into()),
                parked_display: c.parked_display.unwrap_or_else(|| PARKED_DISPLAY.into()),
                target,
                candidates,
                last_orbit: c.last_orbit,
                now_ms: c.now_ms.unwrap_or(NOW_MS),
                entropy: c.entropy.unwrap_or(ENTROPY),
                params,
            },
            expect,
            line,
        });
    }
    for case in raw.dialing {
        let line = line_of(text, case.span().start);
        let at = |reason: String| CaseFileError { line, reason };
        let c = case.into_inner();
        let expect = match c.expect {
            None => None,
            Some(e) => Some(match (e.action, e.failure) {
                (Some(kind), None) => {
                    let action = match (kind, e.orbit, e.group) {
                        (RawDialKind::ParkOrbit, Some(o), None) => DialAction::ParkOrbit(o),
                        (RawDialKind::ParkGroup, None, g) => DialAction::ParkGroup(g),
                        (RawDialKind::Retrieve, o, None) => DialAction::Retrieve(o),
                        (RawDialKind::NotFeature, None, None) => DialAction::NotFeature,
                        _ => {
                            return Err(at("expect: park-orbit takes an orbit, park-group an optional group, retrieve an optional orbit, not-feature neither".into()));
                        }
                    };
                    Expect::Answer(DialPattern(action))
                }
                (None, Some(f)) if e.orbit.is_none() && e.group.is_none() => Expect::Failure(f),
                _ => return Err(at("expect names one of action and failure".into())),
            }),
        };
        let dialed = c.dialed;
        out.dialing.push(Case {
            name: c.name,
            canary: c.canary,
            input: DialContext {
                dialed: dialed.clone(),
                caller: c.caller.unwrap_or_else(|| DIAL_CALLER.into()),
                referred_by: c.referred_by,
                has_replaces: c.has_replaces,
                dialed_is_orbit: c.dialed_is_orbit,
                dialed_orbit: c.orbit.map(|o| OrbitState {
                    number: o.number.unwrap_or_else(|| dialed.clone()),
                    occupied: o.occupied,
                    capacity: o.capacity,
                    enabled: o.enabled,
                }),
                params: layered(&file_params, &c.params),
            },
            expect,
            line,
        });
    }
    for case in raw.recall {
        let line = line_of(text, case.span().start);
        let at = |reason: String| CaseFileError { line, reason };
        let c = case.into_inner();
        let expect = match c.expect {
            None => None,
            Some(e) if e.failure.is_some() => {
                if e.steps.is_some() || e.end.is_some() {
                    return Err(at("expect names either failure or steps and end".into()));
                }
                e.failure.map(Expect::Failure)
            }
            Some(e) => {
                let end = match (e.end.as_deref(), e.re_park_ms, e.transfer_to) {
                    (None, None, None) => None,
                    (Some("disconnect"), None, None) => Some(EndAction::Disconnect),
                    (Some("re-park"), ms, None) => Some(EndAction::RePark(ms)),
                    (Some("transfer"), None, Some(to)) => Some(EndAction::Transfer(to)),
                    _ => {
                        return Err(at("expect: end is disconnect, re-park (with an optional re_park_ms) or transfer (with transfer_to)".into()));
                    }
                };
                Some(Expect::Answer(RecallPattern {
                    steps: e.steps,
                    end,
                }))
            }
        };
        let now_ms = c.now_ms.unwrap_or(NOW_MS);
        out.recall.push(Case {
            name: c.name,
            canary: c.canary,
            input: ParkedCall {
                orbit: c.orbit.unwrap_or_else(|| "701".into()),
                group: c.group,
                parker: c.parker.unwrap_or_else(|| PARKER.into()),
                parked_uri: c.parked_uri.unwrap_or_else(|| PARKED_URI.into()),
                parked_display: c.parked_display.unwrap_or_else(|| PARKED_DISPLAY.into()),
                parked_at_ms: c.parked_at_ms.unwrap_or(now_ms.saturating_sub(45_000)),
                now_ms,
                recalls_done: c.recalls_done,
                reason: match c.reason.unwrap_or(RawRecallReason::Timeout) {
                    RawRecallReason::Timeout => RecallReason::Timeout,
                    RawRecallReason::EscapeKey => RecallReason::EscapeKey,
                    RawRecallReason::OrbitRemoved => RecallReason::OrbitRemoved,
                },
                params: layered(&file_params, &c.params),
            },
            expect,
            line,
        });
    }
    for case in raw.events {
        let line = line_of(text, case.span().start);
        let at = |reason: String| CaseFileError { line, reason };
        let c = case.into_inner();
        let expect = match c.expect {
            None => None,
            Some(e) => match (e.failure, e.actions, e.messages_to) {
                (Some(f), None, None) => Some(Expect::Failure(f)),
                (None, count, messages_to) => {
                    Some(Expect::Answer(EventsPattern { count, messages_to }))
                }
                _ => {
                    return Err(at(
                        "expect names either failure or actions and messages_to".into()
                    ));
                }
            },
        };
        let Some(kind) = ParkEventKind::ALL.into_iter().find(|k| k.name() == c.kind) else {
            let names: Vec<&str> = ParkEventKind::ALL.iter().map(|k| k.name()).collect();
            return Err(at(format!(
                "kind `{}` is not one of {}",
                c.kind,
                names.join(", ")
            )));
        };
        out.events.push(Case {
            name: c.name,
            canary: c.canary,
            input: ParkEvent {
                kind,
                call: c.call,
                orbit: c.orbit.unwrap_or_else(|| "701".into()),
                parker: c.parker.unwrap_or_else(|| PARKER.into()),
                parked_uri: c.parked_uri.unwrap_or_else(|| PARKED_URI.into()),
                call_id: c.call_id.unwrap_or_else(|| "case-call@callpark".into()),
                by: c.by,
                detail: c.detail,
                step: c.step,
                at_ms: c.at_ms.unwrap_or(NOW_MS),
                params: layered(&file_params, &c.params),
            },
            expect,
            line,
        });
    }
    Ok(out)
}

fn reject_code(c: RawRejectCode) -> RejectCode {
    match c {
        RawRejectCode::Busy => RejectCode::Busy,
        RawRejectCode::Full => RejectCode::Full,
        RawRejectCode::NotFound => RejectCode::NotFound,
        RawRejectCode::Forbidden => RejectCode::Forbidden,
    }
}

fn to_params(map: &BTreeMap<String, String>) -> Params {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The file's params with the case's laid over them.
fn layered(file: &Params, case: &BTreeMap<String, String>) -> Params {
    let mut params = file.clone();
    callpark_core::lay_params(&mut params, to_params(case));
    params
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_file_parses_with_a_case_per_world() {
        let file = parse(crate::conformance::CONFORMANCE).unwrap();
        assert!(file.allocator.iter().any(|c| c.canary));
        assert!(file.dialing.iter().any(|c| c.canary));
        assert!(file.recall.iter().any(|c| c.canary));
    }

    #[test]
    fn a_case_takes_defaults_and_layers_params() {
        let file = parse(
            r#"
[params]
a = "file"
b = "file"

[[allocator]]
name = "x"
params = { b = "case" }
target = { orbit = "705" }
expect = { rejected = "busy" }

[[recall]]
name = "y"
expect = { steps = [{ target = "sip:alice@example.com" }], end = "re-park" }
"#,
        )
        .unwrap();
        let c = &file.allocator[0];
        assert_eq!(c.line, 6);
        assert_eq!(c.input.candidates.len(), 1);
        assert_eq!(c.input.parker, PARKER);
        assert_eq!(
            c.input.params,
            vec![("a".into(), "file".into()), ("b".into(), "case".into())]
        );
        assert_eq!(
            c.expect,
            Some(Expect::Answer(AllocationPattern::Rejected(
                RejectCode::Busy,
                None
            )))
        );
        let r = &file.recall[0];
        assert_eq!(
            r.expect,
            Some(Expect::Answer(RecallPattern {
                steps: Some(vec![StepPattern {
                    target: "sip:alice@example.com".into(),
                    ring_ms: None,
                    alert_info: None,
                    display: None
                }]),
                end: Some(EndAction::RePark(None)),
            }))
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_line() {
        let cases = [
            (
                "[[allocator]]\nname = \"x\"\ntarget = \"lot\"\n",
                1,
                "not \"default-lot\"",
            ),
            (
                "\n[[allocator]]\nname = \"x\"\ntarget = \"default-lot\"\n",
                2,
                "needs `candidates`",
            ),
            (
                "[[dialing]]\nname = \"x\"\ndialed = \"1\"\ncolor = \"red\"\n",
                4,
                "unknown field `color`",
            ),
            (
                "[[dialing]]\nname = \"x\"\ndialed = \"1\"\nexpect = { action = \"park-orbit\" }\n",
                1,
                "park-orbit takes an orbit",
            ),
            (
                "[[allocator]]\nname = \"x\"\ntarget = { orbit = \"1\" }\nexpect = { orbit = \"1\", failure = \"any\" }\n",
                1,
                "one of orbit",
            ),
            (
                "[[recall]]\nname = \"x\"\nreason = \"bored\"\n",
                3,
                "unknown variant",
            ),
            ("[[recall]]\nname = 3\n", 2, "invalid type"),
            (
                "\n\n[[events]]\nname = \"x\"\nkind = \"hung-up\"\n",
                3,
                "kind `hung-up` is not one of parked, retrieved",
            ),
            (
                "[[events]]\nname = \"x\"\nkind = \"parked\"\nexpect = { actions = 1, failure = \"trap\" }\n",
                1,
                "either failure or actions",
            ),
            (
                "[[dialing]]\nname = \"x\"\ndialed = \"701\"\norbit = { occupied = \"two\" }\n",
                4,
                "invalid type",
            ),
        ];
        for (text, line, reason) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.reason.contains(reason), "{text}: {e}");
        }
    }

    #[test]
    fn patterns_compare_what_they_name() {
        use callpark_core::{RecallStep, Rejection};
        let rejected = Allocation::Rejected(Rejection {
            code: RejectCode::Full,
            reason: "group sales is full".into(),
        });
        assert!(
            AllocationPattern::Rejected(RejectCode::Full, None)
                .check(&rejected)
                .is_ok()
        );
        assert!(
            AllocationPattern::Rejected(RejectCode::Full, Some("nope".into()))
                .check(&rejected)
                .is_err()
        );
        assert!(
            AllocationPattern::Orbit("701".into())
                .check(&rejected)
                .is_err()
        );
        let plan = RecallPlan {
            steps: vec![RecallStep {
                target: "sip:a@x".into(),
                ring_ms: 20_000,
                alert_info: None,
                display: Some("Park 701".into()),
            }],
            end: EndAction::Disconnect,
        };
        let step = |ring_ms| StepPattern {
            target: "sip:a@x".into(),
            ring_ms,
            alert_info: None,
            display: None,
        };
        let ok = RecallPattern {
            steps: Some(vec![step(Some(20_000))]),
            end: Some(EndAction::Disconnect),
        };
        assert!(ok.check(&plan).is_ok());
        let bad = RecallPattern {
            steps: Some(vec![step(Some(10_000))]),
            end: None,
        };
        assert!(bad.check(&plan).unwrap_err().contains("step 1"));
        assert!(FailureKind::Any.matches(&CaseFailure::Invalid("x".into())));
        assert!(FailureKind::Timeout.matches(&CaseFailure::Call(CallFailure::Timeout)));
        assert!(!FailureKind::Trap.matches(&CaseFailure::Call(CallFailure::Timeout)));
    }
}
