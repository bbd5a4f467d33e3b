//! The engine's own business: construction, the queues a host drains, SIP in, the request dispatch, reconfiguration and the drain.

use super::*;

impl Engine {
    pub fn new(
        cfg: EngineConfig,
        lot: ParkLot,
        music: MusicLibrary,
        policy: Arc<dyn Policy>,
    ) -> Engine {
        let sent_by = cfg.sip_addr.to_string();
        let entropy = cfg.entropy;
        let rtcp_cname = format!("callpark@{}", Host::Ip(cfg.media_addr.ip()));
        let guard = Guard::new(cfg.security.clone());
        let mut secret = [0u8; 8];
        secret.copy_from_slice(&cfg.security.secret[..8]);
        let rng = Rng::new(entropy.rotate_left(17) ^ u64::from_le_bytes(secret));
        Engine {
            cfg,
            policy,
            lot,
            tx: Transactions::new(sent_by, entropy),
            media: Media {
                library: music,
                desk: MusicDesk::new(),
                rtcp_out: VecDeque::new(),
                rtcp_cname,
            },
            legs: Legs::default(),
            recalls: Recalls::default(),
            client_txs: HashMap::new(),
            timers: CallTimers::default(),
            lamps: Lamps::default(),
            guard,
            reports: Reports::default(),
            ids: Ids { last: 0, rng },
        }
    }

    pub fn lot(&self) -> &ParkLot {
        &self.lot
    }

    /// After `shutdown`: every BYE it sent has its final answer, or timed
    /// out. Before `shutdown`: false.
    pub fn drained(&self) -> bool {
        self.guard.drain.draining && self.guard.drain.byes.is_empty()
    }

    /// BYEs of the shutdown still waiting for an answer.
    pub fn byes_pending(&self) -> usize {
        self.guard.drain.byes.len()
    }

    /// Parked (not yet retrieved) calls.
    pub fn parked_calls(&self) -> usize {
        self.lot.parked_count()
    }

    /// Calls of any kind (parked or bridged).
    pub fn calls(&self) -> usize {
        self.legs.calls.len()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.tx.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.reports.events.pop_front()
    }

