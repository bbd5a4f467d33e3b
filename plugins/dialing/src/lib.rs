//! The default dialing plugin: a thin wrapper over `callpark_builtin::dialing`.
//!
//! Built against `callpark:policy@0.2.0`: the host asks `parse-dialed`,
//! with the state of the dialed orbit, so that the `bare_orbit` param
//! decides what dialing an empty orbit does.

wit_bindgen::generate!({
    path: "../../wit",
    world: "dialing-plugin",
    with: {
        "callpark:policy/types@0.2.0": callpark_guest::v0_2::types,
        "callpark:policy/log@0.2.0": callpark_guest::v0_2::log,
    },
});

use callpark_guest::v0_2 as guest;
use guest::types::{DialAction, DialContext, OrbitState, Params};

struct DefaultDialing;

impl exports::callpark::policy::dialing::Guest for DefaultDialing {
    fn check_params(params: Params) -> Result<(), String> {
        callpark_builtin::dialing::check_params(&params)
    }

    fn parse(ctx: DialContext) -> DialAction {
        Self::parse_dialed(ctx, None)
    }

    fn parse_dialed(ctx: DialContext, orbit: Option<OrbitState>) -> DialAction {
        let ctx = guest::dial_context_with(ctx, orbit);
        guest::dial_action(callpark_builtin::dialing::parse(&ctx))
    }
}

export!(DefaultDialing);
