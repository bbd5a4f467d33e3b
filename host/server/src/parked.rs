//! `/api/v1/parked`: the parked-call directory and what an operator does
//! to a parked call. The handlers only translate: the engine answers
//! (`Engine::handle_command`), through the serve loop.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use callpark_engine::{Command, ParkedView, RecallView, Reply, SubscriptionView};
use serde::Serialize;
use utoipa::ToSchema;

use crate::admin::{AdminRequest, Api, Problem, Role, ask, authorize, problem};

/// A parked call, as the directory shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParkedOut {
    /// The server's id of the call (the same in the log's events).
    pub id: u64,
    pub orbit: String,
    /// Its place in the orbit's queue, from 1.
    pub position: usize,
    pub caller_uri: String,
    pub caller_display: String,
    /// The parked caller's SIP Call-ID.
    pub call_id: String,
    /// Who parked it; empty when unknown.
    pub parker: String,
    /// Milliseconds since the Unix epoch.
    pub parked_at_ms: u64,
    /// When recall starts (milliseconds since the Unix epoch); `null` when
    /// none is due (recalling already, or an orbit that never recalls).
    pub recall_at_ms: Option<u64>,
    pub recall: RecallOut,
}

/// Where a parked call's recall stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecallOut {
    /// `idle`, `ringing` or `recalling` (between steps).
    pub state: String,
    /// Who rings now (`ringing`).
    pub target: Option<String>,
    /// The step of the plan (from 1) and how many it has.
    pub step: Option<usize>,
    pub steps: Option<usize>,
}

fn parked_json(v: ParkedView) -> ParkedOut {
    let recall = match v.recall {
        RecallView::Idle => RecallOut {
            state: "idle".into(),
            target: None,
            step: None,
            steps: None,
        },
        RecallView::Ringing {
            target,
            step,
            steps,
        } => RecallOut {
            state: "ringing".into(),
            target: Some(target),
            step: Some(step),
            steps: Some(steps),
        },
        RecallView::Recalling { step, steps } => RecallOut {
            state: "recalling".into(),
            target: None,
            step: Some(step),
            steps: Some(steps),
        },
    };
    ParkedOut {
        id: v.id,
        orbit: v.orbit,
        position: v.position,
        caller_uri: v.caller_uri,
        caller_display: v.caller_display,
        call_id: v.call_id,
        parker: v.parker,
        parked_at_ms: v.parked_at_ms,
        recall_at_ms: v.recall_at_ms,
        recall,
    }
}

/// A busy-lamp watcher.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionOut {
    pub id: u64,
    /// `orbit` or `group`.
    pub kind: String,
    /// The orbit number or group name watched.
    pub watched: String,
    /// Who watches: the SUBSCRIBE's From.
    pub watcher: String,
    /// The subscription's SIP Call-ID.
    pub call_id: String,
    /// When it expires unless refreshed (milliseconds since the Unix epoch).
    pub expires_at_ms: u64,
}

fn subscription_json(v: SubscriptionView) -> SubscriptionOut {
    SubscriptionOut {
        id: v.id,
        kind: v.kind.to_string(),
        watched: v.watched,
        watcher: v.watcher,
        call_id: v.call_id,
        expires_at_ms: v.expires_at_ms,
    }
}

/// The engine answered a command with a reply of another kind: a bug.
fn unexpected(reply: &Reply) -> Problem {
    tracing::error!(?reply, "the engine answered a command with the wrong reply");
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the engine answered something else",
    )
}

#[utoipa::path(get, path = "/api/v1/subscriptions", tag = "parked", responses((status = 200, description = "Every busy-lamp watcher", body = Vec<SubscriptionOut>)))]
pub(crate) async fn list_subscriptions(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    authorize(&api, &headers, Role::Viewer)?;
    match command(&api, Command::ListSubscriptions).await? {
        Reply::Subscriptions(subs) => {
            let subs: Vec<SubscriptionOut> = subs.into_iter().map(subscription_json).collect();
            Ok((StatusCode::OK, axum::Json(subs)).into_response())
        }
        other => Err(unexpected(&other)),
    }
}

/// The directory's filters.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ParkedFilter {
    /// Only the calls on this orbit.
    #[param(required = false)]
    orbit: Option<String>,
    /// Only the calls on the orbits of this orbit range.
    #[param(required = false)]
    range: Option<String>,
    /// Only the calls on the destinations of this call park group.
    #[param(required = false)]
    group: Option<String>,
}

