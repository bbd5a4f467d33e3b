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
    /// The plugin failed too often in a row and is not asked for a while
    /// (the slot's circuit breaker).
    #[error("not asked: its circuit is open after repeated failures")]
    CircuitOpen,
}

/// An error as one log line: wasmtime's messages span lines (a byte dump of
/// the offending section for a bad binary), and a log event is one line.
/// Lines are joined with ` | `, runs of spaces collapsed, and the text cut
/// at 400 characters.
pub(crate) fn one_line(error: &impl std::fmt::Display) -> String {
    let text = format!("{error:#}");
    let joined = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    match joined.char_indices().nth(400) {
        Some((cut, _)) => format!("{} ...", &joined[..cut]),
        None => joined,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_become_one_line() {
        let e = "failed to parse\n  0: 00 61 73 6d\n\n  1:   0d 00 01 00\n";
        assert_eq!(
            super::one_line(&e),
            "failed to parse | 0: 00 61 73 6d | 1: 0d 00 01 00"
        );
        let long = "x".repeat(1000);
        assert_eq!(super::one_line(&long).chars().count(), 404);
    }
}
