//! Webhooks and the allocation hook in cluster mode.
//!
//! The script appends each hook event to the stream `rv:hooks` in the same
//! call as the change (so an event exists exactly when its change does).
//! One node at a time delivers: the holder of the lease `rv:hooks:lead`,
//! renewed every poll and lost after `--node-ttl-ms`. It reads new entries
//! through the consumer group `d` (only while its outbox has room: the
//! stream, bounded by the script, is the queue), and acknowledges and
//! deletes an entry once every URL is done with it. A node that becomes
//! leader first claims (`XAUTOCLAIM`) the entries its predecessor read but
//! did not finish, so an event whose node died is still delivered: at
//! least once, and in stream order, which keeps each room's order.
//!
//! The allocation hook: a call that starts a room returns the room's id
//! (`s`); this node asks the allocator and sends `game_start` through the
//! `announce` operation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use parking_lot::Mutex;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};

use super::Cluster;
use crate::backend::redis::store::notice::RoomRec;
use crate::backend::redis::store::{ops, PREFIX};
use crate::backend::Ctx;
use crate::hooks::outbox::Outgoing;
use crate::lobby::HookEvent;
use crate::protocol::{LeaveReason, RoomStatus};

const POLL: Duration = Duration::from_millis(200);
const GROUP: &str = "d";
const BATCH: usize = 256;

/// Gives the lease up at shutdown (only this node's), so the next node need
/// not wait for it to lapse.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// Renews (1) or takes (2) the lease for this node; 0 when another holds it.
const LEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 2 end
return 0";

fn key() -> String {
    format!("{PREFIX}hooks")
}

/// The delivering loop of a node with `--webhook-url`.
pub(super) async fn run_webhooks(ctx: Arc<Ctx>, cl: Arc<Cluster>) {
    let Some(outbox) = ctx.hooks.outbox.clone() else {
        return;
    };
    let lease = redis::Script::new(LEASE);
    let acks = Acks::default();
    let mut leading = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = ctx.shutdown.cancelled() => {
                let mut conn = cl.store.conn();
                flush_acks(&mut conn, &acks).await;
                if leading {
                    let _: redis::RedisResult<i64> = redis::Script::new(RELEASE)
                        .key(format!("{PREFIX}hooks:lead"))
                        .arg(&cl.store.node)
                        .invoke_async(&mut conn)
                        .await;
                }
                return;
            }
        }
        let mut conn = cl.store.conn();
        flush_acks(&mut conn, &acks).await;
        let held: redis::RedisResult<i64> = lease
            .key(format!("{PREFIX}hooks:lead"))
            .arg(&cl.store.node)
            .arg(ctx.cfg.node_ttl_ms)
            .invoke_async(&mut conn)
            .await;
        match held {
            Ok(0) => {
                if leading {
                    tracing::info!("webhook delivery: lease lost");
                }
                leading = false;
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("webhook lease: {e}");
                continue;
            }
        }
        if !leading {
            // Newly leading (or a restart under the same node id): the
            // entries read but not finished by the last leader come first.
            if let Err(e) = take_over(&cl, &outbox, &acks).await {
                tracing::warn!("webhook take-over: {e}");
                continue;
            }
            tracing::info!(node = %cl.store.node, "webhook delivery: this node leads");
            leading = true;
        }
        count_dropped(&ctx, &mut conn).await;
        // Read while the outbox has room; a full batch means more waits.
        loop {
            let room = BATCH.min(outbox.room_left());
            if room == 0 {
                break;
            }
            let reply: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(&cl.store.node)
                .arg("COUNT")
                .arg(room)
                .arg("STREAMS")
                .arg(key())
                .arg(">")
                .query_async(&mut conn)
                .await;
            let entries: Vec<StreamId> = match reply {
                Ok(Some(r)) => r.keys.into_iter().flat_map(|k| k.ids).collect(),
                Ok(None) => Vec::new(),
                Err(e) if e.code() == Some("NOGROUP") => {
                    leading = false; // the stream was lost (Redis restarted empty)
                    break;
                }
                Err(e) => {
                    tracing::debug!("webhook read: {e}");
                    break;
                }
            };
            let n = entries.len();
            for entry in entries {
                push_entry(&outbox, entry, &acks);
            }
            if n < room {
                break;
            }
        }
    }
}

/// Creates the group if needed, then claims every pending entry (of any
/// consumer, the dead leader's included) and queues them in order.
async fn take_over(
    cl: &Cluster,
    outbox: &Arc<crate::hooks::outbox::Outbox>,
    acks: &Acks,
) -> redis::RedisResult<()> {
    let mut conn = cl.store.conn();
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key())
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await;
    if let Err(e) = created {
        if e.code() != Some("BUSYGROUP") {
            return Err(e);
        }
    }
    let mut cursor = "0-0".to_string();
    let mut claimed = Vec::new();
    loop {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(key())
            .arg(GROUP)
            .arg(&cl.store.node)
            .arg(0)
            .arg(&cursor)
            .arg("COUNT")
            .arg(BATCH)
            .query_async(&mut conn)
            .await?;
        claimed.extend(reply.claimed);
        if reply.next_stream_id == "0-0" || reply.next_stream_id.is_empty() {
            break;
        }
        cursor = reply.next_stream_id;
    }
    claimed.sort_by_key(|e| entry_order(&e.id));
    for entry in claimed {
        push_entry(outbox, entry, acks);
    }
    Ok(())
}

