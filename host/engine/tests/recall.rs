//! Recalls: plans of each vendor's shape, escape keys, ring patterns, retrieves that win.

use callpark_testkit::*;

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
