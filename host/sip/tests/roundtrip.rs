//! Property: whatever request we can represent, we write and read back the
//! same; and parsing never panics on arbitrary bytes.

use callpark_sip::codec::{parse, serialize};
use callpark_sip::message::{Headers, Message, Method, Request};
use callpark_sip::uri::{Host, NameAddr, Scheme, Uri};
use proptest::prelude::*;

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9]{0,6}){0,3}".prop_map(Host::Name),
        any::<[u8; 4]>().prop_map(|o| Host::Ip(std::net::IpAddr::from(o))),
        any::<[u16; 8]>().prop_map(|s| Host::Ip(std::net::IpAddr::from(s))),
    ]
}

fn uri() -> impl Strategy<Value = Uri> {
    (
        proptest::option::of("[a-zA-Z0-9][a-zA-Z0-9._!~*'()+-]{0,15}"),
        host(),
        proptest::option::of(1u16..),
        proptest::collection::vec(
            (
                "[a-z][a-z0-9-]{0,8}",
                proptest::option::of("[a-zA-Z0-9.-]{1,8}"),
            ),
            0..3,
        ),
    )
        .prop_map(|(user, host, port, params)| Uri {
            scheme: Scheme::Sip,
            user,
            host: Some(host),
            port,
            params,
            headers: Vec::new(),
        })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Invite),
        Just(Method::Bye),
        Just(Method::Options),
        Just(Method::Refer),
        Just(Method::Subscribe),
        "[A-Z]{3,10}".prop_map(|m| Method::parse(&m)),
    ]
}

prop_compose! {
    fn request()(
        method in method(),
        target in uri(),
        from in uri(),
        display in proptest::option::of("[a-zA-Z0-9 ,.\"\\\\]{1,20}"),
        tag in "[a-zA-Z0-9-]{1,12}",
        call_id in "[a-zA-Z0-9.@-]{1,30}",
        seq in any::<u32>(),
        branch in "[a-zA-Z0-9]{1,16}",
        extra in proptest::collection::vec(("X-[A-Za-z0-9]{1,10}", "[!-~]([ -~]{0,30}[!-~])?"), 0..4),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) -> Request {
        let mut headers = Headers::new();
        headers.push("Via", format!("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{branch}"));
        let from = NameAddr { display: display.map(|d| d.trim().to_string()).filter(|d| !d.is_empty()), uri: from, params: vec![] }
            .with_param("tag", &tag);
        headers.push("From", from.to_string());
        headers.push("To", NameAddr::new(target.clone()).to_string());
        headers.push("Call-ID", call_id);
        headers.push("CSeq", format!("{seq} {method}"));
        for (n, v) in extra {
            headers.push(n, v);
        }
        Request { method, uri: target, headers, body }
    }
}

fn without_length(mut m: Message) -> Message {
    match &mut m {
        Message::Request(r) => r.headers.remove("Content-Length"),
        Message::Response(r) => r.headers.remove("Content-Length"),
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn requests_round_trip(r in request()) {
        let wire = serialize(&Message::Request(r.clone()));
        let back = parse(&wire).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&wire))))?;
        prop_assert_eq!(without_length(back), Message::Request(r));
    }

    #[test]
    fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn mutated_requests_never_panic(r in request(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut wire = serialize(&Message::Request(r));
        let i = at.index(wire.len());
        wire[i] = byte;
        let _ = parse(&wire);
    }
}
