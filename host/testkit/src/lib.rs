//! The engine's test kit: scripted phones, the virtual-time world that
//! drives an engine with them, and a default `EngineConfig`. Dev-only
//! (`publish = false`): the engine's flow tests and the custom recall
//! test share it.

pub use callpark_builtin::BuiltinPolicy;
pub use callpark_core::lot::{GroupConfig, OrbitConfig, ParkLot};
pub use callpark_engine::{
    Access, Engine, EngineConfig, EngineEvent, MusicLibrary, Reconfiguration,
};
pub use callpark_media::Music;
pub use callpark_sip::codec::parse;
pub use callpark_sip::message::{HeaderView, Message, Request, Response};
pub use callpark_sip::transaction::{Peer, Transport};
pub use std::net::SocketAddr;
pub use std::sync::Arc;
pub use std::time::Duration;

pub const SERVER: &str = "127.0.0.1:5060";

pub const MEDIA: &str = "127.0.0.1:20000";

pub fn orbit(n: &str, capacity: u32) -> OrbitConfig {
    OrbitConfig {
        number: n.into(),
        name: None,
        enabled: true,
        capacity,
        music: None,
        group: None,
        recall_after_ms: 0,
        escape_key: None,
        blf_confirmed: false,
        recall_params: Vec::new(),
    }
}

/// The engine configuration every test starts from.
pub fn config() -> EngineConfig {
    EngineConfig {
        sip_addr: SERVER.parse().unwrap(),
        media_addr: MEDIA.parse().unwrap(),
        outbound_proxy: None,
        max_parked_calls: 20_000,
        access: Access::All,
        epoch_ms_at_zero: 0,
        entropy: 1,
        recall_params: vec![],
        rtp_timeout: Duration::ZERO,
        max_lifetime: Duration::ZERO,
        reservation_timeout: Duration::ZERO,
        security: callpark_engine::Security::default(),
        tls_port: None,
    }
}

pub fn engine(groups: Vec<GroupConfig>, access: Access) -> Engine {
    engine_with(groups, access, callpark_engine::Security::default())
}

/// `engine` with its own security settings.
pub fn engine_with(
    groups: Vec<GroupConfig>,
    access: Access,
    security: callpark_engine::Security,
) -> Engine {
    let mut orbits: Vec<OrbitConfig> = (701..=705).map(|n| orbit(&n.to_string(), 1)).collect();
    // Orbit 705 has music of its own: a constant loud signal.
    orbits[4].music = Some("sales.wav".into());
    orbits.push(orbit("799", 2));
    let lot = ParkLot::new(orbits, groups);
    let music = music();
    Engine::new(
        EngineConfig {
            access,
            epoch_ms_at_zero: 1_767_225_600_000,
            entropy: 42,
            security,
            ..config()
        },
        lot,
        music,
        Arc::new(BuiltinPolicy),
    )
}

/// The test library: a default tone, `sales.wav` (a constant loud
/// signal) for orbit 705, and the prompts.
pub fn music() -> MusicLibrary {
    MusicLibrary {
        default: Music::from_linear(
            "tone",
            &(0..8000)
                .map(|i| (i as f32 * 0.05).sin() * 0.3)
                .collect::<Vec<_>>(),
        ),
        by_key: [(
            "sales.wav".to_string(),
            Music::from_linear("sales", &[0.9; 320]),
        )]
        .into_iter()
        .collect(),
        music_on_hold: true,
        // "parked on" is one frame of silence, each digit one loud frame.
        prompts: callpark_media::music::PROMPT_NAMES
            .iter()
            .map(|k| {
                let m = if *k == callpark_media::music::PARKED_ON {
                    Music::silence()
                } else {
                    Music::from_linear(k, &[0.9; 160])
                };
                (k.to_string(), m)
            })
            .collect(),
    }
}

/// A scripted phone at 127.0.0.1:<port>, RTP at <port>+1000.
pub struct Phone {
    pub port: u16,
    pub user: String,
    pub seq: u32,
}

pub struct Sent {
    pub peer: Peer,
    pub message: Message,
}

impl Phone {
    pub fn new(user: &str, port: u16) -> Phone {
        Phone {
            port,
            user: user.into(),
            seq: 1,
        }
    }

