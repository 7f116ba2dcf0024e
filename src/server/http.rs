//! The HTTP API: stats, room listings, presence and health, with the
//! protocol's one JSON error shape for every refusal.

use std::convert::Infallible;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::App;
use crate::backend::redis::store::StoreError;
use crate::lobby::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
use crate::protocol::{http_error_body, ts, ErrorCode, ProtoError, RoomStatus};

/// Query of `GET /api/rooms`, all optional.
#[derive(Debug, Deserialize)]
struct RoomsQuery {
    status: Option<String>,
    mode: Option<String>,
    limit: Option<String>,
}

fn error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> warp::reply::Response {
    let body = http_error_body(&ProtoError::new(code, message));
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// Health probes. `/livez`: 200 while the process serves (never asks
/// Redis, so a Redis outage restarts no pod). `/readyz`: 503 while draining
/// or while the store is unreachable, else 200 (the listener is served only
/// once start-up is complete). `/healthz` answers as `/readyz`, as it
/// always has.
fn probes(
    with_app: impl Filter<Extract = (Arc<App>,), Error = std::convert::Infallible> + Clone + Send,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let live = warp::path!("livez")
        .and(warp::get())
        .map(|| warp::reply::json(&json!({"status": "ok"})).into_response());
    let ready = warp::path!("readyz")
        .or(warp::path!("healthz"))
        .unify()
        .and(warp::get())
        .and(with_app)
        .map(|app: Arc<App>| {
            let status = if app.draining.is_cancelled() || app.shutdown.is_cancelled() {
                "shutting_down"
            } else if !app.backend.available() {
                "store_unavailable"
            } else {
                return warp::reply::json(&json!({"status": "ok"})).into_response();
            };
            warp::reply::with_status(
                warp::reply::json(&json!({ "status": status })),
                StatusCode::SERVICE_UNAVAILABLE,
            )
            .into_response()
        });
    live.or(ready).unify()
}

pub(super) fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let app_for_admin = app.clone();
    let with_app = warp::any().map(move || app.clone());

    let stats = warp::path!("api" / "stats")
        .and(warp::get())
        .and(with_app.clone())
        .then(|app: Arc<App>| async move {
            match app.stats_async().await {
                Ok(s) => warp::reply::json(&s).into_response(),
                Err(e) => unavailable(&e),
            }
        });

    let rooms = warp::path!("api" / "rooms")
        .and(warp::get())
        .and(with_app.clone())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .then(|app: Arc<App>, raw: String| async move { list_rooms(&app, &raw).await });

    let room = warp::path!("api" / "rooms" / String)
        .and(warp::get())
        .and(with_app.clone())
        .then(|id: String, app: Arc<App>| async move {
            match app.backend.room(&id).await {
                Ok(Some(room)) => warp::reply::json(&room).into_response(),
                Ok(None) => error(
                    StatusCode::NOT_FOUND,
                    ErrorCode::RoomNotFound,
                    format!("no room {id:?}"),
                ),
                Err(e) => unavailable(&e),
            }
        });

    let player = warp::path!("api" / "players" / String)
        .and(warp::get())
        .and(with_app.clone())
        .then(|id: String, app: Arc<App>| async move {
            match app.backend.player(&id).await {
                Ok(Some(p)) => warp::reply::json(&json!({
                    "player_id": id,
                    "name": p.name,
                    "connected": p.connected,
                    "room_id": p.room_id,
                    "last_seen": ts(&p.last_seen),
                }))
                .into_response(),
                Ok(None) => error(
                    StatusCode::NOT_FOUND,
                    ErrorCode::PlayerNotFound,
                    format!("no player {id:?}"),
                ),
                Err(e) => unavailable(&e),
            }
        });

    let health = probes(with_app.clone());

    let admin = admin_routes(app_for_admin);

    stats
        .or(admin)
        .unify()
        .or(rooms)
        .unify()
        .or(room)
        .unify()
        .or(player)
        .unify()
        .or(health)
        .unify()
}

/// Checks `Authorization: Bearer <admin token>`: 404 without a configured
/// token (the admin API does not exist then), 401 when it does not match.
fn admin_check(app: &App, auth: Option<String>) -> Result<(), Refusal> {
    let Some(expected) = app.cfg.admin_token.as_deref() else {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such route",
        ));
    };
    let given = auth
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    // Compare without an early exit, so timing says nothing of the token.
    let same = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(Refusal(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing or wrong admin token",
        ))
    }
}

