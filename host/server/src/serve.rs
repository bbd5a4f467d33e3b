//! `callpark serve`: sockets, the clock and signals around one engine.
//!
//! One loop owns the engine: it reads SIP datagrams and RTP from its UDP
//! sockets itself (no hand-off between threads per datagram), TCP frames
//! arrive over a channel from small per-connection tasks, and the loop
//! sleeps until the engine's next SIP deadline. Hold music is paced on
//! pacer threads (`pacers`), one per core unless configured, fed with the
//! engine's music commands after every turn of the loop. The clock (one
//! origin, `started`) is read here and by the pacers.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use callpark_engine::{Engine, EngineEvent, MusicLibrary};
use callpark_media::Music;
use callpark_sip::codec::StreamFramer;
use callpark_sip::transaction::{Peer, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

use crate::admin::AdminRequest;
use crate::config::{Config, EngineSite, parse_port_range};
use crate::plugins::PluginSupervisor;

/// The default hold music, made by the project (`music/make_hold_music.py`).
const DEFAULT_MUSIC: &[u8] = include_bytes!("../../../music/hold.wav");

/// The spoken prompts of `callpark_media::music::PROMPT_NAMES`, embedded
/// (`music/make_prompts.sh`); `include_bytes!` needs each name written out,
/// and a test keeps this list the media crate's.
macro_rules! embedded_prompts {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_bytes!(concat!("../../../music/prompts/", $name, ".wav")) as &[u8])),*]
    };
}
const PROMPTS: [(&str, &[u8]); 13] = embedded_prompts!(
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    "star",
    "hash",
    "parked-on"
);

/// SIP datagrams read in one turn of the loop at most.
const SIP_DATAGRAMS_PER_TURN: usize = 256;

/// RTP packets relayed in one turn of the loop at most: a turn (timers,
/// flush, every socket polled again) costs more than relaying a packet, so
/// what is queued is relayed in one go, bounded so that SIP and timers get
/// their turn.
const RTP_PACKETS_PER_TURN: usize = 256;

/// How often the kernel's drop counters of our SIP sockets are read, and
/// how long after the kernel dropped a datagram of ours new calls get a
/// cheap 503 (`Engine::set_overloaded`): while requests are being lost,
/// answering fast what we do read is worth more than parking it.
const DROPS_CHECKED_EVERY: Duration = Duration::from_millis(100);
const OVERLOAD_LASTS: Duration = Duration::from_millis(300);

/// Datagrams the kernel dropped on the UDP sockets bound to `ports`
/// (`/proc/net/udp` and `udp6`, the `drops` column); `None` where the
/// files cannot be read (then no overload is ever declared).
fn kernel_drops(ports: &[u16]) -> Option<u64> {
    let mut total = 0u64;
    let mut read_any = false;
    for file in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        read_any = true;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = fields
                .get(1)
                .and_then(|local| local.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if port.is_some_and(|p| ports.contains(&p)) {
                total += fields.last().and_then(|d| d.parse().ok()).unwrap_or(0);
            }
        }
    }
    read_any.then_some(total)
}

/// The receive buffer asked for each SIP UDP socket.
const SIP_RECV_BUFFER: usize = 4 << 20;

/// What the TCP connection tasks tell the loop.
enum TcpEvent {
    Opened {
        conn: u64,
        writer: mpsc::UnboundedSender<Vec<u8>>,
    },
    Frame {
        conn: u64,
        from: SocketAddr,
        /// Came over TLS.
        tls: bool,
        bytes: Vec<u8>,
    },
    Closed {
        conn: u64,
    },
}

