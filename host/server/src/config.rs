//! The TOML configuration: schema, the embedded default, and validation
//! whose every error names the file, the line and the field.
//!
//! Keys left out of a file take the embedded default's values
//! (`src/default.toml`, which a test keeps equal to `Config::default()`);
//! a file without `[[range]]` gets the default range 701-750.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use callpark_builtin::recall::{RecallOption, RingPattern};
use callpark_core::{Params, is_routable_uri, parse_duration};
use callpark_engine::{Access, EngineConfig, LampIdentity, Security};
use serde::{Deserialize, Serialize};

/// The embedded default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// A configuration error, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the error is about the file as a whole.
    pub line: usize,
    /// Dotted path of the field, e.g. `range[2].start`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `file:line: field: message`; the line and the field are left out
    /// when there is none (a file that cannot be read is about no line).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.field.is_empty() && self.field != "-" {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub media: MediaConfig,
    pub defaults: OrbitDefaults,
    pub recall: RecallConfig,
    #[serde(default = "default_ranges")]
    pub range: Vec<RangeConfig>,
    pub orbit: Vec<OrbitConfig>,
    pub group: Vec<GroupConfig>,
    pub features: FeaturesConfig,
    pub access: AccessConfig,
    pub security: SecurityConfig,
    pub plugins: PluginsConfig,
    pub admin: AdminConfig,
    pub store: StoreConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            media: MediaConfig::default(),
            defaults: OrbitDefaults::default(),
            recall: RecallConfig::default(),
            range: default_ranges(),
            orbit: Vec::new(),
            group: Vec::new(),
            features: FeaturesConfig::default(),
            access: AccessConfig::default(),
            security: SecurityConfig::default(),
            plugins: PluginsConfig::default(),
            admin: AdminConfig::default(),
            store: StoreConfig::default(),
        }
    }
}

fn default_ranges() -> Vec<RangeConfig> {
    vec![RangeConfig {
        name: "main".into(),
        start: "701".into(),
        end: "750".into(),
    }]
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: Vec<String>,
    pub domain: String,
    pub outbound_proxy: String,
    pub max_parked_calls: u32,
    /// SIGTERM: how long the BYEs of every call are retransmitted while
    /// phones answer them.
    pub drain_time: String,
    /// `[[server.tls]]`: SIP over TLS listeners.
    pub tls: Vec<TlsConfig>,
    /// CA certificates (PEM) that servers we open TLS connections to
    /// (`sips:` recall and MESSAGE targets) must chain to; empty: the
    /// system's bundle.
    pub tls_ca: String,
}

/// A SIP-over-TLS listener: address, certificate chain and key (PEM files,
/// relative to the configuration file's folder).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub listen: String,
    pub certificate: String,
    pub key: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec!["0.0.0.0:5060".into()],
            domain: String::new(),
            outbound_proxy: String::new(),
            max_parked_calls: 20_000,
            drain_time: "10s".into(),
            tls: Vec::new(),
            tls_ca: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// The IP address put in SDP and where RTP is received; empty: the
    /// first listen address, or this host's address when that is 0.0.0.0.
    pub address: String,
    pub rtp_ports: String,
    pub music: String,
    pub music_on_hold: bool,
    pub rtp_timeout: String,
    /// Threads that pace hold music; 0: one per CPU core.
    pub pacer_threads: u32,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            address: String::new(),
            rtp_ports: "20000-39999".into(),
            music: String::new(),
            music_on_hold: true,
            rtp_timeout: "60s".into(),
            pacer_threads: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OrbitDefaults {
    pub recall_after: String,
    pub capacity: u32,
    pub escape_key: String,
    pub ring_pattern: String,
    pub blf_state: String,
    pub max_lifetime: String,
}

impl Default for OrbitDefaults {
    fn default() -> Self {
        OrbitDefaults {
            recall_after: "45s".into(),
            capacity: 1,
            escape_key: String::new(),
            ring_pattern: "normal".into(),
            blf_state: "early".into(),
            max_lifetime: "24h".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RecallConfig {
    pub option: String,
    pub max_attempts: u32,
    pub ring_time: String,
    pub fallback: String,
}

impl Default for RecallConfig {
    fn default() -> Self {
        RecallConfig {
            option: "parker-then-fallback".into(),
            max_attempts: 1,
            ring_time: "30s".into(),
            fallback: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeConfig {
    pub name: String,
    pub start: String,
    pub end: String,
}

impl RangeConfig {
    /// Whether `number` is one of the range's orbits (same prefix and
    /// width, within start..=end).
    pub fn contains(&self, number: &str) -> bool {
        let (Ok((prefix, lo)), Ok((_, hi))) = (split_orbit(&self.start), split_orbit(&self.end))
        else {
            return false;
        };
        number.len() == self.start.len()
            && split_orbit(number).is_ok_and(|(p, n)| p == prefix && (lo..=hi).contains(&n))
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OrbitConfig {
    pub number: String,
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub music: Option<String>,
    pub capacity: Option<u32>,
    pub recall_after: Option<String>,
    pub escape_key: Option<String>,
    pub ring_pattern: Option<String>,
    pub blf_state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
    pub members: Vec<String>,
    pub destinations: Vec<String>,
    pub use_members_as_destinations: bool,
    pub recall: Option<String>,
    pub hunt_group: String,
    pub hunt_group_wait: Option<String>,
    pub ring_pattern: Option<String>,
    pub recall_after: Option<String>,
    /// Who may park on, retrieve from and watch this group's orbits
    /// (`all`, `members`, `listed`); unset: the `[access]` rule.
    pub park: Option<String>,
    pub retrieve: Option<String>,
    pub subscribe: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FeaturesConfig {
    pub park_direct: String,
    pub park_group: String,
    pub retrieve: Vec<String>,
    /// How long an attended-park reservation (a park without Referred-By)
    /// waits to be taken over by the caller's INVITE with Replaces; "0s"
    /// keeps it (see `callpark_engine::EngineConfig::reservation_timeout`).
    pub reservation_timeout: String,
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        FeaturesConfig {
            park_direct: "*68".into(),
            park_group: "#58".into(),
            retrieve: vec!["*88".into(), "*4".into()],
            reservation_timeout: "0s".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    pub park: String,
    pub parkers: Vec<String>,
    pub retrieve: String,
    pub retrievers: Vec<String>,
    pub subscribe: String,
    pub watchers: Vec<String>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            park: "all".into(),
            parkers: Vec::new(),
            retrieve: "all".into(),
            retrievers: Vec::new(),
            subscribe: "all".into(),
            watchers: Vec::new(),
        }
    }
}

/// `[security]` (DESIGN §7, docs/security.md).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// CIDRs, addresses and host names whose requests are taken as the
    /// identity they carry; the rest must authenticate.
    pub trusted: Vec<String>,
    /// Where the server may send on its own besides the trusted sources
    /// and `[server] domain`: CIDRs, addresses, domains (`.example.com`
    /// for subdomains too), schemes (`tel:`).
    pub allowed_targets: Vec<String>,
    /// The digest realm; empty: `[server] domain`, else "callpark".
    pub realm: String,
    pub nonce_lifetime: String,
    /// Digest algorithms challenged, preferred first: "SHA-256", "MD5".
    pub algorithms: Vec<String>,
    /// full | number | none
    pub lamp_identity: String,
    pub rate_per_source: u32,
    pub burst_per_source: u32,
    pub max_parked_per_source: u32,
    pub user: Vec<UserConfig>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            trusted: [
                "127.0.0.0/8",
                "::1",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "fc00::/7",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            allowed_targets: Vec::new(),
            realm: String::new(),
            nonce_lifetime: "5m".into(),
            algorithms: vec!["SHA-256".into(), "MD5".into()],
            lamp_identity: "full".into(),
            rate_per_source: 20,
            burst_per_source: 40,
            max_parked_per_source: 10,
            user: Vec::new(),
        }
    }
}

/// `[admin]`: the HTTP admin API (docs/api.md).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Where the API listens; empty: no admin API.
    pub listen: String,
    /// `[[admin.token]]`: the bearer tokens, as hashes. With none, the
    /// server makes an admin token at first start (`admin-token` in the
    /// data folder).
    pub token: Vec<TokenConfig>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:8080".into(),
            token: Vec::new(),
        }
    }
}

/// `[store]`: the SQLite file that keeps what the admin API made.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Relative to the configuration file's folder; empty: `callpark.db`
    /// there (the working directory with the embedded configuration).
    pub path: String,
}

/// `[[admin.token]]`: one bearer token (`callpark token new` makes one).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it, for the log.
    pub name: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// SHA-256 of the secret, hex.
    pub sha256: String,
}

/// `[[security.user]]`: a phone that authenticates with digest. Only the
/// HA1 hashes are stored (`callpark credential NAME` makes them).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub ha1_sha256: String,
    pub ha1_md5: String,
    /// The identity the user acts as; empty: `sip:<name>@<realm>`.
    pub identity: String,
}

