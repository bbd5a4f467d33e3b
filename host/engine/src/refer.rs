//! Server-driven park (RFC 5359 §2.15): REFER, our INVITE to the party parked, the NOTIFYs.

use super::*;

impl Engine {
    /// Server-driven park (RFC 5359 §2.15): the parker REFERs the park
    /// server to its caller (`Refer-To: <caller?Replaces=...>`); we INVITE
    /// the caller with Replaces, which takes it off the parker's call and
    /// onto an orbit, and report the orbit in the final NOTIFY and a MESSAGE.
    pub(crate) fn on_refer(
        &mut self,
        now: Duration,
        tx: TxId,
        request: Request,
        peer: Peer,
        who: Who,
    ) {
        if self.guard.drain.draining {
            return self.respond(now, tx, &request, 503, Some("shutting down"));
        }
        let refer_to = match request.refer_to() {
            Ok(Some(r)) => r,
            Ok(None) => {
                return self.respond(now, tx, &request, 400, Some("REFER without Refer-To"));
            }
            Err(e) => return self.respond(now, tx, &request, 400, Some(&e.to_string())),
        };
        // The server calls whoever Refer-To names: only allowed targets,
        // never a number a stranger picked (toll fraud).
        if !self.guard.may_call(&refer_to.uri) {
            tracing::warn!(target = %refer_to.uri.without_headers(), "REFER to a target that is not allowed; nobody called");
            return self.respond(now, tx, &request, 403, Some("that target is not allowed"));
        }
        let parker = caller_identity(&request, &who);
        let dialed = request.uri.user_decoded().unwrap_or_default();
        let ctx = DialContext {
            dialed: dialed.clone(),
            caller: refer_to.uri.without_headers().to_string(),
            referred_by: Some(parker.clone()),
            has_replaces: true,
            dialed_is_orbit: self.lot.is_orbit(&dialed),
            dialed_orbit: self.lot.dialed_orbit(&dialed),
            params: Vec::new(),
        };
        let target = match self.policy.parse_dial(&ctx) {
            Ok(action @ (DialAction::ParkOrbit(_) | DialAction::ParkGroup(_))) => {
                self.park_target(action, &parker)
            }
            Ok(_) => Err(Refusal::new(
                403,
                format!("a REFER to {dialed} is not a park"),
            )),
            Err(e) => Err(e.into()),
        };
        let parked_uri = refer_to.uri.without_headers().to_string();
        let chosen = target.clone().and_then(|t| {
            self.choose_orbit(now, &t, &parker, &parker, &parked_uri, "")
                .map(|o| (t, o))
        });
        let (target, orbit) = match chosen {
            Ok(x) => x,
            Err(refusal) => return self.refuse(now, tx, &request, refusal),
        };
        let Some(peer_out) = self.route(&refer_to.uri) else {
            return self.respond(
                now,
                tx,
                &request,
                403,
                Some("the Refer-To host needs an outbound proxy"),
            );
        };
        let tag = self.ids.rng.hex(10);
        let mut accepted = request.dialog_response(202, &tag);
        accepted
            .headers
            .push("Contact", self.contact(peer, &request.uri));
        self.tx.send_response(now, tx, accepted);
        let mut dialog = Dialog::from_invite(&request, tag, peer, self.ids.rng.next_u64() as u32);
        self.refer_notify(now, &mut dialog, "SIP/2.0 100 Trying", false);

        let mut invite = self.new_invite(&orbit, None, &refer_to.uri);
        if let Some(replaces) = refer_to.uri.header("Replaces") {
            invite.headers.push("Replaces", replaces);
        }
        invite.headers.push("Referred-By", format!("<{parker}>"));
        let invite_tx = self.tx.send_request(now, invite, peer_out);
        self.client_txs.insert(
            invite_tx,
            TxOwner::ReferPark(Box::new(ReferPark {
                dialog,
                target,
                orbit,
                parker,
                parked_uri,
                peer: peer_out,
            })),
        );
    }

    /// The party being parked answered our INVITE (or refused it).
    pub(crate) fn refer_answered(
        &mut self,
        now: Duration,
        tx: TxId,
        mut pending: ReferPark,
        response: Response,
    ) {
        if response.status >= 300 {
            let frag = format!("SIP/2.0 {} {}", response.status, response.reason);
            self.refer_notify(now, &mut pending.dialog, &frag, true);
            return;
        }
        let Some(invite) = self.tx.client_request(tx) else {
            return;
        };
        let dialog = Dialog::from_uac(&invite, &response, pending.peer);
        self.tx.send_ack(
            dialog.ack(invite.cseq().map(|c| c.0).unwrap_or(1)),
            pending.peer,
        );
        let media = sdp::parse(&String::from_utf8_lossy(&response.body))
            .ok()
            .and_then(|sd| sdp::negotiate(&sd).ok());
        let call = CallId(self.id());
        let parked = Parked {
            call,
            orbit: pending.orbit.clone(),
            parked_at_ms: self.now_ms(now),
            parker: pending.parker.clone(),
            parked_uri: pending.parked_uri.clone(),
            parked_display: response
                .to()
                .ok()
                .and_then(|t| t.display)
                .unwrap_or_default(),
        };
        let leg = self.uac_leg(now, call, dialog, media);
        if let Err(e) = self.lot.park(&pending.target, parked) {
            // The orbit filled up meanwhile: hang up rather than strand it.
            self.bye(now, leg);
            self.drop_leg(leg);
            let frag = format!("SIP/2.0 486 {e}");
            self.refer_notify(now, &mut pending.dialog, &frag, true);
            return;
        }
        let frag = format!("SIP/2.0 200 Parked on {}", pending.orbit);
        self.refer_notify(now, &mut pending.dialog, &frag, true);
        self.settle_parked(now, call, leg, &pending.orbit);
    }

    /// A NOTIFY of a REFER's implicit subscription (RFC 3515), carrying a
    /// `message/sipfrag` status line.
    pub(crate) fn refer_notify(
        &mut self,
        now: Duration,
        dialog: &mut Dialog,
        sipfrag: &str,
        last: bool,
    ) {
        let mut request = dialog.request(Method::Notify);
        request.headers.push("Event", "refer");
        request.headers.push(
            "Subscription-State",
            if last {
                "terminated;reason=noresource"
            } else {
                "active;expires=60"
            },
        );
        request
            .headers
            .push("Content-Type", "message/sipfrag;version=2.0");
        request.body = format!("{sipfrag}\r\n").into_bytes();
        let peer = dialog.peer;
        self.tx.send_request(now, request, peer);
    }
}
