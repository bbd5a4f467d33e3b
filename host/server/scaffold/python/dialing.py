

class Dialing(exports.Dialing):
    """What a dialed string means: `*68<orbit>` parks, `*88<orbit>` retrieves."""

    def check_params(self, params: List[Tuple[str, str]]) -> None:
        pass

    def parse(self, ctx: types.DialContext) -> types.DialAction:
        dialed = ctx.dialed.strip()
        if ctx.dialed_is_orbit:
            # Transferred to a bare orbit: park there; dialed: retrieve.
            if ctx.referred_by is not None or ctx.has_replaces:
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
