//! SDP offer/answer (RFC 4566, RFC 3264) for a park server's audio: PCMU,
//! PCMA and RFC 4733 telephone-event, 20 ms packets.
//!
//! Written here rather than with an SDP crate: we read a handful of lines
//! (`c=`, `m=`, `a=rtpmap`, `a=fmtp`, direction) and must accept whatever
//! desk phones send, including SDP that strict WebRTC-oriented parsers
//! refuse (missing `t=`, stray spaces, unknown lines). Anything we do not
//! understand is skipped, never an error, unless no audio can be agreed.

use std::fmt::Write as _;
use std::net::IpAddr;

/// Why no answer could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// Answered with 400.
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// Answered with 488: no audio stream with PCMU or PCMA.
    #[error("no common codec: we speak PCMU and PCMA, the offer has {0}")]
    NoCommonCodec(String),
}

/// A G.711 law.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    Pcmu,
    Pcma,
}

impl Law {
    fn name(self) -> &'static str {
        match self {
            Law::Pcmu => "PCMU",
            Law::Pcma => "PCMA",
        }
    }
    fn static_pt(self) -> u8 {
        match self {
            Law::Pcmu => 0,
            Law::Pcma => 8,
        }
    }
}

/// Media direction attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction that answers this one (RFC 3264 §6.1).
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }
}

/// One `m=` line, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLine {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    pub formats: Vec<String>,
    pub connection: Option<IpAddr>,
    /// `(payload type, encoding name, clock rate)` from `a=rtpmap`.
    pub rtpmaps: Vec<(u8, String, u32)>,
    pub direction: Direction,
}

impl MediaLine {
    /// The encoding of a payload type: from `a=rtpmap`, else the static
    /// assignments of RFC 3551.
    fn encoding(&self, pt: u8) -> Option<(String, u32)> {
        if let Some((_, name, rate)) = self.rtpmaps.iter().find(|(p, _, _)| *p == pt) {
            return Some((name.to_ascii_uppercase(), *rate));
        }
        match pt {
            0 => Some(("PCMU".into(), 8_000)),
            8 => Some(("PCMA".into(), 8_000)),
            _ => None,
        }
    }
}

/// A session description, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin_session: String,
    pub connection: Option<IpAddr>,
    pub media: Vec<MediaLine>,
}

/// Reads an SDP body.
pub fn parse(body: &str) -> Result<SessionDescription, SdpError> {
    let mut sd = SessionDescription {
        origin_session: String::new(),
        connection: None,
        media: Vec::new(),
    };
    let mut seen_version = false;
    for raw in body.lines() {
        let line = raw.trim();
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match kind.trim() {
            "v" => seen_version = true,
            "o" => sd.origin_session = value.split_whitespace().nth(1).unwrap_or("").to_string(),
            "c" => {
                let addr = parse_connection(value)?;
                match sd.media.last_mut() {
                    Some(m) => m.connection = Some(addr),
                    None => sd.connection = Some(addr),
                }
            }
            "m" => {
                let mut parts = value.split_whitespace();
                let kind = parts.next().unwrap_or_default().to_ascii_lowercase();
                let port = parts
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| SdpError::Malformed(format!("m={value}: bad port")))?;
                let proto = parts
                    .next()
                    .ok_or_else(|| SdpError::Malformed(format!("m={value}: no protocol")))?
                    .to_string();
                sd.media.push(MediaLine {
                    kind,
                    port,
                    proto,
                    formats: parts.map(String::from).collect(),
                    connection: None,
                    rtpmaps: Vec::new(),
                    direction: Direction::SendRecv,
                });
            }
            "a" => {
                let Some(m) = sd.media.last_mut() else {
                    continue;
                };
                if let Some(map) = value.strip_prefix("rtpmap:") {
                    let mut it = map.split_whitespace();
                    let pt = it.next().and_then(|p| p.parse::<u8>().ok());
                    let mut enc = it.next().unwrap_or("").split('/');
                    let name = enc.next().unwrap_or("").to_string();
                    let rate = enc.next().and_then(|r| r.parse().ok()).unwrap_or(0);
                    if let Some(pt) = pt {
                        m.rtpmaps.push((pt, name, rate));
                    }
                } else {
                    m.direction = match value {
                        "sendrecv" => Direction::SendRecv,
                        "sendonly" => Direction::SendOnly,
                        "recvonly" => Direction::RecvOnly,
                        "inactive" => Direction::Inactive,
                        _ => m.direction,
                    };
                }
            }
            _ => {}
        }
    }
    if !seen_version {
        return Err(SdpError::Malformed("no v= line".into()));
    }
    Ok(sd)
}

fn parse_connection(value: &str) -> Result<IpAddr, SdpError> {
    let mut parts = value.split_whitespace();
    let (_net, _kind, addr) = (parts.next(), parts.next(), parts.next());
    addr.and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| SdpError::Malformed(format!("c={value}: not an address")))
}

