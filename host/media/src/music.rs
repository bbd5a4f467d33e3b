//! Hold music: a WAV file of any common rate, depth and channel count,
//! decoded once, mixed to mono, resampled to 8 kHz and encoded to µ-law and
//! A-law. Every parked call shares these payloads; a packet is a 160-byte
//! window into them.

use std::io::Cursor;
use std::sync::Arc;

use crate::MediaError;
use crate::g711::{PCMA_SILENCE, PCMU_SILENCE, linear_to_alaw, linear_to_ulaw};

/// Samples per 20 ms packet at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// The G.711 sample rate.
pub const RATE: u32 = 8_000;

/// The prompt that opens an orbit announcement ("parked on ...").
pub const PARKED_ON: &str = "parked-on";

/// Every spoken prompt an orbit announcement is made of, by name: the file
/// `music/prompts/NAME.wav` and the key of `MusicLibrary::prompts`.
pub const PROMPT_NAMES: [&str; 13] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "star", "hash", PARKED_ON,
];

/// The prompt that speaks one character of an orbit number; `None` for a
/// character no prompt speaks.
pub fn prompt_for(c: char) -> Option<&'static str> {
    match c {
        '*' => Some("star"),
        '#' => Some("hash"),
        d => d.to_digit(10).map(|d| PROMPT_NAMES[d as usize]),
    }
}

/// The two G.711 payloads a parked call may choose between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// µ-law, static RTP payload type 0.
    Pcmu,
    /// A-law, static RTP payload type 8.
    Pcma,
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    pub fn silence(self) -> u8 {
        match self {
            Codec::Pcmu => PCMU_SILENCE,
            Codec::Pcma => PCMA_SILENCE,
        }
    }
}

/// Encoded hold music, a whole number of 20 ms frames, shared by every call.
#[derive(Debug, Clone)]
pub struct Music {
    name: Arc<str>,
    pcmu: Arc<[u8]>,
    pcma: Arc<[u8]>,
}

impl Music {
    /// Whether two handles share their audio (a clone of the same decoded
    /// file): what a configuration change compares to tell whether a
    /// parked caller's music changed.
    pub fn same_audio(&self, other: &Music) -> bool {
        Arc::ptr_eq(&self.pcmu, &other.pcmu)
    }

    /// Decodes a WAV file (8-, 16-, 24- or 32-bit integer, or 32-bit float
    /// PCM; any rate; any number of channels).
    pub fn from_wav(name: &str, wav: &[u8]) -> Result<Music, MediaError> {
        let bad = |reason: String| MediaError::Music {
            name: name.to_string(),
            reason,
        };
        let reader = hound::WavReader::new(Cursor::new(wav)).map_err(|e| bad(e.to_string()))?;
        let spec = reader.spec();
        if spec.channels == 0 || spec.sample_rate == 0 {
            return Err(bad("no channels or no sample rate".into()));
        }
        let samples: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Float, 32) => reader
                .into_samples::<f32>()
                .collect::<Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?,
            (hound::SampleFormat::Int, bits @ 1..=32) => {
                let scale = 1.0 / (1u64 << (bits - 1)) as f32;
                reader
                    .into_samples::<i32>()
                    .map(|s| s.map(|v| v as f32 * scale))
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(e.to_string()))?
            }
            (format, bits) => {
                return Err(bad(format!("unsupported {bits}-bit {format:?} samples")));
            }
        };
        let channels = usize::from(spec.channels);
        let mono: Vec<f32> = samples
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() / channels as f32)
            .collect();
        if mono.is_empty() {
            return Err(bad("the file holds no audio".into()));
        }
        let at_8k = resample(&mono, spec.sample_rate, RATE);
        Ok(Music::from_linear(name, &at_8k))
    }

    /// Encodes 8 kHz mono samples in -1.0..=1.0, padded with silence to a
    /// whole number of frames.
    pub fn from_linear(name: &str, samples: &[f32]) -> Music {
        let frames = samples.len().div_ceil(FRAME_SAMPLES).max(1);
        let mut pcmu = Vec::with_capacity(frames * FRAME_SAMPLES);
        let mut pcma = Vec::with_capacity(frames * FRAME_SAMPLES);
        for &s in samples {
            let linear = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
            pcmu.push(linear_to_ulaw(linear));
            pcma.push(linear_to_alaw(linear));
        }
        pcmu.resize(frames * FRAME_SAMPLES, PCMU_SILENCE);
        pcma.resize(frames * FRAME_SAMPLES, PCMA_SILENCE);
        Music {
            name: name.into(),
            pcmu: pcmu.into(),
            pcma: pcma.into(),
        }
    }

    /// One frame of silence: what a parked call hears with music off.
    pub fn silence() -> Music {
        Music {
            name: "silence".into(),
            pcmu: vec![PCMU_SILENCE; FRAME_SAMPLES].into(),
            pcma: vec![PCMA_SILENCE; FRAME_SAMPLES].into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of 20 ms frames; the music loops after the last.
    pub fn frames(&self) -> usize {
        self.pcmu.len() / FRAME_SAMPLES
    }

    pub fn duration_ms(&self) -> u64 {
        self.frames() as u64 * 20
    }

    /// The payload of frame `index` (modulo the length) in `codec`.
    pub fn frame(&self, codec: Codec, index: u64) -> &[u8] {
        let i = (index % self.frames() as u64) as usize * FRAME_SAMPLES;
        let data = match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        };
        &data[i..i + FRAME_SAMPLES]
    }
}

