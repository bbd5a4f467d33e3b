//! The wire codec: bytes to `Message` and back. The only module that names
//! rsip types.
//!
//! rsip 0.4 has defects a production server cannot have; this facade copes
//! with each, and a test below proves every item against rsip itself:
//! - compact header names (`v`, `f`, `t`, `i`, `m`, `l`, `c`, `k`, `s`, `e`,
//!   `o`, `r`, `b`, ...) come through as unknown headers: we expand them
//!   before rsip sees the header block;
//! - `sip:john.doe@host` is read with `john.doe@host` as the host, IPv6 hosts
//!   and `tel:` URIs fail the whole message, and an unknown method fails the
//!   whole message: we read the start line and every URI ourselves
//!   (`crate::uri`) and hand rsip a fixed start line;
//! - `Referred-By`, `Refer-To`, `Replaces`, `Subscription-State` arrive
//!   untyped: our `HeaderView` reads them;
//! - the body is whatever follows the blank line, `Content-Length`
//!   notwithstanding: framing (UDP and TCP) is ours.
//!
//! What rsip does for us: it splits the header block and gives every header
//! it knows its canonical spelling (`call-id` -> `Call-ID`).

use crate::message::{HeaderView, Headers, Message, Method, Request, Response};
use crate::uri::Uri;

/// The longest header block we accept.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The most Via entries a request may carry.
pub const MAX_VIAS: usize = 70;
/// The longest body we accept.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A message that could not be read. `request` holds what could be read of
/// a request, so that the server can answer `status` (400, or 505 for
/// another SIP version, 416 for a Request-URI scheme we do not know) with
/// a `Warning`; without it the message is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Malformed {
    pub reason: String,
    pub status: u16,
    pub request: Option<Box<Request>>,
}

impl Malformed {
    /// The status the message was answered with, when it was: a message
    /// that `Transactions::handle_bytes` could not answer comes back
    /// without its request.
    pub fn answered(&self) -> Option<u16> {
        self.request.is_some().then_some(self.status)
    }

    fn new(reason: impl Into<String>) -> Malformed {
        Malformed {
            reason: reason.into(),
            status: 400,
            request: None,
        }
    }
}

/// Headers that a request carries at most once (RFC 3261 §7.3.1: only
/// comma-list headers may repeat). A second To, From, Call-ID or CSeq makes
/// the request ambiguous (RFC 4475 `multi01`), a second Content-Length
/// makes the framing ambiguous (`mcl01`).
const SINGLE_HEADERS: [&str; 6] = [
    "To",
    "From",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Content-Length",
];

fn repeated_header(headers: &Headers) -> Option<&'static str> {
    SINGLE_HEADERS
        .into_iter()
        .find(|name| headers.get_all(name).nth(1).is_some())
}

/// Long names of the compact forms (RFC 3261 §7.3.3 and the RFCs that
/// registered more).
fn expand_compact(name: &str) -> Option<&'static str> {
    if name.len() != 1 {
        return None;
    }
    Some(match name.as_bytes()[0].to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'j' => "Reject-Contact",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'n' => "Identity-Info",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        b'y' => "Identity",
        _ => return None,
    })
}

/// Finds the end of the header block: the index of the blank line's first
/// byte and the index where the body starts. Accepts CRLF and bare LF.
fn header_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            if bytes.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if bytes.get(i + 1) == Some(&b'\r') && bytes.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

/// Header lines, unfolded (RFC 3261 §7.3.1), with compact names expanded.
fn header_lines(block: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for raw in block.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match out.last_mut() {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(line.trim());
                    continue;
                }
                None => return Err(format!("continuation line before any header: `{line}`")),
            }
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header line without a colon: `{line}`"))?;
        let name = name.trim();
        if !Method::is_token(name) {
            return Err(format!("bad header name `{name}`"));
        }
        let name = expand_compact(name).map_or_else(|| name.to_string(), str::to_string);
        out.push((name, value.trim().to_string()));
    }
    Ok(out)
}

