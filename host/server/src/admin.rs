//! The HTTP admin API (DESIGN §5): bearer tokens with roles, errors as
//! RFC 9457 problem details, and the resources under `/api/v1`.
//!
//! Handlers never touch engine state: they send an `AdminRequest` to the
//! serve loop, which owns the engine, and await its reply.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, TokenConfig};
use crate::plugins::PluginSupervisor;
use crate::provision::Provisioning;

/// What a token may do; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read.
    Viewer,
    /// Read, and act on parked calls.
    Operator,
    /// Everything.
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// SHA-256 of a token's secret, as kept in the configuration.
pub fn token_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A new secret: 32 random bytes, hex, with a prefix that says what it is.
pub fn new_secret() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(format!("cpk_{}", hex(&bytes)))
}

/// The configured tokens, by hash.
#[derive(Debug, Default)]
pub struct Tokens {
    entries: Vec<(String, Role, [u8; 32])>,
}

impl Tokens {
    /// From validated `[[admin.token]]` tables.
    pub fn from_config(tokens: &[TokenConfig]) -> Tokens {
        Tokens {
            entries: tokens
                .iter()
                .filter_map(|t| Some((t.name.clone(), Role::parse(&t.role)?, unhex(&t.sha256)?)))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The token a presented secret is, if any: every hash is compared, in
    /// constant time, so that the answer's timing says nothing about how
    /// close a guess came or which token it was near.
    pub fn check(&self, secret: &str) -> Option<(&str, Role)> {
        let presented = token_hash(secret);
        let mut found = None;
        for (name, role, hash) in &self.entries {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some((name.as_str(), *role));
            }
        }
        found
    }
}

/// With no token configured: the admin token kept in `dir/admin-token`,
/// made at the first start (readable by the owner only) and read again at
/// the next. Returns the file and the token's table.
pub fn first_start_token(dir: &Path) -> anyhow::Result<(PathBuf, TokenConfig)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("admin-token");
    let secret = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = new_secret()?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            writeln!(file, "{secret}").map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            secret
        }
        Err(e) => anyhow::bail!("{}: {e}", path.display()),
    };
    if secret.is_empty() {
        anyhow::bail!(
            "{}: empty; delete it and a new token is made",
            path.display()
        );
    }
    Ok((
        path,
        TokenConfig {
            name: "first-start".into(),
            role: "admin".into(),
            sha256: hex(&token_hash(&secret)),
        },
    ))
}

/// One orbit as the engine has it, with what is parked on it now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrbitView {
    pub number: String,
    pub name: Option<String>,
    pub enabled: bool,
    pub capacity: u32,
    /// The stored music or file it plays; `None`: the default music.
    pub music: Option<String>,
    /// `"0s"`: never recalls.
    pub recall_after: String,
    pub escape_key: Option<String>,
    /// `early` or `confirmed`.
    pub blf_state: String,
    /// The group that lists it as a destination.
    pub group: Option<String>,
    /// Calls parked on it now.
    pub parked: usize,
}

/// What a handler (or SIGHUP) asks the serve loop, which owns the engine.
#[derive(Debug)]
pub enum AdminRequest {
    Orbits(oneshot::Sender<Vec<OrbitView>>),
    /// Take a composed configuration (an API write, SIGHUP,
    /// `config:reload`) with parked calls, bridges and watchers kept.
    Apply(Box<Applying>, oneshot::Sender<Result<(), String>>),
    /// An operator's command (the parked-call directory and its actions),
    /// for `Engine::handle_command`.
    Command(
        callpark_engine::Command,
        oneshot::Sender<callpark_engine::Reply>,
    ),
}

/// A validated configuration and its decoded music, for the engine.
#[derive(Debug)]
pub struct Applying {
    pub config: Config,
    /// `config`'s lot, built by the admin side (off the engine loop).
    pub lot: callpark_core::lot::ParkLot,
    pub music: callpark_engine::MusicLibrary,
}

/// What re-reading the configuration file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Applied, from this file.
    Applied(String),
    /// The server runs the embedded configuration: nothing to re-read.
    NoFile,
    /// Refused (file, line, field and reason); the last good one serves.
    Refused(String),
}

/// The admin side of a running server: the provisioning state (file and
/// store; one writer at a time), the way to the engine, the plugins.
#[derive(Clone)]
pub struct Live {
    pub(crate) prov: Arc<tokio::sync::Mutex<Provisioning>>,
    pub(crate) engine: mpsc::Sender<AdminRequest>,
    pub(crate) supervisor: Arc<PluginSupervisor>,
}

impl Live {
    pub fn new(
        prov: Provisioning,
        engine: mpsc::Sender<AdminRequest>,
        supervisor: Arc<PluginSupervisor>,
    ) -> Live {
        Live {
            prov: Arc::new(tokio::sync::Mutex::new(prov)),
            engine,
            supervisor,
        }
    }

