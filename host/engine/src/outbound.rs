//! What we send: responses, our requests and where they go, our Contact, and the answers to our requests.

use super::*;

impl Engine {
    /// Refuses a request.
    pub(crate) fn refuse(&mut self, now: Duration, tx: TxId, request: &Request, refusal: Refusal) {
        self.respond(now, tx, request, refusal.status, Some(&refusal.reason));
    }

    pub(crate) fn respond(
        &mut self,
        now: Duration,
        tx: TxId,
        request: &Request,
        status: u16,
        why: Option<&str>,
    ) {
        let mut r = request.response(status, Some(&self.ids.rng.hex(8)));
        if let Some(why) = why {
            r.headers.push("Warning", warning(why));
        }
        if status == 405 || status == 501 || request.method == Method::Options {
            r.headers.push("Allow", ALLOW);
        }
        if status == 503 {
            r.headers.push("Retry-After", "5");
        }
        if status >= 300 {
            self.reports.events.push_back(EngineEvent::Refused {
                method: request.method.to_string(),
                dialed: request.uri.user_decoded().unwrap_or_default(),
                status,
                reason: why.unwrap_or("").to_string(),
            });
        }
        self.tx.send_response(now, tx, r);
    }

    /// Our Contact for a dialog with `peer` that `uri` (the request's
    /// Request-URI, or the target we call) opened.
    pub(crate) fn contact(&self, peer: Peer, uri: &Uri) -> String {
        let host = Host::Ip(self.cfg.sip_addr.ip());
        match peer.transport {
            Transport::Udp(_) => format!("<sip:callpark@{host}:{}>", self.cfg.sip_addr.port()),
            Transport::Tcp(_) => format!(
                "<sip:callpark@{host}:{};transport=tcp>",
                self.cfg.sip_addr.port()
            ),
            // RFC 3261 §12.1.1: a dialog a sips: URI opened keeps a sips:
            // Contact; one over TLS to a sip: URI says transport=tls (a
            // phone may not take sips: it did not ask for).
            Transport::Tls(_) if uri.scheme == callpark_sip::uri::Scheme::Sips => format!(
                "<sips:callpark@{host}:{}>",
                self.cfg.tls_port.unwrap_or(5061)
            ),
            Transport::Tls(_) => format!(
                "<sip:callpark@{host}:{};transport=tls>",
                self.cfg.tls_port.unwrap_or(5061)
            ),
        }
    }

    pub(crate) fn answer_200(
        &mut self,
        now: Duration,
        tx: TxId,
        request: &Request,
        leg: LegId,
        sdp_body: String,
        peer: Peer,
    ) {
        let tag = self.legs.by_id[&leg].dialog.local_tag.clone();
        let mut r: Response = request.dialog_response(200, &tag);
        r.headers.push("Contact", self.contact(peer, &request.uri));
        r.headers.push("Allow", ALLOW);
        r.headers.push("Supported", "replaces");
        r.headers.push("Content-Type", "application/sdp");
        r.body = sdp_body.into_bytes();
        self.tx.send_response(now, tx, r);
    }

    /// Where an out-of-dialog request to `uri` goes: the outbound proxy,
    /// else the URI's own IP address. A host name needs DNS, which the
    /// outbound proxy does for us.
    ///
    /// A `sips:` URI, or one with `;transport=tls`, is reached over TLS
    /// (a connection the host opens or reuses, port 5061 by default)
    /// unless the outbound proxy carries it.
    pub(crate) fn route(&self, uri: &Uri) -> Option<Peer> {
        let tls = uri.scheme == callpark_sip::uri::Scheme::Sips
            || uri
                .param("transport")
                .flatten()
                .is_some_and(|t| t.eq_ignore_ascii_case("tls"));
        let (addr, transport) = match (self.cfg.outbound_proxy, &uri.host) {
            (Some(proxy), _) => (proxy, Transport::Udp(0)),
            (None, Some(Host::Ip(ip))) if tls => (
                SocketAddr::new(*ip, uri.port.unwrap_or(5061)),
                Transport::Tls(callpark_sip::transaction::NEW_CONNECTION),
            ),
            (None, Some(Host::Ip(ip))) => (
                SocketAddr::new(*ip, uri.port.unwrap_or(5060)),
                Transport::Udp(0),
            ),
            (None, _) => return None,
        };
        Some(Peer { transport, addr })
    }

    /// A request opening a new dialog or transaction from `user` at our
    /// address (From with a fresh tag, To, Call-ID, CSeq 1).
    pub(crate) fn new_request(
        &mut self,
        method: Method,
        user: &str,
        display: Option<String>,
        target: &Uri,
    ) -> Request {
        let host = Host::Ip(self.cfg.sip_addr.ip());
        let port = self.cfg.sip_addr.port();
        let mut from = NameAddr::new(Uri {
            scheme: callpark_sip::uri::Scheme::Sip,
            user: Some(user.to_string()),
            host: Some(host),
            port: Some(port),
            params: Vec::new(),
            headers: Vec::new(),
        })
        .with_param("tag", &self.ids.rng.hex(10));
        from.display = display;
        let mut headers = callpark_sip::message::Headers::new();
        headers.push("Max-Forwards", "70");
        headers.push("From", from.to_string());
        headers.push("To", NameAddr::new(target.without_headers()).to_string());
        headers.push("Call-ID", format!("{}@callpark", self.ids.rng.hex(16)));
        headers.push("CSeq", format!("1 {method}"));
        Request {
            method,
            uri: target.without_headers(),
            headers,
            body: Vec::new(),
        }
    }

