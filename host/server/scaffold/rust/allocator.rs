
/// Which orbit a call is parked on: the first free candidate.
impl exports::callpark::policy::allocator::Guest for Plugin {
    fn check_params(_params: Params) -> Result<(), String> {
        // Refuse what you cannot work with: this runs once, at load.
        Ok(())
    }

    fn allocate(req: ParkRequest) -> Allocation {
        let free = |o: &OrbitState| o.enabled && o.occupied < o.capacity;
        let reject = |code, reason: String| Allocation::Rejected(Rejection { code, reason });
        match &req.target {
            // A person who dialed an orbit gets that orbit, or a refusal.
            ParkTarget::Orbit(number) => match req.candidates.iter().find(|o| &o.number == number) {
                Some(o) if free(o) => Allocation::Orbit(number.clone()),
                Some(_) => reject(RejectCode::Busy, format!("orbit {number} is busy")),
                None => reject(RejectCode::NotFound, format!("orbit {number} does not exist")),
            },
            ParkTarget::Group(_) | ParkTarget::DefaultLot => {
                match req.candidates.iter().find(|o| free(o)) {
                    Some(o) => Allocation::Orbit(o.number.clone()),
                    None => reject(RejectCode::Full, "every orbit is taken".into()),
                }
            }
        }
    }
}
