//! Builds the plugin workspace (`plugins/`) for `wasm32-wasip2` so that the
//! default plugins can be embedded in the binary and the test fixtures are at
//! hand for tests and benchmarks.
//!
//! The plugins get a target folder of their own (`target/wasm-plugins`): a
//! nested cargo on the host's target folder would wait forever on the lock
//! the outer cargo holds.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("host/policy sits two levels below the workspace root")
        .to_path_buf();
    let plugins = root.join("plugins");
    let target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("wasm-plugins"),
        None => root.join("target").join("wasm-plugins"),
    };

    // Everything in plugins/ but its own target folder: a build there by
    // hand (as docs/plugins.md shows) must not make the host rebuild.
    let mut watched: Vec<PathBuf> = std::fs::read_dir(&plugins)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n != "target"))
                .collect()
        })
        .unwrap_or_else(|_| vec![plugins.clone()]);
    watched.extend(["wit", "host/core", "host/builtin"].map(|d| root.join(d)));
    for path in watched {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    ensure_target();

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--locked")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("--workspace");
    // The outer build's settings (flags, profile, target, jobserver) are for
    // the host and must not leak into the guest build.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.starts_with("RUSTC_")
            || key == "RUSTFLAGS"
            || key == "RUSTDOCFLAGS"
        {
            cmd.env_remove(key.as_ref());
        }
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo to build the plugins: {e}"));
    if !status.success() {
        panic!(
            "building the plugins in {} for {TARGET} failed (see the errors above)",
            plugins.display()
        );
    }
    let out = target_dir.join(TARGET).join("release");
    println!("cargo:rustc-env=CALLPARK_PLUGIN_DIR={}", out.display());
}

/// Makes sure the standard library for wasm32-wasip2 is installed: adds it
/// through rustup when rustup is there, stops with the command otherwise.
fn ensure_target() {
    let installed = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            let sysroot = String::from_utf8_lossy(&o.stdout).trim().to_string();
            Path::new(&sysroot)
                .join("lib/rustlib")
                .join(TARGET)
                .join("lib")
                .is_dir()
        })
        .unwrap_or(false);
    if installed {
        return;
    }
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !added {
        panic!(
            "the Rust target {TARGET} is missing and could not be added; run:\n    rustup target add {TARGET}"
        );
    }
}