/// This host's address towards the world, for SDP when listening on
/// 0.0.0.0: the source address a UDP socket would use (no packet is sent).
fn local_ip() -> IpAddr {
    StdUdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

pub(crate) fn load_music(path: &Path) -> anyhow::Result<Music> {
    let bytes = std::fs::read(path).with_context(|| format!("reading music {}", path.display()))?;
    Ok(Music::from_wav(&path.display().to_string(), &bytes)?)
}

/// The hold music and prompts a configuration names, decoded from files
/// relative to `config_dir`: the default (embedded unless `media.music`
/// names a file) and every orbit's own.
pub fn music_library(config: &Config, config_dir: Option<&Path>) -> anyhow::Result<MusicLibrary> {
    music_library_with(config, |key| load_music(&Config::resolve(config_dir, key)))
}

/// `music_library` with music got by `load(key)`, the key being what the
/// configuration names (a path, or a stored music file's name).
pub fn music_library_with(
    config: &Config,
    mut load: impl FnMut(&str) -> anyhow::Result<Music>,
) -> anyhow::Result<MusicLibrary> {
    // The embedded audio is decoded once per process: every configuration
    // write builds a library, and shares these handles.
    static EMBEDDED: std::sync::OnceLock<(Music, HashMap<String, Music>)> =
        std::sync::OnceLock::new();
    let (embedded_default, prompts) = EMBEDDED.get_or_init(|| {
        let decode = |name: &str, wav: &[u8]| {
            Music::from_wav(name, wav).expect("the embedded audio decodes (a unit test checks)")
        };
        (
            decode("embedded:hold.wav", DEFAULT_MUSIC),
            PROMPTS
                .iter()
                .map(|(name, wav)| (name.to_string(), decode(name, wav)))
                .collect(),
        )
    });
    let mut music = MusicLibrary {
        default: if config.media.music.is_empty() {
            embedded_default.clone()
        } else {
            load(&config.media.music).context("media.music")?
        },
        by_key: HashMap::new(),
        music_on_hold: config.media.music_on_hold,
        prompts: prompts.clone(),
    };
    for (i, orbit) in config.orbit.iter().enumerate() {
        if let Some(key) = orbit.music.as_deref().filter(|m| !m.is_empty())
            && !music.by_key.contains_key(key)
        {
            let m = load(key).with_context(|| format!("orbit[{}].music", i + 1))?;
            music.by_key.insert(key.to_string(), m);
        }
    }
    Ok(music)
}

/// Everything `serve` checks before it opens a socket, for `callpark
/// check`: the configuration (already validated by `Config::load`), its
/// music files, and its plugins, loaded and given their params exactly as
/// `serve` loads them.
pub fn preflight(config: &Config, config_path: &Path) -> anyhow::Result<()> {
    let config_dir = config_path.parent();
    music_library(config, config_dir)?;
    // Everything the engine is given, built as `serve` builds it (the
    // addresses and the randomness of a start do not matter here).
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    config
        .engine_config(EngineSite {
            sip_addr: any,
            media_addr: any,
            epoch_ms_at_zero: 0,
            entropy: 0,
            secret: [0; 32],
            tls_port: None,
        })
        .map_err(anyhow::Error::msg)?;
    for t in &config.server.tls {
        tls_acceptor(t, config_dir)?;
    }
    // A check writes nothing: without a cache folder of its own, the
    // plugins compile in memory.
    let mut checked = config.clone();
    if checked.plugins.cache_dir.is_empty() {
        checked.plugins.cache_dir = "off".into();
    }
    PluginSupervisor::start(&checked, config_dir)?;
    Ok(())
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn serve(file: crate::provision::FileSource) -> anyhow::Result<()> {
    let config_dir = file.dir().map(Path::to_path_buf);
    // The store, and the configuration the file and it make together.
    let mut provisioning = crate::provision::Provisioning::open(file)?;
    let config = provisioning.config.clone();
    // Plugins uploaded through the API, for the slots no file is named for.
    let stored_plugins = provisioning
        .store
        .plugins()?
        .into_iter()
        .filter_map(|(slot, wasm)| {
            let decision = callpark_core::Decision::SLOTS
                .into_iter()
                .find(|d| d.name() == slot)?;
            Some((decision, std::sync::Arc::<[u8]>::from(wasm)))
        })
        .collect();
    let supervisor = PluginSupervisor::start_with(&config, config_dir.as_deref(), stored_plugins)?;

    let listen: Vec<SocketAddr> = config
        .server
        .listen
        .iter()
        .map(|a| a.parse())
        .collect::<Result<_, _>>()
        .context("server.listen")?;
    let first = listen[0];
    let media_ip: IpAddr = match config.media.address.as_str() {
        "" if first.ip().is_unspecified() => local_ip(),
        "" => first.ip(),
        ip => ip.parse().context("media.address")?,
    };
    let sip_ip = if first.ip().is_unspecified() {
        media_ip
    } else {
        first.ip()
    };
    let (rtp_lo, _rtp_hi) =
        parse_port_range(&config.media.rtp_ports).map_err(anyhow::Error::msg)?;
    let media_addr = SocketAddr::new(media_ip, rtp_lo);

    let music = provisioning.music_library(&config)?;
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut secret))
        .context("reading /dev/urandom for the nonce and lamp secret")?;

    let mut tls_listeners = Vec::new();
    for t in &config.server.tls {
        let addr: SocketAddr = t.listen.parse().context("server.tls listen")?;
        tls_listeners.push((addr, tls_acceptor(t, config_dir.as_deref())?));
    }
    let drain_time = callpark_core::parse_duration(&config.server.drain_time)?;
    let started = Instant::now();
    let epoch_ms_at_zero = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let entropy = epoch_ms_at_zero ^ u64::from(std::process::id()).rotate_left(32);
    let mut engine = Engine::new(
        config
            .engine_config(EngineSite {
                sip_addr: SocketAddr::new(sip_ip, first.port()),
                media_addr,
                epoch_ms_at_zero,
                entropy,
                secret,
                tls_port: tls_listeners.first().map(|(a, _)| a.port()),
            })
            .map_err(anyhow::Error::msg)?,
        config.lot(),
        music,
        supervisor.runtime().clone(),
    );

    // Sockets.
    let (tcp_tx, mut tcp_events) = mpsc::unbounded_channel::<TcpEvent>();
    let mut udp_sockets = Vec::new();
    for (i, addr) in listen.iter().enumerate() {
        let udp = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("binding UDP {addr}"))?;
        // The kernel's default (about 208 KiB) drops a burst of a few
        // hundred messages (SIGTERM's answers, a wave of parks); ask for
        // more. The kernel caps it at net.core.rmem_max; a refusal is
        // logged, not fatal.
        if let Err(e) = socket2::SockRef::from(&udp).set_recv_buffer_size(SIP_RECV_BUFFER) {
            tracing::warn!(%addr, "could not enlarge the SIP receive buffer: {e}");
        }
        let tcp = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding TCP {addr}"))?;
        tracing::info!(%addr, "listening for SIP on UDP and TCP");
        udp_sockets.push(udp);
        let tx = tcp_tx.clone();
        tokio::spawn(accept_tcp(tcp, tx, i as u64, None));
    }
    for (i, (addr, acceptor)) in tls_listeners.into_iter().enumerate() {
        let tcp = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding TLS {addr}"))?;
        tracing::info!(%addr, "listening for SIP over TLS");
        tokio::spawn(accept_tcp(
            tcp,
            tcp_tx.clone(),
            (listen.len() + i) as u64,
            Some(acceptor),
        ));
    }
    let media = StdUdpSocket::bind(media_addr)
        .with_context(|| format!("binding the media socket {media_addr}"))?;
    media.set_nonblocking(true)?;
    let pacer_threads = match config.media.pacer_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    };
    let pacers = crate::pacers::Pacers::start(pacer_threads, &media, started)
        .context("starting the pacer threads")?;
    engine.pace_music_in_shards(pacers.len());
    let media = UdpSocket::from_std(media)?;
    // RTCP on the RTP port + 1 (RFC 3550 §11): phones send their reports
    // there, and our sender reports for hold music leave from it.
    let rtcp_addr = SocketAddr::new(media_addr.ip(), media_addr.port().wrapping_add(1));
    let rtcp = UdpSocket::bind(rtcp_addr)
        .await
        .with_context(|| format!("binding the RTCP socket {rtcp_addr}"))?;
    tracing::info!(
        %media_addr,
        orbits = engine.lot().orbits().len(),
        pacer_threads = pacers.len(),
        "media socket ready; serving"
    );

    // Plugin hot reload (file watching and SIGHUP).
    let (stop_watch, watch_stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, _ready) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(supervisor.clone().watch(false, ready_tx, async {
        let _ = watch_stopped.await;
    }));

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // SIGHUP re-reads the configuration file, then reloads the plugins
    // with its plugin settings (the supervisor leaves SIGHUP to us).
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut conns = Connections {
        writers: HashMap::new(),
        outgoing: HashMap::new(),
        next_outgoing: OUTGOING_CONNECTIONS << 48,
        tls_client: tls_client(&config, config_dir.as_deref())?,
        inbound: tcp_tx.clone(),
    };
    let mut media_buf = vec![0u8; 2048];
    let mut rtcp_buf = vec![0u8; 2048];
    let mut sip_buf = vec![0u8; 65_535];
    let clock = |started: Instant| started.elapsed();
    let mut shutting_down: Option<Instant> = None;
    // The kernel's drops on our SIP sockets, when last read, and until
    // when new calls are turned away because of them.
    let sip_ports: Vec<u16> = listen.iter().map(SocketAddr::port).collect();
    let mut drops_seen = kernel_drops(&sip_ports);
    let mut drops_checked = Instant::now();
    let mut overloaded_until: Option<Instant> = None;
    // One timer for the loop, moved only when the engine wants to be woken
    // earlier than it is set for: arming a new one on every turn (every
    // relayed RTP packet) costs the timer wheel a registration each time.
    let wake = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(wake);
    let (admin_tx, mut admin_requests) = mpsc::channel::<AdminRequest>(64);
    let data_dir = provisioning.data_dir.clone();
    let live = crate::admin::Live::new(provisioning, admin_tx, supervisor.clone());
    start_admin(&config, &data_dir, live.clone()).await?;
    let (mut event_feed, mut event_actions) =
        crate::events::EventFeed::start(supervisor.runtime().clone())?;

    loop {
        let now = clock(started);
        engine.handle_timeout(now);
        while let Some((shard, command)) = engine.poll_music_command() {
            pacers.send(shard, command);
        }
        flush(&mut engine, &udp_sockets, &mut conns);
        while let Some((dest, packet)) = engine.poll_rtcp() {
            let _ = rtcp.try_send_to(&packet, dest);
        }
        log_events(&mut engine, &mut event_feed);
        // The drain: every BYE of the shutdown is retransmitted until the
        // phone answers it or the drain time runs out; parks meanwhile get
        // 503.
        if let Some(since) = shutting_down
            && (engine.drained() || since.elapsed() > drain_time)
        {
            if engine.drained() {
                tracing::info!(
                    took_ms = since.elapsed().as_millis() as u64,
                    "every call hung up; stopping"
                );
            } else {
                tracing::warn!(
                    unanswered = engine.byes_pending(),
                    drain_time_s = drain_time.as_secs(),
                    "drain time over with BYEs unanswered; stopping"
                );
            }
            break;
        }
        // At least once a second (the drain, the kernel's drop counters).
        let latest = tokio::time::Instant::now() + Duration::from_secs(1);
        let wanted = engine
            .poll_timeout()
            .map(|t| tokio::time::Instant::from_std(started + t))
            .map_or(latest, |at| at.min(latest));
        if wanted < wake.deadline() || wake.is_elapsed() {
            wake.as_mut().reset(wanted);
        }
        tokio::select! {
            biased;
            _ = sigterm.recv() => {
                tracing::info!(parked = engine.parked_calls(), "SIGTERM: no new parks; hanging up every call");
                engine.shutdown(clock(started));
                shutting_down = Some(Instant::now());
            }
            _ = sighup.recv() => {
                // Re-read off this loop; what it makes comes back as an
                // `AdminRequest::Apply`, as an API write does.
                tokio::spawn(crate::admin::reload(live.clone(), "SIGHUP"));
            }
            _ = sigint.recv() => {
                tracing::info!("SIGINT: hanging up every call");
                engine.shutdown(clock(started));
                shutting_down = Some(Instant::now());
            }
            (socket, n, from) = sip_datagram(&udp_sockets, &mut sip_buf) => {
                // This datagram, then whatever else is already queued (up to
                // a bound), in one turn of the loop.
                let mut next = Some((socket, n, from));
                let mut taken = 0;
                if drops_checked.elapsed() >= DROPS_CHECKED_EVERY {
                    drops_checked = Instant::now();
                    let drops = kernel_drops(&sip_ports);
                    if let (Some(now), Some(before)) = (drops, drops_seen)
                        && now > before
                    {
                        if overloaded_until.is_none_or(|u| u < Instant::now()) {
                            tracing::warn!(dropped = now - before, "the kernel is dropping SIP datagrams: new calls get 503 with Retry-After");
                        }
                        overloaded_until = Some(Instant::now() + OVERLOAD_LASTS);
                    }
                    drops_seen = drops;
                }
                engine.set_overloaded(overloaded_until.is_some_and(|u| Instant::now() < u));
                while let Some((socket, n, from)) = next.take() {
                    // The peer names the listen socket, so that answers and
                    // in-dialog requests leave from it: the transaction or
                    // the dialog that needs it keeps it, and nothing is
                    // kept per source address beyond them.
                    let peer = Peer { transport: Transport::Udp(socket as u16), addr: from };
                    engine.handle_sip(clock(started), &sip_buf[..n], peer);
                    taken += 1;
                    // Read what is queued, a bounded number per turn so
                    // that timers and the other sockets get their turn.
                    if taken < SIP_DATAGRAMS_PER_TURN {
                        next = udp_sockets.iter().enumerate().find_map(|(i, s)| {
                            s.try_recv_from(&mut sip_buf).ok().map(|(n, from)| (i, n, from))
                        });
                    }
                }
            }
            received = media.recv_from(&mut media_buf) => {
                let mut next = received.ok();
                let mut relayed = 0;
                while let Some((n, src)) = next.take() {
                    engine.handle_rtp(clock(started), &mut media_buf[..n], src, |dest, packet| {
                        let _ = media.try_send_to(packet, dest);
                    });
                    relayed += 1;
                    if relayed < RTP_PACKETS_PER_TURN {
                        next = media.try_recv_from(&mut media_buf).ok();
                    }
                }
            }
            received = rtcp.recv_from(&mut rtcp_buf) => {
                if let Ok((n, src)) = received {
                    engine.handle_rtcp(clock(started), &rtcp_buf[..n], src, |dest, packet| {
                        let _ = rtcp.try_send_to(packet, dest);
                    });
                }
            }
            Some(request) = admin_requests.recv() => match request {
                AdminRequest::Orbits(reply) => {
                    let _ = reply.send(crate::admin::orbit_views(engine.lot()));
                }
                AdminRequest::Apply(applying, reply) => {
                    let outcome = apply(&mut engine, *applying, secret, clock(started));
                    let _ = reply.send(outcome);
                }
                AdminRequest::Command(command, reply) => {
                    // The engine answers a command at once: its reply is
                    // the next one out.
                    engine.handle_command(clock(started), 0, command);
                    if let Some((_, answer)) = engine.poll_reply() {
                        let _ = reply.send(answer);
                    }
                }
            },
            Some(action) = event_actions.recv() => match action {
                callpark_core::EventAction::SendMessage { to, text } => {
                    match engine.send_message(clock(started), &to, &text) {
                        Ok(()) => tracing::info!(%to, "events plugin: MESSAGE sent"),
                        Err(why) => tracing::warn!(%to, "events plugin: MESSAGE not sent: {why}"),
                    }
                }
            },
            Some(msg) = tcp_events.recv() => {
                let now = clock(started);
                match msg {
                    TcpEvent::Opened { conn, writer } => {
                        conns.writers.insert(conn, writer);
                    }
                    TcpEvent::Frame { conn, from, tls, bytes } => {
                        let transport = if tls { Transport::Tls(conn) } else { Transport::Tcp(conn) };
                        engine.handle_sip(now, &bytes, Peer { transport, addr: from });
                    }
                    TcpEvent::Closed { conn } => {
                        conns.writers.remove(&conn);
                        conns.outgoing.retain(|_, c| *c != conn);
                    }
                }
            }
            _ = &mut wake => {}
        }
    }
    flush(&mut engine, &udp_sockets, &mut conns);
    pacers.stop();
    let _ = stop_watch.send(());
    let _ = watcher.await;
    tracing::info!("stopped");
    Ok(())
}

