//! Host-side bindings for the plugin worlds, at every version of
//! `callpark:policy` the host serves: `v0_1` (frozen, `wit/0.1.0`) and
//! `v0_2` (`wit/`). In each, the `types` and `log` interfaces are generated
//! once, from a world that includes every world of the version, and shared,
//! so all worlds of a version speak the same Rust types.
//!
//! Borrowing: what the host passes to a plugin (a park request, a dial
//! context, a parked call, params) borrows the host's own strings instead of
//! cloning them for every decision; what a plugin answers is owned.

macro_rules! version {
    ($path:literal, $everything:literal, $($module:ident: $world:literal),*) => {
        mod shared {
            wasmtime::component::bindgen!({
                path: $path,
                inline: $everything,
                world: "callpark:host/everything",
                ownership: Borrowing { duplicate_if_necessary: false },
            });
        }

        $(
            pub mod $module {
                wasmtime::component::bindgen!({
                    path: $path,
                    world: $world,
                    ownership: Borrowing { duplicate_if_necessary: false },
                    with: {
                        "callpark:policy/types": super::shared::callpark::policy::types,
                        "callpark:policy/log": super::shared::callpark::policy::log,
                    },
                });
            }
        )*

        pub use shared::callpark::policy::{log, types};
    };
}

pub mod v0_1 {
    version!(
        "../../wit/0.1.0",
        "package callpark:host;
         world everything { include callpark:policy/policy-plugin@0.1.0; }",
        allocator: "allocator-plugin",
        recall: "recall-plugin",
        dialing: "dialing-plugin"
    );
}

pub mod v0_2 {
    version!(
        "../../wit",
        "package callpark:host;
         world everything {
             include callpark:policy/policy-plugin@0.2.0;
             include callpark:policy/events-plugin@0.2.0;
         }",
        allocator: "allocator-plugin",
        recall: "recall-plugin",
        dialing: "dialing-plugin",
        events: "events-plugin"
    );
}
