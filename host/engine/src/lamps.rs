//! Busy lamps: SUBSCRIBE, the NOTIFYs and what they show.

use super::*;

impl Engine {
    pub(crate) fn on_subscribe(
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
        let event = request
            .header("Event")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if event != "dialog" {
            let mut r = request.response(489, None);
            r.headers.push("Allow-Events", "dialog");
            self.tx.send_response(now, tx, r);
            return;
        }
        let user = request.uri.user_decoded().unwrap_or_default();
        let watched = if let Some(o) = self.lot.resolve(&user) {
            blf::Watched::Orbit(o.number.clone())
        } else if let Some(g) = self.lot.group(&user) {
            blf::Watched::Group(g.name.clone())
        } else {
            return self.respond(
                now,
                tx,
                &request,
                404,
                Some(&format!("{user} is neither an orbit nor a group")),
            );
        };
        let group = match &watched {
            blf::Watched::Orbit(o) => self.group_of_orbit(o).map(str::to_string),
            blf::Watched::Group(g) => Some(g.clone()),
        };
        let acting = acting_identity(&request, &who);
        if !self.allowed(Action::Subscribe, &acting, group.as_deref()) {
            let why = format!("{acting} may not watch {user}");
            return self.respond(now, tx, &request, 403, Some(&why));
        }
        let expires = match request.expires() {
            Ok(e) => e.unwrap_or(3600).min(3600),
            Err(e) => return self.respond(now, tx, &request, 400, Some(&e.to_string())),
        };
        if expires != 0 && expires < 60 {
            let mut r = request.response(423, None);
            r.reason = "Interval Too Brief".into();
            r.headers.push("Min-Expires", "60");
            self.tx.send_response(now, tx, r);
            return;
        }
        let tag = self.ids.rng.hex(10);
        let dialog =
            Dialog::from_invite(&request, tag.clone(), peer, self.ids.rng.next_u64() as u32);
        let mut ok = request.dialog_response(200, &tag);
        ok.headers.push("Contact", self.contact(peer, &request.uri));
        ok.headers.push("Expires", expires.to_string());
        self.tx.send_response(now, tx, ok);
        let id = SubscriptionId(self.id());
        let entity = format!("sip:{user}@{}", Host::Ip(self.cfg.sip_addr.ip()));
        self.lamps
            .by_dialog
            .insert((dialog.call_id.clone(), tag), id);
        self.lamps.subscriptions.insert(
            id,
            Subscription {
                dialog,
                watched,
                entity,
                expires_at: now + Duration::from_secs(u64::from(expires)),
                version: 0,
            },
        );
        tracing::info!(watcher = %request.from().map(|f| f.uri.to_string()).unwrap_or_default(), %user, expires, "busy lamp subscribed");
        if expires == 0 {
            // A fetch: one NOTIFY with the state, and done.
            self.notify(now, id, Some("timeout"));
            self.drop_subscription(id);
        } else {
            self.notify(now, id, None);
            self.arm_subscription(now + Duration::from_secs(u64::from(expires)), id);
        }
    }

    pub(crate) fn on_resubscribe(
        &mut self,
        now: Duration,
        tx: TxId,
        request: Request,
        tag: String,
    ) {
        let Some(call_id) = request.call_id().ok().map(str::to_string) else {
            return;
        };
        let Some(&id) = self.lamps.by_dialog.get(&(call_id, tag.clone())) else {
            return self.respond(now, tx, &request, 481, Some("no such subscription"));
        };
        let expires = request.expires().ok().flatten().unwrap_or(3600).min(3600);
        let mut ok = request.response(200, Some(&tag));
        ok.headers.push("Expires", expires.to_string());
        self.tx.send_response(now, tx, ok);
        if expires == 0 {
            self.notify(now, id, Some("timeout"));
            self.drop_subscription(id);
            return;
        }
        if let Some(sub) = self.lamps.subscriptions.get_mut(&id) {
            sub.expires_at = now + Duration::from_secs(u64::from(expires.max(60)));
            let at = sub.expires_at;
            self.arm_subscription(at, id);
        }
        self.notify(now, id, None);
    }

    pub(crate) fn drop_subscription(&mut self, id: SubscriptionId) {
        if let Some(sub) = self.lamps.subscriptions.remove(&id) {
            self.lamps
                .by_dialog
                .remove(&(sub.dialog.call_id.clone(), sub.dialog.local_tag.clone()));
        }
    }

    /// Notes a parked call leaving its orbit, for the lamps' next NOTIFY.
    /// Call while the call is still in the lot and its caller leg exists.
    pub(crate) fn lamp_gone(&mut self, call: CallId) {
        if self.lamps.subscriptions.is_empty() {
            return;
        }
        let Some(p) = self.lot.get(call) else { return };
        let Some(CallState::Parked { caller, .. }) = self.legs.calls.get(&call) else {
            return;
        };
        if !self.legs.by_id.contains_key(caller) {
            return;
        }
        let lamp = GoneLamp {
            call,
            caller_uri: p.parked_uri.clone(),
            caller_display: p.parked_display.clone(),
        };
        self.lamps
            .gone
            .entry(p.orbit.clone())
            .or_default()
            .push(lamp);
    }

