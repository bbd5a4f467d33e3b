//! The UAS side of a dialog (RFC 3261 §12): what we need to send requests
//! inside a call we answered.

use callpark_sip::message::{HeaderView, Headers, Method, Request};
use callpark_sip::transaction::Peer;
use callpark_sip::uri::{NameAddr, Uri};

/// Every Record-Route value, in order, comma lists split.
fn record_route(headers: &Headers) -> Vec<String> {
    headers
        .get_all("Record-Route")
        .flat_map(callpark_sip::message::split_commas)
        .map(str::to_string)
        .collect()
}

#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// Their From (with their tag), as our requests' To carries it. Kept
    /// as header text, not parsed: a dialog lives as long as its parked
    /// call, and a parsed address is several times its text.
    pub remote: String,
    /// The INVITE's To (our identity) with our tag: our requests' From.
    pub local: String,
    /// Their Contact: the Request-URI of our requests.
    pub remote_target: Uri,
    /// Record-Route, in order (RFC 3261 §12.1.1).
    pub route_set: Vec<String>,
    pub local_seq: u32,
    /// Where the INVITE came from; in-dialog requests go back there, which
    /// also works through NAT.
    pub peer: Peer,
    pub confirmed: bool,
}

impl Dialog {
    /// The UAS side of a dialog `invite` opened; `seq_seed` picks our
    /// first CSeq.
    pub fn from_invite(invite: &Request, local_tag: String, peer: Peer, seq_seed: u32) -> Dialog {
        let remote = invite
            .from()
            .unwrap_or_else(|_| NameAddr::new(invite.uri.clone()));
        let local = invite
            .to()
            .unwrap_or_else(|_| NameAddr::new(invite.uri.clone()))
            .with_param("tag", &local_tag);
        let remote_target = invite
            .contact()
            .ok()
            .flatten()
            .map(|c| c.uri)
            .unwrap_or_else(|| remote.uri.clone());
        let route_set = record_route(&invite.headers);
        // Our CSeq numbers start at a random point below 2^31 (§8.1.1.5).
        let local_seq = (seq_seed & 0x7FFF_FFFF).max(1);
        Dialog {
            call_id: invite.call_id().unwrap_or_default().to_string(),
            remote_tag: remote.tag().unwrap_or_default().to_string(),
            local_tag,
            remote: remote.to_string(),
            local: local.to_string(),
            remote_target,
            route_set,
            local_seq,
            peer,
            confirmed: false,
        }
    }

    /// The UAC side: a dialog we opened with `invite`, confirmed by `ok`.
    pub fn from_uac(invite: &Request, ok: &callpark_sip::message::Response, peer: Peer) -> Dialog {
        let local = invite
            .from()
            .unwrap_or_else(|_| NameAddr::new(invite.uri.clone()));
        let remote = ok
            .to()
            .unwrap_or_else(|_| NameAddr::new(invite.uri.clone()));
        let remote_target = ok
            .contact()
            .ok()
            .flatten()
            .map(|c| c.uri)
            .unwrap_or_else(|| invite.uri.clone());
        // A UAC takes the Record-Route of the 2xx in reverse (§12.1.2).
        let mut route_set = record_route(&ok.headers);
        route_set.reverse();
        Dialog {
            call_id: invite.call_id().unwrap_or_default().to_string(),
            local_tag: local.tag().unwrap_or_default().to_string(),
            remote_tag: remote.tag().unwrap_or_default().to_string(),
            remote: remote.to_string(),
            local: local.to_string(),
            remote_target,
            route_set,
            local_seq: invite.cseq().map(|c| c.0).unwrap_or(1),
            peer,
            confirmed: true,
        }
    }

    /// The peer's URI (of `remote`), for logs and parker identity.
    pub fn remote_uri(&self) -> String {
        NameAddr::parse(&self.remote)
            .map(|n| n.uri.to_string())
            .unwrap_or_default()
    }

    /// The ACK for a 2xx to our INVITE (CSeq number of the INVITE).
    pub fn ack(&self, invite_seq: u32) -> Request {
        self.build(Method::Ack, invite_seq)
    }

    /// A new request inside the dialog (BYE, re-INVITE, INFO ...).
    pub fn request(&mut self, method: Method) -> Request {
        self.local_seq += 1;
        self.build(method, self.local_seq)
    }

    fn build(&self, method: Method, seq: u32) -> Request {
        let mut headers = Headers::new();
        for route in &self.route_set {
            headers.push("Route", route.clone());
        }
        headers.push("Max-Forwards", "70");
        headers.push("From", self.local.clone());
        headers.push("To", self.remote.clone());
        headers.push("Call-ID", self.call_id.clone());
        headers.push("CSeq", format!("{seq} {method}"));
        Request {
            method,
            uri: self.remote_target.without_headers(),
            headers,
            body: Vec::new(),
        }
    }
}
