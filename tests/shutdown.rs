//! SIGTERM against the real `callpark serve` binary with 1,000 parked
//! callers, half of which lose the first BYE: every caller gets its BYE
//! (retransmitted until answered), and the server exits cleanly once all
//! are answered. It used to send each BYE once and exit 30 ms later.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use support::Server;

const CALLERS: usize = 1_000;

fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The 200 to a request, built from it as a phone would.
fn ok_to(request: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for line in request.lines() {
            if line
                .split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

#[test]
fn sigterm_hangs_up_every_parked_caller_even_when_byes_are_lost() {
    let mut server = Server::start_lot(
        "drain_time = \"20s\"",
        "[[range]]\nname = \"big\"\nstart = \"2000\"\nend = \"2999\"\n",
    );
    let mut phones = Vec::with_capacity(CALLERS);
    for i in 0..CALLERS {
        let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
        phone
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let me = phone.local_addr().unwrap();
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n";
        let orbit = 2000 + i;
        let invite = format!(
            "INVITE sip:{orbit}@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKsd{i}\r\nFrom: <sip:c{i}@{me}>;tag=c{i}\r\nTo: <sip:{orbit}@{a}>\r\nCall-ID: sd{i}\r\nCSeq: 1 INVITE\r\nContact: <sip:c{i}@{me}>\r\nReferred-By: <sip:alice@127.0.0.1:9>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len(),
            a = server.addr()
        );
        phone.send_to(invite.as_bytes(), server.addr()).unwrap();
        let mut buf = [0u8; 4096];
        let ok = loop {
            let (n, _) = phone
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("caller {i}: no answer: {e}"));
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("SIP/2.0 200") {
                break text;
            }
            assert!(text.starts_with("SIP/2.0 1"), "caller {i}: {text}");
        };
        let ack = format!(
            "ACK sip:callpark@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKsdack{i}\r\nFrom: <sip:c{i}@{me}>;tag=c{i}\r\nTo: {to}\r\nCall-ID: sd{i}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            a = server.addr(),
            to = header(&ok, "To").unwrap()
        );
        phone.send_to(ack.as_bytes(), server.addr()).unwrap();
        phone.set_nonblocking(true).unwrap();
        phones.push(phone);
    }
    support::wait_log(&server, "event=\"parked\"", CALLERS);

    server.signal(libc::SIGTERM);
    // Even callers drop the first BYE they get; everyone answers every
    // BYE after that (a retransmission too, as phones do), until the
    // server has exited.
    let mut byes_seen = vec![0u32; CALLERS];
    let mut answered = vec![false; CALLERS];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    let mut exited = None;
    while exited.is_none() && Instant::now() < deadline {
        exited = server.exited();
        let mut idle = true;
        for (i, phone) in phones.iter().enumerate() {
            while let Ok((n, from)) = phone.recv_from(&mut buf) {
                idle = false;
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if !text.starts_with("BYE ") {
                    continue;
                }
                byes_seen[i] += 1;
                if i % 2 == 0 && byes_seen[i] == 1 {
                    continue;
                }
                phone.send_to(ok_to(&text).as_bytes(), from).unwrap();
                answered[i] = true;
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let missing: Vec<usize> = (0..CALLERS).filter(|i| !answered[*i]).collect();
    assert!(
        missing.is_empty(),
        "{} callers never got a BYE they answered (first: {:?})",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        (0..CALLERS).step_by(2).all(|i| byes_seen[i] >= 2),
        "the lost BYEs were sent again"
    );
    let log = server.log();
    assert_eq!(exited, Some(true), "the server exits cleanly:\n{log}");
    assert!(log.contains("every call hung up; stopping"), "{log}");
}