/// Gives headers rsip's canonical spelling. rsip parses the block behind a
/// fixed start line that it can read, since it cannot read every real one.
fn canonical(lines: Vec<(String, String)>) -> Headers {
    let mut synthetic = String::from("OPTIONS sip:canonical.invalid SIP/2.0\r\n");
    for (n, v) in &lines {
        synthetic.push_str(n);
        synthetic.push_str(": ");
        synthetic.push_str(v);
        synthetic.push_str("\r\n");
    }
    synthetic.push_str("\r\n");
    let mut headers = Headers::new();
    match rsip::SipMessage::try_from(synthetic.as_str()) {
        Ok(rsip::SipMessage::Request(r)) if r.headers.iter().count() == lines.len() => {
            for (header, (name, value)) in r.headers.iter().zip(lines) {
                let printed = header.to_string();
                let canonical = printed
                    .split_once(':')
                    .map(|(n, _)| n.trim())
                    .filter(|n| n.eq_ignore_ascii_case(&name))
                    .map_or(name, str::to_string);
                headers.push(canonical, value);
            }
        }
        // rsip refused a value it has an opinion on: keep the names as sent.
        _ => {
            for (n, v) in lines {
                headers.push(n, v);
            }
        }
    }
    headers
}

fn content_length(headers: &Headers) -> Result<Option<usize>, String> {
    if headers.get_all("Content-Length").nth(1).is_some() {
        return Err("more than one Content-Length".into());
    }
    match headers.get("Content-Length") {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map(Some)
            .map_err(|_| format!("bad Content-Length `{v}`")),
    }
}

/// Reads one message from a datagram (or a frame cut by `StreamFramer`).
/// Bytes after `Content-Length` are ignored (RFC 3261 §18.3); a body
/// shorter than it is malformed.
pub fn parse(bytes: &[u8]) -> Result<Message, Malformed> {
    // Stream keep-alives and leading blank lines are not messages.
    let start = bytes
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .ok_or_else(|| Malformed::new("empty message"))?;
    let bytes = &bytes[start..];
    let (head_end, body_start) =
        header_end(bytes).ok_or_else(|| Malformed::new("no blank line after the headers"))?;
    if head_end > MAX_HEADER_BYTES {
        return Err(Malformed::new("header block too large"));
    }
    let head = std::str::from_utf8(&bytes[..head_end])
        .map_err(|_| Malformed::new("headers are not UTF-8"))?;
    let (start_line, block) = head.split_once('\n').unwrap_or((head, ""));
    let start_line = start_line.strip_suffix('\r').unwrap_or(start_line);
    let lines = header_lines(block).map_err(Malformed::new)?;
    let headers = canonical(lines);
    let body = &bytes[body_start..];

    let parts: Vec<&str> = start_line.split(' ').collect();
    if parts.len() >= 2 && parts[0] == "SIP/2.0" {
        let status: u16 = parts[1]
            .parse()
            .ok()
            .filter(|s| (100..700).contains(s))
            .ok_or_else(|| Malformed::new(format!("bad status line `{start_line}`")))?;
        let body = frame_body(&headers, body).map_err(Malformed::new)?;
        return Ok(Message::Response(Response {
            status,
            reason: parts[2..].join(" "),
            headers,
            body,
        }));
    }
    if parts.len() != 3 {
        return Err(Malformed::new(format!("bad start line `{start_line}`")));
    }
    if !Method::is_token(parts[0]) {
        return Err(Malformed::new(format!("bad method `{}`", parts[0])));
    }
    let method = Method::parse(parts[0]);
    let uri_text = parts[1];
    let version = parts[2];
    // From here on a request can be answered with 400, so keep it.
    let fallback_uri = Uri::parse("sip:invalid.invalid").expect("a valid URI");
    let mut request = Request {
        method,
        uri: fallback_uri,
        headers,
        body: Vec::new(),
    };
    let reject = |request: Request, reason: String| Malformed {
        reason,
        status: 400,
        request: Some(Box::new(request)),
    };
    // RFC 3261 §8.2.6 and §21.5.6: a version we do not speak gets 505; a
    // Request-URI scheme we do not know gets 416 (§8.2.2.1).
    if version != "SIP/2.0" {
        if version.starts_with("SIP/") {
            return Err(Malformed {
                status: 505,
                ..reject(request, format!("unsupported version `{version}`"))
            });
        }
        return Err(reject(request, format!("bad version `{version}`")));
    }
    match Uri::parse(uri_text) {
        // §19.1.5: URI headers belong in Refer-To and the like, never in a
        // Request-URI (RFC 4475 `escruri`).
        Ok(uri) if !uri.headers.is_empty() => {
            return Err(reject(
                request,
                "the Request-URI carries URI headers".to_string(),
            ));
        }
        Ok(uri) => request.uri = uri,
        Err(e) if e.is_unknown_scheme() => {
            return Err(Malformed {
                status: 416,
                ..reject(request, e.to_string())
            });
        }
        Err(e) => return Err(reject(request, e.to_string())),
    }
    match frame_body(&request.headers, body) {
        Ok(b) => request.body = b,
        Err(e) => return Err(reject(request, e)),
    }
    if let Err(e) = check_request(&request) {
        return Err(reject(request, e));
    }
    Ok(Message::Request(request))
}