/// What offer/answer agreed for the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreedAudio {
    /// Where the peer wants our RTP.
    pub remote_addr: IpAddr,
    pub remote_port: u16,
    pub law: Law,
    /// The payload type the peer uses for `law`.
    pub payload_type: u8,
    /// The peer's telephone-event payload type, if it offered one.
    pub telephone_event: Option<u8>,
    /// The direction of our answer.
    pub direction: Direction,
    /// Index of the audio `m=` line in the offer.
    pub media_index: usize,
}

/// Picks the audio we will use from an offer (or an answer to our offer):
/// the first PCMU or PCMA format of the first audio stream with a port.
pub fn negotiate(sd: &SessionDescription) -> Result<AgreedAudio, SdpError> {
    let mut offered = Vec::new();
    for (index, m) in sd.media.iter().enumerate() {
        if m.kind != "audio" || m.port == 0 || !m.proto.to_ascii_uppercase().starts_with("RTP/AVP")
        {
            continue;
        }
        let mut chosen = None;
        let mut te = None;
        for f in &m.formats {
            let Ok(pt) = f.parse::<u8>() else { continue };
            match m.encoding(pt) {
                Some((name, 8_000)) if name == "PCMU" && chosen.is_none() => {
                    chosen = Some((Law::Pcmu, pt))
                }
                Some((name, 8_000)) if name == "PCMA" && chosen.is_none() => {
                    chosen = Some((Law::Pcma, pt))
                }
                Some((name, 8_000)) if name == "TELEPHONE-EVENT" && te.is_none() => te = Some(pt),
                Some((name, rate)) => offered.push(format!("{name}/{rate}")),
                None => offered.push(format!("payload type {pt}")),
            }
        }
        if let Some((law, payload_type)) = chosen {
            let remote_addr = m
                .connection
                .or(sd.connection)
                .ok_or_else(|| SdpError::Malformed("no c= line for the audio".into()))?;
            return Ok(AgreedAudio {
                remote_addr,
                remote_port: m.port,
                law,
                payload_type,
                telephone_event: te,
                direction: m.direction.answer(),
                media_index: index,
            });
        }
    }
    let what = if offered.is_empty() {
        "no audio".to_string()
    } else {
        offered.join(", ")
    };
    Err(SdpError::NoCommonCodec(what))
}

/// Our side of a session: where we receive RTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    pub addr: IpAddr,
    pub port: u16,
    /// `o=` session id and version; bump the version on every change.
    pub session_id: u64,
    pub version: u64,
}

fn header(out: &mut String, local: &LocalMedia) {
    let family = if local.addr.is_ipv4() { "IP4" } else { "IP6" };
    let _ = write!(
        out,
        "v=0\r\no=callpark {} {} IN {family} {}\r\ns=callpark\r\nc=IN {family} {}\r\nt=0 0\r\n",
        local.session_id, local.version, local.addr, local.addr
    );
}

/// Answers an offer with the agreed audio; other streams of the offer are
/// refused with port 0, as RFC 3264 §6 requires one `m=` line per offered one.
pub fn answer(offer: &SessionDescription, agreed: &AgreedAudio, local: &LocalMedia) -> String {
    let mut out = String::new();
    header(&mut out, local);
    for (i, m) in offer.media.iter().enumerate() {
        if i != agreed.media_index {
            let _ = write!(
                out,
                "m={} 0 {} {}\r\n",
                m.kind,
                m.proto,
                m.formats.first().map_or("0", String::as_str)
            );
            continue;
        }
        let mut fmts = agreed.payload_type.to_string();
        if let Some(te) = agreed.telephone_event {
            let _ = write!(fmts, " {te}");
        }
        let _ = write!(out, "m=audio {} RTP/AVP {fmts}\r\n", local.port);
        let _ = write!(
            out,
            "a=rtpmap:{} {}/8000\r\n",
            agreed.payload_type,
            agreed.law.name()
        );
        if let Some(te) = agreed.telephone_event {
            let _ = write!(
                out,
                "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
            );
        }
        let _ = write!(out, "a=ptime:20\r\na={}\r\n", agreed.direction.attr());
    }
    out
}

/// Our payload type for telephone-event when we make the offer.
pub const OFFER_TELEPHONE_EVENT: u8 = 101;

