//! Floods against the real `callpark serve` binary, bounded in count and
//! time: 20,000 OPTIONS and 5,000 INVITEs sent as fast as the server
//! answers them (500 outstanding).
//! Every request that reaches the server gets an answer (200, or 503 with
//! Retry-After once its transactions are at their bound), the server's
//! memory stays under a stated bound, and a park right after succeeds.
//! OPTIONS from 70,000 source addresses leave no trace per source: answers
//! and a parked caller's BYE still leave from the socket each peer used.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use support::{Server, rss_kib};

/// Requests a flood keeps unanswered at most.
const WINDOW: usize = 500;

/// Sends `count` requests made by `make(i)` from one socket, reading the
/// answers as they come; returns (200s, 503s, other) within `wait` after
/// the last send.
fn flood(
    server: &Server,
    count: usize,
    make: impl Fn(usize, std::net::SocketAddr) -> String,
) -> (usize, usize, usize) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(8 << 20);
    let me = sock.local_addr().unwrap();
    let (mut ok, mut busy, mut other) = (0, 0, 0);
    let mut buf = [0u8; 65_535];
    // Each request counted once (a 2xx to INVITE is resent until its ACK).
    let mut answered = std::collections::HashSet::new();
    let mut count_answers =
        |sock: &UdpSocket, ok: &mut usize, busy: &mut usize, other: &mut usize| {
            while let Ok((n, _)) = sock.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                let call_id = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Call-ID: "))
                    .unwrap_or("")
                    .to_string();
                if text.starts_with("SIP/2.0 100 ") || !answered.insert(call_id) {
                    continue;
                }
                match &text.as_bytes()[..12.min(n)] {
                    b"SIP/2.0 200 " => *ok += 1,
                    b"SIP/2.0 503 " => *busy += 1,
                    _ => *other += 1,
                }
            }
        };
    // As fast as the server answers: at most WINDOW requests unanswered
    // (a faster sender only measures the kernel dropping datagrams).
    for i in 0..count {
        let window_deadline = Instant::now() + Duration::from_secs(5);
        while i - (ok + busy + other).min(i) >= WINDOW && Instant::now() < window_deadline {
            count_answers(&sock, &mut ok, &mut busy, &mut other);
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = sock.send_to(make(i, me).as_bytes(), server.addr());
        if i % 16 == 0 {
            count_answers(&sock, &mut ok, &mut busy, &mut other);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while ok + busy + other < count && Instant::now() < deadline {
        count_answers(&sock, &mut ok, &mut busy, &mut other);
        std::thread::sleep(Duration::from_millis(10));
    }
    (ok, busy, other)
}

#[test]
fn floods_are_answered_within_bounded_memory() {
    let server = Server::start_lot(
        "",
        "[[range]]\nname = \"main\"\nstart = \"1000\"\nend = \"9999\"\n",
    );
    let rss_start = rss_kib(server.pid());
    let (ok, busy, other) = flood(&server, 20_000, |i, me| {
        format!(
            "OPTIONS sip:park@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKfo{i}\r\nFrom: <sip:f@{me}>;tag=f\r\nTo: <sip:park@127.0.0.1>\r\nCall-ID: fo{i}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    });
    let rss_options = rss_kib(server.pid());
    println!(
        "OPTIONS flood: {ok} x 200, {busy} x 503, {other} other, of 20,000; RSS {rss_start} -> {rss_options} KiB"
    );
    assert_eq!(other, 0);
    assert!(ok + busy >= 19_000, "answered {}", ok + busy);
    let (ok, busy, other) = flood(&server, 5_000, |i, me| {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n";
        format!(
            "INVITE sip:{orbit}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKfi{i}\r\nFrom: <sip:f{i}@{me}>;tag=f\r\nTo: <sip:{orbit}@127.0.0.1>\r\nCall-ID: fi{i}\r\nCSeq: 1 INVITE\r\nContact: <sip:f@{me}>\r\nReferred-By: <sip:alice@127.0.0.1:9>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len(),
            orbit = 1000 + i
        )
    });
    let rss_invites = rss_kib(server.pid());
    println!(
        "INVITE flood: {ok} x 200, {busy} x 503, {other} other, of 5,000; RSS {rss_invites} KiB"
    );
    assert_eq!(other, 0);
    assert!(ok + busy >= 4_750, "answered {}", ok + busy);
    // The bound: 20,000 transactions of about 2 KiB and 5,000 parked
    // calls are far under 400 MiB; an unbounded flood was 1.46 GB.
    assert!(rss_invites < 400 * 1024, "RSS {rss_invites} KiB");
    // A park right after the floods is taken at once.
    let (ok, busy, other) = flood(&server, 1, |_, me| {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n";
        format!(
            "INVITE sip:9999@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKafter\r\nFrom: <sip:after@{me}>;tag=a\r\nTo: <sip:9999@127.0.0.1>\r\nCall-ID: after\r\nCSeq: 1 INVITE\r\nContact: <sip:a@{me}>\r\nReferred-By: <sip:alice@127.0.0.1:9>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    });
    assert_eq!((ok, busy, other), (1, 0, 0), "a park after the floods");
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// 10,000 INVITEs, each carrying 6 KB the server has no use for (a long
/// Subject), answered 404 and never ACKed: each transaction lives 32 s,
/// waiting for the ACK, and holds only the response and the headers a
/// response needs. It once kept every request whole: RSS grew by 86 MiB
/// for these (debug build), and grows by about 25 MiB now.
#[test]
fn unacknowledged_errors_hold_the_response_not_the_request() {
    let server = Server::start_lot(
        "",
        "[[range]]\nname = \"main\"\nstart = \"701\"\nend = \"750\"\n",
    );
    let rss_start = rss_kib(server.pid());
    let filler = "x".repeat(6_000);
    let (ok, busy, other) = flood(&server, 10_000, |i, me| {
        format!(
            "INVITE sip:999@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbig{i}\r\nFrom: <sip:f{i}@{me}>;tag=f\r\nTo: <sip:999@127.0.0.1>\r\nCall-ID: big{i}\r\nCSeq: 1 INVITE\r\nContact: <sip:f@{me}>\r\nSubject: {filler}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    });
    let rss_after = rss_kib(server.pid());
    println!(
        "6 KB INVITEs: {ok} x 200, {busy} x 503, {other} other (404), of 10,000; RSS {rss_start} -> {rss_after} KiB"
    );
    assert_eq!((ok, busy), (0, 0));
    assert!(other >= 9_500, "answered {other}");
    let grown = rss_after.saturating_sub(rss_start);
    assert!(
        grown < 40 * 1024,
        "10,000 open transactions grew RSS by {grown} KiB"
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// An INVITE with 60 Vias (under the 70 that get 400) and a spoofable
/// source: its 404 is as big as the request, so it is resent on a timer
/// twice, not the eleven times of timer G, and the server stops sending
/// it before the ACK that never comes.
#[test]
fn a_large_response_to_an_unverified_source_is_not_repeated_on_and_on() {
    let server = Server::start_lot(
        "",
        "[[range]]\nname = \"main\"\nstart = \"701\"\nend = \"750\"\n",
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sock.local_addr().unwrap();
    let vias: String = (0..59)
        .map(|i| format!("Via: SIP/2.0/UDP 10.1.{i}.1:5060;branch=z9hG4bKhop{i}\r\n"))
        .collect();
    let invite = format!(
        "INVITE sip:999@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKamp\r\n{vias}From: <sip:v@{me}>;tag=v\r\nTo: <sip:999@127.0.0.1>\r\nCall-ID: amp\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(invite.as_bytes(), server.addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut finals = Vec::new();
    let mut buf = [0u8; 65_535];
    // Timer G would resend at 0.5, 1.5, 3.5 and 7.5 s: listen for 9 s.
    let until = Instant::now() + Duration::from_secs(9);
    while Instant::now() < until {
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && !buf[..n].starts_with(b"SIP/2.0 100 ")
        {
            finals.push(n);
        }
    }
    assert!(
        finals.iter().all(|n| *n > 1_300),
        "the answer copies the Vias: {finals:?}"
    );
    assert_eq!(finals.len(), 3, "sent once and resent twice: {finals:?}");
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// With two listen addresses, answers and in-dialog requests leave from
/// the socket the peer talks to. Nothing is kept per source address for
/// that (the transaction or dialog that needs the socket holds it), so
/// OPTIONS from 70,000 source addresses neither grow a table nor make the
/// server forget where a parked caller talks to: the server once kept a
/// map of every source it had read, cleared it at 65,536 entries, and
/// then sent the parked caller's BYE from the other socket.
#[test]
fn answers_and_byes_leave_from_the_listen_socket_the_peer_used() {
    let second = std::net::SocketAddr::from(([127, 0, 0, 2], support::free_port()));
    let server = Server::start_listening(
        &[second],
        "",
        "[[range]]\nname = \"main\"\nstart = \"701\"\nend = \"705\"\n[defaults]\nrecall_after = \"0s\"\n",
    );
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let me = caller.local_addr().unwrap();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
        me.port() + 2
    );
    let invite = format!(
        "INVITE sip:*68701@{second} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKtwo\r\nFrom: <sip:caller@{me}>;tag=c\r\nTo: <sip:*68701@{second}>\r\nCall-ID: two-sockets\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{me}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    caller.send_to(invite.as_bytes(), second).unwrap();
    let mut buf = [0u8; 65_535];
    let to_tag = loop {
        let (n, from) = caller.recv_from(&mut buf).expect("an answer to the park");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("SIP/2.0 200 ") {
            assert_eq!(
                from, second,
                "the 200 leaves from the socket the INVITE came to"
            );
            break text
                .lines()
                .find_map(|l| l.strip_prefix("To: "))
                .and_then(|t| t.split(";tag=").nth(1))
                .expect("a To tag")
                .to_string();
        }
    };
    let ack = format!(
        "ACK sip:callpark@{second} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKtwoack\r\nFrom: <sip:caller@{me}>;tag=c\r\nTo: <sip:*68701@{second}>;tag={to_tag}\r\nCall-ID: two-sockets\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    caller.send_to(ack.as_bytes(), second).unwrap();

    // OPTIONS from 70,000 source addresses (three loopback hosts), 500 at
    // a time, each window waited for so that the server reads them all.
    let rss_before = rss_kib(server.pid());
    let (mut sent, mut answered, mut elsewhere) = (0usize, 0usize, 0usize);
    let sources = (3u8..=5).flat_map(|host| (30_000u16..53_334).map(move |port| (host, port)));
    let mut sources = sources.peekable();
    let started = Instant::now();
    while sources.peek().is_some() && started.elapsed() < Duration::from_secs(120) {
        let window: Vec<UdpSocket> = sources
            .by_ref()
            .take(WINDOW)
            .filter_map(|(host, port)| {
                UdpSocket::bind(std::net::SocketAddr::from(([127, 0, 0, host], port))).ok()
            })
            .collect();
        for (i, sock) in window.iter().enumerate() {
            let from = sock.local_addr().unwrap();
            let options = format!(
                "OPTIONS sip:park@{second} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKsrc{sent}x{i}\r\nFrom: <sip:s@{from}>;tag=s\r\nTo: <sip:park@{second}>\r\nCall-ID: src{sent}x{i}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = sock.send_to(options.as_bytes(), second);
            sock.set_nonblocking(true).unwrap();
        }
        sent += window.len();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut pending: Vec<&UdpSocket> = window.iter().collect();
        while !pending.is_empty() && Instant::now() < deadline {
            pending.retain(|sock| match sock.recv_from(&mut buf) {
                Ok((_, from)) => {
                    answered += 1;
                    if from != second {
                        elsewhere += 1;
                    }
                    false
                }
                Err(_) => true,
            });
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let rss_after = rss_kib(server.pid());
    println!(
        "OPTIONS from {sent} source addresses: {answered} answered, {elsewhere} from the other socket; RSS {rss_before} -> {rss_after} KiB"
    );
    assert!(sent >= 69_000, "sources bound: {sent}");
    assert!(answered >= sent * 9 / 10, "answered {answered} of {sent}");
    assert_eq!(elsewhere, 0, "every answer leaves from the socket asked");

    // The parked caller's BYE, at shutdown, still leaves from the socket
    // the caller parked through.
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
    let bye_from = loop {
        let (n, from) = caller.recv_from(&mut buf).expect("the BYE of the drain");
        if buf[..n].starts_with(b"BYE ") {
            break from;
        }
    };
    assert_eq!(
        bye_from, second,
        "the BYE leaves from the socket the caller used"
    );
}
