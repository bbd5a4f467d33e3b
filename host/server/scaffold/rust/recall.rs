
/// Where an unretrieved call rings: its parker, then the `fallback` param.
impl exports::callpark::policy::recall::Guest for Plugin {
    fn check_params(params: Params) -> Result<(), String> {
        match param(&params, "fallback") {
            Some(f) if !f.is_empty() && !["sip:", "sips:", "tel:"].iter().any(|s| f.starts_with(s)) => {
                Err(format!("fallback `{f}` is not a sip:, sips: or tel: URI"))
            }
            _ => Ok(()),
        }
    }

    fn plan(call: ParkedCall) -> RecallPlan {
        let step = |target: &str| RecallStep {
            target: target.to_string(),
            ring_ms: 30_000,
            alert_info: None,
            display: Some(format!("Park {}", call.orbit)),
        };
        let mut steps = Vec::new();
        if !call.parker.is_empty() {
            steps.push(step(&call.parker));
        }
        if let Some(fallback) = param(&call.params, "fallback").filter(|f| !f.is_empty()) {
            steps.push(step(fallback));
        }
        RecallPlan {
            steps,
            end: EndAction::Disconnect,
        }
    }
}
