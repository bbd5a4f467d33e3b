//! The configuration resources under `/api/v1` (docs/api.md): orbit
//! ranges, orbits, groups, settings sections, the effective configuration
//! with each object's source, and music.
//!
//! Every write goes through `write`: the change is planned on the store's
//! objects, the whole configuration is validated by the validator
//! `callpark check` uses, music is decoded, and only then is the change
//! committed to the store and handed to the engine (the path SIGHUP takes),
//! so a refused write changes nothing anywhere. `?dry_run=true` stops
//! before the commit and answers with what would change.

use std::collections::{BTreeMap, HashMap};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::admin::{
    AdminRequest, Api, ApiConventions, OrbitView, Problem, Role, ask, authorize, problem,
};
use crate::config::{
    AccessConfig, Config, FeaturesConfig, GroupConfig, OrbitConfig, OrbitDefaults, RangeConfig,
    RecallConfig,
};
use crate::provision::{
    MAX_MUSIC_BYTES, Provisioning, Refusal, SECTIONS, Source, Stored, check_music_name, put,
};
use crate::store::{Change, ObjectKind};

type Answer = Result<Response, Problem>;

/// Orbit numbers a write adds, removes or changes: the count, and at most
/// `LISTED` of the numbers.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrbitList {
    pub count: usize,
    pub numbers: Vec<String>,
    /// More numbers than were listed.
    pub truncated: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrbitChanges {
    pub added: OrbitList,
    pub removed: OrbitList,
    pub changed: OrbitList,
}

/// Calls a forced removal recalls, per orbit.
#[derive(Debug, Serialize, ToSchema)]
pub struct Recalled {
    pub orbit: String,
    pub calls: usize,
}

/// What a write changes (or, with `dry_run`, would change).
#[derive(Debug, Serialize, ToSchema)]
pub struct Changes {
    pub orbits: OrbitChanges,
    /// Groups added, changed or removed.
    pub groups: Vec<String>,
    /// Settings sections changed.
    pub settings: Vec<String>,
    pub recalled: Vec<Recalled>,
    pub dry_run: bool,
}

/// A configuration object with the source it comes from, and the answer
/// of a write of one.
macro_rules! sourced {
    ($out:ident, $written:ident, $object:ty, $kind:ident, $key:ident, $noun:literal,
     $effective:ident, $stored:ident) => {
        #[derive(Debug, Serialize, ToSchema)]
        pub struct $out {
            #[serde(flatten)]
            pub object: $object,
            pub source: Source,
        }

        /// The object after the write (`null` once deleted) and what changed.
        #[derive(Debug, Serialize, ToSchema)]
        pub struct $written {
            pub object: Option<$out>,
            pub changes: Changes,
        }

        impl Listed for $object {
            type Out = $out;
            type Written = $written;
            fn out(self, source: Source) -> $out {
                $out {
                    object: self,
                    source,
                }
            }
            fn written(object: Option<$out>, changes: Changes) -> $written {
                $written { object, changes }
            }
            const KIND: ObjectKind = ObjectKind::$kind;
            const KEY: &'static str = stringify!($key);
            const NOUN: &'static str = $noun;
            fn key(&self) -> &str {
                &self.$key
            }
            fn effective(config: &Config) -> &[Self] {
                &config.$effective
            }
            fn stored(stored: &Stored) -> &[Self] {
                &stored.$stored
            }
        }
    };
}
sourced!(
    RangeOut,
    RangeWritten,
    RangeConfig,
    Range,
    name,
    "orbit range",
    range,
    ranges
);
sourced!(
    OrbitSettingsOut,
    OrbitSettingsWritten,
    OrbitConfig,
    Orbit,
    number,
    "orbit settings",
    orbit,
    orbits
);
sourced!(
    GroupOut,
    GroupWritten,
    GroupConfig,
    Group,
    name,
    "group",
    group,
    groups
);

/// An orbit: the engine's view (with what is parked on it now), its
/// range, its own settings, and where those come from (its settings'
/// source, else its range's).
#[derive(Debug, Serialize, ToSchema)]
pub struct OrbitOut {
    #[serde(flatten)]
    pub view: OrbitView,
    pub range: Option<String>,
    pub settings: Option<OrbitConfig>,
    pub source: Source,
}

/// A settings section in effect and its source.
#[derive(Debug, Serialize, ToSchema)]
pub struct SectionOut {
    pub source: Source,
    /// The section, every key with its value in effect.
    #[schema(value_type = Object)]
    pub value: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SectionWritten {
    pub object: SectionOut,
    pub changes: Changes,
}

/// The effective configuration, each object with its source.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigOut {
    /// The configuration file; `null` with the embedded default.
    pub file: Option<String>,
    pub store: String,
    pub schema_version: Option<u32>,
    pub ranges: Vec<RangeOut>,
    pub orbits: Vec<OrbitSettingsOut>,
    pub groups: Vec<GroupOut>,
    pub settings: BTreeMap<String, SectionOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MusicOut {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
    pub updated_ms: u64,
    /// `media.music` and the orbits that play it.
    pub used_by: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MusicStored {
    pub name: String,
    pub bytes: usize,
    pub sha256: String,
    /// 20 ms frames of audio once decoded.
    pub frames: usize,
    pub used_by: Vec<String>,
    pub dry_run: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MusicDeleted {
    pub name: String,
    pub deleted: bool,
    pub dry_run: bool,
}

/// An import job and every row's status.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportOut {
    pub id: i64,
    #[serde(flatten)]
    pub report: crate::import::ImportReport,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportSummary {
    pub id: i64,
    pub created_ms: u64,
    pub kind: String,
    pub dry_run: bool,
}

/// Where a slot's plugin comes from: `file` (the configuration names
/// it), `store` (uploaded through the API) or `default` (embedded).
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginSourceOut {
    pub kind: String,
    pub file: Option<String>,
}

/// The plugin loaded in a slot.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoadedOut {
    pub label: String,
    /// Counts up with every swap into the slot.
    pub generation: u64,
    /// SHA-256 of the `.wasm`.
    pub digest: String,
    pub params: BTreeMap<String, String>,
    /// The `callpark:policy` version it was built against.
    pub wit_version: String,
}

/// A slot's counters since start.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginStatsOut {
    pub calls: u64,
    pub traps: u64,
    pub timeouts: u64,
    pub invalid: u64,
    pub fallbacks: u64,
    pub rejects: u64,
    pub loads: u64,
    pub refused_loads: u64,
    pub short_circuits: u64,
    /// Decision latency quantiles (to the histogram's power of two);
    /// `null` before the first decision.
    pub decision_p50_us: Option<u64>,
    pub decision_p99_us: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginOut {
    pub slot: String,
    pub source: PluginSourceOut,
    pub params_source: Source,
    pub loaded: Option<LoadedOut>,
    pub stats: PluginStatsOut,
    /// The hosts the slot's plugin may reach over HTTP (`events_http`; the
    /// events slot only), and how many requests elsewhere were refused.
    pub http_hosts: Vec<String>,
    pub http_denied: u64,
}

/// A `.wasm` that would load (a dry run).
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginChecked {
    pub dry_run: bool,
    pub slot: String,
    pub digest: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ParamsOut {
    pub source: Source,
    pub value: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ParamsWritten {
    pub object: ParamsOut,
    pub changes: Changes,
}

fn ok<T: Serialize>(status: StatusCode, value: T) -> Response {
    (status, axum::Json(value)).into_response()
}
type Query_ = Query<HashMap<String, String>>;

/// `?dry_run=` and `?force=` of a write.
#[derive(Debug, Default, Clone, Copy, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Flags {
    /// Validate and answer what would change; apply nothing.
    #[param(required = false)]
    dry_run: bool,
    /// Remove orbits that hold calls anyway (their calls are recalled,
    /// reason `orbit-removed`).
    #[param(required = false)]
    force: bool,
}

fn flags(query: &HashMap<String, String>) -> Result<Flags, Problem> {
    let mut f = Flags::default();
    for (key, value) in query {
        let on = match value.as_str() {
            "true" | "1" | "" => true,
            "false" | "0" => false,
            _ => {
                return Err(invalid(
                    key,
                    format!("`{value}` is not true or false"),
                    StatusCode::BAD_REQUEST,
                ));
            }
        };
        match key.as_str() {
            "dry_run" => f.dry_run = on,
            "force" => f.force = on,
            _ => {
                return Err(invalid(
                    key,
                    "unknown query parameter (a write takes dry_run and force)".into(),
                    StatusCode::BAD_REQUEST,
                ));
            }
        }
    }
    Ok(f)
}

/// A problem about one field of the request.
fn invalid(field: &str, reason: String, status: StatusCode) -> Problem {
    Problem {
        status,
        detail: if field.is_empty() {
            reason.clone()
        } else {
            format!("{field}: {reason}")
        },
        errors: vec![json!({ "field": field, "reason": reason })],
    }
}

/// A JSON body as `T`, refused with the path of the field that does not
/// fit (`capacity: invalid type ...`).
pub(crate) fn parse_body<T: DeserializeOwned>(value: Value) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        invalid(
            &field,
            e.inner().to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    })
}

pub(crate) fn json_body(bytes: &[u8]) -> Result<Value, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid(
            "",
            "the body is empty; send a JSON object".into(),
            StatusCode::BAD_REQUEST,
        ));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        invalid(
            "",
            format!("the body is not JSON: {e}"),
            StatusCode::BAD_REQUEST,
        )
    })?;
    if !value.is_object() {
        return Err(invalid(
            "",
            "the body must be a JSON object".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ));
    }
    Ok(value)
}