/// Band-limited resampling with a Hann-windowed sinc kernel. Quality
/// matters more than speed: it runs once per file at load.
pub fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to {
        return input.to_vec();
    }
    let ratio = f64::from(to) / f64::from(from);
    // Cut off below the lower Nyquist frequency, with some room for the
    // kernel's transition band.
    let cutoff = 0.92 * ratio.min(1.0);
    const ZERO_CROSSINGS: f64 = 12.0;
    let half_width = ZERO_CROSSINGS / cutoff;
    let out_len = ((input.len() as f64) * ratio).round() as usize;
    let mut out = Vec::with_capacity(out_len);
    for n in 0..out_len {
        let center = n as f64 / ratio;
        let first = (center - half_width).ceil().max(0.0) as usize;
        let last = ((center + half_width).floor() as usize).min(input.len() - 1);
        let mut acc = 0.0f64;
        for (k, &x) in input.iter().enumerate().take(last + 1).skip(first) {
            let t = k as f64 - center;
            let arg = t * cutoff;
            let sinc = if arg.abs() < 1e-9 {
                1.0
            } else {
                (std::f64::consts::PI * arg).sin() / (std::f64::consts::PI * arg)
            };
            let window = 0.5 + 0.5 * (std::f64::consts::PI * t / half_width).cos();
            acc += f64::from(x) * sinc * window * cutoff;
        }
        out.push(acc as f32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::g711::ulaw_to_linear;

    fn wav(rate: u32, channels: u16, bits: u16, float: bool, samples: &[f32]) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        };
        let mut buf = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut buf, spec).unwrap();
        for &s in samples {
            for _ in 0..channels {
                if float {
                    w.write_sample(s).unwrap();
                } else {
                    let max = ((1i64 << (bits - 1)) - 1) as f32;
                    w.write_sample((s * max) as i32).unwrap();
                }
            }
        }
        w.finalize().unwrap();
        buf.into_inner()
    }

    fn tone(rate: u32, hz: f32, seconds: f32) -> Vec<f32> {
        (0..(rate as f32 * seconds) as usize)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
            .collect()
    }

    /// Energy of the decoded µ-law music at `hz` (Goertzel), normalised.
    fn power_at(m: &Music, hz: f32) -> f32 {
        let samples: Vec<f32> = (0..m.frames() as u64)
            .flat_map(|f| m.frame(Codec::Pcmu, f).to_vec())
            .map(|b| f32::from(ulaw_to_linear(b)) / 32768.0)
            .collect();
        let w = 2.0 * std::f32::consts::PI * hz / RATE as f32;
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for x in &samples {
            let s0 = x + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2) / (samples.len() as f32).powi(2)
    }

    #[test]
    fn any_common_format_becomes_8k_g711_frames() {
        for (rate, channels, bits, float) in [
            (8_000, 1, 16, false),
            (16_000, 1, 16, false),
            (44_100, 2, 16, false),
            (48_000, 2, 24, false),
            (22_050, 1, 8, false),
            (48_000, 1, 32, true),
        ] {
            let file = wav(rate, channels, bits, float, &tone(rate, 440.0, 0.5));
            let m = Music::from_wav("tone", &file).unwrap();
            assert_eq!(m.frames(), 25, "{rate} Hz {channels} ch {bits} bit");
            let signal = power_at(&m, 440.0);
            let elsewhere = power_at(&m, 1_000.0);
            assert!(signal > 0.05, "{rate}: 440 Hz lost ({signal})");
            assert!(
                elsewhere < signal / 100.0,
                "{rate}: leakage {elsewhere} vs {signal}"
            );
        }
    }

    #[test]
    fn content_above_4k_is_filtered_not_aliased() {
        let file = wav(44_100, 1, 16, false, &tone(44_100, 5_000.0, 0.5));
        let m = Music::from_wav("high", &file).unwrap();
        // 5 kHz would alias to 3 kHz without the low-pass.
        assert!(power_at(&m, 3_000.0) < 1e-4, "{}", power_at(&m, 3_000.0));
    }

    #[test]
    fn frames_are_padded_and_loop() {
        let m = Music::from_linear("short", &[0.25; 200]);
        assert_eq!(m.frames(), 2);
        assert_eq!(m.frame(Codec::Pcmu, 1)[100], PCMU_SILENCE);
        assert_eq!(m.frame(Codec::Pcma, 3), m.frame(Codec::Pcma, 1));
        assert_eq!(
            Music::silence().frame(Codec::Pcma, 7),
            &[PCMA_SILENCE; 160][..]
        );
    }

    #[test]
    fn broken_files_are_refused_with_a_reason() {
        let err = Music::from_wav("junk.wav", b"RIFF....WAVEjunk").unwrap_err();
        assert!(err.to_string().starts_with("music junk.wav:"), "{err}");
        let empty = wav(8_000, 1, 16, false, &[]);
        assert!(Music::from_wav("empty.wav", &empty).is_err());
    }
}

#[cfg(test)]
mod shipped {
    use super::*;

    fn load(rel: &str) -> Music {
        let path = format!("{}/../../music/{rel}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Music::from_wav(rel, &bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    fn loudness(m: &Music) -> f64 {
        let n = m.frames() as u64;
        let sum: f64 = (0..n)
            .flat_map(|f| m.frame(Codec::Pcma, f).to_vec())
            .map(|b| f64::from(crate::g711::alaw_to_linear(b)).abs())
            .sum();
        sum / (n as f64 * FRAME_SAMPLES as f64)
    }

    #[test]
    fn the_default_hold_music_loads_and_is_audible() {
        let m = load("hold.wav");
        assert_eq!(m.duration_ms(), 40_000);
        assert!(loudness(&m) > 1_000.0, "{}", loudness(&m));
    }

    #[test]
    fn every_prompt_loads_and_speaks() {
        for name in super::PROMPT_NAMES.into_iter().chain(["nothing-parked"]) {
            let m = load(&format!("prompts/{name}.wav"));
            assert!(m.duration_ms() >= 200, "{name}: {} ms", m.duration_ms());
            assert!(loudness(&m) > 300.0, "{name}: {}", loudness(&m));
        }
    }
}
