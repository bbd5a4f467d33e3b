//! SIP digest authentication, the server side (RFC 3261 §22, RFC 7616 as
//! SIP uses it after RFC 8760): challenges, stateless nonces, verification.
//!
//! Written here rather than taken from rsip, whose helper is made for the
//! client side: it prints `nc` in decimal, hashes the `-sess` variants and
//! SHA-512-256 wrongly, and compares responses in variable time.
//!
//! - Credentials are kept as HA1 = H(username:realm:password) per hash,
//!   never as a password; the `-sess` variants are computed from it.
//! - A nonce is `hex(issued_ms) || hex(serial) || hex(HMAC-SHA-256(secret,
//!   issued_ms || serial || realm))[..32]`: the server keeps no state to
//!   issue it, knows its age, and a forged one fails the MAC. The serial
//!   makes each challenge's nonce its own, so that two phones never share
//!   an `nc` sequence. Past its lifetime it is *stale*
//!   (RFC 7616 §3.3): the client retries with a fresh one and no password
//!   prompt.
//! - `qop=auth` is required, so every response carries `nc` and `cnonce`;
//!   `nc` must grow for each nonce (a replayed request is refused). The
//!   highest `nc` per nonce is the only state, bounded (see `Nonces`).
//! - Responses are compared in constant time.
//!
//! Sans-IO: time is an argument, the secret comes from the caller.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A digest hash algorithm (RFC 7616 §6.1, RFC 8760).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    /// By its name in a header, case-insensitively; absent means MD5.
    pub fn parse(name: &str) -> Option<Algorithm> {
        match name.to_ascii_uppercase().as_str() {
            "MD5" => Some(Algorithm::Md5),
            "MD5-SESS" => Some(Algorithm::Md5Sess),
            "SHA-256" => Some(Algorithm::Sha256),
            "SHA-256-SESS" => Some(Algorithm::Sha256Sess),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Whether HA1 is the stored one or the session variant.
    pub fn sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// Whether the SHA-256 family (which stored HA1 serves it).
    pub fn sha256(self) -> bool {
        matches!(self, Algorithm::Sha256 | Algorithm::Sha256Sess)
    }

    /// The lower-case hex digest of `data`.
    pub fn hash(self, data: &[u8]) -> String {
        if self.sha256() {
            hex(&Sha256::digest(data))
        } else {
            hex(&Md5::digest(data))
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// HA1 = H(username:realm:password), what a credential stores: used by
/// `callpark credential` to turn a password into configuration once.
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash(format!("{username}:{realm}:{password}").as_bytes())
}

/// A user's stored credentials in one realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    /// HA1 with MD5, for phones that know nothing better.
    pub ha1_md5: Option<String>,
    /// HA1 with SHA-256.
    pub ha1_sha256: Option<String>,
}

/// Why an `Authorization` header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("not a Digest authorization")]
    NotDigest,
    #[error("the authorization lacks {0}")]
    Missing(&'static str),
    #[error("unsupported digest algorithm {0}")]
    Algorithm(String),
    #[error("malformed nc {0}")]
    Nc(String),
    #[error("malformed authorization parameters")]
    Syntax,
}

/// The parameters of `Authorization: Digest ...` (RFC 7616 §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    pub cnonce: Option<String>,
    pub qop: Option<String>,
    /// `nc` exactly as sent (eight hex digits), which the hash covers.
    pub nc: Option<String>,
}

impl Authorization {
    pub fn parse(value: &str) -> Result<Authorization, DigestError> {
        let value = value.trim_start();
        let rest = value
            .get(..6)
            .filter(|s| s.eq_ignore_ascii_case("digest"))
            .map(|_| &value[6..])
            .ok_or(DigestError::NotDigest)?;
        let params = auth_params(rest)?;
        let take = |name: &'static str| -> Option<String> {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let need = |name: &'static str| take(name).ok_or(DigestError::Missing(name));
        let algorithm = match take("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(&a).ok_or(DigestError::Algorithm(a))?,
        };
        let nc = take("nc");
        if let Some(nc) = &nc
            && (nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(DigestError::Nc(nc.clone()));
        }
        Ok(Authorization {
            username: need("username")?,
            realm: need("realm")?,
            nonce: need("nonce")?,
            uri: need("uri")?,
            response: need("response")?,
            algorithm,
            cnonce: take("cnonce"),
            qop: take("qop"),
            nc,
        })
    }

    /// The `nc` as a number, when sent.
    pub fn nc_value(&self) -> Option<u32> {
        self.nc
            .as_deref()
            .and_then(|n| u32::from_str_radix(n, 16).ok())
    }
}

/// `k=v, k="quoted, with \"escapes\""` into pairs.
fn auth_params(text: &str) -> Result<Vec<(String, String)>, DigestError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || name.is_empty() {
            return Err(DigestError::Syntax);
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.push(chars.next().ok_or(DigestError::Syntax)?),
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err(DigestError::Syntax),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((name, value));
    }
}

