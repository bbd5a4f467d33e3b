//! Park + retrieve cycles per second through the whole SIP stack and the
//! WASM policy plugins, in process (no sockets): parse, transactions,
//! dialing and allocator plugins, SDP, park lot, dialogs, BYEs.
//! Run: `cargo bench -p callpark-server --bench cycles`.

use std::net::SocketAddr;
use std::time::Instant;

use callpark_engine::{Access, Engine, EngineConfig, MusicLibrary};
use callpark_media::Music;
use callpark_server::config::Config;
use callpark_server::plugins::PluginSupervisor;
use callpark_sip::transaction::{Peer, Transport};

fn invite(call: &str, dialed: &str, port: u16) -> Vec<u8> {
    let body = format!(
        "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n",
        port + 1
    );
    format!("INVITE sip:{dialed}@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call};rport\r\nFrom: <sip:u{call}@127.0.0.1:{port}>;tag=f{call}\r\nTo: <sip:{dialed}@127.0.0.1:5060>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:u@127.0.0.1:{port}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

fn in_dialog(method: &str, call: &str, to_tag: &str, port: u16, seq: u32) -> Vec<u8> {
    format!("{method} sip:callpark@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{method}{call}\r\nFrom: <sip:u{call}@127.0.0.1:{port}>;tag=f{call}\r\nTo: <sip:x@127.0.0.1:5060>;tag={to_tag}\r\nCall-ID: {call}\r\nCSeq: {seq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

fn to_tag(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    if !text.starts_with("SIP/2.0 200") || !text.contains(" INVITE\r\n") {
        return None;
    }
    let to = text.lines().find(|l| l.starts_with("To:"))?;
    Some(to.split(";tag=").nth(1)?.trim().to_string())
}

fn main() {
    let config = Config::embedded();
    let supervisor = PluginSupervisor::start(&config, None).expect("plugins");
    let music = MusicLibrary {
        default: Music::silence(),
        by_key: Default::default(),
        music_on_hold: true,
        prompts: Default::default(),
    };
    let mut engine = Engine::new(
        EngineConfig {
            sip_addr: "127.0.0.1:5060".parse().unwrap(),
            media_addr: "127.0.0.1:20000".parse().unwrap(),
            outbound_proxy: None,
            max_parked_calls: 20_000,
            bare_orbit_parks_when_empty: true,
            access: Access::All,
            epoch_ms_at_zero: 0,
            entropy: 9,
            recall_params: vec![],
            rtp_timeout: std::time::Duration::ZERO,
            max_lifetime: std::time::Duration::ZERO,
            reservation_timeout: std::time::Duration::ZERO,
        },
        config.lot(),
        music,
        supervisor.runtime().clone(),
    );
    let origin = Instant::now();
    let peer = |port: u16| Peer {
        transport: Transport::Udp,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let cycles = 20_000u32;
    let cpu0 = callpark_server::clock::thread_cpu();
    let t0 = Instant::now();
    let mut failures = 0;
    for i in 0..cycles {
        let port = 10_000 + (i % 40_000) as u16;
        let now = origin.elapsed();
        // Park (the dialing and allocator plugins decide), ACK.
        let park = format!("p{i}");
        engine.handle_sip(now, &invite(&park, "*68", port), peer(port));
        let mut park_tag = None;
        while let Some(t) = engine.poll_transmit() {
            park_tag = park_tag.or_else(|| to_tag(&t.bytes));
        }
        let Some(park_tag) = park_tag else {
            failures += 1;
            continue;
        };
        engine.handle_sip(
            now,
            &in_dialog("ACK", &park, &park_tag, port, 1),
            peer(port),
        );
        // Retrieve the oldest, ACK, hang up (BYE both ways).
        let get = format!("r{i}");
        let rport = port.wrapping_add(20_000).max(1024);
        engine.handle_sip(now, &invite(&get, "*88", rport), peer(rport));
        let mut get_tag = None;
        while let Some(t) = engine.poll_transmit() {
            get_tag = get_tag.or_else(|| to_tag(&t.bytes));
        }
        let Some(get_tag) = get_tag else {
            failures += 1;
            continue;
        };
        engine.handle_sip(
            now,
            &in_dialog("ACK", &get, &get_tag, rport, 1),
            peer(rport),
        );
        engine.handle_sip(
            now,
            &in_dialog("BYE", &get, &get_tag, rport, 2),
            peer(rport),
        );
        while engine.poll_transmit().is_some() {}
        while engine.poll_event().is_some() {}
        engine.handle_timeout(origin.elapsed());
    }
    let wall = t0.elapsed();
    let cpu = callpark_server::clock::thread_cpu() - cpu0;
    println!(
        "== park + retrieve cycles in process (SIP parse, transactions, WASM plugins, SDP, dialogs, BYE) =="
    );
    println!(
        "{cycles} cycles in {:.2} s: {:.0} cycles per second, {:.1} µs CPU per cycle, {failures} failed; calls left {}",
        wall.as_secs_f64(),
        f64::from(cycles) / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / f64::from(cycles),
        engine.calls(),
    );
}
