//! The server's side of cluster mode: the notice subscription, liveness
//! beats, timers, and each request turned into a store operation.
//!
//! The order of events holds across nodes because the store's script
//! publishes them: a node's channel carries notices (replies included) in
//! the order the lobby changed, and this node renders them one at a time
//! into the connections' queues, under the same lock the in-memory mode
//! uses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::{close_frame, queue, App, Conn, Shared};
use crate::cluster::notice::{ListingNotice, Notice, RoomRec};
use crate::cluster::{attrs_json, Store, StoreError, PREFIX};
use crate::lobby::{
    check_allowed, check_chat_text, check_data, check_filters, check_max_players, check_mode,
};
use crate::protocol::{
    self, ok_reply, ErrorCode, Event, ProtoError, Request, RoomInfo, RoomStatus,
};

/// A connection waiting for its `hello` notice.
pub(crate) struct Joining {
    pub tx: tokio::sync::mpsc::Sender<Message>,
    pub kill: tokio_util::sync::CancellationToken,
    pub done: tokio::sync::oneshot::Sender<(String, u64)>,
}

fn list_channel() -> String {
    format!("{PREFIX}ch:list")
}

pub(crate) fn all_channel() -> String {
    format!("{PREFIX}ch:all")
}

/// Receives this node's notices, the room-list changes and announcements;
/// reconnects with backoff when Redis goes away.
pub(super) async fn run_subscriber(app: Arc<App>, store: Arc<Store>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = async {
            let mut pubsub = store.client().get_async_pubsub().await?;
            pubsub.subscribe(&store.channel).await?;
            pubsub.subscribe(list_channel()).await?;
            pubsub.subscribe(all_channel()).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(2), attempt) => r,
            _ = app.shutdown.cancelled() => return,
        };
        match pubsub {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(100);
                store
                    .subscribed
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                let mut stream = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        msg = stream.next() => match msg {
                            Some(msg) => on_message(&app, msg.get_channel_name(), msg.get_payload_bytes()),
                            None => break,
                        },
                        _ = app.shutdown.cancelled() => return,
                    }
                }
                store
                    .subscribed
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(node = %store.node, "notice subscription lost; reconnecting");
            }
            Ok(Err(e)) => tracing::debug!("subscribe failed: {e}"),
            Err(_) => tracing::debug!("subscribe timed out"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = app.shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn on_message(app: &App, channel: &str, payload: &[u8]) {
    let Ok(text) = std::str::from_utf8(payload) else {
        return;
    };
    if channel == all_channel() {
        // An announcement: a ready event for every connection.
        let bytes = Utf8Bytes::from(text.to_string());
        let shared = app.shared.lock();
        for conn in shared.conns.values() {
            queue(&conn.tx, &conn.kill, bytes.clone(), &app.metrics);
        }
        return;
    }
    if channel == list_channel() {
        let Ok(change) = serde_json::from_str::<ListingNotice>(text) else {
            return;
        };
        let Some(event) = change.event() else {
            return;
        };
        let bytes = Utf8Bytes::from(event.to_json());
        let shared = app.shared.lock();
        for (pid, mode) in &shared.room_subs {
            if mode.as_ref().is_none_or(|m| *m == change.mode) {
                if let Some(conn) = shared.conns.get(pid) {
                    queue(&conn.tx, &conn.kill, bytes.clone(), &app.metrics);
                }
            }
        }
        return;
    }
    // A relayed signal: "R<player>\n<event>".
    if let Some(rest) = text.strip_prefix('R') {
        if let Some((pid, event)) = rest.split_once('\n') {
            let mut shared = app.shared.lock();
            if send_local(app, &mut shared, pid, &Utf8Bytes::from(event.to_string())) {
                app.metrics.signals_relayed.increment(1);
            }
        }
        return;
    }
    let notice: Notice = match serde_json::from_str(text) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("bad notice: {e}");
            return;
        }
    };
    let mut shared = app.shared.lock();
    if let (Some(ctl), Some(pid)) = (&notice.ctl, &notice.p) {
        if ctl == "gone" {
            on_gone(app, &mut shared, pid);
            return;
        }
        let frame = match ctl.as_str() {
            "replaced" => Shared::replaced(),
            _ => close_frame(CloseCode::Policy, "disconnected by the server"),
        };
        shared.close_conn(pid, frame);
        return;
    }
    if let Some(hello) = &notice.hello {
        on_hello(app, &mut shared, hello, notice.room.as_ref());
        return;
    }
    if let Some(reply) = &notice.reply {
        if let Some(conn) = shared.conns.get(&reply.p) {
            let rid: Value = serde_json::from_str(&reply.rid).unwrap_or(Value::Null);
            let fields = match (reply.kind.as_str(), &notice.room) {
                ("room", Some(r)) => json!({ "room": r.info(true) }),
                ("match", Some(r)) => json!({ "room": r.info(true), "created": reply.created }),
                _ => json!({}),
            };
            queue(
                &conn.tx,
                &conn.kill,
                ok_reply(&rid, fields).into(),
                &app.metrics,
            );
        }
    }
    for spec in &notice.ev {
        let mut text: Option<Utf8Bytes> = None;
        for pid in &spec.to {
            if !shared.conns.contains_key(pid) && !shared.departed.contains_key(pid) {
                continue;
            }
            if text.is_none() {
                text = spec.render(notice.room.as_ref()).map(Utf8Bytes::from);
            }
            if let Some(t) = &text {
                send_local(app, &mut shared, pid, t);
            }
        }
    }
}

