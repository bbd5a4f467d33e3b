//! The parked-call directory and hanging up through the admin API, on the
//! real binary: raw SIP callers parked, `GET /api/v1/parked` shows them
//! with their callers and queue positions (filtered by orbit, range and
//! group), and `DELETE /api/v1/parked/{id}` sends the caller a BYE and
//! frees the orbit. Viewers read; operators act.

mod support;

use std::time::Duration;

use support::*;

const VIEWER: &str = "parked-viewer";
const OPERATOR: &str = "parked-operator";

fn hash(secret: &str) -> String {
    callpark_server::admin::hex(&callpark_server::admin::token_hash(secret))
}

/// A raw caller on `*68<orbit>` (a directed park from the caller itself).
fn park_directed(server: &Server, orbit: &str, call_id: &str) -> ParkedCaller {
    park_caller(
        server,
        &format!("*68{orbit}"),
        call_id,
        "sip:parker@127.0.0.1",
    )
}

/// Whether `caller` gets a BYE within `within` (answered 200).
fn gets_bye(caller: &ParkedCaller, within: Duration) -> bool {
    next_request(&caller.sip, "BYE", within).is_some()
}

#[test]
fn the_directory_shows_parked_calls_and_an_operator_hangs_one_up() {
    let server = Server::start_with(&format!(
        "[admin]\n[[admin.token]]\nrole = \"viewer\"\nsha256 = \"{}\"\n[[admin.token]]\nrole = \"operator\"\nsha256 = \"{}\"\n",
        hash(VIEWER),
        hash(OPERATOR)
    ));
    wait_log(&server, "admin API listening", 1);
    let port = server.admin;
    let alice = park_caller(&server, "701", "dir-alice", "sip:parker@127.0.0.1");
    let bob = park_directed(&server, "799", "dir-bob");
    let carol = park_directed(&server, "799", "dir-carol");

    let all = get_json(port, "/api/v1/parked", VIEWER);
    let calls = all.as_array().unwrap();
    assert_eq!(calls.len(), 3, "{all}");
    let row = |call_id: &str| {
        calls
            .iter()
            .find(|c| c["call_id"] == call_id)
            .unwrap_or_else(|| panic!("{call_id} in {all}"))
    };
    let a = row("dir-alice");
    assert_eq!(
        (a["orbit"].as_str(), a["position"].as_u64()),
        (Some("701"), Some(1))
    );
    assert_eq!(a["parker"], "sip:parker@127.0.0.1");
    assert!(
        a["caller_uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("sip:c@127.0.0.1:")),
        "{a}"
    );
    assert_eq!(a["recall"]["state"], "idle");
    assert!(a["parked_at_ms"].as_u64() > Some(1_700_000_000_000), "{a}");
    assert_eq!(row("dir-bob")["position"], 1);
    assert_eq!(row("dir-carol")["position"], 2);
    assert_eq!(row("dir-carol")["orbit"], "799");

    // Filters: by orbit, range (main is 701-705) and group (front-desk
    // is 704 and 705); an unknown range or group is a 404.
    let count = |path: &str| get_json(port, path, VIEWER).as_array().unwrap().len();
    assert_eq!(count("/api/v1/parked?orbit=799"), 2);
    assert_eq!(count("/api/v1/parked?range=main"), 1);
    assert_eq!(count("/api/v1/parked?group=front-desk"), 0);
    let (status, _, body) = http(port, "GET", "/api/v1/parked?range=nope", Some(VIEWER));
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = http(port, "GET", "/api/v1/parked?colour=red", Some(VIEWER));
    assert_eq!(status, 400, "{body}");

    // One call by id; a viewer may not hang up.
    let id = row("dir-bob")["id"].as_u64().unwrap();
    let one = get_json(port, &format!("/api/v1/parked/{id}"), VIEWER);
    assert_eq!(one["call_id"], "dir-bob");
    let (status, _, body) = http(
        port,
        "DELETE",
        &format!("/api/v1/parked/{id}"),
        Some(VIEWER),
    );
    assert_eq!(status, 403, "{body}");
    assert!(!gets_bye(&bob, Duration::from_millis(500)));

    // The operator hangs up bob: bob gets a BYE, carol moves up.
    let (status, _, body) = http(
        port,
        "DELETE",
        &format!("/api/v1/parked/{id}"),
        Some(OPERATOR),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("dir-bob"), "{body}");
    assert!(gets_bye(&bob, Duration::from_secs(5)), "bob got no BYE");
    let after = get_json(port, "/api/v1/parked?orbit=799", VIEWER);
    assert_eq!(after.as_array().unwrap().len(), 1, "{after}");
    assert_eq!(after[0]["call_id"], "dir-carol");
    assert_eq!(after[0]["position"], 1);
    wait_log(&server, "hung up by an operator", 1);

    // Carol moves from 799 to 702: the directory follows; a busy or
    // unknown orbit is refused and nothing changes.
    let carol_id = after[0]["id"].as_u64().unwrap();
    let move_to = |token: &str, orbit: &str| {
        http_with(
            port,
            "POST",
            &format!("/api/v1/parked/{carol_id}/move"),
            Some(token),
            &format!("{{\"orbit\": \"{orbit}\"}}"),
        )
    };
    assert_eq!(move_to(VIEWER, "702").0, 403);
    assert_eq!(move_to(OPERATOR, "701").0, 409, "701 holds alice");
    assert_eq!(move_to(OPERATOR, "999").0, 404);
    let (status, _, body) = move_to(OPERATOR, "702");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"orbit\":\"702\""), "{body}");
    let on_702 = get_json(port, "/api/v1/parked?orbit=702", VIEWER);
    assert_eq!(on_702[0]["call_id"], "dir-carol", "{on_702}");
    assert_eq!(count("/api/v1/parked?orbit=799"), 0);
    wait_log(&server, "event=\"moved\"", 1);
    let (status, _, body) = http_with(
        port,
        "POST",
        &format!("/api/v1/parked/{carol_id}/move"),
        Some(OPERATOR),
        "{\"orbit\": 702, \"x\": 1}",
    );
    assert_eq!(status, 422, "{body}");

    // Gone now, and ids are numbers.
    let (status, _, body) = http(
        port,
        "DELETE",
        &format!("/api/v1/parked/{id}"),
        Some(OPERATOR),
    );
    assert_eq!(status, 404, "{body}");
    let (status, _, _) = http(port, "GET", "/api/v1/parked/nope", Some(VIEWER));
    assert_eq!(status, 404);
    // No token, no directory.
    let (status, _, _) = http(port, "GET", "/api/v1/parked", None);
    assert_eq!(status, 401);

    // A busy-lamp watcher on 701 shows in the subscriptions list.
    let lamp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    lamp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = lamp.local_addr().unwrap();
    let a = server.addr();
    let subscribe = format!(
        "SUBSCRIBE sip:701@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKlampsub\r\nFrom: <sip:lamp@{me}>;tag=lampt\r\nTo: <sip:701@{a}>\r\nCall-ID: lamp-701\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:lamp@{me}>\r\nEvent: dialog\r\nAccept: application/dialog-info+xml\r\nExpires: 600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    lamp.send_to(subscribe.as_bytes(), a).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = lamp
        .recv_from(&mut buf)
        .expect("an answer to the SUBSCRIBE");
    assert!(
        buf[..n].starts_with(b"SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let subs = get_json(port, "/api/v1/subscriptions", VIEWER);
    let subs = subs.as_array().unwrap();
    assert_eq!(subs.len(), 1, "{subs:?}");
    assert_eq!(subs[0]["kind"], "orbit");
    assert_eq!(subs[0]["watched"], "701");
    assert_eq!(subs[0]["call_id"], "lamp-701");
    assert!(
        subs[0]["watcher"]
            .as_str()
            .is_some_and(|w| w.contains("sip:lamp@127.0.0.1"))
    );

    alice.hang_up();
    carol.hang_up();
    let (clean, log) = server.stop();
    assert!(clean, "{log}");
}