    /// Hands `config` to the engine, then gives the plugins their new
    /// settings (off the async workers: a changed plugin compiles) when
    /// `reload_plugins`: the caller says whether their settings changed
    /// (SIGHUP always does: their files may have changed).
    pub(crate) async fn apply(
        &self,
        prov: &Provisioning,
        config: Config,
        lot: callpark_core::lot::ParkLot,
        music: callpark_engine::MusicLibrary,
        reload_plugins: bool,
    ) -> Result<(), Problem> {
        let applying = Applying {
            config: config.clone(),
            lot,
            music,
        };
        ask(&self.engine, |reply| {
            AdminRequest::Apply(Box::new(applying), reply)
        })
        .await?
        .map_err(|e| problem(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        if reload_plugins {
            self.supervisor.reconfigure(&config, prov.file.dir());
            let plugins = self.supervisor.clone();
            tokio::task::spawn_blocking(move || plugins.reload_all());
        }
        Ok(())
    }
}

/// What SIGHUP and `config:reload` do: re-read the configuration file,
/// compose it with the store and apply it (a refused file leaves the last
/// good configuration serving), then reload the plugins, whose files may
/// have changed either way.
pub async fn reload(live: Live, trigger: &'static str) -> ReloadOutcome {
    let mut prov = live.prov.lock().await;
    let outcome = match prov.reread_file() {
        Ok(None) => ReloadOutcome::NoFile,
        Err(refusal) => ReloadOutcome::Refused(refusal.to_string()),
        Ok(Some((file, config))) => {
            // Decoding changed music reads files: not on an async worker.
            // (The new file is at the old one's path: music paths resolve
            // as before.)
            let music = tokio::task::block_in_place(|| prov.music_library(&config));
            let lot = config.lot();
            match music {
                Err(e) => ReloadOutcome::Refused(format!("{e:#}")),
                Ok(music) => match live
                    .apply(&prov, config.clone(), lot.clone(), music, true)
                    .await
                {
                    Ok(()) => {
                        let name = file.name.clone();
                        prov.file = file;
                        prov.lot = lot;
                        prov.config = config;
                        ReloadOutcome::Applied(name)
                    }
                    Err(e) => ReloadOutcome::Refused(e.detail),
                },
            }
        }
    };
    match &outcome {
        ReloadOutcome::NoFile => {
            tracing::info!(
                trigger,
                "no configuration file to re-read (embedded default)"
            )
        }
        ReloadOutcome::Applied(file) => tracing::info!(trigger, %file, "configuration applied"),
        ReloadOutcome::Refused(e) => {
            tracing::error!(trigger, error = %e, "configuration refused; the last good one stays")
        }
    }
    if !matches!(outcome, ReloadOutcome::Applied(_)) {
        // A refused plugin leaves the old one serving.
        tracing::info!(trigger, "reloading plugins");
        let plugins = live.supervisor.clone();
        tokio::task::spawn_blocking(move || plugins.reload_all());
    }
    outcome
}

/// Renders milliseconds as the configuration writes durations.
pub(crate) fn duration_text(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The orbits of the engine's lot, with what is parked on each.
pub fn orbit_views(lot: &callpark_core::lot::ParkLot) -> Vec<OrbitView> {
    lot.orbits()
        .iter()
        .map(|o| OrbitView {
            number: o.number.clone(),
            name: o.name.clone(),
            enabled: o.enabled,
            capacity: o.capacity,
            music: o.music.clone(),
            recall_after: duration_text(o.recall_after_ms),
            escape_key: o.escape_key.map(String::from),
            blf_state: if o.blf_confirmed {
                "confirmed"
            } else {
                "early"
            }
            .into(),
            group: o.group.clone(),
            parked: lot.parked_on(&o.number).count(),
        })
        .collect()
}

#[derive(Clone)]
pub(crate) struct Api {
    tokens: Arc<Tokens>,
    pub(crate) live: Live,
    /// The running configuration's folder: relative paths in a validated
    /// body resolve against it, as they would if the file were there.
    config_dir: PathBuf,
}

/// An RFC 9457 problem: the status, and what to do about it; `errors`
/// locates what was refused (line and field of a configuration).
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) status: StatusCode,
    pub(crate) detail: String,
    pub(crate) errors: Vec<serde_json::Value>,
}

pub(crate) fn problem(status: StatusCode, detail: impl Into<String>) -> Problem {
    Problem {
        status,
        detail: detail.into(),
        errors: Vec::new(),
    }
}

/// An RFC 9457 problem document, as every error is answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDoc {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong and what to do about it.
    pub detail: String,
    /// What was refused: a field and the reason, and where it applies the
    /// line, the file or the stored object.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<serde_json::Value>,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemDoc {
            kind: "about:blank".into(),
            title: self.status.canonical_reason().unwrap_or("").into(),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
        };
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            serde_json::to_string(&body).expect("serializes"),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// The caller's role when it is at least `needed`; else the 401 (no or no
/// valid token) or 403 (a role too weak) to answer.
pub(crate) fn authorize(api: &Api, headers: &HeaderMap, needed: Role) -> Result<Role, Problem> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(secret) = secret else {
        return Err(problem(
            StatusCode::UNAUTHORIZED,
            "send a token: Authorization: Bearer <secret>",
        ));
    };
    match api.tokens.check(secret) {
        None => Err(problem(StatusCode::UNAUTHORIZED, "the token is not valid")),
        Some((_, role)) if role < needed => Err(problem(
            StatusCode::FORBIDDEN,
            format!(
                "this needs the {} role; the token has {}",
                needed.name(),
                role.name()
            ),
        )),
        Some((_, role)) => Ok(role),
    }
}

