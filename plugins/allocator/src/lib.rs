//! The default allocator plugin: a thin wrapper over `callpark_builtin::allocator`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "allocator-plugin",
    with: {
        "callpark:policy/types@0.1.0": callpark_guest::types,
        "callpark:policy/log@0.1.0": callpark_guest::log,
    },
});

use callpark_guest::types::{Allocation, Params, ParkRequest};

struct DefaultAllocator;

impl exports::callpark::policy::allocator::Guest for DefaultAllocator {
    fn check_params(params: Params) -> Result<(), String> {
        callpark_builtin::allocator::check_params(&params)
    }

    fn allocate(req: ParkRequest) -> Allocation {
        let req = callpark_guest::park_request(req);
        callpark_guest::allocation(callpark_builtin::allocator::allocate(&req))
    }
}

export!(DefaultAllocator);
