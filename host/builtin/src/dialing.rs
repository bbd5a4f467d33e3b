//! What a dialed string means.
//!
//! Params (all optional; the defaults are the codes phones ship with):
//! - `park_direct` (`*68`): `*68701` parks on orbit or extension 701, and a
//!   bare `*68` parks in the parker's group.
//! - `park_group` (`#58`): `#58` parks in the parker's group, `#58sales`
//!   in the group named `sales`.
//! - `retrieve` (`*88,*4`): comma-separated; `*88701` retrieves from 701,
//!   a bare `*88` retrieves the oldest parked call anywhere.
//!
//! - `bare_orbit` (`park-when-empty`): what dialing an orbit number
//!   itself does when the call does not arrive through a transfer:
//!   `park-when-empty` retrieves its call and parks on it when it holds
//!   none (sipX, FreeSWITCH valet parking); `retrieve` always retrieves
//!   (the host answers 404 on an empty orbit).
//!
//! A dialed string that is itself an orbit number parks when the INVITE
//! carries `Referred-By` or `Replaces` (it arrives through a transfer);
//! otherwise `bare_orbit` says. The orbit reading comes first, so a
//! deployment may have orbits such as `*401` beside a `*4` retrieve code.
//! Anything else is not a feature code.

use callpark_core::{DialAction, DialContext, param};

/// The feature codes in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureCodes {
    pub park_direct: String,
    pub park_group: String,
    pub retrieve: Vec<String>,
}

impl Default for FeatureCodes {
    fn default() -> Self {
        FeatureCodes {
            park_direct: "*68".into(),
            park_group: "#58".into(),
            retrieve: vec!["*88".into(), "*4".into()],
        }
    }
}

enum Feature {
    ParkDirect,
    ParkGroup,
    Retrieve,
}

impl FeatureCodes {
    /// Reads the codes from params, with the defaults for absent keys.
    pub fn from_params(params: &[(String, String)]) -> Result<FeatureCodes, String> {
        let mut codes = FeatureCodes::default();
        if let Some(v) = param(params, "park_direct") {
            codes.park_direct = v.trim().to_string();
        }
        if let Some(v) = param(params, "park_group") {
            codes.park_group = v.trim().to_string();
        }
        if let Some(v) = param(params, "retrieve") {
            codes.retrieve = v
                .split(',')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect();
            if codes.retrieve.is_empty() {
                return Err("retrieve needs at least one code".into());
            }
        }
        let all = codes.all();
        for (i, (code, _)) in all.iter().enumerate() {
            if code.is_empty() || code.len() > 16 {
                return Err(format!("feature code {code:?} must have 1..=16 characters"));
            }
            if let Some(bad) = code
                .chars()
                .find(|c| !(c.is_ascii_digit() || *c == '*' || *c == '#'))
            {
                return Err(format!(
                    "feature code {code:?} has {bad:?}; a phone dials only 0-9, * and #"
                ));
            }
            if all[..i].iter().any(|(other, _)| other == code) {
                return Err(format!("feature code {code:?} is given twice"));
            }
        }
        Ok(codes)
    }

    fn all(&self) -> Vec<(&str, Feature)> {
        let mut all = vec![
            (self.park_direct.as_str(), Feature::ParkDirect),
            (self.park_group.as_str(), Feature::ParkGroup),
        ];
        all.extend(
            self.retrieve
                .iter()
                .map(|c| (c.as_str(), Feature::Retrieve)),
        );
        all
    }

    /// The longest code that prefixes `dialed`, with what follows it, so that
    /// `*4` never shadows a longer code that starts the same way.
    fn longest_match<'d>(&self, dialed: &'d str) -> Option<(Feature, &'d str)> {
        let mut all = self.all();
        all.sort_by_key(|(code, _)| std::cmp::Reverse(code.len()));
        all.into_iter()
            .find(|(code, _)| dialed.starts_with(code))
            .map(|(code, feature)| (feature, &dialed[code.len()..]))
    }
}

/// What dialing a bare orbit does when the call was not transferred there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareOrbit {
    /// Retrieve its call; park on it when it holds none.
    ParkWhenEmpty,
    /// Retrieve, whatever it holds.
    Retrieve,
}

impl BareOrbit {
    /// Reads the `bare_orbit` param; absent means `park-when-empty`.
    pub fn from_params(params: &[(String, String)]) -> Result<BareOrbit, String> {
        match param(params, "bare_orbit").map(str::trim) {
            None | Some("park-when-empty") => Ok(BareOrbit::ParkWhenEmpty),
            Some("retrieve") => Ok(BareOrbit::Retrieve),
            Some(other) => Err(format!(
                "bare_orbit `{other}` is not one of park-when-empty, retrieve"
            )),
        }
    }
}

/// Validates the dialing params.
pub fn check_params(params: &[(String, String)]) -> Result<(), String> {
    crate::check_unique_keys(params)?;
    BareOrbit::from_params(params)?;
    FeatureCodes::from_params(params).map(|_| ())
}