/// The checks of RFC 3261 §8.2 that make a request processable: the
/// mandatory headers readable, and a CSeq whose method is the request's.
fn check_request(r: &Request) -> Result<(), String> {
    if let Some(name) = repeated_header(&r.headers) {
        return Err(format!("more than one {name} header"));
    }
    let vias = r.vias().map_err(|e| e.to_string())?;
    // Every hop adds one, and Max-Forwards starts at 70: more than this is
    // not a real path but an attempt to make our answers large (each
    // response repeats every Via, and may be resent).
    if vias.len() > MAX_VIAS {
        return Err(format!("{} Via headers (at most {MAX_VIAS})", vias.len()));
    }
    r.from().map_err(|e| e.to_string())?;
    r.to().map_err(|e| e.to_string())?;
    r.call_id().map_err(|e| e.to_string())?;
    let (_, method) = r.cseq().map_err(|e| e.to_string())?;
    if method != r.method {
        return Err(format!(
            "CSeq method {method} does not match the request method {}",
            r.method
        ));
    }
    r.max_forwards().map_err(|e| e.to_string())?;
    Ok(())
}

fn frame_body(headers: &Headers, body: &[u8]) -> Result<Vec<u8>, String> {
    match content_length(headers)? {
        Some(n) if n > body.len() => Err(format!(
            "body is shorter than Content-Length ({} < {n})",
            body.len()
        )),
        Some(n) if n > MAX_BODY_BYTES => Err("body too large".into()),
        Some(n) => Ok(body[..n].to_vec()),
        None if body.len() > MAX_BODY_BYTES => Err("body too large".into()),
        None => Ok(body.to_vec()),
    }
}

fn write_headers(out: &mut Vec<u8>, headers: &Headers, body: &[u8]) {
    for (n, v) in headers.iter() {
        if n.eq_ignore_ascii_case("Content-Length") {
            continue;
        }
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
}

/// Writes a request; `Content-Length` is always set from the body.
pub fn serialize_request(r: &Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + r.body.len());
    out.extend_from_slice(format!("{} {} SIP/2.0\r\n", r.method, r.uri).as_bytes());
    write_headers(&mut out, &r.headers, &r.body);
    out
}

/// Writes a response; `Content-Length` is always set from the body.
pub fn serialize_response(r: &Response) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + r.body.len());
    out.extend_from_slice(format!("SIP/2.0 {} {}\r\n", r.status, r.reason).as_bytes());
    write_headers(&mut out, &r.headers, &r.body);
    out
}

pub fn serialize(m: &Message) -> Vec<u8> {
    match m {
        Message::Request(r) => serialize_request(r),
        Message::Response(r) => serialize_response(r),
    }
}