fn entry_order(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// Entries this process holds (queued or being delivered), and those done
/// with, to acknowledge at the next poll.
#[derive(Default, Clone)]
struct Acks {
    held: Arc<Mutex<std::collections::HashSet<String>>>,
    done: Arc<Mutex<Vec<String>>>,
}

/// Queues one stream entry; an entry that cannot be read is acknowledged
/// (and logged) rather than retried forever. An entry this process already
/// holds (claimed again after its own lease lapsed) is not queued twice.
fn push_entry(outbox: &Arc<crate::hooks::outbox::Outbox>, entry: StreamId, acks: &Acks) {
    let id = entry.id.clone();
    if !acks.held.lock().insert(id.clone()) {
        return;
    }
    let Some((event, at_ms)) = event_of(&entry) else {
        tracing::warn!(%id, "unreadable webhook entry dropped");
        acks.held.lock().remove(&id);
        acks.done.lock().push(id);
        return;
    };
    let created = chrono::DateTime::from_timestamp_millis(at_ms as i64).unwrap_or_default();
    let age = (chrono::Utc::now() - created).to_std().unwrap_or_default();
    let made = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
    let body = crate::hooks::body(
        &id,
        event.kind(),
        &crate::protocol::ts(&created),
        &event.data(),
    );
    let acks = acks.clone();
    let ack_id = id.clone();
    outbox.push(Outgoing {
        id,
        kind: event.kind(),
        room_id: event.room_id().to_string(),
        body: Bytes::from(body),
        made,
        done: Some(Box::new(move || {
            acks.held.lock().remove(&ack_id);
            acks.done.lock().push(ack_id);
        })),
    });
}

/// The event of a stream entry, and when it was made (ms).
fn event_of(entry: &StreamId) -> Option<(HookEvent, u64)> {
    let field = |k: &str| entry.get::<String>(k);
    let at: u64 = field("at")?.parse().ok()?;
    let room = || -> Option<RoomRec> { serde_json::from_str(&field("room")?).ok() };
    let event = match field("t")?.as_str() {
        "room.created" => HookEvent::RoomCreated {
            room: room()?.info(true),
        },
        "player.joined" => {
            let room = room()?;
            let pid = field("p")?;
            let player = room.pl.iter().find(|s| s.id == pid)?.info();
            HookEvent::PlayerJoined {
                room: room.info(true),
                player,
            }
        }
        "player.left" => HookEvent::PlayerLeft {
            room_id: field("rid")?,
            player_id: field("p")?,
            reason: serde_json::from_value::<LeaveReason>(serde_json::Value::String(field(
                "reason",
            )?))
            .ok()?,
        },
        "match.started" => HookEvent::MatchStarted {
            room: room()?.info(true),
        },
        "room.finished" => HookEvent::RoomFinished {
            room: room()?.info(true),
            result: field("result")
                .filter(|r| !r.is_empty())
                .and_then(|r| serde_json::from_str(&r).ok()),
        },
        "room.closed" => HookEvent::RoomClosed {
            room_id: field("rid")?,
        },
        _ => return None,
    };
    Some((event, at))
}

/// Acknowledges and deletes the entries every URL is done with.
async fn flush_acks(conn: &mut redis::aio::ConnectionManager, acks: &Acks) {
    let ids = std::mem::take(&mut *acks.done.lock());
    if ids.is_empty() {
        return;
    }
    let r: redis::RedisResult<()> = redis::pipe()
        .cmd("XACK")
        .arg(key())
        .arg(GROUP)
        .arg(&ids)
        .ignore()
        .cmd("XDEL")
        .arg(key())
        .arg(&ids)
        .ignore()
        .query_async(conn)
        .await;
    if let Err(e) = r {
        tracing::debug!("webhook ack: {e}");
        acks.done.lock().extend(ids); // next round
    }
}

/// Events the script could not append (the stream at `--webhook-queue`)
/// are counted in Redis; the leader moves them to its metrics.
async fn count_dropped(ctx: &Ctx, conn: &mut redis::aio::ConnectionManager) {
    let n: redis::RedisResult<Option<u64>> = redis::cmd("GETDEL")
        .arg(format!("{PREFIX}hooks:dropped"))
        .query_async(conn)
        .await;
    if let Ok(Some(n)) = n {
        if n > 0 {
            ctx.hooks.metrics.dropped_overflow.increment(n);
            tracing::warn!("{n} webhook events dropped: the stream was full (--webhook-queue)");
        }
    }
}

/// The allocation hook's task: for each room this node's calls started,
/// ask the allocator (each in its own task) and announce `game_start`.
pub(super) async fn run_allocations(ctx: Arc<Ctx>, cl: Arc<Cluster>) {
    loop {
        tokio::select! {
            _ = cl.store.starts_ready.notified() => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        let starts = std::mem::take(&mut *cl.store.starts.lock());
        for id in starts {
            let ctx = ctx.clone();
            let cl = cl.clone();
            tokio::spawn(async move {
                let room = match cl.store.room(&id).await {
                    Ok(Some(text)) => serde_json::from_str::<RoomRec>(&text).ok(),
                    _ => None,
                };
                let Some(room) = room.filter(|r| r.st == RoomStatus::Active) else {
                    return;
                };
                let alloc = ctx.hooks.allocate(&room.info(true)).await;
                let text = alloc
                    .allocation
                    .as_ref()
                    .map(|a| serde_json::Value::Object(a.clone()).to_string());
                let r = cl
                    .store
                    .run(&ops::Announce {
                        id: &id,
                        alloc: text,
                        aerr: alloc.allocation_error.as_deref(),
                    })
                    .await;
                if let Err(e) = r {
                    tracing::warn!(room = %id, "game_start after allocation not sent: {e}");
                }
            });
        }
    }
}
