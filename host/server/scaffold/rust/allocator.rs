
/// Which orbit a call is parked on: the first free candidate. The host asks
/// `pick` (numbered candidates, answered by index: no string per orbit);
/// `allocate` is the 0.1.0 form, which the host does not call on this
/// plugin, answered the same way.
impl exports::callpark::policy::allocator::Guest for Plugin {
    fn check_params(_params: Params) -> Result<(), String> {
        // Refuse what you cannot work with: this runs once, at load.
        Ok(())
    }

    fn pick(req: PickRequest) -> Picked {
        // Candidate i is numbers[i], occupied[i], capacity[i] (0: disabled);
        // an orbit whose number is not a number is in labels.
        let c = &req.candidates;
        let number = |i: usize| match c.labels.iter().find(|(at, _)| *at as usize == i) {
            Some((_, label)) => label.clone(),
            None => c.numbers[i].to_string(),
        };
        let free = |i: usize| c.occupied[i] < c.capacity[i];
        match choose(&req.target, c.numbers.len(), free, number) {
            Ok(i) => Picked::Candidate(i as u32),
            Err(rejection) => Picked::Rejected(rejection),
        }
    }

    fn allocate(req: ParkRequest) -> Allocation {
        let free = |o: &OrbitState| o.enabled && o.occupied < o.capacity;
        match choose(&req.target, req.candidates.len(), |i| free(&req.candidates[i]), |i| {
            req.candidates[i].number.clone()
        }) {
            Ok(i) => Allocation::Orbit(req.candidates[i].number.clone()),
            Err(rejection) => Allocation::Rejected(rejection),
        }
    }
}

/// The decision, by candidate index: `free(i)` says whether candidate `i`
/// has room, `number(i)` is its orbit number.
fn choose(
    target: &ParkTarget,
    count: usize,
    free: impl Fn(usize) -> bool,
    number: impl Fn(usize) -> String,
) -> Result<usize, Rejection> {
    let reject = |code, reason: String| Err(Rejection { code, reason });
    match target {
        // A person who dialed an orbit gets that orbit, or a refusal.
        ParkTarget::Orbit(wanted) => match (0..count).find(|&i| number(i) == *wanted) {
            Some(i) if free(i) => Ok(i),
            Some(_) => reject(RejectCode::Busy, format!("orbit {wanted} is busy")),
            None => reject(RejectCode::NotFound, format!("orbit {wanted} does not exist")),
        },
        ParkTarget::Group(_) | ParkTarget::DefaultLot => match (0..count).find(|&i| free(i)) {
            Some(i) => Ok(i),
            None => reject(RejectCode::Full, "every orbit is taken".into()),
        },
    }
}