    pub fn peer(&self) -> Peer {
        Peer {
            transport: Transport::Udp(0),
            addr: SocketAddr::from(([127, 0, 0, 1], self.port)),
        }
    }

    pub fn rtp(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port + 1000))
    }

    pub fn sdp(&self, codecs: &str) -> String {
        format!(
            "v=0\r\no={u} 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {p} RTP/AVP {codecs} 101\r\na=rtpmap:101 telephone-event/8000\r\n",
            u = self.user,
            p = self.port + 1000
        )
    }

    pub fn invite(&mut self, call_id: &str, dialed: &str, extra: &str, codecs: &str) -> Vec<u8> {
        let body = self.sdp(codecs);
        self.seq += 1;
        format!(
            "INVITE sip:{dialed}@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK{call_id}{s};rport\r\nFrom: \"{u}\" <sip:{u}@127.0.0.1:{p}>;tag={u}t\r\nTo: <sip:{dialed}@{SERVER}>\r\nCall-ID: {call_id}\r\nCSeq: {s} INVITE\r\nContact: <sip:{u}@127.0.0.1:{p}>\r\nMax-Forwards: 70\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{body}",
            p = self.port,
            u = self.user,
            s = self.seq,
            len = body.len()
        )
        .into_bytes()
    }

    pub fn in_dialog(&mut self, method: &str, call_id: &str, to_tag: &str) -> Vec<u8> {
        self.seq += 1;
        format!(
            "{method} sip:callpark@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK{method}{call_id}{s}\r\nFrom: <sip:{u}@127.0.0.1:{p}>;tag={u}t\r\nTo: <sip:x@{SERVER}>;tag={to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {s} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            p = self.port,
            u = self.user,
            s = self.seq
        )
        .into_bytes()
    }

    pub fn ack(&self, call_id: &str, to_tag: &str) -> Vec<u8> {
        format!(
            "ACK sip:callpark@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKack{call_id}\r\nFrom: <sip:{u}@127.0.0.1:{p}>;tag={u}t\r\nTo: <sip:x@{SERVER}>;tag={to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {s} ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            p = self.port,
            u = self.user,
            s = self.seq
        )
        .into_bytes()
    }
}

pub struct World {
    pub engine: Engine,
    pub now: Duration,
}

impl World {
    pub fn new(engine: Engine) -> World {
        World {
            engine,
            now: Duration::ZERO,
        }
    }

    pub fn send(&mut self, phone: &Phone, bytes: Vec<u8>) -> Vec<Sent> {
        self.engine.handle_sip(self.now, &bytes, phone.peer());
        self.out()
    }

    pub fn out(&mut self) -> Vec<Sent> {
        std::iter::from_fn(|| self.engine.poll_transmit())
            .map(|t| Sent {
                peer: t.peer,
                message: parse(&t.bytes).expect("we send what we can read"),
            })
            .collect()
    }

    /// Sends an INVITE and ACKs the final response; returns it.
    pub fn call(
        &mut self,
        phone: &mut Phone,
        call_id: &str,
        dialed: &str,
        extra: &str,
    ) -> Response {
        let invite = phone.invite(call_id, dialed, extra, "0 8");
        let out = self.send(phone, invite);
        let fin = final_response(&out);
        if fin.status == 200 {
            let tag = fin.to().unwrap().tag().unwrap().to_string();
            let ack = phone.ack(call_id, &tag);
            assert!(self.send(phone, ack).is_empty());
        }
        fin
    }

    pub fn advance(&mut self, by: Duration) -> Vec<(SocketAddr, Vec<u8>)> {
        let until = self.now + by;
        let mut rtp = Vec::new();
        while let Some(t) = self.engine.poll_timeout().filter(|t| *t <= until) {
            self.now = t.max(self.now);
            self.engine.handle_timeout(self.now);
            self.engine
                .pace_media(self.now, |dest, p| rtp.push((dest, p.to_vec())));
            // Retransmissions to phones that never answer (the parker of a
            // MESSAGE) are not what the next step looks at.
            while self.engine.poll_transmit().is_some() {}
        }
        self.now = until;
        rtp
    }

    pub fn events(&mut self) -> Vec<EngineEvent> {
        std::iter::from_fn(|| self.engine.poll_event()).collect()
    }
}

