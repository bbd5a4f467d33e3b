//! Parking many calls on the real binary from one socket, for the
//! benches: blind parks whose parker answers its MESSAGE (or never does),
//! or attended parks.

#![allow(dead_code)]

use std::collections::HashSet;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use super::support;

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
}

/// How the calls are parked.
#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    /// Referred-By names a parker that answers its MESSAGE (or not).
    Blind { parker_answers: bool },
    /// `*68<orbit>` without Referred-By.
    Attended,
}

/// A parker's phone: answers every request 200 until dropped.
struct Parker {
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Parker {
    fn start() -> Parker {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 65_535];
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if text.starts_with("SIP/2.0") {
                    continue;
                }
                let mut ok = String::from("SIP/2.0 200 OK\r\n");
                for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
                    if let Some(v) = field(&text, name) {
                        ok.push_str(&format!("{name}: {v}\r\n"));
                    }
                }
                ok.push_str("Content-Length: 0\r\n\r\n");
                let _ = sock.send_to(ok.as_bytes(), from);
            }
        });
        Parker {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Parker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Parks `count` calls from one socket, 200 outstanding at most, and ACKs
/// each.
pub fn park(server: &support::Server, count: u32, first_orbit: u32, kind: Kind) {
    let parker = (kind
        == Kind::Blind {
            parker_answers: true,
        })
    .then(Parker::start);
    // Nothing listens on the discard port.
    let parker_addr = parker
        .as_ref()
        .map_or("127.0.0.1:9".parse().unwrap(), |p| p.addr);
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
            let (dialed, referred) = if kind == Kind::Attended {
                (format!("*68{orbit}"), String::new())
            } else {
                (
                    orbit.to_string(),
                    format!("Referred-By: <sip:alice@{parker_addr}>\r\n"),
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
