//! The park lot: orbits from configuration (ranges, single orbits, groups),
//! the calls parked on each (FIFO when an orbit holds several), and the
//! bookkeeping the allocator needs ("the orbit handed out last").
//!
//! Pure data: who is parked where. SIP dialogs and media belong to the
//! engine, which names parked calls by `CallId`.

use std::collections::{HashMap, VecDeque};

use crate::policy::{OrbitState, ParkTarget};

/// The engine's name for a parked call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// One orbit as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrbitConfig {
    pub number: String,
    /// An extension name the orbit can also be dialed by (`*68sales`).
    pub name: Option<String>,
    pub enabled: bool,
    pub capacity: u32,
    /// The music file's key; `None`: the default.
    pub music: Option<String>,
    /// The orbit's group, if a group lists it as a destination.
    pub group: Option<String>,
    /// When an unretrieved call recalls, in milliseconds; 0: never.
    pub recall_after_ms: u64,
    /// The DTMF key that lets a parked caller start recall at once (sipX
    /// "allow transfer"); `None`: off.
    pub escape_key: Option<char>,
    /// Busy lamps show parked calls as `confirmed` (steady) rather than
    /// `early` (flashing).
    pub blf_confirmed: bool,
    /// The orbit's own recall plugin params (`ring_pattern`), laid over
    /// its group's and the defaults' when its call recalls.
    pub recall_params: Vec<(String, String)>,
}

/// One call park group as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    pub name: String,
    /// Parker URIs (`sip:user@host`), compared by user and host.
    pub members: Vec<String>,
    /// Orbit numbers in hunt order.
    pub destinations: Vec<String>,
    /// The group's recall settings, as recall plugin params.
    pub recall_params: crate::policy::Params,
}

/// A parked call as the lot knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub call: CallId,
    pub orbit: String,
    pub parked_at_ms: u64,
    pub parker: String,
    pub parked_uri: String,
    pub parked_display: String,
}

/// Why a request against the lot failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LotError {
    #[error("orbit {0} does not exist")]
    UnknownOrbit(String),
    #[error("group {0} does not exist")]
    UnknownGroup(String),
    #[error("orbit {0} is full")]
    Full(String),
    #[error("call {0:?} is already parked")]
    AlreadyParked(CallId),
}

/// All orbits and what is parked on them.
#[derive(Debug, Clone)]
pub struct ParkLot {
    orbits: Vec<OrbitConfig>,
    by_number: HashMap<String, usize>,
    groups: Vec<GroupConfig>,
    queues: Vec<VecDeque<Parked>>,
    where_is: HashMap<CallId, usize>,
    /// The orbit handed out last, per group (`None` key: the default lot).
    last: HashMap<Option<String>, String>,
}

/// Compares SIP URIs by user and host, ignoring scheme details, port and
/// parameters, as parker lists are written by people.
pub fn same_party(a: &str, b: &str) -> bool {
    fn key(uri: &str) -> String {
        let s = uri.trim().trim_start_matches('<').trim_end_matches('>');
        let s = s.split_once(':').map_or(s, |(scheme, rest)| {
            if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
                rest
            } else {
                s
            }
        });
        let s = s.split([';', '?', '>']).next().unwrap_or(s);
        // Drop a port, keeping IPv6 brackets.
        let s = match (s.rfind(':'), s.rfind(']')) {
            (Some(c), Some(b)) if c > b => &s[..c],
            (Some(c), None) if s[..c].contains('@') || !s.contains('@') => &s[..c],
            _ => s,
        };
        s.to_ascii_lowercase()
    }
    key(a) == key(b)
}

impl ParkLot {
    pub fn new(orbits: Vec<OrbitConfig>, groups: Vec<GroupConfig>) -> ParkLot {
        let by_number = orbits
            .iter()
            .enumerate()
            .map(|(i, o)| (o.number.clone(), i))
            .collect();
        let queues = orbits.iter().map(|_| VecDeque::new()).collect();
        ParkLot {
            orbits,
            by_number,
            groups,
            queues,
            where_is: HashMap::new(),
            last: HashMap::new(),
        }
    }