    /// The next time `handle_timeout` or `pace_media` has work.
    pub fn poll_timeout(&self) -> Option<Duration> {
        [
            self.tx.poll_timeout(),
            self.media.desk.poll_timeout(),
            self.timers.queue.keys().next().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Requests refused by the transaction bound (503): one warning a
    /// second at most, with the total so far.
    pub(crate) fn log_shed(&mut self, now: Duration) {
        if self
            .reports
            .logs
            .shed_at
            .is_some_and(|at| now < at + Duration::from_secs(1))
        {
            return;
        }
        self.reports.logs.shed_at = Some(now);
        let (server, client) = self.tx.len();
        tracing::warn!(
            shed = self.tx.shed(),
            server_transactions = server,
            client_transactions = client,
            "overloaded: new requests get 503 with Retry-After until transactions drain"
        );
    }

    /// The host's loop has more SIP queued than it reads in a turn: new
    /// calls and watchers get 503 with Retry-After until it catches up.
    pub fn set_overloaded(&mut self, overloaded: bool) {
        self.tx.set_overloaded(overloaded);
    }

    /// Requests answered 503 because too many transactions were open.
    pub fn shed(&self) -> u64 {
        self.tx.shed()
    }

    /// A message nobody can be answered for is dropped and said so: one
    /// info line a second at most, with how many more were dropped since,
    /// so that a flood of garbage cannot flood the log.
    pub(crate) fn log_drop(&mut self, now: Duration, peer: Peer, reason: &str) {
        match self.reports.logs.drops.logged_at {
            Some(at) if now < at + Duration::from_secs(1) => self.reports.logs.drops.unlogged += 1,
            _ => {
                tracing::info!(
                    peer = %peer.addr,
                    reason,
                    also_dropped = self.reports.logs.drops.unlogged,
                    "unreadable SIP message dropped (nothing to answer to)"
                );
                self.reports.logs.drops = DropLog {
                    logged_at: Some(now),
                    unlogged: 0,
                };
            }
        }
    }

    /// One SIP datagram or stream frame.
    pub fn handle_sip(&mut self, now: Duration, bytes: &[u8], peer: Peer) {
        self.timers.latest = self.timers.latest.max(now);
        let shed_before = self.tx.shed();
        let result = self.tx.handle_bytes(now, bytes, peer);
        if self.tx.shed() > shed_before {
            self.log_shed(now);
        }
        if let Err(e) = result {
            match e.answered() {
                Some(status) => {
                    tracing::debug!(peer = %peer.addr, reason = %e.reason, status, "malformed SIP message answered");
                }
                None => self.log_drop(now, peer, &e.reason),
            }
        }
        self.drain_tx(now);
    }

    /// Takes a new configuration without dropping anything: parked calls
    /// stay on their orbits in FIFO order, bridged calls and busy-lamp
    /// watchers are untouched. A call on an orbit the new configuration
    /// removed stays retrievable on a disabled stand-in orbit and is
    /// recalled at once with reason `orbit-removed`.
    /// Sends a SIP MESSAGE with a `text/plain` body to `to`, out of any
    /// dialog: to an allowed target only, through the outbound proxy when
    /// one is set (a target named by host name needs one). For the parker's
    /// "Parked on 701" and for what an events plugin asks.
    pub fn send_message(&mut self, now: Duration, to: &str, text: &str) -> Result<(), String> {
        let uri = Uri::parse(to).map_err(|e| format!("{to:?} is not a SIP URI: {e}"))?;
        if !self.guard.may_call(&uri) {
            return Err(format!("{to} is not an allowed target"));
        }
        let Some(peer) = self.route(&uri) else {
            return Err(format!(
                "{to} is named by host name and no outbound proxy is set"
            ));
        };
        let mut request = self.new_request(Method::Message, "callpark", None, &uri);
        request.headers.push("Content-Type", "text/plain");
        request.body = text.as_bytes().to_vec();
        self.tx.send_request(now, request, peer);
        Ok(())
    }

    pub fn reconfigure(&mut self, now: Duration, new: Reconfiguration) {
        let Reconfiguration {
            mut lot,
            access,
            recall_params,
            security,
            music,
        } = new;
        // What each parked call hears now, to tell whom new music reaches.
        let before: Vec<(CallId, Music)> = match &music {
            Some(_) => self
                .lot
                .all_parked()
                .map(|p| (p.call, self.music_of(&p.orbit)))
                .collect(),
            None => Vec::new(),
        };
        self.guard.reconfigure(security);
        let mut orphans = Vec::new();
        for parked in self.lot.all_parked() {
            if lot.orbit(&parked.orbit).is_none() {
                let mut stand_in = self
                    .lot
                    .orbit(&parked.orbit)
                    .cloned()
                    .expect("parked on a known orbit");
                stand_in.enabled = false;
                lot.add_orbit(stand_in);
                orphans.push(parked.call);
            }
            let _ = lot.restore(parked.clone());
        }
        self.lot = lot;
        self.cfg.access = access;
        self.cfg.recall_params = recall_params;
        if let Some(library) = music {
            self.media.library = library;
            // A parked caller whose orbit's music changed hears the new one
            // from the next packet on, in the same stream (its SSRC,
            // sequence and timestamps carry on): no gap, no new stream.
            for (call, old) in before {
                let Some(CallState::Parked {
                    stream: Some(stream),
                    ..
                }) = self.legs.calls.get(&call)
                else {
                    continue;
                };
                let Some(orbit) = self.lot.get(call).map(|p| p.orbit.clone()) else {
                    continue;
                };
                let new = self.music_of(&orbit);
                if !new.same_audio(&old) {
                    self.media.desk.set_music(*stream, new);
                }
            }
        }
        tracing::info!(
            orbits = self.lot.orbits().len(),
            parked = self.lot.parked_count(),
            watchers = self.lamps.subscriptions.len(),
            "configuration applied"
        );
        for call in orphans {
            self.start_recall(now, call, RecallReason::OrbitRemoved);
        }
        // Every watcher hears the state once, whatever it watches.
        let ids: Vec<SubscriptionId> = self.lamps.subscriptions.keys().copied().collect();
        for id in ids {
            self.notify(now, id, None);
        }
    }

    /// What a call parked on `orbit` hears under the current lot and
    /// library.
    pub(crate) fn music_of(&self, orbit: &str) -> Music {
        self.media
            .library
            .for_orbit(self.lot.orbit(orbit).and_then(|o| o.music.as_deref()))
    }

    /// Stops taking new parks (503) and hangs up every call (SIGTERM).
    /// The BYEs are retransmitted like any request until answered or timer
    /// F: keep driving the engine until `drained`, or as long as the host's
    /// drain time allows.
    pub fn shutdown(&mut self, now: Duration) {
        self.guard.drain.draining = true;
        let legs: Vec<LegId> = self.legs.by_id.keys().copied().collect();
        for leg in legs {
            if let Some(tx) = self.bye(now, leg) {
                self.guard.drain.byes.insert(tx);
            }
        }
        let calls: Vec<CallId> = self.legs.calls.keys().copied().collect();
        for call in calls {
            self.end_call(now, call);
        }
    }

    pub(crate) fn id(&mut self) -> u64 {
        self.ids.last += 1;
        self.ids.last
    }

    pub(crate) fn now_ms(&self, now: Duration) -> u64 {
        self.cfg.epoch_ms_at_zero + now.as_millis() as u64
    }

    pub(crate) fn drain_tx(&mut self, now: Duration) {
        while let Some(event) = self.tx.poll_event() {
            match event {
                TxEvent::Request { tx, request, peer } => self.on_request(now, tx, request, peer),
                TxEvent::Ack { request, .. } => self.on_ack(now, &request),
                TxEvent::Cancelled { invite, .. } => self.on_cancelled(now, invite),
                TxEvent::AckTimeout { tx } => {
                    if let Some(leg) = self.legs.by_invite_tx.remove(&tx) {
                        // A caller we hang up is gone: its music, its
                        // orbit and the other leg of its bridge go with it
                        // (a spoofed INVITE must not buy RTP to a third
                        // party for the rest of max_lifetime).
                        tracing::info!(
                            call_id = %self.legs.by_id[&leg].dialog.call_id,
                            "a 2xx was never acknowledged; hanging up"
                        );
                        self.bye(now, leg);
                        self.leg_gone(now, leg);
                    }
                }
                TxEvent::Response { tx, response } => {
                    if response.status >= 200 {
                        self.guard.drain.byes.remove(&tx);
                    }
                    if let Some(&TxOwner::Probe(call)) = self.client_txs.get(&tx) {
                        self.client_txs.remove(&tx);
                        // 481 and 408 say the dialog is gone; any other
                        // answer (even 405) proves the phone is there.
                        if matches!(response.status, 408 | 481) {
                            self.caller_vanished(now, call);
                        }
                    } else {
                        self.on_response(now, tx, response);
                    }
                }
                TxEvent::Timeout { tx } => {
                    self.guard.drain.byes.remove(&tx);
                    match self.client_txs.remove(&tx) {
                        Some(TxOwner::ReferPark(mut pending)) => self.refer_notify(
                            now,
                            &mut pending.dialog,
                            "SIP/2.0 408 Request Timeout",
                            true,
                        ),
                        Some(TxOwner::Recall(call)) => self.next_step(now, call),
                        Some(TxOwner::Probe(call)) => self.caller_vanished(now, call),
                        Some(TxOwner::StaleRecall) | None => {}
                    }
                }
            }
        }
    }

    pub(crate) fn on_request(&mut self, now: Duration, tx: TxId, request: Request, peer: Peer) {
        // RFC 3261 §8.2.2.3: an extension the request requires and we do
        // not implement gets 420 naming it (never for CANCEL, which has no
        // say, and ACK, which cannot be answered).
        if request.method != Method::Cancel {
            let unsupported: Vec<&str> = request
                .headers
                .get_all("Require")
                .flat_map(callpark_sip::message::split_commas)
                .map(str::trim)
                .filter(|t| !t.is_empty() && !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
                .collect();
            if !unsupported.is_empty() {
                let mut r = request.response(420, Some(&self.ids.rng.hex(8)));
                r.headers.push("Unsupported", unsupported.join(", "));
                self.tx.send_response(now, tx, r);
                return;
            }
        }
        // Nothing about orbits is revealed to an untrusted source before
        // it authenticates (DESIGN §7): not even whether an orbit exists.
        let mut who = Who::Trusted;
        let check = guard::check_for(&request);
        if check != guard::Check::None {
            match self.guard.admit(now, &request, peer.addr.ip(), check) {
                Admission::Admit(w) => who = w,
                Admission::Challenge(challenges) => {
                    let mut r = request.response(401, Some(&self.ids.rng.hex(8)));
                    for c in challenges {
                        r.headers.push("WWW-Authenticate", c);
                    }
                    self.tx.send_response(now, tx, r);
                    return;
                }
                Admission::Slow => {
                    // Answered without an event: a flood from one source
                    // must not become a log line per request.
                    let mut r = request.response(503, Some(&self.ids.rng.hex(8)));
                    r.headers.push("Retry-After", "5");
                    self.tx.send_response(now, tx, r);
                    if let Some(total) = self.guard.slowed(now) {
                        tracing::warn!(
                            source = %peer.addr.ip(),
                            total,
                            "a source past its request rate gets 503 with Retry-After"
                        );
                    }
                    return;
                }
            }
        }
        let in_dialog = request.to().ok().and_then(|t| t.tag().map(str::to_string));
        match (&request.method, in_dialog) {
            (Method::Invite, None) => self.on_invite(now, tx, request, peer, who),
            (Method::Invite, Some(tag)) => self.on_reinvite(now, tx, request, tag),
            (Method::Bye, Some(tag)) => self.on_bye(now, tx, request, tag),
            (Method::Subscribe, None) => self.on_subscribe(now, tx, request, peer, who),
            (Method::Refer, None) => self.on_refer(now, tx, request, peer, who),
            (Method::Subscribe, Some(tag)) => self.on_resubscribe(now, tx, request, tag),
            (Method::Options, _) => {
                // §8.2.6.2: a final response carries a To tag.
                let mut r = request.response(200, Some(&self.ids.rng.hex(8)));
                r.headers.push("Allow", ALLOW);
                r.headers.push("Accept", "application/sdp");
                r.headers.push("Supported", "replaces");
                self.tx.send_response(now, tx, r);
            }
            (Method::Info, Some(tag)) if self.leg_by_dialog(&request, &tag).is_some() => {
                self.respond(now, tx, &request, 200, None);
                // application/dtmf-relay: "Signal=0\r\nDuration=160".
                let leg = self.leg_by_dialog(&request, &tag).expect("checked");
                let signal = String::from_utf8_lossy(&request.body)
                    .lines()
                    .find_map(|l| {
                        l.trim()
                            .strip_prefix("Signal=")
                            .map(|v| v.trim().chars().next())
                    })
                    .flatten();
                if let (Some(key), Some(call)) = (signal, self.legs.by_id.get(&leg).map(|l| l.call))
                {
                    self.key_pressed(now, call, key);
                }
            }
            (Method::Bye | Method::Info, _) => {
                self.respond(now, tx, &request, 481, Some("no such call"))
            }
            (Method::Other(_), _) => {
                self.respond(now, tx, &request, 501, Some("method not implemented"))
            }
            // A method SIP defines that a park server does not take (MESSAGE,
            // REGISTER, PUBLISH, NOTIFY and UPDATE outside our dialogs ...):
            // 405 with Allow (§8.2.1), not 501, which means "unknown".
            _ => self.respond(
                now,
                tx,
                &request,
                405,
                Some("not accepted by this park server"),
            ),
        }
    }
}
