//! This node's side of the store's pub/sub: the subscription to its own
//! channel (notices), the room-list channel and the announcements, and
//! how each notice becomes frames on this node's connections.
//!
//! A subscription that is cut while Redis runs loses whatever was
//! published meanwhile, so then every connection of this node is closed
//! with 1012: the clients reconnect and resume against the lobby as it is,
//! and the store's pending lists give them what they missed while their
//! seats were held.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::{send_local, send_local_owned, Cluster, State};
use crate::backend::conns::{close_frame, kicked_by_admin, replaced, Conn};
use crate::backend::redis::store::notice::{
    Hello, ListingNotice, Notice, ReplySpec, RoomRec, Spec,
};
use crate::backend::redis::store::resp::Reply;
use crate::backend::redis::store::{channel, ops, ALL_CHANNEL, LIST_CHANNEL, PREFIX};
use crate::backend::Ctx;
use crate::protocol::ok_reply;

/// Receives this node's notices, the room-list changes and announcements;
/// reconnects with backoff when Redis goes away.
pub(super) async fn run_subscriber(ctx: Arc<Ctx>, cl: Arc<Cluster>) {
    let store = cl.store.clone();
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = async {
            let mut conn = store.raw().await?;
            let (list, all) = (channel(LIST_CHANNEL), channel(ALL_CHANNEL));
            conn.send(&[
                b"SUBSCRIBE",
                store.channel.as_bytes(),
                list.as_bytes(),
                all.as_bytes(),
            ])
            .await?;
            for _ in 0..3 {
                conn.next(|r| match r.ok()? {
                    Reply::Array(Some(a))
                        if a.first() == Some(&Reply::Bulk(Some(b"subscribe"))) =>
                    {
                        Ok(())
                    }
                    other => Err(std::io::Error::other(format!(
                        "unexpected answer to SUBSCRIBE: {other:?}"
                    ))),
                })
                .await??;
            }
            Ok::<_, std::io::Error>(conn)
        };
        let conn = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(2), attempt) => r,
            _ = ctx.shutdown.cancelled() => return,
        };
        match conn {
            Ok(Ok(mut conn)) => {
                backoff = Duration::from_millis(100);
                store.subscribed.store(true, Ordering::Relaxed);
                loop {
                    tokio::select! {
                        r = conn.next(|reply| {
                            // `message`, channel, payload; nothing else is
                            // pushed on a subscribed connection.
                            if let Reply::Array(Some(a)) = reply {
                                if let [Reply::Bulk(Some(b"message")), Reply::Bulk(Some(ch)), Reply::Bulk(Some(payload))] = &a[..] {
                                    on_message(&ctx, &cl, std::str::from_utf8(ch).unwrap_or(""), payload);
                                }
                            }
                        }) => if let Err(e) = r {
                            tracing::debug!("notice subscription ended: {e}");
                            break;
                        },
                        _ = ctx.shutdown.cancelled() => return,
                    }
                }
                store.subscribed.store(false, Ordering::Relaxed);
                // Cut while Redis still runs (a proxy, a client kill): the
                // notices published meanwhile are gone, so the clients must
                // resume to see the lobby as it is. With Redis down nothing
                // is published; the sockets stay, requests get `internal`,
                // and the beats close them if Redis comes back empty.
                if store.ping().await {
                    tracing::warn!(
                        node = %store.node,
                        "notice subscription cut; closing this node's connections so their clients resume"
                    );
                    let mut st = cl.state.lock();
                    st.table.close_all(close_frame(
                        CloseCode::Restart,
                        "notices interrupted; reconnect",
                    ));
                    st.joining.clear();
                    st.routes.clear();
                } else {
                    tracing::warn!(node = %store.node, "notice subscription lost with the store; reconnecting");
                }
            }
            Ok(Err(e)) => tracing::debug!("subscribe failed: {e}"),
            Err(_) => tracing::debug!("subscribe timed out"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn on_message(ctx: &Ctx, cl: &Cluster, channel: &str, payload: &[u8]) {
    let Ok(text) = simdutf8::basic::from_utf8(payload) else {
        return;
    };
    let named = |name: &str| {
        channel
            .strip_prefix(PREFIX)
            .and_then(|c| c.strip_prefix("ch:"))
            == Some(name)
    };
    if named(ALL_CHANNEL) {
        // An announcement: a ready event for every connection.
        cl.state
            .lock()
            .table
            .send_all(&Utf8Bytes::from(text.to_string()));
        return;
    }
    if named(LIST_CHANNEL) {
        let Ok(change) = serde_json::from_str::<ListingNotice>(text) else {
            return;
        };
        if let Some(event) = change.event() {
            let bytes = Utf8Bytes::from(event.to_json());
            cl.state.lock().table.send_listing(&change.mode, &bytes);
        }
        return;
    }
    if let Some(batch) = text.strip_prefix('S') {
        return on_signals(cl, batch);
    }
    let notice: Notice = match serde_json::from_str(text) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("bad notice: {e}");
            return;
        }
    };
    if let Notice::PeerJs { to, x, close } = notice {
        return ctx.dropins.peerjs(&to, x, close);
    }
    let mut st = cl.state.lock();
    match notice {
        Notice::Change {
            room,
            events,
            reply,
        } => {
            if let Some(r) = &room {
                learn_routes(&mut st, r, &events, &cl.store.node);
            }
            on_change(&mut st, room.as_ref(), &events, reply.as_ref())
        }
        Notice::Hello(hello) => {
            if let Some(r) = &hello.room {
                st.routes.learn(r, &cl.store.node);
            }
            on_hello(ctx, &mut st, &hello)
        }
        Notice::Replaced { player } => st.table.close_conn(&player, replaced()),
        Notice::Kill { player } => st.table.close_conn(&player, kicked_by_admin()),
        Notice::Gone { player } => on_gone(cl, &mut st, &player),
        Notice::PeerJs { .. } => {}
        // Checked by the script.
        Notice::Signal { to, event } => {
            if send_local_owned(&mut st, &to, Utf8Bytes::from(event)) {
                st.table.metrics.signals_relayed.increment(1);
            }
        }
    }
}

