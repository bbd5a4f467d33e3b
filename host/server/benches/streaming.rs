//! Hold music to N parked calls over real loopback sockets.
//! Run: `cargo bench -p callpark-server --bench streaming [-- N ...]`.
//!
//! Two shards (threads), each a `Pacer` with half the streams and its own
//! UDP socket, send the default hold music to receiver sockets on
//! 127.0.0.1; one receiver thread counts what arrives. Printed per N:
//! - CPU per stream-second of the sending shards (thread CPU clocks),
//! - p50 / p99 / max lateness of packets against their 20 ms slots,
//! - gaps: packets the pacer skipped after falling behind (sender side),
//! - loss: packets the receivers never saw (kernel drops on loopback,
//!   usually the receiver not keeping up on the same two cores).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use callpark_media::pacer::{Pacer, StreamSpec};
use callpark_media::{Codec, Music};

const SHARDS: usize = 2;
const RECEIVERS: usize = 8;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);

fn big_buffers(socket: &UdpSocket) {
    let s = socket2::SockRef::from(socket);
    let _ = s.set_recv_buffer_size(8 << 20);
    let _ = s.set_send_buffer_size(8 << 20);
}

struct ShardResult {
    cpu: Duration,
    sent: u64,
    skipped: u64,
    lateness_us: Vec<u32>,
}

fn shard(
    streams: Vec<(u32, SocketAddr)>,
    music: Music,
    origin: Instant,
    measure_from: Duration,
    measure_to: Duration,
    start: Arc<Barrier>,
) -> ShardResult {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    big_buffers(&socket);
    let mut pacer = Pacer::new();
    let now = origin.elapsed();
    let dests: Vec<SocketAddr> = streams.iter().map(|(_, d)| *d).collect();
    // Calls arrive over the first second, as they would.
    for (i, (ssrc, _)) in streams.iter().enumerate() {
        let offset = Duration::from_micros((i as u64 * 1_000_000) / streams.len().max(1) as u64);
        pacer.add(
            now + offset,
            StreamSpec {
                codec: Codec::Pcmu,
                payload_type: 0,
                ssrc: *ssrc,
                first_seq: 0,
                first_ts: 0,
                music: music.clone(),
                intro: None,
                tag: i as u64,
            },
        );
    }
    start.wait();
    let mut result = ShardResult {
        cpu: Duration::ZERO,
        sent: 0,
        skipped: 0,
        lateness_us: Vec::new(),
    };
    let mut cpu_at_start = None;
    let mut batch = callpark_server::batch::BatchSender::new();
    while let Some(due) = pacer.poll_timeout() {
        let mut now = origin.elapsed();
        if now >= measure_to {
            break;
        }
        if due > now {
            std::thread::sleep(due - now);
            now = origin.elapsed();
        }
        let measuring = now >= measure_from;
        if measuring && cpu_at_start.is_none() {
            cpu_at_start = Some(callpark_server::clock::thread_cpu());
        }
        let report = pacer.handle_timeout(now, |tag, packet, late| {
            batch.push(dests[tag as usize], packet);
            if measuring {
                result
                    .lateness_us
                    .push(late.as_micros().min(u128::from(u32::MAX)) as u32);
            }
        });
        batch.flush(&socket);
        if measuring {
            result.sent += u64::from(report.sent);
            result.skipped += u64::from(report.skipped);
        }
    }
    result.cpu = callpark_server::clock::thread_cpu()
        - cpu_at_start.unwrap_or_else(callpark_server::clock::thread_cpu);
    result
}

fn run(n: usize, music: &Music) {
    let receivers: Vec<UdpSocket> = (0..RECEIVERS)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            big_buffers(&s);
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let addrs: Vec<SocketAddr> = receivers.iter().map(|r| r.local_addr().unwrap()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let origin = Instant::now();
    let measure_from = WARMUP + Duration::from_secs(1);
    let measure_to = measure_from + MEASURE;
    let receiver = {
        let (stop, received) = (stop.clone(), received.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut count = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut idle = true;
                for r in &receivers {
                    while let Ok((_, _)) = r.recv_from(&mut buf) {
                        idle = false;
                        let at = origin.elapsed();
                        if at >= measure_from && at < measure_to {
                            count += 1;
                        }
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            received.store(count, Ordering::Relaxed);
        })
    };
    let start = Arc::new(Barrier::new(SHARDS));
    let shards: Vec<_> = (0..SHARDS)
        .map(|s| {
            let streams: Vec<(u32, SocketAddr)> = (0..n)
                .filter(|i| i % SHARDS == s)
                .map(|i| (i as u32, addrs[i % RECEIVERS]))
                .collect();
            let (music, start) = (music.clone(), start.clone());
            std::thread::spawn(move || {
                shard(streams, music, origin, measure_from, measure_to, start)
            })
        })
        .collect();
    let results: Vec<ShardResult> = shards.into_iter().map(|h| h.join().unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    receiver.join().unwrap();

    let cpu: Duration = results.iter().map(|r| r.cpu).sum();
    let sent: u64 = results.iter().map(|r| r.sent).sum();
    let skipped: u64 = results.iter().map(|r| r.skipped).sum();
    let mut late: Vec<u32> = results.into_iter().flat_map(|r| r.lateness_us).collect();
    late.sort_unstable();
    let pct = |q: f64| {
        late.get(((late.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    let expected = (n as u64) * 50 * MEASURE.as_secs();
    let got = received.load(Ordering::Relaxed);
    println!(
        "{n:>6} streams | CPU {:>6.1} µs per stream-second | lateness p50 {:>5} µs p99 {:>6} µs max {:>6} µs | sent {sent} of {expected} expected, gaps (skipped by the pacer) {skipped} | loss at receivers {}",
        cpu.as_secs_f64() * 1e6 / (n as f64 * MEASURE.as_secs_f64()),
        pct(0.5),
        pct(0.99),
        late.last().copied().unwrap_or(0),
        sent.saturating_sub(got.min(sent)),
    );
}

fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![1_000, 5_000, 10_000, 20_000]
    } else {
        counts
    };
    let wav = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../music/hold.wav")).unwrap();
    let music = Music::from_wav("hold.wav", &wav).unwrap();
    println!(
        "== hold music over loopback: {SHARDS} shards, {RECEIVERS} receiver sockets, {}s measured after warm-up ==",
        MEASURE.as_secs()
    );
    for n in counts {
        run(n, &music);
    }
}
