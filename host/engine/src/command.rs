//! What an operator asks of the engine, through the admin API: the
//! parked-call directory and actions on a parked call. The HTTP layer only
//! translates; the engine takes a `Command` in `handle_command(now, tag, …)`
//! and answers on `poll_reply`, like everything else it does, so that it
//! stays sans-IO and its answers are tested in virtual time.

use super::*;

/// An operator's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Every parked call, in orbit order, then position in the orbit.
    ListParked,
    /// Hang up on a parked caller (BYE) and free its orbit.
    HangUp { call: u64 },
    /// Every busy-lamp watcher.
    ListSubscriptions,
    /// Move a parked call to another orbit (a number or an extension
    /// name): its caller hears that orbit's music, the lamps of both orbits
    /// follow, its recall keeps its schedule.
    Move { call: u64, orbit: String },
}

/// The engine's answer to a `Command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Parked(Vec<ParkedView>),
    /// The call as it was when it was hung up.
    HungUp(ParkedView),
    /// No parked call has this id (it was retrieved, hung up, or never was).
    NoSuchCall(u64),
    Subscriptions(Vec<SubscriptionView>),
    /// The call where it is now.
    Moved(ParkedView),
    /// Not done: a status (404 no such orbit, 409 the orbit cannot take it)
    /// and why; nothing changed.
    Refused {
        status: u16,
        reason: String,
    },
}

/// A busy-lamp watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionView {
    pub id: u64,
    /// `orbit` or `group`.
    pub kind: &'static str,
    /// The orbit number or group name watched.
    pub watched: String,
    /// Who watches: the SUBSCRIBE's From, as its header carried it.
    pub watcher: String,
    /// The subscription's SIP Call-ID.
    pub call_id: String,
    /// When it expires unless refreshed (milliseconds since the Unix epoch).
    pub expires_at_ms: u64,
}

/// A parked call as the directory shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedView {
    /// The server's id of the call, the same in every event of it.
    pub id: u64,
    pub orbit: String,
    /// Its place in its orbit's queue, from 1 (a FIFO orbit holds several).
    pub position: usize,
    pub caller_uri: String,
    pub caller_display: String,
    /// The parked caller's SIP Call-ID.
    pub call_id: String,
    /// Empty when unknown.
    pub parker: String,
    /// Milliseconds since the Unix epoch.
    pub parked_at_ms: u64,
    /// When recall starts, if it is due (milliseconds since the Unix epoch).
    pub recall_at_ms: Option<u64>,
    pub recall: RecallView,
}

/// Where a parked call's recall stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecallView {
    /// Not recalling.
    Idle,
    /// Recall step `step` (from 1) of `steps` rings `target`.
    Ringing {
        target: String,
        step: usize,
        steps: usize,
    },
    /// In a recall plan, between steps.
    Recalling { step: usize, steps: usize },
}

impl Engine {
    /// Takes an operator's command; its reply comes out of `poll_reply`
    /// with the same `tag`.
    pub fn handle_command(&mut self, now: Duration, tag: u64, command: Command) {
        self.timers.latest = self.timers.latest.max(now);
        let reply = match command {
            Command::ListParked => Reply::Parked(self.parked_views()),
            Command::ListSubscriptions => Reply::Subscriptions(self.subscription_views()),
            Command::Move { call, orbit } => self.move_call(now, CallId(call), &orbit),
            Command::HangUp { call } => match self.parked_view(CallId(call)) {
                None => Reply::NoSuchCall(call),
                Some(view) => {
                    self.give_up(now, CallId(call), GiveUpReason::Operator, true);
                    Reply::HungUp(view)
                }
            },
        };
        self.reports.replies.push_back((tag, reply));
    }

    /// The next reply to a command, with its tag.
    pub fn poll_reply(&mut self) -> Option<(u64, Reply)> {
        self.reports.replies.pop_front()
    }

