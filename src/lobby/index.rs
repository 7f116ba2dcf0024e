//! The matchmaking index: every matchable room (public, waiting, a free seat,
//! open to anyone) under the key `(mode, max_players)`, oldest first, and
//! again under `(mode, max_players, data key = value)` for each scalar entry
//! of its data.
//!
//! Without filters `find_match` takes the first room of one ordered bucket:
//! O(log n) whatever the number of rooms. With filters it walks the smallest
//! of the filters' buckets, where every room already matches one filter, so
//! the walk only meets rooms that differ on the other filters.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use uuid::Uuid;

use super::room::Room;
use crate::protocol::JsonObject;

/// A bucket of the index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MatchKey {
    pub mode: String,
    pub max_players: u64,
    /// `None` for the bucket of all rooms of the mode and size; else a data
    /// key and the JSON text of its value (so `1` and `"1"` stay apart).
    pub attr: Option<(String, String)>,
    /// The buckets of active backfill rooms, apart from waiting rooms'.
    pub refill: bool,
}

impl MatchKey {
    fn base(mode: &str, max_players: u64, refill: bool) -> Self {
        MatchKey {
            mode: mode.to_string(),
            max_players,
            attr: None,
            refill,
        }
    }

    fn attr(mode: &str, max_players: u64, key: &str, value: &Value, refill: bool) -> Self {
        MatchKey {
            mode: mode.to_string(),
            max_players,
            attr: Some((key.to_string(), value.to_string())),
            refill,
        }
    }
}

/// The keys a room is filed under while matchable.
pub fn keys_of(room: &Room) -> Vec<MatchKey> {
    let refill = room.refillable();
    let mut keys = vec![MatchKey::base(&room.mode, room.max_players, refill)];
    keys.extend(
        room.filterable()
            .map(|(k, v)| MatchKey::attr(&room.mode, room.max_players, k, v, refill)),
    );
    keys
}

#[derive(Debug, Default)]
pub struct MatchIndex {
    buckets: HashMap<MatchKey, BTreeMap<u64, Uuid>>,
}

impl MatchIndex {
    pub fn insert(&mut self, keys: &[MatchKey], seq: u64, id: Uuid) {
        for key in keys {
            self.buckets.entry(key.clone()).or_default().insert(seq, id);
        }
    }

    pub fn remove(&mut self, keys: &[MatchKey], seq: u64) {
        for key in keys {
            if let Some(bucket) = self.buckets.get_mut(key) {
                bucket.remove(&seq);
                // Empty buckets go, or churn of modes and data would leak keys.
                if bucket.is_empty() {
                    self.buckets.remove(key);
                }
            }
        }
    }

    /// Candidate rooms for a request, oldest first: the smallest bucket that
    /// every matching room must be in (of active backfill rooms with
    /// `refill`, else of waiting rooms). The caller checks the other filters.
    pub fn candidates<'a>(
        &'a self,
        mode: &str,
        max_players: u64,
        filters: &JsonObject,
        refill: bool,
    ) -> impl Iterator<Item = Uuid> + 'a {
        let mut best = self.buckets.get(&MatchKey::base(mode, max_players, refill));
        for (k, v) in filters {
            let bucket = self
                .buckets
                .get(&MatchKey::attr(mode, max_players, k, v, refill));
            match bucket {
                // A filter no matchable room satisfies: nothing can match.
                None => {
                    best = None;
                    break;
                }
                Some(b) if best.is_none_or(|cur| b.len() < cur.len()) => best = Some(b),
                Some(_) => {}
            }
        }
        best.into_iter().flat_map(|b| b.values().copied())
    }

    /// Number of buckets (for invariant checks and leak tests).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Every (key, seq, id) entry, for invariant checks.
    pub fn entries(&self) -> impl Iterator<Item = (&MatchKey, u64, Uuid)> {
        self.buckets
            .iter()
            .flat_map(|(k, b)| b.iter().map(move |(s, id)| (k, *s, *id)))
    }
}