async fn command(api: &Api, command: Command) -> Result<Reply, Problem> {
    ask(&api.live.engine, |reply| {
        AdminRequest::Command(command, reply)
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/parked", tag = "parked", params(ParkedFilter), responses((status = 200, description = "Every parked call (filtered), in orbit order, then queue position", body = Vec<ParkedOut>)))]
pub(crate) async fn list_parked(
    State(api): State<Api>,
    headers: HeaderMap,
    filter: Result<Query<ParkedFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    authorize(&api, &headers, Role::Viewer)?;
    let Query(filter) = filter.map_err(|e| problem(StatusCode::BAD_REQUEST, e.body_text()))?;
    // The range and group a filter names, from the running configuration;
    // an unknown one is a 404, not an empty list.
    let (range, group) = {
        let prov = api.live.prov.lock().await;
        let config = &prov.config;
        let range = match &filter.range {
            None => None,
            Some(name) => match config.range.iter().find(|r| r.name == *name) {
                Some(r) => Some(r.clone()),
                None => {
                    return Err(problem(
                        StatusCode::NOT_FOUND,
                        format!("no orbit range `{name}`"),
                    ));
                }
            },
        };
        let group = match &filter.group {
            None => None,
            Some(name) => match config
                .group
                .iter()
                .find(|g| g.name.eq_ignore_ascii_case(name))
            {
                Some(g) => Some(g.destinations.clone()),
                None => return Err(problem(StatusCode::NOT_FOUND, format!("no group `{name}`"))),
            },
        };
        (range, group)
    };
    let calls = match command(&api, Command::ListParked).await? {
        Reply::Parked(calls) => calls,
        other => return Err(unexpected(&other)),
    };
    let calls: Vec<ParkedOut> = calls
        .into_iter()
        .filter(|c| filter.orbit.as_ref().is_none_or(|o| *o == c.orbit))
        .filter(|c| range.as_ref().is_none_or(|r| r.contains(&c.orbit)))
        .filter(|c| group.as_ref().is_none_or(|g| g.contains(&c.orbit)))
        .map(parked_json)
        .collect();
    Ok((StatusCode::OK, axum::Json(calls)).into_response())
}

/// The id in a path, or a 404 (an id is a number).
fn call_id(key: &str) -> Result<u64, Problem> {
    key.parse()
        .map_err(|_| problem(StatusCode::NOT_FOUND, format!("no parked call `{key}`")))
}

#[utoipa::path(get, path = "/api/v1/parked/{id}", tag = "parked", params(("id" = String, Path, description = "the call's id", example = "7")), responses((status = 200, description = "The parked call", body = ParkedOut)))]
pub(crate) async fn get_parked(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    authorize(&api, &headers, Role::Viewer)?;
    let id = call_id(&key)?;
    let calls = match command(&api, Command::ListParked).await? {
        Reply::Parked(calls) => calls,
        other => return Err(unexpected(&other)),
    };
    match calls.into_iter().find(|c| c.id == id) {
        Some(c) => Ok((StatusCode::OK, axum::Json(parked_json(c))).into_response()),
        None => Err(problem(
            StatusCode::NOT_FOUND,
            format!("no parked call `{key}`"),
        )),
    }
}

#[utoipa::path(delete, path = "/api/v1/parked/{id}", tag = "parked", params(("id" = String, Path, description = "the call's id", example = "7")), responses((status = 200, description = "Hung up: the caller got a BYE and the orbit is free; the call as it was", body = ParkedOut)))]
pub(crate) async fn hang_up(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    let role = authorize(&api, &headers, Role::Operator)?;
    let id = call_id(&key)?;
    match command(&api, Command::HangUp { call: id }).await? {
        Reply::HungUp(view) => {
            tracing::info!(call = id, orbit = %view.orbit, role = role.name(), "operator hung up a parked call");
            Ok((StatusCode::OK, axum::Json(parked_json(view))).into_response())
        }
        Reply::NoSuchCall(_) => Err(problem(
            StatusCode::NOT_FOUND,
            format!("no parked call `{key}`"),
        )),
        other => Err(unexpected(&other)),
    }
}

/// Where to move a parked call.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveIn {
    /// An orbit number or extension name.
    pub orbit: String,
}

#[utoipa::path(post, path = "/api/v1/parked/{id}/move", tag = "parked", params(("id" = String, Path, description = "the call's id", example = "7")), request_body = MoveIn, responses((status = 200, description = "Moved: the call on its new orbit (its caller hears that orbit's music; the lamps of both orbits follow)", body = ParkedOut)))]
pub(crate) async fn move_parked(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let role = authorize(&api, &headers, Role::Operator)?;
    let id = call_id(&key)?;
    let MoveIn { orbit } = crate::api::parse_body(crate::api::json_body(&body)?)?;
    match command(
        &api,
        Command::Move {
            call: id,
            orbit: orbit.clone(),
        },
    )
    .await?
    {
        Reply::Moved(view) => {
            tracing::info!(call = id, to = %view.orbit, role = role.name(), "operator moved a parked call");
            Ok((StatusCode::OK, axum::Json(parked_json(view))).into_response())
        }
        Reply::NoSuchCall(_) => Err(problem(
            StatusCode::NOT_FOUND,
            format!("no parked call `{key}`"),
        )),
        Reply::Refused { status, reason } => Err(problem(
            StatusCode::from_u16(status).unwrap_or(StatusCode::CONFLICT),
            reason,
        )),
        other => Err(unexpected(&other)),
    }
}

/// The parked-call routes, added to the admin router.
pub(crate) fn routes(router: Router<Api>) -> Router<Api> {
    router
        .route("/api/v1/parked", get(list_parked))
        .route("/api/v1/parked/{key}", get(get_parked).delete(hang_up))
        .route(
            "/api/v1/parked/{key}/move",
            axum::routing::post(move_parked),
        )
        .route("/api/v1/subscriptions", get(list_subscriptions))
}
