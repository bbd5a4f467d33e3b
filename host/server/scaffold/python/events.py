

class Events(exports.Events):
    """Told of park events, after the fact: when the `notify` param names a
    SIP URI, a MESSAGE there for every parked call. Nothing here delays a call."""

    def check_params(self, params: List[Tuple[str, str]]) -> None:
        notify = param(params, "notify")
        if notify is not None and not notify.startswith(("sip:", "sips:")):
            raise Err(f"notify `{notify}` is not a sip: or sips: URI")

    def observe(self, event: types.ParkEvent) -> List[types.EventAction]:
        notify = param(event.params, "notify")
        if event.kind == types.ParkEventKind.PARKED and notify is not None:
            text = f"Call from {event.parked_uri} parked on {event.orbit}"
            return [types.EventAction_SendMessage(types.SipMessage(notify, text))]
        return []