pub fn final_response(out: &[Sent]) -> Response {
    out.iter()
        .find_map(|s| match &s.message {
            Message::Response(r) if r.status >= 200 => Some(r.clone()),
            _ => None,
        })
        .expect("a final response")
}

pub fn requests(out: &[Sent]) -> Vec<(Peer, Request)> {
    out.iter()
        .filter_map(|s| match &s.message {
            Message::Request(r) => Some((s.peer, r.clone())),
            _ => None,
        })
        .collect()
}

pub fn tag(r: &Response) -> String {
    r.to().unwrap().tag().unwrap().to_string()
}

pub fn voice(ssrc: u32, seq: u16) -> Vec<u8> {
    rtp_rs::RtpPacketBuilder::new()
        .payload_type(0)
        .ssrc(ssrc)
        .sequence(seq.into())
        .timestamp(u32::from(seq) * 160)
        .payload(&[0x55; 160])
        .build()
        .unwrap()
}

// ---- Recall --------------------------------------------------------------

pub fn recall_engine(params: &[(&str, &str)], recall_after_ms: u64) -> Engine {
    recall_engine_with(params, recall_after_ms, Duration::ZERO, Duration::ZERO)
}

pub fn recall_engine_with(
    params: &[(&str, &str)],
    recall_after_ms: u64,
    rtp_timeout: Duration,
    max_lifetime: Duration,
) -> Engine {
    let mut orbits: Vec<OrbitConfig> = (701..=703).map(|n| orbit(&n.to_string(), 1)).collect();
    for o in &mut orbits {
        o.recall_after_ms = recall_after_ms;
    }
    let music = MusicLibrary {
        default: Music::from_linear("tone", &[0.2; 1600]),
        by_key: Default::default(),
        music_on_hold: true,
        prompts: Default::default(),
    };
    Engine::new(
        EngineConfig {
            max_parked_calls: 100,
            epoch_ms_at_zero: 1_767_225_600_000,
            entropy: 5,
            recall_params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            rtp_timeout,
            max_lifetime,
            ..config()
        },
        ParkLot::new(orbits, vec![]),
        music,
        Arc::new(BuiltinPolicy),
    )
}

impl World {
    /// Advances time, keeping only the SIP that went out.
    pub fn advance_sip(&mut self, by: Duration) -> Vec<Sent> {
        let until = self.now + by;
        let mut sip = Vec::new();
        while let Some(t) = self.engine.poll_timeout().filter(|t| *t <= until) {
            self.now = t.max(self.now);
            self.engine.handle_timeout(self.now);
            self.engine.pace_media(self.now, |_, _| {});
            sip.extend(self.out());
        }
        self.now = until;
        sip
    }

    /// A phone at `peer` answers one of our requests.
    pub fn reply(
        &mut self,
        peer: Peer,
        request: &Request,
        status: u16,
        sdp_port: Option<u16>,
    ) -> Vec<Sent> {
        let mut r = request.response(status, Some("phone1"));
        r.headers
            .push("Contact", format!("<sip:phone@{}>", peer.addr));
        if let Some(port) = sdp_port {
            r.headers.push("Content-Type", "application/sdp");
            r.body = format!("v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n").into_bytes();
        }
        let bytes = callpark_sip::codec::serialize_response(&r);
        self.engine.handle_sip(self.now, &bytes, peer);
        self.out()
    }
}

/// New INVITEs (one per Call-ID: retransmissions left out) to a port.
pub fn invites_to(out: &[Sent], port: u16) -> Vec<(Peer, Request)> {
    let mut seen = std::collections::HashSet::new();
    requests(out)
        .into_iter()
        .filter(|(p, r)| r.method == callpark_sip::message::Method::Invite && p.addr.port() == port)
        .filter(|(_, r)| seen.insert(r.call_id().unwrap().to_string()))
        .collect()
}

pub fn methods(out: &[Sent]) -> Vec<String> {
    requests(out)
        .iter()
        .map(|(p, r)| format!("{} {}", r.method, p.addr.port()))
        .collect()
}

pub fn digit_packet(event: u8, end: bool, seq: u16, ts: u32) -> Vec<u8> {
    let flags = if end { 0x80 } else { 0x00 } | 10;
    rtp_rs::RtpPacketBuilder::new()
        .payload_type(101)
        .ssrc(77)
        .sequence(seq.into())
        .timestamp(ts)
        .payload(&[event, flags, 0x01, 0x40])
        .build()
        .unwrap()
}