    /// An INVITE of ours with an offer the relay can serve.
    pub(crate) fn new_invite(
        &mut self,
        user: &str,
        display: Option<String>,
        target: &Uri,
    ) -> Request {
        let mut invite = self.new_request(Method::Invite, user, display, target);
        // Over UDP unless the route says otherwise (`send_recall_invite`
        // puts the TLS Contact in).
        let udp = Peer {
            transport: Transport::Udp(0),
            addr: self.cfg.sip_addr,
        };
        invite.headers.push("Contact", self.contact(udp, target));
        invite.headers.push("Allow", ALLOW);
        invite.headers.push("Content-Type", "application/sdp");
        let session = self.id();
        let local = self.local_media(session, 1);
        invite.body = sdp::offer(&local, Direction::SendRecv).into_bytes();
        invite
    }

    pub(crate) fn on_response(&mut self, now: Duration, tx: TxId, response: Response) {
        if response.status < 200 {
            return;
        }
        let is_invite = response
            .cseq()
            .map(|c| c.1 == Method::Invite)
            .unwrap_or(false);
        if !is_invite {
            return;
        }
        if matches!(self.client_txs.get(&tx), Some(TxOwner::ReferPark(_))) {
            let Some(TxOwner::ReferPark(pending)) = self.client_txs.remove(&tx) else {
                unreachable!("matched above");
            };
            return self.refer_answered(now, tx, *pending, response);
        }
        if response.status >= 300 {
            // A cancelled recall INVITE ends here (487): nothing to hang up.
            if let Some(TxOwner::Recall(call)) = self.client_txs.remove(&tx) {
                let orbit = self
                    .lot
                    .get(call)
                    .map(|p| p.orbit.clone())
                    .unwrap_or_default();
                tracing::info!(%orbit, status = response.status, "recall step declined");
                self.next_step(now, call);
            }
            return;
        }
        // A 2xx: ACK it (every retransmission), then bridge or hang up.
        let Some(invite) = self.tx.client_request(tx) else {
            return;
        };
        let ringing_peer = match self.client_txs.get(&tx) {
            Some(TxOwner::Recall(call)) => self
                .recalls
                .active
                .get(call)
                .and_then(|r| r.ringing.as_ref())
                .filter(|r| r.tx == tx)
                .map(|r| r.peer),
            _ => None,
        };
        let peer = ringing_peer.unwrap_or_else(|| match invite.uri.host {
            Some(Host::Ip(ip)) => Peer {
                transport: Transport::Udp(0),
                addr: SocketAddr::new(ip, invite.uri.port.unwrap_or(5060)),
            },
            _ => Peer {
                transport: Transport::Udp(0),
                addr: self.cfg.outbound_proxy.unwrap_or(self.cfg.sip_addr),
            },
        });
        let dialog = Dialog::from_uac(&invite, &response, peer);
        let ack = dialog.ack(invite.cseq().map(|c| c.0).unwrap_or(1));
        self.tx.send_ack(ack, peer);
        let key = (dialog.call_id.clone(), dialog.local_tag.clone());
        if self.legs.by_dialog.contains_key(&key) {
            return; // a retransmitted 2xx of a bridged recall
        }
        let call = match self.client_txs.remove(&tx) {
            Some(TxOwner::Recall(call)) => call,
            Some(TxOwner::StaleRecall) => {
                // Answered after we gave up (cancel race): hang up at once.
                let mut d = dialog;
                let bye = d.request(Method::Bye);
                self.tx.send_request(now, bye, peer);
                return;
            }
            Some(other) => {
                self.client_txs.insert(tx, other);
                return;
            }
            None => return,
        };
        let media = sdp::parse(&String::from_utf8_lossy(&response.body))
            .ok()
            .and_then(|sd| sdp::negotiate(&sd).ok());
        self.recalls.active.remove(&call);
        let Some(parked) = self.lot.remove(call) else {
            return;
        };
        let Some(CallState::Parked { caller, stream }) = self.legs.calls.remove(&call) else {
            return;
        };
        if let Some(s) = stream {
            self.media.desk.stop(s);
        }
        let by = dialog.remote_uri();
        let id = self.uac_leg(now, call, dialog, media);
        self.legs.calls.insert(
            call,
            CallState::Bridged {
                caller,
                retriever: id,
            },
        );
        self.notify_watchers(now, &parked.orbit);
        tracing::debug!(orbit = %parked.orbit, %by, "recall answered");
        self.reports.events.push_back(EngineEvent::RecallAnswered {
            call,
            orbit: parked.orbit,
            by,
        });
    }

    pub(crate) fn bye(&mut self, now: Duration, id: LegId) -> Option<TxId> {
        let leg = self.legs.by_id.get_mut(&id)?;
        let request = leg.dialog.request(Method::Bye);
        let peer = leg.dialog.peer;
        Some(self.tx.send_request(now, request, peer))
    }
}
