//! The RTP relay of retrieved calls, against the real `callpark serve`
//! binary: N calls are parked (blind, with Referred-By) and retrieved, then
//! both phones of every call send 20 ms RTP (50 packets per second each
//! way) through the server, which relays them to the other leg.
//!
//! The phones send out of step with each other (ten groups, each in its
//! own part of the 20 ms), as phones do.
//!
//! Printed per N: packets relayed, the server's CPU per relayed packet
//! (from /proc, so the kernel's work on the server's sockets is in it) and
//! its share of one core, and the packets sent that never came back.
//!
//! Run: `cargo bench -p callpark-server --bench relay [-- N ...]` (default
//! 100 and 400 calls, about 8 s each).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

#[path = "../../../tests/support/mod.rs"]
mod support;

const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);
const PTIME: Duration = Duration::from_millis(20);
/// Groups of phones sending at different times within a packet time.
const SLICES: usize = 10;

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
}

/// One phone: a socket for its SIP and its RTP (the SDP names its port).
struct Phone {
    sock: UdpSocket,
    me: SocketAddr,
}

impl Phone {
    fn new() -> Phone {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let me = sock.local_addr().unwrap();
        Phone { sock, me }
    }

    /// INVITE `dialed`, ACK the 200; returns the media address the
    /// server's answer names.
    fn call(&self, server: SocketAddr, dialed: &str, call_id: &str, headers: &str) -> SocketAddr {
        let me = self.me;
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
            me.port()
        );
        let invite = format!(
            "INVITE sip:{dialed}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}\r\nFrom: <sip:u@{me}>;tag=f{call_id}\r\nTo: <sip:{dialed}@{server}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:u@{me}>\r\n{headers}Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        self.sock.send_to(invite.as_bytes(), server).unwrap();
        let mut buf = [0u8; 65_535];
        loop {
            let (n, _) = self.sock.recv_from(&mut buf).expect("an answer");
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !text.starts_with("SIP/2.0 200") || field(&text, "Call-ID") != Some(call_id) {
                continue;
            }
            let to = field(&text, "To").expect("To");
            let ack = format!(
                "ACK sip:callpark@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKa{call_id}\r\nFrom: <sip:u@{me}>;tag=f{call_id}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            self.sock.send_to(ack.as_bytes(), server).unwrap();
            let ip = text
                .lines()
                .find_map(|l| l.strip_prefix("c=IN IP4 "))
                .expect("c=");
            let port = text
                .lines()
                .find_map(|l| l.strip_prefix("m=audio "))
                .and_then(|m| m.split(' ').next())
                .expect("m=");
            return format!("{}:{}", ip.trim(), port).parse().unwrap();
        }
    }
}

fn rtp(seq: u16, ssrc: u32) -> [u8; 172] {
    let mut p = [0xFFu8; 172];
    p[0] = 0x80;
    p[1] = 0; // PCMU
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

fn relay(calls: u32) {
    let server = support::Server::start_lot(
        "",
        &format!(
            "[[range]]\nname = \"big\"\nstart = \"1000\"\nend = \"{}\"\n[defaults]\nrecall_after = \"0s\"\n",
            1000 + calls - 1
        ),
    );
    let addr = server.addr();
    let mut phones = Vec::new();
    let mut media = None;
    for i in 0..calls {
        let (caller, retriever) = (Phone::new(), Phone::new());
        let orbit = 1000 + i;
        media = Some(caller.call(
            addr,
            &orbit.to_string(),
            &format!("p{i}"),
            "Referred-By: <sip:alice@127.0.0.1:9>\r\n",
        ));
        retriever.call(addr, &format!("*88{orbit}"), &format!("r{i}"), "");
        caller.sock.set_nonblocking(true).unwrap();
        retriever.sock.set_nonblocking(true).unwrap();
        phones.push(caller);
        phones.push(retriever);
    }
    let media = media.expect("at least one call");
    let mut buf = [0u8; 2048];
    // Whatever hold music is still queued from before the retrieves.
    std::thread::sleep(Duration::from_millis(200));
    for p in &phones {
        while p.sock.recv_from(&mut buf).is_ok() {}
    }

    let started = Instant::now();
    let mut next_tick = started;
    let mut seq = 0u16;
    let (mut sent, mut relayed) = (0u64, 0u64);
    let mut measured_from: Option<(u64, u64, Duration, Instant)> = None;
    while started.elapsed() < WARMUP + MEASURE {
        if measured_from.is_none() && started.elapsed() >= WARMUP {
            measured_from = Some((
                sent,
                relayed,
                support::cpu_time(server.pid()),
                Instant::now(),
            ));
        }
        // Phones are not in step: each slice of them sends in its own
        // part of the 20 ms.
        let tick = next_tick;
        for slice in 0..SLICES {
            let at = tick + PTIME * slice as u32 / SLICES as u32;
            while Instant::now() < at {
                for p in &phones {
                    while let Ok((n, from)) = p.sock.recv_from(&mut buf) {
                        if from == media && n == 172 {
                            relayed += 1;
                        }
                    }
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            for (k, p) in phones.iter().enumerate().skip(slice).step_by(SLICES) {
                let _ = p.sock.send_to(&rtp(seq, k as u32), media);
                sent += 1;
            }
        }
        seq = seq.wrapping_add(1);
        next_tick += PTIME;
    }
    let (sent_before, relayed_before, cpu_before, from) = measured_from.expect("measured");
    let cpu = support::cpu_time(server.pid()) - cpu_before;
    let wall = from.elapsed();
    // What was sent in the window and not relayed (late packets of the
    // last tick come in after it; the figure is close, not exact).
    let (sent, relayed) = (sent - sent_before, relayed - relayed_before);
    println!(
        "{calls:>4} bridged calls: {relayed} packets relayed in {:.2} s ({:.0} per second), server CPU {:.2} µs per relayed packet ({:.0} % of one core), {} of {sent} not relayed",
        wall.as_secs_f64(),
        relayed as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / relayed.max(1) as f64,
        cpu.as_secs_f64() * 100.0 / wall.as_secs_f64(),
        sent.saturating_sub(relayed),
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

fn main() {
    let counts: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    println!(
        "== RTP relay of retrieved calls through `callpark serve` (20 ms packets, both ways) =="
    );
    for calls in if counts.is_empty() {
        vec![100, 400]
    } else {
        counts
    } {
        relay(calls);
    }
}
