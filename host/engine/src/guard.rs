//! Who may use the park server, and where it may send (DESIGN §7).
//!
//! A request that opens something (INVITE, SUBSCRIBE, REFER, MESSAGE,
//! INFO outside a dialog) comes from a *trusted source* (the PBX, the
//! proxy, the phones' networks), whose identity headers are believed, or
//! it must authenticate with digest before anything about orbits is
//! revealed. Untrusted sources are also rate-limited and capped in the
//! calls they may park. What the server sends on its own (server-driven
//! parks, recalls, MESSAGEs, lamp NOTIFYs) goes only to allowed targets.
//! Sans-IO like the rest of the engine: time is an argument.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use callpark_sip::digest::{Algorithm, Authorization, Credential, Nonces, Verdict};
use callpark_sip::message::{HeaderView, Method, Replaces, Request};
use callpark_sip::uri::{Host, Scheme, Uri};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub use ipnet::IpNet;

use crate::Access;

/// What a lamp NOTIFY tells about the parked caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LampIdentity {
    /// Display name and URI.
    #[default]
    Full,
    /// The number (user part) only.
    Number,
    /// Nothing: the lamp shows that an orbit is busy, not who is on it.
    None,
}

/// A place the server may send requests and media to on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// IP hosts in this network.
    Net(IpNet),
    /// This domain and (written `.example.com` or `*.example.com`) its
    /// subdomains.
    Domain(String),
    /// A URI scheme besides sip and sips, e.g. `tel` (a trunk's numbers).
    Scheme(String),
}

impl Target {
    /// `10.0.0.0/8`, `192.0.2.7`, `example.com`, `*.example.com`, `tel:`.
    pub fn parse(text: &str) -> Result<Target, String> {
        let t = text.trim();
        if let Some(scheme) = t.strip_suffix(':') {
            return if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
                Ok(Target::Scheme(scheme.to_ascii_lowercase()))
            } else {
                Err(format!("`{text}` is not a scheme like \"tel:\""))
            };
        }
        if let Some(net) = parse_net(t) {
            return Ok(Target::Net(net));
        }
        let domain = t.trim_start_matches("*.").trim_start_matches('.');
        let ok = !domain.is_empty()
            && domain
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if ok {
            Ok(Target::Domain(
                t.trim_start_matches('*').to_ascii_lowercase(),
            ))
        } else {
            Err(format!(
                "`{text}` is not a CIDR, an IP address, a domain or a scheme"
            ))
        }
    }
}

/// `10.0.0.0/8` or a bare address (a /32 or /128).
pub fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The networks trusted when the configuration names none: loopback and
/// the private ranges, so that a LAN of phones works out of the box.
pub fn default_trusted() -> Vec<IpNet> {
    [
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
    ]
    .iter()
    .map(|n| n.parse().expect("valid"))
    .collect()
}

/// A user who may authenticate: its stored credential and the identity
/// it acts as (`sip:name@realm` unless configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub credential: Credential,
    pub identity: String,
}

/// Who may do what, for one group's orbits (unset: the global rule).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupAccess {
    pub park: Option<Access>,
    pub retrieve: Option<Access>,
    pub subscribe: Option<Access>,
}

/// The `[security]` settings, with `[access] retrieve` and `subscribe`.
#[derive(Debug, Clone)]
pub struct Security {
    pub trusted: Vec<IpNet>,
    /// Besides the trusted networks and our own domain.
    pub allowed_targets: Vec<Target>,
    /// Our domain (`[server] domain`): targets in it are allowed.
    pub domain: Option<String>,
    pub realm: String,
    pub users: Vec<User>,
    pub nonce_lifetime: Duration,
    /// Digest algorithms challenged, preferred first.
    pub algorithms: Vec<Algorithm>,
    pub lamp_identity: LampIdentity,
    /// Out-of-dialog requests a second from one untrusted address, and
    /// the burst allowed above that rate.
    pub rate_per_source: u32,
    pub burst_per_source: u32,
    /// Calls one untrusted address may keep parked.
    pub max_parked_per_source: usize,
    pub retrieve: Access,
    pub subscribe: Access,
    pub groups: HashMap<String, GroupAccess>,
    /// Keys the nonces and the lamps' dialog ids; the host makes it
    /// random at start.
    pub secret: [u8; 32],
}

impl Default for Security {
    fn default() -> Self {
        Security {
            trusted: default_trusted(),
            allowed_targets: Vec::new(),
            domain: None,
            realm: "callpark".into(),
            users: Vec::new(),
            nonce_lifetime: Duration::from_secs(300),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            lamp_identity: LampIdentity::Full,
            rate_per_source: 20,
            burst_per_source: 40,
            max_parked_per_source: 10,
            retrieve: Access::All,
            subscribe: Access::All,
            groups: HashMap::new(),
            secret: [0; 32],
        }
    }
}