impl SecurityConfig {
    /// The realm in use.
    pub fn realm(&self, server: &ServerConfig) -> String {
        if !self.realm.is_empty() {
            self.realm.clone()
        } else if !server.domain.is_empty() {
            server.domain.clone()
        } else {
            "callpark".into()
        }
    }
}

/// An access rule's name, checked.
fn check_rule(text: &str) -> Result<(), String> {
    match text {
        "all" | "members" | "listed" => Ok(()),
        other => Err(format!("`{other}` is not one of all, members, listed")),
    }
}

/// A trusted entry: a CIDR, an address, or a host name resolved at start.
fn check_trusted(text: &str) -> Result<(), String> {
    if callpark_engine::guard::parse_net(text).is_some() {
        return Ok(());
    }
    let ok = !text.is_empty()
        && !text.contains('/')
        && text
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{text}` is not a CIDR, an IP address or a host name"
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    pub allocator: String,
    pub recall: String,
    pub dialing: String,
    /// The events plugin (WIT 0.2.0 `events-plugin`); empty: none.
    pub events: String,
    /// The hosts (`host:port`, or a host for its scheme's default port) the
    /// events plugin may reach over HTTP; nothing else is reachable.
    pub events_http: Vec<String>,
    pub watch: bool,
    pub timeout: String,
    pub memory: String,
    pub on_failure: String,
    pub cache_dir: String,
    pub params: PluginParams,
    /// `[plugins.limits.<slot>]`: a slot's own `timeout` and `memory`.
    pub limits: PluginLimits,
}

/// Per-slot limits, e.g. `[plugins.limits.allocator]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginLimits {
    pub allocator: SlotLimitsConfig,
    pub recall: SlotLimitsConfig,
    pub dialing: SlotLimitsConfig,
    pub events: SlotLimitsConfig,
}

/// One slot's `timeout` and `memory`; a key left out takes `[plugins]`'s.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlotLimitsConfig {
    pub timeout: Option<String>,
    pub memory: Option<String>,
}

impl PluginLimits {
    /// The slots' tables, by decision.
    pub fn by_slot(&self) -> [(callpark_core::Decision, &SlotLimitsConfig); 4] {
        use callpark_core::Decision;
        [
            (Decision::Allocator, &self.allocator),
            (Decision::Recall, &self.recall),
            (Decision::Dialing, &self.dialing),
            (Decision::Events, &self.events),
        ]
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            allocator: String::new(),
            recall: String::new(),
            dialing: String::new(),
            events: String::new(),
            events_http: Vec::new(),
            watch: true,
            timeout: "10ms".into(),
            memory: "16MiB".into(),
            on_failure: "fallback".into(),
            cache_dir: String::new(),
            params: PluginParams::default(),
            limits: PluginLimits::default(),
        }
    }
}

/// Extra params per plugin slot, e.g. `[plugins.params.allocator]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginParams {
    pub allocator: BTreeMap<String, toml::Value>,
    pub recall: BTreeMap<String, toml::Value>,
    pub dialing: BTreeMap<String, toml::Value>,
    pub events: BTreeMap<String, toml::Value>,
}

impl Default for PluginParams {
    fn default() -> Self {
        PluginParams {
            allocator: BTreeMap::from([("strategy".into(), toml::Value::from("first"))]),
            recall: BTreeMap::new(),
            dialing: BTreeMap::new(),
            events: BTreeMap::new(),
        }
    }
}

/// Parses `"16MiB"`, `"512KiB"`, `"1GiB"` or a plain number of bytes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let (digits, mult) = if let Some(n) = t.strip_suffix("GiB") {
        (n, 1usize << 30)
    } else if let Some(n) = t.strip_suffix("MiB") {
        (n, 1 << 20)
    } else if let Some(n) = t.strip_suffix("KiB") {
        (n, 1 << 10)
    } else {
        (t, 1)
    };
    digits
        .trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("`{text}` is not a size like \"16MiB\""))
}

/// The failure policy of the plugin slots.
pub fn parse_on_failure(text: &str) -> Result<callpark_policy::OnFailure, String> {
    match text {
        "fallback" => Ok(callpark_policy::OnFailure::Fallback),
        "reject" => Ok(callpark_policy::OnFailure::Reject),
        other => Err(format!("`{other}` is not one of fallback, reject")),
    }
}

