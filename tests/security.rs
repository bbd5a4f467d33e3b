//! The security model against the real `callpark serve` binary (DESIGN §7,
//! docs/security.md). Only 127.0.0.1 is trusted in these configurations;
//! a stranger sends from 127.0.0.77, and a would-be victim listens on
//! 127.0.0.99. Each finding of the outside review is a test here: refused,
//! and nothing leaves the server towards the target it named.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use callpark_sip::digest::{Algorithm, expected_response, ha1};
use support::Server;

const STRANGER: &str = "127.0.0.77";
const VICTIM: &str = "127.0.0.99";
const REALM: &str = "callpark";

/// `[security]` trusting only 127.0.0.1, with users alice and bob
/// (passwords "wonderland" and "builder") stored as HA1 hashes.
fn security(extra: &str) -> String {
    let user = |name: &str, password: &str| {
        format!(
            "[[security.user]]\nname = \"{name}\"\nha1_sha256 = \"{}\"\nha1_md5 = \"{}\"\n",
            ha1(Algorithm::Sha256, name, REALM, password),
            ha1(Algorithm::Md5, name, REALM, password)
        )
    };
    format!(
        "[[range]]\nname = \"main\"\nstart = \"701\"\nend = \"750\"\n[security]\ntrusted = [\"127.0.0.1/32\"]\n{extra}\n{}{}",
        user("alice", "wonderland"),
        user("bob", "builder")
    )
}

/// A phone on its own address.
struct Phone {
    sock: UdpSocket,
    server: SocketAddr,
    n: u32,
}

/// A final response, its text.
struct Answer {
    status: u16,
    text: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
    }
}

impl Phone {
    fn on(ip: &str, server: &Server) -> Phone {
        let sock = UdpSocket::bind((ip, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Phone {
            sock,
            server: server.addr(),
            n: 0,
        }
    }

    fn me(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// Sends `method` to `user` with `extra` headers and `body`; returns
    /// the final answer (ACKing a non-2xx as the transaction wants).
    fn send(&mut self, method: &str, user: &str, call: &str, extra: &str, body: &str) -> Answer {
        self.n += 1;
        let (me, a) = (self.me(), self.server);
        let ctype = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".into()
        };
        let branch = format!("z9hG4bK{call}x{}", self.n);
        let request = format!(
            "{method} sip:{user}@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\nFrom: <sip:phone@{me}>;tag=t{call}\r\nTo: <sip:{user}@{a}>\r\nCall-ID: {call}\r\nCSeq: {} {method}\r\nContact: <sip:phone@{me}>\r\nMax-Forwards: 70\r\n{extra}{ctype}Content-Length: {}\r\n\r\n{body}",
            self.n,
            body.len()
        );
        self.sock.send_to(request.as_bytes(), a).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 65_535];
        while Instant::now() < deadline {
            let Ok((len, _)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            let Some(status) = text
                .strip_prefix("SIP/2.0 ")
                .and_then(|t| t.get(..3))
                .and_then(|s| s.parse::<u16>().ok())
            else {
                continue;
            };
            if status < 200 || !text.contains(&branch) {
                continue;
            }
            let answer = Answer { status, text };
            if method == "INVITE" {
                let to = answer.header("To").unwrap_or_default().to_string();
                let ack_branch = if status < 300 {
                    format!("{branch}ack")
                } else {
                    branch.clone()
                };
                let ack = format!(
                    "ACK sip:{user}@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={ack_branch}\r\nFrom: <sip:phone@{me}>;tag=t{call}\r\nTo: {to}\r\nCall-ID: {call}\r\nCSeq: {} ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                    self.n
                );
                if status >= 300 || !extra.contains("X-No-Ack") {
                    self.sock.send_to(ack.as_bytes(), a).unwrap();
                }
            }
            return answer;
        }
        panic!("no final answer to {method} {user} ({call})");
    }

    /// Like `send`, answering a 401 with `user`'s digest credentials
    /// (SHA-256, the server's first challenge).
    fn send_as(
        &mut self,
        who: (&str, &str),
        method: &str,
        user: &str,
        call: &str,
        extra: &str,
        body: &str,
    ) -> Answer {
        let first = self.send(method, user, call, extra, body);
        if first.status != 401 {
            return first;
        }
        let auth = authorization(
            &first,
            who,
            method,
            &format!("sip:{user}@{}", self.server),
            1,
        );
        self.send(method, user, call, &format!("{extra}{auth}"), body)
    }
}

/// The Authorization header answering a 401's first challenge.
fn authorization(
    challenge: &Answer,
    who: (&str, &str),
    method: &str,
    uri: &str,
    nc: u32,
) -> String {
    let www = challenge.header("WWW-Authenticate").expect("a challenge");
    assert!(www.contains("algorithm=SHA-256"), "{www}");
    let nonce = www
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    let nc = format!("{nc:08x}");
    let stored = ha1(Algorithm::Sha256, who.0, REALM, who.1);
    let response = expected_response(
        Algorithm::Sha256,
        &stored,
        nonce,
        &nc,
        "cn0",
        "auth",
        method,
        uri,
    );
    format!(
        "Authorization: Digest username=\"{}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=SHA-256, cnonce=\"cn0\", qop=auth, nc={nc}\r\n",
        who.0
    )
}

fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"
    )
}