/// Finishes a connection's registration: `welcome`, then the events kept
/// while the player was away, then it is live for later notices.
fn on_hello(
    app: &App,
    shared: &mut Shared,
    hello: &crate::cluster::notice::Hello,
    room: Option<&RoomRec>,
) {
    let Ok(conn_id) = hello.conn.parse::<u64>() else {
        return;
    };
    let Some(joining) = shared.joining.remove(&conn_id) else {
        return; // the connection gave up meanwhile; its `bye` cleans up
    };
    shared.departed.remove(&hello.p);
    shared.close_conn(&hello.p, Shared::replaced());
    let welcome = app.welcome(
        &hello.p,
        &hello.name,
        hello.tok.clone(),
        hello.resumed,
        room.map(|r| r.info(true)),
        hello.dropped,
    );
    let _ = joining.tx.try_send(Message::Text(welcome.into()));
    'pending: for text in &hello.pending {
        let Ok(n) = serde_json::from_str::<Notice>(text) else {
            continue;
        };
        for event in n.render_for(&hello.p) {
            if joining.tx.try_send(Message::Text(event.into())).is_err() {
                break 'pending; // more than the queue holds
            }
        }
    }
    shared.conns.insert(
        hello.p.clone(),
        Conn {
            id: conn_id,
            tx: joining.tx,
            kill: joining.kill,
            stats: None,
        },
    );
    let _ = joining.done.send((hello.p.clone(), hello.epoch));
}

/// Registers a new connection through the store: the player id (fresh,
/// resumed or the JWT's) and the epoch that tells this connection apart.
pub(super) async fn register(
    app: &App,
    store: &Store,
    conn_id: u64,
    (tx, kill): (
        tokio::sync::mpsc::Sender<Message>,
        tokio_util::sync::CancellationToken,
    ),
    name: &str,
    resume: Option<&str>,
    sub: Option<&str>,
) -> Result<(String, u64), ProtoError> {
    let (done, done_rx) = tokio::sync::oneshot::channel();
    app.shared
        .lock()
        .joining
        .insert(conn_id, Joining { tx, kill, done });
    let fresh = super::session::new_player_id();
    let token = uuid::Uuid::new_v4().simple().to_string();
    let conn = conn_id.to_string();
    let result = store
        .call(
            "hello",
            &[
                &conn,
                &fresh,
                name,
                resume.unwrap_or(""),
                sub.unwrap_or(""),
                &token,
            ],
        )
        .await;
    let registered = match result {
        Ok(v) => v,
        Err(e) => {
            app.shared.lock().joining.remove(&conn_id);
            return Err(e.into());
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), done_rx).await {
        Ok(Ok(r)) => Ok(r),
        _ => {
            app.shared.lock().joining.remove(&conn_id);
            // Registered in the store but never live here: hold the seat
            // like any other lost connection.
            if let (Some(pid), Some(epoch)) = (
                registered.get("p").and_then(Value::as_str),
                registered.get("epoch").and_then(Value::as_u64),
            ) {
                unregister(app, store, pid, epoch).await;
            }
            Err(ProtoError::new(
                ErrorCode::Internal,
                "the store is unavailable (no notice arrived); try again shortly",
            ))
        }
    }
}

