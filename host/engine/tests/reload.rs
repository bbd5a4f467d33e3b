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