pub(crate) async fn ask<T>(
    engine: &mpsc::Sender<AdminRequest>,
    request: impl FnOnce(oneshot::Sender<T>) -> AdminRequest,
) -> Result<T, Problem> {
    let (reply, answer) = oneshot::channel();
    let gone = || problem(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping");
    engine.send(request(reply)).await.map_err(|_| gone())?;
    answer.await.map_err(|_| gone())
}

#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses((status = 200, description = "The server runs", content_type = "text/plain", body = String)))]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /api/v1/openapi.json`: this API's OpenAPI 3.1 document (no token:
/// it says how to call the API, nothing about what it holds).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health", security(()), responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
pub(crate) async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi_document(),
    )
        .into_response()
}

/// The OpenAPI document, as `docs/openapi.json` keeps it.
pub fn openapi_document() -> String {
    use utoipa::OpenApi;
    let mut doc = serde_json::to_value(crate::api::ApiDoc::openapi()).expect("serializes");
    merge_flattened(&mut doc);
    let mut text = serde_json::to_string_pretty(&doc).expect("serializes");
    text.push('\n');
    text
}

/// An answer that is a configuration object with more fields beside it
/// (`#[serde(flatten)]`) comes out of the generator as `allOf` of the
/// object's schema and the rest; the object's schema forbids unknown
/// fields (it is also a request body), which would make every such answer
/// invalid. Each such `allOf` is written as the one object it is.
fn merge_flattened(doc: &mut serde_json::Value) {
    use serde_json::{Map, Value};
    let Some(schemas) = doc["components"]["schemas"].as_object().cloned() else {
        return;
    };
    let resolve = |part: &Value| -> Value {
        match part.get("$ref").and_then(Value::as_str) {
            Some(r) => schemas
                .get(r.trim_start_matches("#/components/schemas/"))
                .cloned()
                .unwrap_or(Value::Null),
            None => part.clone(),
        }
    };
    let out = doc["components"]["schemas"]
        .as_object_mut()
        .expect("schemas");
    for schema in out.values_mut() {
        let Some(parts) = schema.get("allOf").and_then(Value::as_array).cloned() else {
            continue;
        };
        let mut properties = Map::new();
        let mut required: Vec<Value> = Vec::new();
        for part in parts.iter().map(resolve) {
            if let Some(p) = part.get("properties").and_then(Value::as_object) {
                properties.extend(p.clone());
            }
            if let Some(r) = part.get("required").and_then(Value::as_array) {
                required.extend(r.iter().cloned());
            }
        }
        let mut merged = Map::new();
        merged.insert("type".into(), Value::from("object"));
        if let Some(d) = schema.get("description") {
            merged.insert("description".into(), d.clone());
        }
        if !required.is_empty() {
            merged.insert("required".into(), Value::Array(required));
        }
        merged.insert("properties".into(), Value::Object(properties));
        *schema = Value::Object(merged);
    }
}

/// What every operation of the API shares: bearer tokens, and the
/// problem documents errors are answered with.
pub(crate) struct ApiConventions;

impl utoipa::Modify for ApiConventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("a token secret (`callpark token new`)"))
                    .build(),
            ),
        );
        let errors = [
            (
                "400",
                "BadRequest",
                "The request does not read (not JSON, a bad query parameter)",
            ),
            ("401", "Unauthorized", "No token, or one that is not valid"),
            ("403", "Forbidden", "The token's role may not do this"),
            ("404", "NotFound", "No such object"),
            (
                "409",
                "Conflict",
                "The configuration file owns it, it exists, or it holds parked calls",
            ),
            ("413", "TooLarge", "The body is over the limit"),
            ("422", "Refused", "Refused: the field and the reason"),
            ("500", "StoreFailed", "The store failed"),
            ("503", "Stopping", "The server is stopping"),
        ];
        for (_, name, what) in errors {
            components.responses.insert(
                name.to_string(),
                RefOr::T(
                    ResponseBuilder::new()
                        .description(what)
                        .content(
                            "application/problem+json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("Problem")))
                                .build(),
                        )
                        .build(),
                ),
            );
        }
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let public = op
                    .security
                    .as_ref()
                    .is_some_and(|s| s.iter().all(|r| r == &Default::default()));
                for (status, name, _) in errors {
                    if public && status != "503" {
                        continue;
                    }
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
                }
            }
        }
    }
}

