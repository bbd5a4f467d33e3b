//! RFC 3261 §17 transactions (with the RFC 6026 `Accepted` state), sans-IO.
//!
//! Feed datagrams and stream frames in with `handle_message`, requests and
//! responses from the transaction user with `send_request` and
//! `send_response`, and time with `handle_timeout`; drain `poll_event`,
//! `poll_transmit` and `poll_timeout`. Time is a `Duration` from any origin.
//!
//! Over UDP the layer retransmits (timers A, E, G and our 2xx until the ACK
//! arrives) and absorbs retransmissions of what it already answered. Over
//! TCP it never retransmits and its wait timers (D, I, J, K) are zero.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use crate::codec::{Malformed, parse, serialize_request, serialize_response};
use crate::message::{HeaderView, Message, Method, Request, Response, Via};
use crate::uri::Host;

/// RTT estimate (RFC 3261 §17.1.1.1).
pub const T1: Duration = Duration::from_millis(500);
/// The longest retransmit interval for non-INVITE requests and INVITE responses.
pub const T2: Duration = Duration::from_secs(4);
/// How long a message may live in the network.
pub const T4: Duration = Duration::from_secs(5);

/// Where a message came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Over UDP, through the server's listen socket of this index: a
    /// message leaves from the socket its transaction or dialog came in
    /// on. 0 is the first listen address, the one our Via and Contact name,
    /// and the socket of every request we start.
    Udp(u16),
    /// A TCP connection, named by the server's connection id.
    Tcp(u64),
    /// A TLS connection (RFC 3261 §26.2), named the same way.
    Tls(u64),
}

impl Transport {
    pub fn reliable(self) -> bool {
        matches!(self, Transport::Tcp(_) | Transport::Tls(_))
    }

    fn via_name(self) -> &'static str {
        match self {
            Transport::Udp(_) => "UDP",
            Transport::Tcp(_) => "TCP",
            Transport::Tls(_) => "TLS",
        }
    }
}

/// The connection id of a stream transport that means "open one to the
/// address (or reuse the one open)": the host does it; listeners never
/// hand out this id.
pub const NEW_CONNECTION: u64 = 0;

/// A remote address on a transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// Bytes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub peer: Peer,
    pub bytes: Vec<u8>,
}

/// A transaction's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(u64);

/// What the transaction user hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// A new request (not ACK, not a retransmission). Answer it with
    /// `send_response(tx, ...)`. A CANCEL has already been answered with
    /// 200 when it matched an INVITE: see `Cancelled`.
    Request {
        tx: TxId,
        request: Request,
        peer: Peer,
    },
    /// An ACK for a 2xx we sent (or a stray ACK): the dialog's business.
    Ack { request: Request, peer: Peer },
    /// A CANCEL matched the INVITE transaction `invite`, still proceeding;
    /// the transaction user should answer that INVITE with 487.
    Cancelled { invite: TxId, cancel: Request },
    /// A response to a request we sent (2xx retransmissions included, so
    /// that the dialog can ACK each).
    Response { tx: TxId, response: Response },
    /// A request we sent got no final response in time (timer B or F):
    /// treat as 408.
    Timeout { tx: TxId },
    /// Our 2xx to an INVITE was never acknowledged (64*T1): the dialog
    /// should end with a BYE.
    AckTimeout { tx: TxId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    Calling,
    Proceeding,
    Completed,
    Accepted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// G: retransmit a non-2xx final response to INVITE; also our 2xx
    /// retransmission in `Accepted` (RFC 3261 §13.3.1.4).
    Retransmit,
    /// H, J, L (server) and B, F, M, D, K (client): the transaction ends
    /// or gives up.
    Finish,
    /// I: confirmed INVITE transactions linger to absorb ACKs.
    Linger,
}

#[derive(Debug)]
struct ServerTx {
    key: ServerKey,
    is_invite: bool,
    state: ServerState,
    peer: Peer,
    /// The opening request cut to what a response needs
    /// (`Request::response_base`): a transaction holds no body and no
    /// headers beyond those, whatever the peer sent. `None` once an
    /// accepted INVITE is ACKed (see `acknowledged`). Boxed, as the
    /// transaction is: tables of transactions inline keep their size
    /// again in every free slot.
    request: Option<Box<Request>>,
    last_response: Option<Vec<u8>>,
    interval: Duration,
    /// Timer retransmissions of the last response so far (see
    /// `LARGE_RESPONSE`).
    resent: u32,
    /// For matching the ACK of a 2xx: Call-ID and CSeq number, until the
    /// ACK came.
    dialog_key: Option<(String, u32)>,
    /// The To tag of our responses, which a CANCEL's 200 repeats (§9.2).
    to_tag: Option<String>,
    armed: Armed,
}

