//! Park and retrieve through the whole SIP stack, in virtual time, with a
//! scripted user agent: every flow of the park server, bytes in and out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use callpark_builtin::BuiltinPolicy;
use callpark_core::lot::{GroupConfig, OrbitConfig, ParkLot};
use callpark_engine::{Access, Engine, EngineConfig, EngineEvent, MusicLibrary};
use callpark_media::Music;
use callpark_sip::codec::parse;
use callpark_sip::message::{HeaderView, Message, Request, Response};
use callpark_sip::transaction::{Peer, Transport};

const SERVER: &str = "127.0.0.1:5060";
const MEDIA: &str = "127.0.0.1:20000";

fn orbit(n: &str, capacity: u32) -> OrbitConfig {
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
fn config() -> EngineConfig {
    EngineConfig {
        sip_addr: SERVER.parse().unwrap(),
        media_addr: MEDIA.parse().unwrap(),
        outbound_proxy: None,
        max_parked_calls: 20_000,
        bare_orbit_parks_when_empty: true,
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

fn engine(groups: Vec<GroupConfig>, access: Access) -> Engine {
    engine_with(groups, access, callpark_engine::Security::default())
}

/// `engine` with its own security settings.
fn engine_with(
    groups: Vec<GroupConfig>,
    access: Access,
    security: callpark_engine::Security,
) -> Engine {
    let mut orbits: Vec<OrbitConfig> = (701..=705).map(|n| orbit(&n.to_string(), 1)).collect();
    // Orbit 705 has music of its own: a constant loud signal.
    orbits[4].music = Some("sales.wav".into());
    orbits.push(orbit("799", 2));
    let lot = ParkLot::new(orbits, groups);
    let music = MusicLibrary {
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
        prompts: [
            "parked-on",
            "0",
            "1",
            "2",
            "3",
            "4",
            "5",
            "6",
            "7",
            "8",
            "9",
        ]
        .iter()
        .map(|k| {
            let m = if *k == "parked-on" {
                Music::silence()
            } else {
                Music::from_linear(k, &[0.9; 160])
            };
            (k.to_string(), m)
        })
        .collect(),
    };
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

/// A scripted phone at 127.0.0.1:<port>, RTP at <port>+1000.
struct Phone {
    port: u16,
    user: String,
    seq: u32,
}

struct Sent {
    peer: Peer,
    message: Message,
}

impl Phone {
    fn new(user: &str, port: u16) -> Phone {
        Phone {
            port,
            user: user.into(),
            seq: 1,
        }
    }

    fn peer(&self) -> Peer {
        Peer {
            transport: Transport::Udp,
            addr: SocketAddr::from(([127, 0, 0, 1], self.port)),
        }
    }

    fn rtp(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port + 1000))
    }

    fn sdp(&self, codecs: &str) -> String {
        format!(
            "v=0\r\no={u} 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {p} RTP/AVP {codecs} 101\r\na=rtpmap:101 telephone-event/8000\r\n",
            u = self.user,
            p = self.port + 1000
        )
    }

    fn invite(&mut self, call_id: &str, dialed: &str, extra: &str, codecs: &str) -> Vec<u8> {
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

    fn in_dialog(&mut self, method: &str, call_id: &str, to_tag: &str) -> Vec<u8> {
        self.seq += 1;
        format!(
            "{method} sip:callpark@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK{method}{call_id}{s}\r\nFrom: <sip:{u}@127.0.0.1:{p}>;tag={u}t\r\nTo: <sip:x@{SERVER}>;tag={to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {s} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            p = self.port,
            u = self.user,
            s = self.seq
        )
        .into_bytes()
    }

    fn ack(&self, call_id: &str, to_tag: &str) -> Vec<u8> {
        format!(
            "ACK sip:callpark@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKack{call_id}\r\nFrom: <sip:{u}@127.0.0.1:{p}>;tag={u}t\r\nTo: <sip:x@{SERVER}>;tag={to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {s} ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            p = self.port,
            u = self.user,
            s = self.seq
        )
        .into_bytes()
    }
}

struct World {
    engine: Engine,
    now: Duration,
}

impl World {
    fn new(engine: Engine) -> World {
        World {
            engine,
            now: Duration::ZERO,
        }
    }

    fn send(&mut self, phone: &Phone, bytes: Vec<u8>) -> Vec<Sent> {
        self.engine.handle_sip(self.now, &bytes, phone.peer());
        self.out()
    }

    fn out(&mut self) -> Vec<Sent> {
        std::iter::from_fn(|| self.engine.poll_transmit())
            .map(|t| Sent {
                peer: t.peer,
                message: parse(&t.bytes).expect("we send what we can read"),
            })
            .collect()
    }

    /// Sends an INVITE and ACKs the final response; returns it.
    fn call(&mut self, phone: &mut Phone, call_id: &str, dialed: &str, extra: &str) -> Response {
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

    fn advance(&mut self, by: Duration) -> Vec<(SocketAddr, Vec<u8>)> {
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

    fn events(&mut self) -> Vec<EngineEvent> {
        std::iter::from_fn(|| self.engine.poll_event()).collect()
    }
}

fn final_response(out: &[Sent]) -> Response {
    out.iter()
        .find_map(|s| match &s.message {
            Message::Response(r) if r.status >= 200 => Some(r.clone()),
            _ => None,
        })
        .expect("a final response")
}

fn requests(out: &[Sent]) -> Vec<(Peer, Request)> {
    out.iter()
        .filter_map(|s| match &s.message {
            Message::Request(r) => Some((s.peer, r.clone())),
            _ => None,
        })
        .collect()
}

fn tag(r: &Response) -> String {
    r.to().unwrap().tag().unwrap().to_string()
}

#[test]
fn blind_park_with_referred_by_plays_music_and_tells_the_parker() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut caller = Phone::new("bob", 6001);
    let invite = caller.invite(
        "c1",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
        "0 8",
    );
    let out = w.send(&caller, invite);
    let statuses: Vec<u16> = out
        .iter()
        .filter_map(|s| match &s.message {
            Message::Response(r) => Some(r.status),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, [100, 200]);
    let ok = final_response(&out);
    let answer = String::from_utf8(ok.body.clone()).unwrap();
    assert!(answer.contains("m=audio 20000 RTP/AVP 0 101"), "{answer}");
    assert!(answer.contains("a=sendrecv"));
    assert!(ok.header("Contact").unwrap().contains("127.0.0.1:5060"));
    // The parker is told by SIP MESSAGE.
    let msgs = requests(&out);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].0.addr, "127.0.0.1:6009".parse().unwrap());
    assert_eq!(msgs[0].1.body, b"Parked on 701");
    assert_eq!(
        w.events(),
        [EngineEvent::Parked {
            call: callpark_core::lot::CallId(2),
            orbit: "701".into(),
            parker: "sip:alice@127.0.0.1:6009".into(),
            caller: "sip:bob@127.0.0.1:6001".into(),
            call_id: "c1".into(),
        }]
    );
    // 50 packets per second of music, PCMU, to the caller's RTP address.
    let rtp = w.advance(Duration::from_secs(1));
    assert_eq!(rtp.len(), 50);
    assert!(
        rtp.iter().all(|(dest, p)| *dest == caller.rtp()
            && rtp_rs::RtpReader::new(p).unwrap().payload_type() == 0)
    );
}

#[test]
fn blind_park_without_referred_by_and_the_feature_codes() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut a = Phone::new("a", 6001);
    assert_eq!(w.call(&mut a, "c1", "*68702", "").status, 200);
    assert_eq!(w.engine.lot().parked_on("702").count(), 1);
    // A bare orbit with nothing parked parks (phones without Referred-By).
    let mut b = Phone::new("b", 6003);
    assert_eq!(w.call(&mut b, "c2", "703", "").status, 200);
    assert_eq!(w.engine.lot().parked_on("703").count(), 1);
    // A directed park on a busy orbit is refused with 486 and a Warning.
    let mut c = Phone::new("c", 6005);
    let busy = w.call(&mut c, "c3", "*68702", "");
    assert_eq!(busy.status, 486);
    assert!(
        busy.header("Warning")
            .unwrap()
            .contains("orbit 702 is busy")
    );
    // Unknown orbit, not a feature.
    assert_eq!(w.call(&mut c, "c4", "*68999", "").status, 404);
    assert_eq!(w.call(&mut c, "c5", "alice", "").status, 404);
}

#[test]
fn retrieve_bridges_with_the_relay_and_stops_the_music() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut caller = Phone::new("bob", 6001);
    let parked = w.call(
        &mut caller,
        "c1",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    let parked_tag = tag(&parked);
    w.out();
    assert!(!w.advance(Duration::from_millis(100)).is_empty());
    let mut carol = Phone::new("carol", 6011);
    let invite = carol.invite("r1", "*88701", "", "8");
    let out = w.send(&carol, invite);
    let ok = final_response(&out);
    assert_eq!(ok.status, 200);
    assert!(String::from_utf8_lossy(&ok.body).contains("RTP/AVP 8 101"));
    let events = w.events();
    assert!(
        matches!(events.last(), Some(EngineEvent::Retrieved { orbit, .. }) if orbit == "701"),
        "{events:?}"
    );
    // No more music.
    assert!(w.advance(Duration::from_secs(1)).is_empty());
    // Bob's µ-law reaches Carol as A-law, and back.
    let mut packet = rtp_rs::RtpPacketBuilder::new()
        .payload_type(0)
        .ssrc(9)
        .sequence(1.into())
        .timestamp(0)
        .payload(&[0xFF; 160])
        .build()
        .unwrap();
    let mut relayed = Vec::new();
    w.engine
        .handle_rtp(w.now, &mut packet, caller.rtp(), |dest, p| {
            relayed.push((dest, p.to_vec()))
        });
    assert_eq!(relayed.len(), 1);
    assert_eq!(relayed[0].0, carol.rtp());
    let r = rtp_rs::RtpReader::new(&relayed[0].1).unwrap();
    assert_eq!((r.payload_type(), r.payload()[0]), (8, 0xD5));
    // A BYE from Carol hangs up Bob.
    let r_tag = tag(&ok);
    let bye = carol.in_dialog("BYE", "r1", &r_tag);
    let out = w.send(&carol, bye);
    assert_eq!(final_response(&out).status, 200);
    let byes = requests(&out);
    assert_eq!(byes.len(), 1);
    assert_eq!(byes[0].0, caller.peer());
    assert_eq!(byes[0].1.to().unwrap().tag(), Some("bobt"));
    assert_eq!(byes[0].1.from().unwrap().tag(), Some(parked_tag.as_str()));
    assert_eq!(w.engine.calls(), 0);
}

#[test]
fn retrieve_is_fifo_and_404_when_empty() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut first = Phone::new("first", 6001);
    let mut second = Phone::new("second", 6003);
    w.call(&mut first, "p1", "*68799", "");
    w.advance(Duration::from_millis(10));
    w.call(&mut second, "p2", "*68799", "");
    w.events();
    let mut r = Phone::new("r", 6021);
    assert_eq!(w.call(&mut r, "g1", "*4799", "").status, 200);
    assert!(matches!(&w.events()[..], [EngineEvent::Retrieved { .. }]));
    assert_eq!(
        w.engine.lot().parked_on("799").next().unwrap().parked_uri,
        "sip:second@127.0.0.1:6003"
    );
    assert_eq!(
        w.call(&mut r, "g2", "799", "").status,
        200,
        "a bare orbit retrieves"
    );
    let empty = w.call(&mut r, "g3", "*88799", "");
    assert_eq!(empty.status, 404);
    assert!(
        empty
            .header("Warning")
            .unwrap()
            .contains("Nothing parked on 799")
    );
    assert_eq!(w.call(&mut r, "g4", "*88", "").status, 404);
}

#[test]
fn group_park_hunts_the_parkers_group() {
    let groups = vec![GroupConfig {
        name: "front-desk".into(),
        members: vec!["sip:alice@127.0.0.1".into()],
        destinations: vec!["704".into(), "705".into()],
        recall_params: vec![],
    }];
    let mut w = World::new(engine(groups, Access::All));
    let by_alice = "Referred-By: <sip:alice@127.0.0.1:6009>\r\n";
    for (i, expect) in [(1, 200), (2, 200), (3, 486)] {
        let mut p = Phone::new(&format!("caller{i}"), 6000 + i * 2);
        let r = w.call(&mut p, &format!("g{i}"), "#58", by_alice);
        assert_eq!(r.status, expect);
        if expect == 486 {
            assert!(
                r.header("Warning")
                    .unwrap()
                    .contains("group front-desk is full"),
                "{:?}",
                r.header("Warning")
            );
        }
    }
    assert_eq!(w.engine.lot().parked_on("704").count(), 1);
    assert_eq!(w.engine.lot().parked_on("705").count(), 1);
    let mut stranger = Phone::new("stranger", 6031);
    let r = w.call(
        &mut stranger,
        "g9",
        "#58",
        "Referred-By: <sip:mallory@127.0.0.1>\r\n",
    );
    assert_eq!(r.status, 403);
}

#[test]
fn hang_ups_free_the_orbit() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut a = Phone::new("a", 6001);
    let ok = w.call(&mut a, "h1", "*68701", "");
    w.events();
    let bye = a.in_dialog("BYE", "h1", &tag(&ok));
    assert_eq!(final_response(&w.send(&a, bye)).status, 200);
    assert!(matches!(&w.events()[..], [EngineEvent::Abandoned { orbit, .. }] if orbit == "701"));
    assert_eq!(w.engine.parked_calls(), 0);
    assert!(
        w.advance(Duration::from_secs(1)).is_empty(),
        "the music stopped"
    );
    let mut b = Phone::new("b", 6003);
    assert_eq!(w.call(&mut b, "h2", "*68701", "").status, 200);
}

