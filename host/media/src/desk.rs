//! The music desk: where the engine starts, stops and re-aims hold music,
//! and how that work is spread over pacer shards.
//!
//! The engine names a stream by a [`MusicStream`] handle and says where its
//! packets go; it never touches a pacer directly. A desk either plays
//! everything itself (one local shard, paced by whoever drives the engine,
//! as the in-process tests do) or, for a server with pacer threads, turns
//! every change into a [`MusicCommand`] for the shard that owns the stream.
//! A [`MusicShard`] applies those commands and paces its streams; it is what
//! each pacer thread runs. Both sides are sans-IO: destinations are plain
//! addresses and time is an argument.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use slab::Slab;

use crate::Music;
use crate::pacer::{PaceReport, Pacer, StreamId, StreamSpec};

/// The engine's handle for one parked call's music.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MusicStream(u64);

/// A change for the shard that owns a stream.
#[derive(Debug, Clone)]
pub enum MusicCommand {
    /// Start playing (or restart, if the stream plays already). `dest` is
    /// `None` while the far end's RTP address is unknown: nothing is sent
    /// until a `Redirect` names one, but the timing runs.
    Play {
        stream: MusicStream,
        at: Duration,
        spec: StreamSpec,
        dest: Option<SocketAddr>,
    },
    Stop {
        stream: MusicStream,
    },
    /// The far end's RTP address changed (symmetric RTP latching).
    Redirect {
        stream: MusicStream,
        dest: SocketAddr,
    },
    /// Play other music from the next packet on, in the same stream.
    SetMusic {
        stream: MusicStream,
        music: Music,
    },
}

impl MusicCommand {
    pub fn stream(&self) -> MusicStream {
        match self {
            MusicCommand::Play { stream, .. }
            | MusicCommand::Stop { stream }
            | MusicCommand::Redirect { stream, .. }
            | MusicCommand::SetMusic { stream, .. } => *stream,
        }
    }
}

/// One pacer and the destination of each of its streams.
#[derive(Default)]
pub struct MusicShard {
    pacer: Pacer,
    /// Per stream: its pacer handle and where its slot in `dests` is.
    streams: HashMap<MusicStream, (StreamId, usize)>,
    /// Destinations by slot; the pacer's tag for a stream is its slot, so
    /// that sending a packet costs an index, not a hash look-up.
    dests: Slab<Option<SocketAddr>>,
}

impl MusicShard {
    pub fn new() -> MusicShard {
        MusicShard::default()
    }

    /// Streams playing.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    pub fn apply(&mut self, command: MusicCommand) {
        match command {
            MusicCommand::Play {
                stream,
                at,
                mut spec,
                dest,
            } => {
                if let Some((old, slot)) = self.streams.remove(&stream) {
                    self.pacer.remove(old);
                    self.dests.remove(slot);
                }
                let slot = self.dests.insert(dest);
                spec.tag = slot as u64;
                let id = self.pacer.add(at, spec);
                self.streams.insert(stream, (id, slot));
            }
            MusicCommand::Stop { stream } => {
                if let Some((id, slot)) = self.streams.remove(&stream) {
                    self.pacer.remove(id);
                    self.dests.remove(slot);
                }
            }
            MusicCommand::Redirect { stream, dest } => {
                if let Some((_, slot)) = self.streams.get(&stream) {
                    self.dests[*slot] = Some(dest);
                }
            }
            MusicCommand::SetMusic { stream, music } => {
                if let Some((id, _)) = self.streams.get(&stream) {
                    self.pacer.set_music(*id, music);
                }
            }
        }
    }

    /// When `handle_timeout` has work next; `None` with no streams.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.pacer.poll_timeout()
    }

    /// Sends every packet due by `now` through `emit(dest, packet,
    /// lateness)`.
    pub fn handle_timeout(
        &mut self,
        now: Duration,
        mut emit: impl FnMut(SocketAddr, &[u8], Duration),
    ) -> PaceReport {
        let dests = &self.dests;
        self.pacer.handle_timeout(now, |slot, packet, late| {
            if let Some(Some(dest)) = dests.get(slot as usize) {
                emit(*dest, packet, late);
            }
        })
    }
}