/// Applies a configuration the admin side composed (an API write, SIGHUP,
/// `config:reload`) to the engine: parked calls, bridges and busy-lamp
/// watchers are kept, and new music reaches the callers it is for.
/// Refused (nothing changes) only when the security settings do not
/// build, which validation already checks.
fn apply(
    engine: &mut Engine,
    applying: crate::admin::Applying,
    secret: [u8; 32],
    now: Duration,
) -> Result<(), String> {
    let crate::admin::Applying { config, lot, music } = applying;
    let security = config.security_settings(secret)?;
    engine.reconfigure(
        now,
        callpark_engine::Reconfiguration {
            lot,
            access: config.park_access(),
            recall_params: config.plugin_params_for(callpark_core::Decision::Recall),
            security,
            music: Some(music),
        },
    );
    Ok(())
}

/// The admin API, when `[admin] listen` is set: its listener, and its
/// tokens (with none configured, the first-start admin token in the data
/// folder: the configuration file's, else the working directory).
async fn start_admin(config: &Config, dir: &Path, live: crate::admin::Live) -> anyhow::Result<()> {
    if config.admin.listen.is_empty() {
        tracing::info!("no admin API (admin.listen is empty)");
        return Ok(());
    }
    let addr: SocketAddr = config.admin.listen.parse().context("admin.listen")?;
    let mut tokens = crate::admin::Tokens::from_config(&config.admin.token);
    if tokens.is_empty() {
        let (file, token) = crate::admin::first_start_token(dir)?;
        tracing::warn!(file = %file.display(), "no [[admin.token]] configured: the admin token is in this file, readable by its owner only");
        tokens = crate::admin::Tokens::from_config(&[token]);
    }
    let listener = crate::admin::bind(addr).await?;
    tracing::info!(%addr, "admin API listening");
    crate::admin::spawn(
        listener,
        crate::admin::router(std::sync::Arc::new(tokens), live, dir.to_path_buf()),
    );
    Ok(())
}