    /// The orbit a dialed string names: its number, or its extension name.
    pub fn resolve(&self, dialed: &str) -> Option<&OrbitConfig> {
        self.by_number
            .get(dialed)
            .map(|&i| &self.orbits[i])
            .or_else(|| {
                self.orbits.iter().find(|o| {
                    o.name
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(dialed))
                })
            })
    }

    /// The state of the orbit a dialed string names (by number or
    /// extension name), for the dialing plugin.
    pub fn dialed_orbit(&self, dialed: &str) -> Option<OrbitState> {
        let number = &self.resolve(dialed)?.number;
        self.by_number.get(number).map(|&i| self.state(i))
    }

    pub fn is_orbit(&self, dialed: &str) -> bool {
        self.by_number.contains_key(dialed)
    }

    pub fn orbit(&self, number: &str) -> Option<&OrbitConfig> {
        self.by_number.get(number).map(|&i| &self.orbits[i])
    }

    pub fn orbits(&self) -> &[OrbitConfig] {
        &self.orbits
    }

    pub fn groups(&self) -> &[GroupConfig] {
        &self.groups
    }

    pub fn group(&self, name: &str) -> Option<&GroupConfig> {
        self.groups
            .iter()
            .find(|g| g.name.eq_ignore_ascii_case(name))
    }

    /// The group whose members include the parker.
    pub fn group_of(&self, parker: &str) -> Option<&GroupConfig> {
        if parker.is_empty() {
            return None;
        }
        self.groups
            .iter()
            .find(|g| g.members.iter().any(|m| same_party(m, parker)))
    }

    fn state(&self, i: usize) -> OrbitState {
        let o = &self.orbits[i];
        OrbitState {
            number: o.number.clone(),
            occupied: self.queues[i].len() as u32,
            capacity: o.capacity,
            enabled: o.enabled,
        }
    }

    /// The allocator's candidates for a target, in configured order, and
    /// the orbit handed out last there.
    pub fn candidates(
        &self,
        target: &ParkTarget,
    ) -> Result<(Vec<OrbitState>, Option<String>), LotError> {
        match target {
            ParkTarget::Orbit(number) => {
                let i = *self
                    .by_number
                    .get(number)
                    .ok_or_else(|| LotError::UnknownOrbit(number.clone()))?;
                Ok((vec![self.state(i)], None))
            }
            ParkTarget::Group(name) => {
                let g = self
                    .group(name)
                    .ok_or_else(|| LotError::UnknownGroup(name.clone()))?;
                let states = g
                    .destinations
                    .iter()
                    .filter_map(|d| self.by_number.get(d))
                    .map(|&i| self.state(i))
                    .collect();
                Ok((states, self.last.get(&Some(g.name.clone())).cloned()))
            }
            ParkTarget::DefaultLot => Ok((
                (0..self.orbits.len()).map(|i| self.state(i)).collect(),
                self.last.get(&None).cloned(),
            )),
        }
    }

    /// Parks a call on an orbit (the allocator already chose it).
    pub fn park(&mut self, target: &ParkTarget, parked: Parked) -> Result<(), LotError> {
        let i = *self
            .by_number
            .get(&parked.orbit)
            .ok_or_else(|| LotError::UnknownOrbit(parked.orbit.clone()))?;
        if self.where_is.contains_key(&parked.call) {
            return Err(LotError::AlreadyParked(parked.call));
        }
        let o = &self.orbits[i];
        if !o.enabled || self.queues[i].len() as u32 >= o.capacity {
            return Err(LotError::Full(o.number.clone()));
        }
        let key = match target {
            ParkTarget::Group(g) => Some(
                self.group(g)
                    .map_or_else(|| g.clone(), |group| group.name.clone()),
            ),
            _ => None,
        };
        let capacity = o.capacity as usize;
        self.last.insert(key, parked.orbit.clone());
        self.where_is.insert(parked.call, i);
        let queue = &mut self.queues[i];
        if queue.capacity() == 0 {
            // Most orbits hold one call: room for what the orbit takes (up
            // to four), not the four a first push reserves whatever it is.
            queue.reserve_exact(capacity.clamp(1, 4));
        }
        queue.push_back(parked);
        Ok(())
    }

    /// Takes the oldest call off an orbit (or, with `None`, the oldest call
    /// anywhere).
    pub fn retrieve(&mut self, orbit: Option<&str>) -> Option<Parked> {
        let i = match orbit {
            Some(number) => *self.by_number.get(number)?,
            None => (0..self.queues.len())
                .filter(|&i| !self.queues[i].is_empty())
                .min_by_key(|&i| self.queues[i][0].parked_at_ms)?,
        };
        let parked = self.queues[i].pop_front()?;
        self.where_is.remove(&parked.call);
        Some(parked)
    }

    /// Takes a given call off its orbit (hang-up, recall answered, ...).
    pub fn remove(&mut self, call: CallId) -> Option<Parked> {
        let i = self.where_is.remove(&call)?;
        let pos = self.queues[i].iter().position(|p| p.call == call)?;
        self.queues[i].remove(pos)
    }

    pub fn get(&self, call: CallId) -> Option<&Parked> {
        let i = *self.where_is.get(&call)?;
        self.queues[i].iter().find(|p| p.call == call)
    }

    /// Calls parked on an orbit, oldest first.
    pub fn parked_on(&self, orbit: &str) -> impl Iterator<Item = &Parked> {
        self.by_number
            .get(orbit)
            .into_iter()
            .flat_map(|&i| self.queues[i].iter())
    }

    /// Every parked call, orbit by orbit in configured order, oldest first.
    pub fn all_parked(&self) -> impl Iterator<Item = &Parked> {
        self.queues.iter().flat_map(|q| q.iter())
    }

    /// Adds an orbit (e.g. a disabled stand-in for one a new configuration
    /// removed while calls were parked on it). No-op if it exists.
    pub fn add_orbit(&mut self, orbit: OrbitConfig) {
        if self.by_number.contains_key(&orbit.number) {
            return;
        }
        self.by_number
            .insert(orbit.number.clone(), self.orbits.len());
        self.orbits.push(orbit);
        self.queues.push(VecDeque::new());
    }

    /// Puts a call back on its orbit as it was (a configuration reload),
    /// at the end of that orbit's queue, even past a capacity that shrank.
    pub fn restore(&mut self, parked: Parked) -> Result<(), LotError> {
        let i = *self
            .by_number
            .get(&parked.orbit)
            .ok_or_else(|| LotError::UnknownOrbit(parked.orbit.clone()))?;
        self.where_is.insert(parked.call, i);
        self.queues[i].push_back(parked);
        Ok(())
    }

    pub fn parked_count(&self) -> usize {
        self.where_is.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lot() -> ParkLot {
        let orbit = |n: &str, cap: u32| OrbitConfig {
            number: n.into(),
            name: None,
            enabled: true,
            capacity: cap,
            music: None,
            group: None,
            recall_after_ms: 45_000,
            escape_key: None,
            blf_confirmed: false,
            recall_params: Vec::new(),
        };
        let mut sales = orbit("799", 3);
        sales.name = Some("sales".into());
        ParkLot::new(
            vec![orbit("701", 1), orbit("702", 1), orbit("703", 1), sales],
            vec![GroupConfig {
                name: "front-desk".into(),
                members: vec!["sip:alice@example.com".into()],
                destinations: vec!["702".into(), "703".into()],
                recall_params: vec![],
            }],
        )
    }

    fn parked(call: u64, orbit: &str, at: u64) -> Parked {
        Parked {
            call: CallId(call),
            orbit: orbit.into(),
            parked_at_ms: at,
            parker: String::new(),
            parked_uri: format!("sip:caller{call}@example.com"),
            parked_display: String::new(),
        }
    }

    #[test]
    fn fifo_per_orbit_and_oldest_anywhere() {
        let mut l = lot();
        let t = ParkTarget::Orbit("799".into());
        l.park(&t, parked(1, "799", 10)).unwrap();
        l.park(&t, parked(2, "799", 20)).unwrap();
        l.park(&ParkTarget::DefaultLot, parked(3, "701", 5))
            .unwrap();
        assert_eq!(l.retrieve(Some("799")).unwrap().call, CallId(1));
        assert_eq!(l.retrieve(None).unwrap().call, CallId(3));
        assert_eq!(l.retrieve(None).unwrap().call, CallId(2));
        assert_eq!(l.retrieve(None), None);
        assert_eq!(l.retrieve(Some("701")), None);
    }

    #[test]
    fn capacity_and_candidates_reflect_occupancy() {
        let mut l = lot();
        l.park(&ParkTarget::Orbit("701".into()), parked(1, "701", 0))
            .unwrap();
        assert_eq!(
            l.park(&ParkTarget::Orbit("701".into()), parked(2, "701", 0)),
            Err(LotError::Full("701".into()))
        );
        let (c, _) = l.candidates(&ParkTarget::DefaultLot).unwrap();
        assert_eq!(c[0].occupied, 1);
        assert_eq!(c.len(), 4);
        let (g, last) = l
            .candidates(&ParkTarget::Group("front-desk".into()))
            .unwrap();
        assert_eq!(
            g.iter().map(|o| o.number.as_str()).collect::<Vec<_>>(),
            ["702", "703"]
        );
        assert_eq!(last, None);
        l.park(&ParkTarget::Group("front-desk".into()), parked(3, "703", 0))
            .unwrap();
        assert_eq!(
            l.candidates(&ParkTarget::Group("front-desk".into()))
                .unwrap()
                .1,
            Some("703".into())
        );
        assert!(l.candidates(&ParkTarget::Group("nope".into())).is_err());
        assert!(l.candidates(&ParkTarget::Orbit("999".into())).is_err());
    }

    #[test]
    fn removal_frees_the_orbit() {
        let mut l = lot();
        l.park(&ParkTarget::DefaultLot, parked(1, "701", 0))
            .unwrap();
        assert_eq!(l.parked_count(), 1);
        assert_eq!(l.remove(CallId(1)).unwrap().orbit, "701");
        assert_eq!(l.remove(CallId(1)), None);
        assert_eq!(l.parked_count(), 0);
        l.park(&ParkTarget::DefaultLot, parked(2, "701", 0))
            .unwrap();
    }

    #[test]
    fn names_groups_and_parties() {
        let l = lot();
        assert_eq!(l.resolve("sales").unwrap().number, "799");
        assert_eq!(l.resolve("SALES").unwrap().number, "799");
        assert!(l.resolve("nobody").is_none());
        assert_eq!(
            l.group_of("sip:Alice@Example.com:5060;transport=udp")
                .unwrap()
                .name,
            "front-desk"
        );
        assert!(l.group_of("sip:bob@example.com").is_none());
        assert!(same_party("<sip:a@[::1]:5070>", "sip:a@[::1]"));
        assert!(!same_party("sip:a@b", "sip:a@c"));
    }
}
