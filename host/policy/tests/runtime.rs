//! The plugin runtime against real components: the default plugins, the
//! example, and misbehaving fixtures built from `plugins/fixtures`.

mod common;

use std::sync::Arc;

use callpark_builtin::BuiltinPolicy;
use callpark_core::{Allocation, Decision, Policy, check_allocation};
use callpark_policy::conformance;
use callpark_policy::{
    CompiledFrom, LoadError, MemoryArtifactStore, OnFailure, PolicyRuntime, embedded,
};
use common::{lot_request, plugin, runtime};

fn load_defaults(rt: &PolicyRuntime) {
    for d in Decision::ALL {
        rt.load(d, &embedded::default_plugin(d).unwrap(), vec![])
            .unwrap_or_else(|e| panic!("{d}: {e}"));
    }
}

#[test]
fn default_plugins_answer_exactly_as_the_builtin_policy() {
    let rt = runtime();
    load_defaults(&rt);
    let builtin = BuiltinPolicy;
    for strategy in ["first", "next", "random"] {
        for case in conformance::allocator_cases() {
            let mut req = case.input.clone();
            req.params = vec![("strategy".into(), strategy.into())];
            assert_eq!(rt.allocate(&req), builtin.allocate(&req), "{}", case.name);
        }
    }
    for case in conformance::dialing_cases() {
        assert_eq!(
            rt.parse_dial(&case.input),
            builtin.parse_dial(&case.input),
            "{}",
            case.name
        );
    }
    for option in callpark_builtin::recall::RecallOption::NAMES {
        for case in conformance::recall_cases() {
            let mut call = case.input.clone();
            call.params = vec![
                ("option".into(), option.into()),
                ("fallback".into(), "sip:operator@example.com".into()),
                ("hunt_group".into(), "sip:frontdesk@example.com".into()),
                ("max_attempts".into(), "3".into()),
            ];
            assert_eq!(
                rt.plan_recall(&call),
                builtin.plan_recall(&call),
                "{option}: {}",
                case.name
            );
        }
    }
    for d in Decision::ALL {
        let stats = rt.stats(d);
        assert!(stats.calls > 0, "{d} was never asked");
        assert_eq!(stats.failures(), 0, "{d}: {stats:?}");
    }
}

#[test]
fn plugin_params_reach_the_plugin() {
    let rt = runtime();
    let params = vec![("strategy".to_string(), "next".to_string())];
    rt.load(
        Decision::Allocator,
        &embedded::default_plugin(Decision::Allocator).unwrap(),
        params,
    )
    .unwrap();
    let mut req = lot_request(3);
    req.last_orbit = Some("701".into());
    assert_eq!(rt.allocate(&req), Ok(Allocation::Orbit("702".into())));
}

#[test]
fn an_infinite_loop_times_out_the_builtin_answers_and_the_instance_is_recycled() {
    let rt = runtime();
    rt.load(Decision::Allocator, &plugin("fixture_spin"), vec![])
        .expect("the spinner passes the canaries");
    let big = lot_request(50);
    let answer = rt.allocate(&big).expect("fallback answers");
    assert_eq!(answer, Allocation::Orbit("701".into()));
    let stats = rt.stats(Decision::Allocator);
    assert_eq!((stats.timeouts, stats.fallbacks), (1, 1), "{stats:?}");
    // The interrupted instance was dropped, not put back.
    assert_eq!(rt.warm_instances(Decision::Allocator), 0);
    // A small request runs on a fresh instance, which is kept warm.
    assert_eq!(
        rt.allocate(&lot_request(3)),
        Ok(Allocation::Orbit("701".into()))
    );
    assert_eq!(rt.warm_instances(Decision::Allocator), 1);
    assert_eq!(rt.stats(Decision::Allocator).failures(), 1);
}

#[test]
fn a_memory_hog_hits_its_cap_and_traps() {
    let rt = runtime();
    rt.load(Decision::Allocator, &plugin("fixture_hog"), vec![])
        .unwrap();
    let answer = rt.allocate(&lot_request(50)).expect("fallback answers");
    assert!(check_allocation(&lot_request(50), &answer).is_ok());
    let stats = rt.stats(Decision::Allocator);
    assert_eq!(
        (stats.traps, stats.timeouts, stats.fallbacks),
        (1, 0, 1),
        "{stats:?}"
    );
}

