//! Where a PeerJS peer id lives in cluster mode, so two PeerJS clients on
//! two nodes find each other.
//!
//! PeerJS peers are not lobby players: they have no seat and nothing to
//! resume, so they stay out of the lobby script. Each id is one Redis key
//! `rv:pj:<id>` -> `node \x1f conn \x1f token digest`, written only if free
//! (or held by the same token: PeerJS's reconnect), with a TTL the holder
//! refreshes while its socket is alive, so the ids of a node that died free
//! themselves. A message for a peer elsewhere is published on the holder
//! node's own notice channel as a [`Notice::PeerJs`](super::notice::Notice).
//! Each node also keeps its count of PeerJS connections in `rv:pjn:<node>`
//! (same TTL) for the cluster's `connections`.

use std::time::Duration;

use sha1::{Digest, Sha1};

use super::{Store, StoreError, PREFIX};

/// How long an id stays claimed without a refresh from its node.
pub const CLAIM_TTL: Duration = Duration::from_secs(30);

/// Claims an id unless another token holds it; 0 taken, 1 new, or the
/// previous holder's value (a reconnect with the same token).
const CLAIM: &str = r#"
local v = redis.call('GET', KEYS[1])
if v and string.match(v, '[^\31]*$') ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
if v then return v end
return 1
"#;

/// Deletes or refreshes the key only while it is still this holder's.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"#;

fn key(id: &str) -> String {
    format!("{PREFIX}pj:{id}")
}

/// What a claim found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claimed {
    /// The id was free: now ours.
    New,
    /// The same token held it (on `node`, connection `conn`): now ours.
    TakenOver { node: String, conn: u64 },
    /// Another token holds it.
    Taken,
}

/// This holder's value of an id's key.
pub struct Holder {
    value: String,
}

impl Holder {
    pub fn new(node: &str, conn: u64, token: &str) -> Holder {
        let digest = Sha1::digest(token.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Holder {
            value: format!("{node}\u{1f}{conn}\u{1f}{hex}"),
        }
    }

    fn token_digest(&self) -> &str {
        self.value.rsplit('\u{1f}').next().unwrap_or("")
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl Store {
    /// Claims `id` for `holder` (see [`Claimed`]).
    pub async fn peerjs_claim(&self, id: &str, holder: &Holder) -> Result<Claimed, StoreError> {
        let mut conn = self.conn.clone();
        let reply: redis::Value = redis::Script::new(CLAIM)
            .key(key(id))
            .arg(&holder.value)
            .arg(holder.token_digest())
            .arg(CLAIM_TTL.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(match reply {
            redis::Value::Int(0) => Claimed::Taken,
            redis::Value::BulkString(old) => {
                let old = String::from_utf8_lossy(&old).into_owned();
                let mut parts = old.split('\u{1f}');
                let node = parts.next().unwrap_or("").to_string();
                let conn = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                Claimed::TakenOver { node, conn }
            }
            _ => Claimed::New,
        })
    }

    /// Frees `id` if `holder` still has it.
    pub async fn peerjs_release(&self, id: &str, holder: &Holder) -> Result<(), StoreError> {
        self.peerjs_release_or_refresh(id, holder, "").await
    }

    /// Extends the claim of `holder` on `id` by [`CLAIM_TTL`].
    pub async fn peerjs_refresh(&self, id: &str, holder: &Holder) -> Result<(), StoreError> {
        let ttl = CLAIM_TTL.as_millis().to_string();
        self.peerjs_release_or_refresh(id, holder, &ttl).await
    }

    async fn peerjs_release_or_refresh(
        &self,
        id: &str,
        holder: &Holder,
        ttl: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::Script::new(RELEASE)
            .key(key(id))
            .arg(&holder.value)
            .arg(ttl)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// The node holding `id`, if any.
    pub async fn peerjs_node(&self, id: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        let v: Option<String> = redis::cmd("GET")
            .arg(key(id))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(v.and_then(|v| v.split('\u{1f}').next().map(str::to_string)))
    }

    /// Every claimed id (discovery, `--peerjs-discovery`), at most `limit`.
    pub async fn peerjs_ids(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{PREFIX}pj:*");
        let mut cursor: u64 = 0;
        let mut ids = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let start = PREFIX.len() + 3;
            ids.extend(
                keys.into_iter()
                    .filter_map(|k| k.get(start..).map(str::to_string)),
            );
            cursor = next;
            if cursor == 0 || ids.len() >= limit {
                ids.truncate(limit);
                return Ok(ids);
            }
        }
    }

    /// Publishes this node's count of PeerJS connections (for the
    /// cluster's `connections`); it lapses with the node.
    pub async fn peerjs_set_count(&self, n: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(format!("{PREFIX}pjn:{}", self.node))
            .arg(n)
            .arg("PX")
            .arg(CLAIM_TTL.as_millis() as u64)
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// PeerJS connections of every live node.
    pub async fn peerjs_count_all(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{PREFIX}pjn:*"))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if keys.is_empty() {
            return Ok(0);
        }
        let counts: Vec<Option<u64>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(counts.into_iter().flatten().sum())
    }

    /// Counts a relayed PeerJS message in the cluster's `signals_relayed`.
    pub async fn peerjs_count_signal(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("HINCRBY")
            .arg(format!("{PREFIX}stats"))
            .arg("signals_relayed")
            .arg(1)
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Publishes a notice for a PeerJS peer on `node`; false when no one
    /// listens there (the node is gone).
    pub async fn peerjs_publish(&self, node: &str, notice: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let n: i64 = redis::cmd("PUBLISH")
            .arg(super::channel(node))
            .arg(notice)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(n > 0)
    }
}
