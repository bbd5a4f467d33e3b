//! Sans-IO park logic for callpark.
//!
//! This crate holds no sockets, no async runtime, no files and no clock:
//! time is always an argument. It compiles for `wasm32-wasip2` too, which is
//! how the default plugins share the built-in policy's types.

pub mod duration;
pub mod lot;
pub mod policy;

pub use duration::{DurationError, format_duration, parse_duration};
pub use policy::*;
