//! SIPVicious `svwar` (PyPI `sipvicious`, the scanner behind the review's
//! finding) against the real binary: from a trusted address it lists the
//! orbits (the control: the scan works), from an untrusted one it finds
//! nothing, whatever method it scans with.
//!
//! Needs `sipvicious_svwar` on PATH: ignored by a plain `cargo test`, run
//! by `.ci/run` (which installs sipvicious) as
//! `cargo test --test interop_sipvicious -- --ignored`.

mod support;

use std::process::Command;

use support::Server;

/// Runs svwar over extensions 690-760; its whole output.
fn svwar(server: &Server, method: &str, force: bool) -> String {
    let mut cmd = Command::new("sipvicious_svwar");
    cmd.args(["-m", method, "-e", "690-760", "-p"])
        .arg(server.sip.to_string())
        .args(["--maximumtime", "10"]);
    if force {
        cmd.arg("--force");
    }
    let out = cmd
        .arg("127.0.0.1")
        .output()
        .expect("run sipvicious_svwar (pip install sipvicious)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The orbit extensions svwar reports as existing.
fn orbits_found(output: &str) -> Vec<u32> {
    numbers_found(output)
        .into_iter()
        .filter(|n| (701..=750).contains(n))
        .collect()
}

/// Every extension svwar reports as existing.
fn numbers_found(output: &str) -> Vec<u32> {
    let mut found: Vec<u32> = output
        .lines()
        .filter_map(|l| {
            let cell = l.strip_prefix('|')?.split('|').next()?.trim();
            cell.parse::<u32>().ok()
        })
        .chain(output.lines().filter_map(|l| {
            l.split("extension '")
                .nth(1)?
                .split('\'')
                .next()?
                .parse::<u32>()
                .ok()
        }))
        .collect();
    found.sort();
    found.dedup();
    found
}

#[test]
#[ignore = "needs sipvicious (PyPI); .ci/run installs it"]
fn svwar_enumerates_no_orbit_from_an_untrusted_address() {
    let lot = "[[range]]\nname = \"main\"\nstart = \"701\"\nend = \"750\"\n";
    // The control: 127.0.0.1 trusted (the default), the scan finds orbits.
    let server = Server::start_lot("", lot);
    let found = orbits_found(&svwar(&server, "INVITE", false));
    assert!(
        found.len() >= 40,
        "svwar should see the orbits when trusted: {found:?}"
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");

    // Nothing trusted: svwar's source (127.0.0.1) is a stranger. Its rate
    // is raised so that the scan meets the answers themselves: past the
    // default burst every number, orbit or not, gets the same 503, which
    // svwar reports as "probably exists" by the order it scans in.
    let server = Server::start_lot(
        "",
        &format!(
            "{lot}[security]\ntrusted = []\nrate_per_source = 10000\nburst_per_source = 10000\n"
        ),
    );
    for (method, force) in [
        ("INVITE", false),
        ("INVITE", true),
        ("REGISTER", false),
        ("OPTIONS", true),
    ] {
        let out = svwar(&server, method, force);
        let found = orbits_found(&out);
        assert!(
            found.is_empty(),
            "{method} (force {force}) found orbits {found:?}:\n{}",
            &out[out.len().saturating_sub(2_000)..]
        );
    }
    assert!(
        !server.log().contains("event=\"parked\""),
        "{}",
        server.log()
    );
    let (ok, log) = server.stop();
    assert!(ok, "{log}");

    // At the default rate the scan runs past the burst: what svwar then
    // reports follows the order it scans in, orbits and numbers past the
    // lot alike, so it tells nothing about the orbits.
    let server = Server::start_lot("", &format!("{lot}[security]\ntrusted = []\n"));
    let out = svwar(&server, "OPTIONS", true);
    let found = numbers_found(&out);
    // (The tokens that come back meanwhile let a few through: which ones
    // is timing, so the check is that most numbers past the lot are
    // "found" too whenever orbits are.)
    if found.iter().any(|n| (701..=750).contains(n)) {
        let past_the_lot = (751..=760).filter(|n| found.contains(n)).count();
        assert!(
            past_the_lot >= 5,
            "orbits stand out from the numbers past the lot: {found:?}"
        );
    }
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}
