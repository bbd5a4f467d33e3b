//! The admin API of the real `callpark serve` binary, over real HTTP:
//! tokens and their roles, problem details, and what the API shows of the
//! parked calls.

mod support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use support::{Server, http, http_with, park, wait_log};

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

/// A JSON request as admin (or another token); returns (status, body as
/// JSON, or `Null` when the body is not JSON).
fn call(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, _, answer) = http_with(port, method, path, Some(token), &text);
    (
        status,
        serde_json::from_str(&answer).unwrap_or(serde_json::Value::Null),
    )
}

fn get(port: u16, path: &str) -> serde_json::Value {
    let (status, v) = call(port, "GET", path, VIEWER, serde_json::Value::Null);
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

/// Every write resource, what the file owns refused with its line, field
/// errors named as `callpark check` names them, and `dry_run` changing
/// nothing.
#[test]
fn the_api_writes_ranges_orbits_groups_and_settings_and_leaves_the_file_alone() {
    use serde_json::json;
    let server = with_viewer_and_admin();
    let port = server.admin;
    let admin =
        |method: &str, path: &str, body: serde_json::Value| call(port, method, path, ADMIN, body);
    let range = json!({ "name": "sales", "start": "800", "end": "809" });

    let (status, v) = call(port, "POST", "/api/v1/orbit-ranges", VIEWER, range.clone());
    assert_eq!(status, 403, "a viewer may not write: {v}");
    // A dry run answers what would change and changes nothing.
    let (status, v) = admin("POST", "/api/v1/orbit-ranges?dry_run=true", range.clone());
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["changes"]["dry_run"], true);
    assert_eq!(v["changes"]["orbits"]["added"]["count"], 10, "{v}");
    let (status, _) = call(port, "GET", "/api/v1/orbits/800", VIEWER, json!(null));
    assert_eq!(status, 404, "a dry run applies nothing");

    let (status, v) = admin("POST", "/api/v1/orbit-ranges", range.clone());
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["object"]["source"]["kind"], "store");
    let orbit = get(port, "/api/v1/orbits/800");
    assert_eq!(orbit["range"], "sales");
    assert_eq!(orbit["parked"], 0);
    let (status, v) = admin("POST", "/api/v1/orbit-ranges", range.clone());
    assert_eq!(status, 409, "made twice: {v}");

    // The same validator and messages as `callpark check`.
    let (status, v) = admin(
        "POST",
        "/api/v1/orbit-ranges",
        json!({ "name": "x", "start": "805", "end": "820" }),
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errors"][0]["field"], "start", "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("overlaps range `sales`"),
        "{v}"
    );
    let (status, v) = admin("PUT", "/api/v1/orbits/801", json!({ "capacity": 0 }));
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errors"][0]["field"], "capacity");
    assert_eq!(v["errors"][0]["reason"], "0 is not in 1..1000");
    let (status, v) = admin("PUT", "/api/v1/orbits/801", json!({ "capacity": "two" }));
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errors"][0]["field"], "capacity");

    // An orbit of a range gets settings of its own; PATCH null clears one.
    let (status, v) = admin(
        "PUT",
        "/api/v1/orbits/801",
        json!({ "capacity": 3, "name": "vip", "recall_after": "120s" }),
    );
    assert_eq!(status, 201, "{v}");
    let orbit = get(port, "/api/v1/orbits/801");
    assert_eq!(
        (&orbit["capacity"], &orbit["name"], &orbit["recall_after"]),
        (&json!(3), &json!("vip"), &json!("120s")),
        "{orbit}"
    );
    assert_eq!(orbit["source"]["kind"], "store");
    let (status, v) = admin("PATCH", "/api/v1/orbits/801", json!({ "capacity": null }));
    assert_eq!(status, 200, "{v}");
    assert_eq!(get(port, "/api/v1/orbits/801")["capacity"], 1);
    assert_eq!(get(port, "/api/v1/orbits/801")["name"], "vip");

    // What the file names is read-only, with its line.
    let (status, v) = admin(
        "PATCH",
        "/api/v1/orbit-ranges/main",
        json!({ "end": "709" }),
    );
    assert_eq!(status, 409, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("park.toml line"),
        "{v}"
    );
    let (status, v) = admin("PATCH", "/api/v1/orbits/799", json!({ "capacity": 1 }));
    assert_eq!(status, 409, "{v}");
    let (status, v) = admin("DELETE", "/api/v1/groups/front-desk", json!(null));
    assert_eq!(status, 409, "{v}");

    // Groups, and one member added and removed without resending all.
    let (status, v) = admin(
        "POST",
        "/api/v1/groups",
        json!({ "name": "sales-team", "members": ["sip:ann@127.0.0.1"], "destinations": ["802", "803"], "recall": "parker-then-hunt-group", "hunt_group": "sip:desk@127.0.0.1" }),
    );
    assert_eq!(status, 201, "{v}");
    let (status, v) = admin(
        "POST",
        "/api/v1/groups/sales-team/members",
        json!({ "member": "sip:ben@127.0.0.1" }),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"]["members"].as_array().unwrap().len(), 2);
    assert_eq!(get(port, "/api/v1/orbits/802")["group"], "sales-team");
    let (status, v) = admin(
        "DELETE",
        "/api/v1/groups/sales-team/members/sip%3Aann%40127.0.0.1",
        json!(null),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"]["members"], json!(["sip:ben@127.0.0.1"]));

    // Settings sections the file does not name belong to the API.
    let (status, v) = admin(
        "PATCH",
        "/api/v1/settings/recall",
        json!({ "max_attempts": 3 }),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"]["value"]["max_attempts"], 3);
    assert_eq!(v["object"]["source"]["kind"], "store");
    let (status, v) = admin(
        "PATCH",
        "/api/v1/settings/recall",
        json!({ "max_attempts": 11 }),
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errors"][0]["field"], "max_attempts");
    let settings = get(port, "/api/v1/settings");
    assert_eq!(settings["recall"]["value"]["max_attempts"], 3);
    assert_eq!(settings["defaults"]["source"]["kind"], "default");

    // The effective configuration, each object with its source.
    let config = get(port, "/api/v1/config");
    let ranges = config["ranges"].as_array().unwrap();
    assert_eq!(ranges[0]["name"], "main");
    assert_eq!(ranges[0]["source"]["kind"], "file");
    assert!(ranges[0]["source"]["line"].as_u64().unwrap() > 0);
    assert_eq!(ranges[1]["name"], "sales");
    assert_eq!(ranges[1]["source"]["kind"], "store");

    // A file edit that clashes with the store is refused like any bad
    // configuration; the last good one keeps serving.
    let file = server.config_path();
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        format!("{original}\n[[range]]\nname = \"sales\"\nstart = \"900\"\nend = \"901\"\n"),
    )
    .unwrap();
    let (status, v) = admin("POST", "/api/v1/config:reload", json!(null));
    assert_eq!(status, 422, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("is used twice"),
        "{v}"
    );
    assert_eq!(get(port, "/api/v1/orbits/800")["range"], "sales");
    let (status, _) = call(port, "GET", "/api/v1/orbits/900", VIEWER, json!(null));
    assert_eq!(status, 404);

    // Deleting: a range from the store, an orbit's own settings.
    let (status, v) = admin("DELETE", "/api/v1/orbits/801", json!(null));
    assert_eq!(status, 200, "{v}");
    assert!(get(port, "/api/v1/orbits/801")["name"].is_null());
    let (status, v) = admin("DELETE", "/api/v1/orbits/801", json!(null));
    assert_eq!(status, 404, "{v}");
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
    assert!(!log.contains(ADMIN), "a secret reached the log");
}

/// A 16-bit 8 kHz WAV of `seconds` at one constant level.
fn wav(level: i16, seconds: f32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for _ in 0..(8000.0 * seconds) as usize {
        w.write_sample(level).unwrap();
    }
    w.finalize().unwrap();
    out.into_inner()
}

/// One HTTP request with a binary body; returns (status, body).
fn http_bytes(port: u16, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    conn.write_all(body).unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response");
    let status = String::from_utf8_lossy(&raw[..at])
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    (status, raw[at + 4..].to_vec())
}

/// The RTP that arrives on `rtp` for `for_`: (SSRC, sequence, timestamp,
/// whether the payload is one constant level, arrival).
fn listen(rtp: &UdpSocket, for_: Duration) -> Vec<(u32, u16, u32, bool, std::time::Instant)> {
    let until = std::time::Instant::now() + for_;
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while std::time::Instant::now() < until {
        let Ok(n) = rtp.recv(&mut buf) else { break };
        let p = &buf[..n];
        let payload = &p[12..];
        out.push((
            u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
            u16::from_be_bytes([p[2], p[3]]),
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            payload.iter().all(|b| *b == payload[0]),
            std::time::Instant::now(),
        ));
    }
    out
}

/// A range made through the API holds a parked call; new music for its
/// orbit reaches the caller in the same stream with no gap; the music may
/// not be deleted while used; deleting the range needs `force`, which
/// recalls the call.
#[test]
fn a_parked_caller_hears_new_music_at_once_and_removing_its_orbit_needs_force() {
    use serde_json::json;
    let server = with_viewer_and_admin();
    let port = server.admin;
    let admin =
        |method: &str, path: &str, body: serde_json::Value| call(port, method, path, ADMIN, body);
    let (status, v) = admin(
        "POST",
        "/api/v1/orbit-ranges",
        json!({ "name": "lobby", "start": "810", "end": "811" }),
    );
    assert_eq!(status, 201, "{v}");
    let (status, body) = http_bytes(port, "PUT", "/api/v1/music/loud", ADMIN, &wav(12000, 1.0));
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));

    let (_sip, rtp) = park(&server, "810", "music1", "sip:parker@127.0.0.1");
    assert_eq!(get(port, "/api/v1/orbits/810")["parked"], 1);
    let before = listen(&rtp, Duration::from_millis(300));
    assert!(before.len() > 5, "hold music plays: {}", before.len());
    assert!(before.iter().all(|p| !p.3), "the default music varies");

    // The switch, while the caller keeps listening.
    let switch = std::thread::spawn(move || {
        call(
            port,
            "PATCH",
            "/api/v1/orbits/810",
            ADMIN,
            json!({ "music": "loud" }),
        )
    });
    let during = listen(&rtp, Duration::from_millis(600));
    let (status, v) = switch.join().unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["changes"]["orbits"]["changed"]["numbers"], json!(["810"]));
    let all: Vec<_> = before.iter().chain(during.iter()).collect();
    assert!(all.iter().all(|p| p.0 == all[0].0), "one stream (one SSRC)");
    for pair in all.windows(2) {
        assert_eq!(pair[1].1, pair[0].1.wrapping_add(1), "no packet missing");
        assert_eq!(pair[1].2, pair[0].2.wrapping_add(160), "no gap in time");
    }
    assert!(during.last().unwrap().3, "the new music plays");
    let gap = all.windows(2).map(|w| w[1].4 - w[0].4).max().unwrap();
    eprintln!("largest gap between packets across the switch: {gap:?}");

    // Listen: the stored file comes back as uploaded.
    let (status, body) = http_bytes(port, "GET", "/api/v1/music/loud", VIEWER, b"");
    assert_eq!((status, body), (200, wav(12000, 1.0)));
    let (status, v) = admin("DELETE", "/api/v1/music/loud", json!(null));
    assert_eq!(status, 409, "in use: {v}");
    assert!(v["detail"].as_str().unwrap().contains("810"), "{v}");

    // Removing the range that holds the call.
    let (status, v) = admin("DELETE", "/api/v1/orbit-ranges/lobby", json!(null));
    assert_eq!(status, 409, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("force=true"), "{v}");
    assert_eq!(get(port, "/api/v1/orbits/810")["parked"], 1);
    let (status, v) = admin(
        "DELETE",
        "/api/v1/orbit-ranges/lobby?force=true",
        json!(null),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["changes"]["recalled"],
        json!([{ "orbit": "810", "calls": 1 }])
    );
    wait_log(&server, "event=\"recall-started\"", 1);
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// Music that is not music, or too much of it, is refused with a reason,
/// and what was stored stays.
#[test]
fn bad_music_is_refused_and_nothing_stored_is_lost() {
    let server = with_viewer_and_admin();
    let port = server.admin;
    let good = wav(3000, 0.5);
    assert_eq!(
        http_bytes(port, "PUT", "/api/v1/music/hold", ADMIN, &good).0,
        201
    );
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0".to_vec();
    for (what, body, status, reason) in [
        ("a PNG", png, 422, "not a WAV"),
        ("an empty WAV", wav(0, 0.0), 422, "no audio"),
        ("a blank name", good.clone(), 422, "music name"),
    ] {
        let path = if what == "a blank name" {
            "/api/v1/music/..hidden"
        } else {
            "/api/v1/music/hold"
        };
        let (got, answer) = http_bytes(port, "PUT", path, ADMIN, &body);
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(got, status, "{what}: {answer}");
        assert!(answer.contains(reason), "{what}: {answer}");
    }
    // 200 MB announced: refused from its Content-Length, before it is read.
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "PUT /api/v1/music/hold HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: {}\r\n\r\n",
        200u64 << 20
    )
    .unwrap();
    conn.write_all(&[0u8; 65536]).unwrap();
    let mut answer = vec![0u8; 4096];
    let n = conn.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("MiB"), "{answer}");
    let (status, body) = http_bytes(port, "GET", "/api/v1/music/hold", VIEWER, b"");
    assert_eq!((status, body), (200, good), "the stored music stays");
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// Everything the API made survives a clean restart and kill -9.
#[test]
fn what_the_api_made_survives_sigterm_and_kill_9() {
    use serde_json::json;
    let server = with_viewer_and_admin();
    let port = server.admin;
    let admin = |method: &str, path: &str, body: serde_json::Value| {
        let (status, v) = call(port, method, path, ADMIN, body);
        assert!(status < 300, "{method} {path}: {status} {v}");
    };
    admin(
        "POST",
        "/api/v1/orbit-ranges",
        json!({ "name": "kept", "start": "*820", "end": "*829" }),
    );
    let _ = http_bytes(
        port,
        "PUT",
        "/api/v1/music/kept-music",
        ADMIN,
        &wav(5000, 0.2),
    );
    admin(
        "PUT",
        "/api/v1/orbits/*821",
        json!({ "name": "kept-vip", "capacity": 2, "music": "kept-music" }),
    );
    admin(
        "POST",
        "/api/v1/groups",
        json!({ "name": "kept-group", "members": ["sip:kim@127.0.0.1"], "destinations": ["*822"] }),
    );
    admin(
        "PATCH",
        "/api/v1/settings/defaults",
        json!({ "capacity": 4 }),
    );
    let check = |server: &Server, when: &str| {
        let port = server.admin;
        let orbit = get(port, "/api/v1/orbits/*821");
        assert_eq!(orbit["name"], "kept-vip", "{when}: {orbit}");
        assert_eq!(orbit["music"], "kept-music", "{when}");
        assert_eq!(get(port, "/api/v1/orbits/*823")["capacity"], 4, "{when}");
        assert_eq!(
            get(port, "/api/v1/orbits/*822")["group"],
            "kept-group",
            "{when}"
        );
        let (status, body) = http_bytes(port, "GET", "/api/v1/music/kept-music", VIEWER, b"");
        assert_eq!((status, body), (200, wav(5000, 0.2)), "{when}");
    };
    check(&server, "running");
    let server = server.restart(libc::SIGTERM);
    wait_log(&server, "admin API listening", 2);
    check(&server, "after SIGTERM");
    let server = server.restart(libc::SIGKILL);
    wait_log(&server, "admin API listening", 3);
    check(&server, "after kill -9");
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// A store left by the previous schema is migrated at start, keeping
/// what it holds; a file that is not SQLite, or a store where nothing can
/// be written, stops the start with a message that names the file.
#[test]
fn the_store_migrates_an_old_schema_and_refuses_what_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let mut old = callpark_server::store::Store::create_at_version(&path, 1).unwrap();
    old.apply(&[callpark_server::store::Change::Put(
        callpark_server::store::StoredObject {
            kind: callpark_server::store::ObjectKind::Range,
            key: "old".into(),
            body: r#"{"name":"old","start":"830","end":"831"}"#.into(),
        },
    )])
    .unwrap();
    drop(old);
    let server = Server::start_with(&format!(
        "[admin]\n[[admin.token]]\nrole = \"viewer\"\nsha256 = \"{}\"\n[store]\npath = \"{}\"\n",
        hash(VIEWER),
        path.display()
    ));
    wait_log(&server, "admin API listening", 1);
    assert!(
        server.log().contains("store schema migrated"),
        "{}",
        server.log()
    );
    assert_eq!(get(server.admin, "/api/v1/orbits/831")["range"], "old");
    let config = get(server.admin, "/api/v1/config");
    assert_eq!(
        config["schema_version"],
        callpark_server::store::SCHEMA_VERSION
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");

    for (store, says) in [
        ("junk.db", "not a database"),
        ("/proc/callpark.db", "/proc/callpark.db"),
    ] {
        let file = dir.path().join("park.toml");
        if store == "junk.db" {
            std::fs::write(
                dir.path().join(store),
                b"GIF89a and then some bytes that are not SQLite".repeat(100),
            )
            .unwrap();
        }
        std::fs::write(
            &file,
            format!("[server]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"\"\n[store]\npath = \"{store}\"\n"),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_callpark"))
            .args(["serve", "--config", file.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{store}: {err}");
        assert!(err.contains(says), "{store}: {err}");
        assert!(err.contains("store"), "{store}: {err}");
    }
    let junk = std::fs::read(dir.path().join("junk.db")).unwrap();
    assert!(junk.starts_with(b"GIF89a"), "the file is left as it was");
}

/// One request with a CSV body; returns (status, JSON answer).
fn import(port: u16, query: &str, csv: &str) -> (u16, serde_json::Value) {
    let (status, body) = http_bytes(
        port,
        "POST",
        &format!("/api/v1/imports{query}"),
        ADMIN,
        csv.as_bytes(),
    );
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// 1,000 rows of every kind of good and bad, each with exactly its
/// status; the job kept; an export imported again changes nothing;
/// 1,001 rows, a wrong cell count and bad UTF-8 refused whole.
#[test]
fn a_csv_of_1000_rows_gets_a_status_per_row_and_an_export_round_trips() {
    use serde_json::json;
    let server = with_viewer_and_admin();
    let port = server.admin;
    let (status, v) = call(
        port,
        "POST",
        "/api/v1/orbit-ranges",
        ADMIN,
        json!({ "name": "bulk", "start": "2000", "end": "2999" }),
    );
    assert_eq!(status, 201, "{v}");
    let mut csv = String::from(
        "action,number,name,enabled,capacity,recall_after,escape_key,ring_pattern,music,blf_state\n",
    );
    let mut expected = Vec::new();
    for i in 0..1000u32 {
        let n = 2000 + i;
        let (row, status, field) = match i % 10 {
            0 => (format!("update,{n},,,0,,,,,"), "refused", Some("capacity")),
            1 => (format!("update,{n},,,x,,,,,"), "refused", Some("capacity")),
            2 => (format!("update,{n},,,,,,,,"), "unchanged", None),
            3 => (
                format!("add,{n},desk-{i},true,2,60s,0,,,confirmed"),
                "applied",
                None,
            ),
            4 => (format!("update,{n},,,3,,,long-long,,"), "applied", None),
            5 => (format!("frobnicate,{n},,,,,,,,"), "refused", Some("action")),
            6 => (format!("add,7{i:03},,,,,,,,"), "applied", None),
            7 => (format!("update,9{i:03},,,,,,,,"), "refused", Some("number")),
            8 => (format!("update,{n},,,,,,,nope,"), "refused", Some("music")),
            // Deletes what the row six before it added.
            _ => (format!("delete,{},,,,,,,,", n - 6), "applied", None),
        };
        csv.push_str(&row);
        csv.push('\n');
        expected.push((i as u64 + 2, status, field));
    }
    let started = std::time::Instant::now();
    let (status, job) = import(port, "", &csv);
    eprintln!("1,000-row import, end to end: {:?}", started.elapsed());
    assert_eq!(status, 201, "{job}");
    assert_eq!(
        (
            &job["rows"],
            &job["applied"],
            &job["unchanged"],
            &job["refused"]
        ),
        (&json!(1000), &json!(400), &json!(100), &json!(500)),
        "{}",
        job["results"][0]
    );
    let results = job["results"].as_array().unwrap();
    for (row, (line, status, field)) in results.iter().zip(&expected) {
        assert_eq!(row["line"], *line, "{row}");
        assert_eq!(row["status"], *status, "{row}");
        assert_eq!(row["field"].as_str(), *field, "{row}");
    }
    assert_eq!(results[0]["reason"], "0 is not in 1..1000");
    // What the rows made, seen through the API.
    assert_eq!(get(port, "/api/v1/orbits/2004")["capacity"], 3);
    assert_eq!(get(port, "/api/v1/orbits/7006")["parked"], 0);
    assert!(
        get(port, "/api/v1/orbits/2003")["settings"].is_null(),
        "added, then deleted"
    );
    let again = get(port, &format!("/api/v1/imports/{}", job["id"]));
    assert_eq!(again["results"], job["results"]);

    // Export, import: nothing changes.
    let (status, export) = http_bytes(port, "GET", "/api/v1/exports/orbits.csv", VIEWER, b"");
    assert_eq!(status, 200);
    let export = String::from_utf8(export).unwrap();
    assert_eq!(
        export.lines().count(),
        1 + 100 + 100,
        "a header, the updates, the adds"
    );
    let (status, job) = import(port, "", &export);
    assert_eq!(status, 201, "{job}");
    assert_eq!(
        (&job["applied"], &job["unchanged"]),
        (&json!(0), &json!(200)),
        "{job}"
    );
    let (_, export_again) = http_bytes(port, "GET", "/api/v1/exports/orbits.csv", VIEWER, b"");
    assert_eq!(String::from_utf8(export_again).unwrap(), export);

    // A dry run reports and applies nothing.
    let (status, job) = import(
        port,
        "?dry_run=true",
        "action,number,capacity\nupdate,2014,5\n",
    );
    assert_eq!(
        (status, &job["applied"], &job["dry_run"]),
        (201, &json!(1), &json!(true)),
        "{job}"
    );
    assert_eq!(get(port, "/api/v1/orbits/2014")["capacity"], 3);

    // Refused whole, nothing applied.
    let mut big = String::from("action,number,capacity\n");
    for i in 0..1001 {
        big.push_str(&format!("update,{},9\n", 2000 + i % 1000));
    }
    for (what, body, says) in [
        ("1,001 rows", big.into_bytes(), "at most 1000"),
        (
            "a short row",
            b"action,number,capacity\nupdate,2014,9\nupdate,2024\n".to_vec(),
            "line 3",
        ),
        (
            "bad UTF-8",
            b"action,number,name\nupdate,2014,ok\nupdate,2024,caf\xe9\n".to_vec(),
            "UTF-8",
        ),
        (
            "no number column",
            b"action,orbit\nupdate,2014\n".to_vec(),
            "neither",
        ),
    ] {
        let (status, answer) = http_bytes(port, "POST", "/api/v1/imports", ADMIN, &body);
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(status, 422, "{what}: {answer}");
        assert!(answer.contains(says), "{what}: {answer}");
    }
    assert_eq!(
        get(port, "/api/v1/orbits/2014")["capacity"],
        3,
        "nothing applied"
    );

    // Groups, the same way.
    let (status, job) = import(
        port,
        "",
        "action,name,members,destinations,recall,hunt_group\nadd,bulk-team,sip:a@127.0.0.1;sip:b@127.0.0.1,2001;2002,parker-then-hunt-group,sip:desk@127.0.0.1\nadd,empty-team,,,,\n",
    );
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["results"][0]["status"], "applied", "{job}");
    assert_eq!(job["results"][1]["status"], "refused", "{job}");
    assert_eq!(get(port, "/api/v1/orbits/2002")["group"], "bulk-team");
    let (_, groups) = http_bytes(port, "GET", "/api/v1/exports/groups.csv", VIEWER, b"");
    let (status, job) = import(port, "", &String::from_utf8(groups).unwrap());
    assert_eq!((status, &job["unchanged"]), (201, &json!(1)), "{job}");
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

fn plugin(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/{name}.wasm", callpark_policy::PLUGIN_BUILD_DIR)).unwrap()
}

/// Plugins through the API: params checked by the plugin before they are
/// kept, a `.wasm` loaded on the file-swap path or refused with the reason
/// while the previous one serves, counters, and the upload kept across a
/// restart.
#[test]
fn plugins_are_swapped_and_their_params_set_through_the_api() {
    use serde_json::json;
    let server = with_viewer_and_admin();
    let port = server.admin;
    let slot = |port| get(port, "/api/v1/plugins/allocator");
    let before = slot(port);
    assert_eq!(before["source"]["kind"], "default", "{before}");
    let generation = before["loaded"]["generation"].as_u64().unwrap();
    let slots = get(port, "/api/v1/plugins");
    assert_eq!(slots.as_array().unwrap().len(), 4, "{slots}");
    // The events slot, with no plugin configured: nothing serves it.
    let events = get(port, "/api/v1/plugins/events");
    assert_eq!(events["source"]["kind"], "none", "{events}");
    assert!(events["loaded"].is_null(), "{events}");
    assert_eq!(before["loaded"]["wit_version"], "0.2.0", "{before}");

    // Params: the plugin's own check-params judges them.
    let (status, v) = call(
        port,
        "PUT",
        "/api/v1/plugins/allocator/params",
        ADMIN,
        json!({ "strategy": "sideways" }),
    );
    assert_eq!(status, 422, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("check-params"),
        "{v}"
    );
    let (status, v) = call(
        port,
        "PUT",
        "/api/v1/plugins/allocator/params",
        VIEWER,
        json!({ "strategy": "next" }),
    );
    assert_eq!(status, 403, "{v}");

    // A wasm of the wrong world, or not wasm at all: refused, the old
    // plugin serving still.
    for (what, wasm, says) in [
        (
            "the wrong world",
            plugin("fixture_wrong_world"),
            "previous plugin keeps serving",
        ),
        (
            "not wasm",
            b"\0asm but not really".to_vec(),
            "previous plugin keeps serving",
        ),
        // The VIP allocator needs its params, which the slot lacks yet.
        ("params missing", plugin("vip_allocator"), "vip"),
    ] {
        let (status, answer) = http_bytes(port, "PUT", "/api/v1/plugins/allocator", ADMIN, &wasm);
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(status, 422, "{what}: {answer}");
        assert!(answer.contains(says), "{what}: {answer}");
    }
    assert_eq!(
        slot(port)["loaded"]["generation"],
        generation,
        "nothing swapped"
    );

    let (status, v) = call(
        port,
        "PUT",
        "/api/v1/plugins/allocator/params",
        ADMIN,
        json!({ "vip_domains": "vip.example.com", "vip_orbits": "703" }),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"]["source"]["kind"], "store");
    wait_log(&server, "plugin swapped in", 4);
    let (status, answer) = http_bytes(
        port,
        "PUT",
        "/api/v1/plugins/allocator",
        ADMIN,
        &plugin("vip_allocator"),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let now = slot(port);
    assert_eq!(now["source"]["kind"], "store", "{now}");
    assert_eq!(now["loaded"]["label"], "store:allocator");
    assert!(now["loaded"]["generation"].as_u64().unwrap() > generation);

    // It decides: a park by group code reaches the allocator.
    let (_sip, _rtp) = park(&server, "*68", "plugin1", "sip:parker@127.0.0.1");
    let stats = slot(port)["stats"].clone();
    assert!(stats["calls"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["decision_p99_us"].is_u64(), "{stats}");

    // Kept across a restart.
    let server = server.restart(libc::SIGTERM);
    wait_log(&server, "admin API listening", 2);
    let port = server.admin;
    let after = slot(port);
    assert_eq!(after["loaded"]["label"], "store:allocator", "{after}");
    assert_eq!(after["loaded"]["digest"], now["loaded"]["digest"]);
    assert_eq!(
        get(port, "/api/v1/plugins/allocator/params")["value"]["vip_orbits"],
        "703"
    );
    // Back to the embedded default.
    let (status, v) = call(
        port,
        "DELETE",
        "/api/v1/plugins/allocator",
        ADMIN,
        json!(null),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["source"]["kind"], "default", "{v}");
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// `callpark ctl` with a token in CALLPARK_TOKEN: (exit code, stdout, stderr).
fn ctl(port: u16, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_callpark"));
    cmd.arg("ctl")
        .arg("--server")
        .arg(format!("http://127.0.0.1:{port}"))
        .args(["--token-file", "/nonexistent/admin-token"])
        .args(args)
        .env_remove("CALLPARK_TOKEN");
    if let Some(t) = token {
        cmd.env("CALLPARK_TOKEN", t);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The CLI over the API: tables for people, JSON for scripts, and exit
/// codes that say what failed.
#[test]
fn ctl_administers_the_server_with_tables_json_and_exit_codes() {
    let server = with_viewer_and_admin();
    let port = server.admin;
    let admin = |args: &[&str]| ctl(port, Some(ADMIN), args);

    let (code, _, err) = ctl(port, None, &["orbits", "list"]);
    assert_eq!(code, 3, "no token: {err}");
    let (code, _, err) = ctl(
        port,
        Some(VIEWER),
        &["ranges", "add", "x", "start=800", "end=801"],
    );
    assert_eq!(code, 3, "a viewer may not write: {err}");
    assert!(err.contains("403"), "{err}");
    let (code, out, err) = ctl(1, Some(ADMIN), &["orbits", "list"]);
    assert_eq!(code, 8, "unreachable: {out}{err}");

    let (code, out, err) = admin(&[
        "--dry-run",
        "ranges",
        "add",
        "sales",
        "start=800",
        "end=809",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dry run") && out.contains("+10"), "{out}");
    let (code, out, err) = admin(&["ranges", "add", "sales", "start=800", "end=809"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("applied: orbits +10"), "{out}");
    let (code, _, err) = admin(&[
        "orbits",
        "set",
        "801",
        "capacity=3",
        "name=vip",
        "escape_key=0",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = admin(&["orbits", "list"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("NUMBER"), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("801 "))
        .expect("orbit 801");
    assert!(row.contains("vip") && row.contains("sales"), "{row}");
    let (code, out, _) = admin(&["--json", "orbits", "show", "801"]);
    assert_eq!(code, 0);
    let orbit: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&orbit["capacity"], &orbit["escape_key"]),
        (&serde_json::json!(3), &serde_json::json!("0"))
    );

    let (code, _, err) = admin(&["orbits", "set", "801", "capacity=0"]);
    assert_eq!(code, 6, "refused: {err}");
    assert!(err.contains("capacity"), "{err}");
    let (code, _, err) = admin(&["ranges", "rm", "main"]);
    assert_eq!(code, 5, "the file owns it: {err}");
    let (code, _, err) = admin(&["groups", "show", "nobody"]);
    assert_eq!(code, 4, "{err}");
    let (code, _, err) = admin(&["orbits", "set", "801"]);
    assert_eq!(code, 2, "usage: {err}");

    // Import with the per-row report; a refused row is exit 6.
    let csv = server.dir.path().join("orbits.csv");
    std::fs::write(
        &csv,
        "action,number,capacity\nupdate,802,2\nupdate,803,zero\n",
    )
    .unwrap();
    let (code, out, _) = admin(&["import", csv.to_str().unwrap()]);
    assert_eq!(code, 6, "{out}");
    assert!(out.contains("applied") && out.contains("refused"), "{out}");
    assert!(
        out.contains("2 rows, 1 applied, 0 unchanged, 1 refused"),
        "{out}"
    );
    let (code, out, _) = admin(&["export", "orbits"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("action,number,"), "{out}");
    assert!(out.contains("update,802,"), "{out}");

    // Music and settings.
    let wav_file = server.dir.path().join("hold.wav");
    std::fs::write(&wav_file, wav(4000, 0.2)).unwrap();
    let (code, _, err) = admin(&["music", "put", "hold", wav_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = admin(&["music", "list"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.starts_with("hold ")), "{out}");
    let (code, out, err) = admin(&["settings", "recall", "max_attempts=3"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("max_attempts = 3"), "{out}");
    let (code, out, _) = admin(&["plugins"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("allocator") && out.contains("dialing"),
        "{out}"
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}
