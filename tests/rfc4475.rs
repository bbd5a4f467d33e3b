//! The RFC 4475 torture messages (§3.1.1 valid, §3.1.2 invalid, §3.3
//! application semantics, §3.4 RFC 2543 compatibility), as the RFC gives
//! them, sent over UDP to the real `callpark` binary: each valid request
//! gets a proper answer, each invalid one a 4xx or a drop that the log
//! names, responses to nothing are dropped, and the server answers OPTIONS
//! after every one.
//!
//! `tests/rfc4475/*.msg` hold the messages byte for byte, with the host of
//! the top Via replaced by `$VIA`, which the test fills with its own socket,
//! so that answers come back here and nowhere else.

mod support;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::{Server, wait_log};

/// What the server must do with a message.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Exactly this final status.
    Status(u16),
    /// Some 4xx.
    AnyClientError,
    /// No answer (a response that belongs to no transaction, or a request
    /// too broken to answer); the server stays up.
    Nothing,
    /// A 4xx, or no answer at all.
    ClientErrorOrNothing,
}

const CASES: &[(&str, Expect)] = &[
    // §3.1.1: valid messages.
    ("wsinv", Expect::Status(481)), // a re-INVITE (To tag) of no dialog of ours
    ("intmeth", Expect::Status(501)),
    ("esc01", Expect::Status(404)), // `sips:user@example.com` is no orbit
    ("escnull", Expect::Status(405)),
    ("esc02", Expect::Status(501)), // RE%47IST%45R is not REGISTER
    ("lwsdisp", Expect::Status(200)),
    ("longreq", Expect::Status(404)),
    ("dblreq", Expect::Status(405)), // the REGISTER; the INVITE after it is not read
    ("semiuri", Expect::Status(200)),
    ("transports", Expect::Status(200)),
    ("mpart01", Expect::Status(405)),
    ("unreason", Expect::Nothing),
    ("noreason", Expect::Nothing),
    // §3.1.2: invalid messages.
    ("badinv01", Expect::ClientErrorOrNothing),
    ("clerr", Expect::Status(400)),
    ("scalar02", Expect::Status(400)),
    ("scalarlg", Expect::Nothing),
    ("quotbal", Expect::Status(400)),
    ("ltgtruri", Expect::Status(400)),
    ("lwsruri", Expect::ClientErrorOrNothing),
    ("lwsstart", Expect::ClientErrorOrNothing),
    ("trws", Expect::ClientErrorOrNothing),
    ("escruri", Expect::Status(400)),
    ("baddate", Expect::AnyClientError),
    ("regbadct", Expect::AnyClientError),
    ("badaspec", Expect::AnyClientError),
    ("baddn", Expect::Status(400)),
    ("badvers", Expect::Status(505)),
    ("mismatch01", Expect::Status(400)),
    ("mismatch02", Expect::Status(400)),
    ("multi01", Expect::Status(400)),
    ("mcl01", Expect::Status(400)),
    ("bcast", Expect::Nothing),
    ("bext01", Expect::Status(420)),
    ("invut", Expect::Status(415)),
    ("regaut01", Expect::Status(405)),
    ("cparam01", Expect::Status(405)),
    ("cparam02", Expect::Status(405)),
    ("regescrt", Expect::Status(405)),
    ("sdp01", Expect::AnyClientError),
    ("unkscm", Expect::Status(416)),
    ("novelsc", Expect::Status(416)),
    ("unksm2", Expect::AnyClientError),
    ("insuf", Expect::ClientErrorOrNothing),
    ("ncl", Expect::Status(400)),
    // §3.3: application-layer semantics an endpoint accepts.
    ("zeromf", Expect::Status(200)),
    ("badbranch", Expect::Status(200)),
    // §3.4: an RFC 2543 INVITE (no branch, no From tag, no Max-Forwards).
    ("inv2543", Expect::Status(404)),
];

fn message(name: &str, via: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/rfc4475")
        .join(format!("{name}.msg"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    replace(&bytes, b"$VIA", via.as_bytes())
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// Every SIP message that arrives on `socket` within `wait`.
fn receive_all(socket: &UdpSocket, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 65_535];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    got
}

fn finals(messages: &[String]) -> Vec<u16> {
    messages
        .iter()
        .filter_map(|m| m.strip_prefix("SIP/2.0 "))
        .filter_map(|m| m.get(..3)?.parse().ok())
        .filter(|s| *s >= 200)
        .collect()
}

fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The messages of one case (its Call-ID): answers to earlier cases'
/// INVITEs may still be retransmitted while this one runs.
fn of_call(messages: &[String], request: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(request);
    let call_id = text.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        let n = n.trim();
        (n.eq_ignore_ascii_case("Call-ID") || n == "i" || n == "I").then(|| v.trim().to_string())
    });
    messages
        .iter()
        .filter(|m| call_id.is_some() && header(m, "Call-ID") == call_id.as_deref())
        .cloned()
        .collect()
}

