//! Parking and retrieving: the dialed string, access, the orbit, the parked call settled, the retrieve and the attended-park takeover.

use super::*;

impl Engine {
    pub(crate) fn on_invite(
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
        // A body we cannot read is refused before anything is decided
        // (RFC 3261 §21.4.13; RFC 4475 `invut`).
        if !request.body.is_empty() && request.content_type().as_deref() != Some("application/sdp")
        {
            let mut r = request.response(415, Some(&self.ids.rng.hex(8)));
            r.headers.push("Accept", "application/sdp");
            return self.tx.send_response(now, tx, r);
        }
        // An INVITE with Replaces for one of our dialogs takes that leg's
        // place (attended park, or a pickup from a busy lamp).
        match request.replaces() {
            Ok(Some(replaces)) => {
                // A pickup from a busy lamp names the lamp's dialog, whose
                // Call-ID and both tags are keyed by our secret: retrieve.
                if let Some(call) = self.guard.lamp_pickup(&replaces).map(CallId) {
                    let acting = acting_identity(&request, &who);
                    let orbit = self.lot.get(call).map(|p| p.orbit.clone());
                    if let Some(orbit) = &orbit
                        && !self.allowed(Action::Retrieve, &acting, self.group_of_orbit(orbit))
                    {
                        let why = format!("{acting} may not retrieve calls");
                        return self.respond(now, tx, &request, 403, Some(&why));
                    }
                    return match self.lot.remove(call) {
                        Some(parked) => self.retrieve(now, tx, request, peer, parked),
                        None => {
                            self.respond(now, tx, &request, 481, Some("that parked call is gone"))
                        }
                    };
                }
                let key = (replaces.call_id.clone(), replaces.to_tag.clone());
                if let Some(&old) = self.legs.by_dialog.get(&key)
                    && self
                        .legs
                        .by_id
                        .get(&old)
                        .is_some_and(|l| l.dialog.remote_tag == replaces.from_tag)
                {
                    return self.take_over(now, tx, request, peer, old);
                }
                return self.respond(
                    now,
                    tx,
                    &request,
                    481,
                    Some("the call to replace does not exist"),
                );
            }
            Ok(None) => {}
            Err(e) => return self.respond(now, tx, &request, 400, Some(&e.to_string())),
        }
        let dialed = request.uri.user_decoded().unwrap_or_default();
        // Who is calling: the authenticated user, or what a trusted source
        // asserted (P-Asserted-Identity, else From).
        let caller = caller_identity(&request, &who);
        let referred_by = request
            .referred_by()
            .ok()
            .flatten()
            .map(|r| r.uri.to_string());
        let ctx = DialContext {
            dialed: dialed.clone(),
            caller: caller.clone(),
            referred_by: referred_by.clone(),
            has_replaces: false,
            dialed_is_orbit: self.lot.is_orbit(&dialed),
            dialed_orbit: self.lot.dialed_orbit(&dialed),
            params: Vec::new(),
        };
        let action = match self.policy.parse_dial(&ctx) {
            Ok(a) => a,
            Err(e) => return self.respond(now, tx, &request, 503, Some(&e.to_string())),
        };
        // The parker: whoever referred the caller here, else the caller
        // itself (dialing the code is the first half of an attended park).
        // Access rules judge the acting party: for a trusted source the
        // referrer it names; for an authenticated user that user, never a
        // Referred-By it wrote itself.
        let parker = referred_by.clone().unwrap_or_default();
        let acting = acting_identity(&request, &who);
        let target = match action {
            DialAction::Retrieve(orbit) => {
                let parties = Parties {
                    parker,
                    acting,
                    caller,
                };
                return self.on_retrieve(now, tx, request, peer, orbit, parties);
            }
            DialAction::NotFeature => Err(Refusal::new(
                404,
                format!("{dialed} is not an orbit or a park code"),
            )),
            park => self.park_target(park, &acting),
        };
        match target {
            Ok(target) => {
                let parties = Parties {
                    parker,
                    acting,
                    caller,
                };
                self.park(now, tx, request, peer, target, parties)
            }
            Err(refusal) => self.refuse(now, tx, &request, refusal),
        }
    }

