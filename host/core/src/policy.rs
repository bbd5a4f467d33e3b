//! The policy decisions of a park server, as plain Rust types.
//!
//! These types mirror the WIT package `callpark:policy@0.2.0` (`wit/policy.wit`),
//! which holds every type of 0.1.0; the WIT file documents every field. The host's plugin runtime
//! converts between them and the component model, and the built-in policy
//! (crate `callpark-builtin`) computes them natively.
//!
//! This module also holds the rules every answer must obey, whoever made it:
//! an answer that breaks them is treated as a failure of the policy.

/// Plugin parameters: ordered `(key, value)` pairs with unique keys.
pub type Params = Vec<(String, String)>;

/// Lays `over` on `base`: each key of `over` replaces the same key of
/// `base` (which moves to the end), the others are kept in order.
pub fn lay_params(base: &mut Params, over: impl IntoIterator<Item = (String, String)>) {
    for (k, v) in over {
        base.retain(|(b, _)| *b != k);
        base.push((k, v));
    }
}

/// Looks a parameter up by key.
pub fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// One orbit that a park request may land on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrbitState {
    pub number: String,
    pub occupied: u32,
    pub capacity: u32,
    pub enabled: bool,
}

impl OrbitState {
    /// True when a new call may be parked here.
    pub fn has_room(&self) -> bool {
        self.enabled && self.occupied < self.capacity
    }
}

/// An orbit number as the WIT `candidate` carries it: a `u32` when the
/// number is written as one (decimal digits, no leading zero), so that a
/// plugin gets no string for it. `None` for "*701", "0701", "0" and names.
pub fn numeric_orbit(number: &str) -> Option<u32> {
    // By hand, not `str::parse`: this runs for every candidate of every
    // park, and parse accepts a leading `+` that an orbit number is not.
    let digits = number.as_bytes();
    if digits.is_empty() || digits[0] == b'0' || digits.len() > 10 {
        return None;
    }
    digits.iter().try_fold(0u32, |n, &d| {
        if d.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
        } else {
            None
        }
    })
}

/// What an allocator needs to know of a candidate orbit, whichever form it
/// arrives in (`OrbitState`, or the WIT `candidate` without a string).
pub trait CandidateOrbit {
    fn enabled(&self) -> bool;
    /// Holds as many calls as it may.
    fn full(&self) -> bool;
    /// Whether this orbit's number is `number`.
    fn is_number(&self, number: &str) -> bool;
    fn has_room(&self) -> bool {
        self.enabled() && !self.full()
    }
}

impl CandidateOrbit for OrbitState {
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn full(&self) -> bool {
        self.occupied >= self.capacity
    }
    fn is_number(&self, number: &str) -> bool {
        self.number == number
    }
}

/// What a park request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParkTarget {
    Orbit(String),
    Group(String),
    DefaultLot,
}

/// The allocator's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkRequest {
    pub parker: String,
    pub parked_uri: String,
    pub parked_display: String,
    pub target: ParkTarget,
    pub candidates: Vec<OrbitState>,
    pub last_orbit: Option<String>,
    pub now_ms: u64,
    pub entropy: u64,
    pub params: Params,
}

/// Why a park request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectCode {
    Busy,
    Full,
    NotFound,
    Forbidden,
}

impl RejectCode {
    /// The SIP status a refusal with this code is answered with.
    pub fn sip_status(self) -> u16 {
        match self {
            RejectCode::Busy | RejectCode::Full => 486,
            RejectCode::NotFound => 404,
            RejectCode::Forbidden => 403,
        }
    }
}

/// A refusal and its reason (which goes into the SIP `Warning`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: RejectCode,
    pub reason: String,
}

/// The allocator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    Orbit(String),
    Rejected(Rejection),
}

/// The dialing plugin's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialContext {
    pub dialed: String,
    pub caller: String,
    pub referred_by: Option<String>,
    pub has_replaces: bool,
    pub dialed_is_orbit: bool,
    /// The orbit `dialed` names (by number or extension name) as the host
    /// sees it now; `None` when it names none. WIT 0.2.0 passes it to
    /// `parse-dialed`; a 0.1.0 plugin sees only `dialed_is_orbit`.
    pub dialed_orbit: Option<OrbitState>,
    pub params: Params,
}

/// What a dialed string means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialAction {
    /// Park on this orbit number or orbit name.
    ParkOrbit(String),
    /// Park in this group; `None` is the parker's own group.
    ParkGroup(Option<String>),
    /// Retrieve from this orbit; `None` is the oldest parked call anywhere.
    Retrieve(Option<String>),
    NotFeature,
}

/// Why recall starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecallReason {
    Timeout,
    EscapeKey,
    OrbitRemoved,
}

