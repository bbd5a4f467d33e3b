//! Operators' commands: the parked-call directory and hanging up a parked
//! call, answered on `poll_reply` with the command's tag.

use callpark_engine::{Command, ParkedView, RecallView, Reply};
use callpark_testkit::*;

fn command(w: &mut World, tag: u64, command: Command) -> Reply {
    w.engine.handle_command(w.now, tag, command);
    let (got, reply) = w.engine.poll_reply().expect("a reply");
    assert_eq!(got, tag);
    assert!(w.engine.poll_reply().is_none(), "one reply per command");
    reply
}

fn directory(w: &mut World) -> Vec<ParkedView> {
    match command(w, 1, Command::ListParked) {
        Reply::Parked(calls) => calls,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_directory_lists_parked_calls_with_positions_and_a_hang_up_frees_the_orbit() {
    let mut w = World::new(recall_engine(&[], 45_000));
    let by_alice = "Referred-By: <sip:alice@127.0.0.1:6009>\r\n";
    let mut bob = Phone::new("bob", 6001);
    let mut carol = Phone::new("carol", 6003);
    assert_eq!(w.call(&mut bob, "d1", "701", by_alice).status, 200);
    w.advance(std::time::Duration::from_secs(5));
    assert_eq!(w.call(&mut carol, "d2", "*68702", "").status, 200);
    w.events();

    let calls = directory(&mut w);
    assert_eq!(calls.len(), 2, "{calls:?}");
    let (b, c) = (&calls[0], &calls[1]);
    assert_eq!((b.orbit.as_str(), b.position), ("701", 1));
    assert_eq!(b.caller_uri, "sip:bob@127.0.0.1:6001");
    assert_eq!(b.call_id, "d1");
    assert_eq!(b.parker, "sip:alice@127.0.0.1:6009");
    assert_eq!(b.parked_at_ms, 1_767_225_600_000);
    // Recall is due recall_after after the park, on the wall clock.
    assert_eq!(b.recall_at_ms, Some(1_767_225_600_000 + 45_000));
    assert_eq!(b.recall, RecallView::Idle);
    assert_eq!((c.orbit.as_str(), c.call_id.as_str()), ("702", "d2"));
    assert_eq!(c.parked_at_ms, 1_767_225_605_000);

    // Past recall_after the parker rings: the directory says so.
    w.advance(std::time::Duration::from_secs(41));
    let ringing = directory(&mut w);
    assert!(
        matches!(&ringing[0].recall, RecallView::Ringing { target, step: 1, .. } if target.contains("alice")),
        "{:?}",
        ringing[0]
    );
    w.out();

    // Hang up on carol: she gets a BYE, her orbit is free, the reply is her
    // call as it was.
    w.engine
        .handle_command(w.now, 7, Command::HangUp { call: c.id });
    let out = w.out();
    assert!(
        requests(&out)
            .iter()
            .any(|(p, r)| r.method.to_string() == "BYE" && *p == carol.peer()),
        "{:?}",
        methods(&out)
    );
    match w.engine.poll_reply() {
        Some((7, Reply::HungUp(view))) => assert_eq!(view.call_id, "d2"),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.engine.lot().parked_on("702").count(), 0);
    assert_eq!(directory(&mut w).len(), 1);
    // Again: the call is gone.
    assert_eq!(
        command(&mut w, 8, Command::HangUp { call: c.id }),
        Reply::NoSuchCall(c.id)
    );
    assert!(w.events().iter().any(|e| matches!(
        e,
        callpark_engine::EngineEvent::GiveUp {
            why: callpark_engine::GiveUpReason::Operator,
            ..
        }
    )));
}

#[test]
fn a_fifo_orbit_lists_its_calls_in_queue_order() {
    let mut w = World::new(engine(vec![], Access::All));
    for (i, name) in ["first", "second"].iter().enumerate() {
        let mut p = Phone::new(name, 6001 + 2 * i as u16);
        assert_eq!(w.call(&mut p, name, "*68799", "").status, 200);
    }
    let calls = directory(&mut w);
    let queue: Vec<(&str, usize)> = calls
        .iter()
        .map(|c| (c.call_id.as_str(), c.position))
        .collect();
    assert_eq!(queue, [("first", 1), ("second", 2)]);
    // A retrieve takes the first; the second moves up.
    let mut r = Phone::new("r", 6021);
    assert_eq!(w.call(&mut r, "take", "*88799", "").status, 200);
    let calls = directory(&mut w);
    assert_eq!(
        (calls.len(), calls[0].call_id.as_str(), calls[0].position),
        (1, "second", 1)
    );
}

#[test]
fn the_subscriptions_list_names_each_lamp_watcher() {
    let mut w = World::new(engine(vec![], Access::All));
    let watcher = Phone::new("lamp", 6031);
    let out = subscribe(&mut w, &watcher, "701", "lamp-701", 600, None, "dialog");
    assert_eq!(final_response(&out).status, 200);
    match command(&mut w, 3, Command::ListSubscriptions) {
        Reply::Subscriptions(subs) => {
            assert_eq!(subs.len(), 1, "{subs:?}");
            let s = &subs[0];
            assert_eq!((s.kind, s.watched.as_str()), ("orbit", "701"));
            assert_eq!(s.call_id, "lamp-701");
            assert!(s.watcher.contains("sip:lamp@127.0.0.1:6031"), "{s:?}");
            assert_eq!(s.expires_at_ms, 1_767_225_600_000 + 600_000);
        }
        other => panic!("{other:?}"),
    }
    // Unsubscribed (Expires: 0), it is gone.
    let tag = final_response(&out)
        .to()
        .unwrap()
        .tag()
        .unwrap()
        .to_string();
    subscribe(&mut w, &watcher, "701", "lamp-701", 0, Some(&tag), "dialog");
    assert_eq!(
        command(&mut w, 4, Command::ListSubscriptions),
        Reply::Subscriptions(vec![])
    );
}

#[test]
fn a_move_takes_the_call_to_another_orbit_and_tells_both_lamps() {
    let mut w = World::new(engine(vec![], Access::All));
    let watcher = Phone::new("lamp", 6031);
    let mut bob = Phone::new("bob", 6001);
    let mut carol = Phone::new("carol", 6003);
    assert_eq!(w.call(&mut bob, "m1", "*68701", "").status, 200);
    assert_eq!(w.call(&mut carol, "m2", "*68702", "").status, 200);
    for orbit in ["701", "703"] {
        let out = subscribe(
            &mut w,
            &watcher,
            orbit,
            &format!("lamp-{orbit}"),
            600,
            None,
            "dialog",
        );
        assert_eq!(final_response(&out).status, 200);
    }
    w.events();
    let id = directory(&mut w)[0].id;

    // Refusals change nothing: a busy orbit, an unknown one, the same one.
    for (to, status) in [("702", 409), ("999", 404), ("701", 409)] {
        match command(
            &mut w,
            2,
            Command::Move {
                call: id,
                orbit: to.into(),
            },
        ) {
            Reply::Refused { status: s, .. } => assert_eq!(s, status, "{to}"),
            other => panic!("{to}: {other:?}"),
        }
    }
    assert_eq!(w.engine.lot().parked_on("701").count(), 1);
    assert!(w.out().is_empty(), "a refusal sends nothing");

    w.engine.handle_command(
        w.now,
        3,
        Command::Move {
            call: id,
            orbit: "703".into(),
        },
    );
    match w.engine.poll_reply() {
        Some((3, Reply::Moved(view))) => {
            assert_eq!((view.orbit.as_str(), view.call_id.as_str()), ("703", "m1"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.engine.lot().parked_on("701").count(), 0);
    assert_eq!(w.engine.lot().parked_on("703").count(), 1);
    // Both lamps hear of it: 701 goes dark, 703 lights.
    let told = notifies(&w.out());
    assert_eq!(told.len(), 2, "{told:?}");
    let about = |orbit: &str| {
        told.iter()
            .find(|(_, body)| body.contains(&format!("sip:{orbit}@")))
            .map(|(_, body)| body.clone())
            .unwrap_or_else(|| panic!("no NOTIFY about {orbit}: {told:?}"))
    };
    assert!(about("701").contains("terminated"), "{}", about("701"));
    assert!(!about("703").contains("terminated"), "{}", about("703"));
    assert!(w.events().iter().any(|e| matches!(
        e,
        callpark_engine::EngineEvent::Moved { from, to, .. } if from == "701" && to == "703"
    )));
    // The music still reaches bob from the new orbit.
    assert!(
        w.advance(std::time::Duration::from_millis(200))
            .iter()
            .any(|(dest, _)| *dest == bob.rtp())
    );
}
