//! The inputs every plugin is tried on: a few small canary cases run at every
//! load before a swap, and a wider conformance set that
//! `callpark plugin check` runs. A plugin passes a case when it answers
//! within the deadline, without trapping, by the rules of
//! `callpark_core::check_*`, and the same way twice (plugins are pure).
//!
//! The cases are `cases/conformance.toml`, in the format of
//! `callpark plugin test` (`crate::cases`), so that they are also its example.

use std::sync::OnceLock;

use callpark_core::{DialContext, ParkEvent, ParkRequest, ParkedCall};

pub use crate::cases::Case;
use crate::cases::{AllocationPattern, CaseFile, DialPattern, EventsPattern, RecallPattern};

/// The built-in case file.
pub const CONFORMANCE: &str = include_str!("../cases/conformance.toml");

/// What happened to one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOutcome {
    pub name: String,
    /// The answer, described, or why the case failed.
    pub result: Result<String, String>,
}

fn built_in() -> &'static CaseFile {
    static FILE: OnceLock<CaseFile> = OnceLock::new();
    // The file is part of the build; a unit test parses it, so this cannot
    // fail in a binary that passed its tests.
    FILE.get_or_init(|| crate::cases::parse(CONFORMANCE).expect("cases/conformance.toml"))
}

pub fn allocator_cases() -> Vec<Case<ParkRequest, AllocationPattern>> {
    built_in().allocator.clone()
}

pub fn dialing_cases() -> Vec<Case<DialContext, DialPattern>> {
    built_in().dialing.clone()
}

pub fn recall_cases() -> Vec<Case<ParkedCall, RecallPattern>> {
    built_in().recall.clone()
}

pub fn events_cases() -> Vec<Case<ParkEvent, EventsPattern>> {
    built_in().events.clone()
}