/// Who a request is from, as far as the server believes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// A trusted source: its identity headers stand. Also what a request
    /// that needs no identity is admitted as (an OPTIONS, a request in a
    /// dialog): no handler of those reads it.
    Trusted,
    /// An authenticated user, acting as this identity URI.
    User(String),
}

/// What to do with a request before the engine looks at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Admit(Who),
    /// 401 with these `WWW-Authenticate` values.
    Challenge(Vec<String>),
    /// Too many requests from this source: 503 with Retry-After.
    Slow,
}

/// How a request is checked: requests outside a dialog (but ACK and
/// CANCEL, which belong to a transaction) count against an untrusted
/// source's rate; those that open something must also authenticate. An
/// OPTIONS is a keep-alive that reveals nothing: rate-limited, not
/// challenged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    None,
    Rate,
    RateAndAuth,
}

pub fn check_for(request: &Request) -> Check {
    let in_dialog = request.to().ok().is_some_and(|t| t.tag().is_some());
    match request.method {
        _ if in_dialog => Check::None,
        Method::Ack | Method::Cancel => Check::None,
        Method::Options => Check::Rate,
        _ => Check::RateAndAuth,
    }
}

/// A token bucket per untrusted address.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Duration,
}

/// Addresses whose buckets are kept at most; past it the fullest (idle)
/// ones are forgotten, which only ever forgives.
const MAX_BUCKETS: usize = 65_536;

/// The engine's security sub-state.
pub(crate) struct Guard {
    pub cfg: Security,
    nonces: Nonces,
    buckets: HashMap<IpAddr, Bucket>,
    /// Parked calls per untrusted address.
    parked: HashMap<IpAddr, usize>,
    /// The untrusted address each call was parked from, until the call
    /// ends.
    call_sources: HashMap<callpark_core::lot::CallId, IpAddr>,
    /// Requests answered 503 for their source's rate, and when that was
    /// last logged (one line a second at most).
    slowed: u64,
    slowed_logged_at: Option<Duration>,
    /// After a shutdown began, nobody parks or watches a lamp; the BYEs of
    /// the drain are counted here until they are answered.
    pub(crate) drain: crate::Drain,
}

impl Guard {
    pub fn new(cfg: Security) -> Guard {
        let mut nonces = Nonces::new(cfg.secret, cfg.realm.clone(), cfg.nonce_lifetime);
        nonces.set_offered(cfg.algorithms.clone());
        Guard {
            cfg,
            nonces,
            buckets: HashMap::new(),
            parked: HashMap::new(),
            call_sources: HashMap::new(),
            slowed: 0,
            slowed_logged_at: None,
            drain: crate::Drain::default(),
        }
    }

    /// New settings; the nonces stay valid unless the realm changed.
    pub fn reconfigure(&mut self, mut cfg: Security) {
        cfg.secret = self.cfg.secret;
        if cfg.realm != self.cfg.realm || cfg.nonce_lifetime != self.cfg.nonce_lifetime {
            self.nonces = Nonces::new(cfg.secret, cfg.realm.clone(), cfg.nonce_lifetime);
        }
        self.nonces.set_offered(cfg.algorithms.clone());
        self.cfg = cfg;
    }

