//! Where a parked call rings when nobody retrieved it in time.
//!
//! Params (the `[recall]` service settings merged with the orbit's group):
//! - `option`: one of
//!   - `parker-only` (Webex): ring the parker, then re-park and ring again
//!     after the orbit's recall time, for as long as the call lives;
//!   - `parker-then-fallback` (default; Lync `MaxCallPickupAttempts` and
//!     `OnTimeoutURI`): ring the parker `max_attempts` times, then the
//!     fallback, then disconnect;
//!   - `parker-then-hunt-group` (Webex): ring the parker, then the hunt group
//!     for `hunt_group_wait`, then the fallback if any, then disconnect;
//!   - `hunt-group-only` (Webex): ring the hunt group, then the fallback if
//!     any, then disconnect;
//!   - `transfer-back` (sipX): transfer the call straight back to the parker.
//! - `max_attempts` (1..=10, default 1): rings of the parker.
//! - `ring_time` (default `30s`): how long each ring of the parker or the
//!   fallback lasts.
//! - `fallback`: a URI (Lync `OnTimeoutURI`); empty means none.
//! - `hunt_group`: a URI; `hunt_group_wait` (default `30s`) is its ring time.
//! - `ring_pattern`: `normal`, `long-long`, `short-short-long` or
//!   `short-long-short`, sent as `Alert-Info` so phones ring distinctly.
//!
//! An unknown parker (empty) is replaced by the fallback, or else the hunt
//! group: a plan never rings nobody.

use callpark_core::{
    EndAction, ParkedCall, RING_MS_RANGE, RecallPlan, RecallStep, is_routable_uri, param,
    parse_duration,
};

/// The recall options of the default plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecallOption {
    ParkerOnly,
    ParkerThenFallback,
    ParkerThenHuntGroup,
    HuntGroupOnly,
    TransferBack,
}

impl RecallOption {
    pub const NAMES: [&'static str; 5] = [
        "parker-only",
        "parker-then-fallback",
        "parker-then-hunt-group",
        "hunt-group-only",
        "transfer-back",
    ];

    pub fn parse(name: &str) -> Option<RecallOption> {
        Some(match name {
            "parker-only" => RecallOption::ParkerOnly,
            "parker-then-fallback" => RecallOption::ParkerThenFallback,
            "parker-then-hunt-group" => RecallOption::ParkerThenHuntGroup,
            "hunt-group-only" => RecallOption::HuntGroupOnly,
            "transfer-back" => RecallOption::TransferBack,
            _ => return None,
        })
    }
}

/// Distinctive ring patterns and the `Alert-Info` that asks a phone for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingPattern {
    Normal,
    LongLong,
    ShortShortLong,
    ShortLongShort,
}

impl RingPattern {
    pub const NAMES: [&'static str; 4] = [
        "normal",
        "long-long",
        "short-short-long",
        "short-long-short",
    ];

    pub fn parse(name: &str) -> Option<RingPattern> {
        Some(match name {
            "normal" => RingPattern::Normal,
            "long-long" => RingPattern::LongLong,
            "short-short-long" => RingPattern::ShortShortLong,
            "short-long-short" => RingPattern::ShortLongShort,
            _ => return None,
        })
    }

    /// The `Alert-Info` value. The Bellcore distinctive ring cadences dr2..dr4
    /// are the ones Polycom, Yealink, Cisco and Grandstream phones map to
    /// long-long, short-short-long and short-long-short; the normal ring
    /// sends no header, which every phone understands.
    pub fn alert_info(self) -> Option<String> {
        let dr = match self {
            RingPattern::Normal => return None,
            RingPattern::LongLong => 2,
            RingPattern::ShortShortLong => 3,
            RingPattern::ShortLongShort => 4,
        };
        Some(format!("<http://127.0.0.1/Bellcore-dr{dr}>"))
    }
}

/// The recall settings, read from params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallSettings {
    pub option: RecallOption,
    pub max_attempts: u32,
    pub ring_ms: u32,
    pub fallback: Option<String>,
    pub hunt_group: Option<String>,
    pub hunt_group_wait_ms: u32,
    pub ring_pattern: RingPattern,
}

