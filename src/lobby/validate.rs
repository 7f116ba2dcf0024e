//! Checks of request fields against the engine's limits, shared with the
//! cluster store (which validates before it calls its Lua engine).

use serde_json::Value;

use crate::protocol::{ErrorCode, JsonObject, ProtoError};

/// Chat lines kept per room for `chat_history`.
pub const CHAT_HISTORY: usize = 20;
pub const MAX_CHAT_CHARS: usize = 500;
pub const MAX_MODE_CHARS: usize = 64;
/// Serialized size cap of room or player `data`, and of a `finish_game` result.
pub const MAX_DATA_BYTES: usize = 16 * 1024;
pub const MAX_FILTERS: usize = 16;
pub const MAX_ALLOWED: usize = 256;
pub const MAX_LIST_LIMIT: u64 = 500;
pub const DEFAULT_LIST_LIMIT: u64 = 50;

pub(crate) fn err(code: ErrorCode, msg: impl Into<String>) -> ProtoError {
    ProtoError::new(code, msg)
}

pub(super) fn not_in_room() -> ProtoError {
    err(ErrorCode::NotInRoom, "you are not in a room")
}

pub(crate) fn check_data(data: &JsonObject, what: &str) -> Result<(), ProtoError> {
    let len = serde_json::to_string(data).map(|s| s.len()).unwrap_or(0);
    if len > MAX_DATA_BYTES {
        return Err(ProtoError::bad_request(format!(
            "{what} is {len} bytes of JSON, the limit is {MAX_DATA_BYTES}"
        )));
    }
    Ok(())
}

pub(crate) fn check_mode(mode: Option<&str>) -> Result<String, ProtoError> {
    let mode = mode.unwrap_or("default");
    if mode.is_empty() || mode.chars().count() > MAX_MODE_CHARS {
        return Err(ProtoError::bad_request(format!(
            "mode must be 1 to {MAX_MODE_CHARS} characters"
        )));
    }
    Ok(mode.to_string())
}

/// Whether a data value can be asked for by a filter (and is indexed for
/// matchmaking): strings, numbers and booleans.
pub fn is_scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

/// `max_players` of a request (default 2) against the server's limit.
pub(crate) fn check_max_players(limit: u64, n: Option<u64>) -> Result<u64, ProtoError> {
    let n = n.unwrap_or(2);
    if n < 2 || n > limit {
        return Err(ProtoError::bad_request(format!(
            "max_players must be 2 to {limit}, got {n}"
        )));
    }
    Ok(n)
}

/// Most spectator places a room may have.
pub const MAX_SPECTATORS: u64 = 100;

/// `max_spectators` of `create_room` (default 0).
pub(crate) fn check_max_spectators(n: Option<u64>) -> Result<u64, ProtoError> {
    let n = n.unwrap_or(0);
    if n > MAX_SPECTATORS {
        return Err(ProtoError::bad_request(format!(
            "max_spectators must be 0 to {MAX_SPECTATORS}, got {n}"
        )));
    }
    Ok(n)
}

/// `join_room`'s `as`: `player` (the default) or `spectator`.
pub(crate) fn check_join_role(role: Option<&str>) -> Result<(), ProtoError> {
    match role {
        None | Some("player") | Some("spectator") => Ok(()),
        Some(other) => Err(ProtoError::bad_request(format!(
            "as must be \"player\" or \"spectator\", got {other:?}"
        ))),
    }
}

/// `find_match` filters: few, scalar, and small.
pub(crate) fn check_filters(filters: &JsonObject) -> Result<(), ProtoError> {
    if filters.len() > MAX_FILTERS {
        return Err(ProtoError::bad_request(format!(
            "at most {MAX_FILTERS} filters"
        )));
    }
    if let Some((k, _)) = filters.iter().find(|(_, v)| !is_scalar(v)) {
        return Err(ProtoError::bad_request(format!(
            "filter {k:?} must be a string, number or boolean"
        )));
    }
    check_data(filters, "filters")
}

/// `create_room`'s access lists.
pub(crate) fn check_allowed(players: &[String], roles: &[String]) -> Result<(), ProtoError> {
    if players.len() > MAX_ALLOWED || roles.len() > MAX_ALLOWED {
        return Err(ProtoError::bad_request(format!(
            "allowed_players and allowed_roles take at most {MAX_ALLOWED} entries"
        )));
    }
    Ok(())
}

pub(crate) fn check_chat_text(text: &str) -> Result<(), ProtoError> {
    let n = text.chars().count();
    if n == 0 || n > MAX_CHAT_CHARS || text.trim().is_empty() {
        return Err(ProtoError::bad_request(format!(
            "chat text must be 1 to {MAX_CHAT_CHARS} characters, not blank"
        )));
    }
    Ok(())
}