/// An offer of PCMU, PCMA and telephone-event (late offer, recalls).
pub fn offer(local: &LocalMedia, direction: Direction) -> String {
    let mut out = String::new();
    header(&mut out, local);
    let te = OFFER_TELEPHONE_EVENT;
    let _ = write!(
        out,
        "m=audio {} RTP/AVP {} {} {te}\r\na=rtpmap:{} {}/8000\r\na=rtpmap:{} {}/8000\r\na=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\na=ptime:20\r\na={}\r\n",
        local.port,
        Law::Pcmu.static_pt(),
        Law::Pcma.static_pt(),
        Law::Pcmu.static_pt(),
        Law::Pcmu.name(),
        Law::Pcma.static_pt(),
        Law::Pcma.name(),
        direction.attr()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINPHONE: &str = "v=0\r\no=bob 1234 5678 IN IP4 127.0.0.1\r\ns=Talk\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7078 RTP/AVP 96 97 98 0 8 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:97 speex/16000\r\na=rtpmap:98 speex/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n";

    fn local() -> LocalMedia {
        LocalMedia {
            addr: "127.0.0.1".parse().unwrap(),
            port: 20_000,
            session_id: 42,
            version: 1,
        }
    }

    #[test]
    fn picks_the_first_g711_in_the_offer_order_and_telephone_event() {
        let sd = parse(LINPHONE).unwrap();
        let agreed = negotiate(&sd).unwrap();
        assert_eq!(agreed.law, Law::Pcmu);
        assert_eq!(agreed.payload_type, 0);
        assert_eq!(agreed.telephone_event, Some(101));
        assert_eq!(
            (agreed.remote_addr.to_string(), agreed.remote_port),
            ("127.0.0.1".into(), 7078)
        );
        let a = answer(&sd, &agreed, &local());
        assert!(a.contains("m=audio 20000 RTP/AVP 0 101\r\n"), "{a}");
        assert!(a.contains("a=rtpmap:0 PCMU/8000\r\n"));
        assert!(a.contains("a=fmtp:101 0-16\r\n"));
        assert!(a.contains("a=sendrecv\r\n"));
        // Our answer parses back to the same agreement.
        let back = negotiate(&parse(&a).unwrap()).unwrap();
        assert_eq!(
            (back.law, back.remote_port, back.telephone_event),
            (Law::Pcmu, 20_000, Some(101))
        );
    }

    #[test]
    fn pcma_first_and_dynamic_payload_types() {
        let sd = parse("v=0\nc=IN IP4 10.0.0.1\nm=audio 4000 RTP/AVP 8 0\n").unwrap();
        assert_eq!(negotiate(&sd).unwrap().law, Law::Pcma);
        let sd = parse(
            "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 112\r\na=rtpmap:112 pcmu/8000\r\n",
        )
        .unwrap();
        let agreed = negotiate(&sd).unwrap();
        assert_eq!((agreed.law, agreed.payload_type), (Law::Pcmu, 112));
    }

    #[test]
    fn no_common_codec_says_what_was_offered() {
        let sd = parse("v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 9 96\r\na=rtpmap:9 G722/8000\r\na=rtpmap:96 opus/48000/2\r\n").unwrap();
        let err = negotiate(&sd).unwrap_err();
        assert_eq!(err, SdpError::NoCommonCodec("G722/8000, OPUS/48000".into()));
        let video_only = parse("v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 4002 RTP/AVP 96\r\n").unwrap();
        assert_eq!(
            negotiate(&video_only).unwrap_err(),
            SdpError::NoCommonCodec("no audio".into())
        );
    }

    #[test]
    fn hold_offers_get_the_mirrored_direction_and_other_streams_port_zero() {
        let sd = parse("v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 5000 RTP/AVP 96\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n").unwrap();
        let agreed = negotiate(&sd).unwrap();
        assert_eq!(
            (agreed.direction, agreed.media_index),
            (Direction::RecvOnly, 1)
        );
        let a = answer(&sd, &agreed, &local());
        assert!(a.contains("m=video 0 RTP/AVP 96\r\n"), "{a}");
        assert!(a.contains("a=recvonly\r\n"), "{a}");
        assert!(a.find("m=video").unwrap() < a.find("m=audio").unwrap());
    }

    #[test]
    fn media_level_connection_and_ipv6() {
        let sd = parse("v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP6 ::1\r\n")
            .unwrap();
        assert_eq!(negotiate(&sd).unwrap().remote_addr.to_string(), "::1");
        let v6 = LocalMedia {
            addr: "::1".parse().unwrap(),
            ..local()
        };
        assert!(offer(&v6, Direction::SendRecv).contains("c=IN IP6 ::1\r\n"));
    }

    #[test]
    fn malformed_sdp_is_refused_cleanly() {
        assert!(matches!(parse("hello"), Err(SdpError::Malformed(_))));
        assert!(matches!(
            parse("v=0\r\nm=audio x RTP/AVP 0\r\n"),
            Err(SdpError::Malformed(_))
        ));
        assert!(matches!(
            parse("v=0\r\nc=IN IP4 nowhere\r\n"),
            Err(SdpError::Malformed(_))
        ));
        let no_c = parse("v=0\r\nm=audio 4000 RTP/AVP 0\r\n").unwrap();
        assert!(matches!(negotiate(&no_c), Err(SdpError::Malformed(_))));
    }

    #[test]
    fn our_offer_is_answerable() {
        let o = offer(&local(), Direction::SendRecv);
        let agreed = negotiate(&parse(&o).unwrap()).unwrap();
        assert_eq!(
            (agreed.law, agreed.telephone_event),
            (Law::Pcmu, Some(OFFER_TELEPHONE_EVENT))
        );
    }
}
