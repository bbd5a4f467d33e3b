//! Hot reload under load: decisions never fail while plugins are swapped.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use callpark_core::{Allocation, Decision, DialAction, Policy, check_allocation};
use callpark_policy::{LoadError, embedded};
use common::{lot_request, plugin, shared_runtime};

#[test]
fn one_hundred_swaps_under_load_with_zero_failed_decisions() {
    let rt = shared_runtime();
    for d in Decision::ALL {
        rt.load(d, &embedded::default_plugin(d).unwrap(), vec![])
            .unwrap();
    }
    let default_allocator = embedded::default_plugin(Decision::Allocator).unwrap();
    let vip = plugin("vip_allocator");
    let vip_params = vec![
        ("vip_domains".to_string(), "example.com".to_string()),
        ("vip_orbits".to_string(), "749-750".to_string()),
    ];

    let stop = Arc::new(AtomicBool::new(false));
    let decisions = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let (rt, stop, decisions) = (rt.clone(), stop.clone(), decisions.clone());
            std::thread::spawn(move || {
                let mut bad = Vec::new();
                let mut req = lot_request(50);
                req.entropy = w;
                let dial = callpark_core::DialContext {
                    dialed: "*88701".into(),
                    caller: "sip:carol@example.com".into(),
                    referred_by: None,
                    has_replaces: false,
                    dialed_is_orbit: false,
                    dialed_orbit: None,
                    params: vec![],
                };
                while !stop.load(Ordering::Relaxed) {
                    match rt.allocate(&req) {
                        Ok(a @ Allocation::Orbit(_)) if check_allocation(&req, &a).is_ok() => {}
                        other => bad.push(format!("allocate: {other:?}")),
                    }
                    match rt.parse_dial(&dial) {
                        Ok(DialAction::Retrieve(Some(o))) if o == "701" => {}
                        other => bad.push(format!("dial: {other:?}")),
                    }
                    decisions.fetch_add(2, Ordering::Relaxed);
                }
                bad
            })
        })
        .collect();

    let mut refused = 0;
    for swap in 0..100 {
        // Wait until decisions are flowing between swaps.
        let seen = decisions.load(Ordering::Relaxed);
        while decisions.load(Ordering::Relaxed) < seen + 20 {
            std::thread::yield_now();
        }
        let result = if swap % 2 == 0 {
            rt.load(Decision::Allocator, &vip, vip_params.clone())
        } else {
            rt.load(Decision::Allocator, &default_allocator, vec![])
        };
        result.unwrap_or_else(|e| panic!("swap {swap}: {e}"));
        if swap == 50 {
            // A bad swap in the middle: refused, the previous one serves.
            let before = rt.current(Decision::Allocator).unwrap();
            let err = rt
                .load(Decision::Allocator, &plugin("fixture_wrong_world"), vec![])
                .unwrap_err();
            assert!(matches!(err, LoadError::World { .. }));
            assert_eq!(rt.current(Decision::Allocator), Some(before));
            refused += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let bad: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    assert!(
        bad.is_empty(),
        "{} bad decisions, first: {:?}",
        bad.len(),
        bad.first()
    );

    let stats = rt.stats(Decision::Allocator);
    assert_eq!(stats.failures(), 0, "{stats:?}");
    assert_eq!(stats.fallbacks, 0);
    assert_eq!(stats.loads, 101);
    assert_eq!(stats.refused_loads, refused);
    assert_eq!(rt.current(Decision::Allocator).unwrap().generation, 101);
    assert!(decisions.load(Ordering::Relaxed) >= 2_000);
}
