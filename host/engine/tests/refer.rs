//! Server-driven park (RFC 5359 §2.15).

use callpark_testkit::*;

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