/// Acknowledges a final response to an INVITE, as its caller would, so
/// that it is not retransmitted (RFC 3261 §17.1.1.3).
fn ack(phone: &UdpSocket, server: &Server, response: &str) {
    if !header(response, "CSeq").is_some_and(|c| c.ends_with("INVITE")) {
        return;
    }
    let (Some(via), Some(from), Some(to), Some(call_id), Some(cseq)) = (
        header(response, "Via"),
        header(response, "From"),
        header(response, "To"),
        header(response, "Call-ID"),
        header(response, "CSeq"),
    ) else {
        return;
    };
    let seq = cseq.split_whitespace().next().unwrap_or("1");
    let ack = format!(
        "ACK sip:callpark@{a} SIP/2.0\r\nVia: {via}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {seq} ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        a = server.addr()
    );
    phone.send_to(ack.as_bytes(), server.addr()).unwrap();
}

#[test]
fn every_torture_message_gets_its_answer_and_the_server_stays_up() {
    let server = Server::start();
    let mut wrong = Vec::new();
    for (name, expect) in CASES {
        // A socket of its own per message: many of them share a branch,
        // as messages from different hosts may, and the transaction key
        // includes the Via's sent-by.
        let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
        let via = phone.local_addr().unwrap().to_string();
        let request = message(name, &via);
        phone.send_to(&request, server.addr()).unwrap();
        // Long enough for any answer over loopback; the waits of cases
        // that expect nothing bound the test's run time.
        let wait = match expect {
            Expect::Nothing | Expect::ClientErrorOrNothing => Duration::from_millis(300),
            _ => Duration::from_millis(700),
        };
        let got = of_call(&receive_all(&phone, wait), &request);
        let statuses = finals(&got);
        if let Some(fin) = got
            .iter()
            .find(|m| finals(std::slice::from_ref(m)).len() == 1)
        {
            ack(&phone, &server, fin);
        }
        // A final response is sent once (retransmissions stop at the ACK
        // or were not due yet within the wait).
        let statuses: Vec<u16> = statuses.into_iter().take(1).collect();
        let ok = match expect {
            Expect::Status(s) => statuses == [*s],
            Expect::AnyClientError => statuses.len() == 1 && (400..500).contains(&statuses[0]),
            Expect::Nothing => got.is_empty(),
            Expect::ClientErrorOrNothing => {
                got.is_empty() || (statuses.len() == 1 && (400..500).contains(&statuses[0]))
            }
        };
        if !ok {
            wrong.push(format!("{name}: expected {expect:?}, got {got:#?}"));
        }
        server.wait_ready();
    }
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), server.log());
    // Drops are not silent: the log says why (one line a second at most).
    assert!(
        server
            .log()
            .contains("unreadable SIP message dropped (nothing to answer to)"),
        "{}",
        server.log()
    );
    let (stopped_cleanly, log) = server.stop();
    assert!(stopped_cleanly, "{log}");
}

/// RFC 3261 §17.2.3: an RFC 2543 INVITE (no magic cookie) to an orbit parks,
/// its retransmission is absorbed by the same transaction (one park, the
/// same answer), and its ACK and BYE work.
#[test]
fn an_rfc2543_invite_to_an_orbit_parks_once() {
    let server = Server::start();
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    let via = phone.local_addr().unwrap().to_string();
    let invite = String::from_utf8(message("inv2543", &via))
        .unwrap()
        .replace("INVITE sip:UserB@example.com", "INVITE sip:701@example.com");
    phone.send_to(invite.as_bytes(), server.addr()).unwrap();
    let first = receive_all(&phone, Duration::from_millis(700));
    assert_eq!(
        finals(&first).first(),
        Some(&200),
        "{first:#?}\n{}",
        server.log()
    );
    let ok = first.iter().find(|m| m.starts_with("SIP/2.0 200")).unwrap();
    // The retransmission gets the same 200 again, not a second park.
    phone.send_to(invite.as_bytes(), server.addr()).unwrap();
    let again = receive_all(&phone, Duration::from_millis(700));
    assert!(again.iter().any(|m| m == ok), "{again:#?}");
    ack(&phone, &server, ok);
    wait_log(&server, "event=\"parked\"", 1);
    assert!(!server.log().contains("orbit=\"702\""), "{}", server.log());
    let to = ok
        .lines()
        .find(|l| l.starts_with("To:"))
        .unwrap()
        .trim_start_matches("To:")
        .trim();
    let bye = format!(
        "BYE sip:callpark@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {via}\r\nFrom: <sip:+13035551111@ift.client.example.net;user=phone>\r\nTo: {to}\r\nCall-ID: inv2543.1717@ift.client.example.com\r\nCSeq: 57 BYE\r\nContent-Length: 0\r\n\r\n",
        a = server.addr()
    );
    phone.send_to(bye.as_bytes(), server.addr()).unwrap();
    let answers = receive_all(&phone, Duration::from_secs(2));
    assert!(finals(&answers).contains(&200), "{answers:#?}");
    wait_log(&server, "event=\"abandoned\"", 1);
}
