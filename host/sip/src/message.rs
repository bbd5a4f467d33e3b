//! SIP messages as the rest of callpark sees them: a start line, ordered
//! headers with canonical names, a body, and typed views of the headers a
//! park server reads. No rsip type appears here (see `codec`).

use std::fmt;

use crate::uri::{Host, NameAddr, Params, Uri, UriError, split_host_port};

/// A request method. Unknown methods parse (and get 501), never fail.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Refer,
    Notify,
    Subscribe,
    Message,
    Info,
    Prack,
    Update,
    Publish,
    Other(String),
}

impl Method {
    pub fn parse(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "SUBSCRIBE" => Method::Subscribe,
            "MESSAGE" => Method::Message,
            "INFO" => Method::Info,
            "PRACK" => Method::Prack,
            "UPDATE" => Method::Update,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Message => "MESSAGE",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Publish => "PUBLISH",
            Method::Other(m) => m,
        }
    }

    /// True for RFC 3261 token characters, what a method may be made of.
    pub fn is_token(text: &str) -> bool {
        !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ordered headers. Names keep their canonical spelling; look-ups ignore case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// Replaces every header of this name with one value.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .0
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(i) => {
                self.0[i].1 = value;
                let mut seen = 0;
                self.0.retain(|(n, _)| {
                    if n.eq_ignore_ascii_case(name) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.0.push((name.to_string(), value)),
        }
    }

    /// Puts a header first (a new top Via).
    pub fn push_front(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(0, (name.into(), value.into()));
    }

    /// Changes the first header of this name, keeping its position.
    pub fn replace_first(&mut self, name: &str, value: impl Into<String>) {
        if let Some(h) = self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            h.1 = value.into();
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a header could not be read as the type asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("bad {name} header: {reason}")]
    Bad { name: &'static str, reason: String },
}

impl HeaderError {
    fn bad(name: &'static str, reason: impl Into<String>) -> HeaderError {
        HeaderError::Bad {
            name,
            reason: reason.into(),
        }
    }
}

impl From<(&'static str, UriError)> for HeaderError {
    fn from((name, e): (&'static str, UriError)) -> Self {
        HeaderError::bad(name, e.to_string())
    }
}

/// One `Via` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, `TLS`, ... upper-cased.
    pub transport: String,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn parse(text: &str) -> Result<Via, HeaderError> {
        let bad = |r: &str| HeaderError::bad("Via", format!("{r}: `{text}`"));
        // sent-protocol allows LWS around each '/' (RFC 3261 §25.1).
        let t = text.trim();
        let (name, rest) = t.split_once('/').ok_or_else(|| bad("not SIP/2.0"))?;
        let (version, rest) = rest.split_once('/').ok_or_else(|| bad("not SIP/2.0"))?;
        if !name.trim().eq_ignore_ascii_case("SIP") || version.trim() != "2.0" {
            return Err(bad("not SIP/2.0"));
        }
        let rest = rest.trim_start();
        let end = rest
            .find(|c: char| c.is_whitespace())
            .ok_or_else(|| bad("no sent-by"))?;
        let transport = rest[..end].to_ascii_uppercase();
        if transport.is_empty() {
            return Err(bad("no transport"));
        }
        let rest = &rest[end..];
        let rest = rest.trim();
        let (sent_by, params) = rest.split_once(';').unwrap_or((rest, ""));
        let (host, port) = split_host_port(sent_by).ok_or_else(|| bad("bad sent-by"))?;
        let params = params
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
                None => (p.to_ascii_lowercase(), None),
            })
            .collect();
        Ok(Via {
            transport,
            host,
            port,
            params,
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_deref())
    }

    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// Sets (or adds) a parameter, e.g. `received` and `rport` (RFC 3581).
    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        match self.params.iter_mut().find(|(k, _)| k == name) {
            Some(p) => p.1 = value,
            None => self.params.push((name.to_string(), value)),
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        for (k, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{k}={v}")?,
                None => write!(f, ";{k}")?,
            }
        }
        Ok(())
    }
}

/// The `Replaces` header (RFC 3891), also found escaped in a `Refer-To` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
    pub early_only: bool,
}

impl Replaces {
    pub fn parse(text: &str) -> Result<Replaces, HeaderError> {
        let mut parts = text.split(';').map(str::trim);
        let call_id = parts
            .next()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| HeaderError::bad("Replaces", "no Call-ID"))?;
        let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
        for p in parts {
            match p.split_once('=') {
                Some((k, v)) if k.trim().eq_ignore_ascii_case("to-tag") => to_tag = Some(v.trim()),
                Some((k, v)) if k.trim().eq_ignore_ascii_case("from-tag") => {
                    from_tag = Some(v.trim())
                }
                None if p.eq_ignore_ascii_case("early-only") => early_only = true,
                _ => {}
            }
        }
        Ok(Replaces {
            call_id: call_id.to_string(),
            to_tag: to_tag
                .ok_or_else(|| HeaderError::bad("Replaces", "no to-tag"))?
                .to_string(),
            from_tag: from_tag
                .ok_or_else(|| HeaderError::bad("Replaces", "no from-tag"))?
                .to_string(),
            early_only,
        })
    }
}

