

class Dialing(exports.Dialing):
    """What a dialed string means: `*68<orbit>` parks, `*88<orbit>` retrieves,
    and a bare orbit parks when it is empty or the call was transferred there,
    and retrieves otherwise. The host asks `parse_dialed`, with the dialed
    orbit's state; `parse` is the 0.1.0 form."""

    def check_params(self, params: List[Tuple[str, str]]) -> None:
        pass

    def parse(self, ctx: types.DialContext) -> types.DialAction:
        return self.parse_dialed(ctx, None)

    def parse_dialed(self, ctx: types.DialContext, orbit: Optional[types.OrbitState]) -> types.DialAction:
        dialed = ctx.dialed.strip()
        if ctx.dialed_is_orbit:
            transferred = ctx.referred_by is not None or ctx.has_replaces
            empty = orbit is not None and orbit.occupied == 0
            if transferred or empty:
                return types.DialAction_ParkOrbit(dialed)
            return types.DialAction_Retrieve(dialed)
        # Orbit numbers and names are at most 64 characters.
        for code in ("*68", "*88"):
            if dialed.startswith(code):
                rest = dialed[len(code):]
                if len(rest) > 64:
                    return types.DialAction_NotFeature()
                if code == "*68":
                    return types.DialAction_ParkOrbit(rest) if rest else types.DialAction_ParkGroup(None)
                return types.DialAction_Retrieve(rest or None)
        return types.DialAction_NotFeature()