#[test]
fn attended_park_the_callers_replaces_takes_the_parkers_place() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut alice = Phone::new("alice", 6009);
    let ok = w.call(&mut alice, "att1", "*68705", "");
    let alice_tag = tag(&ok);
    let mut bob = Phone::new("bob", 6001);
    let replaces = format!("Replaces: att1;to-tag={alice_tag};from-tag=alicet\r\n");
    let invite = bob.invite("att2", "705", &replaces, "0");
    let out = w.send(&bob, invite);
    assert_eq!(final_response(&out).status, 200);
    let byes: Vec<_> = requests(&out)
        .into_iter()
        .filter(|(_, r)| r.method.to_string() == "BYE")
        .collect();
    assert_eq!(byes.len(), 1, "the parker's leg is hung up");
    assert_eq!(byes[0].0, alice.peer());
    let parked = w.engine.lot().parked_on("705").next().unwrap().clone();
    assert_eq!(parked.parked_uri, "sip:bob@127.0.0.1:6001");
    assert_eq!(parked.parker, "sip:alice@127.0.0.1:6009");
    let rtp = w.advance(Duration::from_millis(200));
    assert!(!rtp.is_empty() && rtp.iter().all(|(d, _)| *d == bob.rtp()));
}

fn voice(ssrc: u32, seq: u16) -> Vec<u8> {
    rtp_rs::RtpPacketBuilder::new()
        .payload_type(0)
        .ssrc(ssrc)
        .sequence(seq.into())
        .timestamp(u32::from(seq) * 160)
        .payload(&[0x55; 160])
        .build()
        .unwrap()
}

/// The parker's phone keeps streaming for a moment after our BYE, from the
/// same IP as the caller that took its place: its packets must not pull the
/// caller's music (symmetric-RTP latching) to the hung-up phone. Seen with
/// linphone through Kamailio, where the caller then got no RTP at all.
#[test]
fn attended_park_music_goes_to_the_caller_while_the_parker_still_streams() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut alice = Phone::new("alice", 6009);
    let ok = w.call(&mut alice, "att1", "*68704", "");
    let alice_tag = tag(&ok);
    // Alice talks to the park server (her RTP latches to her SDP port).
    w.engine
        .handle_rtp(w.now, &mut voice(7, 1), alice.rtp(), |_, _| {});
    w.advance(Duration::from_millis(100));
    let mut bob = Phone::new("bob", 6001);
    let replaces = format!(
        "Replaces: att1;to-tag={alice_tag};from-tag=alicet\r\nReferred-By: <sip:alice@127.0.0.1:6009>\r\n"
    );
    let invite = bob.invite("att2", "*68704", &replaces, "0");
    let out = w.send(&bob, invite);
    assert_eq!(final_response(&out).status, 200);
    // The takeover completes the park: the parker is told, as always.
    let told = requests(&out)
        .into_iter()
        .filter(|(_, r)| r.method.to_string() == "MESSAGE")
        .count();
    assert_eq!(told, 1, "a MESSAGE to the parker");
    assert!(w.events().iter().any(|e| matches!(
        e,
        EngineEvent::AttendedParkCompleted { orbit, parker, .. }
            if orbit == "704" && parker == "sip:alice@127.0.0.1:6009"
    )));
    // Alice's phone has not processed the BYE yet and keeps sending.
    for seq in 2..10 {
        w.engine
            .handle_rtp(w.now, &mut voice(7, seq), alice.rtp(), |_, _| {});
        let rtp = w.advance(Duration::from_millis(20));
        assert!(
            rtp.iter().all(|(d, _)| *d == bob.rtp()),
            "music must go to the caller, not {:?}",
            rtp.iter().map(|(d, _)| d).collect::<Vec<_>>()
        );
    }
    let rtp = w.advance(Duration::from_millis(200));
    assert!(!rtp.is_empty() && rtp.iter().all(|(d, _)| *d == bob.rtp()));
    // Bob is retrieved: the retriever hears Bob, and Bob the retriever.
    let mut carol = Phone::new("carol", 6003);
    assert_eq!(w.call(&mut carol, "att3", "*88704", "").status, 200);
    let mut relayed = Vec::new();
    w.engine
        .handle_rtp(w.now, &mut voice(9, 1), bob.rtp(), |d, _| relayed.push(d));
    w.engine
        .handle_rtp(w.now, &mut voice(11, 1), carol.rtp(), |d, _| {
            relayed.push(d)
        });
    assert_eq!(relayed, [carol.rtp(), bob.rtp()]);
    // And the parker's late packets go nowhere.
    w.engine
        .handle_rtp(w.now, &mut voice(7, 11), alice.rtp(), |d, _| {
            relayed.push(d)
        });
    assert_eq!(relayed.len(), 2);
}

/// RTCP (RFC 3550): a parked caller gets sender reports for its music on
/// its RTP port + 1, with the music's SSRC and counts that match what was
/// sent; a bridged call's RTCP is relayed to the other leg's RTCP port.
#[test]
fn rtcp_sender_reports_for_music_and_relayed_reports_when_bridged() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "r1",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    let rtp = w.advance(Duration::from_millis(5_010));
    let music_ssrc = rtp_rs::RtpReader::new(&rtp[0].1).unwrap().ssrc();
    let reports: Vec<(SocketAddr, Vec<u8>)> = std::iter::from_fn(|| w.engine.poll_rtcp()).collect();
    assert_eq!(reports.len(), 1, "one report after 5 s");
    let (dest, sr) = &reports[0];
    assert_eq!(*dest, SocketAddr::new(bob.rtp().ip(), bob.rtp().port() + 1));
    assert_eq!(callpark_media::rtcp::sender_ssrc(sr), Some(music_ssrc));
    let packets = u32::from_be_bytes(sr[20..24].try_into().unwrap());
    assert!(
        (packets as i64 - rtp.len() as i64).abs() <= 1,
        "{packets} reported, {} sent",
        rtp.len()
    );
    let last_ts = rtp_rs::RtpReader::new(&rtp.last().unwrap().1)
        .unwrap()
        .timestamp();
    let sr_ts = u32::from_be_bytes(sr[16..20].try_into().unwrap());
    assert!(
        (sr_ts.wrapping_sub(last_ts) as i32).abs() <= 160,
        "{sr_ts} vs {last_ts}"
    );
    w.advance(Duration::from_secs(5));
    assert_eq!(std::iter::from_fn(|| w.engine.poll_rtcp()).count(), 1);
    // Retrieved: no more reports of ours; the phones' RTCP is relayed.
    let mut carol = Phone::new("carol", 6003);
    w.call(&mut carol, "r2", "*88701", "");
    let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 9];
    let mut relayed = Vec::new();
    let bob_rtcp = SocketAddr::new(bob.rtp().ip(), bob.rtp().port() + 1);
    let carol_rtcp = SocketAddr::new(carol.rtp().ip(), carol.rtp().port() + 1);
    w.engine
        .handle_rtcp(w.now, &rr, bob_rtcp, |d, p| relayed.push((d, p.to_vec())));
    assert_eq!(relayed, [(carol_rtcp, rr.to_vec())]);
    // Noise and strangers are dropped.
    w.engine.handle_rtcp(w.now, b"hello", bob_rtcp, |d, p| {
        relayed.push((d, p.to_vec()))
    });
    w.engine
        .handle_rtcp(w.now, &rr, "127.0.0.1:9999".parse().unwrap(), |d, p| {
            relayed.push((d, p.to_vec()))
        });
    assert_eq!(relayed.len(), 1);
    w.advance(Duration::from_secs(6));
    assert_eq!(std::iter::from_fn(|| w.engine.poll_rtcp()).count(), 0);
}

