//! Busy lamps: NOTIFYs that follow the lot, group lamps, pickups.

use callpark_testkit::*;

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
