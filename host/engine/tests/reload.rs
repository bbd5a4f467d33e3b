//! A configuration reload while calls stay parked.

use callpark_testkit::*;

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
        Reconfiguration {
            lot: ParkLot::new(orbits, vec![]),
            access: Access::All,
            recall_params: vec![("fallback".into(), "sip:operator@127.0.0.1:6050".into())],
            security: callpark_engine::Security::default(),
            music: None,
        },
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

/// New music for an orbit reaches the caller parked on it at once, in the
/// same RTP stream: the SSRC stays, the sequence carries on without a
/// gap, and the payload is the new music's.
#[test]
fn new_music_for_an_orbit_reaches_its_parked_caller_in_the_same_stream() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut bob = Phone::new("bob", 6001);
    w.call(
        &mut bob,
        "mb",
        "701",
        "Referred-By: <sip:alice@127.0.0.1:6009>\r\n",
    );
    w.out();
    let to_bob = |rtp: &[(SocketAddr, Vec<u8>)]| -> Vec<(u32, u16, Vec<u8>)> {
        rtp.iter()
            .filter(|(dest, _)| *dest == bob.rtp())
            .map(|(_, p)| {
                let r = rtp_rs::RtpReader::new(p).unwrap();
                (r.ssrc(), r.sequence_number().into(), r.payload().to_vec())
            })
            .collect()
    };
    let before = to_bob(&w.advance(Duration::from_millis(200)));
    assert!(before.len() >= 9, "{}", before.len());
    // The tone varies within a frame; `sales.wav` is one constant level.
    let constant = |p: &[u8]| p.iter().all(|b| *b == p[0]);
    assert!(before.iter().all(|(_, _, p)| !constant(p)));

    let mut orbits: Vec<OrbitConfig> = (701..=705).map(|n| orbit(&n.to_string(), 1)).collect();
    orbits[0].music = Some("sales.wav".into());
    let now = w.now;
    w.engine.reconfigure(
        now,
        Reconfiguration {
            lot: ParkLot::new(orbits, vec![]),
            access: Access::All,
            recall_params: vec![],
            security: callpark_engine::Security::default(),
            music: Some(music()),
        },
    );
    let after = to_bob(&w.advance(Duration::from_millis(200)));
    assert!(after.len() >= 9, "{}", after.len());
    let (ssrc, last_seq, _) = before.last().unwrap();
    assert_eq!(after[0].0, *ssrc, "the same stream");
    assert_eq!(
        after[0].1,
        last_seq.wrapping_add(1),
        "no gap in the sequence"
    );
    assert!(
        after.iter().all(|(_, _, p)| constant(p)),
        "the new music plays"
    );
}
