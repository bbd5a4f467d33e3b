//! Shared by the interop tests: free ports and the real `callpark` binary
//! under test, started on loopback with a given configuration.

#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free UDP port pair base (SIP on `p`, its TCP twin free too).
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A free UDP port whose successor is free too: RTP and its RTCP.
pub fn free_port_pair() -> u16 {
    loop {
        let p = free_port();
        if p < u16::MAX && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

pub fn scenario(name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/sipp");
    dir.join(format!("{name}.xml")).display().to_string()
}

pub struct Server {
    child: Child,
    pub sip: u16,
    /// The admin API's port (`[admin] listen` on 127.0.0.1).
    pub admin: u16,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with("")
    }

    /// Starts with `extra` TOML appended to the test configuration.
    pub fn start_with(extra: &str) -> Server {
        Server::start_with_server("", extra)
    }

    /// Starts with `server` lines added to the `[server]` table (e.g. an
    /// `outbound_proxy`) and `extra` TOML appended.
    pub fn start_with_server(server: &str, extra: &str) -> Server {
        Server::start_lot(
            server,
            &format!(
                r#"
[[range]]
name = "main"
start = "701"
end = "705"
[[orbit]]
number = "799"
name = "sales"
capacity = 2
[[group]]
name = "front-desk"
members = ["sip:parker@127.0.0.1"]
destinations = ["704", "705"]
{extra}
"#
            ),
        )
    }

    /// Starts with only the addresses set, `server` lines in `[server]`,
    /// and `rest` (ranges, groups, plugins ...) as the rest of the file.
    pub fn start_lot(server: &str, rest: &str) -> Server {
        Server::start_listening(&[], server, rest)
    }

    /// Like `start_lot`, listening for SIP on `more` addresses after the
    /// first (`addr()`).
    pub fn start_listening(more: &[SocketAddr], server: &str, rest: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let sip = free_port();
        let listen: String = more.iter().map(|a| format!(", \"{a}\"")).collect();
        let rtp = free_port_pair();
        // Every server its own admin port: the default, 8080, is one for all.
        let admin = free_port();
        let admin_listen = format!("listen = \"127.0.0.1:{admin}\"");
        let rest = if rest.contains("[admin]\n") {
            rest.replacen("[admin]\n", &format!("[admin]\n{admin_listen}\n"), 1)
        } else {
            format!("{rest}\n[admin]\n{admin_listen}\n")
        };
        // Tests end with calls whose phones are gone: a short drain keeps
        // `stop` quick, unless the test is about the drain.
        let drain = if server.contains("drain_time") {
            ""
        } else {
            "drain_time = \"2s\""
        };
        let config = format!(
            r#"
[server]
listen = ["127.0.0.1:{sip}"{listen}]
{drain}
{server}
[media]
rtp_ports = "{rtp}-{rtp_hi}"
{rest}
"#,
            rtp_hi = rtp + 10
        );
        let path = dir.path().join("park.toml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_callpark"))
            .args(["serve", "--config", path.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start callpark");
        let server = Server {
            child,
            sip,
            admin,
            dir,
        };
        server.wait_ready();
        server
    }

    /// The configuration file the server was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("park.toml")
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.sip))
    }

    /// Bounded wait until the server answers OPTIONS. Bounded at 90 s: a
    /// server that starts with a Python or JavaScript plugin compiles 12 to
    /// 18 MB of component first (8 to 15 s in a debug build, more on a busy
    /// two-core machine; a CI run once took over 30 s).
    pub fn wait_ready(&self) {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let me = probe.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut n = 0;
        while Instant::now() < deadline {
            n += 1;
            let options = format!(
                "OPTIONS sip:park@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKready{n}\r\nFrom: <sip:probe@{me}>;tag=p\r\nTo: <sip:park@{a}>\r\nCall-ID: ready{n}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                a = self.addr()
            );
            probe.send_to(options.as_bytes(), self.addr()).unwrap();
            let mut buf = [0u8; 2048];
            if let Ok((len, _)) = probe.recv_from(&mut buf)
                && buf[..len].starts_with(b"SIP/2.0 200")
            {
                return;
            }
        }
        panic!("callpark did not answer OPTIONS: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Whether the process has exited, and if so whether it succeeded.
    pub fn exited(&mut self) -> Option<bool> {
        self.child.try_wait().unwrap().map(|s| s.success())
    }

    /// Stops with SIGTERM and returns the exit status.
    pub fn stop(mut self) -> (bool, String) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        // Past the configured drain time (BYEs of calls still up).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.success(), self.log());
            }
            assert!(
                Instant::now() < deadline,
                "callpark did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Server {
    /// Ends the process with `signal` (SIGTERM: a clean stop; SIGKILL:
    /// kill -9), waits for it, and starts the binary again on the same
    /// folder, configuration and ports, as an administrator's restart.
    pub fn restart(mut self, signal: i32) -> Server {
        self.signal(signal);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "callpark did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_callpark"))
            .args(["serve", "--config", self.config_path().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start callpark");
        let old = std::mem::replace(&mut self.child, child);
        drop(old);
        self.wait_ready();
        self
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The resident memory of a process, from /proc (KiB; 0 if unknown).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used, from /proc.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line, in clock ticks.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 1000 / hz)
}

/// One HTTP/1.1 request to the admin API on `port`; returns (status,
/// headers, body).
pub fn http(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    http_with(port, method, path, token, "")
}

/// `http` with a body.
pub fn http_with(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut conn =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("the admin API listens");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, head.to_string(), body.to_string())
}

