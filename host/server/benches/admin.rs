//! The admin API of the real `callpark serve` binary (release build) with
//! 5,000 calls parked, each with its own RTP destination:
//! 1. the latency of a write that changes one orbit (`PATCH
//!    /api/v1/orbits/{n}`), end to end over HTTP: planned, validated,
//!    committed to the store and applied to the engine with every call
//!    kept (p50/p99 of 300 writes, one at a time);
//! 2. a CSV import of 1,000 rows, end to end;
//! 3. that every call is still parked afterwards.
//!
//! Run: `cargo bench -p callpark-server --bench admin` (about a minute).

use std::time::{Duration, Instant};

#[path = "../../../tests/support/mod.rs"]
mod support;

#[path = "common/park.rs"]
mod park;

const TOKEN: &str = "cpk_bench-admin-token";
const CALLS: u32 = 5_000;
const FIRST: u32 = 100_000;

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// 300 writes, one at a time, each changing one orbit; prints p50/p99.
fn writes(client: &callpark_server::ctl::Client, parked: u32) {
    let mut took = Vec::new();
    for i in 0..300u32 {
        let orbit = FIRST + i % 50;
        let body =
            serde_json::json!({ "capacity": 1 + i % 3, "name": format!("desk-{i}-{parked}") });
        let started = Instant::now();
        let answer = client
            .json("PATCH", &format!("/api/v1/orbits/{orbit}"), Some(body))
            .unwrap();
        took.push(started.elapsed());
        assert_eq!(answer["changes"]["orbits"]["changed"]["count"], 1);
    }
    took.sort();
    println!(
        "one-orbit write (PATCH /api/v1/orbits/{{n}}) of a {CALLS}-orbit lot with {parked} calls parked, {} writes: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        took.len(),
        quantile(&took, 0.5).as_secs_f64() * 1e3,
        quantile(&took, 0.99).as_secs_f64() * 1e3,
        took.last().unwrap().as_secs_f64() * 1e3,
    );
}

fn main() {
    let hash = callpark_server::admin::hex(&callpark_server::admin::token_hash(TOKEN));
    let server = support::Server::start_lot(
        "max_parked_calls = 20000",
        &format!(
            "[[range]]\nname = \"big\"\nstart = \"{FIRST}\"\nend = \"{}\"\n[defaults]\nrecall_after = \"0s\"\n[admin]\n[[admin.token]]\nrole = \"admin\"\nsha256 = \"{hash}\"\n",
            FIRST + CALLS - 1
        ),
    );
    let client = callpark_server::ctl::Client::new(
        &format!("http://127.0.0.1:{}", server.admin),
        TOKEN.to_string(),
    );
    writes(&client, 0);
    park::park(
        &server,
        CALLS,
        FIRST,
        park::Kind::Blind {
            parker_answers: true,
        },
    );
    let parked = || -> u64 {
        let orbits = client.json("GET", "/api/v1/orbits", None).unwrap();
        orbits
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["parked"].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(parked(), u64::from(CALLS), "every call parked");

    // 1. One orbit changed per write.
    writes(&client, CALLS);

    // 2. A 1,000-row import.
    let mut csv = String::from("action,number,name,capacity,recall_after\n");
    for i in 0..1000u32 {
        csv.push_str(&format!(
            "update,{},row-{i},{},{}s\n",
            FIRST + 1000 + i,
            1 + i % 4,
            30 + i % 200
        ));
    }
    let started = Instant::now();
    let (status, body) = client
        .request(
            "POST",
            "/api/v1/imports",
            Some(("text/csv", csv.into_bytes())),
        )
        .unwrap();
    let elapsed = started.elapsed();
    let report = callpark_server::ctl::answer(status, &body).unwrap();
    println!(
        "CSV import of 1,000 rows with {CALLS} calls parked, end to end: {:.0} ms ({} applied, {} unchanged, {} refused)",
        elapsed.as_secs_f64() * 1e3,
        report["applied"],
        report["unchanged"],
        report["refused"]
    );

    // 3. Nothing was dropped.
    assert_eq!(parked(), u64::from(CALLS), "every call still parked");
    println!("{CALLS} calls still parked after every write");
    let (ok, log) = server.stop();
    assert!(ok, "{log}");
}
