//! What WIT `callpark:policy@0.2.0` adds, through the real binary.
//!
//! The events slot: an events plugin (the `fixture_events` component) is
//! told of park events off the decision path. A granted local HTTP receiver
//! gets a POST per event and a SIP MESSAGE reaches the URI the plugin
//! names; a plugin that calls a host it was not granted, loops or traps
//! leaves every call as it was, and the failure is counted in the admin
//! API.
//!
//! A bare orbit: what dialing an empty orbit does is the dialing plugin's
//! to say (the default plugin's `bare_orbit` param), and a 0.1.0 dialing
//! plugin keeps the meaning it had, beside 0.2.0 plugins in the other slots.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;

fn fixture() -> String {
    format!("{}/fixture_events.wasm", callpark_policy::PLUGIN_BUILD_DIR)
}

/// A local HTTP receiver: the request line and body of every request, in
/// order; each answered 204.
fn http_receiver() -> (u16, mpsc::Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                let lower = header.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length.min(4096)];
            let _ = reader.read_exact(&mut body);
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            if tx
                .send((
                    line.trim_end().to_string(),
                    String::from_utf8_lossy(&body).to_string(),
                ))
                .is_err()
            {
                return;
            }
        }
    });
    (port, rx)
}

/// The next SIP MESSAGE `socket` gets, answered 200; its whole text.
fn next_message(socket: &UdpSocket) -> String {
    next_request(socket, "MESSAGE", Duration::from_secs(10)).expect("a MESSAGE")
}

/// The events slot as the admin API shows it.
fn events_slot(server: &Server, secret: &str) -> serde_json::Value {
    get_json(server.admin, "/api/v1/plugins/events", secret)
}

/// Music reaches a parked caller: it is parked and the SIP loop is serving.
fn hears_music(caller: &ParkedCaller) {
    let mut buf = [0u8; 2048];
    let (n, _) = caller.rtp.recv_from(&mut buf).expect("hold music");
    assert!(n > 12, "an RTP packet");
}

#[test]
fn a_granted_events_plugin_reaches_its_receiver_and_sends_the_message_it_asks_for() {
    let secret = "events-granted";
    let (granted, posts) = http_receiver();
    let reception = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rport = reception.local_addr().unwrap().port();
    let server = Server::start_with(&format!(
        r#"
[plugins]
events = "{fixture}"
events_http = ["127.0.0.1:{granted}"]
[plugins.params.events]
http = "http://127.0.0.1:{granted}/hook"
notify = "sip:reception@127.0.0.1:{rport}"
{token}"#,
        fixture = fixture(),
        token = admin_token(secret)
    ));

    let caller = park_caller(&server, "701", "events-granted-1", "sip:parker@127.0.0.1");
    hears_music(&caller);
    let message = next_message(&reception);
    assert!(
        message.starts_with(&format!("MESSAGE sip:reception@127.0.0.1:{rport} SIP/2.0")),
        "{message}"
    );
    assert!(message.contains("Content-Type: text/plain"), "{message}");
    assert!(message.contains("parked on 701"), "{message}");
    let (line, body) = posts.recv_timeout(Duration::from_secs(10)).expect("a POST");
    assert_eq!(line, "POST /hook HTTP/1.1");
    assert!(body.starts_with("parked 701 "), "{body}");

    caller.hang_up();
    let (_, body) = posts.recv_timeout(Duration::from_secs(10)).expect("a POST");
    assert!(body.starts_with("abandoned 701 "), "{body}");

    let slot = events_slot(&server, secret);
    assert_eq!(slot["loaded"]["wit_version"], "0.2.0", "{slot}");
    assert_eq!(
        slot["http_hosts"][0],
        format!("127.0.0.1:{granted}"),
        "{slot}"
    );
    assert_eq!(slot["http_denied"], 0, "{slot}");
    assert_eq!(slot["stats"]["traps"], 0, "{slot}");
    assert_eq!(slot["stats"]["timeouts"], 0, "{slot}");
    let (clean, log) = server.stop();
    assert!(clean, "{log}");
}

