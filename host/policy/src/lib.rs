//! The wasmtime runtime that hosts callpark's policy plugins.
//!
//! One `Engine` (pooling allocator, no component-model concurrency, epoch
//! interruption driven by a ticker thread) serves a plugin slot per world
//! (`worlds.rs`): allocator, recall and dialing. Every decision runs on a warm instance with
//! a deadline, a memory cap and a bounded stack; a plugin that traps, times
//! out or answers against the rules is counted, and the built-in policy
//! answers instead (or the call is refused, per slot). Loads compile off the
//! decision path, type-check against the world, run `check-params` and canary
//! cases, then swap atomically: decisions in flight finish on the generation
//! they started on.

mod bindings;
pub mod cases;
pub mod conformance;
mod convert;
mod engine;
mod error;
mod runtime;
mod slot;
mod stats;
mod worlds;

pub use engine::{
    ArtifactStore, CompiledFrom, EPOCH_TICK, HTTP_TIMEOUT, HttpGrant, Limits, MemoryArtifactStore,
    PluginEngine, SlotLimits, digest,
};
pub use error::{CallFailure, EngineError, LoadError};
pub use runtime::{CheckReport, LoadReport, PluginSource, PolicyRuntime, WorldCheck};
pub use slot::{OnFailure, PluginInfo};
pub use stats::StatsSnapshot;

/// The default plugins, built from `plugins/` and embedded in the binary.
pub mod embedded {
    use callpark_core::Decision;

    pub const ALLOCATOR: &[u8] = include_bytes!(concat!(
        env!("CALLPARK_PLUGIN_DIR"),
        "/callpark_allocator.wasm"
    ));
    pub const RECALL: &[u8] = include_bytes!(concat!(
        env!("CALLPARK_PLUGIN_DIR"),
        "/callpark_recall.wasm"
    ));
    pub const DIALING: &[u8] = include_bytes!(concat!(
        env!("CALLPARK_PLUGIN_DIR"),
        "/callpark_dialing.wasm"
    ));

    /// The embedded default plugin of a slot, with its label. The events
    /// slot has none: without a plugin, nobody is told of events.
    pub fn default_plugin(decision: Decision) -> Option<super::PluginSource> {
        let (name, wasm) = match decision {
            Decision::Allocator => ("allocator", ALLOCATOR),
            Decision::Recall => ("recall", RECALL),
            Decision::Dialing => ("dialing", DIALING),
            Decision::Events => return None,
        };
        Some(super::PluginSource::new(format!("embedded:{name}"), wasm))
    }
}

/// Where the build put every plugin of `plugins/` (defaults, examples and
/// test fixtures), as `<crate_name>.wasm`. For tests and benchmarks.
pub const PLUGIN_BUILD_DIR: &str = env!("CALLPARK_PLUGIN_DIR");
