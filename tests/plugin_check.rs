//! `callpark plugin check` and `callpark check`, run as a user runs them:
//! the real binary on the real plugin files.

use std::process::Command;

use callpark_policy::PLUGIN_BUILD_DIR;

fn callpark(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callpark"))
        .args(args)
        .output()
        .expect("run callpark");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn wasm(name: &str) -> String {
    format!("{PLUGIN_BUILD_DIR}/{name}.wasm")
}

#[test]
fn default_plugins_and_the_example_pass() {
    for (name, world) in [
        ("callpark_allocator", "allocator-plugin"),
        ("callpark_recall", "recall-plugin"),
        ("callpark_dialing", "dialing-plugin"),
    ] {
        let (ok, out) = callpark(&["plugin", "check", &wasm(name)]);
        assert!(ok, "{name}:\n{out}");
        assert!(out.contains(&format!("implements: {world}")), "{out}");
        assert!(out.contains("PASS"), "{out}");
        assert!(!out.contains("FAIL"), "{out}");
    }
    let (ok, out) = callpark(&[
        "plugin",
        "check",
        &wasm("vip_allocator"),
        "--params",
        "vip_domains=bigcustomer.com",
        "vip_orbits=745-750",
    ]);
    assert!(ok, "{out}");
    // One line per case: eleven allocator cases and check-params.
    assert_eq!(
        out.lines().filter(|l| l.contains(" ok ")).count(),
        12,
        "{out}"
    );
}

#[test]
fn params_reach_check_params() {
    let (ok, out) = callpark(&[
        "plugin",
        "check",
        &wasm("callpark_allocator"),
        "--params",
        "strategy=lifo",
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL check-params: strategy `lifo` is not one of first, next, random"),
        "{out}"
    );
    let (ok, out) = callpark(&["plugin", "check", &wasm("vip_allocator")]);
    assert!(!ok, "{out}");
    assert!(out.contains("vip_domains is required"), "{out}");
}

#[test]
fn misbehaving_fixtures_fail_with_a_clear_message() {
    for (name, expected) in [
        (
            "fixture_spin",
            "FAIL default lot of 50 orbits, every third taken: timed out",
        ),
        (
            "fixture_hog",
            "FAIL default lot of 50 orbits, every third taken: trapped",
        ),
        (
            "fixture_panic",
            "FAIL default lot of 50 orbits, every third taken: trapped",
        ),
        (
            "fixture_rogue_orbit",
            "answer breaks the rules: orbit \"999\" is not among the candidates",
        ),
        (
            "fixture_wrong_world",
            "implements: none of the callpark:policy@0.1.0 worlds",
        ),
        (
            "fixture_incompatible_version",
            "imports something the host does not provide",
        ),
    ] {
        let (ok, out) = callpark(&["plugin", "check", &wasm(name)]);
        assert!(!ok, "{name} passed:\n{out}");
        assert!(
            out.contains(expected),
            "{name}: expected {expected:?} in\n{out}"
        );
        assert!(
            out.lines().last().is_some_and(|l| l.starts_with("FAIL")),
            "{out}"
        );
    }
    let (ok, out) = callpark(&["plugin", "check", "/nonexistent/plugin.wasm"]);
    assert!(!ok);
    assert!(out.contains("reading /nonexistent/plugin.wasm"), "{out}");
}

#[test]
fn help_documents_every_command() {
    let (ok, out) = callpark(&["--help"]);
    assert!(ok, "{out}");
    for command in ["plugin", "check", "default-config"] {
        assert!(out.contains(command), "{command} missing from:\n{out}");
    }
    let (ok, out) = callpark(&["plugin", "--help"]);
    assert!(ok && out.contains("check"), "{out}");
    let (ok, out) = callpark(&["plugin", "check", "--help"]);
    assert!(ok && out.contains("--params"), "{out}");
}

#[test]
fn config_check_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    let (_, default) = callpark(&["default-config"]);
    std::fs::write(&good, default).unwrap();
    let (ok, out) = callpark(&["check", "--config", good.to_str().unwrap()]);
    assert!(ok, "{out}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[recall]\noption = \"parker-only\"\nmax_attempts = 0\n",
    )
    .unwrap();
    let (ok, out) = callpark(&["check", "--config", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "{}:3: recall.max_attempts: 0 is not in 1..10",
            bad.display()
        )),
        "{out}"
    );
}

/// `check` refuses what `serve` refuses: a plugin file that is not there,
/// params the plugin's check-params refuses, an outbound proxy that is not
/// an IP, and music that cannot be read; and it says so in one sentence.
#[test]
fn config_check_runs_the_checks_serve_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[plugins]\nallocator = \"missing.wasm\"\n",
            "plugins.allocator: cannot read",
        ),
        (
            "[plugins.params.allocator]\nstrategy = \"bogus\"\n",
            "strategy `bogus` is not one of first, next, random",
        ),
        (
            "[server]\noutbound_proxy = \"sip:proxy.example.com\"\n",
            ":2: server.outbound_proxy: `sip:proxy.example.com` is not a sip: URI with an IP address",
        ),
        (
            "[media]\nmusic = \"nothing-here.wav\"\n",
            "media.music: reading music",
        ),
        (
            "[server]\nlisten = [\n  \"127.0.0.1:5060\"\ndomain = \"x\"\n",
            ":2: server.listen: `[` is never closed",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let (ok, out) = callpark(&["check", "--config", path.to_str().unwrap()]);
        assert!(!ok, "{text} passed:\n{out}");
        assert!(
            out.contains(expected),
            "{text}: expected {expected:?} in\n{out}"
        );
        assert!(!out.contains("keeps serving"), "{out}");
    }
    // A file that is not there is named, with no line or field made up.
    let missing = dir.path().join("missing.toml");
    let (ok, out) = callpark(&["check", "--config", missing.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        out.starts_with(&format!("{}: cannot read the file", missing.display())),
        "{out}"
    );
    // `serve` says the same about the plugin and does not come up.
    let path = dir.path().join("case0.toml");
    let (ok, out) = callpark(&["serve", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("plugins.allocator: cannot read"), "{out}");
    assert!(out.contains("the server does not start"), "{out}");
    assert!(!out.contains("keeps serving"), "{out}");
}

/// What a newcomer reads first: `--help` says what the program is, and a
/// plugin whose params are refused says its cases did not run.
#[test]
fn help_and_summaries_are_written_for_their_reader() {
    let (_, out) = callpark(&["--help"]);
    assert!(out.starts_with("callpark: a SIP Call Park server"), "{out}");
    assert!(!out.contains("sockets, clock"), "{out}");
    let (ok, out) = callpark(&["plugin", "check", &wasm("vip_allocator")]);
    assert!(!ok);
    let last = out.lines().last().unwrap_or("");
    assert!(
        last.starts_with("FAIL: check-params refused the parameters") && !last.contains("of 0"),
        "{out}"
    );
    // The default configuration shows how to write orbits and groups.
    let (_, default) = callpark(&["default-config"]);
    for key in [
        "# [[orbit]]",
        "# [[group]]",
        "ring_pattern",
        "use_members_as_destinations",
    ] {
        assert!(default.contains(key), "{key} missing from default-config");
    }
}
