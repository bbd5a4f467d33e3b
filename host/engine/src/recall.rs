//! Recalls: the plan, ringing each step, and what happens when one answers or none does.

use super::*;

impl Engine {
    /// Stops a recall: the ringing INVITE is cancelled.
    pub(crate) fn cancel_recall(&mut self, now: Duration, call: CallId) {
        let Some(recall) = self.recalls.active.remove(&call) else {
            return;
        };
        if let Some(r) = recall.ringing {
            self.client_txs.insert(r.tx, TxOwner::StaleRecall);
            self.tx.send_cancel(now, r.tx);
        }
    }

    pub(crate) fn start_recall(&mut self, now: Duration, call: CallId, reason: RecallReason) {
        if !matches!(self.legs.calls.get(&call), Some(CallState::Parked { .. }))
            || self.recalls.active.contains_key(&call)
        {
            return;
        }
        let Some(parked) = self.lot.get(call).cloned() else {
            return;
        };
        let group = self.lot.orbit(&parked.orbit).and_then(|o| o.group.clone());
        // The defaults, then the group's settings, then the orbit's own:
        // the most specific wins.
        let mut params = self.cfg.recall_params.clone();
        let layers = [
            group
                .as_deref()
                .and_then(|g| self.lot.group(g))
                .map(|g| &g.recall_params),
            self.lot.orbit(&parked.orbit).map(|o| &o.recall_params),
        ];
        for layer in layers.into_iter().flatten() {
            callpark_core::lay_params(&mut params, layer.iter().cloned());
        }
        let recalls_done = self.recalls.done.get(&call).copied().unwrap_or(0);
        let info = ParkedCall {
            orbit: parked.orbit.clone(),
            group,
            parker: parked.parker.clone(),
            parked_uri: parked.parked_uri.clone(),
            parked_display: parked.parked_display.clone(),
            parked_at_ms: parked.parked_at_ms,
            now_ms: self.now_ms(now),
            recalls_done,
            reason,
            params,
        };
        let mut plan = match self.policy.plan_recall(&info) {
            Ok(plan) => plan,
            Err(e) => {
                // The plugin failed and the deployment refuses fallbacks:
                // keep the call parked and try again later.
                tracing::warn!(orbit = %parked.orbit, error = %e, "no recall plan; the call stays parked");
                RecallPlan {
                    steps: Vec::new(),
                    end: EndAction::RePark(None),
                }
            }
        };
        // A transfer at the end is one more ring, to that URI, then goodbye.
        if let EndAction::Transfer(uri) = &plan.end {
            let display = plan.steps.first().and_then(|s| s.display.clone());
            plan.steps.push(RecallStep {
                target: uri.clone(),
                ring_ms: 60_000,
                alert_info: None,
                display,
            });
            plan.end = EndAction::Disconnect;
        }
        // A key press must never end a call by surprise: with nobody to
        // ring (a caller who dialed the orbit itself, no fallback or hunt
        // group configured) the call stays parked as it was.
        if reason == RecallReason::EscapeKey && plan.steps.is_empty() {
            tracing::info!(
                orbit = %parked.orbit,
                "escape key pressed but nobody to recall to (no parker, fallback or hunt group); the call stays parked"
            );
            return;
        }
        tracing::debug!(orbit = %parked.orbit, steps = plan.steps.len(), ?reason, "recall planned");
        self.reports.events.push_back(EngineEvent::RecallStarted {
            call,
            orbit: parked.orbit.clone(),
            steps: plan.steps.len(),
        });
        // The lamps hear about the recall too (the state stays parked).
        self.notify_watchers(now, &parked.orbit);
        self.recalls.active.insert(
            call,
            Recall {
                plan,
                step: 0,
                ringing: None,
            },
        );
        self.ring_step(now, call);
    }

    /// Rings the current step of a call's recall, or ends the plan.
    pub(crate) fn ring_step(&mut self, now: Duration, call: CallId) {
        loop {
            let Some(recall) = self.recalls.active.get(&call) else {
                return;
            };
            let Some(step) = recall.plan.steps.get(recall.step).cloned() else {
                return self.end_recall(now, call);
            };
            let index = recall.step;
            match self.send_recall_invite(now, call, &step) {
                Some((tx, peer)) => {
                    if let Some(r) = self.recalls.active.get_mut(&call) {
                        r.ringing = Some(Ringing { tx, peer });
                    }
                    self.client_txs.insert(tx, TxOwner::Recall(call));
                    self.arm(
                        now + Duration::from_millis(u64::from(step.ring_ms)),
                        call,
                        EngineTimer::RingOver(tx),
                    );
                    let orbit = self
                        .lot
                        .get(call)
                        .map(|p| p.orbit.clone())
                        .unwrap_or_default();
                    tracing::debug!(%orbit, step = index + 1, target = %step.target, "recall rings");
                    self.reports.events.push_back(EngineEvent::RecallStep {
                        call,
                        orbit,
                        step: index,
                        target: step.target.clone(),
                    });
                    return;
                }
                None => {
                    // Unroutable target: the next step.
                    if let Some(r) = self.recalls.active.get_mut(&call) {
                        r.step += 1;
                    }
                }
            }
        }
    }

