//! Parking: blind, by code, in a group, attended, with access rules, asserted identities.

use callpark_testkit::*;

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