/// `config:validate`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Valid {
    pub valid: bool,
}

/// `config:reload`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Reloaded {
    pub reloaded: bool,
    pub file: String,
}

/// The name a validated body goes by in its errors.
const BODY_FILE: &str = "request.toml";

#[utoipa::path(post, path = "/api/v1/config:validate", tag = "config", request_body(content = String, content_type = "text/plain", description = "a configuration file (TOML)"), responses((status = 200, description = "Valid", body = Valid)))]
/// `POST /api/v1/config:validate`: a TOML configuration in the body,
/// judged as `callpark check` judges a file (plugins, music and
/// certificates included, relative to the running configuration's folder).
/// Nothing is applied.
pub(crate) async fn validate_config(
    State(api): State<Api>,
    headers: HeaderMap,
    body: String,
) -> Result<axum::Json<Valid>, Problem> {
    authorize(&api, &headers, Role::Admin)?;
    let config = crate::config::Config::parse(&body, BODY_FILE).map_err(|e| Problem {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        detail: e.to_string(),
        errors: vec![serde_json::json!({
            "line": e.line,
            "field": e.field,
            "reason": e.message,
        })],
    })?;
    // Loading plugins compiles them: off the async workers.
    let path = api.config_dir.join(BODY_FILE);
    let checked =
        tokio::task::spawn_blocking(move || crate::serve::preflight(&config, &path)).await;
    match checked {
        Ok(Ok(())) => Ok(axum::Json(Valid { valid: true })),
        Ok(Err(e)) => Err(problem(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}"))),
        Err(e) => Err(problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the check failed: {e}"),
        )),
    }
}

/// `POST /api/v1/config:reload`: what SIGHUP does.
#[utoipa::path(post, path = "/api/v1/config:reload", tag = "config", responses((status = 200, description = "Applied", body = Reloaded)))]
pub(crate) async fn reload_config(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<axum::Json<Reloaded>, Problem> {
    authorize(&api, &headers, Role::Admin)?;
    match reload(api.live.clone(), "config:reload").await {
        ReloadOutcome::Applied(file) => Ok(axum::Json(Reloaded {
            reloaded: true,
            file,
        })),
        ReloadOutcome::NoFile => Err(problem(
            StatusCode::CONFLICT,
            "the server runs the embedded configuration: there is no file to re-read",
        )),
        ReloadOutcome::Refused(why) => Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{why}; the last good configuration keeps serving"),
        )),
    }
}

async fn not_found() -> Problem {
    problem(StatusCode::NOT_FOUND, "no such resource")
}

pub fn router(tokens: Arc<Tokens>, live: Live, config_dir: PathBuf) -> Router {
    crate::parked::routes(crate::api::routes(
        Router::new()
            .route("/healthz", get(healthz))
            .route("/api/v1/openapi.json", get(openapi_json))
            .route("/api/v1/config:validate", post(validate_config))
            .route("/api/v1/config:reload", post(reload_config)),
    ))
    .fallback(not_found)
    .with_state(Api {
        tokens,
        live,
        config_dir,
    })
    // A handler that panics answers 500 with a problem document and is
    // logged; the connection, the listener and the server live on.
    .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
}

fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    tracing::error!(panic = %what, "an admin API handler panicked");
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the server failed on this request (logged); read the object back to see where it stands",
    )
    .into_response()
}

/// Serves the API on `listener` until the runtime stops.
pub fn spawn(listener: tokio::net::TcpListener, router: Router) {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "admin API stopped");
        }
    });
}

/// Binds the admin listener, with the address in the error.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the admin API {addr} (admin.listen): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_handler_answers_500_with_a_problem() {
        let response = panicked(Box::new("boom"));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }

    #[test]
    fn only_the_exact_secret_matches_and_roles_are_ordered() {
        let secret = "cpk_0123";
        let tokens = Tokens::from_config(&[TokenConfig {
            name: "ops".into(),
            role: "operator".into(),
            sha256: hex(&token_hash(secret)),
        }]);
        assert_eq!(tokens.check(secret), Some(("ops", Role::Operator)));
        assert_eq!(tokens.check("cpk_012"), None, "truncated");
        assert_eq!(tokens.check("cpk_01234"), None, "extended");
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
    }
}
