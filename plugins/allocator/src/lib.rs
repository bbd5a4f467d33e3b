//! The default allocator plugin: a thin wrapper over `callpark_builtin::allocator`.
//!
//! Built against `callpark:policy@0.2.0`: the host asks `pick`, which
//! decides over the numbered candidates by index without turning one into a
//! string; `allocate` (the 0.1.0 form, which the host does not call on a
//! 0.2.0 plugin) answers the same.

wit_bindgen::generate!({
    path: "../../wit",
    world: "allocator-plugin",
    with: {
        "callpark:policy/types@0.2.0": callpark_guest::v0_2::types,
        "callpark:policy/log@0.2.0": callpark_guest::v0_2::log,
    },
});

use callpark_guest::v0_2 as guest;
use guest::types::{Allocation, Params, ParkRequest, PickRequest, Picked};

struct DefaultAllocator;

impl exports::callpark::policy::allocator::Guest for DefaultAllocator {
    fn check_params(params: Params) -> Result<(), String> {
        callpark_builtin::allocator::check_params(&params)
    }

    fn allocate(req: ParkRequest) -> Allocation {
        let req = guest::park_request(req);
        guest::allocation(callpark_builtin::allocator::allocate(&req))
    }

    fn pick(req: PickRequest) -> Picked {
        let target = guest::park_target(req.target);
        match callpark_builtin::allocator::choose(
            &target,
            &guest::candidates(&req.candidates),
            req.last.map(|i| i as usize),
            req.entropy,
            &req.params,
        ) {
            Ok(i) => Picked::Candidate(i as u32),
            Err(rejection) => Picked::Rejected(guest::rejection(rejection)),
        }
    }
}

export!(DefaultAllocator);