/// A 2xx that is never acknowledged (a vanished or spoofed caller): after
/// 64*T1 the server hangs up with BYE, and the music stops and the orbit is
/// free at that moment, not at max_lifetime.
#[test]
fn an_unacknowledged_2xx_ends_the_parked_call_with_its_music() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut bob = Phone::new("bob", 6001);
    let invite = bob.invite(
        "noack",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
        "0",
    );
    assert_eq!(final_response(&w.send(&bob, invite)).status, 200);
    assert_eq!(w.engine.parked_calls(), 1);
    // No ACK. Music plays meanwhile (to the SDP address).
    assert!(!w.advance(Duration::from_secs(31)).is_empty());
    let until = w.now + Duration::from_secs(2);
    let mut byes = std::collections::BTreeSet::new();
    while let Some(t) = w.engine.poll_timeout().filter(|t| *t <= until) {
        w.now = t.max(w.now);
        w.engine.handle_timeout(w.now);
        w.engine.pace_media(w.now, |_, _| {});
        for (p, r) in requests(&w.out()) {
            if r.method.to_string() == "BYE" && p == bob.peer() {
                byes.insert(r.header("CSeq").unwrap_or("").to_string());
            }
        }
    }
    w.now = until;
    assert_eq!(
        byes.len(),
        1,
        "one BYE to the caller (and its retransmissions)"
    );
    assert_eq!(w.engine.parked_calls(), 0, "the orbit is free");
    assert_eq!(w.engine.calls(), 0);
    assert!(
        w.advance(Duration::from_secs(5)).is_empty(),
        "no more music to a caller we hung up"
    );
    // 701 parks again at once.
    let mut carl = Phone::new("carl", 6003);
    assert_eq!(w.call(&mut carl, "again", "*68701", "").status, 200);
}

/// SIGTERM: every caller gets a BYE, retransmitted until answered; the
/// engine reports `drained` only when all are answered, and a park during
/// the drain gets 503.
#[test]
fn shutdown_retransmits_its_byes_until_answered_and_refuses_parks() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut bob = Phone::new("bob", 6001);
    let mut carl = Phone::new("carl", 6003);
    let referred = "Referred-By: <sip:alice@127.0.0.1:6009>\r\n";
    w.call(&mut bob, "s1", "701", referred);
    w.call(&mut carl, "s2", "702", referred);
    w.out();
    assert!(!w.engine.drained(), "not before shutdown");
    w.engine.shutdown(w.now);
    let byes = requests(&w.out());
    assert_eq!(byes.len(), 2);
    assert_eq!(w.engine.calls(), 0);
    let answer = |w: &mut World, phone: &Phone, bye: &Request| {
        let ok = callpark_sip::codec::serialize_response(&bye.response(200, None));
        w.send(phone, ok);
    };
    // Bob answers at once; Carl's first BYE is lost.
    let bob_bye = byes
        .iter()
        .find(|(p, _)| *p == bob.peer())
        .unwrap()
        .1
        .clone();
    answer(&mut w, &bob, &bob_bye);
    assert!(!w.engine.drained());
    assert_eq!(w.engine.byes_pending(), 1);
    // A park during the drain: 503 with Retry-After.
    let mut dave = Phone::new("dave", 6005);
    let invite = dave.invite("s3", "703", referred, "0");
    let refused = final_response(&w.send(&dave, invite));
    assert_eq!(refused.status, 503);
    assert!(refused.header("Retry-After").is_some());
    // The BYE to Carl comes again (timer E), and Carl answers that one.
    let until = w.now + Duration::from_millis(600);
    let mut again = None;
    while let Some(t) = w.engine.poll_timeout().filter(|t| *t <= until) {
        w.now = t.max(w.now);
        w.engine.handle_timeout(w.now);
        for (p, r) in requests(&w.out()) {
            if p == carl.peer() && r.method.to_string() == "BYE" {
                again = Some(r);
            }
        }
    }
    let again = again.expect("the BYE to Carl is retransmitted");
    answer(&mut w, &carl, &again);
    assert!(w.engine.drained());
}

/// A stranger on the retriever's IP who sends RTP before the retriever
/// does may be latched for a moment, but the address the retriever's SDP
/// names takes the leg back as soon as it speaks, for good: the stranger
/// then gets nothing. A packet of a codec the leg never agreed to does not
/// latch at all.
#[test]
fn a_stranger_on_the_phones_ip_cannot_keep_its_audio() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "h1",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    let mut carol = Phone::new("carol", 6003);
    w.call(&mut carol, "h2", "*88701", "");
    let stranger: SocketAddr = "127.0.0.1:9999".parse().unwrap();
    let mut relayed = Vec::new();
    // A codec Carol never agreed to (PT 18): no latch.
    let mut odd = rtp_rs::RtpPacketBuilder::new()
        .payload_type(18)
        .ssrc(66)
        .payload(&[0; 20])
        .build()
        .unwrap();
    w.engine
        .handle_rtp(w.now, &mut odd, stranger, |d, _| relayed.push(d));
    w.engine
        .handle_rtp(w.now, &mut voice(9, 1), bob.rtp(), |d, _| relayed.push(d));
    assert_eq!(relayed, [carol.rtp()], "Bob's audio still goes to Carol");
    // The stranger sends PCMU first: latched for now.
    w.engine
        .handle_rtp(w.now, &mut voice(66, 1), stranger, |d, _| relayed.push(d));
    // Carol speaks from her SDP address: she takes the leg back.
    w.engine
        .handle_rtp(w.now, &mut voice(11, 1), carol.rtp(), |d, _| {
            relayed.push(d)
        });
    relayed.clear();
    w.engine
        .handle_rtp(w.now, &mut voice(9, 2), bob.rtp(), |d, _| relayed.push(d));
    assert_eq!(relayed, [carol.rtp()], "Bob's audio is Carol's again");
    // The stranger's packets are dropped from now on.
    relayed.clear();
    w.engine
        .handle_rtp(w.now, &mut voice(66, 2), stranger, |d, _| relayed.push(d));
    assert!(relayed.is_empty(), "{relayed:?}");
    w.engine
        .handle_rtp(w.now, &mut voice(9, 3), bob.rtp(), |d, _| relayed.push(d));
    assert_eq!(relayed, [carol.rtp()]);
}

#[test]
fn the_parker_hears_the_orbit_announced_a_transferred_caller_does_not() {
    let loud = callpark_media::g711::linear_to_ulaw((0.9f32 * 32767.0).round() as i16);
    let mut w = World::new(engine(vec![], Access::All));
    let mut alice = Phone::new("alice", 6009);
    w.call(&mut alice, "an1", "*68703", "");
    let rtp = w.advance(Duration::from_millis(200));
    let firsts: Vec<u8> = rtp
        .iter()
        .map(|(_, p)| rtp_rs::RtpReader::new(p).unwrap().payload()[80])
        .collect();
    assert_eq!(
        &firsts[..4],
        &[0xFF, loud, loud, loud],
        "parked on, seven, zero, three"
    );
    assert_ne!(firsts[4], loud, "then the music");
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "an2",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    let rtp = w.advance(Duration::from_millis(100));
    let to_bob: Vec<u8> = rtp
        .iter()
        .filter(|(d, _)| *d == bob.rtp())
        .map(|(_, p)| rtp_rs::RtpReader::new(p).unwrap().payload()[80])
        .collect();
    assert!(
        !to_bob.is_empty() && to_bob.iter().all(|b| *b != loud),
        "{to_bob:?}"
    );
}