#[derive(Debug)]
struct ClientTx {
    key: ClientKey,
    is_invite: bool,
    state: ClientState,
    peer: Peer,
    /// An INVITE, kept for its ACK and its CANCEL; a non-INVITE
    /// transaction needs only its bytes.
    request: Option<Box<Request>>,
    bytes: Vec<u8>,
    interval: Duration,
    armed: Armed,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ServerKey {
    branch: String,
    sent_by: String,
    /// ACK is matched to INVITE, so INVITE and ACK share `INVITE`.
    method: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    branch: String,
    method: String,
}

/// The transaction layer of one SIP endpoint.
pub struct Transactions {
    /// Our `sent-by` for the Via of requests we send (`host:port`).
    sent_by: String,
    entropy: u64,
    next_id: u64,
    server: HashMap<TxId, Box<ServerTx>>,
    server_keys: HashMap<ServerKey, TxId>,
    accepted_by_dialog: HashMap<(String, u32), TxId>,
    client: HashMap<TxId, Box<ClientTx>>,
    client_keys: HashMap<ClientKey, TxId>,
    /// Every armed deadline of the live transactions, each of which keeps
    /// its own keys (`Armed`) and takes them along when it goes.
    timers: BTreeMap<(Duration, u64), (TxId, Timer)>,
    timer_seq: u64,
    events: VecDeque<TxEvent>,
    transmits: VecDeque<Transmit>,
    /// Server transactions that only absorb retransmissions now (answered
    /// non-INVITE, ACKed INVITE), oldest first; ids of transactions gone
    /// since are skipped. Past the bound these make room for new requests
    /// before any is refused.
    lingering: VecDeque<TxId>,
    /// Server transactions kept at most (see `handle_request`).
    max_server: usize,
    /// Requests answered 503 because of that bound or an overload.
    shed: u64,
    /// The host's loop has more queued than it reads in a turn.
    overloaded: bool,
}

/// The default bound on server transactions: a non-INVITE transaction is
/// kept 32 s over UDP to absorb retransmissions, about 2 KiB each, so this
/// bounds them near 40 MiB whatever the rate.
pub const MAX_SERVER_TRANSACTIONS: usize = 20_000;

/// A response above this size (RFC 3261 §18.1.1's path-MTU mark) is
/// resent on a timer only `LARGE_RESPONSE_RESENDS` times. The source of a
/// UDP request is unverified until it ACKs, and a response that copies a
/// long Via list is as big as the request: resent eleven times it turned
/// one spoofed datagram into eleven towards a victim. Past that, only the
/// peer's own retransmission of its request gets the response again, one
/// for one.
pub const LARGE_RESPONSE: usize = 1300;
/// Timer retransmissions of a large response.
pub const LARGE_RESPONSE_RESENDS: u32 = 2;

/// The ACK of an error to our INVITE, to its peer (RFC 3261 §17.1.1.3);
/// `None` for a non-INVITE, which keeps no request.
fn error_ack(t: &ClientTx, response: &Response) -> Option<Transmit> {
    let invite = t.request.as_ref()?;
    Some(Transmit {
        peer: t.peer,
        bytes: serialize_request(&ack_for_error(invite, response)),
    })
}

/// A transaction's armed deadlines (keys of `Transactions::timers`), by
/// `timer_slot`: kept in the transaction, so that they go with it.
type Armed = [Option<(Duration, u64)>; 3];

fn timer_slot(t: Timer) -> usize {
    match t {
        Timer::Retransmit => 0,
        Timer::Finish => 1,
        Timer::Linger => 2,
    }
}

fn server_key(via: &Via, request: &Request) -> ServerKey {
    let method = match &request.method {
        Method::Ack => "INVITE".to_string(),
        m => m.as_str().to_string(),
    };
    let sent_by = match via.port {
        Some(p) => format!("{}:{p}", via.host),
        None => via.host.to_string(),
    };
    let branch = match via.branch() {
        Some(b) if b.starts_with("z9hG4bK") => b.to_string(),
        // RFC 2543 peers (no magic cookie, or no branch at all): §17.2.3
        // matches on the Request-URI, From tag, Call-ID, CSeq number and
        // the whole top Via. The To tag is left out: the INVITE has none
        // and the ACK of a non-2xx carries ours. The key cannot collide
        // with an RFC 3261 one, which always starts with the cookie.
        other => format!(
            "2543 {} {} {} {} {}",
            request.uri,
            request
                .from()
                .ok()
                .and_then(|f| f.tag().map(str::to_string))
                .unwrap_or_default(),
            request.call_id().unwrap_or_default(),
            request.cseq().map(|c| c.0).unwrap_or_default(),
            other.unwrap_or_default()
        ),
    };
    ServerKey {
        branch,
        sent_by: sent_by.to_ascii_lowercase(),
        method,
    }
}

impl Transactions {
    /// `sent_by` is what we put in our Via (`host:port`); `entropy` seeds
    /// branch generation.
    pub fn new(sent_by: impl Into<String>, entropy: u64) -> Transactions {
        Transactions {
            sent_by: sent_by.into(),
            entropy: entropy | 1,
            next_id: 0,
            server: HashMap::new(),
            server_keys: HashMap::new(),
            accepted_by_dialog: HashMap::new(),
            client: HashMap::new(),
            client_keys: HashMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            lingering: VecDeque::new(),
            max_server: MAX_SERVER_TRANSACTIONS,
            shed: 0,
            overloaded: false,
        }
    }

