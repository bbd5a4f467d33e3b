//! Plugin decision and reload costs. Run: `cargo bench -p callpark-policy`.
//!
//! Prints, for each default plugin on a warm instance, the median and p99
//! latency of one decision (conversion, the component call, validation and
//! counters: everything `Policy::allocate` and friends do); the same on a
//! fresh instance every time; and reload times from a `.wasm` (compile) and
//! from the compiled cache. Targets (DESIGN §4): warm p99 < 5 µs, reload
//! from cache < 5 ms. Last, the same figures side by side for plugins in
//! Rust, Python and JavaScript (the guests of `plugins/build-guests.sh`,
//! when they were built).

use std::sync::Arc;
use std::time::{Duration, Instant};

use callpark_core::{
    Decision, DialContext, OrbitState, ParkRequest, ParkTarget, ParkedCall, Policy, RecallReason,
};
use callpark_policy::{
    CompiledFrom, Limits, MemoryArtifactStore, PluginSource, PolicyRuntime, SlotLimits, embedded,
};

fn request(candidates: u32) -> ParkRequest {
    ParkRequest {
        parker: "sip:alice@example.com".into(),
        parked_uri: "sip:+15551230000@carrier.example.net".into(),
        parked_display: "Bob Caller".into(),
        target: ParkTarget::Group("front-desk".into()),
        candidates: (0..candidates)
            .map(|i| OrbitState {
                number: (701 + i).to_string(),
                occupied: u32::from(i < candidates / 2),
                capacity: 1,
                enabled: true,
            })
            .collect(),
        last_orbit: None,
        now_ms: 1_767_225_600_000,
        entropy: 42,
        params: vec![],
    }
}

fn dial() -> DialContext {
    DialContext {
        dialed: "*88701".into(),
        caller: "sip:carol@example.com".into(),
        referred_by: None,
        has_replaces: false,
        dialed_is_orbit: false,
        dialed_orbit: None,
        params: vec![],
    }
}

fn event() -> callpark_core::ParkEvent {
    callpark_core::ParkEvent {
        kind: callpark_core::ParkEventKind::Parked,
        call: 7,
        orbit: "701".into(),
        parker: "sip:alice@example.com".into(),
        parked_uri: "sip:carol@example.com".into(),
        call_id: "bench@callpark".into(),
        by: String::new(),
        detail: String::new(),
        step: 0,
        at_ms: 1_767_225_600_000,
        params: vec![],
    }
}

fn parked() -> ParkedCall {
    ParkedCall {
        orbit: "701".into(),
        group: Some("front-desk".into()),
        parker: "sip:alice@example.com".into(),
        parked_uri: "sip:+15551230000@carrier.example.net".into(),
        parked_display: "Bob Caller".into(),
        parked_at_ms: 1_767_225_555_000,
        now_ms: 1_767_225_600_000,
        recalls_done: 0,
        reason: RecallReason::Timeout,
        params: vec![
            ("max_attempts".into(), "3".into()),
            ("fallback".into(), "sip:operator@example.com".into()),
        ],
    }
}

/// A named decision to time.
type Row<'a> = (&'static str, Box<dyn Fn() + 'a>);

struct Figures {
    median: Duration,
    p99: Duration,
}

fn measure(n: usize, mut f: impl FnMut()) -> Figures {
    for _ in 0..n / 10 {
        f();
    }
    let mut samples: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    Figures {
        median: samples[n / 2],
        p99: samples[n * 99 / 100],
    }
}