/// A refusal decided inside a filter chain (before any body is read),
/// turned into the JSON error by [`recover`].
#[derive(Debug)]
struct Refusal(StatusCode, ErrorCode, &'static str);

impl warp::reject::Reject for Refusal {}

fn no_content() -> warp::reply::Response {
    warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response()
}

fn admin_routes(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    // The token is checked before anything else, the body included.
    let admin = warp::any()
        .map(move || app.clone())
        .and(warp::header::optional::<String>("authorization"))
        .and_then(|app: Arc<App>, auth: Option<String>| async move {
            admin_check(&app, auth)
                .map(|_| app)
                .map_err(warp::reject::custom)
        });

    let announce = warp::path!("api" / "announce")
        .and(warp::post())
        .and(admin.clone())
        .and(warp::body::content_length_limit(16 * 1024))
        .and(warp::body::bytes())
        .then(|app: Arc<App>, body: warp::hyper::body::Bytes| async move {
            #[derive(Deserialize)]
            struct Announce {
                text: String,
            }
            let text = match serde_json::from_slice::<Announce>(&body) {
                Ok(a) if !a.text.trim().is_empty() && a.text.chars().count() <= 2000 => a.text,
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        ErrorCode::BadRequest,
                        "body must be {\"text\": \"1 to 2000 characters\"}",
                    )
                }
            };
            match app.announce(&text).await {
                Ok(()) => no_content(),
                Err(e) => unavailable(&e),
            }
        });

    let close_room = warp::path!("api" / "rooms" / String)
        .and(warp::delete())
        .and(admin.clone())
        .then(|id: String, app: Arc<App>| async move {
            match app.close_room(&id).await {
                Err(e) => unavailable(&e),
                Ok(true) => no_content(),
                Ok(false) => error(
                    StatusCode::NOT_FOUND,
                    ErrorCode::RoomNotFound,
                    format!("no room {id:?}"),
                ),
            }
        });

    let kick_player = warp::path!("api" / "players" / String)
        .and(warp::delete())
        .and(admin)
        .then(|id: String, app: Arc<App>| async move {
            match app.disconnect_player(&id).await {
                Err(e) => unavailable(&e),
                Ok(true) => no_content(),
                Ok(false) => error(
                    StatusCode::NOT_FOUND,
                    ErrorCode::PlayerNotFound,
                    format!("no player {id:?}"),
                ),
            }
        });

    announce.or(close_room).unify().or(kick_player).unify()
}

/// A store failure: 503 when Redis cannot be reached, 500 otherwise.
fn unavailable(e: &StoreError) -> warp::reply::Response {
    let status = match e {
        StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        StoreError::Refused(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let e = ProtoError::from(e.clone());
    error(status, e.code, e.message)
}

async fn list_rooms(app: &App, raw: &str) -> warp::reply::Response {
    let q: RoomsQuery = match serde_urlencoded_lite(raw) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, e),
    };
    let status = match q.status.as_deref() {
        None | Some("waiting") => RoomStatus::Waiting,
        Some("active") => RoomStatus::Active,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                format!("status must be waiting or active, not {other:?}"),
            )
        }
    };
    let limit = match q.limit.as_deref().map(str::parse::<u64>) {
        None => DEFAULT_LIST_LIMIT,
        Some(Ok(n)) if n <= MAX_LIST_LIMIT => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                format!("limit must be a number from 0 to {MAX_LIST_LIMIT}"),
            )
        }
    };
    // `?mode=` (empty) is no filter, as query strings go.
    let mode = q.mode.as_deref().filter(|m| !m.is_empty());
    let rooms = match app.backend.list_rooms(status, mode, limit).await {
        Ok(r) => r,
        Err(e) => return unavailable(&e),
    };
    warp::reply::json(&json!({ "rooms": rooms })).into_response()
}

/// Parses a query string into [`RoomsQuery`] with the `url` crate's decoder,
/// so a bad value is our error message rather than warp's bare 400.
fn serde_urlencoded_lite(raw: &str) -> Result<RoomsQuery, String> {
    let mut q = RoomsQuery {
        status: None,
        mode: None,
        limit: None,
    };
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        match k.as_ref() {
            "status" => q.status = Some(v.into_owned()),
            "mode" => q.mode = Some(v.into_owned()),
            "limit" => q.limit = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok(q)
}

/// Turns warp's rejections into the protocol's JSON error shape.
pub(super) async fn recover(rej: Rejection) -> Result<warp::reply::Response, Infallible> {
    let resp = if let Some(Refusal(status, code, msg)) = rej.find::<Refusal>() {
        error(*status, *code, *msg)
    } else if rej.is_not_found() {
        error(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
    } else if rej.find::<warp::reject::MethodNotAllowed>().is_some() {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BadRequest,
            "method not allowed",
        )
    } else if rej.find::<warp::reject::PayloadTooLarge>().is_some() {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            "request body too large",
        )
    } else if rej.find::<warp::reject::LengthRequired>().is_some() {
        error(
            StatusCode::LENGTH_REQUIRED,
            ErrorCode::BadRequest,
            "content-length required",
        )
    } else if rej.find::<warp::reject::InvalidQuery>().is_some() {
        error(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "bad query string",
        )
    } else {
        tracing::debug!("unhandled rejection: {rej:?}");
        error(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "bad request",
        )
    };
    Ok(resp)
}
