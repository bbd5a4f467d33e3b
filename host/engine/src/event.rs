//! What an engine reports to its host (logs, the event stream).

use super::*;

/// What happened, for logs and (later) the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    Parked {
        call: CallId,
        orbit: String,
        parker: String,
        caller: String,
        /// The parked caller's SIP Call-ID, to find the call in SIP traces.
        call_id: String,
    },
    /// The caller of an attended park took over the parker's reservation
    /// (INVITE with Replaces): the call on `orbit` is now `caller`'s, and
    /// its recalls go to `parker`.
    AttendedParkCompleted {
        call: CallId,
        orbit: String,
        parker: String,
        caller: String,
        call_id: String,
    },
    Retrieved {
        call: CallId,
        orbit: String,
        by: String,
    },
    /// The parked caller hung up (or vanished) before anyone retrieved it.
    Abandoned { call: CallId, orbit: String },
    /// A bridged call ended.
    Ended { call: CallId },
    /// Nobody retrieved the call in time: recall starts.
    RecallStarted {
        call: CallId,
        orbit: String,
        steps: usize,
    },
    /// A recall step rings `target`.
    RecallStep {
        call: CallId,
        orbit: String,
        step: usize,
        target: String,
    },
    /// A recall target answered and is bridged to the caller.
    RecallAnswered {
        call: CallId,
        orbit: String,
        by: String,
    },
    /// Every step rang unanswered; the plan's end action follows.
    RecallExhausted {
        call: CallId,
        orbit: String,
        end: String,
    },
    /// Nobody will take the call: hung up after recall, past
    /// `max_lifetime`, or the caller vanished (`why` says which).
    GiveUp {
        call: CallId,
        orbit: String,
        why: &'static str,
    },
    /// A parked caller pressed the orbit's escape key.
    EscapeKey {
        call: CallId,
        orbit: String,
        key: char,
    },
    /// A request was refused; `status` and why, for the log.
    Refused {
        method: String,
        dialed: String,
        status: u16,
        reason: String,
    },
}
