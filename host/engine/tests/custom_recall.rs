//! A custom recall plugin, loaded into the real plugin runtime, has its
//! plan followed to the letter: targets, ring times, Alert-Info, display
//! and the re-park delay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use callpark_core::Decision;
use callpark_core::lot::{OrbitConfig, ParkLot};
use callpark_engine::{Engine, EngineConfig, MusicLibrary};
use callpark_media::Music;
use callpark_policy::{Limits, PLUGIN_BUILD_DIR, PluginSource, PolicyRuntime};
use callpark_sip::codec::parse;
use callpark_sip::message::{HeaderView, Message, Method, Request};
use callpark_sip::transaction::{Peer, Transport};

fn sip_out(engine: &mut Engine) -> Vec<(SocketAddr, Request)> {
    std::iter::from_fn(|| engine.poll_transmit())
        .filter_map(|t| match parse(&t.bytes).unwrap() {
            Message::Request(r) => Some((t.peer.addr, r)),
            Message::Response(_) => None,
        })
        .collect()
}

#[test]
fn a_custom_recall_plan_is_followed_to_the_letter() {
    let runtime = PolicyRuntime::new(Limits::default(), None).unwrap();
    let path = format!("{PLUGIN_BUILD_DIR}/fixture_custom_recall.wasm");
    runtime
        .load(
            Decision::Recall,
            &PluginSource::new(path.clone(), std::fs::read(&path).unwrap()),
            vec![],
        )
        .unwrap();
    let orbit = OrbitConfig {
        number: "701".into(),
        name: None,
        enabled: true,
        capacity: 1,
        music: None,
        group: None,
        recall_after_ms: 10_000,
        escape_key: None,
        blf_confirmed: false,
        recall_params: Vec::new(),
    };
    let mut engine = Engine::new(
        EngineConfig {
            max_parked_calls: 10,
            entropy: 11,
            ..callpark_testkit::config()
        },
        ParkLot::new(vec![orbit], vec![]),
        MusicLibrary {
            default: Music::silence(),
            by_key: Default::default(),
            music_on_hold: true,
            prompts: Default::default(),
        },
        Arc::new(runtime),
    );
    let body = "v=0\r\no=b 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7001 RTP/AVP 0\r\n";
    let invite = format!(
        "INVITE sip:701@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6001;branch=z9hG4bKc1\r\nFrom: <sip:bob@127.0.0.1:6001>;tag=b\r\nTo: <sip:701@127.0.0.1:5060>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@127.0.0.1:6001>\r\nReferred-By: <sip:alice@127.0.0.1:6009>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let phone = Peer {
        transport: Transport::Udp(0),
        addr: "127.0.0.1:6001".parse().unwrap(),
    };
    engine.handle_sip(Duration::ZERO, invite.as_bytes(), phone);
    // The phone acknowledges our 200 (an unacknowledged one would end the
    // call after 32 s).
    let to = std::iter::from_fn(|| engine.poll_transmit())
        .find_map(|t| match parse(&t.bytes).unwrap() {
            Message::Response(r) if r.status == 200 => r.header("To").map(str::to_string),
            _ => None,
        })
        .expect("a 200");
    let ack = format!(
        "ACK sip:callpark@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6001;branch=z9hG4bKc1ack\r\nFrom: <sip:bob@127.0.0.1:6001>;tag=b\r\nTo: {to}\r\nCall-ID: c1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    engine.handle_sip(Duration::ZERO, ack.as_bytes(), phone);
    sip_out(&mut engine);

    // Drive virtual time, recording when each new INVITE and CANCEL went out.
    let mut log: Vec<(u64, String, Request)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut now = Duration::ZERO;
    while let Some(t) = engine
        .poll_timeout()
        .filter(|t| *t <= Duration::from_secs(40))
    {
        now = t.max(now);
        engine.handle_timeout(now);
        engine.pace_media(now, |_, _| {});
        for (addr, r) in sip_out(&mut engine) {
            let first = seen.insert((r.method.clone(), r.call_id().unwrap().to_string()));
            if first && matches!(r.method, Method::Invite | Method::Cancel) {
                log.push((
                    now.as_millis() as u64,
                    format!("{} {}", r.method, addr.port()),
                    r,
                ));
            }
        }
    }
    let steps: Vec<(u64, &str)> = log.iter().map(|(t, what, _)| (*t, what.as_str())).collect();
    assert_eq!(
        steps,
        [
            (10_000, "INVITE 6070"),
            (15_000, "CANCEL 6070"),
            (15_000, "INVITE 6071"),
            (18_000, "CANCEL 6071"),
            // Re-parked for 20 s: the plan starts over.
            (38_000, "INVITE 6070"),
        ]
    );
    let desk = &log[0].2;
    assert_eq!(desk.header("Alert-Info"), Some("<urn:alert:tone:custom>"));
    assert_eq!(desk.from().unwrap().display.as_deref(), Some("VIP 701"));
    let boss = &log[2].2;
    assert_eq!(boss.header("Alert-Info"), None);
    assert_eq!(
        boss.from().unwrap().display.as_deref(),
        Some("Still waiting on 701")
    );
    assert_eq!(
        engine.parked_calls(),
        1,
        "still parked and retrievable throughout"
    );
}
