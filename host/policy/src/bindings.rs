//! Host-side bindings for the three plugin worlds. The `types` and `log`
//! interfaces are generated once (with the allocator world) and shared, so
//! all three worlds speak the same Rust types.

pub mod allocator {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "allocator-plugin",
    });
}

pub mod recall {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "recall-plugin",
        with: {
            "callpark:policy/types": super::allocator::callpark::policy::types,
            "callpark:policy/log": super::allocator::callpark::policy::log,
        },
    });
}

pub mod dialing {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "dialing-plugin",
        with: {
            "callpark:policy/types": super::allocator::callpark::policy::types,
            "callpark:policy/log": super::allocator::callpark::policy::log,
        },
    });
}

pub use allocator::callpark::policy::{log, types};
