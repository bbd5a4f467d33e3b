//! Park timers: armed per call (or per busy-lamp subscription), fired in
//! deadline order.

use super::*;

impl Engine {
    /// SIP timers.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.timers.latest = self.timers.latest.max(now);
        self.tx.handle_timeout(now);
        self.drain_tx(now);
        while let Some((&key, &(owner, timer))) = self.timers.queue.iter().next() {
            if key.0 > now {
                break;
            }
            self.timers.queue.remove(&key);
            if let Some(keys) = owner.and_then(|call| self.timers.by_call.get_mut(&call)) {
                keys.retain(|k| *k != key);
            }
            match (owner, timer) {
                (_, EngineTimer::SubscriptionExpiry(id)) => {
                    if self
                        .lamps
                        .subscriptions
                        .get(&id)
                        .is_some_and(|s| s.expires_at <= now)
                    {
                        self.notify(now, id, Some("timeout"));
                        self.drop_subscription(id);
                    }
                }
                (Some(call), timer) => self.call_timer(now, call, timer),
                (None, _) => {}
            }
            self.drain_tx(now);
        }
    }

    fn call_timer(&mut self, now: Duration, call: CallId, timer: EngineTimer) {
        match timer {
            EngineTimer::RecallDue => self.start_recall(now, call, RecallReason::Timeout),
            EngineTimer::RingOver(tx) => self.ring_over(now, call, tx),
            EngineTimer::Liveness => self.check_liveness(now, call),
            EngineTimer::Reservation(leg) => {
                // Only the leg that reserved: a takeover replaced it.
                if matches!(self.legs.calls.get(&call), Some(CallState::Parked { caller, .. }) if *caller == leg)
                {
                    self.give_up(now, call, GiveUpReason::ReservationNotCompleted, true);
                }
            }
            EngineTimer::Lifetime => self.give_up(now, call, GiveUpReason::MaxLifetime, true),
            EngineTimer::SenderReport(leg) => self.sender_report(now, call, leg),
            EngineTimer::SubscriptionExpiry(_) => {}
        }
    }

    /// Arms a timer of `call`'s; it goes with the call (`end_call`).
    pub(crate) fn arm(&mut self, at: Duration, call: CallId, timer: EngineTimer) {
        self.timers.seq += 1;
        let key = (at, self.timers.seq);
        self.timers.queue.insert(key, (Some(call), timer));
        self.timers.by_call.entry(call).or_default().push(key);
    }

    /// Arms a busy-lamp subscription's expiry.
    pub(crate) fn arm_subscription(&mut self, at: Duration, id: SubscriptionId) {
        self.timers.seq += 1;
        self.timers.queue.insert(
            (at, self.timers.seq),
            (None, EngineTimer::SubscriptionExpiry(id)),
        );
    }
}
