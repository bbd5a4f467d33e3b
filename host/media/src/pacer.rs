//! The pacer: one per shard, it sends every parked call's hold music from a
//! timing schedule, with no task or timer per call.
//!
//! Each stream sends one packet every 20 ms. Streams are kept in 20 slots of
//! 1 ms by the millisecond their packets fall on, so a shard wakes once per
//! millisecond that has work and touches only the streams due then; the
//! start times of calls spread the load over the slots. Time is an argument:
//! `now` is a monotonic `Duration` from an origin the caller chooses.
//!
//! RTP timestamps follow absolute time (packet `k` of a stream carries
//! `first_ts + 160 k` and is due at `start + 20 ms k`), sequence numbers count
//! packets sent, and the first packet carries the marker bit. After a stall
//! the pacer sends up to `CATCH_UP` overdue packets at once and skips the
//! rest: the sequence stays gap-free and the timestamps show the skip.

use std::time::Duration;

use rtp_rs::{RtpPacketBuilder, Seq};
use slab::Slab;

use crate::music::{Codec, FRAME_SAMPLES, Music};

const PERIOD_MS: u64 = 20;
/// The most overdue packets sent at once for one stream after a stall.
pub const CATCH_UP: u32 = 5;
/// Size of an RTP header without CSRCs or extensions.
pub const RTP_HEADER: usize = 12;

/// What a new stream sends.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub codec: Codec,
    /// The payload type negotiated for `codec` (0 and 8 unless remapped).
    pub payload_type: u8,
    pub ssrc: u32,
    pub first_seq: u16,
    pub first_ts: u32,
    pub music: Music,
    /// Played once, in order, before `music` (e.g. "parked on", "seven",
    /// "zero", "one"): shared prompts, not a copy per stream or per orbit.
    pub intro: Vec<Music>,
    /// The caller's name for the stream (e.g. a call's index), handed back
    /// with every packet.
    pub tag: u64,
}

/// A stream's handle. Generations keep a stale handle from touching a
/// stream that reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId {
    index: u32,
    generation: u32,
}

struct Stream {
    spec: StreamSpec,
    generation: u32,
    start: Duration,
    /// Packets sent (the next sequence offset).
    sent: u32,
    /// Frames elapsed since start (the next timestamp and music offset).
    frame: u64,
}

impl Stream {
    fn due(&self) -> Duration {
        self.start + Duration::from_millis(self.frame * PERIOD_MS)
    }
}

/// Figures of one `handle_timeout` call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PaceReport {
    pub sent: u32,
    /// Packets skipped after a stall longer than `CATCH_UP` periods.
    pub skipped: u32,
    pub max_lateness: Duration,
}

/// The hold-music pacer of one shard.
#[derive(Default)]
pub struct Pacer {
    streams: Slab<Stream>,
    slots: [Vec<StreamId>; PERIOD_MS as usize],
    next_generation: u32,
    /// The last millisecond tick whose slot was handled.
    last_tick: Option<u64>,
    buffer: Vec<u8>,
}

impl Pacer {
    pub fn new() -> Pacer {
        Pacer::default()
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Starts a stream; its first packet is due at the next millisecond.
    pub fn add(&mut self, now: Duration, spec: StreamSpec) -> StreamId {
        let start_ms = now.as_millis() as u64 + 1;
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let index = self.streams.insert(Stream {
            spec,
            generation,
            start: Duration::from_millis(start_ms),
            sent: 0,
            frame: 0,
        }) as u32;
        let id = StreamId { index, generation };
        self.slots[(start_ms % PERIOD_MS) as usize].push(id);
        id
    }

    fn get_mut(&mut self, id: StreamId) -> Option<&mut Stream> {
        self.streams
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation)
    }

    /// Stops a stream. Returns false for an unknown or stale handle.
    pub fn remove(&mut self, id: StreamId) -> bool {
        if self.get_mut(id).is_none() {
            return false;
        }
        self.streams.remove(id.index as usize);
        // Its slot entry is dropped lazily, when the slot is next visited.
        true
    }

    /// Changes what a stream plays (e.g. music off), keeping its timing.
    pub fn set_music(&mut self, id: StreamId, music: Music) -> bool {
        match self.get_mut(id) {
            Some(s) => {
                s.spec.music = music;
                true
            }
            None => false,
        }
    }