fn refused(r: Refusal) -> Problem {
    let mut error = json!({ "field": r.field, "reason": r.message });
    if let Some((kind, key)) = &r.object {
        error["object"] = json!({ "kind": kind.name(), "key": key });
    }
    if let Some(file) = &r.file {
        error["file"] = json!(file);
        error["line"] = json!(r.line);
    }
    Problem {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        detail: r.to_string(),
        errors: vec![error],
    }
}

/// RFC 7396 JSON merge patch: `patch` laid over `target`; `null` removes.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let map = target.as_object_mut().expect("an object");
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Orbit numbers, at most this many listed in a write's report (a range
/// may hold 100,000): the counts are always whole.
const LISTED: usize = 1000;

fn listed(numbers: Vec<&String>) -> OrbitList {
    OrbitList {
        count: numbers.len(),
        numbers: numbers.iter().take(LISTED).map(|n| n.to_string()).collect(),
        truncated: numbers.len() > LISTED,
    }
}

/// What a write changes: orbits added, removed and changed (any of their
/// settings), groups and settings sections changed, and the parked calls
/// a forced removal recalls.
fn report(
    before: &Config,
    after: &Config,
    lot_b: &callpark_core::lot::ParkLot,
    lot_a: &callpark_core::lot::ParkLot,
    recalled: &[(String, usize)],
) -> Changes {
    let b: BTreeMap<&String, _> = lot_b.orbits().iter().map(|o| (&o.number, o)).collect();
    let a: BTreeMap<&String, _> = lot_a.orbits().iter().map(|o| (&o.number, o)).collect();
    let added = a.keys().filter(|k| !b.contains_key(*k)).copied().collect();
    let removed = b.keys().filter(|k| !a.contains_key(*k)).copied().collect();
    let changed = a
        .iter()
        .filter(|(k, o)| b.get(*k).is_some_and(|was| was != *o))
        .map(|(k, _)| *k)
        .collect();
    let gb: BTreeMap<&String, &GroupConfig> = before.group.iter().map(|g| (&g.name, g)).collect();
    let ga: BTreeMap<&String, &GroupConfig> = after.group.iter().map(|g| (&g.name, g)).collect();
    let groups_changed: Vec<&String> = ga
        .iter()
        .filter(|(k, g)| gb.get(*k) != Some(*g))
        .map(|(k, _)| *k)
        .chain(gb.keys().filter(|k| !ga.contains_key(*k)).copied())
        .collect();
    let settings: Vec<&str> = SECTIONS
        .into_iter()
        .filter(|s| section_value(before, s) != section_value(after, s))
        .collect();
    Changes {
        orbits: OrbitChanges {
            added: listed(added),
            removed: listed(removed),
            changed: listed(changed),
        },
        groups: groups_changed.into_iter().cloned().collect(),
        settings: settings.into_iter().map(String::from).collect(),
        recalled: recalled
            .iter()
            .map(|(orbit, calls)| Recalled {
                orbit: orbit.clone(),
                calls: *calls,
            })
            .collect(),
        dry_run: false,
    }
}

