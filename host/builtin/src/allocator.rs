//! Which orbit a call is parked on.
//!
//! Strategies (param `strategy`):
//! - `first` (default): the first orbit with room, in configured order. This
//!   is the Webex Calling group hunt and the Asterisk `findslot=first`.
//! - `next`: the first orbit with room after the one handed out last,
//!   wrapping around (Asterisk `findslot=next`), so that a just-freed orbit
//!   is not reused at once and a late retrieve does not pick up a stranger.
//! - `random`: any orbit with room, chosen with the host-made entropy.
//!
//! A directed park on a full orbit is refused with `busy`; a group or lot
//! without room is refused with `full`.

use callpark_core::{
    Allocation, CandidateOrbit, ParkRequest, ParkTarget, RejectCode, Rejection, param,
};

/// How the allocator picks among the orbits with room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    First,
    Next,
    Random,
}

impl Strategy {
    /// Reads the `strategy` param; absent means `first`.
    pub fn from_params(params: &[(String, String)]) -> Result<Strategy, String> {
        match param(params, "strategy") {
            None | Some("first") => Ok(Strategy::First),
            Some("next") => Ok(Strategy::Next),
            Some("random") => Ok(Strategy::Random),
            Some(other) => Err(format!(
                "strategy `{other}` is not one of first, next, random"
            )),
        }
    }
}

/// Validates the allocator params.
pub fn check_params(params: &[(String, String)]) -> Result<(), String> {
    crate::check_unique_keys(params)?;
    Strategy::from_params(params).map(|_| ())
}

/// Picks an orbit for the request.
pub fn allocate(req: &ParkRequest) -> Allocation {
    let last = req
        .last_orbit
        .as_deref()
        .and_then(|last| req.candidates.iter().position(|c| c.number == last));
    match choose(&req.target, &req.candidates, last, req.entropy, &req.params) {
        Ok(i) => Allocation::Orbit(req.candidates[i].number.clone()),
        Err(rejection) => Allocation::Rejected(rejection),
    }
}

/// Picks a candidate by index: the decision of `allocate`, over candidates
/// in whatever form (`last` is the index of the orbit handed out last, when
/// it is among them). A WIT 0.2.0 plugin answers `pick` with it and never
/// turns a candidate into a string.
pub fn choose<C: CandidateOrbit>(
    target: &ParkTarget,
    candidates: &[C],
    last: Option<usize>,
    entropy: u64,
    params: &[(String, String)],
) -> Result<usize, Rejection> {
    // Invalid params were refused at load; a request that still carries
    // them (a custom host) gets the documented default.
    let strategy = Strategy::from_params(params).unwrap_or(Strategy::First);
    match target {
        ParkTarget::Orbit(number) => directed(candidates, number),
        ParkTarget::Group(name) => hunt(candidates, strategy, last, entropy, || {
            format!("group {name}")
        }),
        ParkTarget::DefaultLot => hunt(candidates, strategy, last, entropy, || {
            "the park lot".to_string()
        }),
    }
}

fn directed<C: CandidateOrbit>(candidates: &[C], number: &str) -> Result<usize, Rejection> {
    match candidates.iter().position(|c| c.is_number(number)) {
        None => reject(
            RejectCode::NotFound,
            format!("orbit {number} does not exist"),
        ),
        Some(i) if !candidates[i].enabled() => {
            reject(RejectCode::NotFound, format!("orbit {number} is disabled"))
        }
        Some(i) if candidates[i].full() => {
            reject(RejectCode::Busy, format!("orbit {number} is busy"))
        }
        Some(i) => Ok(i),
    }
}

/// `what` names the group or lot in a refusal; built only when refusing.
fn hunt<C: CandidateOrbit>(
    candidates: &[C],
    strategy: Strategy,
    last: Option<usize>,
    entropy: u64,
    what: impl Fn() -> String,
) -> Result<usize, Rejection> {
    let n = candidates.len();
    if n == 0 {
        return reject(RejectCode::Full, format!("{} has no orbits", what()));
    }
    let start = match strategy {
        Strategy::First => 0,
        Strategy::Next => last.map_or(0, |i| (i + 1) % n),
        Strategy::Random => {
            let free: Vec<usize> = (0..n).filter(|&i| candidates[i].has_room()).collect();
            if free.is_empty() {
                return reject(RejectCode::Full, format!("{} is full", what()));
            }
            return Ok(free[(entropy % free.len() as u64) as usize]);
        }
    };
    (0..n)
        .map(|k| (start + k) % n)
        .find(|&i| candidates[i].has_room())
        .map_or_else(
            || reject(RejectCode::Full, format!("{} is full", what())),
            Ok,
        )
}

fn reject<T>(code: RejectCode, reason: String) -> Result<T, Rejection> {
    Err(Rejection { code, reason })
}

#[cfg(test)]
mod tests {
    use super::*;
    use callpark_core::{OrbitState, check_allocation};

    fn lot(occupied: &[u32]) -> Vec<OrbitState> {
        occupied
            .iter()
            .enumerate()
            .map(|(i, &occ)| OrbitState {
                number: format!("{}", 701 + i),
                occupied: occ,
                capacity: 1,
                enabled: true,
            })
            .collect()
    }