#[test]
fn an_orbit_plays_its_own_music() {
    let loud = callpark_media::g711::linear_to_ulaw((0.9f32 * 32767.0).round() as i16);
    let mut w = World::new(engine(vec![], Access::All));
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "m1",
        "705",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    let rtp = w.advance(Duration::from_millis(200));
    assert!(!rtp.is_empty());
    assert!(rtp.iter().all(|(_, p)| {
        rtp_rs::RtpReader::new(p)
            .unwrap()
            .payload()
            .iter()
            .all(|b| *b == loud)
    }));
    let mut carl = Phone::new("carl", 6003);
    w.call(
        &mut carl,
        "m2",
        "704",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    let rtp = w.advance(Duration::from_millis(200));
    assert!(
        rtp.iter()
            .filter(|(d, _)| *d == carl.rtp())
            .all(|(_, p)| rtp_rs::RtpReader::new(p).unwrap().payload()[80] != loud)
    );
}

#[test]
fn hold_and_resume_during_the_bridge_move_the_relay() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "h1",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    let mut carol = Phone::new("carol", 6011);
    let ok = w.call(&mut carol, "h2", "*88701", "");
    let carol_tag = tag(&ok);
    // Carol puts the call on hold: a re-INVITE with sendonly and a new port.
    carol.seq += 1;
    let body = "v=0\r\no=carol 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9999 RTP/AVP 0\r\na=sendonly\r\n";
    let reinvite = format!(
        "INVITE sip:callpark@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6011;branch=z9hG4bKhold1\r\nFrom: <sip:carol@127.0.0.1:6011>;tag=carolt\r\nTo: <sip:x@{SERVER}>;tag={carol_tag}\r\nCall-ID: h2\r\nCSeq: {} INVITE\r\nContact: <sip:carol@127.0.0.1:6011>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        carol.seq,
        body.len()
    );
    let out = w.send(&carol, reinvite.into_bytes());
    let answer = final_response(&out);
    assert_eq!(answer.status, 200);
    assert!(String::from_utf8_lossy(&answer.body).contains("a=recvonly"));
    // Bob's audio now goes to Carol's new port.
    let mut packet = rtp_rs::RtpPacketBuilder::new()
        .payload_type(0)
        .ssrc(9)
        .sequence(1.into())
        .timestamp(0)
        .payload(&[0x11; 160])
        .build()
        .unwrap();
    let mut relayed = Vec::new();
    w.engine
        .handle_rtp(w.now, &mut packet, bob.rtp(), |dest, p| {
            relayed.push((dest, p.to_vec()))
        });
    assert_eq!(
        relayed[0].0,
        "127.0.0.1:9999".parse::<SocketAddr>().unwrap()
    );
    // And Carol's packets from the new port reach Bob.
    let mut back = rtp_rs::RtpPacketBuilder::new()
        .payload_type(0)
        .ssrc(8)
        .sequence(1.into())
        .timestamp(0)
        .payload(&[0x22; 160])
        .build()
        .unwrap();
    let mut relayed = Vec::new();
    w.engine.handle_rtp(
        w.now,
        &mut back,
        "127.0.0.1:9999".parse().unwrap(),
        |dest, p| relayed.push((dest, p.to_vec())),
    );
    assert_eq!(relayed[0].0, bob.rtp());
}

#[test]
fn options_unknown_methods_and_codecs() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut p = Phone::new("p", 6001);
    let options = p
        .in_dialog("OPTIONS", "o1", "x")
        .into_iter()
        .collect::<Vec<u8>>();
    let options = String::from_utf8(options).unwrap().replace(";tag=x", "");
    let r = final_response(&w.send(&p, options.into_bytes()));
    assert_eq!(r.status, 200);
    assert!(r.header("Allow").unwrap().contains("INVITE"));
    let foo = String::from_utf8(p.in_dialog("FOO", "f1", "x"))
        .unwrap()
        .replace(";tag=x", "");
    assert_eq!(final_response(&w.send(&p, foo.into_bytes())).status, 501);
    let g722 = p.invite("n1", "*68701", "", "9");
    let r = final_response(&w.send(&p, g722));
    assert_eq!(r.status, 488);
    assert_eq!(w.engine.parked_calls(), 0);
}

#[test]
fn access_lists_decide_who_may_park() {
    let mut w = World::new(engine(
        vec![],
        Access::Listed(vec!["sip:alice@127.0.0.1".into()]),
    ));
    let mut p = Phone::new("p", 6001);
    assert_eq!(
        w.call(&mut p, "a1", "701", "Referred-By: <sip:bob@127.0.0.1>\r\n")
            .status,
        403
    );
    assert_eq!(
        w.call(
            &mut p,
            "a2",
            "701",
            "Referred-By: <sip:alice@127.0.0.1:5062>\r\n"
        )
        .status,
        200
    );
}

#[test]
fn ten_thousand_parks_and_retrieves_in_virtual_time() {
    let mut orbits: Vec<OrbitConfig> = (1000..11000).map(|n| orbit(&n.to_string(), 1)).collect();
    orbits.truncate(10_000);
    let lot = ParkLot::new(orbits, vec![]);
    let music = MusicLibrary {
        default: Music::silence(),
        by_key: Default::default(),
        music_on_hold: false,
        prompts: Default::default(),
    };
    let cfg = config();
    let mut w = World::new(Engine::new(cfg, lot, music, Arc::new(BuiltinPolicy)));
    let mut parked = 0;
    for i in 0..10_000u32 {
        let mut p = Phone::new(&format!("u{i}"), 10_000 + (i % 20_000) as u16);
        if w.call(&mut p, &format!("park{i}"), "*68", "").status == 200 {
            parked += 1;
        }
        if i % 100 == 0 {
            w.advance(Duration::from_millis(20));
        }
    }
    assert_eq!(parked, 10_000);
    assert_eq!(w.engine.parked_calls(), 10_000);
    let mut retrieved = 0;
    for i in 0..10_000u32 {
        let mut r = Phone::new(&format!("r{i}"), 40_000 + (i % 20_000) as u16);
        if w.call(&mut r, &format!("get{i}"), "*88", "").status == 200 {
            retrieved += 1;
        }
    }
    assert_eq!(retrieved, 10_000);
    assert_eq!(w.engine.parked_calls(), 0);
    assert_eq!(w.engine.calls(), 10_000, "all bridged");
}

// ---- Recall --------------------------------------------------------------

fn recall_engine(params: &[(&str, &str)], recall_after_ms: u64) -> Engine {
    recall_engine_with(params, recall_after_ms, Duration::ZERO, Duration::ZERO)
}

fn recall_engine_with(
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
    fn advance_sip(&mut self, by: Duration) -> Vec<Sent> {
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
    fn reply(
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
fn invites_to(out: &[Sent], port: u16) -> Vec<(Peer, Request)> {
    let mut seen = std::collections::HashSet::new();
    requests(out)
        .into_iter()
        .filter(|(p, r)| r.method == callpark_sip::message::Method::Invite && p.addr.port() == port)
        .filter(|(_, r)| seen.insert(r.call_id().unwrap().to_string()))
        .collect()
}

fn methods(out: &[Sent]) -> Vec<String> {
    requests(out)
        .iter()
        .map(|(p, r)| format!("{} {}", r.method, p.addr.port()))
        .collect()
}

#[test]
fn lync_recall_rings_the_parker_twice_then_the_fallback_who_gets_the_call() {
    let mut w = World::new(recall_engine(
        &[
            ("option", "parker-then-fallback"),
            ("max_attempts", "2"),
            ("ring_time", "20s"),
            ("fallback", "sip:operator@127.0.0.1:6050"),
            ("ring_pattern", "long-long"),
        ],
        30_000,
    ));
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "r1",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    w.out();
    w.events();
    assert!(
        invites_to(&w.advance_sip(Duration::from_secs(29)), 6009).is_empty(),
        "not before recall_after"
    );
    let out = w.advance_sip(Duration::from_secs(1));
    let rings = invites_to(&out, 6009);
    assert_eq!(rings.len(), 1, "{:?}", methods(&out));
    let (alice, invite) = &rings[0];
    assert_eq!(
        invite.header("Alert-Info"),
        Some("<http://127.0.0.1/Bellcore-dr2>")
    );
    assert_eq!(
        invite.from().unwrap().display.as_deref(),
        Some("Park 701: bob")
    );
    assert_eq!(invite.header("Subject"), Some("Parked call on 701"));
    assert!(String::from_utf8_lossy(&invite.body).contains("m=audio 20000 RTP/AVP 0 8 101"));
    // The parker is busy: the second attempt rings at once.
    let out = w.reply(*alice, invite, 486, None);
    let again = invites_to(&out, 6009);
    assert_eq!(again.len(), 1, "{:?}", methods(&out));
    // The retry rings out its 20 s: CANCEL, then the fallback.
    let out = w.advance_sip(Duration::from_secs(20));
    assert!(
        methods(&out).contains(&"CANCEL 6009".to_string()),
        "{:?}",
        methods(&out)
    );
    let operator_rings = invites_to(&out, 6050);
    assert_eq!(operator_rings.len(), 1, "{:?}", methods(&out));
    // The operator answers: ACK, bridge, music off, orbit free.
    let (op_peer, op_invite) = &operator_rings[0];
    let out = w.reply(*op_peer, op_invite, 200, Some(7050));
    assert!(
        methods(&out).contains(&"ACK 6050".to_string()),
        "{:?}",
        methods(&out)
    );
    let events = w.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EngineEvent::RecallAnswered { orbit, .. } if orbit == "701")),
        "{events:?}"
    );
    assert_eq!(w.engine.parked_calls(), 0);
    let mut packet = rtp_rs::RtpPacketBuilder::new()
        .payload_type(0)
        .ssrc(3)
        .sequence(1.into())
        .timestamp(0)
        .payload(&[0x33; 160])
        .build()
        .unwrap();
    let mut relayed = Vec::new();
    w.engine
        .handle_rtp(w.now, &mut packet, bob.rtp(), |dest, p| {
            relayed.push((dest, p.to_vec()))
        });
    assert_eq!(
        relayed[0].0,
        "127.0.0.1:7050".parse::<SocketAddr>().unwrap()
    );
}

#[test]
fn a_retrieve_wins_over_a_ringing_recall() {
    let mut w = World::new(recall_engine(&[], 10_000));
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "r2",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    w.out();
    let rang = w.advance_sip(Duration::from_secs(10));
    assert_eq!(invites_to(&rang, 6009).len(), 1);
    let ringing_id = invites_to(&rang, 6009)
        .first()
        .map(|(_, r)| r.call_id().unwrap().to_string());
    let mut carol = Phone::new("carol", 6011);
    let invite = carol.invite("r2b", "*88701", "", "0");
    let out = w.send(&carol, invite);
    assert_eq!(final_response(&out).status, 200);
    let ack = carol.ack("r2b", &tag(&final_response(&out)));
    w.send(&carol, ack);
    assert!(
        methods(&out).contains(&"CANCEL 6009".to_string()),
        "{:?}",
        methods(&out)
    );
    // Nothing new rings any more (the cancelled INVITE may still be
    // retransmitted until the phone answers the CANCEL with 487).
    let later = w.advance_sip(Duration::from_secs(60));
    assert!(
        invites_to(&later, 6009)
            .iter()
            .all(|(_, r)| Some(r.call_id().unwrap().to_string()) == ringing_id)
    );
    assert_eq!(w.engine.calls(), 1);
}

