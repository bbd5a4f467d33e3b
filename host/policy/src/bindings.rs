//! Host-side bindings for the plugin worlds. The `types` and `log`
//! interfaces are generated once, from the world that uses every type
//! (`policy-plugin`), and shared, so all worlds speak the same Rust types.
//!
//! Borrowing: what the host passes to a plugin (a park request, a dial
//! context, a parked call, params) borrows the host's own strings instead of
//! cloning them for every decision; what a plugin answers is owned.

mod shared {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "policy-plugin",
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

pub mod allocator {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "allocator-plugin",
        ownership: Borrowing { duplicate_if_necessary: false },
        with: {
            "callpark:policy/types": super::shared::callpark::policy::types,
            "callpark:policy/log": super::shared::callpark::policy::log,
        },
    });
}

pub mod recall {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "recall-plugin",
        ownership: Borrowing { duplicate_if_necessary: false },
        with: {
            "callpark:policy/types": super::shared::callpark::policy::types,
            "callpark:policy/log": super::shared::callpark::policy::log,
        },
    });
}

pub mod dialing {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "dialing-plugin",
        ownership: Borrowing { duplicate_if_necessary: false },
        with: {
            "callpark:policy/types": super::shared::callpark::policy::types,
            "callpark:policy/log": super::shared::callpark::policy::log,
        },
    });
}

pub use shared::callpark::policy::{log, types};
