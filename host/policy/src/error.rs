//! Errors of the plugin runtime.

/// The engine could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("plugin engine: {0}")]
    Config(String),
}

/// Why a plugin was refused at load. The previous generation keeps serving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("{plugin}: not a valid WebAssembly component: {reason}")]
    Compile { plugin: String, reason: String },
    #[error(
        "{plugin}: imports something the host does not provide (only callpark:policy/log@0.1.0 and WASI 0.2 are): {reason}"
    )]
    Imports { plugin: String, reason: String },
    #[error("{plugin}: does not implement the world {world} of callpark:policy@0.1.0: {reason}")]
    World {
        plugin: String,
        world: &'static str,
        reason: String,
    },
    #[error("{plugin}: could not be instantiated: {reason}")]
    Instantiate { plugin: String, reason: String },
    #[error("{plugin}: check-params refused the parameters: {reason}")]
    Params { plugin: String, reason: String },
    #[error("{plugin}: canary case `{case}` failed: {reason}")]
    Canary {
        plugin: String,
        case: String,
        reason: String,
    },
}

/// Why one decision by a plugin failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    #[error("timed out")]
    Timeout,
    #[error("trapped: {0}")]
    Trap(String),
    #[error("no instance: {0}")]
    Instantiate(String),
    #[error("answer breaks the rules: {0}")]
    Invalid(String),
}
