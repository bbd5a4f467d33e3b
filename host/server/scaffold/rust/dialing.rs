
/// What a dialed string means: `*68<orbit>` parks, `*88<orbit>` retrieves,
/// and a bare orbit parks when it is empty or the call was transferred
/// there, and retrieves otherwise. The host asks `parse-dialed`, with the
/// dialed orbit's state; `parse` is the 0.1.0 form.
impl exports::callpark::policy::dialing::Guest for Plugin {
    fn check_params(_params: Params) -> Result<(), String> {
        Ok(())
    }

    fn parse_dialed(ctx: DialContext, orbit: Option<OrbitState>) -> DialAction {
        let dialed = ctx.dialed.trim();
        // Orbit numbers and names are at most 64 characters.
        let rest = |r: &str| (!r.is_empty() && r.len() <= 64).then(|| r.to_string());
        if ctx.dialed_is_orbit {
            let transferred = ctx.referred_by.is_some() || ctx.has_replaces;
            let empty = orbit.as_ref().is_some_and(|o| o.occupied == 0);
            return if transferred || empty {
                DialAction::ParkOrbit(dialed.to_string())
            } else {
                DialAction::Retrieve(Some(dialed.to_string()))
            };
        }
        if let Some(r) = dialed.strip_prefix("*68") {
            return match rest(r) {
                Some(orbit) => DialAction::ParkOrbit(orbit),
                None if r.is_empty() => DialAction::ParkGroup(None),
                None => DialAction::NotFeature,
            };
        }
        if let Some(r) = dialed.strip_prefix("*88") {
            return match rest(r) {
                Some(orbit) => DialAction::Retrieve(Some(orbit)),
                None if r.is_empty() => DialAction::Retrieve(None),
                None => DialAction::NotFeature,
            };
        }
        DialAction::NotFeature
    }

    fn parse(ctx: DialContext) -> DialAction {
        Self::parse_dialed(ctx, None)
    }
}
