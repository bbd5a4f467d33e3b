//! TCP against the real `callpark serve` binary from a stranger's side: a
//! message that never completes (slowloris) gets the connection closed, a
//! declared body over 64 KiB is refused before it is buffered, and a
//! connection that delivers its message is served.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::Server;

/// Reads until the peer closes (Ok(0) or a reset) or `within` passes;
/// returns whether it closed.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn slow_and_oversized_tcp_messages_are_cut_off() {
    let server = Server::start();
    // One byte a second of a message that never ends.
    let slow = {
        let addr = server.addr();
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let started = Instant::now();
            let head = b"OPTIONS sip:park@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKslow\r\nX-Slow: ";
            s.write_all(head).unwrap();
            let mut closed = false;
            while started.elapsed() < Duration::from_secs(40) {
                if s.write_all(b"a").is_err() || closed_within(&mut s, Duration::from_secs(1)) {
                    closed = true;
                    break;
                }
            }
            (closed, started.elapsed())
        })
    };
    // A body of a megabyte announced: closed before it is sent.
    let mut big = TcpStream::connect(server.addr()).unwrap();
    big.write_all(b"MESSAGE sip:701@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKbig\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:701@127.0.0.1>\r\nCall-ID: big\r\nCSeq: 1 MESSAGE\r\nContent-Length: 1048576\r\n\r\n").unwrap();
    assert!(
        closed_within(&mut big, Duration::from_secs(5)),
        "an oversized body is refused at once"
    );
    // A phone that sends a whole message is answered on its connection.
    let mut phone = TcpStream::connect(server.addr()).unwrap();
    let me = phone.local_addr().unwrap();
    phone.write_all(format!("OPTIONS sip:park@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKok\r\nFrom: <sip:a@{me}>;tag=1\r\nTo: <sip:park@127.0.0.1>\r\nCall-ID: ok\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").as_bytes()).unwrap();
    phone
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = phone.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let (closed, after) = slow.join().unwrap();
    assert!(closed, "the slow connection was never closed");
    assert!(after < Duration::from_secs(30), "closed after {after:?}");
    // And the phone's connection, which delivered its message, is still up.
    assert!(!closed_within(&mut phone, Duration::from_millis(500)));
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
    assert!(log.contains("no complete message in time"), "{log}");
}
