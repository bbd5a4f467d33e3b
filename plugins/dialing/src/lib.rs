//! The default dialing plugin: a thin wrapper over `callpark_builtin::dialing`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "dialing-plugin",
    with: {
        "callpark:policy/types@0.1.0": callpark_guest::types,
        "callpark:policy/log@0.1.0": callpark_guest::log,
    },
});

use callpark_guest::types::{DialAction, DialContext, Params};

struct DefaultDialing;

impl exports::callpark::policy::dialing::Guest for DefaultDialing {
    fn check_params(params: Params) -> Result<(), String> {
        callpark_builtin::dialing::check_params(&params)
    }

    fn parse(ctx: DialContext) -> DialAction {
        let ctx = callpark_guest::dial_context(ctx);
        callpark_guest::dial_action(callpark_builtin::dialing::parse(&ctx))
    }
}

export!(DefaultDialing);