/// Plans, validates, commits and applies the changes `build` makes from
/// the current state; with `dry_run` it stops before the commit. Answers
/// the provisioning state after the write and the report.
async fn write<'a>(
    api: &'a Api,
    flags: Flags,
    build: impl FnOnce(&Provisioning) -> Result<Vec<Change>, Problem>,
) -> Result<(tokio::sync::MutexGuard<'a, Provisioning>, Changes), Problem> {
    let mut prov = api.live.prov.lock().await;
    let changes = build(&prov)?;
    let (stored, config) = prov.plan(&changes).map_err(refused)?;
    config
        .security_settings([0; 32])
        .map_err(|e| problem(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    // Orbits this write takes away that hold calls: refused unless forced.
    let lot = config.lot();
    let removed = prov.orbits_removed(&lot);
    let mut holding = Vec::new();
    if !removed.is_empty() {
        let views = ask(&api.live.engine, AdminRequest::Orbits).await?;
        holding = views
            .into_iter()
            .filter(|v| v.parked > 0 && removed.contains(&v.number))
            .map(|v| (v.number, v.parked))
            .collect();
        if !holding.is_empty() && !flags.force {
            let (orbit, calls) = &holding[0];
            return Err(Problem {
                status: StatusCode::CONFLICT,
                detail: format!(
                    "orbit {orbit} holds {calls} parked call{}: add ?force=true to remove it anyway (its calls are recalled, reason orbit-removed)",
                    if *calls == 1 { "" } else { "s" }
                ),
                errors: holding
                    .iter()
                    .map(|(orbit, calls)| json!({ "orbit": orbit, "parked": calls }))
                    .collect(),
            });
        }
    }
    let mut summary = report(&prov.config, &config, &prov.lot, &lot, &holding);
    let music = tokio::task::block_in_place(|| prov.music_library(&config))
        .map_err(|e| problem(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")))?;
    summary.dry_run = flags.dry_run;
    if flags.dry_run {
        return Ok((prov, summary));
    }
    let plugins_changed = prov.config.plugins != config.plugins
        || prov.config.plugin_params() != config.plugin_params();
    prov.commit(&changes, stored, config.clone(), lot.clone())
        .map_err(|e| {
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the store did not keep the change ({e:#}); nothing changed"),
            )
        })?;
    api.live
        .apply(&prov, config, lot, music, plugins_changed)
        .await?;
    tracing::info!(
        trigger = "api",
        changes = changes.len(),
        recalled = holding.len(),
        "configuration applied"
    );
    Ok((prov, summary))
}

/// A 409 when the file configures the object: what the file names is
/// read-only through the API.
fn not_file_owned(prov: &Provisioning, kind: ObjectKind, key: &str) -> Result<(), Problem> {
    match prov.file.line_of_object(kind, key) {
        Some(line) => Err(Problem {
            status: StatusCode::CONFLICT,
            detail: format!(
                "{} `{key}` is configured in {} line {line}: change it there (the API changes what the store holds)",
                kind.name(),
                prov.file.name
            ),
            errors: vec![json!({ "file": prov.file.name, "line": line })],
        }),
        None => Ok(()),
    }
}

fn not_found(kind: &str, key: &str) -> Problem {
    problem(StatusCode::NOT_FOUND, format!("no {kind} `{key}`"))
}

/// Ranges, orbits and groups: the objects kept as lists, by key.
trait Listed: Serialize + DeserializeOwned + Clone + PartialEq + Send + 'static {
    /// The object with its source, and the answer of a write of one.
    type Out: Serialize;
    type Written: Serialize;
    fn out(self, source: Source) -> Self::Out;
    fn written(object: Option<Self::Out>, changes: Changes) -> Self::Written;
    const KIND: ObjectKind;
    /// The body field that holds the key.
    const KEY: &'static str;
    /// What the API calls it in messages.
    const NOUN: &'static str;
    fn key(&self) -> &str;
    fn effective(config: &Config) -> &[Self];
    fn stored(stored: &Stored) -> &[Self];
}

/// An object with its source.
fn with_source<T: Listed>(prov: &Provisioning, object: &T) -> T::Out {
    object.clone().out(prov.source_of(T::KIND, object.key()))
}

/// The body as a `T` whose key is `key`: the key may be left out of the
/// body, and may not differ from the path's.
fn keyed<T: Listed>(mut body: Value, key: &str) -> Result<T, Problem> {
    match body.get(T::KEY) {
        None => {
            body[T::KEY] = json!(key);
        }
        Some(v) if v.as_str() == Some(key) => {}
        Some(v) => {
            return Err(invalid(
                T::KEY,
                format!("the body says {v}, the path `{key}`: they must agree (PATCH renames)"),
                StatusCode::UNPROCESSABLE_ENTITY,
            ));
        }
    }
    parse_body(body)
}

fn stored_entry<'p, T: Listed>(prov: &'p Provisioning, key: &str) -> Option<&'p T> {
    T::stored(&prov.stored).iter().find(|o| o.key() == key)
}

async fn list<T: Listed>(State(api): State<Api>, headers: HeaderMap) -> Answer {
    authorize(&api, &headers, Role::Viewer)?;
    let prov = api.live.prov.lock().await;
    let all: Vec<T::Out> = T::effective(&prov.config)
        .iter()
        .map(|o| with_source(&prov, o))
        .collect();
    Ok(ok(StatusCode::OK, all))
}

async fn get_one<T: Listed>(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Answer {
    authorize(&api, &headers, Role::Viewer)?;
    let prov = api.live.prov.lock().await;
    match T::effective(&prov.config).iter().find(|o| o.key() == key) {
        Some(o) => Ok(ok(StatusCode::OK, with_source(&prov, o))),
        None => Err(not_found(T::NOUN, &key)),
    }
}

/// The answer of a write: the object after it (or `null`), what changed,
/// whether it was a dry run.
fn written<T: Listed>(
    prov: &Provisioning,
    key: &str,
    status: StatusCode,
    report: Changes,
) -> Response {
    let object = T::effective(&prov.config)
        .iter()
        .find(|o| o.key() == key)
        .map(|o| with_source(prov, o));
    let status = if report.dry_run {
        StatusCode::OK
    } else {
        status
    };
    ok(status, T::written(object, report))
}

async fn create<T: Listed>(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(query): Query_,
    body: Bytes,
) -> Answer {
    authorize(&api, &headers, Role::Admin)?;
    let flags = flags(&query)?;
    let object: T = parse_body(json_body(&body)?)?;
    let key = object.key().to_string();
    if key.is_empty() {
        return Err(invalid(
            T::KEY,
            "required".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ));
    }
    let (prov, report) = write(&api, flags, |prov| {
        not_file_owned(prov, T::KIND, &key)?;
        if stored_entry::<T>(prov, &key).is_some() {
            return Err(problem(
                StatusCode::CONFLICT,
                format!("{} `{key}` exists: PUT or PATCH it to change it", T::NOUN),
            ));
        }
        Ok(vec![put(T::KIND, &key, &object)])
    })
    .await?;
    Ok(written::<T>(&prov, &key, StatusCode::CREATED, report))
}

async fn replace<T: Listed>(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(query): Query_,
    body: Bytes,
) -> Answer {
    authorize(&api, &headers, Role::Admin)?;
    let flags = flags(&query)?;
    let object: T = keyed(json_body(&body)?, &key)?;
    let mut created = false;
    let (prov, report) = write(&api, flags, |prov| {
        not_file_owned(prov, T::KIND, &key)?;
        created = stored_entry::<T>(prov, &key).is_none();
        Ok(vec![put(T::KIND, &key, &object)])
    })
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(written::<T>(&prov, &key, status, report))
}

async fn patch<T: Listed>(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(query): Query_,
    body: Bytes,
) -> Answer {
    authorize(&api, &headers, Role::Admin)?;
    let flags = flags(&query)?;
    let patch = json_body(&body)?;
    let mut new_key = key.clone();
    let (prov, report) = write(&api, flags, |prov| {
        not_file_owned(prov, T::KIND, &key)?;
        let mut current = match stored_entry::<T>(prov, &key) {
            Some(o) => serde_json::to_value(o).expect("serializes"),
            // An orbit of a range gets settings of its own.
            None if T::KIND == ObjectKind::Orbit && prov.lot.orbit(&key).is_some() => {
                json!({ "number": key })
            }
            None => return Err(not_found(T::NOUN, &key)),
        };
        merge_patch(&mut current, &patch);
        let object: T = parse_body(current)?;
        new_key = object.key().to_string();
        let mut changes = Vec::new();
        if new_key != key {
            not_file_owned(prov, T::KIND, &new_key)?;
            if stored_entry::<T>(prov, &new_key).is_some() {
                return Err(problem(
                    StatusCode::CONFLICT,
                    format!("{} `{new_key}` exists", T::NOUN),
                ));
            }
            changes.push(Change::Delete(T::KIND, key.clone()));
        }
        changes.push(put(T::KIND, &new_key, &object));
        Ok(changes)
    })
    .await?;
    Ok(written::<T>(&prov, &new_key, StatusCode::OK, report))
}

async fn remove<T: Listed>(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(query): Query_,
) -> Answer {
    authorize(&api, &headers, Role::Admin)?;
    let flags = flags(&query)?;
    let (_prov, report) = write(&api, flags, |prov| {
        not_file_owned(prov, T::KIND, &key)?;
        if stored_entry::<T>(prov, &key).is_none() {
            return Err(if T::KIND == ObjectKind::Orbit && prov.lot.orbit(&key).is_some() {
                problem(
                    StatusCode::NOT_FOUND,
                    format!("orbit {key} has no settings of its own: it comes from a range; change or delete the range"),
                )
            } else {
                not_found(T::NOUN, &key)
            });
        }
        let mut changes = vec![Change::Delete(T::KIND, key.clone())];
        if T::KIND == ObjectKind::Range {
            changes.extend(overrides_of_range(prov, &key));
        }
        Ok(changes)
    })
    .await?;
    Ok(ok(StatusCode::OK, T::written(None, report)))
}

/// Deleting a range deletes the settings the store keeps for its orbits
/// (they were overrides of the range): left behind, each would become an
/// orbit of its own outside any range. An orbit another range also
/// covers keeps them.
fn overrides_of_range(prov: &Provisioning, name: &str) -> Vec<Change> {
    let Some(range) = prov.config.range.iter().find(|r| r.name == name) else {
        return Vec::new();
    };
    prov.stored
        .orbits
        .iter()
        .filter(|o| range.contains(&o.number))
        .filter(|o| {
            !prov
                .config
                .range
                .iter()
                .any(|r| r.name != name && r.contains(&o.number))
        })
        .map(|o| Change::Delete(ObjectKind::Orbit, o.number.clone()))
        .collect()
}

/// An orbit as the API shows it: the engine's view (with what is parked
/// on it now), its range, its own settings and where they come from.
fn orbit_json(prov: &Provisioning, view: OrbitView) -> OrbitOut {
    let range = prov.config.range.iter().find(|r| r.contains(&view.number));
    let entry = prov.config.orbit.iter().find(|o| o.number == view.number);
    let source = match (entry, range) {
        (Some(_), _) => prov.source_of(ObjectKind::Orbit, &view.number),
        (None, Some(r)) => prov.source_of(ObjectKind::Range, &r.name),
        (None, None) => Source::Default,
    };
    OrbitOut {
        range: range.map(|r| r.name.clone()),
        settings: entry.cloned(),
        source,
        view,
    }
}

#[utoipa::path(get, path = "/api/v1/orbits", tag = "orbits", responses((status = 200, description = "Every orbit, with what is parked on it now", body = Vec<OrbitOut>)))]
async fn list_orbits(State(api): State<Api>, headers: HeaderMap) -> Answer {
    authorize(&api, &headers, Role::Viewer)?;
    let views = ask(&api.live.engine, AdminRequest::Orbits).await?;
    let prov = api.live.prov.lock().await;
    let all: Vec<OrbitOut> = views.into_iter().map(|v| orbit_json(&prov, v)).collect();
    Ok(ok(StatusCode::OK, all))
}

#[utoipa::path(get, path = "/api/v1/orbits/{key}", tag = "orbits", params(("key" = String, Path, description = "orbit number", example = "701")), responses((status = 200, description = "The orbit", body = OrbitOut)))]
async fn get_orbit(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> Answer {
    authorize(&api, &headers, Role::Viewer)?;
    let views = ask(&api.live.engine, AdminRequest::Orbits).await?;
    let prov = api.live.prov.lock().await;
    match views.into_iter().find(|v| v.number == number) {
        Some(v) => Ok(ok(StatusCode::OK, orbit_json(&prov, v))),
        None => Err(not_found("orbit", &number)),
    }
}

/// One member to add to a group.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberIn {
    /// A `sip:` URI.
    pub member: String,
}

/// `POST /groups/{name}/members`: adds one member.
#[utoipa::path(post, path = "/api/v1/groups/{key}/members", tag = "groups", params(("key" = String, Path, description = "group name", example = "front-desk"), Flags), request_body = MemberIn, responses((status = 200, description = "The group with the member added", body = GroupWritten)))]
async fn add_member(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query_,
    body: Bytes,
) -> Answer {
    authorize(&api, &headers, Role::Admin)?;
    let flags = flags(&query)?;
    let MemberIn { member } = parse_body(json_body(&body)?)?;
    let (prov, report) = write(&api, flags, |prov| {
        not_file_owned(prov, ObjectKind::Group, &name)?;
        let mut group = stored_entry::<GroupConfig>(prov, &name)
            .cloned()
            .ok_or_else(|| not_found("group", &name))?;
        if !group.members.contains(&member) {
            group.members.push(member.clone());
        }
        Ok(vec![put(ObjectKind::Group, &name, &group)])
    })
    .await?;
    Ok(written::<GroupConfig>(&prov, &name, StatusCode::OK, report))
}

/// `DELETE /groups/{name}/members/{member}`: removes one member.
#[utoipa::path(delete, path = "/api/v1/groups/{key}/members/{member}", tag = "groups", params(("key" = String, Path, description = "group name", example = "front-desk"), ("member" = String, Path, description = "the member URI, percent-encoded", example = "sip:parker@127.0.0.1"), Flags), responses((status = 200, description = "The group with the member removed", body = GroupWritten)))]
async fn remove_member(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((name, member)): Path<(String, String)>,
    Query(query): Query_,
) -> Answer {
    authorize(&api, &headers, Role::Admin)?;
    let flags = flags(&query)?;
    let (prov, report) = write(&api, flags, |prov| {
        not_file_owned(prov, ObjectKind::Group, &name)?;
        let mut group = stored_entry::<GroupConfig>(prov, &name)
            .cloned()
            .ok_or_else(|| not_found("group", &name))?;
        let before = group.members.len();
        group.members.retain(|m| *m != member);
        if group.members.len() == before {
            return Err(problem(
                StatusCode::NOT_FOUND,
                format!("`{member}` is not a member of group `{name}`"),
            ));
        }
        Ok(vec![put(ObjectKind::Group, &name, &group)])
    })
    .await?;
    Ok(written::<GroupConfig>(&prov, &name, StatusCode::OK, report))
}

/// A settings section of a configuration, as JSON.
fn section_value(config: &Config, name: &str) -> Option<Value> {
    let v = match name {
        "defaults" => serde_json::to_value(&config.defaults),
        "recall" => serde_json::to_value(&config.recall),
        "features" => serde_json::to_value(&config.features),
        "access" => serde_json::to_value(&config.access),
        _ => return None,
    };
    Some(v.expect("serializes"))
}

/// The change that stores `value` as section `name`, its shape checked.
fn section_change(name: &str, value: Value) -> Result<Change, Problem> {
    Ok(match name {
        "defaults" => put(
            ObjectKind::Settings,
            name,
            &parse_body::<OrbitDefaults>(value)?,
        ),
        "recall" => put(
            ObjectKind::Settings,
            name,
            &parse_body::<RecallConfig>(value)?,
        ),
        "features" => put(
            ObjectKind::Settings,
            name,
            &parse_body::<FeaturesConfig>(value)?,
        ),
        "access" => put(
            ObjectKind::Settings,
            name,
            &parse_body::<AccessConfig>(value)?,
        ),
        _ => return Err(no_section(name)),
    })
}

fn no_section(name: &str) -> Problem {
    problem(
        StatusCode::NOT_FOUND,
        format!(
            "no settings section `{name}`: the sections are {}",
            SECTIONS.join(", ")
        ),
    )
}

fn section_json(prov: &Provisioning, name: &str) -> SectionOut {
    SectionOut {
        source: prov.source_of(ObjectKind::Settings, name),
        value: section_value(&prov.config, name).unwrap_or(Value::Null),
    }
}

#[utoipa::path(get, path = "/api/v1/settings", tag = "settings", responses((status = 200, description = "Every settings section in effect, with its source", body = BTreeMap<String, SectionOut>)))]
async fn get_settings(State(api): State<Api>, headers: HeaderMap) -> Answer {
    authorize(&api, &headers, Role::Viewer)?;
    let prov = api.live.prov.lock().await;
    let all: BTreeMap<String, SectionOut> = SECTIONS
        .into_iter()
        .map(|s| (s.to_string(), section_json(&prov, s)))
        .collect();
    Ok(ok(StatusCode::OK, all))
}

#[utoipa::path(get, path = "/api/v1/settings/{key}", tag = "settings", params(("key" = String, Path, description = "defaults, recall, features or access", example = "recall")), responses((status = 200, description = "The section", body = SectionOut)))]
async fn get_section(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Answer {
    authorize(&api, &headers, Role::Viewer)?;
    if !SECTIONS.contains(&name.as_str()) {
        return Err(no_section(&name));
    }
    let prov = api.live.prov.lock().await;
    Ok(ok(StatusCode::OK, section_json(&prov, &name)))
}

/// `PUT` (the body is the whole section; keys left out take the built-in
/// defaults) and `PATCH` (merged over the section in effect).
async fn write_section(
    api: Api,
    headers: HeaderMap,
    name: String,
    query: HashMap<String, String>,
    body: Bytes,
    merge: bool,
) -> Answer {
    authorize(&api, &headers, Role::Admin)?;
    let flags = flags(&query)?;
    if !SECTIONS.contains(&name.as_str()) {
        return Err(no_section(&name));
    }
    let body = json_body(&body)?;
    let (prov, report) = write(&api, flags, |prov| {
        not_file_owned(prov, ObjectKind::Settings, &name)?;
        let value = if merge {
            let mut current = section_value(&prov.config, &name).expect("a section");
            merge_patch(&mut current, &body);
            current
        } else {
            body
        };
        Ok(vec![section_change(&name, value)?])
    })
    .await?;
    Ok(ok(
        StatusCode::OK,
        SectionWritten {
            object: section_json(&prov, &name),
            changes: report,
        },
    ))
}

#[utoipa::path(put, path = "/api/v1/settings/{key}", tag = "settings", params(("key" = String, Path, description = "defaults, recall, features or access", example = "recall"), Flags), request_body(content = Object, description = "the whole section; keys left out take the built-in defaults"), responses((status = 200, description = "The section after the write", body = SectionWritten)))]
async fn put_section(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query_,
    body: Bytes,
) -> Answer {
    write_section(api, headers, name, query, body, false).await
}

#[utoipa::path(patch, path = "/api/v1/settings/{key}", tag = "settings", params(("key" = String, Path, description = "defaults, recall, features or access", example = "recall"), Flags), request_body(content = Object, description = "a JSON merge patch (RFC 7396) over the section in effect"), responses((status = 200, description = "The section after the write", body = SectionWritten)))]
async fn patch_section(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query_,
    body: Bytes,
) -> Answer {
    write_section(api, headers, name, query, body, true).await
}

/// `DELETE /settings/{section}`: back to the built-in defaults.
#[utoipa::path(delete, path = "/api/v1/settings/{key}", tag = "settings", params(("key" = String, Path, description = "defaults, recall, features or access", example = "recall"), Flags), responses((status = 200, description = "The section, back at the built-in defaults", body = SectionWritten)))]
async fn delete_section(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query_,
) -> Answer {
    authorize(&api, &headers, Role::Admin)?;
    let flags = flags(&query)?;
    if !SECTIONS.contains(&name.as_str()) {
        return Err(no_section(&name));
    }
    let (prov, report) = write(&api, flags, |prov| {
        not_file_owned(prov, ObjectKind::Settings, &name)?;
        if !prov.stored.has_section(&name) {
            return Err(problem(
                StatusCode::NOT_FOUND,
                format!("the store has no `{name}` section: it is at the built-in defaults"),
            ));
        }
        Ok(vec![Change::Delete(ObjectKind::Settings, name.clone())])
    })
    .await?;
    Ok(ok(
        StatusCode::OK,
        SectionWritten {
            object: section_json(&prov, &name),
            changes: report,
        },
    ))
}

/// `GET /api/v1/config`: the effective configuration, each object with
/// its source.
#[utoipa::path(get, path = "/api/v1/config", tag = "config", responses((status = 200, description = "The effective configuration, each object with its source", body = ConfigOut)))]
async fn get_config(State(api): State<Api>, headers: HeaderMap) -> Answer {
    authorize(&api, &headers, Role::Viewer)?;
    let prov = api.live.prov.lock().await;
    let c = &prov.config;
    let settings: BTreeMap<String, SectionOut> = SECTIONS
        .into_iter()
        .map(|s| (s.to_string(), section_json(&prov, s)))
        .collect();
    Ok(ok(
        StatusCode::OK,
        ConfigOut {
            file: prov.file.path.as_ref().map(|_| prov.file.name.clone()),
            store: prov.store.path().display().to_string(),
            schema_version: prov.store.schema_version().ok(),
            ranges: c.range.iter().map(|r| with_source(&prov, r)).collect(),
            orbits: c.orbit.iter().map(|o| with_source(&prov, o)).collect(),
            groups: c.group.iter().map(|g| with_source(&prov, g)).collect(),
            settings,
        },
    ))
}

/// Who uses stored music `name`: `media.music` and orbit numbers.
fn music_users(config: &Config, name: &str) -> Vec<String> {
    let mut users: Vec<String> = config
        .orbit
        .iter()
        .filter(|o| o.music.as_deref() == Some(name))
        .map(|o| o.number.clone())
        .collect();
    if config.media.music == name {
        users.insert(0, "media.music".into());
    }
    users
}

#[utoipa::path(get, path = "/api/v1/music", tag = "music", responses((status = 200, description = "The stored music", body = Vec<MusicOut>)))]
async fn list_music(State(api): State<Api>, headers: HeaderMap) -> Answer {
    authorize(&api, &headers, Role::Viewer)?;
    let prov = api.live.prov.lock().await;
    let list = prov.store.music_list().map_err(store_failed)?;
    let all: Vec<MusicOut> = list
        .into_iter()
        .map(|m| MusicOut {
            used_by: music_users(&prov.config, &m.name),
            name: m.name,
            bytes: m.bytes,
            sha256: m.sha256,
            updated_ms: m.updated_ms,
        })
        .collect();
    Ok(ok(StatusCode::OK, all))
}

fn store_failed(e: anyhow::Error) -> Problem {
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the store failed: {e:#}"),
    )
}

/// `GET /music/{name}`: the WAV as uploaded (sipX's Listen).
#[utoipa::path(get, path = "/api/v1/music/{key}", tag = "music", params(("key" = String, Path, description = "music name", example = "hold")), responses((status = 200, description = "The WAV as uploaded", content_type = "audio/wav", body = Vec<u8>)))]
async fn get_music(State(api): State<Api>, headers: HeaderMap, Path(name): Path<String>) -> Answer {
    authorize(&api, &headers, Role::Viewer)?;
    let prov = api.live.prov.lock().await;
    match prov.store.music(&name).map_err(store_failed)? {
        Some(wav) => Ok(([(header::CONTENT_TYPE, "audio/wav")], wav).into_response()),
        None => Err(not_found("music", &name)),
    }
}

/// `PUT /music/{name}`: a WAV that hound reads, not empty, at most
/// `MAX_MUSIC_BYTES`. Callers parked on an orbit that plays it hear the
/// new version at once.
#[utoipa::path(put, path = "/api/v1/music/{key}", tag = "music", params(("key" = String, Path, description = "music name", example = "hold"), Flags), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "a WAV file (any rate and depth hound reads), at most 16 MiB"), responses((status = 200, description = "Replaced (or a dry run)", body = MusicStored), (status = 201, description = "Stored", body = MusicStored)))]
async fn put_music(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query_,
    body: axum::body::Body,
) -> Answer {
    authorize(&api, &headers, Role::Admin)?;
    let flags = flags(&query)?;
    check_music_name(&name).map_err(|e| invalid("name", e, StatusCode::UNPROCESSABLE_ENTITY))?;
    let too_large = || {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the upload is over {} MiB; hold music is played at 8 kHz mono, so a shorter or smaller file sounds the same",
                MAX_MUSIC_BYTES >> 20
            ),
        )
    };
    // Refused from its announced length before a byte of it is read; a
    // body without one (chunked) is read up to the limit and no further.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_MUSIC_BYTES as u64) {
        return Err(too_large());
    }
    let wav = axum::body::to_bytes(body, MAX_MUSIC_BYTES)
        .await
        .map_err(|_| too_large())?;
    let music = callpark_media::Music::from_wav(&name, &wav).map_err(|e| {
        invalid(
            "body",
            format!("not a WAV file callpark can play: {e}"),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    })?;
    if music.frames() == 0 {
        return Err(invalid(
            "body",
            "the WAV holds no audio".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ));
    }
    let sha = crate::admin::hex(&sha2::Digest::finalize(
        <sha2::Sha256 as sha2::Digest>::new_with_prefix(&wav),
    ));
    let mut prov = api.live.prov.lock().await;
    let existed = prov.store.music(&name).map_err(store_failed)?.is_some();
    let users = music_users(&prov.config, &name);
    let summary = MusicStored {
        name: name.clone(),
        bytes: wav.len(),
        sha256: sha.clone(),
        frames: music.frames(),
        used_by: users.clone(),
        dry_run: flags.dry_run,
    };
    if flags.dry_run {
        return Ok(ok(StatusCode::OK, summary));
    }
    prov.store
        .put_music(&name, &wav, &sha)
        .map_err(store_failed)?;
    if !users.is_empty() {
        let config = prov.config.clone();
        let library = tokio::task::block_in_place(|| prov.music_library(&config))
            .map_err(|e| problem(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
        let lot = prov.lot.clone();
        api.live.apply(&prov, config, lot, library, false).await?;
    }
    tracing::info!(music = %name, bytes = wav.len(), used_by = users.len(), "music stored");
    Ok(ok(
        if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        summary,
    ))
}

/// `DELETE /music/{name}`: refused while the configuration uses it.
#[utoipa::path(delete, path = "/api/v1/music/{key}", tag = "music", params(("key" = String, Path, description = "music name", example = "hold"), Flags), responses((status = 200, description = "Deleted (or a dry run)", body = MusicDeleted)))]
async fn delete_music(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query_,
) -> Answer {
    authorize(&api, &headers, Role::Admin)?;
    let flags = flags(&query)?;
    let mut prov = api.live.prov.lock().await;
    let users = music_users(&prov.config, &name);
    if !users.is_empty() {
        return Err(Problem {
            status: StatusCode::CONFLICT,
            detail: format!(
                "music `{name}` is in use by {}: give them other music first",
                users.join(", ")
            ),
            errors: users.iter().map(|u| json!({ "used_by": u })).collect(),
        });
    }
    if prov.store.music(&name).map_err(store_failed)?.is_none() {
        return Err(not_found("music", &name));
    }
    if !flags.dry_run {
        prov.store.delete_music(&name).map_err(store_failed)?;
    }
    Ok(ok(
        StatusCode::OK,
        MusicDeleted {
            name,
            deleted: !flags.dry_run,
            dry_run: flags.dry_run,
        },
    ))
}

/// The largest CSV a job reads (1,000 rows of long group member lists).
const MAX_IMPORT_BYTES: usize = 4 << 20;

/// `POST /api/v1/imports`: a CSV of orbits or groups (`?kind=`, else told
/// by its header), applied row by row; answers the job with every row's
/// status, kept for `GET /api/v1/imports/{id}`.
#[utoipa::path(post, path = "/api/v1/imports", tag = "imports", params(("kind" = Option<String>, Query, description = "orbits or groups; without it the header tells"), Flags), request_body(content = String, content_type = "text/csv", description = "at most 1,000 rows"), responses((status = 201, description = "The job and every row's status", body = ImportOut)))]
async fn post_import(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(mut query): Query_,
    body: axum::body::Body,
) -> Answer {
    use crate::import;
    authorize(&api, &headers, Role::Admin)?;
    let kind_param = query.remove("kind");
    let flags = flags(&query)?;
    let csv = axum::body::to_bytes(body, MAX_IMPORT_BYTES)
        .await
        .map_err(|_| {
            problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the CSV is over {} MiB; a job takes at most {} rows",
                    MAX_IMPORT_BYTES >> 20,
                    import::MAX_ROWS
                ),
            )
        })?;
    let kind = match kind_param {
        Some(k) => import::Kind::parse(&k).ok_or_else(|| {
            invalid(
                "kind",
                format!("`{k}` is not orbits or groups"),
                StatusCode::BAD_REQUEST,
            )
        })?,
        None => import::detect(&csv).ok_or_else(|| {
            invalid(
                "kind",
                "the header names neither `number` (orbits) nor `name` (groups); say ?kind=".into(),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        })?,
    };
    let parked: HashMap<String, usize> = ask(&api.live.engine, AdminRequest::Orbits)
        .await?
        .into_iter()
        .filter(|v| v.parked > 0)
        .map(|v| (v.number, v.parked))
        .collect();
    let mut prov = api.live.prov.lock().await;
    let plan = tokio::task::block_in_place(|| {
        import::plan(&prov, &csv, kind, &parked, flags.force, flags.dry_run)
    })
    .map_err(|e| Problem {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        detail: if e.line > 0 {
            format!("line {}: {}; nothing was applied", e.line, e.message)
        } else {
            format!("{}; nothing was applied", e.message)
        },
        errors: vec![json!({ "line": e.line, "reason": e.message })],
    })?;
    if !flags.dry_run && !plan.changes.is_empty() {
        let music = tokio::task::block_in_place(|| prov.music_library(&plan.config))
            .map_err(|e| problem(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")))?;
        let lot = plan.config.lot();
        prov.commit(&plan.changes, plan.stored, plan.config.clone(), lot.clone())
            .map_err(store_failed)?;
        api.live
            .apply(&prov, plan.config, lot, music, false)
            .await?;
    }
    let id = prov
        .store
        .add_import(
            kind.name(),
            flags.dry_run,
            &serde_json::to_string(&plan.report).expect("serializes"),
        )
        .map_err(store_failed)?;
    tracing::info!(
        import = id,
        kind = kind.name(),
        rows = plan.report.rows,
        applied = plan.report.applied,
        unchanged = plan.report.unchanged,
        refused = plan.report.refused,
        dry_run = flags.dry_run,
        "import done"
    );
    let mut response = ok(
        StatusCode::CREATED,
        ImportOut {
            id,
            report: plan.report,
        },
    );
    if let Ok(location) = header::HeaderValue::from_str(&format!("/api/v1/imports/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/api/v1/imports", tag = "imports", responses((status = 200, description = "The last 100 jobs, newest first", body = Vec<ImportSummary>)))]
async fn list_imports(State(api): State<Api>, headers: HeaderMap) -> Answer {
    authorize(&api, &headers, Role::Viewer)?;
    let prov = api.live.prov.lock().await;
    let jobs = prov.store.imports(100).map_err(store_failed)?;
    let all: Vec<ImportSummary> = jobs
        .into_iter()
        .map(|(id, created_ms, kind, dry_run)| ImportSummary {
            id,
            created_ms,
            kind,
            dry_run,
        })
        .collect();
    Ok(ok(StatusCode::OK, all))
}

#[utoipa::path(get, path = "/api/v1/imports/{key}", tag = "imports", params(("key" = String, Path, description = "job id", example = "1")), responses((status = 200, description = "The job and every row's status", body = ImportOut)))]
async fn get_import(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    authorize(&api, &headers, Role::Viewer)?;
    let Ok(n) = id.parse::<i64>() else {
        return Err(not_found("import", &id));
    };
    let prov = api.live.prov.lock().await;
    let report = prov
        .store
        .import(n)
        .map_err(store_failed)?
        .ok_or_else(|| not_found("import", &id))?;
    let report: crate::import::ImportReport = serde_json::from_str(&report).map_err(|e| {
        problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("a stored report does not read: {e}"),
        )
    })?;
    Ok(ok(StatusCode::OK, ImportOut { id: n, report }))
}

/// `GET /api/v1/exports/orbits.csv` and `groups.csv`: what the store
/// holds, in the import's shape.
#[utoipa::path(get, path = "/api/v1/exports/{key}", tag = "imports", params(("key" = String, Path, description = "orbits.csv or groups.csv", example = "orbits.csv")), responses((status = 200, description = "What the store holds, in the import's shape", content_type = "text/csv", body = String)))]
async fn get_export(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Answer {
    authorize(&api, &headers, Role::Viewer)?;
    let kind = file
        .strip_suffix(".csv")
        .and_then(crate::import::Kind::parse)
        .ok_or_else(|| not_found("export", &file))?;
    let prov = api.live.prov.lock().await;
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        crate::import::export(&prov.stored, kind),
    )
        .into_response())
}

/// The largest plugin the store takes (a Python component is ~18 MB).
const MAX_PLUGIN_BYTES: usize = 64 << 20;

fn decision_of(slot: &str) -> Result<callpark_core::Decision, Problem> {
    callpark_core::Decision::SLOTS
        .into_iter()
        .find(|d| d.name() == slot)
        .ok_or_else(|| {
            problem(
                StatusCode::NOT_FOUND,
                format!(
                    "no plugin slot `{slot}`: the slots are allocator, recall, dialing, events"
                ),
            )
        })
}

/// A plugin slot as the API shows it: where its plugin comes from, what
/// is loaded (label, generation, digest, params) and its counters.
fn plugin_json(api: &Api, prov: &Provisioning, decision: callpark_core::Decision) -> PluginOut {
    use crate::plugins::PluginOrigin;
    let runtime = api.live.supervisor.runtime();
    let (origin, _) = api
        .live
        .supervisor
        .slot(decision)
        .unwrap_or((PluginOrigin::Embedded, Vec::new()));
    let source = match origin {
        PluginOrigin::File(path) => PluginSourceOut {
            kind: "file".into(),
            file: Some(path.display().to_string()),
        },
        PluginOrigin::Stored(_) => PluginSourceOut {
            kind: "store".into(),
            file: None,
        },
        PluginOrigin::Embedded if callpark_policy::embedded::default_plugin(decision).is_none() => {
            PluginSourceOut {
                kind: "none".into(),
                file: None,
            }
        }
        PluginOrigin::Embedded => PluginSourceOut {
            kind: "default".into(),
            file: None,
        },
    };
    let loaded = runtime.current(decision).map(|info| LoadedOut {
        label: info.label,
        generation: info.generation,
        digest: info.digest,
        params: info.params.into_iter().collect(),
        wit_version: info.wit_version.to_string(),
    });
    let (http_hosts, http_denied) = runtime.http_grant(decision);
    let stats = runtime.stats(decision);
    let us = |q: f64| stats.latency_quantile(q).map(|d| d.as_micros() as u64);
    PluginOut {
        slot: decision.name().to_string(),
        source,
        params_source: prov.source_of(ObjectKind::PluginParams, decision.name()),
        loaded,
        stats: PluginStatsOut {
            calls: stats.calls,
            traps: stats.traps,
            timeouts: stats.timeouts,
            invalid: stats.invalid,
            fallbacks: stats.fallbacks,
            rejects: stats.rejects,
            loads: stats.loads,
            refused_loads: stats.refused_loads,
            short_circuits: stats.short_circuits,
            decision_p50_us: us(0.5),
            decision_p99_us: us(0.99),
        },
        http_hosts,
        http_denied,
    }
}

#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins", responses((status = 200, description = "Every plugin slot", body = Vec<PluginOut>)))]
async fn list_plugins(State(api): State<Api>, headers: HeaderMap) -> Answer {
    authorize(&api, &headers, Role::Viewer)?;
    let prov = api.live.prov.lock().await;
    let all: Vec<PluginOut> = callpark_core::Decision::SLOTS
        .into_iter()
        .map(|d| plugin_json(&api, &prov, d))
        .collect();
    Ok(ok(StatusCode::OK, all))
}

#[utoipa::path(get, path = "/api/v1/plugins/{key}", tag = "plugins", params(("key" = String, Path, description = "allocator, recall, dialing or events", example = "allocator")), responses((status = 200, description = "The slot", body = PluginOut)))]
async fn get_plugin(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(slot): Path<String>,
) -> Answer {
    authorize(&api, &headers, Role::Viewer)?;
    let decision = decision_of(&slot)?;
    let prov = api.live.prov.lock().await;
    Ok(ok(StatusCode::OK, plugin_json(&api, &prov, decision)))
}

/// A 409 when the configuration file names a `.wasm` for the slot.
fn plugin_not_file_owned(
    prov: &Provisioning,
    decision: callpark_core::Decision,
) -> Result<(), Problem> {
    let file = prov.config.plugin_file(decision);
    if file.is_empty() {
        return Ok(());
    }
    Err(problem(
        StatusCode::CONFLICT,
        format!(
            "{} names `{file}` for the {decision} slot (plugins.{decision}): change it there, or clear it to manage the slot through the API",
            prov.file.name
        ),
    ))
}

/// `PUT /plugins/{slot}`: a `.wasm`, loaded on the path a file swap takes
/// (type check, `check-params`, canary cases, atomic swap), then kept in
/// the store; refused with the reason, the previous plugin still serving.
#[utoipa::path(put, path = "/api/v1/plugins/{key}", tag = "plugins", params(("key" = String, Path, description = "allocator, recall, dialing or events", example = "allocator"), Flags), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "a WASM component (.wasm) of the slot's world"), responses((status = 200, description = "Loaded and kept (or, as a dry run, checked)", body = PluginOut)))]
async fn put_plugin(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(slot): Path<String>,
    Query(query): Query_,
    body: axum::body::Body,
) -> Answer {
    authorize(&api, &headers, Role::Admin)?;
    let flags = flags(&query)?;
    let decision = decision_of(&slot)?;
    let wasm = axum::body::to_bytes(body, MAX_PLUGIN_BYTES)
        .await
        .map_err(|_| {
            problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the plugin is over {} MiB", MAX_PLUGIN_BYTES >> 20),
            )
        })?;
    let mut prov = api.live.prov.lock().await;
    plugin_not_file_owned(&prov, decision)?;
    let wasm: std::sync::Arc<[u8]> = wasm.to_vec().into();
    let supervisor = api.live.supervisor.clone();
    let refused = |why: String| {
        problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{why}; the previous plugin keeps serving"),
        )
    };
    if flags.dry_run {
        tokio::task::block_in_place(|| supervisor.check_wasm(decision, wasm.clone()))
            .map_err(refused)?;
        return Ok(ok(
            StatusCode::OK,
            PluginChecked {
                dry_run: true,
                slot,
                digest: callpark_policy::digest(&wasm),
            },
        ));
    }
    let report =
        tokio::task::block_in_place(|| supervisor.swap_stored(decision, Some(wasm.clone())))
            .map_err(refused)?;
    let digest = callpark_policy::digest(&wasm);
    if let Err(e) = prov.store.put_plugin(decision.name(), &wasm, &digest) {
        // Not kept: not served either.
        let previous = prov
            .store
            .plugins()
            .ok()
            .and_then(|all| all.into_iter().find(|(s, _)| s == decision.name()))
            .map(|(_, w)| std::sync::Arc::<[u8]>::from(w));
        let _ = tokio::task::block_in_place(|| supervisor.swap_stored(decision, previous));
        return Err(store_failed(e));
    }
    if let Some(r) = &report {
        tracing::info!(
            plugin = %r.info.label,
            %decision,
            generation = r.info.generation,
            took_ms = r.took.as_millis() as u64,
            "plugin loaded from the admin API"
        );
    }
    // The provisioning lock is held to here: a second upload waits.
    Ok(ok(StatusCode::OK, plugin_json(&api, &prov, decision)))
}

/// `DELETE /plugins/{slot}`: the stored plugin goes; the slot runs the
/// embedded default again.
#[utoipa::path(delete, path = "/api/v1/plugins/{key}", tag = "plugins", params(("key" = String, Path, description = "allocator, recall, dialing or events", example = "allocator"), Flags), responses((status = 200, description = "The slot, back on the embedded default", body = PluginOut)))]
async fn delete_plugin(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(slot): Path<String>,
    Query(query): Query_,
) -> Answer {
    authorize(&api, &headers, Role::Admin)?;
    let flags = flags(&query)?;
    let decision = decision_of(&slot)?;
    let mut prov = api.live.prov.lock().await;
    plugin_not_file_owned(&prov, decision)?;
    let stored = prov.store.plugins().map_err(store_failed)?;
    if !stored.iter().any(|(s, _)| s == decision.name()) {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("the store has no {decision} plugin: the slot runs the embedded default"),
        ));
    }
    if !flags.dry_run {
        prov.store
            .delete_plugin(decision.name())
            .map_err(store_failed)?;
        let supervisor = api.live.supervisor.clone();
        tokio::task::block_in_place(|| supervisor.swap_stored(decision, None)).map_err(|why| {
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the embedded default did not load: {why}"),
            )
        })?;
    }
    Ok(ok(StatusCode::OK, plugin_json(&api, &prov, decision)))
}