/// The connection closed: the seat is held for the grace period.
pub(super) async fn unregister(app: &App, store: &Store, player_id: &str, epoch: u64) {
    let grace = app.cfg.reconnect_grace_ms.to_string();
    let held = store
        .call("bye", &[player_id, &epoch.to_string(), &grace])
        .await;
    match held {
        // A `gone` notice follows; it hands the caught events over.
        Ok(Value::Bool(true)) => {}
        Ok(_) => {
            app.shared.lock().departed.remove(player_id);
        }
        Err(e) => {
            app.shared.lock().departed.remove(player_id);
            tracing::warn!(player_id, "could not hold the seat in the store: {e}");
        }
    }
}

/// The store holds the seat of a player whose connection ended here: the
/// events this node caught for it meanwhile join its pending list.
fn on_gone(app: &App, shared: &mut Shared, pid: &str) {
    let Some(caught) = shared.departed.remove(pid) else {
        return;
    };
    if caught.is_empty() {
        return;
    }
    let Some(store) = app.store.clone() else {
        return;
    };
    let pid = pid.to_string();
    tokio::spawn(async move {
        let mut args: Vec<&str> = vec![&pid];
        args.extend(caught.iter().map(|t| t.as_str()));
        if let Err(e) = store.call("keep", &args).await {
            tracing::warn!(player_id = %pid, "events for a held seat lost: {e}");
        }
    });
}

/// Queues a text for a local player: its connection, or the catch of a
/// connection that just ended.
fn send_local(app: &App, shared: &mut Shared, pid: &str, text: &Utf8Bytes) -> bool {
    if let Some(conn) = shared.conns.get(pid) {
        queue(&conn.tx, &conn.kill, text.clone(), &app.metrics);
        return true;
    }
    if let Some(caught) = shared.departed.get_mut(pid) {
        if caught.len() < 256 {
            caught.push(text.clone());
        }
    }
    false
}

fn codes() -> String {
    let codes: Vec<String> = (0..4).map(|_| crate::lobby::new_code_text()).collect();
    serde_json::to_string(&codes).unwrap_or_default()
}

fn rooms_of(records: Vec<String>) -> Vec<RoomInfo> {
    records
        .iter()
        .filter_map(|r| serde_json::from_str::<RoomRec>(r).ok())
        .map(|r| r.info(false))
        .collect()
}

/// Public rooms of a status, oldest first.
pub(super) async fn list_rooms(
    store: &Store,
    status: RoomStatus,
    mode: Option<&str>,
    limit: u64,
) -> Result<Vec<RoomInfo>, StoreError> {
    let which = match status {
        RoomStatus::Waiting => "w",
        RoomStatus::Active => "a",
        RoomStatus::Finished => return Ok(Vec::new()),
    };
    let limit = limit.min(crate::lobby::MAX_LIST_LIMIT);
    Ok(rooms_of(
        store.list(which, mode.unwrap_or(""), limit).await?,
    ))
}

