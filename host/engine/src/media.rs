//! Media: offer/answer, hold music, RTP and RTCP in.

use super::*;

impl Engine {
    /// Sends the hold music due by `now` through `send(dest, packet)`.
    /// Sends nothing once the music is paced in shards.
    pub fn pace_media(
        &mut self,
        now: Duration,
        mut send: impl FnMut(SocketAddr, &[u8]),
    ) -> callpark_media::pacer::PaceReport {
        self.media
            .desk
            .handle_timeout(now, |dest, packet, _late| send(dest, packet))
    }

    /// Hands hold music to `shards` pacers that the host runs (threads,
    /// each a `MusicShard`): from now on every start, stop and change of
    /// destination comes out of `poll_music_command`. Call it before the
    /// first call arrives; music already playing stays with the engine's
    /// own pacer otherwise and would be lost.
    pub fn pace_music_in_shards(&mut self, shards: usize) {
        debug_assert!(self.media.desk.is_empty());
        self.media.desk = MusicDesk::sharded(shards);
    }

    /// The next RTCP packet of ours for the RTCP port (the RTP port + 1):
    /// (destination, packet).
    pub fn poll_rtcp(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.media.rtcp_out.pop_front()
    }

    /// One packet that arrived on the RTCP port (the RTP port + 1) from
    /// `src`. RTCP from a known leg (sent from its RTP port + 1) proves the
    /// phone is there, as RTP does (a phone on hold may send only RTCP);
    /// between the legs of a bridged call it is relayed, so that each phone
    /// hears the other's reports on the streams it receives, whose SSRCs
    /// the relay keeps. Anything else is dropped.
    pub fn handle_rtcp(
        &mut self,
        now: Duration,
        packet: &[u8],
        src: SocketAddr,
        mut send: impl FnMut(SocketAddr, &[u8]),
    ) {
        if !callpark_media::rtcp::is_compound(packet) {
            return;
        }
        let Some(rtp_port) = src.port().checked_sub(1) else {
            return;
        };
        let Some(&id) = self
            .legs
            .by_rtp_source
            .get(&SocketAddr::new(src.ip(), rtp_port))
        else {
            return;
        };
        let Some(leg) = self.legs.by_id.get_mut(&id) else {
            return;
        };
        leg.last_rtp = now;
        if let Some(CallState::Bridged { caller, retriever }) = self.legs.calls.get(&leg.call) {
            let other = if *caller == id { *retriever } else { *caller };
            if let Some(dest) = self.legs.by_id.get(&other).and_then(|l| l.rtp_source)
                && let Some(port) = dest.port().checked_add(1)
            {
                send(SocketAddr::new(dest.ip(), port), packet);
            }
        }
    }

    /// A sender report for the music a parked caller hears, sent to its
    /// RTP port + 1, then the next one armed.
    pub(crate) fn sender_report(&mut self, now: Duration, call: CallId, leg: LegId) {
        let playing = matches!(
            self.legs.calls.get(&call),
            Some(CallState::Parked { caller, stream: Some(_) }) if *caller == leg
        );
        let Some(l) = self.legs.by_id.get(&leg).filter(|_| playing) else {
            return;
        };
        let (Some(clock), Some(dest)) = (l.music_clock, l.rtp_source) else {
            return;
        };
        let now_ms = now.as_millis() as u64;
        let elapsed = now_ms.saturating_sub(clock.start_ms);
        let packets = if now_ms >= clock.start_ms {
            (elapsed / 20 + 1) as u32
        } else {
            0
        };
        let info = callpark_media::rtcp::SenderInfo {
            ssrc: clock.ssrc,
            wallclock_ms: self.now_ms(now),
            rtp_timestamp: clock.first_ts.wrapping_add((elapsed * 8) as u32),
            packets,
            octets: packets.wrapping_mul(callpark_media::music::FRAME_SAMPLES as u32),
        };
        if let Some(port) = dest.port().checked_add(1) {
            self.media.rtcp_out.push_back((
                SocketAddr::new(dest.ip(), port),
                callpark_media::rtcp::sender_report(&info, &self.media.rtcp_cname),
            ));
        }
        self.arm(
            now + SENDER_REPORT_EVERY,
            call,
            EngineTimer::SenderReport(leg),
        );
    }

    /// The next hold-music change for the host's shards: (shard, command).
    pub fn poll_music_command(&mut self) -> Option<(usize, MusicCommand)> {
        self.media.desk.poll_command()
    }