/// `GET /plugins/{slot}/params`: the params the slot is configured with.
#[utoipa::path(get, path = "/api/v1/plugins/{key}/params", tag = "plugins", params(("key" = String, Path, description = "allocator, recall, dialing or events", example = "allocator")), responses((status = 200, description = "The params the slot is loaded with", body = ParamsOut)))]
async fn get_params(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(slot): Path<String>,
) -> Answer {
    authorize(&api, &headers, Role::Viewer)?;
    let decision = decision_of(&slot)?;
    let prov = api.live.prov.lock().await;
    let params: BTreeMap<String, String> = prov
        .config
        .plugin_params_for(decision)
        .into_iter()
        .collect();
    Ok(ok(
        StatusCode::OK,
        ParamsOut {
            source: prov.source_of(ObjectKind::PluginParams, decision.name()),
            value: params,
        },
    ))
}

/// `PUT /plugins/{slot}/params`: the slot's own params (a JSON object of
/// strings), checked by the plugin's `check-params` and conformance cases
/// before anything is kept.
#[utoipa::path(put, path = "/api/v1/plugins/{key}/params", tag = "plugins", params(("key" = String, Path, description = "allocator, recall, dialing or events", example = "allocator"), Flags), request_body(content = BTreeMap<String, String>, description = "the slot's own params"), responses((status = 200, description = "The params after the write", body = ParamsWritten)))]
async fn put_params(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(slot): Path<String>,
    Query(query): Query_,
    body: Bytes,
) -> Answer {
    authorize(&api, &headers, Role::Admin)?;
    let flags = flags(&query)?;
    let decision = decision_of(&slot)?;
    let body = json_body(&body)?;
    let mut params = BTreeMap::new();
    for (k, v) in body.as_object().expect("an object") {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            _ => {
                return Err(invalid(
                    k,
                    "a param is a string, a number or true/false".into(),
                    StatusCode::UNPROCESSABLE_ENTITY,
                ));
            }
        };
        params.insert(k.clone(), text);
    }
    let supervisor = api.live.supervisor.clone();
    let (prov, report) = write(&api, flags, |prov| {
        if let Some(line) = prov
            .file
            .line_of_object(ObjectKind::PluginParams, decision.name())
        {
            return Err(problem(
                StatusCode::CONFLICT,
                format!(
                    "[plugins.params.{decision}] is configured in {} line {line}: change it there",
                    prov.file.name
                ),
            ));
        }
        // What the slot would be loaded with (over [features] or [recall]).
        let (_, config) = prov
            .plan(&[put(ObjectKind::PluginParams, decision.name(), &params)])
            .map_err(refused)?;
        tokio::task::block_in_place(|| {
            supervisor.check_params(decision, &config.plugin_params_for(decision))
        })
        .map_err(|why| problem(StatusCode::UNPROCESSABLE_ENTITY, why))?;
        Ok(vec![put(
            ObjectKind::PluginParams,
            decision.name(),
            &params,
        )])
    })
    .await?;
    let params: BTreeMap<String, String> = prov
        .config
        .plugin_params_for(decision)
        .into_iter()
        .collect();
    Ok(ok(
        StatusCode::OK,
        ParamsWritten {
            object: ParamsOut {
                source: prov.source_of(ObjectKind::PluginParams, decision.name()),
                value: params,
            },
            changes: report,
        },
    ))
}

