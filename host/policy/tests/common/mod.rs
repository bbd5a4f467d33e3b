#![allow(dead_code)]

use std::sync::Arc;

use callpark_core::{OrbitState, ParkRequest, ParkTarget};
use callpark_policy::{Limits, PLUGIN_BUILD_DIR, PluginSource, PolicyRuntime};

/// A plugin built from `plugins/`, by crate name (`fixture_spin`, ...).
pub fn plugin(name: &str) -> PluginSource {
    let path = format!("{PLUGIN_BUILD_DIR}/{name}.wasm");
    let wasm = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    PluginSource::new(path, wasm)
}

pub fn runtime() -> PolicyRuntime {
    PolicyRuntime::new(Limits::default(), None).expect("engine")
}

pub fn shared_runtime() -> Arc<PolicyRuntime> {
    Arc::new(runtime())
}

/// A default-lot request over `count` free orbits from 701.
pub fn lot_request(count: u32) -> ParkRequest {
    ParkRequest {
        parker: "sip:alice@example.com".into(),
        parked_uri: "sip:bob@example.com".into(),
        parked_display: "Bob".into(),
        target: ParkTarget::DefaultLot,
        candidates: (0..count)
            .map(|i| OrbitState {
                number: (701 + i).to_string(),
                occupied: 0,
                capacity: 1,
                enabled: true,
            })
            .collect(),
        last_orbit: None,
        now_ms: 1_767_225_600_000,
        entropy: 7,
        params: vec![],
    }
}
