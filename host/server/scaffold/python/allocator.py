

class Allocator(exports.Allocator):
    """Which orbit a call is parked on: the first free candidate."""

    def check_params(self, params: List[Tuple[str, str]]) -> None:
        # Refuse what you cannot work with (raise Err("why")): this runs once, at load.
        pass

    def allocate(self, req: types.ParkRequest) -> types.Allocation:
        def free(o: types.OrbitState) -> bool:
            return o.enabled and o.occupied < o.capacity

        def reject(code: types.RejectCode, reason: str) -> types.Allocation:
            return types.Allocation_Rejected(types.Rejection(code, reason))

        if isinstance(req.target, types.ParkTarget_Orbit):
            # A person who dialed an orbit gets that orbit, or a refusal.
            number = req.target.value
            for o in req.candidates:
                if o.number == number:
                    if free(o):
                        return types.Allocation_Orbit(number)
                    return reject(types.RejectCode.BUSY, f"orbit {number} is busy")
            return reject(types.RejectCode.NOT_FOUND, f"orbit {number} does not exist")
        for o in req.candidates:
            if free(o):
                return types.Allocation_Orbit(o.number)
        return reject(types.RejectCode.FULL, "every orbit is taken")