    /// When `handle_timeout` has work next; `None` with no streams.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.streams.is_empty() {
            return None;
        }
        let from = self.last_tick.map_or(0, |t| t + 1);
        (from..from + PERIOD_MS)
            .find(|t| !self.slots[(t % PERIOD_MS) as usize].is_empty())
            .map(Duration::from_millis)
    }

    /// Sends every packet due by `now` through `emit(tag, packet, lateness)`.
    pub fn handle_timeout(
        &mut self,
        now: Duration,
        mut emit: impl FnMut(u64, &[u8], Duration),
    ) -> PaceReport {
        let mut report = PaceReport::default();
        let now_ms = now.as_millis() as u64;
        let first = match self.last_tick {
            Some(t) if t >= now_ms => return report,
            // After a long stall every slot is visited once.
            Some(t) => (t + 1).max(now_ms.saturating_sub(PERIOD_MS - 1)),
            None => now_ms.saturating_sub(PERIOD_MS - 1),
        };
        self.last_tick = Some(now_ms);
        let mut buffer = std::mem::take(&mut self.buffer);
        for tick in first..=now_ms {
            let slot = (tick % PERIOD_MS) as usize;
            let mut i = 0;
            while i < self.slots[slot].len() {
                let id = self.slots[slot][i];
                let Some(stream) = self
                    .streams
                    .get_mut(id.index as usize)
                    .filter(|s| s.generation == id.generation)
                else {
                    self.slots[slot].swap_remove(i);
                    continue;
                };
                Self::send_due(stream, now, &mut buffer, &mut emit, &mut report);
                i += 1;
            }
        }
        self.buffer = buffer;
        report
    }

    fn send_due(
        stream: &mut Stream,
        now: Duration,
        buffer: &mut Vec<u8>,
        emit: &mut impl FnMut(u64, &[u8], Duration),
        report: &mut PaceReport,
    ) {
        let mut burst = 0;
        while stream.due() <= now {
            if burst == CATCH_UP {
                // Too far behind: skip to the frame due now, keeping
                // timestamps true to time.
                let behind = (now - stream.due()).as_millis() as u64 / PERIOD_MS + 1;
                stream.frame += behind;
                report.skipped += behind as u32;
                break;
            }
            let lateness = now - stream.due();
            let spec = &stream.spec;
            // The frame falls in one of the intro's parts, or in the music
            // after them (most streams have no intro: no part to skip).
            let mut frame = stream.frame;
            let mut payload = None;
            for part in &spec.intro {
                let n = part.frames() as u64;
                if frame < n {
                    payload = Some(part.frame(spec.codec, frame));
                    break;
                }
                frame -= n;
            }
            let payload = payload.unwrap_or_else(|| spec.music.frame(spec.codec, frame));
            let packet = RtpPacketBuilder::new()
                .payload_type(spec.payload_type)
                .ssrc(spec.ssrc)
                .sequence(Seq::from(spec.first_seq.wrapping_add(stream.sent as u16)))
                .timestamp(
                    spec.first_ts
                        .wrapping_add((stream.frame as u32).wrapping_mul(FRAME_SAMPLES as u32)),
                )
                .marked(stream.sent == 0)
                .payload(payload);
            buffer.resize(RTP_HEADER + payload.len(), 0);
            let len = packet.build_into_unchecked(buffer);
            emit(spec.tag, &buffer[..len], lateness);
            stream.sent = stream.sent.wrapping_add(1);
            stream.frame += 1;
            burst += 1;
            report.sent += 1;
            report.max_lateness = report.max_lateness.max(lateness);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtp_rs::RtpReader;

    fn spec(tag: u64) -> StreamSpec {
        StreamSpec {
            codec: Codec::Pcmu,
            payload_type: 0,
            ssrc: 0xDEAD_BEEF,
            first_seq: 65_530,
            first_ts: 1_000,
            music: Music::from_linear(
                "ramp",
                &(0..1600).map(|i| i as f32 / 3200.0).collect::<Vec<_>>(),
            ),
            intro: Vec::new(),
            tag,
        }
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Runs the pacer like a shard loop: wake at each `poll_timeout`.
    fn run(p: &mut Pacer, until: u64) -> Vec<(u64, Vec<u8>, Duration, Duration)> {
        let mut out = Vec::new();
        while let Some(t) = p.poll_timeout() {
            if t > ms(until) {
                break;
            }
            p.handle_timeout(t, |tag, pkt, late| out.push((tag, pkt.to_vec(), late, t)));
        }
        out
    }

    #[test]
    fn one_stream_every_20ms_with_rtp_fields_following_time() {
        let mut p = Pacer::new();
        p.add(ms(1_000), spec(7));
        let sent = run(&mut p, 1_200);
        assert_eq!(sent.len(), 10);
        for (k, (tag, pkt, late, at)) in sent.iter().enumerate() {
            let r = RtpReader::new(pkt).unwrap();
            assert_eq!(*tag, 7);
            assert_eq!(*at, ms(1_001 + 20 * k as u64));
            assert_eq!(*late, Duration::ZERO);
            assert_eq!(r.payload_type(), 0);
            assert_eq!(r.ssrc(), 0xDEAD_BEEF);
            assert_eq!(
                u16::from(r.sequence_number()),
                65_530u16.wrapping_add(k as u16)
            );
            assert_eq!(r.timestamp(), 1_000 + 160 * k as u32);
            assert_eq!(r.mark(), k == 0);
            assert_eq!(r.payload().len(), 160);
        }
        // The music advances one frame per packet and loops after 10.
        let first = RtpReader::new(&sent[0].1).unwrap().payload().to_vec();
        let second = RtpReader::new(&sent[1].1).unwrap().payload().to_vec();
        assert_ne!(first, second);
    }

    #[test]
    fn streams_spread_over_slots_and_each_keeps_its_cadence() {
        let mut p = Pacer::new();
        for i in 0..100 {
            p.add(ms(i * 3), spec(i));
        }
        let sent = run(&mut p, 2_000);
        for i in 0..100 {
            let times: Vec<Duration> = sent.iter().filter(|s| s.0 == i).map(|s| s.3).collect();
            assert!(times.len() >= 84, "stream {i} sent {}", times.len());
            assert!(
                times.windows(2).all(|w| w[1] - w[0] == ms(20)),
                "stream {i}"
            );
        }
        assert!(sent.iter().all(|s| s.2 == Duration::ZERO));
    }

    #[test]
    fn a_stall_is_caught_up_briefly_then_skipped_without_sequence_gaps() {
        let mut p = Pacer::new();
        p.add(ms(0), spec(1));
        let mut got = Vec::new();
        p.handle_timeout(ms(1), |_, pkt, late| got.push((pkt.to_vec(), late)));
        // The shard stalls for 300 ms.
        let report = p.handle_timeout(ms(301), |_, pkt, late| got.push((pkt.to_vec(), late)));
        assert_eq!(report.sent, CATCH_UP);
        assert_eq!(report.skipped, 15 - CATCH_UP);
        let seqs: Vec<u16> = got
            .iter()
            .map(|(p, _)| u16::from(RtpReader::new(p).unwrap().sequence_number()))
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "{seqs:?}"
        );
        // Timestamps after the skip follow absolute time again.
        p.handle_timeout(ms(321), |_, pkt, late| got.push((pkt.to_vec(), late)));
        let last = RtpReader::new(&got.last().unwrap().0).unwrap();
        assert_eq!(last.timestamp(), 1_000 + 160 * 16);
        assert_eq!(got.last().unwrap().1, Duration::ZERO);
    }

    #[test]
    fn an_intro_plays_once_before_the_music_loops() {
        let mut p = Pacer::new();
        let mut s = spec(1);
        s.intro = vec![Music::silence()];
        s.music = Music::from_linear("loud", &[0.9; 320]);
        p.add(ms(0), s);
        let sent = run(&mut p, 200);
        let payloads: Vec<u8> = sent
            .iter()
            .map(|(_, pkt, _, _)| RtpReader::new(pkt).unwrap().payload()[0])
            .collect();
        assert_eq!(payloads[0], crate::g711::PCMU_SILENCE);
        assert!(
            payloads[1..]
                .iter()
                .all(|b| *b != crate::g711::PCMU_SILENCE),
            "{payloads:?}"
        );
    }

    #[test]
    fn removed_streams_stop_and_stale_handles_do_nothing() {
        let mut p = Pacer::new();
        let a = p.add(ms(0), spec(1));
        let b = p.add(ms(0), spec(2));
        run(&mut p, 50);
        assert!(p.remove(a));
        assert!(!p.remove(a));
        let c = p.add(ms(50), spec(3));
        assert!(
            !p.set_music(a, Music::silence()),
            "a stale handle must not reach c"
        );
        assert!(p.set_music(c, Music::silence()));
        let sent = run(&mut p, 200);
        assert!(sent.iter().all(|s| s.0 != 1));
        assert!(sent.iter().any(|s| s.0 == 2) && sent.iter().any(|s| s.0 == 3));
        assert!(p.remove(b) && p.remove(c));
        assert_eq!(p.poll_timeout(), None);
    }
}
