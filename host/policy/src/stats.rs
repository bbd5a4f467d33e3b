//! Counters and a latency histogram per plugin slot, lock-free so that the
//! decision path pays a handful of relaxed atomic adds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Histogram buckets: bucket `i` counts decisions that took less than
/// `2^(i + MIN_SHIFT)` ns; the last bucket counts the rest.
const BUCKETS: usize = 20;
const MIN_SHIFT: u32 = 8; // 256 ns .. 2^27 ns (134 ms)

#[derive(Default)]
pub(crate) struct SlotStats {
    calls: AtomicU64,
    traps: AtomicU64,
    timeouts: AtomicU64,
    invalid: AtomicU64,
    instantiate_failures: AtomicU64,
    fallbacks: AtomicU64,
    rejects: AtomicU64,
    loads: AtomicU64,
    refused_loads: AtomicU64,
    short_circuits: AtomicU64,
    circuit_openings: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

/// A copy of a slot's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Decisions handed to a plugin.
    pub calls: u64,
    /// Decisions that trapped (panic, out of memory, stack overflow...).
    pub traps: u64,
    /// Decisions interrupted at the deadline.
    pub timeouts: u64,
    /// Answers that broke the rules (e.g. an orbit that was not offered).
    pub invalid: u64,
    /// Decisions that found no instance (pool exhausted, start-up trap).
    pub instantiate_failures: u64,
    /// Failures answered by the built-in policy.
    pub fallbacks: u64,
    /// Failures turned into a refused call (`on_failure = "reject"`).
    pub rejects: u64,
    /// Plugins swapped in.
    pub loads: u64,
    /// Plugins refused at load.
    pub refused_loads: u64,
    /// Decisions answered by the failure policy without asking the plugin,
    /// its circuit being open.
    pub short_circuits: u64,
    /// Times the circuit opened.
    pub circuit_openings: u64,
    /// `(upper bound, count)` of the latency histogram of plugin decisions.
    pub latency: Vec<(Duration, u64)>,
}

impl StatsSnapshot {
    /// Failed decisions of every kind.
    pub fn failures(&self) -> u64 {
        self.traps + self.timeouts + self.invalid + self.instantiate_failures
    }

    /// The latency under which `q` (0..=1) of the decisions fell, to the
    /// histogram's resolution (a power of two).
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        let total: u64 = self.latency.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return None;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bound, n) in &self.latency {
            seen += n;
            if seen >= want {
                return Some(*bound);
            }
        }
        self.latency.last().map(|(b, _)| *b)
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Call,
    Trap,
    Timeout,
    Invalid,
    Instantiate,
    Fallback,
    Reject,
    Load,
    RefusedLoad,
    ShortCircuit,
    CircuitOpened,
}

impl SlotStats {
    pub(crate) fn count(&self, counter: Counter) {
        let c = match counter {
            Counter::Call => &self.calls,
            Counter::Trap => &self.traps,
            Counter::Timeout => &self.timeouts,
            Counter::Invalid => &self.invalid,
            Counter::Instantiate => &self.instantiate_failures,
            Counter::Fallback => &self.fallbacks,
            Counter::Reject => &self.rejects,
            Counter::Load => &self.loads,
            Counter::RefusedLoad => &self.refused_loads,
            Counter::ShortCircuit => &self.short_circuits,
            Counter::CircuitOpened => &self.circuit_openings,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_latency(&self, took: Duration) {
        let ns = took.as_nanos().max(1) as u64;
        let bucket = (64 - ns.leading_zeros()).saturating_sub(MIN_SHIFT) as usize;
        self.latency[bucket.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            calls: get(&self.calls),
            traps: get(&self.traps),
            timeouts: get(&self.timeouts),
            invalid: get(&self.invalid),
            instantiate_failures: get(&self.instantiate_failures),
            fallbacks: get(&self.fallbacks),
            rejects: get(&self.rejects),
            loads: get(&self.loads),
            refused_loads: get(&self.refused_loads),
            short_circuits: get(&self.short_circuits),
            circuit_openings: get(&self.circuit_openings),
            latency: self
                .latency
                .iter()
                .enumerate()
                .map(|(i, c)| (Duration::from_nanos(1 << (i as u32 + MIN_SHIFT)), get(c)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_power_of_two() {
        let s = SlotStats::default();
        for ns in [100, 200, 300, 1_000, 5_000_000] {
            s.record_latency(Duration::from_nanos(ns));
        }
        let snap = s.snapshot();
        assert_eq!(snap.latency[0], (Duration::from_nanos(256), 2));
        assert_eq!(snap.latency[1], (Duration::from_nanos(512), 1));
        assert_eq!(snap.latency_quantile(0.4), Some(Duration::from_nanos(256)));
        assert_eq!(snap.latency_quantile(0.5), Some(Duration::from_nanos(512)));
        assert_eq!(snap.latency_quantile(0.8), Some(Duration::from_nanos(1024)));
        assert_eq!(
            snap.latency_quantile(1.0),
            Some(Duration::from_nanos(1 << 23))
        );
    }
}