fn toml_param(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items.iter().map(toml_param).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

impl Config {
    /// Where out-of-dialog requests go (`server.outbound_proxy`): `None`
    /// when unset; an error unless it is a sip: URI naming an IP address.
    pub fn outbound_proxy(&self) -> Result<Option<std::net::SocketAddr>, String> {
        let text = self.server.outbound_proxy.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let uri = callpark_sip::uri::Uri::parse(text).map_err(|e| e.to_string())?;
        match (uri.scheme, uri.host) {
            (callpark_sip::uri::Scheme::Sip, Some(callpark_sip::uri::Host::Ip(ip))) => Ok(Some(
                std::net::SocketAddr::new(ip, uri.port.unwrap_or(5060)),
            )),
            _ => Err(format!("`{text}` does not name an IP address")),
        }
    }

    /// The embedded default.
    pub fn embedded() -> Config {
        Config::parse(DEFAULT_CONFIG, "<embedded default>").expect("the embedded default is valid")
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 0,
            field: String::new(),
            message: format!("cannot read the file: {e}"),
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            let message = e.message().trim().to_string();
            // The parser notices an unclosed `[` or `{` only where the next
            // key begins: name the line that opened it instead.
            if let Some(open) = unclosed_bracket(text, at) {
                return ConfigError {
                    file: file.to_string(),
                    line: line_of(text, open),
                    field: field_at(text, open),
                    message: format!(
                        "`{}` is never closed (the parser stopped at line {}: {message})",
                        &text[open..open + 1],
                        line_of(text, at)
                    ),
                };
            }
            ConfigError {
                file: file.to_string(),
                line: e.span().map_or(0, |s| line_of(text, s.start)),
                field: field_at(text, at),
                message,
            }
        })?;
        if let Err((path, message)) = config.validate() {
            return Err(ConfigError {
                file: file.to_string(),
                line: locate(text, &path),
                field: render_path(&path),
                message,
            });
        }
        Ok(config)
    }

    /// A path relative to the configuration file's folder.
    pub fn resolve(base: Option<&Path>, path: &str) -> PathBuf {
        let p = Path::new(path);
        match base {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }

    /// Whether the configuration has orbit `number` (in a range, or an
    /// `[[orbit]]` of its own), without building the lot.
    pub fn has_orbit(&self, number: &str) -> bool {
        self.orbit.iter().any(|o| o.number == number)
            || self.range.iter().any(|r| r.contains(number))
    }

    /// The `.wasm` path `[plugins]` names for a slot; empty: none.
    pub fn plugin_file(&self, decision: callpark_core::Decision) -> &str {
        use callpark_core::Decision;
        match decision {
            Decision::Allocator => &self.plugins.allocator,
            Decision::Recall => &self.plugins.recall,
            Decision::Dialing => &self.plugins.dialing,
            Decision::Events => &self.plugins.events,
        }
    }

    /// The params each plugin slot is loaded with, by decision.
    pub fn plugin_params(&self) -> Vec<(callpark_core::Decision, Params)> {
        callpark_core::Decision::SLOTS
            .iter()
            .map(|&d| (d, self.plugin_params_for(d)))
            .collect()
    }

    /// The params the plugin making `decision` is loaded with: its
    /// `[plugins.params.*]` table, laid over `[features]` for dialing and
    /// `[recall]` for recall, so that a custom plugin sees the same facts as
    /// the default one.
    pub fn plugin_params_for(&self, decision: callpark_core::Decision) -> Params {
        use callpark_core::Decision;
        let table = |t: &BTreeMap<String, toml::Value>| -> Params {
            t.iter().map(|(k, v)| (k.clone(), toml_param(v))).collect()
        };
        let overlay = |mut base: Params, extra: Params| {
            callpark_core::lay_params(&mut base, extra);
            base
        };
        let p = &self.plugins.params;
        match decision {
            Decision::Allocator => table(&p.allocator),
            Decision::Recall => {
                let r = &self.recall;
                let recall = vec![
                    ("option".to_string(), r.option.clone()),
                    ("max_attempts".to_string(), r.max_attempts.to_string()),
                    ("ring_time".to_string(), r.ring_time.clone()),
                    ("fallback".to_string(), r.fallback.clone()),
                    (
                        "ring_pattern".to_string(),
                        self.defaults.ring_pattern.clone(),
                    ),
                ];
                overlay(recall, table(&p.recall))
            }
            Decision::Dialing => {
                let f = &self.features;
                let dialing = vec![
                    ("park_direct".to_string(), f.park_direct.clone()),
                    ("park_group".to_string(), f.park_group.clone()),
                    ("retrieve".to_string(), f.retrieve.join(",")),
                ];
                overlay(dialing, table(&p.dialing))
            }
            Decision::Events => table(&p.events),
        }
    }

    /// The park lot this configuration describes: every range expanded in
    /// order, then the single orbits, with `[defaults]` and `[[orbit]]`
    /// overrides applied. Call on a validated configuration.
    pub fn lot(&self) -> callpark_core::lot::ParkLot {
        use callpark_core::lot::{GroupConfig as LotGroup, OrbitConfig as LotOrbit};
        let mut orbits: Vec<LotOrbit> = Vec::new();
        let ms = |text: &str| parse_duration(text).map_or(0, |d| d.as_millis() as u64);
        let default_recall = ms(&self.defaults.recall_after);
        let new_orbit = |number: String| LotOrbit {
            number,
            name: None,
            enabled: true,
            capacity: self.defaults.capacity,
            music: None,
            group: None,
            recall_after_ms: default_recall,
            escape_key: self.defaults.escape_key.chars().next(),
            blf_confirmed: self.defaults.blf_state == "confirmed",
            recall_params: Vec::new(),
        };
        for range in &self.range {
            let (Ok((prefix, lo)), Ok((_, hi))) =
                (split_orbit(&range.start), split_orbit(&range.end))
            else {
                continue;
            };
            let width = range.start.len() - prefix.len();
            orbits.extend((lo..=hi).map(|n| new_orbit(format!("{prefix}{n:0width$}"))));
        }
        let mut index: HashMap<String, usize> = orbits
            .iter()
            .enumerate()
            .map(|(i, o)| (o.number.clone(), i))
            .collect();
        for o in &self.orbit {
            let i = *index.entry(o.number.clone()).or_insert_with(|| {
                orbits.push(new_orbit(o.number.clone()));
                orbits.len() - 1
            });
            let orbit = &mut orbits[i];
            orbit.name = o.name.clone();
            orbit.enabled = o.enabled.unwrap_or(true);
            orbit.capacity = o.capacity.unwrap_or(orbit.capacity);
            orbit.music = o.music.clone().filter(|m| !m.is_empty());
            if let Some(k) = &o.escape_key {
                orbit.escape_key = k.chars().next();
            }
            if let Some(p) = &o.ring_pattern {
                orbit.recall_params = vec![("ring_pattern".to_string(), p.clone())];
            }
            if let Some(b) = &o.blf_state {
                orbit.blf_confirmed = b == "confirmed";
            }
        }
        // Recall timing: the orbit's own setting, else its group's, else the
        // defaults (applied above).
        let overridden: std::collections::HashSet<&str> = self
            .orbit
            .iter()
            .filter(|o| o.recall_after.is_some())
            .map(|o| o.number.as_str())
            .collect();
        for o in &self.orbit {
            if let (Some(v), Some(&i)) = (&o.recall_after, index.get(&o.number)) {
                orbits[i].recall_after_ms = ms(v);
            }
        }
        let mut groups = Vec::new();
        for g in &self.group {
            let destinations: Vec<String> = if g.use_members_as_destinations {
                g.members
                    .iter()
                    .filter_map(|m| callpark_sip_user(m))
                    .filter(|u| index.contains_key(u))
                    .collect()
            } else {
                g.destinations.clone()
            };
            for d in &destinations {
                if let Some(o) = index.get(d).map(|&i| &mut orbits[i]) {
                    o.group.get_or_insert_with(|| g.name.clone());
                    if let Some(v) = &g.recall_after
                        && !overridden.contains(&d.as_str())
                    {
                        o.recall_after_ms = ms(v);
                    }
                }
            }
            let mut recall_params = Vec::new();
            if let Some(option) = &g.recall {
                recall_params.push(("option".to_string(), option.clone()));
            }
            if !g.hunt_group.is_empty() {
                recall_params.push(("hunt_group".to_string(), g.hunt_group.clone()));
            }
            if let Some(w) = &g.hunt_group_wait {
                recall_params.push(("hunt_group_wait".to_string(), w.clone()));
            }
            if let Some(p) = &g.ring_pattern {
                recall_params.push(("ring_pattern".to_string(), p.clone()));
            }
            groups.push(LotGroup {
                name: g.name.clone(),
                members: g.members.clone(),
                destinations,
                recall_params,
            });
        }
        callpark_core::lot::ParkLot::new(orbits, groups)
    }

    pub(crate) fn validate(&self) -> Result<(), (Vec<PathPart>, String)> {
        use PathPart::{Index as I, Key as K};
        let at = |parts: &[PathPart], msg: String| Err((parts.to_vec(), msg));

        if !self.admin.listen.is_empty()
            && self.admin.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return at(
                &[K("admin"), K("listen")],
                format!(
                    "`{}` is not an address like \"127.0.0.1:8080\" (empty: no admin API)",
                    self.admin.listen
                ),
            );
        }
        for (i, t) in self.admin.token.iter().enumerate() {
            if crate::admin::Role::parse(&t.role).is_none() {
                return at(
                    &[K("admin"), K("token"), I(i), K("role")],
                    format!("`{}` is not one of admin, operator, viewer", t.role),
                );
            }
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return at(
                    &[K("admin"), K("token"), I(i), K("sha256")],
                    "must be 64 hex digits, the SHA-256 of the secret (`callpark token new` prints it)".into(),
                );
            }
        }
        if self.server.listen.is_empty() {
            return at(
                &[K("server"), K("listen")],
                "needs at least one address".into(),
            );
        }
        for (i, addr) in self.server.listen.iter().enumerate() {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return at(
                    &[K("server"), K("listen"), I(i)],
                    format!("`{addr}` is not an address like \"127.0.0.1:5060\""),
                );
            }
        }
        if !self.server.outbound_proxy.is_empty() && self.outbound_proxy().is_err() {
            return at(
                &[K("server"), K("outbound_proxy")],
                format!(
                    "`{}` is not a sip: URI with an IP address, e.g. \"sip:127.0.0.1:5070\" (the park server does no DNS)",
                    self.server.outbound_proxy
                ),
            );
        }
        if self.server.max_parked_calls == 0 {
            return at(
                &[K("server"), K("max_parked_calls")],
                "must be above 0".into(),
            );
        }
        match parse_duration(&self.server.drain_time) {
            Ok(d) if d <= Duration::from_secs(64) => {}
            Ok(_) => {
                return at(
                    &[K("server"), K("drain_time")],
                    "must be at most 64s (a BYE times out after 32 s)".into(),
                );
            }
            Err(e) => return at(&[K("server"), K("drain_time")], e.to_string()),
        }
        if !self.media.address.is_empty() && self.media.address.parse::<std::net::IpAddr>().is_err()
        {
            return at(
                &[K("media"), K("address")],
                format!("`{}` is not an IP address", self.media.address),
            );
        }
        if let Err(msg) = parse_port_range(&self.media.rtp_ports) {
            return at(&[K("media"), K("rtp_ports")], msg);
        }
        duration_in(
            &self.media.rtp_timeout,
            Duration::from_secs(5),
            Duration::from_secs(3600),
        )
        .or_else(|m| at(&[K("media"), K("rtp_timeout")], m))?;
        if self.media.pacer_threads > 64 {
            return at(
                &[K("media"), K("pacer_threads")],
                format!("{} is more than 64", self.media.pacer_threads),
            );
        }

        let d = &self.defaults;
        check_recall_after(&d.recall_after)
            .or_else(|m| at(&[K("defaults"), K("recall_after")], m))?;
        check_capacity(d.capacity).or_else(|m| at(&[K("defaults"), K("capacity")], m))?;
        check_escape_key(&d.escape_key).or_else(|m| at(&[K("defaults"), K("escape_key")], m))?;
        check_ring_pattern(&d.ring_pattern)
            .or_else(|m| at(&[K("defaults"), K("ring_pattern")], m))?;
        check_blf_state(&d.blf_state).or_else(|m| at(&[K("defaults"), K("blf_state")], m))?;
        duration_in(
            &d.max_lifetime,
            Duration::from_secs(60),
            Duration::from_secs(7 * 86_400),
        )
        .or_else(|m| at(&[K("defaults"), K("max_lifetime")], m))?;

        let r = &self.recall;
        if RecallOption::parse(&r.option).is_none() {
            return at(
                &[K("recall"), K("option")],
                format!(
                    "`{}` is not one of {}",
                    r.option,
                    RecallOption::NAMES.join(", ")
                ),
            );
        }
        if !(1..=10).contains(&r.max_attempts) {
            return at(
                &[K("recall"), K("max_attempts")],
                format!("{} is not in 1..10", r.max_attempts),
            );
        }
        duration_in(
            &r.ring_time,
            Duration::from_secs(1),
            Duration::from_secs(600),
        )
        .or_else(|m| at(&[K("recall"), K("ring_time")], m))?;
        if !r.fallback.is_empty() && !is_routable_uri(&r.fallback) {
            return at(
                &[K("recall"), K("fallback")],
                format!("`{}` is not a sip:, sips: or tel: URI", r.fallback),
            );
        }

        // Orbits: every range expanded, then single orbits, all unique.
        // Sets, not scans: a lot of 100,000 orbits with thousands of
        // single orbits is validated on every admin write.
        let mut numbers: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut configured: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut spans: Vec<(u64, u64, usize, &str)> = Vec::new();
        for (i, range) in self.range.iter().enumerate() {
            let here = |f: &'static str| vec![K("range"), I(i), K(f)];
            if range.name.trim().is_empty() {
                return at(&here("name"), "a range needs a name".into());
            }
            if self.range[..i].iter().any(|o| o.name == range.name) {
                return at(
                    &here("name"),
                    format!("range name `{}` is used twice", range.name),
                );
            }
            let (prefix, lo) = split_orbit(&range.start).map_err(|m| (here("start"), m))?;
            let (prefix_end, hi) = split_orbit(&range.end).map_err(|m| (here("end"), m))?;
            if range.start.len() != range.end.len() {
                return at(
                    &here("end"),
                    format!(
                        "`{}` and `{}` must have the same length",
                        range.start, range.end
                    ),
                );
            }
            if prefix != prefix_end {
                return at(
                    &here("end"),
                    "start and end must share their * or # prefix".into(),
                );
            }
            if lo > hi {
                return at(
                    &here("end"),
                    format!("`{}` is below start `{}`", range.end, range.start),
                );
            }
            if hi - lo >= 100_000 {
                return at(&here("end"), "a range holds at most 100000 orbits".into());
            }
            for &(olo, ohi, j, opfx) in &spans {
                if opfx == prefix && lo <= ohi && olo <= hi {
                    return at(
                        &here("start"),
                        format!("overlaps range `{}`", self.range[j].name),
                    );
                }
            }
            spans.push((lo, hi, i, prefix));
            let width = range.start.len() - prefix.len();
            for n in lo..=hi {
                numbers.insert(format!("{prefix}{n:0width$}"));
            }
        }
        for (i, orbit) in self.orbit.iter().enumerate() {
            let here = |f: &'static str| vec![K("orbit"), I(i), K(f)];
            split_orbit(&orbit.number).map_err(|m| (here("number"), m))?;
            if !configured.insert(orbit.number.as_str()) {
                return at(
                    &here("number"),
                    format!("orbit {} is configured twice", orbit.number),
                );
            }
            numbers.insert(orbit.number.clone());
            if let Some(c) = orbit.capacity {
                check_capacity(c).or_else(|m| at(&here("capacity"), m))?;
            }
            if let Some(v) = &orbit.recall_after {
                check_recall_after(v).or_else(|m| at(&here("recall_after"), m))?;
            }
            if let Some(v) = &orbit.escape_key {
                check_escape_key(v).or_else(|m| at(&here("escape_key"), m))?;
            }
            if let Some(v) = &orbit.ring_pattern {
                check_ring_pattern(v).or_else(|m| at(&here("ring_pattern"), m))?;
            }
            if let Some(v) = &orbit.blf_state {
                check_blf_state(v).or_else(|m| at(&here("blf_state"), m))?;
            }
        }
        if numbers.is_empty() {
            return at(&[K("range")], "no orbits are configured".into());
        }
        for (i, orbit) in self.orbit.iter().enumerate() {
            if let Some(name) = &orbit.name
                && *name != orbit.number
                && numbers.contains(name)
            {
                return at(
                    &[K("orbit"), I(i), K("name")],
                    format!("name `{name}` is another orbit's number"),
                );
            }
        }

        for (i, group) in self.group.iter().enumerate() {
            let here = |f: &'static str| vec![K("group"), I(i), K(f)];
            if group.name.trim().is_empty() {
                return at(&here("name"), "a group needs a name".into());
            }
            if self.group[..i].iter().any(|g| g.name == group.name) {
                return at(
                    &here("name"),
                    format!("group `{}` is configured twice", group.name),
                );
            }
            for (j, dest) in group.destinations.iter().enumerate() {
                if !numbers.contains(dest) {
                    return at(
                        &[K("group"), I(i), K("destinations"), I(j)],
                        format!("`{dest}` is not a configured orbit"),
                    );
                }
            }
            if group.use_members_as_destinations && !group.destinations.is_empty() {
                return at(
                    &here("use_members_as_destinations"),
                    "give destinations or use_members_as_destinations, not both".into(),
                );
            }
            if !group.use_members_as_destinations && group.destinations.is_empty() {
                return at(
                    &here("destinations"),
                    "a group needs destinations (or use_members_as_destinations = true)".into(),
                );
            }
            for (j, m) in group.members.iter().enumerate() {
                if !is_routable_uri(m) {
                    return at(
                        &[K("group"), I(i), K("members"), I(j)],
                        format!("`{m}` is not a sip: URI"),
                    );
                }
            }
            if let Some(option) = &group.recall
                && RecallOption::parse(option).is_none()
            {
                return at(
                    &here("recall"),
                    format!(
                        "`{option}` is not one of {}",
                        RecallOption::NAMES.join(", ")
                    ),
                );
            }
            let needs_hunt = matches!(
                group.recall.as_deref(),
                Some("parker-then-hunt-group" | "hunt-group-only")
            );
            if needs_hunt && group.hunt_group.is_empty() {
                return at(
                    &here("hunt_group"),
                    "this recall option needs a hunt_group URI".into(),
                );
            }
            if !group.hunt_group.is_empty() && !is_routable_uri(&group.hunt_group) {
                return at(
                    &here("hunt_group"),
                    format!("`{}` is not a sip:, sips: or tel: URI", group.hunt_group),
                );
            }
            if let Some(v) = &group.hunt_group_wait {
                duration_in(v, Duration::from_secs(1), Duration::from_secs(600))
                    .or_else(|m| at(&here("hunt_group_wait"), m))?;
            }
            if let Some(v) = &group.ring_pattern {
                check_ring_pattern(v).or_else(|m| at(&here("ring_pattern"), m))?;
            }
            if let Some(v) = &group.recall_after {
                check_recall_after(v).or_else(|m| at(&here("recall_after"), m))?;
            }
        }

        // "0s" (never) or 5 s..10 min.
        let reservation = parse_duration(&self.features.reservation_timeout)
            .map_err(|e| (vec![K("features"), K("reservation_timeout")], e.to_string()))?;
        if !reservation.is_zero() {
            duration_in(
                &self.features.reservation_timeout,
                Duration::from_secs(5),
                Duration::from_secs(600),
            )
            .or_else(|m| at(&[K("features"), K("reservation_timeout")], m))?;
        }
        let dialing_params = self.plugin_params_for(callpark_core::Decision::Dialing);
        if let Err(m) = callpark_builtin::dialing::check_params(&dialing_params) {
            return at(&[K("features")], m);
        }
        for (key, rule) in [
            ("park", &self.access.park),
            ("retrieve", &self.access.retrieve),
            ("subscribe", &self.access.subscribe),
        ] {
            check_rule(rule).or_else(|m| at(&[K("access"), K(key)], m))?;
        }
        for (i, g) in self.group.iter().enumerate() {
            for (key, rule) in [
                ("park", &g.park),
                ("retrieve", &g.retrieve),
                ("subscribe", &g.subscribe),
            ] {
                if let Some(rule) = rule {
                    check_rule(rule).or_else(|m| at(&[K("group"), I(i), K(key)], m))?;
                }
            }
        }
        for (key, list) in [
            ("retrievers", &self.access.retrievers),
            ("watchers", &self.access.watchers),
        ] {
            for (i, p) in list.iter().enumerate() {
                if !is_routable_uri(p) {
                    return at(
                        &[K("access"), K(key), I(i)],
                        format!("`{p}` is not a sip: URI"),
                    );
                }
            }
        }
        for (i, t) in self.server.tls.iter().enumerate() {
            let here = |k| vec![K("server"), K("tls"), I(i), K(k)];
            if t.listen.parse::<std::net::SocketAddr>().is_err() {
                return Err((
                    here("listen"),
                    format!("`{}` is not an address like \"0.0.0.0:5061\"", t.listen),
                ));
            }
            if t.certificate.is_empty() {
                return Err((
                    here("certificate"),
                    "a TLS listener needs a certificate (PEM file)".into(),
                ));
            }
            if t.key.is_empty() {
                return Err((
                    here("key"),
                    "a TLS listener needs a private key (PEM file)".into(),
                ));
            }
        }
        let sec = &self.security;
        for (i, t) in sec.trusted.iter().enumerate() {
            check_trusted(t).or_else(|m| at(&[K("security"), K("trusted"), I(i)], m))?;
        }
        for (i, t) in sec.allowed_targets.iter().enumerate() {
            callpark_engine::Target::parse(t)
                .map(|_| ())
                .or_else(|m| at(&[K("security"), K("allowed_targets"), I(i)], m))?;
        }
        duration_in(
            &sec.nonce_lifetime,
            Duration::from_secs(10),
            Duration::from_secs(3600),
        )
        .or_else(|m| at(&[K("security"), K("nonce_lifetime")], m))?;
        if sec.algorithms.is_empty() {
            return at(
                &[K("security"), K("algorithms")],
                "name at least one of SHA-256, MD5".into(),
            );
        }
        for (i, a) in sec.algorithms.iter().enumerate() {
            if !matches!(a.as_str(), "SHA-256" | "MD5") {
                return at(
                    &[K("security"), K("algorithms"), I(i)],
                    format!("`{a}` is not one of SHA-256, MD5"),
                );
            }
        }
        match sec.lamp_identity.as_str() {
            "full" | "number" | "none" => {}
            other => {
                return at(
                    &[K("security"), K("lamp_identity")],
                    format!("`{other}` is not one of full, number, none"),
                );
            }
        }
        if !(1..=10_000).contains(&sec.rate_per_source) {
            return at(
                &[K("security"), K("rate_per_source")],
                "must be 1..=10000".into(),
            );
        }
        if sec.burst_per_source < sec.rate_per_source.min(10_000) || sec.burst_per_source > 100_000
        {
            return at(
                &[K("security"), K("burst_per_source")],
                "must be at least rate_per_source and at most 100000".into(),
            );
        }
        if !(1..=100_000).contains(&sec.max_parked_per_source) {
            return at(
                &[K("security"), K("max_parked_per_source")],
                "must be 1..=100000".into(),
            );
        }
        let mut names = std::collections::HashSet::new();
        for (i, u) in sec.user.iter().enumerate() {
            let here = |k| vec![K("security"), K("user"), I(i), K(k)];
            if u.name.is_empty()
                || u.name.contains([':', '"', '\\'])
                || u.name.chars().any(char::is_control)
            {
                return Err((
                    here("name"),
                    "a user needs a name without `:`, quotes or backslashes".into(),
                ));
            }
            if !names.insert(u.name.as_str()) {
                return Err((here("name"), format!("user `{}` is listed twice", u.name)));
            }
            for (k, h, len) in [
                ("ha1_sha256", &u.ha1_sha256, 64),
                ("ha1_md5", &u.ha1_md5, 32),
            ] {
                if !h.is_empty() && (h.len() != len || !h.bytes().all(|b| b.is_ascii_hexdigit())) {
                    return Err((
                        here(k),
                        format!(
                            "must be {len} hex digits (`callpark credential {}` prints it)",
                            u.name
                        ),
                    ));
                }
            }
            if u.ha1_sha256.is_empty() && u.ha1_md5.is_empty() {
                return Err((
                    here("ha1_sha256"),
                    format!(
                        "user `{}` has no credential: set ha1_sha256 and/or ha1_md5 (`callpark credential {}`)",
                        u.name, u.name
                    ),
                ));
            }
            if !u.identity.is_empty() && !is_routable_uri(&u.identity) {
                return Err((
                    here("identity"),
                    format!("`{}` is not a sip: URI", u.identity),
                ));
            }
        }
        if self.access.park == "members" && self.group.is_empty() {
            return at(
                &[K("access"), K("park")],
                "`members` needs at least one [[group]]".into(),
            );
        }
        for (i, p) in self.access.parkers.iter().enumerate() {
            if !is_routable_uri(p) {
                return at(
                    &[K("access"), K("parkers"), I(i)],
                    format!("`{p}` is not a sip: URI"),
                );
            }
        }

        let pl = &self.plugins;
        duration_in(
            &pl.timeout,
            Duration::from_millis(1),
            Duration::from_secs(1),
        )
        .or_else(|m| at(&[K("plugins"), K("timeout")], m))?;
        let memory = parse_size(&pl.memory).map_err(|m| (vec![K("plugins"), K("memory")], m))?;
        if !((1 << 20)..=(1 << 30)).contains(&memory) {
            return at(
                &[K("plugins"), K("memory")],
                "must be between 1MiB and 1GiB".into(),
            );
        }
        parse_on_failure(&pl.on_failure).map_err(|m| (vec![K("plugins"), K("on_failure")], m))?;
        for (decision, slot) in pl.limits.by_slot() {
            let here = |f: &'static str| vec![K("plugins"), K("limits"), K(decision.name()), K(f)];
            if let Some(t) = &slot.timeout {
                duration_in(t, Duration::from_millis(1), Duration::from_secs(1))
                    .or_else(|m| at(&here("timeout"), m))?;
            }
            if let Some(m) = &slot.memory {
                let bytes = parse_size(m).map_err(|e| (here("memory"), e))?;
                if !((1 << 20)..=(1 << 30)).contains(&bytes) {
                    return at(&here("memory"), "must be between 1MiB and 1GiB".into());
                }
            }
        }
        for (i, host) in pl.events_http.iter().enumerate() {
            check_http_host(host)
                .or_else(|m| at(&[K("plugins"), K("events_http"), PathPart::Index(i)], m))?;
        }
        Ok(())
    }

    /// The plugin runtime's limits: `[plugins]` `timeout` and `memory`, and
    /// each slot's own from `[plugins.limits.*]`. Call on a validated
    /// configuration.
    pub fn plugin_limits(&self) -> anyhow::Result<callpark_policy::Limits> {
        let pl = &self.plugins;
        let timeout = parse_duration(&pl.timeout)?;
        let memory_bytes = parse_size(&pl.memory).map_err(anyhow::Error::msg)?;
        let mut per_slot = Vec::new();
        for (decision, slot) in pl.limits.by_slot() {
            if slot.timeout.is_none() && slot.memory.is_none() {
                continue;
            }
            per_slot.push((
                decision,
                callpark_policy::SlotLimits {
                    timeout: slot
                        .timeout
                        .as_deref()
                        .map_or(Ok(timeout), parse_duration)?,
                    memory_bytes: slot
                        .memory
                        .as_deref()
                        .map_or(Ok(memory_bytes), parse_size)
                        .map_err(anyhow::Error::msg)?,
                },
            ));
        }
        Ok(callpark_policy::Limits {
            timeout,
            memory_bytes,
            per_slot,
            ..callpark_policy::Limits::default()
        })
    }
}

