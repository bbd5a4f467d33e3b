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
            "implements: none of the callpark:policy worlds",
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

/// Writes a case file for one test.
fn case_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn callpark_code(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callpark"))
        .args(args)
        .output()
        .expect("run callpark");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn plugin_test_runs_an_integrators_cases_one_line_each() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../plugins/examples/vip-allocator/cases.toml"
    );
    let (code, out) = callpark_code(&["plugin", "test", &wasm("vip_allocator"), example]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok   ")).count(),
        5,
        "{out}"
    );
    assert!(out.contains("PASS: 5 cases"), "{out}");

    // The same example with one expectation wrong, and a case for a world
    // the plugin does not implement: each fails on its own line, exit 1.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example).unwrap().replace(
        "expect = { orbit = \"791\" }",
        "expect = { orbit = \"792\" }",
    ) + "\n[[dialing]]\nname = \"a feature code\"\ndialed = \"*68701\"\n";
    let wrong = case_file(&dir, "wrong.toml", &text);
    let (code, out) = callpark_code(&["plugin", "test", &wasm("vip_allocator"), &wrong]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "FAIL allocator-plugin  a VIP gets the first free orbit of the reserved block: expected Orbit(\"792\"), got Orbit(\"791\")"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "FAIL dialing-plugin    a feature code: the plugin does not implement dialing-plugin"
        ),
        "{out}"
    );
    assert!(out.contains("FAIL: 2 of 6 cases did not pass"), "{out}");

    // Params the plugin's check-params refuses fail the world and run none
    // of its cases; `--params` lies under the file's `[params]`.
    let refused = case_file(
        &dir,
        "refused.toml",
        "[params]\nvip_orbits = \"9-1\"\n\n[[allocator]]\nname = \"x\"\ntarget = { orbit = \"701\" }\n",
    );
    let (code, out) = callpark_code(&[
        "plugin",
        "test",
        &wasm("vip_allocator"),
        &refused,
        "--params",
        "vip_domains=example.com",
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL allocator-plugin  check-params: vip_orbits: range `9-1` runs backwards"),
        "{out}"
    );
    assert!(!out.contains("ok   "), "{out}");
}

#[test]
fn plugin_test_expects_failures_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    // More than 16 candidates make the fixtures misbehave.
    let lot = "target = \"default-lot\"\ncandidates = { first = 701, count = 20 }\n";
    let small = "target = \"default-lot\"\ncandidates = { first = 701, count = 2 }\n";
    for (fixture, kind, wrong_kind) in [
        ("fixture_spin", "timeout", "trap"),
        ("fixture_panic", "trap", "timeout"),
        ("fixture_hog", "trap", "invalid"),
        ("fixture_rogue_orbit", "invalid", "trap"),
    ] {
        let text = format!(
            "[[allocator]]\nname = \"misbehaves\"\n{lot}expect = {{ failure = \"{kind}\" }}\n\n\
             [[allocator]]\nname = \"any failure\"\n{lot}expect = {{ failure = \"any\" }}\n\n\
             [[allocator]]\nname = \"behaves on a small lot\"\n{small}expect = {{ orbit = \"701\" }}\n"
        );
        let file = case_file(&dir, &format!("{fixture}.toml"), &text);
        let (code, out) = callpark_code(&["plugin", "test", &wasm(fixture), &file]);
        assert_eq!(code, Some(0), "{fixture}:\n{out}");
        assert!(out.contains("failed as expected"), "{fixture}:\n{out}");

        let text = format!(
            "[[allocator]]\nname = \"misbehaves\"\n{lot}expect = {{ failure = \"{wrong_kind}\" }}\n\n\
             [[allocator]]\nname = \"expected to fail but answers\"\n{small}expect = {{ failure = \"any\" }}\n"
        );
        let file = case_file(&dir, &format!("{fixture}-wrong.toml"), &text);
        let (code, out) = callpark_code(&["plugin", "test", &wasm(fixture), &file]);
        assert_eq!(code, Some(1), "{fixture}:\n{out}");
        assert!(
            out.contains("FAIL allocator-plugin  misbehaves: expected a"),
            "{fixture}:\n{out}"
        );
        assert!(
            out.contains("FAIL allocator-plugin  expected to fail but answers: expected a failure of any kind, answered Orbit(\"701\")"),
            "{fixture}:\n{out}"
        );
    }
}

#[test]
fn plugin_test_refuses_a_bad_case_file_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    for (text, line, reason) in [
        (
            "[[allocator]]\nname = \"x\"\n\ntarget = { orbit = \"701\" }\nexpect = { orbit = \"701\", rejected = \"busy\" }\n",
            1,
            "expect names one of orbit",
        ),
        (
            "[[recall]]\nname = \"x\"\nringer = true\n",
            3,
            "unknown field `ringer`",
        ),
        ("[[dialing]\n", 1, ""),
    ] {
        let file = case_file(&dir, "bad.toml", text);
        let (code, out) = callpark_code(&["plugin", "test", &wasm("callpark_allocator"), &file]);
        assert_eq!(code, Some(2), "{text}:\n{out}");
        assert!(
            out.contains(&format!("bad.toml:{line}: {reason}")),
            "{text}:\n{out}"
        );
    }
}

#[test]
fn the_built_in_conformance_cases_are_a_case_file_the_defaults_pass() {
    let conformance = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policy/cases/conformance.toml"
    );
    for name in ["callpark_allocator", "callpark_recall", "callpark_dialing"] {
        let (code, out) = callpark_code(&["plugin", "test", &wasm(name), conformance]);
        // Each default implements one world: its cases pass, the other
        // worlds' cases fail as not implemented.
        assert_eq!(code, Some(1), "{name}:\n{out}");
        assert!(
            out.lines().any(|l| l.starts_with("ok   ")),
            "{name}:\n{out}"
        );
        assert!(
            out.lines()
                .filter(|l| l.starts_with("FAIL ") && !l.starts_with("FAIL:"))
                .all(|l| l.contains("does not implement")),
            "{name}:\n{out}"
        );
    }
}