    /// Where a park action parks: an orbit, a group (the acting party's
    /// own for `ParkGroup(None)`), or the default lot when no group is
    /// configured. `Retrieve` and `NotFeature` are not parks: 403.
    pub(crate) fn park_target(
        &self,
        action: DialAction,
        acting: &str,
    ) -> Result<ParkTarget, Refusal> {
        match action {
            DialAction::ParkOrbit(o) => self
                .lot
                .resolve(&o)
                .map(|cfg| ParkTarget::Orbit(cfg.number.clone()))
                .ok_or_else(|| Refusal::new(404, format!("orbit {o} does not exist"))),
            DialAction::ParkGroup(None) if self.lot.groups().is_empty() => {
                Ok(ParkTarget::DefaultLot)
            }
            DialAction::ParkGroup(None) => self
                .lot
                .group_of(acting)
                .map(|g| ParkTarget::Group(g.name.clone()))
                .ok_or_else(|| Refusal::new(403, format!("{acting} is in no call park group"))),
            DialAction::ParkGroup(Some(g)) => self
                .lot
                .group(&g)
                .map(|group| ParkTarget::Group(group.name.clone()))
                .ok_or_else(|| Refusal::new(404, format!("group {g} does not exist"))),
            DialAction::Retrieve(_) | DialAction::NotFeature => {
                Err(Refusal::new(403, "not a park"))
            }
        }
    }

