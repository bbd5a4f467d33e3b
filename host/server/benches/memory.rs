//! Memory of the real `callpark serve` binary (release build), read from
//! /proc as VmRSS:
//! 1. per parked call, each call with its own RTP destination, at 1,000
//!    and 10,000 calls: blind parks (Referred-By, music only) whose parker
//!    answers the MESSAGE that names the orbit, as a phone does; blind
//!    parks whose parker never answers (every MESSAGE is resent for 32 s
//!    and its transaction held that long); attended parks (the parker
//!    dials `*68<orbit>` and hears the orbit announced);
//! 2. after a 60-second OPTIONS flood, as fast as the server answers (500
//!    requests outstanding).
//!
//! Run: `cargo bench -p callpark-server --bench memory` (about two minutes).

use std::net::UdpSocket;
use std::time::{Duration, Instant};

#[path = "../../../tests/support/mod.rs"]
mod support;

#[path = "common/park.rs"]
mod park;

use park::{Kind, park};
use support::rss_kib;

fn per_call(calls: u32, kind: Kind) {
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
    park(&server, calls, first, kind);
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(server.pid());
    let kind = match kind {
        Kind::Blind {
            parker_answers: true,
        } => "blind parks, the parker answers",
        Kind::Blind {
            parker_answers: false,
        } => "blind parks, the parker never answers",
        Kind::Attended => "attended parks",
    };
    println!(
        "{kind:>38}, {calls:>6} calls: RSS {before} -> {after} KiB, {:.1} KiB per parked call",
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
        for kind in [
            Kind::Blind {
                parker_answers: true,
            },
            Kind::Blind {
                parker_answers: false,
            },
            Kind::Attended,
        ] {
            per_call(calls, kind);
        }
    }
    options_flood(60);
}
