//! Sans-IO media for callpark: no sockets, no clock, no files.
//!
//! - [`music`]: WAV hold music decoded, resampled and G.711-encoded once,
//!   shared by every parked call.
//! - [`pacer`]: one per shard; sends every parked call's music from a timing
//!   schedule, with no task or timer per call.
//! - [`desk`]: the engine's handles for hold music, played in place or
//!   handed as commands to pacer shards on other threads.
//! - [`g711`]: µ-law and A-law, and the tables the relay transcodes with.
//! - [`rtcp`]: sender reports for hold music, and telling RTCP from noise.

pub mod desk;
pub mod g711;
pub mod music;
pub mod pacer;
pub mod rtcp;

pub use desk::{MusicCommand, MusicDesk, MusicShard, MusicStream};
pub use music::{Codec, Music};
pub use pacer::{Pacer, StreamId, StreamSpec};

/// Media errors.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("music {name}: {reason}")]
    Music { name: String, reason: String },
}