    /// Sets the bound on server transactions (at least 1).
    pub fn set_max_server_transactions(&mut self, max: usize) {
        self.max_server = max.max(1);
    }

    /// Whether the host is behind: while it is, new INVITEs, SUBSCRIBEs
    /// and REFERs get 503 with Retry-After statelessly; requests in a
    /// dialog and retransmissions are served as always.
    pub fn set_overloaded(&mut self, overloaded: bool) {
        self.overloaded = overloaded;
    }

    /// Requests answered 503 by the bound so far.
    pub fn shed(&self) -> u64 {
        self.shed
    }

    /// Live transactions (server, client).
    pub fn len(&self) -> (usize, usize) {
        (self.server.len(), self.client.len())
    }

    /// A fresh token (xorshift64*): branches, tags, Call-IDs.
    pub fn token(&mut self) -> String {
        let mut x = self.entropy;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.entropy = x;
        format!("{:016x}", x.wrapping_mul(0x2545_F491_4F6C_DD1D))
    }

    fn id(&mut self) -> TxId {
        self.next_id += 1;
        TxId(self.next_id)
    }

    /// The deadlines a transaction has armed, one slot per kind of timer.
    fn armed(&mut self, tx: TxId) -> Option<&mut Armed> {
        if let Some(t) = self.server.get_mut(&tx) {
            return Some(&mut t.armed);
        }
        self.client.get_mut(&tx).map(|t| &mut t.armed)
    }

    fn arm(&mut self, now: Duration, tx: TxId, timer: Timer, after: Duration) {
        self.disarm(tx, timer);
        self.timer_seq += 1;
        let at = (now + after, self.timer_seq);
        // A transaction that is gone arms nothing.
        let Some(armed) = self.armed(tx) else { return };
        armed[timer_slot(timer)] = Some(at);
        self.timers.insert(at, (tx, timer));
    }

    fn disarm(&mut self, tx: TxId, timer: Timer) {
        if let Some(at) = self.armed(tx).and_then(|a| a[timer_slot(timer)].take()) {
            self.timers.remove(&at);
        }
    }

    fn forget_server(&mut self, id: TxId) {
        if let Some(tx) = self.server.remove(&id) {
            self.server_keys.remove(&tx.key);
            if let Some(dialog) = &tx.dialog_key
                && self.accepted_by_dialog.get(dialog) == Some(&id)
            {
                self.accepted_by_dialog.remove(dialog);
            }
            for at in tx.armed.iter().flatten() {
                self.timers.remove(at);
            }
        }
    }

    /// Our 2xx to an INVITE was ACKed. RFC 6026: the Accepted transaction
    /// now only absorbs retransmitted INVITEs until timer L, and sends
    /// nothing more, so it keeps only its key (a parked call's INVITE would
    /// otherwise hold the request and our 2xx for 32 s).
    fn acknowledged(&mut self, id: TxId) {
        self.disarm(id, Timer::Retransmit);
        self.linger(id);
        if let Some(t) = self.server.get_mut(&id) {
            t.request = None;
            t.last_response = None;
            t.dialog_key = None;
        }
    }

    /// Notes that a server transaction now only absorbs retransmissions.
    fn linger(&mut self, id: TxId) {
        self.lingering.push_back(id);
        // Ids of transactions their timers ended stay queued until popped:
        // compact when they outnumber the live ones, so the queue stays
        // within a small multiple of the table.
        if self.lingering.len() > 2 * self.server.len() + 1024 {
            let server = &self.server;
            self.lingering.retain(|id| server.contains_key(id));
        }
    }

