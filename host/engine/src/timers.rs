//! Park timers: arming them per call, and firing them.

use super::*;

impl Engine {
    /// SIP timers.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.clock = self.clock.max(now);
        self.tx.handle_timeout(now);
        self.drain_tx(now);
        while let Some((&key, &(call, timer))) = self.timers.iter().next() {
            if key.0 > now {
                break;
            }
            self.timers.remove(&key);
            if let Some(keys) = self.call_timers.get_mut(&call) {
                keys.retain(|k| *k != key);
            }
            match timer {
                EngineTimer::RecallDue => self.start_recall(now, call, RecallReason::Timeout),
                EngineTimer::RingOver(tx) => self.ring_over(now, call, tx),
                EngineTimer::Liveness => self.check_liveness(now, call),
                EngineTimer::Reservation(leg) => {
                    // Only the leg that reserved: a takeover replaced it.
                    if matches!(self.calls.get(&call), Some(CallState::Parked { caller, .. }) if *caller == leg)
                    {
                        self.give_up(now, call, "reservation not completed", true);
                    }
                }
                EngineTimer::SubscriptionExpiry(id) => {
                    if self
                        .subscriptions
                        .get(&id)
                        .is_some_and(|s| s.expires_at <= now)
                    {
                        self.notify(now, id, Some("timeout"));
                        self.drop_subscription(id);
                    }
                }
                EngineTimer::Lifetime => self.give_up(now, call, "max_lifetime", true),
                EngineTimer::SenderReport(leg) => self.sender_report(now, call, leg),
            }
            self.drain_tx(now);
        }
    }

    pub(crate) fn arm(&mut self, at: Duration, call: CallId, timer: EngineTimer) {
        self.timer_seq += 1;
        let key = (at, self.timer_seq);
        self.timers.insert(key, (call, timer));
        if call != CallId(0) {
            self.call_timers.entry(call).or_default().push(key);
        }
    }
}
