//! The default recall plugin: a thin wrapper over `callpark_builtin::recall`,
//! built against `callpark:policy@0.2.0` (whose `recall` is 0.1.0's).

wit_bindgen::generate!({
    path: "../../wit",
    world: "recall-plugin",
    with: {
        "callpark:policy/types@0.2.0": callpark_guest::v0_2::types,
        "callpark:policy/log@0.2.0": callpark_guest::v0_2::log,
    },
});

use callpark_guest::v0_2 as guest;
use guest::types::{Params, ParkedCall, RecallPlan};

struct DefaultRecall;

impl exports::callpark::policy::recall::Guest for DefaultRecall {
    fn check_params(params: Params) -> Result<(), String> {
        callpark_builtin::recall::check_params(&params)
    }

    fn plan(call: ParkedCall) -> RecallPlan {
        let call = guest::parked_call(call);
        guest::recall_plan(callpark_builtin::recall::plan(&call))
    }
}

export!(DefaultRecall);