/// The operations on ranges, orbits' settings and groups, one concrete
/// handler each (the generic ones behind them are shared), so that each
/// has its OpenAPI operation.
macro_rules! listed_reads {
    ($t:ty, $tag:literal, $list:literal, $one:literal, $key:literal, $example:literal, $out:ty,
     $list_fn:ident, $get_fn:ident) => {
        #[utoipa::path(get, path = $list, tag = $tag, responses((status = 200, description = "Every one in effect, with its source", body = Vec<$out>)))]
        async fn $list_fn(state: State<Api>, headers: HeaderMap) -> Answer {
            list::<$t>(state, headers).await
        }

        #[utoipa::path(get, path = $one, tag = $tag, params(("key" = String, Path, description = $key, example = $example)), responses((status = 200, description = "It, with its source", body = $out)))]
        async fn $get_fn(state: State<Api>, headers: HeaderMap, key: Path<String>) -> Answer {
            get_one::<$t>(state, headers, key).await
        }
    };
}

macro_rules! listed_writes {
    ($t:ty, $tag:literal, $list:literal, $one:literal, $key:literal, $example:literal, $written:ty,
     $create_fn:ident, $put_fn:ident, $patch_fn:ident, $delete_fn:ident) => {
        #[utoipa::path(post, path = $list, tag = $tag, params(Flags), request_body = $t, responses((status = 201, description = "Made and kept in the store", body = $written), (status = 200, description = "A dry run", body = $written)))]
        async fn $create_fn(state: State<Api>, headers: HeaderMap, query: Query_, body: Bytes) -> Answer {
            create::<$t>(state, headers, query, body).await
        }

        #[utoipa::path(put, path = $one, tag = $tag, params(("key" = String, Path, description = $key, example = $example), Flags), request_body = $t, responses((status = 200, description = "Replaced (or a dry run)", body = $written), (status = 201, description = "Made", body = $written)))]
        async fn $put_fn(state: State<Api>, headers: HeaderMap, key: Path<String>, query: Query_, body: Bytes) -> Answer {
            replace::<$t>(state, headers, key, query, body).await
        }

        #[utoipa::path(patch, path = $one, tag = $tag, params(("key" = String, Path, description = $key, example = $example), Flags), request_body(content = Object, description = "a JSON merge patch (RFC 7396): a key set to null clears it"), responses((status = 200, description = "Changed (or a dry run)", body = $written)))]
        async fn $patch_fn(state: State<Api>, headers: HeaderMap, key: Path<String>, query: Query_, body: Bytes) -> Answer {
            patch::<$t>(state, headers, key, query, body).await
        }

        #[utoipa::path(delete, path = $one, tag = $tag, params(("key" = String, Path, description = $key, example = $example), Flags), responses((status = 200, description = "Deleted (or a dry run)", body = $written)))]
        async fn $delete_fn(state: State<Api>, headers: HeaderMap, key: Path<String>, query: Query_) -> Answer {
            remove::<$t>(state, headers, key, query).await
        }
    };
}

