//! An example allocator for integrators: VIP callers get orbits from a
//! reserved block, everybody else never does.
//!
//! Something the default allocator cannot do: the choice depends on who the
//! parked caller is. Params:
//! - `vip_domains`: comma-separated domains, e.g. `"bigcustomer.com, vip.example"`;
//!   a parked caller whose SIP URI host is one of them is a VIP.
//! - `vip_orbits`: the reserved block, comma-separated numbers and ranges,
//!   e.g. `"790-799"` or `"790,795-797"`.
//!
//! A VIP gets the first free reserved orbit and, when the block is full, the
//! first free regular one. Other callers get the first free regular orbit
//! only. A directed park (`*68701`) is left to the default allocator: a
//! person who dials an orbit gets that orbit.
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p vip-allocator`
//! (from `plugins/`), then `callpark plugin check` the `.wasm`.

wit_bindgen::generate!({
    path: "../../../wit/0.1.0",
    world: "allocator-plugin",
    with: {
        "callpark:policy/types@0.1.0": callpark_guest::types,
        "callpark:policy/log@0.1.0": callpark_guest::log,
    },
});

use callpark_core::{ParkTarget, param};
use callpark_guest::log::{Level, log};
use callpark_guest::types::{Allocation, Params, ParkRequest};

struct VipAllocator;

struct VipParams {
    domains: Vec<String>,
    /// Inclusive numeric ranges of reserved orbit numbers.
    block: Vec<(u64, u64)>,
}

fn vip_params(params: &[(String, String)]) -> Result<VipParams, String> {
    let domains: Vec<String> = param(params, "vip_domains")
        .unwrap_or("")
        .split(',')
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .collect();
    let mut block = Vec::new();
    for part in param(params, "vip_orbits").unwrap_or("").split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let num = |s: &str| {
            s.trim().parse::<u64>().map_err(|_| {
                format!("vip_orbits: `{part}` is not a number or a range like 790-799")
            })
        };
        let (lo, hi) = (num(lo)?, num(hi)?);
        if lo > hi {
            return Err(format!("vip_orbits: range `{part}` runs backwards"));
        }
        block.push((lo, hi));
    }
    if domains.is_empty() {
        return Err("vip_domains is required, e.g. vip_domains=bigcustomer.com".into());
    }
    if block.is_empty() {
        return Err("vip_orbits is required, e.g. vip_orbits=790-799".into());
    }
    Ok(VipParams { domains, block })
}

fn is_reserved(p: &VipParams, orbit: &str) -> bool {
    orbit
        .parse::<u64>()
        .is_ok_and(|n| p.block.iter().any(|&(lo, hi)| (lo..=hi).contains(&n)))
}

/// The host part of `sip:user@host:port;params`, lower-cased.
fn host_of(uri: &str) -> String {
    let after_user = uri.rsplit_once('@').map_or(uri, |(_, h)| h);
    let host = after_user.split([':', ';', '>', '?']).next().unwrap_or("");
    host.to_ascii_lowercase()
}

impl exports::callpark::policy::allocator::Guest for VipAllocator {
    fn check_params(params: Params) -> Result<(), String> {
        vip_params(&params).map(|_| ())
    }

    fn allocate(req: ParkRequest) -> Allocation {
        let mut req = callpark_guest::park_request(req);
        let Ok(vip) = vip_params(&req.params) else {
            return callpark_guest::allocation(callpark_builtin::allocator::allocate(&req));
        };
        if matches!(req.target, ParkTarget::Orbit(_)) {
            return callpark_guest::allocation(callpark_builtin::allocator::allocate(&req));
        }
        let is_vip = vip.domains.contains(&host_of(&req.parked_uri));
        // The default allocator does the hunting; this plugin only decides
        // which candidates a caller may have, and in which order.
        req.params.retain(|(k, _)| k == "strategy");
        let (reserved, regular): (Vec<_>, Vec<_>) = req
            .candidates
            .drain(..)
            .partition(|c| is_reserved(&vip, &c.number));
        if is_vip {
            log(
                Level::Info,
                &format!("VIP caller {} gets the reserved block", req.parked_uri),
            );
            req.candidates = reserved.into_iter().chain(regular).collect();
        } else {
            req.candidates = regular;
        }
        callpark_guest::allocation(callpark_builtin::allocator::allocate(&req))
    }
}

export!(VipAllocator);
