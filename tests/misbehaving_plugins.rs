//! The real `callpark serve` binary with misbehaving allocator plugins
//! (`plugins/fixtures`), configured at start and hot-swapped in: the
//! server comes up and stays up, every park gets its answer (the plugin's
//! when it behaves, the built-in policy's when it fails), and the log names
//! the plugin and the reason. These once killed the process (exit 101):
//! the WASI bindings panicked inside the server's tokio runtime.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use callpark_policy::PLUGIN_BUILD_DIR;
use support::{Server, wait_log};

fn wasm(name: &str) -> String {
    format!("{PLUGIN_BUILD_DIR}/{name}.wasm")
}

/// Parks a call with a plain INVITE to `#58` from a socket of our own (no
/// group is configured, so the allocator hunts all 50 orbits, past the
/// fixtures' trigger of 16 candidates); returns the final status.
fn park(server: &Server, call: &str) -> u16 {
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = phone.local_addr().unwrap();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
        me.port() + 1
    );
    let invite = format!(
        "INVITE sip:#58@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call}\r\nFrom: <sip:bob@{me}>;tag=b\r\nTo: <sip:#58@{a}>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@{me}>\r\nReferred-By: <sip:alice@127.0.0.1:9>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len(),
        a = server.addr(),
    );
    phone.send_to(invite.as_bytes(), server.addr()).unwrap();
    phone
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok((n, _)) = phone.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            if let Some(status) = text
                .strip_prefix("SIP/2.0 ")
                .and_then(|t| t.get(..3))
                .and_then(|s| s.parse::<u16>().ok())
                .filter(|s| *s >= 200)
            {
                return status;
            }
        }
    }
    panic!("no final answer to {call}:\n{}", server.log());
}

/// 50 orbits and no group.
const LOT: &str = "[[range]]\nname = \"main\"\nstart = \"701\"\nend = \"750\"\n";

const FIXTURES: [(&str, Option<&str>); 6] = [
    ("fixture_print", None),
    ("fixture_socket", None),
    ("fixture_panic", Some("trapped")),
    ("fixture_hog", Some("trapped")),
    ("fixture_sleep", Some("may not wait")),
    ("fixture_spin", Some("timed out")),
];

#[test]
fn misbehaving_plugins_at_start_never_take_the_server_down() {
    for (name, failure) in FIXTURES {
        let server = Server::start_lot(
            "",
            &format!("{LOT}[plugins]\nallocator = \"{}\"\n", wasm(name)),
        );
        wait_log(&server, &format!("{name}.wasm"), 1);
        for i in 0..3 {
            assert_eq!(park(&server, &format!("{name}-{i}")), 200, "{name}");
        }
        if let Some(reason) = failure {
            wait_log(&server, "plugin failed; the built-in policy answers", 3);
            let log = server.log();
            assert!(log.contains(reason), "{name}: {reason} not in\n{log}");
            assert!(log.contains(&format!("{name}.wasm")), "{log}");
        }
        let (ok, log) = server.stop();
        assert!(ok, "{name}: the server did not stop cleanly:\n{log}");
    }
}

#[test]
fn misbehaving_plugins_hot_swapped_in_never_take_the_server_down() {
    let server = Server::start_lot("", LOT);
    assert_eq!(park(&server, "before"), 200);
    let config = std::fs::read_to_string(server.config_path()).unwrap();
    for (i, (name, _)) in FIXTURES.iter().enumerate() {
        std::fs::write(
            server.config_path(),
            format!("{config}\n[plugins]\nallocator = \"{}\"\n", wasm(name)),
        )
        .unwrap();
        server.signal(libc::SIGHUP);
        wait_log(&server, "plugin swapped in", 4 + i);
        for j in 0..2 {
            assert_eq!(park(&server, &format!("swap-{name}-{j}")), 200, "{name}");
        }
    }
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}
