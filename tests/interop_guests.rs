//! Plugins written in Python (componentize-py) and JavaScript
//! (componentize-js) from the same WIT as the Rust ones, in the real
//! `callpark serve` binary: swapped in live while calls are parked, their
//! decisions taken, a per-slot memory cap that fits them, and a misbehaving
//! Python plugin answered by the built-in policy like a Rust one; and the
//! allocator swapped from Rust to Python to JavaScript while SIPp parks and
//! retrieves calls.
//!
//! The components are built by `plugins/build-guests.sh` into
//! `target/guest-plugins/` (it needs componentize-py and Node.js), so these
//! tests are ignored by a plain `cargo test`; `.ci/run` builds the guests and
//! runs them with `--ignored`.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Server, admin_token, free_port, get_json, park, scenario, wait_log};

const TOKEN: &str = "cpk_interop-guests-admin";

fn guest(name: &str) -> String {
    let path = format!(
        "{}/../../target/guest-plugins/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    );
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: run `bash plugins/build-guests.sh` (.ci/run does)"
    );
    path
}

const LOT: &str = "[[range]]\nname = \"main\"\nstart = \"750\"\nend = \"769\"\n";

/// Rust, then Python (allocator) and JavaScript (recall) swapped in with
/// SIGHUP while a call stays parked; the Python allocator keeps a
/// department in its block; each generation is in the log and the API.
#[test]
#[ignore = "needs the Python and JavaScript guests (plugins/build-guests.sh); .ci/run builds them"]
fn python_and_javascript_plugins_swap_in_live_and_decide() {
    // The slots' limits are fixed at start, so they are there from the
    // first; the plugins come with the reload.
    let limits = "[plugins.limits.allocator]\nmemory = \"24MiB\"\ntimeout = \"50ms\"\n\
                  [plugins.limits.recall]\nmemory = \"24MiB\"\ntimeout = \"50ms\"\n";
    let server = Server::start_lot("", &format!("{LOT}{limits}{}", admin_token(TOKEN)));
    wait_log(&server, "admin API listening", 1);
    let (_a, _ra) = park(&server, "*68", "rust-1", "sip:ann@other.example.com");
    wait_log(&server, "event=\"parked\"", 1);

    let config = std::fs::read_to_string(server.config_path()).unwrap();
    std::fs::write(
        server.config_path(),
        format!(
            "{config}\n[plugins]\nallocator = \"{}\"\nrecall = \"{}\"\n\
             [plugins.params.allocator]\ndepartments = \"sales.example.com=760-764\"\n\
             [plugins.params.recall]\nafter_hours = \"sip:night@127.0.0.1\"\n",
            guest("department_allocator_py"),
            guest("after_hours_recall_js")
        ),
    )
    .unwrap();
    server.signal(libc::SIGHUP);
    // Start-up swapped in 3 embedded plugins; the reload swaps in 2 more,
    // compiling 30 MB of components (bounded: two minutes).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while server.log().matches("plugin swapped in").count() < 5 {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let log = server.log();
    assert!(log.contains("department_allocator_py.wasm"), "{log}");
    assert!(log.contains("after_hours_recall_js.wasm"), "{log}");
    let allocator = get_json(server.admin, "/api/v1/plugins/allocator", TOKEN);
    assert_eq!(allocator["loaded"]["generation"], 2, "{allocator}");
    let recall = get_json(server.admin, "/api/v1/plugins/recall", TOKEN);
    assert!(
        recall["loaded"]["label"]
            .as_str()
            .unwrap()
            .ends_with("after_hours_recall_js.wasm"),
        "{recall}"
    );

    // The Python allocator decides: sales lands in its block, others not.
    let (_b, _rb) = park(&server, "*68", "py-sales", "sip:sam@sales.example.com");
    let (_c, _rc) = park(&server, "*68", "py-other", "sip:oz@other.example.com");
    wait_log(&server, "event=\"parked\"", 3);
    let log = server.log();
    let orbit_of = |call_id: &str| {
        log.lines()
            .find(|l| l.contains("event=\"parked\"") && l.contains(&format!("call_id={call_id}")))
            .and_then(|l| l.split("orbit=").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("{call_id} not parked:\n{log}"))
            .to_string()
    };
    assert_eq!(orbit_of("py-sales"), "760", "the sales block");
    let other: u32 = orbit_of("py-other").parse().unwrap();
    assert!(
        !(760..=764).contains(&other),
        "outside every block: {other}"
    );
    assert_eq!(orbit_of("rust-1"), "750", "parked by the Rust allocator");
    let stats = get_json(server.admin, "/api/v1/plugins/allocator", TOKEN);
    assert!(stats["stats"]["calls"].as_u64().unwrap() >= 2, "{stats}");
    assert_eq!(stats["stats"]["fallbacks"], 0, "{stats}");
    // The call parked under the Rust generation is still there.
    let orbits = get_json(server.admin, "/api/v1/orbits/750", TOKEN);
    assert_eq!(orbits["parked"], 1, "{orbits}");
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// A Python plugin that fills memory past its slot's cap, or loops past its
/// budget, is answered by the built-in policy: every park still gets its
/// 200, the failures are counted, and the server lives on.
#[test]
#[ignore = "needs the Python and JavaScript guests (plugins/build-guests.sh); .ci/run builds them"]
fn a_misbehaving_python_plugin_falls_back_like_a_rust_one() {
    let server = Server::start_lot(
        "",
        &format!(
            "{LOT}[plugins]\nallocator = \"{}\"\n[plugins.limits.allocator]\nmemory = \"24MiB\"\ntimeout = \"20ms\"\n{}",
            guest("misbehaving_py"),
            admin_token(TOKEN)
        ),
    );
    wait_log(&server, "admin API listening", 1);
    let (_a, _ra) = park(&server, "*68", "mis-hog", "sip:hog@127.0.0.1");
    let (_b, _rb) = park(&server, "*68", "mis-spin", "sip:spin@127.0.0.1");
    let (_c, _rc) = park(&server, "*68", "mis-fine", "sip:fine@127.0.0.1");
    wait_log(&server, "event=\"parked\"", 3);
    wait_log(&server, "plugin failed; the built-in policy answers", 2);
    let stats = get_json(server.admin, "/api/v1/plugins/allocator", TOKEN)["stats"].clone();
    assert_eq!(stats["fallbacks"], 2, "{stats}");
    assert!(
        stats["traps"].as_u64().unwrap() + stats["timeouts"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}

/// SIPp running `calls` calls of a scenario at `rate` a second.
fn sipp_load(server: &Server, name: &str, service: &str, calls: usize, rate: &str) -> Command {
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
        &calls.to_string(),
        "-r",
        rate,
        "-l",
        "40",
        "-nostdin",
        // Bounded: the whole run, and every call.
        "-timeout",
        "400",
        "-timeout_error",
        "-recv_timeout",
        "30000",
        "-set",
        "rtp_port",
        &free_port().to_string(),
        "-set",
        "codecs",
        "0",
    ])
    .current_dir(server.dir.path())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

fn parked_orbits(log: &str) -> Vec<u32> {
    log.lines()
        .filter(|l| l.contains("event=\"parked\""))
        .filter_map(|l| {
            l.split("orbit=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// The allocator goes from the embedded Rust one to the Python one to the
/// JavaScript one by SIGHUP while SIPp parks calls and another SIPp
/// retrieves them (each retrieve hangs up, and the server hangs up the
/// parked caller): not one call fails, and each generation is in the log
/// and decided parks.
#[test]
#[ignore = "needs SIPp and the Python and JavaScript guests (plugins/build-guests.sh); .ci/run has both"]
fn the_allocator_swaps_rust_python_javascript_while_sipp_parks_and_retrieves() {
    assert!(
        std::path::Path::new("/usr/bin/sipp").exists(),
        "SIPp is not installed: apt-get install -y sip-tester (.ci/run does)"
    );
    let limits = "[plugins.limits.allocator]\nmemory = \"24MiB\"\ntimeout = \"50ms\"\n";
    let server = Server::start_lot("", &format!("{LOT}{limits}{}", admin_token(TOKEN)));
    wait_log(&server, "admin API listening", 1);
    // Parks at 3 a second, each held until a retrieve takes it; the
    // retrieves (`*88`: the oldest call anywhere) follow at the same rate
    // three seconds behind, so about nine calls stay parked of 20 orbits.
    // The load runs until the last generation has decided parks, however
    // long the compiles take (SIGUSR1 stops a SIPp placing calls); at most
    // this many calls.
    const CALLS: usize = 900;
    let parks = sipp_load(&server, "park_until_bye", "*68", CALLS, "3")
        .spawn()
        .expect("sipp");
    wait_log(&server, "event=\"parked\"", 9);
    let retrieves = sipp_load(&server, "retrieve", "*88", CALLS, "3")
        .args(["-d", "200"])
        .spawn()
        .expect("sipp");

    let config = std::fs::read_to_string(server.config_path()).unwrap();
    let mut swapped = Vec::new();
    for (n, plugin, params) in [
        (
            4,
            "department_allocator_py",
            "departments = \"sales.example.com=760-764\"",
        ),
        (5, "top_down_allocator_js", "keep_free = \"0\""),
    ] {
        // A few decisions by the generation before this one first.
        let before = parked_orbits(&server.log()).len();
        wait_log(&server, "event=\"parked\"", before + 6);
        std::fs::write(
            server.config_path(),
            format!(
                "{config}\n[plugins]\nallocator = \"{}\"\n[plugins.params.allocator]\n{params}\n",
                guest(plugin)
            ),
        )
        .unwrap();
        server.signal(libc::SIGHUP);
        // Compiling a 12-18 MB component takes seconds in a debug build;
        // the parks go on meanwhile (bounded: two minutes).
        let deadline = Instant::now() + Duration::from_secs(120);
        while server.log().matches("plugin swapped in").count() < n {
            assert!(Instant::now() < deadline, "{}", server.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        swapped.push(parked_orbits(&server.log()).len());
    }
    // Six parks by the JavaScript generation, then no new calls: parks
    // first, retrieves a second later (nine calls are parked, three
    // retrieves a second), then the calls still parked are retrieved.
    wait_log(&server, "event=\"parked\"", swapped[1] + 6);
    let soft_stop = |child: &std::process::Child| {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
    };
    soft_stop(&parks);
    std::thread::sleep(Duration::from_secs(1));
    soft_stop(&retrieves);
    let retrieves = retrieves.wait_with_output().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let log = server.log();
    let parked = log.matches("event=\"parked\"").count();
    let left = parked - log.matches("event=\"retrieved\"").count();
    let last = sipp_load(&server, "retrieve", "*88", left.max(1), "10")
        .args(["-d", "200"])
        .output()
        .expect("sipp");
    let parks = parks.wait_with_output().unwrap();
    let log = server.log();
    let tail = |out: &std::process::Output| {
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    };
    assert!(parks.status.success(), "parks: {}\n{log}", tail(&parks));
    assert!(
        retrieves.status.success(),
        "retrieves: {}\n{log}",
        tail(&retrieves)
    );
    assert!(left > 0, "every call was retrieved before the last run");
    assert!(
        last.status.success(),
        "last retrieves: {}\n{log}",
        tail(&last)
    );
    assert_eq!(log.matches("event=\"parked\"").count(), parked, "{log}");
    assert_eq!(log.matches("event=\"retrieved\"").count(), parked, "{log}");
    println!("{parked} calls parked and retrieved, none failed");
    // Each generation in the log, in order.
    for (generation, plugin) in [
        (2, "department_allocator_py.wasm"),
        (3, "top_down_allocator_js.wasm"),
    ] {
        assert!(
            log.lines().any(|l| l.contains("plugin swapped in")
                && l.contains(plugin)
                && l.contains(&format!("generation={generation}"))
                && l.contains(&format!("replaced=Some({})", generation - 1))),
            "{plugin} as generation {generation}:\n{log}"
        );
    }
    // Each allocator decided parks. Rust and Python hunt from the bottom
    // (Python skips the sales block); JavaScript from the top, where a
    // call Python parked may still hold 769.
    let orbits = parked_orbits(&log);
    let (rust, rest) = orbits.split_at(swapped[0]);
    let (python, js) = rest.split_at(swapped[1] - swapped[0]);
    println!(
        "parks decided: {} by Rust, {} by Python, {} by JavaScript",
        rust.len(),
        python.len(),
        js.len()
    );
    assert!(rust.iter().all(|o| *o < 760), "Rust: {rust:?}");
    assert!(
        python.iter().all(|o| !(760..=764).contains(o)),
        "Python: {python:?}"
    );
    // About nine calls are parked at a time, so the highest free orbit is
    // above every orbit the bottom-up Rust allocator handed out.
    assert!(
        js.iter().max() > rust.iter().max(),
        "JavaScript: {js:?}, Rust: {rust:?}"
    );
    let stats = get_json(server.admin, "/api/v1/plugins/allocator", TOKEN);
    assert_eq!(stats["loaded"]["generation"], 3, "{stats}");
    assert_eq!(stats["stats"]["fallbacks"], 0, "{stats}");
    assert!(stats["stats"]["calls"].as_u64().unwrap() >= 1, "{stats}");
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}
