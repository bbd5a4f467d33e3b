//! Pacer threads: each runs one `MusicShard` and sends its hold music
//! through the shared media socket, so that music for many parked calls
//! spreads over the cores while SIP stays on the engine's loop.
//!
//! The engine hands every start, stop and change of destination to the
//! shard that owns the stream (a stream never moves), over a channel; a
//! thread sleeps until its pacer's next millisecond with work or the next
//! command, whichever comes first. All threads read one clock origin, the
//! engine's, so `Play { at }` means the same instant everywhere.

use std::net::UdpSocket;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use callpark_media::{MusicCommand, MusicShard};

use crate::batch::BatchSender;

/// Datagrams a pacer queues before it sends them (`sendmmsg` takes 1,024
/// at most anyway).
const MAX_BATCH: usize = 1_024;

/// The running pacer threads.
pub struct Pacers {
    commands: Vec<mpsc::Sender<MusicCommand>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pacers {
    /// Starts `count` threads (at least one) sending through clones of
    /// `socket`, a non-blocking UDP socket.
    pub fn start(count: usize, socket: &UdpSocket, origin: Instant) -> std::io::Result<Pacers> {
        let mut pacers = Pacers {
            commands: Vec::new(),
            threads: Vec::new(),
        };
        for index in 0..count.max(1) {
            let socket = socket.try_clone()?;
            let (tx, rx) = mpsc::channel();
            let thread = std::thread::Builder::new()
                .name(format!("callpark-pacer-{index}"))
                .spawn(move || run(index, rx, socket, origin))?;
            pacers.commands.push(tx);
            pacers.threads.push(thread);
        }
        Ok(pacers)
    }

    pub fn len(&self) -> usize {
        self.commands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Hands `command` to shard `shard`.
    pub fn send(&self, shard: usize, command: MusicCommand) {
        if let Some(tx) = self.commands.get(shard)
            && tx.send(command).is_err()
        {
            tracing::error!(shard, "a pacer thread has stopped; its music is lost");
        }
    }

    /// Stops every thread (their streams with them) and waits for them.
    pub fn stop(self) {
        drop(self.commands);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

fn run(index: usize, commands: mpsc::Receiver<MusicCommand>, socket: UdpSocket, origin: Instant) {
    let mut shard = MusicShard::new();
    let mut batch = BatchSender::new();
    loop {
        // With nothing to play, only a command can give work.
        let wait = shard
            .poll_timeout()
            .map_or(Duration::from_secs(3600), |due| {
                due.saturating_sub(origin.elapsed())
            });
        match commands.recv_timeout(wait) {
            Ok(command) => {
                shard.apply(command);
                while let Ok(command) = commands.try_recv() {
                    shard.apply(command);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // Sent in batches of at most MAX_BATCH: a tick of 10,000 streams
        // would otherwise queue 10,000 packets, and the buffer keeps that
        // size for good.
        let mut dropped = 0;
        let report = shard.handle_timeout(origin.elapsed(), |dest, packet, _| {
            batch.push(dest, packet);
            if batch.len() >= MAX_BATCH {
                dropped += batch.flush(&socket).dropped;
            }
        });
        if report.skipped > 0 {
            tracing::warn!(
                pacer = index,
                skipped = report.skipped,
                late_ms = report.max_lateness.as_millis() as u64,
                "hold music fell behind; packets skipped"
            );
        }
        if !batch.is_empty() {
            dropped += batch.flush(&socket).dropped;
        }
        if dropped > 0 {
            tracing::debug!(pacer = index, dropped, "media socket full: packets dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callpark_media::pacer::StreamSpec;
    use callpark_media::{Codec, Music, MusicDesk};

    /// Commands from a sharded desk, through real threads and a real
    /// socket, arrive as RTP at 50 packets a second per stream.
    #[test]
    fn pacer_threads_play_what_the_desk_says() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let media = UdpSocket::bind("127.0.0.1:0").unwrap();
        media.set_nonblocking(true).unwrap();
        let origin = Instant::now();
        let pacers = Pacers::start(2, &media, origin).unwrap();
        assert_eq!(pacers.len(), 2);
        let mut desk = MusicDesk::sharded(pacers.len());
        let streams: Vec<_> = (0..4u32)
            .map(|ssrc| {
                let spec = StreamSpec {
                    codec: Codec::Pcma,
                    payload_type: 8,
                    ssrc,
                    first_seq: 0,
                    first_ts: 0,
                    music: Music::from_linear("tone", &[0.5; 800]),
                    intro: Vec::new(),
                    tag: 0,
                };
                desk.play(origin.elapsed(), spec, Some(receiver.local_addr().unwrap()))
            })
            .collect();
        desk.stop(streams[3]);
        while let Some((shard, command)) = desk.poll_command() {
            pacers.send(shard, command);
        }
        // Ten packets from each playing stream, in sequence, 160 samples
        // (20 ms) apart; none from the stopped one.
        let mut last: [Option<(u16, u32)>; 4] = [None; 4];
        let mut counts = [0u32; 4];
        let mut buf = [0u8; 512];
        while counts[..3].iter().any(|c| *c < 10) {
            let n = receiver.recv(&mut buf).unwrap();
            assert_eq!(n, 172);
            let r = rtp_rs::RtpReader::new(&buf[..n]).unwrap();
            assert_eq!(r.payload_type(), 8);
            let ssrc = r.ssrc() as usize;
            assert!(ssrc < 3, "the stopped stream played");
            let (seq, ts) = (u16::from(r.sequence_number()), r.timestamp());
            match last[ssrc] {
                None => assert!(r.mark(), "the first packet carries the marker"),
                Some((s, t)) => {
                    assert_eq!(seq, s.wrapping_add(1));
                    assert_eq!(ts.wrapping_sub(t) % 160, 0);
                }
            }
            last[ssrc] = Some((seq, ts));
            counts[ssrc] += 1;
        }
        pacers.stop();
    }
}
