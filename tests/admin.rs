//! The admin API of the real `callpark serve` binary, over real HTTP:
//! tokens and their roles, problem details, and what the API shows of the
//! parked calls.

mod support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use support::{Server, wait_log};

/// One HTTP/1.1 request; returns (status, headers, body).
fn http(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    http_with(port, method, path, token, "")
}

fn http_with(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String, String) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("the admin API listens");
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

const VIEWER: &str = "cpk_viewer-secret-for-the-test";

fn hash(secret: &str) -> String {
    callpark_server::admin::hex(&callpark_server::admin::token_hash(secret))
}

#[test]
fn tokens_decide_who_reads_and_the_orbits_show_what_is_parked() {
    let server = Server::start_with(&format!(
        "[admin]\n[[admin.token]]\nname = \"wall\"\nrole = \"viewer\"\nsha256 = \"{}\"\n",
        hash(VIEWER)
    ));
    wait_log(&server, "admin API listening", 1);
    let port = server.admin;

    let (status, _, body) = http(port, "GET", "/healthz", None);
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    // No token, a forged one, a truncated one: 401 with a problem document.
    for token in [None, Some("cpk_forged"), Some(&VIEWER[..VIEWER.len() - 1])] {
        let (status, head, body) = http(port, "GET", "/api/v1/orbits", token);
        assert_eq!(status, 401, "{token:?}: {body}");
        assert!(
            head.contains("content-type: application/problem+json"),
            "{head}"
        );
        assert!(head.contains("www-authenticate: Bearer"), "{head}");
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["status"], 401);
    }
    let (status, _, body) = http(port, "GET", "/api/v1/nothing", Some(VIEWER));
    assert_eq!(status, 404, "{body}");

    // Park a call on 701 and read it back.
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let me = caller.local_addr().unwrap();
    let a = server.addr();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n";
    let invite = format!(
        "INVITE sip:701@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKapi1\r\nFrom: <sip:c@{me}>;tag=c\r\nTo: <sip:701@{a}>\r\nCall-ID: api1\r\nCSeq: 1 INVITE\r\nContact: <sip:c@{me}>\r\nReferred-By: <sip:parker@127.0.0.1>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    caller.send_to(invite.as_bytes(), a).unwrap();
    wait_log(&server, "event=\"parked\"", 1);

    let (status, head, body) = http(port, "GET", "/api/v1/orbits", Some(VIEWER));
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let orbits: serde_json::Value = serde_json::from_str(&body).unwrap();
    let orbits = orbits.as_array().expect("a list");
    let parked = |number: &str| {
        orbits
            .iter()
            .find(|o| o["number"] == number)
            .unwrap_or_else(|| panic!("orbit {number} in {body}"))["parked"]
            .as_u64()
    };
    assert_eq!(parked("701"), Some(1));
    assert_eq!(parked("702"), Some(0));
    assert_eq!(parked("799"), Some(0));
    let log = server.log();
    assert!(!log.contains(VIEWER), "a secret reached the log");
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// With no token configured the server makes an admin token at first
/// start, in a file only its owner reads, says where, never what, and
/// keeps it across a restart.
#[test]
fn the_first_start_makes_an_admin_token_only_the_owner_reads() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start();
    wait_log(&server, "admin API listening", 1);
    let file = server.dir.path().join("admin-token");
    let secret = std::fs::read_to_string(&file)
        .expect("the token file")
        .trim()
        .to_string();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "readable by the owner only");
    let log = server.log();
    assert!(log.contains("admin-token"), "the log says where: {log}");
    assert!(!log.contains(&secret), "the log never shows the secret");
    let (status, _, body) = http(server.admin, "GET", "/api/v1/orbits", Some(&secret));
    assert_eq!(status, 200, "{body}");
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// `callpark token new` prints a secret once and the lines that keep only
/// its hash; a role that does not exist is refused.
#[test]
fn token_new_prints_the_secret_once_and_its_hash() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callpark"))
        .args(["token", "new", "--role", "operator", "--name", "desk"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("# cpk_"))
        .map(|s| format!("cpk_{s}"))
        .expect("the secret");
    assert!(text.contains("role = \"operator\""), "{text}");
    assert!(text.contains("name = \"desk\""), "{text}");
    assert!(
        text.contains(&format!("sha256 = \"{}\"", hash(&secret))),
        "{text}"
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_callpark"))
        .args(["token", "new", "--role", "root"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not one of admin, operator, viewer"),
        "{bad:?}"
    );
}

const ADMIN: &str = "cpk_admin-secret-for-the-test";

/// A server with a viewer token (`VIEWER`) and an admin token (`ADMIN`),
/// once its API listens.
fn with_viewer_and_admin() -> Server {
    let server = Server::start_with(&format!(
        "[admin]\n[[admin.token]]\nrole = \"viewer\"\nsha256 = \"{}\"\n[[admin.token]]\nrole = \"admin\"\nsha256 = \"{}\"\n",
        hash(VIEWER),
        hash(ADMIN)
    ));
    wait_log(&server, "admin API listening", 1);
    server
}

/// `config:validate` judges a configuration as `callpark check` does, for
/// admins only, and applies nothing.
#[test]
fn config_validate_is_for_admins_and_names_line_and_field() {
    let server = with_viewer_and_admin();
    let port = server.admin;
    let validate = |token: &str, body: &str| {
        http_with(port, "POST", "/api/v1/config:validate", Some(token), body)
    };
    let good = "[[range]]\nname = \"more\"\nstart = \"800\"\nend = \"809\"\n";
    let (status, _, body) = validate(VIEWER, good);
    assert_eq!(status, 403, "a viewer may not: {body}");
    assert!(body.contains("needs the admin role"), "{body}");
    let (status, _, body) = validate(ADMIN, good);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["valid"],
        true
    );
    let (status, head, body) = validate(ADMIN, "# from the wiki\n\n[recall]\nmax_attempts = 11\n");
    assert_eq!(status, 422, "{body}");
    assert!(head.contains("application/problem+json"), "{head}");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["errors"][0]["line"], 4, "{body}");
    assert_eq!(
        problem["errors"][0]["field"], "recall.max_attempts",
        "{body}"
    );
    // What `check` loads is loaded: a plugin file that is not there.
    let (status, _, body) = validate(ADMIN, "[plugins]\nallocator = \"nowhere.wasm\"\n");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("plugins.allocator"), "{body}");
    // Nothing was applied: no orbit 800.
    let (_, _, orbits) = http(port, "GET", "/api/v1/orbits", Some(VIEWER));
    assert!(!orbits.contains("\"800\""), "{orbits}");
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// `config:reload` does what SIGHUP does: a file with a new range is
/// applied, a refused one leaves the last good configuration serving.
#[test]
fn config_reload_applies_the_file_or_keeps_the_last_good_one() {
    let server = with_viewer_and_admin();
    let port = server.admin;
    let file = server.config_path();
    let original = std::fs::read_to_string(&file).unwrap();
    let orbits = || http(port, "GET", "/api/v1/orbits", Some(VIEWER)).2;
    let reload = |token: &str| http(port, "POST", "/api/v1/config:reload", Some(token));

    let (status, _, body) = reload(VIEWER);
    assert_eq!(status, 403, "{body}");
    std::fs::write(
        &file,
        format!("{original}\n[[range]]\nname = \"more\"\nstart = \"800\"\nend = \"801\"\n"),
    )
    .unwrap();
    let (status, _, body) = reload(ADMIN);
    assert_eq!(status, 200, "{body}");
    assert!(orbits().contains("\"800\""), "the new range serves");

    std::fs::write(&file, format!("{original}\n[recall]\nmax_attempts = 11\n")).unwrap();
    let (status, head, body) = reload(ADMIN);
    assert_eq!(status, 422, "{body}");
    assert!(head.contains("application/problem+json"), "{head}");
    assert!(body.contains("recall.max_attempts"), "{body}");
    assert!(
        body.contains("last good configuration keeps serving"),
        "{body}"
    );
    assert!(
        orbits().contains("\"800\""),
        "the last good configuration stays"
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}
