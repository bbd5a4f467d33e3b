//! The default recall plugin: a thin wrapper over `callpark_builtin::recall`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "recall-plugin",
    with: {
        "callpark:policy/types@0.1.0": callpark_guest::types,
        "callpark:policy/log@0.1.0": callpark_guest::log,
    },
});

use callpark_guest::types::{Params, ParkedCall, RecallPlan};

struct DefaultRecall;

impl exports::callpark::policy::recall::Guest for DefaultRecall {
    fn check_params(params: Params) -> Result<(), String> {
        callpark_builtin::recall::check_params(&params)
    }

    fn plan(call: ParkedCall) -> RecallPlan {
        let call = callpark_guest::parked_call(call);
        callpark_guest::recall_plan(callpark_builtin::recall::plan(&call))
    }
}

export!(DefaultRecall);