    fn request(target: ParkTarget, candidates: Vec<OrbitState>, strategy: &str) -> ParkRequest {
        ParkRequest {
            parker: "sip:alice@example.com".into(),
            parked_uri: "sip:bob@example.com".into(),
            parked_display: "Bob".into(),
            target,
            candidates,
            last_orbit: None,
            now_ms: 1_700_000_000_000,
            entropy: 0,
            params: vec![("strategy".into(), strategy.into())],
        }
    }

    fn orbit(a: &Allocation) -> &str {
        match a {
            Allocation::Orbit(o) => o,
            other => panic!("expected an orbit, got {other:?}"),
        }
    }

    fn code(a: &Allocation) -> RejectCode {
        match a {
            Allocation::Rejected(r) => r.code,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn first_takes_the_lowest_free_in_configured_order() {
        let req = request(ParkTarget::DefaultLot, lot(&[1, 0, 0]), "first");
        assert_eq!(orbit(&allocate(&req)), "702");
        // Configured order, not numeric order.
        let mut candidates = lot(&[0, 0, 0]);
        candidates.reverse();
        let req = request(ParkTarget::Group("front-desk".into()), candidates, "first");
        assert_eq!(orbit(&allocate(&req)), "703");
    }

    #[test]
    fn next_continues_after_the_last_handed_out_and_wraps() {
        let mut req = request(ParkTarget::DefaultLot, lot(&[0, 0, 0]), "next");
        req.last_orbit = Some("701".into());
        assert_eq!(orbit(&allocate(&req)), "702");
        req.last_orbit = Some("703".into());
        assert_eq!(orbit(&allocate(&req)), "701");
        req.candidates = lot(&[1, 0, 1]);
        req.last_orbit = Some("702".into());
        assert_eq!(
            orbit(&allocate(&req)),
            "702",
            "wraps back to the only free orbit"
        );
        req.last_orbit = Some("gone".into());
        assert_eq!(orbit(&allocate(&req)), "702");
    }

    #[test]
    fn random_uses_the_entropy_and_only_free_orbits() {
        let mut req = request(ParkTarget::DefaultLot, lot(&[0, 1, 0, 0]), "random");
        let mut seen = Vec::new();
        for entropy in 0..6 {
            req.entropy = entropy;
            let a = allocate(&req);
            assert!(check_allocation(&req, &a).is_ok());
            seen.push(orbit(&a).to_string());
        }
        assert_eq!(seen, ["701", "703", "704", "701", "703", "704"]);
    }

    #[test]
    fn capacity_above_one_is_a_queue_with_room() {
        let mut candidates = lot(&[2, 0]);
        candidates[0].capacity = 5;
        let req = request(ParkTarget::DefaultLot, candidates, "first");
        assert_eq!(orbit(&allocate(&req)), "701");
    }

    #[test]
    fn disabled_orbits_are_skipped() {
        let mut candidates = lot(&[0, 0]);
        candidates[0].enabled = false;
        let req = request(ParkTarget::DefaultLot, candidates, "first");
        assert_eq!(orbit(&allocate(&req)), "702");
    }

    #[test]
    fn directed_park_on_a_full_orbit_is_busy() {
        let req = request(ParkTarget::Orbit("701".into()), lot(&[1]), "first");
        assert_eq!(code(&allocate(&req)), RejectCode::Busy);
        let req = request(ParkTarget::Orbit("701".into()), lot(&[0]), "first");
        assert_eq!(orbit(&allocate(&req)), "701");
        let req = request(ParkTarget::Orbit("799".into()), vec![], "first");
        assert_eq!(code(&allocate(&req)), RejectCode::NotFound);
        let mut disabled = lot(&[0]);
        disabled[0].enabled = false;
        let req = request(ParkTarget::Orbit("701".into()), disabled, "first");
        assert_eq!(code(&allocate(&req)), RejectCode::NotFound);
    }

    #[test]
    fn a_group_without_room_is_full() {
        for strategy in ["first", "next", "random"] {
            let req = request(ParkTarget::Group("sales".into()), lot(&[1, 1]), strategy);
            let a = allocate(&req);
            assert_eq!(code(&a), RejectCode::Full, "{strategy}");
            let Allocation::Rejected(r) = a else {
                unreachable!()
            };
            assert_eq!(r.reason, "group sales is full");
        }
        let req = request(ParkTarget::Group("empty".into()), vec![], "first");
        assert_eq!(code(&allocate(&req)), RejectCode::Full);
    }

    #[test]
    fn params_are_checked() {
        assert!(check_params(&[]).is_ok());
        assert!(check_params(&[("strategy".into(), "next".into())]).is_ok());
        assert!(check_params(&[("future-key".into(), "x".into())]).is_ok());
        let err = check_params(&[("strategy".into(), "lifo".into())]).unwrap_err();
        assert!(err.contains("lifo"), "{err}");
        assert!(
            check_params(&[
                ("strategy".into(), "next".into()),
                ("strategy".into(), "first".into())
            ])
            .is_err()
        );
    }
}
