//! Legs: the dialogs of parked and retrieved calls, their RTP sources and latching.

use super::*;

impl Engine {
    pub(crate) fn leg_by_dialog(&self, request: &Request, our_tag: &str) -> Option<LegId> {
        let call_id = request.call_id().ok()?;
        self.legs
            .by_dialog
            .get(&(call_id.to_string(), our_tag.to_string()))
            .copied()
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new_leg(
        &mut self,
        now: Duration,
        call: CallId,
        request: &Request,
        peer: Peer,
        tx: TxId,
        media: Option<AgreedAudio>,
        session: u64,
    ) -> LegId {
        let local_tag = self.ids.rng.hex(10);
        let dialog = Dialog::from_invite(request, local_tag, peer, self.ids.rng.next_u64() as u32);
        self.add_leg(now, call, dialog, Some(tx), media, session)
    }

    /// Registers a leg: its dialog, and where its RTP comes from.
    pub(crate) fn add_leg(
        &mut self,
        now: Duration,
        call: CallId,
        dialog: Dialog,
        invite_tx: Option<TxId>,
        media: Option<AgreedAudio>,
        sdp_version: u64,
    ) -> LegId {
        let id = LegId(self.id());
        let rtp_source = media
            .as_ref()
            .map(|m| SocketAddr::new(m.remote_addr, m.remote_port));
        self.legs
            .by_dialog
            .insert((dialog.call_id.clone(), dialog.local_tag.clone()), id);
        if let Some(tx) = invite_tx {
            self.legs.by_invite_tx.insert(tx, id);
        }
        self.legs.by_id.insert(
            id,
            Box::new(Leg {
                call,
                dialog,
                invite_tx,
                awaiting_answer: media.is_none(),
                media,
                rtp_source: None,
                local_sdp_version: sdp_version,
                last_digit_ts: None,
                last_rtp: now,
                rtp_seen: false,
                music_clock: None,
                sdp_source: None,
                deferred_music: None,
            }),
        );
        if let Some(src) = rtp_source {
            self.set_sdp_source(id, src);
        }
        id
    }

    /// The leg's SDP named `src` (offer, answer, re-INVITE): it is where
    /// the leg's RTP goes and comes from from now on.
    pub(crate) fn set_sdp_source(&mut self, id: LegId, src: SocketAddr) {
        let Some(leg) = self.legs.by_id.get_mut(&id) else {
            return;
        };
        if let Some(old) = leg.sdp_source.replace(src)
            && old != src
            && self.legs.by_rtp_source.get(&old) == Some(&id)
        {
            self.legs.by_rtp_source.remove(&old);
        }
        self.set_rtp_source(id, src);
    }

    /// Points a leg's RTP at `src` (SDP, re-INVITE, latching), keeping the
    /// source map and the latching candidates in step.
    pub(crate) fn set_rtp_source(&mut self, id: LegId, src: SocketAddr) {
        let Some(leg) = self.legs.by_id.get_mut(&id) else {
            return;
        };
        let old = leg.rtp_source.replace(src);
        let seen = leg.rtp_seen;
        let call = leg.call;
        let sdp_source = leg.sdp_source;
        if let Some(old) = old {
            if self.legs.by_rtp_source.get(&old) == Some(&id) && Some(old) != sdp_source {
                self.legs.by_rtp_source.remove(&old);
            }
            self.forget_unlatched(id, old.ip());
        }
        self.legs.by_rtp_source.insert(src, id);
        self.legs.retired.remove(&src);
        if let Some(CallState::Parked {
            caller,
            stream: Some(stream),
        }) = self.legs.calls.get(&call)
            && *caller == id
        {
            self.media.desk.redirect(*stream, src);
        }
        if !seen {
            self.legs.unlatched.entry(src.ip()).or_default().insert(id);
        }
    }

    pub(crate) fn forget_unlatched(&mut self, id: LegId, ip: IpAddr) {
        if let Some(set) = self.legs.unlatched.get_mut(&ip) {
            set.remove(&id);
            if set.is_empty() {
                self.legs.unlatched.remove(&ip);
            }
        }
    }

    pub(crate) fn drop_leg(&mut self, id: LegId) {
        if let Some(leg) = self.legs.by_id.remove(&id) {
            self.legs
                .by_dialog
                .remove(&(leg.dialog.call_id.clone(), leg.dialog.local_tag.clone()));
            if let Some(tx) = leg.invite_tx {
                self.legs.by_invite_tx.remove(&tx);
            }
            if let Some(sdp) = leg.sdp_source
                && self.legs.by_rtp_source.get(&sdp) == Some(&id)
            {
                self.legs.by_rtp_source.remove(&sdp);
            }
            if let Some(src) = leg.rtp_source {
                if self.legs.by_rtp_source.get(&src) == Some(&id) {
                    self.legs.by_rtp_source.remove(&src);
                }
                self.forget_unlatched(id, src.ip());
                self.retire(src);
            }
        }
    }

    pub(crate) fn retire(&mut self, src: SocketAddr) {
        if self.legs.retired.len() >= MAX_RETIRED {
            let now = self.timers.latest;
            self.legs
                .retired
                .retain(|_, heard| now < *heard + RETIRED_FOR);
            if self.legs.retired.len() >= MAX_RETIRED
                && let Some(oldest) = self
                    .legs
                    .retired
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(a, _)| *a)
            {
                self.legs.retired.remove(&oldest);
            }
        }
        self.legs.retired.insert(src, self.timers.latest);
    }

    /// Symmetric RTP: a phone behind NAT (or one that sends from another
    /// port than it announced) is latched to where its packets really come
    /// from, but only when exactly one leg from that IP has sent nothing
    /// yet, so that calls from one gateway are never mixed up.
    pub(crate) fn latch(&mut self, now: Duration, src: SocketAddr, packet: &[u8]) -> Option<LegId> {
        let candidates = self.legs.unlatched.get(&src.ip())?;
        if let Some(heard) = self.legs.retired.get_mut(&src) {
            if now < *heard + RETIRED_FOR {
                // Still the old call's stream: keep it retired.
                *heard = now;
                return None;
            }
            self.legs.retired.remove(&src);
        }
        if candidates.len() != 1 {
            return None;
        }
        let id = *candidates.iter().next()?;
        // Only a packet of what the leg agreed to send (its codec or
        // RFC 4733 events) latches it.
        let pt = rtp_rs::RtpReader::new(packet).ok()?.payload_type();
        let media = self.legs.by_id.get(&id)?.media.as_ref()?;
        if pt != media.payload_type && Some(pt) != media.telephone_event {
            return None;
        }
        self.set_rtp_source(id, src);
        tracing::debug!(%src, "RTP latched to its real source");
        Some(id)
    }
}