/// An engine whose orbits 701-702 take the escape key `0`, with the given
/// recall params; orbit 702 rings with its own pattern.
pub fn escape_engine(params: &[(&str, &str)]) -> Engine {
    let orbits: Vec<OrbitConfig> = (701..=702)
        .map(|n| {
            let mut o = orbit(&n.to_string(), 1);
            o.escape_key = Some('0');
            o.recall_after_ms = 60_000;
            o
        })
        .map(|mut o| {
            if o.number == "702" {
                o.recall_params = vec![("ring_pattern".into(), "short-short-long".into())];
            }
            o
        })
        .collect();
    let music = MusicLibrary {
        default: Music::silence(),
        by_key: Default::default(),
        music_on_hold: true,
        prompts: Default::default(),
    };
    Engine::new(
        EngineConfig {
            max_parked_calls: 100,
            entropy: 3,
            recall_params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..config()
        },
        ParkLot::new(orbits, vec![]),
        music,
        Arc::new(BuiltinPolicy),
    )
}

// ---- Busy lamps ------------------------------------------------------------

pub fn subscribe(
    w: &mut World,
    phone: &Phone,
    target: &str,
    call_id: &str,
    expires: u32,
    to_tag: Option<&str>,
    event: &str,
) -> Vec<Sent> {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let text = format!(
        "SUBSCRIBE sip:{target}@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKsub{call_id}{expires}{n}\r\nFrom: <sip:{u}@127.0.0.1:{p}>;tag={u}t\r\nTo: <sip:{target}@{SERVER}>{to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {n} SUBSCRIBE\r\nContact: <sip:{u}@127.0.0.1:{p}>\r\nEvent: {event}\r\nAccept: application/dialog-info+xml\r\nExpires: {expires}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        p = phone.port,
        u = phone.user,
        n = if to_tag.is_empty() { 1 } else { 2 + expires },
    );
    w.send(phone, text.into_bytes())
}

pub fn notifies(out: &[Sent]) -> Vec<(String, String)> {
    requests(out)
        .into_iter()
        .filter(|(_, r)| r.method == callpark_sip::message::Method::Notify)
        .map(|(_, r)| {
            (
                r.header("Subscription-State").unwrap_or("").to_string(),
                String::from_utf8_lossy(&r.body).into_owned(),
            )
        })
        .collect()
}

/// Rings out a whole plan with phones that ring (180) but nobody
/// answering; returns (time in s, what) for every new INVITE and BYE.
pub fn ring_out(w: &mut World, seconds: u64) -> Vec<(u64, String)> {
    let start = w.now;
    let mut seen = std::collections::HashSet::new();
    let mut log = Vec::new();
    for _ in 0..seconds {
        let out = w.advance_sip(Duration::from_secs(1));
        for (peer, r) in requests(&out) {
            let fresh = seen.insert((r.method.to_string(), r.call_id().unwrap().to_string()));
            if fresh
                && matches!(
                    r.method,
                    callpark_sip::message::Method::Invite | callpark_sip::message::Method::Bye
                )
            {
                log.push((
                    (w.now - start).as_secs(),
                    format!("{} {}", r.method, peer.addr.port()),
                ));
                if r.method == callpark_sip::message::Method::Invite {
                    w.reply(peer, &r, 180, None);
                }
            }
        }
    }
    log
}

// ---- Hold music in pacer shards --------------------------------------------

/// Runs `shards` for `ms` milliseconds of the world's time after applying
/// every pending music command; where the packets went.
pub fn pace_shards(
    w: &mut World,
    shards: &mut [callpark_media::MusicShard],
    ms: u64,
) -> Vec<SocketAddr> {
    while let Some((shard, command)) = w.engine.poll_music_command() {
        shards[shard].apply(command);
    }
    let mut dests = Vec::new();
    for t in 0..ms {
        let now = w.now + Duration::from_millis(t);
        for shard in shards.iter_mut() {
            shard.handle_timeout(now, |dest, _, _| dests.push(dest));
        }
    }
    w.now += Duration::from_millis(ms);
    dests
}
