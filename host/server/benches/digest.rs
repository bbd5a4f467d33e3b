//! The cost of digest verification per request: parsing the
//! Authorization header, checking the nonce's MAC and age, the nc, and
//! the response, for SHA-256 and MD5 (one nonce, nc counting up, as a
//! phone sends in a dialog's worth of requests).
//!
//! Lives in the server crate, which owns the clock: the digest code
//! itself (`callpark-sip`) is sans-IO.
//!
//! Run: `cargo bench -p callpark-server --bench digest`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use callpark_sip::digest::{
    Algorithm, Authorization, Credential, Nonces, Verdict, expected_response, ha1,
};

fn main() {
    let credential = Credential {
        username: "alice".into(),
        ha1_md5: Some(ha1(Algorithm::Md5, "alice", "callpark", "wonderland")),
        ha1_sha256: Some(ha1(Algorithm::Sha256, "alice", "callpark", "wonderland")),
    };
    let uri = "sip:701@192.0.2.10:5060";
    for algorithm in [Algorithm::Sha256, Algorithm::Md5] {
        let mut nonces = Nonces::new([5; 32], "callpark", Duration::from_secs(300));
        let now = Duration::from_secs(1);
        let challenge = nonces.challenges(now, false).remove(0);
        let nonce = challenge
            .split("nonce=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_string();
        let stored = if algorithm == Algorithm::Md5 {
            credential.ha1_md5.clone().unwrap()
        } else {
            credential.ha1_sha256.clone().unwrap()
        };
        let count = 200_000u32;
        // The headers as phones would send them, made before timing.
        let headers: Vec<String> = (1..=count)
            .map(|nc| {
                let nc = format!("{nc:08x}");
                let response = expected_response(
                    algorithm, &stored, &nonce, &nc, "0a4f113b", "auth", "INVITE", uri,
                );
                format!(
                    "Digest username=\"alice\", realm=\"callpark\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm={}, cnonce=\"0a4f113b\", qop=auth, nc={nc}",
                    algorithm.name()
                )
            })
            .collect();
        let lookup = |name: &str| (name == "alice").then_some(&credential);
        let started = Instant::now();
        let mut ok = 0u32;
        for header in &headers {
            let auth = Authorization::parse(black_box(header)).unwrap();
            if let Verdict::Authenticated(_) = nonces.verify(now, "INVITE", uri, &auth, lookup) {
                ok += 1;
            }
        }
        let took = started.elapsed();
        assert_eq!(ok, count, "every request authenticates");
        println!(
            "{:>8}: {:.2} us per verified request ({count} requests, {:.0} per second on one core)",
            algorithm.name(),
            took.as_secs_f64() * 1e6 / f64::from(count),
            f64::from(count) / took.as_secs_f64()
        );
    }
}
