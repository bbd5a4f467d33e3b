//! The RTP relay between the two legs of a retrieved call: payload types
//! are rewritten to what each leg agreed, µ-law and A-law are transcoded
//! in place when the legs chose differently, and RFC 4733 events pass
//! through to a leg that negotiated telephone-event.

use callpark_media::g711;
use callpark_sip::sdp::{AgreedAudio, Law};

/// Rewrites a packet from `from`'s leg for `to`'s; false means drop it.
pub(crate) fn rewrite(packet: &mut [u8], from: &AgreedAudio, to: &AgreedAudio) -> bool {
    let Ok(reader) = rtp_rs::RtpReader::new(packet) else {
        return false;
    };
    let offset = reader.payload_offset();
    let end = packet.len() - reader.padding().map_or(0, usize::from);
    let pt = packet[1] & 0x7F;
    let marker = packet[1] & 0x80;
    let new_pt = if pt == from.payload_type {
        if from.law != to.law && offset <= end {
            let payload = &mut packet[offset..end];
            match (from.law, to.law) {
                (Law::Pcmu, Law::Pcma) => g711::ulaw_to_alaw_in_place(payload),
                (Law::Pcma, Law::Pcmu) => g711::alaw_to_ulaw_in_place(payload),
                _ => {}
            }
        }
        to.payload_type
    } else if Some(pt) == from.telephone_event {
        match to.telephone_event {
            Some(te) => te,
            None => return false,
        }
    } else {
        // Comfort noise and codecs the other leg never agreed to.
        return false;
    };
    packet[1] = marker | new_pt;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use callpark_sip::sdp::Direction;

    fn agreed(law: Law, pt: u8, te: Option<u8>) -> AgreedAudio {
        AgreedAudio {
            remote_addr: "127.0.0.1".parse().unwrap(),
            remote_port: 4000,
            law,
            payload_type: pt,
            telephone_event: te,
            direction: Direction::SendRecv,
            media_index: 0,
        }
    }

    fn packet(pt: u8, payload: &[u8]) -> Vec<u8> {
        rtp_rs::RtpPacketBuilder::new()
            .payload_type(pt)
            .ssrc(1)
            .sequence(rtp_rs::Seq::from(1))
            .timestamp(160)
            .marked(true)
            .payload(payload)
            .build()
            .unwrap()
    }

    #[test]
    fn same_law_only_renumbers_the_payload_type() {
        let mut p = packet(0, &[0x10; 160]);
        assert!(rewrite(
            &mut p,
            &agreed(Law::Pcmu, 0, None),
            &agreed(Law::Pcmu, 112, None)
        ));
        let r = rtp_rs::RtpReader::new(&p).unwrap();
        assert_eq!((r.payload_type(), r.mark()), (112, true));
        assert_eq!(r.payload(), &[0x10; 160]);
    }

    #[test]
    fn ulaw_is_transcoded_for_an_alaw_leg() {
        let mut p = packet(0, &[0xFF; 160]);
        assert!(rewrite(
            &mut p,
            &agreed(Law::Pcmu, 0, None),
            &agreed(Law::Pcma, 8, None)
        ));
        let r = rtp_rs::RtpReader::new(&p).unwrap();
        assert_eq!(r.payload_type(), 8);
        assert_eq!(
            r.payload(),
            &[0xD5; 160],
            "µ-law silence becomes A-law silence"
        );
    }

    #[test]
    fn digits_pass_through_only_where_negotiated() {
        let event = [0x00, 0x8A, 0x03, 0x20];
        let mut p = packet(101, &event);
        assert!(rewrite(
            &mut p,
            &agreed(Law::Pcmu, 0, Some(101)),
            &agreed(Law::Pcma, 8, Some(96))
        ));
        let r = rtp_rs::RtpReader::new(&p).unwrap();
        assert_eq!((r.payload_type(), r.payload()), (96, &event[..]));
        let mut p = packet(101, &event);
        assert!(!rewrite(
            &mut p,
            &agreed(Law::Pcmu, 0, Some(101)),
            &agreed(Law::Pcmu, 0, None)
        ));
        let mut cn = packet(13, &[0x40]);
        assert!(!rewrite(
            &mut cn,
            &agreed(Law::Pcmu, 0, None),
            &agreed(Law::Pcmu, 0, None)
        ));
        let mut junk = vec![0u8; 5];
        assert!(!rewrite(
            &mut junk,
            &agreed(Law::Pcmu, 0, None),
            &agreed(Law::Pcmu, 0, None)
        ));
    }
}