/// The next SIP datagram on any of the UDP listen sockets: (socket index,
/// length, sender). Errors on receive (ICMP reports on some systems) are
/// logged and skipped.
async fn sip_datagram(sockets: &[UdpSocket], buf: &mut [u8]) -> (usize, usize, SocketAddr) {
    std::future::poll_fn(|cx| {
        for (i, socket) in sockets.iter().enumerate() {
            let mut read = tokio::io::ReadBuf::new(buf);
            match socket.poll_recv_from(cx, &mut read) {
                std::task::Poll::Ready(Ok(from)) => {
                    return std::task::Poll::Ready((i, read.filled().len(), from));
                }
                std::task::Poll::Ready(Err(e)) => {
                    tracing::debug!("UDP receive: {e}");
                    cx.waker().wake_by_ref();
                }
                std::task::Poll::Pending => {}
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// A TLS server from a listener's PEM files (rustls with the ring
/// provider, TLS 1.2 and 1.3).
pub fn tls_acceptor(
    t: &crate::config::TlsConfig,
    config_dir: Option<&Path>,
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert_path = Config::resolve(config_dir, &t.certificate);
    let key_path = Config::resolve(config_dir, &t.key);
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("server.tls certificate: reading {}", cert_path.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "server.tls certificate: no certificate in {}",
            cert_path.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("server.tls key: reading {}", key_path.display()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "server.tls: {} does not fit {}",
                key_path.display(),
                cert_path.display()
            )
        })?;
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server)))
}

/// Connection ids from `OUTGOING_CONNECTIONS << 48` up are connections
/// the server opened (TLS towards a `sips:` target); listeners number
/// theirs from their index.
const OUTGOING_CONNECTIONS: u64 = 0xFFFF;

/// The stream connections the loop writes to.
struct Connections {
    writers: HashMap<u64, mpsc::UnboundedSender<Vec<u8>>>,
    /// Connections we opened, by the address they go to, reused by every
    /// request towards it while open.
    outgoing: HashMap<SocketAddr, u64>,
    next_outgoing: u64,
    /// How we verify the servers we connect to (`[server] tls_ca`).
    tls_client: Option<std::sync::Arc<rustls::ClientConfig>>,
    inbound: mpsc::UnboundedSender<TcpEvent>,
}

impl Connections {
    /// The writer of the TLS connection to `addr`, opening one (whose
    /// writes queue until its handshake is done) when there is none.
    fn outgoing_tls(&mut self, addr: SocketAddr) -> Option<mpsc::UnboundedSender<Vec<u8>>> {
        if let Some(w) = self.outgoing.get(&addr).and_then(|c| self.writers.get(c)) {
            return Some(w.clone());
        }
        let Some(client) = self.tls_client.clone() else {
            tracing::warn!(peer = %addr, "a sips: target, but no TLS client (server.tls_ca) is configured");
            return None;
        };
        self.next_outgoing += 1;
        let conn = self.next_outgoing;
        let (wtx, wrx) = mpsc::unbounded_channel::<Vec<u8>>();
        self.writers.insert(conn, wtx.clone());
        self.outgoing.insert(addr, conn);
        let inbound = self.inbound.clone();
        tokio::spawn(async move {
            let connector = tokio_rustls::TlsConnector::from(client);
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let opened = async {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                connector.connect(name, tcp).await
            };
            match tokio::time::timeout(Duration::from_secs(10), opened).await {
                Ok(Ok(stream)) => {
                    tracing::info!(peer = %addr, "TLS connection opened");
                    let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(1));
                    serve_connection(stream, addr, conn, true, inbound, open, Some(wrx)).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(peer = %addr, "TLS connection failed: {e}");
                    let _ = inbound.send(TcpEvent::Closed { conn });
                }
                Err(_) => {
                    tracing::warn!(peer = %addr, "TLS connection not made in 10 s");
                    let _ = inbound.send(TcpEvent::Closed { conn });
                }
            }
        });
        Some(wtx)
    }
}

