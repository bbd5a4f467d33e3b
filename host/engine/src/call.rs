//! A call's dialog after it is set up: ACK, CANCEL, re-INVITE, BYE, and tearing a call down.

use super::*;

impl Engine {
    pub(crate) fn on_ack(&mut self, now: Duration, request: &Request) {
        let Some(tag) = request.to().ok().and_then(|t| t.tag().map(str::to_string)) else {
            return;
        };
        let Some(id) = self.leg_by_dialog(request, &tag) else {
            return;
        };
        let Some(leg) = self.legs.by_id.get_mut(&id) else {
            return;
        };
        if let Some(tx) = leg.invite_tx.take() {
            self.legs.by_invite_tx.remove(&tx);
        }
        leg.dialog.confirmed = true;
        if let Some((key, intro)) = leg.deferred_music.take().map(|m| *m) {
            let call = leg.call;
            let started = self.start_music(now, id, key.as_deref(), intro);
            if let Some(CallState::Parked { stream, .. }) = self.legs.calls.get_mut(&call) {
                *stream = started;
            }
            return;
        }
        if leg.awaiting_answer && !request.body.is_empty() {
            // Late offer: the answer arrives in the ACK.
            let answer = sdp::parse(&String::from_utf8_lossy(&request.body))
                .and_then(|sd| sdp::negotiate(&sd));
            if let Ok(agreed) = answer {
                let src = SocketAddr::new(agreed.remote_addr, agreed.remote_port);
                leg.media = Some(agreed);
                leg.awaiting_answer = false;
                let call = leg.call;
                self.set_sdp_source(id, src);
                let needs_music = matches!(
                    self.legs.calls.get(&call),
                    Some(CallState::Parked { stream: None, .. })
                );
                if needs_music {
                    let key = self
                        .lot
                        .get(call)
                        .and_then(|p| self.lot.orbit(&p.orbit))
                        .and_then(|o| o.music.clone());
                    let started = self.start_music(now, id, key.as_deref(), Vec::new());
                    if let Some(CallState::Parked { stream, .. }) = self.legs.calls.get_mut(&call) {
                        *stream = started;
                    }
                }
            }
        }
    }

    pub(crate) fn on_cancelled(&mut self, now: Duration, invite: TxId) {
        let leg = self.legs.by_invite_tx.get(&invite).copied();
        if let Some(request) = self.tx.server_request(invite).cloned() {
            self.respond(now, invite, &request, 487, None);
        }
        if let Some(leg) = leg {
            self.leg_gone(now, leg);
        }
    }

    pub(crate) fn on_reinvite(&mut self, now: Duration, tx: TxId, request: Request, tag: String) {
        let Some(id) = self.leg_by_dialog(&request, &tag) else {
            return self.respond(now, tx, &request, 481, Some("no such call"));
        };
        let version = {
            let leg = self.legs.by_id.get_mut(&id).expect("indexed");
            leg.local_sdp_version += 1;
            leg.local_sdp_version
        };
        let local = self.local_media(version, version);
        let body = if request.body.is_empty() {
            sdp::offer(&local, Direction::SendRecv)
        } else {
            let text = String::from_utf8_lossy(&request.body);
            let offer = match sdp::parse(&text) {
                Ok(o) => o,
                Err(e) => return self.respond(now, tx, &request, 400, Some(&e.to_string())),
            };
            let agreed = match sdp::negotiate(&offer) {
                Ok(a) => a,
                Err(e) => return self.respond(now, tx, &request, 488, Some(&e.to_string())),
            };
            let answer = sdp::answer(&offer, &agreed, &local);
            // Hold and resume: the relay follows the new address and codec.
            let src = SocketAddr::new(agreed.remote_addr, agreed.remote_port);
            if let Some(leg) = self.legs.by_id.get_mut(&id) {
                leg.media = Some(agreed);
            }
            self.set_sdp_source(id, src);
            answer
        };
        let leg = &self.legs.by_id[&id];
        let mut r = request.response(200, Some(&leg.dialog.local_tag));
        r.headers
            .push("Contact", self.contact(leg.dialog.peer, &request.uri));
        r.headers.push("Content-Type", "application/sdp");
        r.body = body.into_bytes();
        self.tx.send_response(now, tx, r);
    }

    pub(crate) fn on_bye(&mut self, now: Duration, tx: TxId, request: Request, tag: String) {
        let Some(id) = self.leg_by_dialog(&request, &tag) else {
            return self.respond(now, tx, &request, 481, Some("no such call"));
        };
        let r = request.response(200, None);
        self.tx.send_response(now, tx, r);
        self.leg_gone(now, id);
    }

    /// A leg hung up: end its call and hang up the other leg, if any.
    pub(crate) fn leg_gone(&mut self, now: Duration, id: LegId) {
        let Some(leg) = self.legs.by_id.get(&id) else {
            return;
        };
        let call = leg.call;
        match self.legs.calls.get(&call) {
            Some(CallState::Parked { caller, .. }) if *caller == id => {
                let call_id = leg.dialog.call_id.clone();
                self.cancel_recall(now, call);
                let Some(leg) = self.legs.by_id.get(&id) else {
                    return;
                };
                debug_assert_eq!(leg.dialog.call_id, call_id);
                let orbit = self
                    .lot
                    .get(call)
                    .map(|p| p.orbit.clone())
                    .unwrap_or_default();
                tracing::debug!(call_id = %leg.dialog.call_id, %orbit, "abandoned while parked");
                self.end_call(now, call);
                self.reports
                    .events
                    .push_back(EngineEvent::Abandoned { call, orbit });
            }
            Some(CallState::Bridged { caller, retriever }) => {
                let other = if *caller == id { *retriever } else { *caller };
                self.bye(now, other);
                self.end_call(now, call);
                self.reports.events.push_back(EngineEvent::Ended { call });
            }
            _ => {}
        }
        self.drop_leg(id);
    }

    /// Tears a call down: each owner forgets what it holds of it.
    pub(crate) fn end_call(&mut self, now: Duration, call: CallId) {
        if let Some(ringing) = self.recalls.forget(call) {
            // Cancelled by the caller of `end_call` where it can; a late
            // 2xx is acknowledged and hung up.
            self.client_txs.insert(ringing, TxOwner::StaleRecall);
        }
        self.lamp_gone(call);
        if let Some(p) = self.lot.remove(call) {
            self.notify_watchers(now, &p.orbit);
        }
        self.guard.call_ended(call);
        self.timers.forget(call);
        match self.legs.calls.remove(&call) {
            Some(CallState::Parked { caller, stream }) => {
                if let Some(s) = stream {
                    self.media.desk.stop(s);
                }
                self.drop_leg(caller);
            }
            Some(CallState::Bridged { caller, retriever }) => {
                self.drop_leg(caller);
                self.drop_leg(retriever);
            }
            None => {}
        }
    }
}