/// A socket on the victim's address; counts what arrives for `for_`.
fn heard_by(victim: &UdpSocket, for_: Duration) -> Vec<String> {
    victim
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65_535];
    let end = Instant::now() + for_;
    while Instant::now() < end {
        if let Ok((n, _)) = victim.recv_from(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n.min(60)]).into_owned());
        }
    }
    got
}

/// A trusted phone parks a call on 701; then a stranger tries everything
/// the review found: each gets 401 before anything is revealed, the same
/// for an orbit with a call, an empty one and one that does not exist.
#[test]
fn a_stranger_learns_nothing_and_takes_nothing_before_authenticating() {
    let server = Server::start_lot("", &security(""));
    let mut trusted = Phone::on("127.0.0.1", &server);
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let parked = trusted.send(
        "INVITE",
        "701",
        "parked1",
        "",
        &sdp("127.0.0.1", rtp.local_addr().unwrap().port()),
    );
    assert_eq!(parked.status, 200);
    let mut stranger = Phone::on(STRANGER, &server);
    let body = sdp(STRANGER, 4000);
    let victim = UdpSocket::bind((VICTIM, 0)).unwrap();
    let v = victim.local_addr().unwrap();
    let attempts = [
        ("INVITE", "*88701", String::new(), body.clone()),
        ("INVITE", "701", String::new(), body.clone()),
        ("INVITE", "702", String::new(), body.clone()),
        ("INVITE", "799", String::new(), body.clone()),
        (
            "INVITE",
            "#58",
            format!("Referred-By: <sip:alice@{v}>\r\n"),
            body.clone(),
        ),
        (
            "INVITE",
            "701",
            "Replaces: guess;to-tag=blf8;from-tag=x\r\n".into(),
            body.clone(),
        ),
        (
            "SUBSCRIBE",
            "701",
            "Event: dialog\r\nExpires: 60\r\n".into(),
            String::new(),
        ),
        (
            "SUBSCRIBE",
            "799",
            "Event: dialog\r\nExpires: 60\r\n".into(),
            String::new(),
        ),
        (
            "REFER",
            "701",
            format!("Refer-To: <sip:+19005551234@{v}>\r\n"),
            String::new(),
        ),
        (
            "REFER",
            "701",
            "Refer-To: <tel:+19005551234>\r\n".into(),
            String::new(),
        ),
        ("MESSAGE", "701", String::new(), String::new()),
    ];
    for (i, (method, user, extra, body)) in attempts.iter().enumerate() {
        let a = stranger.send(method, user, &format!("s{i}"), extra, body);
        assert_eq!(a.status, 401, "{method} {user}: {}", a.text);
        assert!(
            !a.text.contains("Warning"),
            "a 401 tells nothing: {}",
            a.text
        );
        let challenges = a.text.matches("WWW-Authenticate: Digest").count();
        assert_eq!(challenges, 2, "SHA-256 and MD5: {}", a.text);
    }
    // Nothing went to the victim, no NOTIFY to the stranger, and the call
    // is still parked: the trusted phone retrieves it.
    assert_eq!(
        heard_by(&victim, Duration::from_secs(1)),
        Vec::<String>::new()
    );
    let mut buf = [0u8; 4096];
    assert!(stranger.sock.recv_from(&mut buf).is_err(), "no NOTIFY");
    let r = trusted.send("INVITE", "*88701", "retrieve1", "", &sdp("127.0.0.1", 4002));
    assert_eq!(r.status, 200, "{}", r.text);
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// With credentials a stranger is a user: it acts as itself whatever
/// Referred-By it writes (the `listed` bypass), a replayed nonce count is
/// refused, and a wrong password gets only another challenge.
#[test]
fn authenticated_users_act_as_themselves_and_replays_are_refused() {
    let server = Server::start_lot(
        "",
        &security("[access]\npark = \"listed\"\nparkers = [\"sip:alice@callpark\"]\n"),
    );
    let mut phone = Phone::on(STRANGER, &server);
    let body = sdp(STRANGER, 4010);
    // Bob claims to be referred by Alice, who is listed: he is Bob.
    let spoofed = phone.send_as(
        ("bob", "builder"),
        "INVITE",
        "701",
        "b1",
        "Referred-By: <sip:alice@callpark>\r\n",
        &body,
    );
    assert_eq!(spoofed.status, 403, "{}", spoofed.text);
    // Alice herself may park.
    let alice = phone.send_as(("alice", "wonderland"), "INVITE", "702", "a1", "", &body);
    assert_eq!(alice.status, 200, "{}", alice.text);
    // A wrong password: a fresh challenge, nothing else.
    let wrong = phone.send_as(("alice", "guess"), "INVITE", "703", "w1", "", &body);
    assert_eq!(wrong.status, 401);
    // The same Authorization (same nonce and nc) again: refused.
    let first = phone.send("INVITE", "704", "r1", "", &body);
    let uri = format!("sip:704@{}", server.addr());
    let auth = authorization(&first, ("alice", "wonderland"), "INVITE", &uri, 1);
    assert_eq!(phone.send("INVITE", "704", "r1", &auth, &body).status, 200);
    assert_eq!(
        phone.send("INVITE", "704", "r2", &auth, &body).status,
        401,
        "a replayed nc"
    );
    let again = authorization(&first, ("alice", "wonderland"), "INVITE", &uri, 2);
    assert_ne!(
        phone.send("INVITE", "704", "r3", &again, &body).status,
        401,
        "the next nc"
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// The server calls only allowed targets: a trusted REFER to an outside
/// URI or to `tel:` gets 403 and nobody is called (not even through the
/// outbound proxy, the trunk); an authenticated user's Referred-By naming
/// someone outside gets no MESSAGE and no recall.
#[test]
fn no_call_out_to_targets_that_are_not_allowed() {
    let victim = UdpSocket::bind((VICTIM, 0)).unwrap();
    let v = victim.local_addr().unwrap();
    let server = Server::start_lot(
        &format!("outbound_proxy = \"sip:{v}\""),
        &format!("{}\n[defaults]\nrecall_after = \"10s\"\n", security("")),
    );
    let mut trusted = Phone::on("127.0.0.1", &server);
    for (i, target) in [
        format!("sip:+19005551234@{v}"),
        "tel:+19005551234".into(),
        "sip:+19005551234@anywhere.example".into(),
    ]
    .iter()
    .enumerate()
    {
        let a = trusted.send(
            "REFER",
            "701",
            &format!("refer{i}"),
            &format!("Refer-To: <{target}>\r\n"),
            "",
        );
        assert_eq!(a.status, 403, "{target}: {}", a.text);
    }
    let mut phone = Phone::on(STRANGER, &server);
    let parked = phone.send_as(
        ("alice", "wonderland"),
        "INVITE",
        "701",
        "p1",
        &format!("Referred-By: <sip:victim@{v}>\r\n"),
        &sdp(STRANGER, 4020),
    );
    assert_eq!(parked.status, 200, "{}", parked.text);
    // The MESSAGE would come at once and the recall after 10 s.
    let heard = heard_by(&victim, Duration::from_secs(12));
    assert!(heard.is_empty(), "the victim got {heard:?}");
    let log = server.log();
    assert!(
        log.contains("REFER to a target that is not allowed"),
        "{log}"
    );
    assert!(log.contains("recall target that is not allowed"), "{log}");
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// A spoofed SDP address buys no music: an untrusted caller hears nothing
/// until its ACK; with the ACK the music comes (so the check can fail).
#[test]
fn no_music_to_an_untrusted_caller_before_its_ack() {
    let server = Server::start_lot("", &security(""));
    let victim = UdpSocket::bind((VICTIM, 0)).unwrap();
    let port = victim.local_addr().unwrap().port();
    let mut phone = Phone::on(STRANGER, &server);
    let a = phone.send_as(
        ("alice", "wonderland"),
        "INVITE",
        "701",
        "m1",
        "X-No-Ack: 1\r\n",
        &sdp(VICTIM, port),
    );
    assert_eq!(a.status, 200);
    assert_eq!(
        heard_by(&victim, Duration::from_secs(3)).len(),
        0,
        "no RTP before the ACK"
    );
    // The ACK, late: now the music flows.
    let to = a.header("To").unwrap();
    let (me, s) = (phone.me(), server.addr());
    let ack = format!(
        "ACK sip:701@{s} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKlateack\r\nFrom: <sip:phone@{me}>;tag=tm1\r\nTo: {to}\r\nCall-ID: m1\r\nCSeq: 2 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    phone.sock.send_to(ack.as_bytes(), s).unwrap();
    assert!(
        heard_by(&victim, Duration::from_secs(1)).len() >= 20,
        "music after the ACK"
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// Fair use: one untrusted address parks at most `max_parked_per_source`
/// calls (50 INVITEs no longer fill the lot), and past its rate it gets
/// 503 with Retry-After.
#[test]
fn one_source_cannot_fill_the_lot_or_flood_the_server() {
    let server = Server::start_lot(
        "",
        &security("rate_per_source = 1000\nburst_per_source = 1000\nmax_parked_per_source = 10\n"),
    );
    let mut phone = Phone::on(STRANGER, &server);
    let body = sdp(STRANGER, 4030);
    let statuses: Vec<u16> = (0..50)
        .map(|i| {
            phone
                .send_as(
                    ("alice", "wonderland"),
                    "INVITE",
                    "#58",
                    &format!("f{i}"),
                    "",
                    &body,
                )
                .status
        })
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 486).count(),
        40,
        "{statuses:?}"
    );
    // A trusted phone still parks.
    let mut trusted = Phone::on("127.0.0.1", &server);
    assert_eq!(
        trusted
            .send("INVITE", "#58", "t1", "", &sdp("127.0.0.1", 4032))
            .status,
        200
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");

    let server = Server::start_lot(
        "",
        &security("rate_per_source = 10\nburst_per_source = 20\n"),
    );
    let mut phone = Phone::on(STRANGER, &server);
    let statuses: Vec<u16> = (0..40)
        .map(|i| {
            phone
                .send(
                    "SUBSCRIBE",
                    "701",
                    &format!("sub{i}"),
                    "Event: dialog\r\n",
                    "",
                )
                .status
        })
        .collect();
    let busy = statuses.iter().filter(|s| **s == 503).count();
    assert!(busy >= 15, "past the burst of 20: {statuses:?}");
    assert_eq!(statuses[..20], [401; 20], "{statuses:?}");
    // OPTIONS from the same address counts against the same rate; a
    // trusted phone's does not.
    assert_eq!(phone.send("OPTIONS", "701", "opt1", "", "").status, 503);
    let mut trusted = Phone::on("127.0.0.1", &server);
    assert_eq!(trusted.send("OPTIONS", "701", "opt2", "", "").status, 200);
    let log = server.log();
    assert!(log.contains("past its request rate"), "{log}");
    assert!(
        log.matches("past its request rate").count() < 5,
        "rate-limited lines: {log}"
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// Lamps: to a trusted watcher with `lamp_identity = "number"` the NOTIFY
/// names the caller's number only, never its URI's host, display name,
/// Call-ID or tags.
#[test]
fn lamps_tell_only_what_lamp_identity_allows() {
    let server = Server::start_lot("", &security("lamp_identity = \"number\"\n"));
    let mut trusted = Phone::on("127.0.0.1", &server);
    let mut caller = Phone::on("127.0.0.1", &server);
    let c = caller.me();
    let parked = caller.send(
        "INVITE",
        "701",
        "secret-call-id",
        "",
        &sdp("127.0.0.1", 4040),
    );
    assert_eq!(parked.status, 200);
    let sub = trusted.send(
        "SUBSCRIBE",
        "701",
        "lamp1",
        "Event: dialog\r\nExpires: 60\r\n",
        "",
    );
    assert_eq!(sub.status, 200);
    let mut buf = [0u8; 65_535];
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut notify = String::new();
    while Instant::now() < deadline {
        if let Ok((n, _)) = trusted.sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("NOTIFY ") && text.contains("<dialog ") {
                notify = text;
                break;
            }
        }
    }
    assert!(notify.contains("sip:phone@"), "the number: {notify}");
    assert!(!notify.contains(&c.to_string()), "no caller host: {notify}");
    assert!(!notify.contains("secret-call-id"), "{notify}");
    assert!(!notify.contains("tsecret-call-id"), "{notify}");
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// A nonce past `nonce_lifetime` gets a new challenge with `stale=true`
/// (the phone retries without asking its user), and the fresh nonce works.
#[test]
fn a_stale_nonce_is_challenged_again_with_stale_true() {
    let server = Server::start_lot("", &security("nonce_lifetime = \"10s\"\n"));
    let mut phone = Phone::on(STRANGER, &server);
    let body = sdp(STRANGER, 4050);
    let first = phone.send("INVITE", "701", "st1", "", &body);
    assert_eq!(first.status, 401);
    std::thread::sleep(Duration::from_secs(11));
    let uri = format!("sip:701@{}", server.addr());
    let old = authorization(&first, ("alice", "wonderland"), "INVITE", &uri, 1);
    let again = phone.send("INVITE", "701", "st1", &old, &body);
    assert_eq!(again.status, 401);
    let www = again.header("WWW-Authenticate").unwrap();
    assert!(www.contains("stale=true"), "{www}");
    let fresh = authorization(&again, ("alice", "wonderland"), "INVITE", &uri, 1);
    assert_eq!(
        phone.send("INVITE", "701", "st1", &fresh, &body).status,
        200
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}