listed_reads!(
    RangeConfig,
    "ranges",
    "/api/v1/orbit-ranges",
    "/api/v1/orbit-ranges/{key}",
    "range name",
    "main",
    RangeOut,
    list_ranges,
    get_range
);
listed_writes!(
    RangeConfig,
    "ranges",
    "/api/v1/orbit-ranges",
    "/api/v1/orbit-ranges/{key}",
    "range name",
    "main",
    RangeWritten,
    create_range,
    put_range,
    patch_range,
    delete_range
);
// Orbits are read as the engine has them (`list_orbits`, `get_orbit`);
// what is written is their own settings.
listed_writes!(
    OrbitConfig,
    "orbits",
    "/api/v1/orbits",
    "/api/v1/orbits/{key}",
    "orbit number",
    "701",
    OrbitSettingsWritten,
    create_orbit,
    put_orbit,
    patch_orbit,
    delete_orbit
);
listed_reads!(
    GroupConfig,
    "groups",
    "/api/v1/groups",
    "/api/v1/groups/{key}",
    "group name",
    "front-desk",
    GroupOut,
    list_groups,
    get_group
);
listed_writes!(
    GroupConfig,
    "groups",
    "/api/v1/groups",
    "/api/v1/groups/{key}",
    "group name",
    "front-desk",
    GroupWritten,
    create_group,
    put_group,
    patch_group,
    delete_group
);