    /// Retrieve from an orbit (or the oldest anywhere). A bare orbit number
    /// with nothing on it parks instead, when so configured.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_retrieve(
        &mut self,
        now: Duration,
        tx: TxId,
        request: Request,
        peer: Peer,
        orbit: Option<String>,
        parties: Parties,
    ) {
        let number = match &orbit {
            Some(o) => match self.lot.resolve(o) {
                Some(cfg) => Some(cfg.number.clone()),
                None => {
                    let why = format!("orbit {o} does not exist");
                    return self.respond(now, tx, &request, 404, Some(&why));
                }
            },
            None => None,
        };
        // The rule is asked only when there is a call to take. What a bare
        // empty orbit means is the dialing plugin's to say (it saw the
        // orbit's state): a retrieve there is a 404.
        let has_call = match &number {
            Some(n) => self.lot.parked_on(n).next().is_some(),
            None => self.lot.parked_count() > 0,
        };
        let group = number.as_deref().and_then(|n| self.group_of_orbit(n));
        if has_call && !self.allowed(Action::Retrieve, &parties.acting, group) {
            let why = format!("{} may not retrieve calls", parties.acting);
            return self.respond(now, tx, &request, 403, Some(&why));
        }
        match (self.lot.retrieve(number.as_deref()), number) {
            (Some(parked), _) => self.retrieve(now, tx, request, peer, parked),
            (None, Some(n)) => self.respond(
                now,
                tx,
                &request,
                404,
                Some(&format!("Nothing parked on {n}")),
            ),
            (None, None) => self.respond(now, tx, &request, 404, Some("Nothing parked")),
        }
    }

    /// Whether `acting` may do `action` on the orbits of `group` (none:
    /// orbits of no group, or the lot as a whole).
    pub(crate) fn allowed(&self, action: Action, acting: &str, group: Option<&str>) -> bool {
        match self.guard.rule(&self.cfg.access, action, group) {
            Access::All => true,
            Access::Members => match group.and_then(|g| self.lot.group(g)) {
                Some(g) => g.members.iter().any(|m| same_party(m, acting)),
                None => self.lot.group_of(acting).is_some(),
            },
            Access::Listed(list) => list.iter().any(|p| same_party(p, acting)),
        }
    }

    /// The group whose destinations hold `orbit`, if any.
    pub(crate) fn group_of_orbit(&self, orbit: &str) -> Option<&str> {
        self.lot
            .groups()
            .iter()
            .find(|g| g.destinations.iter().any(|d| d == orbit))
            .map(|g| g.name.as_str())
    }

    #[allow(clippy::too_many_arguments)]
    /// Who may park, whether there is room, and which orbit: the allocator
    /// decides. Errors carry the SIP status and the reason.
    pub(crate) fn choose_orbit(
        &mut self,
        now: Duration,
        target: &ParkTarget,
        parker: &str,
        acting: &str,
        parked_uri: &str,
        parked_display: &str,
    ) -> Result<String, Refusal> {
        if self.lot.parked_count() >= self.cfg.max_parked_calls {
            return Err(Refusal::new(503, "the park server is full"));
        }
        let group = match target {
            ParkTarget::Orbit(o) => self.group_of_orbit(o).map(str::to_string),
            ParkTarget::Group(g) => Some(g.clone()),
            ParkTarget::DefaultLot => None,
        };
        if !self.allowed(Action::Park, acting, group.as_deref()) {
            return Err(Refusal::new(403, format!("{acting} may not park calls")));
        }
        let (candidates, last_orbit) = self
            .lot
            .candidates(target)
            .map_err(|e| Refusal::new(404, e.to_string()))?;
        let req = ParkRequest {
            parker: parker.to_string(),
            parked_uri: parked_uri.to_string(),
            parked_display: parked_display.to_string(),
            target: target.clone(),
            candidates,
            last_orbit,
            now_ms: self.now_ms(now),
            entropy: self.ids.rng.next_u64(),
            params: Vec::new(),
        };
        match self.policy.allocate(&req) {
            Ok(Allocation::Orbit(o)) => Ok(o),
            Ok(Allocation::Rejected(r)) => Err(Refusal::new(
                match r.code {
                    RejectCode::Busy | RejectCode::Full => 486,
                    RejectCode::NotFound => 404,
                    RejectCode::Forbidden => 403,
                },
                r.reason,
            )),
            Err(e) => Err(e.into()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn park(
        &mut self,
        now: Duration,
        tx: TxId,
        request: Request,
        peer: Peer,
        target: ParkTarget,
        parties: Parties,
    ) {
        let Parties {
            parker,
            acting,
            caller,
        } = parties;
        let source = peer.addr.ip();
        if !self.guard.may_park_more(source) {
            let why = "too many calls parked from this address";
            return self.respond(now, tx, &request, 486, Some(why));
        }
        // The parked caller as the allocator, the lamps and the events see
        // it: the authenticated or asserted identity (From otherwise).
        let parked_uri = caller;
        let parked_display = request
            .from()
            .ok()
            .and_then(|f| f.display)
            .unwrap_or_default();
        let orbit =
            match self.choose_orbit(now, &target, &parker, &acting, &parked_uri, &parked_display) {
                Ok(o) => o,
                Err(refusal) => return self.refuse(now, tx, &request, refusal),
            };
        let (media, body, session) = match self.negotiate(&request) {
            Ok(x) => x,
            Err(refusal) => return self.refuse(now, tx, &request, refusal),
        };
        let call = CallId(self.id());
        let leg = self.new_leg(now, call, &request, peer, tx, media, session);
        let parked = Parked {
            call,
            orbit: orbit.clone(),
            parked_at_ms: self.now_ms(now),
            parker: parker.clone(),
            parked_uri,
            parked_display,
        };
        if let Err(e) = self.lot.park(&target, parked) {
            self.drop_leg(leg);
            return self.respond(now, tx, &request, 486, Some(&e.to_string()));
        }
        self.answer_200(now, tx, &request, leg, body, peer);
        self.guard.call_parked(call, source);
        self.settle_parked(now, call, leg, &orbit);
    }

    /// A call just put on the lot: music (with the orbit announced when
    /// the parker may be the caller itself), timers, lamps, the event and
    /// the MESSAGE to the parker.
    pub(crate) fn settle_parked(&mut self, now: Duration, call: CallId, leg: LegId, orbit: &str) {
        let (parker, caller) = match self.lot.get(call) {
            Some(p) => (p.parker.clone(), p.parked_uri.clone()),
            None => return,
        };
        let music_key = self.lot.orbit(orbit).and_then(|o| o.music.clone());
        // With no Referred-By the caller may be the parker itself (the first
        // half of an attended park): it hears the orbit announced first.
        let intro = if parker.is_empty() {
            self.media.library.announcement(orbit)
        } else {
            Vec::new()
        };
        if parker.is_empty() && !self.cfg.reservation_timeout.is_zero() {
            self.arm(
                now + self.cfg.reservation_timeout,
                call,
                EngineTimer::Reservation(leg),
            );
        }
        // No music to an untrusted caller before its ACK: a spoofed INVITE
        // must not buy a stream towards the address it names.
        let unacked = self
            .legs
            .by_id
            .get(&leg)
            .is_some_and(|l| l.invite_tx.is_some());
        let stream = if unacked && self.guard.untrusted_call(call) {
            if let Some(l) = self.legs.by_id.get_mut(&leg) {
                l.deferred_music = Some(Box::new((music_key.clone(), intro)));
            }
            None
        } else {
            self.start_music(now, leg, music_key.as_deref(), intro)
        };
        self.legs.calls.insert(
            call,
            CallState::Parked {
                caller: leg,
                stream,
            },
        );
        let recall_after = self.lot.orbit(orbit).map_or(0, |o| o.recall_after_ms);
        if recall_after > 0 {
            self.arm(
                now + Duration::from_millis(recall_after),
                call,
                EngineTimer::RecallDue,
            );
        }
        if !self.cfg.rtp_timeout.is_zero() {
            self.arm(now + self.cfg.rtp_timeout, call, EngineTimer::Liveness);
        }
        if !self.cfg.max_lifetime.is_zero() {
            self.arm(now + self.cfg.max_lifetime, call, EngineTimer::Lifetime);
        }
        self.notify_watchers(now, orbit);
        self.reports.events.push_back(EngineEvent::Parked {
            call,
            orbit: orbit.to_string(),
            parker: parker.clone(),
            caller,
            call_id: self.legs.by_id[&leg].dialog.call_id.clone(),
        });
        if !parker.is_empty() {
            self.tell_parker(now, &parker, orbit);
        }
    }

    /// "Parked on 701", by SIP MESSAGE to the parker.
    pub(crate) fn tell_parker(&mut self, now: Duration, parker: &str, orbit: &str) {
        if let Err(why) = self.send_message(now, parker, &format!("Parked on {orbit}")) {
            tracing::debug!(parker, "not telling the parker: {why}");
        }
    }

    pub(crate) fn retrieve(
        &mut self,
        now: Duration,
        tx: TxId,
        request: Request,
        peer: Peer,
        parked: Parked,
    ) {
        let (media, body, session) = match self.negotiate(&request) {
            Ok(x) => x,
            Err(refusal) => {
                // Put the call back where it was: it is still parked.
                let orbit = parked.orbit.clone();
                let _ = self.lot.park(&ParkTarget::Orbit(orbit), parked);
                return self.refuse(now, tx, &request, refusal);
            }
        };
        let call = parked.call;
        if !self.lamps.subscriptions.is_empty()
            && let Some(CallState::Parked { caller, .. }) = self.legs.calls.get(&call)
            && self.legs.by_id.contains_key(caller)
        {
            let lamp = GoneLamp {
                call,
                caller_uri: parked.parked_uri.clone(),
                caller_display: parked.parked_display.clone(),
            };
            self.lamps
                .gone
                .entry(parked.orbit.clone())
                .or_default()
                .push(lamp);
        }
        // A retrieve wins over a ringing recall.
        self.cancel_recall(now, call);
        let retriever = self.new_leg(now, call, &request, peer, tx, media, session);
        self.answer_200(now, tx, &request, retriever, body, peer);
        let Some(CallState::Parked { caller, stream }) = self.legs.calls.remove(&call) else {
            return;
        };
        if let Some(s) = stream {
            self.media.desk.stop(s);
        }
        self.legs
            .calls
            .insert(call, CallState::Bridged { caller, retriever });
        let by = request
            .from()
            .map(|f| f.uri.to_string())
            .unwrap_or_default();
        tracing::debug!(call_id = %self.legs.by_id[&caller].dialog.call_id, orbit = %parked.orbit, %by, "retrieved");
        self.notify_watchers(now, &parked.orbit);
        self.reports.events.push_back(EngineEvent::Retrieved {
            call,
            orbit: parked.orbit,
            by,
        });
    }

    /// An INVITE with Replaces takes an existing leg's place: the new party
    /// is parked on (or bridged in) the same call, the old leg is hung up.
    pub(crate) fn take_over(
        &mut self,
        now: Duration,
        tx: TxId,
        request: Request,
        peer: Peer,
        old: LegId,
    ) {
        let (media, body, session) = match self.negotiate(&request) {
            Ok(x) => x,
            Err(refusal) => return self.refuse(now, tx, &request, refusal),
        };
        let call = self.legs.by_id[&old].call;
        let new = self.new_leg(now, call, &request, peer, tx, media, session);
        self.answer_200(now, tx, &request, new, body, peer);
        match self.legs.calls.remove(&call) {
            Some(CallState::Parked { stream, .. }) => {
                if let Some(s) = stream {
                    self.media.desk.stop(s);
                }
                let key = self
                    .lot
                    .get(call)
                    .and_then(|p| self.lot.orbit(&p.orbit))
                    .and_then(|o| o.music.clone());
                let stream = self.start_music(now, new, key.as_deref(), Vec::new());
                self.legs.calls.insert(
                    call,
                    CallState::Parked {
                        caller: new,
                        stream,
                    },
                );
                // The replaced leg was the parker (attended park): the
                // parked party is now the newcomer, and the parker is who
                // referred it (phones that copy Referred-By from the REFER
                // name the parker best), else the leg it replaced.
                let replaced_uri = self.legs.by_id[&old].dialog.remote_uri();
                let referred_by = request
                    .referred_by()
                    .ok()
                    .flatten()
                    .map(|r| r.uri.to_string());
                let from = request.from().ok();
                if let Some(p) = self.lot.remove(call) {
                    let completes_attended_park = p.parker.is_empty();
                    let updated = Parked {
                        parker: if completes_attended_park {
                            referred_by.unwrap_or(replaced_uri)
                        } else {
                            p.parker
                        },
                        parked_uri: from
                            .as_ref()
                            .map(|f| f.uri.to_string())
                            .unwrap_or(p.parked_uri),
                        parked_display: from.and_then(|f| f.display).unwrap_or_default(),
                        ..p
                    };
                    let orbit = updated.orbit.clone();
                    let (parker, caller) = (updated.parker.clone(), updated.parked_uri.clone());
                    let _ = self.lot.park(&ParkTarget::Orbit(orbit.clone()), updated);
                    self.notify_watchers(now, &orbit);
                    if completes_attended_park {
                        self.reports
                            .events
                            .push_back(EngineEvent::AttendedParkCompleted {
                                call,
                                orbit: orbit.clone(),
                                parker: parker.clone(),
                                caller,
                                call_id: request.call_id().unwrap_or_default().to_string(),
                            });
                        // The parker heard the orbit; it gets the MESSAGE
                        // too, as every parker does.
                        if !parker.is_empty() {
                            self.tell_parker(now, &parker, &orbit);
                        }
                    }
                }
            }
            Some(CallState::Bridged { caller, retriever }) => {
                let (caller, retriever) = if caller == old {
                    (new, retriever)
                } else {
                    (caller, new)
                };
                self.legs
                    .calls
                    .insert(call, CallState::Bridged { caller, retriever });
            }
            None => {}
        }
        self.bye(now, old);
        self.drop_leg(old);
    }
}