/// The user part of `sip:user@host`.
fn callpark_sip_user(uri: &str) -> Option<String> {
    let rest = uri.split_once(':')?.1;
    let (user, _) = rest.split_once('@')?;
    Some(user.to_string())
}

/// An `events_http` entry: `host` or `host:port`, nothing more (no scheme,
/// no path), so that what is granted is exactly a place on the network.
fn check_http_host(entry: &str) -> Result<(), String> {
    let (host, port) = match entry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => (h, Some(p)),
        _ => (entry, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(format!(
            "`{entry}` is not a host or host:port (say \"crm.example.com\" or \"127.0.0.1:8080\")"
        ))
    }
}

fn duration_in(text: &str, min: Duration, max: Duration) -> Result<(), String> {
    let d = parse_duration(text).map_err(|e| e.to_string())?;
    if d < min || d > max {
        return Err(format!(
            "`{text}` is out of range ({}..{})",
            callpark_core::format_duration(min),
            callpark_core::format_duration(max)
        ));
    }
    Ok(())
}

/// `"0s"` (never) or 10 s..10 min (sipX and Lync limits).
fn check_recall_after(text: &str) -> Result<(), String> {
    let d = parse_duration(text).map_err(|e| e.to_string())?;
    if d.is_zero() || (Duration::from_secs(10)..=Duration::from_secs(600)).contains(&d) {
        Ok(())
    } else {
        Err(format!(
            "`{text}` must be \"0s\" (never) or between 10s and 10m"
        ))
    }
}