#[test]
fn an_unanswered_recall_ends_with_a_bye_and_frees_the_orbit() {
    let mut w = World::new(recall_engine(&[("ring_time", "15s")], 10_000));
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "r3",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    w.out();
    w.events();
    let out = w.advance_sip(Duration::from_secs(25));
    let m = methods(&out);
    assert!(
        m.contains(&"INVITE 6009".to_string()) && m.contains(&"CANCEL 6009".to_string()),
        "{m:?}"
    );
    assert!(
        m.contains(&"BYE 6001".to_string()),
        "the caller is hung up: {m:?}"
    );
    let events = w.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EngineEvent::RecallExhausted { .. })),
        "{events:?}"
    );
    assert_eq!(w.engine.parked_calls(), 0);
    assert_eq!(w.engine.calls(), 0);
}

#[test]
fn parker_only_reparks_and_rings_again_later() {
    let mut w = World::new(recall_engine(
        &[("option", "parker-only"), ("ring_time", "10s")],
        30_000,
    ));
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "r4",
        "702",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    w.out();
    let first = w.advance_sip(Duration::from_secs(45));
    assert_eq!(invites_to(&first, 6009).len(), 1);
    assert_eq!(w.engine.parked_calls(), 1, "still parked after the ring");
    let first_id = invites_to(&first, 6009)[0].1.call_id().unwrap().to_string();
    let second = w.advance_sip(Duration::from_secs(30));
    let new: Vec<_> = invites_to(&second, 6009)
        .into_iter()
        .filter(|(_, r)| r.call_id().unwrap() != first_id)
        .collect();
    assert_eq!(new.len(), 1, "recalled again after recall_after");
    assert!(!methods(&second).iter().any(|m| m.starts_with("BYE")));
}

#[test]
fn an_unknown_parker_recalls_to_the_fallback() {
    let mut w = World::new(recall_engine(
        &[("fallback", "sip:operator@127.0.0.1:6050")],
        10_000,
    ));
    let mut bob = Phone::new("bob", 6001);
    w.call(&mut bob, "r5", "*68703", "");
    w.out();
    let out = w.advance_sip(Duration::from_secs(10));
    assert_eq!(invites_to(&out, 6050).len(), 1, "{:?}", methods(&out));
    assert!(invites_to(&out, 6001).is_empty(), "never the caller itself");
}

fn digit_packet(event: u8, end: bool, seq: u16, ts: u32) -> Vec<u8> {
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

#[test]
fn without_an_escape_key_digits_do_nothing_and_0s_never_recalls() {
    let mut w = World::new(recall_engine(&[], 0));
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "e1",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    w.out();
    w.events();
    // No escape key configured: a 0 does nothing.
    let mut p = digit_packet(0, false, 1, 8000);
    w.engine.handle_rtp(w.now, &mut p, bob.rtp(), |_, _| {});
    assert!(w.events().is_empty());
    assert!(
        invites_to(&w.advance_sip(Duration::from_secs(120)), 6009).is_empty(),
        "0s means never"
    );
}

/// An engine whose orbits 701-702 take the escape key `0`, with the given
/// recall params; orbit 702 rings with its own pattern.
fn escape_engine(params: &[(&str, &str)]) -> Engine {
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

/// A caller who dialed the orbit itself has no parker to be recalled to:
/// its key press keeps it parked (no BYE), unless a fallback is there.
#[test]
fn an_escape_key_with_nobody_to_ring_keeps_the_call_parked() {
    let mut w = World::new(escape_engine(&[("ring_pattern", "long-long")]));
    let mut bob = Phone::new("bob", 6001);
    assert_eq!(w.call(&mut bob, "k1", "*68701", "").status, 200);
    w.out();
    let mut p = digit_packet(0, true, 1, 8000);
    w.engine.handle_rtp(w.now, &mut p, bob.rtp(), |_, _| {});
    let out = w.advance_sip(Duration::from_secs(5));
    assert!(
        !methods(&out).iter().any(|m| m == "BYE" || m == "INVITE"),
        "{:?}",
        methods(&out)
    );
    assert_eq!(w.engine.parked_calls(), 1, "still parked");
    // With a fallback the same key press rings it.
    let mut w = World::new(escape_engine(&[(
        "fallback",
        "sip:operator@127.0.0.1:6050",
    )]));
    w.call(&mut bob, "k2", "*68701", "");
    w.out();
    let mut p = digit_packet(0, true, 1, 8000);
    w.engine.handle_rtp(w.now, &mut p, bob.rtp(), |_, _| {});
    assert_eq!(invites_to(&w.out(), 6050).len(), 1);
}

/// `[[orbit]] ring_pattern` is the orbit's recalls' Alert-Info, over the
/// default's.
#[test]
fn an_orbit_rings_its_own_pattern_over_the_default() {
    let mut w = World::new(escape_engine(&[("ring_pattern", "long-long")]));
    let mut bob = Phone::new("bob", 6001);
    let mut carl = Phone::new("carl", 6003);
    let referred = "Referred-By: <sip:alice@127.0.0.1:6009>\r\n";
    w.call(&mut bob, "p1", "701", referred);
    w.call(&mut carl, "p2", "702", referred);
    w.out();
    let out = w.advance_sip(Duration::from_secs(60));
    let alerts: Vec<String> = invites_to(&out, 6009)
        .iter()
        .map(|(_, r)| r.header("Alert-Info").unwrap_or("").to_string())
        .collect();
    assert_eq!(alerts.len(), 2, "{:?}", methods(&out));
    // long-long is Bellcore dr2 (the default's), short-short-long dr3
    // (orbit 702's own).
    let mut alerts = alerts;
    alerts.sort();
    assert_eq!(
        alerts,
        [
            "<http://127.0.0.1/Bellcore-dr2>",
            "<http://127.0.0.1/Bellcore-dr3>"
        ]
    );
}

/// RFC 3261 §12.1.1: a 2xx that makes a dialog copies the request's
/// Record-Route, in order, so that the phone's ACK, BYE and re-INVITE
/// follow the proxies; our own in-dialog requests use that route set.
#[test]
fn record_route_is_copied_into_the_2xx_of_invite_and_subscribe() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut bob = Phone::new("bob", 6001);
    let rr = "Record-Route: <sip:127.0.0.1:5070;lr;ftag=x>\r\nRecord-Route: <sip:10.0.0.1;lr>\r\n";
    let invite = bob.invite("rr1", "701", rr, "0");
    let ok = final_response(&w.send(&bob, invite));
    assert_eq!(ok.status, 200);
    let routes: Vec<&str> = ok.headers.get_all("Record-Route").collect();
    assert_eq!(
        routes,
        ["<sip:127.0.0.1:5070;lr;ftag=x>", "<sip:10.0.0.1;lr>"]
    );
    let text = String::from_utf8(bob.in_dialog("SUBSCRIBE", "rr2", "x"))
        .unwrap()
        .replace(";tag=x", "")
        .replace("CSeq: 3 SUBSCRIBE\r\n", &format!("CSeq: 3 SUBSCRIBE\r\nEvent: dialog\r\nExpires: 60\r\nContact: <sip:bob@127.0.0.1:6001>\r\n{rr}"))
        .replace("sip:callpark@", "sip:701@");
    let out = w.send(&bob, text.into_bytes());
    let ok = final_response(&out);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.headers.get_all("Record-Route").count(), 2);
    let notify = requests(&out)
        .into_iter()
        .find(|(_, r)| r.method.to_string() == "NOTIFY");
    let (_, notify) = notify.expect("a NOTIFY");
    let route: Vec<&str> = notify.headers.get_all("Route").collect();
    assert_eq!(
        route,
        ["<sip:127.0.0.1:5070;lr;ftag=x>", "<sip:10.0.0.1;lr>"]
    );
}

/// RFC 3261 details: the 200 to OPTIONS carries a To tag (§8.2.6.2), an
/// unknown Require gets 420 naming it (§8.2.2.3), and a method SIP defines
/// that we do not take gets 405 with Allow (MESSAGE to an orbit).
#[test]
fn options_tag_require_and_methods_we_do_not_take() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut p = Phone::new("p", 6001);
    let bare = |text: Vec<u8>| String::from_utf8(text).unwrap().replace(";tag=x", "");
    let options = bare(p.in_dialog("OPTIONS", "o1", "x"));
    let r = final_response(&w.send(&p, options.into_bytes()));
    assert!(r.to().unwrap().tag().is_some(), "{r:?}");
    let required = bare(p.in_dialog("OPTIONS", "o2", "x")).replace(
        "Max-Forwards",
        "Require: replaces, 100rel, foo\r\nMax-Forwards",
    );
    let r = final_response(&w.send(&p, required.into_bytes()));
    assert_eq!(r.status, 420);
    assert_eq!(r.header("Unsupported"), Some("100rel, foo"));
    let invite = p.invite("o3", "701", "Require: replaces\r\n", "0");
    assert_eq!(final_response(&w.send(&p, invite)).status, 200);
    let message = bare(p.in_dialog("MESSAGE", "o4", "x")).replace("sip:callpark@", "sip:701@");
    let r = final_response(&w.send(&p, message.into_bytes()));
    assert_eq!(r.status, 405);
    assert!(r.header("Allow").unwrap().contains("INVITE"));
}