/// Cuts a TCP byte stream into messages by `Content-Length` (RFC 3261
/// §18.3); CRLF keep-alives (RFC 5626) between messages are skipped.
#[derive(Debug)]
pub struct StreamFramer {
    buf: Vec<u8>,
    /// The largest body a message may declare on this stream.
    max_body: usize,
}

impl Default for StreamFramer {
    fn default() -> StreamFramer {
        StreamFramer {
            buf: Vec::new(),
            max_body: MAX_BODY_BYTES,
        }
    }
}

/// The stream cannot be framed any more; close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot frame the stream: {0}")]
pub struct FramingError(pub String);

impl StreamFramer {
    pub fn new() -> StreamFramer {
        StreamFramer::default()
    }

    /// A framer that refuses a message declaring a body over `max_body`
    /// bytes before buffering it (a stranger's `Content-Length: 1048576`
    /// would otherwise hold a megabyte per connection).
    pub fn with_max_body(max_body: usize) -> StreamFramer {
        StreamFramer {
            buf: Vec::new(),
            max_body: max_body.min(MAX_BODY_BYTES),
        }
    }

    /// Whether part of a message has arrived and waits for the rest.
    pub fn has_partial(&self) -> bool {
        self.buf.iter().any(|b| *b != b'\r' && *b != b'\n')
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message's bytes, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        let skip = self
            .buf
            .iter()
            .position(|b| *b != b'\r' && *b != b'\n')
            .unwrap_or(self.buf.len());
        self.buf.drain(..skip);
        let Some((head_end, body_start)) = header_end(&self.buf) else {
            if self.buf.len() > MAX_HEADER_BYTES {
                return Err(FramingError("header block too large".into()));
            }
            return Ok(None);
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]);
        let mut length = 0usize;
        for line in head.split('\n').skip(1) {
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim();
                if name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l") {
                    length = value.trim().parse().map_err(|_| {
                        FramingError(format!("bad Content-Length `{}`", value.trim()))
                    })?;
                }
            }
        }
        if length > self.max_body {
            return Err(FramingError(format!(
                "a body of {length} bytes (at most {})",
                self.max_body
            )));
        }
        let total = body_start + length;
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(self.buf.drain(..total).collect()))
    }
}

#[cfg(test)]
mod rsip_defects {
    //! Each defect of rsip 0.4 the facade copes with: first shown on rsip
    //! itself, then handled by `parse`.
    use super::*;
    use crate::message::HeaderView;
    use crate::uri::{Host, Scheme};

    fn invite(uri: &str, extra: &str) -> String {
        format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:bob@example.com>;tag=1\r\nTo: <{uri}>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    }