/// The TLS client for `sips:` targets: the CAs of `[server] tls_ca`, else
/// the system's bundle when there is one.
fn tls_client(
    config: &Config,
    config_dir: Option<&Path>,
) -> anyhow::Result<Option<std::sync::Arc<rustls::ClientConfig>>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let path = if config.server.tls_ca.is_empty() {
        let system = Path::new("/etc/ssl/certs/ca-certificates.crt");
        if !system.exists() {
            return Ok(None);
        }
        system.to_path_buf()
    } else {
        Config::resolve(config_dir, &config.server.tls_ca)
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("server.tls_ca: reading {}", path.display()))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        anyhow::bail!("server.tls_ca: no CA certificate in {}", path.display());
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(std::sync::Arc::new(client)))
}

fn flush(engine: &mut Engine, udp: &[UdpSocket], conns: &mut Connections) {
    while let Some(t) = engine.poll_transmit() {
        match t.peer.transport {
            Transport::Udp(socket) => {
                let socket = udp.get(usize::from(socket)).unwrap_or(&udp[0]);
                if let Err(e) = socket.try_send_to(&t.bytes, t.peer.addr) {
                    tracing::debug!(peer = %t.peer.addr, "UDP send: {e}");
                }
            }
            Transport::Tls(callpark_sip::transaction::NEW_CONNECTION) => {
                if let Some(w) = conns.outgoing_tls(t.peer.addr) {
                    let _ = w.send(t.bytes);
                }
            }
            Transport::Tcp(conn) | Transport::Tls(conn) => match conns.writers.get(&conn) {
                Some(w) => {
                    let _ = w.send(t.bytes);
                }
                None => tracing::debug!(peer = %t.peer.addr, "TCP connection gone"),
            },
        }
    }
}

