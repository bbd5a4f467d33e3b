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

mod blf;
mod dialog;
pub mod guard;
mod relay;

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

pub use dialog::Dialog;
use guard::{Action, Admission, Guard, Who};
pub use guard::{LampIdentity, Security, Target, User};

/// Who may park (`[access] park`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    All,
    /// Members of a call park group.
    Members,
    /// These parker URIs.
    Listed(Vec<String>),
}

/// What an engine needs to know about its deployment.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Our SIP address: `sent-by` of our Vias and the host of our Contact.
    pub sip_addr: SocketAddr,
    /// The shared RTP address every SDP answer points at.
    pub media_addr: SocketAddr,
    /// Where recalls, MESSAGE and NOTIFY go when set.
    pub outbound_proxy: Option<SocketAddr>,
    pub max_parked_calls: usize,
    /// A bare orbit number with nothing parked on it parks the caller
    /// (FreeSWITCH valet semantics), so that phones that send no
    /// Referred-By can still blind-transfer to an orbit.
    pub bare_orbit_parks_when_empty: bool,
    pub access: Access,
    /// Milliseconds since the Unix epoch at engine time zero: plugins get
    /// wall-clock time, the engine runs on a monotonic one.
    pub epoch_ms_at_zero: u64,
    pub entropy: u64,
    /// The `[recall]` settings, as recall plugin params (a group's own
    /// settings are laid over them).
    pub recall_params: Params,
    /// A parked caller silent this long is probed with an in-dialog
    /// OPTIONS, and hung up if the probe fails; zero: never.
    pub rtp_timeout: Duration,
    /// A parked call is hung up after this long; zero: never.
    pub max_lifetime: Duration,
    /// A park made without Referred-By may be the first half of an attended
    /// park (the parker holding the orbit while it transfers its caller).
    /// When set, such a reservation that no INVITE with Replaces took over
    /// in this time is hung up and the orbit freed. Zero (the default)
    /// keeps it: phones that blind-transfer without Referred-By look the
    /// same, and their callers must not be hung up.
    pub reservation_timeout: Duration,
    /// Trusted sources, credentials, allowed targets, lamps, fair use.
    pub security: Security,
    /// The port of the first `[[server.tls]]` listener, for Contacts of
    /// dialogs made over TLS.
    pub tls_port: Option<u16>,
}

/// Hold music: a default, per-orbit overrides, or silence when music is off.
#[derive(Debug, Clone)]
pub struct MusicLibrary {
    pub default: Music,
    /// By the key orbits name in their `music` setting.
    pub by_key: HashMap<String, Music>,
    pub music_on_hold: bool,
    /// Spoken prompts by name: `0`..`9`, `star`, `hash`, `parked-on`.
    pub prompts: HashMap<String, Music>,
}

impl MusicLibrary {
    /// "Parked on seven zero one": the shared prompts in order (no copy of
    /// their audio); empty without them.
    fn announcement(&self, orbit: &str) -> Vec<Music> {
        let mut parts = Vec::with_capacity(orbit.len() + 1);
        let Some(intro) = self.prompts.get("parked-on") else {
            return Vec::new();
        };
        parts.push(intro.clone());
        for c in orbit.chars() {
            let key = match c {
                '*' => "star".to_string(),
                '#' => "hash".to_string(),
                d => d.to_string(),
            };
            match self.prompts.get(&key) {
                Some(p) => parts.push(p.clone()),
                None => return Vec::new(),
            }
        }
        parts
    }

    fn for_orbit(&self, key: Option<&str>) -> Music {
        if !self.music_on_hold {
            return Music::silence();
        }
        key.and_then(|k| self.by_key.get(k))
            .unwrap_or(&self.default)
            .clone()
    }
}

/// What happened, for logs and (later) the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    Parked {
        call: CallId,
        orbit: String,
        parker: String,
        caller: String,
        /// The parked caller's SIP Call-ID, to find the call in SIP traces.
        call_id: String,
    },
    /// The caller of an attended park took over the parker's reservation
    /// (INVITE with Replaces): the call on `orbit` is now `caller`'s, and
    /// its recalls go to `parker`.
    AttendedParkCompleted {
        call: CallId,
        orbit: String,
        parker: String,
        caller: String,
        call_id: String,
    },
    Retrieved {
        call: CallId,
        orbit: String,
        by: String,
    },
    /// The parked caller hung up (or vanished) before anyone retrieved it.
    Abandoned { call: CallId, orbit: String },
    /// A bridged call ended.
    Ended { call: CallId },
    /// Nobody retrieved the call in time: recall starts.
    RecallStarted {
        call: CallId,
        orbit: String,
        steps: usize,
    },
    /// A recall step rings `target`.
    RecallStep {
        call: CallId,
        orbit: String,
        step: usize,
        target: String,
    },
    /// A recall target answered and is bridged to the caller.
    RecallAnswered {
        call: CallId,
        orbit: String,
        by: String,
    },
    /// Every step rang unanswered; the plan's end action follows.
    RecallExhausted {
        call: CallId,
        orbit: String,
        end: String,
    },
    /// Nobody will take the call: hung up after recall, past
    /// `max_lifetime`, or the caller vanished (`why` says which).
    GiveUp {
        call: CallId,
        orbit: String,
        why: &'static str,
    },
    /// A parked caller pressed the orbit's escape key.
    EscapeKey {
        call: CallId,
        orbit: String,
        key: char,
    },
    /// A request was refused; `status` and why, for the log.
    Refused {
        method: String,
        dialed: String,
        status: u16,
        reason: String,
    },
}

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
    deferred_music: Option<(Option<String>, Vec<Music>)>,
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

/// One shard's call control.
pub struct Engine {
    cfg: EngineConfig,
    policy: Arc<dyn Policy>,
    lot: ParkLot,
    music: MusicLibrary,
    tx: Transactions,
    /// Hold music: paced here, or by the host's shards.
    music_desk: MusicDesk,
    legs: HashMap<LegId, Leg>,
    /// (Call-ID, our tag) -> leg.
    dialogs: HashMap<(String, String), LegId>,
    rtp_sources: HashMap<SocketAddr, LegId>,
    calls: HashMap<CallId, CallState>,
    next_id: u64,
    events: VecDeque<EngineEvent>,
    draining: bool,
    /// Recalls in progress, by call.
    recalls: HashMap<CallId, Recall>,
    /// Our recall INVITEs, to their calls.
    recall_by_tx: HashMap<TxId, CallId>,
    /// Recall INVITEs we gave up on: a late 2xx is acknowledged and hung up.
    stale_recalls: HashSet<TxId>,
    /// Legs that have sent no RTP yet, by the IP their SDP named: the
    /// candidates for symmetric-RTP latching, kept so that a packet from an
    /// unknown source costs a map look-up, not a scan of every leg.
    unlatched: HashMap<IpAddr, HashSet<LegId>>,
    /// Every timer armed for a call, removed with the call (a 24 h
    /// `max_lifetime` deadline must not outlive its call by a day).
    call_timers: HashMap<CallId, Vec<(Duration, u64)>>,
    /// Park timers (recall due, ring time over), by deadline. Entries whose
    /// call moved on are ignored when they fire.
    timers: BTreeMap<(Duration, u64), (CallId, EngineTimer)>,
    timer_seq: u64,
    /// How many recall plans each call ran through (re-park counts).
    recalls_done: HashMap<CallId, u32>,
    /// In-dialog OPTIONS probes of silent parked callers.
    probes: HashMap<TxId, CallId>,
    /// Busy-lamp watchers, by id, and their dialogs.
    subscriptions: HashMap<u64, Subscription>,
    sub_dialogs: HashMap<(String, String), u64>,
    /// Calls that just left an orbit: reported once as `terminated` to
    /// the lamps, so that phones see the dialog end, then forgotten.
    gone: HashMap<String, Vec<GoneLamp>>,
    /// Server-driven parks (RFC 5359 §2.15): our INVITE to the party being
    /// parked, by its transaction.
    refer_parks: HashMap<TxId, ReferPark>,
    /// RTCP of ours waiting to go out from the RTCP port: (to, packet).
    rtcp_out: VecDeque<(SocketAddr, Vec<u8>)>,
    /// RTP sources of legs that ended, with when they were last heard:
    /// never latched onto a new leg while they keep sending. A replaced
    /// leg's phone (the parker of an attended park) keeps streaming for a
    /// moment after our BYE, from the same IP as the newcomer, which is
    /// otherwise exactly what latching looks for.
    retired: HashMap<SocketAddr, Duration>,
    /// The latest time any `handle_*` call gave, for bookkeeping in code
    /// paths that take no `now`.
    clock: Duration,
    drops: DropLog,
    /// The BYEs `shutdown` sent, until each is answered or times out.
    shutdown_byes: HashSet<TxId>,
    shed_logged_at: Option<Duration>,
    /// The SDES CNAME of our RTCP, made once.
    rtcp_cname: String,
    /// Who may use the server and where it may send.
    guard: Guard,
    /// The untrusted address each call was parked from, for the cap per
    /// source.
    call_sources: HashMap<CallId, IpAddr>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EngineTimer {
    RecallDue,
    RingOver(TxId),
    /// Is the parked caller still there? (`rtp_timeout`)
    Liveness,
    /// The parked call has lived `max_lifetime`.
    Lifetime,
    /// A busy-lamp subscription may have expired.
    SubscriptionExpiry(u64),
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
    let clean: String = text
        .chars()
        .filter(|c| *c != '"' && !c.is_control())
        .take(200)
        .collect();
    format!("399 callpark \"{clean}\"")
}

impl Engine {
    pub fn new(
        cfg: EngineConfig,
        lot: ParkLot,
        music: MusicLibrary,
        policy: Arc<dyn Policy>,
    ) -> Engine {
        let sent_by = cfg.sip_addr.to_string();
        let entropy = cfg.entropy;
        let rtcp_cname = format!("callpark@{}", Host::Ip(cfg.media_addr.ip()));
        let guard = Guard::new(cfg.security.clone());
        Engine {
            cfg,
            policy,
            lot,
            music,
            tx: Transactions::new(sent_by, entropy),
            music_desk: MusicDesk::new(),
            legs: HashMap::new(),
            dialogs: HashMap::new(),
            rtp_sources: HashMap::new(),
            calls: HashMap::new(),
            next_id: 0,
            events: VecDeque::new(),
            draining: false,
            recalls: HashMap::new(),
            recall_by_tx: HashMap::new(),
            stale_recalls: HashSet::new(),
            unlatched: HashMap::new(),
            call_timers: HashMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            recalls_done: HashMap::new(),
            probes: HashMap::new(),
            subscriptions: HashMap::new(),
            sub_dialogs: HashMap::new(),
            gone: HashMap::new(),
            refer_parks: HashMap::new(),
            rtcp_out: VecDeque::new(),
            retired: HashMap::new(),
            clock: Duration::ZERO,
            drops: DropLog::default(),
            shutdown_byes: HashSet::new(),
            shed_logged_at: None,
            rtcp_cname,
            guard,
            call_sources: HashMap::new(),
        }
    }

    pub fn lot(&self) -> &ParkLot {
        &self.lot
    }

    /// After `shutdown`: every BYE it sent has its final answer, or timed
    /// out. Before `shutdown`: false.
    pub fn drained(&self) -> bool {
        self.draining && self.shutdown_byes.is_empty()
    }

    /// BYEs of the shutdown still waiting for an answer.
    pub fn byes_pending(&self) -> usize {
        self.shutdown_byes.len()
    }

    /// Parked (not yet retrieved) calls.
    pub fn parked_calls(&self) -> usize {
        self.lot.parked_count()
    }

