//! G.711 µ-law (PCMU) and A-law (PCMA), per ITU-T G.711.
//!
//! Written here rather than taken from a crate: the codec is a few lines of
//! bit arithmetic fixed by the standard, and no G.711 crate is maintained as
//! a standard dependency. Encoding happens once per music file at load and
//! transcoding uses 256-entry tables, so speed is not a concern here.

use std::sync::LazyLock;

/// The µ-law byte of digital silence.
pub const PCMU_SILENCE: u8 = 0xFF;
/// The A-law byte of digital silence.
pub const PCMA_SILENCE: u8 = 0xD5;

/// Encodes a 16-bit linear sample as µ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84 >> 2;
    const CLIP: i32 = 8159;
    // µ-law works on 14-bit magnitudes.
    let mut pcm = i32::from(sample) >> 2;
    let mask = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    pcm = pcm.min(CLIP) + BIAS;
    // Segment: position of the highest set bit above bit 5.
    let segment = (0..8).find(|&s| pcm < (0x40 << s)).unwrap_or(8);
    if segment >= 8 {
        return 0x7F ^ mask;
    }
    let value = (segment << 4) | ((pcm >> (segment + 1)) & 0x0F);
    (value as u8) ^ mask
}

/// Decodes a µ-law byte to a 16-bit linear sample.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    const BIAS: i32 = 0x84;
    let u = !byte;
    let mut t = ((i32::from(u) & 0x0F) << 3) + BIAS;
    t <<= (u & 0x70) >> 4;
    (if u & 0x80 != 0 { BIAS - t } else { t - BIAS }) as i16
}

/// Encodes a 16-bit linear sample as A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    // A-law works on 13-bit magnitudes.
    let mut pcm = i32::from(sample) >> 3;
    let mask = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let segment = (0..8).find(|&s| pcm < (0x20 << s)).unwrap_or(8);
    if segment >= 8 {
        return 0x7F ^ mask;
    }
    let mantissa = if segment < 2 {
        (pcm >> 1) & 0x0F
    } else {
        (pcm >> segment) & 0x0F
    };
    ((segment << 4) as u8 | mantissa as u8) ^ mask
}

/// Decodes an A-law byte to a 16-bit linear sample.
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mut t = (i32::from(a) & 0x0F) << 4;
    let segment = (a & 0x70) >> 4;
    match segment {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= segment - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

static ULAW_TO_ALAW: LazyLock<[u8; 256]> =
    LazyLock::new(|| std::array::from_fn(|u| linear_to_alaw(ulaw_to_linear(u as u8))));
static ALAW_TO_ULAW: LazyLock<[u8; 256]> =
    LazyLock::new(|| std::array::from_fn(|a| linear_to_ulaw(alaw_to_linear(a as u8))));

/// Rewrites a µ-law payload as A-law in place.
pub fn ulaw_to_alaw_in_place(payload: &mut [u8]) {
    let table = &*ULAW_TO_ALAW;
    for b in payload {
        *b = table[usize::from(*b)];
    }
}

/// Rewrites an A-law payload as µ-law in place.
pub fn alaw_to_ulaw_in_place(payload: &mut [u8]) {
    let table = &*ALAW_TO_ULAW;
    for b in payload {
        *b = table[usize::from(*b)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_and_extremes() {
        assert_eq!(linear_to_ulaw(0), PCMU_SILENCE);
        assert_eq!(linear_to_alaw(0), PCMA_SILENCE);
        assert_eq!(ulaw_to_linear(PCMU_SILENCE), 0);
        assert_eq!(alaw_to_linear(PCMA_SILENCE), 8);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    #[test]
    fn every_code_round_trips() {
        for code in 0..=255u8 {
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "A-law {code:#x}"
            );
            // µ-law has two zeros (0x7F and 0xFF); both decode to 0.
            if code != 0x7F {
                assert_eq!(
                    linear_to_ulaw(ulaw_to_linear(code)),
                    code,
                    "µ-law {code:#x}"
                );
            }
        }
    }

    #[test]
    fn quantisation_error_is_within_the_segment_step() {
        for sample in (i16::MIN..=i16::MAX).step_by(7) {
            let u = i32::from(ulaw_to_linear(linear_to_ulaw(sample)));
            let a = i32::from(alaw_to_linear(linear_to_alaw(sample)));
            let s = i32::from(sample);
            // The step doubles per segment; it is at most 1/16 of the
            // magnitude plus the smallest step.
            let bound = s.abs() / 16 + 32;
            assert!((u - s).abs() <= bound.max(1024), "µ-law {sample} -> {u}");
            assert!((a - s).abs() <= bound.max(1024), "A-law {sample} -> {a}");
        }
    }

    #[test]
    fn transcoding_keeps_the_sound() {
        let mut payload: Vec<u8> = (-100..100).map(|i| linear_to_ulaw(i * 160)).collect();
        let original: Vec<i16> = payload.iter().map(|&b| ulaw_to_linear(b)).collect();
        ulaw_to_alaw_in_place(&mut payload);
        let via_alaw: Vec<i16> = payload.iter().map(|&b| alaw_to_linear(b)).collect();
        for (o, t) in original.iter().zip(&via_alaw) {
            assert!((i32::from(*o) - i32::from(*t)).abs() <= i32::from(o.unsigned_abs()) / 16 + 16);
        }
        alaw_to_ulaw_in_place(&mut payload);
        assert_eq!(payload.len(), 200);
    }
}
