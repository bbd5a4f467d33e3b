

class Recall(exports.Recall):
    """Where an unretrieved call rings: its parker, then the `fallback` param."""

    def check_params(self, params: List[Tuple[str, str]]) -> None:
        fallback = param(params, "fallback") or ""
        if fallback and not fallback.startswith(("sip:", "sips:", "tel:")):
            raise Err(f"fallback `{fallback}` is not a sip:, sips: or tel: URI")

    def plan(self, call: types.ParkedCall) -> types.RecallPlan:
        def step(target: str) -> types.RecallStep:
            return types.RecallStep(target, 30000, None, f"Park {call.orbit}")

        steps = []
        if call.parker:
            steps.append(step(call.parker))
        fallback = param(call.params, "fallback")
        if fallback:
            steps.append(step(fallback))
        return types.RecallPlan(steps, types.EndAction_Disconnect())