/// The expected `response` (RFC 7616 §3.4.1, with `qop=auth`):
/// H(HA1':nonce:nc:cnonce:qop:H(method:uri)), where HA1' is the stored
/// HA1, or H(HA1:nonce:cnonce) for a `-sess` algorithm.
#[allow(clippy::too_many_arguments)]
pub fn expected_response(
    algorithm: Algorithm,
    stored_ha1: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: &str,
    method: &str,
    uri: &str,
) -> String {
    let ha1 = if algorithm.sess() {
        algorithm.hash(format!("{stored_ha1}:{nonce}:{cnonce}").as_bytes())
    } else {
        stored_ha1.to_string()
    };
    let ha2 = algorithm.hash(format!("{method}:{uri}").as_bytes());
    algorithm.hash(format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}").as_bytes())
}

/// What a checked authorization comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The user proved who it is.
    Authenticated(String),
    /// A good response on a nonce past its lifetime: challenge again with
    /// `stale=true`, and the client retries without asking for a password.
    Stale,
    /// Refused, and why (for the log; the peer learns only the 401).
    Refused(&'static str),
}

/// Issues and checks nonces, and remembers the highest `nc` of each.
pub struct Nonces {
    secret: [u8; 32],
    realm: String,
    lifetime: Duration,
    /// Highest `nc` seen per nonce, with the nonce's issue time.
    seen: HashMap<String, (u32, Duration)>,
    by_issue: BTreeSet<(Duration, String)>,
    /// Nonces issued at or before this were forgotten to keep `seen`
    /// bounded: they are stale, so that forgetting never lets a replay in.
    floor: Option<Duration>,
    max_seen: usize,
    serial: u64,
    /// The algorithms challenged, preferred first; others are refused.
    offered: Vec<Algorithm>,
}

/// Nonces whose `nc` is remembered at most.
pub const MAX_NONCES_SEEN: usize = 65_536;

type HmacSha256 = Hmac<Sha256>;

impl Nonces {
    pub fn new(secret: [u8; 32], realm: impl Into<String>, lifetime: Duration) -> Nonces {
        Nonces {
            secret,
            realm: realm.into(),
            lifetime,
            seen: HashMap::new(),
            by_issue: BTreeSet::new(),
            floor: None,
            max_seen: MAX_NONCES_SEEN,
            serial: 0,
            offered: vec![Algorithm::Sha256, Algorithm::Md5],
        }
    }

    /// The algorithms to challenge with, preferred first (SHA-256, then
    /// MD5 by default); the `-sess` variant of an offered one is accepted
    /// too. A phone that reads only the first challenge needs its own
    /// algorithm first.
    pub fn set_offered(&mut self, offered: Vec<Algorithm>) {
        if !offered.is_empty() {
            self.offered = offered;
        }
    }

    fn offers(&self, algorithm: Algorithm) -> bool {
        self.offered
            .iter()
            .any(|a| a.sha256() == algorithm.sha256())
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Bounds the remembered nonces (tests use a small bound).
    pub fn set_max_seen(&mut self, max: usize) {
        self.max_seen = max.max(1);
    }

    fn mac(&self, issued_ms: u64, serial: u64) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("any key length");
        mac.update(&issued_ms.to_be_bytes());
        mac.update(&serial.to_be_bytes());
        mac.update(self.realm.as_bytes());
        hex(&mac.finalize().into_bytes()[..16])
    }

    /// A fresh nonce for a challenge at `now`.
    pub fn issue(&mut self, now: Duration) -> String {
        let ms = now.as_millis() as u64;
        self.serial += 1;
        let serial = self.serial;
        format!("{ms:016x}{serial:016x}{}", self.mac(ms, serial))
    }

