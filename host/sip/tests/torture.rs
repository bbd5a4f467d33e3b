//! Messages in the spirit of RFC 4475 (SIP torture tests), written for this
//! suite: valid ones must parse to the right values, invalid ones must be
//! refused cleanly (with the request kept when a 400 can still be sent).

use callpark_sip::codec::{Malformed, StreamFramer, parse, serialize};
use callpark_sip::message::{HeaderView, Message, Method, Request};
use callpark_sip::uri::Host;

fn lines(parts: &[&str]) -> String {
    let mut s = parts.join("\r\n");
    s.push_str("\r\n");
    s
}

fn request(text: &str) -> Request {
    match parse(text.as_bytes()) {
        Ok(Message::Request(r)) => r,
        other => panic!("expected a request, got {other:?}\n{text}"),
    }
}

fn refused(text: &str) -> Malformed {
    match parse(text.as_bytes()) {
        Err(e) => e,
        Ok(m) => panic!("accepted {m:?}\n{text}"),
    }
}

#[test]
fn a_tortuous_but_valid_invite() {
    // Mixed-case names, folded lines, spaces around colons, escaped user,
    // quoted display names with escapes, unknown headers, several Vias on
    // one line, LWS inside parameters.
    let text = lines(&[
        "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0",
        "TO :",
        " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
        "from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>",
        "  ;",
        "  tag = 98asjd8",
        "MaX-fOrWaRdS: 0068",
        "Call-ID: wsinv.ndaksdj@192.0.2.1",
        "Content-Length   : 0",
        "cseq: 0009",
        "  INVITE",
        "Via  : SIP  /   2.0",
        " /UDP",
        "    192.0.2.2;rport;branch=390skdjuw",
        "s :",
        "NewFangledHeader:   newfangled value",
        " continued newfangled value",
        "UnknownHeaderWithUnusualValue: ;;,,;;,;",
        "v:  SIP/2.0/TCP spindle.example.com   ;",
        "  branch  =   z9hG4bK9ikj8  ,",
        " SIP  /    2.0   / UDP  192.168.255.111   ; branch=",
        " z9hG4bK30239",
        "m:\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =",
        "      newvalue ;",
        "  secondparam ; q = 0.33",
        "",
    ]);
    let r = request(&text);
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri.user.as_deref(), Some("vivekg"));
    assert_eq!(r.to().unwrap().tag(), Some("1918181833n"));
    let from = r.from().unwrap();
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(from.display.as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(r.max_forwards().unwrap(), Some(68));
    assert_eq!(r.cseq().unwrap(), (9, Method::Invite));
    assert_eq!(
        r.header("newfangledheader"),
        Some("newfangled value continued newfangled value")
    );
    let vias = r.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[1].host, Host::Name("spindle.example.com".into()));
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    assert_eq!(r.contact().unwrap().unwrap().param("q"), Some(Some("0.33")));
}

#[test]
fn escapes_and_unusual_but_legal_characters() {
    let text = lines(&[
        "OPTIONS sip:user%3Aname@example.com;lr SIP/2.0",
        "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw",
        "From: \"%Some~Name*\" <sip:caller@example.net>;tag=-.!%*_+`'~",
        "To: <sip:user%3Aname@example.com>",
        "Call-ID: a.b-c!d%e*f_g+h`i'j~k@host",
        "CSeq: 139122385 OPTIONS",
        "Max-Forwards: 255",
        "",
    ]);
    let r = request(&text);
    assert_eq!(r.uri.user_decoded().as_deref(), Some("user:name"));
    assert_eq!(r.from().unwrap().tag(), Some("-.!%*_+`'~"));
    assert_eq!(r.cseq().unwrap().0, 139_122_385);
}

#[test]
fn unknown_method_with_matching_cseq() {
    let r = request(&lines(&[
        "NEWMETHOD sip:user@example.com SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1",
        "From: <sip:a@example.com>;tag=1",
        "To: <sip:user@example.com>",
        "Call-ID: m@1",
        "CSeq: 8 NEWMETHOD",
        "",
    ]));
    assert_eq!(r.method, Method::Other("NEWMETHOD".into()));
}

#[test]
fn responses_with_odd_reasons() {
    for (line, status) in [
        ("SIP/2.0 200 OK", 200),
        (
            "SIP/2.0 420 Bad Extension and a very long, unusual reason ðŸ\u{98}€",
            420,
        ),
        ("SIP/2.0 100 ", 100),
    ] {
        let text = lines(&[
            line,
            "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK2",
            "Call-ID: r@1",
            "CSeq: 1 INVITE",
            "",
        ]);
        match parse(text.as_bytes()) {
            Ok(Message::Response(r)) => assert_eq!(r.status, status),
            other => panic!("{line}: {other:?}"),
        }
    }
}