/// A `GET` on the admin API that must answer 200, as JSON.
pub fn get_json(port: u16, path: &str, token: &str) -> serde_json::Value {
    let (status, _, body) = http(port, "GET", path, Some(token));
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

/// The `[admin]` lines of a configuration with one admin token whose
/// secret is `secret`.
pub fn admin_token(secret: &str) -> String {
    format!(
        "[admin]\n[[admin.token]]\nrole = \"admin\"\nsha256 = \"{}\"\n",
        callpark_server::admin::hex(&callpark_server::admin::token_hash(secret))
    )
}

/// A caller parked on `orbit` by a raw INVITE with Referred-By `parker`:
/// its SIP socket and the socket its RTP (the hold music) arrives on.
pub fn park(server: &Server, orbit: &str, call_id: &str, parker: &str) -> (UdpSocket, UdpSocket) {
    let caller = park_caller(server, orbit, call_id, parker);
    (caller.sip, caller.rtp)
}

/// A parked raw caller, with what it needs to hang up.
pub struct ParkedCaller {
    pub sip: UdpSocket,
    pub rtp: UdpSocket,
    orbit: String,
    call_id: String,
    /// The To header of the 200, with the server's tag.
    to: String,
    server: SocketAddr,
}

impl ParkedCaller {
    /// Hangs up (BYE) and waits for the 200.
    pub fn hang_up(&self) {
        let me = self.sip.local_addr().unwrap();
        let (orbit, call_id, to) = (&self.orbit, &self.call_id, &self.to);
        let bye = format!(
            "BYE sip:{orbit}@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}bye\r\nFrom: <sip:c@{me}>;tag=c\r\n{to}\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            a = self.server
        );
        self.sip.send_to(bye.as_bytes(), self.server).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let (n, _) = self.sip.recv_from(&mut buf).expect("an answer to the BYE");
            let text = String::from_utf8_lossy(&buf[..n]);
            if text.starts_with("SIP/2.0 200") && text.contains("BYE") {
                return;
            }
        }
    }
}

/// `park`, keeping the dialog.
pub fn park_caller(server: &Server, orbit: &str, call_id: &str, parker: &str) -> ParkedCaller {
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    sip.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    rtp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let me = sip.local_addr().unwrap();
    let a = server.addr();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
        rtp.local_addr().unwrap().port()
    );
    let invite = format!(
        "INVITE sip:{orbit}@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}\r\nFrom: <sip:c@{me}>;tag=c\r\nTo: <sip:{orbit}@{a}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:c@{me}>\r\nReferred-By: <{parker}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    sip.send_to(invite.as_bytes(), a).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = sip.recv_from(&mut buf).expect("an answer to the park");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if text.starts_with("SIP/2.0 1") {
            continue;
        }
        assert!(text.starts_with("SIP/2.0 200"), "{text}");
        let to = text
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("to:"))
            .unwrap()
            .to_string();
        let ack = format!(
            "ACK sip:{orbit}@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}ack\r\nFrom: <sip:c@{me}>;tag=c\r\n{to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        sip.send_to(ack.as_bytes(), a).unwrap();
        return ParkedCaller {
            sip,
            rtp,
            orbit: orbit.to_string(),
            call_id: call_id.to_string(),
            to,
            server: a,
        };
    }
}

/// The next request `method` that `socket` receives within `within`,
/// answered 200 OK from its own headers; its whole text, or `None`.
/// Other messages are passed over.
pub fn next_request(socket: &UdpSocket, method: &str, within: Duration) -> Option<String> {
    socket.set_read_timeout(Some(within)).unwrap();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            return None;
        };
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if !text.starts_with(&format!("{method} ")) {
            continue;
        }
        let header = |name: &str| {
            text.lines()
                .filter(|l| l.to_ascii_lowercase().starts_with(name))
                .map(|l| format!("{l}\r\n"))
                .collect::<String>()
        };
        let ok = format!(
            "SIP/2.0 200 OK\r\n{}{}{}{}{}Content-Length: 0\r\n\r\n",
            header("via:"),
            header("from:"),
            header("to:"),
            header("call-id:"),
            header("cseq:")
        );
        socket.send_to(ok.as_bytes(), from).unwrap();
        return Some(text);
    }
    None
}

/// Waits (bounded) until the server log shows `needle` `count` times.
pub fn wait_log(server: &Server, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.log().matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "never saw {count}x {needle:?}:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files
/// (`cert.pem`, `key.pem`, `ca.pem`) in `dir`; returns the CA certificate
/// (DER) for the phones to trust.
pub fn tls_certificates(dir: &std::path::Path) -> rustls::pki_types::CertificateDer<'static> {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "callpark test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    ca_cert.der().clone()
}
