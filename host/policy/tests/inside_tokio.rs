//! Plugins asked from inside a tokio runtime, as `callpark serve` asks them
//! (its SIP loop runs in `Runtime::block_on`), and from a runtime worker.
//! A plugin that prints, panics, runs out of memory, sleeps or opens a
//! socket must get an answer either way: its own when it behaves, the
//! built-in policy's when it fails. Before the calls stepped out of the
//! runtime, the first WASI call panicked the thread ("Cannot start a
//! runtime from within a runtime").

mod common;

use std::sync::Arc;

use callpark_core::{Allocation, Decision, Policy};
use common::{lot_request, plugin, runtime};

/// (fixture, whether its own answer stands)
const FIXTURES: [(&str, bool); 5] = [
    ("fixture_print", true),
    ("fixture_socket", true),
    ("fixture_panic", false),
    ("fixture_hog", false),
    ("fixture_sleep", false),
];

fn ask_all(rt: &callpark_policy::PolicyRuntime, name: &str, own_answer: bool) {
    let before = rt.stats(Decision::Allocator);
    // 50 candidates: every fixture misbehaves past 16.
    let answer = rt.allocate(&lot_request(50));
    assert_eq!(answer, Ok(Allocation::Orbit("701".into())), "{name}");
    let after = rt.stats(Decision::Allocator);
    let failed = after.failures() - before.failures();
    assert_eq!(failed == 0, own_answer, "{name}: {after:?}");
}

#[test]
fn misbehaving_plugins_answer_inside_the_servers_runtime() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (name, own_answer) in FIXTURES {
        let rt = Arc::new(runtime());
        rt.load(Decision::Allocator, &plugin(name), vec![])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // On the thread of `block_on`, as serve's SIP loop.
        tokio.block_on(async { ask_all(&rt, name, own_answer) });
        // On a worker.
        let on_worker = rt.clone();
        tokio
            .block_on(tokio.spawn(async move { ask_all(&on_worker, name, own_answer) }))
            .unwrap_or_else(|e| panic!("{name} on a worker: {e}"));
    }
}

/// A sleeping plugin traps at once instead of stalling the caller for the
/// length of its sleep (5 s here): the epoch deadline cannot interrupt a
/// host call, so waiting is not offered at all.
#[test]
fn a_plugin_that_sleeps_traps_instead_of_waiting() {
    let rt = runtime();
    rt.load(Decision::Allocator, &plugin("fixture_sleep"), vec![])
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        rt.allocate(&lot_request(50)),
        Ok(Allocation::Orbit("701".into()))
    );
    let stats = rt.stats(Decision::Allocator);
    assert_eq!(stats.traps, 1, "{stats:?}");
    // Not a timing assertion on speed: the sleep asked for 5 s, and a
    // call that waited would take at least that.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// A plugin that fails at every call (here: loops until its deadline)
/// costs its whole CPU budget once per decision only until its circuit
/// opens: after 5 failures in a row the failure policy answers the next
/// 100 decisions without asking it, then one decision tries it again, and
/// a failed trial opens the circuit for twice as long.
#[test]
fn a_plugin_that_keeps_failing_is_short_circuited_then_tried_again() {
    let rt = runtime();
    rt.load(Decision::Allocator, &plugin("fixture_spin"), vec![])
        .unwrap();
    let ask = |n: usize| {
        for _ in 0..n {
            assert_eq!(
                rt.allocate(&lot_request(50)),
                Ok(Allocation::Orbit("701".into()))
            );
        }
        rt.stats(Decision::Allocator)
    };
    let s = ask(5);
    assert_eq!(
        (s.timeouts, s.circuit_openings, s.short_circuits),
        (5, 1, 0)
    );
    let s = ask(100);
    assert_eq!(
        (s.timeouts, s.short_circuits),
        (5, 100),
        "not asked while open"
    );
    let s = ask(1);
    assert_eq!((s.timeouts, s.circuit_openings), (6, 2), "the trial failed");
    let s = ask(200);
    assert_eq!((s.timeouts, s.short_circuits), (6, 300));
    // Every decision was answered by the built-in policy.
    assert_eq!(s.fallbacks, 306);
    // A new generation starts with the circuit closed.
    rt.load(Decision::Allocator, &plugin("fixture_print"), vec![])
        .unwrap();
    let before = rt.stats(Decision::Allocator);
    ask(3);
    let after = rt.stats(Decision::Allocator);
    assert_eq!(after.calls - before.calls, 3);
    assert_eq!(after.failures(), before.failures());
}
