//! Is the parked caller still there: the escape key, silence probes, giving up.

use super::*;

impl Engine {
    /// A parked caller pressed `key` (RFC 4733 or SIP INFO): the orbit's
    /// escape key starts recall at once.
    pub(crate) fn key_pressed(&mut self, now: Duration, call: CallId, key: char) {
        let Some(orbit) = self.lot.get(call).map(|p| p.orbit.clone()) else {
            return;
        };
        let escape = self.lot.orbit(&orbit).and_then(|o| o.escape_key);
        if escape != Some(key) || self.recalls.active.contains_key(&call) {
            return;
        }
        tracing::debug!(%orbit, %key, "the parked caller asks for recall");
        self.reports
            .events
            .push_back(EngineEvent::EscapeKey { call, orbit, key });
        self.start_recall(now, call, RecallReason::EscapeKey);
    }

    /// No RTP from a parked caller for `rtp_timeout`: phones on hold may be
    /// silent, so an in-dialog OPTIONS decides.
    pub(crate) fn check_liveness(&mut self, now: Duration, call: CallId) {
        let Some(CallState::Parked { caller, .. }) = self.legs.calls.get(&call) else {
            return;
        };
        let caller = *caller;
        let Some(leg) = self.legs.by_id.get_mut(&caller) else {
            return;
        };
        let silent_since = leg.last_rtp;
        let timeout = self.cfg.rtp_timeout;
        if now < silent_since + timeout {
            return self.arm(silent_since + timeout, call, EngineTimer::Liveness);
        }
        let probe = leg.dialog.request(Method::Options);
        let peer = leg.dialog.peer;
        let tx = self.tx.send_request(now, probe, peer);
        self.client_txs.insert(tx, TxOwner::Probe(call));
        self.arm(now + timeout, call, EngineTimer::Liveness);
    }

    pub(crate) fn caller_vanished(&mut self, now: Duration, call: CallId) {
        self.give_up(now, call, GiveUpReason::CallerVanished, false);
    }

    /// Ends a parked call nobody will take: a BYE to the caller (unless it
    /// is already gone), the orbit freed, the lamps told, and the events.
    pub(crate) fn give_up(&mut self, now: Duration, call: CallId, why: GiveUpReason, bye: bool) {
        let Some(CallState::Parked { caller, .. }) = self.legs.calls.get(&call) else {
            return;
        };
        let caller = *caller;
        let orbit = self
            .lot
            .get(call)
            .map(|p| p.orbit.clone())
            .unwrap_or_default();
        tracing::debug!(%orbit, why = why.as_str(), "ending a parked call");
        self.reports.events.push_back(EngineEvent::GiveUp {
            call,
            orbit: orbit.clone(),
            why,
        });
        self.cancel_recall(now, call);
        if bye {
            self.bye(now, caller);
        }
        self.end_call(now, call);
        self.reports
            .events
            .push_back(EngineEvent::Abandoned { call, orbit });
    }
}
