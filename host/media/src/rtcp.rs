//! RTCP (RFC 3550 §6): the sender reports we send for hold music, and the
//! checks that tell an RTCP compound packet from noise.
//!
//! Written here rather than taken from a crate: we need two packet types
//! (SR and SDES CNAME) and a validity check, and the RTCP crates on
//! crates.io bring a full stack (SRTP, interceptors, async) for that.

/// RTCP packet types (RFC 3550 §12.1).
pub const SR: u8 = 200;
pub const RR: u8 = 201;
pub const SDES: u8 = 202;
pub const BYE: u8 = 203;
pub const APP: u8 = 204;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// What one sender report says about a stream at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    pub ssrc: u32,
    /// Wall-clock time of the report, milliseconds since the Unix epoch.
    pub wallclock_ms: u64,
    /// The RTP timestamp that corresponds to `wallclock_ms`.
    pub rtp_timestamp: u32,
    pub packets: u32,
    /// Payload octets sent (headers and padding excluded).
    pub octets: u32,
}

/// The 64-bit NTP timestamp of a Unix time in milliseconds.
pub fn ntp_timestamp(unix_ms: u64) -> u64 {
    let secs = unix_ms / 1000 + NTP_UNIX_OFFSET;
    let frac = ((unix_ms % 1000) << 32) / 1000;
    (secs << 32) | frac
}

/// A compound packet: a sender report with no report blocks (we receive
/// nothing worth reporting on from a parked caller) and an SDES with the
/// CNAME, which every compound packet must carry (§6.1).
pub fn sender_report(info: &SenderInfo, cname: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0x80, SR, 0, 6]);
    out.extend_from_slice(&info.ssrc.to_be_bytes());
    out.extend_from_slice(&ntp_timestamp(info.wallclock_ms).to_be_bytes());
    out.extend_from_slice(&info.rtp_timestamp.to_be_bytes());
    out.extend_from_slice(&info.packets.to_be_bytes());
    out.extend_from_slice(&info.octets.to_be_bytes());

    let cname = &cname.as_bytes()[..cname.len().min(255)];
    let start = out.len();
    out.extend_from_slice(&[0x81, SDES, 0, 0]);
    out.extend_from_slice(&info.ssrc.to_be_bytes());
    out.push(1);
    out.push(cname.len() as u8);
    out.extend_from_slice(cname);
    // The item list ends with a zero octet, then zeros to a 32-bit boundary.
    out.push(0);
    while (out.len() - start) % 4 != 0 {
        out.push(0);
    }
    let words = ((out.len() - start) / 4 - 1) as u16;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
    out
}

/// Whether `packet` is a valid RTCP compound packet (RFC 3550 §A.2): version
/// 2, the first packet an SR or RR without padding, every length inside the
/// datagram and adding up to it exactly.
pub fn is_compound(packet: &[u8]) -> bool {
    if packet.len() < 8 || packet[0] >> 6 != 2 || packet[0] & 0x20 != 0 {
        return false;
    }
    if !matches!(packet[1], SR | RR) {
        return false;
    }
    let mut at = 0;
    while at < packet.len() {
        if packet.len() - at < 4 || packet[at] >> 6 != 2 || !(SR..=APP).contains(&packet[at + 1]) {
            return false;
        }
        let words = u16::from_be_bytes([packet[at + 2], packet[at + 3]]) as usize;
        at += (words + 1) * 4;
    }
    at == packet.len()
}

/// The SSRC of the first packet's sender, if the packet is valid RTCP.
pub fn sender_ssrc(packet: &[u8]) -> Option<u32> {
    is_compound(packet).then(|| u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_report_is_a_valid_compound_packet() {
        let info = SenderInfo {
            ssrc: 0xDEAD_BEEF,
            wallclock_ms: 1_767_225_600_250,
            rtp_timestamp: 12_345,
            packets: 250,
            octets: 40_000,
        };
        let p = sender_report(&info, "callpark@127.0.0.1");
        assert!(is_compound(&p));
        assert_eq!(sender_ssrc(&p), Some(0xDEAD_BEEF));
        assert_eq!(p.len() % 4, 0);
        // SR: 28 octets, length 6.
        assert_eq!(&p[..4], &[0x80, 200, 0, 6]);
        let ntp = u64::from_be_bytes(p[8..16].try_into().unwrap());
        assert_eq!(ntp >> 32, 1_767_225_600 + NTP_UNIX_OFFSET);
        assert_eq!(ntp & 0xFFFF_FFFF, (1u64 << 32) / 4, "250 ms is a quarter");
        assert_eq!(u32::from_be_bytes(p[16..20].try_into().unwrap()), 12_345);
        assert_eq!(u32::from_be_bytes(p[20..24].try_into().unwrap()), 250);
        assert_eq!(u32::from_be_bytes(p[24..28].try_into().unwrap()), 40_000);
        // SDES: one chunk, CNAME item, ended and padded.
        assert_eq!(p[29], SDES);
        assert_eq!(p[36], 1);
        assert_eq!(p[37] as usize, "callpark@127.0.0.1".len());
        assert_eq!(&p[38..38 + 18], b"callpark@127.0.0.1");
        assert_eq!(p[56], 0);
    }

    #[test]
    fn noise_and_rtp_are_not_rtcp() {
        assert!(!is_compound(b""));
        assert!(!is_compound(&[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]));
        let mut rr = vec![0x80, RR, 0, 1, 1, 2, 3, 4];
        assert!(is_compound(&rr));
        rr.push(0);
        assert!(!is_compound(&rr), "a length that does not add up");
        let mut sdes_first = vec![0x81, SDES, 0, 1, 1, 2, 3, 4];
        assert!(!is_compound(&sdes_first));
        sdes_first[1] = BYE;
        assert!(!is_compound(&sdes_first));
    }
}