    /// One RTP packet that arrived on the shared media address. Parked
    /// callers' packets are dropped here (cheaply); bridged legs are relayed
    /// through `send(dest, packet)`.
    pub fn handle_rtp(
        &mut self,
        now: Duration,
        packet: &mut [u8],
        src: SocketAddr,
        mut send: impl FnMut(SocketAddr, &[u8]),
    ) {
        self.timers.latest = self.timers.latest.max(now);
        let leg_id = match self.legs.by_rtp_source.get(&src) {
            Some(&id) => id,
            None => match self.latch(now, src, packet) {
                Some(id) => id,
                None => return,
            },
        };
        let mut take_back = false;
        if let Some(l) = self.legs.by_id.get_mut(&leg_id) {
            l.last_rtp = now;
            // The SDP's own address speaks while the leg is latched
            // elsewhere: it is the phone, and the leg goes back to it.
            take_back = l.sdp_source == Some(src) && l.rtp_source != Some(src);
            if !l.rtp_seen {
                l.rtp_seen = true;
                let ip = l.rtp_source.map(|a| a.ip());
                if let Some(ip) = ip {
                    self.forget_unlatched(leg_id, ip);
                }
            }
        }
        if take_back {
            tracing::debug!(%src, "RTP back to the address the SDP names");
            self.set_rtp_source(leg_id, src);
        }
        let Some(leg) = self.legs.by_id.get(&leg_id) else {
            return;
        };
        let (caller, retriever) = match self.legs.calls.get(&leg.call) {
            Some(CallState::Bridged { caller, retriever }) => (caller, retriever),
            Some(CallState::Parked { .. }) => {
                // Parked callers' audio is dropped; only a key press matters.
                let te = leg.media.as_ref().and_then(|m| m.telephone_event);
                if let (Some(te), Ok(reader)) = (te, rtp_rs::RtpReader::new(packet))
                    && reader.payload_type() == te
                    && let Some(&event) = reader.payload().first()
                {
                    let ts = reader.timestamp();
                    if leg.last_digit_ts != Some(ts) {
                        let call = leg.call;
                        if let Some(l) = self.legs.by_id.get_mut(&leg_id) {
                            l.last_digit_ts = Some(ts);
                        }
                        if let Some(key) = dtmf_key(event) {
                            self.key_pressed(now, call, key);
                        }
                    }
                }
                return;
            }
            None => return,
        };
        let other = if *caller == leg_id {
            *retriever
        } else {
            *caller
        };
        let Some(other) = self.legs.by_id.get(&other) else {
            return;
        };
        let (Some(from), Some(to), Some(dest)) = (&leg.media, &other.media, other.rtp_source)
        else {
            return;
        };
        if relay::rewrite(packet, from, to) {
            send(dest, packet);
        }
    }

    /// Reads the INVITE's offer (or prepares a late offer) for a new leg.
    /// Our side of an SDP exchange: the shared RTP address.
    pub(crate) fn local_media(&self, session_id: u64, version: u64) -> LocalMedia {
        LocalMedia {
            addr: self.cfg.media_addr.ip(),
            port: self.cfg.media_addr.port(),
            session_id,
            version,
        }
    }

    pub(crate) fn negotiate(
        &mut self,
        request: &Request,
    ) -> Result<(Option<AgreedAudio>, String, u64), Refusal> {
        let session = u64::from(self.id() as u32) << 8;
        let local = self.local_media(session, 1);
        if request.body.is_empty() {
            return Ok((None, sdp::offer(&local, Direction::SendRecv), session));
        }
        if request.content_type().as_deref() != Some("application/sdp") {
            return Err(Refusal::new(
                415,
                "only application/sdp bodies are understood",
            ));
        }
        let text = String::from_utf8_lossy(&request.body);
        let offer = sdp::parse(&text)?;
        let mut agreed = sdp::negotiate(&offer)?;
        // A parked call must keep sending (RFC 4733 digits): answer
        // sendrecv unless the phone put us on hold.
        if agreed.direction == Direction::RecvOnly {
            agreed.direction = Direction::SendRecv;
        }
        let answer = sdp::answer(&offer, &agreed, &local);
        Ok((Some(agreed), answer, session))
    }

    pub(crate) fn start_music(
        &mut self,
        now: Duration,
        leg: LegId,
        key: Option<&str>,
        intro: Vec<Music>,
    ) -> Option<MusicStream> {
        let l = self.legs.by_id.get(&leg)?;
        let media = l.media.as_ref()?;
        let codec = match media.law {
            Law::Pcmu => Codec::Pcmu,
            Law::Pcma => Codec::Pcma,
        };
        let bits = self.ids.rng.next_u64();
        let call = l.call;
        let spec = StreamSpec {
            codec,
            payload_type: media.payload_type,
            ssrc: bits as u32,
            first_seq: (bits >> 32) as u16,
            first_ts: (bits >> 16) as u32,
            music: self.media.library.for_orbit(key),
            intro,
            // The music shard names its streams itself.
            tag: 0,
        };
        let clock = MusicClock {
            ssrc: spec.ssrc,
            first_ts: spec.first_ts,
            // The pacer's first packet is due at the next millisecond.
            start_ms: now.as_millis() as u64 + 1,
        };
        let dest = l.rtp_source;
        if let Some(l) = self.legs.by_id.get_mut(&leg) {
            l.music_clock = Some(clock);
        }
        self.arm(
            now + SENDER_REPORT_EVERY,
            call,
            EngineTimer::SenderReport(leg),
        );
        Some(self.media.desk.play(now, spec, dest))
    }
}