enum Playing {
    /// The desk paces its streams itself.
    Here(Box<MusicShard>),
    /// Commands wait for the host to hand them to its shards.
    Shards {
        count: usize,
        commands: VecDeque<(usize, MusicCommand)>,
    },
}

/// The engine's side: hands out stream handles and records every change.
pub struct MusicDesk {
    playing: Playing,
    next: u64,
    /// Streams playing, so that redirects for legs without music cost
    /// nothing and a stop is sent once.
    live: HashSet<MusicStream>,
}

impl Default for MusicDesk {
    fn default() -> MusicDesk {
        MusicDesk::new()
    }
}

impl MusicDesk {
    /// A desk that paces everything itself: drive it with `poll_timeout`
    /// and `handle_timeout`.
    pub fn new() -> MusicDesk {
        MusicDesk {
            playing: Playing::Here(Box::new(MusicShard::new())),
            next: 0,
            live: HashSet::new(),
        }
    }

    /// A desk for `shards` pacers run by the host (at least one): every
    /// change comes out of `poll_command` with the shard it is for, and
    /// a stream stays on one shard for its whole life.
    pub fn sharded(shards: usize) -> MusicDesk {
        MusicDesk {
            playing: Playing::Shards {
                count: shards.max(1),
                commands: VecDeque::new(),
            },
            ..MusicDesk::new()
        }
    }