/// A batch of signals routed by other nodes (see `super::relay`): each
/// delivered only if this node, whose view of its own players' rooms is
/// current, agrees that sender and target share the room.
fn on_signals(cl: &Cluster, batch: &str) {
    let Some(entries) = super::relay::entries(batch) else {
        tracing::warn!("bad signal batch");
        return;
    };
    let mut st = cl.state.lock();
    let mut relayed = 0;
    for e in entries {
        // A `send` message (1.2): members may send to spectators, and
        // spectators to the whole room; counted by the sender's node.
        if e.frame.starts_with(crate::relay::MESSAGE_PREFIX) {
            if st.routes.admits_message(e.from, e.to, e.room) {
                send_local_owned(&mut st, e.to, Utf8Bytes::from(e.frame.to_string()));
            }
            continue;
        }
        if !st.routes.admits(e.from, e.to, e.room) {
            tracing::debug!(to = %e.to, "signal dropped: sender and target no longer share a room");
            continue;
        }
        if send_local_owned(&mut st, e.to, Utf8Bytes::from(e.frame.to_string())) {
            relayed += 1;
        }
    }
    st.table.metrics.signals_relayed.increment(relayed);
}

/// A change: the requester's reply (if it is here) ahead of the events.
fn on_change(st: &mut State, room: Option<&RoomRec>, events: &[Spec], reply: Option<&ReplySpec>) {
    if let Some(reply) = reply {
        let rid: Value = serde_json::from_str(&reply.rid).unwrap_or(Value::Null);
        let fields = match (reply.kind.as_str(), room) {
            ("room", Some(r)) => json!({ "room": r.info(true) }),
            ("match", Some(r)) => json!({ "room": r.info(true), "created": reply.created }),
            ("ticket", _) => match &reply.tk {
                Some(t) => json!({ "ticket": t.info() }),
                None => json!({}),
            },
            ("party", _) => match &reply.pt {
                Some(p) => json!({ "party": p.info() }),
                None => json!({}),
            },
            _ => json!({}),
        };
        st.table.send(&reply.player, &ok_reply(&rid, fields).into());
        if let Some(told) = st.replies.remove(&reply.player) {
            let _ = told.send(());
        }
    }
    for spec in events {
        let mut text: Option<Utf8Bytes> = None;
        for pid in &spec.to {
            if !st.table.conns.contains_key(pid) && !st.departed.contains_key(pid) {
                continue;
            }
            if text.is_none() {
                text = spec.render(room).map(Utf8Bytes::from);
            }
            if let Some(t) = &text {
                send_local(st, pid, t);
            }
        }
    }
}

