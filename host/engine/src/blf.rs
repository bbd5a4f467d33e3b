//! Busy lamps: RFC 4235 `dialog-info+xml` documents for orbit and group
//! watchers (RFC 6665 SUBSCRIBE/NOTIFY, event package `dialog`).

use std::fmt::Write as _;

/// What a watcher watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Watched {
    Orbit(String),
    Group(String),
}

/// A lamp dialog's state (RFC 4235): `early` flashes, `confirmed` is
/// steady, `terminated` reports the call gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LampState {
    Early,
    Confirmed,
    Terminated,
}

/// One parked call as a lamp shows it.
pub(crate) struct LampDialog<'a> {
    /// Stable for the call: `park-<n>`.
    pub id: String,
    pub orbit: &'a str,
    /// The lamp's own dialog, never the parked caller's: its Call-ID and
    /// tags are 128-bit values keyed by the server's secret, and a pickup
    /// INVITE's Replaces must name all three (`Guard::lamp_pickup`).
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// What `[security] lamp_identity` lets the lamp tell of the caller.
    pub caller_uri: String,
    pub caller_display: String,
    pub state: LampState,
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A full dialog-info document (`state="full"`): every parked call of the
/// watched orbits, with local and remote targets pointing at the orbit so
/// that a pickup lands on the park server.
pub(crate) fn document(
    entity: &str,
    version: u32,
    dialogs: &[LampDialog<'_>],
    host: &str,
) -> String {
    let mut xml = String::new();
    let _ = write!(
        xml,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"{version}\" state=\"full\" entity=\"{}\">\r\n",
        escape(entity)
    );
    for d in dialogs {
        let orbit_uri = format!("sip:{}@{host}", d.orbit);
        let display = if d.caller_display.is_empty() {
            String::new()
        } else {
            format!(" display=\"{}\"", escape(&d.caller_display))
        };
        let _ = write!(
            xml,
            "  <dialog id=\"{}\" call-id=\"{}\" local-tag=\"{}\" remote-tag=\"{}\" direction=\"recipient\">\r\n    <state>{}</state>\r\n    <local>\r\n      <identity>{}</identity>\r\n      <target uri=\"{}\"/>\r\n    </local>\r\n    <remote>\r\n      <identity{display}>{}</identity>\r\n      <target uri=\"{}\"/>\r\n    </remote>\r\n  </dialog>\r\n",
            escape(&d.id),
            escape(&d.call_id),
            escape(&d.local_tag),
            escape(&d.remote_tag),
            match d.state {
                LampState::Early => "early",
                LampState::Confirmed => "confirmed",
                LampState::Terminated => "terminated",
            },
            escape(&orbit_uri),
            escape(&orbit_uri),
            escape(&d.caller_uri),
            escape(&orbit_uri),
        );
    }
    xml.push_str("</dialog-info>\r\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_escaped_and_complete() {
        let d = LampDialog {
            id: "park-7".into(),
            orbit: "701",
            call_id: "abc@host".into(),
            local_tag: "blf7".into(),
            remote_tag: "x<y".into(),
            caller_uri: "sip:bob@example.com".into(),
            caller_display: "Bob & \"Co\"".into(),
            state: LampState::Early,
        };
        let xml = document("sip:701@park", 3, &[d], "park");
        assert!(xml.contains("version=\"3\" state=\"full\" entity=\"sip:701@park\""));
        assert!(xml.contains("<state>early</state>"));
        assert!(xml.contains("remote-tag=\"x&lt;y\""));
        assert!(xml.contains("display=\"Bob &amp; &quot;Co&quot;\""));
        assert!(xml.contains("<target uri=\"sip:701@park\"/>"));
        let empty = document("sip:701@park", 4, &[], "park");
        assert!(!empty.contains("<dialog "));
        assert!(empty.trim_end().ends_with("</dialog-info>"));
    }
}