    /// Streams playing.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    fn send(&mut self, command: MusicCommand) {
        match &mut self.playing {
            Playing::Here(shard) => shard.apply(command),
            Playing::Shards { count, commands } => {
                let shard = (command.stream().0 % *count as u64) as usize;
                commands.push_back((shard, command));
            }
        }
    }

    /// Starts a stream at `now`; its first packet is due at the next
    /// millisecond.
    pub fn play(
        &mut self,
        now: Duration,
        spec: StreamSpec,
        dest: Option<SocketAddr>,
    ) -> MusicStream {
        self.next += 1;
        let stream = MusicStream(self.next);
        self.live.insert(stream);
        self.send(MusicCommand::Play {
            stream,
            at: now,
            spec,
            dest,
        });
        stream
    }

    pub fn stop(&mut self, stream: MusicStream) {
        if self.live.remove(&stream) {
            self.send(MusicCommand::Stop { stream });
        }
    }

    pub fn redirect(&mut self, stream: MusicStream, dest: SocketAddr) {
        if self.live.contains(&stream) {
            self.send(MusicCommand::Redirect { stream, dest });
        }
    }

    /// Changes what a stream plays, keeping its timing, sequence and SSRC.
    pub fn set_music(&mut self, stream: MusicStream, music: Music) {
        if self.live.contains(&stream) {
            self.send(MusicCommand::SetMusic { stream, music });
        }
    }

    /// The next change for the host's shards: (shard index, command).
    /// Always `None` for a desk that paces itself.
    pub fn poll_command(&mut self) -> Option<(usize, MusicCommand)> {
        match &mut self.playing {
            Playing::Here(_) => None,
            Playing::Shards { commands, .. } => commands.pop_front(),
        }
    }

    /// When `handle_timeout` has work next. `None` with no streams, and
    /// always for a sharded desk (its shards keep their own time).
    pub fn poll_timeout(&self) -> Option<Duration> {
        match &self.playing {
            Playing::Here(shard) => shard.poll_timeout(),
            Playing::Shards { .. } => None,
        }
    }

    /// Sends the music due by `now` (a desk that paces itself; a sharded
    /// desk sends nothing here).
    pub fn handle_timeout(
        &mut self,
        now: Duration,
        emit: impl FnMut(SocketAddr, &[u8], Duration),
    ) -> PaceReport {
        match &mut self.playing {
            Playing::Here(shard) => shard.handle_timeout(now, emit),
            Playing::Shards { .. } => PaceReport::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Codec, Music};

    fn spec(ssrc: u32) -> StreamSpec {
        StreamSpec {
            codec: Codec::Pcmu,
            payload_type: 0,
            ssrc,
            first_seq: 100,
            first_ts: 0,
            music: Music::from_linear("tone", &vec![0.25; 1600]),
            intro: Vec::new(),
            tag: 0,
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Runs 100 ms of a desk's own pacing; (dest, ssrc) of every packet.
    fn packets_of(desk: &mut MusicDesk, from: Duration) -> Vec<(SocketAddr, u32)> {
        let mut out = Vec::new();
        for ms in 0..100 {
            desk.handle_timeout(from + Duration::from_millis(ms), |dest, p, _| {
                out.push((dest, u32::from_be_bytes([p[8], p[9], p[10], p[11]])))
            });
        }
        out
    }

    #[test]
    fn a_desk_that_paces_itself_follows_play_redirect_and_stop() {
        let mut desk = MusicDesk::new();
        let a = desk.play(Duration::ZERO, spec(1), Some(addr(4000)));
        let b = desk.play(Duration::ZERO, spec(2), None);
        assert_eq!(desk.len(), 2);
        let sent = packets_of(&mut desk, Duration::ZERO);
        // b has no destination yet: only a is heard, every 20 ms.
        assert_eq!(sent, vec![(addr(4000), 1); 5]);
        desk.redirect(b, addr(4002));
        desk.redirect(a, addr(4001));
        let sent = packets_of(&mut desk, Duration::from_millis(100));
        assert_eq!(sent.iter().filter(|p| **p == (addr(4001), 1)).count(), 5);
        assert_eq!(sent.iter().filter(|p| **p == (addr(4002), 2)).count(), 5);
        desk.stop(a);
        desk.stop(a);
        let sent = packets_of(&mut desk, Duration::from_millis(200));
        assert_eq!(sent, vec![(addr(4002), 2); 5]);
        assert_eq!(desk.poll_command().map(|(s, _)| s), None);
    }

    #[test]
    fn a_sharded_desk_keeps_each_stream_on_one_shard_and_its_commands_in_order() {
        let mut desk = MusicDesk::sharded(2);
        let streams: Vec<MusicStream> = (0..4)
            .map(|i| desk.play(Duration::ZERO, spec(i), Some(addr(5000 + i as u16))))
            .collect();
        desk.redirect(streams[1], addr(6001));
        desk.stop(streams[2]);
        // Stopped streams and unknown ones send nothing more.
        desk.stop(streams[2]);
        desk.redirect(streams[2], addr(6002));
        assert_eq!(desk.poll_timeout(), None);
        assert_eq!(
            desk.handle_timeout(Duration::from_millis(5), |_, _, _| panic!("sent here")),
            PaceReport::default()
        );

        let mut shards = [MusicShard::new(), MusicShard::new()];
        let mut commands = 0;
        let mut shard_of = HashMap::new();
        while let Some((shard, command)) = desk.poll_command() {
            commands += 1;
            // A stream's commands all go to the shard it started on.
            assert_eq!(*shard_of.entry(command.stream()).or_insert(shard), shard);
            shards[shard].apply(command);
        }
        assert_eq!(commands, 4 + 1 + 1);
        assert_eq!(shards[0].len() + shards[1].len(), 3);
        assert!(shards.iter().all(|s| !s.is_empty()), "both shards get work");

        let mut heard = Vec::new();
        for shard in &mut shards {
            for ms in 0..20 {
                shard.handle_timeout(Duration::from_millis(ms), |dest, p, _| {
                    heard.push((dest, u32::from_be_bytes([p[8], p[9], p[10], p[11]])))
                });
            }
        }
        heard.sort();
        assert_eq!(
            heard,
            vec![(addr(5000), 0), (addr(5003), 3), (addr(6001), 1)]
        );
    }

    #[test]
    fn playing_again_on_a_shard_replaces_the_stream() {
        let mut shard = MusicShard::new();
        let stream = MusicStream(7);
        for ssrc in [1, 2] {
            shard.apply(MusicCommand::Play {
                stream,
                at: Duration::ZERO,
                spec: spec(ssrc),
                dest: Some(addr(4000)),
            });
        }
        assert_eq!(shard.len(), 1);
        let mut ssrcs = Vec::new();
        for ms in 0..40 {
            shard.handle_timeout(Duration::from_millis(ms), |_, p, _| {
                ssrcs.push(u32::from_be_bytes([p[8], p[9], p[10], p[11]]))
            });
        }
        assert_eq!(ssrcs, vec![2, 2]);
    }
}
