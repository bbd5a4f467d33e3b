//! Is the caller still there: probes, lifetimes, unACKed answers, the SIGTERM drain.

use callpark_testkit::*;

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
