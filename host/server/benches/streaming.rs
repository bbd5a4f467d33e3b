//! Hold music to N parked calls over real loopback sockets.
//! Run: `cargo bench -p callpark-server --bench streaming [-- [--gro] [--no-segmentation] N ...]`.
//!
//! Two shards (threads), each a `MusicShard` (what `callpark serve`'s pacer
//! threads run) with half the streams, fed by a `MusicDesk`, and its own
//! UDP socket, send the default hold music through `BatchSender` to 8
//! receiver sockets on 127.0.0.1 (many calls per port, told apart by SSRC,
//! as at a media gateway); one receiver thread counts what arrives.
//! Printed per N:
//! - CPU per stream-second of the sending shards (thread CPU clocks, which
//!   on loopback include the kernel's delivery into the receivers' sockets),
//!   and of the receiver thread,
//! - p50 / p99 / max lateness of packets against their 20 ms slots, up to
//!   the return of the system call that sent them,
//! - gaps: packets the pacer skipped after falling behind (sender side),
//! - loss: packets the receivers never saw (kernel drops on loopback,
//!   usually the receiver not keeping up on the same two cores),
//! - the share of packets that went out in segmented runs,
//! - the memory each playing stream takes (RSS growth of this process:
//!   the desk's and the shards' share of a parked call).
//!
//! Options: `--gro` receivers take segmented runs whole (see `Inbox`);
//! `--no-segmentation` sends one datagram per message, which is what
//! happens when every parked call has its own destination.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use callpark_media::pacer::StreamSpec;
use callpark_media::{Codec, Music};
use callpark_media::{MusicCommand, MusicDesk, MusicShard};
use callpark_server::batch::BatchSender;

const SHARDS: usize = 2;
const RECEIVERS: usize = 8;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);

/// The receivers stand in for phones (or a media gateway taking many calls
/// on one port). They read with `recvmmsg`, many datagrams per system call,
/// so that they take as little as possible of the two cores the shards
/// share with them.
///
/// With `gro`, the sockets ask for UDP receive offload: the kernel hands
/// over a segmented run whole, as a host with a NIC that segments in
/// hardware would see it from the sender's side. Without it (the default,
/// and the harder case for the sender), the loopback receive path cuts
/// every run into datagrams in the sender's own system call, which is what
/// software segmentation at a NIC would cost.
struct Inbox {
    buffers: Vec<Vec<u8>>,
    gro: bool,
}

impl Inbox {
    const BATCH: usize = 64;

    fn new(gro: bool) -> Inbox {
        let size = if gro { 65_536 } else { 256 };
        Inbox {
            buffers: vec![vec![0; size]; Self::BATCH],
            gro,
        }
    }

