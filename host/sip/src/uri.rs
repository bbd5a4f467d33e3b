//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966) and name-addr values
//! (`"Alice" <sip:alice@example.com>;tag=1`).
//!
//! Parsed here rather than by rsip 0.4, whose URI parser takes the user part
//! of `sip:john.doe@host` for a host name and refuses IPv6 hosts and `tel:`
//! URIs (each shown by a test in `codec`). The grammar is the RFC's, kept
//! tolerant where phones are sloppy: case-insensitive schemes and parameter
//! names, stray spaces around `;` and `=`.

use std::fmt;
use std::net::IpAddr;

/// A URI that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad URI `{uri}`: {reason}")]
pub struct UriError {
    pub uri: String,
    pub reason: &'static str,
}

const UNKNOWN_SCHEME: &str = "not a sip:, sips: or tel: URI";

impl UriError {
    /// A well-formed URI of a scheme we do not serve (answered with 416,
    /// RFC 3261 §8.2.2.1), as opposed to one that cannot be read at all.
    pub fn is_unknown_scheme(&self) -> bool {
        self.reason == UNKNOWN_SCHEME
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
}

/// The host of a SIP URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl Host {
    pub fn parse(text: &str) -> Option<Host> {
        if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            return inner.parse().ok().map(Host::Ip);
        }
        if let Ok(v4) = text.parse::<std::net::Ipv4Addr>() {
            return Some(Host::Ip(IpAddr::V4(v4)));
        }
        let ok = !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        ok.then(|| Host::Name(text.to_ascii_lowercase()))
    }
}

/// RFC 3261 §25.1 `token` characters.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// `;name=value` or `;name` parameters, in order.
pub type Params = Vec<(String, Option<String>)>;

/// A SIP, SIPS or tel URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Uri {
    pub scheme: Scheme,
    /// The user part (SIP) or the number (tel), still %-escaped.
    pub user: Option<String>,
    /// `None` for tel URIs.
    pub host: Option<Host>,
    pub port: Option<u16>,
    pub params: Params,
    /// `?name=value&...` URI headers, still %-escaped (e.g. `Replaces`).
    pub headers: Vec<(String, String)>,
}

fn split_params(text: &str) -> Params {
    text.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
            None => (p.to_ascii_lowercase(), None),
        })
        .collect()
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &Params) -> fmt::Result {
    for (k, v) in params {
        match v {
            Some(v) => write!(f, ";{k}={v}")?,
            None => write!(f, ";{k}")?,
        }
    }
    Ok(())
}

/// Splits `host:port`, with IPv6 in brackets.
pub fn split_host_port(text: &str) -> Option<(Host, Option<u16>)> {
    let text = text.trim();
    if text.starts_with('[') {
        let end = text.find(']')?;
        let host = Host::parse(&text[..=end])?;
        let rest = &text[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if rest.is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    match text.rsplit_once(':') {
        Some((h, p)) => Some((Host::parse(h)?, Some(p.parse().ok()?))),
        None => Some((Host::parse(text)?, None)),
    }
}

impl Uri {
    pub fn parse(text: &str) -> Result<Uri, UriError> {
        let err = |reason| UriError {
            uri: text.to_string(),
            reason,
        };
        let t = text.trim();
        let (scheme, rest) = t.split_once(':').ok_or_else(|| err("no scheme"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "sip" => Scheme::Sip,
            "sips" => Scheme::Sips,
            "tel" => Scheme::Tel,
            other
                if !other.is_empty()
                    && other.starts_with(|c: char| c.is_ascii_alphabetic())
                    && other
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
            {
                return Err(err(UNKNOWN_SCHEME));
            }
            _ => return Err(err("no scheme")),
        };
        // The user part (RFC 3261 §25.1: it may hold `?`, `;`, `/`, `,` and
        // a password) ends at the first `@`; `@` is escaped everywhere else,
        // so headers are looked for only after it.
        let (userinfo, rest) = match rest.find('@') {
            Some(at) if scheme != Scheme::Tel => (Some(&rest[..at]), &rest[at + 1..]),
            _ => (None, rest),
        };
        let (rest, headers) = match rest.split_once('?') {
            Some((r, h)) => (
                r,
                h.split('&')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (kv.to_string(), String::new()),
                    })
                    .collect(),
            ),
            None => (rest, Vec::new()),
        };
        if scheme == Scheme::Tel {
            let (number, params) = rest.split_once(';').unwrap_or((rest, ""));
            let ok = !number.is_empty()
                && number
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || "+-.()*#".contains(c));
            if !ok {
                return Err(err("a tel: URI needs a number"));
            }
            return Ok(Uri {
                scheme,
                user: Some(number.to_string()),
                host: None,
                port: None,
                params: split_params(params),
                headers,
            });
        }
        let (user, host_part) = (userinfo, rest);
        let (hostport, params) = host_part.split_once(';').unwrap_or((host_part, ""));
        let (host, port) = split_host_port(hostport).ok_or_else(|| err("bad host or port"))?;
        let user = match user {
            // A password (`user:pw@`) is deprecated and dropped.
            Some(u) => {
                let u = u.split(':').next().unwrap_or(u);
                if u.is_empty() || u.chars().any(|c| c.is_whitespace() || c == '<' || c == '>') {
                    return Err(err("bad user part"));
                }
                Some(u.to_string())
            }
            None => None,
        };
        Ok(Uri {
            scheme,
            user,
            host: Some(host),
            port,
            params: split_params(params),
            headers,
        })
    }

    /// A parameter's value (`Some(None)` for a flag such as `;lr`).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// A URI header's value, %-decoded (`?Replaces=...`).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| percent_decode(v))
    }

    /// The user part, %-decoded.
    pub fn user_decoded(&self) -> Option<String> {
        self.user.as_deref().map(percent_decode)
    }

    /// The URI without URI headers (what a Request-URI may carry).
    pub fn without_headers(&self) -> Uri {
        Uri {
            headers: Vec::new(),
            ..self.clone()
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
        };
        write!(f, "{scheme}:")?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if self.host.is_some() {
                f.write_str("@")?;
            }
        }
        if let Some(h) = &self.host {
            write!(f, "{h}")?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write_params(f, &self.params)?;
        for (i, (k, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

/// Decodes `%XX` escapes; malformed escapes are kept as they are.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The content of a quoted string whose opening quote is gone: escapes
/// undone, up to the closing quote, which must end the text.
fn unquote(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.as_str().trim().is_empty().then_some(out),
            c => out.push(c),
        }
    }
    None
}

/// `"Display" <uri>;params`, or a bare `uri;params` (where the parameters
/// belong to the header, as RFC 3261 §20 says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: Uri,
    pub params: Params,
}

