//! Sans-IO SIP for callpark: no sockets, no clock, no files.
//!
//! - [`digest`]: digest authentication of requests, the server side.
//! - [`sdp`]: SDP offer/answer (RFC 3264) for the audio a park server speaks:
//!   PCMU, PCMA and telephone-event.

pub mod codec;
pub mod digest;
pub mod message;
pub mod sdp;
pub mod transaction;
pub mod uri;
