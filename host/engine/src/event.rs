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
        end: EndAction,
    },
    /// Nobody will take the call: hung up after recall, past
    /// `max_lifetime`, or the caller vanished (`why` says which).
    GiveUp {
        call: CallId,
        orbit: String,
        why: GiveUpReason,
    },
    /// An operator moved a parked call to another orbit.
    Moved {
        call: CallId,
        from: String,
        to: String,
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

/// Why the server gave up on a parked call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    /// An attended-park reservation nobody took over in time.
    ReservationNotCompleted,
    /// The call lived `max_lifetime`.
    MaxLifetime,
    /// The caller stopped answering (silence, then a failed probe).
    CallerVanished,
    /// The recall plan ended in a disconnect.
    RecallUnanswered,
    /// An operator hung up on the call (admin API).
    Operator,
}

impl GiveUpReason {
    /// As the log says it.
    pub fn as_str(self) -> &'static str {
        match self {
            GiveUpReason::ReservationNotCompleted => "reservation not completed",
            GiveUpReason::MaxLifetime => "max_lifetime",
            GiveUpReason::CallerVanished => "caller vanished",
            GiveUpReason::RecallUnanswered => "recall unanswered",
            GiveUpReason::Operator => "hung up by an operator",
        }
    }
}
