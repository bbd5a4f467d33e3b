//! Sans-IO call control: one shard of a park server.
//!
//! The engine owns the SIP transaction layer, the dialogs of every leg
//! (parked callers and the phones that retrieved them), the park lot, and
//! the music desk that says which parked call hears which hold music where.
//! The server feeds it datagrams, RTP and time and writes out what it
//! produces; tests drive it the same way in virtual time. Hold music is
//! paced by the engine itself (`pace_media`) or, after
//! `pace_music_in_shards`, by the host's pacer threads fed from
//! `poll_music_command`.
//!
//! Media is anchored in the server on one shared RTP address: every SDP
//! answer points there, and incoming RTP is told apart by its source
//! address. A socket per call would cap a process at its open-file limit.
//!
//! # Driving an engine
//!
//! A host calls, with the time since its one clock origin:
//! - `handle_sip` for every datagram or stream frame, `handle_rtp` and
//!   `handle_rtcp` for media (these answer relayed packets through the
//!   closure they are given), `handle_timeout` at `poll_timeout`;
//! - then drains, in this order: `poll_music_command` (to its pacers, so a
//!   stream starts before its 200 leaves), `poll_transmit` (SIP out; a
//!   `Transport::Tls(NEW_CONNECTION)` peer asks the host to open or reuse
//!   a TLS connection), `poll_rtcp`, `poll_event` (logs), and sleeps until
//!   `poll_timeout` or the next input.
//!
//! `reconfigure` applies a new lot, access and security while calls stay
//! parked; `shutdown` hangs up everything and `drained` says when the BYEs
//! are all answered.
//!
//! # Where things live
//!
//! The files follow the park story: `engine` (construction, the queues,
//! the request dispatch), `park` (dialed string, access, orbit, the
//! retrieve and the attended-park takeover), `call` (ACK, CANCEL,
//! re-INVITE, BYE, teardown), `recall`, `refer` (server-driven park),
//! `lamps` (busy lamps), `liveness`, `media` (offer/answer, music, RTP in),
//! `legs` (dialogs, RTP sources, latching), `outbound` (responses, our
//! requests, routing, Contact), `timers`, `guard` (who may use the server
//! and where it may send), `config` and `event`.
//!
//! # Invariants
//!
//! `Engine` keeps sub-states that each own their indices:
//! - `Legs`: every leg is in `by_id` and, by `(Call-ID, our tag)`, in
//!   `by_dialog`; in `by_rtp_source` under the address its SDP names and
//!   the source it latched to; while it has sent nothing, in `unlatched`
//!   under its SDP address's IP; until its ACK, in `by_invite_tx`.
//!   `drop_leg` removes it from all of them and retires its source
//!   (`retired`), which is never latched again while it keeps sending.
//! - A call is in `Legs::calls` while any of its legs lives; a parked
//!   call is also on the lot. `end_call` tears it down with one call per owner:
//!   `Recalls::forget`, the lamps, the lot, `Guard::call_ended`,
//!   `CallTimers::forget`, then its legs.
//! - Every client transaction whose answer matters has one `TxOwner` in
//!   `client_txs`; the owner is removed when the answer or timeout is
//!   handled.
//! - Nothing goes out towards a target `guard` does not allow; after
//!   `shutdown` (`Guard::drain`) nothing new is parked or watched.
//! - `CallTimers` holds every timer armed for a call under the call too,
//!   so that it leaves with the call; `latest` is the latest time given.

mod blf;
mod call;
mod command;
mod config;
mod dialog;
mod engine;
mod event;
pub mod guard;
mod lamps;
mod legs;
mod liveness;
mod media;
mod outbound;
mod park;
mod recall;
mod refer;
mod relay;
mod timers;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use callpark_core::lot::{CallId, ParkLot, Parked, same_party};
use callpark_core::{
    Allocation, DialAction, DialContext, EndAction, Params, ParkRequest, ParkTarget, ParkedCall,
    Policy, RecallPlan, RecallReason, RecallStep, RejectCode,
};
use callpark_media::pacer::StreamSpec;
use callpark_media::{Codec, Music, MusicCommand, MusicDesk, MusicStream};
use callpark_sip::message::{HeaderView, Method, Request, Response};
use callpark_sip::sdp::{self, AgreedAudio, Direction, Law, LocalMedia};
use callpark_sip::transaction::{Peer, Transactions, Transmit, Transport, TxEvent, TxId};
use callpark_sip::uri::{Host, NameAddr, Uri};

pub use command::{Command, ParkedView, RecallView, Reply, SubscriptionView};
pub use config::{Access, EngineConfig, MusicLibrary, Reconfiguration};
use dialog::Dialog;
pub use event::{EngineEvent, GiveUpReason};
use guard::{Action, Admission, Guard, Who};
pub use guard::{LampIdentity, Security, Target, User};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct LegId(u64);