    /// Forgets the oldest lingering server transactions until fewer than
    /// `limit` are open (or none lingers). A forgotten one costs at most a
    /// retransmitted request answered again; a refused new request costs
    /// a call.
    fn make_room(&mut self, limit: usize) {
        while self.server.len() >= limit {
            let Some(id) = self.lingering.pop_front() else {
                return;
            };
            self.forget_server(id);
        }
    }

    fn forget_client(&mut self, id: TxId) {
        if let Some(tx) = self.client.remove(&id) {
            self.client_keys.remove(&tx.key);
            for at in tx.armed.iter().flatten() {
                self.timers.remove(at);
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// Takes in a parsed message from `peer`.
    pub fn handle_message(&mut self, now: Duration, message: Message, peer: Peer) {
        match message {
            Message::Request(r) => self.handle_request(now, r, peer),
            Message::Response(r) => self.handle_response(now, r),
        }
    }

    /// Parses and takes in bytes; malformed requests that can be answered
    /// get 400 (505, 416) with a Warning, the rest are dropped. Returns the
    /// parse error, for logging: it keeps its request exactly when that was
    /// answered (`Malformed::answered`).
    pub fn handle_bytes(
        &mut self,
        now: Duration,
        bytes: &[u8],
        peer: Peer,
    ) -> Result<(), Malformed> {
        match parse(bytes) {
            Ok(m) => {
                self.handle_message(now, m, peer);
                Ok(())
            }
            Err(mut e) => {
                // A Via that cannot be read (`SIP/7.0/UDP`) is copied as it
                // came and the answer goes back to the packet's source.
                if let Some(request) = e.request.as_deref()
                    && request.method != Method::Ack
                    && ["Via", "From", "To", "Call-ID", "CSeq"]
                        .iter()
                        .all(|h| request.header(h).is_some())
                {
                    let mut response = request.response(e.status, None);
                    response
                        .headers
                        .push("Warning", crate::message::warning_value(&e.reason));
                    let bytes = serialize_response(&response);
                    self.transmits.push_back(Transmit {
                        peer: response_peer(request, peer),
                        bytes,
                    });
                    return Err(e);
                }
                e.request = None;
                Err(e)
            }
        }
    }

    fn handle_request(&mut self, now: Duration, mut request: Request, peer: Peer) {
        // RFC 3261 §18.2.1 and RFC 3581: note where the request really came
        // from, so that responses find their way back through NAT.
        let Ok(mut via) = request.top_via() else {
            return;
        };
        let ip = peer.addr.ip();
        if via.host != Host::Ip(ip) {
            via.set_param("received", Some(ip.to_string()));
        }
        if via.param("rport").is_some() {
            via.set_param("rport", Some(peer.addr.port().to_string()));
            via.set_param("received", Some(ip.to_string()));
        }
        rewrite_top_via(&mut request, &via);

        let key = server_key(&via, &request);

        if let Some(&id) = self.server_keys.get(&key) {
            let tx = self.server.get_mut(&id).expect("key map and table agree");
            if request.method == Method::Ack {
                if tx.state == ServerState::Accepted {
                    // A peer that ACKs our 2xx with the INVITE's branch.
                    if let Some(dialog) = tx.dialog_key.clone() {
                        self.accepted_by_dialog.remove(&dialog);
                    }
                    self.acknowledged(id);
                    self.events.push_back(TxEvent::Ack { request, peer });
                    return;
                }
                if tx.state == ServerState::Completed {
                    tx.state = ServerState::Confirmed;
                    self.disarm(id, Timer::Retransmit);
                    self.linger(id);
                    self.disarm(id, Timer::Finish);
                    let linger = if peer.transport.reliable() {
                        Duration::ZERO
                    } else {
                        T4
                    };
                    self.arm(now, id, Timer::Linger, linger);
                }
                return;
            }
            // A retransmission: repeat the last response, if any.
            if let Some(bytes) = tx.last_response.clone() {
                let peer = tx.peer;
                self.transmits.push_back(Transmit { peer, bytes });
            }
            return;
        }

        if request.method == Method::Ack {
            // The ACK of a 2xx travels in a new transaction: match by dialog.
            let dialog = (
                request.call_id().unwrap_or_default().to_string(),
                request.cseq().map(|c| c.0).unwrap_or_default(),
            );
            if let Some(id) = self.accepted_by_dialog.remove(&dialog) {
                self.acknowledged(id);
            }
            self.events.push_back(TxEvent::Ack { request, peer });
            return;
        }

        if request.method == Method::Cancel {
            self.make_room(self.max_server * 2);
            if self.server.len() >= self.max_server * 2 {
                self.shed += 1;
                return;
            }
            let invite_key = ServerKey {
                method: "INVITE".into(),
                ..key.clone()
            };
            let id = self.id();
            let matched = self.server_keys.get(&invite_key).copied();
            let ok = match matched {
                Some(invite) => {
                    let tag = self.server.get(&invite).and_then(|t| t.to_tag.clone());
                    request.response(200, tag.as_deref())
                }
                None => request.response(481, None),
            };
            let bytes = serialize_response(&ok);
            let reply_to = response_peer(&request, peer);
            self.transmits.push_back(Transmit {
                peer: reply_to,
                bytes: bytes.clone(),
            });
            self.insert_server(
                now,
                id,
                key,
                false,
                ServerState::Completed,
                reply_to,
                &request,
                Some(bytes),
            );
            if let Some(invite) = matched
                && self
                    .server
                    .get(&invite)
                    .is_some_and(|t| t.state == ServerState::Proceeding)
            {
                self.events.push_back(TxEvent::Cancelled {
                    invite,
                    cancel: request,
                });
            }
            return;
        }

        // Load shedding: at the bound the oldest transactions that only
        // absorb retransmissions make room first; past it, with every one
        // still at work, a request that opens something new is answered
        // 503 statelessly (no transaction kept, nothing for the transaction
        // user), so that a flood costs a response and no memory. Requests
        // inside a dialog keep flowing up to twice the bound, so that calls
        // in progress can still end.
        let in_dialog = request.to().ok().is_some_and(|t| t.tag().is_some());
        let limit = if in_dialog {
            self.max_server * 2
        } else {
            self.max_server
        };
        self.make_room(limit);
        // Work queued faster than it is done (the host says so): a new
        // call or watcher is turned away at once, before any of the work
        // a park costs, so that every caller gets an answer instead of a
        // timeout while the kernel drops what the loop cannot read.
        let opens_something = !in_dialog
            && matches!(
                request.method,
                Method::Invite | Method::Subscribe | Method::Refer
            );
        if self.server.len() >= limit || (self.overloaded && opens_something) {
            self.shed += 1;
            let mut busy = request.response(503, None);
            busy.headers.push("Retry-After", "5");
            let bytes = serialize_response(&busy);
            self.transmits.push_back(Transmit {
                peer: response_peer(&request, peer),
                bytes,
            });
            return;
        }
        let id = self.id();
        let is_invite = request.method == Method::Invite;
        let reply_to = response_peer(&request, peer);
        let state = if is_invite {
            ServerState::Proceeding
        } else {
            ServerState::Trying
        };
        let mut last = None;
        if is_invite {
            // Stop the caller's retransmissions at once (§17.2.1).
            let trying = serialize_response(&request.response(100, None));
            self.transmits.push_back(Transmit {
                peer: reply_to,
                bytes: trying.clone(),
            });
            last = Some(trying);
        }
        self.insert_server(now, id, key, is_invite, state, reply_to, &request, last);
        self.events.push_back(TxEvent::Request {
            tx: id,
            request,
            peer,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_server(
        &mut self,
        now: Duration,
        id: TxId,
        key: ServerKey,
        is_invite: bool,
        state: ServerState,
        peer: Peer,
        request: &Request,
        last_response: Option<Vec<u8>>,
    ) {
        let dialog_key = is_invite.then(|| {
            (
                request.call_id().unwrap_or_default().to_string(),
                request.cseq().map(|c| c.0).unwrap_or_default(),
            )
        });
        self.server_keys.insert(key.clone(), id);
        self.server.insert(
            id,
            Box::new(ServerTx {
                key,
                is_invite,
                state,
                peer,
                request: Some(Box::new(request.response_base())),
                last_response,
                interval: T1,
                resent: 0,
                dialog_key,
                to_tag: None,
                armed: Armed::default(),
            }),
        );
        if state == ServerState::Completed {
            // A CANCEL's own transaction: absorb retransmissions (timer J).
            let wait = if peer.transport.reliable() {
                Duration::ZERO
            } else {
                64 * T1
            };
            self.arm(now, id, Timer::Finish, wait);
            self.linger(id);
        }
    }

    /// Sends a response in a server transaction. Provisional responses may
    /// be sent many times; the first final one completes the transaction.
    pub fn send_response(&mut self, now: Duration, tx: TxId, response: Response) {
        let Some(t) = self.server.get_mut(&tx) else {
            return;
        };
        if matches!(
            t.state,
            ServerState::Completed | ServerState::Confirmed | ServerState::Accepted
        ) {
            return;
        }
        let bytes = serialize_response(&response);
        let peer = t.peer;
        self.transmits.push_back(Transmit {
            peer,
            bytes: bytes.clone(),
        });
        t.last_response = Some(bytes);
        if let Some(tag) = response
            .to()
            .ok()
            .and_then(|to| to.tag().map(str::to_string))
        {
            t.to_tag = Some(tag);
        }
        let reliable = peer.transport.reliable();
        if response.status < 200 {
            if t.state == ServerState::Trying {
                t.state = ServerState::Proceeding;
            }
            return;
        }
        if t.is_invite && response.status < 300 {
            // RFC 6026: Accepted. Our 2xx is resent until the ACK (§13.3.1.4).
            t.state = ServerState::Accepted;
            t.interval = T1;
            if let Some(key) = t.dialog_key.clone() {
                self.accepted_by_dialog.insert(key, tx);
            }
            if !reliable {
                self.arm(now, tx, Timer::Retransmit, T1);
            }
            self.arm(now, tx, Timer::Finish, 64 * T1);
        } else if t.is_invite {
            t.state = ServerState::Completed;
            t.interval = T1;
            if !reliable {
                self.arm(now, tx, Timer::Retransmit, T1);
            }
            self.arm(now, tx, Timer::Finish, 64 * T1);
        } else {
            t.state = ServerState::Completed;
            // Kept for timer J to answer retransmissions alike (a BYE
            // retransmitted after its call ended must get its 200 again,
            // not 481), but as lingering: at the bound the oldest make
            // room, so a flood of them never fills the table new calls
            // need.
            let wait = if reliable { Duration::ZERO } else { 64 * T1 };
            self.arm(now, tx, Timer::Finish, wait);
            self.linger(tx);
        }
    }

    /// Sends a request in a new client transaction to `peer`. A Via with a
    /// fresh branch is put on top. Not for ACK: see `send_ack`.
    pub fn send_request(&mut self, now: Duration, mut request: Request, peer: Peer) -> TxId {
        let branch = format!("z9hG4bK{}", self.token());
        request.headers.push_front(
            "Via",
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                peer.transport.via_name(),
                self.sent_by
            ),
        );
        let key = ClientKey {
            branch,
            method: request.method.as_str().to_string(),
        };
        self.start_client(now, key, request, peer)
    }

    /// Sends a request and opens its client transaction with timers A/E
    /// (unreliable transports) and B/F.
    fn start_client(
        &mut self,
        now: Duration,
        key: ClientKey,
        request: Request,
        peer: Peer,
    ) -> TxId {
        let bytes = serialize_request(&request);
        let id = self.id();
        self.transmits.push_back(Transmit {
            peer,
            bytes: bytes.clone(),
        });
        self.client_keys.insert(key.clone(), id);
        self.client.insert(
            id,
            Box::new(ClientTx {
                key,
                is_invite: request.method == Method::Invite,
                state: ClientState::Calling,
                peer,
                request: (request.method == Method::Invite).then(|| Box::new(request)),
                bytes,
                interval: T1,
                armed: Armed::default(),
            }),
        );
        if !peer.transport.reliable() {
            self.arm(now, id, Timer::Retransmit, T1);
        }
        self.arm(now, id, Timer::Finish, 64 * T1);
        id
    }

    /// Cancels a client INVITE that has no final response yet (RFC 3261
    /// §9.1): a CANCEL with the INVITE's Request-URI, top Via, Call-ID,
    /// From, To and CSeq number, in a non-INVITE transaction of its own.
    pub fn send_cancel(&mut self, now: Duration, invite: TxId) -> Option<TxId> {
        let t = self.client.get(&invite)?;
        if !t.is_invite || !matches!(t.state, ClientState::Calling | ClientState::Proceeding) {
            return None;
        }
        let inv = t.request.as_ref()?;
        let mut headers = crate::message::Headers::new();
        for name in ["Via", "From", "To", "Call-ID"] {
            if let Some(v) = inv.headers.get(name) {
                headers.push(name, v);
            }
        }
        for route in inv.headers.get_all("Route") {
            headers.push("Route", route);
        }
        let seq = inv.cseq().map(|c| c.0).unwrap_or(1);
        headers.push("CSeq", format!("{seq} CANCEL"));
        headers.push("Max-Forwards", "70");
        let cancel = Request {
            method: Method::Cancel,
            uri: inv.uri.clone(),
            headers,
            body: Vec::new(),
        };
        let peer = t.peer;
        let key = ClientKey {
            branch: t.key.branch.clone(),
            method: "CANCEL".into(),
        };
        // A phone that ignores the CANCEL must not keep the INVITE alive
        // forever: it ends 64*T1 from now (§9.1).
        self.arm(now, invite, Timer::Finish, 64 * T1);
        Some(self.start_client(now, key, cancel, peer))
    }

    /// Sends an ACK for a 2xx (a transaction of its own, never retransmitted
    /// by this layer; the dialog re-sends it for each 2xx retransmission).
    pub fn send_ack(&mut self, mut ack: Request, peer: Peer) {
        let branch = format!("z9hG4bK{}", self.token());
        ack.headers.push_front(
            "Via",
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                peer.transport.via_name(),
                self.sent_by
            ),
        );
        self.transmits.push_back(Transmit {
            peer,
            bytes: serialize_request(&ack),
        });
    }

    /// The request a client transaction sent (with our Via); a
    /// non-INVITE's only until its final response.
    pub fn client_request(&self, tx: TxId) -> Option<Request> {
        let t = self.client.get(&tx)?;
        match &t.request {
            Some(invite) => Some(Request::clone(invite)),
            // A non-INVITE keeps only its bytes, which we wrote.
            None => match parse(&t.bytes) {
                Ok(Message::Request(request)) => Some(request),
                _ => None,
            },
        }
    }

    /// The request that opened a server transaction, cut to what a
    /// response to it needs (`Request::response_base`).
    pub fn server_request(&self, tx: TxId) -> Option<&Request> {
        self.server.get(&tx).and_then(|t| t.request.as_deref())
    }

    fn handle_response(&mut self, now: Duration, response: Response) {
        let Ok(via) = response.top_via() else { return };
        let Some(branch) = via.branch() else { return };
        let Ok((_, method)) = response.cseq() else {
            return;
        };
        let key = ClientKey {
            branch: branch.to_string(),
            method: method.as_str().to_string(),
        };
        let Some(&id) = self.client_keys.get(&key) else {
            return;
        };
        let t = self.client.get_mut(&id).expect("key map and table agree");
        let reliable = t.peer.transport.reliable();
        let status = response.status;
        match (t.is_invite, t.state, status) {
            (_, ClientState::Calling | ClientState::Proceeding, 100..=199) => {
                t.state = ClientState::Proceeding;
                if !t.is_invite {
                    // Timer E keeps firing at T2 in Proceeding.
                    t.interval = T2;
                }
                if t.is_invite {
                    // A ringing phone may ring for minutes: timer B only
                    // runs while Calling (§17.1.1.2).
                    self.disarm(id, Timer::Retransmit);
                    self.disarm(id, Timer::Finish);
                }
                self.events
                    .push_back(TxEvent::Response { tx: id, response });
            }
            (true, ClientState::Calling | ClientState::Proceeding, 200..=299) => {
                t.state = ClientState::Accepted;
                self.disarm(id, Timer::Retransmit);
                // Timer M: keep passing 2xx retransmissions up.
                self.arm(now, id, Timer::Finish, 64 * T1);
                self.events
                    .push_back(TxEvent::Response { tx: id, response });
            }
            (true, ClientState::Accepted, 200..=299) => {
                self.events
                    .push_back(TxEvent::Response { tx: id, response });
            }
            (true, ClientState::Calling | ClientState::Proceeding, _) => {
                t.state = ClientState::Completed;
                self.transmits.extend(error_ack(t, &response));
                self.disarm(id, Timer::Retransmit);
                // Timer D: absorb retransmissions of the final response.
                let wait = if reliable {
                    Duration::ZERO
                } else {
                    Duration::from_secs(32)
                };
                self.arm(now, id, Timer::Finish, wait);
                self.events
                    .push_back(TxEvent::Response { tx: id, response });
            }
            (true, ClientState::Completed, 300..) => {
                // A retransmitted error: ACK again.
                self.transmits.extend(error_ack(t, &response));
            }
            (false, ClientState::Calling | ClientState::Proceeding, 200..) => {
                t.state = ClientState::Completed;
                // Only response retransmissions are absorbed from here on:
                // the request is never sent again.
                t.bytes = Vec::new();
                self.disarm(id, Timer::Retransmit);
                // Timer K.
                let wait = if reliable { Duration::ZERO } else { T4 };
                self.arm(now, id, Timer::Finish, wait);
                self.events
                    .push_back(TxEvent::Response { tx: id, response });
            }
            _ => {}
        }
    }

    /// Runs every timer due by `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        while let Some((&(at, seq), &(id, timer))) = self.timers.iter().next() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, seq));
            if let Some(armed) = self.armed(id) {
                armed[timer_slot(timer)] = None;
            }
            if self.server.contains_key(&id) {
                self.server_timer(at, id, timer);
            } else if self.client.contains_key(&id) {
                self.client_timer(at, id, timer);
            }
        }
    }

    fn server_timer(&mut self, at: Duration, id: TxId, timer: Timer) {
        let t = self.server.get_mut(&id).expect("checked");
        match timer {
            Timer::Retransmit => {
                let Some(bytes) = t.last_response.clone() else {
                    return;
                };
                if bytes.len() > LARGE_RESPONSE && t.resent >= LARGE_RESPONSE_RESENDS {
                    // Timer H (or the 2xx's 64*T1) still ends the
                    // transaction; a retransmitted request still gets it.
                    return;
                }
                t.resent += 1;
                let peer = t.peer;
                self.transmits.push_back(Transmit { peer, bytes });
                // G and the 2xx retransmission both double up to T2.
                t.interval = (t.interval * 2).min(T2);
                let next = t.interval;
                self.arm(at, id, Timer::Retransmit, next);
            }
            Timer::Finish => {
                if t.state == ServerState::Accepted
                    && t.dialog_key
                        .as_ref()
                        .is_some_and(|d| self.accepted_by_dialog.contains_key(d))
                {
                    self.events.push_back(TxEvent::AckTimeout { tx: id });
                }
                self.forget_server(id);
            }
            Timer::Linger => self.forget_server(id),
        }
    }

    fn client_timer(&mut self, at: Duration, id: TxId, timer: Timer) {
        let t = self.client.get_mut(&id).expect("checked");
        match timer {
            Timer::Retransmit => {
                if matches!(t.state, ClientState::Calling | ClientState::Proceeding) {
                    let peer = t.peer;
                    let bytes = t.bytes.clone();
                    self.transmits.push_back(Transmit { peer, bytes });
                    // A doubles without bound (B ends it); E is capped at T2.
                    t.interval = if t.is_invite {
                        t.interval * 2
                    } else {
                        (t.interval * 2).min(T2)
                    };
                    let next = t.interval;
                    self.arm(at, id, Timer::Retransmit, next);
                }
            }
            Timer::Finish | Timer::Linger => {
                if matches!(t.state, ClientState::Calling | ClientState::Proceeding) {
                    self.events.push_back(TxEvent::Timeout { tx: id });
                }
                self.forget_client(id);
            }
        }
    }
}

/// Where a response goes (RFC 3261 §18.2.2, RFC 3581): over a stream, back
/// on the connection; over UDP, to `received` and `rport` when the client
/// asked for rport, else to `received` (or the sent-by host) and the Via port.
fn response_peer(request: &Request, peer: Peer) -> Peer {
    if peer.transport.reliable() {
        return peer;
    }
    let Ok(via) = request.top_via() else {
        return peer;
    };
    if via.param("rport").is_some() {
        return peer;
    }
    let ip = via
        .param("received")
        .flatten()
        .and_then(|r| r.parse().ok())
        .or(match via.host {
            Host::Ip(ip) => Some(ip),
            Host::Name(_) => None,
        })
        .unwrap_or(peer.addr.ip());
    Peer {
        transport: peer.transport,
        addr: SocketAddr::new(ip, via.port.unwrap_or(5060)),
    }
}

fn rewrite_top_via(request: &mut Request, via: &Via) {
    let all: Vec<String> = request.headers.get_all("Via").map(str::to_string).collect();
    let Some(first) = all.first() else { return };
    let rest: Vec<&str> = crate::message::split_commas(first)
        .into_iter()
        .skip(1)
        .collect();
    let mut top = via.to_string();
    for r in rest {
        top.push_str(", ");
        top.push_str(r);
    }
    request.headers.replace_first("Via", top);
}

/// The ACK for a non-2xx final response (§17.1.1.3): same Request-URI,
/// top Via, From, Call-ID and CSeq number; To from the response.
fn ack_for_error(invite: &Request, response: &Response) -> Request {
    let mut headers = crate::message::Headers::new();
    if let Some(v) = invite.headers.get("Via") {
        headers.push(
            "Via",
            crate::message::split_commas(v)
                .first()
                .copied()
                .unwrap_or(v),
        );
    }
    for name in ["From", "Call-ID"] {
        if let Some(v) = invite.headers.get(name) {
            headers.push(name, v);
        }
    }
    if let Some(to) = response.headers.get("To") {
        headers.push("To", to);
    }
    let seq = invite.cseq().map(|c| c.0).unwrap_or(1);
    headers.push("CSeq", format!("{seq} ACK"));
    headers.push("Max-Forwards", "70");
    for route in invite.headers.get_all("Route") {
        headers.push("Route", route);
    }
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        headers,
        body: Vec::new(),
    }
}