fn check_capacity(c: u32) -> Result<(), String> {
    if (1..=1000).contains(&c) {
        Ok(())
    } else {
        Err(format!("{c} is not in 1..1000"))
    }
}

fn check_escape_key(k: &str) -> Result<(), String> {
    let ok = k.is_empty()
        || (k.len() == 1
            && k.chars()
                .all(|c| c.is_ascii_digit() || c == '*' || c == '#'));
    if ok {
        Ok(())
    } else {
        Err(format!("`{k}` is not one DTMF key (0-9, *, #) or empty"))
    }
}

fn check_ring_pattern(p: &str) -> Result<(), String> {
    RingPattern::parse(p)
        .map(|_| ())
        .ok_or_else(|| format!("`{p}` is not one of {}", RingPattern::NAMES.join(", ")))
}

fn check_blf_state(s: &str) -> Result<(), String> {
    match s {
        "early" | "confirmed" => Ok(()),
        other => Err(format!("`{other}` is not one of early, confirmed")),
    }
}

/// `"20000-39999"` -> (20000, 39999), even bounds' count at least 2.
pub fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("`{text}` is not a port range like \"20000-39999\"");
    let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo < 1024 || lo >= hi {
        return Err(format!(
            "`{text}`: ports must be above 1023 and start below end"
        ));
    }
    Ok((lo, hi))
}

