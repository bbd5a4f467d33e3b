//! SIP details every peer sees: OPTIONS, Require, unknown methods, Record-Route.

use callpark_testkit::*;

#[test]
fn options_unknown_methods_and_codecs() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut p = Phone::new("p", 6001);
    let options = p
        .in_dialog("OPTIONS", "o1", "x")
        .into_iter()
        .collect::<Vec<u8>>();
    let options = String::from_utf8(options).unwrap().replace(";tag=x", "");
    let r = final_response(&w.send(&p, options.into_bytes()));
    assert_eq!(r.status, 200);
    assert!(r.header("Allow").unwrap().contains("INVITE"));
    let foo = String::from_utf8(p.in_dialog("FOO", "f1", "x"))
        .unwrap()
        .replace(";tag=x", "");
    assert_eq!(final_response(&w.send(&p, foo.into_bytes())).status, 501);
    let g722 = p.invite("n1", "*68701", "", "9");
    let r = final_response(&w.send(&p, g722));
    assert_eq!(r.status, 488);
    assert_eq!(w.engine.parked_calls(), 0);
}

/// RFC 3261 §12.1.1: a 2xx that makes a dialog copies the request's
/// Record-Route, in order, so that the phone's ACK, BYE and re-INVITE
/// follow the proxies; our own in-dialog requests use that route set.
#[test]
fn record_route_is_copied_into_the_2xx_of_invite_and_subscribe() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut bob = Phone::new("bob", 6001);
    let rr = "Record-Route: <sip:127.0.0.1:5070;lr;ftag=x>\r\nRecord-Route: <sip:10.0.0.1;lr>\r\n";
    let invite = bob.invite("rr1", "701", rr, "0");
    let ok = final_response(&w.send(&bob, invite));
    assert_eq!(ok.status, 200);
    let routes: Vec<&str> = ok.headers.get_all("Record-Route").collect();
    assert_eq!(
        routes,
        ["<sip:127.0.0.1:5070;lr;ftag=x>", "<sip:10.0.0.1;lr>"]
    );
    let text = String::from_utf8(bob.in_dialog("SUBSCRIBE", "rr2", "x"))
        .unwrap()
        .replace(";tag=x", "")
        .replace("CSeq: 3 SUBSCRIBE\r\n", &format!("CSeq: 3 SUBSCRIBE\r\nEvent: dialog\r\nExpires: 60\r\nContact: <sip:bob@127.0.0.1:6001>\r\n{rr}"))
        .replace("sip:callpark@", "sip:701@");
    let out = w.send(&bob, text.into_bytes());
    let ok = final_response(&out);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.headers.get_all("Record-Route").count(), 2);
    let notify = requests(&out)
        .into_iter()
        .find(|(_, r)| r.method.to_string() == "NOTIFY");
    let (_, notify) = notify.expect("a NOTIFY");
    let route: Vec<&str> = notify.headers.get_all("Route").collect();
    assert_eq!(
        route,
        ["<sip:127.0.0.1:5070;lr;ftag=x>", "<sip:10.0.0.1;lr>"]
    );
}

/// RFC 3261 details: the 200 to OPTIONS carries a To tag (§8.2.6.2), an
/// unknown Require gets 420 naming it (§8.2.2.3), and a method SIP defines
/// that we do not take gets 405 with Allow (MESSAGE to an orbit).
#[test]
fn options_tag_require_and_methods_we_do_not_take() {
    let mut w = World::new(engine(vec![], Access::All));
    let mut p = Phone::new("p", 6001);
    let bare = |text: Vec<u8>| String::from_utf8(text).unwrap().replace(";tag=x", "");
    let options = bare(p.in_dialog("OPTIONS", "o1", "x"));
    let r = final_response(&w.send(&p, options.into_bytes()));
    assert!(r.to().unwrap().tag().is_some(), "{r:?}");
    let required = bare(p.in_dialog("OPTIONS", "o2", "x")).replace(
        "Max-Forwards",
        "Require: replaces, 100rel, foo\r\nMax-Forwards",
    );
    let r = final_response(&w.send(&p, required.into_bytes()));
    assert_eq!(r.status, 420);
    assert_eq!(r.header("Unsupported"), Some("100rel, foo"));
    let invite = p.invite("o3", "701", "Require: replaces\r\n", "0");
    assert_eq!(final_response(&w.send(&p, invite)).status, 200);
    let message = bare(p.in_dialog("MESSAGE", "o4", "x")).replace("sip:callpark@", "sip:701@");
    let r = final_response(&w.send(&p, message.into_bytes()));
    assert_eq!(r.status, 405);
    assert!(r.header("Allow").unwrap().contains("INVITE"));
}
