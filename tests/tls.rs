//! SIP over TLS against the real binary: a `[[server.tls]]` listener with
//! a certificate made in the test (rcgen), phones that verify it (rustls,
//! trusting only the test's CA). A caller parks on 701 over TLS and a
//! second phone retrieves it over TLS; when the retriever hangs up, the
//! server's BYE reaches the caller on its TLS connection.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::{Server, free_port};

/// A phone on one TLS connection.
struct TlsPhone {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    pending: Vec<u8>,
    local: String,
}

impl TlsPhone {
    fn connect(port: u16, ca: &CertificateDer<'static>) -> TlsPhone {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let local = tcp.local_addr().unwrap().to_string();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        TlsPhone {
            tls: rustls::StreamOwned::new(conn, tcp),
            pending: Vec::new(),
            local,
        }
    }

    fn send(&mut self, message: &str) {
        self.tls.write_all(message.as_bytes()).unwrap();
        self.tls.flush().unwrap();
    }

    /// The next whole message, within `wait`.
    fn next(&mut self, wait: Duration) -> Option<String> {
        let end = Instant::now() + wait;
        loop {
            if let Some(head_end) = find(&self.pending, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.pending[..head_end]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let total = head_end + 4 + len;
                if self.pending.len() >= total {
                    let msg = String::from_utf8_lossy(&self.pending[..total]).into_owned();
                    self.pending.drain(..total);
                    return Some(msg);
                }
            }
            if Instant::now() > end {
                return None;
            }
            let mut buf = [0u8; 8192];
            match self.tls.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
    }

    /// The final response to what was just sent.
    fn final_response(&mut self) -> String {
        loop {
            let msg = self
                .next(Duration::from_secs(5))
                .expect("an answer over TLS");
            if msg.starts_with("SIP/2.0 ") && !msg.starts_with("SIP/2.0 1") {
                return msg;
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
}

fn invite(phone: &TlsPhone, user: &str, call: &str, port: u16, rtp: u16) -> String {
    let me = &phone.local;
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp} RTP/AVP 0\r\n"
    );
    format!(
        "INVITE sips:{user}@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bK{call}\r\nFrom: <sips:{call}@127.0.0.1>;tag=f{call}\r\nTo: <sips:{user}@127.0.0.1:{port}>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sips:{call}@{me}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

fn ack(phone: &TlsPhone, user: &str, call: &str, port: u16, to: &str) -> String {
    let me = &phone.local;
    format!(
        "ACK sips:{user}@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bK{call}ack\r\nFrom: <sips:{call}@127.0.0.1>;tag=f{call}\r\nTo: {to}\r\nCall-ID: {call}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn park_and_retrieve_over_tls_and_the_bye_comes_back_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = support::tls_certificates(dir.path());
    let port = free_port();
    let server = Server::start_lot(
        "",
        &format!(
            "[[range]]\nname = \"main\"\nstart = \"701\"\nend = \"750\"\n[[server.tls]]\nlisten = \"127.0.0.1:{port}\"\ncertificate = \"{}\"\nkey = \"{}\"\n",
            dir.path().join("cert.pem").display(),
            dir.path().join("key.pem").display()
        ),
    );
    support::wait_log(&server, "listening for SIP over TLS", 1);
    let mut caller = TlsPhone::connect(port, &ca);
    caller.send(&invite(&caller, "701", "tlscaller", port, 4100));
    let ok = caller.final_response();
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(
        header(&ok, "Contact").starts_with(&format!("<sips:callpark@127.0.0.1:{port}>")),
        "a sips: Contact at the TLS port: {ok}"
    );
    let to = header(&ok, "To").to_string();
    caller.send(&ack(&caller, "701", "tlscaller", port, &to));
    support::wait_log(&server, "event=\"parked\"", 1);

    let mut retriever = TlsPhone::connect(port, &ca);
    retriever.send(&invite(&retriever, "*88701", "tlsretriever", port, 4102));
    let ok = retriever.final_response();
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let to = header(&ok, "To").to_string();
    retriever.send(&ack(&retriever, "*88701", "tlsretriever", port, &to));
    support::wait_log(&server, "event=\"retrieved\"", 1);
    // The retriever hangs up; the caller's BYE arrives on its connection.
    let me = retriever.local.clone();
    retriever.send(&format!(
        "BYE sips:callpark@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bKtlsbye\r\nFrom: <sips:tlsretriever@127.0.0.1>;tag=ftlsretriever\r\nTo: {to}\r\nCall-ID: tlsretriever\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ));
    assert!(retriever.final_response().starts_with("SIP/2.0 200"));
    let bye = loop {
        let msg = caller
            .next(Duration::from_secs(5))
            .expect("the server's BYE over TLS");
        if msg.starts_with("BYE ") {
            break msg;
        }
    };
    assert!(header(&bye, "Via").starts_with("SIP/2.0/TLS "), "{bye}");
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// A bad key or certificate file is refused at start with the file named.
#[test]
fn a_missing_certificate_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("park.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[[server.tls]]\nlisten = \"127.0.0.1:0\"\ncertificate = \"nowhere.pem\"\nkey = \"nokey.pem\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callpark"))
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("nowhere.pem"), "{text}");
}

/// A parker whose phone is reached at `sips:`: the server opens a TLS
/// connection to it, verifies its certificate against `[server] tls_ca`,
/// and tells it "Parked on 701" by MESSAGE over that connection.
#[test]
fn a_sips_parker_is_told_over_a_tls_connection_the_server_opens() {
    let dir = tempfile::tempdir().unwrap();
    support::tls_certificates(dir.path());
    // The parker's phone: a TLS server with the CA-signed certificate.
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.path().join("cert.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(dir.path().join("key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let phone_tls = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let parker_port = listener.local_addr().unwrap().port();
    let phone = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("the server connects");
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let conn = rustls::ServerConnection::new(phone_tls).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut got = Vec::new();
        let end = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 8192];
        while Instant::now() < end {
            match tls.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
            let text = String::from_utf8_lossy(&got).into_owned();
            if text.contains("Parked on 701") {
                let via = header(&text, "Via").to_string();
                let answer = format!(
                    "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {};tag=p\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
                    header(&text, "From"),
                    header(&text, "To"),
                    header(&text, "Call-ID"),
                    header(&text, "CSeq")
                );
                tls.write_all(answer.as_bytes()).unwrap();
                tls.flush().unwrap();
                std::thread::sleep(Duration::from_millis(300));
                return text;
            }
        }
        panic!("no MESSAGE over TLS: {}", String::from_utf8_lossy(&got));
    });
    let server = Server::start_lot(
        &format!("tls_ca = \"{}\"", dir.path().join("ca.pem").display()),
        "[[range]]\nname = \"main\"\nstart = \"701\"\nend = \"750\"\n",
    );
    let caller = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = caller.local_addr().unwrap();
    let a = server.addr();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4200 RTP/AVP 0\r\n";
    let invite = format!(
        "INVITE sip:701@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKsipsp\r\nFrom: <sip:c@{me}>;tag=c\r\nTo: <sip:701@{a}>\r\nCall-ID: sipsp\r\nCSeq: 1 INVITE\r\nContact: <sip:c@{me}>\r\nReferred-By: <sips:parker@127.0.0.1:{parker_port}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    caller.send_to(invite.as_bytes(), a).unwrap();
    let message = phone.join().unwrap();
    assert!(
        message.starts_with("MESSAGE sips:parker@127.0.0.1:"),
        "{message}"
    );
    assert!(
        header(&message, "Via").starts_with("SIP/2.0/TLS "),
        "{message}"
    );
    support::wait_log(&server, "TLS connection opened", 1);
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}
