//! RFC 3261 §17 timer schedules, checked exactly in virtual time.

use std::net::SocketAddr;
use std::time::Duration;

use callpark_sip::codec::parse;
use callpark_sip::message::{HeaderView, Message, Method, Request, Response};
use callpark_sip::transaction::{Peer, Transactions, Transport, TxEvent, TxId};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn phone() -> Peer {
    Peer {
        transport: Transport::Udp(0),
        addr: "127.0.0.1:5070".parse::<SocketAddr>().unwrap(),
    }
}

fn request(method: &str, branch: &str, extra: &str) -> Vec<u8> {
    format!(
        "{method} sip:701@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{branch};rport\r\nFrom: <sip:bob@example.com>;tag=b1\r\nTo: <sip:701@127.0.0.1>\r\nCall-ID: call-1\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn layer() -> Transactions {
    Transactions::new("127.0.0.1:5060", 7)
}

/// Advances virtual time to `until`, firing timers, and returns the times
/// at which something was transmitted with its first line.
fn run_until(t: &mut Transactions, from: Duration, until: Duration) -> Vec<(Duration, String)> {
    let mut sent = Vec::new();
    let mut now = from;
    loop {
        while let Some(tx) = t.poll_transmit() {
            let text = String::from_utf8_lossy(&tx.bytes)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            sent.push((now, text));
        }
        match t.poll_timeout() {
            Some(at) if at <= until => {
                now = at;
                t.handle_timeout(now);
            }
            _ => return sent,
        }
    }
}

fn next_request(t: &mut Transactions) -> (TxId, Request) {
    loop {
        match t.poll_event() {
            Some(TxEvent::Request { tx, request, .. }) => return (tx, request),
            Some(_) => continue,
            None => panic!("no request event"),
        }
    }
}

fn times(sent: &[(Duration, String)], first_line: &str) -> Vec<u64> {
    sent.iter()
        .filter(|(_, l)| l.starts_with(first_line))
        .map(|(t, _)| t.as_millis() as u64)
        .collect()
}

#[test]
fn our_2xx_to_invite_is_resent_until_the_ack_then_stops() {
    let mut t = layer();
    t.handle_bytes(ms(0), &request("INVITE", "inv1", ""), phone())
        .unwrap();
    let (tx, invite) = next_request(&mut t);
    let ok = invite.response(200, Some("srv"));
    t.send_response(ms(0), tx, ok);
    let sent = run_until(&mut t, ms(0), ms(9_000));
    assert_eq!(times(&sent, "SIP/2.0 100"), [0]);
    // T1, then doubling up to T2: 0, 500, 1500, 3500, 7500.
    assert_eq!(times(&sent, "SIP/2.0 200"), [0, 500, 1_500, 3_500, 7_500]);
    // The ACK (its own branch) stops the retransmissions and reaches the TU.
    let ack = String::from_utf8(request("ACK", "ack1", ""))
        .unwrap()
        .replace("To: <sip:701@127.0.0.1>", "To: <sip:701@127.0.0.1>;tag=srv");
    t.handle_bytes(ms(9_000), ack.as_bytes(), phone()).unwrap();
    assert!(matches!(t.poll_event(), Some(TxEvent::Ack { .. })));
    let sent = run_until(&mut t, ms(9_000), ms(40_000));
    assert!(times(&sent, "SIP/2.0 200").is_empty(), "{sent:?}");
    assert_eq!(t.len(), (0, 0), "the transaction ends at 64*T1");
    assert_eq!(t.poll_event(), None, "no AckTimeout once acknowledged");
}

#[test]
fn an_unacknowledged_2xx_times_out_at_64_t1() {
    let mut t = layer();
    t.handle_bytes(ms(0), &request("INVITE", "inv2", ""), phone())
        .unwrap();
    let (tx, invite) = next_request(&mut t);
    t.send_response(ms(0), tx, invite.response(200, Some("srv")));
    let sent = run_until(&mut t, ms(0), ms(40_000));
    assert_eq!(
        times(&sent, "SIP/2.0 200"),
        [
            0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    assert_eq!(t.poll_event(), Some(TxEvent::AckTimeout { tx }));
}

#[test]
fn an_error_to_invite_follows_timer_g_until_ack_then_lingers_t4() {
    let mut t = layer();
    t.handle_bytes(ms(0), &request("INVITE", "inv3", ""), phone())
        .unwrap();
    let (tx, invite) = next_request(&mut t);
    t.send_response(ms(100), tx, invite.response(486, Some("srv")));
    let sent = run_until(&mut t, ms(100), ms(5_000));
    assert_eq!(times(&sent, "SIP/2.0 486"), [100, 600, 1_600, 3_600]);
    // ACK in the same transaction: absorbed, never shown to the TU.
    t.handle_bytes(ms(5_000), &request("ACK", "inv3", ""), phone())
        .unwrap();
    assert_eq!(t.poll_event(), None);
    let sent = run_until(&mut t, ms(5_000), ms(9_999));
    assert!(sent.is_empty(), "{sent:?}");
    assert_eq!(t.len(), (1, 0), "lingering for T4");
    run_until(&mut t, ms(9_999), ms(10_000));
    assert_eq!(t.len(), (0, 0));
}

#[test]
fn retransmitted_requests_get_the_last_response_again() {
    let mut t = layer();
    let bye = request("BYE", "bye1", "");
    t.handle_bytes(ms(0), &bye, phone()).unwrap();
    let (tx, r) = next_request(&mut t);
    assert_eq!(r.method, Method::Bye);
    t.send_response(ms(10), tx, r.response(200, None));
    run_until(&mut t, ms(10), ms(10));
    t.handle_bytes(ms(600), &bye, phone()).unwrap();
    assert_eq!(
        t.poll_event(),
        None,
        "a retransmission is not a new request"
    );
    let sent = run_until(&mut t, ms(600), ms(600));
    assert_eq!(times(&sent, "SIP/2.0 200"), [600]);
    // Timer J: gone after 64*T1.
    run_until(&mut t, ms(600), ms(32_010));
    assert_eq!(t.len(), (0, 0));
}

#[test]
fn cancel_is_answered_and_reported_against_its_invite() {
    let mut t = layer();
    t.handle_bytes(ms(0), &request("INVITE", "inv4", ""), phone())
        .unwrap();
    let (invite_tx, _) = next_request(&mut t);
    t.handle_bytes(ms(300), &request("CANCEL", "inv4", ""), phone())
        .unwrap();
    match t.poll_event() {
        Some(TxEvent::Cancelled { invite, cancel }) => {
            assert_eq!(invite, invite_tx);
            assert_eq!(cancel.method, Method::Cancel);
        }
        other => panic!("{other:?}"),
    }
    let sent = run_until(&mut t, ms(300), ms(300));
    assert_eq!(times(&sent, "SIP/2.0 200"), [300]);
    // A CANCEL for nothing gets 481.
    t.handle_bytes(ms(400), &request("CANCEL", "nothing", ""), phone())
        .unwrap();
    let sent = run_until(&mut t, ms(400), ms(400));
    assert_eq!(times(&sent, "SIP/2.0 481"), [400]);
}

fn our_request(method: Method) -> Request {
    let text = format!(
        "{m} sip:alice@127.0.0.1:5070 SIP/2.0\r\nFrom: <sip:park@127.0.0.1>;tag=p1\r\nTo: <sip:alice@127.0.0.1>\r\nCall-ID: out-1\r\nCSeq: 1 {m}\r\nMax-Forwards: 70\r\n\r\n",
        m = method
    );
    // Our own requests are built without a Via; parse one that has it, then
    // drop it, to reuse the parser.
    let with_via = text.replacen("\r\n", "\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKx\r\n", 1);
    match parse(with_via.as_bytes()).unwrap() {
        Message::Request(mut r) => {
            r.headers.remove("Via");
            r
        }
        _ => unreachable!(),
    }
}

fn answer(t: &mut Transactions, tx: TxId, status: u16) -> Response {
    let sent = t.client_request(tx).unwrap().clone();
    let mut response = sent.response(status, Some("a1"));
    response.reason = "test".into();
    response
}

#[test]
fn client_non_invite_timer_e_then_f() {
    let mut t = layer();
    let tx = t.send_request(ms(0), our_request(Method::Message), phone());
    let sent = run_until(&mut t, ms(0), ms(40_000));
    // E: 0.5, 1, 2, 4, 4, 4 ... until F at 32 s.
    assert_eq!(
        times(&sent, "MESSAGE"),
        [
            0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    assert_eq!(t.poll_event(), Some(TxEvent::Timeout { tx }));
    assert_eq!(t.len(), (0, 0));
}

#[test]
fn client_non_invite_completes_on_a_final_response_and_waits_t4() {
    let mut t = layer();
    let tx = t.send_request(ms(0), our_request(Method::Bye), phone());
    run_until(&mut t, ms(0), ms(0));
    let ok = answer(&mut t, tx, 200);
    t.handle_message(ms(200), Message::Response(ok), phone());
    assert!(
        matches!(t.poll_event(), Some(TxEvent::Response { response, .. }) if response.status == 200)
    );
    let sent = run_until(&mut t, ms(200), ms(10_000));
    assert!(
        sent.is_empty(),
        "no retransmission after the answer: {sent:?}"
    );
    assert_eq!(t.len(), (0, 0));
}

#[test]
fn client_invite_timer_a_doubles_until_b() {
    let mut t = layer();
    let tx = t.send_request(ms(0), our_request(Method::Invite), phone());
    let sent = run_until(&mut t, ms(0), ms(40_000));
    assert_eq!(
        times(&sent, "INVITE"),
        [0, 500, 1_500, 3_500, 7_500, 15_500, 31_500]
    );
    assert_eq!(t.poll_event(), Some(TxEvent::Timeout { tx }));
}

#[test]
fn client_invite_error_is_acked_by_the_layer_and_2xx_passed_up() {
    let mut t = layer();
    let tx = t.send_request(ms(0), our_request(Method::Invite), phone());
    run_until(&mut t, ms(0), ms(0));
    let ringing = answer(&mut t, tx, 180);
    t.handle_message(ms(100), Message::Response(ringing), phone());
    let busy = answer(&mut t, tx, 486);
    t.handle_message(ms(900), Message::Response(busy.clone()), phone());
    let sent = run_until(&mut t, ms(900), ms(900));
    assert_eq!(times(&sent, "ACK"), [900]);
    // A retransmitted 486 is ACKed again but not reported again.
    t.handle_message(ms(1_000), Message::Response(busy), phone());
    let sent = run_until(&mut t, ms(1_000), ms(1_000));
    assert_eq!(times(&sent, "ACK"), [1_000]);
    let events: Vec<u16> = std::iter::from_fn(|| t.poll_event())
        .filter_map(|e| match e {
            TxEvent::Response { response, .. } => Some(response.status),
            _ => None,
        })
        .collect();
    assert_eq!(events, [180, 486]);

    let tx2 = t.send_request(ms(2_000), our_request(Method::Invite), phone());
    let ok = answer(&mut t, tx2, 200);
    t.handle_message(ms(2_100), Message::Response(ok.clone()), phone());
    t.handle_message(ms(2_600), Message::Response(ok), phone());
    let oks = std::iter::from_fn(|| t.poll_event())
        .filter(|e| matches!(e, TxEvent::Response { response, .. } if response.status == 200))
        .count();
    assert_eq!(
        oks, 2,
        "2xx retransmissions reach the dialog, which ACKs each"
    );
}

#[test]
fn tcp_never_retransmits() {
    let mut t = layer();
    let tcp = Peer {
        transport: Transport::Tcp(1),
        addr: "127.0.0.1:40000".parse().unwrap(),
    };
    t.send_request(ms(0), our_request(Method::Message), tcp);
    let sent = run_until(&mut t, ms(0), ms(40_000));
    assert_eq!(times(&sent, "MESSAGE"), [0]);
    t.handle_bytes(ms(0), &request("INVITE", "tcp1", ""), tcp)
        .unwrap();
    let (tx, r) = next_request(&mut t);
    t.send_response(ms(0), tx, r.response(200, Some("x")));
    let sent = run_until(&mut t, ms(0), ms(40_000));
    assert_eq!(times(&sent, "SIP/2.0 200"), [0]);
}

#[test]
fn via_gets_received_and_rport_and_responses_go_back_there() {
    let mut t = layer();
    let nat = Peer {
        transport: Transport::Udp(0),
        addr: "192.0.2.50:40123".parse().unwrap(),
    };
    t.handle_bytes(ms(0), &request("OPTIONS", "opt1", ""), nat)
        .unwrap();
    let (tx, r) = next_request(&mut t);
    let via = r.top_via().unwrap();
    assert_eq!(via.param("received"), Some(Some("192.0.2.50")));
    assert_eq!(via.param("rport"), Some(Some("40123")));
    t.send_response(ms(0), tx, r.response(200, None));
    let out = t.poll_transmit().unwrap();
    assert_eq!(out.peer, nat);
    let text = String::from_utf8(out.bytes).unwrap();
    assert!(text.contains(";rport=40123;received=192.0.2.50"), "{text}");
    // Without rport: to the Via's port on the received address.
    let no_rport = String::from_utf8(request("OPTIONS", "opt2", ""))
        .unwrap()
        .replace(";rport", "");
    t.handle_bytes(ms(0), no_rport.as_bytes(), nat).unwrap();
    let (tx, r) = next_request(&mut t);
    t.send_response(ms(0), tx, r.response(200, None));
    let out = t.poll_transmit().unwrap();
    assert_eq!(out.peer.addr, "192.0.2.50:5070".parse().unwrap());
}

#[test]
fn malformed_but_answerable_requests_get_400_with_a_warning() {
    let mut t = layer();
    let bad = String::from_utf8(request("INVITE", "bad1", "Max-Forwards: lots\r\n")).unwrap();
    assert!(t.handle_bytes(ms(0), bad.as_bytes(), phone()).is_err());
    let out = t.poll_transmit().expect("a 400");
    let text = String::from_utf8(out.bytes).unwrap();
    assert!(text.starts_with("SIP/2.0 400 Bad Request\r\n"), "{text}");
    assert!(
        text.contains("Warning: 399 callpark \"bad Max-Forwards header"),
        "{text}"
    );
    assert!(
        t.handle_bytes(ms(0), b"\x16\x03\x01 not sip at all", phone())
            .is_err()
    );
    assert_eq!(t.poll_transmit(), None, "unanswerable garbage is dropped");
}

#[test]
fn the_200_to_a_late_cancel_repeats_the_invites_to_tag() {
    let mut t = layer();
    t.handle_bytes(ms(0), &request("INVITE", "inv9", ""), phone())
        .unwrap();
    let (tx, invite) = next_request(&mut t);
    t.send_response(ms(0), tx, invite.response(200, Some("srv9")));
    run_until(&mut t, ms(0), ms(0));
    t.handle_bytes(ms(10), &request("CANCEL", "inv9", ""), phone())
        .unwrap();
    assert_eq!(t.poll_event(), None, "an answered INVITE is not cancelled");
    let out = t.poll_transmit().unwrap();
    match parse(&out.bytes).unwrap() {
        Message::Response(r) => {
            assert_eq!(r.status, 200);
            assert_eq!(r.to().unwrap().tag(), Some("srv9"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn cancelling_our_invite_reuses_its_branch_and_the_487_is_acked() {
    let mut t = layer();
    let tx = t.send_request(ms(0), our_request(Method::Invite), phone());
    let invite_via = t
        .client_request(tx)
        .unwrap()
        .headers
        .get("Via")
        .unwrap()
        .to_string();
    run_until(&mut t, ms(0), ms(0));
    let ringing = answer(&mut t, tx, 180);
    t.handle_message(ms(100), Message::Response(ringing), phone());
    let cancel = t.send_cancel(ms(5_000), tx).expect("cancellable");
    let out = t.poll_transmit().unwrap();
    let text = String::from_utf8(out.bytes).unwrap();
    assert!(
        text.starts_with("CANCEL sip:alice@127.0.0.1:5070 SIP/2.0\r\n"),
        "{text}"
    );
    assert!(text.contains(&format!("Via: {invite_via}\r\n")), "{text}");
    assert!(text.contains("CSeq: 1 CANCEL\r\n"), "{text}");
    // The CANCEL's own 200, then the INVITE's 487 (which the layer ACKs).
    let cancel_req = t.client_request(cancel).unwrap().clone();
    t.handle_message(
        ms(5_010),
        Message::Response(cancel_req.response(200, None)),
        phone(),
    );
    let terminated = answer(&mut t, tx, 487);
    t.handle_message(ms(5_020), Message::Response(terminated), phone());
    let sent = run_until(&mut t, ms(5_020), ms(5_020));
    assert_eq!(times(&sent, "ACK"), [5_020]);
    assert!(
        t.send_cancel(ms(6_000), tx).is_none(),
        "nothing left to cancel"
    );
}

#[test]
fn a_ringing_invite_does_not_time_out_at_timer_b() {
    let mut t = layer();
    let tx = t.send_request(ms(0), our_request(Method::Invite), phone());
    run_until(&mut t, ms(0), ms(0));
    let ringing = answer(&mut t, tx, 180);
    t.handle_message(ms(200), Message::Response(ringing), phone());
    run_until(&mut t, ms(200), ms(120_000));
    let events: Vec<TxEvent> = std::iter::from_fn(|| t.poll_event()).collect();
    assert!(
        !events.iter().any(|e| matches!(e, TxEvent::Timeout { .. })),
        "{events:?}"
    );
    assert!(
        t.send_cancel(ms(120_000), tx).is_some(),
        "still ringing after two minutes"
    );
}

/// RFC 3261 §17.2.3: requests without the magic cookie (RFC 2543 peers,
/// RFC 4475 `inv2543`) are matched on Request-URI, From tag, Call-ID, CSeq
/// and top Via: a retransmission repeats the answer, the ACK of a non-2xx
/// stops its retransmissions, and a CANCEL finds its INVITE.
#[test]
fn rfc2543_requests_get_transactions_of_their_own() {
    let old = |method: &str, cseq: &str| {
        format!(
            "{method} sip:701@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070\r\nFrom: <sip:bob@example.com>\r\nTo: <sip:701@127.0.0.1>\r\nCall-ID: old-1\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    let mut t = layer();
    t.handle_bytes(ms(0), &old("INVITE", "5 INVITE"), phone())
        .unwrap();
    let (tx, invite) = next_request(&mut t);
    t.send_response(ms(0), tx, invite.response(486, Some("srv")));
    let sent = run_until(&mut t, ms(0), ms(0));
    assert_eq!(times(&sent, "SIP/2.0 486"), [0]);
    // The same INVITE again: the same answer, no new request.
    t.handle_bytes(ms(100), &old("INVITE", "5 INVITE"), phone())
        .unwrap();
    assert!(t.poll_event().is_none());
    assert_eq!(
        times(&run_until(&mut t, ms(100), ms(100)), "SIP/2.0 486"),
        [100]
    );
    // Its ACK stops timer G.
    let ack = String::from_utf8(old("ACK", "5 ACK"))
        .unwrap()
        .replace("To: <sip:701@127.0.0.1>", "To: <sip:701@127.0.0.1>;tag=srv");
    t.handle_bytes(ms(200), ack.as_bytes(), phone()).unwrap();
    assert!(t.poll_event().is_none(), "the ACK of a non-2xx is ours");
    assert!(times(&run_until(&mut t, ms(200), ms(40_000)), "SIP/2.0 486").is_empty());
    // A new INVITE (CSeq 6) is a new transaction; its CANCEL matches it.
    t.handle_bytes(ms(41_000), &old("INVITE", "6 INVITE"), phone())
        .unwrap();
    let (invite6, _) = next_request(&mut t);
    t.handle_bytes(ms(41_100), &old("CANCEL", "6 CANCEL"), phone())
        .unwrap();
    assert!(matches!(
        t.poll_event(),
        Some(TxEvent::Cancelled { invite, .. }) if invite == invite6
    ));
}

/// Past the bound on server transactions a new request is answered 503
/// with Retry-After and leaves nothing behind; a request inside a dialog
/// still gets through; and past half the bound an answered non-INVITE
/// transaction is not kept (a flood of OPTIONS never fills the table).
#[test]
fn past_the_transaction_bound_new_requests_get_503_statelessly() {
    let mut t = layer();
    t.set_max_server_transactions(3);
    // INVITE transactions are kept until their ACK.
    for i in 0..3 {
        t.handle_bytes(ms(0), &request("INVITE", &format!("i{i}"), ""), phone())
            .unwrap();
        let (tx, r) = next_request(&mut t);
        t.send_response(ms(0), tx, r.response(486, Some("t")));
    }
    while t.poll_transmit().is_some() {}
    t.handle_bytes(ms(1), &request("OPTIONS", "o3", ""), phone())
        .unwrap();
    assert!(
        t.poll_event().is_none(),
        "no transaction, nothing to answer"
    );
    let sent = t.poll_transmit().expect("an answer");
    let text = String::from_utf8_lossy(&sent.bytes).into_owned();
    assert!(text.starts_with("SIP/2.0 503"), "{text}");
    assert!(text.contains("Retry-After: 5"), "{text}");
    assert_eq!(t.len().0, 3);
    assert_eq!(t.shed(), 1);
    // A BYE inside a dialog is taken.
    let bye = String::from_utf8(request("BYE", "b1", ""))
        .unwrap()
        .replace(
            "To: <sip:701@127.0.0.1>",
            "To: <sip:701@127.0.0.1>;tag=ours",
        );
    t.handle_bytes(ms(2), bye.as_bytes(), phone()).unwrap();
    let (tx, r) = next_request(&mut t);
    assert_eq!(r.method, Method::Bye);
    let before = t.len().0;
    t.send_response(ms(2), tx, r.response(200, None));
    assert_eq!(
        t.len().0,
        before,
        "answered, kept to absorb retransmissions"
    );
    while t.poll_transmit().is_some() {}
    // Its retransmission gets the same 200, not a new transaction.
    t.handle_bytes(ms(3), bye.as_bytes(), phone()).unwrap();
    assert_eq!(t.poll_event(), None);
    let again = String::from_utf8(t.poll_transmit().expect("the 200 again").bytes).unwrap();
    assert!(again.starts_with("SIP/2.0 200"), "{again}");
}

#[test]
fn a_large_error_is_resent_on_a_timer_twice_and_then_only_for_a_retransmission() {
    let mut t = layer();
    // 30 Vias make a 486 of about 2.5 KB, past the 1,300-byte mark.
    let vias: String = (0..30)
        .map(|i| format!("Via: SIP/2.0/UDP 10.0.0.{i}:5060;branch=z9hG4bKhop{i}\r\n"))
        .collect();
    let invite = request("INVITE", "big", &vias);
    t.handle_bytes(ms(0), &invite, phone()).unwrap();
    let (tx, r) = next_request(&mut t);
    let busy = r.response(486, Some("srv"));
    t.send_response(ms(0), tx, busy);
    let sent = run_until(&mut t, ms(0), ms(20_000));
    assert_eq!(times(&sent, "SIP/2.0 486"), [0, 500, 1_500]);
    // The peer's own retransmission is still answered, one for one.
    t.handle_bytes(ms(20_000), &invite, phone()).unwrap();
    let sent = run_until(&mut t, ms(20_000), ms(20_000));
    assert_eq!(times(&sent, "SIP/2.0 486"), [20_000]);
    // And timer H still ends the transaction.
    run_until(&mut t, ms(20_000), ms(40_000));
    assert_eq!(t.len(), (0, 0));
}

#[test]
fn a_server_transaction_keeps_only_what_a_response_needs() {
    let mut t = layer();
    let body = "x".repeat(8_000);
    let invite = format!(
        "INVITE sip:701@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKkeep\r\nFrom: <sip:bob@example.com>;tag=b1\r\nTo: <sip:701@127.0.0.1>\r\nCall-ID: call-keep\r\nCSeq: 1 INVITE\r\nSubject: {body}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    t.handle_bytes(ms(0), invite.as_bytes(), phone()).unwrap();
    let (tx, full) = next_request(&mut t);
    assert_eq!(full.body.len(), 8_000, "the transaction user gets it all");
    let kept = t.server_request(tx).expect("open");
    assert!(kept.body.is_empty());
    let names: Vec<&str> = kept.headers.iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["Via", "From", "To", "Call-ID", "CSeq"]);
    assert_eq!(kept.method, Method::Invite);
    assert_eq!(kept.uri, full.uri);
    assert_eq!(
        kept.response(487, Some("t")).headers,
        full.response(487, Some("t")).headers
    );
}

#[test]
fn at_the_bound_transactions_that_only_linger_make_room_for_new_calls() {
    let mut t = layer();
    t.set_max_server_transactions(3);
    // Three INVITEs answered 200 and ACKed: each lingers 32 s (timer L)
    // to absorb retransmissions, doing nothing else.
    for i in 0..3 {
        let invite = String::from_utf8(request("INVITE", &format!("a{i}"), ""))
            .unwrap()
            .replace("call-1", &format!("call-a{i}"));
        t.handle_bytes(ms(0), invite.as_bytes(), phone()).unwrap();
        let (tx, r) = next_request(&mut t);
        t.send_response(ms(0), tx, r.response(200, Some("t")));
        let ack = String::from_utf8(request("ACK", &format!("k{i}"), ""))
            .unwrap()
            .replace("call-1", &format!("call-a{i}"))
            .replace("To: <sip:701@127.0.0.1>", "To: <sip:701@127.0.0.1>;tag=t");
        t.handle_bytes(ms(1), ack.as_bytes(), phone()).unwrap();
    }
    while t.poll_event().is_some() {}
    while t.poll_transmit().is_some() {}
    assert_eq!(t.len().0, 3);
    // A new call is taken at once: the oldest lingering one made room.
    t.handle_bytes(ms(2), &request("INVITE", "new", ""), phone())
        .unwrap();
    let (_, r) = next_request(&mut t);
    assert_eq!(r.method, Method::Invite);
    assert_eq!((t.len().0, t.shed()), (3, 0));
    // An INVITE still waiting for its ACK is at work and is never
    // forgotten: with the table full of those, the next one gets 503.
    let mut t = layer();
    t.set_max_server_transactions(2);
    for i in 0..2 {
        t.handle_bytes(ms(0), &request("INVITE", &format!("w{i}"), ""), phone())
            .unwrap();
        let (tx, r) = next_request(&mut t);
        t.send_response(ms(0), tx, r.response(200, Some("t")));
    }
    while t.poll_transmit().is_some() {}
    t.handle_bytes(ms(1), &request("INVITE", "late", ""), phone())
        .unwrap();
    let text = String::from_utf8(t.poll_transmit().expect("answered").bytes).unwrap();
    assert!(text.starts_with("SIP/2.0 503"), "{text}");
    assert_eq!(t.shed(), 1);
}

#[test]
fn while_overloaded_new_calls_get_503_and_dialogs_and_retransmissions_flow() {
    let mut t = layer();
    t.handle_bytes(ms(0), &request("INVITE", "before", ""), phone())
        .unwrap();
    let _ = next_request(&mut t);
    while t.poll_transmit().is_some() {}
    t.set_overloaded(true);
    // A new INVITE: 503 with Retry-After, nothing for the transaction user.
    t.handle_bytes(ms(1), &request("INVITE", "new", ""), phone())
        .unwrap();
    assert_eq!(t.poll_event(), None);
    let busy = String::from_utf8(t.poll_transmit().expect("answered").bytes).unwrap();
    assert!(busy.starts_with("SIP/2.0 503"), "{busy}");
    assert!(busy.contains("Retry-After: 5"), "{busy}");
    // The retransmission of the INVITE taken before gets its 100 again.
    t.handle_bytes(ms(2), &request("INVITE", "before", ""), phone())
        .unwrap();
    let again = String::from_utf8(t.poll_transmit().expect("answered").bytes).unwrap();
    assert!(again.starts_with("SIP/2.0 100"), "{again}");
    // A BYE inside a dialog and an OPTIONS are served.
    let bye = String::from_utf8(request("BYE", "b1", ""))
        .unwrap()
        .replace(
            "To: <sip:701@127.0.0.1>",
            "To: <sip:701@127.0.0.1>;tag=ours",
        );
    t.handle_bytes(ms(3), bye.as_bytes(), phone()).unwrap();
    assert_eq!(next_request(&mut t).1.method, Method::Bye);
    t.handle_bytes(ms(3), &request("OPTIONS", "o1", ""), phone())
        .unwrap();
    assert_eq!(next_request(&mut t).1.method, Method::Options);
    // Caught up: new calls are taken again.
    t.set_overloaded(false);
    t.handle_bytes(ms(4), &request("INVITE", "after", ""), phone())
        .unwrap();
    assert_eq!(next_request(&mut t).1.method, Method::Invite);
    assert_eq!(t.shed(), 1);
}

/// RFC 6026: once our 2xx is ACKed, a retransmitted INVITE is absorbed
/// (no 2xx again, no new request for the TU) until timer L, and the
/// transaction keeps nothing of the request: a parked call's INVITE once
/// held the request and our 2xx for 32 s after its ACK.
#[test]
fn after_the_ack_a_retransmitted_invite_is_absorbed_and_the_request_dropped() {
    let mut t = layer();
    t.handle_bytes(ms(0), &request("INVITE", "inv20", ""), phone())
        .unwrap();
    let (tx, invite) = next_request(&mut t);
    t.send_response(ms(0), tx, invite.response(200, Some("srv")));
    run_until(&mut t, ms(0), ms(0));
    let ack = String::from_utf8(request("ACK", "ack20", ""))
        .unwrap()
        .replace("To: <sip:701@127.0.0.1>", "To: <sip:701@127.0.0.1>;tag=srv");
    t.handle_bytes(ms(100), ack.as_bytes(), phone()).unwrap();
    assert!(matches!(t.poll_event(), Some(TxEvent::Ack { .. })));
    assert!(t.server_request(tx).is_none(), "the request is dropped");
    t.handle_bytes(ms(200), &request("INVITE", "inv20", ""), phone())
        .unwrap();
    assert_eq!(t.poll_event(), None, "a retransmission, not a new call");
    let sent = run_until(&mut t, ms(200), ms(31_000));
    assert!(sent.is_empty(), "nothing is sent again: {sent:?}");
    assert_eq!(t.len(), (1, 0), "it lingers until timer L");
    run_until(&mut t, ms(31_000), ms(40_000));
    assert_eq!(t.len(), (0, 0));
}