#[test]
fn an_escape_key_press_with_duplicates_and_end_packets_recalls_once() {
    let orbits: Vec<OrbitConfig> = (701..=702)
        .map(|n| {
            let mut o = orbit(&n.to_string(), 1);
            o.escape_key = Some('0');
            o
        })
        .collect();
    let music = MusicLibrary {
        default: Music::silence(),
        by_key: Default::default(),
        music_on_hold: true,
        prompts: Default::default(),
    };
    let engine = Engine::new(
        EngineConfig {
            max_parked_calls: 100,
            entropy: 3,
            ..config()
        },
        ParkLot::new(orbits, vec![]),
        music,
        Arc::new(BuiltinPolicy),
    );
    let mut w = World::new(engine);
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "e2",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    w.out();
    w.events();
    // Another key first: nothing.
    let mut five = digit_packet(5, true, 1, 4000);
    w.engine.handle_rtp(w.now, &mut five, bob.rtp(), |_, _| {});
    assert!(w.events().is_empty());
    // One press of 0: three start packets and three end packets, one timestamp.
    for (i, end) in [false, false, false, true, true, true]
        .into_iter()
        .enumerate()
    {
        let mut p = digit_packet(0, end, 2 + i as u16, 8000);
        w.engine.handle_rtp(w.now, &mut p, bob.rtp(), |_, _| {});
    }
    let out = w.out();
    let events = w.events();
    let escapes = events
        .iter()
        .filter(|e| matches!(e, EngineEvent::EscapeKey { key: '0', .. }))
        .count();
    let started = events
        .iter()
        .filter(|e| matches!(e, EngineEvent::RecallStarted { .. }))
        .count();
    assert_eq!((escapes, started), (1, 1), "{events:?}");
    assert_eq!(
        invites_to(&out, 6009).len(),
        1,
        "recall rings the parker at once"
    );

    // SIP INFO application/dtmf-relay works too, on another call.
    let mut carl = Phone::new("carl", 6003);
    let ok = w.call(
        &mut carl,
        "e3",
        "702",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    w.out();
    w.events();
    carl.seq += 1;
    let body = "Signal=0\r\nDuration=160\r\n";
    let info = format!(
        "INFO sip:callpark@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6003;branch=z9hG4bKinfo1\r\nFrom: <sip:carl@127.0.0.1:6003>;tag=carlt\r\nTo: <sip:x@{SERVER}>;tag={}\r\nCall-ID: e3\r\nCSeq: {} INFO\r\nContent-Type: application/dtmf-relay\r\nContent-Length: {}\r\n\r\n{body}",
        tag(&ok),
        carl.seq,
        body.len()
    );
    let out = w.send(&carl, info.into_bytes());
    assert_eq!(final_response(&out).status, 200);
    assert!(
        w.events()
            .iter()
            .any(|e| matches!(e, EngineEvent::EscapeKey { .. }))
    );
    assert_eq!(invites_to(&out, 6009).len(), 1);
}

#[test]
fn a_silent_parked_caller_is_probed_and_hung_up_when_the_probe_fails() {
    let mut w = World::new(recall_engine_with(
        &[],
        0,
        Duration::from_secs(60),
        Duration::ZERO,
    ));
    let mut bob = Phone::new("bob", 6001);
    let mut carl = Phone::new("carl", 6003);
    w.call(&mut bob, "l1", "701", "");
    w.call(&mut carl, "l2", "702", "");
    w.out();
    w.events();
    // Bob keeps sending RTP; Carl is silent.
    for second in 0..70 {
        let mut p = rtp_rs::RtpPacketBuilder::new()
            .payload_type(0)
            .ssrc(1)
            .sequence((second as u16).into())
            .timestamp(second * 8000)
            .payload(&[0xFF; 160])
            .build()
            .unwrap();
        w.engine.handle_rtp(w.now, &mut p, bob.rtp(), |_, _| {});
        w.advance_sip(Duration::from_secs(1));
    }
    // By now Carl got an OPTIONS probe, Bob did not.
    // (The probe went out at 60 s; it is retransmitted until timer F.)
    let out = w.advance_sip(Duration::from_secs(40));
    let events = w.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EngineEvent::Abandoned { orbit, .. } if orbit == "702")),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, EngineEvent::Abandoned { orbit, .. } if orbit == "701")),
        "{events:?}"
    );
    assert_eq!(w.engine.parked_calls(), 1);
    assert!(
        !requests(&out)
            .iter()
            .any(|(p, r)| r.method == callpark_sip::message::Method::Bye && p.addr.port() == 6003),
        "a vanished caller gets no BYE"
    );
}

#[test]
fn an_ended_call_leaves_no_timers_behind() {
    let mut w = World::new(recall_engine_with(
        &[],
        45_000,
        Duration::from_secs(60),
        Duration::from_secs(86_400),
    ));
    let mut bob = Phone::new("bob", 6001);
    let ok = w.call(
        &mut bob,
        "t1",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    let bye = bob.in_dialog("BYE", "t1", &tag(&ok));
    w.send(&bob, bye);
    // The MESSAGE to the parker retransmits until timer F (32 s); after
    // that nothing is due: not the recall, liveness or the 24 h lifetime.
    w.advance_sip(Duration::from_secs(40));
    assert_eq!(w.engine.poll_timeout(), None);
}

#[test]
fn a_probe_answered_keeps_the_call_and_max_lifetime_ends_it() {
    let mut w = World::new(recall_engine_with(
        &[],
        0,
        Duration::from_secs(60),
        Duration::from_secs(600),
    ));
    let mut carl = Phone::new("carl", 6003);
    w.call(&mut carl, "l3", "702", "");
    w.out();
    let out = w.advance_sip(Duration::from_secs(61));
    let probe = requests(&out)
        .into_iter()
        .find(|(_, r)| r.method == callpark_sip::message::Method::Options)
        .expect("an OPTIONS probe");
    // A phone on hold that answers (even 405) is alive: the call stays,
    // probe after probe.
    w.reply(probe.0, &probe.1, 405, None);
    for _ in 0..20 {
        let out = w.advance_sip(Duration::from_secs(10));
        for (peer, r) in requests(&out)
            .into_iter()
            .filter(|(_, r)| r.method == callpark_sip::message::Method::Options)
        {
            w.reply(peer, &r, 405, None);
        }
    }
    assert_eq!(w.engine.parked_calls(), 1, "answered probes keep the call");
    // max_lifetime: hung up at 600 s, with a BYE.
    let mut byes = 0;
    let mut ended_at = None;
    for chunk in 0..50 {
        let out = w.advance_sip(Duration::from_secs(10));
        byes += requests(&out)
            .iter()
            .filter(|(_, r)| r.method == callpark_sip::message::Method::Bye)
            .count();
        for (peer, r) in requests(&out)
            .into_iter()
            .filter(|(_, r)| r.method == callpark_sip::message::Method::Options)
        {
            w.reply(peer, &r, 200, None);
        }
        if ended_at.is_none() && w.engine.parked_calls() == 0 {
            ended_at = Some(261 + 10 * (chunk + 1));
        }
    }
    assert_eq!(w.engine.parked_calls(), 0);
    assert!(byes >= 1, "hung up with a BYE");
    let ended_at = ended_at.unwrap();
    assert!(
        (600..=611).contains(&ended_at),
        "ended at {ended_at} s, max_lifetime is 600 s"
    );
}

#[test]
fn rtp_from_another_port_latches_only_when_unambiguous() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut bob = Phone::new("bob", 6001);
    w.call(&mut bob, "s1", "701", "");
    let mut carol = Phone::new("carol", 6011);
    w.call(&mut carol, "s2", "*88701", "");
    // Bob's packets come from port 40000, not the 7001 he announced: the
    // only silent leg from 127.0.0.1 is... both are silent, so no latching.
    let mut p = rtp_rs::RtpPacketBuilder::new()
        .payload_type(0)
        .ssrc(1)
        .sequence(1.into())
        .timestamp(0)
        .payload(&[0x11; 160])
        .build()
        .unwrap();
    let mut relayed = Vec::new();
    let nat: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    w.engine
        .handle_rtp(w.now, &mut p.clone(), nat, |d, _| relayed.push(d));
    assert!(relayed.is_empty(), "two legs from that IP could be it");
    // Carol speaks from her announced port; now Bob's leg is the only
    // silent one from 127.0.0.1 and latches.
    w.engine
        .handle_rtp(w.now, &mut p.clone(), carol.rtp(), |d, _| relayed.push(d));
    assert_eq!(relayed, [bob.rtp()]);
    w.engine
        .handle_rtp(w.now, &mut p, nat, |d, _| relayed.push(d));
    assert_eq!(relayed[1], carol.rtp());
    // And Carol's audio now goes to where Bob really is.
    let mut back = rtp_rs::RtpPacketBuilder::new()
        .payload_type(0)
        .ssrc(2)
        .sequence(1.into())
        .timestamp(0)
        .payload(&[0x22; 160])
        .build()
        .unwrap();
    w.engine
        .handle_rtp(w.now, &mut back, carol.rtp(), |d, _| relayed.push(d));
    assert_eq!(relayed[2], nat);
}

// ---- Busy lamps ------------------------------------------------------------