/// The recall plugin's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedCall {
    pub orbit: String,
    pub group: Option<String>,
    pub parker: String,
    pub parked_uri: String,
    pub parked_display: String,
    pub parked_at_ms: u64,
    pub now_ms: u64,
    pub recalls_done: u32,
    pub reason: RecallReason,
    pub params: Params,
}

/// One ring of a recall plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallStep {
    pub target: String,
    pub ring_ms: u32,
    pub alert_info: Option<String>,
    pub display: Option<String>,
}

/// What happens after the last step rang unanswered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndAction {
    Disconnect,
    /// Recall again after this many milliseconds (`None`: the orbit's
    /// `recall_after`).
    RePark(Option<u32>),
    Transfer(String),
}

/// Ring each step in order, then do `end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallPlan {
    pub steps: Vec<RecallStep>,
    pub end: EndAction,
}

/// A plugin slot: one of the three decisions a policy makes, or the events
/// slot, which decides nothing about a call (it is told of park events
/// after the fact, off the decision path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Allocator,
    Recall,
    Dialing,
    Events,
}

impl Decision {
    /// The three decisions of a policy (`Policy`, the `policy-plugin` world).
    pub const ALL: [Decision; 3] = [Decision::Allocator, Decision::Recall, Decision::Dialing];
    /// Every plugin slot.
    pub const SLOTS: [Decision; 4] = [
        Decision::Allocator,
        Decision::Recall,
        Decision::Dialing,
        Decision::Events,
    ];

    /// The name used in configuration, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Decision::Allocator => "allocator",
            Decision::Recall => "recall",
            Decision::Dialing => "dialing",
            Decision::Events => "events",
        }
    }
}

/// What happened to a parked call, for the events slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkEventKind {
    Parked,
    Retrieved,
    Abandoned,
    RecallStarted,
    RecallStep,
    RecallAnswered,
    RecallExhausted,
    EscapeKey,
    GiveUp,
    Moved,
}

impl ParkEventKind {
    pub const ALL: [ParkEventKind; 10] = [
        ParkEventKind::Parked,
        ParkEventKind::Retrieved,
        ParkEventKind::Abandoned,
        ParkEventKind::RecallStarted,
        ParkEventKind::RecallStep,
        ParkEventKind::RecallAnswered,
        ParkEventKind::RecallExhausted,
        ParkEventKind::EscapeKey,
        ParkEventKind::GiveUp,
        ParkEventKind::Moved,
    ];

    /// As logs, the WIT and case files say it.
    pub fn name(self) -> &'static str {
        match self {
            ParkEventKind::Parked => "parked",
            ParkEventKind::Retrieved => "retrieved",
            ParkEventKind::Abandoned => "abandoned",
            ParkEventKind::RecallStarted => "recall-started",
            ParkEventKind::RecallStep => "recall-step",
            ParkEventKind::RecallAnswered => "recall-answered",
            ParkEventKind::RecallExhausted => "recall-exhausted",
            ParkEventKind::EscapeKey => "escape-key",
            ParkEventKind::GiveUp => "giveup",
            ParkEventKind::Moved => "moved",
        }
    }
}

/// The events plugin's input: one park event (WIT `park-event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkEvent {
    pub kind: ParkEventKind,
    pub call: u64,
    pub orbit: String,
    pub parker: String,
    pub parked_uri: String,
    pub call_id: String,
    pub by: String,
    pub detail: String,
    pub step: u32,
    pub at_ms: u64,
    pub params: Params,
}

/// What an events plugin asks the host to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventAction {
    /// A SIP MESSAGE with a `text/plain` body.
    SendMessage { to: String, text: String },
}

/// The most actions an events plugin may answer one event with.
pub const MAX_EVENT_ACTIONS: usize = 8;
/// The longest MESSAGE body an events plugin may ask for.
pub const MAX_MESSAGE_TEXT: usize = 1024;