#[derive(Debug)]
struct Leg {
    call: CallId,
    dialog: Dialog,
    /// The INVITE's server transaction until the ACK.
    invite_tx: Option<TxId>,
    media: Option<AgreedAudio>,
    /// Where the leg's RTP comes from (learned; first the SDP address).
    rtp_source: Option<SocketAddr>,
    /// Our SDP offer waited for an answer in the ACK (late offer).
    awaiting_answer: bool,
    local_sdp_version: u64,
    /// The RTP timestamp of the last RFC 4733 key press seen, so that its
    /// repeated and end packets count once.
    last_digit_ts: Option<u32>,
    /// When the leg's last RTP arrived (or it was set up).
    last_rtp: Duration,
    /// Whether any RTP came from the leg yet (until then it may be latched).
    rtp_seen: bool,
    /// The hold music we send this leg, for its RTCP sender reports.
    music_clock: Option<MusicClock>,
    /// The RTP address the leg's SDP names. It stays mapped to the leg
    /// even while the leg is latched elsewhere, and a packet from it takes
    /// the leg back: a stranger on the phone's IP who spoke first cannot
    /// keep the phone's audio.
    sdp_source: Option<SocketAddr>,
    /// Music held back until the ACK (a caller from an untrusted source
    /// must show it hears us before we stream to the address it named):
    /// the orbit's music key and the announcement.
    deferred_music: Option<Box<(Option<String>, Vec<Music>)>>,
}

/// Enough of a music stream to report on it without asking the pacer: a
/// stream sends packet `k` at `start_ms + 20 k` with timestamp
/// `first_ts + 160 k` (`callpark_media::pacer`), and every packet carries
/// 160 octets of G.711.
#[derive(Debug, Clone, Copy)]
struct MusicClock {
    ssrc: u32,
    first_ts: u32,
    /// Engine time of the first packet, in milliseconds.
    start_ms: u64,
}

/// How often a music stream's sender report goes out (RFC 3550 §6.2: at
/// least 5 s apart; one report per stream, so the RTCP share of a parked
/// call is far under 5 %).
const SENDER_REPORT_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug)]
enum CallState {
    /// On an orbit, hearing music.
    Parked {
        caller: LegId,
        stream: Option<MusicStream>,
    },
    /// Retrieved: the caller bridged to the retriever.
    Bridged { caller: LegId, retriever: LegId },
}

/// Every leg, by id, by dialog, by RTP source, unlatched, by the INVITE
/// transaction that opened it; the calls legs make up (a parked call has
/// one leg, a bridged call two); and the sources of legs that ended.
#[derive(Debug, Default)]
struct Legs {
    /// Boxed: a leg is over 500 bytes, and a map of them inline keeps
    /// that much again in every free slot (and copies it all to grow).
    by_id: HashMap<LegId, Box<Leg>>,
    calls: HashMap<CallId, CallState>,
    /// (Call-ID, our tag) -> leg.
    by_dialog: HashMap<(String, String), LegId>,
    /// The SDP address and the latched source of each leg.
    by_rtp_source: HashMap<SocketAddr, LegId>,
    /// Legs that have sent no RTP yet, by the IP their SDP named: the
    /// candidates for symmetric-RTP latching, kept so that a packet from an
    /// unknown source costs a map look-up, not a scan of every leg.
    unlatched: HashMap<IpAddr, HashSet<LegId>>,
    /// The leg each INVITE server transaction opened, until its ACK.
    by_invite_tx: HashMap<TxId, LegId>,
    /// RTP sources of legs that ended, with when they were last heard:
    /// never latched onto a new leg while they keep sending. A replaced
    /// leg's phone (the parker of an attended park) keeps streaming for a
    /// moment after our BYE, from the same IP as the newcomer, which is
    /// otherwise exactly what latching looks for.
    retired: HashMap<SocketAddr, Duration>,
}

/// Park timers (recall due, ring time over, liveness ...), by deadline;
/// every timer armed for a call is also listed under it and removed with
/// the call (a 24 h `max_lifetime` deadline must not outlive its call by
/// a day). Entries whose call moved on are ignored when they fire.
#[derive(Debug, Default)]
struct CallTimers {
    queue: BTreeMap<(Duration, u64), (Option<CallId>, EngineTimer)>,
    by_call: HashMap<CallId, Vec<(Duration, u64)>>,
    seq: u64,
    /// The latest time any `handle_*` call gave, for bookkeeping in code
    /// paths that take no `now`.
    latest: Duration,
}