/// Runs one request against the store. `Ok(None)`: the reply comes with
/// the change's notice (in order with its events); `Ok(Some(fields))`:
/// reply now.
pub(super) async fn dispatch(
    app: &App,
    store: &Store,
    me: &str,
    roles: &[String],
    rid: &Value,
    request: Request,
) -> Result<Option<Value>, ProtoError> {
    let rid_text = || rid.to_string();
    // Made only by the requests that pass them (not on the signal path).
    let now = || protocol::ts(&chrono::Utc::now());
    let idle = || app.cfg.room_idle_timeout_ms.to_string();
    let max_rooms = || app.cfg.max_rooms.to_string();
    let call = |op: &'static str, args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        store.call(op, &refs).await.map_err(ProtoError::from)
    };
    match request {
        Request::FindMatch(req) => {
            let max = check_max_players(app.cfg.max_players, req.max_players)?;
            let mode = check_mode(req.mode.as_deref())?;
            let filters = req.filters.unwrap_or_default();
            check_filters(&filters)?;
            let data = serde_json::to_string(&filters).unwrap_or_else(|_| "{}".into());
            call(
                "match",
                vec![
                    me.into(),
                    attrs_json(&filters),
                    data,
                    uuid::Uuid::new_v4().to_string(),
                    codes(),
                    max_rooms(),
                    idle(),
                    mode,
                    max.to_string(),
                    rid_text(),
                    now(),
                ],
            )
            .await?;
            Ok(None)
        }
        Request::CreateRoom(req) => {
            let max = check_max_players(app.cfg.max_players, req.max_players)?;
            let mode = check_mode(req.mode.as_deref())?;
            let data = req.data.unwrap_or_default();
            check_data(&data, "data")?;
            check_allowed(&req.allowed_players, &req.allowed_roles)?;
            call(
                "create",
                vec![
                    me.into(),
                    uuid::Uuid::new_v4().to_string(),
                    codes(),
                    if req.private { "1" } else { "0" }.into(),
                    mode,
                    max.to_string(),
                    serde_json::to_string(&data).unwrap_or_else(|_| "{}".into()),
                    serde_json::to_string(&req.allowed_players).unwrap_or_default(),
                    serde_json::to_string(&req.allowed_roles).unwrap_or_default(),
                    attrs_json(&data),
                    max_rooms(),
                    idle(),
                    rid_text(),
                    now(),
                ],
            )
            .await?;
            Ok(None)
        }
        Request::JoinRoom(req) => {
            let (id, code) = match (req.room_id, req.code) {
                (Some(id), _) => (id, String::new()),
                (None, Some(code)) => (String::new(), code.trim().to_ascii_uppercase()),
                (None, None) => {
                    return Err(ProtoError::bad_request("join_room needs room_id or code"))
                }
            };
            let not_found = |what: String| ProtoError::new(ErrorCode::RoomNotFound, what);
            if id.len() > 64 || code.len() > 64 {
                return Err(not_found("no such room".into()));
            }
            call(
                "join",
                vec![
                    me.into(),
                    id,
                    code,
                    serde_json::to_string(roles).unwrap_or_else(|_| "[]".into()),
                    rid_text(),
                    now(),
                ],
            )
            .await?;
            Ok(None)
        }
        Request::LeaveRoom => {
            call("leave", vec![me.into(), rid_text()]).await?;
            Ok(None)
        }
        Request::ListRooms(req) => {
            let status = req.status.unwrap_or(RoomStatus::Waiting);
            if status == RoomStatus::Finished {
                return Err(ProtoError::bad_request("status must be waiting or active"));
            }
            let limit = req.limit.unwrap_or(crate::lobby::DEFAULT_LIST_LIMIT);
            let rooms = list_rooms(store, status, req.mode.as_deref(), limit).await?;
            Ok(Some(json!({ "rooms": rooms })))
        }
        Request::StartGame => {
            call("start", vec![me.into(), rid_text()]).await?;
            Ok(None)
        }
        Request::FinishGame(req) => {
            let result = match &req.result {
                Some(r) => {
                    check_data(r, "result")?;
                    serde_json::to_string(r).unwrap_or_default()
                }
                None => String::new(),
            };
            let ttl = app.cfg.finished_room_ttl_ms.to_string();
            call("finish", vec![me.into(), result, ttl, rid_text()]).await?;
            Ok(None)
        }
        Request::SetRoomData(req) => {
            check_data(&req.data, "data")?;
            let data = serde_json::to_string(&req.data).unwrap_or_else(|_| "{}".into());
            call(
                "room_data",
                vec![me.into(), data, attrs_json(&req.data), rid_text()],
            )
            .await?;
            Ok(None)
        }
        Request::SetPlayerData(req) => {
            check_data(&req.data, "data")?;
            let data = serde_json::to_string(&req.data).unwrap_or_else(|_| "{}".into());
            call("player_data", vec![me.into(), data, rid_text()]).await?;
            Ok(None)
        }
        Request::Kick(req) => {
            call("kick", vec![me.into(), req.player_id, rid_text()]).await?;
            Ok(None)
        }
        Request::Chat(req) => {
            check_chat_text(&req.text)?;
            call("chat", vec![me.into(), req.text, now(), rid_text()]).await?;
            Ok(None)
        }
        Request::Ping => Ok(Some(json!({"server_time": now()}))),
        Request::SubscribeStats(req) => {
            let ms = req.interval_ms.unwrap_or(1000);
            if !(250..=60_000).contains(&ms) {
                return Err(ProtoError::bad_request("interval_ms must be 250 to 60000"));
            }
            let stats = app.stats_async().await?;
            if let Some(conn) = app.shared.lock().conns.get_mut(me) {
                let interval = Duration::from_millis(ms);
                conn.stats = Some(super::StatsSub {
                    interval,
                    next: Instant::now() + interval,
                });
            }
            Ok(Some(json!({ "stats": stats })))
        }
        Request::UnsubscribeStats => {
            if let Some(conn) = app.shared.lock().conns.get_mut(me) {
                conn.stats = None;
            }
            Ok(Some(json!({})))
        }
        Request::Offer(sig) => {
            let event = Event::Offer {
                from: me.to_string(),
                sdp: sig.sdp,
            };
            signal(store, me, &sig.to, event).await
        }
        Request::Answer(sig) => {
            let event = Event::Answer {
                from: me.to_string(),
                sdp: sig.sdp,
            };
            signal(store, me, &sig.to, event).await
        }
        Request::IceCandidate(sig) => {
            let event = Event::IceCandidate {
                from: me.to_string(),
                candidate: sig.candidate,
            };
            signal(store, me, &sig.to, event).await
        }
        Request::SubscribeRooms(req) => {
            let first = {
                let mut shared = app.shared.lock();
                let first = shared.room_subs.is_empty();
                shared.room_subs.insert(me.to_string(), req.mode.clone());
                first
            };
            if first {
                store.call("watch", &["1"]).await?;
            }
            let rooms = list_rooms(
                store,
                RoomStatus::Waiting,
                req.mode.as_deref(),
                crate::lobby::MAX_LIST_LIMIT,
            )
            .await?;
            Ok(Some(json!({ "rooms": rooms })))
        }
        Request::UnsubscribeRooms => {
            app.shared.lock().room_subs.remove(me);
            Ok(Some(json!({})))
        }
    }
}