fn subscribe(
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

fn notifies(out: &[Sent]) -> Vec<(String, String)> {
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

#[test]
fn busy_lamps_follow_park_and_retrieve_and_end_with_the_subscription() {
    let mut w = World::new(engine(vec![], Access::All));
    let lamp = Phone::new("lamp", 6100);
    let out = subscribe(&mut w, &lamp, "701", "sub1", 3600, None, "dialog");
    let ok = final_response(&out);
    assert_eq!((ok.status, ok.header("Expires")), (200, Some("3600")));
    let sub_tag = tag(&ok);
    let n = notifies(&out);
    assert_eq!(n.len(), 1);
    assert!(n[0].0.starts_with("active;expires="), "{:?}", n[0].0);
    assert!(
        n[0].1.contains("version=\"0\"") && !n[0].1.contains("<dialog "),
        "{}",
        n[0].1
    );

    let mut bob = Phone::new("bob", 6001);
    let invite = bob.invite(
        "b1",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
        "0",
    );
    let out = w.send(&bob, invite);
    let n = notifies(&out);
    assert_eq!(n.len(), 1, "one NOTIFY in the same turn as the park");
    assert!(n[0].1.contains("version=\"1\""));
    assert!(n[0].1.contains("<state>early</state>"), "{}", n[0].1);
    assert!(
        n[0].1
            .contains("<identity display=\"bob\">sip:bob@127.0.0.1:6001</identity>"),
        "{}",
        n[0].1
    );
    assert!(n[0].1.contains("<target uri=\"sip:701@127.0.0.1\"/>"));

    let mut carol = Phone::new("carol", 6011);
    let invite = carol.invite("c1", "*88701", "", "0");
    let out = w.send(&carol, invite);
    let n = notifies(&out);
    assert_eq!(n.len(), 1);
    // The retrieved call is reported ended once, then no more.
    assert!(n[0].1.contains("version=\"2\""));
    assert_eq!(n[0].1.matches("<dialog ").count(), 1);
    assert!(n[0].1.contains("<state>terminated</state>"), "{}", n[0].1);

    // Un-subscribe: 200 and a final NOTIFY.
    let out = subscribe(&mut w, &lamp, "701", "sub1", 0, Some(&sub_tag), "dialog");
    assert_eq!(final_response(&out).status, 200);
    let n = notifies(&out);
    assert_eq!(n.len(), 1);
    assert!(n[0].0.starts_with("terminated"), "{:?}", n[0].0);
    assert!(!n[0].1.contains("<dialog "), "{}", n[0].1);
    // Gone: nothing more on the next park.
    let mut dave = Phone::new("dave", 6021);
    let invite = dave.invite("d1", "701", "", "0");
    assert!(notifies(&w.send(&dave, invite)).is_empty());
}

#[test]
fn group_lamps_expiry_and_refusals() {
    let groups = vec![GroupConfig {
        name: "front-desk".into(),
        members: vec!["sip:alice@127.0.0.1".into()],
        destinations: vec!["704".into(), "705".into()],
        recall_params: vec![],
    }];
    let mut w = World::new(engine(groups, Access::All));
    let lamp = Phone::new("lamp", 6100);
    assert_eq!(
        final_response(&subscribe(
            &mut w,
            &lamp,
            "front-desk",
            "g1",
            60,
            None,
            "dialog"
        ))
        .status,
        200
    );
    let mut bob = Phone::new("bob", 6001);
    let invite = bob.invite(
        "b1",
        "#58",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
        "0",
    );
    let n = notifies(&w.send(&bob, invite));
    assert_eq!(n.len(), 1);
    assert!(n[0].1.contains("sip:704@127.0.0.1"), "{}", n[0].1);
    // Not refreshed: at 60 s the subscription ends with a final NOTIFY.
    let out = w.advance_sip(Duration::from_secs(61));
    let n = notifies(&out);
    assert!(
        n.iter()
            .any(|(state, _)| state == "terminated;reason=timeout"),
        "{n:?}"
    );
    // Refusals.
    let out = subscribe(&mut w, &lamp, "701", "x1", 3600, None, "presence");
    let r = final_response(&out);
    assert_eq!((r.status, r.header("Allow-Events")), (489, Some("dialog")));
    assert_eq!(
        final_response(&subscribe(
            &mut w, &lamp, "nobody", "x2", 3600, None, "dialog"
        ))
        .status,
        404
    );
    assert_eq!(
        final_response(&subscribe(&mut w, &lamp, "701", "x3", 10, None, "dialog")).status,
        423
    );
}

#[test]
fn a_pickup_from_a_lamp_with_replaces_retrieves_the_call() {
    let mut w = World::new(engine(vec![], Access::All));
    let lamp = Phone::new("lamp", 6100);
    subscribe(&mut w, &lamp, "702", "p1", 3600, None, "dialog");
    let mut bob = Phone::new("bob", 6001);
    let invite = bob.invite(
        "b9",
        "702",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
        "0",
    );
    let n = notifies(&w.send(&bob, invite));
    let doc = &n[0].1;
    let grab = |attr: &str| {
        let start = doc.find(&format!("{attr}=\"")).unwrap() + attr.len() + 2;
        doc[start..start + doc[start..].find('"').unwrap()].to_string()
    };
    let (call_id, local, remote) = (grab("call-id"), grab("local-tag"), grab("remote-tag"));
    // The lamp shows a dialog of its own, never the caller's Call-ID or
    // tags, with 128-bit tags nobody guesses.
    assert_ne!(call_id, "b9");
    assert!(!doc.contains("b9"), "{doc}");
    assert_eq!((local.len(), remote.len()), (32, 32), "{doc}");
    w.events();
    let mut lamp_phone = Phone::new("lamp", 6102);
    // Each part must match: a Replaces with a wrong tag or Call-ID is 481.
    for (i, bad) in [
        format!("{call_id};to-tag={remote};from-tag={local}"),
        format!("{call_id};to-tag={local};from-tag=guess"),
        format!("b9;to-tag={local};from-tag={remote}"),
        "1-00;to-tag=blf1;from-tag=x".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let invite = lamp_phone.invite(
            &format!("guess{i}"),
            "702",
            &format!("Replaces: {bad}\r\n"),
            "0",
        );
        let out = w.send(&lamp_phone, invite);
        assert_eq!(final_response(&out).status, 481, "{bad}");
    }
    let replaces = format!("Replaces: {call_id};to-tag={local};from-tag={remote}\r\n");
    let invite = lamp_phone.invite("pick1", "702", &replaces, "0");
    let out = w.send(&lamp_phone, invite);
    assert_eq!(final_response(&out).status, 200);
    assert!(
        w.events()
            .iter()
            .any(|e| matches!(e, EngineEvent::Retrieved { orbit, .. } if orbit == "702"))
    );
    assert!(
        requests(&out)
            .iter()
            .all(|(_, r)| r.method != callpark_sip::message::Method::Bye),
        "the caller is not hung up"
    );
    assert_eq!(w.engine.parked_calls(), 0);
}

#[test]
fn server_driven_park_a_refer_makes_us_invite_the_caller_with_replaces() {
    let mut w = World::new(engine(vec![], Access::All));
    let alice = Phone::new("alice", 6009);
    let refer = format!(
        "REFER sip:701@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6009;branch=z9hG4bKref1\r\nFrom: <sip:alice@127.0.0.1:6009>;tag=at\r\nTo: <sip:701@{SERVER}>\r\nCall-ID: ref1\r\nCSeq: 1 REFER\r\nContact: <sip:alice@127.0.0.1:6009>\r\nRefer-To: <sip:bob@127.0.0.1:6001?Replaces=callAB%3Bto-tag%3Dbt%3Bfrom-tag%3Dat>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let out = w.send(&alice, refer.into_bytes());
    assert_eq!(final_response(&out).status, 202);
    let reqs = requests(&out);
    let notify = reqs
        .iter()
        .find(|(_, r)| r.method == callpark_sip::message::Method::Notify)
        .expect("a NOTIFY");
    assert_eq!(notify.0.addr.port(), 6009);
    assert_eq!(notify.1.header("Event"), Some("refer"));
    assert!(String::from_utf8_lossy(&notify.1.body).starts_with("SIP/2.0 100"));
    let (bob_peer, invite) = reqs
        .iter()
        .find(|(_, r)| r.method == callpark_sip::message::Method::Invite)
        .expect("an INVITE to the caller")
        .clone();
    assert_eq!(bob_peer.addr.port(), 6001);
    assert_eq!(
        invite.header("Replaces"),
        Some("callAB;to-tag=bt;from-tag=at")
    );
    assert!(invite.header("Referred-By").unwrap().contains("alice"));
    // Bob's phone accepts the replacement.
    let out = w.reply(bob_peer, &invite, 200, Some(7001));
    let m = methods(&out);
    assert!(m.contains(&"ACK 6001".to_string()), "{m:?}");
    let reqs = requests(&out);
    let final_notify = reqs
        .iter()
        .find(|(_, r)| r.method == callpark_sip::message::Method::Notify)
        .expect("the final NOTIFY");
    assert!(
        final_notify
            .1
            .header("Subscription-State")
            .unwrap()
            .starts_with("terminated")
    );
    assert!(String::from_utf8_lossy(&final_notify.1.body).starts_with("SIP/2.0 200 Parked on 701"));
    let message = reqs
        .iter()
        .find(|(_, r)| r.method == callpark_sip::message::Method::Message)
        .expect("a MESSAGE");
    assert_eq!(message.1.body, b"Parked on 701");
    let parked = w.engine.lot().parked_on("701").next().unwrap().clone();
    assert_eq!(
        (parked.parker.as_str(), parked.parked_uri.as_str()),
        ("sip:alice@127.0.0.1:6009", "sip:bob@127.0.0.1:6001")
    );
    let rtp = w.advance(Duration::from_millis(100));
    assert!(!rtp.is_empty() && rtp.iter().all(|(d, _)| d.port() == 7001));
}

/// Rings out a whole plan with phones that ring (180) but nobody
/// answering; returns (time in s, what) for every new INVITE and BYE.
fn ring_out(w: &mut World, seconds: u64) -> Vec<(u64, String)> {
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

#[test]
fn lync_three_attempts_then_the_fallback_then_disconnect() {
    let mut w = World::new(recall_engine(
        &[
            ("option", "parker-then-fallback"),
            ("max_attempts", "3"),
            ("ring_time", "20s"),
            ("fallback", "sip:operator@127.0.0.1:6050"),
        ],
        30_000,
    ));
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "ly",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    w.out();
    let log = ring_out(&mut w, 120);
    let log: Vec<(u64, &str)> = log.iter().map(|(t, s)| (*t, s.as_str())).collect();
    assert_eq!(
        log,
        [
            (30, "INVITE 6009"),
            (50, "INVITE 6009"),
            (70, "INVITE 6009"),
            (90, "INVITE 6050"),
            (110, "BYE 6001")
        ]
    );
    assert_eq!(w.engine.calls(), 0);
}

#[test]
fn webex_parker_then_the_hunt_group_for_its_wait_time() {
    let mut w = World::new(recall_engine(
        &[
            ("option", "parker-then-hunt-group"),
            ("ring_time", "15s"),
            ("hunt_group", "sip:frontdesk@127.0.0.1:6060"),
            ("hunt_group_wait", "40s"),
        ],
        30_000,
    ));
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "wx",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    w.out();
    let log = ring_out(&mut w, 100);
    let log: Vec<(u64, &str)> = log.iter().map(|(t, s)| (*t, s.as_str())).collect();
    assert_eq!(
        log,
        [(30, "INVITE 6009"), (45, "INVITE 6060"), (85, "BYE 6001")]
    );
}

#[test]
fn webex_hunt_group_only() {
    let mut w = World::new(recall_engine(
        &[
            ("option", "hunt-group-only"),
            ("hunt_group", "sip:frontdesk@127.0.0.1:6060"),
            ("hunt_group_wait", "20s"),
        ],
        30_000,
    ));
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "hg",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    w.out();
    let log = ring_out(&mut w, 60);
    let log: Vec<(u64, &str)> = log.iter().map(|(t, s)| (*t, s.as_str())).collect();
    assert_eq!(
        log,
        [(30, "INVITE 6060"), (50, "BYE 6001")],
        "the parker is never rung"
    );
}

#[test]
fn sipx_transfer_back_rings_the_parker_and_bridges_on_answer() {
    let mut w = World::new(recall_engine(&[("option", "transfer-back")], 30_000));
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "tb",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    w.out();
    let out = w.advance_sip(Duration::from_secs(30));
    let back = invites_to(&out, 6009);
    assert_eq!(back.len(), 1, "{:?}", methods(&out));
    let out = w.reply(back[0].0, &back[0].1, 200, Some(7009));
    assert!(methods(&out).contains(&"ACK 6009".to_string()));
    assert!(
        w.events()
            .iter()
            .any(|e| matches!(e, EngineEvent::RecallAnswered { .. }))
    );
    assert_eq!((w.engine.parked_calls(), w.engine.calls()), (0, 1));
}

#[test]
fn an_attended_park_reservation_never_taken_over_is_freed_when_configured() {
    let orbits: Vec<OrbitConfig> = (701..=702).map(|n| orbit(&n.to_string(), 1)).collect();
    let music = MusicLibrary {
        default: Music::silence(),
        by_key: Default::default(),
        music_on_hold: true,
        prompts: Default::default(),
    };
    let engine = Engine::new(
        EngineConfig {
            max_parked_calls: 10,
            entropy: 8,
            reservation_timeout: Duration::from_secs(30),
            ..config()
        },
        ParkLot::new(orbits, vec![]),
        music,
        Arc::new(BuiltinPolicy),
    );
    let mut w = World::new(engine);
    // Alice reserves 701 and never transfers: freed at 30 s, with a BYE.
    let mut alice = Phone::new("alice", 6009);
    w.call(&mut alice, "res1", "*68701", "");
    // Carol reserves 702 and her caller takes it over: kept.
    let mut carol = Phone::new("carol", 6013);
    let ok = w.call(&mut carol, "res2", "*68702", "");
    let mut bob = Phone::new("bob", 6001);
    let replaces = format!("Replaces: res2;to-tag={};from-tag=carolt\r\n", tag(&ok));
    let invite = bob.invite("res3", "702", &replaces, "0");
    assert_eq!(final_response(&w.send(&bob, invite)).status, 200);
    w.out();
    w.events();
    let out = w.advance_sip(Duration::from_secs(31));
    assert!(
        methods(&out).contains(&"BYE 6009".to_string()),
        "{:?}",
        methods(&out)
    );
    let events = w.events();
    assert!(events.iter().any(|e| matches!(e, EngineEvent::GiveUp { orbit, why: callpark_engine::GiveUpReason::ReservationNotCompleted, .. } if orbit == "701")), "{events:?}");
    assert_eq!(w.engine.lot().parked_on("701").count(), 0);
    assert_eq!(
        w.engine.lot().parked_on("702").count(),
        1,
        "a completed attended park stays"
    );
}

#[test]
fn a_configuration_reload_keeps_parked_calls_and_watchers() {
    let mut w = World::new(engine(vec![], Access::All));
    let lamp = Phone::new("lamp", 6100);
    subscribe(&mut w, &lamp, "701", "rl1", 3600, None, "dialog");
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "rb",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    let mut carl = Phone::new("carl", 6003);
    w.call(
        &mut carl,
        "rc",
        "702",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    w.out();
    w.events();
    // The new configuration drops 702 and adds 799.
    let mut orbits: Vec<OrbitConfig> = ["701", "703", "799"].iter().map(|n| orbit(n, 1)).collect();
    orbits[2].capacity = 3;
    let now = w.now;
    w.engine.reconfigure(
        now,
        ParkLot::new(orbits, vec![]),
        Access::All,
        vec![("fallback".into(), "sip:operator@127.0.0.1:6050".into())],
        callpark_engine::Security::default(),
    );
    let out = w.out();
    // The watcher is still there and hears the state again.
    let n = notifies(&out);
    assert_eq!(n.len(), 1, "{:?}", methods(&out));
    assert!(n[0].0.starts_with("active"));
    assert!(n[0].1.contains("sip:bob@127.0.0.1:6001"));
    // The call on the removed orbit is recalled at once, still retrievable.
    assert_eq!(invites_to(&out, 6009).len(), 1, "{:?}", methods(&out));
    let events = w.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EngineEvent::RecallStarted { orbit, .. } if orbit == "702")),
        "{events:?}"
    );
    assert_eq!(w.engine.parked_calls(), 2);
    // New parks follow the new configuration: 702 is gone, 799 exists.
    let mut dave = Phone::new("dave", 6021);
    assert_eq!(w.call(&mut dave, "rd", "*68702", "").status, 404);
    assert_eq!(w.call(&mut dave, "re", "*68799", "").status, 200);
    // Both old calls can still be retrieved.
    let mut r = Phone::new("r", 6031);
    assert_eq!(w.call(&mut r, "rf", "*88702", "").status, 200);
    assert_eq!(w.call(&mut r, "rg", "*88701", "").status, 200);
}

// ---- Hold music in pacer shards --------------------------------------------

/// Runs `shards` for `ms` milliseconds of the world's time after applying
/// every pending music command; where the packets went.
fn pace_shards(
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

#[test]
fn hold_music_in_shards_follows_the_park_the_latched_address_and_the_retrieve() {
    let mut w = World::new(engine(vec![], Access::All));
    w.engine.pace_music_in_shards(2);
    let mut shards = [
        callpark_media::MusicShard::new(),
        callpark_media::MusicShard::new(),
    ];
    let mut bob = Phone::new("bob", 6001);
    assert_eq!(w.call(&mut bob, "m1", "701", "").status, 200);
    // The engine paces nothing itself; a shard plays to the SDP address.
    let paced_here = w
        .engine
        .pace_media(w.now + Duration::from_millis(50), |_, _| {});
    assert_eq!(paced_here.sent, 0);
    assert_eq!(pace_shards(&mut w, &mut shards, 100), [bob.rtp(); 5]);
    // Bob's RTP really comes from behind a NAT: the music follows it.
    let nat: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mut p = rtp_rs::RtpPacketBuilder::new()
        .payload_type(0)
        .ssrc(1)
        .sequence(1.into())
        .timestamp(0)
        .payload(&[0x11; 160])
        .build()
        .unwrap();
    w.engine.handle_rtp(w.now, &mut p, nat, |_, _| {});
    assert_eq!(pace_shards(&mut w, &mut shards, 100), [nat; 5]);
    // Retrieved: the shard stops.
    let mut carol = Phone::new("carol", 6011);
    assert_eq!(w.call(&mut carol, "m2", "*88701", "").status, 200);
    assert!(pace_shards(&mut w, &mut shards, 100).is_empty());
    assert!(shards.iter().all(|s| s.is_empty()));
}

#[test]
fn a_trusted_proxy_asserts_the_caller_with_p_asserted_identity() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut bob = Phone::new("bob", 6001);
    let invite = bob.invite(
        "pai1",
        "701",
        "P-Asserted-Identity: \"Bob\" <sip:+15551234@pbx.example.com>, <tel:+15551234>\r\n",
        "0",
    );
    let out = w.send(&bob, invite);
    assert_eq!(final_response(&out).status, 200);
    let caller = w.events().into_iter().find_map(|e| match e {
        EngineEvent::Parked { caller, .. } => Some(caller),
        _ => None,
    });
    assert_eq!(caller.as_deref(), Some("sip:+15551234@pbx.example.com"));
}

#[test]
fn a_group_keeps_retrieving_and_watching_its_orbits_to_its_members() {
    let groups = vec![GroupConfig {
        name: "front-desk".into(),
        members: vec!["sip:alice@127.0.0.1".into()],
        destinations: vec!["704".into(), "705".into()],
        recall_params: vec![],
    }];
    let mut security = callpark_engine::Security::default();
    security.groups.insert(
        "front-desk".into(),
        callpark_engine::guard::GroupAccess {
            park: None,
            retrieve: Some(Access::Members),
            subscribe: Some(Access::Members),
        },
    );
    let mut w = World::new(engine_with(groups, Access::All, security));
    let mut caller = Phone::new("caller", 6001);
    let r = w.call(&mut caller, "g1", "704", "");
    assert_eq!(r.status, 200);
    // Bob is no member: he may neither retrieve nor watch 704, but may
    // retrieve from 701, which belongs to no group.
    let mut bob = Phone::new("bob", 6003);
    let invite = bob.invite("b1", "*88704", "", "0");
    let out = w.send(&bob, invite);
    assert_eq!(final_response(&out).status, 403);
    let out = subscribe(&mut w, &bob, "704", "bs1", 3600, None, "dialog");
    assert_eq!(final_response(&out).status, 403);
    let mut other = Phone::new("other", 6005);
    assert_eq!(w.call(&mut other, "o1", "701", "").status, 200);
    let invite = bob.invite("b2", "*88701", "", "0");
    let out = w.send(&bob, invite);
    assert_eq!(final_response(&out).status, 200);
    // Alice, a member, retrieves from 704.
    let mut alice = Phone::new("alice", 6007);
    let invite = alice.invite("a1", "*88704", "", "0");
    let out = w.send(&alice, invite);
    assert_eq!(final_response(&out).status, 200);
}
