//! Liveness and timers of a cluster node: beats that keep this node
//! registered and reap dead ones, and the ticks that run the lobby's timers
//! (held seats, finished and idle rooms) and push stats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::Cluster;
use crate::backend::conns::close_frame;
use crate::backend::redis::store::ops;
use crate::backend::Ctx;
use crate::protocol::Event;

/// Refreshes this node's beat every third of its TTL and reaps nodes whose
/// beats lapsed. When Redis lost its data or the others took this node for
/// dead, its connections are closed (1012) so their clients reconnect and
/// resume against the lobby as it is.
pub(super) async fn run_beats(ctx: Arc<Ctx>, cl: Arc<Cluster>) {
    let store = &cl.store;
    let every = Duration::from_millis((ctx.cfg.node_ttl_ms / 3).max(100));
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gen: Option<String> = None;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        let (conns, watching) = {
            let st = cl.state.lock();
            (st.table.conns.len() as u64, !st.table.room_subs.is_empty())
        };
        let proposal = uuid::Uuid::new_v4().simple().to_string();
        let r = store
            .run(&ops::Beat {
                conns,
                ttl_ms: ctx.cfg.node_ttl_ms,
                grace_ms: ctx.cfg.reconnect_grace_ms,
                watching,
                generation: &proposal,
                first: gen.is_none(),
                pending: ctx.cfg.resume_buffer,
                hooks: if ctx.hooks.webhooks_on() {
                    ctx.hooks.events.join(" ")
                } else {
                    String::new()
                },
                hookcap: ctx.cfg.webhook_queue,
                alloc: ctx.hooks.allocator_on(),
            })
            .await;
        let beat: crate::backend::redis::store::Beat = match r.map(serde_json::from_value) {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::error!("bad beat reply: {e}");
                continue;
            }
            Err(e) => {
                tracing::debug!("beat failed: {e}");
                continue;
            }
        };
        if beat.reaped > 0 {
            tracing::info!(
                players = beat.reaped,
                "held the seats of players of dead nodes"
            );
        }
        let lost = match &gen {
            None => false,
            Some(g) => *g != beat.gen || beat.fresh,
        };
        gen = Some(beat.gen);
        if lost {
            tracing::warn!(
                node = %store.node,
                "the store lost this node's state (Redis restarted empty, or the node was taken for dead); closing its connections so clients resume"
            );
            let mut st = cl.state.lock();
            st.table.close_all(close_frame(
                CloseCode::Restart,
                "lobby state was reset; reconnect",
            ));
            st.routes.clear();
        }
        let _ = cl.stats().await;
    }
}

/// Timers (held seats, finished and idle rooms) and stats pushes.
pub(super) async fn run_ticks(ctx: Arc<Ctx>, cl: Arc<Cluster>) {
    let mut interval = tokio::time::interval(crate::backend::TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Fresh room ids and codes each time: the rooms tickets may form.
        let tick = ops::Tick {
            idle_ms: ctx.cfg.room_idle_timeout_ms,
            rooms: (0..4).map(|_| super::new_room()).collect(),
            fill_ms: ctx.cfg.ticket_fill_after_ms,
            max_rooms: ctx.cfg.max_rooms,
            now: super::now(),
        };
        tokio::select! {
            _ = interval.tick() => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        if !cl.store.available() {
            continue;
        }
        if let Err(e) = cl.store.run(&tick).await {
            tracing::debug!("tick failed: {e}");
            continue;
        }
        let now = Instant::now();
        let due = cl.state.lock().table.stats_due(now);
        if due.is_empty() {
            continue;
        }
        let Ok(mut stats) = cl.stats().await else {
            continue;
        };
        stats.uptime_s = ctx.started.elapsed().as_secs();
        let text = Utf8Bytes::from(Event::Stats { stats }.to_json());
        let st = cl.state.lock();
        for pid in due {
            st.table.send(&pid, &text);
        }
    }
}