#[test]
fn a_panic_is_a_trap_and_the_instance_is_dropped() {
    let rt = runtime();
    rt.load(Decision::Allocator, &plugin("fixture_panic"), vec![])
        .unwrap();
    assert_eq!(rt.warm_instances(Decision::Allocator), 1);
    assert_eq!(
        rt.allocate(&lot_request(50)),
        Ok(Allocation::Orbit("701".into()))
    );
    let stats = rt.stats(Decision::Allocator);
    assert_eq!((stats.traps, stats.fallbacks), (1, 1), "{stats:?}");
    assert_eq!(rt.warm_instances(Decision::Allocator), 0);
}

#[test]
fn an_orbit_outside_the_candidates_is_a_failure() {
    let rt = runtime();
    rt.load(Decision::Allocator, &plugin("fixture_rogue_orbit"), vec![])
        .unwrap();
    let req = lot_request(50);
    let answer = rt.allocate(&req).unwrap();
    assert_eq!(answer, Allocation::Orbit("701".into()));
    let stats = rt.stats(Decision::Allocator);
    assert_eq!((stats.invalid, stats.fallbacks), (1, 1), "{stats:?}");
}

#[test]
fn reject_mode_refuses_the_call_instead_of_falling_back() {
    let rt = runtime();
    rt.load(Decision::Allocator, &plugin("fixture_rogue_orbit"), vec![])
        .unwrap();
    rt.set_on_failure(Decision::Allocator, OnFailure::Reject);
    let err = rt.allocate(&lot_request(50)).unwrap_err();
    assert_eq!(err.decision, Decision::Allocator);
    assert!(
        err.reason.contains("not among the candidates"),
        "{}",
        err.reason
    );
    let stats = rt.stats(Decision::Allocator);
    assert_eq!((stats.rejects, stats.fallbacks), (1, 0));
}

#[test]
fn wrong_worlds_and_versions_are_refused_at_load_and_the_old_plugin_keeps_serving() {
    let rt = runtime();
    let first = rt
        .load(
            Decision::Allocator,
            &embedded::default_plugin(Decision::Allocator).unwrap(),
            vec![],
        )
        .unwrap();
    assert_eq!(first.info.generation, 1);

    let err = rt
        .load(Decision::Allocator, &plugin("fixture_wrong_world"), vec![])
        .unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::World {
                world: "allocator-plugin",
                ..
            }
        ),
        "{err}"
    );

    let err = rt
        .load(
            Decision::Allocator,
            &plugin("fixture_incompatible_version"),
            vec![],
        )
        .unwrap_err();
    assert!(matches!(err, LoadError::Imports { .. }), "{err}");
    assert!(
        err.to_string().contains("callpark:policy/log@1.0.0"),
        "{err}"
    );

    let err = rt
        .load(
            Decision::Allocator,
            &embedded::default_plugin(Decision::Dialing).unwrap(),
            vec![],
        )
        .unwrap_err();
    assert!(matches!(err, LoadError::World { .. }), "{err}");

    let err = rt
        .load(
            Decision::Allocator,
            &callpark_policy::PluginSource::new("junk.wasm", &b"\0asm junk"[..]),
            vec![],
        )
        .unwrap_err();
    assert!(matches!(err, LoadError::Compile { .. }), "{err}");

    let err = rt
        .load(
            Decision::Allocator,
            &embedded::default_plugin(Decision::Allocator).unwrap(),
            vec![("strategy".into(), "lifo".into())],
        )
        .unwrap_err();
    assert!(matches!(err, LoadError::Params { .. }), "{err}");
    assert!(err.to_string().contains("lifo"), "{err}");

    let serving = rt.current(Decision::Allocator).unwrap();
    assert_eq!(
        (serving.label.as_str(), serving.generation),
        ("embedded:allocator", 1)
    );
    assert_eq!(rt.stats(Decision::Allocator).refused_loads, 5);
    assert_eq!(
        rt.allocate(&lot_request(3)),
        Ok(Allocation::Orbit("701".into()))
    );
}

#[test]
fn a_plugin_that_fails_its_canary_is_refused() {
    // The VIP example refuses to load without its required params.
    let rt = runtime();
    let err = rt
        .load(Decision::Allocator, &plugin("vip_allocator"), vec![])
        .unwrap_err();
    assert!(matches!(err, LoadError::Params { .. }), "{err}");
    assert!(rt.current(Decision::Allocator).is_none());
}