    pub fn trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.cfg.trusted.iter().any(|n| n.contains(&ip))
    }

    /// Decides on a request from `source` that `check` says to check.
    pub fn admit(
        &mut self,
        now: Duration,
        request: &Request,
        source: IpAddr,
        check: Check,
    ) -> Admission {
        if check == Check::None || self.trusted(source) {
            return Admission::Admit(Who::Trusted);
        }
        if !self.take_token(now, source) {
            return Admission::Slow;
        }
        if check == Check::Rate {
            return Admission::Admit(Who::Trusted);
        }
        let Some(value) = request.header("Authorization") else {
            return Admission::Challenge(self.nonces.challenges(now, false));
        };
        let auth = match Authorization::parse(value) {
            Ok(a) => a,
            Err(e) => {
                tracing::info!(%source, reason = %e, "authorization refused");
                return Admission::Challenge(self.nonces.challenges(now, false));
            }
        };
        let users = &self.cfg.users;
        let lookup = |name: &str| {
            users
                .iter()
                .find(|u| u.credential.username == name)
                .map(|u| &u.credential)
        };
        match self.nonces.verify(
            now,
            request.method.as_str(),
            &request.uri.to_string(),
            &auth,
            lookup,
        ) {
            Verdict::Authenticated(name) => {
                let identity = users
                    .iter()
                    .find(|u| u.credential.username == name)
                    .map(|u| u.identity.clone())
                    .unwrap_or_default();
                Admission::Admit(Who::User(identity))
            }
            Verdict::Stale => Admission::Challenge(self.nonces.challenges(now, true)),
            Verdict::Refused(why) => {
                tracing::info!(%source, user = %auth.username, reason = why, "authorization refused");
                Admission::Challenge(self.nonces.challenges(now, false))
            }
        }
    }

    fn take_token(&mut self, now: Duration, source: IpAddr) -> bool {
        let rate = f64::from(self.cfg.rate_per_source.max(1));
        let burst = f64::from(self.cfg.burst_per_source.max(1));
        if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(&source) {
            // Forget the addresses whose buckets have refilled: they owe
            // nothing.
            self.buckets
                .retain(|_, b| b.tokens + (now.saturating_sub(b.at)).as_secs_f64() * rate < burst);
            if self.buckets.len() >= MAX_BUCKETS {
                return false;
            }
        }
        let b = self.buckets.entry(source).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.saturating_sub(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Counts a request refused for its rate; the total when it is time
    /// to log it again.
    pub fn slowed(&mut self, now: Duration) -> Option<u64> {
        self.slowed += 1;
        if self
            .slowed_logged_at
            .is_some_and(|at| now < at + Duration::from_secs(1))
        {
            return None;
        }
        self.slowed_logged_at = Some(now);
        Some(self.slowed)
    }

    /// Whether an untrusted `source` may park one more call.
    pub fn may_park_more(&self, source: IpAddr) -> bool {
        self.trusted(source)
            || self.parked.get(&source).copied().unwrap_or(0) < self.cfg.max_parked_per_source
    }

    /// A call parked from `source`: counted against it when untrusted.
    pub fn call_parked(&mut self, call: callpark_core::lot::CallId, source: IpAddr) {
        if !self.trusted(source) {
            *self.parked.entry(source).or_default() += 1;
            self.call_sources.insert(call, source);
        }
    }

    /// Whether `call` was parked from an untrusted source.
    pub fn untrusted_call(&self, call: callpark_core::lot::CallId) -> bool {
        self.call_sources.contains_key(&call)
    }

    /// A call ended: its source may park one more.
    pub fn call_ended(&mut self, call: callpark_core::lot::CallId) {
        if let Some(source) = self.call_sources.remove(&call) {
            self.unparked_from(source);
        }
    }

    fn unparked_from(&mut self, source: IpAddr) {
        if let Some(n) = self.parked.get_mut(&source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.parked.remove(&source);
            }
        }
    }

    /// Whether the server may send a request (or media) to `uri` on its
    /// own: sip/sips to a trusted network, an allowed network or domain,
    /// or our own domain; other schemes only when listed.
    pub fn may_call(&self, uri: &Uri) -> bool {
        match uri.scheme {
            Scheme::Sip | Scheme::Sips => {}
            Scheme::Tel => {
                return self
                    .cfg
                    .allowed_targets
                    .iter()
                    .any(|t| matches!(t, Target::Scheme(s) if s == "tel"));
            }
        }
        match &uri.host {
            Some(Host::Ip(ip)) => self.may_reach(*ip),
            Some(Host::Name(name)) => {
                let name = name.to_ascii_lowercase();
                let name = name.trim_end_matches('.');
                self.cfg
                    .domain
                    .as_deref()
                    .is_some_and(|d| d.eq_ignore_ascii_case(name))
                    || self.cfg.allowed_targets.iter().any(|t| match t {
                        Target::Domain(d) if d.starts_with('.') => {
                            name.ends_with(d.as_str()) || name == &d[1..]
                        }
                        Target::Domain(d) => d == name,
                        _ => false,
                    })
            }
            None => false,
        }
    }

    /// Whether an IP address may be sent to (signalling or media).
    pub fn may_reach(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted(ip)
            || self
                .cfg
                .allowed_targets
                .iter()
                .any(|t| matches!(t, Target::Net(n) if n.contains(&ip)))
    }

    /// The access rule for `action` on the orbits of `group` (or none).
    pub fn rule<'a>(&'a self, park: &'a Access, action: Action, group: Option<&str>) -> &'a Access {
        let own = group
            .and_then(|g| self.cfg.groups.get(g))
            .and_then(|g| match action {
                Action::Park => g.park.as_ref(),
                Action::Retrieve => g.retrieve.as_ref(),
                Action::Subscribe => g.subscribe.as_ref(),
            });
        own.unwrap_or(match action {
            Action::Park => park,
            Action::Retrieve => &self.cfg.retrieve,
            Action::Subscribe => &self.cfg.subscribe,
        })
    }
}