impl Default for RecallSettings {
    fn default() -> Self {
        RecallSettings {
            option: RecallOption::ParkerThenFallback,
            max_attempts: 1,
            ring_ms: 30_000,
            fallback: None,
            hunt_group: None,
            hunt_group_wait_ms: 30_000,
            ring_pattern: RingPattern::Normal,
        }
    }
}

impl RecallSettings {
    pub fn from_params(params: &[(String, String)]) -> Result<RecallSettings, String> {
        let mut s = RecallSettings::default();
        if let Some(v) = param(params, "option") {
            s.option = RecallOption::parse(v).ok_or_else(|| {
                format!(
                    "option `{v}` is not one of {}",
                    RecallOption::NAMES.join(", ")
                )
            })?;
        }
        if let Some(v) = param(params, "max_attempts") {
            s.max_attempts = v
                .parse()
                .ok()
                .filter(|n| (1..=10).contains(n))
                .ok_or_else(|| format!("max_attempts `{v}` must be a whole number 1..=10"))?;
        }
        if let Some(v) = param(params, "ring_time") {
            s.ring_ms = ring_ms("ring_time", v)?;
        }
        if let Some(v) = param(params, "hunt_group_wait") {
            s.hunt_group_wait_ms = ring_ms("hunt_group_wait", v)?;
        }
        s.fallback = uri_param(params, "fallback")?;
        s.hunt_group = uri_param(params, "hunt_group")?;
        if let Some(v) = param(params, "ring_pattern") {
            s.ring_pattern = RingPattern::parse(v).ok_or_else(|| {
                format!(
                    "ring_pattern `{v}` is not one of {}",
                    RingPattern::NAMES.join(", ")
                )
            })?;
        }
        Ok(s)
    }
}

fn ring_ms(key: &str, v: &str) -> Result<u32, String> {
    let d = parse_duration(v).map_err(|e| format!("{key}: {e}"))?;
    u32::try_from(d.as_millis())
        .ok()
        .filter(|ms| RING_MS_RANGE.contains(ms))
        .ok_or_else(|| format!("{key} `{v}` must be between 1s and 10m"))
}

fn uri_param(params: &[(String, String)], key: &str) -> Result<Option<String>, String> {
    match param(params, key).map(str::trim) {
        None | Some("") => Ok(None),
        Some(uri) if is_routable_uri(uri) => Ok(Some(uri.to_string())),
        Some(uri) => Err(format!("{key} `{uri}` is not a sip:, sips: or tel: URI")),
    }
}

/// Validates the recall params.
pub fn check_params(params: &[(String, String)]) -> Result<(), String> {
    crate::check_unique_keys(params)?;
    RecallSettings::from_params(params).map(|_| ())
}

/// The display name recall INVITEs carry, e.g. "Park 701: Alice".
pub fn recall_display(call: &ParkedCall) -> String {
    let who = if call.parked_display.trim().is_empty() {
        user_part(&call.parked_uri)
    } else {
        call.parked_display.trim()
    };
    format!("Park {}: {}", call.orbit, who)
}

/// `sip:alice@example.com` -> `alice`; `tel:+1555` -> `+1555`.
fn user_part(uri: &str) -> &str {
    let rest = uri.split_once(':').map_or(uri, |(_, r)| r);
    let rest = rest.split(['@', ';', '?']).next().unwrap_or(rest);
    if rest.is_empty() { uri } else { rest }
}