fn log_events(engine: &mut Engine, feed: &mut crate::events::EventFeed) {
    while let Some(event) = engine.poll_event() {
        feed.publish(&event);
        match event {
            EngineEvent::Parked {
                call,
                orbit,
                parker,
                caller,
                call_id,
            } => {
                tracing::info!(event = "parked", call = call.0, %orbit, %parker, %caller, %call_id)
            }
            EngineEvent::AttendedParkCompleted {
                call,
                orbit,
                parker,
                caller,
                call_id,
            } => {
                tracing::info!(event = "attended-park-completed", call = call.0, %orbit, %parker, %caller, %call_id)
            }
            EngineEvent::Retrieved { call, orbit, by } => {
                tracing::info!(event = "retrieved", call = call.0, %orbit, %by)
            }
            EngineEvent::Abandoned { call, orbit } => {
                tracing::info!(event = "abandoned", call = call.0, %orbit)
            }
            EngineEvent::Ended { call } => tracing::info!(event = "ended", call = call.0),
            EngineEvent::GiveUp { call, orbit, why } => {
                tracing::info!(event = "giveup", call = call.0, %orbit, why = why.as_str())
            }
            EngineEvent::EscapeKey { call, orbit, key } => {
                tracing::info!(event = "escape-key", call = call.0, %orbit, %key)
            }
            EngineEvent::Moved { call, from, to } => {
                tracing::info!(event = "moved", call = call.0, %from, %to)
            }
            EngineEvent::RecallStarted { call, orbit, steps } => {
                tracing::info!(event = "recall-started", call = call.0, %orbit, steps)
            }
            EngineEvent::RecallStep {
                call,
                orbit,
                step,
                target,
            } => {
                tracing::info!(event = "recall-step", call = call.0, %orbit, step, %target)
            }
            EngineEvent::RecallAnswered { call, orbit, by } => {
                tracing::info!(event = "recall-answered", call = call.0, %orbit, %by)
            }
            EngineEvent::RecallExhausted { call, orbit, end } => {
                tracing::info!(event = "recall-exhausted", call = call.0, %orbit, end = ?end)
            }
            EngineEvent::Refused {
                method,
                dialed,
                status,
                reason,
            } => {
                tracing::info!(event = "refused", %method, %dialed, status, %reason)
            }
        }
    }
}