#[test]
fn the_vip_example_reserves_a_block_for_listed_domains() {
    let rt = runtime();
    let params = vec![
        ("vip_domains".to_string(), "bigcustomer.com".to_string()),
        ("vip_orbits".to_string(), "748-750".to_string()),
    ];
    rt.load(Decision::Allocator, &plugin("vip_allocator"), params)
        .unwrap();
    let mut req = lot_request(50);
    req.parked_uri = "sip:ceo@BigCustomer.com".into();
    assert_eq!(rt.allocate(&req), Ok(Allocation::Orbit("748".into())));
    req.parked_uri = "sip:someone@elsewhere.net".into();
    assert_eq!(rt.allocate(&req), Ok(Allocation::Orbit("701".into())));
    // Regular callers never get the reserved block, even when it is all
    // that is left.
    let mut full = lot_request(50);
    for orbit in &mut full.candidates[..47] {
        orbit.occupied = 1;
    }
    match rt.allocate(&full).unwrap() {
        Allocation::Rejected(r) => assert_eq!(r.code, callpark_core::RejectCode::Full),
        other => panic!("expected full, got {other:?}"),
    }
    assert_eq!(rt.stats(Decision::Allocator).failures(), 0);
}

#[test]
fn compiled_plugins_are_cached_by_digest() {
    let store = Arc::new(MemoryArtifactStore::default());
    let source = embedded::default_plugin(Decision::Recall).unwrap();
    let rt = PolicyRuntime::new(Default::default(), Some(store.clone())).unwrap();
    let first = rt.load(Decision::Recall, &source, vec![]).unwrap();
    assert_eq!(first.compiled_from, CompiledFrom::Wasm);
    let again = rt.load(Decision::Recall, &source, vec![]).unwrap();
    assert_eq!(again.compiled_from, CompiledFrom::Memory);
    assert_eq!(again.info.generation, 2);
    drop(rt);
    let restarted = PolicyRuntime::new(Default::default(), Some(store)).unwrap();
    let cached = restarted.load(Decision::Recall, &source, vec![]).unwrap();
    assert_eq!(cached.compiled_from, CompiledFrom::Artifact);
}

/// A lot with what 0.2.0's numbered candidates must carry exactly: orbit
/// numbers that are not numbers, a disabled orbit, a FIFO orbit.
fn awkward_lot() -> Vec<callpark_core::OrbitState> {
    let orbit = |number: &str, occupied, capacity, enabled| callpark_core::OrbitState {
        number: number.into(),
        occupied,
        capacity,
        enabled,
    };
    vec![
        orbit("701", 1, 1, true),
        orbit("0702", 0, 1, true),
        orbit("*703", 0, 1, false),
        orbit("704", 1, 3, true),
        orbit("4294967296", 0, 1, true),
        orbit("705", 0, 1, true),
    ]
}