    pub(crate) fn send_recall_invite(
        &mut self,
        now: Duration,
        call: CallId,
        step: &RecallStep,
    ) -> Option<(TxId, Peer)> {
        let uri = Uri::parse(&step.target).ok()?;
        if !self.guard.may_call(&uri) {
            tracing::warn!(target = %step.target, "a recall target that is not allowed is skipped");
            return None;
        }
        let Some(peer) = self.route(&uri) else {
            tracing::warn!(target = %step.target, "a recall target named by host name needs an outbound proxy");
            return None;
        };
        let orbit = self
            .lot
            .get(call)
            .map(|p| p.orbit.clone())
            .unwrap_or_default();
        let display = step
            .display
            .clone()
            .unwrap_or_else(|| format!("Park {orbit}"));
        let mut invite = self.new_invite(&orbit, Some(display), &uri);
        if matches!(peer.transport, Transport::Tls(_)) {
            // A dialog over TLS is a sips: one (RFC 3261 §12.1.1).
            invite.headers.set("Contact", self.contact(peer, &uri));
        }
        if let Some(alert) = &step.alert_info {
            invite.headers.push("Alert-Info", alert.clone());
        }
        let (host, port) = (Host::Ip(self.cfg.sip_addr.ip()), self.cfg.sip_addr.port());
        invite
            .headers
            .push("Subject", format!("Parked call on {orbit}"));
        invite.headers.push(
            "Call-Info",
            format!("<sip:{orbit}@{host}:{port}>;purpose=info"),
        );
        Some((self.tx.send_request(now, invite, peer), peer))
    }

    /// A step's ring time is over: cancel it and ring the next.
    pub(crate) fn ring_over(&mut self, now: Duration, call: CallId, tx: TxId) {
        let current = self
            .recalls
            .active
            .get(&call)
            .and_then(|r| r.ringing.as_ref())
            .map(|r| r.tx);
        if current != Some(tx) {
            return;
        }
        self.client_txs.insert(tx, TxOwner::StaleRecall);
        self.tx.send_cancel(now, tx);
        self.next_step(now, call);
    }

    pub(crate) fn next_step(&mut self, now: Duration, call: CallId) {
        if let Some(r) = self.recalls.active.get_mut(&call) {
            r.ringing = None;
            r.step += 1;
            self.ring_step(now, call);
        }
    }

    pub(crate) fn end_recall(&mut self, now: Duration, call: CallId) {
        let Some(recall) = self.recalls.active.remove(&call) else {
            return;
        };
        let orbit = self
            .lot
            .get(call)
            .map(|p| p.orbit.clone())
            .unwrap_or_default();
        tracing::debug!(%orbit, end = ?recall.plan.end, "recall plan exhausted");
        self.reports.events.push_back(EngineEvent::RecallExhausted {
            call,
            orbit: orbit.clone(),
            end: recall.plan.end.clone(),
        });
        match recall.plan.end {
            EndAction::RePark(after) => {
                *self.recalls.done.entry(call).or_insert(0) += 1;
                let ms = after
                    .map(u64::from)
                    .unwrap_or_else(|| self.lot.orbit(&orbit).map_or(0, |o| o.recall_after_ms));
                if ms > 0 {
                    self.arm(
                        now + Duration::from_millis(ms),
                        call,
                        EngineTimer::RecallDue,
                    );
                }
            }
            // Transfers became a last step; what is left is goodbye.
            EndAction::Disconnect | EndAction::Transfer(_) => {
                self.give_up(now, call, GiveUpReason::RecallUnanswered, true);
            }
        }
    }

    /// A leg we called (recall target, server-driven park): its dialog and
    /// media, registered for in-dialog requests and RTP.
    pub(crate) fn uac_leg(
        &mut self,
        now: Duration,
        call: CallId,
        dialog: Dialog,
        media: Option<AgreedAudio>,
    ) -> LegId {
        self.add_leg(now, call, dialog, None, media, 1)
    }
}
