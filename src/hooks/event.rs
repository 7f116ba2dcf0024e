//! The JSON body each webhook event becomes, and the `--webhook-events`
//! filter. The events themselves are the engine's (`lobby::HookEvent`):
//! this module sees only their type, room and `data`.

use serde_json::{json, Value};

/// The POSTed body: `{"id", "type", "created_at", "data"}`. Built once per
/// event: every retry and every URL gets the same bytes.
pub fn body(id: &str, kind: &str, created_at: &str, data: &Value) -> String {
    json!({ "id": id, "type": kind, "created_at": created_at, "data": data }).to_string()
}

/// Which event types to send (`--webhook-events`; empty: all of `known`).
/// Unknown names are a start-up error.
pub fn parse_filter(names: &[String], known: &[&'static str]) -> Result<Vec<&'static str>, String> {
    if names.is_empty() {
        return Ok(known.to_vec());
    }
    names
        .iter()
        .map(|n| {
            known
                .iter()
                .find(|t| **t == n.as_str())
                .copied()
                .ok_or_else(|| {
                    format!(
                        "--webhook-events: unknown event {n:?} (known: {})",
                        known.join(", ")
                    )
                })
        })
        .collect()
}