    /// Calls of any kind (parked or bridged).
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.tx.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    /// The next time `handle_timeout` or `pace_media` has work.
    pub fn poll_timeout(&self) -> Option<Duration> {
        [
            self.tx.poll_timeout(),
            self.music_desk.poll_timeout(),
            self.timers.keys().next().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// SIP timers.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.clock = self.clock.max(now);
        self.tx.handle_timeout(now);
        self.drain_tx(now);
        while let Some((&key, &(call, timer))) = self.timers.iter().next() {
            if key.0 > now {
                break;
            }
            self.timers.remove(&key);
            if let Some(keys) = self.call_timers.get_mut(&call) {
                keys.retain(|k| *k != key);
            }
            match timer {
                EngineTimer::RecallDue => self.start_recall(now, call, RecallReason::Timeout),
                EngineTimer::RingOver(tx) => self.ring_over(now, call, tx),
                EngineTimer::Liveness => self.check_liveness(now, call),
                EngineTimer::Reservation(leg) => {
                    // Only the leg that reserved: a takeover replaced it.
                    if matches!(self.calls.get(&call), Some(CallState::Parked { caller, .. }) if *caller == leg)
                    {
                        self.give_up(now, call, "reservation not completed", true);
                    }
                }
                EngineTimer::SubscriptionExpiry(id) => {
                    if self
                        .subscriptions
                        .get(&id)
                        .is_some_and(|s| s.expires_at <= now)
                    {
                        self.notify(now, id, Some("timeout"));
                        self.drop_subscription(id);
                    }
                }
                EngineTimer::Lifetime => self.give_up(now, call, "max_lifetime", true),
                EngineTimer::SenderReport(leg) => self.sender_report(now, call, leg),
            }
            self.drain_tx(now);
        }
    }

    /// Requests refused by the transaction bound (503): one warning a
    /// second at most, with the total so far.
    fn log_shed(&mut self, now: Duration) {
        if self
            .shed_logged_at
            .is_some_and(|at| now < at + Duration::from_secs(1))
        {
            return;
        }
        self.shed_logged_at = Some(now);
        let (server, client) = self.tx.len();
        tracing::warn!(
            shed = self.tx.shed(),
            server_transactions = server,
            client_transactions = client,
            "overloaded: new requests get 503 with Retry-After until transactions drain"
        );
    }

    /// Requests answered 503 because too many transactions were open.
    pub fn shed(&self) -> u64 {
        self.tx.shed()
    }

    /// A message nobody can be answered for is dropped and said so: one
    /// info line a second at most, with how many more were dropped since,
    /// so that a flood of garbage cannot flood the log.
    fn log_drop(&mut self, now: Duration, peer: Peer, reason: &str) {
        match self.drops.logged_at {
            Some(at) if now < at + Duration::from_secs(1) => self.drops.unlogged += 1,
            _ => {
                tracing::info!(
                    peer = %peer.addr,
                    reason,
                    also_dropped = self.drops.unlogged,
                    "unreadable SIP message dropped (nothing to answer to)"
                );
                self.drops = DropLog {
                    logged_at: Some(now),
                    unlogged: 0,
                };
            }
        }
    }

    fn arm(&mut self, at: Duration, call: CallId, timer: EngineTimer) {
        self.timer_seq += 1;
        let key = (at, self.timer_seq);
        self.timers.insert(key, (call, timer));
        if call != CallId(0) {
            self.call_timers.entry(call).or_default().push(key);
        }
    }

    /// Sends the hold music due by `now` through `send(dest, packet)`.
    /// Sends nothing once the music is paced in shards.
    pub fn pace_media(
        &mut self,
        now: Duration,
        mut send: impl FnMut(SocketAddr, &[u8]),
    ) -> callpark_media::pacer::PaceReport {
        self.music_desk
            .handle_timeout(now, |dest, packet, _late| send(dest, packet))
    }

    /// Hands hold music to `shards` pacers that the host runs (threads,
    /// each a `MusicShard`): from now on every start, stop and change of
    /// destination comes out of `poll_music_command`. Call it before the
    /// first call arrives; music already playing stays with the engine's
    /// own pacer otherwise and would be lost.
    pub fn pace_music_in_shards(&mut self, shards: usize) {
        debug_assert!(self.music_desk.is_empty());
        self.music_desk = MusicDesk::sharded(shards);
    }

    /// The next RTCP packet of ours for the RTCP port (the RTP port + 1):
    /// (destination, packet).
    pub fn poll_rtcp(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.rtcp_out.pop_front()
    }

    /// One packet that arrived on the RTCP port (the RTP port + 1) from
    /// `src`. RTCP from a known leg (sent from its RTP port + 1) proves the
    /// phone is there, as RTP does (a phone on hold may send only RTCP);
    /// between the legs of a bridged call it is relayed, so that each phone
    /// hears the other's reports on the streams it receives, whose SSRCs
    /// the relay keeps. Anything else is dropped.
    pub fn handle_rtcp(
        &mut self,
        now: Duration,
        packet: &[u8],
        src: SocketAddr,
        mut send: impl FnMut(SocketAddr, &[u8]),
    ) {
        if !callpark_media::rtcp::is_compound(packet) {
            return;
        }
        let Some(rtp_port) = src.port().checked_sub(1) else {
            return;
        };
        let Some(&id) = self.rtp_sources.get(&SocketAddr::new(src.ip(), rtp_port)) else {
            return;
        };
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        leg.last_rtp = now;
        if let Some(CallState::Bridged { caller, retriever }) = self.calls.get(&leg.call) {
            let other = if *caller == id { *retriever } else { *caller };
            if let Some(dest) = self.legs.get(&other).and_then(|l| l.rtp_source)
                && let Some(port) = dest.port().checked_add(1)
            {
                send(SocketAddr::new(dest.ip(), port), packet);
            }
        }
    }

    /// A sender report for the music a parked caller hears, sent to its
    /// RTP port + 1, then the next one armed.
    fn sender_report(&mut self, now: Duration, call: CallId, leg: LegId) {
        let playing = matches!(
            self.calls.get(&call),
            Some(CallState::Parked { caller, stream: Some(_) }) if *caller == leg
        );
        let Some(l) = self.legs.get(&leg).filter(|_| playing) else {
            return;
        };
        let (Some(clock), Some(dest)) = (l.music_clock, l.rtp_source) else {
            return;
        };
        let now_ms = now.as_millis() as u64;
        let elapsed = now_ms.saturating_sub(clock.start_ms);
        let packets = if now_ms >= clock.start_ms {
            (elapsed / 20 + 1) as u32
        } else {
            0
        };
        let info = callpark_media::rtcp::SenderInfo {
            ssrc: clock.ssrc,
            wallclock_ms: self.now_ms(now),
            rtp_timestamp: clock.first_ts.wrapping_add((elapsed * 8) as u32),
            packets,
            octets: packets.wrapping_mul(callpark_media::music::FRAME_SAMPLES as u32),
        };
        if let Some(port) = dest.port().checked_add(1) {
            self.rtcp_out.push_back((
                SocketAddr::new(dest.ip(), port),
                callpark_media::rtcp::sender_report(&info, &self.rtcp_cname),
            ));
        }
        self.arm(
            now + SENDER_REPORT_EVERY,
            call,
            EngineTimer::SenderReport(leg),
        );
    }

    /// The next hold-music change for the host's shards: (shard, command).
    pub fn poll_music_command(&mut self) -> Option<(usize, MusicCommand)> {
        self.music_desk.poll_command()
    }

    /// One SIP datagram or stream frame.
    pub fn handle_sip(&mut self, now: Duration, bytes: &[u8], peer: Peer) {
        self.clock = self.clock.max(now);
        let shed_before = self.tx.shed();
        let result = self.tx.handle_bytes(now, bytes, peer);
        if self.tx.shed() > shed_before {
            self.log_shed(now);
        }
        if let Err(e) = result {
            match e.answered {
                Some(status) => {
                    tracing::debug!(peer = %peer.addr, reason = %e.reason, status, "malformed SIP message answered");
                }
                None => self.log_drop(now, peer, &e.reason),
            }
        }
        self.drain_tx(now);
    }

    /// One RTP packet that arrived on the shared media address. Parked
    /// callers' packets are dropped here (cheaply); bridged legs are relayed
    /// through `send(dest, packet)`.
    pub fn handle_rtp(
        &mut self,
        now: Duration,
        packet: &mut [u8],
        src: SocketAddr,
        mut send: impl FnMut(SocketAddr, &[u8]),
    ) {
        self.clock = self.clock.max(now);
        let leg_id = match self.rtp_sources.get(&src) {
            Some(&id) => id,
            None => match self.latch(now, src, packet) {
                Some(id) => id,
                None => return,
            },
        };
        let mut take_back = false;
        if let Some(l) = self.legs.get_mut(&leg_id) {
            l.last_rtp = now;
            // The SDP's own address speaks while the leg is latched
            // elsewhere: it is the phone, and the leg goes back to it.
            take_back = l.sdp_source == Some(src) && l.rtp_source != Some(src);
            if !l.rtp_seen {
                l.rtp_seen = true;
                let ip = l.rtp_source.map(|a| a.ip());
                if let Some(ip) = ip {
                    self.forget_unlatched(leg_id, ip);
                }
            }
        }
        if take_back {
            tracing::debug!(%src, "RTP back to the address the SDP names");
            self.set_rtp_source(leg_id, src);
        }
        let Some(leg) = self.legs.get(&leg_id) else {
            return;
        };
        let (caller, retriever) = match self.calls.get(&leg.call) {
            Some(CallState::Bridged { caller, retriever }) => (caller, retriever),
            Some(CallState::Parked { .. }) => {
                // Parked callers' audio is dropped; only a key press matters.
                let te = leg.media.as_ref().and_then(|m| m.telephone_event);
                if let (Some(te), Ok(reader)) = (te, rtp_rs::RtpReader::new(packet))
                    && reader.payload_type() == te
                    && let Some(&event) = reader.payload().first()
                {
                    let ts = reader.timestamp();
                    if leg.last_digit_ts != Some(ts) {
                        let call = leg.call;
                        if let Some(l) = self.legs.get_mut(&leg_id) {
                            l.last_digit_ts = Some(ts);
                        }
                        if let Some(key) = dtmf_key(event) {
                            self.key_pressed(now, call, key);
                        }
                    }
                }
                return;
            }
            None => return,
        };
        let other = if *caller == leg_id {
            *retriever
        } else {
            *caller
        };
        let Some(other) = self.legs.get(&other) else {
            return;
        };
        let (Some(from), Some(to), Some(dest)) = (&leg.media, &other.media, other.rtp_source)
        else {
            return;
        };
        if relay::rewrite(packet, from, to) {
            send(dest, packet);
        }
    }

    /// Takes a new configuration without dropping anything: parked calls
    /// stay on their orbits in FIFO order, bridged calls and busy-lamp
    /// watchers are untouched. A call on an orbit the new configuration
    /// removed stays retrievable on a disabled stand-in orbit and is
    /// recalled at once with reason `orbit-removed`.
    pub fn reconfigure(
        &mut self,
        now: Duration,
        mut lot: ParkLot,
        access: Access,
        recall_params: Params,
        security: Security,
    ) {
        self.guard.reconfigure(security);
        let mut orphans = Vec::new();
        for parked in self.lot.all_parked() {
            if lot.orbit(&parked.orbit).is_none() {
                let mut stand_in = self
                    .lot
                    .orbit(&parked.orbit)
                    .cloned()
                    .expect("parked on a known orbit");
                stand_in.enabled = false;
                lot.add_orbit(stand_in);
                orphans.push(parked.call);
            }
            let _ = lot.restore(parked.clone());
        }
        self.lot = lot;
        self.cfg.access = access;
        self.cfg.recall_params = recall_params;
        tracing::info!(
            orbits = self.lot.orbits().len(),
            parked = self.lot.parked_count(),
            watchers = self.subscriptions.len(),
            "configuration applied"
        );
        for call in orphans {
            self.start_recall(now, call, RecallReason::OrbitRemoved);
        }
        // Every watcher hears the state once, whatever it watches.
        let ids: Vec<u64> = self.subscriptions.keys().copied().collect();
        for id in ids {
            self.notify(now, id, None);
        }
    }

    /// Stops taking new parks (503) and hangs up every call (SIGTERM).
    /// The BYEs are retransmitted like any request until answered or timer
    /// F: keep driving the engine until `drained`, or as long as the host's
    /// drain time allows.
    pub fn shutdown(&mut self, now: Duration) {
        self.draining = true;
        let legs: Vec<LegId> = self.legs.keys().copied().collect();
        for leg in legs {
            if let Some(tx) = self.bye(now, leg) {
                self.shutdown_byes.insert(tx);
            }
        }
        let calls: Vec<CallId> = self.calls.keys().copied().collect();
        for call in calls {
            self.end_call(now, call);
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn now_ms(&self, now: Duration) -> u64 {
        self.cfg.epoch_ms_at_zero + now.as_millis() as u64
    }

    fn drain_tx(&mut self, now: Duration) {
        while let Some(event) = self.tx.poll_event() {
            match event {
                TxEvent::Request { tx, request, peer } => self.on_request(now, tx, request, peer),
                TxEvent::Ack { request, .. } => self.on_ack(now, &request),
                TxEvent::Cancelled { invite, .. } => self.on_cancelled(now, invite),
                TxEvent::AckTimeout { tx } => {
                    if let Some(leg) = self
                        .legs
                        .iter()
                        .find(|(_, l)| l.invite_tx == Some(tx))
                        .map(|(id, _)| *id)
                    {
                        // A caller we hang up is gone: its music, its
                        // orbit and the other leg of its bridge go with it
                        // (a spoofed INVITE must not buy RTP to a third
                        // party for the rest of max_lifetime).
                        tracing::info!(
                            call_id = %self.legs[&leg].dialog.call_id,
                            "a 2xx was never acknowledged; hanging up"
                        );
                        self.bye(now, leg);
                        self.leg_gone(now, leg);
                    }
                }
                TxEvent::Response { tx, response } => {
                    if response.status >= 200 {
                        self.shutdown_byes.remove(&tx);
                    }
                    if let Some(call) = self.probes.remove(&tx) {
                        // 481 and 408 say the dialog is gone; any other
                        // answer (even 405) proves the phone is there.
                        if matches!(response.status, 408 | 481) {
                            self.caller_vanished(now, call);
                        }
                    } else {
                        self.on_response(now, tx, response);
                    }
                }
                TxEvent::Timeout { tx } => {
                    self.shutdown_byes.remove(&tx);
                    if let Some(mut pending) = self.refer_parks.remove(&tx) {
                        self.refer_notify(
                            now,
                            &mut pending.dialog,
                            "SIP/2.0 408 Request Timeout",
                            true,
                        );
                    }
                    self.stale_recalls.remove(&tx);
                    if let Some(call) = self.recall_by_tx.remove(&tx) {
                        self.next_step(now, call);
                    }
                    if let Some(call) = self.probes.remove(&tx) {
                        self.caller_vanished(now, call);
                    }
                }
            }
        }
    }

    fn respond(
        &mut self,
        now: Duration,
        tx: TxId,
        request: &Request,
        status: u16,
        why: Option<&str>,
    ) {
        let mut r = request.response(status, Some(&self.tx.token()[..8]));
        if let Some(why) = why {
            r.headers.push("Warning", warning(why));
        }
        if status == 405 || status == 501 || request.method == Method::Options {
            r.headers.push("Allow", ALLOW);
        }
        if status == 503 {
            r.headers.push("Retry-After", "5");
        }
        if status >= 300 {
            self.events.push_back(EngineEvent::Refused {
                method: request.method.to_string(),
                dialed: request.uri.user_decoded().unwrap_or_default(),
                status,
                reason: why.unwrap_or("").to_string(),
            });
        }
        self.tx.send_response(now, tx, r);
    }

    /// Our Contact for a dialog with `peer` that `uri` (the request's
    /// Request-URI, or the target we call) opened.
    fn contact(&self, peer: Peer, uri: &Uri) -> String {
        let host = Host::Ip(self.cfg.sip_addr.ip());
        match peer.transport {
            Transport::Udp => format!("<sip:callpark@{host}:{}>", self.cfg.sip_addr.port()),
            Transport::Tcp(_) => format!(
                "<sip:callpark@{host}:{};transport=tcp>",
                self.cfg.sip_addr.port()
            ),
            // RFC 3261 §12.1.1: a dialog a sips: URI opened keeps a sips:
            // Contact; one over TLS to a sip: URI says transport=tls (a
            // phone may not take sips: it did not ask for).
            Transport::Tls(_) if uri.scheme == callpark_sip::uri::Scheme::Sips => format!(
                "<sips:callpark@{host}:{}>",
                self.cfg.tls_port.unwrap_or(5061)
            ),
            Transport::Tls(_) => format!(
                "<sip:callpark@{host}:{};transport=tls>",
                self.cfg.tls_port.unwrap_or(5061)
            ),
        }
    }

    fn on_request(&mut self, now: Duration, tx: TxId, request: Request, peer: Peer) {
        // RFC 3261 §8.2.2.3: an extension the request requires and we do
        // not implement gets 420 naming it (never for CANCEL, which has no
        // say, and ACK, which cannot be answered).
        if request.method != Method::Cancel {
            let unsupported: Vec<&str> = request
                .headers
                .get_all("Require")
                .flat_map(callpark_sip::message::split_commas)
                .map(str::trim)
                .filter(|t| !t.is_empty() && !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
                .collect();
            if !unsupported.is_empty() {
                let mut r = request.response(420, Some(&self.tx.token()[..8]));
                r.headers.push("Unsupported", unsupported.join(", "));
                self.tx.send_response(now, tx, r);
                return;
            }
        }
        // Nothing about orbits is revealed to an untrusted source before
        // it authenticates (DESIGN §7): not even whether an orbit exists.
        let mut who = Who::Trusted;
        let check = guard::check_for(&request);
        if check != guard::Check::None {
            match self.guard.admit(now, &request, peer.addr.ip(), check) {
                Admission::Admit(w) => who = w,
                Admission::Challenge(challenges) => {
                    let mut r = request.response(401, Some(&self.tx.token()[..8]));
                    for c in challenges {
                        r.headers.push("WWW-Authenticate", c);
                    }
                    self.tx.send_response(now, tx, r);
                    return;
                }
                Admission::Slow => {
                    // Answered without an event: a flood from one source
                    // must not become a log line per request.
                    let mut r = request.response(503, Some(&self.tx.token()[..8]));
                    r.headers.push("Retry-After", "5");
                    self.tx.send_response(now, tx, r);
                    if let Some(total) = self.guard.slowed(now) {
                        tracing::warn!(
                            source = %peer.addr.ip(),
                            total,
                            "a source past its request rate gets 503 with Retry-After"
                        );
                    }
                    return;
                }
            }
        }
        let in_dialog = request.to().ok().and_then(|t| t.tag().map(str::to_string));
        match (&request.method, in_dialog) {
            (Method::Invite, None) => self.on_invite(now, tx, request, peer, who),
            (Method::Invite, Some(tag)) => self.on_reinvite(now, tx, request, tag),
            (Method::Bye, Some(tag)) => self.on_bye(now, tx, request, tag),
            (Method::Subscribe, None) => self.on_subscribe(now, tx, request, peer, who),
            (Method::Refer, None) => self.on_refer(now, tx, request, peer, who),
            (Method::Subscribe, Some(tag)) => self.on_resubscribe(now, tx, request, tag),
            (Method::Options, _) => {
                // §8.2.6.2: a final response carries a To tag.
                let mut r = request.response(200, Some(&self.tx.token()[..8]));
                r.headers.push("Allow", ALLOW);
                r.headers.push("Accept", "application/sdp");
                r.headers.push("Supported", "replaces");
                self.tx.send_response(now, tx, r);
            }
            (Method::Info, Some(tag)) if self.leg_by_dialog(&request, &tag).is_some() => {
                self.respond(now, tx, &request, 200, None);
                // application/dtmf-relay: "Signal=0\r\nDuration=160".
                let leg = self.leg_by_dialog(&request, &tag).expect("checked");
                let signal = String::from_utf8_lossy(&request.body)
                    .lines()
                    .find_map(|l| {
                        l.trim()
                            .strip_prefix("Signal=")
                            .map(|v| v.trim().chars().next())
                    })
                    .flatten();
                if let (Some(key), Some(call)) = (signal, self.legs.get(&leg).map(|l| l.call)) {
                    self.key_pressed(now, call, key);
                }
            }
            (Method::Bye | Method::Info, _) => {
                self.respond(now, tx, &request, 481, Some("no such call"))
            }
            (Method::Other(_), _) => {
                self.respond(now, tx, &request, 501, Some("method not implemented"))
            }
            // A method SIP defines that a park server does not take (MESSAGE,
            // REGISTER, PUBLISH, NOTIFY and UPDATE outside our dialogs ...):
            // 405 with Allow (§8.2.1), not 501, which means "unknown".
            _ => self.respond(
                now,
                tx,
                &request,
                405,
                Some("not accepted by this park server"),
            ),
        }
    }

    fn leg_by_dialog(&self, request: &Request, our_tag: &str) -> Option<LegId> {
        let call_id = request.call_id().ok()?;
        self.dialogs
            .get(&(call_id.to_string(), our_tag.to_string()))
            .copied()
    }

    fn on_invite(&mut self, now: Duration, tx: TxId, request: Request, peer: Peer, who: Who) {
        if self.draining {
            return self.respond(now, tx, &request, 503, Some("shutting down"));
        }
        // A body we cannot read is refused before anything is decided
        // (RFC 3261 §21.4.13; RFC 4475 `invut`).
        if !request.body.is_empty() && request.content_type().as_deref() != Some("application/sdp")
        {
            let mut r = request.response(415, Some(&self.tx.token()[..8]));
            r.headers.push("Accept", "application/sdp");
            return self.tx.send_response(now, tx, r);
        }
        // An INVITE with Replaces for one of our dialogs takes that leg's
        // place (attended park, or a pickup from a busy lamp).
        match request.replaces() {
            Ok(Some(replaces)) => {
                // A pickup from a busy lamp names the lamp's dialog, whose
                // Call-ID and both tags are keyed by our secret: retrieve.
                if let Some(call) = self.guard.lamp_pickup(&replaces).map(CallId) {
                    let acting = self.acting(&request, &who);
                    let orbit = self.lot.get(call).map(|p| p.orbit.clone());
                    if let Some(orbit) = &orbit
                        && !self.allowed(Action::Retrieve, &acting, self.group_of_orbit(orbit))
                    {
                        let why = format!("{acting} may not retrieve calls");
                        return self.respond(now, tx, &request, 403, Some(&why));
                    }
                    return match self.lot.remove(call) {
                        Some(parked) => self.retrieve(now, tx, request, peer, parked),
                        None => {
                            self.respond(now, tx, &request, 481, Some("that parked call is gone"))
                        }
                    };
                }
                let key = (replaces.call_id.clone(), replaces.to_tag.clone());
                if let Some(&old) = self.dialogs.get(&key)
                    && self
                        .legs
                        .get(&old)
                        .is_some_and(|l| l.dialog.remote_tag == replaces.from_tag)
                {
                    return self.take_over(now, tx, request, peer, old);
                }
                return self.respond(
                    now,
                    tx,
                    &request,
                    481,
                    Some("the call to replace does not exist"),
                );
            }
            Ok(None) => {}
            Err(e) => return self.respond(now, tx, &request, 400, Some(&e.to_string())),
        }
        let dialed = request.uri.user_decoded().unwrap_or_default();
        // Who is calling: the authenticated user, or what a trusted source
        // asserted (P-Asserted-Identity, else From).
        let caller = match &who {
            Who::User(identity) => identity.clone(),
            Who::Trusted => asserted_identity(&request).unwrap_or_else(|| {
                request
                    .from()
                    .map(|f| f.uri.to_string())
                    .unwrap_or_default()
            }),
        };
        let referred_by = request
            .referred_by()
            .ok()
            .flatten()
            .map(|r| r.uri.to_string());
        let ctx = DialContext {
            dialed: dialed.clone(),
            caller: caller.clone(),
            referred_by: referred_by.clone(),
            has_replaces: false,
            dialed_is_orbit: self.lot.is_orbit(&dialed),
            params: Vec::new(),
        };
        let action = match self.policy.parse_dial(&ctx) {
            Ok(a) => a,
            Err(e) => return self.respond(now, tx, &request, 503, Some(&e.to_string())),
        };
        // The parker: whoever referred the caller here, else the caller
        // itself (dialing the code is the first half of an attended park).
        // Access rules judge the acting party: for a trusted source the
        // referrer it names; for an authenticated user that user, never a
        // Referred-By it wrote itself.
        let parker = referred_by.clone().unwrap_or_default();
        let acting = match &who {
            Who::User(identity) => identity.clone(),
            Who::Trusted => referred_by.unwrap_or_else(|| caller.clone()),
        };
        let target = match action {
            DialAction::Retrieve(orbit) => {
                let parties = Parties {
                    parker,
                    acting,
                    caller,
                };
                return self.on_retrieve(now, tx, request, peer, orbit, dialed, parties);
            }
            DialAction::ParkOrbit(o) => self
                .lot
                .resolve(&o)
                .map(|cfg| ParkTarget::Orbit(cfg.number.clone()))
                .ok_or_else(|| (404, format!("orbit {o} does not exist"))),
            DialAction::ParkGroup(None) if self.lot.groups().is_empty() => {
                Ok(ParkTarget::DefaultLot)
            }
            DialAction::ParkGroup(None) => self
                .lot
                .group_of(&acting)
                .map(|g| ParkTarget::Group(g.name.clone()))
                .ok_or_else(|| (403, format!("{acting} is in no call park group"))),
            DialAction::ParkGroup(Some(g)) => self
                .lot
                .group(&g)
                .map(|group| ParkTarget::Group(group.name.clone()))
                .ok_or_else(|| (404, format!("group {g} does not exist"))),
            DialAction::NotFeature => {
                Err((404, format!("{dialed} is not an orbit or a park code")))
            }
        };
        match target {
            Ok(target) => {
                let parties = Parties {
                    parker,
                    acting,
                    caller,
                };
                self.park(now, tx, request, peer, target, parties)
            }
            Err((status, why)) => self.respond(now, tx, &request, status, Some(&why)),
        }
    }

    /// Retrieve from an orbit (or the oldest anywhere). A bare orbit number
    /// with nothing on it parks instead, when so configured.
    #[allow(clippy::too_many_arguments)]
    fn on_retrieve(
        &mut self,
        now: Duration,
        tx: TxId,
        request: Request,
        peer: Peer,
        orbit: Option<String>,
        dialed: String,
        parties: Parties,
    ) {
        let number = match &orbit {
            Some(o) => match self.lot.resolve(o) {
                Some(cfg) => Some(cfg.number.clone()),
                None => {
                    let why = format!("orbit {o} does not exist");
                    return self.respond(now, tx, &request, 404, Some(&why));
                }
            },
            None => None,
        };
        // The rule is asked only when there is a call to take: a bare orbit
        // that is empty parks instead, under the park rule.
        let has_call = match &number {
            Some(n) => self.lot.parked_on(n).next().is_some(),
            None => self.lot.parked_count() > 0,
        };
        let group = number.as_deref().and_then(|n| self.group_of_orbit(n));
        if has_call && !self.allowed(Action::Retrieve, &parties.acting, group) {
            let why = format!("{} may not retrieve calls", parties.acting);
            return self.respond(now, tx, &request, 403, Some(&why));
        }
        match (self.lot.retrieve(number.as_deref()), number) {
            (Some(parked), _) => self.retrieve(now, tx, request, peer, parked),
            (None, Some(n)) if self.cfg.bare_orbit_parks_when_empty && n == dialed => {
                self.park(now, tx, request, peer, ParkTarget::Orbit(n), parties)
            }
            (None, Some(n)) => self.respond(
                now,
                tx,
                &request,
                404,
                Some(&format!("Nothing parked on {n}")),
            ),
            (None, None) => self.respond(now, tx, &request, 404, Some("Nothing parked")),
        }
    }

    /// Whether `acting` may do `action` on the orbits of `group` (none:
    /// orbits of no group, or the lot as a whole).
    fn allowed(&self, action: Action, acting: &str, group: Option<&str>) -> bool {
        match self.guard.rule(&self.cfg.access, action, group) {
            Access::All => true,
            Access::Members => match group.and_then(|g| self.lot.group(g)) {
                Some(g) => g.members.iter().any(|m| same_party(m, acting)),
                None => self.lot.group_of(acting).is_some(),
            },
            Access::Listed(list) => list.iter().any(|p| same_party(p, acting)),
        }
    }

    /// The group whose destinations hold `orbit`, if any.
    fn group_of_orbit(&self, orbit: &str) -> Option<&str> {
        self.lot
            .groups()
            .iter()
            .find(|g| g.destinations.iter().any(|d| d == orbit))
            .map(|g| g.name.as_str())
    }

    /// The party a request acts as, for access rules outside the park
    /// path (a lamp pickup): the authenticated user, else (trusted) the
    /// Referred-By or the From.
    fn acting(&self, request: &Request, who: &Who) -> String {
        match who {
            Who::User(identity) => identity.clone(),
            Who::Trusted => request
                .referred_by()
                .ok()
                .flatten()
                .map(|r| r.uri.to_string())
                .or_else(|| asserted_identity(request))
                .unwrap_or_else(|| {
                    request
                        .from()
                        .map(|f| f.uri.to_string())
                        .unwrap_or_default()
                }),
        }
    }

    /// Reads the INVITE's offer (or prepares a late offer) for a new leg.
    fn negotiate(
        &mut self,
        request: &Request,
    ) -> Result<(Option<AgreedAudio>, String, u64), (u16, String)> {
        let session = u64::from(self.id() as u32) << 8;
        let local = LocalMedia {
            addr: self.cfg.media_addr.ip(),
            port: self.cfg.media_addr.port(),
            session_id: session,
            version: 1,
        };
        if request.body.is_empty() {
            return Ok((None, sdp::offer(&local, Direction::SendRecv), session));
        }
        if request.content_type().as_deref() != Some("application/sdp") {
            return Err((415, "only application/sdp bodies are understood".into()));
        }
        let text = String::from_utf8_lossy(&request.body);
        let offer = sdp::parse(&text).map_err(|e| (400, e.to_string()))?;
        let mut agreed = sdp::negotiate(&offer).map_err(|e| match e {
            sdp::SdpError::NoCommonCodec(_) => (488, e.to_string()),
            sdp::SdpError::Malformed(_) => (400, e.to_string()),
        })?;
        // A parked call must keep sending (RFC 4733 digits): answer
        // sendrecv unless the phone put us on hold.
        if agreed.direction == Direction::RecvOnly {
            agreed.direction = Direction::SendRecv;
        }
        let answer = sdp::answer(&offer, &agreed, &local);
        Ok((Some(agreed), answer, session))
    }

    #[allow(clippy::too_many_arguments)]
    fn new_leg(
        &mut self,
        now: Duration,
        call: CallId,
        request: &Request,
        peer: Peer,
        tx: TxId,
        media: Option<AgreedAudio>,
        session: u64,
    ) -> LegId {
        let local_tag = self.tx.token()[..10].to_string();
        let dialog = Dialog::from_invite(request, local_tag, peer, self.tx.token());
        self.add_leg(now, call, dialog, Some(tx), media, session)
    }

    /// Registers a leg: its dialog, and where its RTP comes from.
    fn add_leg(
        &mut self,
        now: Duration,
        call: CallId,
        dialog: Dialog,
        invite_tx: Option<TxId>,
        media: Option<AgreedAudio>,
        sdp_version: u64,
    ) -> LegId {
        let id = LegId(self.id());
        let rtp_source = media
            .as_ref()
            .map(|m| SocketAddr::new(m.remote_addr, m.remote_port));
        self.dialogs
            .insert((dialog.call_id.clone(), dialog.local_tag.clone()), id);
        self.legs.insert(
            id,
            Leg {
                call,
                dialog,
                invite_tx,
                awaiting_answer: media.is_none(),
                media,
                rtp_source: None,
                local_sdp_version: sdp_version,
                last_digit_ts: None,
                last_rtp: now,
                rtp_seen: false,
                music_clock: None,
                sdp_source: None,
                deferred_music: None,
            },
        );
        if let Some(src) = rtp_source {
            self.set_sdp_source(id, src);
        }
        id
    }

    /// The leg's SDP named `src` (offer, answer, re-INVITE): it is where
    /// the leg's RTP goes and comes from from now on.
    fn set_sdp_source(&mut self, id: LegId, src: SocketAddr) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        if let Some(old) = leg.sdp_source.replace(src)
            && old != src
            && self.rtp_sources.get(&old) == Some(&id)
        {
            self.rtp_sources.remove(&old);
        }
        self.set_rtp_source(id, src);
    }

    /// Points a leg's RTP at `src` (SDP, re-INVITE, latching), keeping the
    /// source map and the latching candidates in step.
    fn set_rtp_source(&mut self, id: LegId, src: SocketAddr) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        let old = leg.rtp_source.replace(src);
        let seen = leg.rtp_seen;
        let call = leg.call;
        let sdp_source = leg.sdp_source;
        if let Some(old) = old {
            if self.rtp_sources.get(&old) == Some(&id) && Some(old) != sdp_source {
                self.rtp_sources.remove(&old);
            }
            self.forget_unlatched(id, old.ip());
        }
        self.rtp_sources.insert(src, id);
        self.retired.remove(&src);
        if let Some(CallState::Parked {
            caller,
            stream: Some(stream),
        }) = self.calls.get(&call)
            && *caller == id
        {
            self.music_desk.redirect(*stream, src);
        }
        if !seen {
            self.unlatched.entry(src.ip()).or_default().insert(id);
        }
    }

    fn forget_unlatched(&mut self, id: LegId, ip: IpAddr) {
        if let Some(set) = self.unlatched.get_mut(&ip) {
            set.remove(&id);
            if set.is_empty() {
                self.unlatched.remove(&ip);
            }
        }
    }

    fn answer_200(
        &mut self,
        now: Duration,
        tx: TxId,
        request: &Request,
        leg: LegId,
        sdp_body: String,
        peer: Peer,
    ) {
        let tag = self.legs[&leg].dialog.local_tag.clone();
        let mut r: Response = request.dialog_response(200, &tag);
        r.headers.push("Contact", self.contact(peer, &request.uri));
        r.headers.push("Allow", ALLOW);
        r.headers.push("Supported", "replaces");
        r.headers.push("Content-Type", "application/sdp");
        r.body = sdp_body.into_bytes();
        self.tx.send_response(now, tx, r);
    }

    #[allow(clippy::too_many_arguments)]
    /// Who may park, whether there is room, and which orbit: the allocator
    /// decides. Errors carry the SIP status and the reason.
    fn choose_orbit(
        &mut self,
        now: Duration,
        target: &ParkTarget,
        parker: &str,
        acting: &str,
        parked_uri: &str,
        parked_display: &str,
    ) -> Result<String, (u16, String)> {
        if self.lot.parked_count() >= self.cfg.max_parked_calls {
            return Err((503, "the park server is full".into()));
        }
        let group = match target {
            ParkTarget::Orbit(o) => self.group_of_orbit(o).map(str::to_string),
            ParkTarget::Group(g) => Some(g.clone()),
            ParkTarget::DefaultLot => None,
        };
        if !self.allowed(Action::Park, acting, group.as_deref()) {
            return Err((403, format!("{acting} may not park calls")));
        }
        let (candidates, last_orbit) = self
            .lot
            .candidates(target)
            .map_err(|e| (404, e.to_string()))?;
        let req = ParkRequest {
            parker: parker.to_string(),
            parked_uri: parked_uri.to_string(),
            parked_display: parked_display.to_string(),
            target: target.clone(),
            candidates,
            last_orbit,
            now_ms: self.now_ms(now),
            entropy: u64::from_str_radix(&self.tx.token(), 16).unwrap_or(0),
            params: Vec::new(),
        };
        match self.policy.allocate(&req) {
            Ok(Allocation::Orbit(o)) => Ok(o),
            Ok(Allocation::Rejected(r)) => Err((
                match r.code {
                    RejectCode::Busy | RejectCode::Full => 486,
                    RejectCode::NotFound => 404,
                    RejectCode::Forbidden => 403,
                },
                r.reason,
            )),
            Err(e) => Err((503, e.to_string())),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn park(
        &mut self,
        now: Duration,
        tx: TxId,
        request: Request,
        peer: Peer,
        target: ParkTarget,
        parties: Parties,
    ) {
        let Parties {
            parker,
            acting,
            caller,
        } = parties;
        let source = peer.addr.ip();
        if !self.guard.may_park_more(source) {
            let why = "too many calls parked from this address";
            return self.respond(now, tx, &request, 486, Some(why));
        }
        // The parked caller as the allocator, the lamps and the events see
        // it: the authenticated or asserted identity (From otherwise).
        let parked_uri = caller;
        let parked_display = request
            .from()
            .ok()
            .and_then(|f| f.display)
            .unwrap_or_default();
        let orbit =
            match self.choose_orbit(now, &target, &parker, &acting, &parked_uri, &parked_display) {
                Ok(o) => o,
                Err((status, why)) => return self.respond(now, tx, &request, status, Some(&why)),
            };
        let (media, body, session) = match self.negotiate(&request) {
            Ok(x) => x,
            Err((status, why)) => return self.respond(now, tx, &request, status, Some(&why)),
        };
        let call = CallId(self.id());
        let leg = self.new_leg(now, call, &request, peer, tx, media, session);
        let parked = Parked {
            call,
            orbit: orbit.clone(),
            parked_at_ms: self.now_ms(now),
            parker: parker.clone(),
            parked_uri,
            parked_display,
        };
        if let Err(e) = self.lot.park(&target, parked) {
            self.drop_leg(leg);
            return self.respond(now, tx, &request, 486, Some(&e.to_string()));
        }
        self.answer_200(now, tx, &request, leg, body, peer);
        if !self.guard.trusted(source) {
            self.guard.parked_from(source);
            self.call_sources.insert(call, source);
        }
        self.settle_parked(now, call, leg, &orbit);
    }

    /// A call just put on the lot: music (with the orbit announced when
    /// the parker may be the caller itself), timers, lamps, the event and
    /// the MESSAGE to the parker.
    fn settle_parked(&mut self, now: Duration, call: CallId, leg: LegId, orbit: &str) {
        let (parker, caller) = match self.lot.get(call) {
            Some(p) => (p.parker.clone(), p.parked_uri.clone()),
            None => return,
        };
        let music_key = self.lot.orbit(orbit).and_then(|o| o.music.clone());
        // With no Referred-By the caller may be the parker itself (the first
        // half of an attended park): it hears the orbit announced first.
        let intro = if parker.is_empty() {
            self.music.announcement(orbit)
        } else {
            Vec::new()
        };
        if parker.is_empty() && !self.cfg.reservation_timeout.is_zero() {
            self.arm(
                now + self.cfg.reservation_timeout,
                call,
                EngineTimer::Reservation(leg),
            );
        }
        // No music to an untrusted caller before its ACK: a spoofed INVITE
        // must not buy a stream towards the address it names.
        let unacked = self.legs.get(&leg).is_some_and(|l| l.invite_tx.is_some());
        let stream = if unacked && self.call_sources.contains_key(&call) {
            if let Some(l) = self.legs.get_mut(&leg) {
                l.deferred_music = Some((music_key.clone(), intro));
            }
            None
        } else {
            self.start_music(now, leg, music_key.as_deref(), intro)
        };
        self.calls.insert(
            call,
            CallState::Parked {
                caller: leg,
                stream,
            },
        );
        let recall_after = self.lot.orbit(orbit).map_or(0, |o| o.recall_after_ms);
        if recall_after > 0 {
            self.arm(
                now + Duration::from_millis(recall_after),
                call,
                EngineTimer::RecallDue,
            );
        }
        if !self.cfg.rtp_timeout.is_zero() {
            self.arm(now + self.cfg.rtp_timeout, call, EngineTimer::Liveness);
        }
        if !self.cfg.max_lifetime.is_zero() {
            self.arm(now + self.cfg.max_lifetime, call, EngineTimer::Lifetime);
        }
        self.notify_watchers(now, orbit);
        self.events.push_back(EngineEvent::Parked {
            call,
            orbit: orbit.to_string(),
            parker: parker.clone(),
            caller,
            call_id: self.legs[&leg].dialog.call_id.clone(),
        });
        if !parker.is_empty() {
            self.tell_parker(now, &parker, orbit);
        }
    }

    fn start_music(
        &mut self,
        now: Duration,
        leg: LegId,
        key: Option<&str>,
        intro: Vec<Music>,
    ) -> Option<MusicStream> {
        let l = self.legs.get(&leg)?;
        let media = l.media.as_ref()?;
        let codec = match media.law {
            Law::Pcmu => Codec::Pcmu,
            Law::Pcma => Codec::Pcma,
        };
        let token = self.tx.token();
        let bits = u64::from_str_radix(&token, 16).unwrap_or(0);
        let call = l.call;
        let spec = StreamSpec {
            codec,
            payload_type: media.payload_type,
            ssrc: bits as u32,
            first_seq: (bits >> 32) as u16,
            first_ts: (bits >> 16) as u32,
            music: self.music.for_orbit(key),
            intro,
            // The music shard names its streams itself.
            tag: 0,
        };
        let clock = MusicClock {
            ssrc: spec.ssrc,
            first_ts: spec.first_ts,
            // The pacer's first packet is due at the next millisecond.
            start_ms: now.as_millis() as u64 + 1,
        };
        let dest = l.rtp_source;
        if let Some(l) = self.legs.get_mut(&leg) {
            l.music_clock = Some(clock);
        }
        self.arm(
            now + SENDER_REPORT_EVERY,
            call,
            EngineTimer::SenderReport(leg),
        );
        Some(self.music_desk.play(now, spec, dest))
    }

    /// "Parked on 701", by SIP MESSAGE to the parker.
    fn tell_parker(&mut self, now: Duration, parker: &str, orbit: &str) {
        let Ok(uri) = Uri::parse(parker) else { return };
        if !self.guard.may_call(&uri) {
            tracing::info!(parker, "the parker is not an allowed target: no MESSAGE");
            return;
        }
        let Some(peer) = self.route(&uri) else {
            tracing::debug!(
                parker,
                "no outbound proxy: not telling a parker named by host name"
            );
            return;
        };
        let mut request = self.new_request(Method::Message, "callpark", None, &uri);
        request.headers.push("Content-Type", "text/plain");
        request.body = format!("Parked on {orbit}").into_bytes();
        self.tx.send_request(now, request, peer);
    }

    /// Where an out-of-dialog request to `uri` goes: the outbound proxy,
    /// else the URI's own IP address. A host name needs DNS, which the
    /// outbound proxy does for us.
    ///
    /// A `sips:` URI, or one with `;transport=tls`, is reached over TLS
    /// (a connection the host opens or reuses, port 5061 by default)
    /// unless the outbound proxy carries it.
    fn route(&self, uri: &Uri) -> Option<Peer> {
        let tls = uri.scheme == callpark_sip::uri::Scheme::Sips
            || uri
                .param("transport")
                .flatten()
                .is_some_and(|t| t.eq_ignore_ascii_case("tls"));
        let (addr, transport) = match (self.cfg.outbound_proxy, &uri.host) {
            (Some(proxy), _) => (proxy, Transport::Udp),
            (None, Some(Host::Ip(ip))) if tls => (
                SocketAddr::new(*ip, uri.port.unwrap_or(5061)),
                Transport::Tls(callpark_sip::transaction::NEW_CONNECTION),
            ),
            (None, Some(Host::Ip(ip))) => (
                SocketAddr::new(*ip, uri.port.unwrap_or(5060)),
                Transport::Udp,
            ),
            (None, _) => return None,
        };
        Some(Peer { transport, addr })
    }

    /// A request opening a new dialog or transaction from `user` at our
    /// address (From with a fresh tag, To, Call-ID, CSeq 1).
    fn new_request(
        &mut self,
        method: Method,
        user: &str,
        display: Option<String>,
        target: &Uri,
    ) -> Request {
        let host = Host::Ip(self.cfg.sip_addr.ip());
        let port = self.cfg.sip_addr.port();
        let mut from = NameAddr::new(Uri {
            scheme: callpark_sip::uri::Scheme::Sip,
            user: Some(user.to_string()),
            host: Some(host),
            port: Some(port),
            params: Vec::new(),
            headers: Vec::new(),
        })
        .with_param("tag", &self.tx.token()[..10]);
        from.display = display;
        let mut headers = callpark_sip::message::Headers::new();
        headers.push("Max-Forwards", "70");
        headers.push("From", from.to_string());
        headers.push("To", NameAddr::new(target.without_headers()).to_string());
        headers.push("Call-ID", format!("{}@callpark", self.tx.token()));
        headers.push("CSeq", format!("1 {method}"));
        Request {
            method,
            uri: target.without_headers(),
            headers,
            body: Vec::new(),
        }
    }

    /// An INVITE of ours with an offer the relay can serve.
    fn new_invite(&mut self, user: &str, display: Option<String>, target: &Uri) -> Request {
        let mut invite = self.new_request(Method::Invite, user, display, target);
        let contact = format!(
            "<sip:callpark@{}:{}>",
            Host::Ip(self.cfg.sip_addr.ip()),
            self.cfg.sip_addr.port()
        );
        invite.headers.push("Contact", contact);
        invite.headers.push("Allow", ALLOW);
        invite.headers.push("Content-Type", "application/sdp");
        let local = LocalMedia {
            addr: self.cfg.media_addr.ip(),
            port: self.cfg.media_addr.port(),
            session_id: self.id(),
            version: 1,
        };
        invite.body = sdp::offer(&local, Direction::SendRecv).into_bytes();
        invite
    }

    fn retrieve(&mut self, now: Duration, tx: TxId, request: Request, peer: Peer, parked: Parked) {
        let (media, body, session) = match self.negotiate(&request) {
            Ok(x) => x,
            Err((status, why)) => {
                // Put the call back where it was: it is still parked.
                let orbit = parked.orbit.clone();
                let _ = self.lot.park(&ParkTarget::Orbit(orbit), parked);
                return self.respond(now, tx, &request, status, Some(&why));
            }
        };
        let call = parked.call;
        if !self.subscriptions.is_empty()
            && let Some(CallState::Parked { caller, .. }) = self.calls.get(&call)
            && self.legs.contains_key(caller)
        {
            let lamp = GoneLamp {
                call,
                caller_uri: parked.parked_uri.clone(),
                caller_display: parked.parked_display.clone(),
            };
            self.gone
                .entry(parked.orbit.clone())
                .or_default()
                .push(lamp);
        }
        // A retrieve wins over a ringing recall.
        self.cancel_recall(now, call);
        let retriever = self.new_leg(now, call, &request, peer, tx, media, session);
        self.answer_200(now, tx, &request, retriever, body, peer);
        let Some(CallState::Parked { caller, stream }) = self.calls.remove(&call) else {
            return;
        };
        if let Some(s) = stream {
            self.music_desk.stop(s);
        }
        self.calls
            .insert(call, CallState::Bridged { caller, retriever });
        let by = request
            .from()
            .map(|f| f.uri.to_string())
            .unwrap_or_default();
        tracing::debug!(call_id = %self.legs[&caller].dialog.call_id, orbit = %parked.orbit, %by, "retrieved");
        self.notify_watchers(now, &parked.orbit);
        self.events.push_back(EngineEvent::Retrieved {
            call,
            orbit: parked.orbit,
            by,
        });
    }

    /// An INVITE with Replaces takes an existing leg's place: the new party
    /// is parked on (or bridged in) the same call, the old leg is hung up.
    fn take_over(&mut self, now: Duration, tx: TxId, request: Request, peer: Peer, old: LegId) {
        let (media, body, session) = match self.negotiate(&request) {
            Ok(x) => x,
            Err((status, why)) => return self.respond(now, tx, &request, status, Some(&why)),
        };
        let call = self.legs[&old].call;
        let new = self.new_leg(now, call, &request, peer, tx, media, session);
        self.answer_200(now, tx, &request, new, body, peer);
        match self.calls.remove(&call) {
            Some(CallState::Parked { stream, .. }) => {
                if let Some(s) = stream {
                    self.music_desk.stop(s);
                }
                let key = self
                    .lot
                    .get(call)
                    .and_then(|p| self.lot.orbit(&p.orbit))
                    .and_then(|o| o.music.clone());
                let stream = self.start_music(now, new, key.as_deref(), Vec::new());
                self.calls.insert(
                    call,
                    CallState::Parked {
                        caller: new,
                        stream,
                    },
                );
                // The replaced leg was the parker (attended park): the
                // parked party is now the newcomer, and the parker is who
                // referred it (phones that copy Referred-By from the REFER
                // name the parker best), else the leg it replaced.
                let replaced_uri = self.legs[&old].dialog.remote_uri.clone();
                let referred_by = request
                    .referred_by()
                    .ok()
                    .flatten()
                    .map(|r| r.uri.to_string());
                let from = request.from().ok();
                if let Some(p) = self.lot.remove(call) {
                    let completes_attended_park = p.parker.is_empty();
                    let updated = Parked {
                        parker: if completes_attended_park {
                            referred_by.unwrap_or(replaced_uri)
                        } else {
                            p.parker
                        },
                        parked_uri: from
                            .as_ref()
                            .map(|f| f.uri.to_string())
                            .unwrap_or(p.parked_uri),
                        parked_display: from.and_then(|f| f.display).unwrap_or_default(),
                        ..p
                    };
                    let orbit = updated.orbit.clone();
                    let (parker, caller) = (updated.parker.clone(), updated.parked_uri.clone());
                    let _ = self.lot.park(&ParkTarget::Orbit(orbit.clone()), updated);
                    self.notify_watchers(now, &orbit);
                    if completes_attended_park {
                        self.events.push_back(EngineEvent::AttendedParkCompleted {
                            call,
                            orbit: orbit.clone(),
                            parker: parker.clone(),
                            caller,
                            call_id: request.call_id().unwrap_or_default().to_string(),
                        });
                        // The parker heard the orbit; it gets the MESSAGE
                        // too, as every parker does.
                        if !parker.is_empty() {
                            self.tell_parker(now, &parker, &orbit);
                        }
                    }
                }
            }
            Some(CallState::Bridged { caller, retriever }) => {
                let (caller, retriever) = if caller == old {
                    (new, retriever)
                } else {
                    (caller, new)
                };
                self.calls
                    .insert(call, CallState::Bridged { caller, retriever });
            }
            None => {}
        }
        self.bye(now, old);
        self.drop_leg(old);
    }

    fn on_ack(&mut self, now: Duration, request: &Request) {
        let Some(tag) = request.to().ok().and_then(|t| t.tag().map(str::to_string)) else {
            return;
        };
        let Some(id) = self.leg_by_dialog(request, &tag) else {
            return;
        };
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        leg.invite_tx = None;
        leg.dialog.confirmed = true;
        if let Some((key, intro)) = leg.deferred_music.take() {
            let call = leg.call;
            let started = self.start_music(now, id, key.as_deref(), intro);
            if let Some(CallState::Parked { stream, .. }) = self.calls.get_mut(&call) {
                *stream = started;
            }
            return;
        }
        if leg.awaiting_answer && !request.body.is_empty() {
            // Late offer: the answer arrives in the ACK.
            let answer = sdp::parse(&String::from_utf8_lossy(&request.body))
                .and_then(|sd| sdp::negotiate(&sd));
            if let Ok(agreed) = answer {
                let src = SocketAddr::new(agreed.remote_addr, agreed.remote_port);
                leg.media = Some(agreed);
                leg.awaiting_answer = false;
                let call = leg.call;
                self.set_sdp_source(id, src);
                let needs_music = matches!(
                    self.calls.get(&call),
                    Some(CallState::Parked { stream: None, .. })
                );
                if needs_music {
                    let key = self
                        .lot
                        .get(call)
                        .and_then(|p| self.lot.orbit(&p.orbit))
                        .and_then(|o| o.music.clone());
                    let started = self.start_music(now, id, key.as_deref(), Vec::new());
                    if let Some(CallState::Parked { stream, .. }) = self.calls.get_mut(&call) {
                        *stream = started;
                    }
                }
            }
        }
    }

    fn on_cancelled(&mut self, now: Duration, invite: TxId) {
        let leg = self
            .legs
            .iter()
            .find(|(_, l)| l.invite_tx == Some(invite))
            .map(|(id, _)| *id);
        if let Some(request) = self.tx.server_request(invite).cloned() {
            self.respond(now, invite, &request, 487, None);
        }
        if let Some(leg) = leg {
            self.leg_gone(now, leg);
        }
    }

    fn on_reinvite(&mut self, now: Duration, tx: TxId, request: Request, tag: String) {
        let Some(id) = self.leg_by_dialog(&request, &tag) else {
            return self.respond(now, tx, &request, 481, Some("no such call"));
        };
        let version = {
            let leg = self.legs.get_mut(&id).expect("indexed");
            leg.local_sdp_version += 1;
            leg.local_sdp_version
        };
        let local = LocalMedia {
            addr: self.cfg.media_addr.ip(),
            port: self.cfg.media_addr.port(),
            session_id: version,
            version,
        };
        let body = if request.body.is_empty() {
            sdp::offer(&local, Direction::SendRecv)
        } else {
            let text = String::from_utf8_lossy(&request.body);
            let offer = match sdp::parse(&text) {
                Ok(o) => o,
                Err(e) => return self.respond(now, tx, &request, 400, Some(&e.to_string())),
            };
            let agreed = match sdp::negotiate(&offer) {
                Ok(a) => a,
                Err(e) => return self.respond(now, tx, &request, 488, Some(&e.to_string())),
            };
            let answer = sdp::answer(&offer, &agreed, &local);
            // Hold and resume: the relay follows the new address and codec.
            let src = SocketAddr::new(agreed.remote_addr, agreed.remote_port);
            if let Some(leg) = self.legs.get_mut(&id) {
                leg.media = Some(agreed);
            }
            self.set_sdp_source(id, src);
            answer
        };
        let leg = &self.legs[&id];
        let mut r = request.response(200, Some(&leg.dialog.local_tag));
        r.headers
            .push("Contact", self.contact(leg.dialog.peer, &request.uri));
        r.headers.push("Content-Type", "application/sdp");
        r.body = body.into_bytes();
        self.tx.send_response(now, tx, r);
    }

    fn on_bye(&mut self, now: Duration, tx: TxId, request: Request, tag: String) {
        let Some(id) = self.leg_by_dialog(&request, &tag) else {
            return self.respond(now, tx, &request, 481, Some("no such call"));
        };
        let r = request.response(200, None);
        self.tx.send_response(now, tx, r);
        self.leg_gone(now, id);
    }

    /// A leg hung up: end its call and hang up the other leg, if any.
    fn leg_gone(&mut self, now: Duration, id: LegId) {
        let Some(leg) = self.legs.get(&id) else {
            return;
        };
        let call = leg.call;
        match self.calls.get(&call) {
            Some(CallState::Parked { caller, .. }) if *caller == id => {
                let call_id = leg.dialog.call_id.clone();
                self.cancel_recall(now, call);
                let Some(leg) = self.legs.get(&id) else {
                    return;
                };
                debug_assert_eq!(leg.dialog.call_id, call_id);
                let orbit = self
                    .lot
                    .get(call)
                    .map(|p| p.orbit.clone())
                    .unwrap_or_default();
                tracing::debug!(call_id = %leg.dialog.call_id, %orbit, "abandoned while parked");
                self.end_call(now, call);
                self.events
                    .push_back(EngineEvent::Abandoned { call, orbit });
            }
            Some(CallState::Bridged { caller, retriever }) => {
                let other = if *caller == id { *retriever } else { *caller };
                self.bye(now, other);
                self.end_call(now, call);
                self.events.push_back(EngineEvent::Ended { call });
            }
            _ => {}
        }
        self.drop_leg(id);
    }

    fn end_call(&mut self, now: Duration, call: CallId) {
        if let Some(recall) = self.recalls.remove(&call)
            && let Some(r) = recall.ringing
        {
            // Cancelled by the caller of `end_call` where it can; a late
            // 2xx is acknowledged and hung up.
            self.stale_recalls.insert(r.tx);
            self.recall_by_tx.remove(&r.tx);
        }
        self.lamp_gone(call);
        if let Some(p) = self.lot.remove(call) {
            self.notify_watchers(now, &p.orbit);
        }
        if let Some(source) = self.call_sources.remove(&call) {
            self.guard.unparked_from(source);
        }
        self.recalls_done.remove(&call);
        for key in self.call_timers.remove(&call).unwrap_or_default() {
            self.timers.remove(&key);
        }
        match self.calls.remove(&call) {
            Some(CallState::Parked { caller, stream }) => {
                if let Some(s) = stream {
                    self.music_desk.stop(s);
                }
                self.drop_leg(caller);
            }
            Some(CallState::Bridged { caller, retriever }) => {
                self.drop_leg(caller);
                self.drop_leg(retriever);
            }
            None => {}
        }
    }

    fn drop_leg(&mut self, id: LegId) {
        if let Some(leg) = self.legs.remove(&id) {
            self.dialogs
                .remove(&(leg.dialog.call_id.clone(), leg.dialog.local_tag.clone()));
            if let Some(sdp) = leg.sdp_source
                && self.rtp_sources.get(&sdp) == Some(&id)
            {
                self.rtp_sources.remove(&sdp);
            }
            if let Some(src) = leg.rtp_source {
                if self.rtp_sources.get(&src) == Some(&id) {
                    self.rtp_sources.remove(&src);
                }
                self.forget_unlatched(id, src.ip());
                self.retire(src);
            }
        }
    }

    fn retire(&mut self, src: SocketAddr) {
        if self.retired.len() >= MAX_RETIRED {
            let now = self.clock;
            self.retired.retain(|_, heard| now < *heard + RETIRED_FOR);
            if self.retired.len() >= MAX_RETIRED
                && let Some(oldest) = self
                    .retired
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(a, _)| *a)
            {
                self.retired.remove(&oldest);
            }
        }
        self.retired.insert(src, self.clock);
    }

    /// Symmetric RTP: a phone behind NAT (or one that sends from another
    /// port than it announced) is latched to where its packets really come
    /// from, but only when exactly one leg from that IP has sent nothing
    /// yet, so that calls from one gateway are never mixed up.
    fn latch(&mut self, now: Duration, src: SocketAddr, packet: &[u8]) -> Option<LegId> {
        let candidates = self.unlatched.get(&src.ip())?;
        if let Some(heard) = self.retired.get_mut(&src) {
            if now < *heard + RETIRED_FOR {
                // Still the old call's stream: keep it retired.
                *heard = now;
                return None;
            }
            self.retired.remove(&src);
        }
        if candidates.len() != 1 {
            return None;
        }
        let id = *candidates.iter().next()?;
        // Only a packet of what the leg agreed to send (its codec or
        // RFC 4733 events) latches it.
        let pt = rtp_rs::RtpReader::new(packet).ok()?.payload_type();
        let media = self.legs.get(&id)?.media.as_ref()?;
        if pt != media.payload_type && Some(pt) != media.telephone_event {
            return None;
        }
        self.set_rtp_source(id, src);
        tracing::debug!(%src, "RTP latched to its real source");
        Some(id)
    }

    /// A parked caller pressed `key` (RFC 4733 or SIP INFO): the orbit's
    /// escape key starts recall at once.
    fn key_pressed(&mut self, now: Duration, call: CallId, key: char) {
        let Some(orbit) = self.lot.get(call).map(|p| p.orbit.clone()) else {
            return;
        };
        let escape = self.lot.orbit(&orbit).and_then(|o| o.escape_key);
        if escape != Some(key) || self.recalls.contains_key(&call) {
            return;
        }
        tracing::debug!(%orbit, %key, "the parked caller asks for recall");
        self.events
            .push_back(EngineEvent::EscapeKey { call, orbit, key });
        self.start_recall(now, call, RecallReason::EscapeKey);
    }

    /// No RTP from a parked caller for `rtp_timeout`: phones on hold may be
    /// silent, so an in-dialog OPTIONS decides.
    fn check_liveness(&mut self, now: Duration, call: CallId) {
        let Some(CallState::Parked { caller, .. }) = self.calls.get(&call) else {
            return;
        };
        let caller = *caller;
        let Some(leg) = self.legs.get_mut(&caller) else {
            return;
        };
        let silent_since = leg.last_rtp;
        let timeout = self.cfg.rtp_timeout;
        if now < silent_since + timeout {
            return self.arm(silent_since + timeout, call, EngineTimer::Liveness);
        }
        let probe = leg.dialog.request(Method::Options);
        let peer = leg.dialog.peer;
        let tx = self.tx.send_request(now, probe, peer);
        self.probes.insert(tx, call);
        self.arm(now + timeout, call, EngineTimer::Liveness);
    }

    fn caller_vanished(&mut self, now: Duration, call: CallId) {
        self.give_up(now, call, "caller vanished", false);
    }

    /// Ends a parked call nobody will take: a BYE to the caller (unless it
    /// is already gone), the orbit freed, the lamps told, and the events.
    fn give_up(&mut self, now: Duration, call: CallId, why: &'static str, bye: bool) {
        let Some(CallState::Parked { caller, .. }) = self.calls.get(&call) else {
            return;
        };
        let caller = *caller;
        let orbit = self
            .lot
            .get(call)
            .map(|p| p.orbit.clone())
            .unwrap_or_default();
        tracing::debug!(%orbit, why, "ending a parked call");
        self.events.push_back(EngineEvent::GiveUp {
            call,
            orbit: orbit.clone(),
            why,
        });
        self.cancel_recall(now, call);
        if bye {
            self.bye(now, caller);
        }
        self.end_call(now, call);
        self.events
            .push_back(EngineEvent::Abandoned { call, orbit });
    }

    /// Stops a recall: the ringing INVITE is cancelled.
    fn cancel_recall(&mut self, now: Duration, call: CallId) {
        let Some(recall) = self.recalls.remove(&call) else {
            return;
        };
        if let Some(r) = recall.ringing {
            self.recall_by_tx.remove(&r.tx);
            self.stale_recalls.insert(r.tx);
            self.tx.send_cancel(now, r.tx);
        }
    }

    fn start_recall(&mut self, now: Duration, call: CallId, reason: RecallReason) {
        if !matches!(self.calls.get(&call), Some(CallState::Parked { .. }))
            || self.recalls.contains_key(&call)
        {
            return;
        }
        let Some(parked) = self.lot.get(call).cloned() else {
            return;
        };
        let group = self.lot.orbit(&parked.orbit).and_then(|o| o.group.clone());
        // The defaults, then the group's settings, then the orbit's own:
        // the most specific wins.
        let mut params = self.cfg.recall_params.clone();
        let layers = [
            group
                .as_deref()
                .and_then(|g| self.lot.group(g))
                .map(|g| &g.recall_params),
            self.lot.orbit(&parked.orbit).map(|o| &o.recall_params),
        ];
        for (k, v) in layers.into_iter().flatten().flatten() {
            params.retain(|(p, _)| p != k);
            params.push((k.clone(), v.clone()));
        }
        let recalls_done = self.recalls_done.get(&call).copied().unwrap_or(0);
        let info = ParkedCall {
            orbit: parked.orbit.clone(),
            group,
            parker: parked.parker.clone(),
            parked_uri: parked.parked_uri.clone(),
            parked_display: parked.parked_display.clone(),
            parked_at_ms: parked.parked_at_ms,
            now_ms: self.now_ms(now),
            recalls_done,
            reason,
            params,
        };
        let mut plan = match self.policy.plan_recall(&info) {
            Ok(plan) => plan,
            Err(e) => {
                // The plugin failed and the deployment refuses fallbacks:
                // keep the call parked and try again later.
                tracing::warn!(orbit = %parked.orbit, error = %e, "no recall plan; the call stays parked");
                RecallPlan {
                    steps: Vec::new(),
                    end: EndAction::RePark(None),
                }
            }
        };
        // A transfer at the end is one more ring, to that URI, then goodbye.
        if let EndAction::Transfer(uri) = &plan.end {
            let display = plan.steps.first().and_then(|s| s.display.clone());
            plan.steps.push(RecallStep {
                target: uri.clone(),
                ring_ms: 60_000,
                alert_info: None,
                display,
            });
            plan.end = EndAction::Disconnect;
        }
        // A key press must never end a call by surprise: with nobody to
        // ring (a caller who dialed the orbit itself, no fallback or hunt
        // group configured) the call stays parked as it was.
        if reason == RecallReason::EscapeKey && plan.steps.is_empty() {
            tracing::info!(
                orbit = %parked.orbit,
                "escape key pressed but nobody to recall to (no parker, fallback or hunt group); the call stays parked"
            );
            return;
        }
        tracing::debug!(orbit = %parked.orbit, steps = plan.steps.len(), ?reason, "recall planned");
        self.events.push_back(EngineEvent::RecallStarted {
            call,
            orbit: parked.orbit.clone(),
            steps: plan.steps.len(),
        });
        // The lamps hear about the recall too (the state stays parked).
        self.notify_watchers(now, &parked.orbit);
        self.recalls.insert(
            call,
            Recall {
                plan,
                step: 0,
                ringing: None,
            },
        );
        self.ring_step(now, call);
    }

    /// Rings the current step of a call's recall, or ends the plan.
    fn ring_step(&mut self, now: Duration, call: CallId) {
        loop {
            let Some(recall) = self.recalls.get(&call) else {
                return;
            };
            let Some(step) = recall.plan.steps.get(recall.step).cloned() else {
                return self.end_recall(now, call);
            };
            let index = recall.step;
            match self.send_recall_invite(now, call, &step) {
                Some((tx, peer)) => {
                    if let Some(r) = self.recalls.get_mut(&call) {
                        r.ringing = Some(Ringing { tx, peer });
                    }
                    self.recall_by_tx.insert(tx, call);
                    self.arm(
                        now + Duration::from_millis(u64::from(step.ring_ms)),
                        call,
                        EngineTimer::RingOver(tx),
                    );
                    let orbit = self
                        .lot
                        .get(call)
                        .map(|p| p.orbit.clone())
                        .unwrap_or_default();
                    tracing::debug!(%orbit, step = index + 1, target = %step.target, "recall rings");
                    self.events.push_back(EngineEvent::RecallStep {
                        call,
                        orbit,
                        step: index,
                        target: step.target.clone(),
                    });
                    return;
                }
                None => {
                    // Unroutable target: the next step.
                    if let Some(r) = self.recalls.get_mut(&call) {
                        r.step += 1;
                    }
                }
            }
        }
    }

    fn send_recall_invite(
        &mut self,
        now: Duration,
        call: CallId,
        step: &RecallStep,
    ) -> Option<(TxId, Peer)> {
        let uri = Uri::parse(&step.target).ok()?;
        if !self.guard.may_call(&uri) {
            tracing::warn!(target = %step.target, "a recall target that is not allowed is skipped");
            return None;
        }
        let Some(peer) = self.route(&uri) else {
            tracing::warn!(target = %step.target, "a recall target named by host name needs an outbound proxy");
            return None;
        };
        let orbit = self
            .lot
            .get(call)
            .map(|p| p.orbit.clone())
            .unwrap_or_default();
        let display = step
            .display
            .clone()
            .unwrap_or_else(|| format!("Park {orbit}"));
        let mut invite = self.new_invite(&orbit, Some(display), &uri);
        if matches!(peer.transport, Transport::Tls(_)) {
            // A dialog over TLS is a sips: one (RFC 3261 §12.1.1).
            invite.headers.set("Contact", self.contact(peer, &uri));
        }
        if let Some(alert) = &step.alert_info {
            invite.headers.push("Alert-Info", alert.clone());
        }
        let (host, port) = (Host::Ip(self.cfg.sip_addr.ip()), self.cfg.sip_addr.port());
        invite
            .headers
            .push("Subject", format!("Parked call on {orbit}"));
        invite.headers.push(
            "Call-Info",
            format!("<sip:{orbit}@{host}:{port}>;purpose=info"),
        );
        Some((self.tx.send_request(now, invite, peer), peer))
    }

    /// A step's ring time is over: cancel it and ring the next.
    fn ring_over(&mut self, now: Duration, call: CallId, tx: TxId) {
        let current = self
            .recalls
            .get(&call)
            .and_then(|r| r.ringing.as_ref())
            .map(|r| r.tx);
        if current != Some(tx) {
            return;
        }
        self.recall_by_tx.remove(&tx);
        self.stale_recalls.insert(tx);
        self.tx.send_cancel(now, tx);
        self.next_step(now, call);
    }

    fn next_step(&mut self, now: Duration, call: CallId) {
        if let Some(r) = self.recalls.get_mut(&call) {
            r.ringing = None;
            r.step += 1;
            self.ring_step(now, call);
        }
    }

    fn end_recall(&mut self, now: Duration, call: CallId) {
        let Some(recall) = self.recalls.remove(&call) else {
            return;
        };
        let orbit = self
            .lot
            .get(call)
            .map(|p| p.orbit.clone())
            .unwrap_or_default();
        let end = format!("{:?}", recall.plan.end);
        tracing::debug!(%orbit, %end, "recall plan exhausted");
        self.events.push_back(EngineEvent::RecallExhausted {
            call,
            orbit: orbit.clone(),
            end,
        });
        match recall.plan.end {
            EndAction::RePark(after) => {
                *self.recalls_done.entry(call).or_insert(0) += 1;
                let ms = after
                    .map(u64::from)
                    .unwrap_or_else(|| self.lot.orbit(&orbit).map_or(0, |o| o.recall_after_ms));
                if ms > 0 {
                    self.arm(
                        now + Duration::from_millis(ms),
                        call,
                        EngineTimer::RecallDue,
                    );
                }
            }
            // Transfers became a last step; what is left is goodbye.
            EndAction::Disconnect | EndAction::Transfer(_) => {
                self.give_up(now, call, "recall unanswered", true);
            }
        }
    }

    /// A leg we called (recall target, server-driven park): its dialog and
    /// media, registered for in-dialog requests and RTP.
    fn uac_leg(
        &mut self,
        now: Duration,
        call: CallId,
        dialog: Dialog,
        media: Option<AgreedAudio>,
    ) -> LegId {
        self.add_leg(now, call, dialog, None, media, 1)
    }

    fn on_response(&mut self, now: Duration, tx: TxId, response: Response) {
        if response.status < 200 {
            return;
        }
        let is_invite = response
            .cseq()
            .map(|c| c.1 == Method::Invite)
            .unwrap_or(false);
        if !is_invite {
            return;
        }
        if let Some(pending) = self.refer_parks.remove(&tx) {
            return self.refer_answered(now, tx, pending, response);
        }
        if response.status >= 300 {
            // A cancelled recall INVITE ends here (487): nothing to hang up.
            self.stale_recalls.remove(&tx);
            if let Some(call) = self.recall_by_tx.remove(&tx) {
                let orbit = self
                    .lot
                    .get(call)
                    .map(|p| p.orbit.clone())
                    .unwrap_or_default();
                tracing::info!(%orbit, status = response.status, "recall step declined");
                self.next_step(now, call);
            }
            return;
        }
        // A 2xx: ACK it (every retransmission), then bridge or hang up.
        let Some(invite) = self.tx.client_request(tx).cloned() else {
            return;
        };
        let peer = self
            .recalls
            .values()
            .filter_map(|r| r.ringing.as_ref())
            .find(|r| r.tx == tx)
            .map(|r| r.peer)
            .unwrap_or_else(|| match invite.uri.host {
                Some(Host::Ip(ip)) => Peer {
                    transport: Transport::Udp,
                    addr: SocketAddr::new(ip, invite.uri.port.unwrap_or(5060)),
                },
                _ => Peer {
                    transport: Transport::Udp,
                    addr: self.cfg.outbound_proxy.unwrap_or(self.cfg.sip_addr),
                },
            });
        let dialog = Dialog::from_uac(&invite, &response, peer);
        let ack = dialog.ack(invite.cseq().map(|c| c.0).unwrap_or(1));
        self.tx.send_ack(ack, peer);
        let key = (dialog.call_id.clone(), dialog.local_tag.clone());
        if self.dialogs.contains_key(&key) {
            return; // a retransmitted 2xx of a bridged recall
        }
        let Some(call) = self.recall_by_tx.remove(&tx) else {
            // Answered after we gave up (cancel race): hang up at once.
            if self.stale_recalls.remove(&tx) {
                let mut d = dialog;
                let bye = d.request(Method::Bye);
                self.tx.send_request(now, bye, peer);
            }
            return;
        };
        let media = sdp::parse(&String::from_utf8_lossy(&response.body))
            .ok()
            .and_then(|sd| sdp::negotiate(&sd).ok());
        self.recalls.remove(&call);
        let Some(parked) = self.lot.remove(call) else {
            return;
        };
        let Some(CallState::Parked { caller, stream }) = self.calls.remove(&call) else {
            return;
        };
        if let Some(s) = stream {
            self.music_desk.stop(s);
        }
        let by = dialog.remote_uri.clone();
        let id = self.uac_leg(now, call, dialog, media);
        self.calls.insert(
            call,
            CallState::Bridged {
                caller,
                retriever: id,
            },
        );
        self.notify_watchers(now, &parked.orbit);
        tracing::debug!(orbit = %parked.orbit, %by, "recall answered");
        self.events.push_back(EngineEvent::RecallAnswered {
            call,
            orbit: parked.orbit,
            by,
        });
    }

    /// Server-driven park (RFC 5359 §2.15): the parker REFERs the park
    /// server to its caller (`Refer-To: <caller?Replaces=...>`); we INVITE
    /// the caller with Replaces, which takes it off the parker's call and
    /// onto an orbit, and report the orbit in the final NOTIFY and a MESSAGE.
    fn on_refer(&mut self, now: Duration, tx: TxId, request: Request, peer: Peer, who: Who) {
        if self.draining {
            return self.respond(now, tx, &request, 503, Some("shutting down"));
        }
        let refer_to = match request.refer_to() {
            Ok(Some(r)) => r,
            Ok(None) => {
                return self.respond(now, tx, &request, 400, Some("REFER without Refer-To"));
            }
            Err(e) => return self.respond(now, tx, &request, 400, Some(&e.to_string())),
        };
        // The server calls whoever Refer-To names: only allowed targets,
        // never a number a stranger picked (toll fraud).
        if !self.guard.may_call(&refer_to.uri) {
            tracing::warn!(target = %refer_to.uri.without_headers(), "REFER to a target that is not allowed; nobody called");
            return self.respond(now, tx, &request, 403, Some("that target is not allowed"));
        }
        let parker = match &who {
            Who::User(identity) => identity.clone(),
            Who::Trusted => asserted_identity(&request).unwrap_or_else(|| {
                request
                    .from()
                    .map(|f| f.uri.to_string())
                    .unwrap_or_default()
            }),
        };
        let dialed = request.uri.user_decoded().unwrap_or_default();
        let ctx = DialContext {
            dialed: dialed.clone(),
            caller: refer_to.uri.without_headers().to_string(),
            referred_by: Some(parker.clone()),
            has_replaces: true,
            dialed_is_orbit: self.lot.is_orbit(&dialed),
            params: Vec::new(),
        };
        let target = match self.policy.parse_dial(&ctx) {
            Ok(DialAction::ParkOrbit(o)) => self
                .lot
                .resolve(&o)
                .map(|cfg| ParkTarget::Orbit(cfg.number.clone()))
                .ok_or_else(|| (404, format!("orbit {o} does not exist"))),
            Ok(DialAction::ParkGroup(None)) if self.lot.groups().is_empty() => {
                Ok(ParkTarget::DefaultLot)
            }
            Ok(DialAction::ParkGroup(None)) => self
                .lot
                .group_of(&parker)
                .map(|g| ParkTarget::Group(g.name.clone()))
                .ok_or_else(|| (403, format!("{parker} is in no call park group"))),
            Ok(DialAction::ParkGroup(Some(g))) => self
                .lot
                .group(&g)
                .map(|group| ParkTarget::Group(group.name.clone()))
                .ok_or_else(|| (404, format!("group {g} does not exist"))),
            Ok(_) => Err((403, format!("a REFER to {dialed} is not a park"))),
            Err(e) => Err((503, e.to_string())),
        };
        let parked_uri = refer_to.uri.without_headers().to_string();
        let chosen = target.clone().and_then(|t| {
            self.choose_orbit(now, &t, &parker, &parker, &parked_uri, "")
                .map(|o| (t, o))
        });
        let (target, orbit) = match chosen {
            Ok(x) => x,
            Err((status, why)) => return self.respond(now, tx, &request, status, Some(&why)),
        };
        let Some(peer_out) = self.route(&refer_to.uri) else {
            return self.respond(
                now,
                tx,
                &request,
                403,
                Some("the Refer-To host needs an outbound proxy"),
            );
        };
        let tag = self.tx.token()[..10].to_string();
        let mut accepted = request.dialog_response(202, &tag);
        accepted
            .headers
            .push("Contact", self.contact(peer, &request.uri));
        self.tx.send_response(now, tx, accepted);
        let mut dialog = Dialog::from_invite(&request, tag, peer, self.tx.token());
        self.refer_notify(now, &mut dialog, "SIP/2.0 100 Trying", false);

        let mut invite = self.new_invite(&orbit, None, &refer_to.uri);
        if let Some(replaces) = refer_to.uri.header("Replaces") {
            invite.headers.push("Replaces", replaces);
        }
        invite.headers.push("Referred-By", format!("<{parker}>"));
        let invite_tx = self.tx.send_request(now, invite, peer_out);
        self.refer_parks.insert(
            invite_tx,
            ReferPark {
                dialog,
                target,
                orbit,
                parker,
                parked_uri,
                peer: peer_out,
            },
        );
    }

    /// The party being parked answered our INVITE (or refused it).
    fn refer_answered(
        &mut self,
        now: Duration,
        tx: TxId,
        mut pending: ReferPark,
        response: Response,
    ) {
        if response.status >= 300 {
            let frag = format!("SIP/2.0 {} {}", response.status, response.reason);
            self.refer_notify(now, &mut pending.dialog, &frag, true);
            return;
        }
        let Some(invite) = self.tx.client_request(tx).cloned() else {
            return;
        };
        let dialog = Dialog::from_uac(&invite, &response, pending.peer);
        self.tx.send_ack(
            dialog.ack(invite.cseq().map(|c| c.0).unwrap_or(1)),
            pending.peer,
        );
        let media = sdp::parse(&String::from_utf8_lossy(&response.body))
            .ok()
            .and_then(|sd| sdp::negotiate(&sd).ok());
        let call = CallId(self.id());
        let parked = Parked {
            call,
            orbit: pending.orbit.clone(),
            parked_at_ms: self.now_ms(now),
            parker: pending.parker.clone(),
            parked_uri: pending.parked_uri.clone(),
            parked_display: response
                .to()
                .ok()
                .and_then(|t| t.display)
                .unwrap_or_default(),
        };
        let leg = self.uac_leg(now, call, dialog, media);
        if let Err(e) = self.lot.park(&pending.target, parked) {
            // The orbit filled up meanwhile: hang up rather than strand it.
            self.bye(now, leg);
            self.drop_leg(leg);
            let frag = format!("SIP/2.0 486 {e}");
            self.refer_notify(now, &mut pending.dialog, &frag, true);
            return;
        }
        let frag = format!("SIP/2.0 200 Parked on {}", pending.orbit);
        self.refer_notify(now, &mut pending.dialog, &frag, true);
        self.settle_parked(now, call, leg, &pending.orbit);
    }

    /// A NOTIFY of a REFER's implicit subscription (RFC 3515), carrying a
    /// `message/sipfrag` status line.
    fn refer_notify(&mut self, now: Duration, dialog: &mut Dialog, sipfrag: &str, last: bool) {
        let mut request = dialog.request(Method::Notify);
        request.headers.push("Event", "refer");
        request.headers.push(
            "Subscription-State",
            if last {
                "terminated;reason=noresource"
            } else {
                "active;expires=60"
            },
        );
        request
            .headers
            .push("Content-Type", "message/sipfrag;version=2.0");
        request.body = format!("{sipfrag}\r\n").into_bytes();
        let peer = dialog.peer;
        self.tx.send_request(now, request, peer);
    }

    fn on_subscribe(&mut self, now: Duration, tx: TxId, request: Request, peer: Peer, who: Who) {
        if self.draining {
            return self.respond(now, tx, &request, 503, Some("shutting down"));
        }
        let event = request
            .header("Event")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if event != "dialog" {
            let mut r = request.response(489, None);
            r.headers.push("Allow-Events", "dialog");
            self.tx.send_response(now, tx, r);
            return;
        }
        let user = request.uri.user_decoded().unwrap_or_default();
        let watched = if let Some(o) = self.lot.resolve(&user) {
            blf::Watched::Orbit(o.number.clone())
        } else if let Some(g) = self.lot.group(&user) {
            blf::Watched::Group(g.name.clone())
        } else {
            return self.respond(
                now,
                tx,
                &request,
                404,
                Some(&format!("{user} is neither an orbit nor a group")),
            );
        };
        let group = match &watched {
            blf::Watched::Orbit(o) => self.group_of_orbit(o).map(str::to_string),
            blf::Watched::Group(g) => Some(g.clone()),
        };
        let acting = self.acting(&request, &who);
        if !self.allowed(Action::Subscribe, &acting, group.as_deref()) {
            let why = format!("{acting} may not watch {user}");
            return self.respond(now, tx, &request, 403, Some(&why));
        }
        let expires = match request.expires() {
            Ok(e) => e.unwrap_or(3600).min(3600),
            Err(e) => return self.respond(now, tx, &request, 400, Some(&e.to_string())),
        };
        if expires != 0 && expires < 60 {
            let mut r = request.response(423, None);
            r.reason = "Interval Too Brief".into();
            r.headers.push("Min-Expires", "60");
            self.tx.send_response(now, tx, r);
            return;
        }
        let tag = self.tx.token()[..10].to_string();
        let dialog = Dialog::from_invite(&request, tag.clone(), peer, self.tx.token());
        let mut ok = request.dialog_response(200, &tag);
        ok.headers.push("Contact", self.contact(peer, &request.uri));
        ok.headers.push("Expires", expires.to_string());
        self.tx.send_response(now, tx, ok);
        let id = self.id();
        let entity = format!("sip:{user}@{}", Host::Ip(self.cfg.sip_addr.ip()));
        self.sub_dialogs.insert((dialog.call_id.clone(), tag), id);
        self.subscriptions.insert(
            id,
            Subscription {
                dialog,
                watched,
                entity,
                expires_at: now + Duration::from_secs(u64::from(expires)),
                version: 0,
            },
        );
        tracing::info!(watcher = %request.from().map(|f| f.uri.to_string()).unwrap_or_default(), %user, expires, "busy lamp subscribed");
        if expires == 0 {
            // A fetch: one NOTIFY with the state, and done.
            self.notify(now, id, Some("timeout"));
            self.drop_subscription(id);
        } else {
            self.notify(now, id, None);
            self.arm(
                now + Duration::from_secs(u64::from(expires)),
                CallId(0),
                EngineTimer::SubscriptionExpiry(id),
            );
        }
    }

    fn on_resubscribe(&mut self, now: Duration, tx: TxId, request: Request, tag: String) {
        let Some(call_id) = request.call_id().ok().map(str::to_string) else {
            return;
        };
        let Some(&id) = self.sub_dialogs.get(&(call_id, tag.clone())) else {
            return self.respond(now, tx, &request, 481, Some("no such subscription"));
        };
        let expires = request.expires().ok().flatten().unwrap_or(3600).min(3600);
        let mut ok = request.response(200, Some(&tag));
        ok.headers.push("Expires", expires.to_string());
        self.tx.send_response(now, tx, ok);
        if expires == 0 {
            self.notify(now, id, Some("timeout"));
            self.drop_subscription(id);
            return;
        }
        if let Some(sub) = self.subscriptions.get_mut(&id) {
            sub.expires_at = now + Duration::from_secs(u64::from(expires.max(60)));
            let at = sub.expires_at;
            self.arm(at, CallId(0), EngineTimer::SubscriptionExpiry(id));
        }
        self.notify(now, id, None);
    }

    fn drop_subscription(&mut self, id: u64) {
        if let Some(sub) = self.subscriptions.remove(&id) {
            self.sub_dialogs
                .remove(&(sub.dialog.call_id.clone(), sub.dialog.local_tag.clone()));
        }
    }

    /// Notes a parked call leaving its orbit, for the lamps' next NOTIFY.
    /// Call while the call is still in the lot and its caller leg exists.
    fn lamp_gone(&mut self, call: CallId) {
        if self.subscriptions.is_empty() {
            return;
        }
        let Some(p) = self.lot.get(call) else { return };
        let Some(CallState::Parked { caller, .. }) = self.calls.get(&call) else {
            return;
        };
        if !self.legs.contains_key(caller) {
            return;
        }
        let lamp = GoneLamp {
            call,
            caller_uri: p.parked_uri.clone(),
            caller_display: p.parked_display.clone(),
        };
        self.gone.entry(p.orbit.clone()).or_default().push(lamp);
    }

    /// NOTIFYs every watcher of `orbit` (or of its group) with the full state.
    fn notify_watchers(&mut self, now: Duration, orbit: &str) {
        self.notify_watchers_of(now, orbit);
        self.gone.remove(orbit);
    }

    fn notify_watchers_of(&mut self, now: Duration, orbit: &str) {
        let group = self.lot.orbit(orbit).and_then(|o| o.group.clone());
        let ids: Vec<u64> = self
            .subscriptions
            .iter()
            .filter(|(_, s)| match &s.watched {
                blf::Watched::Orbit(o) => o == orbit,
                blf::Watched::Group(g) => {
                    group.as_deref() == Some(g.as_str())
                        || self
                            .lot
                            .group(g)
                            .is_some_and(|g| g.destinations.iter().any(|d| d == orbit))
                }
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.notify(now, id, None);
        }
    }

    /// One NOTIFY: `terminated` with a reason ends the subscription.
    fn notify(&mut self, now: Duration, id: u64, terminated: Option<&str>) {
        let orbits: Vec<String> = match self.subscriptions.get(&id).map(|s| &s.watched) {
            Some(blf::Watched::Orbit(o)) => vec![o.clone()],
            Some(blf::Watched::Group(g)) => self
                .lot
                .group(g)
                .map(|g| g.destinations.clone())
                .unwrap_or_default(),
            None => return,
        };
        let mut lamps = Vec::new();
        for orbit in &orbits {
            for g in self.gone.get(orbit).into_iter().flatten() {
                let ids = self.guard.lamp_ids(g.call.0);
                let (caller_uri, caller_display) =
                    self.lamp_caller(&g.caller_uri, &g.caller_display);
                lamps.push(blf::LampDialog {
                    id: format!("park-{}", g.call.0),
                    orbit,
                    call_id: ids.call_id,
                    local_tag: ids.local_tag,
                    remote_tag: ids.remote_tag,
                    caller_uri,
                    caller_display,
                    state: blf::LampState::Terminated,
                });
            }
            let confirmed = self.lot.orbit(orbit).is_some_and(|o| o.blf_confirmed);
            for p in self.lot.parked_on(orbit) {
                let Some(CallState::Parked { caller, .. }) = self.calls.get(&p.call) else {
                    continue;
                };
                if !self.legs.contains_key(caller) {
                    continue;
                }
                let ids = self.guard.lamp_ids(p.call.0);
                let (caller_uri, caller_display) =
                    self.lamp_caller(&p.parked_uri, &p.parked_display);
                lamps.push(blf::LampDialog {
                    id: format!("park-{}", p.call.0),
                    orbit,
                    call_id: ids.call_id,
                    local_tag: ids.local_tag,
                    remote_tag: ids.remote_tag,
                    caller_uri,
                    caller_display,
                    state: if confirmed {
                        blf::LampState::Confirmed
                    } else {
                        blf::LampState::Early
                    },
                });
            }
        }
        let host = Host::Ip(self.cfg.sip_addr.ip()).to_string();
        let Some(sub) = self.subscriptions.get_mut(&id) else {
            return;
        };
        let body = blf::document(&sub.entity, sub.version, &lamps, &host);
        sub.version += 1;
        let mut request = sub.dialog.request(Method::Notify);
        request.headers.push("Event", "dialog");
        let state = match terminated {
            Some(reason) => format!("terminated;reason={reason}"),
            None => format!(
                "active;expires={}",
                sub.expires_at.saturating_sub(now).as_secs().max(1)
            ),
        };
        request.headers.push("Subscription-State", state);
        request.headers.push(
            "Contact",
            format!("<sip:callpark@{host}:{}>", self.cfg.sip_addr.port()),
        );
        request
            .headers
            .push("Content-Type", "application/dialog-info+xml");
        request.body = body.into_bytes();
        let peer = sub.dialog.peer;
        self.tx.send_request(now, request, peer);
    }

    /// What a lamp shows of a parked caller (`[security] lamp_identity`).
    fn lamp_caller(&self, uri: &str, display: &str) -> (String, String) {
        match self.guard.cfg.lamp_identity {
            LampIdentity::Full => (uri.to_string(), display.to_string()),
            LampIdentity::Number => {
                let user = Uri::parse(uri)
                    .ok()
                    .and_then(|u| u.user_decoded())
                    .unwrap_or_default();
                let host = Host::Ip(self.cfg.sip_addr.ip());
                (format!("sip:{user}@{host}"), String::new())
            }
            LampIdentity::None => ("sip:anonymous@anonymous.invalid".into(), String::new()),
        }
    }

    fn bye(&mut self, now: Duration, id: LegId) -> Option<TxId> {
        let leg = self.legs.get_mut(&id)?;
        let request = leg.dialog.request(Method::Bye);
        let peer = leg.dialog.peer;
        Some(self.tx.send_request(now, request, peer))
    }
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
/// Who takes part in a park: the parker (recalled and told), the party
/// access rules judge, and the caller being parked.
struct Parties {
    parker: String,
    acting: String,
    caller: String,
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

pub fn host_of(ip: IpAddr) -> Host {
    Host::Ip(ip)
}
