//! Park + retrieve cycles per second, twice:
//! 1. in process (no sockets) through the whole SIP stack and the WASM
//!    policy plugins: parse, transactions, dialing and allocator plugins,
//!    SDP, park lot, dialogs, BYEs;
//! 2. over UDP against the real `callpark serve` binary (info logging to a
//!    file, pacer threads, plugins), driven by a client that keeps one cycle
//!    going on each of 50 orbits, with the server's CPU read from /proc.
//!
//! Run: `cargo bench -p callpark-server --bench cycles`.

use std::net::SocketAddr;
use std::time::Instant;

use callpark_engine::{Engine, EngineConfig, MusicLibrary};
use callpark_media::Music;
use callpark_server::config::Config;
use callpark_server::plugins::PluginSupervisor;
use callpark_sip::transaction::{Peer, Transport};

#[path = "../../../tests/support/mod.rs"]
mod support;

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
    in_process();
    over_udp();
}

fn in_process() {
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
            entropy: 9,
            ..callpark_testkit::config()
        },
        config.lot(),
        music,
        supervisor.runtime().clone(),
    );
    let origin = Instant::now();
    let peer = |port: u16| Peer {
        transport: Transport::Udp(0),
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

/// The first value of header `name` in a SIP message.
fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// One orbit's cycle: park on it, retrieve it, hang up.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Step {
    Parking,
    Retrieving,
    /// Waiting for the 200 to our BYE and the server's BYE to the caller.
    HangingUp {
        ok: bool,
        bye: bool,
    },
}

struct Worker {
    orbit: u32,
    cycle: u64,
    step: Step,
    since: Instant,
}

fn over_udp() {
    use std::net::UdpSocket;
    use std::time::Duration;

    const ORBITS: u32 = 50;
    const WARMUP: Duration = Duration::from_secs(1);
    const MEASURE: Duration = Duration::from_secs(5);

    // The interop tests' server (orbits 701-705 and 799) with the rest of
    // the default lot, and no recalls to interfere.
    let server = support::Server::start_with(
        "[[range]]\nname = \"more\"\nstart = \"706\"\nend = \"750\"\n[defaults]\nrecall_after = \"0s\"\n",
    );
    let (sip, pid) = (server.sip, server.pid());
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let server_addr = server.addr();
    let send = |bytes: Vec<u8>| {
        let _ = socket.send_to(&bytes, server_addr);
    };
    // Our messages carry our real port; the server's dialed host is its own.
    let fix = |bytes: Vec<u8>| -> Vec<u8> {
        String::from_utf8(bytes)
            .unwrap()
            .replace("127.0.0.1:5060", &format!("127.0.0.1:{sip}"))
            .into_bytes()
    };
    let start_park = |w: &Worker| {
        send(fix(invite(
            &format!("p{}-{}", w.orbit, w.cycle),
            &format!("*68{}", w.orbit),
            port,
        )))
    };
    let mut workers: Vec<Worker> = (0..ORBITS)
        .map(|k| Worker {
            orbit: 701 + k,
            cycle: 0,
            step: Step::Parking,
            since: Instant::now(),
        })
        .collect();
    for w in &workers {
        start_park(w);
    }
    let t0 = Instant::now();
    let (mut done, mut failed) = (0u64, 0u64);
    let mut measured_from: Option<(Instant, u64, Duration)> = None;
    let mut buf = vec![0u8; 65_535];
    socket
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    while t0.elapsed() < WARMUP + MEASURE {
        if measured_from.is_none() && t0.elapsed() >= WARMUP {
            measured_from = Some((Instant::now(), done, support::cpu_time(pid)));
        }
        // A cycle stuck for two seconds is counted failed and started over.
        for w in workers.iter_mut() {
            if w.since.elapsed() > Duration::from_secs(2) {
                failed += 1;
                w.cycle += 1;
                w.step = Step::Parking;
                w.since = Instant::now();
                start_park(w);
            }
        }
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let (Some(call_id), Some(cseq)) = (header(&text, "Call-ID"), header(&text, "CSeq")) else {
            continue;
        };
        let Some((kind, rest)) = call_id.split_once('-').and_then(|(k, r)| {
            let (orbit, cycle) = (k.get(1..)?.parse::<u32>().ok()?, r.parse::<u64>().ok()?);
            Some((k.chars().next()?, (orbit, cycle)))
        }) else {
            continue;
        };
        let (orbit, cycle) = rest;
        let Some(w) = workers.iter_mut().find(|w| w.orbit == orbit) else {
            continue;
        };
        if text.starts_with("BYE ") {
            // The server hangs up the parked caller after the retrieve.
            let via = header(&text, "Via").unwrap_or_default();
            let from = header(&text, "From").unwrap_or_default();
            let to = header(&text, "To").unwrap_or_default();
            let ok = format!(
                "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
            );
            send(ok.into_bytes());
            if let Step::HangingUp { ok, bye: false } = w.step
                && kind == 'p'
                && cycle == w.cycle
            {
                w.step = Step::HangingUp { ok, bye: true };
            }
        } else if text.starts_with("SIP/2.0 200") && cycle == w.cycle {
            let to_tag = header(&text, "To")
                .and_then(|t| t.split(";tag=").nth(1))
                .unwrap_or_default()
                .to_string();
            match (w.step, kind, cseq.ends_with("INVITE")) {
                (Step::Parking, 'p', true) => {
                    send(fix(in_dialog("ACK", call_id, &to_tag, port, 1)));
                    w.step = Step::Retrieving;
                    send(fix(invite(
                        &format!("r{}-{}", w.orbit, w.cycle),
                        &format!("*88{}", w.orbit),
                        port,
                    )));
                }
                (Step::Retrieving, 'r', true) => {
                    send(fix(in_dialog("ACK", call_id, &to_tag, port, 1)));
                    send(fix(in_dialog("BYE", call_id, &to_tag, port, 2)));
                    w.step = Step::HangingUp {
                        ok: false,
                        bye: false,
                    };
                }
                (Step::HangingUp { bye, .. }, 'r', false) => {
                    w.step = Step::HangingUp { ok: true, bye };
                }
                _ => {}
            }
        }
        if w.step
            == (Step::HangingUp {
                ok: true,
                bye: true,
            })
        {
            done += 1;
            w.cycle += 1;
            w.step = Step::Parking;
            w.since = Instant::now();
            start_park(w);
        }
    }
    let (from, done_before, cpu_before) = measured_from.expect("measured");
    let wall = from.elapsed();
    let cpu = support::cpu_time(pid) - cpu_before;
    let cycles = done - done_before;
    drop(server);
    println!(
        "== park + retrieve cycles over UDP against `callpark serve` ({ORBITS} orbits busy at once, info logging to a file) =="
    );
    println!(
        "{cycles} cycles in {:.2} s: {:.0} cycles per second, server CPU {:.1} µs per cycle ({:.0} % of one core), {failed} failed",
        wall.as_secs_f64(),
        cycles as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / cycles.max(1) as f64,
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
    );
}