/// Accepts TCP connections; each gets a reader that frames messages by
/// Content-Length and a writer fed by the loop.
/// TCP connections open at once; past it a new one is closed at once.
const MAX_TCP_CONNECTIONS: usize = 4_096;
/// The largest SIP body taken over TCP (SDP and dialog documents are a few
/// KiB).
const MAX_TCP_BODY: usize = 64 * 1024;
/// A message started must be complete within this (slowloris).
const TCP_MESSAGE_DEADLINE: Duration = Duration::from_secs(20);
/// A connection that has not delivered one message in this long is
/// closed. One that has carries dialogs (our BYE may need it later) and is
/// kept while the peer keeps it.
const TCP_FIRST_MESSAGE_WITHIN: Duration = Duration::from_secs(30);

/// Accepts SIP connections on `listener`, over TLS when `tls` is set:
/// at most `MAX_TCP_CONNECTIONS` at once, backing off when accept fails.
async fn accept_tcp(
    listener: TcpListener,
    inbound: mpsc::UnboundedSender<TcpEvent>,
    listener_index: u64,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut next: u64 = listener_index << 48;
    let mut refused_logged: Option<Instant> = None;
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors (EMFILE) and the like: the error
                // repeats at once, so back off instead of spinning.
                if refused_logged.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!("TCP accept failed: {e}; retrying in 100 ms");
                    refused_logged = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if open.load(std::sync::atomic::Ordering::Relaxed) >= MAX_TCP_CONNECTIONS {
            if refused_logged.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(peer = %from, limit = MAX_TCP_CONNECTIONS, "too many TCP connections; closing new ones");
                refused_logged = Some(Instant::now());
            }
            drop(stream);
            continue;
        }
        open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        next += 1;
        let conn = next;
        let inbound = inbound.clone();
        let open = open.clone();
        match &tls {
            None => {
                tokio::spawn(serve_connection(
                    stream, from, conn, false, inbound, open, None,
                ));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // The handshake counts against the first-message time:
                    // a peer that opens and says nothing is closed.
                    match tokio::time::timeout(TCP_FIRST_MESSAGE_WITHIN, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, from, conn, true, inbound, open, None).await
                        }
                        Ok(Err(e)) => {
                            tracing::info!(peer = %from, "TLS handshake failed: {e}");
                            open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(_) => {
                            tracing::info!(peer = %from, "TLS handshake not done in time");
                            open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        }
    }
}

