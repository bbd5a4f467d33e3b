//! Interop with SIPp (Debian `sip-tester`): the real `callpark` binary on
//! loopback, driven by the scenarios in `tests/sipp/`.
//!
//! These need `/usr/bin/sipp`, so they are ignored by a plain `cargo test`
//! and run by `.ci/run` (which installs SIPp) as
//! `cargo test --test interop_sipp -- --ignored`.

mod support;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Server, free_port, scenario, wait_log};

/// One SIPp run: scenario, service (the dialed user part), extra args.
fn sipp(
    server: &Server,
    name: &str,
    service: &str,
    rtp_port: u16,
    codecs: &str,
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new("/usr/bin/sipp");
    cmd.args([
        "-sf",
        &scenario(name),
        &server.addr().to_string(),
        "-s",
        service,
        "-i",
        "127.0.0.1",
        "-p",
        &free_port().to_string(),
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "20",
        "-timeout_error",
        "-set",
        "rtp_port",
        &rtp_port.to_string(),
        "-set",
        "codecs",
        codecs,
    ])
    .args(extra)
    .current_dir(server.dir.path())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

/// The parker's phone for recall tests (`recall_parker.xml`, two calls: the
/// MESSAGE and the recall INVITE).
fn parker_phone(server: &Server, port: u16, timeout: &str) -> std::process::Child {
    Command::new("/usr/bin/sipp")
        .args([
            "-sf",
            &scenario("recall_parker"),
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args(["-m", "2", "-nostdin", "-timeout", timeout, "-timeout_error"])
        .current_dir(server.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn run(mut cmd: Command) -> (bool, String) {
    let out = cmd.output().expect("run sipp");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn must_pass(server: &Server, what: &str, cmd: Command) {
    let (ok, text) = run(cmd);
    assert!(
        ok,
        "{what} failed:\n{}\n--- server log ---\n{}",
        tail(&text),
        server.log()
    );
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[test]
#[ignore = "needs SIPp (Debian sip-tester); .ci/run runs it"]
fn park_with_referred_by_music_arrives_at_50_packets_per_second() {
    assert!(
        std::path::Path::new("/usr/bin/sipp").exists(),
        "SIPp is not installed: apt-get install -y sip-tester (.ci/run does)"
    );
    let server = Server::start();
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtp_port = rtp.local_addr().unwrap().port();
    rtp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let parker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let parker_port = parker.local_addr().unwrap().port().to_string();
    let mut cmd = sipp(
        &server,
        "park_then_hang_up",
        "701",
        rtp_port,
        "8",
        &["-d", "3000", "-set", "parker_port", &parker_port],
    );
    let child = cmd.spawn().expect("sipp");
    // Count the music for two seconds, after the first packet.
    let mut buf = [0u8; 2048];
    let (first, _) = rtp.recv_from(&mut buf).expect("music starts");
    assert_eq!(buf[1] & 0x7F, 8, "the negotiated payload type (PCMA)");
    let _ = first;
    let start = Instant::now();
    let mut packets = 0;
    let mut wrong_pt = 0;
    while start.elapsed() < Duration::from_secs(2) {
        if let Ok((n, _)) = rtp.recv_from(&mut buf) {
            packets += 1;
            if n != 172 || buf[1] & 0x7F != 8 {
                wrong_pt += 1;
            }
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!((96..=104).contains(&packets), "{packets} packets in 2 s");
    assert_eq!(wrong_pt, 0);
    // The parker was told by SIP MESSAGE.
    parker
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (n, _) = parker.recv_from(&mut buf).expect("a MESSAGE to the parker");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("MESSAGE sip:parker@"), "{text}");
    assert!(text.ends_with("Parked on 701"), "{text}");
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

#[test]
#[ignore = "needs SIPp (Debian sip-tester); .ci/run runs it"]
fn park_without_referred_by_retrieve_fifo_and_bye_propagation() {
    assert!(
        std::path::Path::new("/usr/bin/sipp").exists(),
        "SIPp is not installed: apt-get install -y sip-tester (.ci/run does)"
    );
    let server = Server::start();
    // Two callers park on the FIFO orbit 799 (one directed, one by name),
    // without Referred-By.
    let first = sipp(&server, "park_until_bye", "*68799", free_port(), "0", &[])
        .spawn()
        .unwrap();
    wait_log(&server, "event=\"parked\"", 1);
    let second = sipp(
        &server,
        "park_until_bye",
        "*68sales",
        free_port(),
        "0 8",
        &[],
    )
    .spawn()
    .unwrap();
    wait_log(&server, "event=\"parked\"", 2);
    // The first retrieve gets the oldest; when the retriever hangs up, the
    // server hangs up that caller (BYE propagation): the first SIPp ends.
    must_pass(
        &server,
        "first retrieve",
        sipp(
            &server,
            "retrieve",
            "*88799",
            free_port(),
            "8",
            &["-d", "1000"],
        ),
    );
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "first caller: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A bare orbit number with a call on it retrieves it.
    must_pass(
        &server,
        "second retrieve",
        sipp(&server, "retrieve", "799", free_port(), "0", &["-d", "500"]),
    );
    let out = second.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "second caller: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Nothing left: 404 with a Warning.
    must_pass(
        &server,
        "retrieve empty",
        sipp(&server, "expect_404", "*88799", free_port(), "0", &[]),
    );
    let log = server.log();
    assert_eq!(log.matches("event=\"retrieved\"").count(), 2, "{log}");
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

#[test]
#[ignore = "needs SIPp (Debian sip-tester); .ci/run runs it"]
fn group_park_fills_then_486_and_strangers_get_403() {
    assert!(
        std::path::Path::new("/usr/bin/sipp").exists(),
        "SIPp is not installed: apt-get install -y sip-tester (.ci/run does)"
    );
    let server = Server::start();
    let parker = free_port().to_string();
    let park = |svc: &str| {
        sipp(
            &server,
            "park_with_referred_by_until_bye",
            svc,
            free_port(),
            "0",
            &["-set", "parker_port", &parker],
        )
        .spawn()
        .unwrap()
    };
    let a = park("#58");
    wait_log(&server, "event=\"parked\"", 1);
    let b = park("#58");
    wait_log(&server, "event=\"parked\"", 2);
    assert!(
        server.log().contains("orbit=704") && server.log().contains("orbit=705"),
        "{}",
        server.log()
    );
    must_pass(
        &server,
        "group full",
        sipp(
            &server,
            "expect_486",
            "#58",
            free_port(),
            "0",
            &["-set", "parker_port", &parker],
        ),
    );
    // No Referred-By: the caller is the parker, and is in no group.
    must_pass(
        &server,
        "not a member",
        sipp(&server, "expect_403", "#58", free_port(), "0", &[]),
    );
    // SIGTERM hangs up the parked calls cleanly: both callers get a BYE.
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
    for (name, child) in [("a", a), ("b", b)] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "caller {name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
#[ignore = "needs SIPp (Debian sip-tester); .ci/run runs it"]
fn cancel_while_parking_frees_the_orbit() {
    assert!(
        std::path::Path::new("/usr/bin/sipp").exists(),
        "SIPp is not installed: apt-get install -y sip-tester (.ci/run does)"
    );
    let server = Server::start();
    must_pass(
        &server,
        "park then cancel",
        sipp(&server, "park_then_cancel", "*68703", free_port(), "0", &[]),
    );
    // Whatever the race, 703 is free again: a directed park succeeds.
    let parker = free_port().to_string();
    must_pass(
        &server,
        "park again",
        sipp(
            &server,
            "park_then_hang_up",
            "*68703",
            free_port(),
            "0",
            &["-d", "200", "-set", "parker_port", &parker],
        ),
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

#[test]
#[ignore = "needs SIPp (Debian sip-tester); .ci/run runs it"]
fn park_and_retrieve_over_tcp() {
    assert!(
        std::path::Path::new("/usr/bin/sipp").exists(),
        "SIPp is not installed"
    );
    let server = Server::start();
    let parker = free_port().to_string();
    let parked = sipp(
        &server,
        "park_with_referred_by_until_bye",
        "702",
        free_port(),
        "0",
        &["-t", "t1", "-set", "parker_port", &parker],
    )
    .spawn()
    .unwrap();
    wait_log(&server, "event=\"parked\"", 1);
    must_pass(
        &server,
        "retrieve over TCP",
        sipp(
            &server,
            "retrieve",
            "*4702",
            free_port(),
            "0",
            &["-t", "t1", "-d", "500"],
        ),
    );
    let out = parked.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parked TCP caller: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// A parked call recalls its parker after `recall_after`, with the
/// configured ring pattern; the parker is busy, nobody else is configured,
/// so the parked caller is hung up.
#[test]
#[ignore = "needs SIPp (Debian sip-tester); .ci/run runs it"]
fn recall_rings_the_parker_with_alert_info_after_recall_after() {
    assert!(
        std::path::Path::new("/usr/bin/sipp").exists(),
        "SIPp is not installed"
    );
    let server =
        Server::start_with("[defaults]\nrecall_after = \"10s\"\nring_pattern = \"long-long\"\n");
    let parker_port = free_port();
    let parker = parker_phone(&server, parker_port, "30");
    std::thread::sleep(Duration::from_millis(300));
    let caller = sipp(
        &server,
        "park_with_referred_by_until_bye",
        "701",
        free_port(),
        "0",
        &["-set", "parker_port", &parker_port.to_string()],
    )
    .spawn()
    .unwrap();
    let out = parker.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parker: {}\n{}",
        tail(&String::from_utf8_lossy(&out.stdout)),
        server.log()
    );
    let out = caller.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the caller: {}",
        tail(&String::from_utf8_lossy(&out.stdout))
    );
    let log = server.log();
    for event in ["recall-started", "recall-step", "recall-exhausted"] {
        assert!(
            log.contains(&format!("event=\"{event}\"")),
            "{event} missing:\n{log}"
        );
    }
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// The parked caller presses 0 (the sip-tester RFC 4733 capture) on an
/// orbit whose escape key is 0: the parker is recalled at once.
#[test]
#[ignore = "needs SIPp (Debian sip-tester); .ci/run runs it"]
fn the_escape_key_recalls_at_once() {
    assert!(
        std::path::Path::new("/usr/share/sip-tester/dtmf_2833_0.pcap").exists(),
        "SIPp's pcaps are missing"
    );
    let server = Server::start_with(
        "[defaults]\nrecall_after = \"0s\"\nescape_key = \"0\"\nring_pattern = \"long-long\"\n",
    );
    let parker_port = free_port();
    let parker = parker_phone(&server, parker_port, "20");
    std::thread::sleep(Duration::from_millis(300));
    let rtp_port = free_port();
    let started = Instant::now();
    let caller = sipp(
        &server,
        "park_press_0_until_bye",
        "702",
        rtp_port,
        "0",
        &[
            "-mp",
            &rtp_port.to_string(),
            "-set",
            "parker_port",
            &parker_port.to_string(),
        ],
    )
    .spawn()
    .unwrap();
    let out = parker.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parker: {}\n{}",
        tail(&String::from_utf8_lossy(&out.stdout)),
        server.log()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "recalled at once, not by a timer"
    );
    let log = server.log();
    assert!(log.contains("event=\"escape-key\""), "{log}");
    let _ = caller.wait_with_output();
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// A busy lamp (SUBSCRIBE dialog) sees early when a call parks, then
/// terminated when it leaves, then un-subscribes.
#[test]
#[ignore = "needs SIPp (Debian sip-tester); .ci/run runs it"]
fn a_busy_lamp_sees_early_then_terminated() {
    assert!(
        std::path::Path::new("/usr/bin/sipp").exists(),
        "SIPp is not installed"
    );
    let server = Server::start();
    let watcher = sipp(&server, "watcher", "703", free_port(), "0", &[])
        .spawn()
        .unwrap();
    wait_log(&server, "busy lamp subscribed", 1);
    let parker = free_port().to_string();
    must_pass(
        &server,
        "park and hang up",
        sipp(
            &server,
            "park_then_hang_up",
            "703",
            free_port(),
            "0",
            &["-d", "1000", "-set", "parker_port", &parker],
        ),
    );
    let out = watcher.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the lamp: {}\n{}",
        tail(&String::from_utf8_lossy(&out.stdout)),
        server.log()
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// SIGHUP re-reads the configuration: a broken file is refused with file,
/// line and field while the server keeps serving; a good one applies with
/// calls staying parked.
#[test]
#[ignore = "needs SIPp (Debian sip-tester); .ci/run runs it"]
fn sighup_reloads_the_configuration_and_keeps_the_last_good_one() {
    assert!(
        std::path::Path::new("/usr/bin/sipp").exists(),
        "SIPp is not installed"
    );
    let server = Server::start();
    let parked = sipp(&server, "park_until_bye", "*68702", free_port(), "0", &[])
        .spawn()
        .unwrap();
    wait_log(&server, "event=\"parked\"", 1);
    let good = std::fs::read_to_string(server.config_path()).unwrap();

    std::fs::write(
        server.config_path(),
        format!("{good}\n[recall]\nmax_attempts = 0\n"),
    )
    .unwrap();
    server.signal(libc::SIGHUP);
    wait_log(&server, "configuration refused", 1);
    assert!(
        server
            .log()
            .contains("recall.max_attempts: 0 is not in 1..10"),
        "{}",
        server.log()
    );
    server.wait_ready();

    std::fs::write(
        server.config_path(),
        format!("{good}\n[[orbit]]\nnumber = \"800\"\n"),
    )
    .unwrap();
    server.signal(libc::SIGHUP);
    wait_log(&server, "configuration applied", 1);
    let parker = free_port().to_string();
    must_pass(
        &server,
        "park on the new orbit",
        sipp(
            &server,
            "park_then_hang_up",
            "*68800",
            free_port(),
            "0",
            &["-d", "200", "-set", "parker_port", &parker],
        ),
    );
    // The call parked before the reloads is still there.
    must_pass(
        &server,
        "retrieve the old call",
        sipp(
            &server,
            "retrieve",
            "*88702",
            free_port(),
            "0",
            &["-d", "200"],
        ),
    );
    let out = parked.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        tail(&String::from_utf8_lossy(&out.stdout))
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}
