//! `callpark plugin new` for every world and language: each project is
//! written by the real binary, built with its one command (`./build.sh`),
//! and must pass `callpark plugin check` and `callpark plugin test` on its
//! own `cases.toml` as it is. Prints the matrix.
//!
//! Building needs the wasm32-wasip2 Rust target, componentize-py and
//! Node.js, so the test is ignored by a plain `cargo test`; `.ci/run` has
//! them and runs it with `--ignored`.

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn callpark(dir: &Path, args: &[&str]) -> (bool, String) {
    run(Command::new(env!("CARGO_BIN_EXE_callpark"))
        .args(args)
        .current_dir(dir))
}

#[test]
#[ignore = "needs the wasm32-wasip2 target, componentize-py and Node.js; .ci/run has them"]
fn every_scaffold_builds_with_one_command_and_passes_check_and_its_cases() {
    let root = tempfile::tempdir().unwrap();
    // The Rust projects share one target folder, so wit-bindgen is built once.
    let cargo_target = root.path().join("cargo-target");
    let mut matrix = Vec::new();
    let mut failures = Vec::new();
    for lang in ["rust", "python", "js"] {
        for world in ["allocator", "recall", "dialing", "events", "policy"] {
            let name = format!("my-{world}-{lang}");
            let (ok, out) = callpark(
                root.path(),
                &["plugin", "new", &name, "--world", world, "--lang", lang],
            );
            assert!(ok, "plugin new {name}: {out}");
            let project = root.path().join(&name);
            let wasm = format!("{}.wasm", name.replace('-', "_"));
            let started = std::time::Instant::now();
            let (built, build_out) = run(Command::new("./build.sh")
                .current_dir(&project)
                .env("CARGO_TARGET_DIR", &cargo_target));
            let took = started.elapsed();
            let (checked, check_out) = if built {
                callpark(&project, &["plugin", "check", &wasm])
            } else {
                (false, String::new())
            };
            let (tested, test_out) = if built {
                callpark(&project, &["plugin", "test", &wasm, "cases.toml"])
            } else {
                (false, String::new())
            };
            let size = std::fs::metadata(project.join(&wasm)).map_or(0, |m| m.len());
            matrix.push(format!(
                "| {world:<9} | {lang:<6} | {:<6} | {:<6} | {:<6} | {:>6.2} MB | {:>5.1} s |",
                if built { "yes" } else { "NO" },
                if checked { "pass" } else { "FAIL" },
                if tested { "pass" } else { "FAIL" },
                size as f64 / 1e6,
                took.as_secs_f64()
            ));
            if !(built && checked && tested) {
                failures.push(format!("{name}:\n{build_out}\n{check_out}\n{test_out}"));
            }
        }
    }
    println!("| world     | lang   | builds | check  | cases  | .wasm     | build   |");
    println!("|---|---|---|---|---|---|---|");
    for row in &matrix {
        println!("{row}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