/// One SIP connection (TCP, or TLS after its handshake): frames go to the
/// loop, the loop's bytes come back through the writer it is given. A
/// connection that sends no complete message in time, or one too big, is
/// closed.
async fn serve_connection<S>(
    stream: S,
    from: SocketAddr,
    conn: u64,
    tls: bool,
    inbound: mpsc::UnboundedSender<TcpEvent>,
    open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    registered: Option<mpsc::UnboundedReceiver<Vec<u8>>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    // A connection we opened was registered with the loop before it
    // connected (what is sent to it waited in the channel).
    let mut wrx = match registered {
        Some(rx) => rx,
        None => {
            let (wtx, wrx) = mpsc::unbounded_channel::<Vec<u8>>();
            if inbound
                .send(TcpEvent::Opened { conn, writer: wtx })
                .is_err()
            {
                open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            wrx
        }
    };
    tokio::spawn(async move {
        while let Some(bytes) = wrx.recv().await {
            if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut framer = StreamFramer::with_max_body(MAX_TCP_BODY);
    let mut buf = vec![0u8; 16 * 1024];
    let opened = tokio::time::Instant::now();
    let mut delivered = false;
    let mut partial_since: Option<tokio::time::Instant> = None;
    loop {
        let deadline = match (partial_since, delivered) {
            (Some(since), _) => Some(since + TCP_MESSAGE_DEADLINE),
            (None, false) => Some(opened + TCP_FIRST_MESSAGE_WITHIN),
            (None, true) => None,
        };
        let read = match deadline {
            Some(at) => match tokio::time::timeout_at(at, reader.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::info!(peer = %from, "closing a TCP connection: no complete message in time");
                    break;
                }
            },
            None => reader.read(&mut buf).await,
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_frame() {
                Ok(Some(bytes)) => {
                    delivered = true;
                    let _ = inbound.send(TcpEvent::Frame {
                        conn,
                        from,
                        tls,
                        bytes,
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(peer = %from, "closing a TCP connection: {e}");
                    let _ = inbound.send(TcpEvent::Closed { conn });
                    open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
            }
        }
        partial_since = match (framer.has_partial(), partial_since) {
            (true, None) => Some(tokio::time::Instant::now()),
            (true, since) => since,
            (false, _) => None,
        };
    }
    let _ = inbound.send(TcpEvent::Closed { conn });
    open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_audio_decodes() {
        let library = super::music_library(&crate::config::Config::default(), None).unwrap();
        assert!(library.default.frames() > 0);
        assert_eq!(library.prompts.len(), super::PROMPTS.len());
    }

    #[test]
    fn the_embedded_prompts_are_the_ones_announcements_use() {
        let names: Vec<&str> = super::PROMPTS.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, callpark_media::music::PROMPT_NAMES);
    }
}
