//! Retrieving: the bridge and its relay, FIFO orbits, hold and resume, load in virtual time, group rules.

use callpark_testkit::*;

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