/// Plans the recall of a parked call.
pub fn plan(call: &ParkedCall) -> RecallPlan {
    let s = RecallSettings::from_params(&call.params).unwrap_or_default();
    let display = recall_display(call);
    let step = |target: &str, ring_ms: u32| RecallStep {
        target: target.to_string(),
        ring_ms,
        alert_info: s.ring_pattern.alert_info(),
        display: Some(display.clone()),
    };
    let parker = is_routable_uri(call.parker.trim()).then(|| call.parker.trim());
    let parker_steps = || -> Vec<RecallStep> {
        match parker {
            Some(p) => (0..s.max_attempts).map(|_| step(p, s.ring_ms)).collect(),
            // Unknown parker: the fallback, or else the hunt group, stands in.
            None => substitute(&s)
                .map(|(t, ms)| step(&t, ms))
                .into_iter()
                .collect(),
        }
    };
    let fallback_step = || s.fallback.as_deref().map(|f| step(f, s.ring_ms));
    let hunt_step = || {
        s.hunt_group
            .as_deref()
            .map(|h| step(h, s.hunt_group_wait_ms))
    };

    let mut steps = Vec::new();
    let end = match s.option {
        RecallOption::ParkerOnly => {
            steps.extend(parker_steps());
            EndAction::RePark(None)
        }
        RecallOption::ParkerThenFallback => {
            steps.extend(parker_steps());
            if parker.is_some() {
                steps.extend(fallback_step());
            }
            EndAction::Disconnect
        }
        RecallOption::ParkerThenHuntGroup => {
            if parker.is_some() {
                steps.extend(parker_steps());
            }
            steps.extend(hunt_step());
            steps.extend(fallback_step());
            EndAction::Disconnect
        }
        RecallOption::HuntGroupOnly => {
            steps.extend(hunt_step());
            steps.extend(fallback_step());
            if steps.is_empty() {
                // No hunt group configured for this orbit: the parker is
                // better than nobody.
                steps.extend(parker.map(|p| step(p, s.ring_ms)));
            }
            EndAction::Disconnect
        }
        RecallOption::TransferBack => match parker {
            Some(p) => EndAction::Transfer(p.to_string()),
            None => match substitute(&s) {
                Some((t, _)) => EndAction::Transfer(t),
                None => EndAction::Disconnect,
            },
        },
    };
    RecallPlan { steps, end }
}