/// The configuration resources, added to the admin router.
pub(crate) fn routes(router: Router<Api>) -> Router<Api> {
    router
        .route("/api/v1/config", get(get_config))
        .route("/api/v1/orbit-ranges", get(list_ranges).post(create_range))
        .route(
            "/api/v1/orbit-ranges/{key}",
            get(get_range)
                .put(put_range)
                .patch(patch_range)
                .delete(delete_range),
        )
        .route("/api/v1/orbits", get(list_orbits).post(create_orbit))
        .route(
            "/api/v1/orbits/{key}",
            get(get_orbit)
                .put(put_orbit)
                .patch(patch_orbit)
                .delete(delete_orbit),
        )
        .route("/api/v1/groups", get(list_groups).post(create_group))
        .route(
            "/api/v1/groups/{key}",
            get(get_group)
                .put(put_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .route("/api/v1/groups/{key}/members", post(add_member))
        .route(
            "/api/v1/groups/{key}/members/{member}",
            delete(remove_member),
        )
        .route("/api/v1/settings", get(get_settings))
        .route(
            "/api/v1/settings/{key}",
            get(get_section)
                .put(put_section)
                .patch(patch_section)
                .delete(delete_section),
        )
        .route(
            "/api/v1/imports",
            get(list_imports)
                .post(post_import)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/imports/{key}", get(get_import))
        .route("/api/v1/exports/{key}", get(get_export))
        .route("/api/v1/plugins", get(list_plugins))
        .route(
            "/api/v1/plugins/{key}",
            get(get_plugin)
                .put(put_plugin)
                .delete(delete_plugin)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/v1/plugins/{key}/params",
            get(get_params).put(put_params),
        )
        .route("/api/v1/music", get(list_music))
        .route(
            "/api/v1/music/{key}",
            get(get_music)
                .put(put_music)
                .delete(delete_music)
                .layer(DefaultBodyLimit::disable()),
        )
}

/// The OpenAPI document of the admin API, generated from the handlers'
/// annotations (`callpark openapi` prints it; `docs/openapi.json` is it,
/// checked in, and a test keeps the two the same).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "callpark admin API",
        description = "Configure call park while it runs: orbit ranges, orbits, groups, settings, music, bulk CSV and plugins. Every write takes ?dry_run=true. Errors are RFC 9457 problem documents. docs/api.md walks through it.",
        license(name = "Apache-2.0")
    ),
    paths(
        crate::admin::healthz, crate::admin::openapi_json,
        crate::admin::validate_config, crate::admin::reload_config,
        get_config,
        list_ranges, create_range, get_range, put_range, patch_range, delete_range,
        list_orbits, create_orbit, get_orbit, put_orbit, patch_orbit, delete_orbit,
        list_groups, create_group, get_group, put_group, patch_group, delete_group,
        add_member, remove_member,
        get_settings, get_section, put_section, patch_section, delete_section,
        list_music, get_music, put_music, delete_music,
        post_import, list_imports, get_import, get_export,
        list_plugins, get_plugin, put_plugin, delete_plugin, get_params, put_params,
        crate::parked::list_parked, crate::parked::get_parked, crate::parked::hang_up,
        crate::parked::list_subscriptions, crate::parked::move_parked,
    ),
    components(schemas(crate::admin::ProblemDoc)),
    modifiers(&ApiConventions),
    security(("bearer" = []))
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    /// CI fails when the checked-in document is not the generated one.
    #[test]
    fn the_checked_in_openapi_document_is_the_generated_one() {
        let checked_in = include_str!("../../../docs/openapi.json");
        let generated = crate::admin::openapi_document();
        assert!(
            checked_in == generated,
            "docs/openapi.json is stale: run `cargo run -q -- openapi > docs/openapi.json`"
        );
        let doc: Value = serde_json::from_str(&generated).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        // Every route the router serves is documented.
        for path in [
            "/api/v1/orbit-ranges/{key}",
            "/api/v1/orbits/{key}",
            "/api/v1/groups/{key}/members/{member}",
            "/api/v1/settings/{key}",
            "/api/v1/music/{key}",
            "/api/v1/imports",
            "/api/v1/plugins/{key}/params",
            "/api/v1/config:reload",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} is not documented");
        }
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut v = json!({ "a": 1, "b": { "c": 2, "d": 3 } });
        merge_patch(&mut v, &json!({ "a": null, "b": { "c": 5 }, "e": [1] }));
        assert_eq!(v, json!({ "b": { "c": 5, "d": 3 }, "e": [1] }));
    }

    #[test]
    fn a_report_lists_what_a_change_adds_removes_and_changes() {
        let before = Config::default();
        let mut after = before.clone();
        after.range[0].end = "705".into();
        after.orbit.push(OrbitConfig {
            number: "701".into(),
            capacity: Some(3),
            ..OrbitConfig::default()
        });
        after.range.push(RangeConfig {
            name: "b".into(),
            start: "800".into(),
            end: "801".into(),
        });
        let r = serde_json::to_value(report(&before, &after, &before.lot(), &after.lot(), &[]))
            .unwrap();
        assert_eq!(r["orbits"]["removed"]["count"], 45);
        assert_eq!(r["orbits"]["added"]["numbers"], json!(["800", "801"]));
        assert_eq!(r["orbits"]["changed"]["numbers"], json!(["701"]));
        assert_eq!(after.lot().orbits().len(), 7);
    }

    #[test]
    fn field_errors_name_the_field() {
        let e = parse_body::<OrbitConfig>(json!({ "number": "1", "capacity": "x" })).unwrap_err();
        assert_eq!(e.errors[0]["field"], "capacity");
        let e = parse_body::<OrbitConfig>(json!({ "number": "1", "colour": 1 })).unwrap_err();
        assert!(e.detail.contains("unknown field `colour`"), "{}", e.detail);
    }
}
