//! Memory of the real `callpark serve` binary (release build), read from
//! /proc as VmRSS:
//! 1. per parked call, for blind parks (Referred-By, music only) and for
//!    attended parks (the parker dials `*68<orbit>` and hears the orbit
//!    announced), at 1,000 and 10,000 calls;
//! 2. after a 60-second OPTIONS flood, as fast as the server answers (500
//!    requests outstanding).
//!
//! Run: `cargo bench -p callpark-server --bench memory` (about two minutes).

use std::collections::HashSet;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

#[path = "../../../tests/support/mod.rs"]
mod support;

use support::rss_kib;

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
}

/// Parks `count` calls (blind with Referred-By, or attended: `*68<orbit>`
/// without it) from one socket, 200 outstanding at most, and ACKs each.
fn park(server: &support::Server, count: u32, first_orbit: u32, attended: bool) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let me = sock.local_addr().unwrap();
    let a = server.addr();
    let mut done = HashSet::new();
    let mut buf = [0u8; 65_535];
    let mut sent = 0u32;
    let deadline = Instant::now() + Duration::from_secs(120);
    while (done.len() as u32) < count && Instant::now() < deadline {
        while sent < count && sent - done.len() as u32 <= 200 {
            let orbit = first_orbit + sent;
            let (dialed, referred) = if attended {
                (format!("*68{orbit}"), String::new())
            } else {
                (
                    orbit.to_string(),
                    "Referred-By: <sip:alice@127.0.0.1:9>\r\n".to_string(),
                )
            };
            let sdp = format!(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
                10_000 + sent % 50_000
            );
            let invite = format!(
                "INVITE sip:{dialed}@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKm{orbit}\r\nFrom: <sip:u{orbit}@{me}>;tag=f{orbit}\r\nTo: <sip:{dialed}@{a}>\r\nCall-ID: m{orbit}\r\nCSeq: 1 INVITE\r\nContact: <sip:u@{me}>\r\n{referred}Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            );
            let _ = sock.send_to(invite.as_bytes(), a);
            sent += 1;
        }
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !text.starts_with("SIP/2.0 200") {
                continue;
            }
            let (Some(call), Some(to)) = (field(&text, "Call-ID"), field(&text, "To")) else {
                continue;
            };
            let ack = format!(
                "ACK sip:callpark@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKa{call}\r\nFrom: <sip:u{n}@{me}>;tag=f{tail}\r\nTo: {to}\r\nCall-ID: {call}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                n = &call[1..],
                tail = &call[1..]
            );
            let _ = sock.send_to(ack.as_bytes(), a);
            done.insert(call.to_string());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(done.len() as u32, count, "every park answered");
}

fn per_call(calls: u32, attended: bool) {
    let first = 100_000;
    let server = support::Server::start_lot(
        "max_parked_calls = 20000",
        &format!(
            "[[range]]\nname = \"big\"\nstart = \"{first}\"\nend = \"{}\"\n[defaults]\nrecall_after = \"0s\"\n",
            first + calls - 1
        ),
    );
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(server.pid());
    park(&server, calls, first, attended);
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(server.pid());
    let kind = if attended { "attended" } else { "blind" };
    println!(
        "{kind:>8} parks, {calls:>6} calls: RSS {before} -> {after} KiB, {:.1} KiB per parked call",
        (after.saturating_sub(before)) as f64 / f64::from(calls)
    );
}

fn options_flood(seconds: u64) {
    let server = support::Server::start();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let me = sock.local_addr().unwrap();
    let a = server.addr();
    let before = rss_kib(server.pid());
    let (mut sent, mut answered) = (0u64, 0u64);
    let mut buf = [0u8; 65_535];
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        while sent - answered < 500 {
            let options = format!(
                "OPTIONS sip:park@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKo{sent}\r\nFrom: <sip:f@{me}>;tag=f\r\nTo: <sip:park@{a}>\r\nCall-ID: o{sent}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = sock.send_to(options.as_bytes(), a);
            sent += 1;
        }
        while sock.recv_from(&mut buf).is_ok() {
            answered += 1;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    let after = rss_kib(server.pid());
    println!(
        "OPTIONS flood, {seconds} s: {sent} sent, {answered} answered ({} per second); RSS {before} -> {after} KiB",
        answered / seconds
    );
}

fn main() {
    for calls in [1_000, 10_000] {
        per_call(calls, false);
        per_call(calls, true);
    }
    options_flood(60);
}