/// Checks an events plugin's answer: few actions, SIP targets, text that
/// fits a MESSAGE.
pub fn check_event_actions(actions: &[EventAction]) -> Result<(), String> {
    if actions.len() > MAX_EVENT_ACTIONS {
        return Err(format!(
            "{} actions (at most {MAX_EVENT_ACTIONS})",
            actions.len()
        ));
    }
    for (i, action) in actions.iter().enumerate() {
        let n = i + 1;
        match action {
            EventAction::SendMessage { to, text } => {
                let lower = to.get(..5).map(str::to_ascii_lowercase).unwrap_or_default();
                if !is_routable_uri(to) || lower.starts_with("tel:") {
                    return Err(format!(
                        "action {n}: message to {to:?} is not a sip: or sips: URI"
                    ));
                }
                if text.len() > MAX_MESSAGE_TEXT {
                    return Err(format!(
                        "action {n}: message text is {} bytes (at most {MAX_MESSAGE_TEXT})",
                        text.len()
                    ));
                }
            }
        }
    }
    Ok(())
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A policy could not decide, and the deployment chose to refuse the call
/// rather than fall back to the built-in policy (`on_failure = "reject"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{decision} policy failed: {reason}")]
pub struct PolicyError {
    pub decision: Decision,
    pub reason: String,
}

/// The three policy decisions of a park server. Implemented natively by the
/// built-in policy and, over WASM components, by the plugin runtime.
///
/// Implementations are pure: everything they need is in the argument.
pub trait Policy: Send + Sync {
    fn allocate(&self, req: &ParkRequest) -> Result<Allocation, PolicyError>;
    fn parse_dial(&self, ctx: &DialContext) -> Result<DialAction, PolicyError>;
    fn plan_recall(&self, call: &ParkedCall) -> Result<RecallPlan, PolicyError>;
}

/// The most steps a recall plan may hold.
pub const MAX_RECALL_STEPS: usize = 32;
/// The shortest and longest ring of one recall step.
pub const RING_MS_RANGE: std::ops::RangeInclusive<u32> = 1_000..=600_000;
/// The longest orbit number, orbit name, group name or feature code.
pub const MAX_NAME_LEN: usize = 64;
/// The longest URI or header value a plugin may hand back.
pub const MAX_URI_LEN: usize = 512;

/// Checks an allocator's answer against its request: the orbit must be one of
/// the candidates, enabled and with room.
pub fn check_allocation(req: &ParkRequest, answer: &Allocation) -> Result<(), String> {
    match answer {
        Allocation::Orbit(number) => {
            let Some(orbit) = req.candidates.iter().find(|c| &c.number == number) else {
                return Err(format!("orbit {number:?} is not among the candidates"));
            };
            if !orbit.enabled {
                return Err(format!("orbit {number} is disabled"));
            }
            if orbit.occupied >= orbit.capacity {
                return Err(format!(
                    "orbit {number} is full ({} of {})",
                    orbit.occupied, orbit.capacity
                ));
            }
            Ok(())
        }
        Allocation::Rejected(r) => check_text("rejection reason", &r.reason, MAX_URI_LEN),
    }
}

/// Checks a dialing plugin's answer: names must be short, printable and
/// free of SIP-significant characters.
pub fn check_dial_action(answer: &DialAction) -> Result<(), String> {
    match answer {
        DialAction::ParkOrbit(name) => check_name("orbit", name),
        DialAction::ParkGroup(Some(name)) => check_name("group", name),
        DialAction::Retrieve(Some(name)) => check_name("orbit", name),
        DialAction::ParkGroup(None) | DialAction::Retrieve(None) | DialAction::NotFeature => Ok(()),
    }
}

/// Checks a recall plan: bounded steps, SIP/tel targets, sane ring times,
/// header values that cannot break a SIP message.
pub fn check_recall_plan(plan: &RecallPlan) -> Result<(), String> {
    if plan.steps.len() > MAX_RECALL_STEPS {
        return Err(format!(
            "{} steps (at most {MAX_RECALL_STEPS})",
            plan.steps.len()
        ));
    }
    for (i, step) in plan.steps.iter().enumerate() {
        // Messages are built only on failure: this runs on every decision.
        let n = i + 1;
        if !is_routable_uri(&step.target) {
            return Err(format!(
                "step {n} target {:?} is not a sip:, sips: or tel: URI",
                step.target
            ));
        }
        if !RING_MS_RANGE.contains(&step.ring_ms) {
            return Err(format!(
                "step {n} rings {} ms (allowed {}..={})",
                step.ring_ms,
                RING_MS_RANGE.start(),
                RING_MS_RANGE.end()
            ));
        }
        if let Some(v) = &step.alert_info
            && !text_ok(v, MAX_URI_LEN)
        {
            return check_text(&format!("step {n} alert-info"), v, MAX_URI_LEN);
        }
        if let Some(v) = &step.display
            && !text_ok(v, MAX_NAME_LEN * 2)
        {
            return check_text(&format!("step {n} display"), v, MAX_NAME_LEN * 2);
        }
    }
    match &plan.end {
        EndAction::Disconnect => Ok(()),
        EndAction::RePark(Some(ms)) if *ms < 1_000 => {
            Err(format!("re-park after {ms} ms (at least 1000)"))
        }
        EndAction::RePark(_) => Ok(()),
        EndAction::Transfer(uri) => check_uri("transfer target", uri),
    }
}

/// True when `uri` looks like a SIP, SIPS or tel URI we can put in a header.
pub fn is_routable_uri(uri: &str) -> bool {
    let lower = uri
        .get(..5)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let has_scheme =
        lower.starts_with("sip:") || lower.starts_with("sips:") || lower.starts_with("tel:");
    has_scheme
        && uri.len() > 4
        && uri.len() <= MAX_URI_LEN
        && !uri
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>' || c == '"')
}

fn check_uri(what: &str, uri: &str) -> Result<(), String> {
    if is_routable_uri(uri) {
        Ok(())
    } else {
        Err(format!("{what} {uri:?} is not a sip:, sips: or tel: URI"))
    }
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{what} name {name:?} must have 1..={MAX_NAME_LEN} bytes"
        ));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || "<>\"@;:,?".contains(c))
    {
        return Err(format!(
            "{what} name {name:?} has characters SIP cannot carry"
        ));
    }
    Ok(())
}