/// Recalls in progress, by call, and how many recall plans each call ran
/// through (re-park counts).
#[derive(Debug, Default)]
struct Recalls {
    active: HashMap<CallId, Recall>,
    done: HashMap<CallId, u32>,
}

impl CallTimers {
    /// Forgets every timer of `call`.
    fn forget(&mut self, call: CallId) {
        for key in self.by_call.remove(&call).unwrap_or_default() {
            self.queue.remove(&key);
        }
    }
}

impl Recalls {
    /// Forgets `call`'s recall and its count; the transaction of the step
    /// that was ringing, if one was.
    fn forget(&mut self, call: CallId) -> Option<TxId> {
        self.done.remove(&call);
        self.active
            .remove(&call)
            .and_then(|r| r.ringing)
            .map(|r| r.tx)
    }
}

/// Busy-lamp watchers, by id and by dialog, and the calls that just left
/// an orbit: reported once as `terminated` to the lamps, so that phones
/// see the dialog end, then forgotten.
#[derive(Debug, Default)]
struct Lamps {
    subscriptions: HashMap<SubscriptionId, Subscription>,
    by_dialog: HashMap<(String, String), SubscriptionId>,
    gone: HashMap<String, Vec<GoneLamp>>,
}

/// Hold music and our RTCP: the library, the desk that says which call
/// hears what where, our sender reports waiting to go out, our CNAME.
struct Media {
    library: MusicLibrary,
    /// Paced here, or by the host's shards.
    desk: MusicDesk,
    /// RTCP of ours waiting to go out from the RTCP port: (to, packet).
    rtcp_out: VecDeque<(SocketAddr, Vec<u8>)>,
    /// The SDES CNAME of our RTCP, made once.
    rtcp_cname: String,
}

/// SIGTERM: whether we are draining, and the BYEs `shutdown` sent until
/// each is answered or times out.
#[derive(Debug, Default)]
struct Drain {
    draining: bool,
    byes: HashSet<TxId>,
}

/// What is logged at most once a second: dropped unreadable messages and
/// load shedding.
#[derive(Debug, Default)]
struct LogLimits {
    drops: DropLog,
    shed_at: Option<Duration>,
}

/// The engine's own random numbers (xorshift64*): tags, SSRCs, our
/// first CSeqs, the allocator's entropy. Seeded from the host's entropy
/// and the security secret, so that they cannot be guessed from the time
/// the server started.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `len` hex digits (at most 16).
    fn hex(&mut self, len: usize) -> String {
        let mut text = format!("{:016x}", self.next_u64());
        text.truncate(len.min(16));
        text
    }
}

/// One shard's call control. Each sub-state owns its indices; tearing a
/// call down is a call on each (`end_call`).
pub struct Engine {
    cfg: EngineConfig,
    policy: Arc<dyn Policy>,
    lot: ParkLot,
    tx: Transactions,
    media: Media,
    /// Every leg, its indices, and the calls legs make up.
    legs: Legs,
    /// Recalls in progress, and how many each call ran through.
    recalls: Recalls,
    /// What each of our client transactions is for.
    client_txs: HashMap<TxId, TxOwner>,
    /// Park timers, by deadline and by call.
    timers: CallTimers,
    /// Busy-lamp watchers and what they were last told.
    lamps: Lamps,
    /// Who may use the server and where it may send, with the calls
    /// parked per untrusted source and the drain of a shutdown.
    guard: Guard,
    /// What the engine tells the server: events, rate-limited log lines.
    reports: Reports,
    ids: Ids,
}

/// Events for the server, and what is logged at most once a second.
#[derive(Debug, Default)]
struct Reports {
    events: VecDeque<EngineEvent>,
    /// Answers to operators' commands, by tag.
    replies: VecDeque<(u64, command::Reply)>,
    logs: LogLimits,
}

/// Where the engine's numbers come from: ids count up, the rest is random.
struct Ids {
    /// The last id handed out (calls, legs, subscriptions, SDP sessions).
    last: u64,
    rng: Rng,
}

/// Unreadable messages dropped, for a rate-limited log line.
#[derive(Debug, Default)]
struct DropLog {
    logged_at: Option<Duration>,
    /// Dropped since the last line.
    unlogged: u64,
}

/// How long a retired RTP source must stay silent before its address may
/// be latched again.
const RETIRED_FOR: Duration = Duration::from_secs(10);
/// Retired sources kept at most; past it the oldest are forgotten first.
const MAX_RETIRED: usize = 4096;

#[derive(Debug)]
struct ReferPark {
    /// The REFER's dialog, for the NOTIFYs of its implicit subscription.
    dialog: Dialog,
    target: ParkTarget,
    orbit: String,
    parker: String,
    parked_uri: String,
    peer: Peer,
}

#[derive(Debug, Clone)]
struct GoneLamp {
    call: CallId,
    caller_uri: String,
    caller_display: String,
}