impl NameAddr {
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Vec::new(),
        }
    }

    pub fn parse(text: &str) -> Result<NameAddr, UriError> {
        let t = text.trim();
        let err = |reason| UriError {
            uri: text.to_string(),
            reason,
        };
        if let Some(open) = t.find('<') {
            let close = t[open..].find('>').ok_or_else(|| err("unclosed <"))? + open;
            let display = t[..open].trim();
            let display = match display.strip_prefix('"') {
                Some(quoted) => unquote(quoted).ok_or_else(|| err("unbalanced quotes"))?,
                // An unquoted display name is tokens (§25.1): `Bell,
                // Alexander` needs quotes (RFC 4475 `baddn`).
                None if display
                    .chars()
                    .all(|c| c.is_whitespace() || is_token_char(c)) =>
                {
                    display.to_string()
                }
                None => return Err(err("a display name with separators must be quoted")),
            };
            let inner = &t[open + 1..close];
            // `< sip:a@b >` is not a name-addr (RFC 4475 `badaspec`).
            if inner.starts_with(char::is_whitespace) || inner.ends_with(char::is_whitespace) {
                return Err(err("spaces inside <>"));
            }
            let uri = Uri::parse(inner)?;
            let rest = t[close + 1..].trim();
            Ok(NameAddr {
                display: (!display.is_empty()).then_some(display),
                uri,
                params: split_params(rest),
            })
        } else {
            // addr-spec: parameters after the URI are the header's.
            let (uri, params) = t.split_once(';').unwrap_or((t, ""));
            Ok(NameAddr {
                display: None,
                uri: Uri::parse(uri)?,
                params: split_params(params),
            })
        }
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    pub fn with_param(mut self, name: &str, value: &str) -> NameAddr {
        self.params.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.params
            .push((name.to_string(), Some(value.to_string())));
        self
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "\"{}\" ", d.replace('\\', "\\\\").replace('"', "\\\""))?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_users_ipv6_and_tel() {
        let u = Uri::parse("sip:john.doe@example.com").unwrap();
        assert_eq!(u.user.as_deref(), Some("john.doe"));
        assert_eq!(u.host, Some(Host::Name("example.com".into())));

        let u = Uri::parse("sip:701@[2001:db8::1]:5070;transport=tcp").unwrap();
        assert_eq!(u.host, Some(Host::Ip("2001:db8::1".parse().unwrap())));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param("transport"), Some(Some("tcp")));
        assert_eq!(u.to_string(), "sip:701@[2001:db8::1]:5070;transport=tcp");

        let t = Uri::parse("tel:+1-555-123-4567;phone-context=example.com").unwrap();
        assert_eq!(
            (t.scheme, t.user.as_deref(), t.host.as_ref()),
            (Scheme::Tel, Some("+1-555-123-4567"), None)
        );
        assert_eq!(
            t.to_string(),
            "tel:+1-555-123-4567;phone-context=example.com"
        );
    }

    #[test]
    fn uri_headers_carry_an_escaped_replaces() {
        let u = Uri::parse("sip:bob@example.com?Replaces=abc%40host%3Bto-tag%3D1%3Bfrom-tag%3D2")
            .unwrap();
        assert_eq!(
            u.header("replaces").as_deref(),
            Some("abc@host;to-tag=1;from-tag=2")
        );
        assert!(u.without_headers().headers.is_empty());
    }

    #[test]
    fn name_addrs() {
        let n = NameAddr::parse(
            "\"Alice \\\"A\\\" Smith\" <sip:alice@example.com;transport=udp>;tag=88",
        )
        .unwrap();
        assert_eq!(n.display.as_deref(), Some("Alice \"A\" Smith"));
        assert_eq!(n.uri.param("transport"), Some(Some("udp")));
        assert_eq!(n.tag(), Some("88"));
        assert_eq!(NameAddr::parse(&n.to_string()).unwrap(), n);

        let bare = NameAddr::parse("sip:carol@example.com;tag=5").unwrap();
        assert_eq!((bare.tag(), bare.uri.params.len()), (Some("5"), 0));
        let token = NameAddr::parse("Bob <sip:bob@[::1]:5062>").unwrap();
        assert_eq!(token.display.as_deref(), Some("Bob"));
    }

    #[test]
    fn bad_uris_are_refused() {
        for bad in [
            "",
            "alice",
            "http://x",
            "sip:",
            "sip:a@",
            "sip:a@b:port",
            "sip:a@[::1",
            "tel:",
            "sip:a b@c",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad:?}");
        }
        assert!(NameAddr::parse("<sip:a@b").is_err());
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%40b%3d"), "a@b=");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
