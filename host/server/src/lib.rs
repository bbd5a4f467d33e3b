//! The callpark server: configuration, plugin supervision and (with the SIP
//! stack) the sockets and the clock. The only crate that does IO.

pub mod admin;
pub mod api;
pub mod batch;
pub mod clock;
pub mod config;
pub mod ctl;
pub mod events;
pub mod import;
pub mod logging;
pub mod pacers;
pub mod parked;
pub mod plugin_check;
pub mod plugins;
pub mod provision;
pub mod scaffold;
pub mod serve;
pub mod store;