    fn request(text: &str) -> Request {
        match parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn compact_header_names() {
        let text = "INVITE sip:701@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nf: <sip:bob@example.com>;tag=1\r\nt: <sip:701@127.0.0.1>\r\ni: abc@1\r\nCSeq: 1 INVITE\r\nm: <sip:bob@127.0.0.1:5070>\r\nc: application/sdp\r\nk: replaces\r\ns: hi\r\ne: identity\r\no: dialog\r\nr: <sip:701@park>\r\nb: <sip:alice@example.com>\r\nl: 0\r\n\r\n";
        let Ok(rsip::SipMessage::Request(raw)) = rsip::SipMessage::try_from(text) else {
            panic!("rsip parses it")
        };
        assert!(matches!(raw.headers.iter().next(), Some(rsip::Header::Other(n, _)) if n == "v"));
        let r = request(text);
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "Via",
                "From",
                "To",
                "Call-ID",
                "CSeq",
                "Contact",
                "Content-Type",
                "Supported",
                "Subject",
                "Content-Encoding",
                "Event",
                "Refer-To",
                "Referred-By",
                "Content-Length"
            ]
        );
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK1"));
        assert_eq!(r.call_id().unwrap(), "abc@1");
        assert_eq!(
            r.referred_by().unwrap().unwrap().uri.user.as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn dotted_user_part() {
        let text = invite("sip:john.doe@example.com", "");
        let Ok(rsip::SipMessage::Request(raw)) = rsip::SipMessage::try_from(text.as_str()) else {
            panic!("rsip parses it")
        };
        assert_eq!(raw.uri.user(), None, "rsip loses the user");
        let r = request(&text);
        assert_eq!(r.uri.user.as_deref(), Some("john.doe"));
        assert_eq!(r.uri.host, Some(Host::Name("example.com".into())));
    }

    #[test]
    fn ipv6_hosts_and_tel_uris() {
        for uri in ["sip:701@[2001:db8::1]:5060", "tel:+15551234"] {
            let text = invite(uri, "");
            assert!(
                rsip::SipMessage::try_from(text.as_str()).is_err(),
                "rsip fails {uri}"
            );
            let r = request(&text);
            assert_eq!(r.uri.to_string(), uri);
        }
        let v6 = "OPTIONS sip:park@[::1] SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:5070;branch=z9hG4bK1;rport\r\nFrom: <sip:bob@[::1]>;tag=1\r\nTo: <sip:park@[::1]>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let r = request(v6);
        assert_eq!(r.top_via().unwrap().host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(r.uri.scheme, Scheme::Sip);
    }

    #[test]
    fn unknown_methods_parse_and_can_be_answered() {
        let text = invite("sip:701@127.0.0.1", "").replace("INVITE", "FOO");
        assert!(rsip::SipMessage::try_from(text.as_str()).is_err());
        let r = request(&text);
        assert_eq!(r.method, Method::Other("FOO".into()));
        let answer = r.response(501, Some("t1"));
        assert_eq!(answer.headers.get("CSeq"), Some("1 FOO"));
    }

    #[test]
    fn transfer_and_event_headers_arrive_untyped_and_are_read() {
        let text = invite(
            "sip:701@127.0.0.1",
            "Refer-To: <sip:701@park?Replaces=abc%40x%3Bto-tag%3D1%3Bfrom-tag%3D2>\r\nReferred-By: \"Alice\" <sip:alice@example.com>\r\nReplaces: call7@x;to-tag=9;from-tag=8\r\nEvent: dialog;id=4\r\nSubscription-State: active;expires=60\r\n",
        );
        let Ok(rsip::SipMessage::Request(raw)) = rsip::SipMessage::try_from(text.as_str()) else {
            panic!()
        };
        let untyped: Vec<&str> = raw
            .headers
            .iter()
            .filter_map(|h| match h {
                rsip::Header::Other(n, _) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            untyped,
            ["Refer-To", "Referred-By", "Replaces", "Subscription-State"]
        );
        let r = request(&text);
        let refer_to = r.refer_to().unwrap().unwrap();
        let embedded = refer_to.uri.header("Replaces").unwrap();
        let embedded = crate::message::Replaces::parse(&embedded).unwrap();
        assert_eq!(
            (embedded.call_id.as_str(), embedded.to_tag.as_str()),
            ("abc@x", "1")
        );
        assert_eq!(
            r.referred_by().unwrap().unwrap().display.as_deref(),
            Some("Alice")
        );
        assert_eq!(r.replaces().unwrap().unwrap().from_tag, "8");
        assert_eq!(r.header("Event"), Some("dialog;id=4"));
        assert_eq!(r.header("Subscription-State"), Some("active;expires=60"));
    }

    #[test]
    fn the_body_follows_content_length() {
        let text = "MESSAGE sip:701@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:bob@example.com>;tag=1\r\nTo: <sip:701@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 5\r\n\r\nhello and junk";
        let Ok(rsip::SipMessage::Request(raw)) = rsip::SipMessage::try_from(text) else {
            panic!()
        };
        assert_eq!(raw.body, b"hello and junk");
        assert_eq!(request(text).body, b"hello");
        let short = text.replace("Content-Length: 5", "Content-Length: 50");
        let err = parse(short.as_bytes()).unwrap_err();
        assert!(err.reason.contains("shorter than Content-Length"), "{err}");
        assert!(
            err.request.is_some(),
            "a truncated request can still get its 400"
        );
    }
}
