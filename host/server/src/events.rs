//! The events slot, off the decision path: park events go to a thread of
//! their own through a bounded queue, the events plugin observes each there,
//! and the actions it asks for (SIP MESSAGEs) come back to the SIP loop.
//! A slow, looping or failing events plugin costs that thread its budget;
//! the SIP loop only ever does a `try_send`, and an event that finds the
//! queue full is dropped and counted, never waited for.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};

use callpark_core::{Decision, EventAction, ParkEvent, ParkEventKind};
use callpark_engine::EngineEvent;
use callpark_policy::PolicyRuntime;
use tokio::sync::mpsc;

/// Events waiting for the events plugin at most; past it they are dropped.
pub const QUEUE: usize = 1024;

/// Parked calls whose facts the feed keeps at most. A call's facts go at
/// its last event; a call whose last event never comes (the process lives
/// long, calls end in ways that report nothing) must not grow the map
/// without bound, so past this the oldest facts are forgotten: a later
/// event of such a call names no parker.
const MAX_CALLS: usize = 65_536;

/// What the SIP loop knows of a parked call, to tell the events plugin
/// who is involved when later events name only the call.
#[derive(Clone)]
struct CallFacts {
    parker: String,
    caller: String,
    call_id: String,
}

/// The SIP loop's end of the events slot.
pub struct EventFeed {
    runtime: Arc<PolicyRuntime>,
    queue: SyncSender<ParkEvent>,
    calls: HashMap<u64, CallFacts>,
    /// Events dropped because the events plugin fell behind.
    dropped: u64,
}

impl EventFeed {
    /// Starts the events thread; the actions it is asked for arrive on the
    /// receiver.
    pub fn start(
        runtime: Arc<PolicyRuntime>,
    ) -> anyhow::Result<(EventFeed, mpsc::UnboundedReceiver<EventAction>)> {
        let (queue, events) = std::sync::mpsc::sync_channel::<ParkEvent>(QUEUE);
        let (actions_tx, actions) = mpsc::unbounded_channel();
        let observer = runtime.clone();
        std::thread::Builder::new()
            .name("callpark-events".into())
            .spawn(move || {
                // Ends when the feed (the SIP loop) is dropped.
                while let Ok(event) = events.recv() {
                    for action in observer.observe(&event) {
                        if actions_tx.send(action).is_err() {
                            return;
                        }
                    }
                }
            })?;
        Ok((
            EventFeed {
                runtime,
                queue,
                calls: HashMap::new(),
                dropped: 0,
            },
            actions,
        ))
    }

    /// Hands one engine event to the events plugin, when one is loaded.
    /// Never blocks. Without an events plugin it costs the SIP loop one
    /// atomic load: no facts are kept (a call parked before an events
    /// plugin was loaded names no parker in its later events).
    pub fn publish(&mut self, event: &EngineEvent) {
        if !self.runtime.serves(Decision::Events) {
            if !self.calls.is_empty() {
                self.calls = HashMap::new();
            }
            return;
        }
        // The wall clock is read here, for events a plugin will see only.
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let Some(park_event) = self.park_event(event, at_ms) else {
            return;
        };
        match self.queue.try_send(park_event) {
            Ok(()) => {}
            Err(TrySendError::Full(e)) => {
                self.dropped += 1;
                let n = self.dropped;
                // One line per power of two: a stuck plugin must not flood.
                if n.is_power_of_two() {
                    tracing::warn!(
                        event = e.kind.name(),
                        call = e.call,
                        dropped = n,
                        "the events plugin is behind: event dropped"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// The park event an engine event is, with what the feed remembers of
    /// the call; `None` for engine events that are not park events. Keeps
    /// the facts of a parked call until its last event.
    fn park_event(&mut self, event: &EngineEvent, at_ms: u64) -> Option<ParkEvent> {
        use ParkEventKind as K;
        let (kind, call, orbit, by, detail, step, ends) = match event {
            EngineEvent::Parked {
                call,
                orbit,
                parker,
                caller,
                call_id,
            }
            | EngineEvent::AttendedParkCompleted {
                call,
                orbit,
                parker,
                caller,
                call_id,
            } => {
                if self.calls.len() >= MAX_CALLS {
                    // Call ids count up: the smallest are the oldest.
                    let mut ids: Vec<u64> = self.calls.keys().copied().collect();
                    ids.sort_unstable();
                    for id in &ids[..ids.len() / 2] {
                        self.calls.remove(id);
                    }
                    tracing::warn!(
                        kept = self.calls.len(),
                        "events feed: forgot the facts of the oldest half of the parked calls it knew"
                    );
                }
                self.calls.insert(
                    call.0,
                    CallFacts {
                        parker: parker.clone(),
                        caller: caller.clone(),
                        call_id: call_id.clone(),
                    },
                );
                (K::Parked, call, orbit, "", String::new(), 0, false)
            }
            EngineEvent::Retrieved { call, orbit, by } => (
                K::Retrieved,
                call,
                orbit,
                by.as_str(),
                String::new(),
                0,
                true,
            ),
            EngineEvent::Abandoned { call, orbit } => {
                (K::Abandoned, call, orbit, "", String::new(), 0, true)
            }
            EngineEvent::RecallStarted { call, orbit, steps } => (
                K::RecallStarted,
                call,
                orbit,
                "",
                String::new(),
                *steps as u32,
                false,
            ),
            EngineEvent::RecallStep {
                call,
                orbit,
                step,
                target,
            } => (
                K::RecallStep,
                call,
                orbit,
                target.as_str(),
                String::new(),
                *step as u32,
                false,
            ),
            EngineEvent::RecallAnswered { call, orbit, by } => (
                K::RecallAnswered,
                call,
                orbit,
                by.as_str(),
                String::new(),
                0,
                true,
            ),
            EngineEvent::RecallExhausted { call, orbit, end } => (
                K::RecallExhausted,
                call,
                orbit,
                "",
                format!("{end:?}"),
                0,
                false,
            ),
            EngineEvent::Moved { call, from, to } => {
                (K::Moved, call, to, "", from.clone(), 0, false)
            }
            EngineEvent::EscapeKey { call, orbit, key } => {
                (K::EscapeKey, call, orbit, "", key.to_string(), 0, false)
            }
            EngineEvent::GiveUp { call, orbit, why } => (
                K::GiveUp,
                call,
                orbit,
                "",
                why.as_str().to_string(),
                0,
                // An `abandoned` event follows: the facts go then.
                false,
            ),
            EngineEvent::Ended { call } => {
                self.calls.remove(&call.0);
                return None;
            }
            EngineEvent::Refused { .. } => return None,
        };
        let facts = if ends {
            self.calls.remove(&call.0)
        } else {
            self.calls.get(&call.0).cloned()
        };
        let facts = facts.unwrap_or(CallFacts {
            parker: String::new(),
            caller: String::new(),
            call_id: String::new(),
        });
        Some(ParkEvent {
            kind,
            call: call.0,
            orbit: orbit.clone(),
            parker: facts.parker,
            parked_uri: facts.caller,
            call_id: facts.call_id,
            by: by.to_string(),
            detail,
            step,
            at_ms,
            params: Vec::new(),
        })
    }
}