fn base(first: &str, extra: &[&str]) -> String {
    let mut parts = vec![
        first,
        "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1",
        "From: <sip:a@example.com>;tag=1",
        "To: <sip:b@example.com>",
        "Call-ID: bad@1",
        "CSeq: 1 INVITE",
    ];
    parts.extend_from_slice(extra);
    parts.push("");
    lines(&parts)
}

#[test]
fn invalid_messages_are_refused_and_answerable_when_possible() {
    let cases: Vec<(&str, String, bool)> = vec![
        (
            "Content-Length larger than the body",
            base(
                "INVITE sip:b@example.com SIP/2.0",
                &["Content-Length: 9999"],
            ),
            true,
        ),
        (
            "negative Content-Length",
            base(
                "INVITE sip:b@example.com SIP/2.0",
                &["Content-Length: -999"],
            ),
            true,
        ),
        (
            "unsupported SIP version",
            base("INVITE sip:b@example.com SIP/7.0", &[]),
            true,
        ),
        (
            "Request-URI in angle brackets",
            base("INVITE <sip:b@example.com> SIP/2.0", &[]),
            true,
        ),
        (
            "spaces inside the Request-URI",
            base("INVITE sip:b@example.com; lr SIP/2.0", &[]),
            false,
        ),
        (
            "CSeq method does not match",
            base("OPTIONS sip:b@example.com SIP/2.0", &[]),
            true,
        ),
        (
            "unterminated quote in From",
            base("INVITE sip:b@example.com SIP/2.0", &[]).replace(
                "From: <sip:a@example.com>",
                "From: \"Bob <sip:a@example.com",
            ),
            true,
        ),
        (
            "non-numeric Max-Forwards",
            base("INVITE sip:b@example.com SIP/2.0", &["Max-Forwards: many"]),
            true,
        ),
        (
            "no Call-ID",
            base("INVITE sip:b@example.com SIP/2.0", &[]).replace("Call-ID: bad@1\r\n", ""),
            true,
        ),
        ("not a URI", base("INVITE b@example.com SIP/2.0", &[]), true),
        (
            "header line without a colon",
            base("INVITE sip:b@example.com SIP/2.0", &["Nonsense"]),
            false,
        ),
        ("garbage", "\u{1}\u{2}hello world".to_string(), false),
        (
            "no blank line",
            "INVITE sip:b@example.com SIP/2.0\r\nVia: x".to_string(),
            false,
        ),
    ];
    for (name, text, answerable) in cases {
        let e = refused(&text);
        assert_eq!(e.request.is_some(), answerable, "{name}: {e}");
        assert!(!e.reason.is_empty());
    }
}

#[test]
fn stream_framing_by_content_length_with_keepalives() {
    let one = base("MESSAGE sip:b@example.com SIP/2.0", &["Content-Length: 5"])
        .replace("1 INVITE", "1 MESSAGE")
        + "\r\nhello";
    let one = one.replacen("\r\n\r\n\r\n", "\r\n\r\n", 1);
    let mut stream = b"\r\n\r\n".to_vec();
    stream.extend_from_slice(one.as_bytes());
    stream.extend_from_slice(one.as_bytes());
    let mut framer = StreamFramer::new();
    let mut frames = Vec::new();
    // Byte by byte: the worst a TCP peer can do.
    for b in &stream {
        framer.push(&[*b]);
        while let Some(f) = framer.next_frame().unwrap() {
            frames.push(f);
        }
    }
    assert_eq!(frames.len(), 2);
    for f in frames {
        match parse(&f) {
            Ok(Message::Request(r)) => assert_eq!(r.body, b"hello"),
            other => panic!("{other:?}"),
        }
    }
    let mut bad = StreamFramer::new();
    bad.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: x\r\n\r\n");
    assert!(bad.next_frame().is_err());
}

#[test]
fn what_we_write_we_read_back() {
    let r = request(&base("INVITE sip:b@example.com SIP/2.0", &["l: 0"]));
    let again = parse(&serialize(&Message::Request(r.clone()))).unwrap();
    assert_eq!(again, Message::Request(r));
}

#[test]
fn absurd_via_counts_are_refused_with_a_400() {
    let vias: Vec<String> = (0..71)
        .map(|i| {
            format!(
                "Via: SIP/2.0/UDP 10.0.0.{}:5060;branch=z9hG4bKv{i}",
                i % 250
            )
        })
        .collect();
    let mut extra: Vec<&str> = vias.iter().map(String::as_str).collect();
    extra.push("Content-Length: 0");
    let e = refused(&base("INVITE sip:b@example.com SIP/2.0", &extra));
    assert!(e.reason.contains("Via headers"), "{e}");
    assert!(e.request.is_some(), "answerable");
    // 70 in all (the base's own and 69) is still a path.
    let fine: Vec<&str> = extra[2..].to_vec();
    request(&base("INVITE sip:b@example.com SIP/2.0", &fine));
}