    /// NOTIFYs every watcher of `orbit` (or of its group) with the full state.
    pub(crate) fn notify_watchers(&mut self, now: Duration, orbit: &str) {
        self.notify_watchers_of(now, orbit);
        self.lamps.gone.remove(orbit);
    }

    pub(crate) fn notify_watchers_of(&mut self, now: Duration, orbit: &str) {
        let group = self.lot.orbit(orbit).and_then(|o| o.group.clone());
        let ids: Vec<SubscriptionId> = self
            .lamps
            .subscriptions
            .iter()
            .filter(|(_, s)| match &s.watched {
                blf::Watched::Orbit(o) => o == orbit,
                blf::Watched::Group(g) => {
                    group.as_deref() == Some(g.as_str())
                        || self
                            .lot
                            .group(g)
                            .is_some_and(|g| g.destinations.iter().any(|d| d == orbit))
                }
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.notify(now, id, None);
        }
    }

    /// One NOTIFY: `terminated` with a reason ends the subscription.
    pub(crate) fn notify(&mut self, now: Duration, id: SubscriptionId, terminated: Option<&str>) {
        let orbits: Vec<String> = match self.lamps.subscriptions.get(&id).map(|s| &s.watched) {
            Some(blf::Watched::Orbit(o)) => vec![o.clone()],
            Some(blf::Watched::Group(g)) => self
                .lot
                .group(g)
                .map(|g| g.destinations.clone())
                .unwrap_or_default(),
            None => return,
        };
        let mut lamps = Vec::new();
        for orbit in &orbits {
            for g in self.lamps.gone.get(orbit).into_iter().flatten() {
                lamps.push(self.lamp_dialog(
                    g.call,
                    orbit,
                    &g.caller_uri,
                    &g.caller_display,
                    blf::LampState::Terminated,
                ));
            }
            let confirmed = self.lot.orbit(orbit).is_some_and(|o| o.blf_confirmed);
            for p in self.lot.parked_on(orbit) {
                let Some(CallState::Parked { caller, .. }) = self.legs.calls.get(&p.call) else {
                    continue;
                };
                if !self.legs.by_id.contains_key(caller) {
                    continue;
                }
                let state = if confirmed {
                    blf::LampState::Confirmed
                } else {
                    blf::LampState::Early
                };
                lamps.push(self.lamp_dialog(
                    p.call,
                    orbit,
                    &p.parked_uri,
                    &p.parked_display,
                    state,
                ));
            }
        }
        let host = Host::Ip(self.cfg.sip_addr.ip()).to_string();
        let Some(contact) = self
            .lamps
            .subscriptions
            .get(&id)
            .map(|s| self.contact(s.dialog.peer, &s.dialog.remote_target))
        else {
            return;
        };
        let Some(sub) = self.lamps.subscriptions.get_mut(&id) else {
            return;
        };
        let body = blf::document(&sub.entity, sub.version, &lamps, &host);
        sub.version += 1;
        let mut request = sub.dialog.request(Method::Notify);
        request.headers.push("Event", "dialog");
        let state = match terminated {
            Some(reason) => format!("terminated;reason={reason}"),
            None => format!(
                "active;expires={}",
                sub.expires_at.saturating_sub(now).as_secs().max(1)
            ),
        };
        request.headers.push("Subscription-State", state);
        request.headers.push("Contact", contact);
        request
            .headers
            .push("Content-Type", "application/dialog-info+xml");
        request.body = body.into_bytes();
        let peer = sub.dialog.peer;
        self.tx.send_request(now, request, peer);
    }

    /// One parked (or just gone) call as a lamp shows it: its own keyed
    /// dialog ids, and the caller as `lamp_identity` allows.
    fn lamp_dialog<'a>(
        &self,
        call: CallId,
        orbit: &'a str,
        caller_uri: &str,
        caller_display: &str,
        state: blf::LampState,
    ) -> blf::LampDialog<'a> {
        let ids = self.guard.lamp_ids(call.0);
        let (caller_uri, caller_display) = self.lamp_caller(caller_uri, caller_display);
        blf::LampDialog {
            id: format!("park-{}", call.0),
            orbit,
            call_id: ids.call_id,
            local_tag: ids.local_tag,
            remote_tag: ids.remote_tag,
            caller_uri,
            caller_display,
            state,
        }
    }

    /// What a lamp shows of a parked caller (`[security] lamp_identity`).
    pub(crate) fn lamp_caller(&self, uri: &str, display: &str) -> (String, String) {
        match self.guard.cfg.lamp_identity {
            LampIdentity::Full => (uri.to_string(), display.to_string()),
            LampIdentity::Number => {
                let user = Uri::parse(uri)
                    .ok()
                    .and_then(|u| u.user_decoded())
                    .unwrap_or_default();
                let host = Host::Ip(self.cfg.sip_addr.ip());
                (format!("sip:{user}@{host}"), String::new())
            }
            LampIdentity::None => ("sip:anonymous@anonymous.invalid".into(), String::new()),
        }
    }
}