/// A lamp's dialog as its NOTIFYs show it.
pub(crate) struct LampIds {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl Guard {
    fn keyed(&self, what: &[u8], call: u64) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.cfg.secret).expect("any key length");
        mac.update(what);
        mac.update(&call.to_be_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The lamp dialog of parked call `call`: `<call>-<128-bit MAC>` as
    /// Call-ID and two 128-bit tags, all keyed by the secret, so that
    /// nothing is stored and nothing can be guessed.
    pub fn lamp_ids(&self, call: u64) -> LampIds {
        let a = self.keyed(b"lamp-call-id", call);
        let b = self.keyed(b"lamp-tags", call);
        LampIds {
            call_id: format!("{call:x}-{}", hex(&a[..16])),
            local_tag: hex(&b[..16]),
            remote_tag: hex(&b[16..]),
        }
    }

    /// The parked call a pickup's Replaces names, when its Call-ID and
    /// both tags are those of that call's lamp (compared in constant
    /// time). The pickup's to-tag is our (local) tag, its from-tag the
    /// lamp's remote one (RFC 3891 §3, from the picking phone's view).
    pub fn lamp_pickup(&self, replaces: &Replaces) -> Option<u64> {
        let (number, _) = replaces.call_id.split_once('-')?;
        let call = u64::from_str_radix(number, 16).ok()?;
        let ids = self.lamp_ids(call);
        let same = |a: &str, b: &str| -> bool { a.as_bytes().ct_eq(b.as_bytes()).into() };
        let ok = same(&ids.call_id, &replaces.call_id)
            & same(&ids.local_tag, &replaces.to_tag)
            & same(&ids.remote_tag, &replaces.from_tag);
        ok.then_some(call)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What an access rule is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Park,
    Retrieve,
    Subscribe,
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allowed: &[&str]) -> Guard {
        Guard::new(Security {
            trusted: vec!["127.0.0.1/32".parse().unwrap()],
            allowed_targets: allowed.iter().map(|t| Target::parse(t).unwrap()).collect(),
            domain: Some("park.example.com".into()),
            ..Security::default()
        })
    }

    fn uri(text: &str) -> Uri {
        Uri::parse(text).unwrap()
    }

    #[test]
    fn targets_are_trusted_nets_allowed_nets_domains_and_listed_schemes() {
        let g = guard(&["10.1.0.0/16", ".example.org", "voip.example.net"]);
        assert!(g.may_call(&uri("sip:alice@127.0.0.1:5070")));
        assert!(g.may_call(&uri("sip:alice@10.1.2.3")));
        assert!(g.may_call(&uri("sip:alice@park.example.com")));
        assert!(g.may_call(&uri("sip:bob@pbx.example.org")));
        assert!(g.may_call(&uri("sip:bob@example.org")));
        assert!(g.may_call(&uri("sips:bob@voip.example.net")));
        assert!(!g.may_call(&uri("sip:+19005551234@anywhere.example")));
        assert!(!g.may_call(&uri("sip:x@127.0.0.77")));
        assert!(!g.may_call(&uri("sip:x@notexample.org")));
        assert!(!g.may_call(&uri("tel:+19005551234")));
        assert!(guard(&["tel:"]).may_call(&uri("tel:+19005551234")));
    }

    #[test]
    fn an_untrusted_source_is_limited_to_its_rate_and_burst() {
        let mut g = guard(&[]);
        g.cfg.rate_per_source = 10;
        g.cfg.burst_per_source = 5;
        let ip: IpAddr = "127.0.0.77".parse().unwrap();
        let t0 = Duration::from_secs(1);
        let taken = (0..20).filter(|_| g.take_token(t0, ip)).count();
        assert_eq!(taken, 5, "the burst");
        // A second later ten more have come, capped at the burst.
        let taken = (0..20)
            .filter(|_| g.take_token(t0 + Duration::from_secs(1), ip))
            .count();
        assert_eq!(taken, 5);
        assert!(g.trusted("127.0.0.1".parse().unwrap()));
        assert!(g.trusted("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn targets_parse_or_say_what_is_wrong() {
        assert_eq!(Target::parse("tel:"), Ok(Target::Scheme("tel".into())));
        assert!(matches!(Target::parse("192.0.2.7"), Ok(Target::Net(_))));
        assert_eq!(
            Target::parse("*.example.org"),
            Ok(Target::Domain(".example.org".into()))
        );
        assert!(Target::parse("exa mple").is_err());
        assert!(Target::parse("10.0.0.0/33").is_err());
    }
}