/// Typed views shared by requests and responses.
pub trait HeaderView {
    fn headers(&self) -> &Headers;

    fn header(&self, name: &str) -> Option<&str> {
        self.headers().get(name)
    }

    /// Every Via value, top first (comma-separated values split).
    fn vias(&self) -> Result<Vec<Via>, HeaderError> {
        let mut out = Vec::new();
        for line in self.headers().get_all("Via") {
            for v in split_commas(line) {
                out.push(Via::parse(v)?);
            }
        }
        if out.is_empty() {
            return Err(HeaderError::Missing("Via"));
        }
        Ok(out)
    }

    fn top_via(&self) -> Result<Via, HeaderError> {
        let line = self.header("Via").ok_or(HeaderError::Missing("Via"))?;
        Via::parse(split_commas(line).first().copied().unwrap_or(""))
    }

    fn from(&self) -> Result<NameAddr, HeaderError> {
        name_addr(self.headers(), "From")
    }

    fn to(&self) -> Result<NameAddr, HeaderError> {
        name_addr(self.headers(), "To")
    }

    fn call_id(&self) -> Result<&str, HeaderError> {
        self.header("Call-ID")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or(HeaderError::Missing("Call-ID"))
    }

    fn cseq(&self) -> Result<(u32, Method), HeaderError> {
        let v = self.header("CSeq").ok_or(HeaderError::Missing("CSeq"))?;
        let mut parts = v.split_whitespace();
        let num = parts
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| HeaderError::bad("CSeq", format!("`{v}`: no sequence number")))?;
        let method = parts
            .next()
            .filter(|m| Method::is_token(m))
            .ok_or_else(|| HeaderError::bad("CSeq", format!("`{v}`: no method")))?;
        if parts.next().is_some() {
            return Err(HeaderError::bad("CSeq", format!("`{v}`: trailing text")));
        }
        Ok((num, Method::parse(method)))
    }

    fn contact(&self) -> Result<Option<NameAddr>, HeaderError> {
        match self.header("Contact") {
            None => Ok(None),
            Some(v) if v.trim() == "*" => Ok(None),
            Some(v) => NameAddr::parse(split_commas(v).first().copied().unwrap_or(""))
                .map(Some)
                .map_err(|e| ("Contact", e).into()),
        }
    }

    fn referred_by(&self) -> Result<Option<NameAddr>, HeaderError> {
        optional_name_addr(self.headers(), "Referred-By")
    }

    fn refer_to(&self) -> Result<Option<NameAddr>, HeaderError> {
        optional_name_addr(self.headers(), "Refer-To")
    }

    fn replaces(&self) -> Result<Option<Replaces>, HeaderError> {
        self.header("Replaces").map(Replaces::parse).transpose()
    }

    fn expires(&self) -> Result<Option<u32>, HeaderError> {
        self.header("Expires")
            .map(|v| {
                v.trim()
                    .parse()
                    .map_err(|_| HeaderError::bad("Expires", format!("`{v}` is not a number")))
            })
            .transpose()
    }

    fn max_forwards(&self) -> Result<Option<u32>, HeaderError> {
        self.header("Max-Forwards")
            .map(|v| {
                v.trim()
                    .parse()
                    .map_err(|_| HeaderError::bad("Max-Forwards", format!("`{v}` is not a number")))
            })
            .transpose()
    }

    /// The media type of the body, lower-cased, without parameters.
    fn content_type(&self) -> Option<String> {
        self.header("Content-Type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }
}

fn name_addr(h: &Headers, name: &'static str) -> Result<NameAddr, HeaderError> {
    let v = h.get(name).ok_or(HeaderError::Missing(name))?;
    NameAddr::parse(v).map_err(|e| (name, e).into())
}

fn optional_name_addr(h: &Headers, name: &'static str) -> Result<Option<NameAddr>, HeaderError> {
    h.get(name)
        .map(|v| NameAddr::parse(v).map_err(|e| (name, e).into()))
        .transpose()
}

/// Splits a header value at commas outside quotes and angle brackets.
pub fn split_commas(value: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut angle) = (Vec::new(), 0, false, false);
    let bytes = value.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' if i == 0 || bytes[i - 1] != b'\\' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.retain(|v| !v.is_empty());
    out
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl HeaderView for Request {
    fn headers(&self) -> &Headers {
        &self.headers
    }
}

impl HeaderView for Response {
    fn headers(&self) -> &Headers {
        &self.headers
    }
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }
}

