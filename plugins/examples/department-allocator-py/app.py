# world: allocator-plugin
"""A department allocator for callpark, in Python (componentize-py).

Each department keeps its parked calls in its own block of orbits: a call
parked by someone at `sales.example.com` lands on the first free orbit of
the sales block, and nobody else's call does. Parkers of no department
get the first free orbit outside every block.

Params (the slot's `[plugins.params.allocator]`, or `PUT
/api/v1/plugins/allocator/params`):

    departments = "sales.example.com=760-764; support.example.com=765-769"

A directed park (`*68<orbit>`) lands where it was asked, as the built-in
allocator does; blocks are for parks that leave the choice to us.
"""

from typing import List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log, types


def param(params: List[Tuple[str, str]], key: str) -> Optional[str]:
    for k, v in params:
        if k == key:
            return v
    return None


def departments(params: List[Tuple[str, str]]) -> List[Tuple[str, int, int]]:
    """`domain=lo-hi` entries, `;` separated; raises ValueError with a reason."""
    out = []
    for part in (param(params, "departments") or "").split(";"):
        part = part.strip()
        if not part:
            continue
        domain, sep, block = part.partition("=")
        lo, dash, hi = block.partition("-")
        if not sep or not domain.strip() or not lo.strip().isdigit():
            raise ValueError(f"departments: `{part}` is not like sales.example.com=760-764")
        lo_n = int(lo)
        hi_n = int(hi) if dash else lo_n
        if lo_n > hi_n:
            raise ValueError(f"departments: the block of `{part}` runs backwards")
        out.append((domain.strip().lower(), lo_n, hi_n))
    return out


def domain_of(uri: str) -> str:
    rest = uri.split(":", 1)[-1]
    host = rest.split("@", 1)[-1]
    return host.split(";", 1)[0].split(":", 1)[0].strip("<>").lower()


def free(o: types.OrbitState) -> bool:
    return o.enabled and o.occupied < o.capacity


def in_block(number: str, block: Tuple[str, int, int]) -> bool:
    return number.isdigit() and block[1] <= int(number) <= block[2]


def rejected(code: types.RejectCode, reason: str) -> types.Allocation:
    return types.Allocation_Rejected(types.Rejection(code, reason))


class Allocator(exports.Allocator):
    def check_params(self, params: List[Tuple[str, str]]) -> None:
        try:
            departments(params)
        except ValueError as e:
            raise Err(str(e))

    def allocate(self, req: types.ParkRequest) -> types.Allocation:
        if isinstance(req.target, types.ParkTarget_Orbit):
            wanted = req.target.value
            for o in req.candidates:
                if o.number == wanted:
                    if free(o):
                        return types.Allocation_Orbit(o.number)
                    return rejected(types.RejectCode.BUSY, f"orbit {wanted} is busy")
            return rejected(types.RejectCode.NOT_FOUND, f"no orbit {wanted}")
        try:
            blocks = departments(req.params)
        except ValueError:
            blocks = []
        mine = [b for b in blocks if b[0] == domain_of(req.parker)] if req.parker else []
        if mine:
            pool = [o for o in req.candidates if in_block(o.number, mine[0])]
            log.log(log.Level.DEBUG, f"department {mine[0][0]}: {len(pool)} orbits")
        else:
            pool = [o for o in req.candidates if not any(in_block(o.number, b) for b in blocks)]
        for o in pool:
            if free(o):
                return types.Allocation_Orbit(o.number)
        return rejected(types.RejectCode.FULL, "no free orbit for this department" if mine else "every orbit is taken")