#[derive(Debug)]
struct Subscription {
    dialog: Dialog,
    watched: blf::Watched,
    entity: String,
    expires_at: Duration,
    /// The next NOTIFY's document version (RFC 4235 §4.1).
    version: u32,
}

/// What one of our client transactions is for: its answer (or its
/// timeout) goes to its owner.
#[derive(Debug)]
enum TxOwner {
    /// A recall step ringing for this call.
    Recall(CallId),
    /// A recall INVITE we gave up on: a late 2xx is acknowledged and hung
    /// up.
    StaleRecall,
    /// An in-dialog OPTIONS probing a silent parked caller.
    Probe(CallId),
    /// Server-driven park (RFC 5359 §2.15): our INVITE to the party being
    /// parked.
    ReferPark(Box<ReferPark>),
}

/// A busy-lamp subscription's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SubscriptionId(u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EngineTimer {
    RecallDue,
    RingOver(TxId),
    /// Is the parked caller still there? (`rtp_timeout`)
    Liveness,
    /// The parked call has lived `max_lifetime`.
    Lifetime,
    /// A busy-lamp subscription may have expired.
    SubscriptionExpiry(SubscriptionId),
    /// An attended-park reservation may not have been taken over (the leg
    /// that made it).
    Reservation(LegId),
    /// The parked caller's next RTCP sender report for its music is due.
    SenderReport(LegId),
}

#[derive(Debug)]
struct Recall {
    plan: RecallPlan,
    step: usize,
    ringing: Option<Ringing>,
}

#[derive(Debug)]
struct Ringing {
    tx: TxId,
    peer: Peer,
}

const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, SUBSCRIBE, REFER";
/// The option tags we implement (`Supported`, and what `Require` may name).
const SUPPORTED: [&str; 1] = ["replaces"];

fn warning(text: &str) -> String {
    callpark_sip::message::warning_value(text)
}

/// The key of an RFC 4733 event code (0-9, `*`, `#`).
fn dtmf_key(event: u8) -> Option<char> {
    match event {
        0..=9 => char::from_digit(u32::from(event), 10),
        10 => Some('*'),
        11 => Some('#'),
        _ => None,
    }
}

/// Used by tests and the server: an IP's `Host`.
/// Why a request is refused: its status and the Warning text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    status: u16,
    reason: String,
}

impl Refusal {
    fn new(status: u16, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
        }
    }
}

/// A plugin that failed (and its failure policy said reject): 503.
impl From<callpark_core::PolicyError> for Refusal {
    fn from(e: callpark_core::PolicyError) -> Refusal {
        Refusal::new(503, e.to_string())
    }
}

/// An offer we cannot read: 400; one we share no codec with: 488.
impl From<sdp::SdpError> for Refusal {
    fn from(e: sdp::SdpError) -> Refusal {
        let status = match e {
            sdp::SdpError::NoCommonCodec(_) => 488,
            sdp::SdpError::Malformed(_) => 400,
        };
        Refusal::new(status, e.to_string())
    }
}

/// Who takes part in a park: the parker (recalled and told), the party
/// access rules judge, and the caller being parked.
struct Parties {
    parker: String,
    acting: String,
    caller: String,
}

/// Who is calling: the authenticated user, or what a trusted source
/// asserted (P-Asserted-Identity, else From).
fn caller_identity(request: &Request, who: &Who) -> String {
    match who {
        Who::User(identity) => identity.clone(),
        Who::Trusted => asserted_identity(request).unwrap_or_else(|| {
            request
                .from()
                .map(|f| f.uri.to_string())
                .unwrap_or_default()
        }),
    }
}

/// The party access rules judge: the authenticated user, never a
/// Referred-By it wrote itself; for a trusted source the referrer it
/// names, else the caller.
fn acting_identity(request: &Request, who: &Who) -> String {
    match who {
        Who::User(identity) => identity.clone(),
        Who::Trusted => request
            .referred_by()
            .ok()
            .flatten()
            .map(|r| r.uri.to_string())
            .unwrap_or_else(|| caller_identity(request, who)),
    }
}

/// The identity a trusted proxy asserted (RFC 3325 P-Asserted-Identity),
/// the first sip: or sips: one.
fn asserted_identity(request: &Request) -> Option<String> {
    request
        .headers
        .get_all("P-Asserted-Identity")
        .flat_map(callpark_sip::message::split_commas)
        .filter_map(|v| NameAddr::parse(v.trim()).ok())
        .find(|n| {
            matches!(
                n.uri.scheme,
                callpark_sip::uri::Scheme::Sip | callpark_sip::uri::Scheme::Sips
            )
        })
        .map(|n| n.uri.to_string())
}
