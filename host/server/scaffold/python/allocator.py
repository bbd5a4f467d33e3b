

class Allocator(exports.Allocator):
    """Which orbit a call is parked on: the first free candidate.

    The host asks `pick` (numbered candidates, answered by index: no string
    per orbit); `allocate` is the 0.1.0 form, which the host does not call
    on this plugin, answered the same way.
    """

    def check_params(self, params: List[Tuple[str, str]]) -> None:
        # Refuse what you cannot work with (raise Err("why")): this runs once, at load.
        pass

    def pick(self, req: types.PickRequest) -> types.Picked:
        # Candidate i is numbers[i], occupied[i], capacity[i] (0: disabled);
        # an orbit whose number is not a number is in labels.
        c = req.candidates
        labels = dict(c.labels)
        numbers = [labels.get(i, str(n)) for i, n in enumerate(c.numbers)]
        free = [c.occupied[i] < c.capacity[i] for i in range(len(c.numbers))]
        chosen = choose(req.target, free, numbers)
        if isinstance(chosen, types.Rejection):
            return types.Picked_Rejected(chosen)
        return types.Picked_Candidate(chosen)

    def allocate(self, req: types.ParkRequest) -> types.Allocation:
        free = [o.enabled and o.occupied < o.capacity for o in req.candidates]
        chosen = choose(req.target, free, [o.number for o in req.candidates])
        if isinstance(chosen, types.Rejection):
            return types.Allocation_Rejected(chosen)
        return types.Allocation_Orbit(req.candidates[chosen].number)


def choose(target, free: List[bool], numbers: List[str]):
    """The decision: a candidate's index, or a types.Rejection."""
    if isinstance(target, types.ParkTarget_Orbit):
        # A person who dialed an orbit gets that orbit, or a refusal.
        wanted = target.value
        for i, number in enumerate(numbers):
            if number == wanted:
                if free[i]:
                    return i
                return types.Rejection(types.RejectCode.BUSY, f"orbit {wanted} is busy")
        return types.Rejection(types.RejectCode.NOT_FOUND, f"orbit {wanted} does not exist")
    for i, room in enumerate(free):
        if room:
            return i
    return types.Rejection(types.RejectCode.FULL, "every orbit is taken")