#[test]
fn an_events_plugin_that_calls_an_ungranted_host_loops_or_traps_leaves_calls_untouched_and_is_counted()
 {
    for mode in ["ungranted", "loop", "trap"] {
        let secret = "events-misbehaving";
        let (ungranted, posts) = http_receiver();
        let params = match mode {
            "ungranted" => format!("http = \"http://127.0.0.1:{ungranted}/hook\""),
            other => format!("mode = \"{other}\""),
        };
        let server = Server::start_with(&format!(
            r#"
[plugins]
events = "{fixture}"
[plugins.params.events]
{params}
{token}"#,
            fixture = fixture(),
            token = admin_token(secret)
        ));
        // Three calls parked one after the other, each answered and
        // hearing music, then hung up: six events for the plugin, three of
        // them `abandoned`, on which the looping and trapping modes fail.
        let started = Instant::now();
        for i in 0..3 {
            let caller = park_caller(
                &server,
                "701",
                &format!("events-{mode}-{i}"),
                "sip:parker@127.0.0.1",
            );
            hears_music(&caller);
            caller.hang_up();
        }
        println!(
            "{mode}: three park + hang-up cycles in {} ms",
            started.elapsed().as_millis()
        );
        // The events thread catches up (bounded).
        let deadline = Instant::now() + Duration::from_secs(20);
        let counted = |slot: &serde_json::Value| match mode {
            "ungranted" => slot["http_denied"].as_u64().unwrap_or(0) >= 6,
            "loop" => slot["stats"]["timeouts"].as_u64().unwrap_or(0) >= 3,
            _ => slot["stats"]["traps"].as_u64().unwrap_or(0) >= 3,
        };
        let mut slot = events_slot(&server, secret);
        while !counted(&slot) {
            assert!(Instant::now() < deadline, "{mode}: not counted: {slot}");
            std::thread::sleep(Duration::from_millis(100));
            slot = events_slot(&server, secret);
        }
        match mode {
            "ungranted" => {
                assert!(posts.try_recv().is_err(), "an ungranted host was reached");
                assert!(server.log().contains("plugin HTTP request denied"));
            }
            // The other three events were observed without a failure.
            _ => assert!(slot["stats"]["calls"].as_u64() >= Some(6), "{slot}"),
        }
        if mode != "ungranted" {
            assert!(
                server
                    .log()
                    .contains("events plugin failed; the call goes on untouched"),
                "{mode}"
            );
        }
        let (clean, log) = server.stop();
        assert!(clean, "{mode}: {log}");
    }
}

/// Dials a bare orbit from a phone that sends no Referred-By (not a
/// transfer); the final status and the Warning, if any. A 200 is ACKed and
/// hung up.
fn dial_bare(server: &Server, orbit: &str, call_id: &str) -> (u16, String) {
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    sip.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = sip.local_addr().unwrap();
    let a = server.addr();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
    let invite = format!(
        "INVITE sip:{orbit}@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}\r\nFrom: <sip:dialer@{me}>;tag=d\r\nTo: <sip:{orbit}@{a}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:dialer@{me}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    sip.send_to(invite.as_bytes(), a).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = sip.recv_from(&mut buf).expect("an answer");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let status: u16 = text.get(8..11).and_then(|s| s.parse().ok()).unwrap_or(0);
        if status < 200 {
            continue;
        }
        let header = |name: &str| {
            text.lines()
                .find(|l| l.to_ascii_lowercase().starts_with(name))
                .unwrap_or_default()
                .to_string()
        };
        let to = header("to:");
        let ack = format!(
            "ACK sip:{orbit}@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}ack\r\nFrom: <sip:dialer@{me}>;tag=d\r\n{to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        sip.send_to(ack.as_bytes(), a).unwrap();
        if status == 200 {
            let bye = format!(
                "BYE sip:{orbit}@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}bye\r\nFrom: <sip:dialer@{me}>;tag=d\r\n{to}\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            sip.send_to(bye.as_bytes(), a).unwrap();
        }
        return (status, header("warning:"));
    }
}

#[test]
fn the_dialing_plugin_decides_what_a_bare_empty_orbit_means_and_a_0_1_plugin_keeps_its_meaning() {
    let secret = "bare-orbit";
    let fixtures = callpark_policy::PLUGIN_BUILD_DIR;
    for (setup, empty_status) in [
        // The default 0.2.0 plugin: park when empty (sipX, FreeSWITCH).
        (String::new(), 200),
        // Told to retrieve: 404 on an empty orbit.
        (
            "[plugins.params.dialing]\nbare_orbit = \"retrieve\"\n".to_string(),
            404,
        ),
        // A 0.1.0 dialing plugin beside the 0.2.0 allocator and recall
        // plugins: its "retrieve" on an empty orbit parks, as before.
        (
            format!("[plugins]\ndialing = \"{fixtures}/fixture_dialing_0_1.wasm\"\n"),
            200,
        ),
    ] {
        let server = Server::start_with(&format!("{setup}{}", admin_token(secret)));
        let (status, warning) = dial_bare(&server, "702", "bare-empty");
        assert_eq!(status, empty_status, "{setup}: {warning}");
        if status == 404 {
            assert!(warning.contains("Nothing parked on 702"), "{warning}");
        }
        // An orbit holding a call: dialing it bare retrieves the call.
        let caller = park_caller(&server, "703", "bare-held", "sip:parker@127.0.0.1");
        hears_music(&caller);
        let (status, warning) = dial_bare(&server, "703", "bare-retrieve");
        assert_eq!(status, 200, "{setup}: {warning}");
        wait_log(&server, "event=\"retrieved\"", 1);
        let slots = get_json(server.admin, "/api/v1/plugins", secret);
        let version = |slot: &str| {
            slots
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["slot"] == slot)
                .map(|s| s["loaded"]["wit_version"].clone())
                .unwrap()
        };
        assert_eq!(version("allocator"), "0.2.0");
        let dialing = if setup.contains("fixture_dialing_0_1") {
            "0.1.0"
        } else {
            "0.2.0"
        };
        assert_eq!(version("dialing"), dialing, "{slots}");
        let (clean, log) = server.stop();
        assert!(clean, "{log}");
    }
}