    /// Datagrams read from `socket` without waiting (0 when none).
    fn receive(&mut self, socket: &UdpSocket) -> usize {
        use std::os::fd::AsRawFd;
        let mut iovecs: Vec<libc::iovec> = self
            .buffers
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iov| {
                // SAFETY: an all-zero msghdr is a valid empty header.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov as *mut libc::iovec;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // SAFETY: the headers point at iovecs over our own buffers, all
        // alive for the call.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                Self::BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let n = n.max(0) as usize;
        if !self.gro {
            return n;
        }
        // Every packet of the benchmark is 172 bytes (20 ms of G.711).
        headers[..n]
            .iter()
            .map(|h| (h.msg_len as usize).div_ceil(172))
            .sum()
    }
}

/// Large socket buffers, so that a receiver that waits a few milliseconds
/// for a core does not lose packets: past `net.core.rmem_max` when we may
/// (SO_RCVBUFFORCE needs CAP_NET_ADMIN), else up to it.
fn big_buffers(socket: &UdpSocket, gro: bool) {
    use std::os::fd::AsRawFd;
    let s = socket2::SockRef::from(socket);
    let _ = s.set_send_buffer_size(8 << 20);
    let set = |level, option, value: libc::c_int| {
        // SAFETY: a plain integer socket option on a socket we own.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                level,
                option,
                &value as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    if set(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 32 << 20) != 0 {
        let _ = s.set_recv_buffer_size(32 << 20);
    }
    if gro {
        assert_eq!(set(libc::SOL_UDP, libc::UDP_GRO, 1), 0, "UDP_GRO refused");
    }
}

struct ShardResult {
    cpu: Duration,
    sent: u64,
    /// Every packet sent, warm-up and all, to compare with what arrived.
    sent_in_all: u64,
    skipped: u64,
    lateness_us: Vec<u32>,
    /// Datagrams that went out in segmented runs (warm-up included).
    coalesced: u64,
}

fn shard(
    commands: Vec<MusicCommand>,
    origin: Instant,
    measure_from: Duration,
    measure_to: Duration,
    start: Arc<Barrier>,
    segmentation: bool,
) -> ShardResult {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    big_buffers(&socket, false);
    let mut pacer = MusicShard::new();
    for command in commands {
        pacer.apply(command);
    }
    let streams = pacer.len();
    start.wait();
    let mut result = ShardResult {
        cpu: Duration::ZERO,
        sent: 0,
        sent_in_all: 0,
        skipped: 0,
        // Sized up front: growing it would copy megabytes in the middle of
        // a tick and show up as lateness of our own making.
        lateness_us: Vec::with_capacity(streams * 50 * (MEASURE.as_secs() as usize + 1) + 1024),
        coalesced: 0,
    };
    let mut cpu_at_start = None;
    let mut batch = if segmentation {
        BatchSender::new()
    } else {
        BatchSender::without_segmentation()
    };
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
        let tick_from = result.lateness_us.len();
        let report = pacer.handle_timeout(now, |dest, packet, late| {
            batch.push(dest, packet);
            if measuring {
                result
                    .lateness_us
                    .push(late.as_micros().min(u128::from(u32::MAX)) as u32);
            }
        });
        batch.flush(&socket);
        // A packet is late by its lateness when the pacer produced it plus
        // the time until the system call that sent it returned.
        let flushing = (origin.elapsed() - now).as_micros() as u32;
        for late in &mut result.lateness_us[tick_from..] {
            *late = late.saturating_add(flushing);
        }
        result.sent_in_all += u64::from(report.sent);
        if measuring {
            result.sent += u64::from(report.sent);
            result.skipped += u64::from(report.skipped);
        }
    }
    result.coalesced = batch.coalesced();
    result.cpu = callpark_server::clock::thread_cpu()
        - cpu_at_start.unwrap_or_else(callpark_server::clock::thread_cpu);
    result
}

fn run(n: usize, music: &Music, options: Options) {
    let receivers: Vec<UdpSocket> = (0..RECEIVERS)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            big_buffers(&s, options.gro);
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let addrs: Vec<SocketAddr> = receivers.iter().map(|r| r.local_addr().unwrap()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let receiver_cpu = Arc::new(AtomicU64::new(0));
    let origin = Instant::now();
    let measure_from = WARMUP + Duration::from_secs(1);
    let measure_to = measure_from + MEASURE;
    let receiver = {
        let (stop, received, receiver_cpu) = (stop.clone(), received.clone(), receiver_cpu.clone());
        std::thread::spawn(move || {
            let mut count = 0u64;
            let (mut cpu_from, mut cpu_to) = (None, None);
            let mut inbox = Inbox::new(options.gro);
            loop {
                // Set once every shard has finished: this pass drains what
                // is left, then the count is complete.
                let stopping = stop.load(Ordering::Relaxed);
                let mut idle = true;
                for r in &receivers {
                    loop {
                        let n = inbox.receive(r);
                        if n == 0 {
                            break;
                        }
                        idle = false;
                        count += n as u64;
                    }
                }
                let at = origin.elapsed();
                if at >= measure_from && cpu_from.is_none() {
                    cpu_from = Some(callpark_server::clock::thread_cpu());
                }
                if at >= measure_to && cpu_to.is_none() {
                    cpu_to = Some(callpark_server::clock::thread_cpu());
                }
                if stopping {
                    break;
                }
                if idle {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            received.store(count, Ordering::Relaxed);
            if let (Some(from), Some(to)) = (cpu_from, cpu_to) {
                receiver_cpu.store((to - from).as_nanos() as u64, Ordering::Relaxed);
            }
        })
    };
    // The engine's side, as in `callpark serve`: a sharded desk says what
    // plays where. Calls arrive over the first second, as they would.
    let rss_before = rss_kib();
    let mut desk = MusicDesk::sharded(SHARDS);
    let now = origin.elapsed();
    for i in 0..n {
        let offset = Duration::from_micros((i as u64 * 1_000_000) / n as u64);
        let spec = StreamSpec {
            codec: Codec::Pcmu,
            payload_type: 0,
            ssrc: i as u32,
            first_seq: 0,
            first_ts: 0,
            music: music.clone(),
            intro: Vec::new(),
            tag: 0,
        };
        desk.play(now + offset, spec, Some(addrs[i % RECEIVERS]));
    }
    let mut commands: Vec<Vec<MusicCommand>> = vec![Vec::new(); SHARDS];
    while let Some((shard, command)) = desk.poll_command() {
        commands[shard].push(command);
    }
    let start = Arc::new(Barrier::new(SHARDS));
    let shards: Vec<_> = commands
        .into_iter()
        .map(|commands| {
            let start = start.clone();
            std::thread::spawn(move || {
                shard(
                    commands,
                    origin,
                    measure_from,
                    measure_to,
                    start,
                    options.segmentation,
                )
            })
        })
        .collect();
    // The memory of the streams while they all play (desk and shards).
    std::thread::sleep((origin + measure_from).saturating_duration_since(Instant::now()));
    let rss_streaming = rss_kib();
    let results: Vec<ShardResult> = shards.into_iter().map(|h| h.join().unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    receiver.join().unwrap();

    let cpu: Duration = results.iter().map(|r| r.cpu).sum();
    let sent: u64 = results.iter().map(|r| r.sent).sum();
    let results_sent_in_all: u64 = results.iter().map(|r| r.sent_in_all).sum();
    let skipped: u64 = results.iter().map(|r| r.skipped).sum();
    let coalesced: u64 = results.iter().map(|r| r.coalesced).sum();
    let mut late: Vec<u32> = results.into_iter().flat_map(|r| r.lateness_us).collect();
    late.sort_unstable();
    let pct = |q: f64| {
        late.get(((late.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    let expected = (n as u64) * 50 * MEASURE.as_secs();
    let got = received.load(Ordering::Relaxed);
    let sent_in_all: u64 = results_sent_in_all;
    println!(
        "{n:>6} streams | shards' CPU {:>6.1} µs per stream-second (receivers {:>5.1}) | lateness p50 {:>5} µs p99 {:>6} µs max {:>6} µs | sent {sent} of {expected} expected, gaps (skipped by the pacer) {skipped} | loss at receivers {} | coalesced {:.0} % | RSS {} B per stream",
        cpu.as_secs_f64() * 1e6 / (n as f64 * MEASURE.as_secs_f64()),
        receiver_cpu.load(Ordering::Relaxed) as f64 / 1e3 / (n as f64 * MEASURE.as_secs_f64()),
        pct(0.5),
        pct(0.99),
        late.last().copied().unwrap_or(0),
        sent_in_all.saturating_sub(got),
        100.0 * coalesced as f64 / sent_in_all.max(1) as f64,
        rss_streaming.saturating_sub(rss_before) * 1024 / n as u64,
    );
}

/// This process's resident memory, KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[derive(Clone, Copy)]
struct Options {
    /// Coalesce runs to one receiver with UDP segmentation offload.
    segmentation: bool,
    /// Receivers take segmented runs whole (UDP_GRO).
    gro: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = Options {
        // `--no-segmentation`: one datagram per message, as when every
        // parked call has its own destination and nothing can be coalesced.
        segmentation: !args.iter().any(|a| a == "--no-segmentation"),
        gro: args.iter().any(|a| a == "--gro"),
    };
    let counts: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let counts = if counts.is_empty() {
        vec![1_000, 5_000, 10_000, 20_000]
    } else {
        counts
    };
    let wav = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../music/hold.wav")).unwrap();
    let music = Music::from_wav("hold.wav", &wav).unwrap();
    println!(
        "== hold music over loopback: {SHARDS} shards, {RECEIVERS} receiver sockets, {}s measured after warm-up, UDP segmentation {}, receivers {} ==",
        MEASURE.as_secs(),
        if options.segmentation { "on" } else { "off" },
        if options.gro {
            "take runs whole (GRO)"
        } else {
            "take datagrams"
        },
    );
    for n in counts {
        run(n, &music, options);
    }
}