fn text_ok(text: &str, max: usize) -> bool {
    text.len() <= max && !text.chars().any(char::is_control)
}

fn check_text(what: &str, text: &str, max: usize) -> Result<(), String> {
    if text.len() > max {
        return Err(format!("{what} is {} bytes (at most {max})", text.len()));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("{what} {text:?} has control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orbit_numbers_written_as_numbers_become_numbers() {
        assert_eq!(numeric_orbit("701"), Some(701));
        assert_eq!(numeric_orbit("4294967295"), Some(u32::MAX));
        for not in [
            "",
            "0",
            "0701",
            "*701",
            "+701",
            "70 1",
            "4294967296",
            "sales",
            "٧٠١",
        ] {
            assert_eq!(numeric_orbit(not), None, "{not:?}");
        }
    }

    fn orbit(number: &str, occupied: u32, capacity: u32, enabled: bool) -> OrbitState {
        OrbitState {
            number: number.into(),
            occupied,
            capacity,
            enabled,
        }
    }

    fn request(candidates: Vec<OrbitState>) -> ParkRequest {
        ParkRequest {
            parker: String::new(),
            parked_uri: "sip:bob@example.com".into(),
            parked_display: String::new(),
            target: ParkTarget::DefaultLot,
            candidates,
            last_orbit: None,
            now_ms: 0,
            entropy: 0,
            params: vec![],
        }
    }

    #[test]
    fn allocation_must_name_a_free_enabled_candidate() {
        let req = request(vec![
            orbit("701", 0, 1, true),
            orbit("702", 1, 1, true),
            orbit("703", 0, 1, false),
        ]);
        assert!(check_allocation(&req, &Allocation::Orbit("701".into())).is_ok());
        assert!(check_allocation(&req, &Allocation::Orbit("702".into())).is_err());
        assert!(check_allocation(&req, &Allocation::Orbit("703".into())).is_err());
        assert!(check_allocation(&req, &Allocation::Orbit("999".into())).is_err());
        let refusal = Allocation::Rejected(Rejection {
            code: RejectCode::Full,
            reason: "no\r\nInjected: header".into(),
        });
        assert!(check_allocation(&req, &refusal).is_err());
    }

    #[test]
    fn recall_plans_are_bounded_and_routable() {
        let step = |target: &str, ring_ms| RecallStep {
            target: target.into(),
            ring_ms,
            alert_info: None,
            display: Some("Park 701: Bob".into()),
        };
        let good = RecallPlan {
            steps: vec![step("sip:alice@example.com", 30_000)],
            end: EndAction::Transfer("tel:+15551234".into()),
        };
        assert!(check_recall_plan(&good).is_ok());
        for bad in [
            RecallPlan {
                steps: vec![step("alice", 30_000)],
                end: EndAction::Disconnect,
            },
            RecallPlan {
                steps: vec![step("sip:alice@example.com", 10)],
                end: EndAction::Disconnect,
            },
            RecallPlan {
                steps: vec![step("sip:a@b", 30_000); MAX_RECALL_STEPS + 1],
                end: EndAction::Disconnect,
            },
            RecallPlan {
                steps: vec![],
                end: EndAction::RePark(Some(5)),
            },
            RecallPlan {
                steps: vec![],
                end: EndAction::Transfer("sip:a b@c".into()),
            },
        ] {
            assert!(check_recall_plan(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dial_actions_carry_clean_names() {
        assert!(check_dial_action(&DialAction::ParkOrbit("701".into())).is_ok());
        assert!(check_dial_action(&DialAction::ParkOrbit(String::new())).is_err());
        assert!(check_dial_action(&DialAction::Retrieve(Some("70 1".into()))).is_err());
        assert!(check_dial_action(&DialAction::ParkGroup(Some("a@b".into()))).is_err());
        assert!(check_dial_action(&DialAction::ParkGroup(None)).is_ok());
    }

    #[test]
    fn reject_codes_map_to_sip() {
        assert_eq!(RejectCode::Busy.sip_status(), 486);
        assert_eq!(RejectCode::Full.sip_status(), 486);
        assert_eq!(RejectCode::NotFound.sip_status(), 404);
        assert_eq!(RejectCode::Forbidden.sip_status(), 403);
    }
}