async fn signal(
    store: &Store,
    me: &str,
    to: &str,
    event: Event,
) -> Result<Option<Value>, ProtoError> {
    if to.len() > 256 {
        return Err(ProtoError::new(
            ErrorCode::PeerNotFound,
            "no such player in your room",
        ));
    }
    store
        .call("signal", &[me, to, &event.to_json()])
        .await
        .map_err(ProtoError::from)?;
    Ok(Some(json!({})))
}

/// Liveness and failure detection: refreshes this node's key every third
/// of its TTL and reaps nodes whose key lapsed. When Redis lost its data
/// or the others took this node for dead, its connections are closed
/// (1012) so their clients reconnect and resume against the lobby as it is.
pub(super) async fn run_beats(app: Arc<App>, store: Arc<Store>) {
    let every = Duration::from_millis((app.cfg.node_ttl_ms / 3).max(100));
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gen: Option<String> = None;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = app.shutdown.cancelled() => return,
        }
        let (conns, watching) = {
            let shared = app.shared.lock();
            (shared.conns.len(), !shared.room_subs.is_empty())
        };
        let proposal = uuid::Uuid::new_v4().simple().to_string();
        let r = store
            .call(
                "beat",
                &[
                    &conns.to_string(),
                    &app.cfg.node_ttl_ms.to_string(),
                    &app.cfg.reconnect_grace_ms.to_string(),
                    if watching { "1" } else { "0" },
                    &proposal,
                    if gen.is_none() { "1" } else { "0" },
                    &app.cfg.resume_buffer.to_string(),
                ],
            )
            .await;
        let beat: crate::cluster::Beat = match r.map(serde_json::from_value) {
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
            let conns: Vec<Conn> = {
                let mut shared = app.shared.lock();
                shared.room_subs.clear();
                shared.conns.drain().map(|(_, c)| c).collect()
            };
            for c in conns {
                let _ = c.tx.try_send(close_frame(
                    CloseCode::Restart,
                    "lobby state was reset; reconnect",
                ));
            }
        }
        if let Ok(stats) = store.stats().await {
            *app.cluster_stats.lock() = stats;
        }
    }
}

/// Timers (held seats, finished and idle rooms) and stats pushes.
pub(super) async fn run_ticks(app: Arc<App>, store: Arc<Store>) {
    let mut interval = tokio::time::interval(super::TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let idle = app.cfg.room_idle_timeout_ms.to_string();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = app.shutdown.cancelled() => return,
        }
        if !store.available() {
            continue;
        }
        if let Err(e) = store.call("tick", &[&idle]).await {
            tracing::debug!("tick failed: {e}");
            continue;
        }
        let now = Instant::now();
        let due: Vec<String> = app
            .shared
            .lock()
            .conns
            .iter()
            .filter(|(_, c)| c.stats.as_ref().is_some_and(|s| s.next <= now))
            .map(|(pid, _)| pid.clone())
            .collect();
        if due.is_empty() {
            continue;
        }
        let Ok(stats) = app.stats_async().await else {
            continue;
        };
        let text = Utf8Bytes::from(Event::Stats { stats }.to_json());
        let mut shared = app.shared.lock();
        for pid in due {
            if let Some(conn) = shared.conns.get_mut(&pid) {
                if let Some(sub) = conn.stats.as_mut() {
                    sub.next = now + sub.interval;
                }
                queue(&conn.tx, &conn.kill, text.clone(), &app.metrics);
            }
        }
    }
}