#[test]
fn plugins_built_against_0_1_and_0_2_serve_side_by_side_each_as_its_version_says() {
    let rt = runtime();
    rt.load(
        Decision::Allocator,
        &embedded::default_plugin(Decision::Allocator).unwrap(),
        vec![],
    )
    .unwrap();
    rt.load(Decision::Dialing, &plugin("fixture_dialing_0_1"), vec![])
        .unwrap();
    rt.load(Decision::Recall, &plugin("fixture_custom_recall"), vec![])
        .unwrap();
    let version = |d| rt.current(d).unwrap().wit_version;
    assert_eq!(version(Decision::Allocator), "0.2.0");
    assert_eq!(version(Decision::Dialing), "0.1.0");
    assert_eq!(version(Decision::Recall), "0.1.0");

    // The 0.2.0 allocator, over numbered candidates and labels, answers as
    // the built-in policy does over strings, for every target and strategy.
    let builtin = BuiltinPolicy;
    let mut req = lot_request(0);
    req.candidates = awkward_lot();
    for target in [
        callpark_core::ParkTarget::DefaultLot,
        callpark_core::ParkTarget::Group("front-desk".into()),
        callpark_core::ParkTarget::Orbit("0702".into()),
        callpark_core::ParkTarget::Orbit("*703".into()),
        callpark_core::ParkTarget::Orbit("701".into()),
        callpark_core::ParkTarget::Orbit("4294967296".into()),
    ] {
        for strategy in ["first", "next", "random"] {
            for last in [None, Some("0702"), Some("705"), Some("999")] {
                req.target = target.clone();
                req.params = vec![("strategy".into(), strategy.into())];
                req.last_orbit = last.map(str::to_string);
                assert_eq!(
                    rt.allocate(&req),
                    builtin.allocate(&req),
                    "{target:?} {strategy} after {last:?}"
                );
            }
        }
    }
    // With everything taken but the disabled orbit, a full lot.
    for o in &mut req.candidates {
        o.occupied = o.capacity;
    }
    req.candidates[2].occupied = 0;
    req.target = callpark_core::ParkTarget::DefaultLot;
    assert!(matches!(
        rt.allocate(&req).unwrap(),
        Allocation::Rejected(r) if r.code == callpark_core::RejectCode::Full
    ));

    // The 0.1.0 dialing plugin cannot see the orbit's state: a bare orbit
    // dialed means "retrieve, or park there when it is empty", as the
    // 0.1.0 host carried it out.
    let dial = |occupied| callpark_core::DialContext {
        dialed: "701".into(),
        caller: "sip:carol@example.com".into(),
        referred_by: None,
        has_replaces: false,
        dialed_is_orbit: true,
        dialed_orbit: Some(callpark_core::OrbitState {
            number: "701".into(),
            occupied,
            capacity: 1,
            enabled: true,
        }),
        params: vec![],
    };
    assert_eq!(
        rt.parse_dial(&dial(0)).unwrap(),
        callpark_core::DialAction::ParkOrbit("701".into())
    );
    assert_eq!(
        rt.parse_dial(&dial(1)).unwrap(),
        callpark_core::DialAction::Retrieve(Some("701".into()))
    );
    // The 0.2.0 default dialing plugin decides that itself, by its param.
    rt.load(
        Decision::Dialing,
        &embedded::default_plugin(Decision::Dialing).unwrap(),
        vec![("bare_orbit".into(), "retrieve".into())],
    )
    .unwrap();
    assert_eq!(version(Decision::Dialing), "0.2.0");
    assert_eq!(
        rt.parse_dial(&dial(0)).unwrap(),
        callpark_core::DialAction::Retrieve(Some("701".into()))
    );
    for d in Decision::ALL {
        assert_eq!(rt.stats(d).failures(), 0, "{d}");
    }
}

#[test]
fn a_decision_slot_refuses_a_plugin_that_imports_wasi_http_and_the_events_slot_takes_it() {
    let rt = runtime();
    // `fixture_events` exports an allocator too, and imports wasi:http.
    let err = rt
        .load(Decision::Allocator, &plugin("fixture_events"), vec![])
        .unwrap_err();
    assert!(matches!(err, LoadError::Imports { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("only an events plugin may make HTTP requests"),
        "{err}"
    );
    assert!(rt.current(Decision::Allocator).is_none());

    rt.load(Decision::Events, &plugin("fixture_events"), vec![])
        .unwrap();
    assert_eq!(rt.current(Decision::Events).unwrap().wit_version, "0.2.0");
    let event = |kind| callpark_core::ParkEvent {
        kind,
        call: 9,
        orbit: "701".into(),
        parker: "sip:alice@example.com".into(),
        parked_uri: "sip:bob@example.com".into(),
        call_id: "c9".into(),
        by: String::new(),
        detail: String::new(),
        step: 0,
        at_ms: 0,
        params: vec![("notify".into(), "sip:reception@example.com".into())],
    };
    assert_eq!(
        rt.observe(&event(callpark_core::ParkEventKind::Parked)),
        vec![callpark_core::EventAction::SendMessage {
            to: "sip:reception@example.com".into(),
            text: "Call from sip:bob@example.com parked on 701".into(),
        }]
    );
    assert!(
        rt.observe(&event(callpark_core::ParkEventKind::Retrieved))
            .is_empty()
    );
    // Not granted any host: a request is denied and counted, and the plugin
    // still answers.
    let mut posting = event(callpark_core::ParkEventKind::Retrieved);
    posting
        .params
        .push(("http".into(), "http://127.0.0.1:9/hook".into()));
    assert!(rt.observe(&posting).is_empty());
    assert_eq!(rt.http_grant(Decision::Events), (vec![], 1));
    assert_eq!(rt.stats(Decision::Events).failures(), 0);
}