    fn move_call(&mut self, now: Duration, call: CallId, to: &str) -> Reply {
        if self.parked_view(call).is_none() {
            return Reply::NoSuchCall(call.0);
        }
        let refused = |status: u16, reason: String| Reply::Refused { status, reason };
        let Some(target) = self.lot.resolve(to).map(|o| o.number.clone()) else {
            return refused(404, format!("orbit {to} does not exist"));
        };
        let Some(from) = self.lot.get(call).map(|p| p.orbit.clone()) else {
            return Reply::NoSuchCall(call.0);
        };
        if from == target {
            return refused(409, format!("the call is on {target} already"));
        }
        // Checked before the call leaves its orbit, so that a refusal
        // changes nothing (its place in a FIFO queue included).
        let room = self.lot.orbit(&target).is_some_and(|o| {
            o.enabled && (self.lot.parked_on(&target).count() as u32) < o.capacity
        });
        if !room {
            return refused(409, format!("orbit {target} is full or disabled"));
        }
        let before = self.music_of(&from);
        self.lamp_gone(call);
        let Some(parked) = self.lot.remove(call) else {
            return Reply::NoSuchCall(call.0);
        };
        let moved = Parked {
            orbit: target.clone(),
            ..parked
        };
        if let Err(e) = self
            .lot
            .park(&ParkTarget::Orbit(target.clone()), moved.clone())
        {
            // Checked above; kept on its old orbit all the same.
            let _ = self.lot.restore(Parked {
                orbit: from,
                ..moved
            });
            return refused(409, e.to_string());
        }
        let after = self.music_of(&target);
        if !after.same_audio(&before)
            && let Some(CallState::Parked {
                stream: Some(stream),
                ..
            }) = self.legs.calls.get(&call)
        {
            self.media.desk.set_music(*stream, after);
        }
        self.notify_watchers(now, &from);
        self.notify_watchers(now, &target);
        self.reports.events.push_back(EngineEvent::Moved {
            call,
            from,
            to: target,
        });
        match self.parked_view(call) {
            Some(view) => Reply::Moved(view),
            None => Reply::NoSuchCall(call.0),
        }
    }

    fn subscription_views(&self) -> Vec<SubscriptionView> {
        let mut views: Vec<SubscriptionView> = self
            .lamps
            .subscriptions
            .iter()
            .map(|(id, s)| {
                let (kind, watched) = match &s.watched {
                    blf::Watched::Orbit(o) => ("orbit", o.clone()),
                    blf::Watched::Group(g) => ("group", g.clone()),
                };
                SubscriptionView {
                    id: id.0,
                    kind,
                    watched,
                    watcher: s.dialog.remote.clone(),
                    call_id: s.dialog.call_id.clone(),
                    expires_at_ms: self.now_ms(s.expires_at),
                }
            })
            .collect();
        views.sort_by_key(|v| v.id);
        views
    }

    fn parked_views(&self) -> Vec<ParkedView> {
        self.lot
            .orbits()
            .iter()
            .flat_map(|o| self.lot.parked_on(&o.number))
            .filter_map(|p| self.parked_view(p.call))
            .collect()
    }

    /// A call on an orbit (not a reservation of an attended park that has
    /// no caller yet is still a call: its leg is the parker's).
    fn parked_view(&self, call: CallId) -> Option<ParkedView> {
        let parked = self.lot.get(call)?;
        let Some(CallState::Parked { caller, .. }) = self.legs.calls.get(&call) else {
            return None;
        };
        let position = self
            .lot
            .parked_on(&parked.orbit)
            .position(|p| p.call == call)
            .map_or(1, |i| i + 1);
        let call_id = self
            .legs
            .by_id
            .get(caller)
            .map(|l| l.dialog.call_id.clone())
            .unwrap_or_default();
        let recall_at_ms = self.timers.by_call.get(&call).and_then(|keys| {
            keys.iter()
                .filter(|key| {
                    matches!(
                        self.timers.queue.get(key),
                        Some((_, EngineTimer::RecallDue))
                    )
                })
                .map(|(at, _)| self.now_ms(*at))
                .min()
        });
        let recall = match self.recalls.active.get(&call) {
            None => RecallView::Idle,
            Some(r) => {
                let steps = r.plan.steps.len();
                match (&r.ringing, r.plan.steps.get(r.step)) {
                    (Some(_), Some(step)) => RecallView::Ringing {
                        target: step.target.clone(),
                        step: r.step + 1,
                        steps,
                    },
                    _ => RecallView::Recalling {
                        step: r.step + 1,
                        steps,
                    },
                }
            }
        };
        Some(ParkedView {
            id: call.0,
            orbit: parked.orbit.clone(),
            position,
            caller_uri: parked.parked_uri.clone(),
            caller_display: parked.parked_display.clone(),
            call_id,
            parker: parked.parker.clone(),
            parked_at_ms: parked.parked_at_ms,
            recall_at_ms,
            recall,
        })
    }
}