/// Updates the signal routes from a change: the room's snapshot, then
/// players of this node that the change takes out of it (a kicked player
/// gets no later snapshot of the room it was kicked from).
fn learn_routes(st: &mut State, room: &RoomRec, events: &[Spec], me: &str) {
    st.routes.learn(room, me);
    for spec in events {
        match spec.kind.as_str() {
            "kicked" => {
                for pid in &spec.to {
                    st.routes.forget_in(pid, &room.id);
                }
            }
            "player_left" | "spectator_left" => {
                if let Some(pid) = &spec.player {
                    st.routes.forget_in(pid, &room.id);
                }
            }
            _ => {}
        }
    }
}

/// Finishes a connection's registration: `welcome`, then the events kept
/// while the player was away, then it is live for later notices.
fn on_hello(ctx: &Ctx, st: &mut State, hello: &Hello) {
    let Ok(conn_id) = hello.conn.parse::<u64>() else {
        return;
    };
    let Some(joining) = st.joining.remove(&conn_id) else {
        return; // the connection gave up meanwhile; its `bye` cleans up
    };
    // Caught here since the player's last connection on this node ended
    // (a resume that beat its `bye`): they come right after `welcome`.
    let caught = st.departed.remove(&hello.player).unwrap_or_default();
    st.table.close_conn(&hello.player, replaced());
    let welcome = ctx.welcome(
        &hello.player,
        &hello.name,
        hello.token.clone(),
        hello.resumed,
        (
            hello.room.as_ref().map(|r| r.info(true)),
            hello.party.as_ref().map(|p| p.info()),
        ),
        hello.dropped,
    );
    let _ = joining.tx.try_send(Message::Text(welcome.into()));
    for text in caught {
        let _ = joining.tx.try_send(Message::Text(text));
    }
    'pending: for text in &hello.pending {
        let Ok(n) = serde_json::from_str::<Notice>(text) else {
            continue;
        };
        for event in n.render_for(&hello.player) {
            if joining.tx.try_send(Message::Text(event.into())).is_err() {
                break 'pending; // more than the queue holds
            }
        }
    }
    st.table.conns.insert(
        hello.player.clone(),
        Conn {
            id: conn_id,
            tx: joining.tx,
            kill: joining.kill,
            stats: None,
        },
    );
    let _ = joining.done.send((hello.player.clone(), hello.epoch));
}

/// The store holds the seat of a player whose connection ended here: the
/// events this node caught for it meanwhile join its pending list.
fn on_gone(cl: &Cluster, st: &mut State, pid: &str) {
    // Its connection here is over (unless it came back meanwhile): its
    // route goes; a return brings a fresh snapshot.
    if !st.table.conns.contains_key(pid) {
        st.routes.forget(pid);
    }
    let Some(caught) = st.departed.remove(pid) else {
        return;
    };
    if caught.is_empty() {
        return;
    }
    let store = cl.store.clone();
    let pid = pid.to_string();
    tokio::spawn(async move {
        let events: Vec<&str> = caught.iter().map(|t| t.as_str()).collect();
        if let Err(e) = store.run(&ops::Keep { p: &pid, events }).await {
            tracing::warn!(player_id = %pid, "events for a held seat lost: {e}");
        }
    });
}