fn substitute(s: &RecallSettings) -> Option<(String, u32)> {
    s.fallback
        .clone()
        .map(|f| (f, s.ring_ms))
        .or_else(|| s.hunt_group.clone().map(|h| (h, s.hunt_group_wait_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use callpark_core::{RecallReason, check_recall_plan};

    const ALICE: &str = "sip:alice@example.com";
    const OPERATOR: &str = "sip:operator@example.com";
    const HUNT: &str = "sip:frontdesk@example.com";

    fn call(parker: &str, params: &[(&str, &str)]) -> ParkedCall {
        ParkedCall {
            orbit: "701".into(),
            group: None,
            parker: parker.into(),
            parked_uri: "sip:+15551234@carrier.example".into(),
            parked_display: "Bob".into(),
            parked_at_ms: 1_000,
            now_ms: 46_000,
            recalls_done: 0,
            reason: RecallReason::Timeout,
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn targets(plan: &RecallPlan) -> Vec<(&str, u32)> {
        plan.steps
            .iter()
            .map(|s| (s.target.as_str(), s.ring_ms))
            .collect()
    }

    fn planned(c: &ParkedCall) -> RecallPlan {
        let p = plan(c);
        assert_eq!(check_recall_plan(&p), Ok(()));
        p
    }

    #[test]
    fn lync_parker_n_times_then_fallback_then_disconnect() {
        let p = planned(&call(
            ALICE,
            &[
                ("option", "parker-then-fallback"),
                ("max_attempts", "3"),
                ("ring_time", "20s"),
                ("fallback", OPERATOR),
            ],
        ));
        assert_eq!(
            targets(&p),
            [
                (ALICE, 20_000),
                (ALICE, 20_000),
                (ALICE, 20_000),
                (OPERATOR, 20_000)
            ]
        );
        assert_eq!(p.end, EndAction::Disconnect);
        // Without a fallback: the parker, then disconnect.
        let p = planned(&call(ALICE, &[("max_attempts", "1")]));
        assert_eq!(targets(&p), [(ALICE, 30_000)]);
        assert_eq!(p.end, EndAction::Disconnect);
    }

    #[test]
    fn webex_parker_only_reparks() {
        let p = planned(&call(ALICE, &[("option", "parker-only")]));
        assert_eq!(targets(&p), [(ALICE, 30_000)]);
        assert_eq!(p.end, EndAction::RePark(None));
    }

    #[test]
    fn webex_parker_then_hunt_group_for_its_wait_time() {
        let p = planned(&call(
            ALICE,
            &[
                ("option", "parker-then-hunt-group"),
                ("hunt_group", HUNT),
                ("hunt_group_wait", "45s"),
            ],
        ));
        assert_eq!(targets(&p), [(ALICE, 30_000), (HUNT, 45_000)]);
        assert_eq!(p.end, EndAction::Disconnect);
    }

    #[test]
    fn webex_hunt_group_only() {
        let p = planned(&call(
            ALICE,
            &[
                ("option", "hunt-group-only"),
                ("hunt_group", HUNT),
                ("hunt_group_wait", "1m"),
            ],
        ));
        assert_eq!(targets(&p), [(HUNT, 60_000)]);
        assert_eq!(p.end, EndAction::Disconnect);
    }

    #[test]
    fn sipx_transfer_back() {
        let p = planned(&call(ALICE, &[("option", "transfer-back")]));
        assert!(p.steps.is_empty());
        assert_eq!(p.end, EndAction::Transfer(ALICE.into()));
        let p = planned(&call(
            "",
            &[("option", "transfer-back"), ("fallback", OPERATOR)],
        ));
        assert_eq!(p.end, EndAction::Transfer(OPERATOR.into()));
        let p = planned(&call("", &[("option", "transfer-back")]));
        assert_eq!(p.end, EndAction::Disconnect);
    }

    #[test]
    fn unknown_parker_falls_through_to_the_fallback_never_nobody() {
        for option in RecallOption::NAMES {
            let p = planned(&call(
                "",
                &[
                    ("option", option),
                    ("fallback", OPERATOR),
                    ("max_attempts", "3"),
                ],
            ));
            let rung: Vec<_> = p.steps.iter().map(|s| s.target.as_str()).collect();
            assert!(rung.iter().all(|t| *t == OPERATOR), "{option}: {rung:?}");
            if option != "transfer-back" {
                assert_eq!(rung, [OPERATOR], "{option}");
            }
        }
        // No fallback: the hunt group stands in.
        let p = planned(&call("", &[("hunt_group", HUNT)]));
        assert_eq!(targets(&p), [(HUNT, 30_000)]);
        // Nobody at all: no step rings an empty target.
        let p = planned(&call("", &[]));
        assert!(p.steps.is_empty());
        assert_eq!(p.end, EndAction::Disconnect);
    }

    #[test]
    fn ring_patterns_map_to_alert_info_and_display_names_orbit_and_caller() {
        let expected = [
            ("normal", None),
            ("long-long", Some("<http://127.0.0.1/Bellcore-dr2>")),
            ("short-short-long", Some("<http://127.0.0.1/Bellcore-dr3>")),
            ("short-long-short", Some("<http://127.0.0.1/Bellcore-dr4>")),
        ];
        for (pattern, alert) in expected {
            let p = planned(&call(ALICE, &[("ring_pattern", pattern)]));
            assert_eq!(p.steps[0].alert_info.as_deref(), alert, "{pattern}");
            assert_eq!(p.steps[0].display.as_deref(), Some("Park 701: Bob"));
        }
        let mut c = call(ALICE, &[]);
        c.parked_display = String::new();
        assert_eq!(recall_display(&c), "Park 701: +15551234");
    }

    #[test]
    fn params_are_checked() {
        let p = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert!(check_params(&[]).is_ok());
        assert!(check_params(&p("max_attempts", "10")).is_ok());
        assert!(check_params(&p("max_attempts", "0")).is_err());
        assert!(check_params(&p("max_attempts", "11")).is_err());
        assert!(check_params(&p("option", "ring-everyone")).is_err());
        assert!(check_params(&p("ring_time", "30")).is_err());
        assert!(check_params(&p("ring_time", "11m")).is_err());
        assert!(check_params(&p("fallback", "operator")).is_err());
        assert!(check_params(&p("fallback", "")).is_ok());
        assert!(check_params(&p("ring_pattern", "jingle")).is_err());
    }
}
