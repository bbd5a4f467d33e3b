//! {{name}}: a callpark policy plugin (world `{{world}}` of
//! callpark:policy@0.2.0). Every input a decision needs arrives as a
//! parameter, and the answer is checked by the host: see wit/policy.wit.

wit_bindgen::generate!({
    path: "wit",
    world: "{{world}}",
});

#[allow(unused_imports)]
use callpark::policy::log::{Level, log};
#[allow(unused_imports)]
use callpark::policy::types::*;

struct Plugin;

/// The value of a parameter, if the configuration sets it.
#[allow(dead_code)]
fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}