/// Splits `"*701"` into (`"*"`, 701). Orbit numbers are digits with an
/// optional `*` or `#` prefix (Lync allows both).
pub(crate) fn split_orbit(text: &str) -> Result<(&'static str, u64), String> {
    let (prefix, digits) = match text.as_bytes().first() {
        Some(b'*') => ("*", &text[1..]),
        Some(b'#') => ("#", &text[1..]),
        _ => ("", text),
    };
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{text}` is not an orbit number (digits, optionally after * or #)"
        ));
    }
    Ok((
        prefix,
        digits
            .parse()
            .map_err(|_| format!("`{text}` is too long"))?,
    ))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathPart {
    Key(&'static str),
    Index(usize),
}

pub(crate) fn render_path(path: &[PathPart]) -> String {
    let mut out = String::new();
    for part in path {
        match part {
            PathPart::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            PathPart::Index(i) => out.push_str(&format!("[{}]", i + 1)),
        }
    }
    out
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line of a field, found through toml_edit's spans; the nearest
/// enclosing table when the field itself is absent (a default).
pub(crate) fn locate(text: &str, path: &[PathPart]) -> usize {
    let Ok(doc) = toml_edit::Document::parse(text) else {
        return 0;
    };
    let mut best = 0;
    let mut item: Option<&toml_edit::Item> = None;
    let mut table: Option<&toml_edit::Table> = Some(doc.as_table());
    for part in path {
        match (part, item, table) {
            (PathPart::Key(k), _, Some(t)) => {
                let Some(next) = t.get(k) else { break };
                if let Some(span) = t.key(k).and_then(|key| key.span()).or_else(|| next.span()) {
                    best = line_of(text, span.start);
                }
                item = Some(next);
                table = next.as_table();
            }
            (PathPart::Index(i), Some(it), _) => {
                if let Some(aot) = it.as_array_of_tables() {
                    let Some(t) = aot.get(*i) else { break };
                    if let Some(span) = t.span() {
                        best = line_of(text, span.start);
                    }
                    table = Some(t);
                    item = None;
                } else if let Some(arr) = it.as_array() {
                    let Some(v) = arr.get(*i) else { break };
                    if let Some(span) = v.span() {
                        best = line_of(text, span.start);
                    }
                    break;
                } else {
                    break;
                }
            }
            _ => break,
        }
    }
    best
}

/// Where the `[` or `{` of a value opened before `offset` and still open
/// there begins, if any. Strings and comments are skipped; a `[` that
/// starts a line outside any value opens a table header, not an array.
fn unclosed_bracket(text: &str, offset: usize) -> Option<usize> {
    let mut open: Vec<usize> = Vec::new();
    let bytes = text.as_bytes();
    let end = offset.min(bytes.len());
    let mut i = 0;
    let mut line_start = true;
    while i < end {
        let b = bytes[i];
        match b {
            b'\n' => {
                line_start = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < end && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' => {
                let triple = bytes[i..].starts_with(&[b, b, b]);
                let close = if triple { 3 } else { 1 };
                i += close;
                while i < end {
                    if b == b'"' && bytes[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if !triple && bytes[i] == b'\n' {
                        break;
                    }
                    if bytes[i] == b && (!triple || bytes[i..].starts_with(&[b, b, b])) {
                        i += close;
                        break;
                    }
                    i += 1;
                }
            }
            b'[' if line_start && open.is_empty() => {
                // A table header: skip it.
                while i < end && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'[' | b'{' => {
                open.push(i);
                i += 1;
            }
            b']' | b'}' => {
                open.pop();
                i += 1;
            }
            _ => i += 1,
        }
        line_start = false;
    }
    open.first().copied()
}

/// The dotted key on the line of a parse error, for the message's field:
/// the key of a `key = value` line, or the table a header line opens.
fn field_at(text: &str, offset: usize) -> String {
    let line_start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let header = line.trim();
    if let Some(name) = header
        .strip_prefix("[[")
        .and_then(|h| h.split("]]").next())
        .or_else(|| header.strip_prefix('[').and_then(|h| h.split(']').next()))
    {
        return name.trim().to_string();
    }
    let key = line.split('=').next().unwrap_or("").trim();
    let mut section = String::new();
    for l in text[..line_start].lines() {
        let l = l.trim();
        if let Some(h) = l.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
            section = h.trim().to_string();
        } else if let Some(h) = l.strip_prefix('[').and_then(|h| h.split(']').next()) {
            section = h.trim().to_string();
        }
    }
    match (section.is_empty(), key.is_empty() || key.starts_with('[')) {
        (true, true) => "-".into(),
        (true, false) => key.into(),
        (false, true) => section,
        (false, false) => format!("{section}.{key}"),
    }
}

/// Where an engine runs, which the configuration does not say: the
/// addresses chosen, the clock's epoch, and the randomness of this start.
pub struct EngineSite {
    pub sip_addr: std::net::SocketAddr,
    pub media_addr: std::net::SocketAddr,
    pub epoch_ms_at_zero: u64,
    pub entropy: u64,
    pub secret: [u8; 32],
    pub tls_port: Option<u16>,
}

fn rule_of(rule: &str, listed: &[String]) -> Access {
    match rule {
        "members" => Access::Members,
        "listed" => Access::Listed(listed.to_vec()),
        _ => Access::All,
    }
}

impl Config {
    /// Who may park (`[access] park`).
    pub fn park_access(&self) -> Access {
        rule_of(&self.access.park, &self.access.parkers)
    }

    /// The engine's security settings from `[security]`, `[access]` and
    /// the groups; trusted host names are resolved here, once per (re)load.
    pub fn security_settings(&self, secret: [u8; 32]) -> Result<Security, String> {
        let config = self;
        use callpark_engine::guard::{GroupAccess, parse_net};
        use std::net::ToSocketAddrs;
        let sec = &config.security;
        let mut trusted = Vec::new();
        for (i, entry) in sec.trusted.iter().enumerate() {
            match parse_net(entry) {
                Some(net) => trusted.push(net),
                None => {
                    let addrs = (entry.as_str(), 0).to_socket_addrs().map_err(|e| {
                        format!("security.trusted[{i}]: cannot resolve `{entry}`: {e}")
                    })?;
                    trusted.extend(addrs.map(|a| callpark_engine::guard::IpNet::from(a.ip())));
                }
            }
        }
        let allowed_targets = sec
            .allowed_targets
            .iter()
            .map(|t| callpark_engine::Target::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        let realm = sec.realm(&config.server);
        let users = sec
            .user
            .iter()
            .map(|u| callpark_engine::User {
                credential: callpark_sip::digest::Credential {
                    username: u.name.clone(),
                    ha1_md5: (!u.ha1_md5.is_empty()).then(|| u.ha1_md5.to_ascii_lowercase()),
                    ha1_sha256: (!u.ha1_sha256.is_empty())
                        .then(|| u.ha1_sha256.to_ascii_lowercase()),
                },
                identity: if u.identity.is_empty() {
                    format!("sip:{}@{realm}", u.name)
                } else {
                    u.identity.clone()
                },
            })
            .collect();
        let a = &config.access;
        let groups = config
            .group
            .iter()
            .map(|g| {
                let rule = |r: &Option<String>, listed: &[String]| {
                    r.as_deref().map(|r| rule_of(r, listed))
                };
                (
                    g.name.clone(),
                    GroupAccess {
                        park: rule(&g.park, &a.parkers),
                        retrieve: rule(&g.retrieve, &a.retrievers),
                        subscribe: rule(&g.subscribe, &a.watchers),
                    },
                )
            })
            .collect();
        Ok(Security {
            trusted,
            allowed_targets,
            domain: (!config.server.domain.is_empty()).then(|| config.server.domain.clone()),
            realm,
            users,
            nonce_lifetime: callpark_core::parse_duration(&sec.nonce_lifetime)
                .map_err(|e| e.to_string())?,
            algorithms: sec
                .algorithms
                .iter()
                .filter_map(|a| callpark_sip::digest::Algorithm::parse(a))
                .collect(),
            lamp_identity: match sec.lamp_identity.as_str() {
                "number" => LampIdentity::Number,
                "none" => LampIdentity::None,
                _ => LampIdentity::Full,
            },
            rate_per_source: sec.rate_per_source,
            burst_per_source: sec.burst_per_source,
            max_parked_per_source: sec.max_parked_per_source as usize,
            retrieve: rule_of(&a.retrieve, &a.retrievers),
            subscribe: rule_of(&a.subscribe, &a.watchers),
            groups,
            secret,
        })
    }

    /// The engine's configuration: everything `serve` gives the engine,
    /// refused here (and so by `callpark check`) when it cannot be built.
    pub fn engine_config(&self, site: EngineSite) -> Result<EngineConfig, String> {
        let duration = |text: &str| parse_duration(text).map_err(|e| e.to_string());
        Ok(EngineConfig {
            sip_addr: site.sip_addr,
            media_addr: site.media_addr,
            outbound_proxy: self.outbound_proxy()?,
            max_parked_calls: self.server.max_parked_calls as usize,
            access: self.park_access(),
            epoch_ms_at_zero: site.epoch_ms_at_zero,
            entropy: site.entropy,
            recall_params: self.plugin_params_for(callpark_core::Decision::Recall),
            rtp_timeout: duration(&self.media.rtp_timeout)?,
            max_lifetime: duration(&self.defaults.max_lifetime)?,
            reservation_timeout: duration(&self.features.reservation_timeout)?,
            security: self.security_settings(site.secret)?,
            tls_port: site.tls_port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        Config::parse(text, "park.toml").unwrap_err()
    }

    #[test]
    fn the_embedded_default_equals_the_built_in_defaults() {
        assert_eq!(Config::embedded(), Config::default());
        assert_eq!(Config::parse("", "empty.toml").unwrap(), Config::default());
    }

    #[test]
    fn the_documented_example_parses() {
        let text = r##"
[server]
listen = ["127.0.0.1:5060"]
domain = "park.example.com"
outbound_proxy = ""
max_parked_calls = 20000
[media]
rtp_ports = "20000-39999"
music = ""
music_on_hold = true
[defaults]
recall_after = "45s"
capacity = 1
escape_key = ""
ring_pattern = "normal"
blf_state = "early"
max_lifetime = "24h"
[recall]
option = "parker-then-fallback"
max_attempts = 1
ring_time = "30s"
fallback = ""
[[range]]
name = "main"
start = "701"
end = "750"
[[orbit]]
number = "799"
name = "Sales"
music = "music/sales.wav"
capacity = 5
[[group]]
name = "front-desk"
members = ["sip:alice@example.com"]
destinations = ["701", "702", "703"]
recall = "parker-then-hunt-group"
hunt_group = "sip:frontdesk@example.com"
hunt_group_wait = "30s"
[features]
park_direct = "*68"
park_group = "#58"
retrieve = ["*88", "*4"]
[access]
park = "all"
parkers = []
[plugins]
allocator = ""
recall = ""
dialing = ""
watch = true
timeout = "10ms"
memory = "16MiB"
on_failure = "fallback"
"##;
        let c = Config::parse(text, "example.toml").unwrap();
        assert_eq!(c.orbit[0].capacity, Some(5));
        assert_eq!(c.group[0].destinations.len(), 3);
    }

    #[test]
    fn admin_settings_are_checked() {
        let e = err("[admin]\nlisten = \"localhost\"\n");
        assert_eq!((e.line, e.field.as_str()), (2, "admin.listen"), "{e}");
        let e = err("[[admin.token]]\nrole = \"root\"\nsha256 = \"00\"\n");
        assert_eq!(e.field, "admin.token[1].role", "{e}");
        let e = err("[[admin.token]]\nrole = \"viewer\"\nsha256 = \"00\"\n");
        assert_eq!(e.field, "admin.token[1].sha256", "{e}");
        assert_eq!(Config::embedded().admin.listen, "127.0.0.1:8080");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = err("[recall]\nmax_attempts = 11\n");
        assert_eq!(
            (e.file.as_str(), e.line, e.field.as_str()),
            ("park.toml", 2, "recall.max_attempts")
        );
        assert_eq!(
            e.to_string(),
            "park.toml:2: recall.max_attempts: 11 is not in 1..10"
        );

        let e = err(
            "[[range]]\nname = \"a\"\nstart = \"701\"\nend = \"750\"\n\n[[range]]\nname = \"b\"\nstart = \"740\"\nend = \"760\"\n",
        );
        assert_eq!((e.line, e.field.as_str()), (8, "range[2].start"), "{e}");
        assert!(e.message.contains("overlaps range `a`"), "{e}");

        let e = err("[[range]]\nname = \"a\"\nstart = \"701\"\nend = \"7500\"\n");
        assert_eq!((e.line, e.field.as_str()), (4, "range[1].end"), "{e}");

        let e = err("[defaults]\nrecall_after = \"5s\"\n");
        assert_eq!(
            (e.line, e.field.as_str()),
            (2, "defaults.recall_after"),
            "{e}"
        );

        let e = err("[[group]]\nname = \"g\"\ndestinations = [\"701\", \"999\"]\n");
        assert_eq!(
            (e.line, e.field.as_str()),
            (3, "group[1].destinations[2]"),
            "{e}"
        );

        let e = err("[plugins]\non_failure = \"explode\"\n");
        assert_eq!((e.line, e.field.as_str()), (2, "plugins.on_failure"), "{e}");
        let e = err("[plugins]\nevents_http = [\"http://crm.example.com/hook\"]\n");
        assert_eq!(
            (e.line, e.field.as_str()),
            (2, "plugins.events_http[1]"),
            "{e}"
        );
        assert!(e.to_string().contains("not a host or host:port"), "{e}");
        assert!(
            Config::parse(
                "[plugins]\nevents_http = [\"127.0.0.1:8080\", \"crm.example.com\"]\n",
                "park.toml"
            )
            .is_ok()
        );

        let e = err("[media]\nrtp_timeout = \"60s\"\npacer_threads = 65\n");
        assert_eq!(
            (e.line, e.field.as_str()),
            (3, "media.pacer_threads"),
            "{e}"
        );
    }

    #[test]
    fn syntax_and_type_errors_are_located_too() {
        let e = err("[server]\nmax_parked_calls = \"lots\"\n");
        assert_eq!(
            (e.line, e.field.as_str()),
            (2, "server.max_parked_calls"),
            "{e}"
        );
        let e = err("[server]\nlisten = [\"127.0.0.1:5060\"\n");
        assert!(e.line >= 2, "{e}");
        // An unclosed array names the line that opened it, not the next key.
        let e = err("[server]\nlisten = [\n domain = \"x\"\n");
        assert_eq!((e.line, e.field.as_str()), (2, "server.listen"), "{e}");
        assert!(e.message.contains("never closed"), "{e}");
        let e = err("[server]\nlisten = [\"a]\", # ] in a comment\n\"b\"]\ndomain = 7\n");
        assert_eq!((e.line, e.field.as_str()), (4, "server.domain"), "{e}");
        // An unknown section is named.
        let e = err("[bogus]\nx = 1\n");
        assert_eq!((e.line, e.field.as_str()), (1, "bogus"), "{e}");
        assert!(
            e.to_string()
                .starts_with("park.toml:1: bogus: unknown field"),
            "{e}"
        );
        let e = err("[media]\nmusik = \"x.wav\"\n");
        assert_eq!((e.line, e.field.as_str()), (2, "media.musik"), "{e}");
        assert!(e.message.contains("unknown field"), "{e}");
    }

    #[test]
    fn an_orbit_ring_pattern_reaches_the_lot() {
        let c = Config::parse(
            "[defaults]\nring_pattern = \"long-long\"\n[[orbit]]\nnumber = \"702\"\nring_pattern = \"short-long-short\"\n",
            "f",
        )
        .unwrap();
        let lot = c.lot();
        assert_eq!(
            lot.orbit("702").unwrap().recall_params,
            vec![("ring_pattern".to_string(), "short-long-short".to_string())]
        );
        assert!(lot.orbit("701").unwrap().recall_params.is_empty());
        let e = err("[server]\noutbound_proxy = \"sip:proxy.example.com:5060\"\n");
        assert_eq!(
            (e.line, e.field.as_str()),
            (2, "server.outbound_proxy"),
            "{e}"
        );
    }

    #[test]
    fn orbit_rules() {
        assert!(
            Config::parse(
                "[[range]]\nname = \"lync\"\nstart = \"*700\"\nend = \"*799\"\n",
                "f"
            )
            .is_ok()
        );
        let e = err("[[range]]\nname = \"a\"\nstart = \"*70\"\nend = \"#79\"\n");
        assert_eq!(e.field, "range[1].end");
        let e = err("[[orbit]]\nnumber = \"701\"\n[[orbit]]\nnumber = \"701\"\n");
        assert_eq!((e.line, e.field.as_str()), (4, "orbit[2].number"), "{e}");
        let e = err("[[orbit]]\nnumber = \"7a1\"\n");
        assert_eq!(e.field, "orbit[1].number");
        let e = err("[features]\nretrieve = [\"*68\"]\n");
        assert_eq!(e.field, "features");
    }

    #[test]
    fn plugin_params_carry_features_and_recall_settings() {
        let c = Config::parse("[recall]\nmax_attempts = 3\n[features]\nretrieve = [\"*7\"]\n[plugins.params.recall]\nextra = 5\n", "f").unwrap();
        use callpark_core::Decision;
        let (alloc, recall, dialing) = (
            c.plugin_params_for(Decision::Allocator),
            c.plugin_params_for(Decision::Recall),
            c.plugin_params_for(Decision::Dialing),
        );
        assert_eq!(alloc, vec![("strategy".to_string(), "first".to_string())]);
        assert!(recall.contains(&("max_attempts".into(), "3".into())));
        assert!(recall.contains(&("extra".into(), "5".into())));
        assert!(dialing.contains(&("retrieve".into(), "*7".into())));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("16MB").is_err());
    }
}