/// A `Warning` header value of ours (RFC 3261 §20.43, code 399) saying
/// `text`, without quotes or control characters and at most 200
/// characters of it: a reason may quote what a stranger sent.
pub fn warning_value(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter(|c| *c != '"' && !c.is_control())
        .take(200)
        .collect();
    format!("399 callpark \"{clean}\"")
}

/// The standard reason phrase of a status code we send.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        603 => "Decline",
        _ => "Unknown",
    }
}

impl Request {
    /// What a response to this request needs and nothing else: method,
    /// Request-URI, and the headers `response` copies, without the body.
    /// A server transaction keeps this rather than the request, so that
    /// what it holds for its 32 s does not grow with what a peer sent.
    pub fn response_base(&self) -> Request {
        let mut headers = Headers::new();
        for (name, value) in self.headers.iter() {
            if ["Via", "From", "To", "Call-ID", "CSeq"]
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
            {
                headers.push(name, value);
            }
        }
        Request {
            method: self.method.clone(),
            uri: self.uri.clone(),
            headers,
            body: Vec::new(),
        }
    }

    /// A 2xx that makes a dialog (to INVITE, SUBSCRIBE, REFER): like
    /// `response`, with the request's Record-Route copied in order, so that
    /// the peer's later requests in the dialog pass through the same
    /// proxies (RFC 3261 §12.1.1).
    pub fn dialog_response(&self, status: u16, to_tag: &str) -> Response {
        let mut r = self.response(status, Some(to_tag));
        for v in self.headers.get_all("Record-Route") {
            r.headers.push("Record-Route", v);
        }
        r
    }

    /// A response to this request with the headers RFC 3261 §8.2.6 copies:
    /// Via (all), From, To (with `to_tag` added when it has none), Call-ID
    /// and CSeq.
    pub fn response(&self, status: u16, to_tag: Option<&str>) -> Response {
        let mut headers = Headers::new();
        for v in self.headers.get_all("Via") {
            headers.push("Via", v);
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = self.headers.get(name) {
                let v = match (name, to_tag) {
                    ("To", Some(tag)) if !v.to_ascii_lowercase().contains(";tag=") => {
                        format!("{v};tag={tag}")
                    }
                    _ => v.to_string(),
                };
                headers.push(name, v);
            }
        }
        Response {
            status,
            reason: reason_phrase(status).to_string(),
            headers,
            body: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_ipv6_rport_and_received() {
        let mut v = Via::parse("SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK776;rport").unwrap();
        assert_eq!(v.host, Host::Ip("2001:db8::9".parse().unwrap()));
        assert_eq!((v.port, v.branch()), (Some(5070), Some("z9hG4bK776")));
        assert_eq!(v.param("rport"), Some(None));
        v.set_param("rport", Some("5070".into()));
        v.set_param("received", Some("2001:db8::9".into()));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK776;rport=5070;received=2001:db8::9"
        );
        assert!(Via::parse("SIP/3.0/UDP host").is_err());
        assert!(Via::parse("SIP/2.0/UDP").is_err());
    }

    #[test]
    fn comma_lists_respect_quotes_and_brackets() {
        assert_eq!(
            split_commas("\"Doe, John\" <sip:j@x>;tag=1, <sip:a@b;x=1,2>, sip:c@d"),
            vec![
                "\"Doe, John\" <sip:j@x>;tag=1",
                "<sip:a@b;x=1,2>",
                "sip:c@d"
            ]
        );
    }

    #[test]
    fn replaces_parses_with_any_parameter_order() {
        let r = Replaces::parse("98asjd8@test.com;from-tag=abc;to-tag=123;early-only").unwrap();
        assert_eq!(
            (
                r.call_id.as_str(),
                r.to_tag.as_str(),
                r.from_tag.as_str(),
                r.early_only
            ),
            ("98asjd8@test.com", "123", "abc", true)
        );
        assert!(Replaces::parse("x;to-tag=1").is_err());
    }

    #[test]
    fn headers_are_case_insensitive_and_set_replaces_all() {
        let mut h = Headers::new();
        h.push("Via", "a");
        h.push("via", "b");
        assert_eq!(h.get_all("VIA").collect::<Vec<_>>(), ["a", "b"]);
        h.set("Via", "c");
        assert_eq!(h.get_all("Via").collect::<Vec<_>>(), ["c"]);
        h.remove("via");
        assert!(h.is_empty());
    }
}
