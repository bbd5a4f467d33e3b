//! The default park policies, written once.
//!
//! The server uses this crate natively as its built-in policy (the answer
//! whenever no plugin is configured or a plugin fails), and the three default
//! plugins in `plugins/` are thin WIT wrappers over the same functions. It has
//! no WASM dependency and no IO: every function is pure.

pub mod allocator;
pub mod dialing;
pub mod recall;

use callpark_core::{
    Allocation, DialAction, DialContext, ParkRequest, ParkedCall, Policy, PolicyError, RecallPlan,
};

/// The built-in policy: the default allocator, recall and dialing logic with
/// the params each request carries.
#[derive(Debug, Default, Clone, Copy)]
pub struct BuiltinPolicy;

impl Policy for BuiltinPolicy {
    fn allocate(&self, req: &ParkRequest) -> Result<Allocation, PolicyError> {
        Ok(allocator::allocate(req))
    }

    fn parse_dial(&self, ctx: &DialContext) -> Result<DialAction, PolicyError> {
        Ok(dialing::parse(ctx))
    }

    fn plan_recall(&self, call: &ParkedCall) -> Result<RecallPlan, PolicyError> {
        Ok(recall::plan(call))
    }
}

/// Rejects keys that appear twice: params are a map, and a duplicate key is
/// always a configuration mistake.
fn check_unique_keys(params: &[(String, String)]) -> Result<(), String> {
    for (i, (key, _)) in params.iter().enumerate() {
        if params[..i].iter().any(|(k, _)| k == key) {
            return Err(format!("parameter `{key}` is given twice"));
        }
    }
    Ok(())
}