    /// When a nonce of ours was issued, if it is ours.
    fn issued(&self, nonce: &str) -> Option<Duration> {
        if nonce.len() != 64 {
            return None;
        }
        let ms = u64::from_str_radix(nonce.get(..16)?, 16).ok()?;
        let serial = u64::from_str_radix(nonce.get(16..32)?, 16).ok()?;
        let ok: bool = self
            .mac(ms, serial)
            .as_bytes()
            .ct_eq(nonce.get(32..)?.as_bytes())
            .into();
        ok.then(|| Duration::from_millis(ms))
    }

    /// The `WWW-Authenticate` values of a 401 at `now`, preferred first
    /// (RFC 8760 §2.4): SHA-256, then MD5 for older phones.
    pub fn challenges(&mut self, now: Duration, stale: bool) -> Vec<String> {
        let nonce = self.issue(now);
        let stale = if stale { ", stale=true" } else { "" };
        self.offered
            .iter()
            .map(|a| {
                format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                    self.realm,
                    a.name()
                )
            })
            .collect()
    }

    /// Checks `auth` on a request of `method` to `request_uri` at `now`,
    /// with `lookup` finding a user's stored credential.
    pub fn verify<'a>(
        &mut self,
        now: Duration,
        method: &str,
        request_uri: &str,
        auth: &Authorization,
        lookup: impl Fn(&str) -> Option<&'a Credential>,
    ) -> Verdict {
        if auth.realm != self.realm {
            return Verdict::Refused("another realm");
        }
        if !self.offers(auth.algorithm) {
            return Verdict::Refused("an algorithm not offered");
        }
        let Some(issued) = self.issued(&auth.nonce) else {
            return Verdict::Refused("not a nonce of ours");
        };
        if issued > now {
            return Verdict::Refused("a nonce from the future");
        }
        let (Some(qop), Some(nc), Some(cnonce)) = (&auth.qop, &auth.nc, &auth.cnonce) else {
            return Verdict::Refused("qop=auth with nc and cnonce is required");
        };
        if !qop.eq_ignore_ascii_case("auth") {
            return Verdict::Refused("only qop=auth is offered");
        }
        if auth.uri != request_uri {
            return Verdict::Refused("the digest uri is not the Request-URI");
        }
        let Some(credential) = lookup(&auth.username) else {
            return Verdict::Refused("no such user");
        };
        let stored = if auth.algorithm.sha256() {
            credential.ha1_sha256.as_deref()
        } else {
            credential.ha1_md5.as_deref()
        };
        let Some(stored) = stored else {
            return Verdict::Refused("no credential for that algorithm");
        };
        let expected = expected_response(
            auth.algorithm,
            stored,
            &auth.nonce,
            nc,
            cnonce,
            qop,
            method,
            &auth.uri,
        );
        let matches: bool = expected
            .as_bytes()
            .ct_eq(auth.response.to_ascii_lowercase().as_bytes())
            .into();
        if !matches {
            return Verdict::Refused("wrong response");
        }
        // The response is right: only now do age and replay matter, so
        // that a stale answer goes to someone who knows the password.
        if now - issued > self.lifetime || self.floor.is_some_and(|f| issued <= f) {
            return Verdict::Stale;
        }
        let nc = auth.nc_value().expect("checked at parse");
        match self.seen.get_mut(&auth.nonce) {
            Some((last, _)) if nc <= *last => return Verdict::Refused("a replayed nc"),
            Some((last, _)) => *last = nc,
            None => {
                self.remember(now, auth.nonce.clone(), nc, issued);
            }
        }
        Verdict::Authenticated(auth.username.clone())
    }

    fn remember(&mut self, now: Duration, nonce: String, nc: u32, issued: Duration) {
        // Nonces past their lifetime are stale anyway: forget them first.
        while let Some((at, old)) = self.by_issue.first().cloned() {
            if now - at <= self.lifetime && self.seen.len() < self.max_seen {
                break;
            }
            self.by_issue.pop_first();
            self.seen.remove(&old);
            if now - at <= self.lifetime {
                self.floor = Some(self.floor.map_or(at, |f| f.max(at)));
            }
        }
        if self.floor.is_some_and(|f| issued <= f) {
            return;
        }
        self.by_issue.insert((issued, nonce.clone()));
        self.seen.insert(nonce, (nc, issued));
    }

    /// Nonces whose `nc` is remembered now.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }
}