/// Interprets a dialed string.
pub fn parse(ctx: &DialContext) -> DialAction {
    let codes = FeatureCodes::from_params(&ctx.params).unwrap_or_default();
    let dialed = ctx.dialed.trim();
    if ctx.dialed_is_orbit {
        let transferred = ctx.referred_by.is_some() || ctx.has_replaces;
        // Without the orbit's state (a host that does not pass it) an
        // orbit is taken to hold a call: retrieve.
        let empty = ctx.dialed_orbit.as_ref().is_some_and(|o| o.occupied == 0);
        let park_when_empty = BareOrbit::from_params(&ctx.params)
            .unwrap_or(BareOrbit::ParkWhenEmpty)
            == BareOrbit::ParkWhenEmpty;
        return if transferred || (empty && park_when_empty) {
            DialAction::ParkOrbit(dialed.to_string())
        } else {
            DialAction::Retrieve(Some(dialed.to_string()))
        };
    }
    let some = |rest: &str| (!rest.is_empty()).then(|| rest.to_string());
    match codes.longest_match(dialed) {
        Some((Feature::ParkDirect, rest)) => match some(rest) {
            Some(orbit) => DialAction::ParkOrbit(orbit),
            None => DialAction::ParkGroup(None),
        },
        Some((Feature::ParkGroup, rest)) => DialAction::ParkGroup(some(rest)),
        Some((Feature::Retrieve, rest)) => DialAction::Retrieve(some(rest)),
        None => DialAction::NotFeature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(dialed: &str) -> DialContext {
        DialContext {
            dialed: dialed.into(),
            caller: "sip:bob@example.com".into(),
            referred_by: None,
            has_replaces: false,
            dialed_is_orbit: false,
            dialed_orbit: None,
            params: vec![],
        }
    }

    fn orbit_ctx(dialed: &str, referred_by: bool, replaces: bool) -> DialContext {
        DialContext {
            referred_by: referred_by.then(|| "sip:alice@example.com".to_string()),
            has_replaces: replaces,
            dialed_is_orbit: true,
            ..ctx(dialed)
        }
    }

    #[test]
    fn default_feature_codes() {
        assert_eq!(parse(&ctx("*68701")), DialAction::ParkOrbit("701".into()));
        assert_eq!(
            parse(&ctx("*68sales")),
            DialAction::ParkOrbit("sales".into())
        );
        assert_eq!(parse(&ctx("*68")), DialAction::ParkGroup(None));
        assert_eq!(parse(&ctx("#58")), DialAction::ParkGroup(None));
        assert_eq!(
            parse(&ctx("#58front")),
            DialAction::ParkGroup(Some("front".into()))
        );
        assert_eq!(
            parse(&ctx("*88701")),
            DialAction::Retrieve(Some("701".into()))
        );
        assert_eq!(
            parse(&ctx("*4701")),
            DialAction::Retrieve(Some("701".into()))
        );
        assert_eq!(parse(&ctx("*88")), DialAction::Retrieve(None));
    }

    #[test]
    fn bare_orbit_parks_when_transferred_and_retrieves_otherwise() {
        assert_eq!(
            parse(&orbit_ctx("701", true, false)),
            DialAction::ParkOrbit("701".into())
        );
        assert_eq!(
            parse(&orbit_ctx("701", false, true)),
            DialAction::ParkOrbit("701".into())
        );
        assert_eq!(
            parse(&orbit_ctx("701", true, true)),
            DialAction::ParkOrbit("701".into())
        );
        assert_eq!(
            parse(&orbit_ctx("701", false, false)),
            DialAction::Retrieve(Some("701".into()))
        );
        // An orbit that starts like a retrieve code is an orbit first.
        assert_eq!(
            parse(&orbit_ctx("*401", false, false)),
            DialAction::Retrieve(Some("*401".into()))
        );
    }

    #[test]
    fn a_bare_empty_orbit_parks_unless_told_to_retrieve() {
        let with = |occupied: u32, params: &[(&str, &str)]| DialContext {
            dialed_orbit: Some(callpark_core::OrbitState {
                number: "701".into(),
                occupied,
                capacity: 1,
                enabled: true,
            }),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..orbit_ctx("701", false, false)
        };
        assert_eq!(parse(&with(0, &[])), DialAction::ParkOrbit("701".into()));
        assert_eq!(
            parse(&with(1, &[])),
            DialAction::Retrieve(Some("701".into()))
        );
        let retrieve = [("bare_orbit", "retrieve")];
        assert_eq!(
            parse(&with(0, &retrieve)),
            DialAction::Retrieve(Some("701".into()))
        );
        assert!(check_params(&[("bare_orbit".into(), "retrieve".into())]).is_ok());
        let bad = check_params(&[("bare_orbit".into(), "sometimes".into())]).unwrap_err();
        assert!(bad.contains("park-when-empty, retrieve"), "{bad}");
    }

    #[test]
    fn anything_else_is_not_a_feature() {
        for dialed in ["alice", "1234", "", "*99", "#5"] {
            assert_eq!(parse(&ctx(dialed)), DialAction::NotFeature, "{dialed:?}");
        }
    }

    #[test]
    fn codes_come_from_params() {
        let params = vec![
            ("park_direct".to_string(), "*30".to_string()),
            ("park_group".to_string(), "#9".to_string()),
            ("retrieve".to_string(), "*31, *311".to_string()),
        ];
        let with = |dialed: &str| DialContext {
            params: params.clone(),
            ..ctx(dialed)
        };
        assert!(check_params(&params).is_ok());
        assert_eq!(parse(&with("*30701")), DialAction::ParkOrbit("701".into()));
        assert_eq!(parse(&with("#9")), DialAction::ParkGroup(None));
        // Longest code wins: *311 is its own code, not *31 + "1".
        assert_eq!(
            parse(&with("*3117")),
            DialAction::Retrieve(Some("7".into()))
        );
        assert_eq!(
            parse(&with("*31702")),
            DialAction::Retrieve(Some("702".into()))
        );
        assert_eq!(parse(&with("*68701")), DialAction::NotFeature);
    }

    #[test]
    fn bad_codes_are_refused() {
        let p = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert!(check_params(&p("park_direct", "")).is_err());
        assert!(check_params(&p("park_direct", "*6a")).is_err());
        assert!(check_params(&p("retrieve", " , ")).is_err());
        assert!(
            check_params(&p("retrieve", "*68")).is_err(),
            "clashes with park_direct"
        );
        assert!(check_params(&p("park_group", "*12345678901234567")).is_err());
    }
}
