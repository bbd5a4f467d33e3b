
/// Told of park events, after the fact: when the `notify` param names a SIP
/// URI, a MESSAGE there for every parked call. Nothing here delays a call.
impl exports::callpark::policy::events::Guest for Plugin {
    fn check_params(params: Params) -> Result<(), String> {
        match param(&params, "notify") {
            Some(n) if !n.starts_with("sip:") && !n.starts_with("sips:") => {
                Err(format!("notify `{n}` is not a sip: or sips: URI"))
            }
            _ => Ok(()),
        }
    }

    fn observe(event: ParkEvent) -> Vec<EventAction> {
        match (event.kind, param(&event.params, "notify")) {
            (ParkEventKind::Parked, Some(to)) => vec![EventAction::SendMessage(SipMessage {
                to: to.to_string(),
                text: format!("Call from {} parked on {}", event.parked_uri, event.orbit),
            })],
            _ => Vec::new(),
        }
    }
}
