//! What the host tells an engine: its deployment, who may park, the music.

use super::*;

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

/// A new configuration for `Engine::reconfigure`: the lot, the park
/// access rule, the recall plugin's params, the security settings and,
/// when the music changed, the new library.
#[derive(Debug)]
pub struct Reconfiguration {
    pub lot: ParkLot,
    pub access: Access,
    pub recall_params: Params,
    pub security: Security,
    /// `None`: keep the library the engine has.
    pub music: Option<MusicLibrary>,
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
    pub(crate) fn announcement(&self, orbit: &str) -> Vec<Music> {
        let mut parts = Vec::with_capacity(orbit.len() + 1);
        let Some(intro) = self.prompts.get(callpark_media::music::PARKED_ON) else {
            return Vec::new();
        };
        parts.push(intro.clone());
        for c in orbit.chars() {
            match callpark_media::music::prompt_for(c).and_then(|key| self.prompts.get(key)) {
                Some(p) => parts.push(p.clone()),
                None => return Vec::new(),
            }
        }
        parts
    }

    pub(crate) fn for_orbit(&self, key: Option<&str>) -> Music {
        if !self.music_on_hold {
            return Music::silence();
        }
        key.and_then(|k| self.by_key.get(k))
            .unwrap_or(&self.default)
            .clone()
    }
}