fn us(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn decisions(rt: &PolicyRuntime, n: usize, label: &str) {
    let small = request(10);
    let big = request(50);
    let (d, p) = (dial(), parked());
    let rows: [Row; 4] = [
        (
            "allocator, 10 candidates",
            Box::new(|| drop(rt.allocate(&small))),
        ),
        (
            "allocator, 50 candidates",
            Box::new(|| drop(rt.allocate(&big))),
        ),
        ("dialing *88701", Box::new(|| drop(rt.parse_dial(&d)))),
        (
            "recall, 3 attempts + fallback",
            Box::new(|| drop(rt.plan_recall(&p))),
        ),
    ];
    for (name, f) in rows {
        let fig = measure(n, f);
        println!(
            "{label:<15} {name:<31} median {:>10}  p99 {:>10}",
            us(fig.median),
            us(fig.p99)
        );
    }
    for dec in Decision::ALL {
        assert_eq!(
            rt.stats(dec).failures(),
            0,
            "{dec} failed during the benchmark"
        );
    }
}

/// Limits that fit a Python or JavaScript plugin (docs/plugins.md).
fn roomy() -> Limits {
    let slot = SlotLimits {
        timeout: Duration::from_millis(50),
        memory_bytes: 48 << 20,
    };
    Limits {
        per_slot: Decision::ALL.iter().map(|&d| (d, slot)).collect(),
        ..Limits::default()
    }
}

/// One plugin's row: warm decision p50/p99, load from `.wasm` and from the
/// compiled cache (medians).
fn side_by_side(
    label: &str,
    lang: &str,
    d: Decision,
    source: &PluginSource,
    params: Vec<(String, String)>,
) {
    let loads = if source.wasm.len() > 1 << 20 { 3 } else { 7 };
    let mut from_wasm = Vec::new();
    let mut from_cache = Vec::new();
    let store = Arc::new(MemoryArtifactStore::default());
    let cached = PolicyRuntime::new(roomy(), Some(store)).expect("engine");
    cached.load(d, source, params.clone()).expect("load");
    for _ in 0..loads {
        let cold = PolicyRuntime::new(roomy(), None).expect("engine");
        let report = cold.load(d, source, params.clone()).expect("load");
        assert_eq!(report.compiled_from, CompiledFrom::Wasm);
        from_wasm.push(report.took);
        cached.engine().clear_memory_cache();
        let report = cached.load(d, source, params.clone()).expect("load");
        assert_eq!(report.compiled_from, CompiledFrom::Artifact);
        from_cache.push(report.took);
    }
    from_wasm.sort();
    from_cache.sort();
    let big = request(50);
    let p = parked();
    let fig = match d {
        Decision::Allocator => measure(20_000, || drop(cached.allocate(&big))),
        Decision::Recall => measure(20_000, || drop(cached.plan_recall(&p))),
        Decision::Dialing => measure(20_000, || drop(cached.parse_dial(&dial()))),
        Decision::Events => measure(20_000, || drop(cached.observe(&event()))),
    };
    let wit = cached.current(d).map_or("", |i| i.wit_version);
    assert_eq!(
        cached.stats(d).failures(),
        0,
        "{label} failed during the benchmark"
    );
    println!(
        "| {label:<24} | {lang:<10} | {wit:<5} | {:>8.2} MB | {:>10} | {:>10} | {:>10} | {:>10} |",
        source.wasm.len() as f64 / 1e6,
        us(fig.median),
        us(fig.p99),
        ms(from_wasm[from_wasm.len() / 2]),
        ms(from_cache[from_cache.len() / 2]),
    );
}

fn languages() {
    println!(
        "== Rust, Python and JavaScript side by side (allocator: 50 candidates; events: a parked call, one MESSAGE) =="
    );
    println!(
        "| plugin                   | language   | WIT   | .wasm       | warm p50   | warm p99   | from .wasm | from cache |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let file = |dir: &str, name: &str| {
        let path = format!("{dir}/{name}.wasm");
        std::fs::read(&path)
            .ok()
            .map(|w| PluginSource::new(path, w))
    };
    let rust = callpark_policy::PLUGIN_BUILD_DIR;
    let guests = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/guest-plugins");
    let p = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let rows = [
        (
            "default allocator",
            "Rust",
            Decision::Allocator,
            Some(embedded::default_plugin(Decision::Allocator).unwrap()),
            vec![],
        ),
        (
            "vip allocator",
            "Rust",
            Decision::Allocator,
            file(rust, "vip_allocator"),
            p(&[
                ("vip_domains", "bigcustomer.com"),
                ("vip_orbits", "745-750"),
            ]),
        ),
        (
            "department allocator",
            "Python",
            Decision::Allocator,
            file(guests, "department_allocator_py"),
            p(&[("departments", "sales.example.com=760-764")]),
        ),
        (
            "top-down allocator",
            "JavaScript",
            Decision::Allocator,
            file(guests, "top_down_allocator_js"),
            vec![],
        ),
        (
            "default recall",
            "Rust",
            Decision::Recall,
            Some(embedded::default_plugin(Decision::Recall).unwrap()),
            vec![],
        ),
        (
            "events fixture",
            "Rust",
            Decision::Events,
            file(rust, "fixture_events"),
            p(&[("notify", "sip:reception@example.com")]),
        ),
        (
            "after-hours recall",
            "JavaScript",
            Decision::Recall,
            file(guests, "after_hours_recall_js"),
            p(&[("after_hours", "sip:night@example.com")]),
        ),
    ];
    for (label, lang, d, source, params) in rows {
        match source {
            Some(source) => side_by_side(label, lang, d, &source, params),
            None => println!(
                "| {label:<24} | {lang:<10} | not built: run `bash plugins/build-guests.sh` |"
            ),
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a name filter we
    // do not need.
    let runtime = PolicyRuntime::new(Limits::default(), None).expect("engine");
    for d in Decision::ALL {
        runtime
            .load(d, &embedded::default_plugin(d).unwrap(), vec![])
            .expect("default plugin");
    }
    println!("== plugin decisions (default plugins, through Policy, validated) ==");
    decisions(&runtime, 50_000, "warm instance");

    let fresh = PolicyRuntime::new(
        Limits {
            warm_per_plugin: 0,
            ..Limits::default()
        },
        None,
    )
    .expect("engine");
    for d in Decision::ALL {
        fresh
            .load(d, &embedded::default_plugin(d).unwrap(), vec![])
            .expect("default plugin");
    }
    decisions(&fresh, 5_000, "fresh instance");

    println!("== reload (compile or cache, type-check, check-params, canaries, swap) ==");
    let store = Arc::new(MemoryArtifactStore::default());
    let rt = PolicyRuntime::new(Limits::default(), Some(store)).expect("engine");
    for d in Decision::ALL {
        let source = embedded::default_plugin(d).unwrap();
        let mut from_wasm = Vec::new();
        let mut from_cache = Vec::new();
        for i in 0..7 {
            // A fresh engine hash is not needed: clearing the memory cache
            // and using a store that was never filled forces a compile.
            let cold = PolicyRuntime::new(Limits::default(), None).expect("engine");
            let report = cold.load(d, &source, vec![]).expect("load");
            assert_eq!(report.compiled_from, callpark_policy::CompiledFrom::Wasm);
            if i > 0 {
                from_wasm.push(report.took);
            }
            rt.engine().clear_memory_cache();
            let report = rt.load(d, &source, vec![]).expect("load");
            if i > 0 {
                assert_eq!(
                    report.compiled_from,
                    callpark_policy::CompiledFrom::Artifact
                );
                from_cache.push(report.took);
            }
        }
        from_wasm.sort();
        from_cache.sort();
        println!(
            "{:<10} from .wasm ({:>3} KiB) median {:>9}   from compiled cache median {:>9} (max {})",
            d.name(),
            source.wasm.len() / 1024,
            ms(from_wasm[from_wasm.len() / 2]),
            ms(from_cache[from_cache.len() / 2]),
            ms(*from_cache.last().unwrap()),
        );
    }
    languages();
}
